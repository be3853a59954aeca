"""Static inspection: ``marinade.inspect`` and ``python -m marinade inspect``.

The malicious payloads here are real: one consumer process loads every one
of them with plain ``pickle`` and each creates a marker file, proving the
technique works against CPython; the inspector must flag every one without
running anything. Harmless payloads, including code shipped by value by
marinade, cloudpickle and dill, must not be flagged.
"""

from __future__ import annotations

import json
import marshal
import os
import pickle
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import pytest

import marinade
from marinade.safety.inspect import Limits
from marinade.safety.inspect import inspect as inspect_with_limits

from helpers import child_env, run_script

# -- building pickles by hand -----------------------------------------------------------------


def _u(text: str) -> bytes:
    raw = text.encode()
    assert len(raw) < 256
    return b"\x8c" + bytes([len(raw)]) + raw  # SHORT_BINUNICODE


def _b(data: bytes) -> bytes:
    return b"B" + len(data).to_bytes(4, "little") + data  # BINBYTES


def _g(module: str, name: str) -> bytes:
    return _u(module) + _u(name) + b"\x93"  # STACK_GLOBAL


def _call(func: bytes, *args: bytes) -> bytes:
    return func + b"(" + b"".join(args) + b"tR"  # MARK args TUPLE REDUCE


P4 = b"\x80\x04"


def _import(module: str) -> bytes:
    return _call(_g("importlib", "import_module"), _u(module))


class _Shell:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return os.system, (self.cmd,)


def techniques(cmd: str) -> dict[str, bytes]:
    """Payloads that each run ``cmd`` through a different route when loaded."""
    q = cmd.replace("'", "\\'")
    code = compile(f"import os\nos.system({cmd!r})\n", "<shipped>", "exec")
    inner = pickle.dumps(_Shell(cmd), protocol=5)
    system = _call(_g("builtins", "getattr"), _import("os"), _u("system"))
    return {
        "reduce_protocol0": pickle.dumps(_Shell(cmd), protocol=0),
        "reduce_protocol2": pickle.dumps(_Shell(cmd), protocol=2),
        "reduce_protocol5": inner,
        "getattr_chain": P4 + _call(system, _u(cmd)) + b".",
        "builtins_eval": P4 + _call(
            _call(_g("builtins", "getattr"), _import("builtins"), _u("eval")),
            _u(f"__import__('os').system('{q}')")) + b".",
        # 'math' goes to memo 0, then 'os' overwrites it: the last write wins.
        "memo_overwrite": P4 + _u("math") + b"q\x00" + b"0" + _u("os") + b"q\x00" + b"0"
        + b"h\x00" + _u("system") + b"\x93(" + _u(cmd) + b"tR.",
        # MEMOIZE uses the number of entries (1 after PUT 5), not the highest index + 1.
        "memoize_count": P4 + _u("math") + b"q\x05" + b"0" + _u("os") + b"\x94" + b"0"
        + b"h\x01" + _u("system") + b"\x93(" + _u(cmd) + b"tR.",
        "ext_opcode": P4 + b"\x82\xf1" + b"(" + _u(cmd) + b"tR.",
        "dotted_name": P4 + _call(_g("os", "path.os.system"), _u(cmd)) + b".",
        "dotted_dunder": P4 + _call(_g("builtins", "getattr.__self__.exec"),
                                    _u(f"import os; os.system('{q}')")) + b".",
        "inst_opcode": b"(S'" + cmd.encode() + b"'\nios\nsystem\n.",
        "obj_opcode": b"(cos\nsystem\nS'" + cmd.encode() + b"'\no.",
        "build_setstate": P4 + _g("argparse", "Namespace") + b")R" + b"N}" + _u("__setstate__")
        + _g("os", "system") + b"s\x86b" + _u(cmd) + b"b.",
        "nested_pickle": P4 + _call(_g("pickle", "loads"), _b(inner)) + b".",
        "marshal_code": P4 + _call(_g("types", "FunctionType"),
                                   _call(_g("marshal", "loads"), _b(marshal.dumps(code))),
                                   b"}") + b")R.",
        "sys_modules": P4 + _call(_call(
            _g("builtins", "getattr"),
            _call(_g("_operator", "getitem"),
                  _call(_g("builtins", "getattr"), _import("sys"), _u("modules")), _u("os")),
            _u("system")), _u(cmd)) + b".",
        "vars_namespace": P4 + _call(_call(
            _g("_operator", "getitem"), _call(_g("builtins", "vars"), _import("os")),
            _u("system")), _u(cmd)) + b".",
        "functools_reduce": P4 + _call(_call(
            _g("functools", "reduce"), _g("builtins", "getattr"), _u("system") + b"\x85",
            _import("os")), _u(cmd)) + b".",
        "attrgetter": P4 + _call(_call(_call(_g("_operator", "attrgetter"), _u("system")),
                                       _import("os")), _u(cmd)) + b".",
        "computed_name": P4 + _call(_call(
            _g("builtins", "getattr"), _import("os"),
            _call(_call(_g("builtins", "getattr"), _u(""), _u("join")),
                  b"](" + _u("sys") + _u("tem") + b"e")), _u(cmd)) + b".",
        # The frame announces 3 bytes and ends inside the next opcode: CPython's
        # C unpickler reads on, the pure-Python one would stop.
        "frame_split": P4 + b"\x95" + (3).to_bytes(8, "little")
        + _call(_g("os", "system"), _u(cmd)) + b".",
        "second_pickle": pickle.dumps([1, 2, 3]) + inner,
    }


