"""Standard-library objects that plain pickle refuses or gets wrong.

Each reducer returns a reduce tuple naming only standard-library callables.
``reducers()`` gives the type -> reducer table; ``late_reducers()`` adds types
from modules that may be imported after marinade (dataclasses sentinels...),
looked up only when a Pickler is created.

Objects that are deliberately *not* handled here (locks, open files other
than the standard streams, generators, frames) fail with marinade's
PicklingError, which names the path to them.
"""

from __future__ import annotations

import abc
import builtins
import codecs
import collections
import functools
import gc
import importlib
import io
import itertools
import operator
import os
import struct
import sys
import types
import weakref

from .._lookup import is_dynamic_module, lookup_by_reference
from ._expr import Call


def reduce_module(pickler, module: types.ModuleType):
    if not is_dynamic_module(module):
        return importlib.import_module, (module.__name__,)
    namespace = vars(module)
    state = {k: v for k, v in namespace.items() if k not in ("__builtins__", "__loader__",
                                                            "__spec__")}
    if "__builtins__" in namespace:
        # Often the builtins *dict* (copied by value, it would be a stale
        # copy): the module stands in, as exec accepts either.
        state["__builtins__"] = builtins
    return types.ModuleType, (module.__name__,), state


# -- descriptors -------------------------------------------------------------

def reduce_wrapping_descriptor(pickler, obj):
    # staticmethod, classmethod and abc's abstract* variants all take the
    # function as their only argument.
    return type(obj), (obj.__func__,)


def reduce_property(pickler, obj):
    kind = type(obj)
    if kind is not property and kind is not abc.abstractproperty:
        return NotImplemented  # subclasses pickle as their own __reduce__ says
    return kind, (obj.fget, obj.fset, obj.fdel, obj.__doc__)


def reduce_cached_property(pickler, obj):
    # 3.11's cached_property holds an RLock; build a new one on load.
    return functools.cached_property, (obj.func,), (None, {"attrname": obj.attrname,
                                                          "__doc__": obj.__doc__})


def reduce_getset_or_member(pickler, obj):
    # Descriptors of builtin types: int.real, a class's __dict__ entry...
    owner = obj.__objclass__
    if getattr(owner, obj.__name__, None) is obj:
        return getattr, (owner, obj.__name__)
    # A name the metaclass also defines (type.__dict__["__name__"] or
    # ["__doc__"]): looking it up on the class finds the metaclass's value.
    return operator.getitem, (Call(vars, (owner,)), obj.__name__)


# -- mappings and views ------------------------------------------------------

def _referent(obj):
    """The single object a proxy or view wraps (its only GC referent)."""
    found = gc.get_referents(obj)
    return found[0] if len(found) == 1 else None


# Descriptors that name the class they belong to in ``__objclass__``: every
# class namespace but the plainest holds one (``__dict__``, ``__weakref__``,
# slots, or the methods of a builtin type).
_OWNED_DESCRIPTORS = (types.GetSetDescriptorType, types.MemberDescriptorType,
                      types.WrapperDescriptorType, types.MethodDescriptorType,
                      types.ClassMethodDescriptorType)


def _owner_of_namespace(namespace: dict):
    """The class whose ``__dict__`` is ``namespace``, or None if no descriptor says."""
    for value in namespace.values():
        if type(value) in _OWNED_DESCRIPTORS:
            owner = value.__objclass__
            if _referent(owner.__dict__) is namespace:
                return owner
    return None


def reduce_mappingproxy(pickler, obj):
    mapping = _referent(obj)
    if mapping is None:
        return types.MappingProxyType, (dict(obj),)
    if type(mapping) is dict:
        owner = _owner_of_namespace(mapping)
        if owner is not None:
            return getattr, (owner, "__dict__")  # a class's namespace: the class's own
    # The wrapped mapping itself, so a payload holding both keeps them linked.
    return types.MappingProxyType, (mapping,)


def _reduce_view(make_dict, method, kind):
    # Like cloudpickle, only what the view shows travels (keys alone for a
    # keys view), rebuilt as a view of a fresh mapping: a keys view of a dict
    # whose values cannot be pickled still pickles.
    if kind == "keys":
        def reduce(pickler, obj):
            return method, (Call(make_dict.fromkeys, (list(obj),)),)
    elif kind == "values":
        def reduce(pickler, obj):
            return method, (Call(make_dict, (Call(enumerate, (list(obj),)),)),)
    else:
        def reduce(pickler, obj):
            return method, (Call(make_dict, (list(obj),)),)
    return reduce


