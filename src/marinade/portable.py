"""Portable payloads: code travels as source and is compiled where it is loaded.

``dumps(obj, portable=True)`` makes a payload that loads on any supported
CPython (3.11, 3.12, 3.13), whichever of them made it. The default reducers
run as usual; this module then swaps what holds bytecode:

- a function by value becomes ``_rebuild_portable.function(spec, globals,
  closure, made_by)``, where ``spec`` locates its source (see
  ``_rebuild_portable``) and ``made_by`` names the producing CPython.
  Globals, closure cells, defaults, annotations and other attributes travel
  exactly as in the default mode;
- a class by value travels as in the default mode, but with a
  version-neutral identity key (``portable_class_key``) and without the
  methods that a standard-library generator made from strings:
  ``dataclass()`` and ``collections.namedtuple()`` (also behind
  ``typing.NamedTuple``) run again on the loading side with the recorded
  parameters (``_rebuild_portable.set_class_state``);
- ``type X = ...`` aliases travel as ``_rebuild_portable.type_alias``, and
  type variables with options older versions lack (``class C[T]`` syntax,
  defaults) as ``_rebuild_portable.type_param``: a clear error where they
  cannot be made. Forward references travel as their text;
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

import functools
import hashlib
import linecache
import operator
import os
import types
import typing
from weakref import WeakKeyDictionary

from . import _compat, _rebuild, _rebuild_portable, _registry
from ._errors import PicklingError
from ._lookup import lookup_by_reference
from .reduce import stdlib
from .reduce._expr import ATOMS as _ATOMS
from .reduce._expr import Call as _Call
from .reduce.classes import _holds_own_instances, claim_key, methods_first_state
from .reduce.function import reduce_function

_FunctionType = types.FunctionType
_CodeType = types.CodeType
_ForwardRef = typing.ForwardRef
_TypeAliasType = getattr(typing, "TypeAliasType", None)  # 3.12+
_MADE_BY = _compat.CODE_TAG  # recorded in payloads for load-time error messages
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
    lru_owners: dict = {}  # see _note_lru_owners

    def reducer_override(obj):
        kind = type(obj)
        if kind is _FunctionType:
            if "<" not in obj.__qualname__ and lookup_by_reference(obj) is not None:
                return NotImplemented
            if obj.__code__ is _LRU_PARAMETERS_CODE:
                reduced = _reduce_lru_parameters(obj, lru_owners)
                if reduced is not None:
                    return reduced
            if obj.__dict__:
                _note_lru_owners(obj, lru_owners)
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
        if kind is _ForwardRef:
            return _reduce_forward_ref(obj)
        if kind is _LRU_WRAPPER:
            _note_lru_owner(obj, lru_owners)
        if isinstance(obj, type):
            reduced = base(pickler, obj)
            if type(reduced) is tuple and reduced[0] is _rebuild.rebuild_class:
                return _portable_class(obj, reduced)
            return reduced
        reduced = base(pickler, obj)
        if kind is _TypeAliasType and reduced is not NotImplemented:
            return _rebuild_portable.type_alias, (obj.__name__, obj.__value__,
                                                  obj.__type_params__, _MADE_BY)
        if kind in _TYPE_PARAMS and type(reduced) is tuple:
            return _portable_type_param(kind, reduced)
        if type(reduced) is tuple and reduced and reduced[0] in _BYTECODE_REBUILDERS:
            raise PicklingError(f"cannot pickle {obj!r} with portable=True: it would ship "
                                "bytecode. Drop portable=True")
        return reduced

    return reducer_override


_SUSPENDED = (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType)
_TYPE_PARAMS = (typing.TypeVar, typing.ParamSpec, typing.TypeVarTuple)
# Options every supported version's TypeVar/ParamSpec accept (3.12 added
# infer_variance, 3.13 default): others go through _rebuild_portable.type_param.
_OLD_TYPE_PARAM_OPTIONS = frozenset({"bound", "covariant", "contravariant"})
_BYTECODE_REBUILDERS = tuple(getattr(_rebuild, name) for name in
                             ("function", "load_code", "load_code_table") if hasattr(_rebuild, name))


# -- lru_cache's cache_parameters ---------------------------------------------------
#
# lru_cache() gives its wrapper a ``cache_parameters`` lambda, a closure of
# functools' own code over ``maxsize`` and ``typed``. ``functools.wraps`` copies
# it onto a wrapper around the cached function (with the wrapper's __dict__),
# so it travels with the outer function. It is rebuilt by the loading side's
# lru_cache: as the attribute of the cached function when that is known to the
# dump (so the two stay one object, as they were), otherwise from a fresh
# lru_cache with the same parameters.

_LRU_WRAPPER = getattr(functools, "_lru_cache_wrapper", None)
_LRU_PARAMETERS_CODE = functools.lru_cache(None)(len).cache_parameters.__code__


def _note_lru_owner(wrapper, owners: dict) -> None:
    params = getattr(wrapper, "cache_parameters", None)
    if type(params) is _FunctionType and params.__code__ is _LRU_PARAMETERS_CODE:
        owners[id(params)] = (params, wrapper)  # (holds both: no id reuse)


def _note_lru_owners(func, owners: dict) -> None:
    """Remember the lru_cache wrappers that ``func`` wraps (``__wrapped__`` chain)."""
    inner = func.__dict__.get("__wrapped__")
    for _ in range(100):
        if inner is None:
            return
        if type(inner) is _LRU_WRAPPER:
            _note_lru_owner(inner, owners)
        inner = getattr(inner, "__wrapped__", None)


def _reduce_lru_parameters(params, owners: dict) -> tuple | None:
    known = owners.get(id(params))
    if known is not None and known[0] is params:
        return getattr, (known[1], "cache_parameters")
    try:  # functools' own lambda: {"maxsize": ..., "typed": ...} from its closure
        made = params()
        decorator = _Call(functools.lru_cache, (made["maxsize"], made["typed"]))
    except Exception:  # noqa: BLE001 - its code in another closure: refused as usual
        return None
    # Any function will do as the cached one: only its parameters are asked for.
    return getattr, (_Call(operator.call, (decorator, len)), "cache_parameters")


def _newer_type_param(kind, call) -> bool:
    return (type(call) is functools.partial and call.func is kind
            and not _OLD_TYPE_PARAM_OPTIONS.issuperset(call.keywords))


def _portable_type_param(kind, reduced: tuple) -> tuple:
    """The reduction of a type variable, made by ``_rebuild_portable.type_param`` when
    it needs options that older versions lack (for a clear error there)."""
    head = reduced[0]
    if _newer_type_param(kind, head):  # (partial(TypeVar, ...), (), state)
        return (_rebuild_portable.type_param,
                (kind.__name__, head.args, head.keywords, _MADE_BY)) + reduced[2:]
    if head is getattr(_rebuild, "shared_object", None):  # (key, factory, attrs)
        args = reduced[1]
        factory = args[1]
        if _newer_type_param(kind, factory):
            factory = functools.partial(_rebuild_portable.type_param, kind.__name__,
                                        factory.args, factory.keywords, _MADE_BY)
            return (head, args[:1] + (factory,) + args[2:]) + reduced[2:]
    return reduced


def _reduce_forward_ref(ref):
    """``typing.ForwardRef`` from its text: the default pickling ships its compiled code."""
    kwargs = {"is_argument": ref.__forward_is_argument__,
              "is_class": ref.__forward_is_class__}
    module = ref.__forward_module__
    if module is not None:
        kwargs["module"] = module
    return functools.partial(_ForwardRef, ref.__forward_arg__, **kwargs), ()


_STDLIB_DIR = os.path.dirname(os.__file__) + os.sep


def is_stdlib_code(code: types.CodeType) -> bool:
    """Whether ``code`` belongs to the standard library, whose source differs by version."""
    name = code.co_filename
    if name.startswith("<frozen "):
        return True
    return name.startswith(_STDLIB_DIR) and "-packages" + os.sep not in name


def _stdlib_machinery(value) -> bool:
    """A function of the standard library's own machinery that cannot be named
    by reference (a closure, a method a metaclass attached), as opposed to a
    library wrapper around the user's code (``__wrapped__``)."""
    func = _unwrap(value)
    if type(func) is not _FunctionType or not is_stdlib_code(func.__code__):
        return False
    if "<" not in func.__qualname__ and lookup_by_reference(func) is not None:
        return False  # pickled by name: the loading side's own
    inner = [getattr(func, "__wrapped__", None)]
    for cell in func.__closure__ or ():  # (reprlib's wrapper has no __wrapped__)
        try:
            inner.append(_unwrap(cell.cell_contents))
        except ValueError:
            pass
    return not any(type(item) is _FunctionType and not is_stdlib_code(item.__code__)
                   for item in inner)


