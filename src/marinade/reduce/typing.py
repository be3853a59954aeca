"""Reducers for ``typing`` constructs defined by value (TypeVar, NewType...).

``reducers()`` gives the type -> reducer table merged into the Pickler's.

Type variables, NewTypes and ``type`` aliases pickle by name in the stdlib,
which fails where their module cannot be imported (``__main__``, a notebook).
Here they are rebuilt by calling their own constructor with the same name,
bounds, constraints, variance and default (a ``functools.partial`` of the
constructor).

Type variables and NewTypes keep their identity the way classes sent by value
do: each gets a deterministic key from its definition (kind, module, name,
bounds...), and ``_rebuild.shared_object`` makes one object per key in the
loading process. So ``T`` from two payloads is one ``T``, and the
``__parameters__`` of a generic class loaded from one payload hold the very
``T`` a function from another payload was annotated with.
"""

from __future__ import annotations

import functools
import hashlib
import pickle
import sys
import typing
from weakref import WeakKeyDictionary

from .. import _registry
from .._compat import HEAPTYPE as _HEAPTYPE
from .._lookup import is_dynamic_module, lookup_by_reference, module_is_by_value
from .._rebuild import shared_object
from . import _annotations
from ._expr import ATOMS as _ATOMS
from .classes import claim_key, class_key, reduce_class


def _importable_by_name(obj) -> bool:
    """True if ``module.<obj.__name__>`` gives ``obj`` back where it is loaded."""
    modname = getattr(obj, "__module__", None)
    if type(modname) is not str or module_is_by_value(modname):
        return False
    module = sys.modules.get(modname)
    if module is None or is_dynamic_module(module):
        return False
    return getattr(module, obj.__name__, None) is obj


def _default_kwargs(var) -> dict:
    """``default=`` for type parameters that have one (3.13+)."""
    has_default = getattr(var, "has_default", None)
    if has_default is not None and has_default():
        return {"default": var.__default__}
    return {}


def _rebuilt(var, constructor, args: tuple, kwargs: dict):
    """``constructor(*args, **kwargs)`` with ``__module__`` as it was, once per key.

    The constructors read ``__module__`` from the calling frame, which at load
    time is whatever called ``pickle.loads``.
    """
    factory = functools.partial(constructor, *args, **kwargs)
    return shared_object, (identity_key(var), factory, {"__module__": var.__module__})


# Keys of type variables and NewTypes, per object (see identity_key).
_keys: WeakKeyDictionary = WeakKeyDictionary()


_NoneType = type(None)
_KEYED_TYPES = (typing.TypeVar, typing.ParamSpec, typing.TypeVarTuple, typing.NewType)


def identity_key(obj) -> str:
    """Deterministic identity of a type variable or NewType sent by value.

    Made from what defines it: kind, module, name, variance, and bounds,
    constraints, default or supertype (classes by their own key, other
    objects by type only), so that the same definition gives the same key in
    every process, whatever the hash seed. Like ``classes.class_key``, the
    sending process maps the key to ``obj``, and two live objects never share
    a key: a look-alike (``T = TypeVar("T")`` twice) gets a numbered one.
    """
    try:
        return _keys[obj]
    except KeyError:
        pass
    reg = _registry
    # ``keys`` is missing from a registry that an older standalone payload made
    # before marinade was imported.
    keys = getattr(reg, "keys", None)
    known = None if keys is None else keys.get(obj)  # rebuilt here, or sent before
    if known is None:
        kind = type(obj).__name__
        parts: list[str] = [kind, str(obj.__module__), obj.__name__]
        for flag in ("__covariant__", "__contravariant__", "__infer_variance__"):
            parts.append("1" if getattr(obj, flag, False) else "0")
        _ident(_bound(obj), parts)
        for attr in ("__constraints__", "__supertype__"):
            _ident(getattr(obj, attr, None), parts)
        has_default = getattr(obj, "has_default", None)  # 3.13+
        if has_default is not None and has_default():
            _ident(obj.__default__, parts)
        digest = hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass"))
        # They share the class registry: the "<kind>" prefix keeps them apart.
        base_key = f"<{kind}>{obj.__module__}.{obj.__name__}#{digest.hexdigest()[:24]}"
        with reg.lock:
            known = None if keys is None else keys.get(obj)
            if known is None:
                known = claim_key(base_key, obj, by_value=False)
                if keys is not None:
                    keys[obj] = known
    _keys[obj] = known
    return known


