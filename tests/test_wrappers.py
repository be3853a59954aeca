"""Decorated and wrapped callables from ``__main__`` travel by value.

Plain pickle stores an ``lru_cache`` wrapper, a ``partial`` of a ``__main__``
function, a bound method... by reference, which a fresh process cannot
import (cloudpickle #178 for lru_cache). These tests build them in a producer
script and use them in a consumer that has none of the producer's code.
"""

import asyncio
import pickle

import marinade

from helpers import DUMP, LOAD, run_roundtrip


def test_lru_cache_and_cache(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=f"""
            import functools

            @functools.lru_cache(maxsize=3, typed=True)
            def square(x):
                "Square a number."
                return x * x

            @functools.cache
            def fib(n):
                return n if n < 2 else fib(n - 1) + fib(n - 2)

            class Calc:
                def __init__(self, k):
                    self.k = k

                @functools.lru_cache(maxsize=None)
                def times(self, x):
                    return self.k * x

            square(2); square(2); fib(25)  # warm caches must not travel
            square.note = "set after decoration"
            obj = {{"square": square, "fib": fib, "Calc": Calc}}
            {DUMP}
        """,
        consumer=f"""
            import functools
            {LOAD}
            square, fib, Calc = obj["square"], obj["fib"], obj["Calc"]
            print(type(square) is functools._lru_cache_wrapper)
            print(tuple(square.cache_info()), square.cache_parameters())
            print(square(3), square(3), square(3.0), tuple(square.cache_info()))
            print(square.__name__, square.__doc__, square.note)
            w = square.__wrapped__
            print(type(w).__name__, w(5), tuple(square.cache_info()))
            print(fib.cache_parameters(), tuple(fib.cache_info()))
            print(fib(30), fib.cache_info().currsize)  # recursion goes through the cache
            c = Calc(7)
            print(c.times(6), Calc.times.cache_info().misses, Calc.times.__qualname__)
        """,
    )
    assert out.splitlines() == [
        "True",
        "(0, 0, 3, 0) {'maxsize': 3, 'typed': True}",
        "9 9 9.0 (1, 2, 3, 2)",  # typed: 3 and 3.0 are separate entries
        "square Square a number. set after decoration",
        "function 25 (1, 2, 3, 2)",
        "{'maxsize': None, 'typed': False} (0, 0, None, 0)",
        "832040 31",
        "42 1 Calc.times",
    ]


def test_importable_lru_cache_is_by_reference(tmp_path):
    # fnmatch._compile_pattern is an lru_cache wrapper in the stdlib.
    out = run_roundtrip(
        tmp_path,
        producer=f"""
            import fnmatch
            obj = fnmatch._compile_pattern
            {DUMP}
        """,
        consumer=f"""
            import fnmatch
            {LOAD}
            print(obj is fnmatch._compile_pattern)
        """,
    )
    assert out == "True"


def test_decorators_partials_and_dispatch(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=f"""
            import contextlib, functools

            @contextlib.contextmanager
            def scaled(log, k):
                log.append("enter")
                try:
                    yield k * 10
                finally:
                    log.append("exit")

            def counted(label):
                def deco(f):
                    @functools.wraps(f)
                    def wrapper(*args, **kwargs):
                        wrapper.calls += 1
                        return (label, f(*args, **kwargs))
                    wrapper.calls = 0
                    return wrapper
                return deco

            @counted("add")
            def add(a, b, c=0):
                "Add numbers."
                return a + b + c

            def power(base, exp, mod=None):
                return pow(base, exp, mod)

            class Temp:
                def __init__(self, deg):
                    self.deg = deg
                def shift(self, by, scale=1):
                    return self.deg + by * scale
                warmer = functools.partialmethod(shift, 5)

            @functools.singledispatch
            def describe(x):
                return "thing"

            @describe.register
            def _(x: int):
                return "int " + describe(str(x))  # the dispatcher, from globals

            @describe.register(list)
            def _(x):
                return "list of " + ",".join(describe(i) for i in x)

            class Shape:
                @functools.singledispatchmethod
                def area(self, arg):
                    return "unknown"
                @area.register
                def _(self, arg: int):
                    return arg * arg

            describe(1); describe("x")  # fill the dispatch cache
            obj = dict(
                scaled=scaled, add=add,
                p=functools.partial(power, 2, mod=1000),
                p2=functools.partial(functools.partial(power, 3), 4),
                Temp=Temp, describe=describe, Shape=Shape,
            )
            {DUMP}
        """,
        consumer=f"""
            {LOAD}
            log = []
            with obj["scaled"](log, 4) as v:
                log.append(v)
            print(log, obj["scaled"].__name__)
            add = obj["add"]
            print(add(1, 2, c=3), add(1, 1), add.calls, add.__name__, add.__doc__,
                  add.__wrapped__(5, 5))
            p, p2 = obj["p"], obj["p2"]
            print(p(10), p.args, sorted(p.keywords), p2(), p2.args)
            t = obj["Temp"](20)
            print(t.warmer(), t.warmer(scale=2))
            d = obj["describe"]
            print(d(3), d([1, "a"]), d(2.5), sorted(c.__name__ for c in d.registry))
            print(obj["Shape"]().area(7), obj["Shape"]().area("x"))
        """,
    )
    assert out.splitlines() == [
        "['enter', 40, 'exit'] scaled",
        "('add', 6) ('add', 2) 2 add Add numbers. 10",
        "24 (2,) ['mod'] 81 (3, 4)",
        "25 30",
        "int thing list of int thing,thing thing ['int', 'list', 'object']",
        "49 unknown",
    ]