# -- weak containers ---------------------------------------------------------
# Their contents are pickled strongly, like any other reference; after load
# an entry survives only while something else (typically the same payload)
# keeps its referent alive, which is what a weak container means.
# Entries are added as BUILD/SETITEMS steps once the container is memoized,
# so referents that point back at their container pickle fine.

def reduce_weakset(pickler, obj):
    items = list(obj)
    if not items:
        return weakref.WeakSet, ()
    return weakref.WeakSet, (), Call(weakref.WeakSet.update, (obj, items))


def reduce_weak_mapping(pickler, obj):
    items = list(obj.items())
    return type(obj), (), None, None, iter(items) if items else None


# -- functools / operator ----------------------------------------------------

_LRU_WRAPPER = functools._lru_cache_wrapper if isinstance(
    getattr(functools, "_lru_cache_wrapper", None), type) else None
# What functools.update_wrapper copies onto a wrapper (3.12 adds __type_params__).
_WRAPPER_ASSIGNED = frozenset(functools.WRAPPER_ASSIGNMENTS)


def _rewrap_extras(wrapper, wrapped, rebuilt: frozenset = frozenset()):
    """Attributes of ``wrapper`` that re-decorating ``wrapped`` would not restore.

    ``functools.update_wrapper`` copies ``wrapped``'s name, doc, ``__dict__``...
    onto the wrapper again at load, so those stay out of the payload; names in
    ``rebuilt`` are recreated by the decorator itself. Anything set on the
    wrapper afterwards travels, applied with setattr (BUILD slot state).
    """
    wrapped_dict = getattr(wrapped, "__dict__", {})
    extra = {}
    for name, value in vars(wrapper).items():
        if name in rebuilt:
            continue
        if name == "__wrapped__" and value is wrapped:
            continue
        if name in _WRAPPER_ASSIGNED and getattr(wrapped, name, _MISSING) is value:
            continue
        if name in wrapped_dict and wrapped_dict[name] is value:
            continue
        extra[name] = value
    return (None, extra) if extra else None


def reduce_lru_cache(pickler, obj):
    """``functools.lru_cache(maxsize, typed)(func)`` with an empty cache.

    An importable cached function is stored by name; one from ``__main__``
    (or a by-value module) is rebuilt around its function sent by value.
    """
    if lookup_by_reference(obj) is not None:
        return NotImplemented
    try:
        params = obj.cache_parameters()
        func = obj.__wrapped__
    except AttributeError:
        return NotImplemented  # made without lru_cache(): no way to know maxsize/typed
    decorator = Call(functools.lru_cache, (params["maxsize"], params["typed"]))
    extras = _rewrap_extras(obj, func, frozenset({"cache_parameters"}))
    return operator.call, (decorator, func), extras


# Functions that stdlib decorators return are closures over stdlib internals.
# Sent by value they would carry that internal code (and, for singledispatch,
# a weak dispatch cache); re-applying the decorator on load is smaller and uses
# the loading side's own stdlib. ``function_reducers()`` maps the code object
# of each such closure to its reducer.

def reduce_singledispatch(pickler, func):
    """``functools.singledispatch(default)`` plus one ``register`` per type."""
    registry = func.registry
    default = registry.get(object)
    if default is None:
        return NotImplemented
    effects = [Call(operator.methodcaller("register", cls, impl), (func,))
               for cls, impl in registry.items() if cls is not object]
    extras = _rewrap_extras(func, default,
                            frozenset({"register", "dispatch", "registry", "_clear_cache"}))
    if effects:
        # register() returns the implementation, not None: evaluate the calls
        # inside a tuple whose first item is None and keep that item as
        # BUILD's dict state (None: nothing to set).
        effect = Call(operator.getitem, ((None, *effects), 0))
        extras = (effect, extras[1] if extras else {})  # BUILD rejects a None slot state
    return functools.singledispatch, (default,), extras


def _reduce_redecorated(decorator):
    def reduce(pickler, func):
        wrapped = getattr(func, "__wrapped__", None)
        if wrapped is None:
            return NotImplemented
        return decorator, (wrapped,), _rewrap_extras(func, wrapped)

    return reduce


def function_reducers() -> dict:
    """``id(code)`` -> reducer, for the closures stdlib decorators return.

    For the function reducer to consult with ``func.__code__`` (one dict
    lookup on an int: hashing a code object itself is not cheap) before it
    sends a by-value function's closure. Each reducer checks the code object
    is the expected one, and may return NotImplemented to fall back to the
    generic path.
    """
    import contextlib

    def gen():
        yield

    async def agen():
        yield

    table = {}
    for decorator, sample, reduce in (
        (functools.singledispatch, lambda arg: None, reduce_singledispatch),
        (contextlib.contextmanager, gen, _reduce_redecorated(contextlib.contextmanager)),
        (contextlib.asynccontextmanager, agen,
         _reduce_redecorated(contextlib.asynccontextmanager)),
    ):
        table[id(decorator(sample).__code__)] = _only_for(decorator(sample).__code__, reduce)
    return table


