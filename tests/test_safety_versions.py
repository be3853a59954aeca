"""Inspecting shipped code made by another CPython version.

Bytecode only means something with the opcode table of the version that
compiled it. A payload made on 3.12 may be inspected on 3.11, and a
cloudpickle or dill payload does not say which version made it, so the
inspector keeps the tables of 3.11, 3.12 and 3.13 and reads code strictly
with each (see ``safety/_code.py``). These tests make payloads with every
interpreter of the test setup and inspect them with the running one.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import marinade
from marinade import _compat
from marinade.safety import _code, _opcodes

from helpers import child_env

VENVS = Path(__file__).resolve().parent.parent / ".venv"

PRODUCER = r"""
import os, sys, math, pickle, marinade, cloudpickle, dill
out = sys.argv[1]
version = f"{sys.version_info[0]}.{sys.version_info[1]}"
def run(cmd):
    return os.system(cmd)
def spawn(cmd):
    import subprocess
    return subprocess.run(cmd, shell=True)
def dynamic(cmd):
    return getattr(os, "sys" "tem")(cmd)
def fine(x):
    return math.sqrt(x) + len(os.path.join("a", "b"))
class Runner:
    def go(self, cmd):
        return os.system(cmd)
class Point:
    def norm(self):
        return math.hypot(self.x, 1)
makers = {"marinade": marinade.dumps,
          "standalone": lambda o: marinade.dumps(o, standalone=True),
          "portable": lambda o: marinade.dumps(o, portable=True),
          "cloudpickle": cloudpickle.dumps,
          "dill": lambda o: dill.dumps(o, recurse=True)}
for maker, dumps in makers.items():
    for name, obj in [("run", run), ("spawn", spawn), ("dynamic", dynamic), ("fine", fine),
                      ("Runner", Runner), ("Point", Point)]:
        with open(os.path.join(out, f"{version}-{maker}-{name}"), "wb") as f:
            f.write(dumps(obj))
"""

DANGEROUS = {"run", "spawn", "dynamic", "Runner"}


def _interpreters() -> dict[str, str]:
    found = {}
    for venv in sorted(VENVS.glob("py3*")):
        python = venv / "bin" / "python"
        if python.exists():
            found[f"{venv.name[2]}.{venv.name[3:]}"] = str(python)
    return found


def _here() -> str:
    return f"{_compat.PY_VERSION[0]}.{_compat.PY_VERSION[1]}"


def test_this_interpreters_opcode_table_matches_the_embedded_one():
    if _compat.PY_VERSION not in _opcodes.TABLES:
        pytest.skip("no embedded table for this version")
    have_argument, text = _opcodes.TABLES[_compat.PY_VERSION]
    embedded = _code.Dialect(_compat.PY_VERSION, _opcodes.parse(text), have_argument)
    live = _code.DIALECTS[_compat.CODE_TAG]
    assert embedded.names == live.names
    assert embedded.caches == live.caches
    assert embedded.have_argument == live.have_argument


def test_strict_decoding_reads_this_versions_code_only_as_its_own():
    import marshal

    sources = [compile(open(module.__file__, encoding="utf-8").read(), module.__file__,
                       "exec") for module in (subprocess, pytest, marinade)]
    here = _code.DIALECTS[_compat.CODE_TAG]
    for top in sources:
        info = _code.parse_marshal(marshal.dumps(top))
        for each in info.walk():
            _code.instructions(each, here)  # every code object decodes strictly
        # A module's worth of code never reads as another version's.
        for tag, dialect in _code.DIALECTS.items():
            if tag == _compat.CODE_TAG:
                continue
            with pytest.raises(_code.Undecodable):
                for each in info.walk():
                    _code.instructions(each, dialect)


def test_payloads_from_every_version_are_judged_by_their_bytecode(tmp_path):
    pythons = _interpreters()
    if len(pythons) < 2:
        pytest.skip("needs the interpreters of .venv/py3*")
    out = tmp_path / "payloads"
    out.mkdir()
    script = tmp_path / "produce.py"
    script.write_text(PRODUCER)
    procs = [subprocess.Popen([python, str(script), str(out)], cwd=tmp_path, env=child_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for python in pythons.values()]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    files = sorted(out.iterdir())
    assert len(files) == len(pythons) * 5 * 6
    here = _here()
    for path in files:
        version, maker, name = path.name.split("-")
        report = marinade.inspect(path)
        if maker == "standalone" and name in ("Runner", "Point") and version != here:
            # Standalone classes ship marinade's own reconstructors by value; only
            # byte-identical copies (this interpreter's) are recognised, so another
            # version's are judged as unknown code: flagged, never waved through.
            assert report.dangerous, path.name
            continue
        assert report.dangerous == (name in DANGEROUS), f"{path.name}:\n{report}"
        if maker == "portable":
            continue  # source, compiled here: no other version's bytecode
        funcs = [f for f in report.functions if f.name.rpartition(".")[2] in
                 ("run", "spawn", "dynamic", "fine", "go", "norm")]
        assert funcs, f"{path.name}:\n{report}"
        for func in funcs:
            assert func.analysis == "bytecode", (path.name, func)
            assert func.bytecode == [version], (path.name, func.bytecode)
            if maker in ("marinade", "standalone"):
                assert func.python == version
        if name == "fine":
            (func,) = funcs
            assert "math.sqrt" in func.uses and "os.path.join" in func.uses, func.uses


def _retag(data: bytes, old: int, new: int) -> bytes:
    """Change the version tag marinade writes next to code (BININT2)."""
    before, after = b"M" + old.to_bytes(2, "little"), b"M" + new.to_bytes(2, "little")
    assert before in data
    return data.replace(before, after)


def test_unknown_and_false_version_tags():
    import math
    import os

    def run(cmd):
        return os.system(cmd)

    def fine(x):
        return math.sqrt(x)

    here = _compat.CODE_TAG
    # A version with no opcode table (a later CPython): read by names, still judged.
    future = here + 5
    bad = marinade.inspect(_retag(marinade.dumps(run), here, future))
    (func,) = bad.functions
    assert func.analysis == "names" and bad.dangerous
    assert any("no opcode table" in f.message for f in bad.findings)
    good = marinade.inspect(_retag(marinade.dumps(fine), here, future))
    assert good.functions[0].analysis == "names" and not good.dangerous
    # A known version whose bytecode this is not: no compiler wrote it.
    others = [tag for tag in _code.DIALECTS if tag != here]
    lie = marinade.inspect(_retag(marinade.dumps(fine), here, others[0]))
    assert lie.dangerous
    assert any("is not valid" in f.message for f in lie.findings), lie
