"""Benchmark workloads and the timing machinery behind ``run_all.py``.

Every library runs in the same process, interleaved: each repetition samples
every library once (in a rotating order), so that a slow moment of a shared,
noisy machine hits all of them alike. Results are medians of those samples,
and what we compare are RATIOS between libraries, never absolute times.

The objects under test are ``__main__`` objects, as in a user's script: their
source is compiled with the main script's file name and run in the namespace
of ``sys.modules["__main__"]``, so every library has to pickle them by value
(and stdlib pickle, which can only refer to them by name, can't, except for
instances and plain data).

Caches: marinade and cloudpickle remember things per code object and per
class. Class workloads therefore build a *fresh* class for every sample
(recompiled source with a per-sample constant, so no cache keyed by identity
or by content can help) and report the warm number (same class again)
separately. marinade (and cloudpickle) also keep a process-wide class registry
that makes a load of an already known class a cache hit; "first" loads clear
them before each sample, as in a fresh process.
"""

from __future__ import annotations

import gc
import itertools
import marshal
import os
import pickle
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PROTOCOL = pickle.HIGHEST_PROTOCOL

# ---------------------------------------------------------------------------
# Libraries. A "library" here is one way of producing and loading a payload.
# More marinade modes (e.g. standalone payloads) plug in by adding an entry to
# ``library_factories`` below; every workload then measures them too.
# ---------------------------------------------------------------------------


@dataclass
class Library:
    name: str
    dumps: Callable[[Any], bytes]
    loads: Callable[[bytes], Any]
    version: str = ""
    # Pure-Python picklers are 10-50x slower: on the big-data workloads they
    # get fewer samples so that a full run stays within a few minutes.
    slow: bool = False


def _marinade() -> Library:
    import marinade

    return Library("marinade", lambda obj: marinade.dumps(obj, PROTOCOL), pickle.loads,
                   marinade.__version__)


def _marinade_standalone() -> Library:
    import marinade

    return Library("standalone",
                   lambda obj: marinade.dumps(obj, PROTOCOL, standalone=True), pickle.loads,
                   marinade.__version__)


def _cloudpickle() -> Library:
    import cloudpickle

    return Library("cloudpickle", lambda obj: cloudpickle.dumps(obj, PROTOCOL), pickle.loads,
                   cloudpickle.__version__)


def _dill() -> Library:
    import dill

    return Library("dill", lambda obj: dill.dumps(obj, PROTOCOL), dill.loads, dill.__version__,
                   slow=True)


def _pickle() -> Library:
    return Library("pickle", lambda obj: pickle.dumps(obj, PROTOCOL), pickle.loads,
                   f"protocol {PROTOCOL}")


# name -> factory; a factory raising ImportError marks the library missing.
library_factories: dict[str, Callable[[], Library]] = {
    "marinade": _marinade,
    "standalone": _marinade_standalone,
    "cloudpickle": _cloudpickle,
    "dill": _dill,
    "pickle": _pickle,
}
# Not a pickler: marshal of the bare code object, the floor for one function.
MARSHAL = "marshal"
# Column order in tables and charts.
ORDER = ["marinade", "standalone", "cloudpickle", "dill", "pickle", MARSHAL]


def load_libraries(names: list[str] | None = None) -> dict[str, Library]:
    found = {}
    for name, factory in library_factories.items():
        if names is not None and name not in names:
            continue
        try:
            found[name] = factory()
        except ImportError:
            print(f"note: {name} is not installed, skipped", file=sys.stderr)
    return found


# ---------------------------------------------------------------------------
# __main__ objects
# ---------------------------------------------------------------------------

MAIN = sys.modules["__main__"]
_MAIN_FILE = os.path.abspath(getattr(MAIN, "__file__", None) or "main.py")
_fresh_ids = itertools.count()


def define(source: str, name: str) -> Any:
    """Run ``source`` as part of ``__main__`` and return what it bound to ``name``."""
    code = compile(source, _MAIN_FILE, "exec")
    exec(code, vars(MAIN))
    return vars(MAIN)[name]


def undefine(name: str) -> None:
    vars(MAIN).pop(name, None)


def fresh_name(prefix: str) -> str:
    return f"{prefix}_{next(_fresh_ids)}"


LAMBDA_SRC = "bench_lambda = lambda x: x + 1\n"

CLOSURES_SRC = """
def bench_make_adder(n):
    return lambda x: x + n
bench_closures = [bench_make_adder(i) for i in range({count})]
"""


def class_source(name: str, methods: int, salt: int) -> str:
    """A class with ``methods`` small methods; ``salt`` makes every copy's code unique."""
    lines = [f"class {name}:", f'    """A benchmark class ({salt})."""',
             "    scale = 3", "    def __init__(self, v):", "        self.v = v"]
    for i in range(methods - 1):  # __init__ counts as one
        lines += [f"    def method_{i}(self, x, y=1):",
                  f"        return self.v * x + y * {i} + self.scale + {salt}"]
    return "\n".join(lines) + "\n"


