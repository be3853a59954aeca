"""Portable payloads: pickled on one CPython version, loaded on another.

The cross-version tests produce with the interpreter running pytest and load
with each installed one (.venv/py311, py312, py313), so running this file
under the three venvs covers the full 3x3 matrix, both directions. Each
producer batches many kinds of objects in one payload (two subprocesses per
consumer version).
"""

from __future__ import annotations

import json
import linecache
import pickle
import sys
import textwrap
from pathlib import Path

import pytest

import marinade
from marinade import _rebuild, portable

from helpers import run_roundtrip

ROOT = Path(__file__).resolve().parent.parent
INTERPRETERS = {v: ROOT / ".venv" / f"py{v}" / "bin" / "python" for v in ("311", "312", "313")}

PORTABLE_DUMP = """
import os as _os, marinade as _marinade
with open(_os.environ["MARINADE_PAYLOAD"], "wb") as _f:
    _f.write(_marinade.dumps(obj, portable=True))
"""


def _consumer_python(version: str) -> str:
    python = INTERPRETERS[version]
    if not python.exists():
        pytest.skip(f"no interpreter at {python}")
    return str(python)


def _line_of(script: str, line: str) -> int:
    return textwrap.dedent(script).splitlines().index(line) + 1


def _cross(tmp_path, producer: str, consumer: str, version: str) -> dict:
    out = run_roundtrip(tmp_path, textwrap.dedent(producer) + PORTABLE_DUMP, consumer,
                        consumer_python=_consumer_python(version))
    result = json.loads(out.splitlines()[-1])
    return result


# Functions, lambdas, closures, decorators, globals, classes. The payload is
# made by the test's interpreter.
FUNCTIONS_PRODUCER = r'''
import functools
import os
import typing
import marinade

def scale(x, factor=2, *, offset: int = 0) -> int:
    """Scale x."""
    return x * factor + offset

inc, dec = lambda x: x + 1, lambda x: x - 1
nest = lambda a: lambda b: a * 10 + b

def counter_pair():
    count = 0
    def bump():
        nonlocal count
        count += 1
        return count
    def peek():
        return count
    return bump, peek

def recursive():
    def fact(n):
        return 1 if n <= 1 else n * fact(n - 1)
    return fact

def mutual():
    def is_even(n):
        return True if n == 0 else is_odd(n - 1)
    def is_odd(n):
        return False if n == 0 else is_even(n - 1)
    return is_even

def with_empty_cell():
    def later():
        return value
    return later
    value = 1  # never runs: the cell stays empty

def make_adder_factory(base):
    def factory(k):
        def add(x):
            return base + k + x
        return add
    return factory

def logged(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return ("logged", func(*args, **kwargs))
    return wrapper

@logged
def greet(name):
    return f"hi {name}"

TOTAL = 0

def add_total(n):
    global TOTAL
    TOTAL += n
    return TOTAL

def read_total():
    return TOTAL

def squares(n):
    return [i * i for i in range(n) if i % 2 == 0]

def gen(n):
    yield from range(n)

async def coro(x):
    return x * 3

def boom(x):
    y = x + 1
    return y / 0  # BOOM-LINE

class Meta(type):
    def __new__(mcls, name, bases, ns, **kw):
        ns["made_by_meta"] = name.lower()
        return super().__new__(mcls, name, bases, ns)

class Base(metaclass=Meta):
    def __init__(self, v):
        self.__secret = v

    def value(self):
        return self.__secret

    @property
    def doubled(self):
        return self.__secret * 2

    @staticmethod
    def static(x):
        return x + 1000

    @classmethod
    def make(cls, v):
        return cls(v)

class Child(Base):
    def value(self):
        return super().value() + 1

    def clone(self):
        return Child(self.value())

def local_class(k):
    class Local:
        def __init__(self):
            self.k = k
        def get(self):
            return (Local.__name__, self.k, super().__repr__() is not None)
    return Local

P = typing.ParamSpec("P")
R = typing.TypeVar("R")

def forward(func: typing.Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    return func(*args, **kwargs)  # P.args: an instance of a Python class on 3.11 only

def traced(func: typing.Callable[P, R]) -> typing.Callable[P, R]:
    @functools.wraps(func)  # copies lru_cache's cache_parameters (a functools lambda)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        return func(*args, **kwargs)
    return call

@traced
@functools.lru_cache(maxsize=8)
def double(x):
    return x * 2

bump, peek = counter_pair()
bump()
obj = dict(
    scale=scale, inc=inc, dec=dec, nest=nest, bump=bump, peek=peek, fact=recursive(),
    is_even=mutual(), empty=with_empty_cell(), factory=make_adder_factory(100), greet=greet,
    add_total=add_total, read_total=read_total, squares=squares, gen=gen, coro=coro, boom=boom,
    Child=Child, Local=local_class(7), double=double, forward=forward,
    # without its lru_cache wrapper in the payload
    lone_params=functools.lru_cache(maxsize=None, typed=True)(abs).cache_parameters,
)
'''