# Shipped code that runs a command: written by a producer running as __main__,
# so that cloudpickle, dill and marinade all ship the function by value.
SHIPPED_PRODUCER = """
import os, sys, pickle, cloudpickle, dill, marinade
out, markers = sys.argv[1], sys.argv[2]
def run():
    return os.system(CMD)
def spawn():
    import subprocess
    return subprocess.call(CMD, shell=True)
class Trigger:
    def __init__(self, func):
        self.func = func
    def __reduce__(self):
        return self.func, ()
makers = {
    "marinade": marinade.dumps,
    "marinade_standalone": lambda o: marinade.dumps(o, standalone=True),
    "cloudpickle": cloudpickle.dumps,
    "dill": lambda o: dill.dumps(o, recurse=True),
    "marinade_portable": lambda o: marinade.dumps(o, portable=True),
}
for name, dumps in makers.items():
    # Called while loading (the function runs as the payload loads) ...
    CMD = f"touch {markers}/{name}_at_load"  # a global: shipped with its value
    open(os.path.join(out, f"{name}_at_load"), "wb").write(dumps(Trigger(run)))
    # ... and returned, for the victim to call.
    CMD = f"touch {markers}/{name}_returned.call"
    open(os.path.join(out, f"{name}_returned.call"), "wb").write(dumps(spawn))
"""

CONSUMER = """
import copyreg, os, pickle, sys
copyreg.add_extension("os", "system", 0xF1)  # some library registered this code
folder = sys.argv[1]
for name in sorted(os.listdir(folder)):
    with open(os.path.join(folder, name), "rb") as f:
        data = f.read()
    obj = pickle.loads(data)
    if name.endswith(".call"):
        obj()
    if name == "second_pickle":  # a loop of pickle.load runs what follows the first STOP
        import io
        stream = io.BytesIO(data)
        while stream.tell() < len(data):
            pickle.load(stream)
print("loaded", len(os.listdir(folder)))
"""


