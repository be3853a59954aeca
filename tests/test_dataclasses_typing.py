"""Dataclasses, named tuples and ``typing`` constructs defined in ``__main__``."""

import pytest

from marinade import _compat

from helpers import DUMP, LOAD, run_roundtrip


def test_dataclasses(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=f"""
            import dataclasses
            from dataclasses import dataclass, field

            @dataclass(order=True)
            class Item:
                name: str
                qty: int = 0
                tags: list = field(default_factory=list)
                secret: str = field(default="x", repr=False, compare=False)

                def total(self, price):
                    return self.qty * price

            @dataclass(frozen=True)
            class Frozen:
                a: int
                b: tuple = (1, 2)

            @dataclass(slots=True)
            class Slotted:
                x: int
                y: int = 5

            @dataclass(frozen=True, slots=True)
            class FrozenSlotted:
                x: int

            @dataclass(kw_only=True)
            class KwOnly:
                a: int
                b: int = 2

            @dataclass
            class Child(Item):
                extra: float = 1.5

            obj = (Item, Frozen, Slotted, FrozenSlotted, KwOnly, Child,
                   Item("b", 2, ["t"]), Frozen(3), Slotted(1), FrozenSlotted(9), KwOnly(a=1))
            {DUMP}
        """,
        consumer=f"""
            {LOAD}
            import dataclasses
            Item, Frozen, Slotted, FrozenSlotted, KwOnly, Child, item, fr, sl, fs, kw = obj
            print([f.name for f in dataclasses.fields(Item)], dataclasses.is_dataclass(item))
            print(item, item.total(10), dataclasses.asdict(item))
            new = Item("a")
            new.tags.append("own")
            print(new, Item("c").tags, sorted([item, new])[0].name, item == Item("b", 2, ["t"], "y"))
            print(dataclasses.replace(item, qty=7), Child("z", extra=2.5), Child("z").total(2))
            print(fr, fr == Frozen(3), hash(fr) == hash(Frozen(3)), dataclasses.replace(fr, a=4))
            try:
                fr.a = 5
            except dataclasses.FrozenInstanceError:
                print("frozen")
            print(sl, Slotted(2, 3), hasattr(sl, "__dict__"), Slotted.__slots__)
            print(fs, FrozenSlotted(9) == fs, hash(fs) == hash(FrozenSlotted(9)))
            print(kw, KwOnly(b=3, a=4))
            try:
                KwOnly(1)
            except TypeError:
                print("kw_only enforced")
        """,
    )
    assert out.splitlines() == [
        "['name', 'qty', 'tags', 'secret'] True",
        "Item(name='b', qty=2, tags=['t']) 20 {'name': 'b', 'qty': 2, 'tags': ['t'], 'secret': 'x'}",
        "Item(name='a', qty=0, tags=['own']) [] a True",
        "Item(name='b', qty=7, tags=['t']) Child(name='z', qty=0, tags=[], extra=2.5) 0",
        "Frozen(a=3, b=(1, 2)) True True Frozen(a=4, b=(1, 2))",
        "frozen",
        "Slotted(x=1, y=5) Slotted(x=2, y=3) False ('x', 'y')",
        "FrozenSlotted(x=9) True True",
        "KwOnly(a=1, b=2) KwOnly(a=4, b=3)",
        "kw_only enforced",
    ]


