"""The Pickler: stdlib's C pickler plus by-value decisions in reducer_override.

Plain data (dicts, lists, str, int...) never reaches Python code: the C
pickler handles it before calling ``reducer_override``. Everything else goes
through one dict lookup on its type; instances of ordinary classes fall
through to pickle's own ``__reduce_ex__`` handling.
"""

from __future__ import annotations

import builtins
import copyreg
import io
import pickle
import sys
import types
from collections import ChainMap
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

from . import _diagnose
from . import standalone as _standalone
from ._compat import HEAPTYPE as _HEAPTYPE
from ._errors import PicklingError, pickling_error
from ._lookup import lookup_by_reference
from .frames import reducers as _frame_reducers
from .reduce import stdlib
from .reduce import typing as typing_reducers
from .reduce._expr import Call
from .reduce.classes import reduce_class
from .reduce.code import _info_cache, global_names, reduce_code
from .reduce.exceptions import reduce_exception, reduce_traceback
from .reduce.function import reduce_bound_method, reduce_cell, reduce_function
from .reduce.instances import subclass_state_reducer
from .reduce.methods import BatchGlobals, MethodBatch, reduce_batch_globals, reduce_method_batch

DEFAULT_PROTOCOL = pickle.HIGHEST_PROTOCOL


def _reduce_function_or_ref(pickler, func):
    # A "<" in the qualname (<lambda>, <locals>) rules out a reference: skip the lookup.
    if "<" not in func.__qualname__ and lookup_by_reference(func) is not None:
        return NotImplemented  # pickle stores module + qualname
    return _reduce_by_value(pickler, func)


def _reduce_by_value(pickler, func):
    """``reduce_function``, unless ``func`` is the closure a stdlib decorator made.

    ``singledispatch`` and ``contextmanager`` return closures over their own
    machinery; re-applying the decorator on load ships only the user's
    function (444 bytes instead of 5,830 for a small singledispatch).
    """
    reduced = stdlib.reduce_decorated(pickler, func)
    return reduce_function(pickler, func) if reduced is NotImplemented else reduced


def _reduce_code(pickler, code):
    return reduce_code(code)


def _reduce_call(pickler, call):
    return call.as_reduce()


def _reduce_plain_type(pickler, cls):
    # Classes whose metaclass is ``type``: a table entry spares the lookup
    # miss (a KeyError) that other classes take in ``_fast_override``.
    return pickler._reduce_type(cls)


_TYPES_ALIASES = {
    value: name
    for name, value in vars(types).items()
    if isinstance(value, type) and value.__module__ == "builtins"
    and getattr(builtins, value.__qualname__, None) is not value
}
# Builtin types that neither builtins nor types names: type(sample).
_UNNAMED_TYPES = stdlib.unnamed_builtin_types(_TYPES_ALIASES)

_BASE_REDUCERS = {
    types.FunctionType: _reduce_function_or_ref,
    types.CodeType: _reduce_code,
    types.CellType: reduce_cell,
    types.MethodType: reduce_bound_method,
    Call: _reduce_call,
    type: _reduce_plain_type,
    MethodBatch: reduce_method_batch,
    BatchGlobals: reduce_batch_globals,
    types.TracebackType: reduce_traceback,
    **stdlib.reducers(),
    **typing_reducers.reducers(),
    **_frame_reducers(),
}
_late_cache: dict = {}
# Modules whose sentinels get late reducers. Keying the cache on these module
# objects is much cheaper than asking stdlib for its key on every Pickler.
_LATE_MODULES: tuple[str, ...] = tuple(getattr(stdlib, "_SINGLETONS", ()))


def _current_reducers() -> dict:
    if len(_LATE_MODULES) == 1:  # the usual case: one dict lookup per Pickler
        late = sys.modules.get(_LATE_MODULES[0])
    elif _LATE_MODULES:
        late = tuple(map(sys.modules.get, _LATE_MODULES))
    else:
        late = stdlib.late_reducers_key()
    table = _late_cache.get(late)
    if table is None:
        table = dict(_BASE_REDUCERS)
        table.update(stdlib.late_reducers())
        _late_cache[late] = table
    return table


