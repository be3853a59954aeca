"""Subclasses of types whose reduce forgets the subclass's attributes.

``datetime``, ``Decimal``, ``Fraction``, ``defaultdict``, ``ipaddress``,
``pathlib`` and numpy's ``ndarray`` reduce to their value only; plain pickle
(and cloudpickle, and dill except for ndarray) silently drop the attributes
a subclass instance carries. Each test builds the instances in a ``__main__``
script and checks them in a fresh interpreter elsewhere.
"""

from __future__ import annotations

import inspect
import pickle
import sys
import textwrap

import pytest

import marinade

from helpers import DUMP, LOAD, run_roundtrip

BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)


def consume(source: str) -> str:
    """A consumer script: LOAD (binds ``obj``), then ``source``."""
    return LOAD + "\n" + textwrap.dedent(source)


def produce(source: str) -> str:
    """A producer script: ``source`` (which binds ``obj``), then DUMP."""
    return textwrap.dedent(source) + "\n" + DUMP


def test_stdlib_value_types_keep_subclass_attributes(tmp_path):
    out = run_roundtrip(tmp_path, produce("""
        import collections, datetime, decimal, fractions, ipaddress, pathlib

        class Stamp(datetime.datetime):
            pass

        class Day(datetime.date):
            pass

        class Span(datetime.timedelta):
            pass

        class Price(decimal.Decimal):
            pass

        class Ratio(fractions.Fraction):
            pass

        class Groups(collections.defaultdict):
            pass

        class Host(ipaddress.IPv4Address):
            pass

        class Where(pathlib.PurePosixPath):
            pass

        class Tally(collections.Counter):   # Counter's reduce drops even its own __dict__
            pass

        class Slotted(datetime.datetime):
            __slots__ = ("source", "__unit")   # no __dict__: the values live in slots

            def unit(self):
                return self.__unit

            def set_unit(self, unit):
                self.__unit = unit

        shared = {"calibrated": True}
        items = [Stamp(2024, 5, 6, 7, 8), Day(2024, 1, 2), Span(days=3), Price("2.50"),
                 Ratio(1, 3), Groups(list, {"a": [1]}), Host("10.0.0.1"), Where("/srv/data"),
                 Tally("abca"), collections.Counter("xy")]
        for i, item in enumerate(items):
            item.source = f"sensor-{i}"
            item.meta = shared          # one object, shared by all of them
        items[0].myself = items[0]      # a cycle through the instance's own dict
        slotted = Slotted(2020, 1, 1)
        slotted.source = "slots"
        slotted.set_unit("s")
        obj = (items, slotted)
    """), consume("""
        import datetime
        items, slotted = obj
        print([type(i).__name__ for i in items])
        print([i.source for i in items])
        print(all(i.meta is items[0].meta for i in items), items[0].meta)
        print(items[0].myself is items[0])
        print(items[0] == datetime.datetime(2024, 5, 6, 7, 8), str(items[3]), items[4],
              dict(items[5]), items[5]["new"], str(items[6]), str(items[7]))
        print(items[8].most_common(1), items[9] == {"x": 1, "y": 1})
        print(slotted.source, slotted.unit(), slotted.year, hasattr(slotted, "__dict__"))
    """))
    assert out.splitlines() == [
        "['Stamp', 'Day', 'Span', 'Price', 'Ratio', 'Groups', 'Host', 'Where', 'Tally', "
        "'Counter']",
        str([f"sensor-{i}" for i in range(10)]),
        "True {'calibrated': True}",
        "True",
        "True 2.50 1/3 {'a': [1]} [] 10.0.0.1 /srv/data",
        "[('a', 2)] True",
        "slots s 2020 False",
    ]