def test_named_tuples_and_typed_dict(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=f"""
            import collections, typing

            Pair = collections.namedtuple("Pair", ["left", "right"], defaults=[0])

            class Point(typing.NamedTuple):
                x: int
                y: int = 0

                def norm1(self):
                    return abs(self.x) + abs(self.y)

            class Movie(typing.TypedDict):
                title: str
                year: int

            class Partial(typing.TypedDict, total=False):
                note: str

            class Mixed(Movie, Partial):
                rating: float

            obj = (Pair, Pair(1), Point, Point(3, -4), Movie, Partial, Mixed,
                   Movie(title="x", year=1))
            {DUMP}
        """,
        consumer=f"""
            {LOAD}
            import typing
            Pair, p, Point, pt, Movie, Partial, Mixed, movie = obj
            print(p, Pair._fields, Pair._make([5, 6]), p._replace(right=9), Pair(2), p._asdict())
            print(pt, pt.norm1(), Point._fields, Point._field_defaults, Point(1), Point._make((7, 8)))
            print(isinstance(pt, tuple), pt == (3, -4), type(Point(1)) is Point)
            print(sorted(Movie.__required_keys__), sorted(Partial.__optional_keys__),
                  Movie.__total__, Partial.__total__)
            print(sorted(Mixed.__required_keys__), sorted(Mixed.__optional_keys__))
            print(typing.get_type_hints(Movie), Movie(title="t", year=2), movie, type(movie))
            print(typing.is_typeddict(Mixed), Mixed.__name__, Mixed.__module__)
        """,
    )
    assert out.splitlines() == [
        "Pair(left=1, right=0) ('left', 'right') Pair(left=5, right=6) "
        "Pair(left=1, right=9) Pair(left=2, right=0) {'left': 1, 'right': 0}",
        "Point(x=3, y=-4) 7 ('x', 'y') {'y': 0} Point(x=1, y=0) Point(x=7, y=8)",
        "True True True",
        "['title', 'year'] ['note'] True False",
        "['rating', 'title', 'year'] ['note']",
        "{'title': <class 'str'>, 'year': <class 'int'>} {'title': 't', 'year': 2} "
        "{'title': 'x', 'year': 1} <class 'dict'>",
        "True Mixed __main__",
    ]


def test_protocols_generics_and_type_vars(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=f"""
            import typing
            from typing import Generic, Protocol, TypeVar, ParamSpec, TypeVarTuple

            T = TypeVar("T")
            N = TypeVar("N", bound=float)
            S = TypeVar("S", str, bytes)
            Co = TypeVar("Co", covariant=True)
            Contra = TypeVar("Contra", contravariant=True)
            P = ParamSpec("P")
            Ts = TypeVarTuple("Ts")

            @typing.runtime_checkable
            class Closable(Protocol):
                def close(self) -> None: ...

            class HasArea(Protocol):
                def area(self) -> float: ...

            class File:
                def close(self):
                    pass

            class Box(Generic[T]):
                def __init__(self, item: T) -> None:
                    self.item = item

                def get(self) -> T:
                    return self.item

                def retyped(self):
                    # subscripting Generic from a rebuilt function: on 3.12+
                    # C code imports typing through this function's globals
                    return Box[str](str(self.item))

            class Reader(Generic[Co]):
                pass

            class Annotated:
                name: str
                size: "int"
                box: Box[int]

            def call(f: typing.Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
                return f(*args, **kwargs)

            UserId = typing.NewType("UserId", int)

            obj = (T, N, S, Co, Contra, P, Ts, Closable, HasArea, File, Box, Box[int], Box(3),
                   Reader[str], Annotated, call, typing.AnyStr, typing.Tuple[typing.Unpack[Ts]],
                   UserId)
            {DUMP}
        """,
        consumer=f"""
            {LOAD}
            import typing
            (T, N, S, Co, Contra, P, Ts, Closable, HasArea, File, Box, BoxInt, box, ReaderStr,
             Annotated, call, anystr, tuple_ts, UserId) = obj
            print(type(T) is typing.TypeVar, T.__name__, N.__bound__, S.__constraints__,
                  Co.__covariant__, Contra.__contravariant__, T.__covariant__, T.__module__)
            print(type(P) is typing.ParamSpec, P.__name__, type(Ts) is typing.TypeVarTuple, Ts)
            print(isinstance(File(), Closable), isinstance(1, Closable))
            try:
                isinstance(File(), HasArea)
            except TypeError:
                print("not runtime checkable")
            print(Box.__parameters__ == (T,), Box.__parameters__[0] is T, BoxInt.__origin__ is Box,
                  BoxInt.__args__, box.get(), type(box) is Box, box.retyped().get())
            print(ReaderStr.__origin__.__parameters__[0] is Co, typing.get_origin(BoxInt) is Box)
            hints = typing.get_type_hints(Annotated)
            print(hints["name"], hints["size"], hints["box"] == Box[int])
            print(call(lambda a, b: a + b, 2, b=3), typing.get_type_hints(call)["return"] is T)
            print(anystr is typing.AnyStr, tuple_ts == typing.Tuple[typing.Unpack[Ts]])
            print(type(UserId) is typing.NewType, UserId(5), UserId.__supertype__, UserId.__name__)
        """,
    )
    assert out.splitlines() == [
        "True T <class 'float'> (<class 'str'>, <class 'bytes'>) True True False __main__",
        "True P True Ts",
        "True False",
        "not runtime checkable",
        "True True True (<class 'int'>,) 3 True 3",
        "True True",
        "<class 'str'> <class 'int'> True",
        "5 True",
        "True True",
        "True 5 <class 'int'> UserId",
    ]


