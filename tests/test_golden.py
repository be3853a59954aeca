"""Payloads written by earlier marinade builds must load forever.

``tests/golden/py3XY/*.pkl`` were made by ``tests/golden/make_golden.py``
and are never regenerated to make this pass: a failure means a name or
behaviour that old payloads rely on has changed (see docs/payload-format.md).
Each is loaded in a fresh interpreter from a folder where make_golden.py
cannot be imported; standalone ones with ``python -I -S`` (no marinade).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from helpers import run_script

GOLDEN = Path(__file__).resolve().parent / "golden"
HERE = "py{}{}".format(*sys.version_info[:2])
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)

CHECK = """
import pickle, sys
with open(sys.argv[1], "rb") as f:
    o = pickle.load(f)
print(o["lambda"](2), o["counter"](), o["counter"]())
print(o["Square"](3).describe(), o["square"].describe(), type(o["square"]) is o["Square"])
print(o["Color"](1) is o["red"], o["point"])
if "gen" in o:
    print(list(o["gen"]))
if hasattr(o["Square"], "grow"):  # generation 3 on
    print(o["Square"](3).grow().area(), type(o["square"].grow()) is o["Square"])
if "error" in o and o["error"].__traceback__ is not None:  # generation 5 on
    import traceback
    e = o["error"]
    print(type(e).__name__, type(e.__cause__).__name__,
          [f.name for f in traceback.extract_tb(e.__traceback__)],
          [f.name for f in traceback.extract_tb(e.__cause__.__traceback__)])
if "named" in o:  # generation 6 on
    print(type(o["named"]).__name__, o["named"].items, o["named"].label, o["day"].label,
          o["day"].isoformat(), o["patched"].describe())
if "Money" in o:  # generation 7 on
    print(o["Money"].ZERO.cents, type(o["Money"].ZERO) is o["Money"])
"""
EXPECTED = ["6 12 13", "square Square:4x9 square Square:4x6 True", "True Point(x=1, y=0)"]


def _generation(path: Path) -> int:
    """``default-3.pkl`` -> 3 (``default.pkl`` is generation 1)."""
    stem = path.stem
    return int(stem.rsplit("-", 1)[1]) if "-" in stem else 1


def _payloads(mode):
    found = sorted(GOLDEN.glob(f"py3*/{mode}.pkl"))
    assert found, "golden payloads are missing"
    return found


def _this_version(mode):
    found = sorted((GOLDEN / HERE).glob(f"{mode}*.pkl"))
    return found or [GOLDEN / HERE / f"{mode}.pkl"]


@pytest.mark.parametrize(("mode", "path"), [
    (mode, path) for mode in ("default", "standalone") for path in _this_version(mode)
], ids=lambda value: value.name if isinstance(value, Path) else value)
def test_golden_payloads_of_this_version_load(tmp_path, mode, path):
    if not path.exists():
        pytest.skip(f"no golden payloads for {HERE} yet")
    if mode == "standalone":  # marinade must not be needed
        proc = _run_isolated(tmp_path, BASE_PYTHON, path)
    else:
        proc = run_script(tmp_path, CHECK, args=[str(path)], name="check.py")
    assert proc.returncode == 0, proc.stderr
    expected = EXPECTED + (["[3, 2, 1]"] if mode == "default" else [])
    if _generation(path) >= 3:
        expected.append("16 True")
    if _generation(path) >= 5:
        expected.append("LookupError ValueError ['caught', 'fail'] ['fail']")
    if _generation(path) >= 6:
        expected.append("Named [1, 2] v leap 2024-02-29 10")
    if _generation(path) >= 7:
        expected.append("7 True")
    assert proc.stdout.split("\n")[:len(expected)] == expected


def _run_isolated(tmp_path, python, path):
    import subprocess

    from helpers import child_env
    folder = tmp_path / "isolated"
    folder.mkdir(exist_ok=True)
    check = ("import importlib.util\n"
             "assert importlib.util.find_spec('marinade') is None, 'marinade importable'\n"
             + CHECK)
    (folder / "check.py").write_text(check, encoding="utf-8")
    return subprocess.run([python, "-I", "-S", "check.py", str(path)], cwd=folder,
                          env=child_env(), capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("path", _payloads("portable"), ids=lambda p: p.parent.name)
def test_golden_portable_payloads_load_on_this_version(tmp_path, path):
    proc = run_script(tmp_path, CHECK, args=[str(path)], name="check.py")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:3] == EXPECTED
