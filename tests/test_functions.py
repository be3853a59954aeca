"""Functions by value, across processes.

Each test runs a producer script as ``__main__`` and loads its payload with
plain ``pickle`` in a fresh interpreter that cannot import the producer. Related
checks share one producer/consumer pair to keep the number of subprocesses low.
"""

from __future__ import annotations

import sys
import textwrap

import pytest

from helpers import DUMP, LOAD, run_roundtrip


def src(*parts: str) -> str:
    """Join script fragments, each dedented on its own (DUMP/LOAD are not indented)."""
    return "\n".join(textwrap.dedent(part) for part in parts)


def test_lambdas_nested_and_closures(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=src("""
            def make_adder(n):
                def add(x):
                    return x + n
                return add

            def make_fact():
                def fact(n):
                    return 1 if n <= 1 else n * fact(n - 1)
                return fact

            def make_parity():
                def is_even(n):
                    return True if n == 0 else is_odd(n - 1)
                def is_odd(n):
                    return False if n == 0 else is_even(n - 1)
                return is_even, is_odd

            def make_counter():
                count = 0
                def bump(step=1):
                    nonlocal count
                    count += step
                    return count
                return bump

            def make_box():
                value = []
                def get():
                    return value
                def put(v):
                    nonlocal value
                    value = v
                return get, put

            def outer_twice():
                def middle(a):
                    def inner(b):
                        return (a, b)
                    return inner
                return middle

            counter = make_counter()
            counter(10)  # state before the dump must travel
            get, put = make_box()
            put("before")
            obj = {
                "lambda": lambda x, y=2: x * y,
                "adder": make_adder(5),
                "fact": make_fact(),
                "parity": make_parity(),
                "counter": counter,
                "box": (get, put),
                "nested": outer_twice(),
            }
        """, DUMP),
        consumer=src(LOAD, """
            print(obj["lambda"](3), obj["lambda"](3, 4), obj["lambda"].__name__)
            print(obj["adder"](1))
            print(obj["fact"](6))
            even, odd = obj["parity"]
            print(even(10), odd(7), even(3))
            c = obj["counter"]
            print(c(), c(5))
            get, put = obj["box"]
            print(get())
            put("after")
            print(get())
            # the two closures really share one cell
            print(get.__closure__[0] is put.__closure__[0])
            print(obj["nested"](1)(2))
        """),
    )
    assert out.splitlines() == [
        "6 12 <lambda>",
        "6",
        "720",
        "True True False",
        "11 16",
        "before",
        "after",
        "True",
        "(1, 2)",
    ]


def test_empty_cells_stay_empty(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=src("""
            import types

            def never_assigned():
                if False:
                    x = 1
                def inner():
                    return x
                return inner

            def deleted():
                y = 1
                def inner():
                    return y
                del y
                return inner

            def assigned_later():
                def inner():
                    return z
                f = inner
                z = "late"
                return f

            obj = [never_assigned(), deleted(), assigned_later(), types.CellType()]
        """, DUMP),
        consumer=src(LOAD, """
            never, deleted, later, cell = obj
            for f in (never, deleted):
                try:
                    f()
                except NameError as exc:
                    print("NameError", type(exc) is NameError)
                else:
                    print("no error")
            print(later())
            try:
                cell.cell_contents
            except ValueError:
                print("ValueError")
        """),
    )
    assert out.splitlines() == [
        "NameError True",
        "NameError True",
        "late",
        "ValueError",
    ]


def test_main_functions_and_globals(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=src("""
            import threading

            SCALE = 3
            TABLE = {"a": 1, "b": 2}
            UNRELATED_LOCK = threading.Lock()  # unpicklable: must not be shipped
            UNRELATED_BIG = b"x" * 1_000_000

            def helper(x):
                return x * SCALE

            def uses_helper(x):
                return helper(x) + TABLE["b"]

            def in_comprehension():
                return [SCALE * i for i in range(3)]

            def in_nested():
                def inner():
                    return TABLE["a"]
                return inner()

            def setter(v):
                global COUNTER
                COUNTER = v

            def getter():
                return COUNTER

            COUNTER = 0

            def set_fresh(v):
                global FRESH  # not defined when dumped
                FRESH = v

            def get_fresh():
                return FRESH

            len = lambda seq: -1  # shadows the builtin for this module

            def shadowed():
                return len([1, 2, 3])

            obj = [uses_helper, in_comprehension, in_nested, setter, getter, shadowed,
                   set_fresh, get_fresh]
        """, DUMP, """
            size = _os.path.getsize(_os.environ["MARINADE_PAYLOAD"])
            assert size < 20_000, size
        """),
        consumer=src(LOAD, """
            (uses_helper, in_comprehension, in_nested, setter, getter, shadowed,
             set_fresh, get_fresh) = obj
            print(uses_helper(2))
            print(in_comprehension())
            print(in_nested())
            g = uses_helper.__globals__
            print(sorted(k for k in g if not k.startswith("__")))
            print("UNRELATED_LOCK" in g, "UNRELATED_BIG" in g)
            print(len({id(f.__globals__) for f in obj}))
            print(getter())
            setter(42)
            print(getter())
            print(shadowed())
            try:
                get_fresh()
            except NameError:
                print("NameError")
            set_fresh("fresh")
            print(get_fresh())
        """),
    )
    lines = out.splitlines()
    assert lines[:3] == ["8", "[0, 3, 6]", "1"]
    assert lines[3] == "['COUNTER', 'SCALE', 'TABLE', 'helper', 'len']"
    assert lines[4:] == ["False False", "1", "0", "42", "-1", "NameError", "fresh"]