@pytest.mark.skipif(not _compat.PY_3_12_PLUS, reason="PEP 695 syntax needs Python 3.12")
def test_pep695_type_params_and_aliases(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=f"""
            import typing

            type Number = int | float
            type Pairs[K, V] = list[tuple[K, V]]

            class Stack[T]:
                def __init__(self) -> None:
                    self.items: list[T] = []

                def push(self, item: T) -> "Stack[T]":
                    self.items.append(item)
                    return self

                def kind(self):
                    return T

            class Bounded[N: float, *Ts, **P]:
                pass

            def first[X](items: list[X]) -> X:
                return items[0]

            obj = (Number, Pairs, Stack, Stack[int], Bounded, first, Pairs[str, int])
            {DUMP}
        """,
        consumer=f"""
            {LOAD}
            import typing
            Number, Pairs, Stack, StackInt, Bounded, first, pairs_si = obj
            print(type(Number) is typing.TypeAliasType, Number.__name__, Number.__value__)
            print(Pairs.__name__, [p.__name__ for p in Pairs.__type_params__], Pairs.__value__)
            print(pairs_si.__origin__ is Pairs, pairs_si.__args__)
            T, = Stack.__type_params__
            print(T.__name__, Stack.__parameters__ == (T,), Stack().push(1).push(2).items,
                  Stack().kind() is T, StackInt.__origin__ is Stack)
            N, Ts, P = Bounded.__type_params__
            print(N.__bound__, type(Ts).__name__, type(P).__name__)
            X, = first.__type_params__
            print(first([4, 5]), X.__name__, typing.get_type_hints(first)["return"] is X)
        """,
    )
    assert out.splitlines() == [
        "True Number int | float",
        "Pairs ['K', 'V'] list[tuple[K, V]]",
        "True (<class 'str'>, <class 'int'>)",
        "T True [1, 2] True True",
        "<class 'float'> TypeVarTuple ParamSpec",
        "4 X True",
    ]


@pytest.mark.skipif(not _compat.PY_3_12_PLUS, reason="PEP 695 syntax needs Python 3.12")
def test_recursive_type_alias_fails_clearly():
    import marinade

    namespace = {"__name__": "__main__"}
    exec("type Tree = list[Tree] | int", namespace)
    with pytest.raises(marinade.PicklingError, match="recursive type alias 'Tree'"):
        marinade.dumps(namespace["Tree"])


@pytest.mark.skipif(not _compat.PY_3_13_PLUS, reason="type parameter defaults need Python 3.13")
def test_type_parameter_defaults(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=f"""
            import typing

            D = typing.TypeVar("D", default=int)
            Q = typing.ParamSpec("Q", default=[str])
            Rest = typing.TypeVarTuple("Rest", default=typing.Unpack[tuple[int, ...]])
            Plain = typing.TypeVar("Plain", infer_variance=True)

            obj = (D, Q, Rest, Plain)
            {DUMP}
        """,
        consumer=f"""
            {LOAD}
            D, Q, Rest, Plain = obj
            print(D.has_default(), D.__default__, Q.__default__, Rest.__default__)
            print(Plain.has_default(), Plain.__infer_variance__)
        """,
    )
    assert out.splitlines() == [
        "True <class 'int'> [<class 'str'>] typing.Unpack[tuple[int, ...]]",
        "False True",
    ]