def reduce_function_portable(pickler, func: types.FunctionType):
    """``reduce_function``, with the code as a source spec instead of bytecode."""
    if _stdlib_machinery(func):
        raise PicklingError(
            f"cannot pickle function {func.__qualname__!r} ({func.__code__.co_filename}) with "
            "portable=True: it is internal code of the standard library, which differs "
            "between Python versions, and it cannot be named by reference; shipping this "
            "version's copy would run it on another. Drop portable=True (the payload then "
            "loads only on the same CPython version)")
    spec = source_spec(func)
    reduced = reduce_function(pickler, func)
    rebuild, args = reduced[0], reduced[1]
    if rebuild is _rebuild.function:  # (data, tag, globals[, closure])
        fn_globals, closure = args[2], (args[3] if len(args) > 3 else None)
    elif rebuild is _FunctionType:  # (code, globals[, name, defaults, closure])
        fn_globals, closure = args[1], (args[4] if len(args) > 4 else None)
    else:
        raise PicklingError(f"internal error: unexpected reduction of {func.__qualname__!r} "
                            "with portable=True")
    new_args = (spec, fn_globals, closure, _MADE_BY)
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
    matches = []
    for _, _, node in candidates:
        segment = "".join(lines[first - 1:node.end_lineno])
        span = (node.col_offset, node.end_col_offset) if is_lambda else None
        spec = (1, code.co_qualname, filename, first, segment, span, freevars, future)
        try:
            compiled = _rebuild_portable.code(spec)
        except Exception:
            continue
        if _features(compiled) == expected:
            matches.append((spec, compiled))
    if not matches:
        raise _no_source(func, "no source matching its code was found in the file (was it "
                               "edited since the code was compiled, or made by exec?)")
    if len(matches) > 1:
        # Several definitions on one line that the positions did not tell
        # apart (code compiled without column positions: python -X
        # no_debug_ranges) and that use the same names and constants
        # (`lambda x: x + 1, lambda x: x - 1`). This interpreter compiled both
        # the live code and the candidates: the same bytecode picks the one.
        exact = [match for match in matches if _bytecode(match[1]) == _bytecode(code)]
        matches = exact or matches
        if len({_source_text(spec) for spec, _ in matches}) > 1:
            raise _no_source(func, "several definitions on its line match its code and "
                                   "their positions were not recorded (compiled with "
                                   "-X no_debug_ranges?); put it on a line of its own")
    return matches[0][0]