FUNCTIONS_CONSUMER = r'''
import asyncio, json, linecache, os, pickle, sys, traceback
d = pickle.loads(open(os.environ["MARINADE_PAYLOAD"], "rb").read())
out = {}
out["scale"] = [d["scale"](3), d["scale"](3, 3, offset=1), d["scale"].__doc__,
                sorted(d["scale"].__annotations__), d["scale"].__kwdefaults__]
out["lambdas"] = [d["inc"](1), d["dec"](1), d["nest"](4)(2), d["inc"].__name__]
bump, peek = d["bump"], d["peek"]
out["shared"] = [peek(), bump(), peek()]
out["fact"] = d["fact"](6)
out["mutual"] = [d["is_even"](10), d["is_even"](7)]
try:
    d["empty"]()
except NameError as e:
    out["empty"] = "NameError"
out["factory"] = d["factory"](20)(3)
out["greet"] = [list(d["greet"]("bo")), d["greet"].__name__, d["greet"].__wrapped__("x")]
out["globals"] = [d["add_total"](5), d["add_total"](2), d["read_total"]()]
out["squares"] = d["squares"](7)
out["gen"] = list(d["gen"](3))
out["coro"] = asyncio.run(d["coro"](4))
Child = d["Child"]
c = Child.make(5)
out["classes"] = [c.value(), c.doubled, Child.static(1), c.clone().value(), Child.made_by_meta,
                  type(Child).__name__, Child.__qualname__, Child.value.__qualname__]
out["local"] = list(d["Local"]().get())
dbl = d["double"]
cached, hints = dbl.__wrapped__, d["forward"].__annotations__
out["paramspec_lru"] = [dbl(4), dbl(4), cached.cache_info().hits, dbl.cache_parameters(),
                        dbl.cache_parameters is cached.cache_parameters,
                        d["lone_params"](), d["forward"](divmod, 7, 2),
                        [repr(hints["args"]), repr(hints["kwargs"])],
                        hints["args"] == hints["kwargs"].__origin__.args,
                        hints["args"].__origin__ is hints["func"].__args__[0]]
try:
    d["boom"](1)
except ZeroDivisionError:
    tb = traceback.format_exc()
    filename = d["boom"].__code__.co_filename
    out["tb"] = ["BOOM-LINE" in tb, d["boom"].__code__.co_firstlineno,
                 linecache.cache[filename][1] is None]
out["version"] = list(sys.version_info[:2])
print(json.dumps(out))
'''


