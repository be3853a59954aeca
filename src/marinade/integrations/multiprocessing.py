"""multiprocessing and concurrent.futures, pickling through marinade.

``get_context(method)`` returns a context like ``multiprocessing.get_context``'s
(same start methods, same API), whose processes, queues and pipes pickle with
marinade: lambdas, closures, ``__main__`` functions and classes and their
instances work as tasks, arguments and results. Pass it wherever a context is
accepted: ``ctx.Pool()``, ``ctx.Process``, ``ctx.Queue()``,
``ProcessPoolExecutor(mp_context=ctx)``,
``DataLoader(multiprocessing_context=ctx)``. Nothing global changes.

How: multiprocessing pickles in a few places that name its ``ForkingPickler``
directly (``Connection.send``, ``SimpleQueue.put``, the ``Queue`` feeder
thread, and the spawn/forkserver launch of a ``Process``). The context hands
out subclasses that send through marinade instead:

- ``Connection.send`` and ``SimpleQueue.put`` pickle with marinade (Pool's
  task and result channels are these);
- ``Queue.put`` wraps the item so that the feeder thread's pickling hands it
  to marinade (the feeder itself is a static method that cannot be replaced);
- a ``Process`` pickles its state (target, args...) with marinade when it is
  launched, and lends ``Queue.put``'s behaviour to the plain queues it is
  given (that is how ``ProcessPoolExecutor``'s internal call queue, which it
  builds itself, learns it).

- ``ctx.Manager()`` starts a manager whose server and proxies send through
  marinade (under a serializer name of its own in ``multiprocessing.managers``).

Those classes are pickled by reference, so a child process (which imports
marinade, as it runs the same environment) keeps sending through marinade.
Loading stays plain ``pickle.loads``.

Pools ship a map call's function once per worker rather than with every
task (``_TaskSender``), and ``ProcessPoolExecutor.map`` pickles its function
once per call (``_ship_map_call``).

The functions of one module of a sending process share one globals dict in
each receiving process, across payloads (``_ModulePlans``): a pool
initializer's globals are seen by the tasks, as with the stdlib.

``patch_multiprocessing()`` is the explicit, global opt-in for code the user
does not control: it points multiprocessing's own references to
``ForkingPickler`` at marinade's (child processes started afterwards apply
the same patch when they start), and ``unpatch_multiprocessing()`` puts the
originals back.
"""

from __future__ import annotations

import copyreg
import functools
import io
import itertools
import multiprocessing
import os
import pickle
import sys
import threading
import types
import weakref
from multiprocessing import connection as _connection
from multiprocessing import context as _context
from multiprocessing import pool as _pool
from multiprocessing import process as _process
from multiprocessing import queues as _queues
from multiprocessing import reduction as _reduction
from multiprocessing import util as _util

from .. import _lookup, _pickler, _rebuild
from .._pickler import Pickler as _MarinadePickler
from ..reduce._expr import Call as _Call

__all__ = [
    "ForkingPickler",
    "get_context",
    "is_patched",
    "patch_multiprocessing",
    "unpatch_multiprocessing",
]

_StdForkingPickler = _reduction.ForkingPickler
_loads = pickle.loads


class ForkingPickler(_MarinadePickler):
    """``multiprocessing.reduction.ForkingPickler`` with marinade's by-value pickling.

    Reducers registered with ``multiprocessing.reduction.register`` (sockets,
    connections, shared ctypes, torch tensors...) apply here too: both classes
    share one registry.
    """

    _extra_reducers = _StdForkingPickler._extra_reducers  # the same dict object
    _copyreg_dispatch_table = copyreg.dispatch_table

    def __init__(self, file, protocol: int | None = None, *, buffer_callback=None):
        table = self._copyreg_dispatch_table.copy()
        table.update(self._extra_reducers)
        # Set before marinade's __init__, which lets these entries win over its own.
        self.dispatch_table = table
        super().__init__(file, protocol, buffer_callback=buffer_callback)
        # Module globals travel as this process's namespaces (see _ModulePlans).
        self._reducers = _namespace_reducers(self._reducers)

    @classmethod
    def register(cls, type, reduce) -> None:  # noqa: A002 - multiprocessing's signature
        """Register a reduce function for a type (shared with multiprocessing's)."""
        cls._extra_reducers[type] = reduce

    @classmethod
    def dumps(cls, obj, protocol: int | None = None):
        if cls is ForkingPickler and protocol is None:
            return _dumps(obj)
        buf = io.BytesIO()
        cls(buf, protocol).dump(obj)
        return buf.getbuffer()

    loads = pickle.loads


