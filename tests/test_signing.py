"""Signed payloads: ``dumps(obj, key=...)`` and ``loads(data, key=...)``."""

from __future__ import annotations

import io
import pickle

import pytest

import marinade
from marinade.safety import signing

from helpers import run_roundtrip

KEY = b"0123456789abcdef0123456789abcdef"


def test_signed_roundtrip_across_processes(tmp_path):
    producer = """
        import os, marinade
        scale = 3
        def f(x):
            return x * scale
        with open(os.environ["MARINADE_PAYLOAD"], "wb") as out:
            out.write(marinade.dumps(f, key=b"0123456789abcdef0123456789abcdef", key_id="2024"))
            # a second, standalone payload signed with a rotated key, in the same file
            marinade.dump(lambda: "second", out, standalone=True, key={"2025": "new key"},
                          key_id="2025")
            # and a portable one (code as source)
            marinade.dump(f, out, portable=True, key=b"0123456789abcdef0123456789abcdef")
    """
    consumer = """
        import os, pickle, marinade
        keyring = {"2024": b"0123456789abcdef0123456789abcdef", "2025": "new key"}
        with open(os.environ["MARINADE_PAYLOAD"], "rb") as f:
            data = f.read()
            f.seek(0)
            first = marinade.load(f, key=keyring)
            second = marinade.load(f, key=keyring)
            third = marinade.load(f, key=keyring["2024"], allow=())
            assert f.read() == b""
        try:
            pickle.loads(data)
        except pickle.UnpicklingError as exc:
            print("plain pickle refuses:", exc)
        try:
            marinade.loads(data[:60], key=keyring)
        except marinade.SignatureError as exc:
            print("truncated:", type(exc).__name__)
        print(first(14), second(), third(2))
    """
    out = run_roundtrip(tmp_path, producer, consumer)
    lines = out.splitlines()
    assert lines[0].startswith("plain pickle refuses: invalid load key, '\\x00'")
    assert lines[1] == "truncated: SignatureError"
    assert lines[2] == "42 second 6"


def test_every_flipped_bit_and_truncation_is_refused_before_loading():
    loaded = []
    import builtins

    builtins._marinade_test_log = loaded  # reachable by name from the payload
    try:
        class Effect:  # loading it appends to the log, found by name at load time
            def __reduce__(self):
                return (exec, ("import builtins; builtins._marinade_test_log.append('ran')",))

        data = marinade.dumps([1, Effect()], key=KEY, key_id="k")
        assert marinade.loads(data, key=KEY) == [1, None] and loaded == ["ran"]
        loaded.clear()
        for i in range(len(data)):
            for bit in range(8):
                bad = bytearray(data)
                bad[i] ^= 1 << bit
                with pytest.raises(marinade.SignatureError) as info:
                    marinade.loads(bytes(bad), key=KEY)
                assert info.value.offset is not None
        for n in range(len(data)):
            with pytest.raises(marinade.SignatureError):
                marinade.loads(data[:n], key=KEY)
        with pytest.raises(marinade.SignatureError):
            marinade.loads(data + b"\0", key=KEY)
        assert loaded == []  # not one opcode of a refused payload ran
    finally:
        del builtins._marinade_test_log


def test_wrong_key_unknown_id_and_unsigned_payloads():
    data = marinade.dumps({"a": 1}, key=KEY, key_id="current")
    with pytest.raises(marinade.SignatureError, match="signature mismatch"):
        marinade.loads(data, key=b"another key")
    with pytest.raises(marinade.SignatureError, match="not in the keyring"):
        marinade.loads(data, key={"old": KEY})
    with pytest.raises(marinade.SignatureError, match="not signed") as info:
        marinade.loads(marinade.dumps({"a": 1}), key=KEY)
    assert info.value.offset == 0
    with pytest.raises(marinade.SignatureError):
        marinade.load(io.BytesIO(pickle.dumps(1)), key=KEY)
    # Rotation: several keys accepted, by id or in turn.
    assert marinade.loads(data, key={"old": b"old key", "current": KEY}) == {"a": 1}
    assert marinade.loads(data, key=[b"old key", KEY]) == {"a": 1}
    # Any buffer works, and is copied before it is checked.
    assert marinade.loads(bytearray(data), key=KEY) == {"a": 1}
    assert marinade.loads(memoryview(data), key=KEY) == {"a": 1}


def test_errors_are_one_library_type():
    assert issubclass(marinade.SignatureError, marinade.UnpicklingError)
    assert issubclass(marinade.SignatureError, pickle.UnpicklingError)
    # A correctly signed payload that is not a pickle: one error type, with an offset.
    data = signing.sign(b"\x80\x05garbage", KEY)
    with pytest.raises(marinade.UnpicklingError) as info:
        marinade.loads(data, key=KEY)
    assert not isinstance(info.value, marinade.SignatureError)
    envelope = signing.parse(data)
    assert envelope.header_size <= info.value.offset <= len(data)
    assert info.value.__cause__ is not None
    # The offset survives pickling of the error itself.
    copy = pickle.loads(pickle.dumps(info.value))
    assert copy.offset == info.value.offset


def test_key_arguments_are_checked():
    with pytest.raises(ValueError):
        marinade.dumps(1, key=b"")
    with pytest.raises(ValueError, match="key_id"):
        marinade.dumps(1, key={"a": b"1", "b": b"2"})
    with pytest.raises(TypeError):
        marinade.dumps(1, key=12345)
    assert marinade.loads(marinade.dumps(1, key={"only": b"k"}), key={"only": b"k"}) == 1
    with pytest.raises(TypeError, match="combined"):
        marinade.loads(marinade.dumps(1, key=KEY), key=KEY, encoding="latin1")
    # key=None and allow=None is plain loading.
    assert marinade.loads(pickle.dumps(2), key=None) == 2
    with pytest.raises(marinade.SignatureError, match="pass key="):
        marinade.loads(marinade.dumps(1, key=KEY), allow=())


def test_envelope_layout_is_as_documented():
    data = marinade.dumps([1], key=KEY, key_id="id")
    assert data.startswith(signing.MAGIC + bytes([signing.VERSION, 2]) + b"id")
    envelope = signing.parse(data)
    assert envelope.key_id == "id"
    assert data[envelope.header_size:] == marinade.dumps([1])
    import hashlib
    import hmac

    mac = hmac.new(KEY, data[: envelope.header_size - 32] + data[envelope.header_size:],
                   hashlib.sha256).digest()
    assert mac == envelope.mac
