"""Payload bytes are a function of the pickled objects only.

The same ``__main__`` script must give byte-identical payloads in separate
processes, whatever the hash seed (set and frozenset iteration order, dict
layout of interned strings) and whatever the script file's mtime. Caches and
content-addressed stores key on these bytes.

Not covered, by design: sets of strings held as plain *data* (an instance
attribute, a global dict's value) are written in iteration order, exactly as
``pickle`` does.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from helpers import DUMP, LOAD, child_env, run_roundtrip, run_script

PRODUCER = textwrap.dedent('''
    import hashlib, os, sys
    import marinade

    GREETING = "hello"
    LIMITS = (1, 2.5, None, b"raw")

    def plain(x, *, scale=2):
        """Docstring."""
        return x * scale

    def uses_frozenset_constant(word):
        return word in {"alpha", "beta", "gamma", "delta", "epsilon"}

    def nested_constants(word):
        def inner():
            return word in frozenset({"north", "south", "east", "west"}) or word in ("x", "y")
        return inner()

    def make_closure(n):
        table = {"k": n}
        def closure(x):
            return x + table["k"] + len(GREETING)
        return closure

    def counter():
        count = 0
        def bump():
            nonlocal count
            count += 1
            return count
        return bump

    def reader():
        return COUNTER

    def writer(v):
        global COUNTER
        COUNTER = v

    COUNTER = 0

    class Shape:
        KINDS = ("circle", "square", "triangle", "hexagon", "pentagon")
        NAMES = {"a": 1, "b": 2}
        sides: int = 0

        def __init__(self, sides):
            self.sides = sides

        def kind_ok(self, kind):
            return kind in self.KINDS and kind not in {"blob", "cloud", "ring", "dot"}

        @property
        def double(self):
            return self.sides * 2

        @classmethod
        def square(cls):
            return cls(4)

        @staticmethod
        def helper(a):
            return a in frozenset({"p", "q", "r"})

    class Square(Shape):
        def __init__(self):
            super().__init__(4)

    # Enough plain methods for a method batch: in the class namespace (constants
    # and methods only), and in the state (a property among them). Their
    # globals come as a set: its order must not leak into the payload.
    ALPHA, BETA, GAMMA, DELTA = 1, 2.5, "g", (4,)

    class InNamespace:
        unit = 1
        def a(self): return ALPHA + BETA
        def b(self, k=2): return GAMMA * k
        def c(self): return DELTA + (ALPHA,)
        def d(self): return COUNTER
        def e(self): return InNamespace

    class InState:
        def a(self): return ALPHA
        def b(self): return BETA
        @property
        def p(self): return GAMMA
        def c(self): return DELTA
        def d(self, x=None): return InState

    objects = {
        "lambda": lambda a, b=3: a + b,
        "plain": plain,
        "frozenset_const": uses_frozenset_constant,
        "nested_constants": nested_constants,
        "closure": make_closure(5),
        "counter": counter(),
        "globals_pair": [reader, writer],
        "class": Shape,
        "subclass": Square,
        "batch_namespace": InNamespace,
        "batch_state": InState,
        "instance": Shape(3),
        "data": {"name": "x", "values": [1, 2, 3], "nested": {"z": 1, "a": (2, 3)}},
        "all": None,
    }
    objects["all"] = [value for key, value in objects.items() if key != "all"]
    for name, obj in objects.items():
        data = marinade.dumps(obj)
        print(name, hashlib.sha256(data).hexdigest())
        if name == "all":
            open(os.environ["MARINADE_PAYLOAD"], "wb").write(data)
''')


def _run(folder: Path, payload: Path, seed: str, mtime: float | None = None) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "script.py"
    script.write_text(PRODUCER, encoding="utf-8")
    if mtime is not None:
        os.utime(script, (mtime, mtime))
    proc = subprocess.run(
        [sys.executable, "script.py"],
        cwd=folder,
        env=child_env(PYTHONHASHSEED=seed, MARINADE_PAYLOAD=str(payload)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_same_bytes_across_hash_seeds_and_mtimes(tmp_path):
    folder = tmp_path / "producer"
    payloads = [tmp_path / f"payload{i}.bin" for i in range(3)]
    runs = [
        _run(folder, payloads[0], "0", mtime=1_000_000_000),
        _run(folder, payloads[1], "12345", mtime=1_700_000_000),
        _run(folder, payloads[2], "random"),
    ]
    first = dict(line.split() for line in runs[0].splitlines())
    assert len(first) == 14
    for other in runs[1:]:
        digests = dict(line.split() for line in other.splitlines())
        differing = sorted(name for name in first if first[name] != digests[name])
        assert differing == [], f"payloads differ between runs for: {differing}"
    data = [p.read_bytes() for p in payloads]
    assert data[0] == data[1] == data[2]
    assert hashlib.sha256(data[0]).hexdigest() == first["all"]

    # The payload is not only stable, it works.
    proc = run_script(tmp_path, LOAD + textwrap.dedent("""
        (lam, plain, fz, nested, closure, bump, (reader, writer), Shape, Square, InNamespace,
         InState, shape, data) = obj
        print(lam(1), plain(2), fz("beta"), fz("zeta"), nested("east"), closure(1))
        print(bump(), bump(), reader(), writer(3), reader())
        print(sorted(Shape.KINDS)[0], shape.kind_ok("square"), shape.double,
              Shape.helper("q"), Square().sides, type(shape) is Shape)
        print(data["nested"]["a"])
        n, s = InNamespace(), InState()
        print(n.a(), n.b(), n.c(), n.d(), n.e() is InNamespace, s.a(), s.p, s.d() is InState)
    """), env={"MARINADE_PAYLOAD": str(payloads[1])}, cwd=tmp_path / "consumer")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "4 4 True False True 11",
        "1 2 0 None 3",
        "circle True 6 True 4 True",
        "(2, 3)",
        "3.5 gg (4, 1) 3 True 1 g True",
    ]


def test_repeated_dumps_in_one_process_are_identical(tmp_path):
    # Caches inside marinade (code bytes, class keys) must not change the
    # output between a first and a later dump.
    proc = run_script(tmp_path, """
        import marinade

        class C:
            TAGS = frozenset({"one", "two", "three"})
            def m(self):
                return self in {"a", "b"}

        def make():
            return lambda: C

        first = marinade.dumps([make(), C, C()])
        second = marinade.dumps([make(), C, C()])
        third = marinade.dumps([make(), C, C()], protocol=5)
        print(first == second == third)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True"


