"""Portable payloads: code travels as source and is compiled where it is loaded.

``dumps(obj, portable=True)`` makes a payload that loads on any supported
CPython (3.11, 3.12, 3.13), whichever of them made it. The default reducers
run as usual; this module then swaps what holds bytecode:

- a function by value becomes ``_rebuild_portable.function(spec, globals,
  closure)``, where ``spec`` locates its source (see ``_rebuild_portable``).
  Globals, closure cells, defaults, annotations and other attributes travel
  exactly as in the default mode;
- a dataclass by value travels without the methods ``dataclass()``
  generated, and ``dataclass()`` runs again on the loading side;
- what has no source, or only makes sense as bytecode (code objects,
  suspended generators and coroutines), fails with ``PicklingError`` when
  pickling. Bytecode never travels in a portable payload.

The source comes from ``linecache`` (so IPython / Jupyter cells work), is
located with ``ast``, and is checked against the live code object: the
candidate is compiled here the way the loader will compile it and its
version-independent features (arguments, names, constants, nested code) must
match, so an edited file or a function made by ``exec`` never ships the
wrong source.
"""

from __future__ import annotations

import linecache
import types

from . import _rebuild, _rebuild_portable
from ._errors import PicklingError
from ._lookup import lookup_by_reference
from .reduce import stdlib
from .reduce.function import reduce_function

_FunctionType = types.FunctionType
_CodeType = types.CodeType
_CO_FUTURE_ANNOTATIONS = 0x1000000  # same bit in 3.11-3.13 (see __future__)

# Code flags whose meaning does not depend on where the code was compiled
# (CO_NESTED does: it is left out of the comparison).
_KIND_FLAGS = 0x4 | 0x8 | 0x20 | 0x80 | 0x100 | 0x200  # varargs, varkw, generator, coroutine...


class PortableState:
    """Per-pickler state of a portable dump (none yet: the caches are per process)."""

    __slots__ = ()

    def make_override(self, pickler):
        return make_override(pickler)


def make_override(pickler):
    """The ``reducer_override`` that ``Pickler.dump`` installs for a portable dump."""
    base = type(pickler).reducer_override

    def reducer_override(obj):
        kind = type(obj)
        if kind is _FunctionType:
            if "<" not in obj.__qualname__ and lookup_by_reference(obj) is not None:
                return NotImplemented
            reduced = stdlib.reduce_decorated(pickler, obj)
            if reduced is not NotImplemented:
                return reduced
            return reduce_function_portable(pickler, obj)
        if kind is _CodeType:
            raise PicklingError(
                f"cannot pickle code object {obj.co_qualname!r} with portable=True: bytecode "
                "only runs on the CPython version that made it. Pickle the function instead, "
                "or drop portable=True")
        if kind in _SUSPENDED:
            raise PicklingError(
                f"cannot pickle {kind.__name__} {obj.__qualname__!r} with portable=True: a "
                "suspended frame is bytecode state. Drop portable=True to send it to the "
                "same CPython version")
        if isinstance(obj, type):
            reduced = base(pickler, obj)
            if type(reduced) is tuple and reduced[0] is _rebuild.rebuild_class:
                return _portable_class(obj, reduced)
            return reduced
        reduced = base(pickler, obj)
        if type(reduced) is tuple and reduced and reduced[0] in _BYTECODE_REBUILDERS:
            raise PicklingError(f"cannot pickle {obj!r} with portable=True: it would ship "
                                "bytecode. Drop portable=True")
        return reduced

    return reducer_override


_SUSPENDED = (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType)
_BYTECODE_REBUILDERS = (_rebuild.function, _rebuild.load_code)
def reduce_function_portable(pickler, func: types.FunctionType):
    """``reduce_function``, with the code as a source spec instead of bytecode."""
    spec = source_spec(func)
    reduced = reduce_function(pickler, func)
    args = reduced[1]
    new_args = (spec, args[2]) if len(args) < 4 else (spec, args[2], args[3])
    state = reduced[2] if len(reduced) > 2 else None
    doc = func.__doc__
    if doc is not None:
        # 3.13 strips docstring indentation when compiling: keep the original.
        if state is None:
            state = (None, {"__doc__": doc})
        elif type(state) is tuple:
            state[1].setdefault("__doc__", doc)
        else:
            state = (state, {"__doc__": doc})
    if state is None:
        return _rebuild_portable.function, new_args
    return _rebuild_portable.function, new_args, state


# -- finding the source ------------------------------------------------------

_spec_cache: dict[int, tuple[types.CodeType, tuple]] = {}
_SPEC_CACHE_MAX = 4096


def source_spec(func: types.FunctionType) -> tuple:
    """The ``spec`` of ``_rebuild_portable`` for ``func``'s code (cached per code object)."""
    code = func.__code__
    entry = _spec_cache.get(id(code))
    if entry is not None and entry[0] is code:
        return entry[1]
    spec = _find_spec(func, code)
    if len(_spec_cache) >= _SPEC_CACHE_MAX:
        _spec_cache.clear()
    _spec_cache[id(code)] = (code, spec)
    return spec


def _no_source(func, why: str) -> PicklingError:
    code = func.__code__
    return PicklingError(
        f"cannot pickle function {func.__qualname__!r} ({code.co_filename}, line "
        f"{code.co_firstlineno}) with portable=True: {why}. Portable payloads carry source "
        "code, never bytecode. Pickle it without portable=True (the payload then loads only "
        "on the same CPython version), or define it in a file")


_tree_cache: dict[tuple[str, str], tuple] = {}


