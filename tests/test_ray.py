"""marinade.wrap through Ray: a local Ray instance started and stopped by the test.

Ray ships task arguments with its own serialization (cloudpickle); wrapped
objects pickle as standalone marinade payloads that load where marinade is
not importable: Ray's workers start with ``MARINADE_HIDDEN=1`` (see
``test_wrap.hidden_marinade_path``).
"""

from __future__ import annotations

import json

import pytest

from test_wrap import (
    FRAMEWORK_OBJECTS,
    STANDALONE_MODULES,
    WORKER_STATE,
    hidden_marinade_path,
    indented,
)

from helpers import run_script

pytest.importorskip("ray", reason="ray is not installed")

SCRIPT = r'''
from __future__ import annotations

import json

if __name__ == "__main__":
    import functools
    import os
    import typing

    import ray

    import marinade
    from marinade import wrap

    os.environ["MARINADE_HIDDEN"] = "1"  # Ray's workers, started by ray.init, cannot import it
''' + "\n".join("    " + line for line in WORKER_STATE.splitlines()) + r'''

''' + indented(FRAMEWORK_OBJECTS) + r'''

    @ray.remote
    def call(f, *args):  # Ray's own remote function; what it calls arrives wrapped
        return f(*args)

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        out = {"parent": os.getpid()}
        out["closure"] = ray.get([call.remote(wrap(lambda x: x + base), i) for i in range(4)])
        out["instances"] = ray.get([call.remote(
            wrap(lambda p: [type(p.moved(1)) is type(p), p.moved(1).x]), wrap(Point(i, 0)))
            for i in range(3)])
        local = ray.put(wrap(make_local()))  # through Ray's object store
        out["local_class"] = ray.get(call.remote(
            wrap(lambda cls: [cls.__qualname__, cls().hello()]), local))
        out["lru_cache"] = ray.get(call.remote(
            wrap(lambda f, n: [f(n), f.cache_info().hits > 0]), wrap(fib), 60))
        out["hints"] = ray.get(call.remote(wrap(hints), wrap(Point.moved)))
        out["workers"] = ray.get([call.remote(wrap(worker_state)) for _ in range(4)])
        # Control: Ray's own pickling (cloudpickle) of the same local class.
        out["plain_local_class"] = ray.get(call.remote(lambda cls: cls.__qualname__, make_local()))
    finally:
        ray.shutdown()
    print(json.dumps(out))
'''


def test_wrapped_code_through_ray_without_marinade(tmp_path):
    env = {"PYTHONPATH": hidden_marinade_path(tmp_path),
           "RAY_USAGE_STATS_ENABLED": "0"}  # no report to Ray's servers
    proc = run_script(tmp_path, SCRIPT, timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["closure"] == [100, 101, 102, 103]
    assert out["instances"] == [[True, 1], [True, 2], [True, 3]]
    assert out["local_class"] == ["make_local.<locals>.Local", "hello"]
    assert out["lru_cache"] == [1548008755920, True]
    assert out["hints"] == [["dx", "<class 'int'>"], ["return", "<class '__main__.Point'>"]]
    assert out["parent"] not in {pid for pid, _, _ in out["workers"]}  # real worker processes
    for _, importable, loaded in out["workers"]:
        assert importable is False  # the hook held: nothing above needed marinade
        assert set(loaded) <= STANDALONE_MODULES  # standalone payloads' registry and kits
    assert out["plain_local_class"] == "Local"  # what cloudpickle alone keeps
