"""One class object per class definition, across payloads and processes.

A class sent by value in several payloads (several ``dumps`` calls, several
producer processes) must come back as one class in the consumer, and loading
it again must leave the live class alone (cloudpickle #439/#376, Beam #35062).
Code that travels by value (a base's ``__init_subclass__``) is not run again
with made-up arguments (cloudpickle #527, dill #381).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from helpers import run_roundtrip, run_script

# Producer snippet: store ``parts`` (objects, or payload bytes made earlier)
# as a list of separate marinade payloads inside a plain pickle, so the
# consumer can load them one at a time.
WRITE_PARTS = (
    "import os as _os, pickle as _pickle, marinade as _marinade; "
    "open(_os.environ['MARINADE_PAYLOAD'], 'wb').write(_pickle.dumps("
    "[x if type(x) is bytes else _marinade.dumps(x) for x in parts]))"
)
READ_PARTS = (
    "import os, pickle; "
    "parts = pickle.loads(open(os.environ['MARINADE_PAYLOAD'], 'rb').read())"
)


def test_separate_payloads_one_class_and_live_state_kept(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=f"""
            class Counter:
                counter = 0

                def __init__(self):
                    self.v = 1

                def bump(self):
                    type(self).counter += 1
                    return type(self).counter

            def make_counter():
                return Counter()

            import marinade
            parts = [marinade.dumps(x) for x in (Counter, Counter(), make_counter)]
            Counter.counter = 100  # changed after the first dumps: the key stays
            parts.append(Counter)
            {WRITE_PARTS}
        """,
        consumer=f"""
            {READ_PARTS}
            C = pickle.loads(parts[0])
            print(C.counter)
            C.counter = 5
            C.added_later = "mine"
            inst = pickle.loads(parts[1])
            print(type(inst) is C, C.counter, C.added_later, inst.bump(), C.counter)
            make = pickle.loads(parts[2])
            print(type(make()) is C, make().bump(), C.counter)
            again = pickle.loads(parts[3])
            print(again is C, C.counter, hasattr(C, "added_later"))
        """,
    )
    assert out.splitlines() == [
        "0",
        "True 5 mine 6 6",
        "True 7 7",
        "True 7 True",
    ]


def test_instance_first_then_class(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=f"""
            class Box:
                def __init__(self, v):
                    self.v = v

                def get(self):
                    return self.v

            class Sub(Box):
                def get(self):
                    return super().get() * 2

            parts = [Sub(3), Box, Sub, (Box(1), Sub(1))]
            {WRITE_PARTS}
        """,
        consumer=f"""
            {READ_PARTS}
            sub = pickle.loads(parts[0])
            Box = pickle.loads(parts[1])
            Sub = pickle.loads(parts[2])
            b, s = pickle.loads(parts[3])
            print(type(sub) is Sub, Sub.__bases__[0] is Box, type(b) is Box, type(s) is Sub)
            print(sub.get(), s.get(), Sub(5).get())
        """,
    )
    assert out.splitlines() == ["True True True True", "6 2 10"]


def test_init_subclass_not_rerun(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=f"""
            class Base:
                calls = []

                def __init_subclass__(cls, /, kind, **kwargs):
                    super().__init_subclass__(**kwargs)
                    Base.calls.append((cls.__name__, kind))
                    cls.kind = kind

            class A(Base, kind="a"):
                pass

            class B(A, kind="b"):
                pass

            parts = [A, B, B(), Base]
            {WRITE_PARTS}
        """,
        consumer=f"""
            {READ_PARTS}
            A = pickle.loads(parts[0])
            Base = A.__bases__[0]
            print(Base.calls, A.kind)
            B = pickle.loads(parts[1])
            print(Base.calls, B.kind, B.__bases__[0] is A)
            print(type(pickle.loads(parts[2])) is B, pickle.loads(parts[3]) is Base)
            print(Base.calls)

            class C(B, kind="c"):
                pass
            print(Base.calls[-1], C.kind)
        """,
    )
    assert out.splitlines() == [
        "[('A', 'a'), ('B', 'b')] a",
        "[('A', 'a'), ('B', 'b')] b True",
        "True True",
        "[('A', 'a'), ('B', 'b')]",
        "('C', 'c') c",
    ]


def test_subclass_from_a_later_payload_registers_with_the_live_base(tmp_path):
    # A plugin registry: the base reaches a worker with one task, a subclass
    # defined afterwards with a later one. The live base's registry must get
    # the subclass, as the class statement gave it in the producer, and with
    # the subclass's own attributes already set (``cls.name`` below).
    out = run_roundtrip(
        tmp_path,
        producer=f"""
            import marinade

            class Plugin:
                registry = {{}}
                created = []
                name = "base"

                def __init_subclass__(cls, **kwargs):
                    super().__init_subclass__(**kwargs)
                    Plugin.registry[cls.name] = cls
                    Plugin.created.append(cls.__name__)

            class Early(Plugin):
                name = "early"

            first = marinade.dumps(Plugin)      # the registry holds Early

            class Late(Plugin):
                name = "late"

                def run(self):
                    return "ran " + self.name

            parts = [first, Late, Early, Plugin]
            {WRITE_PARTS}
        """,
        consumer=f"""
            {READ_PARTS}
            Plugin = pickle.loads(parts[0])
            print(sorted(Plugin.registry), Plugin.created)
            Late = pickle.loads(parts[1])
            print(Late.__bases__[0] is Plugin, sorted(Plugin.registry), Plugin.created)
            print(Plugin.registry["late"] is Late, Plugin.registry["late"]().run())
            Early = pickle.loads(parts[2])   # came with the base: not registered twice
            print(Plugin.registry["early"] is Early, Plugin.created, pickle.loads(parts[3]) is Plugin)
        """,
    )
    assert out.splitlines() == [
        "['early'] ['Early']",
        "True ['early', 'late'] ['Early', 'Late']",
        "True ran late",
        "True ['Early', 'Late'] True",
    ]


def test_round_trip_in_producer_is_identity(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer="""
            import os, pickle, marinade

            class K:
                x = 1

            def factory(n):
                class Local:
                    pass
                return Local

            # a factory making look-alike classes: keys must not clash
            L1, L2 = factory(1), factory(1)
            results = [
                pickle.loads(marinade.dumps(K)) is K,
                pickle.loads(marinade.dumps(L1)) is L1,
                pickle.loads(marinade.dumps(L2)) is L2,
                type(pickle.loads(marinade.dumps(L2()))) is L2,
                pickle.loads(marinade.dumps([K, L1, L2])) == [K, L1, L2],
            ]
            assert all(results), results
            # the look-alikes stay two classes in another process too
            open(os.environ["MARINADE_PAYLOAD"], "wb").write(marinade.dumps((L1, L2)))
        """,
        consumer="""
            import os, pickle
            L1, L2 = pickle.loads(open(os.environ["MARINADE_PAYLOAD"], "rb").read())
            print(L1 is L2, L1.__qualname__ == L2.__qualname__)
        """,
    )
    assert out.splitlines() == ["False True"]


PRODUCER_SAME = """
    import os, marinade

    class Shared:
        '''The same definition in both producers.'''
        counter = 0

        def hello(self):
            return "hello from Shared"

    def make():
        class Local:
            def m(self):
                return 42
        return Local

    Local = make()
    payload = marinade.dumps((Shared, Shared(), Local))
    open(os.environ["MARINADE_PAYLOAD"], "wb").write(payload)
