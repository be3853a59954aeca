"""Standalone payloads load where marinade is not installed.

Every consumer here runs the *base* interpreter as ``python -I -S`` from a
folder outside the repo: no site-packages, no PYTHONPATH, no marinade. Each
consumer first proves ``import marinade`` fails, then loads with plain pickle.
"""

from __future__ import annotations

import io
import pickle
import sys
import textwrap

import pytest

import marinade

from helpers import run_roundtrip, run_script

BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)
ISOLATED = ("-I", "-S")

NO_MARINADE = """
import os, pickle, sys
try:
    import marinade
except ImportError:
    pass
else:
    raise SystemExit("marinade is importable in the consumer: the test proves nothing")
def load(path=None):
    with open(path or os.environ["MARINADE_PAYLOAD"], "rb") as f:
        return pickle.load(f)
"""

STANDALONE_DUMP = """
import os as _os, marinade as _marinade
with open(_os.environ["MARINADE_PAYLOAD"], "wb") as _f:
    _f.write(_marinade.dumps(obj, standalone=True))
"""


def roundtrip(tmp_path, producer: str, consumer: str, **kw) -> str:
    producer = textwrap.dedent(producer) + STANDALONE_DUMP
    consumer = NO_MARINADE + textwrap.dedent(consumer)
    return run_roundtrip(tmp_path, producer, consumer,
                         consumer_python=BASE_PYTHON, consumer_flags=ISOLATED, **kw)


def test_payload_names_no_marinade_global():
    def outer():
        n = 0

        def inc():
            nonlocal n
            n += 1
            return n
        return inc

    class Local:
        def method(self):
            return super().__repr__()

    data = marinade.dumps([outer(), Local, Local(), lambda: 1], standalone=True)
    globals_loaded = []

    class Recorder(pickle.Unpickler):
        def find_class(self, module, name):
            globals_loaded.append((module, name))
            return super().find_class(module, name)

    inc, cls, inst, lam = Recorder(io.BytesIO(data)).load()
    assert (inc(), inc(), type(inst).__name__, lam()) == (1, 2, "Local", 1)
    assert globals_loaded and not [m for m, _ in globals_loaded if m.startswith("marinade")]
    default = []
    Recorder.find_class = lambda self, m, n: default.append(m) or pickle.Unpickler.find_class(
        self, m, n)
    Recorder(io.BytesIO(marinade.dumps(lambda: 1))).load()
    assert "marinade._rebuild" in default  # the check above can fail


def test_functions_and_closures(tmp_path):
    out = roundtrip(tmp_path, """
        import functools
        SCALE = 3

        def fact(n):
            return 1 if n <= 1 else n * fact(n - 1)

        def is_even(n):
            return True if n == 0 else is_odd(n - 1)

        def is_odd(n):
            return False if n == 0 else is_even(n - 1)

        def counters():
            count = 0
            def inc():
                nonlocal count
                count += 1
                return count
            def get():
                return count
            return inc, get

        def with_empty_cell():
            def uses_later():
                return later
            result = uses_later
            if False:
                later = 1
            return result

        def rec_closure():
            def walk(n):
                return 0 if n == 0 else 1 + walk(n - 1)
            return walk

        inc, get = counters()
        inc()
        obj = dict(lam=lambda x: x * SCALE, fact=fact, even=is_even, inc=inc, get=get,
                   empty=with_empty_cell(), walk=rec_closure(),
                   part=functools.partial(fact, 4), gen=lambda n: (i * i for i in range(n)))
    """, """
        obj = load()
        print(obj["lam"](2), obj["fact"](5), obj["even"](10), obj["even"](7))
        print(obj["inc"](), obj["inc"](), obj["get"]())  # shared cell stays shared
        try:
            obj["empty"]()
        except NameError as exc:
            print("empty:", type(exc).__name__)
        print(obj["walk"](6), obj["part"](), list(obj["gen"](4)))
    """)
    assert out.splitlines() == ["6 120 True False", "2 3 3", "empty: NameError",
                                "6 24 [0, 1, 4, 9]"]


