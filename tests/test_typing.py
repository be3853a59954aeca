"""The public API is typed: a client checked with ``mypy --strict`` passes,
and a misuse of it is caught (the hints are not all ``Any``)."""

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("mypy")

CLIENT = """
import io
import pickle

import marinade

blob: bytes = marinade.dumps(lambda x: x + 1)
also: bytes = marinade.dumps([1], 5, standalone=True)
signed: bytes = marinade.dumps(1, key=b"k" * 32, key_id="main")
func = marinade.loads(blob)
checked = marinade.loads(signed, key=b"k" * 32, allow=())
buffer = io.BytesIO()
marinade.dump({"a": 1}, buffer, protocol=4)
buffer.seek(0)
obj = marinade.load(buffer)
pickler: pickle.Pickler = marinade.Pickler(buffer, 5, standalone=False)
pickler.dump(1)
error: type[pickle.PicklingError] = marinade.PicklingError
marinade.register_pickle_by_value(io)
registered: set[str] = marinade.list_registry_pickle_by_value()
protocol: int = marinade.DEFAULT_PROTOCOL
dangerous: bool = marinade.inspect(blob).dangerous
tree = marinade.explain(func, depth=2)
context = marinade.get_context("spawn")
wrapped = marinade.wrap(func)
marinade.patch_multiprocessing()
marinade.unpatch_multiprocessing()
"""

MISUSE = """
import marinade

size: int = marinade.dumps(1)
marinade.dumps(1, standalone="yes")
marinade.explain(1, depth="deep")
"""


def _mypy(tmp_path, source: str) -> subprocess.CompletedProcess:
    (tmp_path / "client.py").write_text(textwrap.dedent(source), encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
         "--cache-dir", str(tmp_path / "cache"), "client.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)


def test_a_strict_client_type_checks(tmp_path):
    proc = _mypy(tmp_path, CLIENT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_misuse_is_reported(tmp_path):
    proc = _mypy(tmp_path, MISUSE)
    lines = [line for line in proc.stdout.splitlines() if ": error:" in line]
    assert [line.split(":")[1] for line in lines] == ["4", "5", "6"], proc.stdout