def _ident(value, out: list) -> None:
    """Append a deterministic description of a bound, constraint or default."""
    kind = type(value)
    if kind in _ATOMS:
        out.append(repr(value))
    elif kind is tuple or kind is list:
        out.append("(" if kind is tuple else "[")
        for item in value:
            _ident(item, out)
        out.append(")" if kind is tuple else "]")
    elif isinstance(value, type):
        if value.__flags__ & _HEAPTYPE and lookup_by_reference(value) is None:
            out.append(class_key(value))
        else:
            out.append(f"{value.__module__}.{value.__qualname__}")
    elif kind in _KEYED_TYPES:
        out.append(identity_key(value) if not _importable_by_name(value)
                   else f"{value.__module__}.{value.__name__}")
    elif kind is typing.ForwardRef:
        out.append(f"ForwardRef({value.__forward_arg__!r}, {value.__forward_module__!r})")
    elif (origin := typing.get_origin(value)) is not None:
        out.append("<")
        _ident(origin, out)
        _ident(typing.get_args(value), out)
        out.append(">")
    elif kind.__module__ == "typing":
        out.append(repr(value))  # special forms: typing.Any, typing.Union...
    else:
        out.append(f"<{kind.__module__}.{kind.__qualname__}>")


def _bound(var):
    """``var.__bound__``; None for a ParamSpec bound to ``NoneType``, which
    some CPython releases (3.12.1 and 3.13.0 among them) report for every
    unbounded ParamSpec: one ParamSpec, one key, whatever version sent it."""
    bound = getattr(var, "__bound__", None)
    if bound is _NoneType and type(var) is typing.ParamSpec:
        return None
    return bound


def _bounded_kwargs(var) -> dict:
    """Keyword arguments that TypeVar and ParamSpec take alike: variance, bound, default."""
    kwargs = {}
    if getattr(var, "__infer_variance__", False):  # 3.12+
        kwargs["infer_variance"] = True
    if var.__covariant__:
        kwargs["covariant"] = True
    if var.__contravariant__:
        kwargs["contravariant"] = True
    bound = _bound(var)
    if bound is not None:
        kwargs["bound"] = bound
    kwargs.update(_default_kwargs(var))
    return kwargs


def reduce_type_var(pickler, var):
    if _importable_by_name(var):
        return NotImplemented
    return _rebuilt(var, typing.TypeVar, (var.__name__, *var.__constraints__),
                    _bounded_kwargs(var))


def reduce_param_spec(pickler, var):
    if _importable_by_name(var):
        return NotImplemented
    return _rebuilt(var, typing.ParamSpec, (var.__name__,), _bounded_kwargs(var))


def reduce_type_var_tuple(pickler, var):
    if _importable_by_name(var):
        return NotImplemented
    return _rebuilt(var, typing.TypeVarTuple, (var.__name__,), _default_kwargs(var))


def reduce_type_alias(pickler, alias):
    """``type X = ...`` (3.12+): rebuilt from its evaluated value.

    ``__module__`` of a TypeAliasType is read-only: it becomes the module that
    loads it.
    """
    if _importable_by_name(alias):
        return NotImplemented
    # The constructor takes the value, so an alias whose value contains the
    # alias itself cannot be rebuilt: say so instead of recursing until the
    # stack runs out. Seen twice in one dump without being memoized yet means
    # that we are inside its own value.
    seen = pickler.__dict__.setdefault("_marinade_type_aliases", {})
    if id(alias) in seen and id(alias) not in pickler.memo.copy():
        raise pickle.PicklingError(
            f"cannot pickle the recursive type alias {alias.__name__!r} by value: its value "
            "refers to itself; define it in an importable module so it pickles by name")
    seen[id(alias)] = alias
    call = functools.partial(typing.TypeAliasType, alias.__name__, alias.__value__,
                             type_params=alias.__type_params__)
    return call, ()


def reduce_new_type(pickler, new_type):
    if _importable_by_name(new_type):
        return NotImplemented
    return _rebuilt(new_type, typing.NewType, (new_type.__name__, new_type.__supertype__), {})


def reduce_forward_ref(pickler, ref):
    """``typing.ForwardRef`` from its constructor arguments.

    Its default reduction ships the compiled expression, which ties the
    payload to one bytecode version (and ``portable=True`` refuses it);
    the evaluation cache it also carries is rebuilt on first use anyway.
    """
    args = (ref.__forward_arg__, ref.__forward_is_argument__, ref.__forward_module__)
    if ref.__forward_is_class__:
        return functools.partial(typing.ForwardRef, *args, is_class=True), ()
    return typing.ForwardRef, args