def _reducer_for_new_type(kind: type, user_table):
    """The reducer for a type missing from the table, or None (pickle's own).

    Asked once per type per dump: stdlib types of modules marinade does not
    import, exceptions (whose chain plain pickle drops), and subclasses whose
    base's reduce forgets their attributes (see reduce/instances.py), unless
    a dispatch table has its own reducer for the class (tblib's
    ``pickling_support.install()`` registers one per exception class in
    copyreg's).
    """
    reduce = stdlib.reducer_by_name(kind)
    if reduce is not None:
        return reduce
    if kind in copyreg.dispatch_table or (user_table is not None and kind in user_table):
        return None
    if issubclass(kind, BaseException):
        return reduce_exception
    return subclass_state_reducer(kind)


def _check_protocol(protocol: int | None) -> int:
    if protocol is None:
        return DEFAULT_PROTOCOL
    if protocol < 0:
        return pickle.HIGHEST_PROTOCOL  # pickle's convention for "the highest"
    if protocol < 2:
        raise ValueError(f"marinade needs pickle protocol 2 or higher, got {protocol}")
    return protocol


def _fast_override(pickler: Pickler, shared: dict):
    """A ``reducer_override`` for one dump, installed on the pickler by ``dump``.

    Same decisions as ``Pickler.reducer_override``, but the C pickler calls it
    for every instance of every class, so it is a closure (no attribute
    lookups) and remembers, for this dump, the types that need nothing from
    us: a list of 100,000 instances costs one dict lookup per instance.
    """
    table = shared
    own = None
    decorated = stdlib.decorated_table()

    def reducer_override(obj):
        nonlocal table, own
        try:
            reducer = table[type(obj)]
        except KeyError:
            if isinstance(obj, type):
                return pickler._reduce_type(obj)
            if own is None:
                own = table = dict(shared)
            late = _reducer_for_new_type(type(obj), pickler._seen_dispatch_table)
            if late is not None:
                own[type(obj)] = late
                return late(pickler, obj)
            own[type(obj)] = False  # an ordinary instance: pickle's own __reduce_ex__
            return NotImplemented
        if reducer is False:
            return NotImplemented
        if reducer is _reduce_function_or_ref:  # the hottest reducer, inlined
            if "<" not in obj.__qualname__ and lookup_by_reference(obj) is not None:
                return NotImplemented
            special = decorated.get(id(obj.__code__))  # _reduce_by_value, inlined
            if special is not None:
                reduced = special(pickler, obj)
                if reduced is not NotImplemented:
                    return reduced
            return reduce_function(pickler, obj)
        return reducer(pickler, obj)

    return reducer_override


_C_DISPATCH_TABLE = pickle.Pickler.dispatch_table  # the C pickler's own slot
# What ``Pickler.dispatch_table`` reads on the class, as cloudpickle's does: a
# ChainMap over copyreg's table that code written for cloudpickle copies
# (``.copy()``, ``.new_child()``, ``ChainMap(mine, Pickler.dispatch_table)``)
# or registers into (``Pickler.dispatch_table[T] = reducer``).
_class_dispatch_table: ChainMap = ChainMap({}, copyreg.dispatch_table)


class _DispatchTable:
    """``dispatch_table``: the ChainMap above on the class; on a pickler, the
    table set on it, or the ChainMap once something was registered in it.

    While nothing is registered, a pickler has no dispatch table at all, so
    the C pickler keeps its fast path (it would otherwise consult a Python
    mapping for every object it pickles).
    """

    def __get__(self, obj, owner=None):
        if obj is None:
            return _class_dispatch_table
        try:
            return _C_DISPATCH_TABLE.__get__(obj, owner)
        except AttributeError:
            if _class_dispatch_table.maps[0]:
                return _class_dispatch_table
            raise

    def __set__(self, obj, value):
        _C_DISPATCH_TABLE.__set__(obj, value)
        obj.__dict__["_dispatch_table_set"] = True

    def __delete__(self, obj):
        _C_DISPATCH_TABLE.__delete__(obj)