# String annotations of classes (from __future__ import annotations) ---------

CLASS_HINTS_PRODUCER = f"""
    from __future__ import annotations

    import dataclasses
    import typing
    from decimal import Decimal
    from typing import Annotated, ClassVar, NamedTuple, Optional, TypedDict

    @dataclasses.dataclass
    class Node:
        value: Decimal
        next: Optional[Node] = None
        count: ClassVar[int] = 0
        tag: Annotated[str, "meta"] = ""

    class Tree(Node):
        children: list[Node]
        parent: Optional[Tree]

    class Plain:
        node: Node
        amounts: dict[str, Decimal]

    class Pair(NamedTuple):
        left: Decimal
        right: Optional[Node] = None

    class Row(TypedDict):
        price: Decimal
        node: Node

    obj = (Node, Tree, Plain, Pair, Row)
    {DUMP}
"""

CLASS_HINTS_CONSUMER = f"""
    import typing
    from typing import Optional

    class Node:  # the consumer's own names must not leak into the loaded hints
        pass
    Decimal = None

    {LOAD}
    LNode, Tree, Plain, Pair, Row = obj
    import decimal
    hints = typing.get_type_hints
    h = hints(LNode, include_extras=True)
    print(h["value"] is decimal.Decimal, h["next"] == Optional[LNode],
          h["count"] == typing.ClassVar[int], h["tag"] == typing.Annotated[str, "meta"])
    h = hints(Tree)
    print(h["children"] == list[LNode], h["parent"] == Optional[Tree], h["value"] is decimal.Decimal)
    h = hints(Plain)
    print(h == {{"node": LNode, "amounts": dict[str, decimal.Decimal]}})
    print(hints(Pair) == {{"left": decimal.Decimal, "right": Optional[LNode]}},
          hints(Row) == {{"price": decimal.Decimal, "node": LNode}})
"""


def test_get_type_hints_on_classes_with_string_annotations(tmp_path):
    out = run_roundtrip(tmp_path, producer=CLASS_HINTS_PRODUCER, consumer=CLASS_HINTS_CONSUMER)
    assert out.splitlines() == ["True True True True", "True True True", "True", "True True"]


def test_resolved_class_annotations():
    import sys
    import textwrap
    import types
    import typing

    from marinade.reduce.typing import resolved_class_annotations

    module = types.ModuleType("_marinade_annotation_probe")
    sys.modules[module.__name__] = module
    try:
        exec(textwrap.dedent("""
            from __future__ import annotations
            import typing
            from decimal import Decimal
            from typing import ClassVar, Optional
            if typing.TYPE_CHECKING:
                from fractions import Fraction

            class Node:
                class Inner:
                    pass
                value: Optional[Decimal]
                inner: Inner  # a name of the class body
                later: Fraction  # known to type checkers only
                count: ClassVar[int] = 0

            class Done:
                x: int
            Done.__annotations__["x"] = int
        """), module.__dict__)
        Node, Done = module.Node, module.Done
        resolved = resolved_class_annotations(Node)
        assert resolved == {"value": module.Optional[module.Decimal], "inner": Node.Inner,
                            "later": "Fraction", "count": typing.ClassVar[int]}
        assert list(resolved) == list(Node.__annotations__)  # same order
        assert Node.__annotations__["value"] == "Optional[Decimal]"  # the class is untouched
        assert resolved_class_annotations(Done) is None  # nothing to evaluate
        Node.__annotations__["extra"] = "Decimal"  # changed annotations: evaluated again
        assert resolved_class_annotations(Node)["extra"] is module.Decimal
    finally:
        del sys.modules[module.__name__]
