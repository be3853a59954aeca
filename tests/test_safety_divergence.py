"""Parser-divergence tricks, against both the inspector and the restricted loader.

Each trick makes a checker read a pickle differently from CPython's unpickler:
FRAME boundaries (``pickle.loads`` and ``pickle.load`` of older CPython
disagree), memo aliasing (slots overwritten, MEMOIZE numbering), ``EXT``
opcodes (the extension registry, which skips ``find_class`` once cached) and
dotted names in ``STACK_GLOBAL`` (attribute walks). For every one:

- a fresh interpreter loads the payload with plain ``pickle`` and the trick
  really reaches ``os.system`` (a marker file appears), so the test is about
  a working technique;
- ``marinade.inspect`` flags it, naming what it reaches;
- ``marinade.loads(..., allow=...)`` refuses it before running anything, even
  with an allow-list the trick is designed to slip past.
"""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap

import pytest

import marinade

from helpers import child_env

P4 = b"\x80\x04"


def _u(text: str) -> bytes:
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw  # SHORT_BINUNICODE


def _g(module: str, name: str) -> bytes:
    return _u(module) + _u(name) + b"\x93"  # STACK_GLOBAL


def _call(func: bytes, *args: bytes) -> bytes:
    return func + b"(" + b"".join(args) + b"tR"


def _frame(body: bytes) -> bytes:
    return b"\x95" + len(body).to_bytes(8, "little") + body


def tricks(cmd: str) -> dict[str, tuple[bytes, str, list]]:
    """name -> (payload, how the consumer loads it, an allow-list the trick targets)."""
    after = _call(_g("os", "system"), _u(cmd)) + b"."
    # An opcode's argument runs past its frame: read from a file, older CPython
    # drops the frame's last byte and reads "os" after the frame.
    crossing = P4 + _frame(b"\x8c\x02\xa1") + b"os" + _u("system") + b"\x93(" + _u(cmd) \
        + b"tR."
    # A frame that opens inside another and runs past it: pickle.loads reads
    # "N." (None); a file reader jumps to the bytes after the outer frame.
    inner = b"\x95" + len(after).to_bytes(8, "little") + b"N."
    nested = P4 + b"\x95" + len(inner).to_bytes(8, "little") + inner + after
    return {
        "frame_crossing": (crossing, "file", ["os.system", "posix.system"]),
        "frame_in_frame": (nested, "file", []),
        # Slot 0 holds "math", then "os": the last write wins.
        "memo_overwrite": (P4 + _u("math") + b"q\x00" + b"0" + _u("os") + b"q\x00" + b"0"
                           + b"h\x00" + _u("system") + b"\x93(" + _u(cmd) + b"tR.",
                           "bytes", ["math.*"]),
        # MEMOIZE numbers by the count of entries (1 after PUT 5), not index + 1.
        "memoize_count": (P4 + _u("math") + b"q\x05" + b"0" + _u("os") + b"\x94" + b"0"
                          + b"h\x01" + _u("system") + b"\x93(" + _u(cmd) + b"tR.",
                          "bytes", ["math.*"]),
        # Extension code 0xF1, registered by the loading process for os.system.
        "ext_opcode": (P4 + b"\x82\xf1(" + _u(cmd) + b"tR.", "ext", ["os.system",
                                                                      "posix.system"]),
        # A dotted name walks attributes: os -> path -> os -> system.
        "dotted_walk": (P4 + _call(_g("os", "path.os.system"), _u(cmd)) + b".", "bytes",
                        ["os.path.*"]),
        # ... or through a dunder, from getattr to the builtins module's exec.
        "dotted_dunder": (P4 + _call(_g("builtins", "getattr.__self__.exec"),
                                     _u(f"import os; os.system({cmd!r})")) + b".",
                          "bytes", ["builtins.*"]),
    }