def _source_text(spec: tuple) -> bytes:
    """The text a spec ships for its code: the def statement, or the lambda's span."""
    text = spec[4].encode("utf-8")
    if spec[5] is None:
        return text
    col, end_col = spec[5]
    lines = text.splitlines(keepends=True)
    if len(lines) == 1:
        return lines[0][col:end_col]
    return lines[0][col:] + b"".join(lines[1:-1]) + lines[-1][:end_col]


def _bytecode(code: types.CodeType) -> tuple:
    return (code.co_code, tuple(_bytecode(const) for const in code.co_consts
                                if type(const) is _CodeType))


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

def _portable_class(cls: type, reduced: tuple) -> tuple:
    """A class reduce tuple with a version-neutral key, generated methods left to
    their generator (``dataclass()``, ``collections.namedtuple()``)."""
    func, args, state = reduced[:3]
    attrs, extras = state
    generator = None
    if _is_named_tuple(cls):
        attrs, generator = _named_tuple_plan(cls, attrs)
    elif "__dataclass_params__" in cls.__dict__ and "__dataclass_fields__" in cls.__dict__:
        attrs, generator = _dataclass_plan(cls, attrs)
    elif type(cls) is _TypedDictMeta:
        args, attrs = _typed_dict_plan(cls, args, attrs)
    elif cls.__dict__.get("_is_protocol") is True and isinstance(cls, _ProtocolMeta):
        attrs = {name: value for name, value in attrs.items() if name not in _PROTOCOL_DERIVED}
        generator = ("protocol", None)
    # What the standard library's class machinery attached (Protocol's
    # __subclasshook__, Enum's _new_member_...) is made again, by the loading
    # side's own version, when the class is created there.
    attrs = {name: value for name, value in attrs.items()
             if name not in _COMPILER_RECORDS and not _stdlib_machinery(value)}
    args = args[:4] + (portable_class_key(cls),) + args[5:]
    if generator is None:
        if _holds_own_instances(cls, attrs):  # class constants made by its own hooks
            attrs = methods_first_state(cls, attrs)
        return (func, args, (attrs, extras)) + reduced[3:]
    return (func, args, (attrs, extras, generator), None, None,
            _rebuild_portable.set_class_state)