def test_globals_are_not_shipped_when_unused(tmp_path):
    # An unpicklable global that no code refers to must not even be touched.
    out = run_roundtrip(
        tmp_path,
        producer=src("""
            class Poison:
                def __reduce__(self):
                    raise RuntimeError("Poison was pickled")

            POISON = Poison()
            USED = 7

            def f():
                return USED

            def g():
                return [lambda: USED for _ in range(2)][0]()

            obj = [f, g]
        """, DUMP),
        consumer=src(LOAD, """
            print(obj[0](), obj[1]())
        """),
    )
    assert out == "7 7"


def test_function_attributes_preserved(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=src("""
            import functools

            def plain(a, b=2, *, c=3, d):
                "the doc"
                return (a, b, c, d)

            plain.__dict__["custom"] = [1, 2]
            plain.tag = "tagged"

            def ann(x: int, y: "str" = "s") -> list:
                return [x, y]

            def renamed():
                pass
            renamed.__name__ = "other_name"
            renamed.__qualname__ = "Some.other_name"
            renamed.__module__ = "elsewhere"
            renamed.__doc__ = "set later"

            def undocumented():
                42
                return 1

            @functools.wraps(plain)
            def wrapper(*args, **kwargs):
                return ("wrapped", plain(*args, **kwargs))

            def outer():
                def local():
                    pass
                return local

            obj = [plain, ann, renamed, undocumented, wrapper, outer()]
        """, DUMP),
        consumer=src(LOAD, """
            plain, ann, renamed, undocumented, wrapper, local = obj
            print(plain.__name__, plain.__qualname__, plain.__module__)
            print(plain.__defaults__, plain.__kwdefaults__, plain.__doc__)
            print(plain.__dict__ == {"custom": [1, 2], "tag": "tagged"})
            print(plain(1, d=4))
            print(ann.__annotations__ == {"x": int, "y": "str", "return": list})
            print(renamed.__name__, renamed.__qualname__, renamed.__module__, renamed.__doc__)
            print(undocumented.__doc__)
            print(wrapper.__name__, wrapper.__doc__, wrapper.__wrapped__ is plain)
            print(wrapper(1, d=5))
            print(local.__qualname__)
        """),
    )
    assert out.splitlines() == [
        "plain plain __main__",
        "(2,) {'c': 3} the doc",
        "True",
        "(1, 2, 3, 4)",
        "True",
        "other_name Some.other_name elsewhere set later",
        "None",
        "plain the doc True",
        "('wrapped', (1, 2, 3, 5))",
        "outer.<locals>.local",
    ]


def test_future_annotations_get_type_hints(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=src("""
            from __future__ import annotations

            import typing
            from typing import Optional

            class OnlyInAnnotations:
                pass

            class Used:
                pass

            def f(a: OnlyInAnnotations, b: Optional[int] = None) -> list[Used]:
                return [Used()]

            def outer():
                def inner(x: OnlyInAnnotations) -> int:
                    return 1
                return inner

            obj = (f, outer(), OnlyInAnnotations, Used)
        """, DUMP),
        consumer=src(LOAD, """
            import typing
            f, inner, Only, Used = obj
            hints = typing.get_type_hints(f)
            print(f.__annotations__["a"])
            print(hints["a"] is Only, hints["b"] == typing.Optional[int])
            print(hints["return"] == list[Used])
            print(typing.get_type_hints(inner)["x"] is Only)
            print(type(f(None)[0]) is Used)
        """),
    )
    assert out.splitlines() == ["OnlyInAnnotations", "True True", "True", "True", "True"]


def test_exec_functions_with_custom_globals(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=src("""
            namespace = {"K": 10}
            exec('''
            def f(x):
                return x + K

            def g(x):
                return f(x) * 2
            ''', namespace)

            named = {"__name__": "fake_module", "M": 5}
            exec("def h():\\n    return M", named)

            bare = {}  # no __name__: functions get __module__ None
            exec("def k(x):\\n    return x * 2", bare)

            obj = (namespace["f"], namespace["g"], named["h"], bare["k"])
        """, DUMP),
        consumer=src(LOAD, """
            f, g, h, k = obj
            print(f(1), g(1), h(), k(4))
            print(f.__module__, h.__module__, k.__module__)
            print(f.__globals__ is g.__globals__)
        """),
    )
    assert out.splitlines() == ["11 22 5 8", "None fake_module None", "True"]


