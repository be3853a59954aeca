"""Fuzzing the signed loader, the restricted loader and the inspector.

Random, truncated and mutated payloads (valid marinade, cloudpickle, plain
pickle and malicious seeds) must only ever produce a result or one library
error, ``marinade.UnpicklingError``, carrying a byte offset: never another
exception type, a hang or a crash. Nothing is executed along the way: the
inspector runs nothing, and the restricted loader refuses the malicious
seeds before loading, mutated or not.

``make test`` runs a fixed (derandomized) set of examples, so that the suite
gates CI the same way every time; to explore, set MARINADE_FUZZ_RANDOM=1 and
raise MARINADE_FUZZ_EXAMPLES (a random run of this kind found the
NEXT_BUFFER case tested at the end).
"""

from __future__ import annotations

import os
import pickle

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import marinade

KEY = b"fuzzing-key-0123456789abcdef0123"


class _Shell:
    def __reduce__(self):
        return os.system, ("touch /nonexistent/fuzz-marker",)


def _seeds() -> list[bytes]:
    import collections
    import datetime

    data = {"a": [1, 2.5, "x", b"y", None, True], "t": (1, (2, 3)), "s": {1, 2},
            "od": collections.OrderedDict(k=datetime.date(2020, 1, 2))}
    scale = 3
    seeds = [pickle.dumps(data, protocol=p) for p in (0, 2, 4, 5)]
    seeds += [marinade.dumps(lambda x: x * scale), marinade.dumps(data),
              marinade.dumps(lambda x: x + 1, standalone=True),
              marinade.dumps(lambda x: x // scale, portable=True),
              pickle.dumps(_Shell(), protocol=0), pickle.dumps(_Shell(), protocol=5)]
    try:
        import cloudpickle

        seeds.append(cloudpickle.dumps(lambda x: x - scale))
    except ImportError:  # pragma: no cover - cloudpickle is a dev dependency
        pass
    return seeds


SEEDS = _seeds()
SIGNED = [marinade.dumps(obj, key=KEY) for obj in ({"a": [1, 2]}, (1.5, "x"))]


@st.composite
def mutated(draw, seeds):
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "byte"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if kind == "truncate":
            del data[i:]
        elif kind == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[i:i + draw(st.integers(1, 8))]
        else:
            data[i] = draw(st.integers(0, 255))
    return bytes(data)


payloads = st.one_of(mutated(SEEDS), st.binary(max_size=64),
                     st.binary(max_size=32).map(lambda b: b"\x80\x05" + b))
# MARINADE_FUZZ_EXAMPLES=5000 for a longer run than the suite's.
FUZZ = settings(max_examples=int(os.environ.get("MARINADE_FUZZ_EXAMPLES", "150")),
                derandomize=not os.environ.get("MARINADE_FUZZ_RANDOM"),
                deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def _check_error(exc: marinade.UnpicklingError, data: bytes, slack: int = 0) -> None:
    if exc.offset is None:
        # Only a payload whose own calls failed while it loaded, at a step that
        # cannot be singled out, has no offset; the message says why.
        assert exc.__cause__ is not None, repr(exc)
        assert "memoizes too little to tell which" in str(exc) \
            or "cannot be pinned down" in str(exc) or "cannot be told" in str(exc), repr(exc)
        return
    assert isinstance(exc.offset, int), f"{exc!r} has no offset"
    assert 0 <= exc.offset <= len(data) + slack, (exc.offset, len(data))


@FUZZ
@given(payloads)
def test_inspect_gives_a_report_or_one_error(data):
    try:
        report = marinade.inspect(data)
    except marinade.UnpicklingError as exc:
        _check_error(exc, data)
    else:
        assert isinstance(report.dangerous, bool)
        str(report)
        report.to_json()


@FUZZ
@given(payloads)
def test_restricted_loads_gives_data_or_one_error(data):
    try:
        marinade.loads(data, allow=())
    except marinade.UnpicklingError as exc:
        _check_error(exc, data)
    assert not os.path.exists("/nonexistent/fuzz-marker")


@FUZZ
@given(mutated(SIGNED))
def test_signed_loads_refuses_every_mutation(data):
    expected = {s: marinade.loads(s, key=KEY) for s in SIGNED}
    for allow in (None, ()):
        if data in expected:
            assert marinade.loads(data, key=KEY, allow=allow) == expected[data]
            continue
        with pytest.raises(marinade.SignatureError) as info:
            marinade.loads(data, key=KEY, allow=allow)
        _check_error(info.value, data, slack=0)


@FUZZ
@given(payloads)
def test_unsigned_input_to_a_signed_loader_is_refused(data):
    with pytest.raises(marinade.SignatureError) as info:
        marinade.loads(data, key=KEY)
    _check_error(info.value, data)


DATA_SEEDS = [pickle.dumps({"a": [1, 2.5, "x", b"y", None], "t": (1, (2, 3)), "s": {1, 2}},
                           protocol=p) for p in range(pickle.HIGHEST_PROTOCOL + 1)] \
    + [s for s in SEEDS[:4]]


@FUZZ
@given(mutated(DATA_SEEDS))
def test_signed_payloads_that_fail_while_loading_say_where(data):
    # A signed payload is loaded without a check: malformed bytes reach the C
    # unpickler, and the error must still be one type with an offset. (Globals
    # are limited to plain data types here, so that no mutation can import
    # anything that acts.)
    from marinade.safety import _locate, restricted, signing

    def only_data(self, module, name):
        if f"{module}.{name}" not in restricted.DATA:
            raise pickle.UnpicklingError(f"test refuses {module}.{name}")

    signed = signing.sign(data, KEY)
    saved = _locate.Tracking.check_global
    _locate.Tracking.check_global = only_data
    try:
        marinade.loads(signed, key=KEY)
    except marinade.UnpicklingError as exc:
        assert not isinstance(exc, marinade.SignatureError)
        _check_error(exc, signed)
        assert exc.offset is None or exc.offset >= signing.parse(signed).header_size
    finally:
        _locate.Tracking.check_global = saved


def test_a_buffer_without_buffers_in_a_signed_payload_says_where():
    # Found by the fuzzer above: the end of the stream was a candidate offset,
    # and narrowing the candidates to buffer opcodes read past the data.
    from marinade.safety import signing

    signed = signing.sign(b"\x80\x04\x97", KEY)  # PROTO 4, NEXT_BUFFER, no STOP
    with pytest.raises(marinade.UnpicklingError) as info:
        marinade.loads(signed, key=KEY)
    assert not isinstance(info.value, marinade.SignatureError)
    _check_error(info.value, signed)
    assert info.value.offset == signing.parse(signed).header_size + 2  # the NEXT_BUFFER
