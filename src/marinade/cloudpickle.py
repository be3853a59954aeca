"""cloudpickle's ``cloudpickle.cloudpickle`` module, with marinade underneath.

Code written against cloudpickle reaches its API through the package or its
submodule (``cloudpickle.cloudpickle.dumps``, ``from cloudpickle.cloudpickle
import CloudPickler``); with ``import marinade as cloudpickle`` (or
``sys.modules["cloudpickle"] = marinade``) both spellings find marinade's.
Besides the public API, this module has the few helpers that projects import
from cloudpickle by name: ``subimport``, ``dynamic_subimport``, ``instance``
and ``_extract_code_globals``. Payloads never name this module.

Imports here are absolute: under the ``sys.modules`` alias this file may be
loaded a second time as ``cloudpickle.cloudpickle``, and must then still use
the one marinade (one class registry, one by-value module registry).
"""

from __future__ import annotations

import builtins
import sys
import types

from marinade._errors import PicklingError
from marinade._lookup import (
    list_registry_pickle_by_value,
    register_pickle_by_value,
    unregister_pickle_by_value,
)
from marinade._pickler import DEFAULT_PROTOCOL, Pickler, dump, dumps, load, loads

CloudPickler = Pickler

__all__ = [
    "DEFAULT_PROTOCOL",
    "CloudPickler",
    "Pickler",
    "PicklingError",
    "dump",
    "dumps",
    "dynamic_subimport",
    "instance",
    "list_registry_pickle_by_value",
    "load",
    "loads",
    "register_pickle_by_value",
    "subimport",
    "unregister_pickle_by_value",
]


def subimport(name: str) -> types.ModuleType:
    """Import module ``name`` and return it (``__import__("a.b")`` returns ``a``)."""
    __import__(name)
    return sys.modules[name]


def dynamic_subimport(name: str, vars: dict) -> types.ModuleType:
    """A new module ``name`` holding ``vars``; it is not added to ``sys.modules``."""
    module = types.ModuleType(name)
    module.__dict__.update(vars)
    module.__dict__["__builtins__"] = builtins.__dict__
    return module


def instance(cls):
    """``cls()``: a class decorator that replaces a class by its one instance."""
    return cls()


_GLOBAL_OPNAMES = frozenset({"LOAD_GLOBAL", "STORE_GLOBAL", "DELETE_GLOBAL"})


def _extract_code_globals(co: types.CodeType) -> dict[str, None]:
    """Names that ``co``, or code nested in it, reads, writes or deletes as globals.

    A dict with None values in first-use order, as cloudpickle returns it
    (callers use its keys). Like cloudpickle's, it only counts the *_GLOBAL
    instructions; marinade's own scan, which also reads class bodies, is
    ``marinade.reduce.code.global_names``.
    """
    import dis

    names: dict[str, None] = {}

    def walk(code: types.CodeType) -> None:
        for instruction in dis.get_instructions(code):
            if instruction.opname in _GLOBAL_OPNAMES:
                names.setdefault(instruction.argval, None)
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                walk(const)

    walk(co)
    return names


def is_tornado_coroutine(func) -> bool:
    """Whether ``func`` is a Tornado ``@gen.coroutine`` (cloudpickle API).

    Only asks Tornado when the program already imported it; marinade needs
    no special case for such functions (they pickle like any wrapper).
    """
    gen = sys.modules.get("tornado.gen")
    check = getattr(gen, "is_coroutine_function", None)
    return bool(check(func)) if check is not None else False


def __getattr__(name: str):
    if name == "_PICKLE_BY_VALUE_MODULES":
        # cloudpickle's registry is a mutable set of module names; marinade's
        # is replaced as a whole on every change (readers need no lock). A
        # read gets a copy: change the registry with register_pickle_by_value.
        return list_registry_pickle_by_value()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