_decorated: dict | None = None


def decorated_table() -> dict:
    """``id(code) -> reducer`` for the closures stdlib decorators make (built once)."""
    global _decorated
    if _decorated is None:
        _decorated = function_reducers()
    return _decorated


def reduce_decorated(pickler, func):
    """Reduce tuple re-applying the stdlib decorator that made the closure ``func``.

    NotImplemented for every other function: the caller sends it as usual.
    The table is built on first use (it imports contextlib).
    """
    global _decorated
    if _decorated is None:
        _decorated = function_reducers()
    special = _decorated.get(id(func.__code__))
    return NotImplemented if special is None else special(pickler, func)


def _only_for(code, reduce):
    # Holds ``code`` (so its id is never reused) and guards against a stale id.
    def checked(pickler, func):
        if func.__code__ is not code:
            return NotImplemented
        return reduce(pickler, func)

    return checked


# -- misc --------------------------------------------------------------------

_STD_STREAMS = ("stdout", "stderr", "stdin", "__stdout__", "__stderr__", "__stdin__")


def reduce_text_stream(pickler, obj):
    # The loading process's own stream of the same name; other files refuse.
    for name in _STD_STREAMS:
        if getattr(sys, name, None) is obj:
            return getattr, (sys, name)
    return NotImplemented


def reduce_environ(pickler, obj):
    # The loading process's own environment, as for the standard streams: a
    # snapshot would ship the producer's secrets and read stale values there.
    if obj is os.environ:
        return getattr, (os, "environ")
    if obj is getattr(os, "environb", None):  # (POSIX only)
        return getattr, (os, "environb")
    return NotImplemented


def reduce_count(pickler, obj):
    # itertools stops supporting pickle in 3.14 (deprecated from 3.12), so
    # read the position from the repr: 'count(5)' or 'count(0.5, 0.25)'.
    import ast

    text = repr(obj)
    try:
        args = ast.literal_eval(text[len("count"):])
    except (ValueError, SyntaxError):
        return NotImplemented
    if type(args) is not tuple:
        args = (args,)
    if not text.startswith("count(") or not all(type(a) in (int, float) for a in args):
        return NotImplemented  # Fraction, Decimal...: the default reduce, while it exists
    return itertools.count, args


def reduce_memoryview(pickler, obj):
    # A copy of the viewed bytes; shape and format come back through cast()
    # for the formats cast() accepts (native single characters).
    buffer = (bytes if obj.readonly else bytearray)(obj.tobytes())
    if obj.format == "B" and obj.ndim == 1:
        return memoryview, (buffer,)
    fmt = obj.format.lstrip("@")
    if len(fmt) == 1:
        return operator.methodcaller("cast", fmt, list(obj.shape)), (Call(memoryview, (buffer,)),)
    return memoryview, (buffer,)


# -- builtin types that no module names -----------------------------------------
# dict_keys, list_iterator... exist only as type(some instance): pickled as
# ``type(sample)`` with a small sample built by stdlib callables, so that a
# function whose globals hold such a type (``_KeysView = type({}.keys())``)
# still travels.

def _sample_calls() -> list:
    odict = collections.OrderedDict
    views = [Call(getattr(kind, name), (kind(),))
             for kind in (dict, odict) for name in ("keys", "values", "items")]
    # "\xe9" before "": ASCII strings have an iterator type of their own, and
    # str_iterator must be named by a sample that makes a str_iterator.
    iterables = [[], (), set(), "\xe9", "", b"", bytearray(), range(0), range(1 << 64), {},
                 odict(), *views[1:3], Call(memoryview, (b"",)), list[int]]
    reversibles = [[], {}, *views[1:3]]
    return [*views, *(Call(iter, (x,)) for x in iterables),
            *(Call(reversed, (x,)) for x in reversibles), Call(iter, (int, 1))]


def _evaluate(value):
    if type(value) is Call:
        return value.func(*map(_evaluate, value.args))
    return value


def unnamed_builtin_types(named: dict) -> dict:
    """type -> ``(type, (sample,))`` for builtin types missing from ``named``."""
    table = {}
    for call in _sample_calls():
        try:
            kind = type(_evaluate(call))
        except TypeError:  # a sample this version cannot build
            continue
        if kind not in named and kind not in table and getattr(
                builtins, kind.__name__, None) is not kind:
            table[kind] = (type, (call,))
    return table