def test_generators_and_coroutines(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=src("""
            def gen(n):
                for i in range(n):
                    yield i * i

            def make_gen(step):
                def counting(n):
                    yield from range(0, n, step)
                return counting

            async def coro(x):
                return x + 1

            async def agen(n):
                for i in range(n):
                    yield i

            async def uses_both(n):
                total = 0
                async for v in agen(n):
                    total += await coro(v)
                return total

            obj = (gen, make_gen(2), coro, agen, uses_both)
        """, DUMP),
        consumer=src(LOAD, """
            import asyncio, inspect
            gen, counting, coro, agen, uses_both = obj
            print(list(gen(4)), list(counting(7)))
            print(inspect.isgeneratorfunction(gen), inspect.iscoroutinefunction(coro),
                  inspect.isasyncgenfunction(agen))
            print(asyncio.run(coro(1)))

            async def collect():
                return [v async for v in agen(3)]

            print(asyncio.run(collect()))
            print(asyncio.run(uses_both(4)))
        """),
    )
    assert out.splitlines() == [
        "[0, 1, 4, 9] [0, 2, 4, 6]",
        "True True True",
        "2",
        "[0, 1, 2]",
        "10",
    ]


def test_signatures(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=src("""
            def kwonly(a, *, b, c=3):
                return (a, b, c)

            def varargs(*args, **kwargs):
                return (args, sorted(kwargs.items()))

            def posonly(a, b=2, /, c=3, *rest, d, **kw):
                return (a, b, c, rest, d, kw)

            obj = (kwonly, varargs, posonly)
        """, DUMP),
        consumer=src(LOAD, """
            import inspect
            kwonly, varargs, posonly = obj
            print(kwonly(1, b=2))
            print(varargs(1, 2, x=3, y=4))
            print(posonly(1, d=4), posonly(1, 2, 3, 4, d=5, e=6))
            try:
                posonly(a=1, d=2)
            except TypeError:
                print("TypeError")
            print(inspect.signature(posonly))
        """),
    )
    assert out.splitlines() == [
        "(1, 2, 3)",
        "((1, 2), [('x', 3), ('y', 4)])",
        "(1, 2, 3, (), 4, {}) (1, 2, 3, (4,), 5, {'e': 6})",
        "TypeError",
        "(a, b=2, /, c=3, *rest, d, **kw)",
    ]


def test_importable_functions_stay_by_reference(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=src("""
            import os.path, json, textwrap
            obj = [os.path.join, json.dumps, textwrap.dedent, len]
        """, DUMP, """
            data = open(_os.environ["MARINADE_PAYLOAD"], "rb").read()
            assert len(data) < 200, len(data)
            assert _os.path.join.__module__.encode() in data
            assert b"json" in data and b"textwrap" in data
        """),
        consumer=src(LOAD, """
            import os.path, json, textwrap
            print(obj[0] is os.path.join, obj[1] is json.dumps, obj[2] is textwrap.dedent,
                  obj[3] is len)
        """),
    )
    assert out == "True True True True"


def test_same_function_twice_is_one_object(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=src("""
            def make():
                n = [0]
                def f():
                    n[0] += 1
                    return n[0]
                return f

            f = make()
            lam = lambda: 1
            obj = [f, f, lam, {"again": lam}, (f,)]
        """, DUMP),
        consumer=src(LOAD, """
            f, f2, lam, d, t = obj
            print(f is f2, f is t[0], lam is d["again"])
            f(); print(t[0]())
        """),
    )
    assert out.splitlines() == ["True True True", "2"]


@pytest.mark.skipif(sys.version_info < (3, 12), reason="type parameter syntax is 3.12+")
def test_type_parameter_syntax(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=src("""
            def ident[T](x: T) -> T:
                return x

            def pair[K, V: (int, str)](k: K, v: V) -> tuple[K, V]:
                return (k, v)

            obj = (ident, pair)
        """, DUMP),
        consumer=src(LOAD, """
            ident, pair = obj
            print(ident(3), pair("a", 1))
            (t,) = ident.__type_params__
            k, v = pair.__type_params__
            print(t.__name__, k.__name__, v.__name__, v.__constraints__)
            print(ident.__annotations__["x"] is t, ident.__annotations__["return"] is t)
        """),
    )
    assert out.splitlines() == [
        "3 ('a', 1)",
        "T K V (<class 'int'>, <class 'str'>)",
        "True True",
    ]


def test_pickler_reused_after_clear_memo():
    import io
    import pickle

    import marinade

    namespace = {"__name__": "not_importable", "OFFSET": 5}
    exec("def make():\n    data = [1]\n    return lambda: OFFSET + data[0]", namespace)
    func = namespace["make"]()
    buf = io.BytesIO()
    pickler = marinade.Pickler(buf)
    pickler.dump(func)
    first = buf.getvalue()
    pickler.clear_memo()
    buf.seek(0)
    buf.truncate()
    pickler.dump(func)
    assert pickle.loads(first)() == 6
    assert buf.getvalue() == first
    assert pickle.loads(buf.getvalue())() == 6
