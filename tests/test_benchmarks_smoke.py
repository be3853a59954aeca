"""The benchmark runner and chart work end to end (a quick run; no timing checks)."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.dom.minidom
from pathlib import Path

from helpers import child_env

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
WORKLOADS = {"lambda", "closures", "class", "instances", "dicts"}


def test_quick_run_reports_every_workload_and_renders(tmp_path):
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run_all.py"), "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=300, env=child_env(), cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(out.read_text(encoding="utf-8"))
    cases = results["cases"]
    assert {c["workload"] for c in cases} == WORKLOADS
    keys = {c["key"] for c in cases}
    for key in ("lambda/dumps/warm", "lambda/loads/warm", "lambda/size/-",
                "closures/dumps/warm", "closures/size/-", "class/dumps/fresh",
                "class/dumps/warm", "class/loads/first", "class/loads/warm",
                "instances/dumps/fresh", "dicts/dumps/warm"):
        assert key in keys
    for case in cases:
        measured = case["bytes"] if case["op"] == "size" else case["median_seconds"]
        assert measured.get("marinade", 0) > 0, case["key"]
        if case["target"] is not None:
            assert case["pass"] in (True, False), case["key"]
    assert "marinade ratio" in proc.stdout  # the human table

    svg = tmp_path / "chart.svg"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "chart.py"), str(out), "-o", str(svg)],
        capture_output=True, text=True, timeout=60, env=child_env(), stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    document = xml.dom.minidom.parse(str(svg))
    bars = [r for r in document.getElementsByTagName("rect") if r.getElementsByTagName("title")]
    timed = [c for c in cases if c["op"] != "size" and "cloudpickle" in c["median_seconds"]]
    assert len(bars) >= 2 * len(timed)  # marinade and cloudpickle at least, per timed case


def test_stdlib_survey_runs_cross_process_and_judges_results(tmp_path):
    sys.path.insert(0, str(BENCH))
    try:
        import bench_stdlib
    finally:
        sys.path.remove(str(BENCH))
    cases = [case for case in bench_stdlib.CASES
             if case[1] in ("`struct.Struct`", "`threading.Lock` (refused by marinade: local state)")]
    # A check that is false must count as a failure even though the load works.
    cases.append(("test", "wrong on purpose", "1", "obj == 2"))
    found = bench_stdlib.survey(("pickle", "marinade", "marinade standalone"), cases)
    assert found["marinade"]["`struct.Struct`"] == ("ok", "")
    assert found["marinade standalone"]["`struct.Struct`"] == ("ok", "")
    assert found["pickle"]["`struct.Struct`"][0] == "dumps"
    assert found["marinade"]["`threading.Lock` (refused by marinade: local state)"][0] == "dumps"
    assert found["marinade"]["wrong on purpose"][0] == "check"
    table = bench_stdlib.markdown(found, cases)
    assert table.splitlines()[-1] == "| **of 3** | **0** | **1** | **1** |"
