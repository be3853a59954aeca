"""marinade: pickle Python code by value.

Lambdas, closures, nested functions and classes defined in ``__main__``,
notebooks or ``exec``'d code travel with their code, so that a fresh process
that cannot import them still loads them, with plain ``pickle``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._errors import PicklingError, UnpicklingError
from ._lookup import (
    list_registry_pickle_by_value,
    register_pickle_by_value,
    unregister_pickle_by_value,
)
from ._pickler import DEFAULT_PROTOCOL, Pickler, dump, dumps, load, loads

if TYPE_CHECKING:  # (names for the hints below; their modules load on first call)
    from multiprocessing.context import BaseContext

    from .integrations.wrap import Wrapped
    from .safety.explain import Explanation
    from .safety.inspect import Report

CloudPickler = Pickler  # for code written against cloudpickle's API

__version__ = "0.6.0"

__all__ = [
    "DEFAULT_PROTOCOL",
    "CloudPickler",
    "Pickler",
    "PicklingError",
    "UnpicklingError",
    "dump",
    "dumps",
    "list_registry_pickle_by_value",
    "load",
    "loads",
    "register_pickle_by_value",
    "unregister_pickle_by_value",
]

# integrations (issue 5) ------------------------------------------------------
# Thin wrappers: each imports its module on first call, so ``import marinade``
# never loads multiprocessing's machinery (and never torch or dask).


def get_context(method: str | None = None) -> BaseContext:
    """A multiprocessing context whose pickling goes through marinade.

    Mirrors ``multiprocessing.get_context(method)``; use it wherever a context
    is accepted (``ctx.Pool()``, ``ProcessPoolExecutor(mp_context=ctx)``,
    ``DataLoader(multiprocessing_context=ctx)``). Changes nothing global.
    """
    from .integrations.multiprocessing import get_context as _get_context

    return _get_context(method)


def wrap(obj: Any) -> Wrapped:
    """Wrap ``obj`` so that any pickle-based framework can carry it.

    Pickled, the wrapper becomes a standalone marinade payload that turns back
    into ``obj`` on arrival, where marinade need not be installed. Calling
    the wrapper calls ``obj``.
    """
    from .integrations.wrap import wrap as _wrap

    return _wrap(obj)


def patch_multiprocessing() -> None:
    """Make multiprocessing pickle with marinade, process-wide (explicit opt-in)."""
    from .integrations.multiprocessing import patch_multiprocessing as _patch

    _patch()


def unpatch_multiprocessing() -> None:
    """Undo ``patch_multiprocessing()`` exactly."""
    from .integrations.multiprocessing import unpatch_multiprocessing as _unpatch

    _unpatch()


__all__ += ["get_context", "patch_multiprocessing", "unpatch_multiprocessing", "wrap"]
# end of integrations (issue 5) -----------------------------------------------

# safety (issue 6) ------------------------------------------------------------
# Signed payloads (dumps/loads key=), restricted loading (loads allow=),
# inspection and explanations. marinade.safety is imported on first call,
# never by ``import marinade``.
from ._errors import RestrictedError, SignatureError  # noqa: E402


def inspect(data: Any, *, key: Any = None) -> Report:
    """Report what loading ``data`` would import, call and ship, without loading it.

    ``data``: bytes, a binary file or a path. Returns a report whose
    ``dangerous`` attribute is the verdict; ``str(report)`` reads well and
    ``report.as_dict()`` is JSON-ready. See docs/security.md for what
    inspection can and cannot promise.
    """
    from .safety.inspect import inspect as _inspect

    return _inspect(data, key=key)


def explain(obj: Any, *, depth: int = 4, max_children: int = 50, protocol: int | None = None,
            name: str = "obj") -> Explanation:
    """What pickling ``obj`` would capture (globals, closure cells, modules,
    by-value and by-reference decisions), as a tree with sizes; paths start
    with ``name``, as in PicklingError messages."""
    from .safety.explain import explain as _explain

    return _explain(obj, depth=depth, max_children=max_children, protocol=protocol,
                    name=name)


__all__ += ["RestrictedError", "SignatureError", "explain", "inspect"]
# end of safety (issue 6) -----------------------------------------------------

# cloudpickle compatibility ---------------------------------------------------
# ``import marinade as cloudpickle`` also serves ``cloudpickle.cloudpickle.X``,
# ``cloudpickle.cloudpickle_fast.X`` and the helpers cloudpickle re-exports at
# top level. Loaded on first access, so ``import marinade`` stays as cheap.
_CLOUDPICKLE_SUBMODULES = frozenset({"cloudpickle", "cloudpickle_fast"})
_CLOUDPICKLE_HELPERS = frozenset({"subimport", "dynamic_subimport", "instance",
                                  "is_tornado_coroutine"})


def __getattr__(name):
    if name in _CLOUDPICKLE_SUBMODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    if name in _CLOUDPICKLE_HELPERS:
        from . import cloudpickle as _cloudpickle

        return getattr(_cloudpickle, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
# end of cloudpickle compatibility --------------------------------------------
