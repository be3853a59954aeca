"""Portable payloads (``portable=True``) against the default mode: time and size.

    python benchmarks/bench_portable.py               # prints a table
    python benchmarks/bench_portable.py --quick       # fewer samples
    python benchmarks/bench_portable.py --json out.json

Workloads (defined in this script, run as ``__main__``, so they travel by
value): a small lambda, a closure, a class with a few methods, a dataclass,
and 1,000 closures of one function in a list.

``dumps`` is warm (source located and checked once per code object, then
cached). ``loads`` is measured cold, as the first load in a fresh process
(the compiled-code caches cleared: the default mode unmarshals, the portable
mode parses and compiles source), and warm (a later load of the same code in
the same process). Times are medians.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pickle
import platform
import statistics
import sys
import time

import marinade
from marinade import _rebuild, _rebuild_portable

small_lambda = lambda x: x + 1  # noqa: E731


def make_closure(base):
    scale = 3

    def closure(x, *, offset=0):
        return (x + base) * scale + offset

    return closure


class Shape:
    def __init__(self, width, height):
        self.width = width
        self.height = height

    def area(self):
        return self.width * self.height

    @property
    def perimeter(self):
        return 2 * (self.width + self.height)

    def scaled(self, k):
        return Shape(self.width * k, self.height * k)


@dataclasses.dataclass(order=True)
class Record:
    key: str
    value: int = 0

    def bumped(self):
        return Record(self.key, self.value + 1)


WORKLOADS = {
    "lambda": small_lambda,
    "closure": make_closure(10),
    "class": Shape,
    "dataclass": Record,
    "closures x1000": [make_closure(i) for i in range(1000)],
}


def _median(func, samples: int) -> float:
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _clear_load_caches() -> None:
    _rebuild._code_cache.clear()
    _rebuild_portable._code_cache.clear()
    reg = _rebuild._registry()
    reg.classes.clear()  # classes by value are rebuilt, not found again


def measure(samples: int) -> list[dict]:
    rows = []
    for name, obj in WORKLOADS.items():
        for mode, portable in (("default", False), ("portable", True)):
            data = marinade.dumps(obj, portable=portable)  # warms the dump caches
            dumps = _median(lambda: marinade.dumps(obj, portable=portable), samples)

            def cold(data=data):
                _clear_load_caches()
                pickle.loads(data)

            loads_cold = _median(cold, samples)
            pickle.loads(data)
            loads_warm = _median(lambda: pickle.loads(data), samples)
            rows.append({"workload": name, "mode": mode, "bytes": len(data),
                         "dumps_seconds": dumps, "loads_cold_seconds": loads_cold,
                         "loads_warm_seconds": loads_warm})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    parser.add_argument("--json", metavar="PATH", help="also write results as JSON")
    args = parser.parse_args(argv)
    rows = measure(5 if args.quick else 51)
    print(f"{'workload':16} {'mode':9} {'bytes':>7} {'dumps us':>10} {'loads cold us':>14} "
          f"{'loads warm us':>14}")
    for row in rows:
        print(f"{row['workload']:16} {row['mode']:9} {row['bytes']:7d} "
              f"{row['dumps_seconds'] * 1e6:10.1f} {row['loads_cold_seconds'] * 1e6:14.1f} "
              f"{row['loads_warm_seconds'] * 1e6:14.1f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"python": platform.python_version(), "benchmark": "portable",
                       "cases": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