# ---------------------------------------------------------------------------
# One module namespace per (sending process, module) where payloads load.
#
# A by-value function carries the globals it reads, and plain marinade gives
# each payload its own globals dict. A pool's initializer and its tasks come
# in separate payloads: ``global conn; conn = connect()`` in the initializer
# wrote a dict that no task read. With the stdlib, the worker imports the
# module once and every function of it shares its namespace. So the globals
# of a module (a real one: ``sys.modules[name].__dict__``) pickled here load
# as the one namespace that the receiving process keeps for (this process,
# that module): ``_rebuild._producer_globals``, filled by
# ``_rebuild._merge_producer_globals``, which keeps what the receiver changed
# itself. Only this pickler does it: ``marinade.dumps`` is untouched.
# ---------------------------------------------------------------------------


def _new_token() -> int:
    return int.from_bytes(os.urandom(8), "little")


_token = _new_token()  # this process's name in those keys


class _ProducerTarget(dict):
    """The rebuilt globals of a real module, while a dump plans them.

    A dict subclass, so that ``reducer_override`` sees it (the C pickler
    never shows it an exact dict): it pickles as the receiver's namespace for
    this process and module.
    """

    __slots__ = ()


def _reduce_producer_target(pickler, target: _ProducerTarget):
    package = target.get("__package__")
    args = (_token, target["__name__"])
    return _rebuild._producer_globals, args if package is None else (*args, package)


def _reduce_call(pickler, call: _Call):
    # A globals fill (``dict.update(target, values)``) merges into the namespace.
    args = call.args
    if call.func is _dict_update and type(args[0]) is _ProducerTarget and call.state is None:
        return _rebuild._merge_producer_globals, args
    return call.as_reduce()


_dict_update = dict.update
_derived_tables: list = [None, None]  # [marinade's table, ours], for the latest one


def _namespace_reducers(table: dict) -> dict:
    derived = _derived_tables
    if derived[0] is not table:
        ours = dict(table)
        ours[_Call] = _reduce_call
        ours[_ProducerTarget] = _reduce_producer_target
        derived[:] = table, ours
    return derived[1]


class _ModulePlans(dict):
    """A ForkingPickler's ``_globals_by_id`` (id of a globals dict -> its plan).

    marinade's function reducer stores the plan of each globals dict it meets
    here once (``_globals_by_id[key] = plan``): a real module's plan gets a
    ``_ProducerTarget`` before anything uses its target.
    """

    __slots__ = ()

    def __setitem__(self, key, plan) -> None:
        source = plan.source
        name = source.get("__name__")
        if type(name) is str and type(plan.target) is dict:
            module = sys.modules.get(name)
            if module is not None and getattr(module, "__dict__", None) is source:
                plan.target = _ProducerTarget(plan.target)
        dict.__setitem__(self, key, plan)


ForkingPickler._globals_plans = _ModulePlans  # (marinade's per-dump reset makes one)


def _by_value_module_names() -> list[str]:
    names = ["__main__", "__mp_main__"]
    if _lookup._by_value_modules:  # registered by value: they and their submodules
        names += [name for name in list(sys.modules)
                  if name not in names and _lookup.module_is_by_value(name)]
    return names


def _after_fork_in_child() -> None:
    """A fork child is a sender of its own; and it holds its parent's modules.

    The parent's payloads name its modules, which the child already has (a
    pool initializer that ran in the child set their globals): those
    namespaces are the child's modules themselves, whose current values
    count as shipped by the parent.
    """
    global _token
    parent, _token = _token, _new_token()
    seen = set()
    for name in _by_value_module_names():
        module = sys.modules.get(name)
        namespace = getattr(module, "__dict__", None)
        if type(namespace) is not dict or id(namespace) in seen:
            continue
        seen.add(id(namespace))
        # Payloads name a module by its __name__ (a spawn child's __main__
        # is "__mp_main__"), as _ModulePlans finds it.
        own_name = namespace.get("__name__")
        if type(own_name) is str and sys.modules.get(own_name) is module:
            _rebuild._adopt_producer_globals(parent, own_name, namespace)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# ---------------------------------------------------------------------------
# The hot path: one reusable pickler per thread.
#
# Pool.map with chunksize=1 pickles one small task per item; building a
# pickler for each costs more than pickling the task. A thread keeps one
# pickler and its buffer, cleared between dumps, and rebuilds it when
# anything it copied at creation changed (registered reducers, marinade's
# reducer table), now and then to bound the per-type cache marinade keeps in
# it, and after a large payload (not to keep a large buffer alive).
# ---------------------------------------------------------------------------

_REUSE_MAX_DUMPS = 4096
_REUSE_MAX_BYTES = 1 << 16
# Private helpers of the core pickler: the fast path uses them when present
# and falls back to a new pickler per dump otherwise.
_current_reducers = getattr(_pickler, "_current_reducers", None)
_fast_override = getattr(_pickler, "_fast_override", None)
_reset_state = getattr(_pickler, "_reset_state", None)
_CAN_REUSE = None not in (_current_reducers, _fast_override, _reset_state)
# Payloads of functions that need nothing but their code (no closure,
# globals or defaults) are cached by the core: a pool's apply_async or map
# call with such a function then skips pickling it again.
_simple_function_payload = getattr(_pickler, "_simple_function_payload", None)
_FunctionType = types.FunctionType


