"""marinade.wrap through joblib's loky backend: real worker processes.

joblib ships tasks with cloudpickle; wrapped objects pickle as standalone
marinade payloads that load where marinade is not importable: the workers
start with ``MARINADE_HIDDEN=1`` (see ``test_wrap.hidden_marinade_path``).
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

pytest.importorskip("joblib", reason="joblib is not installed")

SCRIPT = r'''
from __future__ import annotations

import json

if __name__ == "__main__":
    import functools
    import os
    import typing

    from joblib import Parallel, delayed

    import marinade
    from marinade import wrap

    os.environ["MARINADE_HIDDEN"] = "1"  # the workers started from here on cannot import it
''' + "\n".join("    " + line for line in WORKER_STATE.splitlines()) + r'''

''' + indented(FRAMEWORK_OBJECTS) + r'''

    class Oops(Exception):
        pass

    def fail(x):
        raise Oops(x)

    out = {"parent": os.getpid()}
    with Parallel(n_jobs=2, backend="loky") as run:
        # Results come back with cloudpickle: still this process's classes.
        points = run(delayed(wrap(lambda i: Point(i, 0)))(i) for i in range(2))
        out["result_class"] = [type(p) is Point and p.x == i for i, p in enumerate(points)]
        try:
            run(delayed(wrap(fail))(i) for i in range(1))
        except Oops as exc:
            out["caught"] = str(exc)
        out["closure"] = run(delayed(wrap(lambda x: x + base))(i) for i in range(4))
        out["instances"] = run(delayed(wrap(lambda p: [type(p.moved(1)) is type(p), p.moved(1).x]))(
            wrap(Point(i, 0))) for i in range(3))
        out["local_class"] = run(delayed(wrap(lambda cls: [cls.__qualname__, cls().hello()]))(
            wrap(make_local())) for _ in range(2))
        out["lru_cache"] = run(delayed(wrap(lambda f, n: [f(n), f.cache_info().hits > 0]))(
            wrap(fib), n) for n in (30, 60))
        out["hints"] = run(delayed(wrap(hints))(wrap(Point.moved)) for _ in range(1))
        out["workers"] = run(delayed(wrap(worker_state))() for _ in range(6))
        # Control: joblib's own pickling (cloudpickle) of the same local class.
        out["plain_local_class"] = run(delayed(lambda cls: cls.__qualname__)(make_local())
                                       for _ in range(1))
    print(json.dumps(out))
'''


def test_wrapped_code_through_joblib_loky_without_marinade(tmp_path):
    proc = run_script(tmp_path, SCRIPT, timeout=180,
                      env={"PYTHONPATH": hidden_marinade_path(tmp_path)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["result_class"] == [True, True]
    assert out["caught"] == "0"
    assert out["closure"] == [100, 101, 102, 103]
    assert out["instances"] == [[True, 1], [True, 2], [True, 3]]
    assert out["local_class"] == [["make_local.<locals>.Local", "hello"]] * 2
    assert out["lru_cache"] == [[832040, True], [1548008755920, True]]
    assert out["hints"] == [[["dx", "<class 'int'>"], ["return", "<class '__main__.Point'>"]]]
    pids = {pid for pid, _, _ in out["workers"]}
    assert out["parent"] not in pids  # real worker processes
    for _, importable, loaded in out["workers"]:
        assert importable is False  # the hook held: nothing above needed marinade
        assert set(loaded) <= STANDALONE_MODULES  # standalone payloads' registry and kits
    assert out["plain_local_class"] == ["Local"]  # what cloudpickle alone keeps
