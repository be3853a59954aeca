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

    class QuotaError(Exception):  # plain pickle cannot rebuild it: its __init__ differs
        def __init__(self, user, limit):
            super().__init__(f"{user} is over {limit}")
            self.user, self.limit = user, limit

    def over_quota(user):
        raise QuotaError(user, 10)

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
                                 "explode" in str(exc.__cause__), "raise WorkerError" in str(exc.__cause__),
                                 # the worker's frames, after the parent's
                                 traceback.extract_tb(exc.__traceback__)[-1].name]
        try:
            pool.map(lambda x: x, [threading.Lock()])  # cannot be pickled at all
        except Exception as exc:
            out["pool_unpicklable"] = type(exc).__name__
        out["pool_still_works"] = pool.map(lambda x: x + 1, [1])

    with ProcessPoolExecutor(2, mp_context=ctx) as ex:
        out["executor_map"] = list(ex.map(lambda x: x * 3, range(5)))
        # One payload per map call: a later call sees what changed in between.
        factor = 1000
        scale = lambda p: Point(p.x * factor, p.y)  # noqa: E731 - instances as arguments
        first = [p.x for p in ex.map(scale, [Point(1, 0), Point(2, 0)])]
        factor = 2
        out["executor_map_per_call"] = [first, [p.x for p in ex.map(scale, [Point(1, 0)])],
                                        list(ex.map(lambda a, b: a * b * factor, [1, 2], [3, 4]))]
        try:
            list(ex.map(explode, [7, 8]))
        except WorkerError as exc:
            out["executor_map_error"] = [str(exc), "raise WorkerError" in str(exc.__cause__)]
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
        try:
            ex.submit(over_quota, "ann").result(30)
        except QuotaError as exc:
            out["executor_own_init"] = [str(exc), exc.user, exc.limit]
        out["executor_still_works"] = ex.submit(lambda: "ok").result(30)

    # A Process has no result channel: its exception's traceback is printed
    # as text on the child's stderr and the exit code is 1, as with the stdlib.
    child = ctx.Process(target=lambda: explode("in a process"))
    child.start()
    child.join(30)
    out["process_error_exitcode"] = child.exitcode

    # A manager from the context: its proxies and server pickle with marinade.
    with ctx.Manager() as manager:
        shared = manager.list([lambda x: x + K])
        table = manager.dict(box=Point(5, 6))
        answers = manager.Queue()

        def use_managed(shared, table, answers):
            answers.put([shared[0](1), table["box"].scaled(2).x, type(table["box"]) is Point])
            shared.append(lambda: "appended by the child")

        child = ctx.Process(target=use_managed, args=(shared, table, answers))
        child.start()
        child.join(30)
        got = answers.get(timeout=30)
        with ctx.Pool(2) as pool:  # a proxy captured by a lambda, in pool workers
            from_pool = pool.map(lambda i: shared[0](i), [0, 1])
        space = manager.Namespace()
        space.make = lambda: Point(1, 1)
        out["manager"] = [got, shared[1](), type(table["box"]) is Point, from_pool,
                          type(space.make()) is Point]
    with multiprocessing.get_context(method).Manager() as manager:
        try:
            manager.list().append(lambda: 1)
            out["stdlib_manager_refuses_lambda"] = False
        except Exception:
            out["stdlib_manager_refuses_lambda"] = True

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
    proc = run_script(tmp_path, CONTEXT_SCRIPT, args=(method,), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
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
    assert out["pool_error"][2:] == [True, True, "explode"]
    assert out["pool_unpicklable"] in ("PicklingTypeError", "TypeError")
    assert out["pool_still_works"] == [2]
    assert out["executor_map"] == [0, 3, 6, 9, 12]
    assert out["executor_map_per_call"] == [[1000, 2000], [2], [6, 16]]
    assert out["executor_map_error"] == ["exploded on 7", True]
    assert out["executor_result_class"] == [True, 7, 8]
    assert out["executor_closure"] == 6
    assert out["executor_error"] == ["exploded on 4", True]
    assert out["executor_own_init"] == ["ann is over 10", "ann", 10]
    assert out["executor_unpicklable"] in ("PicklingTypeError", "TypeError")
    assert out["executor_still_works"] == "ok"
    # The Process's exception: exit code 1, its traceback as text on stderr
    # (the child's stderr is the script's), through the by-value lambda.
    assert out["process_error_exitcode"] == 1
    tb = proc.stderr[proc.stderr.index("Traceback"):]
    assert "WorkerError: exploded on in a process" in tb
    assert 'raise WorkerError(f"exploded on {x}")' in tb and "in <lambda>" in tb
    assert out["manager"] == [[1001, 10, True], "appended by the child", True, [1000, 1001], True]
    assert out["stdlib_manager_refuses_lambda"] is True
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
    with multiprocessing.Manager() as manager:
        shared = manager.list([lambda: k * 2])
        out["manager"] = shared[0]()

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
        "manager": 14,
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


def test_pool_task_sender_ships_each_function_once_per_job(tmp_path):
    import gc
    from multiprocessing.pool import mapstar, starmapstar

    from marinade.integrations import multiprocessing as mmp

    class FakeConnection:
        def __init__(self):
            self.sent = []

        def _check_closed(self):
            pass

        def _send_bytes(self, data):
            self.sent.append(bytes(data))

        def send(self, obj):
            self.sent.append(mmp._dumps(obj))

    conn = FakeConnection()
    sender = mmp._TaskSender(conn)
    jobs = {1: None, 2: None, 3: None}  # the pool's job cache: jobs still running
    prefix = str(tmp_path / "payload-")
    sender.attach(jobs, 2, prefix)
    k = 3
    big = list(range(5000))
    f = lambda x: x * k if big else 0  # noqa: E731 - a closure over a large list
    for i, chunk in enumerate([(1, 2), ("a", [3]), (4,), (5,), (6,)]):
        sender((1, i, mapstar, ((f, chunk),), {}))
    shipped = [len(data) for data in conn.sent]
    # The first two tasks (as many as workers) carry the payload, the others its job number.
    assert min(shipped[:2]) > 5000 and max(shipped[2:]) < 200, shipped
    assert (tmp_path / "payload-1").exists()
    sender((2, 0, starmapstar, ((lambda a, b: a - b, ((5, 1),)),), {}))
    sender((3, 0, f, (10,), {}))  # apply_async-like task: the function itself travels
    sender(None)  # the sentinel
    # What workers would do: load each task and run it. The second "worker"
    # got none of job 1's first tasks: it reads the payload from the file.
    results = []
    for n, data in enumerate(conn.sent):
        if n == 2:
            mmp._WorkerInit(prefix, None)()  # a fresh worker: empty cache
        task = pickle.loads(data)
        results.append(None if task is None else task[2](*task[3]))
    assert results == [[3, 6], ["aaa", [3, 3, 3]], [12], [15], [18], [4], 30, None]
    # The function is held weakly: the payload goes with it.
    assert sender._entry is not None
    del f
    gc.collect()
    assert sender._entry is None
    # A job's file stays while the job runs; it goes when the job has left the cache.
    del jobs[1]
    sender((4, 0, mapstar, ((abs, (-1,)),), {}))
    assert not (tmp_path / "payload-1").exists()
    # A job whose function is nowhere: the task fails when run (the worker lives on).
    mmp._WorkerInit(None, None)()
    missing = pickle.loads(pickle.dumps(mmp._Keyed(99), protocol=5))
    with pytest.raises(RuntimeError, match="function of pool job 99 cannot be found"):
        missing(1)


KEYED_SCRIPT = r'''
import json, os, sys

if __name__ == "__main__":
    import multiprocessing
    from multiprocessing import util

    import marinade

    ctx = marinade.get_context(sys.argv[1])
    out = {}
    big = bytes(200_000)  # a closure over 200 kB: sent a few times, not with each task
    size = lambda i: len(big) + i  # noqa: E731
    with ctx.Pool(2, maxtasksperchild=3) as pool:  # workers come and go mid-map
        out["replaced_workers"] = pool.map(size, range(40), chunksize=1)
        out["imap"] = list(pool.imap(lambda x: -x, range(30)))
        out["starmap"] = pool.starmap(lambda a, b: a * b, [(i, 2) for i in range(25)], 1)
        out["files_while_open"] = any(name.startswith("marinade-")
                                      for name in os.listdir(util.get_temp_dir()))
    out["files_after"] = [n for n in os.listdir(util.get_temp_dir()) if n.startswith("marinade-")]

    # A function the workers cannot load: the tasks fail with the loading
    # error (with the stdlib, the worker would die and the pool wait forever).
    def only_here(pid):
        if os.getpid() != pid:
            raise LookupError(f"loads only in process {pid}")
        return 1

    class Token:
        def __reduce__(self):
            return only_here, (os.getpid(),)

    token = Token()
    with ctx.Pool(1) as pool:
        try:
            pool.map(lambda x: (token, x), range(10), chunksize=1)
        except LookupError as exc:
            out["unloadable"] = [type(exc).__name__, str(exc) == f"loads only in process {os.getpid()}"]
        out["after_unloadable"] = pool.map(lambda x: x, [1])
    print(json.dumps(out))
    # Pools left open until the interpreter exits (their __del__ still sends a message).
    left_open = [multiprocessing.get_context(sys.argv[1]).Pool(1), ctx.Pool(1)]
    left_open[1].map(abs, [-1])
'''


@pytest.mark.parametrize("method", METHODS)
def test_pool_sends_a_large_function_once_per_worker(tmp_path, method):
    proc = run_script(tmp_path, KEYED_SCRIPT, args=(method,), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Exception ignored" not in proc.stderr, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["replaced_workers"] == [200_000 + i for i in range(40)]
    assert out["imap"] == [-i for i in range(30)]
    assert out["starmap"] == [2 * i for i in range(25)]
    assert out["files_while_open"] is True  # the payload for late workers
    assert out["files_after"] == []  # removed when the pool is done
    assert out["unloadable"] == ["LookupError", True]
    assert out["after_unloadable"] == [1]


def test_executor_map_ships_its_function_once_per_call():
    import functools
    from concurrent.futures import process as cf_process

    from marinade.integrations import multiprocessing as mmp

    mmp._note_executor()  # (done when a marinade Process receives the call queue)
    k = 4
    f = lambda x: x * k  # noqa: E731
    per_call = functools.partial(cf_process._process_chunk, f)  # what executor.map submits

    def feed(item):  # what the call queue's feeder thread does with a _Deferred item
        return pickle.loads(pickle.dumps(mmp._Deferred(item)))

    first = feed(cf_process._CallItem(1, per_call, (((1,), (2,)),), {}))
    second = feed(cf_process._CallItem(2, per_call, (((3,),),), {}))
    assert first.fn is second.fn  # one payload for the call, loaded once
    assert [first.fn(*first.args), second.fn(*second.args)] == [[4, 8], [12]]
    # Arguments that are not plain data go through marinade, the function still shipped once.
    third = feed(cf_process._CallItem(3, per_call, (((lambda: 5,),),), {}))
    (chunk,) = third.args
    assert third.fn is first.fn and chunk[0][0]() == 5
    # A new call (a new partial) pickles the function again: it sees the new k.
    k = 10
    again = feed(cf_process._CallItem(4, functools.partial(cf_process._process_chunk, f),
                                      (((1,),),), {}))
    assert again.fn(*again.args) == [10]
    # submit(f): each call item pickles f itself (its own snapshot).
    direct = feed(cf_process._CallItem(5, f, (2,), {}))
    assert direct.fn(*direct.args) == 20


# A second module of the program, pickled by value too: it keeps a namespace
# of its own in the workers.
OTHER_MODULE = '''
conn = "other: default"


def setup(url):
    global conn
    conn = f"other: {url}"


def read_conn():
    return conn


def sees_main_globals():
    return sorted(name for name in ("THRESH", "state", "count") if name in globals())
'''

NAMESPACE_SCRIPT = r'''
import json, sys

if __name__ == "__main__":
    from concurrent.futures import ProcessPoolExecutor

    import marinade
    import other

    marinade.register_pickle_by_value(other)
    from other import read_conn, sees_main_globals, setup

    ctx = marinade.get_context(sys.argv[1])
    conn = None        # the initializer rebinds it (global conn)
    state = {}         # the initializer fills it in place
    THRESH = 1         # the parent rebinds it between calls; workers never touch it
    config = {"scale": 1}  # the parent changes it in place; workers never touch it
    count = 0          # the tasks rebind it: each worker keeps its own count

    def init(url):
        global conn
        conn = f"connected: {url}"
        state["model"] = url.upper()
        setup(url)

    def task(x):
        global count
        count += 1
        return [conn, state.get("model"), THRESH, config["scale"], count,
                read_conn(), sees_main_globals(), x]

    out = {}
    with ctx.Pool(1, initializer=init, initargs=("db",)) as pool:
        first = pool.map(task, [1, 2])
        THRESH = 2
        config["scale"] = 10
        out["pool"] = [first, pool.map(task, [3]), pool.apply_async(task, (4,)).get(60)]
    with ProcessPoolExecutor(1, mp_context=ctx, initializer=init, initargs=("ex",)) as ex:
        first = ex.submit(task, 1).result(60)
        THRESH = 3
        out["executor"] = [first, ex.submit(task, 2).result(60), list(ex.map(task, [3]))]
    print(json.dumps(out))
'''


@pytest.mark.parametrize("method", [m for m in ("spawn", "fork")
                                    if m in multiprocessing.get_all_start_methods()])
def test_initializer_and_tasks_share_module_globals(tmp_path, method):
    # One pool and one executor, each with one worker: its tasks run in order.
    (tmp_path / "script").mkdir()
    (tmp_path / "script" / "other.py").write_text(OTHER_MODULE)
    out = _run_json(tmp_path, NAMESPACE_SCRIPT, method)
    db = ["connected: db", "DB"]
    other = ["other: db", []]  # the other module: its own conn, none of __main__'s names
    assert out["pool"] == [
        [[*db, 1, 1, 1, *other, 1], [*db, 1, 1, 2, *other, 2]],
        # The parent's changes reach the worker; the initializer's globals and
        # the worker's count stay.
        [[*db, 2, 10, 3, *other, 3]],
        [*db, 2, 10, 4, *other, 4],
    ]
    ex, other = ["connected: ex", "EX"], ["other: ex", []]
    assert out["executor"] == [[*ex, 2, 10, 1, *other, 1], [*ex, 3, 10, 2, *other, 2],
                               [[*ex, 3, 10, 3, *other, 3]]]


def test_producer_namespace_merge_rules():
    from marinade import _rebuild

    merge = _rebuild._merge_producer_globals
    token = object()  # a key no real producer uses
    ns = _rebuild._producer_globals(token, "mod", "pkg")
    assert ns is _rebuild._producer_globals(token, "mod")
    assert (ns["__name__"], ns["__package__"]) == ("mod", "pkg")
    assert _rebuild._producer_globals(token, "other") is not ns
    ns["mine"] = "set here first"
    cache, config, items = {}, {"a": 1}, [1]
    merge(ns, {"conn": None, "cache": cache, "config": config, "items": items, "k": 1,
               "mine": "shipped", "gone": 0})
    assert ns["mine"] == "set here first"  # set here before any payload shipped it
    assert ns["conn"] is None and ns["cache"] is cache
    ns["conn"] = "connected"  # rebound here
    ns["cache"]["model"] = "m"  # changed in place here
    del ns["gone"]  # deleted here
    ns["items"][0] = 1  # the same items: unchanged
    new_config, new_items = {"a": 2}, [2]
    merge(ns, {"conn": None, "cache": {}, "config": new_config, "items": new_items, "k": 2,
               "mine": "shipped", "gone": 0, "new": "n"})
    assert ns["conn"] == "connected" and ns["cache"] == {"model": "m"} and "gone" not in ns
    assert ns["config"] is new_config and ns["items"] is new_items  # untouched here: replaced
    assert (ns["k"], ns["new"], ns["mine"]) == (2, "n", "set here first")
    # A name changed here stays this process's, whatever is shipped later.
    ns["k"] = 5
    merge(ns, {"k": 3})
    merge(ns, {"k": 4, "conn": "other"})
    assert (ns["k"], ns["conn"]) == (5, "connected")

    class Refuses:
        def __eq__(self, other):
            raise ValueError("no truth value")

    big, odd = list(range(2000)), [0]
    merge(ns, {"big": big, "odd": odd})
    big[0] = -1  # too large to copy when it arrived: only rebinding counts
    odd[0] = Refuses()  # an item that refuses comparison: changed
    merge(ns, {"big": [0], "odd": [0]})
    assert ns["big"] == [0] and ns["odd"] is odd


def test_context_pickler_ships_module_namespaces_plain_dumps_does_not():
    from marinade.integrations import multiprocessing as mmp

    # Functions of this module (a real one, found in sys.modules), by value.
    marinade.register_pickle_by_value(sys.modules[__name__])
    try:
        set_payload = mmp._dumps(_set_module_value)
        get_payload = mmp._dumps(_get_module_value)
        plain = marinade.dumps(_get_module_value)
    finally:
        marinade.unregister_pickle_by_value(sys.modules[__name__])
    assert b"_producer_globals" in get_payload and b"_producer_globals" not in plain
    setter, getter = pickle.loads(set_payload), pickle.loads(get_payload)
    assert setter.__globals__ is getter.__globals__  # two payloads, one namespace
    assert setter.__globals__ is not globals()
    setter("from a loaded function")
    assert getter() == "from a loaded function"
    assert pickle.loads(get_payload)() == "from a loaded function"  # a later payload too
    assert _module_value is None  # the real module is untouched
    loose = pickle.loads(plain)  # marinade.dumps: a globals dict of its own
    assert loose.__globals__ is not getter.__globals__ and loose() is None


_module_value = None


def _set_module_value(value):
    global _module_value
    _module_value = value


def _get_module_value():
    return _module_value


FRESH_STATE_SCRIPT = r'''
import json, sys

class Counter:
    def __init__(self):
        self.n = 0

    def __call__(self, x):
        self.n += 1
        return self.n

def counting():
    seen = []
    def count(x):
        seen.append(x)
        return len(seen)
    return count

if __name__ == "__main__":
    from concurrent.futures import ProcessPoolExecutor

    import marinade

    ctx = marinade.get_context(sys.argv[1])
    out = {}
    with ctx.Pool(1) as pool:
        out["apply"] = [pool.apply(Counter(), (0,)), pool.apply(Counter(), (0,))]
        out["closure"] = [pool.apply(counting(), (0,)), pool.apply(counting(), (0,))]
        out["map"] = [pool.map(Counter(), range(3), chunksize=3),
                      pool.map(Counter(), range(3), chunksize=3)]
        same = Counter()
        out["same_object"] = [pool.apply(same, (0,)), pool.apply(same, (0,))]
    with ProcessPoolExecutor(1, mp_context=ctx) as ex:
        out["executor"] = [list(ex.map(Counter(), range(3), chunksize=3)),
                           list(ex.map(Counter(), range(3), chunksize=3))]
        out["submit"] = [ex.submit(Counter(), 0).result(), ex.submit(Counter(), 0).result()]
    print(json.dumps(out))
'''


def test_each_call_starts_from_the_state_its_function_had(tmp_path):
    # Two calls with equal objects send equal bytes (payloads are
    # deterministic); the worker must not hand the second call the copy the
    # first one changed. The parent's object is pickled anew by each call,
    # as with the stdlib, so even the same object starts over.
    proc = run_script(tmp_path, FRESH_STATE_SCRIPT, args=("spawn",), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"apply": [1, 1], "closure": [1, 1], "map": [[1, 2, 3], [1, 2, 3]],
                   "same_object": [1, 1], "executor": [[1, 2, 3], [1, 2, 3]],
                   "submit": [1, 1]}
