"""Per-task overhead of process pools: marinade's context against the others.

    python benchmarks/bench_pool.py                  # 20,000 tasks, 3 samples each
    python benchmarks/bench_pool.py --quick          # smoke run
    python benchmarks/bench_pool.py --json out.json  # also write machine-readable results

Every pool maps a tiny function over N integers with chunksize=1, so the time
per task is the pool's overhead: pickling the task, two pipe transfers,
unpickling, and the same for the result.

- ``pool`` case, ``Pool.map``: the stdlib pool with a module-level function
  (the baseline: what people rewrite their lambdas into), marinade's context
  with a lambda, and ``multiprocess`` (dill) with the lambda. For reference,
  ``stdlib-quiet``: the stdlib pool with the one fix marinade's pool makes
  to the stdlib's (its worker-handler thread no longer wakes on every
  result, see ``Pool._get_sentinels`` in marinade/integrations/multiprocessing.py):
  marinade against it is the cost of pickling through marinade alone;
- ``pool-large`` case, the same with a function that carries 100 kB (a
  closure over it; for the stdlib, ``functools.partial`` of a module-level
  function), over a tenth of the tasks: marinade sends it to each worker
  once per map call, the others with every task;
- ``executor`` case, ``Executor.map``: ``concurrent.futures.ProcessPoolExecutor``
  with a module-level function (baseline), the same executor on marinade's
  context with a lambda, and ``loky`` (cloudpickle) with the lambda.
  Executors create a future per task: their overhead is several times a
  Pool's, so they are compared among themselves.

Pools are started and warmed up before timing, then sampled in turn
(interleaved, rotating order) so that a noisy moment hits all of them alike;
results are medians. Read the ratios, not the absolute times.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import multiprocessing.pool
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

TARGET = 1.1  # marinade's Pool.map with a lambda vs the stdlib's with a named function


def inc(x):
    return x + 1


def inc_with(data, x):
    return x + 1 if data else x


BIG = bytes(100_000)


class QuietPool(multiprocessing.pool.Pool):
    """The stdlib pool without its worker handler's wake-up on every result."""

    def _get_sentinels(self):
        return [self._change_notifier._reader]


def _version(name: str) -> str:
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:
        return ""


# CPU time of the parent (all its threads) and of the workers, on Linux: on a
# shared machine it moves less than wall time, and it is what the pool costs.
CPU_CLOCK = os.path.exists(f"/proc/{os.getpid()}/schedstat")


def _worker_pids(pool) -> list[int]:
    processes = getattr(pool, "_pool", None)  # multiprocessing-style pools
    if isinstance(processes, list):
        return [p.pid for p in processes]
    processes = getattr(pool, "_processes", None)  # executors: {pid: process}
    return list(processes) if isinstance(processes, dict) else []


def _cpu_seconds(pids) -> float:
    total = 0
    for pid in pids if CPU_CLOCK else ():
        try:
            threads = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in threads:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as file:  # run time, ns
                    total += int(file.read().split()[0])
            except OSError:
                pass
    return total / 1e9


class Runner:
    """One pool kept alive for the whole run; ``sample()`` times one map."""

    def __init__(self, name, make, func, tasks):
        self.name = name
        self.pool = make()
        self.func = func
        self.tasks = tasks
        self.samples: list[float] = []
        self.cpu_samples: list[float | None] = []
        self.sample(warmup=True)  # starts the workers and checks the results

    def run(self, n):
        return list(self.pool.map(self.func, range(n), chunksize=1))

    def sample(self, warmup=False):
        n = min(self.tasks, 500) if warmup else self.tasks
        pids = _worker_pids(self.pool)
        cpu = time.process_time() + _cpu_seconds(pids)
        start = time.perf_counter()
        out = self.run(n)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() + _cpu_seconds(pids) - cpu
        if out != list(range(1, n + 1)):
            raise AssertionError(f"{self.name}: wrong results")
        if not warmup:
            self.samples.append(elapsed / n)
            self.cpu_samples.append(cpu / n if pids and CPU_CLOCK else None)

    def close(self):
        if hasattr(self.pool, "shutdown"):
            self.pool.shutdown(wait=True)
        else:
            self.pool.close()
            self.pool.join()


