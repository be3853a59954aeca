"""Errors raised while a checked or verified payload is being loaded.

The signed and restricted loaders check a payload before a single opcode
runs; what can still fail afterwards is the payload's own calls (a
constructor refusing its arguments, a module missing on the loading side, a
``__setstate__`` raising). The error then names the byte offset of the
opcode the unpickler was running, found after the fact (``safety/_locate.py``),
and what it was doing; when that cannot be told, the offset is None and the
message says why, never a made-up position.
"""

from __future__ import annotations

import decimal
import io
import pickle
import pickletools

import pytest

import marinade
from marinade.safety import signing

from helpers import run_roundtrip

KEY = b"errors-test-key-0123456789abcdef"
REDUCE, BUILD, STACK_GLOBAL, GLOBAL = b"R"[0], b"b"[0], 0x93, b"c"[0]


def _u(text: str) -> bytes:
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def _g(module: str, name: str) -> bytes:
    return _u(module) + _u(name) + b"\x93"


def _failing_reduce(data: bytes, marker: str) -> int:
    """Offset of the first REDUCE after the string ``marker`` in ``data``."""
    seen = False
    for op, arg, pos in pickletools.genops(data):
        if arg == marker:
            seen = True
        elif seen and op.name == "REDUCE":
            return pos
    raise AssertionError("no REDUCE after the marker")


class Fragile:
    """Allowed by the tests; its state check fails for a bad state."""

    def __init__(self, value=0):
        self.value = value

    def __setstate__(self, state):
        if state.get("value") == "bad":
            raise ValueError("refusing state")
        self.__dict__.update(state)


def _bad_decimals(protocol: int) -> bytes:
    values = [decimal.Decimal(i) for i in range(3)] + [{"k": decimal.Decimal("77")}]
    data = pickle.dumps(values, protocol=protocol)
    assert data.count(b"77") == 1
    return data.replace(b"77", b"x!")  # same length: no size field changes


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_failing_call_is_located_exactly(protocol):
    data = _bad_decimals(protocol)
    expected = _failing_reduce(data, "x!")
    with pytest.raises(marinade.UnpicklingError) as info:
        marinade.loads(data, allow=())
    error = info.value
    assert error.offset == expected and data[expected] == REDUCE
    assert "calling decimal.Decimal('x!')" in str(error)
    assert isinstance(error.__cause__, decimal.InvalidOperation)
    # Signed and loaded unchecked: the same opcode, after the envelope.
    signed = signing.sign(data, KEY)
    header = signing.parse(signed).header_size
    for load in (lambda: marinade.loads(signed, key=KEY),
                 lambda: marinade.load(io.BytesIO(signed), key=KEY),
                 lambda: marinade.loads(signed, key=KEY, allow=())):
        with pytest.raises(marinade.UnpicklingError) as info:
            load()
        assert info.value.offset == header + expected, str(info.value)
        assert not isinstance(info.value, marinade.SignatureError)


def test_a_failure_far_into_a_framed_payload():
    # Many frames: the unpickler reads a frame at a time, its file position
    # says nothing finer, yet the offset is exact.
    values = [{"n": i, "d": decimal.Decimal(i), "s": "x" * (i % 50)} for i in range(6_000)]
    values[5_000]["d"] = decimal.Decimal("123456789")
    data = pickle.dumps(values, protocol=5)
    assert sum(op.name == "FRAME" for op, _, _ in pickletools.genops(data)) > 3
    data = data.replace(b"123456789", b"12345678?")
    expected = _failing_reduce(data, "12345678?")
    with pytest.raises(marinade.UnpicklingError) as info:
        marinade.loads(data, allow=())
    assert info.value.offset == expected
    with pytest.raises(marinade.UnpicklingError) as info:
        marinade.load(io.BytesIO(data), allow=())
    assert info.value.offset == expected


def test_missing_globals_and_failing_state_are_located():
    for protocol in (0, 2, 4):
        data = pickle.dumps([1, Fragile(2)], protocol=protocol)
        module = Fragile.__module__.encode()
        missing = data.replace(module, b"no_such_module_xyz"[:len(module)].ljust(len(module),
                                                                                 b"q"))
        with pytest.raises(marinade.UnpicklingError) as info:
            marinade.loads(signing.sign(missing, KEY), key=KEY)
        offset = info.value.offset - signing.parse(signing.sign(missing, KEY)).header_size
        assert missing[offset] in (GLOBAL, STACK_GLOBAL), protocol
        assert "importing no_such_module" in str(info.value)
        assert isinstance(info.value.__cause__, ModuleNotFoundError)

        bad = pickle.dumps([1, Fragile("bad")], protocol=protocol)
        with pytest.raises(marinade.UnpicklingError) as info:
            marinade.loads(bad, allow=[Fragile])
        assert bad[info.value.offset] == BUILD, protocol
        assert "setting the state of" in str(info.value) and "Fragile" in str(info.value)
        assert marinade.loads(pickle.dumps(Fragile(3)), allow=[Fragile]).value == 3


def test_no_offset_rather_than_a_guess():
    # str(Decimal("bad")) memoizes nothing: either call may have raised.
    data = (b"\x80\x04" + _g("builtins", "str") + _g("decimal", "Decimal") + _u("bad")
            + b"\x85R\x85R.")
    with pytest.raises(marinade.UnpicklingError) as info:
        marinade.loads(data, allow=())
    assert info.value.offset is None
    message = str(info.value)
    assert "one of the steps" in message and "memoizes too little" in message
    assert "decimal.Decimal('bad')" in message
    assert "builtins.str" in message
    # The unpickler's own message can settle it: only a BUILD says this.
    data = b"\x80\x04" + _g("collections", "OrderedDict") + b")RK\x05b."
    with pytest.raises(marinade.UnpicklingError) as info:
        marinade.loads(data, allow=())
    assert data[info.value.offset] == BUILD and "state is not a dictionary" in str(info.value)


def test_a_missing_module_on_the_loading_side(tmp_path):
    producer = """
        import os, sys, marinade
        sys.path.insert(0, os.getcwd())
        open("helper_mod.py", "w").write("def double(x):\\n    return 2 * x\\n")
        import helper_mod
        def f(x):
            return helper_mod.double(x)
        data = marinade.dumps(f, key=b"errors-test-key-0123456789abcdef")
        open(os.environ["MARINADE_PAYLOAD"], "wb").write(data)
    """
    consumer = """
        import os, marinade
        data = open(os.environ["MARINADE_PAYLOAD"], "rb").read()
        try:
            marinade.loads(data, key=b"errors-test-key-0123456789abcdef")
        except marinade.UnpicklingError as exc:
            print(type(exc.__cause__).__name__)
            print(exc.offset is not None and exc.offset > 0)
            print(data[exc.offset] in (0x52, 0x93))  # REDUCE or STACK_GLOBAL
            print(exc)
    """
    lines = run_roundtrip(tmp_path, producer, consumer).splitlines()
    assert lines[:3] == ["ModuleNotFoundError", "True", "True"], lines
    assert "helper_mod" in lines[3]
