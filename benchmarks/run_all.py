"""Run every benchmark workload in one process and print a table of ratios.

    python benchmarks/run_all.py                 # full run (a few minutes)
    python benchmarks/run_all.py --quick         # smoke run, small sizes, few samples
    python benchmarks/run_all.py --json out.json # also write machine-readable results
    python benchmarks/run_all.py --only lambda class --libs marinade cloudpickle

Times are medians over interleaved samples. The machine may be shared and
noisy, so read the RATIO column (marinade / baseline) rather than the times.
``benchmarks/chart.py out.json`` renders docs/benchmarks.svg from the JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_core as core  # noqa: E402 - needs the path above


def _fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _fmt_bytes(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:.3g} MB"
    if n >= 10_000:
        return f"{n / 1e3:.3g} kB"
    return f"{n} B"


def _target_text(case: core.Case) -> str:
    if case.target is None:
        return "-"
    if case.op == "size" and case.baseline == core.MARSHAL:
        return f"<= {case.target:g} B"
    return f"<= {case.target:g}x"


def _ratio_text(case: core.Case) -> str:
    if case.op == "size" and case.baseline == core.MARSHAL:
        size = case.sizes.get("marinade")
        floor = case.sizes.get(core.MARSHAL)
        if size is None or floor is None:
            return "-"
        return f"{size} B (floor {floor} B)"
    ratio = core.ratios(case).get("marinade")
    return "-" if ratio is None else f"{ratio:.3f}x {case.baseline}"


def print_table(cases: list[core.Case], libs: list[str]) -> None:
    columns = [name for name in core.ORDER if name in libs or name == core.MARSHAL]
    head = ["case"] + columns + ["marinade ratio", "target", "result"]
    rows = [head]
    for case in cases:
        cells = [f"{case.workload} {case.op} ({case.variant})" if case.variant != "-"
                 else f"{case.workload} {case.op}"]
        for name in columns:
            if case.op == "size":
                value = case.sizes.get(name)
                cells.append("" if value is None else _fmt_bytes(value))
            else:
                value = case.medians.get(name)
                cells.append("" if value is None else _fmt_time(value))
        ok = core.verdict(case)
        cells += [_ratio_text(case), _target_text(case),
                  "" if ok is None else ("PASS" if ok else "FAIL")]
        rows.append(cells)
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(w) if j == 0 else cell.rjust(w)
                        for j, (cell, w) in enumerate(zip(row, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def print_other_ratios(cases: list[core.Case]) -> None:
    print("\nAll ratios (each library / the case's baseline):")
    for case in cases:
        r = core.ratios(case)
        if not r:
            continue
        parts = [f"{name} {r[name]:.3g}x" for name in core.ORDER if name in r]
        print(f"  {case.key:28} vs {case.baseline:12} " + ", ".join(parts))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few samples")
    parser.add_argument("--json", metavar="PATH", help="write results as JSON to PATH")
    parser.add_argument("--only", nargs="+", choices=list(core.WORKLOADS),
                        help="run only these workloads")
    parser.add_argument("--libs", nargs="+", choices=list(core.library_factories),
                        help="measure only these libraries (marshal always runs)")
    args = parser.parse_args(argv)

    sc = core.scale(args.quick)
    libs = core.load_libraries(args.libs)
    if "marinade" not in libs:
        parser.error("marinade must be importable")
    started = time.perf_counter()
    cases: list[core.Case] = []
    for workload, build in core.WORKLOADS.items():
        if args.only and workload not in args.only:
            continue
        print(f"running {workload} ...", file=sys.stderr, flush=True)
        for case in build(libs, sc):
            core.run_case(case, libs)
            cases.append(case)
    elapsed = time.perf_counter() - started

    env = core.environment(libs, sc)
    print(f"\nPython {env['python']} on {env['platform']}, {env['cpus']} CPUs, "
          f"pickle protocol {env['protocol']}{', QUICK run' if sc.quick else ''}; "
          f"{elapsed:.0f} s")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in env["libraries"].items()) + "\n")
    print_table(cases, list(libs))
    print_other_ratios(cases)
    notes = [c for c in cases if c.note]
    if notes:
        print("\nNotes:")
        for case in notes:
            print(f"  {case.key}: {case.note}")
    failed = [c.key for c in cases if core.verdict(c) is False]
    print(f"\ntargets: {sum(core.verdict(c) is True for c in cases)} met, "
          f"{len(failed)} missed" + (f" ({', '.join(failed)})" if failed else ""))

    if args.json:
        result = {"schema": 1, "environment": env, "elapsed_seconds": elapsed,
                  "cases": [core.case_json(c) for c in cases]}
        Path(args.json).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n",
                                   encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