def test_malicious_techniques_are_real_and_flagged(tmp_path):
    payloads, markers = tmp_path / "payloads", tmp_path / "markers"
    payloads.mkdir()
    markers.mkdir()
    for name in techniques("true"):
        (payloads / name).write_bytes(techniques(f"touch {markers / name}")[name])
    # Shipped code: a producer running as __main__ writes the four flavours.
    prod = run_script(tmp_path, SHIPPED_PRODUCER, args=[str(payloads), str(markers)],
                      name="produce.py")
    assert prod.returncode == 0, prod.stderr
    expected = sorted(p.name for p in payloads.iterdir())
    assert len(expected) == len(techniques("true")) + 10
    cons = subprocess.run([sys.executable, "-c", textwrap.dedent(CONSUMER), str(payloads)],
                          cwd=tmp_path, env=child_env(), capture_output=True, text=True,
                          timeout=60)
    assert cons.returncode == 0, cons.stderr
    made = sorted(p.name for p in markers.iterdir())
    assert made == expected, f"techniques that did not run: {set(expected) - set(made)}"

    # Every one of them is flagged, from the bytes alone.
    for path in sorted(payloads.iterdir()):
        report = marinade.inspect(path.read_bytes())
        assert report.dangerous, f"{path.name} not flagged:\n{report}"
        assert marinade.inspect(path).dangerous, path.name  # streaming from the file too
        assert marinade.inspect(str(path)).dangerous, path.name  # a path given as str


def test_flag_reasons_name_the_technique():
    reports = {name: marinade.inspect(data) for name, data in techniques("true").items()}

    def messages(name):
        return " | ".join(f.message for f in reports[name].all_findings()
                          if f.severity == "danger")

    assert "os.system" in messages("reduce_protocol0")
    assert "os.system" in messages("getattr_chain")
    assert "builtins.eval" in messages("builtins_eval")
    assert "os.system" in messages("memo_overwrite")
    assert "os.system" in messages("memoize_count")
    assert "extension code 241" in messages("ext_opcode")
    assert "dotted name" in messages("dotted_name")
    assert "__self__" in messages("dotted_dunder")
    assert "os.system" in messages("inst_opcode")
    assert "BUILD sets __setstate__" in messages("build_setstate")
    assert "pickle.loads" in messages("nested_pickle")
    nested = reports["nested_pickle"].nested
    assert nested and nested[0][1].dangerous  # the inner pickle is inspected too
    assert "uses os.system" in messages("marshal_code")
    assert any("runs shipped code while loading" in f.message
               for f in reports["marshal_code"].findings)
    assert "sys.modules" in messages("sys_modules")
    assert "os.system" in messages("vars_namespace")
    assert "os.system" in messages("functools_reduce")
    assert "os.system" in messages("attrgetter")
    assert "computed while loading" in messages("computed_name")
    assert "os.system" in messages("frame_split")
    assert "pickle #2" in reports["second_pickle"].all_findings()[0].where
    # Nothing ran: no command, no import of os by the inspector's doing.
    assert not (Path.cwd() / "MARK").exists()


HARMLESS_PRODUCER = """
import dataclasses, enum, math, os, sys, collections, datetime, functools
import cloudpickle, dill, marinade, numpy
out = sys.argv[1]
base = 10
BIG = b"x" * 300_000
def outer():
    k = 5
    def inner(x):
        return math.sqrt(x) + k + base + len(BIG) + len(os.path.join("a", "b"))
    return inner
@dataclasses.dataclass
class Point:
    x: int = 0
    def norm(self):
        return math.hypot(self.x, 1)
class Color(enum.Enum):
    RED = 1
def gen(n):
    for i in range(n):
        yield i
g = gen(3); next(g)
class CallAtLoad:
    def __reduce__(self):
        return outer(), (4,)
objects = {"closure": outer(), "lambda": lambda x: sorted(x, key=len), "point": Point(3),
           "color": Color.RED, "classes": [Point, Color], "generator": g,
           "data": {"a": collections.OrderedDict(b=datetime.date(2020, 1, 2)), "n": numpy.arange(5),
                    "p": functools.partial(max, 1)},
           "call_at_load": CallAtLoad()}
makers = {"marinade": marinade.dumps, "standalone": lambda o: marinade.dumps(o, standalone=True),
          "cloudpickle": cloudpickle.dumps, "dill": lambda o: dill.dumps(o, recurse=True),
          "portable": lambda o: marinade.dumps(o, portable=True)}
for oname, obj in objects.items():
    for mname, dumps in makers.items():
        try:
            data = dumps(obj)
        except Exception:
            continue  # (standalone refuses suspended generators; dill some classes)
        open(os.path.join(out, f"{mname}-{oname}"), "wb").write(data)
"""