@pytest.mark.parametrize("version", sorted(INTERPRETERS))
def test_functions_and_classes_cross_version(tmp_path, version):
    out = _cross(tmp_path, FUNCTIONS_PRODUCER, FUNCTIONS_CONSUMER, version)
    assert out.pop("version") == [3, int(version[1:])]
    assert out == {
        "scale": [6, 10, "Scale x.", ["offset", "return"], {"offset": 0}],
        "lambdas": [2, 0, 42, "<lambda>"],
        "shared": [1, 2, 2],
        "fact": 720,
        "mutual": [True, False],
        "empty": "NameError",
        "factory": 123,
        "greet": [["logged", "hi bo"], "greet", "hi x"],
        "globals": [5, 7, 7],
        "squares": [0, 4, 16, 36],
        "gen": [0, 1, 2],
        "coro": 12,
        "classes": [6, 10, 1001, 7, "child", "Meta", "Child", "Child.value"],
        "local": ["Local", 7, True],
        "paramspec_lru": [8, 8, 1, {"maxsize": 8, "typed": False}, True,
                          {"maxsize": None, "typed": True}, [3, 1], ["P.args", "P.kwargs"],
                          True, True],
        # the traceback shows the real source line, from linecache
        "tb": [True, _line_of(FUNCTIONS_PRODUCER, "def boom(x):"), True],
    }


# __future__ annotations, dataclasses (generated again on load), an Enum with
# methods, private name mangling, a lambda in a class body.
GENERATED_PRODUCER = r'''
from __future__ import annotations

import dataclasses
import enum
import os
import marinade

@dataclasses.dataclass(order=True)
class Point:
    x: int
    y: int = 0
    tags: list = dataclasses.field(default_factory=list, compare=False, metadata={"m": 1})

    def norm1(self) -> int:
        return abs(self.x) + abs(self.y)

@dataclasses.dataclass(frozen=True)
class Frozen:
    name: str
    def __repr__(self):
        return f"<Frozen {self.name}>"

class Color(enum.Enum):
    RED = 1
    GREEN = 2

    def describe(self) -> str:
        return f"{self.name.lower()}={self.value}"

    @classmethod
    def default(cls) -> Color:
        return cls.GREEN

class Secretive:
    shout = lambda self, s: s.upper() + "!"

    def __init__(self):
        self.__hidden = 41

    def reveal(self):
        def inner():
            return self.__hidden + 1
        return inner()

def annotated(a: int, b: Point | None = None) -> list[Point]:
    return [a]

obj = dict(Point=Point, Frozen=Frozen, Color=Color, Secretive=Secretive, annotated=annotated)
'''

GENERATED_CONSUMER = r'''
import dataclasses, json, os, pickle, sys
d = pickle.loads(open(os.environ["MARINADE_PAYLOAD"], "rb").read())
out = {}
P = d["Point"]
p, q = P(1, -2), P(1, 5, ["t"])
out["dataclass"] = [repr(p), p.norm1(), p < q, p == P(1, -2, ["other"]),
                    [f.name for f in dataclasses.fields(P)],
                    dataclasses.fields(P)[2].metadata["m"], P(3).tags, P.__match_args__]
F = d["Frozen"]
fz = F("a")
try:
    fz.name = "b"
    frozen = False
except dataclasses.FrozenInstanceError:
    frozen = True
out["frozen"] = [repr(fz), frozen, hash(fz) == hash(F("a"))]
C = d["Color"]
out["enum"] = [C.RED.describe(), C.default() is C.GREEN, C(2).name, [m.name for m in C]]
s = d["Secretive"]()
out["secretive"] = [s.shout("hey"), s.reveal()]
out["annotated"] = [d["annotated"](3), d["annotated"].__annotations__]
print(json.dumps(out))
'''


@pytest.mark.parametrize("version", sorted(INTERPRETERS))
def test_generated_classes_cross_version(tmp_path, version):
    out = _cross(tmp_path, GENERATED_PRODUCER, GENERATED_CONSUMER, version)
    assert out == {
        "dataclass": ["Point(x=1, y=-2, tags=[])", 3, True, True, ["x", "y", "tags"], 1, [],
                      ["x", "y", "tags"]],
        "frozen": ["<Frozen a>", True, True],
        "enum": ["red=1", True, "GREEN", ["RED", "GREEN"]],
        "secretive": ["HEY!", 42],
        "annotated": [[3], {"a": "int", "b": "Point | None", "return": "list[Point]"}],
    }


