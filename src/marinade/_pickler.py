"""The Pickler: stdlib's C pickler plus by-value decisions in reducer_override.

Plain data (dicts, lists, str, int...) never reaches Python code: the C
pickler handles it before calling ``reducer_override``. Everything else goes
through one dict lookup on its type; instances of ordinary classes fall
through to pickle's own ``__reduce_ex__`` handling.
"""

from __future__ import annotations

import copyreg
import io
import pickle
import types

from . import _diagnose
from ._errors import PicklingError
from ._lookup import lookup_by_reference
from .reduce import stdlib
from .reduce import typing as typing_reducers
from .reduce._expr import Call
from .reduce.classes import reduce_class
from .reduce.code import reduce_code
from .reduce.function import reduce_cell, reduce_function

DEFAULT_PROTOCOL = pickle.HIGHEST_PROTOCOL

_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: classes made by a class statement or type()


def _reduce_function_or_ref(pickler, func):
    if lookup_by_reference(func) is not None:
        return NotImplemented  # pickle stores module + qualname
    return reduce_function(pickler, func)


def _reduce_code(pickler, code):
    return reduce_code(code)


def _reduce_call(pickler, call):
    return call.as_reduce()


_TYPES_ALIASES = {
    value: name
    for name, value in vars(types).items()
    if isinstance(value, type) and value.__module__ == "builtins"
    and getattr(__builtins__ if isinstance(__builtins__, dict) else vars(__builtins__),
                "get")(value.__qualname__) is not value
}

_BASE_REDUCERS = {
    types.FunctionType: _reduce_function_or_ref,
    types.CodeType: _reduce_code,
    types.CellType: reduce_cell,
    Call: _reduce_call,
    **stdlib.reducers(),
    **typing_reducers.reducers(),
}
_late_cache: dict[frozenset, dict] = {}


def _current_reducers() -> dict:
    late = stdlib.late_reducers_key()
    table = _late_cache.get(late)
    if table is None:
        table = dict(_BASE_REDUCERS)
        table.update(stdlib.late_reducers())
        _late_cache[late] = table
    return table


class Pickler(pickle.Pickler):
    """A ``pickle.Pickler`` that pickles functions and classes by value when
    the loading side could not import them.

    Subclasses may define ``dispatch_table`` or their own ``reducer_override``
    (calling ``super().reducer_override(obj)`` for the objects they don't
    handle); entries in ``dispatch_table`` take precedence over marinade's.
    """

    def __init__(self, file, protocol: int | None = None, *, buffer_callback=None):
        if protocol is None:
            protocol = DEFAULT_PROTOCOL
        if protocol < 2:
            raise ValueError(f"marinade needs pickle protocol 2 or higher, got {protocol}")
        super().__init__(file, protocol, buffer_callback=buffer_callback)
        self._protocol = protocol
        self._reducers = _current_reducers()
        user_table = getattr(self, "dispatch_table", None)
        if user_table is not None and user_table is not copyreg.dispatch_table:
            overridden = [t for t in self._reducers if t in user_table]
            if overridden:
                self._reducers = {t: r for t, r in self._reducers.items() if t not in user_table}
        # Per-dump state: rebuilt globals dicts and the cells already planned.
        self._globals_by_id: dict = {}
        self._cells_seen: dict = {}
        self._deferred_cells: set = set()

    def reducer_override(self, obj):
        reducer = self._reducers.get(type(obj))
        if reducer is not None:
            return reducer(self, obj)
        if isinstance(obj, type):
            return self._reduce_type(obj)
        return NotImplemented

    def _reduce_type(self, cls: type):
        if not cls.__flags__ & _HEAPTYPE:
            # Builtin types: by name, through the ``types`` module for those
            # builtins does not name (function, cell, mappingproxy...).
            alias = _TYPES_ALIASES.get(cls)
            return NotImplemented if alias is None else (getattr, (types, alias))
        if lookup_by_reference(cls) is not None:
            return NotImplemented  # importable: pickle stores module + qualname
        return reduce_class(self, cls)

    def dump(self, obj) -> None:
        try:
            super().dump(obj)
        except RecursionError as exc:
            raise PicklingError(
                "recursion too deep while pickling: the object graph is nested too deeply "
                "(raise sys.setrecursionlimit) or a __reduce__ returns itself"
            ) from exc
        except PicklingError:
            raise
        except _diagnose.PICKLING_FAILURES as exc:
            raise PicklingError(_diagnose.explain_failure(obj, exc, type(self),
                                                          self._protocol)) from exc


def dumps(obj, protocol: int | None = None, *, buffer_callback=None) -> bytes:
    """Pickle ``obj`` to bytes, functions and classes by value where needed."""
    file = io.BytesIO()
    Pickler(file, protocol, buffer_callback=buffer_callback).dump(obj)
    return file.getvalue()


def dump(obj, file, protocol: int | None = None, *, buffer_callback=None) -> None:
    """Pickle ``obj`` to the binary ``file``."""
    Pickler(file, protocol, buffer_callback=buffer_callback).dump(obj)


def loads(data, *, buffers=None):
    """Load a payload; the same as ``pickle.loads``."""
    return pickle.loads(data, buffers=buffers)


def load(file, *, buffers=None):
    """Load a payload from a binary file; the same as ``pickle.load``."""
    return pickle.load(file, buffers=buffers)