def resolved_class_annotations(cls: type) -> dict | None:
    """The class's own ``__annotations__``, string values evaluated; None if none are strings.

    For classes sent by value. ``typing.get_type_hints(cls)`` evaluates
    string annotations (``from __future__ import annotations``) in
    ``sys.modules[cls.__module__]``, which where the class is loaded is
    another ``__main__`` (or, for a module registered by value, nothing):
    the names the class's module imported or defined are missing there.
    Functions do not have the problem, their ``__globals__`` travel; a class
    has no namespace that travels with it and that ``get_type_hints`` reads.
    So the values are evaluated here, where the names exist, exactly as
    ``get_type_hints(cls, include_extras=True)`` evaluates them (the
    ``ForwardRef`` objects that TypedDict and NamedTuple make as well). A
    value that cannot be evaluated here (a name imported only under
    ``TYPE_CHECKING``) stays as it was, and so does one that is not a plain
    type expression (a call: evaluating it would run user code during the
    dump) or whose value would not pickle (``Annotated[int, LOCK]``): as a
    string it would have pickled (see ``_annotations``).
    """
    annotations = cls.__dict__.get("__annotations__")
    if type(annotations) is not dict or not annotations:
        return None
    # Evaluating costs about as much as the rest of a small class's reduction:
    # once per class, again only if its annotations change. (A name rebound
    # in the module after the first dump is not seen.)
    snapshot = tuple(annotations.items())
    cached = _resolved_cache.get(cls)
    if cached is not None and cached[0] == snapshot:
        return cached[1]
    pending = {name: value for name, value in snapshot if _evaluable(value)}
    result = None
    if pending:
        active = _annotations.resolving()
        if id(cls) in active:  # only a trial pickle (_annotations._pickles) gets here
            return None
        active.add(id(cls))
        try:
            module_ns = getattr(sys.modules.get(cls.__module__), "__dict__", {})
            resolved = _evaluate(cls, pending, module_ns)
            if resolved is None:  # one bad value spoils the batch: one at a time
                resolved = {}
                for name, value in pending.items():
                    resolved.update(_evaluate(cls, {name: value}, module_ns) or {})
            resolved = {name: value for name, value in resolved.items()
                        if _annotations.will_pickle(value)}
        finally:
            active.discard(id(cls))
        if resolved:
            result = {name: resolved.get(name, value) for name, value in snapshot}
    _resolved_cache[cls] = (snapshot, result)
    return result


def _evaluable(value) -> bool:
    """True for a string (or ForwardRef) annotation to evaluate at dump time."""
    kind = type(value)
    if kind is str:
        return _annotations.evaluable(value)
    if kind is typing.ForwardRef:  # (TypedDict and NamedTuple make them)
        return _annotations.evaluable(value.__forward_arg__)
    return False


_resolved_cache: WeakKeyDictionary = WeakKeyDictionary()


def _evaluate(cls: type, annotations: dict, module_ns: dict) -> dict | None:
    """``get_type_hints`` of ``annotations`` as if they were ``cls``'s own, or None."""
    # A stand-in class holding only these annotations, and explicit
    # namespaces in the order get_type_hints(cls) itself uses: the module
    # first, then the class body, then builtins.
    namespace = {"__annotations__": annotations, "__module__": cls.__module__}
    type_params = getattr(cls, "__type_params__", None)  # 3.12+
    if type_params:
        namespace["__type_params__"] = type_params
    stand_in = type(cls.__name__, (), namespace)
    try:
        return typing.get_type_hints(stand_in, globalns=dict(vars(cls)), localns=module_ns,
                                     include_extras=True)
    except Exception:
        return None


def reduce_typed_dict_class(pickler, cls):
    """TypedDict classes: ``dict`` in ``__bases__`` stands for TypedDict.

    The metaclass refuses non-TypedDict bases, so the class is rebuilt on
    typing's private ``_TypedDict`` (what ``class X(TypedDict)`` gets from
    ``TypedDict.__mro_entries__``); keys and annotations come with its state.
    """
    typed_dict = getattr(typing, "_TypedDict", None)
    if cls is typed_dict:
        return getattr, (typing, "_TypedDict")
    if typed_dict is None or lookup_by_reference(cls) is not None:
        return NotImplemented
    bases = tuple(typed_dict if base is dict else base for base in cls.__bases__)
    return reduce_class(pickler, cls, bases=bases)


def reduce_param_spec_args(pickler, obj):
    """``P.args`` / ``P.kwargs`` by calling their type with the ``ParamSpec``.

    3.11 pickles them as instances of Python classes (``__newobj__`` plus
    state), which the C types of 3.12+ cannot be made from; every version's
    constructor takes the origin.
    """
    return type(obj), (obj.__origin__,)


def reducers() -> dict:
    table = {
        typing.TypeVar: reduce_type_var,
        typing.ParamSpec: reduce_param_spec,
        typing.ParamSpecArgs: reduce_param_spec_args,
        typing.ParamSpecKwargs: reduce_param_spec_args,
        typing.TypeVarTuple: reduce_type_var_tuple,
        typing.NewType: reduce_new_type,
        typing.ForwardRef: reduce_forward_ref,
    }
    alias_type = getattr(typing, "TypeAliasType", None)  # 3.12+
    if alias_type is not None:
        table[alias_type] = reduce_type_alias
    meta = getattr(typing, "_TypedDictMeta", None)
    if meta is not None:
        table[meta] = reduce_typed_dict_class
    return table