class _Reusable:
    """One thread's pickler, its buffer, and what it was built from."""

    __slots__ = ("pickler", "buffer", "busy", "uses", "extra", "copyreg", "reducers")

    def __init__(self):
        buf = io.BytesIO()
        pickler = ForkingPickler(buf)
        # Installed once instead of per dump (marinade's own dump() installs
        # it per call; this path calls the C dump directly). The cycle
        # pickler -> closure -> pickler is harmless for an object the thread
        # keeps anyway.
        pickler.reducer_override = _fast_override(pickler, pickler._reducers)
        self.pickler = pickler
        self.buffer = buf
        self.busy = False
        self.uses = 0
        self.extra = dict(_StdForkingPickler._extra_reducers)
        self.copyreg = dict(copyreg.dispatch_table)
        self.reducers = _current_reducers()

    def stale(self) -> bool:
        # (A closed buffer: at interpreter exit, the garbage collector may
        # finalize it before a Pool.__del__ sends its last message.)
        return (self.uses >= _REUSE_MAX_DUMPS or self.buffer.closed
                or self.reducers is not _current_reducers()
                or self.extra != _StdForkingPickler._extra_reducers
                or self.copyreg != copyreg.dispatch_table)


_local = threading.local()
_raw_dump = pickle.Pickler.dump
_raw_clear_memo = pickle.Pickler.clear_memo  # (marinade's also rebuilds its per-dump state)


def _fresh_dumps(obj) -> bytes:
    buf = io.BytesIO()
    ForkingPickler(buf).dump(obj)
    return buf.getvalue()


def _dumps(obj) -> bytes:
    """Pickle ``obj`` for another process: marinade, plus multiprocessing's reducers."""
    reusable = getattr(_local, "reusable", None)
    if reusable is None or reusable.stale():
        if not _CAN_REUSE:
            return _fresh_dumps(obj)
        reusable = _local.reusable = _Reusable()
    elif reusable.busy:  # re-entered from a __reduce__: a pickler of its own
        return _fresh_dumps(obj)
    pickler = reusable.pickler
    buf = reusable.buffer
    reusable.busy = True
    reusable.uses += 1
    try:
        _raw_dump(pickler, obj)
        data = buf.getvalue()
    except Exception:
        _local.reusable = None  # whatever state a failed dump left behind
        # Again with a pickler of its own: marinade's dump() explains the
        # failure (the path to the object that failed).
        return _fresh_dumps(obj)
    except BaseException:
        _local.reusable = None
        raise
    finally:
        reusable.busy = False
        # Drop references to what was pickled (the memo and marinade's
        # per-dump state hold them) as soon as the dump is done.
        _raw_clear_memo(pickler)
        if pickler._globals_by_id or pickler._cells_seen or pickler._deferred_cells:
            _reset_state(pickler)  # only when the dump used it
        buf.seek(0)
        buf.truncate()
    if len(data) > _REUSE_MAX_BYTES:
        _local.reusable = None  # not to keep a large buffer alive
    return data


class _Deferred:
    """An item on a ``Queue``: pickled by marinade when the feeder thread sends it.

    The feeder thread pickles with multiprocessing's own ForkingPickler; this
    reduces to the marinade payload of the item, which plain ``pickle.loads``
    turns back into the item on the other side.
    """

    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __reduce__(self):
        obj = self.obj
        if type(obj) is _call_item_type:
            item = _ship_map_call(obj)
            if item is not obj and not item.kwargs and _plain_chunk(item.args):
                # Nothing left for marinade: the feeder's own pickler writes
                # the call item, and the worker loads it in one pass.
                return _call_item_type, (item.work_id, item.fn, item.args, item.kwargs)
            obj = item
        return _loads, (_dumps(obj),)


# ProcessPoolExecutor.map submits ``partial(_process_chunk, fn)`` once per
# chunk, the same partial object for one map call: its payload is made once
# per call (as Pool.map's function is) and the workers load it once. Other
# submitted callables are pickled with each call item: between two submit()
# calls the user may change what the function sees, and each call keeps its
# own snapshot. Found in sys.modules on first use, not imported here.
_call_item_type: type | None = None
_process_chunk = None
_functools_partial = functools.partial
_map_payloads: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_executor_jobs = itertools.count(-1, -1)


def _note_executor() -> None:
    """Learn concurrent.futures' call item type once that module is loaded."""
    global _call_item_type, _process_chunk
    module = sys.modules.get("concurrent.futures.process")
    if module is not None and _call_item_type is None:
        _process_chunk = module._process_chunk
        _call_item_type = module._CallItem