def module_class_source(name: str, methods: int, salt: int) -> str:
    """Like ``class_source``, but every method reads module globals (numpy, math)."""
    lines = ["import math", "import numpy as np", f"class {name}:", "    scale = 3",
             "    def __init__(self, v):", "        self.v = v"]
    for i in range(methods - 1):
        lines += [f"    def method_{i}(self, x, y=1):",
                  f"        return np.sqrt(self.v * x) + math.pi * y * {i} + self.scale + {salt}"]
    return "\n".join(lines) + "\n"


INSTANCE_CLASS_SRC = """
class {name}:
    def __init__(self, x, y):
        self.x = x
        self.y = y
"""


def fresh_class(methods: int) -> type:
    name = fresh_name("BenchClass")
    return define(class_source(name, methods, next(_fresh_ids)), name)


def fresh_instances(count: int) -> list:
    name = fresh_name("BenchPoint")
    cls = define(INSTANCE_CLASS_SRC.format(name=name), name)
    return [cls(i, str(i)) for i in range(count)]


def plain_dicts(count: int) -> list[dict]:
    return [{"id": i, "name": f"user{i}", "score": i * 0.5, "tags": ["a", "b"]}
            for i in range(count)]


def forget_known_classes() -> None:
    """Make the next load of a class a first load, as in a fresh process.

    marinade and cloudpickle both map a class identity found in a payload to a
    class this process already knows (marinade's registry, keyed by a content
    hash, then skips the rebuilding work; cloudpickle still rebuilds).
    """
    registry = sys.modules.get("marinade._registry")
    if registry is not None:
        registry.classes.clear()
    cloudpickle = sys.modules.get("cloudpickle.cloudpickle")
    tracker = getattr(cloudpickle, "_DYNAMIC_CLASS_TRACKER_BY_ID", None)
    if tracker is not None:
        tracker.clear()


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------

Sampler = Callable[[], float]  # one sample: seconds per operation


def loop_sampler(fn: Callable[[], Any], number: int) -> Sampler:
    """Time ``number`` back-to-back calls of ``fn`` (a warm, steady state)."""
    def sample() -> float:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        return (time.perf_counter() - start) / number
    return sample


def fresh_sampler(setup: Callable[[], Any], fn: Callable[[Any], Any],
                  before: Callable[[], Any] | None = None) -> Sampler:
    """Time one ``fn(setup())`` call; the setup (and ``before``) are not timed."""
    def sample() -> float:
        arg = setup()
        if before is not None:
            before()
        start = time.perf_counter()
        fn(arg)
        return time.perf_counter() - start
    return sample


@dataclass
class Case:
    """One measured quantity (e.g. lambda dumps), for every library that can do it."""

    workload: str  # "lambda", "closures", ...
    op: str  # "dumps", "loads", "size"
    variant: str  # "warm", "fresh", "first"
    description: str
    baseline: str  # ratios are against this library
    target: float | None = None  # max ratio (or max bytes for op == "size"), None: info only
    samplers: dict[str, Sampler] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)  # payload bytes per library
    repeat: int = 15
    slow_repeat: int = 3  # samples for libraries marked slow
    note: str = ""
    # filled by run_case
    medians: dict[str, float] = field(default_factory=dict)
    samples: dict[str, int] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.workload}/{self.op}/{self.variant}"


def run_case(case: Case, libraries: dict[str, Library]) -> None:
    if case.op == "size":
        return
    names = list(case.samplers)
    times: dict[str, list[float]] = {name: [] for name in names}
    gc_was_enabled = gc.isenabled()
    try:
        for name in names:  # warm-up: imports, first-call caches, allocator
            case.samplers[name]()
        for rep in range(case.repeat):
            shift = rep % len(names)
            for name in names[shift:] + names[:shift]:
                lib = libraries.get(name)
                if lib is not None and lib.slow and rep >= case.slow_repeat:
                    continue
                gc.collect()
                gc.disable()
                try:
                    times[name].append(case.samplers[name]())
                finally:
                    if gc_was_enabled:
                        gc.enable()
    finally:
        if gc_was_enabled:
            gc.enable()
    case.medians = {name: statistics.median(ts) for name, ts in times.items()}
    case.samples = {name: len(ts) for name, ts in times.items()}


# ---------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------


@dataclass
class Scale:
    quick: bool
    closures: int
    methods: int
    instances: int
    dicts: int
    small_number: int  # operations per sample for microsecond-sized work
    repeat: int
    class_repeat: int
    big_repeat: int


