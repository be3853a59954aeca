"""Errors: what cannot be pickled is named with its path, bad payloads fail cleanly."""

from __future__ import annotations

import collections
import functools
import io
import pickle
import pickletools
import struct
import sys
import textwrap
import threading
import weakref
from pathlib import Path

import pytest

import marinade

from helpers import DUMP, LOAD, run_roundtrip, run_script

VENV = Path(__file__).resolve().parents[1] / ".venv"


def src(*parts: str) -> str:
    """Join script fragments, each dedented on its own (DUMP/LOAD are not indented)."""
    return "\n".join(textwrap.dedent(part) for part in parts)


def test_culprit_paths_in_main(tmp_path):
    # Run as __main__ so that everything travels by value, as in real use.
    proc = run_script(tmp_path, """
        import functools, pickle, threading
        import marinade

        lock = threading.Lock()

        def make_closure():
            held = threading.Lock()
            def f():
                return held
            return f

        def uses_global():
            return lock

        class Node:
            pass

        root = Node()
        root.child = Node()
        root.child.ok = [1, 2]
        root.child.lock = threading.Lock()

        class WithClassAttr:
            guard = threading.Lock()

        class WithStatic:
            @staticmethod
            def s():
                return lock

        def default(x=threading.Lock()):
            pass

        def outer_uses_class():
            return WithClassAttr

        cases = {
            "closure": make_closure(),
            "global": uses_global,
            "attribute": root,
            "nested": [1, {"key": make_closure()}],
            "class_attr": WithClassAttr,
            "via_global_class": outer_uses_class,
            "staticmethod": WithStatic,
            "default": default,
            "partial": functools.partial(print, 1, lock),
            "method": WithStatic().s,
            "lambda_to_instance": lambda: root,
        }
        for name, obj in cases.items():
            try:
                marinade.dumps(obj)
            except marinade.PicklingError as exc:
                assert isinstance(exc, pickle.PicklingError)
                assert isinstance(exc.__cause__, Exception)
                print(name, "|", str(exc).split(": ")[0])
            else:
                print(name, "| no error")
    """)
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(" | ") for line in proc.stdout.splitlines())
    lock = "_thread.lock"
    assert lines == {
        "closure": f"cannot pickle obj.__closure__[0].cell_contents -> {lock}",
        "global": f"cannot pickle obj.__globals__['lock'] -> {lock}",
        "attribute": f"cannot pickle obj.child.lock -> {lock}",
        "nested": f"cannot pickle obj[1]['key'].__closure__[0].cell_contents -> {lock}",
        "class_attr": f"cannot pickle obj.guard -> {lock}",
        "via_global_class": f"cannot pickle obj.__globals__['WithClassAttr'].guard -> {lock}",
        "staticmethod": f"cannot pickle obj.s.__func__.__globals__['lock'] -> {lock}",
        "default": f"cannot pickle obj.__defaults__[0] -> {lock}",
        "partial": f"cannot pickle obj.args[1] -> {lock}",
        "method": f"cannot pickle obj.__globals__['lock'] -> {lock}",
        "lambda_to_instance": f"cannot pickle obj.__globals__['root'].child.lock -> {lock}",
    }


def test_error_message_names_type_in_process():
    class Refuses:
        def __reduce_ex__(self, protocol):
            raise TypeError("Refuses refuses")

    def make():
        held = Refuses()

        def f():
            return held

        return f

    with pytest.raises(marinade.PicklingError) as info:
        marinade.dumps({"handler": make()})
    assert isinstance(info.value, pickle.PicklingError)
    assert str(info.value) == (
        "cannot pickle obj['handler'].__closure__[0].cell_contents -> "
        f"test_errors.{Refuses.__qualname__}: Refuses refuses")


def test_paths_through_containers_and_wrappers():
    lock = threading.Lock()
    pair = collections.namedtuple("Pair", "left right")

    class Bag(list):
        pass

    bag = Bag([1])
    bag.extra = lock
    factory = collections.defaultdict(lambda: lock)
    cases = [
        (pair(1, lock), "obj.right"),
        (bag, "obj.extra"),
        (factory, "obj.default_factory.__closure__[0].cell_contents"),
        (collections.OrderedDict(a=1, b=lock), "obj['b']"),
        ({"k" * 100: lock}, "obj['" + "k" * 36 + "...]"),
        (functools.partial(print, sep=lock), "obj.keywords['sep']"),
        (property(lambda self: lock), "obj.fget.__closure__[0].cell_contents"),
        (ValueError("bad", lock), "obj.args[1]"),
        (weakref.ref(bag), "obj().extra"),
    ]
    failing = KeyError("k")
    failing.detail = {"guard": lock}
    cases.append((failing, "obj.detail['guard']"))
    for obj, path in cases:
        with pytest.raises(marinade.PicklingError) as info:
            marinade.dumps(obj)
        assert str(info.value).startswith(f"cannot pickle {path} -> _thread.lock: "), info.value


def test_error_survives_subclass_with_own_init():
    # The diagnosis builds picklers of the user's class; one whose __init__
    # takes other arguments must not break (or mislead) the message.
    class Custom(marinade.Pickler):
        def __init__(self, file, label):
            super().__init__(file)
            self.label = label

    lock = threading.Lock()
    with pytest.raises(marinade.PicklingError, match=r"obj\[0\]\['x'\] -> _thread\.lock"):
        Custom(io.BytesIO(), "label").dump([{"x": lock}])


def test_cycles_do_not_hang_the_diagnosis():
    node = {"self": None, "lock": threading.Lock()}
    node["self"] = node
    items = [node, node]
    with pytest.raises(marinade.PicklingError, match=r"obj\[0\]\['lock'\] -> _thread\.lock"):
        marinade.dumps(items)