def test_classes_of_every_kind(tmp_path):
    out = roundtrip(tmp_path, """
        import abc, dataclasses, enum, typing

        class Registry(type):
            def __new__(mcls, name, bases, ns, tag="none"):
                cls = super().__new__(mcls, name, bases, ns)
                cls.tag = tag
                return cls
            def __call__(cls, *args):
                inst = super().__call__(*args)
                inst.made_by_meta = True
                return inst

        class Tagged(metaclass=Registry, tag="blue"):
            def __init__(self, v):
                self.v = v

        class Shape(abc.ABC):
            @abc.abstractmethod
            def area(self): ...
            def describe(self):
                return f"{type(self).__name__}:{self.area()}"

        class Square(Shape):
            def __init__(self, side):
                self.side = side
            def area(self):
                return self.side ** 2
            def describe(self):
                return "sq " + super().describe()

        class Color(enum.Enum):
            RED = 1
            GREEN = 2
            def lower(self):
                return self.name.lower()

        class Perm(enum.Flag):
            R = 4
            W = 2

        @dataclasses.dataclass(frozen=True, order=True)
        class Point:
            x: int
            y: int = 0
            tags: list = dataclasses.field(default_factory=list)

        class Pair(typing.NamedTuple):
            a: int
            b: int = 2
            def total(self):
                return self.a + self.b

        class Movie(typing.TypedDict, total=False):
            title: str

        @typing.runtime_checkable
        class Closable(typing.Protocol):
            def close(self): ...

        T = typing.TypeVar("T")

        class Box(typing.Generic[T]):
            def __init__(self, item: T):
                self.item = item

        class AppError(Exception):
            def __init__(self, code):
                super().__init__(f"code {code}")
                self.code = code

        obj = dict(Tagged=Tagged, t=Tagged(1), Shape=Shape, Square=Square, sq=Square(3),
                   Color=Color, red=Color.RED, Perm=Perm, Point=Point, pt=Point(1, 2),
                   Pair=Pair, pair=Pair(1), Movie=Movie, Closable=Closable, Box=Box,
                   AppError=AppError)
    """, """
        import dataclasses
        o = load()
        t = o["Tagged"](5)
        print(o["Tagged"].tag, t.v, t.made_by_meta, o["t"].v)
        try:
            o["Shape"]()
        except TypeError:
            print("abstract enforced")
        print(o["sq"].describe(), o["Square"](2).describe())
        print(o["Color"](1) is o["red"], o["red"].lower(), o["Perm"].R | o["Perm"].W)
        P = o["Point"]
        print(P(1) < P(2), [f.name for f in dataclasses.fields(P)], P(3).tags, o["pt"])
        print(o["pair"].total(), o["Pair"]._fields, o["Movie"].__total__)
        class File:
            def close(self): pass
        print(isinstance(File(), o["Closable"]), isinstance(1, o["Closable"]))
        print(o["Box"][int](7).item)
        try:
            raise o["AppError"](42)
        except o["AppError"] as exc:
            print(exc, exc.code)
    """)
    assert out.splitlines() == [
        "blue 5 True 1",
        "abstract enforced",
        "sq Square:9 sq Square:4",
        "True red Perm.R|W",
        "True ['x', 'y', 'tags'] [] Point(x=1, y=2, tags=[])",
        "3 ('a', 'b') False",
        "True False",
        "7",
        "code 42 42",
    ]


def test_class_identity_across_separate_payloads(tmp_path):
    producer = """
        import os, marinade

        class Counter:
            instances = 0
            def __init__(self):
                type(self).instances += 1

        for i in range(2):
            with open(os.environ["MARINADE_PAYLOAD"] + str(i), "wb") as f:
                f.write(marinade.dumps(Counter(), standalone=True))
        obj = Counter
    """
    out = roundtrip(tmp_path, producer, """
        first = load(os.environ["MARINADE_PAYLOAD"] + "0")
        cls = type(first)
        cls.instances = 40  # live state a later load must not reset
        second = load(os.environ["MARINADE_PAYLOAD"] + "1")
        third = load()
        print(type(second) is cls, third is cls, cls.instances)
    """)
    assert out == "True True 40"