class Pickler(pickle.Pickler):
    """A ``pickle.Pickler`` that pickles functions and classes by value when
    the loading side could not import them.

    Subclasses may define ``dispatch_table`` or their own ``reducer_override``
    (calling ``super().reducer_override(obj)`` for the objects they don't
    handle); entries in ``dispatch_table`` take precedence over marinade's.
    As in cloudpickle, ``Pickler.dispatch_table`` read on the class is a
    ``collections.ChainMap`` over ``copyreg.dispatch_table``; reducers
    registered in it apply to every marinade pickler made afterwards.
    """

    # The type of ``_globals_by_id`` (id of a globals dict -> its plan): a
    # subclass may keep plans its own way (integrations.multiprocessing).
    _globals_plans = dict

    dispatch_table = _DispatchTable()

    def __init__(self, file, protocol: int | None = None, buffer_callback=None, *,
                 standalone: bool = False, portable: bool = False):
        protocol = _check_protocol(protocol)
        if type(self) is Pickler and buffer_callback is None:
            _base_init(self, file, protocol)  # (cheaper than super() with keywords)
        else:
            super().__init__(file, protocol, buffer_callback=buffer_callback)
        self._protocol = protocol
        table = _current_reducers()
        # Only a subclass, or a registration in the class-level table, brings one.
        if type(self) is not Pickler or _class_dispatch_table.maps[0]:
            user_table = getattr(self, "dispatch_table", None)
            if user_table is not None and user_table is not copyreg.dispatch_table:
                if any(t in user_table for t in table):
                    table = {t: r for t, r in table.items() if t not in user_table}
        self._reducers = table
        self._seen_dispatch_table = _user_dispatch_table(self)
        self._standalone_state = _standalone.StandaloneState() if standalone else None
        self._portable_state = _portable_state(standalone) if portable else None
        _reset_state(self)

    def reducer_override(self, obj):
        reducer = self._reducers.get(type(obj))
        if reducer is not None:
            return reducer(self, obj)
        if isinstance(obj, type):
            return self._reduce_type(obj)
        late = _reducer_for_new_type(type(obj), _user_dispatch_table(self))
        return NotImplemented if late is None else late(self, obj)

    def _reduce_type(self, cls: type):
        if not cls.__flags__ & _HEAPTYPE:
            # Builtin types: by name, through the ``types`` module for those
            # builtins does not name (function, cell, mappingproxy...).
            alias = _TYPES_ALIASES.get(cls)
            if alias is not None:
                return getattr, (types, alias)
            return _UNNAMED_TYPES.get(cls, NotImplemented)
        if lookup_by_reference(cls) is not None:
            return NotImplemented  # importable: pickle stores module + qualname
        return reduce_class(self, cls)

    def dump(self, obj) -> None:
        # The C pickler looks ``reducer_override`` up at the start of every
        # dump: an instance attribute set only for this dump picks the fast
        # closure (or standalone's) without a pickler -> method -> pickler
        # cycle outliving the dump (it would keep the memo, and so every
        # pickled object, alive until the next garbage collection).
        user_table = _user_dispatch_table(self)
        if user_table is not self._seen_dispatch_table:
            # Assigned after __init__ (as pickle's docs show): its entries win.
            self._seen_dispatch_table = user_table
            table = _current_reducers()
            if user_table is not None and user_table is not copyreg.dispatch_table:
                table = {t: r for t, r in table.items() if t not in user_table}
            self._reducers = table
        override = None
        if "reducer_override" not in self.__dict__:
            if self._portable_state is not None:
                override = self._portable_state.make_override(self)
            else:
                if type(self).reducer_override is _BASE_OVERRIDE:
                    table = self._reducers
                    if self._standalone_state is not None:
                        table = _standalone.reducer_table(table)
                    override = _fast_override(self, table)
                elif self._standalone_state is not None:
                    # Around a subclass's own override.
                    override = _standalone.fast_override(self, self.reducer_override)
        if override is not None:
            self.reducer_override = override
        try:
            super().dump(obj)
        except RecursionError as exc:
            raise PicklingError(
                "recursion too deep while pickling: the object graph is nested too deeply "
                "(raise sys.setrecursionlimit) or a __reduce__ returns itself"
            ) from exc
        except PicklingError as exc:  # marinade's own refusal: say where the object is
            message = _diagnose.locate_refusal(obj, type(self), self._protocol)
            if message is None:
                raise
            raise pickling_error(message, exc) from exc
        except _diagnose.PICKLING_FAILURES as exc:
            raise pickling_error(_diagnose.explain_failure(obj, exc, type(self),
                                                           self._protocol), exc) from exc
        finally:
            if override is not None:
                del self.reducer_override


    def clear_memo(self) -> None:
        """Forget what was pickled so far, marinade's per-dump plans included."""
        super().clear_memo()
        if self._globals_by_id or self._cells_seen or self._deferred_cells or self._code_slots \
                or self._loose or self._batched:
            _reset_state(self)  # (pools reuse one pickler per thread: skip when clean)


