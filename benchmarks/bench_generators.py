"""Checkpoint + restore cost of suspended generators, next to a small lambda.

    python benchmarks/bench_generators.py               # prints a table
    python benchmarks/bench_generators.py --quick       # fewer samples
    python benchmarks/bench_generators.py --json out.json

Workloads (all defined in ``__main__``, so their functions travel by value):

- ``lambda``: ``lambda x: x + 1``, the reference point;
- ``for_loop``: a generator suspended inside a ``for`` loop over a range,
  with a few locals;
- ``yield_from_3``: the outer generator of a 3-deep ``yield from`` chain
  (four frames in one payload);
- ``for_loop x100``: a list of 100 such generators of one function (how the
  cost grows when many paused generators share one payload).

``dumps`` is ``marinade.dumps``; ``loads`` is ``pickle.loads`` of that
payload, warm (the code analysis cached, as for every load after the first
of a function in a process) and cold (the generator caches cleared, as in a
fresh process). Samples of all workloads are interleaved; times are medians.
"""

from __future__ import annotations

import argparse
import gc
import json
import pickle
import platform
import statistics
import sys
import time

import marinade
from marinade.frames import model

_SOURCE = '''
small_lambda = lambda x: x + 1

def counting(n):
    total = 0
    label = "step"
    for i in range(n):
        total += i
        yield label, total

def chain(depth):
    if depth == 0:
        for i in range(10):
            yield i
        return
    yield from chain(depth - 1)

def suspended_for_loop():
    g = counting(1000)
    for _ in range(10):
        next(g)
    return g

def suspended_chain():
    g = chain(3)
    next(g)
    return g
'''


def _workloads() -> dict:
    main = sys.modules["__main__"]
    namespace = vars(main)
    exec(compile(_SOURCE, getattr(main, "__file__", "<bench>"), "exec"), namespace)
    return {
        "lambda": namespace["small_lambda"],
        "for_loop": namespace["suspended_for_loop"](),
        "yield_from_3": namespace["suspended_chain"](),
        "for_loop x100": [namespace["suspended_for_loop"]() for _ in range(100)],
    }


def _clear_generator_caches() -> None:
    model._info_cache.clear()
    model._digest_cache.clear()


def _time(func, number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        func()
    return (time.perf_counter() - start) / number


def run(samples: int, number: int) -> list[dict]:
    objects = _workloads()
    payloads = {name: marinade.dumps(obj) for name, obj in objects.items()}
    for name, payload in payloads.items():  # sanity: the payloads resume
        loaded = pickle.loads(payload)
        if name == "lambda":
            assert loaded(1) == 2
        elif name == "for_loop x100":
            assert next(loaded[0]) == ("step", 55)
        elif name == "for_loop":
            assert next(loaded) == ("step", 55)
        else:
            assert next(loaded) == 1
    times: dict = {name: {"dumps": [], "loads": [], "loads_cold": []} for name in objects}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(samples):
            for name, obj in objects.items():
                payload = payloads[name]
                reps = max(1, number // 100) if name.endswith("x100") else number
                times[name]["dumps"].append(_time(lambda: marinade.dumps(obj), reps))
                times[name]["loads"].append(_time(lambda: pickle.loads(payload), reps))

                def cold():
                    _clear_generator_caches()
                    pickle.loads(payload)

                times[name]["loads_cold"].append(_time(cold, max(1, reps // 10)))
            gc.collect()
    finally:
        if gc_was_enabled:
            gc.enable()
    base = {op: statistics.median(times["lambda"][op]) for op in ("dumps", "loads")}
    results = []
    for name in objects:
        row = {"name": name, "size": len(payloads[name])}
        for op, values in times[name].items():
            row[f"{op}_s"] = statistics.median(values)
        row["dumps_vs_lambda"] = row["dumps_s"] / base["dumps"]
        row["loads_vs_lambda"] = row["loads_s"] / base["loads"]
        results.append(row)
    return results


def _fmt(seconds: float) -> str:
    return f"{seconds * 1e6:9.1f} us"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few samples (smoke run)")
    parser.add_argument("--json", metavar="PATH", help="also write results as JSON")
    args = parser.parse_args(argv)
    samples, number = (3, 20) if args.quick else (15, 200)
    results = run(samples, number)
    print(f"{platform.python_implementation()} {platform.python_version()}, marinade "
          f"{marinade.__version__}; medians of {samples} interleaved samples")
    print(f"{'workload':<15}{'bytes':>7}{'dumps':>13}{'loads':>13}{'loads cold':>13}"
          f"{'dumps/lambda':>14}{'loads/lambda':>14}")
    for row in results:
        print(f"{row['name']:<15}{row['size']:>7}{_fmt(row['dumps_s'])}{_fmt(row['loads_s'])}"
              f"{_fmt(row['loads_cold_s'])}{row['dumps_vs_lambda']:>13.2f}x"
              f"{row['loads_vs_lambda']:>13.2f}x")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"python": platform.python_version(), "benchmark": "generators",
                       "samples": samples, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