def _plain_chunk(args) -> bool:
    # executor.map's arguments: ``(chunk,)``, a chunk being a tuple of argument tuples.
    if type(args) is not tuple or len(args) != 1 or type(args[0]) is not tuple:
        return False
    for call_args in args[0]:
        if type(call_args) is not tuple or not _all_plain(call_args):
            return False
    return True


def _ship_map_call(item):
    fn = item.fn
    if type(fn) is not _functools_partial or fn.func is not _process_chunk:
        return item
    shipped = _map_payloads.get(fn)
    if shipped is None:
        # A job of its own: the worker loads the function once for this call's
        # chunks, and again for the next call (negative: apart from pool jobs).
        shipped = _map_payloads[fn] = _Shipped(_dumps(fn), next(_executor_jobs))
    return _call_item_type(item.work_id, shipped, item.args, item.kwargs)


def _unwrap(obj):
    return obj.obj if type(obj) is _Deferred else obj


# ---------------------------------------------------------------------------
# Connections, queues, processes.
# ---------------------------------------------------------------------------


class _ConnectionMixin:
    def send(self, obj) -> None:
        """Send a picklable object (pickled with marinade)."""
        self._check_closed()
        self._check_writable()
        self._send_bytes(_dumps(obj))

    def __reduce__(self):
        # multiprocessing's reducer for the base class (it duplicates the
        # handle for the receiving process), then our class again there.
        rebuild, args = _StdForkingPickler._extra_reducers[_BASE_OF[type(self)]](self)
        return _rebuild_connection, (rebuild, *args)


class Connection(_ConnectionMixin, _connection.Connection):
    """``multiprocessing.connection.Connection`` whose ``send`` pickles with marinade."""


_CONNECTION_CLASSES: dict[type, type] = {_connection.Connection: Connection}
if sys.platform == "win32":  # pragma: no cover - not exercised on this platform

    class PipeConnection(_ConnectionMixin, _connection.PipeConnection):
        """``multiprocessing.connection.PipeConnection`` sending through marinade."""

    _CONNECTION_CLASSES[_connection.PipeConnection] = PipeConnection

_BASE_OF = {ours: base for base, ours in _CONNECTION_CLASSES.items()}


def _adopt_connection(conn):
    ours = _CONNECTION_CLASSES.get(type(conn))
    if ours is not None:
        conn.__class__ = ours  # same layout: only the methods change
    return conn


def _rebuild_connection(rebuild, *args):
    return _adopt_connection(rebuild(*args))


class _QueueMixin:
    def put(self, obj, block: bool = True, timeout: float | None = None) -> None:
        super().put(_Deferred(obj), block, timeout)

    def _on_queue_feeder_error(self, e, obj):
        super()._on_queue_feeder_error(e, _unwrap(obj))


class Queue(_QueueMixin, _queues.Queue):
    """``multiprocessing.Queue`` whose items are pickled with marinade."""


class JoinableQueue(_QueueMixin, _queues.JoinableQueue):
    """``multiprocessing.JoinableQueue`` whose items are pickled with marinade."""


class SimpleQueue(_queues.SimpleQueue):
    """``multiprocessing.SimpleQueue`` whose items are pickled with marinade."""

    def __init__(self, *, ctx):
        super().__init__(ctx=ctx)
        # Pool sends its tasks with ``inqueue._writer.send`` directly.
        _adopt_connection(self._reader)
        _adopt_connection(self._writer)

    def put(self, obj) -> None:
        data = _dumps(obj)
        if self._wlock is None:  # message-oriented Windows pipes: writes are atomic
            self._writer.send_bytes(data)
        else:
            with self._wlock:
                self._writer.send_bytes(data)


def _adopt_queue(queue) -> None:
    """Make a plain multiprocessing ``Queue`` (made by code that got our
    context, like ProcessPoolExecutor's call queue) pickle its items with
    marinade: instance attributes only, the class is untouched."""
    if isinstance(queue, _QueueMixin) or "put" in vars(queue):
        return
    _note_executor()
    put = queue.put
    on_error = queue._on_queue_feeder_error

    def put_deferred(obj, block=True, timeout=None):
        put(_Deferred(obj), block, timeout)

    def on_feeder_error(e, obj):
        on_error(e, _unwrap(obj))

    queue.put = put_deferred
    queue._on_queue_feeder_error = on_feeder_error


class _Shipped:
    """A pool task's function as its payload, pickled once per job (map call).

    ``job`` names it in the worker's cache, for the job's later tasks that
    carry only the name (``_Keyed``); None outside pools.
    """

    __slots__ = ("payload", "job")

    def __init__(self, payload: bytes, job: int | None = None):
        self.payload = payload
        self.job = job

    def __reduce__(self):
        return _reduce_shipped(self)