# What the 3.13 compiler records in a class body about its source. Older
# versions take them for ordinary attributes (a Protocol's members: then no
# class matches it), and the line number points into the producer's file, not
# a file of the loading side: left out whatever the loading version.
# (``__type_params__``, 3.12+, stays: a class that has it cannot be made
# before 3.12, as its type variables infer their variance.)
_COMPILER_RECORDS = frozenset({"__firstlineno__", "__static_attributes__"})


# -- named tuples --------------------------------------------------------------

def _is_named_tuple(cls: type) -> bool:
    fields = cls.__dict__.get("_fields")
    return (tuple in cls.__bases__ and "_make" in cls.__dict__ and type(fields) is tuple
            and all(type(name) is str for name in fields))


def _unwrap(value):
    return value.__func__ if type(value) in (staticmethod, classmethod) else value


def _same_generated(mine, made) -> bool:
    """Whether ``mine`` is what the generator makes (``made``), not a user's override."""
    if type(mine) is not type(made):
        return False
    mine, made = _unwrap(mine), _unwrap(made)
    if type(mine) is _FunctionType:
        return type(made) is _FunctionType and mine.__code__ == made.__code__
    try:
        if mine == made:
            return True
    except Exception:  # noqa: BLE001 - a user __eq__: not ours to judge
        return False
    try:  # _tuplegetter fields: no __eq__, equal when they reduce alike
        return mine.__reduce__() == made.__reduce__()
    except Exception:  # noqa: BLE001
        return False


def _named_tuple_generated(cls: type, made: type) -> set:
    """Names of ``cls`` holding what ``collections.namedtuple()`` made (``made`` is its
    output for the same parameters), as opposed to what the class body overrode."""
    clsdict = cls.__dict__
    return {name for name, value in made.__dict__.items()
            if name in clsdict and _same_generated(clsdict[name], value)}


def _named_tuple_reference(cls: type) -> type:
    """What ``collections.namedtuple()`` makes for ``cls``'s parameters."""
    import collections

    try:
        # rename=True keeps names that were renamed (_1) as they are.
        return collections.namedtuple(cls.__name__, cls.__dict__["_fields"], rename=True,
                                      defaults=_named_tuple_defaults(cls),
                                      module=cls.__module__)
    except (TypeError, ValueError) as exc:
        raise PicklingError(f"cannot pickle named tuple class {cls.__qualname__!r} with "
                            f"portable=True: collections.namedtuple() cannot make it again "
                            f"({exc})") from None


def _named_tuple_defaults(cls: type):
    # From __new__ rather than _field_defaults: the old recipe of setting
    # __new__.__defaults__ by hand leaves _field_defaults empty.
    return getattr(_unwrap(cls.__dict__.get("__new__")), "__defaults__", None)


def _named_tuple_plan(cls: type, attrs: dict) -> tuple:
    """Attributes without what ``collections.namedtuple()`` makes, and its parameters."""
    generated = _named_tuple_generated(cls, _named_tuple_reference(cls))
    attrs = {name: value for name, value in attrs.items() if name not in generated}
    params = {"typename": cls.__name__, "fields": cls.__dict__["_fields"],
              "defaults": _named_tuple_defaults(cls)}
    annotations = getattr(_unwrap(cls.__dict__.get("__new__")), "__annotations__", None)
    if annotations:  # typing.NamedTuple annotates __new__ too
        params["new_annotations"] = annotations
    getitem = _unwrap(cls.__dict__.get("__class_getitem__"))
    if typing.Generic in cls.__bases__ and type(getitem) is _FunctionType \
            and is_stdlib_code(getitem.__code__):
        # NamedTuple's metaclass adds Generic's own (a private function whose
        # name changes between versions): the loading side adds its own.
        params["generic"] = True
        attrs.pop("__class_getitem__", None)
    return attrs, ("namedtuple", params)