def test_class_namespace_sets_across_hash_seeds(tmp_path):
    script = """
        import hashlib, marinade

        class Palette:
            COLORS = {"red", "green", "blue", "cyan", "magenta", "yellow"}
            FROZEN = frozenset({"north", "south", "east", "west"})

        print(hashlib.sha256(marinade.dumps(Palette)).hexdigest())
    """
    digests = set()
    for seed in ("0", "12345", "777"):
        proc = run_script(tmp_path, script, env={"PYTHONHASHSEED": seed})
        assert proc.returncode == 0, proc.stderr
        digests.add(proc.stdout.strip())
    assert len(digests) == 1


def test_sorted_sets_still_load_as_sets(tmp_path):
    out = run_roundtrip(tmp_path, """
        import os, marinade
        TAGS = {"b", "a", "c"}

        class Palette:
            COLORS = {"red", "green"}
            FROZEN = frozenset({"north", "south"})
            def has(self, tag):
                return tag in TAGS

        obj = Palette
        """ + DUMP + "\n", LOAD + """
print(type(obj.COLORS).__name__, sorted(obj.COLORS), type(obj.FROZEN).__name__,
      obj().has("a"), obj().has("z"))
""")
    assert out == "set ['green', 'red'] frozenset True False"


def test_notebook_cell_file_names_do_not_change_payloads(tmp_path):
    # The same cell run in two kernels (different pid, execution count) must
    # give the same bytes; the code still loads and runs in another process.
    script = """
        import hashlib, sys, marinade
        src = "SCALE = 3\\ndef f(x):\\n    return [SCALE * i for i in range(x)]\\n"
        out = []
        for filename in sys.argv[1:]:
            ns = {"__name__": "__main__"}
            exec(compile(src, filename, "exec"), ns)
            out.append(hashlib.sha256(marinade.dumps(ns["f"])).hexdigest())
        print(len(set(out)))
    """
    names = [["/tmp/ipykernel_4242/2571830189.py", "/tmp/ipykernel_99/2571830189.py"],
             ["<ipython-input-3-1f2e3d4c5b6a>", "<ipython-input-17-1f2e3d4c5b6a>"],
             ["/tmp/ipykernel_4242/2571830189.py", "/tmp/ipykernel_4242/1111111111.py"]]
    counts = []
    for pair in names:
        proc = run_script(tmp_path, script, args=pair)
        assert proc.returncode == 0, proc.stderr
        counts.append(proc.stdout.strip())
    assert counts == ["1", "1", "2"]  # different cells stay different
    out = run_roundtrip(tmp_path, """
        import marinade
        ns = {"__name__": "__main__"}
        exec(compile("def f(x):\\n    return x * 2\\n", "/tmp/ipykernel_7/123.py", "exec"), ns)
        obj = ns["f"]
        """ + DUMP + "\n", LOAD + "\nprint(obj(21), obj.__code__.co_filename)")
    assert out == "42 <ipykernel>/123.py"


