"""Restricted loading: ``loads(data, allow=...)``."""

from __future__ import annotations

import collections
import copyreg
import datetime
import decimal
import io
import os
import pathlib
import pickle

import pytest

import marinade

from helpers import run_roundtrip

KEY = b"restricted-test-key-0123456789ab"


def _u(text: str) -> bytes:
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def _g(module: str, name: str) -> bytes:
    return _u(module) + _u(name) + b"\x93"


class _Shell:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


def test_plain_data_loads_with_the_default_allow_list():
    data = {"n": [1, 2.5, 3 + 4j, None, True], "s": {"a", "b"}, "f": frozenset({1}),
            "b": b"bytes", "ba": bytearray(b"x"), "t": (1, (2,)), "r": range(3),
            "od": collections.OrderedDict(a=1), "dd": collections.defaultdict(list),
            "dq": collections.deque([1]), "c": collections.Counter("aab"),
            "dt": datetime.datetime(2024, 5, 6, 7, 8, tzinfo=datetime.UTC),
            "td": datetime.timedelta(3), "dec": decimal.Decimal("1.5")}
    for protocol in range(0, pickle.HIGHEST_PROTOCOL + 1):
        payload = pickle.dumps(data, protocol=protocol)
        assert marinade.loads(payload, allow=()) == data, protocol
        assert marinade.load(io.BytesIO(payload), allow=True) == data


def test_globals_outside_the_allow_list_are_refused_before_loading(tmp_path):
    marker = tmp_path / "ran"
    payload = pickle.dumps(_Shell(marker))
    with pytest.raises(marinade.RestrictedError, match="os.system|posix.system") as info:
        marinade.loads(payload, allow=())
    assert info.value.offset is not None
    assert not marker.exists()
    # The caller extends the list: objects, "module.name", "module:name", wildcards.
    path = pathlib.PurePosixPath("/a/b")
    payload = pickle.dumps(path)
    with pytest.raises(marinade.RestrictedError, match="PurePosixPath"):
        marinade.loads(payload, allow=())
    module = pathlib.PurePosixPath.__module__  # pathlib._local on 3.13
    for allow in ([pathlib.PurePosixPath], [f"{module}.PurePosixPath"],
                  [f"{module}:PurePosixPath"], ["pathlib.*"],
                  [__import__(module, fromlist=["x"])], [(module, "PurePosixPath")]):
        assert marinade.loads(payload, allow=allow) == path, allow


def test_ext_opcodes_dotted_names_and_chains_are_refused(tmp_path):
    copyreg.add_extension("collections", "OrderedDict", 0xF2)
    try:
        ext = b"\x80\x04\x82\xf2)R."  # EXT1 -> OrderedDict(), which is allowed by name
        assert isinstance(pickle.loads(ext), collections.OrderedDict)
        with pytest.raises(marinade.RestrictedError, match="EXT"):
            marinade.loads(ext, allow=["collections.OrderedDict"])
    finally:
        copyreg.remove_extension("collections", "OrderedDict", 0xF2)
    dotted = b"\x80\x04" + _g("collections", "OrderedDict.fromkeys") + b"(]tR."
    with pytest.raises(marinade.RestrictedError, match="dotted"):
        marinade.loads(dotted, allow=["collections.*"])
    assert marinade.loads(dotted, allow=["collections.OrderedDict.fromkeys"]) == {}
    # A caller who allows getattr still cannot reach beyond the list with it.
    chain = (b"\x80\x04" + _g("builtins", "getattr") + b"(" + _g("builtins", "dict")
             + _u("__class__") + b"tR.")
    with pytest.raises(marinade.RestrictedError):
        marinade.loads(chain, allow=["builtins.getattr"])
    evil = (b"\x80\x04" + _g("builtins", "getattr") + b"(" + _g("builtins", "dict")
            + _u("fromkeys") + b"tR.")
    with pytest.raises(marinade.RestrictedError, match="builtins.dict.fromkeys"):
        marinade.loads(evil, allow=["builtins.getattr"])
    assert marinade.loads(evil, allow=["builtins.getattr", "builtins.dict.fromkeys"]) \
        == dict.fromkeys
    # Memory bombs through allowed constructors.
    bomb = b"\x80\x04" + _g("builtins", "bytearray") + b"J\x00\x00\x00\x7f\x85R."
    with pytest.raises(marinade.RestrictedError, match="not plain data"):
        marinade.loads(bomb, allow=())
    with pytest.raises(marinade.RestrictedError, match="memo index"):
        marinade.loads(b"\x80\x04]r\x00\x00\x00\x40.", allow=())