def test_only_types_that_lose_something_change(tmp_path):
    # deque and array send their __dict__ already; an ordinary class and a
    # subclass that took charge of its state (__getstate__/__setstate__) are
    # pickled exactly as plain pickle does.
    out = run_roundtrip(tmp_path, produce("""
        import collections, datetime, pickle, pickletools
        import marinade

        class Queue(collections.deque):
            pass

        class Plain:
            pass

        class Chosen(datetime.date):
            def __getstate__(self):
                return {"kept": self.kept}

            def __setstate__(self, state):
                self.__dict__.update(state)

        q = Queue([1, 2]); q.name = "q"
        p = Plain(); p.x = 1
        c = Chosen(2024, 1, 1); c.kept = 1; c.dropped = 2

        def uses_setter(data):
            return any(op.name == "SHORT_BINUNICODE" and arg == "set_subclass_state"
                       for op, arg, _ in pickletools.genops(data))

        obj = (q, p, c, (uses_setter(marinade.dumps(q)), uses_setter(marinade.dumps(c))))
    """), consume("""
        q, p, c, setter_used = obj
        print(*setter_used)
        print(list(q), q.name, p.x)
        print(hasattr(c, "kept"), hasattr(c, "dropped"))
    """))
    # datetime.date's reduce ignores Chosen's __getstate__, as with plain pickle.
    assert out.splitlines() == ["False False", "[1, 2] q 1", "False False"]


def test_ndarray_subclass_keeps_its_attributes(tmp_path):
    pytest.importorskip("numpy")
    out = run_roundtrip(tmp_path, produce("""
        import numpy as np

        class Quantity(np.ndarray):
            def __array_finalize__(self, obj):
                self.units = getattr(obj, "units", None)

        q = np.arange(6.0).reshape(2, 3).view(Quantity)
        q.units = "m"
        q.note = "calibrated"
        obj = [q, q]                   # identity kept within the payload
    """), consume("""
        import numpy as np
        q, again = obj
        print(type(q).__name__, q.units, q.note, q is again)
        print(q.shape, q.sum(), (q * 2).units)
    """))
    assert out.splitlines() == ["Quantity m calibrated True", "(2, 3) 15.0 m"]


def test_base_state_and_setstate_pass_through_standalone(tmp_path):
    # A base whose reduce sends its own state to its own __setstate__ (as
    # ndarray does) and whose instances have no __dict__: the subclass's
    # attributes go through _rebuild.set_subclass_state, shipped by value in a
    # standalone payload, so the loader needs only the standard library.
    # (Vector, below, is written into the script: by value there.)
    producer = inspect.getsource(Vector) + textwrap.dedent("""
        class Named(Vector):
            pass

        v = Named(1, 2, 3)
        v.name = "velocity"
        obj = v
        import os as _os, marinade as _marinade
        open(_os.environ["MARINADE_PAYLOAD"], "wb").write(_marinade.dumps(obj, standalone=True))
    """)
    consumer = """
        import os, pickle, sys
        try:
            import marinade
        except ImportError:
            pass
        else:
            raise SystemExit("marinade is importable in the consumer")
        v = pickle.loads(open(os.environ["MARINADE_PAYLOAD"], "rb").read())
        print(type(v).__name__, v.items, v.name)
    """
    out = run_roundtrip(tmp_path, producer, consumer, consumer_python=BASE_PYTHON,
                        consumer_flags=("-I", "-S"))
    assert out == "Named [1, 2, 3] velocity"


def test_in_process_and_copyreg_take_precedence():
    import copyreg
    import datetime

    class Stamp(datetime.datetime):
        pass

    s = Stamp(2024, 1, 1)
    s.tag = "x"
    assert pickle.loads(marinade.dumps(s)).tag == "x"
    # A reducer registered for the class wins, as for any other class.
    copyreg.pickle(Stamp, lambda obj: (Stamp, (2000, 1, 1)))
    try:
        back = pickle.loads(marinade.dumps(s))
        assert back.year == 2000 and not hasattr(back, "tag")
    finally:
        del copyreg.dispatch_table[Stamp]


class Vector:
    """A base whose reduce sends its own state to its own __setstate__, and
    whose instances have no __dict__ (as ndarray)."""
    __slots__ = ("items",)

    def __init__(self, *items):
        self.items = list(items)

    def __reduce__(self):
        return type(self), (), {"packed": ",".join(map(str, self.items))}

    def __setstate__(self, state):
        self.items = [int(x) for x in state["packed"].split(",")]


class Labeled(Vector):
    pass


def test_restricted_loading_accepts_the_state_setter_unsigned():
    v = Labeled(4, 5)
    v.label = "ok"
    data = marinade.dumps(v)
    assert b"set_subclass_state" in data
    back = marinade.loads(data, allow=[Labeled])
    assert (type(back), back.items, back.label) == (Labeled, [4, 5], "ok")
    report = marinade.inspect(data)
    assert not report.dangerous and not report.findings
    assert "marinade._rebuild.set_subclass_state" in [c["callable"] for c in report.calls]