# -- more objects plain pickle refuses -------------------------------------------

def reduce_super(pickler, obj):
    if obj.__self__ is None:
        return super, (obj.__thisclass__,)
    return super, (obj.__thisclass__, obj.__self__)


def reduce_method_of_namespace(pickler, obj):
    # dict.__dict__["fromkeys"]: reading it through the class would bind it.
    return operator.getitem, (obj.__objclass__.__dict__, obj.__name__)


def reduce_struct(pickler, obj):
    return struct.Struct, (obj.format,)


def reduce_weakref(pickler, obj):
    """A live reference is rebuilt around its referent, pickled strongly.

    After load it lives as long as something else keeps the referent (the same
    payload, typically: a tree's parent link). A dead one is rebuilt dead: its
    referent is a set that the unpickler's memo alone holds. The callback of a
    dead reference has run already, so it does not travel.
    """
    referent = obj()
    if referent is None:
        return weakref.ref, (Call(set, ()),)
    callback = obj.__callback__
    return weakref.ref, (referent,) if callback is None else (referent, callback)


def _weak_method_callback(obj):
    # WeakMethod wraps the user's callback in a closure of its own.
    wrapper = obj.__callback__
    cells = dict(zip(wrapper.__code__.co_freevars, wrapper.__closure__ or ()))
    cell = cells.get("callback")
    return None if cell is None else cell.cell_contents


def reduce_weak_method(pickler, obj):
    method = obj()
    if method is None:
        # Dead: a method of a set only the unpickler's memo holds.
        return weakref.WeakMethod, (Call(types.MethodType, (len, Call(set, ()))),)
    callback = _weak_method_callback(obj)
    return weakref.WeakMethod, (method,) if callback is None else (method, callback)


def reduce_weak_proxy(pickler, obj):
    """``weakref.proxy(referent[, callback])``, alive or dead like ``reduce_weakref``.

    A proxy forwards every attribute to its referent, so the referent is found
    as the ``__self__`` of its bound ``__sizeof__`` (of ``mro`` for a class),
    checked against the address the proxy's own repr gives.
    """
    callable_proxy = type(obj) is weakref.CallableProxyType
    try:
        try:
            referent = obj.__sizeof__.__self__
        except AttributeError:  # a class: its __sizeof__ is object's, unbound
            referent = obj.mro.__self__
    except ReferenceError:
        # Dead: a proxy of an object only the unpickler's memo holds.
        temporary = Call(functools.partial, (len,)) if callable_proxy else Call(set, ())
        return weakref.proxy, (temporary,)
    except AttributeError:
        return NotImplemented
    if not repr(obj).endswith(f" at {id(referent):#x}>"):
        return NotImplemented  # a __sizeof__ that is not the referent's own method
    callback = gc.get_referents(obj)  # the callback is a proxy's only GC referent
    return weakref.proxy, (referent, *callback[:1])


def reduce_key_wrapper(pickler, obj):
    """``functools.cmp_to_key(cmp)``, or one of its keys: ``cmp_to_key(cmp)(value)``."""
    found = [x for x in gc.get_referents(obj) if x is not type(obj)]
    if len(found) == 1:
        return functools.cmp_to_key, (found[0],)
    if len(found) == 2:
        return operator.call, (Call(functools.cmp_to_key, (found[0],)), found[1])
    return NotImplemented


def reduce_codec_info(pickler, obj):
    # Its default reduce passes 4 of the 7 constructor arguments and fails to load.
    name = getattr(obj, "name", None)
    if isinstance(name, str):
        try:
            if codecs.lookup(name) is obj:
                return codecs.lookup, (name,)
        except LookupError:
            pass
    fields = (obj.encode, obj.decode, obj.streamreader, obj.streamwriter,
              getattr(obj, "incrementalencoder", None), getattr(obj, "incrementaldecoder", None),
              name)
    return codecs.CodecInfo, fields, {k: v for k, v in vars(obj).items()
                                      if k not in ("name", "incrementalencoder",
                                                   "incrementaldecoder")} or None


def reduce_system_random(pickler, obj):
    # No state to lose: the operating system's entropy source is its state
    # (its __setstate__ refuses any, so nothing else travels either).
    return type(obj), ()


_JSON_DECODER_OPTIONS = ("object_hook", "parse_float", "parse_int", "parse_constant",
                         "strict", "object_pairs_hook")


