"""marinade.wrap through PySpark: a local Spark (``local[2]``) started and stopped by the test.

PySpark ships functions to its Python workers with cloudpickle; wrapped
objects pickle as standalone marinade payloads that load where marinade is
not importable: the Python workers start with ``MARINADE_HIDDEN=1`` (see
``test_wrap.hidden_marinade_path``). Needs Java (Spark's JVM).
"""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from test_wrap import (
    FRAMEWORK_OBJECTS,
    STANDALONE_MODULES,
    WORKER_STATE,
    hidden_marinade_path,
    indented,
)

from helpers import run_script

pytest.importorskip("pyspark", reason="pyspark is not installed")
if shutil.which("java") is None:
    pytest.skip("Spark needs Java, not found on PATH", allow_module_level=True)

SCRIPT = r'''
from __future__ import annotations

import json

if __name__ == "__main__":
    import functools
    import os
    import typing

    from pyspark.sql import SparkSession

    import marinade
    from marinade import wrap

    os.environ["MARINADE_HIDDEN"] = "1"  # Spark's Python workers cannot import it
''' + "\n".join("    " + line for line in WORKER_STATE.splitlines()) + r'''

''' + indented(FRAMEWORK_OBJECTS) + r'''

    spark = (SparkSession.builder.master("local[2]").appName("marinade-wrap")
             .config("spark.ui.enabled", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    try:
        sc = spark.sparkContext
        out = {"parent": os.getpid()}
        out["closure"] = sc.parallelize(range(4), 2).map(wrap(lambda x: x + base)).collect()
        point = wrap(Point(0, 0))  # captured by the lambda Spark pickles itself
        out["instances"] = sc.parallelize(range(3), 2).map(
            lambda i: [type(point.moved(i)) is type(point), point.moved(i).x]).collect()
        local = sc.broadcast(wrap(make_local()))  # through a broadcast variable
        out["local_class"] = sc.parallelize([0], 1).map(
            lambda _: [local.value.__qualname__, local.value().hello()]).collect()
        cached = wrap(fib)
        out["lru_cache"] = sc.parallelize([60], 1).map(
            lambda n: [cached(n), cached.cache_info().hits > 0]).collect()
        out["hints"] = sc.parallelize([0], 1).map(wrap(lambda _: hints(Point.moved))).collect()
        out["workers"] = sc.parallelize(range(4), 2).map(wrap(lambda _: worker_state())).collect()
        # Control: Spark's own pickling (cloudpickle) of the same local class.
        plain = make_local()
        out["plain_local_class"] = sc.parallelize([0], 1).map(lambda _: plain.__qualname__).collect()
    finally:
        spark.stop()
    print(json.dumps(out))
'''


def test_wrapped_code_through_spark_without_marinade(tmp_path):
    env = {"PYTHONPATH": hidden_marinade_path(tmp_path), "SPARK_LOCAL_IP": "127.0.0.1",
           "PYSPARK_PYTHON": sys.executable}  # the workers run this interpreter
    proc = run_script(tmp_path, SCRIPT, timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["closure"] == [100, 101, 102, 103]
    assert out["instances"] == [[True, 0], [True, 1], [True, 2]]
    assert out["local_class"] == [["make_local.<locals>.Local", "hello"]]
    assert out["lru_cache"] == [[1548008755920, True]]
    assert out["hints"] == [[["dx", "<class 'int'>"], ["return", "<class '__main__.Point'>"]]]
    assert out["parent"] not in {pid for pid, _, _ in out["workers"]}  # real worker processes
    for _, importable, loaded in out["workers"]:
        assert importable is False  # the hook held: nothing above needed marinade
        assert set(loaded) <= STANDALONE_MODULES  # standalone payloads' registry and kits
    assert out["plain_local_class"] == ["Local"]  # what cloudpickle alone keeps
