"""Portable payloads: generated classes, class identity, newer syntax, one-line classes.

Like tests/test_portable.py, payloads are made by the interpreter running
pytest and loaded by each installed one, so running this file under the three
venvs covers every producer/consumer pair. Each producer runs once per run of
this file and its payload is loaded by every consumer.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
import typing
from pathlib import Path

import pytest

import marinade
from marinade import _rebuild_portable

from helpers import child_env, run_script

ROOT = Path(__file__).resolve().parent.parent
VERSIONS = ("311", "312", "313")
INTERPRETERS = {v: ROOT / ".venv" / f"py{v}" / "bin" / "python" for v in VERSIONS}
HERE = "{}{}".format(*sys.version_info[:2])
HERE_TAG = sys.version_info[0] * 256 + sys.version_info[1]


def _python(version: str) -> str:
    python = INTERPRETERS[version]
    if not python.exists():
        pytest.skip(f"no interpreter at {python}")
    return str(python)


def _produce(folder: Path, producer: str, python: str = sys.executable, args=()) -> Path:
    """Run ``producer`` as ``__main__``; it writes its payload(s) under MARINADE_PAYLOAD."""
    out = folder / "out"
    out.mkdir(parents=True, exist_ok=True)
    proc = run_script(folder, producer, python=python, cwd=folder / "producer",
                      env={"MARINADE_PAYLOAD": str(out)}, args=args)
    assert proc.returncode == 0, proc.stderr
    return out


def _consume(folder: Path, consumer: str, payloads: Path, version: str) -> dict:
    """Run ``consumer`` in a folder of its own; it prints one JSON line."""
    proc = run_script(folder, consumer, python=_python(version), name="consume.py",
                      cwd=folder / f"consumer{version}", env={"MARINADE_PAYLOAD": str(payloads)})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- generated classes: namedtuple, NamedTuple, slotted dataclasses, TypedDict --
# (and one-line class bodies with lambdas)

GENERATED_PRODUCER = r'''
import abc
import collections
import dataclasses
import enum
import os
import reprlib
import typing
from dataclasses import KW_ONLY, InitVar
from typing import ClassVar, Generic, NamedTuple, NotRequired, Required, TypedDict, TypeVar

import marinade

Point = collections.namedtuple("Point", "x y z", defaults=[0])
Renamed = collections.namedtuple("Renamed", ["a", "def", "a"], rename=True)
Legacy = collections.namedtuple("Legacy", "a b")
Legacy.__new__.__defaults__ = (None, None)  # the pre-3.7 recipe: no _field_defaults

class Pair(NamedTuple):
    """A pair."""
    left: int
    right: str = "r"

    def swap(self):
        return (self.right, self.left)

    def __repr__(self):
        return f"<{self.left}|{self.right}>"

T = TypeVar("T")

class Boxed(NamedTuple, Generic[T]):
    item: T

    def get(self) -> T:
        return self.item

@dataclasses.dataclass(slots=True)
class Slotted:
    x: int
    y: list = dataclasses.field(default_factory=list)

    def total(self):
        return self.x + len(self.y)

@dataclasses.dataclass(frozen=True, slots=True)
class FrozenSlots:
    name: str
    size: int = 1

@dataclasses.dataclass(slots=True, weakref_slot=True)
class WeakSlots:
    v: int

@dataclasses.dataclass(kw_only=True)
class KwOnly:
    a: int
    b: int = 2

@dataclasses.dataclass
class Markers:  # string annotations, as `from __future__ import annotations` makes them
    x: "int"
    limit: "ClassVar[int]" = 10
    seed: "InitVar[int]" = 0
    _: "KW_ONLY"
    k: "int" = 3

    def __post_init__(self, seed):
        self.total = self.x + seed

class Movie(TypedDict, total=False):
    title: Required[str]
    year: int

class Sequel(Movie):
    of: NotRequired[str]
    rating: float

Functional = TypedDict("Functional", {"a": int, "b": NotRequired[str]})

@typing.runtime_checkable
class HasSize(typing.Protocol):
    limit: int

    def size(self) -> int: ...

class Sized:
    limit = 3

    def size(self):
        return 1

class Mode(enum.StrEnum):
    FAST = enum.auto()
    SLOW = enum.auto()

class Perm(enum.IntFlag):
    R = 4
    W = 2

class Job(abc.ABC):
    @abc.abstractmethod
    def run(self): ...

class Stack(Job, Generic[T]):
    def __init__(self):
        self.items = []

    def run(self):
        return len(self.items)

class Node:
    def __init__(self):
        self.children = [self]

    @reprlib.recursive_repr()
    def __repr__(self):
        return f"Node({self.children})"

class A: f = lambda self: "A.f"
class B(A): f = lambda self: "B>" + super().f(); g = lambda self: self.__hidden(); __hidden = lambda self: "hidden"
class Ops: add = lambda s, x: x + 1; sub = lambda s, x: x - 1

obj = dict(Point=Point, Renamed=Renamed, Legacy=Legacy, Pair=Pair, Boxed=Boxed,
           Slotted=Slotted, FrozenSlots=FrozenSlots, WeakSlots=WeakSlots, KwOnly=KwOnly,
           Markers=Markers, Movie=Movie, Sequel=Sequel, Functional=Functional, A=A, B=B, Ops=Ops,
           HasSize=HasSize, Sized=Sized, Mode=Mode, Perm=Perm, Job=Job, Stack=Stack, Node=Node,
           point=Point(1, 2), pair=Pair(1), slotted=Slotted(2, [1]), frozen=FrozenSlots("f"))
with open(os.path.join(os.environ["MARINADE_PAYLOAD"], "payload.pkl"), "wb") as f:
    f.write(marinade.dumps(obj, portable=True))
'''

GENERATED_CONSUMER = r'''
import copy, dataclasses, json, os, pickle, sys, typing, weakref
with open(os.path.join(os.environ["MARINADE_PAYLOAD"], "payload.pkl"), "rb") as f:
    d = pickle.load(f)
out = {}

def raises(func, *args, **kwargs):
    try:
        func(*args, **kwargs)
    except Exception as exc:
        return type(exc).__name__
    return "no error"

P = d["Point"]
p = P(1, 2)
out["namedtuple"] = [repr(p), repr(p._replace(x=5)), P._fields, P._field_defaults,
                     repr(P._make([1, 2, 3])), p._asdict(), d["point"] == p,
                     type(d["point"]) is P, P.__doc__, raises(setattr, p, "w", 1)]
out["renamed"] = [d["Renamed"]._fields, repr(d["Legacy"](1)), d["Legacy"]._field_defaults]
Pair = d["Pair"]
q = Pair(3)
out["NamedTuple"] = [repr(q), q.swap(), repr(q._replace(right="s")), Pair._field_defaults,
                     Pair.__doc__, {k: v.__name__ for k, v in Pair.__annotations__.items()},
                     sorted(Pair.__new__.__annotations__), repr(d["pair"]), type(d["pair"]) is Pair]
Boxed = d["Boxed"]
out["generic"] = [Boxed(3).get(), [p.__name__ for p in Boxed.__parameters__],
                  repr(Boxed[int](4))]
S = d["Slotted"]
s = S(1, [5])
out["slots"] = [repr(s), s.total(), S.__slots__, hasattr(s, "__dict__"), raises(setattr, s, "w", 1),
                S(1) == S(1), repr(S(7)), repr(d["slotted"]), type(d["slotted"]) is S]
F = d["FrozenSlots"]
f = F("a")
out["frozen_slots"] = [repr(f), raises(setattr, f, "name", "b"), hash(f) == hash(F("a")),
                       copy.deepcopy(f) == f, repr(d["frozen"]), F.__slots__]
W = d["WeakSlots"]
w = W(1)
out["weakref_slot"] = [weakref.ref(w)() is w, "__weakref__" in W.__slots__]
K = d["KwOnly"]
out["kw_only"] = [repr(K(a=1)), raises(K, 1)]
M = d["Markers"]
m = M(1, 5, k=2)
out["markers"] = [[f.name for f in dataclasses.fields(M)], repr(m), m.total, M.limit,
                  "ClassVar[int]" in str(M.__annotations__["limit"]), raises(M, 1, 2, 3)]
typed = {}
for name in ("Movie", "Sequel", "Functional"):
    td = d[name]
    typed[name] = [sorted(td.__required_keys__), sorted(td.__optional_keys__), td.__total__,
                   typing.is_typeddict(td), sorted(getattr(td, "__mutable_keys__", ["n/a"])),
                   {k: repr(v) for k, v in typing.get_type_hints(td).items()}]
out["typeddict"] = typed
HasSize, Mode = d["HasSize"], d["Mode"]

class LocalSized:  # made here: only the members count, not what 3.13 records of a class
    limit = 0

    def size(self):
        return 0

out["protocol"] = [isinstance(d["Sized"](), HasSize), isinstance(object(), HasSize),
                   raises(HasSize), raises(issubclass, d["Sized"], HasSize),
                   isinstance(LocalSized(), HasSize)]
out["enums"] = [Mode.FAST == "fast", Mode("slow") is Mode.SLOW, [m.value for m in Mode],
                int(d["Perm"].R | d["Perm"].W), d["Perm"](6) is (d["Perm"].R | d["Perm"].W)]
Stack = d["Stack"]
out["abc_generic"] = [raises(d["Job"]), Stack[int]().run(), isinstance(Stack(), d["Job"]),
                      [p.__name__ for p in Stack.__parameters__]]
out["library_wrapper"] = repr(d["Node"]())  # reprlib's wrapper around the user's method
b = d["B"]()
out["one_line"] = [d["A"]().f(), b.f(), b.g(), d["Ops"]().add(1), d["Ops"]().sub(1)]
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def generated_payload(tmp_path_factory):
    return _produce(tmp_path_factory.mktemp("generated"), GENERATED_PRODUCER)


@pytest.mark.parametrize("version", VERSIONS)
def test_generated_classes_cross_version(tmp_path, generated_payload, version):
    out = _consume(tmp_path, GENERATED_CONSUMER, generated_payload, version)
    mutable = version >= "313"  # TypedDict's __mutable_keys__: the loader's own, 3.13+
    assert out == {
        "namedtuple": ["Point(x=1, y=2, z=0)", "Point(x=5, y=2, z=0)", ["x", "y", "z"], {"z": 0},
                       "Point(x=1, y=2, z=3)", {"x": 1, "y": 2, "z": 0}, True, True,
                       "Point(x, y, z)", "AttributeError"],
        "renamed": [["a", "_1", "_2"], "Legacy(a=1, b=None)", {}],
        "NamedTuple": ["<3|r>", ["r", 3], "<3|s>", {"right": "r"}, "A pair.",
                       {"left": "int", "right": "str"}, ["left", "right"], "<1|r>", True],
        "generic": [3, ["T"], "Boxed(item=4)"],
        "slots": ["Slotted(x=1, y=[5])", 2, ["x", "y"], False, "AttributeError", True,
                  "Slotted(x=7, y=[])", "Slotted(x=2, y=[1])", True],
        "frozen_slots": ["FrozenSlots(name='a', size=1)", "FrozenInstanceError", True, True,
                         "FrozenSlots(name='f', size=1)", ["name", "size"]],
        "weakref_slot": [True, True],
        "kw_only": ["KwOnly(a=1, b=2)", "TypeError"],
        "markers": [["x", "k"], "Markers(x=1, k=2)", 6, 10, True, "TypeError"],
        "typeddict": {
            "Movie": [["title"], ["year"], False, True,
                      ["title", "year"] if mutable else ["n/a"],
                      {"title": "<class 'str'>", "year": "<class 'int'>"}],
            "Sequel": [["rating", "title"], ["of", "year"], True, True,
                       ["of", "rating", "title", "year"] if mutable else ["n/a"],
                       {"title": "<class 'str'>", "year": "<class 'int'>",
                        "of": "<class 'str'>", "rating": "<class 'float'>"}],
            "Functional": [["a"], ["b"], True, True, ["a", "b"] if mutable else ["n/a"],
                           {"a": "<class 'int'>", "b": "<class 'str'>"}],
        },
        "protocol": [True, False, "TypeError", "TypeError", True],
        "enums": [True, True, ["fast", "slow"], 6, True],
        "abc_generic": ["TypeError", 0, True, ["T"]],
        "library_wrapper": "Node([...])",
        "one_line": ["A.f", "B>A.f", "hidden", 2, 0],
    }


# -- one class from producers on two versions ----------------------------------

IDENTITY_PRODUCER = r'''
import collections, dataclasses, enum, os, sys, typing
import marinade

class Shape:
    sides = 0

    def describe(self):
        return f"{type(self).__name__}:{self.sides}"

class Square(Shape):
    sides = 4

@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int = 0

class Color(enum.Enum):
    RED = 1
    GREEN = 2

    def lower(self):
        return self.name.lower()

Pair = collections.namedtuple("Pair", "a b")

class Movie(typing.TypedDict, total=False):
    title: str

@typing.runtime_checkable
class Drawable(typing.Protocol):
    def draw(self) -> str: ...

# Unbounded: some 3.12/3.13 releases report bound=NoneType for it.
P = typing.ParamSpec("P")

obj = dict(Shape=Shape, Square=Square, Point=Point, Color=Color, Pair=Pair, Movie=Movie,
           Drawable=Drawable, P=P,
           square=Square(), point=Point(1), red=Color.RED, pair=Pair(1, 2),
           version=list(sys.version_info[:2]))
with open(os.path.join(os.environ["MARINADE_PAYLOAD"], sys.argv[1]), "wb") as f:
    f.write(marinade.dumps(obj, portable=True))
'''

IDENTITY_CONSUMER = r'''
import json, os, pickle
def load(name):
    with open(os.path.join(os.environ["MARINADE_PAYLOAD"], name), "rb") as f:
        return pickle.load(f)
a, b = load("a.pkl"), load("b.pkl")
classes = ["Shape", "Square", "Point", "Color", "Pair", "Movie", "Drawable", "P"]
print(json.dumps({
    "versions": [a["version"], b["version"]],
    "same_class": {name: a[name] is b[name] for name in classes},
    "instances": [type(a["square"]) is b["Square"], isinstance(b["square"], a["Shape"]),
                  a["red"] is b["red"], b["Color"](1) is a["red"], a["point"] == b["point"],
                  type(a["pair"]) is b["Pair"], a["square"].describe(), b["red"].lower()],
}))
'''


def test_class_identity_across_producer_versions(tmp_path):
    # This interpreter and the next one make the payload, each from a folder of its own.
    other = VERSIONS[(VERSIONS.index(HERE) + 1) % len(VERSIONS)]
    payloads = _produce(tmp_path / "a", IDENTITY_PRODUCER, args=["a.pkl"])
    _produce(tmp_path / "b", IDENTITY_PRODUCER, python=_python(other), args=["b.pkl"])
    (tmp_path / "b" / "out" / "b.pkl").rename(payloads / "b.pkl")
    out = _consume(tmp_path, IDENTITY_CONSUMER, payloads, HERE)
    assert out["versions"] == [[3, int(HERE[1:])], [3, int(other[1:])]]
    assert out["same_class"] == dict.fromkeys(
        ["Shape", "Square", "Point", "Color", "Pair", "Movie", "Drawable", "P"], True)
    assert out["instances"] == [True, True, True, True, True, True, "Square:4", "red"]


def test_same_process_roundtrip_gives_the_live_class():
    import collections

    pair = collections.namedtuple("pair", "a b")

    class Local:
        def method(self):
            return 1

    assert pickle.loads(marinade.dumps(pair, portable=True)) is pair
    assert pickle.loads(marinade.dumps(Local, portable=True)) is Local
    # Look-alike live classes keep their own identity (numbered keys).
    twins = [type("Twin", (), {"n": 1}) for _ in range(2)]
    loaded = pickle.loads(marinade.dumps(twins, portable=True))
    assert loaded[0] is twins[0] and loaded[1] is twins[1]


def test_param_spec_args_and_class_records_in_process():
    P = typing.ParamSpec("P")  # local: sent by value

    class Local:
        def method(self):
            self.seen = 1

    for kwargs in ({}, {"standalone": True}, {"portable": True}):
        args, kwds = pickle.loads(marinade.dumps([P.args, P.kwargs], **kwargs))
        assert (type(args), type(kwds)) == (typing.ParamSpecArgs, typing.ParamSpecKwargs)
        assert args.__origin__ is P and kwds.__origin__ is P
    # 3.13 records these in the class; a portable payload leaves them out.
    data = marinade.dumps(Local, portable=True)
    assert b"__firstlineno__" not in data and b"__static_attributes__" not in data


# -- syntax newer than the loading interpreter ------------------------------------

NEWER_PRODUCER = r'''
import os, marinade

def first[T](xs: list[T]) -> T:
    return xs[0]

def alias_user():
    type Pair = tuple[int, int]
    return Pair.__value__

type Vec = list[float]

class Box[T]:
    def __init__(self, item: T):
        self.item = item

    def get(self) -> T:
        return self.item

for name, obj in dict(first=first, alias_user=alias_user, Vec=Vec, Box=Box).items():
    with open(os.path.join(os.environ["MARINADE_PAYLOAD"], name + ".pkl"), "wb") as f:
        f.write(marinade.dumps(obj, portable=True))
'''

NEWER_CONSUMER = r'''
import json, os, pickle, marinade
out = {}
for name in ("first", "alias_user", "Vec", "Box"):
    try:
        with open(os.path.join(os.environ["MARINADE_PAYLOAD"], name + ".pkl"), "rb") as f:
            obj = pickle.load(f)
    except Exception as exc:
        out[name] = ["error", isinstance(exc, marinade.UnpicklingError), str(exc)]
        continue
    if name == "first":
        out[name] = [obj([5, 6]), [p.__name__ for p in obj.__type_params__]]
    elif name == "alias_user":
        out[name] = [repr(obj())]
    elif name == "Vec":
        out[name] = [obj.__name__, repr(obj.__value__)]
    else:
        out[name] = [obj(3).get(), [p.__name__ for p in obj.__type_params__]]
print(json.dumps(out))
'''


def test_newer_syntax_fails_clearly_on_older_versions(tmp_path):
    # Made on this interpreter when it has PEP 695 syntax (else on 3.13),
    # loaded everywhere this run is responsible for.
    producer = HERE if HERE >= "312" else "313"
    payloads = _produce(tmp_path, NEWER_PRODUCER, python=_python(producer))
    consumers = VERSIONS if producer == HERE else ("311",)
    made_on = f"CPython 3.{producer[1:]}"
    for version in consumers:
        out = _consume(tmp_path, NEWER_CONSUMER, payloads, version)
        if version >= "312":
            assert out == {"first": [5, ["T"]], "alias_user": ["tuple[int, int]"],
                           "Vec": ["Vec", "list[float]"], "Box": [3, ["T"]]}
            continue
        for name, what in (("first", "'first'"), ("alias_user", "'alias_user'"),
                           ("Vec", "'Vec'"), ("Box", "'T'")):
            kind, is_marinade_error, message = out[name]
            assert kind == "error" and is_marinade_error, out[name]
            assert what in message and made_on in message and "CPython 3.11" in message, message
        assert "type Pair = tuple[int, int]" in out["alias_user"][2]  # the offending line


def test_compile_error_names_both_versions():
    spec = (1, "outer.<locals>.broken", "/src/app.py", 40, "def broken(:\n    pass\n", None,
            (), ())
    newer = HERE_TAG + 1
    with pytest.raises(marinade.UnpicklingError) as info:
        _rebuild_portable.function(spec, "app", None, newer)
    message = str(info.value)
    assert "'outer.<locals>.broken'" in message and "/src/app.py, line 40" in message
    assert f"CPython 3.{HERE_TAG % 256}" in message and f"CPython 3.{newer % 256}" in message
    assert "def broken(:" in message and "or later" in message
    # A payload made before the version was recorded still gets a clear error.
    with pytest.raises(marinade.UnpicklingError, match="does not say"):
        _rebuild_portable.function(spec, "app")


def test_type_alias_and_type_param_errors(monkeypatch):
    monkeypatch.delattr(typing, "TypeAliasType", raising=False)
    with pytest.raises(marinade.UnpicklingError, match=r"'Vec'.*CPython 3\.99"):
        _rebuild_portable.type_alias("Vec", list, (), 3 * 256 + 99)
    with pytest.raises(marinade.UnpicklingError, match=r"'T'.*unsupported_option="):
        _rebuild_portable.type_param("TypeVar", ("T",), {"unsupported_option": 1}, HERE_TAG)
    with pytest.raises(marinade.UnpicklingError, match="unknown type parameter kind"):
        _rebuild_portable.type_param("NewType", ("N", int), {}, HERE_TAG)


def test_standard_library_internals_are_refused():
    @typing.runtime_checkable
    class Drawable(typing.Protocol):
        def draw(self) -> str: ...

    hook = Drawable.__dict__["__subclasshook__"]  # typing's own, not importable by name
    hook = getattr(hook, "__func__", hook)
    with pytest.raises(marinade.PicklingError, match="internal code of the standard library"):
        marinade.dumps(hook, portable=True)
    # As part of the class it is left out: the loading side's Protocol adds its own.
    data = marinade.dumps(Drawable, portable=True)
    assert b"_proto_hook" not in data and b"draw" in data


def test_forward_references_ship_as_text():
    ref = typing.ForwardRef("list[Node]", module="graph", is_class=True)
    data = marinade.dumps(ref, portable=True)
    again = pickle.loads(data)
    assert b"list[Node]" in data and again == ref
    assert (again.__forward_module__, again.__forward_is_class__) == ("graph", True)


# -- one-line definitions that positions cannot tell apart ------------------------

NO_RANGES = r'''
import pickle, marinade
inc, dec = lambda x: x + 1, lambda x: x - 1
class Ops: add = lambda s, x: x + 1; sub = lambda s, x: x - 1
two, also_two = lambda: 1 + 1, lambda: 1+1
print(pickle.loads(marinade.dumps(dec, portable=True))(10),
      pickle.loads(marinade.dumps(inc, portable=True))(10),
      pickle.loads(marinade.dumps(Ops, portable=True))().sub(10))
try:
    marinade.dumps(also_two, portable=True)
except marinade.PicklingError as exc:
    print("refused:", exc)
'''


def test_same_line_definitions_without_column_positions(tmp_path):
    # Compiled without column positions, several lambdas on one line that use
    # the same names and constants: the bytecode decides, and where even that
    # cannot (same code, different text), the dump refuses rather than guess.
    script = tmp_path / "no_ranges.py"
    script.write_text(textwrap.dedent(NO_RANGES), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-X", "no_debug_ranges", str(script)],
                          cwd=tmp_path, env=child_env(), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    first, refused = proc.stdout.splitlines()
    assert first == "9 11 9"
    assert refused.startswith("refused:") and "'<lambda>'" in refused \
        and "line of its own" in refused