def _reduce_shipped(shipped: _Shipped):
    if shipped.job is None:
        return _load_shipped, (shipped.payload,)
    return _load_shipped, (shipped.payload, shipped.job)


class _Keyed:
    """A pool task's function named by its job: its payload went ahead."""

    __slots__ = ("job",)

    def __init__(self, job: int):
        self.job = job

    def __reduce__(self):
        return _reduce_keyed(self)


def _reduce_keyed(keyed: _Keyed):
    return _load_keyed, (keyed.job,)


class _Unloadable:
    """Stands for a task's function that failed to load in the worker: calling
    it raises that error, so the task fails with it (a worker whose task
    cannot be loaded would die instead, and the pool wait for its result)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException):
        self.error = error

    def __call__(self, *args, **kwargs):
        raise self.error


# Worker side. Every task of a map call carries or names the same function;
# the function is loaded once and shared by those tasks (as a module-level
# function and its globals are, with the stdlib). Never across calls, though
# their payloads may be the same bytes: each call starts from the state its
# function had when it was made (a new Counter() object, a new closure).
_job_functions: dict[int, object] = {}
_JOB_FUNCTIONS_MAX = 256
# Where a pool's parent writes the payloads of the jobs whose tasks name them
# (set in each worker by _WorkerInit): a worker that did not receive a job's
# payload with one of its first tasks reads it there, once.
_payload_prefix: str | None = None


def _load_shipped(payload: bytes, job: int | None = None):
    if job is not None:
        func = _job_functions.get(job)
        if func is not None:
            return func
    try:
        func = _loads(payload)
    except Exception as exc:
        return _Unloadable(exc)
    if job is not None:
        if len(_job_functions) >= _JOB_FUNCTIONS_MAX:
            for old in list(_job_functions)[:_JOB_FUNCTIONS_MAX // 2]:  # oldest first
                del _job_functions[old]
        _job_functions[job] = func
    return func


def _load_keyed(job: int):
    func = _job_functions.get(job)
    if func is not None:
        return func
    try:
        if _payload_prefix is None:
            raise OSError("not a worker of a marinade pool")
        with open(f"{_payload_prefix}{job}", "rb") as file:
            payload = file.read()
    except OSError as exc:
        return _Unloadable(RuntimeError(
            f"marinade: the function of pool job {job} cannot be found in this worker ({exc})"))
    return _load_shipped(payload, job)


def _map_job(job: int, chunk):
    """``mapstar`` for a task that names its job's function."""
    return list(map(_load_keyed(job), chunk))


def _starmap_job(job: int, chunk):
    """``starmapstar`` for a task that names its job's function."""
    return list(itertools.starmap(_load_keyed(job), chunk))


class _WorkerInit:
    """A marinade pool's initializer: notes where job payloads are written,
    then runs the user's initializer."""

    __slots__ = ("prefix", "initializer")

    def __init__(self, prefix: str | None, initializer):
        self.prefix = prefix
        self.initializer = initializer

    def __call__(self, *initargs):
        global _payload_prefix
        _payload_prefix = self.prefix
        # A fork child inherits the cache of a parent that was itself a
        # worker, whose job numbers may be this pool's too.
        _job_functions.clear()
        if self.initializer is not None:
            self.initializer(*initargs)


# Types that the C pickler writes by itself (marinade never sees them).
_PLAIN = frozenset({int, float, str, bytes, bool, type(None)})
_MAPPERS = (_pool.mapstar, _pool.starmapstar)
_KEYED_MAPPERS = {_pool.mapstar: _map_job, _pool.starmapstar: _starmap_job}


def _all_plain(items: tuple) -> bool:
    for item in items:
        if type(item) not in _PLAIN:
            return False
    return True


def _private_opener(path, flags):
    return os.open(path, flags, 0o600)


class _JobEntry:
    __slots__ = ("job", "held", "shipped", "keyed", "inline_left")

    def __init__(self, job, held, shipped, inline_left):
        self.job = job
        self.held = held  # the function, or a weak reference to it
        self.shipped = shipped
        self.keyed = None
        self.inline_left = inline_left