def test_code_needs_a_signature_and_then_loads(tmp_path):
    producer = """
        import dataclasses, enum, os, math, marinade
        KEY = b"restricted-test-key-0123456789ab"
        def area(r):
            return math.pi * r * r
        @dataclasses.dataclass(frozen=True)
        class Circle:
            r: float = 1.0
            def area(self):
                return area(self.r)
        class Unit(enum.Enum):
            CM = 1
        obj = (area, Circle(2.0), Unit.CM)
        with open(os.environ["MARINADE_PAYLOAD"], "wb") as out:
            for standalone in (False, True):
                for key in (None, KEY):
                    data = marinade.dumps(obj, standalone=standalone, key=key)
                    out.write(len(data).to_bytes(4, "little") + data)
    """
    consumer = """
        import os, marinade
        KEY = b"restricted-test-key-0123456789ab"
        blob = open(os.environ["MARINADE_PAYLOAD"], "rb").read()
        payloads = []
        while blob:
            n = int.from_bytes(blob[:4], "little")
            payloads.append(blob[4:4 + n])
            blob = blob[4 + n:]
        for data, signed in zip(payloads, [False, True, False, True]):
            try:
                f, circle, unit = marinade.loads(data, key=KEY if signed else None, allow=())
                print(signed, "loaded", round(f(1), 4), round(circle.area(), 4), unit.name,
                      type(unit).CM is unit)
            except marinade.RestrictedError as exc:
                print(signed, "refused", "carries code" in str(exc))
    """
    out = run_roundtrip(tmp_path, producer, consumer)
    assert out.splitlines() == ["False refused True", "True loaded 3.1416 12.5664 CM True",
                                "False refused True", "True loaded 3.1416 12.5664 CM True"]


def test_every_reconstructor_is_reviewed():
    # A reconstructor added to marinade must be listed (after checking what it
    # calls) before restricted loading accepts it: the list is not derived.
    import inspect

    from marinade import _rebuild, _rebuild_portable
    from marinade.frames import restore
    from marinade.safety.restricted import RECONSTRUCTORS

    public = {f"{module.__name__}.{name}" for module in (_rebuild, _rebuild_portable, restore)
              for name, value in vars(module).items()
              if inspect.isfunction(value) and value.__module__ == module.__name__
              and not name.startswith("_")}
    assert public == set(RECONSTRUCTORS)


def test_signed_but_restricted_still_checks_globals(tmp_path):
    marker = tmp_path / "ran"
    data = marinade.dumps(_Shell(marker), key=KEY)
    with pytest.raises(marinade.RestrictedError):
        marinade.loads(data, key=KEY, allow=())
    assert not marker.exists()
    marinade.loads(data, key=KEY)  # without allow=: a signed payload is trusted
    assert marker.exists()


def test_loads_exactly_the_checked_bytes_from_a_file():
    first, second = pickle.dumps({"a": 1}), pickle.dumps([2])
    stream = io.BytesIO(first + second)
    assert marinade.load(stream, allow=()) == {"a": 1}
    assert stream.tell() == len(first)
    assert marinade.load(stream, allow=()) == [2]

    class Pipe(io.RawIOBase):  # unseekable: must not read past the pickle's end
        def __init__(self, data):
            self.data = data

        def readable(self):
            return True

        def readinto(self, buffer):
            n = min(len(buffer), len(self.data))
            buffer[:n] = self.data[:n]
            self.data = self.data[n:]
            return n

    pipe = Pipe(first + second)
    assert marinade.load(pipe, allow=()) == {"a": 1}
    assert pipe.data == second


def test_malformed_input_is_one_error_with_an_offset():
    for bad in (b"", b"\x80\x04", b"\x80\x04K", b"\x80\x04N\x95", b"(((((.", b"N0."):
        with pytest.raises(marinade.UnpicklingError) as info:
            marinade.loads(bad, allow=())
        assert info.value.offset is not None
    # Valid structure that fails while loading (an allowed constructor refusing its
    # arguments): wrapped, with the cause kept.
    payload = b"\x80\x04" + _g("decimal", "Decimal") + _u("not a number") + b"\x85R."
    with pytest.raises(marinade.UnpicklingError) as info:
        marinade.loads(payload, allow=())
    assert info.value.offset is not None and info.value.__cause__ is not None


# Hand-made payloads (protocol 2 opcodes) for the attacks below.
def _glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _text(text: str) -> bytes:
    raw = text.encode()
    return b"X" + len(raw).to_bytes(4, "little") + raw


def _computed_dict(*pairs) -> bytes:
    """``builtins.dict([(key, value), ...])``: keys the scan cannot read."""
    out = _glob("builtins", "dict") + b"](" + b"".join(_text(k) + v + b"\x86" for k, v in pairs)
    return out + b"e\x85R"