@pytest.mark.parametrize("protocol", [0, 1])
def test_old_protocols_rejected(protocol):
    with pytest.raises(ValueError, match="protocol 2 or higher"):
        marinade.dumps(lambda: 1, protocol=protocol)
    with pytest.raises(ValueError, match="protocol 2 or higher"):
        marinade.Pickler(io.BytesIO(), protocol)
    with pytest.raises(ValueError, match="protocol 2 or higher"):
        marinade.dump(1, io.BytesIO(), protocol)


def _with_code_tag(payload: bytes, old: int, new: int) -> bytes:
    """Rewrite the code-version tag (a BININT2 argument) of every code object."""
    out = bytearray(payload)
    found = 0
    for opcode, arg, pos in pickletools.genops(payload):
        if opcode.name == "BININT2" and arg == old:
            out[pos + 1:pos + 3] = struct.pack("<H", new)
            found += 1
    assert found, "no code tag in payload"
    return bytes(out)


def test_other_python_version_fails_with_both_versions(tmp_path):
    here = sys.version_info[0] * 256 + sys.version_info[1]
    out = run_roundtrip(tmp_path, producer=src("""
        def make(n):
            return lambda x: x + n
        obj = make(1)
    """, DUMP), consumer=src(LOAD, "print(obj(1))"))
    assert out == "2"  # the unmodified payload loads
    payload = (tmp_path / "payload.bin").read_bytes()
    fake = _with_code_tag(payload, here, 3 * 256 + 99)
    with pytest.raises(pickle.UnpicklingError) as info:
        pickle.loads(fake)
    message = str(info.value)
    assert "3.99" in message
    assert f"{sys.version_info[0]}.{sys.version_info[1]}" in message


def test_payload_from_another_interpreter(tmp_path):
    pythons = [VENV / name / "bin" / "python" for name in ("py311", "py312", "py313")]
    pythons = [p for p in pythons if p.exists()]
    if len(pythons) < 2:
        pytest.skip("needs two of the .venv interpreters")
    producer, consumer = pythons[0], pythons[1]
    payload = {"MARINADE_PAYLOAD": str(tmp_path / "payload.bin")}
    made = run_script(tmp_path, src("""
        square = lambda x: x * x
        obj = square
    """, DUMP), python=str(producer), env=payload,
        cwd=tmp_path / "producer")
    assert made.returncode == 0, made.stderr
    proc = run_script(tmp_path, """
        import os, pickle
        try:
            pickle.loads(open(os.environ["MARINADE_PAYLOAD"], "rb").read())
        except pickle.UnpicklingError as exc:
            print(exc)
        else:
            print("loaded")
    """, python=str(consumer), env=payload,
        cwd=tmp_path / "consumer")
    assert proc.returncode == 0, proc.stderr
    versions = []
    for python in (producer, consumer):
        version = run_script(tmp_path, "import sys; print('%d.%d' % sys.version_info[:2])",
                             python=str(python), cwd=tmp_path / "v")
        versions.append(version.stdout.strip())
    assert versions[0] != versions[1]
    assert versions[0] in proc.stdout and versions[1] in proc.stdout, proc.stdout


def test_corrupt_and_truncated_payloads_never_crash(tmp_path):
    # In a child process: a crash (segfault, abort) shows as a bad exit code.
    # A corrupted length field makes marshal/pickle try a huge allocation;
    # capping the address space turns that into MemoryError instead of a
    # visit from the OOM killer.
    proc = run_script(tmp_path, """
        import collections, pickle
        import marinade
        try:
            import resource
            resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
        except (ImportError, ValueError, OSError):
            pass

        class K:
            names = {"a", "b"}
            def m(self):
                return sorted(self.names)

        def make(n):
            def f(y):
                return n + y + len(K.names)
            return f

        payload = marinade.dumps([make(3), K, K(), lambda: 1, {"d": (1, 2.5, "s")}])
        truncated = collections.Counter()
        for end in range(len(payload)):
            try:
                pickle.loads(payload[:end])
            except Exception as exc:
                truncated[type(exc).__name__] += 1
            else:
                truncated["loaded"] += 1
        flipped = 0
        for i in range(len(payload)):
            for value in (0x00, 0xFF, payload[i] ^ 0x01, payload[i] ^ 0x80):
                try:
                    pickle.loads(payload[:i] + bytes([value]) + payload[i + 1:])
                except Exception:
                    pass
                flipped += 1
        print(len(payload), truncated.get("loaded", 0), flipped)
        print(truncated["UnpicklingError"] + truncated["EOFError"] == len(payload))
    """)
    assert proc.returncode == 0, proc.stderr
    size, loaded, flipped, *_ = proc.stdout.split()
    assert int(loaded) == 0  # no prefix of a payload loads as if complete
    assert int(flipped) == 4 * int(size)
    assert proc.stdout.splitlines()[1] == "True"


def test_errors_are_also_of_the_kind_plain_pickle_raised():
    # Code written for cloudpickle catches what pickle raises (TypeError for
    # a lock, ValueError from a __reduce__): marinade's error is both.
    import pickle as _pickle
    import threading as _threading

    class Refuses:
        def __reduce__(self):
            raise ValueError("not today")

    for obj, kind in (({"lock": _threading.Lock()}, TypeError), ([Refuses()], ValueError)):
        try:
            marinade.dumps(obj)
        except kind as error:
            assert isinstance(error, marinade.PicklingError)
            assert isinstance(error, _pickle.PicklingError)
            again = _pickle.loads(_pickle.dumps(error))  # a pool sends it back
            assert type(again) is type(error) and str(again) == str(error)
        else:
            raise AssertionError(f"{obj!r} pickled")