class _TaskSender:
    """``Pool._quick_put``: sends the pool's tasks to the workers.

    A task is ``(job, i, func, args, kwds)``; for ``map`` and friends ``func``
    is ``mapstar`` and the user's function rides in ``args`` with the chunk.
    The user's function is pickled once per job (one ``map`` call) instead of
    once per task. Its payload travels with the job's first tasks (as many
    as the pool has workers); then it is written to a file in
    multiprocessing's private temporary folder and the later tasks carry
    only the job number: workers load each job's function once, from a task
    or, if none of the first tasks reached them, from the file. So a closure
    over a large object is not sent with every task. When the rest of a task
    is plain data (ints, strings...), a plain C pickler kept by this sender
    writes it. Only the pool's task thread calls it.
    """

    __slots__ = ("_conn", "_entry", "_buf", "_plain", "_cache", "_inline", "_prefix",
                 "_files")

    def __init__(self, conn):
        self._conn = conn
        # The current job's _JobEntry. The function is held weakly where
        # possible, so that a big closure and its payload go away with it
        # instead of staying until the next map.
        self._entry = None
        self._cache = None  # the pool's job cache (set by attach)
        self._inline = 1
        self._prefix = None  # None: every task carries its payload
        self._files: dict[int, str] = {}
        self._new_plain_pickler()

    def attach(self, cache, processes: int, prefix: str | None) -> None:
        """Called by Pool.__init__ once the pool exists."""
        self._cache = cache
        self._inline = max(2, processes)
        self._prefix = prefix

    def _new_plain_pickler(self) -> None:
        self._buf = io.BytesIO()
        self._plain = pickle.Pickler(self._buf)
        # Its own table (nothing global): only these need a reducer in a plain task.
        self._plain.dispatch_table = {_Shipped: _reduce_shipped, _Keyed: _reduce_keyed}

    def _ship(self, job, func):
        entry = self._entry  # one read: a weakref callback may reset it at any time
        if entry is not None and entry.job == job:
            held = entry.held
            if not (held is func or (type(held) is weakref.ref and held() is func)):
                entry = None
        else:
            entry = None
        if entry is None:
            self._forget_files()
            payload = None
            if type(func) is _FunctionType and _simple_function_payload is not None:
                payload = _simple_function_payload(func, _pickler.DEFAULT_PROTOCOL)
            if payload is None:
                payload = _dumps(func)  # (a failure fails this task's job)
            shipped = _Shipped(payload, job)
            try:
                held = weakref.ref(func, self._forget)
            except TypeError:  # not weakly referenceable: held until the next job
                held = func
            entry = self._entry = _JobEntry(job, held, shipped, self._inline)
        if entry.keyed is not None:
            return entry.keyed
        if entry.inline_left > 0 or self._prefix is None:
            entry.inline_left -= 1
            return entry.shipped
        path = f"{self._prefix}{job}"
        try:
            with open(path, "xb", opener=_private_opener) as file:
                file.write(entry.shipped.payload)
        except OSError:
            try:
                os.unlink(path)  # (a partial file: no worker may read it)
            except OSError:
                pass
            self._prefix = None  # no usable folder: payloads travel with every task
            return entry.shipped
        self._files[job] = path
        entry.keyed = _Keyed(job)
        entry.shipped = None  # (the payload may be large: the file has it now)
        return entry.keyed

    def _forget(self, ref) -> None:
        entry = self._entry
        if entry is not None and entry.held is ref:
            self._entry = None

    def _forget_files(self, everything: bool = False) -> None:
        # A job's file is needed while its tasks may still be loaded: until
        # the job has left the pool's cache (all its results are in).
        cache = self._cache
        for job in list(self._files):
            if everything or cache is None or job not in cache:
                try:
                    os.unlink(self._files.pop(job))
                except OSError:
                    pass

    def __call__(self, task) -> None:
        conn = self._conn
        if type(task) is tuple and len(task) == 5:
            job, i, func, args, kwds = task
            if func in _MAPPERS:
                ((user_func, chunk),) = args
                shipped = self._ship(job, user_func)
                if type(shipped) is _Keyed:  # (fewer bytes than mapstar and the name)
                    task = (job, i, _KEYED_MAPPERS[func], (job, chunk), kwds)
                else:
                    task = (job, i, func, ((shipped, chunk),), kwds)
                plain = type(chunk) is tuple and _all_plain(chunk) and not kwds
            else:  # apply_async, imap with chunksize=1
                task = (job, i, self._ship(job, func), args, kwds)
                plain = type(args) is tuple and _all_plain(args) and not kwds
            if plain:
                buf = self._buf
                try:
                    self._plain.dump(task)
                    data = buf.getvalue()
                finally:
                    self._plain.clear_memo()  # each task is a pickle of its own
                    buf.seek(0)
                    buf.truncate()
                if len(data) > _REUSE_MAX_BYTES:
                    self._new_plain_pickler()  # not to keep a large buffer alive
                conn._check_closed()
                conn._send_bytes(data)
                return
        conn.send(task)