def test_harmless_payloads_are_not_flagged(tmp_path):
    out = tmp_path / "payloads"
    out.mkdir()
    prod = run_script(tmp_path, HARMLESS_PRODUCER, args=[str(out)], name="produce.py")
    assert prod.returncode == 0, prod.stderr
    files = sorted(out.iterdir())
    assert len(files) >= 28
    for path in files:
        report = marinade.inspect(path.read_bytes())
        assert not report.dangerous, f"{path.name} flagged:\n{report}"
    # The closure's shipped code was read, not waved through: its uses are listed.
    for maker in ("marinade", "standalone", "cloudpickle", "dill", "portable"):
        report = marinade.inspect(out / f"{maker}-closure")
        (func,) = [f for f in report.functions if f.name.endswith("inner")]
        assert func.analysis == "bytecode"
        assert "math.sqrt" in func.uses and "os.path.join" in func.uses, (maker, func.uses)
        big = func.globals["BIG"]
        assert big["size"] >= 300_000, (maker, func.globals)
        assert any(cell["value"] == "5" for cell in func.closure), (maker, func.closure)
    # A harmless shipped function called while loading: mentioned, not flagged.
    report = marinade.inspect(out / "cloudpickle-call_at_load")
    assert any("runs shipped code while loading" in f.message for f in report.findings)
    assert not report.dangerous


def test_report_lists_imports_calls_and_sizes():
    import collections

    payload = pickle.dumps({"big": b"\0" * 100_000, "od": collections.OrderedDict(a=1)},
                           protocol=5)
    report = marinade.inspect(payload)
    assert not report.dangerous
    assert [i["name"] for i in report.imports] == ["collections.OrderedDict"]
    assert [c["callable"] for c in report.calls] == ["collections.OrderedDict",
                                                     "collections.OrderedDict.__setitem__"]
    assert report.largest[0]["size"] >= 100_000
    assert report.size == len(payload)
    assert json.loads(report.to_json())["dangerous"] is False


def test_malformed_input_raises_one_error_with_offset():
    good = marinade.dumps([1, 2, 3])
    for bad in (b"", b"garbage", good[:-1], good[:5], b"\x80\x09.", b"\x80\x04\xff"):
        with pytest.raises(marinade.UnpicklingError) as info:
            marinade.inspect(bad)
        assert isinstance(info.value.offset, int) and 0 <= info.value.offset <= len(bad)
    with pytest.raises(marinade.UnpicklingError) as info:
        marinade.inspect(b"\x80\x04]q\x00h\x07.")  # memo index 7 was never stored
    assert info.value.offset == 5  # the BINGET
    # Trailing bytes that are not a pickle: reported, the verdict still given.
    report = marinade.inspect(good + b"trailing junk")
    assert not report.dangerous and "not a pickle" in " ".join(report.notes)


def test_large_payload_streams_with_bounded_memory(tmp_path):
    producer = """
        import os, sys, marinade
        blobs = [bytes([i]) * (1 << 20) for i in range(48)]
        def later():
            return os.system("true")
        with open(sys.argv[1], "wb") as f:
            marinade.dump({"data": blobs, "fn": later}, f)
    """
    path = tmp_path / "big.pkl"
    prod = run_script(tmp_path, producer, args=[str(path)], name="produce.py")
    assert prod.returncode == 0, prod.stderr
    size = path.stat().st_size
    assert size > 48 << 20
    tracemalloc.start()
    try:
        report = inspect_with_limits(path, limits=Limits(kept_bytes=4 << 20))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.dangerous and report.size == size  # read to the end: the function is found
    assert peak < 12 << 20, f"peak {peak} bytes for a {size}-byte file"
    # With the default limits, the largest parts are still measured.
    assert marinade.inspect(path).largest[0]["size"] == 1 << 20


def test_signed_payloads_are_unwrapped_and_verified():
    key = b"k" * 32
    data = marinade.dumps(lambda: 1, key=key, key_id="prod")
    report = marinade.inspect(data)
    assert report.signed == {"key_id": "prod", "verified": None}
    assert marinade.inspect(data, key=key).signed["verified"] is True
    with pytest.raises(marinade.SignatureError):
        marinade.inspect(data, key=b"x" * 32)
    with pytest.raises(marinade.SignatureError):
        marinade.inspect(marinade.dumps(1), key=key)