def scale(quick: bool) -> Scale:
    if quick:
        return Scale(True, closures=2_000, methods=30, instances=10_000, dicts=20_000,
                     small_number=200, repeat=5, class_repeat=5, big_repeat=3)
    return Scale(False, closures=20_000, methods=30, instances=100_000, dicts=200_000,
                 small_number=2_000, repeat=25, class_repeat=41, big_repeat=9)


def _warm_pair(lib: Library, obj: Any, number: int) -> tuple[Sampler, Sampler, int]:
    data = lib.dumps(obj)
    return (loop_sampler(lambda: lib.dumps(obj), number),
            loop_sampler(lambda: lib.loads(data), number), len(data))


def lambda_cases(libs: dict[str, Library], sc: Scale) -> list[Case]:
    func = define(LAMBDA_SRC, "bench_lambda")
    n = sc.small_number
    dumps = Case("lambda", "dumps", "warm", "`lambda x: x + 1`, dumps", "cloudpickle", 0.15,
                 repeat=sc.repeat)
    loads = Case("lambda", "loads", "warm", "`lambda x: x + 1`, loads", "cloudpickle", 0.3,
                 repeat=sc.repeat)
    fresh = Case("lambda", "dumps", "fresh", "`lambda x: x + 1` compiled anew, dumps",
                 "cloudpickle", None, repeat=sc.repeat,
                 note="first dumps of a new code object (no per-code cache helps)")
    size = Case("lambda", "size", "-", "`lambda x: x + 1`, payload bytes", MARSHAL, 200,
                note="target is for a 128-B marshal floor; checked as size - marshal + 128")

    def new_lambda():
        # A new code object per sample (distinct constant defeats content caches).
        return define(f"bench_fresh_lambda = lambda x: x + {next(_fresh_ids)}\n",
                      "bench_fresh_lambda")

    for name, lib in libs.items():
        if name == "pickle":
            continue  # refuses __main__ lambdas (by reference only)
        d, lo, nbytes = _warm_pair(lib, func, n)
        dumps.samplers[name], loads.samplers[name], size.sizes[name] = d, lo, nbytes
        fresh.samplers[name] = fresh_sampler(new_lambda, lib.dumps)
    code = func.__code__
    raw = marshal.dumps(code)
    dumps.samplers[MARSHAL] = loop_sampler(lambda: marshal.dumps(code), n)
    loads.samplers[MARSHAL] = loop_sampler(lambda: marshal.loads(raw), n)
    fresh.samplers[MARSHAL] = fresh_sampler(lambda: new_lambda().__code__, marshal.dumps)
    size.sizes[MARSHAL] = len(raw)
    return [dumps, loads, fresh, size]


def closure_cases(libs: dict[str, Library], sc: Scale) -> list[Case]:
    closures = define(CLOSURES_SRC.format(count=sc.closures), "bench_closures")
    desc = f"{sc.closures:,} distinct closures in one dumps"
    dumps = Case("closures", "dumps", "warm", desc, "cloudpickle", 0.3, repeat=sc.big_repeat * 2)
    loads = Case("closures", "loads", "warm", desc.replace("dumps", "loads"), "cloudpickle",
                 None, repeat=sc.big_repeat * 2)
    size = Case("closures", "size", "-", f"{sc.closures:,} closures, payload bytes",
                "cloudpickle", 0.6, note="target is a ratio of cloudpickle's bytes")
    for name, lib in libs.items():
        if name == "pickle":
            continue
        d, lo, nbytes = _warm_pair(lib, closures, 1)
        dumps.samplers[name], loads.samplers[name], size.sizes[name] = d, lo, nbytes
    return [dumps, loads, size]