def test_bytes_do_not_depend_on_what_else_the_process_holds(tmp_path):
    # marshal flags shared objects by reference count: a process that holds
    # extra references to the same strings and constants must still give
    # the same bytes.
    script = """
        import hashlib, sys
        if sys.argv[1] == "busy":
            import asyncio, json, decimal, email.message  # many other code objects
            keep = ["unusual_local_name", 2.75, "a constant string", (1, 2, 3)] * 50
        import marinade

        def work(unusual_local_name, scale=2.75):
            table = ("a constant string", (1, 2, 3), 10**20, b"raw")
            return [unusual_local_name * scale for _ in table]

        class Holder:
            LABEL = "a constant string"
            def method(self, unusual_local_name):
                return (lambda y: y + unusual_local_name)(2.75)

        if sys.argv[1] == "busy":  # outside references to the code's own constants
            held = list(work.__code__.co_consts) + [work.__code__.co_linetable]
        print(hashlib.sha256(marinade.dumps([work, Holder])).hexdigest())
    """
    digests = set()
    for mode in ("quiet", "busy"):
        proc = run_script(tmp_path, script, args=[mode])
        assert proc.returncode == 0, proc.stderr
        digests.add(proc.stdout.strip())
    assert len(digests) == 1


def test_pickling_a_loaded_object_again_gives_the_same_bytes(tmp_path):
    # A worker that received a class and pickles it again (a task result, a
    # cache token) must write what the sender wrote. Loading interns the
    # names that setattr (class state) or BUILD (function attributes) sets,
    # so a string the sender shared between a name and a value ("join"
    # below) is two objects there, one where it loads: names are written as
    # copies (reduce/_expr.fresh_name). Found by cloudpickle's test of the
    # same name; not kept across hops, as documented: an Enum's methods come
    # after its members where it loads, and one-letter names are interned
    # apart from pickle's one-letter strings before 3.13.
    out = run_roundtrip(
        tmp_path,
        producer='''
            import os, pickle, typing
            import marinade

            class Joins:
                """A method and an attribute value of the same name."""
                arg_1 = "join"
                def join(self, arg_1):
                    pass
            Joins.join.arg_1 = "join"

            class Args:
                arg_1 = "class_value"
                def join(self):
                    pass
                def test_method(self, arg_1, join):
                    pass

            class Modes:
                mode = "run"
                names = ("run", "stop", "value")
                def run(self, mode="run"): return mode
                def stop(self, how="stop"): return how
                def first(self): pass
                def second(self): pass
                def third(self): pass
                def value(self): return "value"

            class Pair(typing.NamedTuple):
                name: str
                value: int = 1

            def make_tagged(tag):
                def tagged(name, value="name"):
                    return {name: value}
                tagged.name = tag
                return tagged
            tagged = make_tagged("value")

            objects = {"joins": Joins, "args": Args, "modes": Modes, "pair": Pair,
                       "tagged": tagged, "instance": Modes(),
                       # Modes is the class loaded before: what else here shares a
                       # string with it ("run", "value") is written apart there.
                       "mixed": [Modes, Modes(), make_tagged("tag"), "other"]}
            payloads = {name: marinade.dumps(obj) for name, obj in objects.items()}
            open(os.environ["MARINADE_PAYLOAD"], "wb").write(pickle.dumps(payloads))
        ''',
        consumer='''
            import os, pickle
            import marinade
            payloads = pickle.loads(open(os.environ["MARINADE_PAYLOAD"], "rb").read())
            for name, data in payloads.items():
                again = marinade.dumps(pickle.loads(data))
                print(name, "same" if again == data else f"differs ({len(data)} -> {len(again)} B)")
            print(pickle.loads(payloads["modes"])().run(), pickle.loads(payloads["tagged"]).name)
        ''',
    )
    assert out.splitlines() == [
        "joins same", "args same", "modes same", "pair same", "tagged same", "instance same",
        "mixed same", "run value"]