def _cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "marinade", "inspect", *args], input=stdin,
                          capture_output=True, env=child_env(), timeout=60)


def test_cli_exit_codes_and_json(tmp_path):
    clean, bad, junk = tmp_path / "clean.pkl", tmp_path / "bad.pkl", tmp_path / "junk.pkl"
    clean.write_bytes(marinade.dumps({"a": [1, 2]}))
    bad.write_bytes(techniques("true")["getattr_chain"])
    junk.write_bytes(b"\x80\x05not a pickle")
    assert _cli(str(clean)).returncode == 0
    result = _cli(str(bad))
    assert result.returncode == 1 and b"os.system" in result.stdout
    assert _cli(str(junk)).returncode == 2
    assert _cli(str(tmp_path / "missing.pkl")).returncode == 2
    result = _cli("--json", str(bad))
    doc = json.loads(result.stdout)
    assert doc["dangerous"] is True and doc["exit_code"] == 1
    assert any("os.system" in f["message"] for f in doc["findings"])
    result = _cli("--json", "-", stdin=clean.read_bytes())  # stdin
    assert result.returncode == 0 and json.loads(result.stdout)["dangerous"] is False
    key = tmp_path / "key"
    key.write_bytes(b"secret-key-material")
    signed = tmp_path / "signed.pkl"
    signed.write_bytes(marinade.dumps([1], key=b"secret-key-material"))
    assert _cli("--key-file", str(key), str(signed)).returncode == 0
    key.write_bytes(b"another key")
    assert _cli("--key-file", str(key), str(signed)).returncode == 1


def _frame_divergent(cmd: str, big: bool) -> bytes:
    """Bytes that pickle.loads refuses but older CPython's pickle.load (file) runs.

    The frame ends inside the string argument of SHORT_BINUNICODE: reading a
    file, the C unpickler drops the frame's leftover byte (0xa1) and reads
    "os" from after the frame (python/cpython#154848). A frame bigger than a
    buffered file's peek window makes a real file behave like io.BytesIO.
    """
    body = (_b(b"x" * 9000) + b"0" if big else b"") + b"\x8c\x02\xa1"
    return (P4 + b"\x95" + len(body).to_bytes(8, "little") + body + b"os"
            + _u("system") + b"\x93(" + _u(cmd) + b"tR.")


def test_frame_divergence_between_loads_and_load(tmp_path):
    small, big = tmp_path / "small.pkl", tmp_path / "big.pkl"
    small.write_bytes(_frame_divergent(f"touch {tmp_path / 'ran-small'}", big=False))
    big.write_bytes(_frame_divergent(f"touch {tmp_path / 'ran-big'}", big=True))
    consumer = f"""
        import io, pickle
        for path, opener in (({str(small)!r}, lambda p: io.BytesIO(open(p, "rb").read())),
                             ({str(big)!r}, lambda p: open(p, "rb"))):
            data = open(path, "rb").read()
            try:
                pickle.loads(data)
            except Exception as exc:
                print("loads refuses:", type(exc).__name__)
            try:
                pickle.load(opener(path))
            except pickle.UnpicklingError as exc:
                print("load refuses:", exc)  # CPython with gh-154848 fixed
    """
    proc = run_script(tmp_path, consumer, name="consume.py")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("loads refuses: UnicodeDecodeError") == 2
    if "load refuses" not in proc.stdout:  # this CPython diverges: the command ran
        assert (tmp_path / "ran-small").exists() and (tmp_path / "ran-big").exists()
    for path in (small, big):
        for source in (path.read_bytes(), path):
            report = marinade.inspect(source)
            assert report.dangerous
            assert "crosses the end of a FRAME" in report.findings[0].message
            label, as_file = report.nested[0]
            assert label == "as pickle.load reads it from a file"
            assert any("os.system" in f.message for f in as_file.findings)
        with pytest.raises(marinade.RestrictedError, match="FRAME"):
            marinade.loads(path.read_bytes(), allow=["os.system", "posix.system"])


