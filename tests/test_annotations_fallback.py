"""String annotations (PEP 563) that marinade must not resolve at dump time.

Classes by value get their string annotations evaluated where they are
pickled, functions get the globals their string annotations name: both so
that ``typing.get_type_hints`` works where the payload loads. An annotation
whose value would not pickle (``Annotated[int, LOCK]``) must stay a string
instead of failing the dump, and a string holding a call is not evaluated
(that would run user code during ``dumps``).
"""

import typing

import pytest

from marinade.reduce import _annotations

from helpers import DUMP, LOAD, run_roundtrip, run_script

ROUNDTRIP_PRODUCER = f"""
    from __future__ import annotations

    import dataclasses
    import threading
    import typing
    from decimal import Decimal
    from typing import Annotated, Optional

    LOCK = threading.Lock()
    CALLS = []

    def side():
        CALLS.append(1)
        return int

    @dataclasses.dataclass(frozen=True)
    class Range:
        low: int
        high: int

    POSITIVE = Range(0, 5)

    class Guarded:
        value: Annotated[int, LOCK]
        other: Optional[Decimal]
        def me(self):
            return Guarded  # (pickled alone, a method drags its class along)

    class Called:
        direct: "side()"
        nested: list["side()"]
        plain: Decimal

    class Meta:
        bounded: Annotated[int, POSITIVE]

    def guarded(x: Annotated[int, LOCK], y: Decimal) -> Guarded:
        return x

    def clean(x: Annotated[int, POSITIVE], y: Optional[Decimal]) -> Meta:
        return x

    obj = (Guarded, Called, Meta, guarded, clean)
    {DUMP}
    assert not CALLS, "an annotation was evaluated with its call"
    assert typing.get_type_hints(Called)["plain"] is Decimal and CALLS  # (side() does run here)
"""

ROUNDTRIP_CONSUMER = f"""
    import decimal
    import typing
    from typing import Optional

    {LOAD}
    Guarded, Called, Meta, guarded, clean = obj
    hints = typing.get_type_hints
    # The lock's annotation stays a string; its neighbour is resolved.
    ann = Guarded.__annotations__
    print(ann["value"], ann["other"] == Optional[decimal.Decimal], Guarded().me() is Guarded)
    ann = Called.__annotations__
    print(ann["direct"], ann["nested"], ann["plain"] is decimal.Decimal)
    # Annotated metadata that pickles is resolved, and keeps working.
    meta = hints(Meta, include_extras=True)["bounded"].__metadata__[0]
    print(type(meta).__name__, meta.low, meta.high, meta == type(meta)(0, 5))
    # Functions: the lock stays behind; the rest travels and resolves. (The
    # two share one globals dict: Annotated comes with clean's annotations.)
    print(guarded(3, None), "LOCK" in guarded.__globals__, guarded.__globals__["Decimal"])
    try:
        hints(guarded)
    except NameError as exc:
        print("NameError", exc.name)
    h = hints(clean, include_extras=True)
    print(h["x"].__metadata__[0].high, h["y"] == Optional[decimal.Decimal],
          h["return"] is clean.__globals__["Meta"], clean(4, None))
"""


def test_unpicklable_or_called_annotations_stay_strings(tmp_path):
    out = run_roundtrip(tmp_path, ROUNDTRIP_PRODUCER, ROUNDTRIP_CONSUMER)
    assert out.splitlines() == [
        "Annotated[int, LOCK] True True",
        "'side()' list['side()'] True",
        "Range 0 5 True",
        "3 False <class 'decimal.Decimal'>",
        "NameError LOCK",
        "5 True True 4",
    ]


FAILURE_SCRIPT = """
    import threading
    import typing

    import marinade

    class Config:
        lock = threading.Lock()

    class Holder:
        pass
    Holder.__annotations__ = {"config": "Config"}  # as from __future__ import annotations

    class Plain:  # no strings: the lock is in the annotation itself
        guard: typing.Annotated[int, threading.Lock()]

    def method_holder():
        class Local:
            config: "Config"
            def me(self):
                return Local
        return Local

    def loose(x: typing.Annotated[int, threading.Lock()]):
        return x

    for obj in (Holder, Plain, method_holder(), loose):
        try:
            marinade.dumps(obj)
        except Exception as exc:
            print(str(exc).split(" -> ")[0])
        else:
            print("pickled")
"""


def test_failure_inside_annotations_names_them(tmp_path):
    # A class by value named by an annotation is shipped as it is (not tried
    # first: that would pickle it twice); if it fails, the path says where.
    proc = run_script(tmp_path, FAILURE_SCRIPT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "cannot pickle obj.__annotations__['config'].lock",
        "cannot pickle obj.__annotations__['guard'].__reduce__()[1][1][1]",
        "cannot pickle obj.__annotations__['config'].lock",
        "cannot pickle obj.__annotations__['x'].__reduce__()[1][1][1]",
    ]


@pytest.mark.parametrize("text", [
    "int", "Optional[Node]", "typing.Optional[decimal.Decimal]", "int | None",
    "Callable[[int, str], list[Node]]", "Literal[-1, 'a', b'x', None]", "tuple[()]",
    "tuple[int, ...]", "Annotated[int, 'any text (kept)']", "list['Node']", "tuple[*Ts]", "*Ts",
    "dict[str, 'Optional[Node]']",
])
def test_type_expressions_are_evaluated(text):
    assert _annotations.evaluable(text)


@pytest.mark.parametrize("text", [
    "side()", "Annotated[int, Field(gt=0)]", "list['side()']", "'side()'",
    "(lambda: int)()", "[x for x in y]", "a if b else c", "a + b", "a.b().c", "not int",
    "x := int", "f'{int}'", "not valid python",
])
def test_other_expressions_are_not(text):
    assert not _annotations.evaluable(text)


def test_will_pickle():
    import threading

    lock = threading.Lock()
    assert _annotations.will_pickle(typing.Union[typing.Callable[[int], typing.Any], None])  # noqa: UP007
    assert _annotations.will_pickle(typing.Annotated[list[int], "meta", 3])
    assert _annotations.will_pickle(typing.Literal[-1, "a"] | None)
    assert not _annotations.will_pickle(typing.Annotated[int, lock])
    assert not _annotations.will_pickle(dict[str, typing.Annotated[int, lock]])
    assert not _annotations.will_pickle(lock)