# -- in-process ---------------------------------------------------------------

def test_same_process_roundtrip_ships_no_bytecode():
    base = 5

    def add(x, *, k=1):
        return x + base + k

    data = marinade.dumps(add, portable=True)
    assert add.__code__.co_code not in data
    assert b"_rebuild_portable" in data and b"load_code" not in data
    again = pickle.loads(data)
    assert again(1) == 7 and again(1, k=10) == 16
    assert again.__code__ is not add.__code__
    assert marinade.dumps(add, portable=True) == data  # deterministic


def test_same_line_lambdas_are_told_apart():
    # Same code, told apart by the columns of their instructions.
    first, second = lambda x: x / 2, lambda x: x / 2  # noqa: E731
    spec1, spec2 = portable.source_spec(first), portable.source_spec(second)
    line = linecache.getline(__file__, first.__code__.co_firstlineno).encode()
    assert line[spec1[5][0]:spec1[5][1]] == b"lambda x: x / 2"
    assert line[spec2[5][0]:spec2[5][1]] == b"lambda x: x / 2"
    assert spec2[5][0] > spec1[5][1]
    # Different code on one line: the right one, whatever the columns say.
    third, fourth = (lambda: "third"), (lambda: "fourth")  # noqa: E731
    assert pickle.loads(marinade.dumps(fourth, portable=True))() == "fourth"
    assert pickle.loads(marinade.dumps(third, portable=True))() == "third"


def test_function_without_source_fails_at_dump_time():
    namespace = {"__name__": "made_by_exec"}
    exec("def from_string(x):\n    return x\n", namespace)
    func = namespace["from_string"]
    with pytest.raises(marinade.PicklingError) as info:
        marinade.dumps(func, portable=True)
    message = str(info.value)
    assert "from_string" in message and "source" in message
    assert "without portable=True" in message
    assert pickle.loads(marinade.dumps(func))(3) == 3  # the default mode still works


def test_edited_source_is_refused(tmp_path):
    path = tmp_path / "edited.py"
    path.write_text("def f(x):\n    return x + 1\n")
    namespace = {"__name__": "edited_module"}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    path.write_text("def f(x, y):\n    return x + y\n")
    linecache.checkcache(str(path))
    with pytest.raises(marinade.PicklingError, match="no source matching"):
        marinade.dumps(namespace["f"], portable=True)


def test_bytecode_objects_are_refused():
    def gen():
        yield 1

    with pytest.raises(marinade.PicklingError, match="code object"):
        marinade.dumps(gen.__code__, portable=True)
    running = gen()
    next(running)
    with pytest.raises(marinade.PicklingError, match="portable=True"):
        marinade.dumps(running, portable=True)


def test_named_tuple_class_ships_no_generated_code():
    import collections

    point = collections.namedtuple("point", "x y", defaults=[0])
    data = marinade.dumps(point, portable=True)
    # namedtuple() makes __new__ with eval() and its methods in its own body:
    # none of that travels, the loading side calls namedtuple() again.
    assert b"_tuple_new" not in data and b"tuple_new(cls, iterable)" not in data
    assert b"namedtuple" in data
    assert pickle.loads(data) is point  # same process: the live class


def test_unsupported_combinations():
    with pytest.raises(ValueError, match="standalone"):
        marinade.dumps(lambda: 1, portable=True, standalone=True)


def test_version_error_suggests_portable():
    other = 3 * 256 + (10 if sys.version_info[1] != 10 else 9)
    with pytest.raises(pickle.UnpicklingError) as info:
        _rebuild.load_code(b"", other)
    message = str(info.value)
    assert "CPython 3." in message and "portable=True" in message