"""

PRODUCER_OTHER = """
    import os, marinade

    class Shared:
        '''Same qualified name, different class.'''
        counter = 0

        def hello(self):
            return "hello from the other Shared"

    def make():
        class Local:
            def m(self):
                return 43
        return Local

    Local = make()
    payload = marinade.dumps((Shared, Shared(), Local))
    open(os.environ["MARINADE_PAYLOAD"], "wb").write(payload)
"""


def _produce(tmp_path: Path, name: str, source: str) -> Path:
    out = tmp_path / f"{name}.bin"
    proc = run_script(tmp_path, source, cwd=tmp_path / name,
                      env={"MARINADE_PAYLOAD": str(out)})
    assert proc.returncode == 0, proc.stderr
    return out


def test_separate_producer_processes(tmp_path):
    first = _produce(tmp_path, "first", PRODUCER_SAME)
    second = _produce(tmp_path, "second", PRODUCER_SAME)  # same script, run again
    other = _produce(tmp_path, "other", PRODUCER_OTHER)  # same names, other code
    proc = run_script(
        tmp_path,
        f"""
            import pickle
            def load(path):
                with open(path, "rb") as f:
                    return pickle.loads(f.read())

            S1, s1, L1 = load({str(first)!r})
            S1.counter = 5
            S2, s2, L2 = load({str(second)!r})
            print(S1 is S2, type(s2) is S1, L1 is L2, S1.counter, s2.hello(), L2().m())
            S3, s3, L3 = load({str(other)!r})
            print(S3 is S1, L3 is L1, s3.hello(), L3().m(), S1().hello(), L1().m())
            print(S3.__qualname__ == S1.__qualname__, S3.__doc__)
        """,
        cwd=tmp_path / "consumer",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "True True True 5 hello from Shared 42",
        "False False hello from the other Shared 43 hello from Shared 42",
        "True Same qualified name, different class.",
    ]


def test_standalone_payloads_share_classes(tmp_path):
    # Standalone payloads ship the reconstructors; without marinade installed
    # the class registry is kept under the same module name, so two payloads
    # still give one class, and Enums with a custom __new__ still rebuild.
    import sys

    base_python = getattr(sys, "_base_executable", sys.executable)
    out = run_roundtrip(
        tmp_path,
        producer="""
            import enum, os, pickle, marinade

            class Status(enum.Enum):
                def __new__(cls, code, label):
                    member = object.__new__(cls)
                    member._value_ = code
                    member.label = label
                    return member

                OK = (200, "fine")

            class Job:
                count = 0

                def __init__(self, status):
                    self.status = status

            parts = [marinade.dumps(x, standalone=True) for x in (Job, Job(Status.OK))]
            open(os.environ["MARINADE_PAYLOAD"], "wb").write(pickle.dumps(parts))
        """,
        consumer=f"""
            try:
                import marinade
            except ImportError:
                pass
            else:
                raise SystemExit("marinade is importable in the consumer")
            {READ_PARTS}
            Job = pickle.loads(parts[0])
            Job.count = 3
            job = pickle.loads(parts[1])
            Status = type(job.status)
            print(type(job) is Job, Job.count, job.status is Status(200), job.status.label)
        """,
        consumer_python=base_python,
        consumer_flags=("-I", "-S"),
    )
    assert out.splitlines() == ["True 3 True fine"]


BATCHED_PRODUCER = """
import os, sys, marinade
size = {size}      # a module global named like the attribute below: not read by the class
LIMIT = {limit}    # a module global the class reads
class Box:
    def __init__(self, size):
        self.size = size
    def area(self):
        return self.size * self.size
    def fits(self):
        return self.size <= LIMIT
    def grow(self, by=1):
        return Box(self.size + by)
    def label(self):
        return "box"
