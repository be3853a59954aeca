"""Reducers for ``typing`` constructs defined by value (TypeVar, NewType...).

``reducers()`` gives the type -> reducer table merged into the Pickler's.

Type variables, NewTypes and ``type`` aliases pickle by name in the stdlib,
which fails where their module cannot be imported (``__main__``, a notebook).
Here they are rebuilt by calling their own constructor with the same name,
bounds, constraints, variance and default. Keyword arguments travel inside a
``functools.partial`` of the constructor, so payloads name only stdlib.
"""

from __future__ import annotations

import functools
import pickle
import sys
import typing

from .._lookup import is_dynamic_module, lookup_by_reference, module_is_by_value
from .classes import reduce_class


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
    """``constructor(*args, **kwargs)``, then ``__module__`` as it was.

    The constructors read ``__module__`` from the calling frame, which at load
    time is whatever called ``pickle.loads``.
    """
    call = functools.partial(constructor, *args, **kwargs) if kwargs else constructor
    state = (None, {"__module__": var.__module__})
    return call, () if kwargs else args, state


def _variance_kwargs(var) -> dict:
    kwargs = {}
    if getattr(var, "__infer_variance__", False):  # 3.12+
        kwargs["infer_variance"] = True
    if var.__covariant__:
        kwargs["covariant"] = True
    if var.__contravariant__:
        kwargs["contravariant"] = True
    return kwargs


def reduce_type_var(pickler, var):
    if _importable_by_name(var):
        return NotImplemented
    kwargs = _variance_kwargs(var)
    if var.__bound__ is not None:
        kwargs["bound"] = var.__bound__
    kwargs.update(_default_kwargs(var))
    return _rebuilt(var, typing.TypeVar, (var.__name__, *var.__constraints__), kwargs)


def reduce_param_spec(pickler, var):
    if _importable_by_name(var):
        return NotImplemented
    kwargs = _variance_kwargs(var)
    if var.__bound__ is not None:
        kwargs["bound"] = var.__bound__
    kwargs.update(_default_kwargs(var))
    return _rebuilt(var, typing.ParamSpec, (var.__name__,), kwargs)


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


def reducers() -> dict:
    table = {
        typing.TypeVar: reduce_type_var,
        typing.ParamSpec: reduce_param_spec,
        typing.TypeVarTuple: reduce_type_var_tuple,
        typing.NewType: reduce_new_type,
    }
    alias_type = getattr(typing, "TypeAliasType", None)  # 3.12+
    if alias_type is not None:
        table[alias_type] = reduce_type_alias
    meta = getattr(typing, "_TypedDictMeta", None)
    if meta is not None:
        table[meta] = reduce_typed_dict_class
    return table