class Pool(_pool.Pool):
    """``multiprocessing.pool.Pool`` for marinade contexts (``ctx.Pool()``).

    Its tasks and results are pickled with marinade; each map call pickles
    its function once and sends it to each worker once (see _TaskSender).
    Its worker-handler thread no longer busy-waits on pending results.
    """

    def __init__(self, processes=None, initializer=None, initargs=(), maxtasksperchild=None,
                 context=None):
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        try:
            prefix = os.path.join(_util.get_temp_dir(), f"marinade-{os.getpid()}-")
        except OSError:
            prefix = None
        super().__init__(processes, _WorkerInit(prefix, initializer), initargs,
                         maxtasksperchild, context)
        self._quick_put.attach(self._cache, self._processes, prefix)

    def _setup_queues(self):
        super()._setup_queues()
        self._quick_put = _TaskSender(self._inqueue._writer)

    def join(self):
        super().join()
        self._quick_put._forget_files(everything=True)

    def terminate(self):
        super().terminate()
        self._quick_put._forget_files(everything=True)

    def _get_sentinels(self):
        # The stdlib's worker-handler thread also waits on the result pipe,
        # which is readable whenever a result is pending: it then loops
        # (polling every worker, rebuilding its wait list) until the result
        # thread has read it, once or more per task, fighting the two
        # threads that move tasks and results for the GIL. It only needs to
        # wake for a worker's exit (the workers' sentinels, which it adds
        # itself) and for state changes (the change notifier, which close(),
        # terminate() and the emptied job cache write to).
        return [self._change_notifier._reader]


def _rebuild_process(data):
    cls, state = _loads(data)
    process = cls.__new__(cls)
    process.__dict__.update(state)
    return process


def _rebuild_process_patched(data):
    # A child of a patched parent: patch before the process runs anything.
    patch_multiprocessing()
    return _rebuild_process(data)


class _ProcessMixin:
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for value in (*self._args, *self._kwargs.values()):
            if isinstance(value, _queues.Queue):
                _adopt_queue(value)

    def __reduce__(self):
        # The launch of a spawn/forkserver child pickles the Process with
        # multiprocessing's pickler: hand it a marinade payload of our state
        # (the class too: a user's subclass may live in __main__).
        return _rebuild_process, (_dumps((type(self), self.__dict__)),)


class _ContextMixin:
    """What the marinade contexts change in multiprocessing's."""

    def get_context(self, method: str | None = None):
        if method is None:
            return self
        return get_context(method)

    @property
    def reducer(self):
        """multiprocessing.reduction, with marinade's ForkingPickler."""
        return _REDUCTION

    @reducer.setter
    def reducer(self, reduction):
        # The stdlib setter replaces the reduction module of every context.
        raise ValueError("a marinade context's reducer cannot be replaced")

    def Queue(self, maxsize: int = 0):
        """A queue whose items are pickled with marinade."""
        return Queue(maxsize, ctx=self)

    def JoinableQueue(self, maxsize: int = 0):
        """A joinable queue whose items are pickled with marinade."""
        return JoinableQueue(maxsize, ctx=self)

    def SimpleQueue(self):
        """A simple queue whose items are pickled with marinade."""
        return SimpleQueue(ctx=self)

    def Pool(self, processes=None, initializer=None, initargs=(), maxtasksperchild=None):
        """A process pool whose tasks and results are pickled with marinade."""
        return Pool(processes, initializer, initargs, maxtasksperchild, context=self)

    def Pipe(self, duplex: bool = True):
        """Two connections whose ``send`` pickles with marinade."""
        first, second = _connection.Pipe(duplex)
        return _adopt_connection(first), _adopt_connection(second)

    def Manager(self):
        """A started ``SyncManager`` whose server and proxies pickle with marinade.

        Lambdas, closures and ``__main__`` instances can be stored in its
        lists, dicts and queues, and passed to and returned from its methods.
        """
        from multiprocessing.managers import SyncManager

        manager = SyncManager(ctx=self, serializer=_manager_serializer())
        manager.start()
        return manager

    def __repr__(self) -> str:
        return f"<marinade {self._name} context>"


class _Reduction:
    """``ctx.reducer`` of a marinade context: multiprocessing.reduction with
    marinade's ForkingPickler (other names come from the stdlib module)."""

    ForkingPickler = ForkingPickler
    register = ForkingPickler.register

    @staticmethod
    def dump(obj, file, protocol=None) -> None:
        ForkingPickler(file, protocol).dump(obj)

    def __getattr__(self, name):
        return getattr(_reduction, name)


_REDUCTION = _Reduction()


# Managers: a manager, its server process and its proxies pick their
# connection classes by serializer name from ``managers.listener_client``.
# marinade adds one name there (nothing existing changes); the name pickles
# as a call that adds it again, so any process that loads a proxy or a
# manager's state (its server, pool workers...) knows it.


class _SerializerName(str):
    __slots__ = ()

    def __reduce__(self):
        return _manager_serializer, ()


_MANAGER_SERIALIZER = _SerializerName("marinade")


class _ManagerListener(_connection.Listener):
    """A manager server's listener: its connections send with marinade."""

    def accept(self):
        return _adopt_connection(super().accept())


def _manager_client(address, family=None, authkey=None):
    return _adopt_connection(_connection.Client(address, family, authkey))


