"""marinade.wrap: any pickle-based framework carries it; it unwraps on arrival.

The cross-process checks pickle the wrapper with *plain* ``pickle`` (standing
in for a framework) in a script run as ``__main__``, and load it in a fresh
interpreter started with ``-I -S``: no site-packages, so marinade cannot be
imported there, and the producer's folder is not on its path.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import pickle

import cloudpickle

import marinade
from marinade.integrations.wrap import Wrapped

from helpers import LOAD, run_roundtrip, run_script


def _modules_named(payload: bytes) -> set[str]:
    """Modules a payload asks ``find_class`` for, nested wrap payloads included."""
    seen: set[str] = set()

    class Recorder(pickle.Unpickler):
        def find_class(self, module, name):
            seen.add(module)
            found = super().find_class(module, name)
            if found is pickle.loads:
                return lambda data: Recorder(__import__("io").BytesIO(data)).load()
            return found

    Recorder(__import__("io").BytesIO(payload)).load()
    return seen


def test_calling_attributes_and_identity():
    k = 3

    def add(x: int, y: int = 1) -> int:
        """Add k."""
        return x + y + k

    wrapped = marinade.wrap(add)
    assert isinstance(wrapped, Wrapped)
    assert wrapped(1) == 5 and wrapped(1, y=10) == 14
    assert wrapped.__wrapped__ is add
    assert wrapped.__name__ == "add"
    assert inspect.signature(wrapped) == inspect.signature(add)
    assert marinade.wrap(wrapped) is wrapped
    assert repr(wrapped).startswith("marinade.wrap(<function")
    assert copy.copy(wrapped).__wrapped__ is add
    data = {"a": [1, 2]}
    deep = copy.deepcopy(marinade.wrap(data))
    assert deep.__wrapped__ == data and deep.__wrapped__ is not data


def test_unwraps_on_arrival_with_pickle_and_cloudpickle():
    k = 10
    closure = lambda x: x * k  # noqa: E731
    for dumps in (pickle.dumps, cloudpickle.dumps, lambda o: pickle.dumps(o, protocol=2)):
        arrived = pickle.loads(dumps(marinade.wrap(closure)))
        assert type(arrived) is not Wrapped and callable(arrived)
        assert arrived(4) == 40
        nested = pickle.loads(dumps({"f": marinade.wrap(closure), "n": [marinade.wrap(7)]}))
        assert nested["f"](1) == 10 and nested["n"] == [7]


def test_payload_names_no_marinade_module():
    class Local:
        def __init__(self, v):
            self.v = v

    @functools.cache
    def cached(n):
        return n * 2

    objects = [lambda: Local(1), Local(2), Local, cached, {"f": lambda x: x}]
    for obj in objects:
        modules = _modules_named(pickle.dumps(marinade.wrap(obj)))
        assert not any(m == "marinade" or m.startswith("marinade.") for m in modules), modules
    # A wrapped object made with marinade's own names would show them:
    assert "marinade._rebuild" in _modules_named(marinade.dumps(lambda: 1))


def test_payload_is_deterministic():
    k = 2
    f = lambda x: x + k  # noqa: E731
    assert pickle.dumps(marinade.wrap(f)) == pickle.dumps(marinade.wrap(f))


def test_stays_packed_through_a_dask_scheduler():
    # Dask's scheduler unpickles task graphs and pickles the tasks again for
    # the workers. Loaded by code of ``distributed.scheduler``, a wrapped
    # payload stays packed; anywhere else it lands as the object.
    namespace = {"__name__": "distributed.scheduler", "pickle": pickle}
    exec("def unpickle(data):\n    return pickle.loads(data)\n", namespace)
    k = 4
    data = pickle.dumps(marinade.wrap(lambda x: x * k))
    in_transit = namespace["unpickle"](data)
    assert type(in_transit).__qualname__ == "_land.<locals>.InTransit"
    assert in_transit(2) == 8  # still usable on the scheduler itself
    landed = pickle.loads(cloudpickle.dumps(in_transit))  # how Dask re-sends it
    assert type(landed).__name__ == "function" and landed(3) == 12
    assert namespace["unpickle"](cloudpickle.dumps(in_transit))(1) == 4  # a second scheduler hop


PRODUCER = r'''
from __future__ import annotations

import functools, os, pickle

if __name__ == "__main__":
    import marinade

    class Point:
        def __init__(self, x, y):
            self.x, self.y = x, y

        def norm1(self) -> int:
            return abs(self.x) + abs(self.y)

        def moved(self, dx) -> Point:
            return Point(self.x + dx, self.y)

    def make_local():
        class Local:
            def hello(self):
                return f"hello from {type(self).__qualname__}"
        return Local

    @functools.lru_cache(maxsize=None)
    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    def annotated(p: Point, n: int) -> list[Point]:
        return [p] * n

    base = 100
    counter = {"calls": 0}

    def closure(x):
        counter["calls"] += 1
        return x + base

    obj = {
        "closure": closure,
        "lambda": lambda p: p.moved(1).norm1(),
        "point": Point(-3, 4),
        "Point": Point,
        "Local": make_local(),
        "fib": fib,
        "annotated": annotated,
    }
    # A framework pickles what it ships with plain pickle: the wrapper does the rest.
    open(os.environ["MARINADE_PAYLOAD"], "wb").write(pickle.dumps(marinade.wrap(obj)))
'''

CONSUMER = LOAD + r'''
import json, sys, typing
point = obj["point"]
out = {
    "closure": [obj["closure"](1), obj["closure"](2), obj["closure"].__globals__["counter"]["calls"]],
    "lambda": obj["lambda"](point),
    "instance": [type(point) is obj["Point"], point.norm1(), type(point.moved(1)) is obj["Point"]],
    "local_qualname": obj["Local"].__qualname__,
    "local_hello": obj["Local"]().hello(),
    "fib": [obj["fib"](40), obj["fib"].cache_info().hits > 0],
    "hints": sorted((k, str(v)) for k, v in typing.get_type_hints(obj["annotated"]).items()),
    "marinade_loaded": sorted(m for m in sys.modules if m == "marinade" or m.startswith("marinade.")),
}
try:
    import marinade  # noqa: F401
    out["marinade_importable"] = True
except ImportError:
    out["marinade_importable"] = False
print(json.dumps(out))
'''


def test_arrives_where_marinade_is_not_installed(tmp_path):
    out = json.loads(run_roundtrip(tmp_path, PRODUCER, CONSUMER, consumer_flags=("-I", "-S")))
    assert out["closure"] == [101, 102, 2]
    assert out["lambda"] == 6  # Point(-2, 4).norm1()
    assert out["instance"] == [True, 7, True]
    assert out["local_qualname"] == "make_local.<locals>.Local"
    assert out["local_hello"] == "hello from make_local.<locals>.Local"
    assert out["fib"] == [102334155, True]
    assert out["hints"] == [["n", "<class 'int'>"], ["p", "<class '__main__.Point'>"],
                            ["return", "list[__main__.Point]"]]
    # Standalone loads keep a tiny class registry under marinade's name; marinade itself is absent.
    assert set(out["marinade_loaded"]) <= STANDALONE_MODULES
    assert out["marinade_importable"] is False


FRAMEWORKS = r'''
import json

if __name__ == "__main__":
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import marinade

    k = 5

    class Acc:
        def __init__(self, n):
            self.n = n

    ctx = multiprocessing.get_context("spawn")  # the stdlib's own context: no marinade there
    out = {}
    with ctx.Pool(1) as pool:
        out["pool"] = pool.map(marinade.wrap(lambda x: x * k), [1, 2, 3])
        out["pool_args"] = pool.map(marinade.wrap(lambda a: a.n + k), [marinade.wrap(Acc(1))])
    with ProcessPoolExecutor(1, mp_context=ctx) as ex:
        out["executor"] = ex.submit(marinade.wrap(lambda: [k] * 2)).result(30)
    print(json.dumps(out))
'''


def test_stdlib_pools_carry_wrapped_code(tmp_path):
    proc = run_script(tmp_path, FRAMEWORKS, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"pool": [5, 10, 15], "pool_args": [6], "executor": [5, 5]}


# --- shared by the framework tests (joblib, Ray, Spark) -----------------------

_HIDE_MARINADE = '''
import os, sys

if os.environ.get("MARINADE_HIDDEN") == "1":
    class _HideMarinade:
        """Makes marinade unimportable in this process (a framework's worker)."""

        def find_spec(self, name, path=None, target=None):
            if name == "marinade" or name.startswith("marinade."):
                raise ImportError(f"marinade is hidden in this process: {name}")
            return None

    sys.meta_path.insert(0, _HideMarinade())
'''


def hidden_marinade_path(tmp_path) -> str:
    """A folder for PYTHONPATH whose ``sitecustomize`` hides marinade from
    every interpreter that starts with ``MARINADE_HIDDEN=1`` in its
    environment: a script sets that variable after importing marinade, so
    that the workers a framework starts from then on cannot import it."""
    folder = tmp_path / "hide-marinade"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(_HIDE_MARINADE, encoding="utf-8")
    return str(folder)


#: Source of ``worker_state()`` for the scripts: what a worker knows of marinade.
# What the framework tests (joblib, Ray, Spark) ship to their workers: a
# global a closure reads, a __main__ class with string annotations, a local
# class (cloudpickle loses its __qualname__), an lru_cache'd function.
# What standalone payloads put in sys.modules under marinade's name (the class
# registry and their reconstructor kits), where marinade itself is absent.
STANDALONE_MODULES = {"marinade._registry", "marinade._kits"}

FRAMEWORK_OBJECTS = """
base = 100

class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def moved(self, dx: int) -> Point:
        return Point(self.x + dx, self.y)

def make_local():
    class Local:
        def hello(self):
            return "hello"
    return Local

@functools.lru_cache(maxsize=None)
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)

def hints(f):
    return sorted((k, str(v)) for k, v in typing.get_type_hints(f).items())
"""


def indented(text: str) -> str:
    """``text`` indented one level, to sit in a producer's ``if __name__`` block."""
    return "\n".join("    " + line if line else "" for line in text.splitlines())


WORKER_STATE = '''
def worker_state():
    import os, sys
    try:
        import marinade  # noqa: F401
        importable = True
    except ImportError:
        importable = False
    return [os.getpid(), importable, sorted(m for m in sys.modules if m.split(".")[0] == "marinade")]
'''