def test_reconstructor_kit_is_made_once_per_process(tmp_path):
    """Class payloads carry marinade's class reconstructors as one kit, which the
    loading process builds once: the second payload finds it built."""
    producer = """
        import os, marinade

        class First:
            def hello(self):
                return "first"

        class Second:
            def hello(self):
                return "second"

        with open(os.environ["MARINADE_PAYLOAD"] + "2", "wb") as f:
            f.write(marinade.dumps(Second(), standalone=True))
        obj = First()
    """
    out = roundtrip(tmp_path, producer, """
        first = load()
        kits = dict(vars(sys.modules["marinade._kits"]))
        kits = {k: v for k, v in kits.items() if type(k) is bytes}
        (kit,) = kits.values()
        second = load(os.environ["MARINADE_PAYLOAD"] + "2")
        again = {k: v for k, v in vars(sys.modules["marinade._kits"]).items() if type(k) is bytes}
        print(first.hello(), second.hello(), len(again), next(iter(again.values())) is kit,
              sorted(kit)[-2:], kit["rebuild_class"].__module__)
    """)
    assert out == "first second 1 True ['rebuild_class', 'set_class_state'] marinade._rebuild"


def test_a_class_code_table_is_unmarshalled_once_per_process(tmp_path):
    """Loading a class again (another payload, another load) finds its code
    table kept beside the kit, as default payloads find theirs in marinade."""
    producer = """
        import os, marinade

        class Shape:
            def area(self):
                return 6

        with open(os.environ["MARINADE_PAYLOAD"] + "2", "wb") as f:
            f.write(marinade.dumps([Shape, Shape()], standalone=True))
        obj = Shape
    """
    out = roundtrip(tmp_path, producer, """
        first = load()
        second, instance = load(os.environ["MARINADE_PAYLOAD"] + "2")
        third = load()
        tables = vars(sys.modules["marinade._kits"])["code tables"]
        (table,) = tables.values()
        print(first is second is third, instance.area(), first.area.__code__ is table[0])
    """)
    assert out == "True 6 True"


def test_a_kit_from_elsewhere_is_read_as_shipped_code():
    """Inspection vouches for this marinade's kit only; another kit's functions
    are analysed like any shipped code (and calling them is reported)."""
    from marinade import standalone

    class Plain:
        def method(self):
            return 1

    data = marinade.dumps(Plain, standalone=True)
    report = marinade.inspect(data)
    assert not report.dangerous and not report.findings, str(report)
    kit = standalone.reconstructor_kit()[0].args[2]
    assert data.count(kit) == 1
    # The same kit with one name changed in it ("sys" -> "sYs") is no longer ours.
    forged = data.replace(kit, kit.replace(b"\x03sys", b"\x03sYs", 1))
    assert forged != data
    report = marinade.inspect(forged)
    messages = [f.message for f in report.findings]
    assert any("runs shipped code while loading" in m for m in messages), messages
    # A kit that would unpack past the inspection limit is refused, not unpacked.
    bomb = standalone.pack_zeros(bytes(254)) * 70_000  # 140 kB standing for 17.8 MB
    names, defaults, _, tag = standalone.reconstructor_kit()[0].args

    class Bomb:
        def __reduce__(self):
            return marinade._rebuild.load_kit, (names, defaults, bomb, tag)

    import tracemalloc

    tracemalloc.start()
    try:
        report = marinade.inspect(pickle.dumps(Bomb()))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak  # never unpacked
    assert report.dangerous
    assert any("reconstructor kit inspection cannot read" in f.message for f in report.findings)