def test_unsigned_payloads_cannot_swap_code_or_patch_allowed_globals(tmp_path):
    marker = tmp_path / "ran"
    source = f"def f(*a):\n    open({str(marker)!r}, 'w').write('ran')\n"
    spec = (b"(J\x01\x00\x00\x00" + _text("f") + _text("<x>") + b"J\x01\x00\x00\x00"
            + _text(source) + b"N))t")
    # A Counter whose instance dict holds __new__ = a code maker; copyreg then
    # calls it as if the Counter were a class; BUILD swaps a reconstructor's code.
    code_swap = (
        b"\x80\x02" + _glob("collections", "Counter") + b")Rq\x00"
        + _computed_dict(("__new__", _glob("marinade._rebuild_portable", "code")),
                         ("__init__", _glob("builtins", "slice")))
        + b"b0" + _glob("copyreg", "_reconstructor") + spec + b"h\x00J\x00\x00\x00\x00\x87Rq\x01"
        + b"0" + _glob("marinade._rebuild", "cell") + b"N" + _computed_dict(("__code__", b"h\x01"))
        + b"\x86b)R.")
    # Data-only payloads that would rewrite an allowed class for the whole process.
    literal_patch = (b"\x80\x02" + _glob("collections", "Counter") + b"N}" + _text("most_common")
                     + _glob("builtins", "slice") + b"s\x86b.")
    computed_patch = (b"\x80\x02" + _glob("collections", "Counter") + b"N"
                      + _computed_dict(("__init__", _glob("builtins", "slice"))) + b"\x86b.")
    for payload in (code_swap, literal_patch, computed_patch):
        assert marinade.inspect(payload).dangerous
        with pytest.raises(marinade.RestrictedError):
            marinade.loads(payload, allow=())
    assert not marker.exists()
    assert collections.Counter("aab").most_common(1) == [("a", 2)]


def test_a_load_loop_over_a_file_ends_with_eoferror():
    stream = io.BytesIO(pickle.dumps(1) + pickle.dumps([2]))
    loaded = []
    with pytest.raises(EOFError):
        while True:
            loaded.append(marinade.load(stream, allow=()))
    assert loaded == [1, [2]]
    with pytest.raises(marinade.UnpicklingError):  # garbage is not an end of stream
        marinade.load(io.BytesIO(b"\xff"), allow=())


def test_signed_restricted_loads_slotted_frozen_dataclasses(tmp_path):
    out = run_roundtrip(tmp_path, """
        import dataclasses, os, marinade

        @dataclasses.dataclass(frozen=True, slots=True)
        class Point:
            x: int
            y: int = 0

        key = b"restricted-test-key-0123456789ab"
        with open(os.environ["MARINADE_PAYLOAD"], "wb") as f:
            f.write(marinade.dumps([Point(1, 2), Point(3)], key=key))
    """, """
        import os, marinade
        data = open(os.environ["MARINADE_PAYLOAD"], "rb").read()
        points = marinade.loads(data, key=b"restricted-test-key-0123456789ab", allow=())
        print(points[0].x + points[1].x, type(points[0]).__name__)
    """)
    assert out == "4 Point"


def test_memory_and_cpu_bombs_through_other_doors_are_refused():
    def glob(module, name):
        return b"c" + module.encode() + b"\n" + name.encode() + b"\n"

    big = b"J" + (10**8).to_bytes(4, "little")  # (small enough not to hurt if let through)
    huge_range = glob("builtins", "range") + big + b"\x85R"
    doors = {
        "NEWOBJ": glob("builtins", "bytes") + big + b"\x85\x81",
        "__newobj__": glob("copyreg", "__newobj__") + glob("builtins", "bytes") + big + b"\x86R",
        "_reconstructor": glob("copyreg", "_reconstructor") + glob("builtins", "list")
        + glob("builtins", "list") + huge_range + b"\x87R",
        "array": glob("array", "array") + b"X\x01\x00\x00\x00q" + huge_range + b"\x86R",
        "fraction": glob("fractions", "Fraction") + b"X\x0b\x00\x00\x001e1_000_000" + b"\x85R",
    }
    let_through = []
    for name, body in doors.items():
        try:
            marinade.loads(b"\x80\x02" + body + b".", allow=())
        except marinade.RestrictedError:
            continue
        let_through.append(name)
    assert let_through == []
    # What plain pickle writes for these types still loads.
    import array
    import fractions

    data = [array.array("q", [1, 2]), fractions.Fraction(1, 3), b"ab", collections.deque([1])]
    assert marinade.loads(pickle.dumps(data, protocol=2), allow=()) == data
    assert marinade.loads(pickle.dumps(data, protocol=5), allow=()) == data