def pool_runners(method, workers, tasks, large=False):
    import marinade

    if large:
        tasks = max(tasks // 10, 100)
        big = BIG
        lam = lambda x: x + 1 if big else x  # noqa: E731 - the point of the benchmark
        named = functools.partial(inc_with, BIG)
    else:
        lam = lambda x: x + 1  # noqa: E731
        named = inc
    runners = {
        "stdlib": lambda: Runner("stdlib", lambda: multiprocessing.get_context(method).Pool(workers),
                                 named, tasks),
        "marinade": lambda: Runner("marinade", lambda: marinade.get_context(method).Pool(workers),
                                   lam, tasks),
    }
    try:
        import multiprocess
    except ImportError:
        pass
    else:
        runners["multiprocess"] = lambda: Runner(
            "multiprocess", lambda: multiprocess.get_context(method).Pool(workers), lam, tasks)
    if not large:
        runners["stdlib-quiet"] = lambda: Runner(
            "stdlib-quiet", lambda: QuietPool(workers, context=multiprocessing.get_context(method)),
            named, tasks)
    return runners


def large_pool_runners(method, workers, tasks):
    return pool_runners(method, workers, tasks, large=True)


def executor_runners(method, workers, tasks):
    import marinade

    lam = lambda x: x + 1  # noqa: E731
    runners = {
        "stdlib": lambda: Runner("stdlib", lambda: ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context(method)), inc, tasks),
        "marinade": lambda: Runner("marinade", lambda: ProcessPoolExecutor(
            workers, mp_context=marinade.get_context(method)), lam, tasks),
    }
    try:
        import loky
    except ImportError:
        pass
    else:
        # loky picks its own start method (loky, a spawn variant).
        runners["loky"] = lambda: Runner("loky", lambda: loky.ProcessPoolExecutor(workers),
                                         lam, tasks)
    return runners


CASES = {
    "pool": ("Pool.map, chunksize=1: stdlib with a module-level function vs lambdas",
             pool_runners),
    "executor": ("Executor.map, chunksize=1: stdlib with a module-level function vs lambdas",
                 executor_runners),
    "pool-large": ("Pool.map, chunksize=1, a function carrying 100 kB: stdlib with "
                   "functools.partial vs closures", large_pool_runners),
}


def run_case(name, build, method, workers, tasks, repeat):
    runners = {}
    try:
        for lib, make in build(method, workers, tasks).items():
            runners[lib] = make()
        order = list(runners)
        for i in range(repeat):
            for lib in order[i % len(order):] + order[:i % len(order)]:
                runners[lib].sample()
    finally:
        for runner in runners.values():
            runner.close()
    medians = {lib: statistics.median(r.samples) for lib, r in runners.items()}
    base = medians["stdlib"]
    ratios = {lib: m / base for lib, m in medians.items()}
    cpu = {lib: statistics.median(r.cpu_samples) for lib, r in runners.items()
           if None not in r.cpu_samples}
    cpu_ratios = ({lib: c / cpu["stdlib"] for lib, c in cpu.items()}
                  if "stdlib" in cpu else {})
    description, _ = CASES[name]
    target = TARGET if name == "pool" else None
    return {
        "key": f"{name}/map/chunksize1",
        "workload": name,
        "op": "map",
        "variant": "chunksize1",
        "description": description,
        "baseline": "stdlib",
        "target": target,
        "note": f"{runners['stdlib'].tasks} tasks, {workers} workers, start method {method}; "
                "seconds per task",
        "median_seconds": medians,
        "samples": {lib: r.samples for lib, r in runners.items()},
        "bytes": {},
        "ratios": ratios,
        "cpu_seconds": cpu,
        "cpu_ratios": cpu_ratios,
        "pass": None if target is None else ratios["marinade"] <= target,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 tasks, 1 sample")
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3, help="samples per pool")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--method", default="spawn",
                        choices=multiprocessing.get_all_start_methods())
    parser.add_argument("--only", nargs="+", choices=list(CASES))
    parser.add_argument("--json", metavar="PATH", help="write results as JSON to PATH")
    args = parser.parse_args(argv)
    tasks, repeat = (1_000, 1) if args.quick else (args.tasks, args.repeat)

    started = time.perf_counter()
    cases = []
    for name, (_, build) in CASES.items():
        if args.only and name not in args.only:
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        cases.append(run_case(name, build, args.method, args.workers, tasks, repeat))
    elapsed = time.perf_counter() - started

    env = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "quick": args.quick,
        "libraries": {name: _version(name) for name in
                      ("marinade", "multiprocess", "dill", "loky", "cloudpickle")},
        "tasks": tasks,
        "workers": args.workers,
        "method": args.method,
    }
    print(f"\nPython {env['python']} on {env['platform']}, {env['cpus']} CPUs; {tasks} tasks, "
          f"{args.workers} workers, {args.method}; {elapsed:.0f} s\n")
    for case in cases:
        print(case["description"])
        for lib, seconds in case["median_seconds"].items():
            ratio = case["ratios"][lib]
            line = f"  {lib:13} {seconds * 1e6:8.1f} us/task  {ratio:6.2f}x stdlib"
            if lib in case["cpu_ratios"]:
                line += (f"   cpu {case['cpu_seconds'][lib] * 1e6:7.1f} us/task "
                         f"{case['cpu_ratios'][lib]:6.2f}x")
            print(line)
        if case["target"] is not None:
            print(f"  target marinade <= {case['target']}x stdlib: "
                  f"{'PASS' if case['pass'] else 'FAIL'}")
    if args.json:
        result = {"schema": 1, "environment": env, "elapsed_seconds": elapsed, "cases": cases}
        Path(args.json).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n",
                                   encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
