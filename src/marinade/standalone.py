"""Standalone payloads: loadable where marinade is not installed.

A default payload names marinade's reconstructors (``marinade._rebuild.*``),
so the loading side needs marinade importable. A standalone payload instead
names only standard-library callables, and carries the few reconstructors it
needs (class rebuilding) inside itself, pickled by value like any other
function. The rewriting happens on the reduce tuples the default reducers
produce, so both modes share one set of reducers:

- ``_rebuild.function(data, tag, globals, closure)`` becomes
  ``types.FunctionType(<code>, globals, None, None, closure)``;
- ``_rebuild.cell(*contents)`` becomes ``types.CellType(*contents)``;
- ``_rebuild.load_code(data, tag)`` becomes ``<guarded marshal.loads>(data)``,
  and ``_rebuild.load_code_table(data, tag)`` (a class's methods) the kit's
  ``_kit_code_table(data)``, which keeps tables per process;
- other ``_rebuild`` functions (``rebuild_class``, ``set_class_state``) are
  pickled by value, with the private helpers they use.

Bytecode only runs on the CPython version that compiled it, and feeding
another version's bytecode to ``marshal.loads`` could crash the interpreter.
So every payload gets ``marshal.loads`` through a guard built from plain
pickle operations: ``{OK: marshal.loads}[TEMPLATE.format(sys.version_info)]``.
On the producing version the formatted key equals ``OK``; on any other the
lookup raises ``KeyError`` whose message names both versions, before any
bytecode is touched.
"""

from __future__ import annotations

import builtins
import marshal
import operator
import re
import sys
import types

from . import _compat, _rebuild
from .reduce._expr import Call, canonical_module_name

# Short on purpose: both strings are in every payload. On a mismatch the
# KeyError reads e.g. 'CPython 3.11 bytecode cannot run on 3.12'.
_GUARD_TEMPLATE = "CPython {made} bytecode cannot run on {{0.major}}.{{0.minor}}"


def _version_guard_text() -> tuple[str, str]:
    made = f"{_compat.PY_VERSION[0]}.{_compat.PY_VERSION[1]}"
    template = _GUARD_TEMPLATE.format(made=made)
    return template, template.format(sys.version_info)


class _VersionInfo:
    """Pickles as a reference to ``sys.version_info`` (read at load time)."""

    __slots__ = ()


def reduce_version_info(pickler, obj):
    return getattr, (sys, "version_info")


class _CallableCall(Call):
    """A ``Call`` used as the callable of another reduce tuple.

    The C pickler insists the first item of a reduce tuple be callable; the
    real callable only exists at load time.
    """

    __slots__ = ()

    def __call__(self, *args):
        raise TypeError("a marinade load-time expression cannot be called while pickling")


def _guarded_loads() -> _CallableCall:
    template, ok = _version_guard_text()
    key = Call(template.format, (_VersionInfo(),))
    return _CallableCall(operator.getitem, ({ok: marshal.loads}, key))


# One expression object for every payload: the pickle memo writes it once per
# payload however many code objects use it.
_GUARDED_LOADS = _guarded_loads()


class StandaloneState:
    """Per-pickler state: code and globals memo."""

    __slots__ = ("code_calls", "globals_by_module")

    def __init__(self):
        # One Call per distinct code bytes object, so the pickle memo shares
        # the rebuilt code object between functions (20,000 closures of one
        # function load their code once).
        self.code_calls: dict[int, tuple[bytes, Call]] = {}
        self.globals_by_module: dict[str, dict] = {}

    def module_globals(self, module_name: str) -> dict:
        """One minimal globals dict per module for functions that use no globals."""
        fn_globals = self.globals_by_module.get(module_name)
        if fn_globals is None:
            fn_globals = self.globals_by_module[module_name] = {
                "__name__": canonical_module_name(module_name), "__builtins__": builtins}
        return fn_globals

    def code(self, data: bytes) -> Call:
        entry = self.code_calls.get(id(data))
        if entry is None:
            entry = self.code_calls[id(data)] = (data, Call(_GUARDED_LOADS, (data,)))
        return entry[1]


def rewrite(pickler, reduced):
    """Replace references to ``marinade._rebuild`` in a reduce tuple."""
    if type(reduced) is not tuple:
        return reduced
    func = reduced[0]
    if func is _rebuild.function:
        state = pickler._standalone_state
        args = reduced[1]
        fn_globals = args[2]
        if type(fn_globals) is str:
            fn_globals = state.module_globals(fn_globals)
        elif "__builtins__" not in fn_globals:
            # 3.12+ C code (PyImport_Import, e.g. for ``Generic[T]``) reads
            # __builtins__ from the calling function's globals.
            fn_globals["__builtins__"] = builtins
        new_args = (state.code(args[0]), fn_globals)
        if len(args) > 3:
            new_args += (None, None, args[3])  # name, defaults, closure
        return (types.FunctionType, new_args) + reduced[2:]
    if func is _rebuild.cell:
        return (types.CellType,) + reduced[1:]
    if func is _rebuild.load_code_table:
        # A class's table: the payload carries the kit anyway (rebuild_class),
        # whose loader keeps tables per process; the kit's version check
        # stands for the guard.
        return _rebuild._kit_code_table, (reduced[1][0],)
    if func is _rebuild.load_code:
        return pickler._standalone_state.code(reduced[1][0]).as_reduce()
    return reduced