def test_cli_key_file_problems_name_the_key_file(tmp_path):
    signed = tmp_path / "signed.pkl"
    binary_key = b"\x00binary key ending in a newline byte\n"
    signed.write_bytes(marinade.dumps([1], key=binary_key))
    key = tmp_path / "key.bin"
    key.write_bytes(binary_key)  # the bytes as they are, trailing newline included
    assert _cli("--key-file", str(key), str(signed)).returncode == 0
    text_signed = tmp_path / "text-signed.pkl"
    text_signed.write_bytes(marinade.dumps([2], key=b"text key"))
    text_key = tmp_path / "key.txt"
    text_key.write_bytes(b"text key\n")  # the line end an editor leaves
    assert _cli("--key-file", str(text_key), str(text_signed)).returncode == 0
    missing = _cli("--key-file", str(tmp_path / "nope"), str(signed))
    assert missing.returncode == 2 and b"key file" in missing.stderr
    assert b"nope" in missing.stderr and b"signed.pkl" not in missing.stderr
    empty = tmp_path / "empty.key"
    empty.write_bytes(b"")
    result = _cli("--json", "--key-file", str(empty), str(signed))
    assert result.returncode == 2 and "is empty" in json.loads(result.stdout)["error"]


def _op_glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _op_text(text: str) -> bytes:
    raw = text.encode()
    return b"X" + len(raw).to_bytes(4, "little") + raw


def _op_call(func: bytes, *args: bytes) -> bytes:
    return func + b"(" + b"".join(args) + b"tR"


def test_calls_of_values_the_scan_cannot_name_are_dangerous():
    # Each would run the command under pickle.loads: reflective lookups the
    # scan has no model for, lookups past what it follows, lru_cache around a
    # command. (Only inspected here.)
    cmd = _op_text("true")
    import_os = _op_call(_op_glob("importlib", "import_module"), _op_text("os"))
    table = b"}(" + b"".join(b"J" + k.to_bytes(4, "little") + _op_glob("builtins", "str")
                             for k in range(16))
    table += b"J\x10\x00\x00\x00" + _op_glob("builtins", "getattr") + b"u"
    pick = _op_call(_op_glob("operator", "getitem"), table,
                    _op_call(_op_glob("builtins", "int"), _op_text("16")))
    names = b"](" + import_os + b"".join(_op_text(n) for n in ["path", "os"] * 32)
    names += _op_text("system") + b"e"
    sneaky = {
        "resolve_name": _op_call(_op_glob("pkgutil", "resolve_name"), _op_text("os:system")),
        "getattr_static": _op_call(_op_glob("inspect", "getattr_static"), import_os,
                                   _op_text("system")),
        "object_getattribute": _op_call(_op_glob("builtins", "object.__getattribute__"),
                                        import_os, _op_text("system")),
        "lookup_of_17": _op_call(pick, import_os, _op_text("system")),
        "reduce_of_66": _op_call(_op_glob("functools", "reduce"), _op_glob("builtins", "getattr"),
                                 names),
        "lru_cache": _op_call(_op_glob("functools", "lru_cache"), _op_glob("os", "system")),
    }
    for name, func in sneaky.items():
        payload = b"\x80\x02" + _op_call(func, cmd) + b"."
        assert marinade.inspect(payload).dangerous, name
    # Standard-library functions that run a command under another name.
    for module, name in [("imaplib", "IMAP4_stream"), ("cProfile", "run"), ("profile", "run"),
                         ("uuid", "_get_command_stdout"),
                         ("multiprocessing.util", "spawnv_passfds")]:
        payload = b"\x80\x02" + _op_call(_op_glob(module, name), cmd) + b"."
        assert marinade.inspect(payload).dangerous, name

    # marinade's own lru_cache payloads stay clean.
    import functools

    @functools.lru_cache(maxsize=32)
    def cached(n):
        return n

    for options in ({}, {"standalone": True}):
        assert not marinade.inspect(marinade.dumps(cached, **options)).dangerous
