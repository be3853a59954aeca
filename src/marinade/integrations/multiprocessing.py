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

Those classes are pickled by reference, so a child process (which imports
marinade, as it runs the same environment) keeps sending through marinade.
Loading stays plain ``pickle.loads``.

``patch_multiprocessing()`` is the explicit, global opt-in for code the user
does not control: it points multiprocessing's own references to
``ForkingPickler`` at marinade's (child processes started afterwards apply
the same patch when they start), and ``unpatch_multiprocessing()`` puts the
originals back.
"""

from __future__ import annotations

import copyreg
import io
import multiprocessing
import pickle
import sys
import threading
import weakref
from multiprocessing import connection as _connection
from multiprocessing import context as _context
from multiprocessing import pool as _pool
from multiprocessing import process as _process
from multiprocessing import queues as _queues
from multiprocessing import reduction as _reduction

from .. import _pickler
from .._pickler import Pickler as _MarinadePickler

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
        return (self.uses >= _REUSE_MAX_DUMPS or self.reducers is not _current_reducers()
                or self.extra != _StdForkingPickler._extra_reducers
                or self.copyreg != copyreg.dispatch_table)


_local = threading.local()
_raw_dump = pickle.Pickler.dump


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
        pickler.clear_memo()
        if pickler._globals_by_id or pickler._cells_seen or pickler._deferred_cells:
            _reset_state(pickler)
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
        return _loads, (_dumps(self.obj),)


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
    put = queue.put
    on_error = queue._on_queue_feeder_error

    def put_deferred(obj, block=True, timeout=None):
        put(_Deferred(obj), block, timeout)

    def on_feeder_error(e, obj):
        on_error(e, _unwrap(obj))

    queue.put = put_deferred
    queue._on_queue_feeder_error = on_feeder_error


class _Shipped:
    """A pool task's function, pickled once per map call."""

    __slots__ = ("payload",)

    def __init__(self, payload: bytes):
        self.payload = payload

    def __reduce__(self):
        return _reduce_shipped(self)


def _reduce_shipped(shipped: _Shipped):
    return _load_shipped, (shipped.payload,)


# Worker side: every task of a map call carries the same function bytes; the
# function is loaded once and shared by those tasks (as a module-level function
# and its globals are, with the stdlib). Bounded: small payloads, few entries.
_shipped_cache: dict[bytes, object] = {}
_SHIPPED_CACHE_ENTRIES = 64
_SHIPPED_CACHE_BYTES = 1 << 20


def _load_shipped(payload: bytes):
    func = _shipped_cache.get(payload)
    if func is None:
        func = _loads(payload)
        if len(payload) <= _SHIPPED_CACHE_BYTES:
            if len(_shipped_cache) >= _SHIPPED_CACHE_ENTRIES:
                _shipped_cache.clear()
            _shipped_cache[payload] = func
    return func


# Types that the C pickler writes by itself (marinade never sees them).
_PLAIN = frozenset({int, float, str, bytes, bool, type(None)})
_MAPPERS = (_pool.mapstar, _pool.starmapstar)


def _all_plain(items: tuple) -> bool:
    for item in items:
        if type(item) not in _PLAIN:
            return False
    return True


class _TaskSender:
    """``Pool._quick_put``: sends the pool's tasks to the workers.

    A task is ``(job, i, func, args, kwds)``; for ``map`` and friends ``func``
    is ``mapstar`` and the user's function rides in ``args`` with the chunk.
    The user's function is pickled once per job (one ``map`` call) instead of
    once per task, and the workers load it from those bytes. When the rest of
    the task is plain data (ints, strings...), a plain C pickler kept by this
    sender writes it: ``Pool.map`` with a lambda then costs about what the
    stdlib costs with a named function. Only the pool's task thread calls it.
    """

    __slots__ = ("_conn", "_entry", "_buf", "_plain")

    def __init__(self, conn):
        self._conn = conn
        # (job, function or a weak reference to it, _Shipped): the current job's
        # function. Weak where possible, so that a big closure and its payload
        # go away with the function instead of staying until the next map.
        self._entry = None
        self._new_plain_pickler()

    def _new_plain_pickler(self) -> None:
        self._buf = io.BytesIO()
        self._plain = pickle.Pickler(self._buf)
        # Its own table (nothing global): only _Shipped needs a reducer in a plain task.
        self._plain.dispatch_table = {_Shipped: _reduce_shipped}

    def _ship(self, job, func) -> _Shipped:
        entry = self._entry  # one read: a weakref callback may reset it at any time
        if entry is not None and entry[0] == job:
            held = entry[1]
            if held is func or (type(held) is weakref.ref and held() is func):
                return entry[2]
        shipped = _Shipped(_dumps(func))  # (a failure fails this task's job)
        try:
            held = weakref.ref(func, self._forget)
        except TypeError:  # not weakly referenceable: held until the next job
            held = func
        self._entry = (job, held, shipped)
        return shipped

    def _forget(self, ref) -> None:
        entry = self._entry
        if entry is not None and entry[1] is ref:
            self._entry = None

    def __call__(self, task) -> None:
        conn = self._conn
        if type(task) is tuple and len(task) == 5:
            job, i, func, args, kwds = task
            if func in _MAPPERS:
                ((user_func, chunk),) = args
                task = (job, i, func, ((self._ship(job, user_func), chunk),), kwds)
                if type(chunk) is tuple and _all_plain(chunk) and not kwds:
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
            else:  # apply_async, imap with chunksize=1
                task = (job, i, self._ship(job, func), args, kwds)
        conn.send(task)


class Pool(_pool.Pool):
    """``multiprocessing.pool.Pool`` for marinade contexts (``ctx.Pool()``).

    Its tasks and results are pickled with marinade; each map call pickles
    its function once.
    """

    def _setup_queues(self):
        super()._setup_queues()
        self._quick_put = _TaskSender(self._inqueue._writer)


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
