"""Write the golden payloads of this interpreter: tests/golden/py3XY/<mode>.pkl.

Run as ``python tests/golden/make_golden.py`` with each supported interpreter
(marinade installed) when the payload format gains something new: add a
generation below. It writes only missing files. Existing files must never be
regenerated to make a test pass: they are what old payloads in the wild look
like, and test_golden.py loads them forever.
"""

import dataclasses
import datetime
import enum
import os
import sys
import types

import marinade

SCALE = 3


def make_counter(start):
    count = start

    def counter():
        nonlocal count
        count += 1
        return count

    return counter


class Shape:
    sides = 0

    def __init__(self, size):
        self.size = size

    def describe(self):
        return f"{type(self).__name__}:{self.sides}x{self.size * SCALE}"

    # (from generation 3: four plain methods make a method batch)
    def area(self):
        return self.size * self.size

    def grow(self, by=1):
        return type(self)(self.size + by)


class Square(Shape):
    sides = 4

    def describe(self):
        return "square " + super().describe()


class Color(enum.Enum):
    RED = 1
    GREEN = 2


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int = 0


def countdown(n):
    while n:
        yield n
        n -= 1


def fail(text):
    try:
        return int(text)
    except ValueError as error:
        raise LookupError(text) from error


def caught():
    try:
        fail("x")
    except LookupError as error:
        return error


class Vector:
    """(generation 6) A base whose reduce sends its own state to its own
    __setstate__ and knows nothing of a subclass's __dict__."""
    __slots__ = ("items",)

    def __init__(self, *items):
        self.items = list(items)

    def __reduce__(self):
        return type(self), (), {"packed": ",".join(map(str, self.items))}

    def __setstate__(self, state):
        self.items = [int(x) for x in state["packed"].split(",")]


class Named(Vector):
    pass


class Day(datetime.date):
    pass


class Money:
    """(generation 7) A class constant made by the class's own __new__:
    its methods are set first (_rebuild.set_class_methods)."""

    def __new__(cls, cents):
        self = super().__new__(cls)
        self.cents = cents
        return self

    def __getnewargs__(self):
        return (self.cents,)


Money.ZERO = Money(7)


def doubled(self):
    return self.size * 2


def objects():
    counter = make_counter(10)
    counter()
    gen = countdown(4)
    next(gen)
    return {"lambda": lambda x: x * SCALE, "counter": counter, "Square": Square,
            "square": Square(2), "red": Color.RED, "Color": Color, "point": Point(1),
            "gen": gen, "error": caught(), **_generation_6(), "Money": Money}


def _generation_6():
    named = Named(1, 2)
    named.label = "v"        # through _rebuild.set_subclass_state
    day = Day(2024, 2, 29)
    day.label = "leap"       # plain BUILD state after date's reduce
    patched = Square(5)
    patched.describe = types.MethodType(doubled, patched)  # MethodType, not getattr
    return {"named": named, "day": day, "patched": patched}


# Each format generation adds files; existing files are never rewritten.
# 1: the first format. 2: class methods as one code table (load_code_table).
# 3: plain methods made by one map(types.FunctionType, ...) (reduce/methods.py).
# 4: standalone class reconstructors as one kit (_rebuild.load_kit).
# 5: exceptions with their chain and traceback (_rebuild.traceback); in
#    standalone payloads, class code tables loaded through the kit.
# 6: subclass attributes a base's reduce leaves out (_rebuild.set_subclass_state),
#    bound methods as types.MethodType.
# 7: a class whose attributes hold instances made by its own hooks
#    (_rebuild.set_class_methods).
GENERATIONS = {1: ("default", "standalone", "portable"), 2: ("default", "standalone"),
               3: ("default", "standalone"), 4: ("standalone",), 5: ("default", "standalone"),
               6: ("default", "standalone"), 7: ("default", "standalone")}
OPTIONS = {"default": {}, "standalone": {"standalone": True}, "portable": {"portable": True}}


def golden_name(mode: str, generation: int) -> str:
    return f"{mode}.pkl" if generation == 1 else f"{mode}-{generation}.pkl"


def main():
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          "py{}{}".format(*sys.version_info[:2]))
    os.makedirs(folder, exist_ok=True)
    for generation, modes in GENERATIONS.items():
        for mode in modes:
            path = os.path.join(folder, golden_name(mode, generation))
            if os.path.exists(path):
                continue
            objs = objects()
            if mode != "default":
                del objs["gen"]  # frames need the default mode
            with open(path, "wb") as f:
                f.write(marinade.dumps(objs, **OPTIONS[mode]))
            print("wrote", path)


if __name__ == "__main__":
    main()