def _manager_serializer() -> str:
    from multiprocessing import managers

    managers.listener_client.setdefault(_MANAGER_SERIALIZER,
                                        (_ManagerListener, _manager_client))
    return _MANAGER_SERIALIZER

_CONTEXT_CLASSES: dict[str, type] = {}


def _define(method: str, stdlib_context: str, stdlib_process: str) -> None:
    base_context = getattr(_context, stdlib_context, None)
    base_process = getattr(_context, stdlib_process, None)
    if base_context is None or base_process is None:
        return  # not on this platform (fork and forkserver on Windows)
    process = type(stdlib_process, (_ProcessMixin, base_process), {
        "__module__": __name__, "__qualname__": stdlib_process,
        "__doc__": f"multiprocessing's {stdlib_process}, pickled with marinade.",
    })
    context = type(stdlib_context, (_ContextMixin, base_context), {
        "__module__": __name__, "__qualname__": stdlib_context, "Process": process,
        "__doc__": f"multiprocessing's {method} context, pickling with marinade.",
    })
    globals()[stdlib_process] = process
    globals()[stdlib_context] = context
    _CONTEXT_CLASSES[method] = context


_define("fork", "ForkContext", "ForkProcess")
_define("spawn", "SpawnContext", "SpawnProcess")
_define("forkserver", "ForkServerContext", "ForkServerProcess")

_contexts: dict[str, object] = {}
_contexts_lock = threading.Lock()


def get_context(method: str | None = None) -> multiprocessing.context.BaseContext:
    """A multiprocessing context whose pickling goes through marinade.

    ``method`` is a start method (``"spawn"``, ``"forkserver"``, ``"fork"``)
    or None for the default one (``multiprocessing.get_start_method()``). The
    context has the API of ``multiprocessing.get_context(method)``; use it
    wherever a context is accepted.
    """
    if method is None:
        method = multiprocessing.get_start_method(allow_none=True)
        if method is None:  # not chosen yet: the platform's default, without choosing it
            method = multiprocessing.get_all_start_methods()[0]
    ctx = _contexts.get(method)
    if ctx is None:
        cls = _CONTEXT_CLASSES.get(method)
        if cls is None:
            raise ValueError(f"cannot find context for {method!r}")
        ctx = cls()
        ctx._check_available()
        with _contexts_lock:
            ctx = _contexts.setdefault(method, ctx)
    return ctx


# ---------------------------------------------------------------------------
# The global opt-in.
# ---------------------------------------------------------------------------

_patch_lock = threading.RLock()
_saved: list[tuple[object, str, object]] | None = None


def _patched_dump(obj, file, protocol=None) -> None:
    """``multiprocessing.reduction.dump`` while patched.

    Spawn and forkserver launches pickle the Process object with it: the
    child then patches itself before it runs anything.
    """
    if isinstance(obj, _process.BaseProcess) and not isinstance(obj, _ProcessMixin):
        obj = _PatchingProcess(obj)
    ForkingPickler(file, protocol).dump(obj)


class _PatchingProcess:
    __slots__ = ("process",)

    def __init__(self, process):
        self.process = process

    def __reduce__(self):
        process = self.process
        return _rebuild_process_patched, (_dumps((type(process), process.__dict__)),)


def patch_multiprocessing() -> None:
    """Make multiprocessing itself pickle with marinade, process-wide.

    For code you don't control (a library that builds its own ``Pool`` or
    ``ProcessPoolExecutor``). Prefer ``get_context()`` for your own code:
    it changes nothing global. After this call, multiprocessing's
    ``ForkingPickler`` references (in ``multiprocessing.reduction``,
    ``.connection`` and ``.queues``) name marinade's, and child processes
    started with spawn or forkserver patch themselves when they start (fork
    children inherit the patch). Calling it again does nothing;
    ``unpatch_multiprocessing()`` restores the originals.
    """
    global _saved
    with _patch_lock:
        if _saved is not None:
            return
        targets = (
            (_reduction, "ForkingPickler", ForkingPickler),
            (_reduction, "dump", _patched_dump),
            (_connection, "_ForkingPickler", ForkingPickler),
            (_queues, "_ForkingPickler", ForkingPickler),
        )
        saved = []
        for module, name, value in targets:
            saved.append((module, name, getattr(module, name)))
            setattr(module, name, value)
        _saved = saved


def unpatch_multiprocessing() -> None:
    """Undo ``patch_multiprocessing()`` exactly (a no-op when not patched).

    Processes already started keep their own state.
    """
    global _saved
    with _patch_lock:
        if _saved is None:
            return
        for module, name, original in reversed(_saved):
            setattr(module, name, original)
        _saved = None


def is_patched() -> bool:
    """True between ``patch_multiprocessing()`` and ``unpatch_multiprocessing()``."""
    return _saved is not None