def test_module_registered_by_value(tmp_path):
    out = roundtrip(tmp_path, """
        import os, sys
        os.makedirs("pkg_only_here", exist_ok=True)
        with open("pkg_only_here/__init__.py", "w") as f:
            f.write("BASE = 10\\n"
                    "def add(x):\\n    return BASE + x\\n"
                    "class Thing:\\n    def twice(self, x):\\n        return 2 * add(x)\\n")
        sys.path.insert(0, os.getcwd())
        import marinade, pkg_only_here
        marinade.register_pickle_by_value(pkg_only_here)
        obj = [pkg_only_here.add, pkg_only_here.Thing()]
    """, """
        add, thing = load()
        print(add(1), thing.twice(1), "pkg_only_here" in sys.modules)
    """)
    assert out == "11 22 False"


def test_other_python_version_is_refused_clearly(tmp_path):
    others = [p for p in _other_interpreters() if p]
    if not others:
        pytest.skip("needs a second CPython minor version")
    run_script(tmp_path, "", name="unused.py")  # make the folder
    payload = tmp_path / "payload.bin"
    payload.write_bytes(marinade.dumps(lambda x: x + 1, standalone=True))
    here = "{}.{}".format(*sys.version_info[:2])
    for other in others:
        proc = run_script(tmp_path, f"""
            import pickle
            try:
                pickle.load(open({str(payload)!r}, "rb"))
            except Exception as exc:
                print(type(exc).__name__, exc)
            else:
                print("LOADED")
        """, python=other, flags=ISOLATED, name="load_other.py")
        assert proc.returncode == 0, proc.stderr
        there = proc.stdout.strip()
        assert there.startswith("KeyError"), there
        version = "{}.{}".format(*_version_of(other))
        assert f"CPython {here}" in there and f"run on {version}" in there, there


def _other_interpreters():
    import subprocess
    try:
        found = subprocess.run(["sh", "scripts/find-pythons.sh"], capture_output=True, text=True,
                               cwd=_repo_root(), timeout=30).stdout.split()
    except OSError:
        return []
    return [p for p in found if _version_of(p) != sys.version_info[:2]]


def _version_of(python):
    import subprocess
    out = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"],
                         capture_output=True, text=True, timeout=30).stdout.split()
    return tuple(int(x) for x in out)


def _repo_root():
    from pathlib import Path
    return Path(__file__).resolve().parent.parent


def test_pickler_subclass_with_its_own_override_in_standalone_mode(tmp_path):
    out = roundtrip(tmp_path, """
        import io, marinade

        class Secret:
            pass

        class Tagging(marinade.Pickler):
            def reducer_override(self, obj):
                if type(obj) is Secret:
                    return str, ("redacted",)
                return super().reducer_override(obj)

        class Local:
            def hello(self):
                return "hi " + super().__repr__()[:1]

        buf = io.BytesIO()
        Tagging(buf, standalone=True).dump([Secret(), Local(), lambda: 7])
        import os
        with open(os.environ["MARINADE_PAYLOAD"] + ".sub", "wb") as f:
            f.write(buf.getvalue())
        obj = None
    """, """
        secret, local, lam = load(os.environ["MARINADE_PAYLOAD"] + ".sub")
        print(secret, local.hello(), lam())
    """)
    assert out == "redacted hi < 7"


def test_zero_packing_round_trips():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from marinade import standalone

    chunks = st.one_of(st.binary(max_size=8), st.integers(1, 600).map(bytes),
                       st.just(b"\xff"), st.just(b"\xff\x00"))

    @settings(max_examples=300, deadline=None)
    @given(st.lists(chunks, max_size=30).map(b"".join))
    def round_trip(data):
        packed = standalone.pack_zeros(data)
        assert standalone.unpack_zeros(packed) == data
        assert standalone.unpacked_size(packed) == len(data)
        assert len(packed) <= len(data) + data.count(b"\xff")

    round_trip()