def _indexed_tree(filename: str, text: str):
    """``(source bytes, {first line: [nodes]})`` for the functions of a file (cached)."""
    import ast

    key = (filename, text)
    found = _tree_cache.get(key)
    if found is not None:
        return found
    tree = ast.parse(text, filename)
    index: dict[int, list] = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
            index.setdefault(first, []).append(node)
        elif isinstance(node, ast.Lambda):
            index.setdefault(node.lineno, []).append(node)
    if len(_tree_cache) >= 64:
        _tree_cache.clear()
    found = _tree_cache[key] = index
    return found


def _find_spec(func, code: types.CodeType) -> tuple:
    import ast

    filename = code.co_filename
    lines = linecache.getlines(filename, func.__globals__)
    if not lines:
        raise _no_source(func, "its source is not available (code made from a string by "
                               "exec/compile, typed at an interactive prompt, or a .pyc "
                               "without its .py)")
    text = "".join(lines)
    try:
        index = _indexed_tree(filename, text)
    except SyntaxError:
        raise _no_source(func, "its source file does not parse") from None
    is_lambda = code.co_name == "<lambda>"
    first = code.co_firstlineno
    candidates = []
    for node in index.get(first, ()):
        if is_lambda != isinstance(node, ast.Lambda):
            continue
        if not is_lambda and node.name != code.co_name:
            continue
        start = (first, node.col_offset if is_lambda else 0)
        end = (node.end_lineno, node.end_col_offset)
        if _positions_within(code, start, end):
            candidates.append((end[0] - start[0], end[1] - start[1], node))
    candidates.sort(key=lambda c: (c[0], c[1]))
    future = ("annotations",) if code.co_flags & _CO_FUTURE_ANNOTATIONS else ()
    freevars = code.co_freevars
    expected = _features(code)
    for _, _, node in candidates:
        segment = "".join(lines[first - 1:node.end_lineno])
        span = (node.col_offset, node.end_col_offset) if is_lambda else None
        spec = (1, code.co_qualname, filename, first, segment, span, freevars, future)
        try:
            compiled = _rebuild_portable.code(spec)
        except Exception:
            continue
        if _features(compiled) == expected:
            return spec
    raise _no_source(func, "no source matching its code was found in the file (was it "
                           "edited since the code was compiled, or made by exec?)")


def _positions_within(code: types.CodeType, start: tuple, end: tuple) -> bool:
    """Every located instruction of ``code`` lies in ``start``..``end`` (line, column)."""
    for line, end_line, col, end_col in code.co_positions():
        if line is None or col is None or (line == end_line and col == end_col):
            continue  # no location, or a zero-width one (RESUME is at column 0)
        if (line, col) < start or (end_line, end_col) > end:
            return False
    return True


def _features(code: types.CodeType) -> tuple:
    """What a code object computes, independent of bytecode and of where it sits."""
    consts = []
    for const in code.co_consts:
        if type(const) is _CodeType:
            consts.append(_features(const))
        else:
            consts.append((type(const), repr(const)))
    return (code.co_name, code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount,
            code.co_flags & _KIND_FLAGS, code.co_varnames, code.co_names,
            tuple(sorted(code.co_freevars)), tuple(sorted(code.co_cellvars)), tuple(consts))


# -- classes -----------------------------------------------------------------

_DATACLASS_SKIP = frozenset({"__dataclass_fields__", "__dataclass_params__", "__match_args__"})
# Methods dataclass() may generate (from strings, without source); one the
# class body defined has source and stays.
_DATACLASS_GENERATED = ("__init__", "__repr__", "__eq__", "__lt__", "__le__", "__gt__", "__ge__",
                        "__hash__", "__setattr__", "__delattr__", "__getstate__", "__setstate__")


def _portable_class(cls: type, reduced: tuple) -> tuple:
    """A class reduce tuple, with generated dataclass methods left to ``dataclass()``."""
    if "_fields" in cls.__dict__ and tuple in cls.__bases__:
        raise PicklingError(
            f"cannot pickle named tuple class {cls.__qualname__!r} with portable=True yet: "
            "namedtuple() generates its methods from strings, without source. Drop "
            "portable=True (the payload then loads only on the same CPython version)")
    params = cls.__dict__.get("__dataclass_params__")
    if params is None or "__dataclass_fields__" not in cls.__dict__:
        return reduced
    if "__slots__" in cls.__dict__:
        raise PicklingError(
            f"cannot pickle dataclass {cls.__qualname__!r} made with slots=True with "
            "portable=True yet; drop portable=True")
    import dataclasses

    func, args, (attrs, extras) = reduced[:3]
    kwargs = {name: getattr(params, name)
              for name in ("init", "repr", "eq", "order", "unsafe_hash", "frozen")}
    kwargs["match_args"] = "__match_args__" in cls.__dict__
    attrs = dict(attrs)
    for name in _DATACLASS_SKIP:
        attrs.pop(name, None)
    for name in _DATACLASS_GENERATED:
        value = attrs.get(name)
        if type(value) is _FunctionType and not _has_source(value):
            del attrs[name]  # generated by dataclass(): it makes it again on load
    if "__replace__" in attrs and attrs["__replace__"] is getattr(dataclasses, "_replace", None):
        del attrs["__replace__"]  # 3.13+ adds it; an older loader has no dataclasses._replace
    for field in cls.__dict__["__dataclass_fields__"].values():
        if field._field_type is dataclasses._FIELD:
            attrs[field.name] = field  # defaults, factories, metadata, kw_only...
    return (func, args, (attrs, extras, ("dataclass", kwargs)), None, None,
            _rebuild_portable.set_class_state)


def _has_source(func) -> bool:
    for _ in range(100):  # through decorators (dataclass wraps __repr__ in reprlib's)
        inner = getattr(func, "__wrapped__", None)
        if type(inner) is not _FunctionType:
            break
        func = inner
    try:
        source_spec(func)
    except PicklingError:
        return False
    return True