_BASE_OVERRIDE = Pickler.reducer_override


def _user_dispatch_table(pickler: Pickler):
    """``pickler.dispatch_table``, or None.

    A plain Pickler has none unless one was set on it or registered on the
    class: then the lookup (a failing one, an exception) is skipped.
    """
    if type(pickler) is Pickler and not _class_dispatch_table.maps[0] \
            and "_dispatch_table_set" not in pickler.__dict__:
        return None
    return getattr(pickler, "dispatch_table", None)


def _portable_state(standalone: bool):
    # Imported on first use: default dumps never load the portable machinery.
    if standalone:
        raise ValueError("portable=True cannot be combined with standalone=True yet")
    from . import portable

    return portable.PortableState()
_base_init = pickle.Pickler.__init__


def _reset_state(pickler) -> None:
    # Per-dump state read by the reducers: rebuilt globals dicts and the
    # cells already planned.
    pickler._globals_by_id = pickler._globals_plans()
    pickler._cells_seen = {}
    pickler._deferred_cells = set()
    # id(code) -> (code, load-time expression) for methods whose class ships
    # their code in one table (reduce/classes.py).
    pickler._code_slots = {}
    # Methods made by a class's method batch: id -> (attrs expression, name);
    # functions with a dot in their qualname pickled on their own (methods.py).
    pickler._batched = {}
    pickler._loose = set()


class _FunctionState:
    """Stands in for a Pickler in ``reduce_function``, for the ``dumps`` fast path.

    Simple functions never touch the per-dump state, so it is made on demand.
    """

    _code_slots: dict = {}  # never filled: no class is reduced on this path
    _globals_plans = dict
    _batched: dict = {}

    def __getattr__(self, name):
        if name not in ("_globals_by_id", "_cells_seen", "_deferred_cells", "_loose"):
            raise AttributeError(name)
        _reset_state(self)
        return getattr(self, name)


# Payloads of top-level functions whose reduce tuple holds only atoms (no
# closure, no globals, no extra attributes): the payload is then a function
# of that tuple alone, so it is made once by the real Pickler and reused.
_simple_payloads: dict[tuple, bytes] = {}
_SIMPLE_MAX = 1024
_SIMPLE_ARGS = frozenset({bytes, str, int, type(None)})
_FunctionType = types.FunctionType


def _simple_function_payload(func, protocol: int, standalone: bool = False) -> bytes | None:
    """``dumps(func)`` from the cache above, or None when it does not apply."""
    if func.__closure__ is not None or func.__defaults__ is not None:
        return None
    code = func.__code__
    entry = _info_cache.get(id(code))  # global names, from the hottest cache
    names = entry[2] if entry is not None and entry[0] is code else global_names(code)
    if names or lookup_by_reference(func) is not None:
        return None
    try:
        reduced = reduce_function(_FunctionState(), func)
    except AttributeError:  # a reducer wanting more of the pickler: the normal path
        return None
    if len(reduced) != 2:
        return None
    rebuild, args = reduced
    for arg in args:
        if type(arg) not in _SIMPLE_ARGS:
            return None
    key = (protocol, standalone, rebuild, args)
    data = _simple_payloads.get(key)
    if data is None:
        file = io.BytesIO()
        Pickler(file, protocol, standalone=standalone).dump(func)
        data = file.getvalue()
        if len(_simple_payloads) >= _SIMPLE_MAX:
            _simple_payloads.clear()
        _simple_payloads[key] = data
    return data