# -- Protocol ---------------------------------------------------------------------

_ProtocolMeta = type(typing.Protocol)
# Computed from the members by Protocol's metaclass and @runtime_checkable,
# differently by version (3.12 added the first two, 3.13 replaced the second
# by the third): the loading side computes its own.
_PROTOCOL_DERIVED = frozenset({"__protocol_attrs__", "__callable_proto_members_only__",
                               "__non_callable_proto_members__"})


# -- TypedDict -------------------------------------------------------------------

_TypedDictMeta = getattr(typing, "_TypedDictMeta", None)
# Computed by TypedDict's metaclass from the annotations; which of them exist
# depends on the version (3.13 added the last two).
_TYPED_DICT_DERIVED = ("__required_keys__", "__optional_keys__", "__readonly_keys__",
                       "__mutable_keys__")


def _typed_dict_plan(cls: type, args: tuple, attrs: dict) -> tuple:
    """``rebuild_class`` arguments that let the loading side's TypedDict metaclass
    compute the key sets itself, and the attributes without them.

    The class statement gets every key (inherited ones too) with its final
    required-ness spelled out as ``Required[...]``/``NotRequired[...]`` where
    ``total`` alone would not give it, and the producer's ``total``; the
    original annotations are set back afterwards with the other attributes.
    """
    annotations = cls.__dict__.get("__annotations__")
    required = cls.__dict__.get("__required_keys__")
    total = cls.__dict__.get("__total__", True)
    if type(annotations) is not dict or required is None or type(total) is not bool:
        return args, attrs  # not the TypedDict we know: ship it as it is
    stated = {}
    for key, annotation in annotations.items():
        want = typing.Required if key in required else typing.NotRequired
        bare = _without_required(annotation)
        stated[key] = annotation if bare is annotation and (key in required) == total \
            else want[bare]
    namespace = dict(args[3])
    namespace["__annotations__"] = stated
    kwds = dict(args[5]) if len(args) > 5 and args[5] else {}
    kwds["total"] = total
    attrs = {name: value for name, value in attrs.items() if name not in _TYPED_DICT_DERIVED}
    return args[:3] + (namespace, args[4], kwds), attrs


def _without_required(annotation):
    """``annotation`` without ``Required``/``NotRequired`` anywhere in its qualifiers."""
    origin = typing.get_origin(annotation)
    if origin is typing.Required or origin is typing.NotRequired:
        return _without_required(typing.get_args(annotation)[0])
    if origin is typing.Annotated:
        inner = annotation.__origin__
        bare = _without_required(inner)
        if bare is inner:
            return annotation
        return typing.Annotated[(bare, *annotation.__metadata__)]
    read_only = getattr(typing, "ReadOnly", None)  # 3.13+
    if read_only is not None and origin is read_only:
        inner = typing.get_args(annotation)[0]
        bare = _without_required(inner)
        return annotation if bare is inner else read_only[bare]
    return annotation


# -- dataclasses -----------------------------------------------------------------

_DATACLASS_SKIP = frozenset({"__dataclass_fields__", "__dataclass_params__", "__match_args__"})
# Methods dataclass() may generate (from strings, without source); one the
# class body defined has source and stays.
_DATACLASS_GENERATED = ("__init__", "__repr__", "__eq__", "__lt__", "__le__", "__gt__", "__ge__",
                        "__hash__", "__setattr__", "__delattr__", "__getstate__", "__setstate__")
# What dataclass(frozen=True, slots=True) adds from its own module.
_DATACLASS_HELPERS = (("__getstate__", "_dataclass_getstate"),
                      ("__setstate__", "_dataclass_setstate"))


