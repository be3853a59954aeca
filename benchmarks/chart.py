"""Render benchmark results (``run_all.py --json``) as an SVG bar chart.

    python benchmarks/chart.py results.json [-o docs/benchmarks.svg]

One group of bars per timed case (lambda dumps, class loads...), one bar per
library: its median time divided by cloudpickle's in the same run, on a log
scale (lower is faster; 1 is cloudpickle). A tick on marinade's bar marks
the case's target, converted to the same scale. Written by hand: no plotting
library needed.
"""

from __future__ import annotations

import argparse
import json
import math
from html import escape
from pathlib import Path

REFERENCE = "cloudpickle"
COLORS = {
    "marinade": "#2b8a3e",
    "standalone": "#8ce99a",
    "cloudpickle": "#1c7ed6",
    "dill": "#e8590c",
    "pickle": "#868e96",
    "marshal": "#ae3ec9",
}
ORDER = list(COLORS)

BAR = 13
GAP = 30  # between groups
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 70, 120
PLOT_HEIGHT = 300
LOW, HIGH = 1 / 64, 64  # ratio range of the log axis


def _y(ratio: float) -> float:
    ratio = min(max(ratio, LOW), HIGH)
    span = math.log(HIGH) - math.log(LOW)
    return TOP + PLOT_HEIGHT * (math.log(HIGH) - math.log(ratio)) / span


def _label(case: dict) -> tuple[str, str]:
    variant = case["variant"]
    first = f"{case['workload']} {case['op']}"
    return first, ("" if variant == "-" else f"({variant})")


def _groups(results: dict) -> list[tuple[dict, dict[str, float]]]:
    groups = []
    for case in results["cases"]:
        if case["op"] == "size":
            continue
        medians = case["median_seconds"]
        base = medians.get(REFERENCE)
        if not base:
            continue
        groups.append((case, {name: medians[name] / base for name in ORDER if name in medians}))
    return groups


def _target_ratio(case: dict) -> float | None:
    """The case's target on the cloudpickle scale, if it has one."""
    target = case.get("target")
    if target is None:
        return None
    medians = case["median_seconds"]
    base, ref = medians.get(case["baseline"]), medians.get(REFERENCE)
    if not base or not ref:
        return None
    return target * base / ref


def render(results: dict) -> str:
    groups = _groups(results)
    libs = [name for name in ORDER if any(name in ratios for _, ratios in groups)]
    group_width = BAR * len(libs) + GAP
    width = LEFT + RIGHT + group_width * max(len(groups), 1)
    height = TOP + PLOT_HEIGHT + BOTTOM
    env = results.get("environment", {})
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{LEFT}" y="22" font-size="15" font-weight="bold">Time relative to '
        f'{REFERENCE} (log scale, lower is faster)</text>',
    ]
    # legend
    x = LEFT
    for name in libs:
        out.append(f'<rect x="{x}" y="34" width="11" height="11" fill="{COLORS[name]}"/>')
        out.append(f'<text x="{x + 15}" y="44">{escape(name)}</text>')
        x += 26 + 6 * len(name)
    out.append(f'<line x1="{x}" y1="39" x2="{x + 12}" y2="39" stroke="black" '
               f'stroke-width="2"/><text x="{x + 16}" y="44">marinade target</text>')
    # axis and grid: powers of two
    for power in range(int(math.log2(LOW)), int(math.log2(HIGH)) + 1):
        ratio = 2.0 ** power
        y = _y(ratio)
        label = f"{ratio:g}x" if ratio >= 1 else f"1/{int(1 / ratio)}x"
        strong = ratio == 1
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{width - RIGHT}" y2="{y:.1f}" '
                   f'stroke="{"#495057" if strong else "#e9ecef"}" '
                   f'stroke-width="{1.5 if strong else 1}"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" '
                   f'fill="#495057">{label}</text>')
    # bars
    base_y = _y(1.0)
    for i, (case, ratios) in enumerate(groups):
        gx = LEFT + GAP / 2 + i * group_width
        for j, name in enumerate(libs):
            ratio = ratios.get(name)
            if ratio is None:
                continue
            bx = gx + j * BAR
            y = _y(ratio)
            top, bottom = min(y, base_y), max(y, base_y)
            title = f"{name}: {ratio:.3g}x {REFERENCE}"
            out.append(f'<rect x="{bx:.1f}" y="{top:.1f}" width="{BAR - 2}" '
                       f'height="{max(bottom - top, 1):.1f}" fill="{COLORS[name]}">'
                       f'<title>{escape(title)}</title></rect>')
            if name == "marinade":
                target = _target_ratio(case)
                if target is not None:
                    ty = _y(target)
                    out.append(f'<line x1="{bx - 3:.1f}" y1="{ty:.1f}" x2="{bx + BAR + 1:.1f}" '
                               f'y2="{ty:.1f}" stroke="black" stroke-width="2">'
                               f'<title>target {target:.3g}x {REFERENCE}</title></line>')
        first, second = _label(case)
        cx = gx + BAR * len(libs) / 2
        ly = TOP + PLOT_HEIGHT + 16
        out.append(f'<text x="{cx:.1f}" y="{ly}" text-anchor="middle">{escape(first)}</text>')
        if second:
            out.append(f'<text x="{cx:.1f}" y="{ly + 13}" text-anchor="middle" '
                       f'fill="#495057">{escape(second)}</text>')
    sizes = env.get("sizes", {})
    notes = [
        f"Python {env.get('python', '?')} on {env.get('machine', '?')}, "
        f"pickle protocol {env.get('protocol', '?')}"
        + (" (QUICK run: small sizes, few samples)" if env.get("quick") else ""),
        "versions: " + ", ".join(f"{k} {v}" for k, v in env.get("libraries", {}).items()),
        f"closures: {sizes.get('closures', '?'):,}; class: {sizes.get('methods', '?')} methods; "
        f"instances: {sizes.get('instances', '?'):,}; dicts: {sizes.get('dicts', '?'):,}. "
        "Medians of interleaved samples in one process.",
    ]
    for k, note in enumerate(notes):
        out.append(f'<text x="{LEFT}" y="{height - 44 + 14 * k}" fill="#495057">'
                   f'{escape(note)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="JSON written by run_all.py --json")
    parser.add_argument("-o", "--output", default=str(Path(__file__).resolve().parent.parent
                                                      / "docs" / "benchmarks.svg"))
    args = parser.parse_args(argv)
    results = json.loads(Path(args.results).read_text(encoding="utf-8"))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(render(results), encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