def test_bound_methods_and_operator_callables(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=f"""
            import operator

            class Counter:
                instances = 0
                def __init__(self):
                    self.n = 0
                def bump(self, by=1):
                    self.n += by
                    return self.n
                @classmethod
                def make(cls):
                    cls.instances += 1
                    return cls()
                @staticmethod
                def double(x):
                    return 2 * x

            class Point:
                def __init__(self, x, y):
                    self.x, self.y = x, y

            c = Counter()
            c.bump(5)
            obj = dict(
                counter=c, bump=c.bump, make=Counter.make, double=Counter.double,
                ag=operator.attrgetter("x", "y"), ig=operator.itemgetter(1, 0),
                mc=operator.methodcaller("bump", by=10), p=Point(3, 4),
            )
            {DUMP}
        """,
        consumer=f"""
            {LOAD}
            bump, c = obj["bump"], obj["counter"]
            print(bump.__self__ is c, bump(), c.n)
            made = obj["make"]()
            print(type(made) is type(c), made.__class__.instances, obj["double"](21))
            print(obj["ag"](obj["p"]), obj["ig"]("ab"), obj["mc"](c), c.n)
        """,
    )
    assert out.splitlines() == [
        "True 6 6",
        "True 1 42",
        "(3, 4) ('b', 'a') 16 16",
    ]


def test_function_reducers_rebuild_with_the_decorator():
    # In-process check of the reducers behind stdlib.function_reducers(), as the
    # Pickler wires them: the
    # payload names functools/contextlib instead of carrying their closures.
    import contextlib

    namespace = {"__name__": "dynamic"}
    exec(
        "import contextlib, functools\n"
        "@functools.singledispatch\n"
        "def kind(x):\n    return 'other'\n"
        "@kind.register\n"
        "def _(x: int):\n    return 'int'\n"
        "@contextlib.contextmanager\n"
        "def ctx(v):\n    yield v + 1\n"
        "@contextlib.asynccontextmanager\n"
        "async def actx(v):\n    yield v * 2\n",
        namespace,
    )
    kind, ctx, actx = namespace["kind"], namespace["ctx"], namespace["actx"]
    kind.tag = "extra"
    kind(1)
    data = marinade.dumps([kind, ctx, actx])
    # Re-decorated on load: the payload names the decorators and carries only
    # the user's functions, not functools'/contextlib's closures (~6 kB).
    assert b"singledispatch" in data and b"asynccontextmanager" in data
    assert len(data) < 2000, len(data)
    kind2, ctx2, actx2 = pickle.loads(data)
    assert kind2 is not kind and kind2(5) == "int" and kind2("s") == "other"
    assert set(kind2.registry) == {object, int} and kind2.tag == "extra"
    with ctx2(1) as v:
        assert v == 2
    assert isinstance(ctx2(0), contextlib.AbstractContextManager)

    async def use():
        async with actx2(4) as got:
            return got

    assert asyncio.run(use()) == 8