def class_cases(libs: dict[str, Library], sc: Scale) -> list[Case]:
    m = sc.methods
    desc = f"__main__ class with {m} methods"
    fresh_d = Case("class", "dumps", "fresh", f"{desc}, dumps of a new class", "cloudpickle", 0.1,
                   repeat=sc.class_repeat)
    warm_d = Case("class", "dumps", "warm", f"{desc}, dumps of the same class again",
                  "cloudpickle", None, repeat=sc.repeat)
    first_l = Case("class", "loads", "first", f"{desc}, first load of a new class",
                   "cloudpickle", 0.5, repeat=sc.class_repeat,
                   note="class registries (marinade's, cloudpickle's) cleared before each sample")
    warm_l = Case("class", "loads", "warm", f"{desc}, load of a class already loaded",
                  "cloudpickle", None, repeat=sc.repeat)
    size = Case("class", "size", "-", f"{desc}, payload bytes", "cloudpickle", None)
    warm_cls = fresh_class(m)
    for name, lib in libs.items():
        if name == "pickle":
            continue  # would store a reference to __main__, not the class
        fresh_d.samplers[name] = fresh_sampler(lambda: fresh_class(m), lib.dumps)
        first_l.samplers[name] = fresh_sampler(
            lambda lib=lib: lib.dumps(fresh_class(m)), lib.loads, before=forget_known_classes)
        d, lo, nbytes = _warm_pair(lib, warm_cls, max(1, sc.small_number // 20))
        warm_d.samplers[name], warm_l.samplers[name], size.sizes[name] = d, lo, nbytes
    cases = [fresh_d, warm_d, first_l, warm_l, size]
    try:
        import numpy  # noqa: F401  (the dev extra has it)
    except ImportError:
        return cases
    # What a user's process looks like: methods using imported modules. The
    # cost of finding a module global's submodules grows with sys.modules for
    # cloudpickle (its #576); the figure depends on what this process imported.
    modules = Case("class", "dumps", "modules",
                   f"{desc} reading numpy and math globals, dumps of a new class",
                   "cloudpickle", None, repeat=sc.class_repeat,
                   note=f"{len(sys.modules)} modules imported in the benchmark process")

    def module_class() -> type:
        name = fresh_name("BenchModClass")
        return define(module_class_source(name, m, next(_fresh_ids)), name)

    for name, lib in libs.items():
        if name != "pickle":
            modules.samplers[name] = fresh_sampler(module_class, lib.dumps)
    return cases + [modules]


def instance_cases(libs: dict[str, Library], sc: Scale) -> list[Case]:
    desc = f"{sc.instances:,} instances of a __main__ class"
    dumps = Case("instances", "dumps", "fresh", f"{desc}, dumps", "pickle", 1.2,
                 repeat=sc.big_repeat, note="a new class for every sample")
    loads = Case("instances", "loads", "warm", f"{desc}, loads", "pickle", None,
                 repeat=sc.big_repeat)
    size = Case("instances", "size", "-", f"{desc}, payload bytes", "pickle", None)
    objs = fresh_instances(sc.instances)
    for name, lib in libs.items():
        dumps.samplers[name] = fresh_sampler(lambda: fresh_instances(sc.instances), lib.dumps)
        data = lib.dumps(objs)
        loads.samplers[name] = loop_sampler(lambda lib=lib, data=data: lib.loads(data), 1)
        size.sizes[name] = len(data)
    return [dumps, loads, size]


def dict_cases(libs: dict[str, Library], sc: Scale) -> list[Case]:
    desc = f"{sc.dicts:,} plain dicts"
    dumps = Case("dicts", "dumps", "warm", f"{desc}, dumps", "pickle", 1.03,
                 repeat=sc.big_repeat * 2)
    loads = Case("dicts", "loads", "warm", f"{desc}, loads", "pickle", None,
                 repeat=sc.big_repeat)
    data_obj = plain_dicts(sc.dicts)
    for name, lib in libs.items():
        d, lo, _ = _warm_pair(lib, data_obj, 1)
        dumps.samplers[name], loads.samplers[name] = d, lo
    return [dumps, loads]


# workload name -> builder; run_all.py runs them in this order.
WORKLOADS: dict[str, Callable[[dict[str, Library], Scale], list[Case]]] = {
    "lambda": lambda_cases,
    "closures": closure_cases,
    "class": class_cases,
    "instances": instance_cases,
    "dicts": dict_cases,
}


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


def ratios(case: Case) -> dict[str, float]:
    values = case.sizes if case.op == "size" else case.medians
    base = values.get(case.baseline)
    if not base:
        return {}
    return {name: value / base for name, value in values.items()}


def verdict(case: Case) -> bool | None:
    """Whether marinade meets the case's target (None: no target, or not measured)."""
    if case.target is None:
        return None
    if case.op == "size" and case.baseline == MARSHAL:
        size, floor = case.sizes.get("marinade"), case.sizes.get(MARSHAL)
        if size is None or floor is None:
            return None
        return size - floor + 128 <= case.target
    ratio = ratios(case).get("marinade")
    return None if ratio is None else ratio <= case.target


def environment(libs: dict[str, Library], sc: Scale) -> dict:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "protocol": PROTOCOL,
        "quick": sc.quick,
        "libraries": {name: lib.version for name, lib in libs.items()},
        "sizes": {"closures": sc.closures, "methods": sc.methods,
                  "instances": sc.instances, "dicts": sc.dicts},
    }


def case_json(case: Case) -> dict:
    return {
        "key": case.key,
        "workload": case.workload,
        "op": case.op,
        "variant": case.variant,
        "description": case.description,
        "baseline": case.baseline,
        "target": case.target,
        "note": case.note,
        "median_seconds": case.medians,
        "samples": case.samples,
        "bytes": case.sizes,
        "ratios": ratios(case),
        "pass": verdict(case),
    }