def reduce_json_decoder(pickler, obj):
    # Its scanner is a C object made from these options: rebuild from them,
    # naming only those that differ from a default decoder's (the default
    # parse_constant is a bound __getitem__ of json's private table).
    default = type(obj)()
    try:
        options = {name: getattr(obj, name) for name in _JSON_DECODER_OPTIONS
                   if getattr(obj, name) != getattr(default, name)}
    except AttributeError:
        return NotImplemented
    if not options:
        return type(obj), ()
    return functools.partial(type(obj), **options), ()


# Types of modules marinade does not import itself, found by name the first
# time a dump meets one of their instances (see ``reducer_by_name``).
_BY_NAME = {
    ("random", "SystemRandom"): reduce_system_random,
    ("json.decoder", "JSONDecoder"): reduce_json_decoder,
}


def reducer_by_name(kind: type):
    """The reducer for ``kind`` if it is one of ``_BY_NAME``'s stdlib types, else None."""
    reduce = _BY_NAME.get((kind.__module__, kind.__qualname__))
    if reduce is None:
        return None
    module = sys.modules.get(kind.__module__)
    if getattr(module, kind.__qualname__, None) is not kind:
        return None  # a look-alike
    return reduce


def reducers() -> dict:
    table = {
        types.ModuleType: reduce_module,
        staticmethod: reduce_wrapping_descriptor,
        classmethod: reduce_wrapping_descriptor,
        abc.abstractclassmethod: reduce_wrapping_descriptor,
        abc.abstractstaticmethod: reduce_wrapping_descriptor,
        property: reduce_property,
        abc.abstractproperty: reduce_property,
        functools.cached_property: reduce_cached_property,
        types.MappingProxyType: reduce_mappingproxy,
        types.GetSetDescriptorType: reduce_getset_or_member,
        types.MemberDescriptorType: reduce_getset_or_member,
        weakref.WeakSet: reduce_weakset,
        weakref.WeakValueDictionary: reduce_weak_mapping,
        weakref.WeakKeyDictionary: reduce_weak_mapping,
        io.TextIOWrapper: reduce_text_stream,
        type(os.environ): reduce_environ,
        itertools.count: reduce_count,
        memoryview: reduce_memoryview,
        super: reduce_super,
        types.ClassMethodDescriptorType: reduce_method_of_namespace,
        struct.Struct: reduce_struct,
        weakref.ref: reduce_weakref,  # (exact type: subclasses like KeyedRef carry more state)
        weakref.WeakMethod: reduce_weak_method,
        weakref.ProxyType: reduce_weak_proxy,
        weakref.CallableProxyType: reduce_weak_proxy,
        type(functools.cmp_to_key(operator.eq)): reduce_key_wrapper,
        codecs.CodecInfo: reduce_codec_info,
    }
    if _LRU_WRAPPER is not None:
        table[_LRU_WRAPPER] = reduce_lru_cache
    for kind in ("keys", "values", "items"):
        table[type(getattr({}, kind)())] = _reduce_view(dict, getattr(dict, kind), kind)
        odict = collections.OrderedDict
        table[type(getattr(odict(), kind)())] = _reduce_view(odict, getattr(odict, kind), kind)
    return table


# Sentinels compared by identity: a copy would silently break the code using
# them (dataclasses.fields() filters on `f._field_type is _FIELD`).
_SINGLETONS = {
    "dataclasses": ("MISSING", "_HAS_DEFAULT_FACTORY", "_FIELD", "_FIELD_CLASSVAR",
                    "_FIELD_INITVAR", "KW_ONLY"),
}


def _reduce_singleton_of(module: types.ModuleType, names_by_id: dict):
    def reduce(pickler, obj):
        name = names_by_id.get(id(obj))
        if name is None:
            return NotImplemented
        return getattr, (module, name)

    return reduce


def late_reducers_key() -> frozenset:
    """Which of the modules with sentinels are imported now (cache key)."""
    modules = sys.modules
    return frozenset(name for name in _SINGLETONS if name in modules)


def late_reducers() -> dict:
    """Reducers for the sentinel types of modules imported so far."""
    table = {}
    for module_name, names in _SINGLETONS.items():
        module = sys.modules.get(module_name)
        if module is None:
            continue
        by_type: dict[type, dict[int, str]] = {}
        for name in names:
            obj = getattr(module, name, None)
            if obj is not None and type(obj).__module__ == module_name:
                by_type.setdefault(type(obj), {})[id(obj)] = name
        for kind, names_by_id in by_type.items():
            table[kind] = _reduce_singleton_of(module, names_by_id)
    return table


_MISSING = object()