CONSUMER = """
import copyreg, io, os, pickle, sys
folder = sys.argv[1]
copyreg.add_extension("os", "system", 0xF1)  # some library registered this code
for name in sorted(os.listdir(folder)):
    data = open(os.path.join(folder, name), "rb").read()
    how = name.split(".")[1]
    if how == "file":
        try:
            pickle.loads(data)  # as bytes: harmless, or refused
        except Exception:
            pass
        try:
            pickle.load(io.BytesIO(data))  # as a file (no peek): older CPython diverges
        except pickle.UnpicklingError as exc:
            print("refused", name, exc)  # CPython with gh-154848 fixed
    else:
        pickle.loads(data)
"""

ALLOWLIST_BYPASS = """
import copyreg, io, os, pickle, sys
copyreg.add_extension("os", "system", 0xF1)
class Checked(pickle.Unpickler):  # the stdlib docs' recipe: refuse in find_class
    def find_class(self, module, name):
        if module == "collections":
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is forbidden")
data = open(sys.argv[1], "rb").read()
try:
    Checked(io.BytesIO(data)).load()
except pickle.UnpicklingError as exc:
    print("first load refused:", exc)
pickle.loads(data)  # an ordinary load elsewhere warms the extension cache ...
Checked(io.BytesIO(data)).load()  # ... and the checked loader no longer asks find_class
print("bypassed")
"""


def _consume(script: str, *args, cwd) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], cwd=cwd,
                          env=child_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_divergence_tricks_work_and_are_caught(tmp_path):
    payloads, markers = tmp_path / "payloads", tmp_path / "markers"
    payloads.mkdir()
    markers.mkdir()
    for name, (_, how, _) in tricks("true").items():
        (payloads / f"{name}.{how}").write_bytes(tricks(f"touch {markers / name}")[name][0])
    out = _consume(CONSUMER, str(payloads), cwd=tmp_path)
    fixed = {line.split()[1].partition(".")[0] for line in out.splitlines()
             if line.startswith("refused")}
    made = {path.name for path in markers.iterdir()}
    # Every trick ran os.system, except FRAME ones on a CPython that refuses them.
    assert made | fixed == set(tricks("true")), (made, fixed)
    assert fixed <= {"frame_crossing", "frame_in_frame"}

    for name, (data, _, allow) in tricks(f"touch {markers / 'inspected'}").items():
        report = marinade.inspect(data)
        danger = " | ".join(f.message for f in report.all_findings() if f.severity == "danger")
        assert report.dangerous, f"{name} not flagged:\n{report}"
        if name.startswith("frame"):
            assert "crosses the end of a FRAME" in report.findings[0].message, name
            label, as_file = report.nested[0]
            assert label == "as pickle.load reads it from a file"
            assert any("os.system" in f.message for f in as_file.all_findings()), name
        elif name == "ext_opcode":
            assert "extension code 241" in danger
        else:
            assert "os.system" in danger or "__self__" in danger, (name, danger)
        # The restricted loader refuses, before running anything, bytes or file.
        for load in (lambda: marinade.loads(data, allow=allow),
                     lambda: marinade.load(io.BytesIO(data), allow=allow)):
            with pytest.raises(marinade.RestrictedError) as info:
                load()
            message = str(info.value)
            if name.startswith("frame"):
                assert "FRAME" in message, (name, message)
            elif name == "ext_opcode":
                assert "EXT" in message, (name, message)
            elif name.startswith("memo"):
                assert "os.system" in message or "posix.system" in message, (name, message)
            else:
                assert "dotted" in message, (name, message)
            assert info.value.offset is not None
    assert not (markers / "inspected").exists()


def test_extension_codes_bypass_a_find_class_allow_list(tmp_path):
    # Why restricted loading refuses EXT outright instead of checking find_class.
    marker = tmp_path / "ran"
    path = tmp_path / "ext.pkl"
    path.write_bytes(P4 + b"\x82\xf1(" + _u(f"touch {marker}") + b"tR.")
    out = _consume(ALLOWLIST_BYPASS, str(path), cwd=tmp_path)
    assert "first load refused: os.system is forbidden" in out
    assert "bypassed" in out and marker.exists()
    with pytest.raises(marinade.RestrictedError, match="EXT"):
        marinade.loads(path.read_bytes(), allow=["collections.*"])