def dumps(obj, protocol: int | None = None, buffer_callback=None, *,
          standalone: bool = False, key=None, key_id: str | None = None,
          portable: bool = False) -> bytes:
    """Pickle ``obj`` to bytes, functions and classes by value where needed.

    With ``standalone=True`` the payload names only standard-library
    callables and loads where marinade is not installed. With ``key=`` (bytes,
    str, or a keyring ``{key_id: key}``) the payload is wrapped in an
    HMAC-SHA256 signed envelope naming ``key_id``; ``loads(data, key=...)``
    verifies it before loading. With ``portable=True`` code travels as source
    and the payload loads on any supported CPython version (docs/portable.md).
    """
    if portable:
        if key is not None:
            from .safety import signing

            return signing.dumps(obj, protocol, buffer_callback, standalone, key, key_id,
                                 portable=True)
        file = io.BytesIO()
        Pickler(file, protocol, buffer_callback=buffer_callback, standalone=standalone,
                portable=True).dump(obj)
        return file.getvalue()
    if key is not None:
        from .safety import signing

        return signing.dumps(obj, protocol, buffer_callback, standalone, key, key_id)
    if type(obj) is _FunctionType and buffer_callback is None:
        data = _simple_function_payload(obj, _check_protocol(protocol), standalone)
        if data is not None:
            return data
    file = io.BytesIO()
    Pickler(file, protocol, buffer_callback=buffer_callback, standalone=standalone).dump(obj)
    return file.getvalue()


def dump(obj, file, protocol: int | None = None, buffer_callback=None, *,
         standalone: bool = False, key=None, key_id: str | None = None,
         portable: bool = False) -> None:
    """Pickle ``obj`` to the binary ``file`` (``standalone``, ``key``, ``portable`` as in ``dumps``)."""
    if portable:
        if key is not None:
            from .safety import signing

            return signing.dump(obj, file, protocol, buffer_callback, standalone, key, key_id,
                                portable=True)
        Pickler(file, protocol, buffer_callback=buffer_callback, standalone=standalone,
                portable=True).dump(obj)
        return
    if key is not None:
        from .safety import signing

        return signing.dump(obj, file, protocol, buffer_callback, standalone, key, key_id)
    Pickler(file, protocol, buffer_callback=buffer_callback, standalone=standalone).dump(obj)


def loads(data: Any, *, buffers: Iterable[Any] | None = None, **options: Any) -> Any:
    """Load a payload; the same as ``pickle.loads`` (``options``: fix_imports, encoding, errors).

    Safety options (see docs/security.md): ``key=`` (bytes, str, a list of
    keys or a keyring ``{key_id: key}``) accepts only a payload signed with
    one of the keys, verified before any opcode runs; ``allow=`` (an
    iterable of allowed globals, ``()`` for the safe default) loads in
    restricted mode. Both raise ``marinade.UnpicklingError`` subclasses.
    """
    if buffers is None and not options:
        return _pickle_loads(data)
    if "key" in options or "allow" in options:
        return _safe_load(data, None, buffers, options)
    return _pickle_loads(data, buffers=buffers, **options)


_pickle_loads = pickle.loads


def load(file: Any, *, buffers: Iterable[Any] | None = None, **options: Any) -> Any:
    """Load a payload from a binary file; the same as ``pickle.load``
    (``key=`` and ``allow=`` as in ``loads``)."""
    if "key" in options or "allow" in options:
        return _safe_load(None, file, buffers, options)
    return pickle.load(file, buffers=buffers, **options)


def _safe_load(data, file, buffers, options: dict):
    """``loads``/``load`` with ``key=`` or ``allow=``: signed or restricted loading."""
    from .safety import signing

    key = options.pop("key", None)
    allow = options.pop("allow", None)
    if key is None and allow is None:  # both given as None: plain loading
        if file is not None:
            return pickle.load(file, buffers=buffers, **options)
        return _pickle_loads(data, buffers=buffers, **options)
    if options:
        raise TypeError(f"key= and allow= cannot be combined with {', '.join(options)}")
    if file is not None:
        return signing.load(file, buffers, key, allow)
    return signing.loads(data, buffers, key, allow)