def _dataclass_plan(cls: type, attrs: dict) -> tuple:
    """Attributes without what ``dataclass()`` generates, and its parameters."""
    import dataclasses

    clsdict = cls.__dict__
    params = clsdict["__dataclass_params__"]
    kwargs = {name: getattr(params, name)
              for name in ("init", "repr", "eq", "order", "unsafe_hash", "frozen")}
    kwargs["match_args"] = "__match_args__" in clsdict
    attrs = dict(attrs)
    for name in _DATACLASS_SKIP:
        attrs.pop(name, None)
    for name in _DATACLASS_GENERATED:
        value = attrs.get(name)
        if type(value) is _FunctionType and not _has_source(value):
            del attrs[name]  # generated by dataclass(): it makes it again on load
    for name, helper in _DATACLASS_HELPERS:
        if clsdict.get(name) is getattr(dataclasses, helper, _NOTHING):
            attrs.pop(name, None)  # the loading side's dataclasses adds its own
    if "__replace__" in attrs and attrs["__replace__"] is getattr(dataclasses, "_replace", None):
        del attrs["__replace__"]  # 3.13+ adds it; an older loader has no dataclasses._replace
    fields = clsdict["__dataclass_fields__"]
    for field in fields.values():
        if field._field_type is dataclasses._FIELD:
            attrs[field.name] = field  # defaults, factories, metadata, kw_only...
    # PEP 563 string annotations that make pseudo-fields: dataclass() tells
    # them by resolving names in the class's module, which on the loading
    # side is not the one that defined them.
    markers = {}
    for name, annotation in (clsdict.get("__annotations__") or {}).items():
        if type(annotation) is not str:
            continue
        field = fields.get(name)
        if field is None:
            markers[name] = "kw_only"  # the `_: KW_ONLY` separator
        elif field._field_type is dataclasses._FIELD_CLASSVAR:
            markers[name] = "classvar"
        elif field._field_type is dataclasses._FIELD_INITVAR:
            markers[name] = "initvar"
    if markers or "__slots__" in clsdict:
        return attrs, ("dataclass/2", {"params": kwargs, "markers": markers})
    return attrs, ("dataclass", kwargs)


_NOTHING = object()


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


# -- class identity ----------------------------------------------------------------

# Names whose presence or value depends on the CPython version rather than on
# the class definition (3.13 adds __firstlineno__, __static_attributes__ and
# __replace__; TypedDict gained __orig_bases__ in 3.12, __readonly_keys__ in
# 3.13...), or that are caches.
_NOT_IN_PORTABLE_KEY = _COMPILER_RECORDS | frozenset({
    "__dict__", "__weakref__", "__replace__",
    "__orig_bases__",
    "__annotate__", "__annotate_func__", "__annotations_cache__", "__classdictcell__",
    "_abc_impl", "__slotnames__", "__dataclass_params__", "__mutable_keys__",
    "__readonly_keys__", "__protocol_attrs__", "__callable_proto_members_only__",
    "__non_callable_proto_members__",
})
_portable_keys: WeakKeyDictionary[type, str] = WeakKeyDictionary()


def portable_class_key(cls: type) -> str:
    """Identity of a class definition that every supported CPython computes alike.

    The default key (``reduce.classes.class_key``) hashes bytecode, which
    differs between versions; this one hashes what the definition says:
    module, qualified name, bases, attribute names, plain constants and the
    *source* of the methods. So the same ``__main__`` class pickled on 3.11
    and on 3.13 is one class where both payloads are loaded. As with the
    default key, the pickling process maps it to the live class, and two live
    look-alike classes get numbered keys.
    """
    known = _portable_keys.get(cls)
    if known is not None:
        return known
    parts: list[str] = [cls.__module__, cls.__qualname__, _type_ident(type(cls))]
    parts.extend(_type_ident(base) for base in cls.__bases__)
    is_enum = _is_enum_class(cls)
    clsdict = cls.__dict__
    skip = _NOT_IN_PORTABLE_KEY
    if _is_named_tuple(cls):
        # What namedtuple() made comes from its own source, which differs by
        # version; its parameters (_fields, defaults) are in the key.
        skip = skip | _named_tuple_generated(cls, _named_tuple_reference(cls))
    for name in sorted(clsdict):
        if name in skip:
            continue
        value = clsdict[name]
        if (name == "__annotations__" and not value) or _stdlib_machinery(value):
            continue  # (the machinery is the loading side's own, see _portable_class)
        if is_enum and len(name) > 2 and name[0] == name[-1] == "_" and name[1] != "_" \
                and getattr(_unwrap(value), "__module__", None) != cls.__module__:
            continue  # Enum internals (_member_map_...): their set varies by version
        parts.append(f"\0{name}\0")
        _key_part(value, parts, 0)
    digest = hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
    base_key = f"{cls.__module__}.{cls.__qualname__}#portable-{digest[:24]}"
    reg = _registry
    with reg.lock:
        known = _portable_keys.get(cls)
        if known is None:
            known = _portable_keys[cls] = claim_key(base_key, cls)
    return known


