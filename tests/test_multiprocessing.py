"""marinade.get_context / patch_multiprocessing: real worker processes.

The scripts run as ``__main__`` (so their lambdas, closures and classes exist
only there), and define everything under ``if __name__ == "__main__":``: a
spawn or forkserver child re-imports the script as ``__mp_main__`` without
running that block, so nothing of it can be imported by name in the workers.
Each script prints one JSON document of results computed in the processes;
the tests compare it with the expected values.
"""

from __future__ import annotations

import json
import multiprocessing
import pickle
import subprocess
import sys

import pytest

import marinade

from helpers import child_env, run_script

METHODS = [m for m in ("spawn", "forkserver") if m in multiprocessing.get_all_start_methods()]


def _run_json(tmp_path, source, *args, timeout=120):
    proc = run_script(tmp_path, source, args=args, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


CONTEXT_SCRIPT = r'''
import json, sys

if __name__ == "__main__":
    import multiprocessing
    import threading
    import traceback
    from concurrent.futures import ProcessPoolExecutor

    import marinade

    method = sys.argv[1]
    ctx = marinade.get_context(method)
    out = {"start_method": ctx.get_start_method()}
    K = 10

    class Point:
        def __init__(self, x, y):
            self.x, self.y = x, y

        def scaled(self, k):
            return Point(self.x * k, self.y * k)

    class WorkerError(Exception):
        pass

    def explode(x):
        raise WorkerError(f"exploded on {x}")

    def make_adder(n):
        return lambda x: x + n

    with ctx.Pool(2, initializer=lambda: None) as pool:
        out["map_closure"] = pool.map(lambda x: x * K, range(6))
        out["map_global_changed"] = None
        points = pool.map(lambda p: p.scaled(2), [Point(1, 2), Point(3, 4)])
        out["points_same_class"] = all(type(p) is Point for p in points)
        out["points"] = [[p.x, p.y] for p in points]
        adders = pool.map(make_adder, [1, 2, 3])  # closures made in the workers
        out["returned_closures"] = [f(100) for f in adders]
        out["starmap"] = pool.starmap(lambda a, b: a - b, [(5, 1), (9, 3)])
        out["imap_unordered"] = sorted(pool.imap_unordered(lambda x: -x, range(4)))
        out["imap_chunked"] = list(pool.imap(lambda x: x + 0.5, range(5), chunksize=2))
        out["apply_async"] = pool.apply_async(lambda a, b=1: a * b, (6,), {"b": 7}).get(30)
        out["map_instances_args"] = pool.map(lambda p: p.x + p.y, [Point(1, 1), Point(2, 5)])
        # A worker loads a map call's function once: its tasks share its globals.
        calls = {"n": 0}

        def count(x):
            calls["n"] += 1
            return calls["n"]

        out["shared_per_worker"] = max(pool.map(count, range(20), chunksize=1))
        # The function is shipped once per map call: a global changed between
        # two calls must be seen by the second one.
        shift = lambda x: x + K  # noqa: E731
        first = pool.map(shift, [0, 1])
        K = 1000
        out["map_global_changed"] = [first, pool.map(shift, [0, 1])]
        try:
            pool.map(explode, [1, 2, 3])
        except WorkerError as exc:
            out["pool_error"] = [type(exc) is WorkerError, str(exc),
                                 "explode" in str(exc.__cause__), "raise WorkerError" in str(exc.__cause__)]
        try:
            pool.map(lambda x: x, [threading.Lock()])  # cannot be pickled at all
        except Exception as exc:
            out["pool_unpicklable"] = type(exc).__name__
        out["pool_still_works"] = pool.map(lambda x: x + 1, [1])

    with ProcessPoolExecutor(2, mp_context=ctx) as ex:
        out["executor_map"] = list(ex.map(lambda x: x * 3, range(5)))
        made = ex.submit(lambda: Point(7, 8)).result(30)
        out["executor_result_class"] = [type(made) is Point, made.x, made.y]
        out["executor_closure"] = ex.submit(make_adder(5), 1).result(30)
        try:
            ex.submit(explode, 4).result(30)
        except WorkerError as exc:
            out["executor_error"] = [str(exc), "raise WorkerError" in str(exc.__cause__)]
        try:
            ex.submit(lambda lock: 1, threading.Lock()).result(30)
        except Exception as exc:
            out["executor_unpicklable"] = type(exc).__name__
        out["executor_still_works"] = ex.submit(lambda: "ok").result(30)

    queue = ctx.Queue()
    child = ctx.Process(target=lambda q, f: q.put((f(1), lambda: "made in child")),
                        args=(queue, lambda x: x + K))
    child.start()
    value, made_in_child = queue.get(timeout=30)
    child.join(30)
    out["process_queue"] = [value, made_in_child(), child.exitcode]

    here, there = ctx.Pipe()
    child = ctx.Process(target=lambda conn: conn.send(conn.recv()(2)), args=(there,))
    child.start()
    here.send(lambda x: (lambda: x * K))
    assert here.poll(30)
    out["pipe"] = here.recv()()
    child.join(30)

    jq = ctx.JoinableQueue()
    sq = ctx.SimpleQueue()

    def consume(jq, sq):
        item = jq.get()
        sq.put(item.scaled(10))
        jq.task_done()

    child = ctx.Process(target=consume, args=(jq, sq))
    child.start()
    jq.put(Point(1, 2))
    jq.join()
    got = sq.get()
    child.join(30)
    out["joinable_simple"] = [type(got) is Point, got.x, got.y]

    # Nothing global changed: the stdlib context still refuses a lambda.
    from multiprocessing import connection, queues, reduction
    out["stdlib_untouched"] = (reduction.ForkingPickler.__module__ == "multiprocessing.reduction"
                               and connection._ForkingPickler is reduction.ForkingPickler
                               and queues._ForkingPickler is reduction.ForkingPickler)
    try:
        with multiprocessing.get_context(method).Pool(1) as pool:
            pool.map(lambda x: x, [1])
        out["stdlib_refuses_lambda"] = False
    except Exception:
        out["stdlib_refuses_lambda"] = True
    print(json.dumps(out))
'''


@pytest.mark.parametrize("method", METHODS)
def test_context_pool_executor_process_queues(tmp_path, method):
    out = _run_json(tmp_path, CONTEXT_SCRIPT, method)
    assert out["start_method"] == method
    assert out["map_closure"] == [0, 10, 20, 30, 40, 50]
    assert out["points_same_class"] is True
    assert out["points"] == [[2, 4], [6, 8]]
    assert out["returned_closures"] == [101, 102, 103]
    assert out["starmap"] == [4, 6]
    assert out["imap_unordered"] == [-3, -2, -1, 0]
    assert out["imap_chunked"] == [0.5, 1.5, 2.5, 3.5, 4.5]
    assert out["apply_async"] == 42
    assert out["map_instances_args"] == [2, 7]
    assert out["shared_per_worker"] >= 10  # 20 tasks, 2 workers: one ran at least 10
    assert out["map_global_changed"] == [[10, 11], [1000, 1001]]
    # The worker's exception: same (by-value) class, the traceback as text.
    assert out["pool_error"][0] is True
    assert out["pool_error"][1].startswith("exploded on ")
    assert out["pool_error"][2:] == [True, True]
    assert out["pool_unpicklable"] in ("PicklingError", "TypeError")
    assert out["pool_still_works"] == [2]
    assert out["executor_map"] == [0, 3, 6, 9, 12]
    assert out["executor_result_class"] == [True, 7, 8]
    assert out["executor_closure"] == 6
    assert out["executor_error"] == ["exploded on 4", True]
    assert out["executor_unpicklable"] in ("PicklingError", "TypeError")
    assert out["executor_still_works"] == "ok"
    assert out["process_queue"] == [1001, "made in child", 0]
    assert out["pipe"] == 2000
    assert out["joinable_simple"] == [True, 10, 20]
    assert out["stdlib_untouched"] is True
    assert out["stdlib_refuses_lambda"] is True


FORK_SCRIPT = r'''
import json
if __name__ == "__main__":
    from concurrent.futures import ProcessPoolExecutor
    import marinade
    ctx = marinade.get_context("fork")
    out = {}
    k = 3
    with ctx.Pool(2) as pool:
        out["pool"] = pool.map(lambda x: (lambda: x * k), range(3))
        out["pool"] = [f() for f in out["pool"]]
    with ProcessPoolExecutor(1, mp_context=ctx) as ex:
        out["executor"] = ex.submit(lambda: (lambda y: y + k)).result(30)(1)
    print(json.dumps(out))
'''


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork here")
def test_fork_context_results_travel_by_value(tmp_path):
    # Fork children inherit the tasks' code, but results (closures made in
    # the workers) still have to be pickled back by value.
    out = _run_json(tmp_path, FORK_SCRIPT)
    assert out == {"pool": [0, 3, 6], "executor": 4}


PATCH_SCRIPT = r'''
import json, sys
if __name__ == "__main__":
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import connection, queues, reduction
    import marinade
    from marinade.integrations.multiprocessing import is_patched

    method = sys.argv[1]
    multiprocessing.set_start_method(method)
    names = [(reduction, "ForkingPickler"), (reduction, "dump"),
             (connection, "_ForkingPickler"), (queues, "_ForkingPickler")]
    before = [getattr(m, n) for m, n in names]
    out = {"patched_before": is_patched()}
    marinade.patch_multiprocessing()
    marinade.patch_multiprocessing()  # idempotent
    out["patched"] = is_patched()
    k = 7

    class Box:
        def __init__(self, v):
            self.v = v

    # Code that knows nothing of marinade: the default context, stdlib classes.
    with multiprocessing.Pool(2) as pool:
        out["pool"] = pool.map(lambda x: x + k, range(3))
        boxes = pool.map(lambda v: Box(v * 2), [1, 2])
        out["pool_boxes"] = [type(b) is Box for b in boxes] + [b.v for b in boxes]
    with ProcessPoolExecutor(2) as ex:
        out["executor"] = list(ex.map(lambda x: x * k, range(3)))
    q = multiprocessing.Queue()
    p = multiprocessing.Process(target=lambda q: q.put(lambda: "child patched"), args=(q,))
    p.start()
    out["process_queue"] = q.get(timeout=30)()
    p.join(30)

    marinade.unpatch_multiprocessing()
    marinade.unpatch_multiprocessing()  # a no-op when not patched
    out["patched_after"] = is_patched()
    out["restored"] = all(getattr(m, n) is b for (m, n), b in zip(names, before))
    try:
        with multiprocessing.Pool(1) as pool:
            pool.map(lambda x: x, [1])
        out["refused_after_unpatch"] = False
    except Exception:
        out["refused_after_unpatch"] = True
    print(json.dumps(out))
'''


@pytest.mark.parametrize("method", METHODS)
def test_patch_and_unpatch_default_context(tmp_path, method):
    out = _run_json(tmp_path, PATCH_SCRIPT, method)
    assert out == {
        "patched_before": False,
        "patched": True,
        "pool": [7, 8, 9],
        "pool_boxes": [True, True, 2, 4],
        "executor": [0, 7, 14],
        "process_queue": "child patched",
        "patched_after": False,
        "restored": True,
        "refused_after_unpatch": True,
    }


# --- in-process checks: API contract and the pickler's reuse ------------------


def test_get_context_api():
    from multiprocessing.context import BaseContext

    from marinade.integrations import multiprocessing as mmp

    default = multiprocessing.get_start_method(allow_none=True)
    for method in multiprocessing.get_all_start_methods():
        ctx = marinade.get_context(method)
        assert isinstance(ctx, BaseContext)
        assert ctx.get_start_method() == method
        assert ctx is marinade.get_context(method)
        assert ctx.get_context() is ctx
        assert ctx.get_context(method) is ctx
        assert ctx.reducer.ForkingPickler is mmp.ForkingPickler
        assert isinstance(ctx.Process(target=print), multiprocessing.process.BaseProcess)
        with pytest.raises(ValueError):
            ctx.reducer = None
    expected = default or multiprocessing.get_all_start_methods()[0]
    assert marinade.get_context().get_start_method() == expected
    # Asking for the default context did not choose the start method.
    assert multiprocessing.get_start_method(allow_none=True) == default
    with pytest.raises(ValueError, match="cannot find context"):
        marinade.get_context("teleport")


def test_forking_pickler_dumps_and_registry():
    from multiprocessing.reduction import ForkingPickler as StdForkingPickler

    from marinade.integrations.multiprocessing import ForkingPickler, _dumps

    k = 5
    f = pickle.loads(ForkingPickler.dumps(lambda x: x + k))
    assert f(1) == 6

    class Token:
        def __init__(self, v):
            self.v = v

    # Registered on multiprocessing's registry, after our reusable pickler
    # exists: it still applies (both share one registry).
    _dumps(1)
    StdForkingPickler.register(Token, lambda t: (str, (f"token {t.v}",)))
    try:
        assert pickle.loads(_dumps([Token(3)])) == ["token 3"]
        assert pickle.loads(ForkingPickler.dumps(Token(4))) == "token 4"
    finally:
        del StdForkingPickler._extra_reducers[Token]
    assert pickle.loads(_dumps(Token(5))).v == 5


def test_reused_pickler_independent_dumps_reentry_and_failures():
    import threading

    from marinade.integrations.multiprocessing import _dumps

    shared = [1, 2]
    a = _dumps((shared, shared))
    b = _dumps(shared)  # no memo left over from the previous dump
    loaded = pickle.loads(a)
    assert loaded == ([1, 2], [1, 2]) and loaded[0] is loaded[1]
    assert pickle.loads(b) == [1, 2]

    class Nested:
        def __reduce__(self):  # pickles something itself, in the middle of a dump
            return pickle.loads, (_dumps(lambda: "inner"),)

    inner = pickle.loads(_dumps([Nested(), lambda: "outer"]))
    assert inner[0]() == "inner" and inner[1]() == "outer"

    with pytest.raises((pickle.PicklingError, TypeError)) as info:
        _dumps({"lock": threading.Lock()})
    assert "lock" in str(info.value).lower()
    assert pickle.loads(_dumps(lambda: 3))() == 3  # a failure does not poison the next dump


def test_import_marinade_stays_light():
    code = (
        "import sys, marinade; "
        "heavy = ['marinade.integrations', 'multiprocessing.pool', 'multiprocessing.connection', "
        "'concurrent.futures.process', 'torch', 'dask', 'distributed']; "
        "print([m for m in heavy if m in sys.modules])"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=child_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_pool_task_sender_ships_each_function_once_per_job():
    import gc
    from multiprocessing.pool import mapstar, starmapstar

    from marinade.integrations.multiprocessing import _TaskSender

    class FakeConnection:
        def __init__(self):
            self.sent = []

        def _check_closed(self):
            pass

        def _send_bytes(self, data):
            self.sent.append(bytes(data))

        def send(self, obj):
            from marinade.integrations.multiprocessing import _dumps
            self.sent.append(_dumps(obj))

    conn = FakeConnection()
    sender = _TaskSender(conn)
    k = 3
    f = lambda x: x * k  # noqa: E731
    sender((1, 0, mapstar, ((f, (1, 2)),), {}))  # plain chunk: the plain pickler
    shipped = sender._entry[2]
    sender((1, 1, mapstar, ((f, ("a", [3])),), {}))  # not plain: marinade
    assert sender._entry[2] is shipped  # pickled once for the job
    sender((1, 2, starmapstar, ((lambda a, b: a - b, ((5, 1),)),), {}))
    sender((2, 0, f, (10,), {}))  # apply_async-like task: the function itself travels
    sender(None)  # the sentinel
    loaded = [pickle.loads(data) for data in conn.sent]
    assert [task[2](task[3][0]) for task in loaded[:3]] == [[3, 6], ["aaa", [3, 3, 3]], [4]]
    assert loaded[3][2](*loaded[3][3]) == 30
    assert loaded[4] is None
    # The function is held weakly: the payload goes with it.
    assert sender._entry is not None
    del f, loaded
    gc.collect()
    assert sender._entry is None
