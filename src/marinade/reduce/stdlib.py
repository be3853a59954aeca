"""Standard-library objects that plain pickle refuses or gets wrong.

Each reducer returns a reduce tuple naming only standard-library callables.
``reducers()`` gives the type -> reducer table; ``late_reducers()`` adds types
from modules that may be imported after marinade (dataclasses sentinels...),
looked up only when a Pickler is created.
"""

from __future__ import annotations

import functools
import importlib
import sys
import types

from .._lookup import is_dynamic_module


def reduce_module(pickler, module: types.ModuleType):
    if not is_dynamic_module(module):
        return importlib.import_module, (module.__name__,)
    state = {k: v for k, v in vars(module).items() if k not in ("__builtins__", "__loader__",
                                                                 "__spec__")}
    return types.ModuleType, (module.__name__,), state


def reduce_staticmethod(pickler, obj):
    return staticmethod, (obj.__func__,)


def reduce_classmethod(pickler, obj):
    return classmethod, (obj.__func__,)


def reduce_property(pickler, obj):
    if type(obj) is not property:
        return NotImplemented  # subclasses pickle as their own __reduce__ says
    return property, (obj.fget, obj.fset, obj.fdel, obj.__doc__)


def reduce_cached_property(pickler, obj):
    # 3.11's cached_property holds an RLock; build a new one on load.
    return functools.cached_property, (obj.func,), (None, {"attrname": obj.attrname,
                                                          "__doc__": obj.__doc__})


def reduce_mappingproxy(pickler, obj):
    return types.MappingProxyType, (dict(obj),)


def reduce_getset_or_member(pickler, obj):
    # Descriptors of builtin types: int.real, a class's __dict__ entry...
    return getattr, (obj.__objclass__, obj.__name__)


def reduce_dict_view(kind):
    method = getattr(dict, kind)

    def reduce(pickler, obj):
        # A view of a fresh dict: the contents survive, live-ness cannot.
        return method, (dict(_view_mapping(obj)),)

    return reduce


def _view_mapping(view):
    return view.mapping


def reduce_named_singleton(module_name: str, attr: str):
    def reduce(pickler, obj):
        return getattr, (importlib.import_module(module_name), attr)

    return reduce


def reducers() -> dict:
    table = {
        types.ModuleType: reduce_module,
        staticmethod: reduce_staticmethod,
        classmethod: reduce_classmethod,
        property: reduce_property,
        functools.cached_property: reduce_cached_property,
        types.MappingProxyType: reduce_mappingproxy,
        types.GetSetDescriptorType: reduce_getset_or_member,
        types.MemberDescriptorType: reduce_getset_or_member,
    }
    for kind in ("keys", "values", "items"):
        table[type(getattr({}, kind)())] = reduce_dict_view(kind)
    return table


# Sentinels compared by identity: a copy would silently break the code using
# them (dataclasses.fields() filters on `f._field_type is _FIELD`).
_SINGLETONS = {
    "dataclasses": ("MISSING", "_HAS_DEFAULT_FACTORY", "_FIELD", "_FIELD_CLASSVAR",
                    "_FIELD_INITVAR"),
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