def _is_enum_class(cls: type) -> bool:
    import sys

    enum = sys.modules.get("enum")
    return enum is not None and isinstance(cls, enum.EnumType)


def _type_ident(kind: type) -> str:
    if kind.__flags__ & _HEAPTYPE and lookup_by_reference(kind) is None:
        return portable_class_key(kind)
    return f"{kind.__module__}.{kind.__qualname__}"


_HEAPTYPE = _compat.HEAPTYPE


def _key_part(value, out: list, depth: int) -> None:
    """Append what identifies ``value`` in a class definition, the same on every version."""
    kind = type(value)
    if kind in _ATOMS:
        out.append(repr(value))
        return
    if depth > 8:
        out.append("...")
        return
    depth += 1
    if kind is tuple or kind is list:
        out.append("(" if kind is tuple else "[")
        for item in value:
            _key_part(item, out, depth)
        out.append(")")
    elif kind is dict or kind is types.MappingProxyType:
        items = sorted(value.items(), key=_sort_key)
        out.append("{")
        for key, item in items:
            _key_part(key, out, depth)
            _key_part(item, out, depth)
        out.append("}")
    elif kind is frozenset or kind is set:
        out.append("set" + repr(sorted(repr(item) for item in value if type(item) in _ATOMS)))
    elif kind is staticmethod or kind is classmethod:
        out.append(kind.__name__)
        _key_part(value.__func__, out, depth)
    elif kind is property:
        out.append("property")
        for part in (value.fget, value.fset, value.fdel):
            _key_part(part, out, depth)
    elif kind is _FunctionType:
        _function_key(value, out, depth)
    elif isinstance(value, type):
        out.append(f"class {value.__module__}.{value.__qualname__}")
    elif kind.__module__ == "dataclasses" and kind.__name__ == "Field":
        out.append("field")
        for name in ("name", "default", "default_factory", "init", "repr", "hash", "compare",
                     "kw_only", "metadata"):
            _key_part(getattr(value, name, None), out, depth)
    elif _is_enum_class(kind):
        out.append(f"member {value._name_}")
        _key_part(value._value_, out, depth)
    else:  # by type (its module may move between versions: _collections._tuplegetter)
        out.append(f"<{kind.__qualname__}>")


def _sort_key(item: tuple) -> tuple:
    # Reprs of other objects may hold addresses: deterministic keys only.
    key = item[0]
    return (type(key).__qualname__, repr(key) if type(key) in _ATOMS else "")


def _function_key(func, out: list, depth: int) -> None:
    for _ in range(100):
        # A decorator's wrapper (dataclass wraps __repr__ in reprlib's) is
        # library code whose source changes between versions: key what it wraps.
        inner = getattr(func, "__wrapped__", None)
        if type(inner) is not _FunctionType:
            break
        func = inner
    if "<" not in func.__qualname__ and lookup_by_reference(func) is not None:
        out.append(f"ref {func.__module__}.{func.__qualname__}")
        return
    if is_stdlib_code(func.__code__):
        out.append("stdlib")  # its source changes with the version
        return
    try:
        spec = source_spec(func)
    except PicklingError:
        out.append("generated")  # made from a string; its generator's parameters count
        return
    # Where the file is (a script run from two folders) and on which line the
    # definition starts do not count; the text does.
    out.append(f"def {spec[1]}\0{spec[4]}\0{spec[5]}\0{sorted(spec[6])}\0{spec[7]}")
    for part in (func.__defaults__, func.__kwdefaults__):
        if part:
            _key_part(part, out, depth)
    for cell in func.__closure__ or ():
        try:
            contents = cell.cell_contents
        except ValueError:
            continue
        if type(contents) in _ATOMS:
            out.append(repr(contents))
