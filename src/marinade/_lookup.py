"""Can the loading side import this object by name, or must it travel by value?

The answer for a function or class is "by reference" exactly when
``getattr(import_module(obj.__module__), obj.__qualname__) is obj`` would hold
in a fresh process, which we approximate with the live ``sys.modules`` (the
module must already be imported for the object to exist). ``__main__`` and
modules registered with :func:`register_pickle_by_value` are always by value.

This never scans ``sys.modules``: one dict lookup and an attribute walk per
object, whatever the size of the program.
"""

from __future__ import annotations

import sys
import threading
import types

_registry_lock = threading.Lock()
# Replaced wholesale (copy on write) so readers never need the lock.
_by_value_modules: frozenset[str] = frozenset()

_MAIN_NAMES = frozenset({"__main__", "__mp_main__"})


def register_pickle_by_value(module: types.ModuleType) -> None:
    """Pickle everything defined in ``module`` (and its submodules) by value.

    Use it for code that the loading side cannot import: a module next to a
    notebook, a package under development that workers do not have.
    """
    global _by_value_modules
    _check_module(module)
    name = module.__name__
    if sys.modules.get(name) is not module:
        raise ValueError(
            f"{module!r} is not imported as {name!r} in sys.modules: import it with an "
            "import statement, then register the module object"
        )
    with _registry_lock:
        _by_value_modules = _by_value_modules | {name}


def unregister_pickle_by_value(module: types.ModuleType) -> None:
    """Undo :func:`register_pickle_by_value`."""
    global _by_value_modules
    _check_module(module)
    name = module.__name__
    with _registry_lock:
        if name not in _by_value_modules:
            raise ValueError(f"{module!r} is not registered for pickling by value")
        _by_value_modules = _by_value_modules - {name}


def _check_module(module) -> None:
    # ValueError, like cloudpickle, so code written against either catches it.
    if isinstance(module, types.ModuleType):
        return
    if isinstance(module, str):
        raise ValueError(
            f"expected a module object, got the string {module!r}: import the module and "
            "pass the module itself"
        )
    raise ValueError(f"expected a module, got {type(module).__name__}: {module!r}")


def list_registry_pickle_by_value() -> set[str]:
    """Names of the modules registered for pickling by value."""
    return set(_by_value_modules)


def module_is_by_value(modname: str | None) -> bool:
    """True if objects from module ``modname`` must travel by value."""
    if modname is None or modname in _MAIN_NAMES:
        return True
    registered = _by_value_modules
    if not registered:
        return False
    if modname in registered:
        return True
    # submodules of a registered package
    while "." in modname:
        modname = modname.rpartition(".")[0]
        if modname in registered:
            return True
    return False


def lookup_by_reference(obj) -> tuple[str, str] | None:
    """``(module, qualname)`` if ``obj`` can be imported by name, else None."""
    modname = getattr(obj, "__module__", None)
    if type(modname) is not str or module_is_by_value(modname):
        return None
    qualname = getattr(obj, "__qualname__", None)
    if type(qualname) is not str or "<" in qualname:  # <locals>, <lambda>
        return None
    module = sys.modules.get(modname)
    if module is None:
        return None
    if getattr(module, "__spec__", None) is None and modname != "builtins":
        # Built with types.ModuleType(...) or exec: nothing to import elsewhere.
        if getattr(module, "__file__", None) is None:
            return None
    target = module
    for part in qualname.split("."):
        target = getattr(target, part, _MISSING)
        if target is _MISSING:
            return None
    if target is not obj:
        return None
    return modname, qualname


def is_dynamic_module(module: types.ModuleType) -> bool:
    """A module that a fresh process could not import by its name."""
    name = module.__name__
    if module_is_by_value(name):
        return True
    if sys.modules.get(name) is not module:
        return True
    spec = getattr(module, "__spec__", None)
    if spec is None:
        if name in sys.builtin_module_names or getattr(module, "__file__", None) is not None:
            return False
        # A submodule its package puts in sys.modules while it is imported
        # (xml.parsers.expat.errors, made by pyexpat): importing the name
        # imports the package, which registers it again.
        parent_name, _, leaf = name.rpartition(".")
        parent = sys.modules.get(parent_name) if parent_name else None
        return parent is None or getattr(parent, leaf, None) is not module \
            or is_dynamic_module(parent)
    return False


def submodules_used(module: types.ModuleType, names) -> list[str]:
    """Submodules of ``module`` that code using it may reach by attribute.

    ``import urllib.request`` binds ``urllib``; code then reads
    ``urllib.request``, which exists in a fresh process only once something
    imports the submodule. ``names`` are the attribute names the code uses:
    imported submodules among them (and theirs, recursively) are returned,
    sorted, for the loader to import. One dict lookup per name; no scan of
    ``sys.modules``.
    """
    found: list[str] = []
    stack = [module]
    while stack:
        parent = stack.pop()
        base = parent.__name__
        for attr in names:
            dotted = f"{base}.{attr}"
            sub = sys.modules.get(dotted)
            if sub is not None and dotted not in found and getattr(parent, attr, None) is sub \
                    and not is_dynamic_module(sub):
                found.append(dotted)
                stack.append(sub)
    found.sort()
    return found


_MISSING = object()
