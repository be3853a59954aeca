"""Inspection streams large payloads from files with bounded memory.

The symbolic machine keeps what it needs within fixed budgets
(``safety.inspect.Limits``): string and bytes data is re-read from the file
on demand, the memo keeps the values used most recently, containers keep
their items only while a global budget lasts. So the memory an inspection
takes does not grow with the payload. Measured here as the peak RSS of a
fresh process (``resource.getrusage``), for a small and a ~45 MB payload
made of many small objects, nested lists and a large bytes object, with a
dangerous function at the very end that must still be found.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from helpers import child_env

PRODUCER = """
import os, sys, marinade
rows, mb, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def later():
    return os.system("true")
with open(path, "wb") as f:
    marinade.dump({"rows": [{"a": i, "b": str(i), "c": [i, 2.5]} for i in range(rows)],
                   "nested": [[list(range(j % 50, j % 50 + 8)) for j in range(100)]
                              for _ in range(rows // 100)],
                   "blob": bytes(mb << 20), "fn": later}, f)
"""

MEASURE = """
import resource, sys, marinade
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if sys.argv[1] == "-":
    report = marinade.inspect(sys.stdin.buffer)
else:
    report = marinade.inspect(sys.argv[1])
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before  # KiB on Linux
print(grown // 1024, report.dangerous, report.complete, report.size)
"""


def _run(args, **kwargs):
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(args[0]), *args[1:]],
                          env=child_env(), capture_output=True, text=True, timeout=120,
                          **kwargs)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_peak_memory_does_not_grow_with_the_payload(tmp_path):
    if not sys.platform.startswith("linux"):
        import pytest

        pytest.skip("ru_maxrss units differ outside Linux")
    small, large = tmp_path / "small.pkl", tmp_path / "large.pkl"
    _run([PRODUCER, "5000", "2", str(small)])
    _run([PRODUCER, "150000", "32", str(large)])
    size = large.stat().st_size
    assert size > 40 << 20
    grown_small, *verdict_small = _run([MEASURE, str(small)])
    grown_large, *verdict_large = _run([MEASURE, str(large)])
    with open(large, "rb") as pipe_input:  # a pipe: nothing can be re-read
        grown_pipe, *verdict_pipe = _run([MEASURE, "-"], stdin=pipe_input)
    # Read to the end (the function comes last) and judged, every time.
    for verdict, path in ((verdict_small, small), (verdict_large, large),
                          (verdict_pipe, large)):
        assert verdict == ["True", "True", str(path.stat().st_size)], verdict
    grown_small, grown_large, grown_pipe = int(grown_small), int(grown_large), int(grown_pipe)
    # Bounded: far below the payload's size, and nearly the same for a payload
    # nine times larger (what grows is the budgets filling up, then nothing).
    assert grown_large < 48, (grown_small, grown_large)
    assert grown_pipe < 48, (grown_small, grown_pipe)
    assert grown_large - grown_small < 32, (grown_small, grown_large)