with open(os.environ["MARINADE_PAYLOAD"], "wb") as f:
    f.write(marinade.dumps(Box))
"""


def test_batched_class_key_follows_the_globals_it_reads(tmp_path):
    """Producers differing in an unrelated global give one class; in a global
    the methods read (a constant), two."""
    one = _produce(tmp_path, "one", BATCHED_PRODUCER.format(size=1, limit=10))
    two = _produce(tmp_path, "two", BATCHED_PRODUCER.format(size=2, limit=10))
    three = _produce(tmp_path, "three", BATCHED_PRODUCER.format(size=1, limit=3))
    proc = run_script(tmp_path, f"""
        import pickle
        def load(path):
            with open(path, "rb") as f:
                return pickle.loads(f.read())
        A, B, C = load({str(one)!r}), load({str(two)!r}), load({str(three)!r})
        print(A is B, A is C, A(5).fits(), C(5).fits(), A(2).grow().area())
    """, cwd=tmp_path / "consumer")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "False", "True", "False", "9"]


def test_an_edited_class_is_never_taken_for_the_old_one(tmp_path):
    # A long-lived loader (a pool worker) keeps the classes it loaded. A
    # notebook cell re-run after an edit, or a factory, makes a class with
    # the same name and code: it must not load as the class loaded before.
    producer = r"""
        import gc, os, pickle, marinade, __main__

        CELL = ("class Model:\n"
                "    params = {'lr': %s, 'layers': [%s]}\n"
                "    kind: list[%s]\n"
                "    def run(self):\n"
                "        return (self.params['lr'], self.params['layers'],\n"
                "                str(self.__annotations__['kind']))\n")

        def make(loss):
            class Head:
                loss_cls = loss
                def run(self):
                    return self.loss_cls.__name__
            return Head

        payloads = []
        exec(CELL % ("0.1", "1, 2", "int"), __main__.__dict__)
        payloads.append(marinade.dumps(Model()))
        exec(CELL % ("0.5", "1, 2", "int"), __main__.__dict__)   # the edit; the old class dies
        gc.collect()
        payloads.append(marinade.dumps(Model()))
        exec(CELL % ("0.5", "1, 2", "int"), __main__.__dict__)   # re-run as it is
        gc.collect()
        payloads.append(marinade.dumps(Model()))
        payloads.append(marinade.dumps(make(int)()))
        gc.collect()
        payloads.append(marinade.dumps(make(str)()))
        open(os.environ["MARINADE_PAYLOAD"], "wb").write(pickle.dumps(payloads))
    """
    # A second producer process whose class differs from the first one only
    # in an annotation: told apart by content.
    other = r"""
        import os, pickle, marinade, __main__
        exec("class Model:\n"
             "    params = {'lr': 0.1, 'layers': [1, 2]}\n"
             "    kind: list[str]\n"
             "    def run(self):\n"
             "        return (self.params['lr'], self.params['layers'],\n"
             "                str(self.__annotations__['kind']))\n", __main__.__dict__)
        open(os.environ["MARINADE_PAYLOAD"], "wb").write(pickle.dumps([marinade.dumps(Model())]))
    """
    consumer = """
        import os, pickle, sys
        loaded = []
        for path in sys.argv[1:]:
            for data in pickle.loads(open(path, "rb").read()):
                loaded.append(pickle.loads(data))   # all kept alive, as a worker would
        print([obj.run() for obj in loaded])
    """
    first = tmp_path / "first"
    second = tmp_path / "second"
    for folder, source in ((first, producer), (second, other)):
        folder.mkdir()
        proc = run_script(folder, textwrap.dedent(source),
                          env={"MARINADE_PAYLOAD": str(folder / "payloads.bin")})
        assert proc.returncode == 0, proc.stderr
    loader = tmp_path / "loader"
    loader.mkdir()
    proc = run_script(loader, textwrap.dedent(consumer),
                      args=[str(first / "payloads.bin"), str(second / "payloads.bin")])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str([
        (0.1, [1, 2], "list[int]"), (0.5, [1, 2], "list[int]"), (0.5, [1, 2], "list[int]"),
        "int", "str", (0.1, [1, 2], "list[str]")])


PRODUCER_ORDER = """
    import os, sys, marinade

    class Base:
        LIMIT = 3
        def a(self, x=1): return x
        def b(self): return G
        def c(self): return "c"
        def d(self): return "d"
        e = d  # a second name for a method

    class Sub(Base):
        def s(self): return "s"

    G = 7
    # The base's key comes from its own dump in one producer, from the
    # subclass's key in the other (without the method batch of a dump).
    first = (Base, Sub) if sys.argv[1] == "base" else (Sub, Base)
    payloads = [marinade.dumps(c) for c in first]
    open(os.environ["MARINADE_PAYLOAD"], "wb").write(marinade.dumps(payloads))
"""


def test_a_class_key_does_not_depend_on_what_was_pickled_first(tmp_path):
    paths = {}
    for order in ("base", "sub"):
        paths[order] = tmp_path / f"{order}.bin"
        proc = run_script(tmp_path, PRODUCER_ORDER, cwd=tmp_path / order, args=[order],
                          env={"MARINADE_PAYLOAD": str(paths[order])})
        assert proc.returncode == 0, proc.stderr
    proc = run_script(
        tmp_path,
        f"""
            import pickle
            def load(path):
                return [pickle.loads(p) for p in pickle.loads(open(path, "rb").read())]

            Base1, Sub1 = load({str(paths["base"])!r})
            Sub2, Base2 = load({str(paths["sub"])!r})
            print(Base1 is Base2, Sub1 is Sub2, Sub2.__bases__[0] is Base1, Sub2().b())
        """,
        cwd=tmp_path / "consumer",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True", "True", "7"]