_tables: dict[int, tuple[dict, dict]] = {}


def reducer_table(reducers: dict) -> dict:
    """The default mode's reducer table, made standalone.

    For ``_pickler._fast_override``: one Python call per object, as in the
    default mode, instead of this module's override around the default one
    (which cost plain instances, the objects payloads hold by the hundred
    thousand, a second call each). Results naming ``marinade._rebuild`` are
    rewritten; marinade's reconstructors themselves are shipped.
    """
    entry = _tables.get(id(reducers))
    if entry is not None and entry[0] is reducers:
        return entry[1]
    from ._pickler import _reduce_function_or_ref
    from .reduce.function import reduce_cell

    table = {kind: _rewriting(reduce) for kind, reduce in reducers.items()}
    table[types.FunctionType] = _function_reducer(
        reducers.get(types.FunctionType) is _reduce_function_or_ref)
    if reducers.get(types.CellType) is reduce_cell:
        cell_type = types.CellType

        def reduce_cell_standalone(pickler, cell):
            return (cell_type,) + reduce_cell(pickler, cell)[1:]

        table[cell_type] = reduce_cell_standalone
    table.update(STANDALONE_REDUCERS)
    if len(_tables) > 15:
        _tables.clear()
    _tables[id(reducers)] = (reducers, table)  # (holding the key's dict: no id reuse)
    return table


def _rewriting(reduce):
    def reduce_standalone(pickler, obj):
        return rewrite(pickler, reduce(pickler, obj))

    return reduce_standalone


def _function_reducer(by_value: bool):
    """Functions: marinade's reconstructors shipped, others as the default
    mode does (``by_value``) or by reference (a dispatch table took them)."""
    from ._lookup import lookup_by_reference
    from .reduce.function import reduce_function
    from .reduce.stdlib import decorated_table

    rebuild_module = _rebuild.__name__
    decorated = decorated_table()

    def reduce_function_standalone(pickler, obj):
        if obj.__module__ == rebuild_module:
            return rewrite(pickler, _reduce_shipped(pickler, obj))
        if not by_value:
            return NotImplemented
        if "<" not in obj.__qualname__ and lookup_by_reference(obj) is not None:
            return NotImplemented
        special = decorated.get(id(obj.__code__))
        if special is not None:
            reduced = special(pickler, obj)
            if reduced is not NotImplemented:
                return rewrite(pickler, reduced)
        return rewrite(pickler, reduce_function(pickler, obj))

    return reduce_function_standalone


def fast_override(pickler, inner):
    """The standalone ``reducer_override`` for one dump of a Pickler subclass
    with its own ``reducer_override`` (``inner``): marinade's reconstructors
    are shipped by value, and results naming them rewritten. (A plain
    Pickler uses ``reducer_table`` instead: one call per object.)
    """
    rebuild_module = _rebuild.__name__
    function_type = types.FunctionType
    own = STANDALONE_REDUCERS

    def reducer_override(obj):
        kind = type(obj)
        if kind is function_type and obj.__module__ == rebuild_module:
            return rewrite(pickler, _reduce_shipped(pickler, obj))
        reducer = own.get(kind)
        if reducer is not None:
            return reducer(pickler, obj)
        reduced = inner(obj)
        if reduced is NotImplemented or type(reduced) is not tuple:
            return reduced
        return rewrite(pickler, reduced)

    return reducer_override


def _reduce_shipped(pickler, func):
    """A marinade reconstructor in a standalone payload: from the kit, or by value."""
    kit_call, kit_names = reconstructor_kit()
    if func.__name__ in kit_names:
        return operator.getitem, (kit_call, func.__name__)
    from .reduce.function import reduce_function

    return reduce_function(pickler, shippable_rebuild_function(func))  # load_kit itself


# The class machinery of marinade._rebuild, and everything it uses: what a
# standalone payload with a class needs. (enum_member and shared_object, needed
# less often, travel alone, by value; shared_object takes _registry from the kit.)
_KIT_ROOTS = ("rebuild_class", "set_class_state", "_kit_code_table")
# What load_kit puts in the kit's namespace besides the functions and builtins.
_KIT_MODULES = frozenset({"sys", "__name__"})
_kit: tuple | None = None


_ZERO_RUNS = re.compile(rb"\x00{2,254}|\xff")  # (a count of 255 would read as 0xFF)


def pack_zeros(data: bytes) -> bytes:
    """Runs of zero bytes as ``0xFF, n``; a literal 0xFF as ``0xFF, 0``.

    Bytecode is half zeros (inline caches). Unlike zlib, whose output
    differs between zlib builds (zlib-ng...), this gives the same bytes
    everywhere, so payloads stay deterministic; ``_rebuild.load_kit``
    unpacks it with one split and join.
    """
    out = []
    start = 0
    for match in _ZERO_RUNS.finditer(data):
        out.append(data[start:match.start()])
        run = match.end() - match.start()
        out.append(b"\xff\x00" if data[match.start()] == 0xFF else bytes((0xFF, run)))
        start = match.end()
    out.append(data[start:])
    return b"".join(out)


def unpacked_size(data: bytes) -> int:
    """``len(unpack_zeros(data))``, without unpacking (packed data may come
    from anyone: 2 bytes can stand for 254)."""
    chunks = data.split(b"\xff")
    return len(data) - len(chunks) + 1 + sum(c[0] - 1 if c[:1] and c[0] else 0
                                            for c in chunks[1:])


def unpack_zeros(data: bytes) -> bytes:
    """The inverse of ``pack_zeros`` (what ``_rebuild.load_kit`` does inline)."""
    chunks = data.split(b"\xff")
    return b"".join([chunks[0]] + [b"\0" * c[0] + c[1:] if c[0] else b"\xff" + c[1:]
                                   for c in chunks[1:]])


def reconstructor_kit() -> tuple[Call, frozenset[str]]:
    """The ``load_kit(...)`` expression of this marinade, and the names it holds.

    One canonical marshal table for every reconstructor a standalone payload
    may call, loaded once per process (``_rebuild.load_kit``) instead of
    shipping and rebuilding each function, with its globals, in every payload.
    """
    global _kit
    if _kit is not None:
        return _kit
    from .reduce.code import code_table, global_names

    funcs = {name: getattr(_rebuild, name) for name in _KIT_ROOTS}
    pending = list(funcs.values())
    while pending:
        for name in global_names(pending.pop().__code__):
            value = getattr(_rebuild, name, None)
            if type(value) is types.FunctionType and name not in funcs:
                funcs[name] = value
                pending.append(value)
            elif name not in funcs and name not in _KIT_MODULES and not hasattr(builtins, name):
                raise AssertionError(f"_rebuild global {name} is not available in the kit")
    names = tuple(sorted(funcs))
    twins = [shippable_rebuild_function(funcs[name]) for name in names]
    data = pack_zeros(code_table(tuple(twin.__code__ for twin in twins)))
    defaults = tuple(twin.__defaults__ for twin in twins)
    call = Call(_rebuild.load_kit, (names, defaults, data, _compat.CODE_TAG))
    _kit = (call, frozenset(names))
    return _kit


_shippable_cache: dict = {}


def shippable_rebuild_function(func: types.FunctionType) -> types.FunctionType:
    """``func`` with its code trimmed for shipping inside payloads.

    Docstrings and line tables only cost bytes in every payload, and the
    installation path in ``co_filename`` would make payloads differ between
    machines.
    """
    twin = _shippable_cache.get(func)
    if twin is None:
        twin = types.FunctionType(_trim_code(func.__code__), func.__globals__, func.__name__,
                                  func.__defaults__, func.__closure__)
        twin.__kwdefaults__ = func.__kwdefaults__
        _shippable_cache[func] = twin
    return twin


def _trim_code(code: types.CodeType) -> types.CodeType:
    consts = tuple(_trim_code(c) if type(c) is types.CodeType else c for c in code.co_consts)
    if consts and type(consts[0]) is str and code.co_flags & _CO_FUNCTION_LIKE:
        consts = (None,) + consts[1:]  # the docstring
    # A generator's few bytes of line table stay: _rebuild.traceback makes its
    # frames from one, and their f_lineno comes from it.
    linetable = code.co_linetable if code.co_flags & _CO_GENERATOR else b""
    return code.replace(co_consts=consts, co_linetable=linetable,
                        co_filename="<marinade._rebuild>")


# Code objects of def/lambda bodies (not modules or classes) keep their
# docstring in co_consts[0]; CO_OPTIMIZED | CO_NEWLOCALS marks them.
_CO_FUNCTION_LIKE = 0x1 | 0x2
_CO_GENERATOR = 0x20


def _reduce_callable_call(pickler, obj):
    return obj.as_reduce()


STANDALONE_REDUCERS = {_VersionInfo: reduce_version_info, _CallableCall: _reduce_callable_call}
