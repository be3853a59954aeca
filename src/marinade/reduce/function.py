"""Functions by value.

A function travels as ``types.FunctionType(code, globals, None, None, closure)``
followed by a BUILD step that fills in what may refer back to the function
itself (or to anything still being built): the globals its code uses, closure
cells holding non-trivial values, defaults and other attributes. Only the
standard library is named, so the payload loads with plain ``pickle``.

Functions from one module pickled in one ``dumps`` call share one globals dict
after load, as they did before: a ``global`` write in one is seen by the others.
"""

from __future__ import annotations

import builtins
import importlib
import operator
import types

from .. import _compat
from .._lookup import lookup_by_reference, submodules_used
from .._rebuild import cell, function
from . import _annotations
from ._annotations import string_names as _string_names
from ._expr import ATOMS, Call, canonical_module_name, fresh_name, sequence, stable
from .code import _info_cache, code_info, code_names, globals_used

_dict_update = dict.update
_getitem = operator.getitem
_FunctionType = types.FunctionType
_ModuleType = types.ModuleType
_import_module = importlib.import_module
# Bound once: read for every function pickled.
_CODE_TAG = _compat.CODE_TAG
_PY_3_12_PLUS = _compat.PY_3_12_PLUS
_HEAPTYPE = _compat.HEAPTYPE

class _Globals:
    """The rebuilt globals dict of one module, shared by all its functions in a payload."""

    __slots__ = ("source", "target", "planned", "submodules")

    def __init__(self, source: dict):
        self.source = source  # kept alive so its id stays unique during the dump
        name = source.get("__name__")
        # __name__ lets the rebuilt function (and classes it creates) report
        # the right __module__.
        self.target: dict = {} if name is None else {"__name__": canonical_module_name(name)}
        package = source.get("__package__")
        if package:
            # For relative imports in the code (``from .x import y`` in a
            # package's __init__: __name__ alone names no parent package).
            self.target["__package__"] = canonical_module_name(package)
        self.planned: set[str] = set(self.target)
        self.submodules: set[str] = set()  # imported at load by a planned global

    def fill(self, names, codes: tuple = (), code_attrs: frozenset | None = None) -> Call | None:
        """The effect that puts in ``target`` those of ``names`` not planned yet
        (and defined in the module), or None.

        ``codes`` (the code using ``names``) is searched for submodules of
        module globals, which the load must import (see _with_submodules);
        ``code_attrs`` is ``code_names(codes)``, when the caller has it.
        """
        source, planned = self.source, self.planned
        missing = [n for n in names if n not in planned and n in source]
        missing.sort()  # deterministic payload bytes whatever the hash seed
        planned.update(missing)
        update = {n: stable(source[n]) for n in missing}
        if codes:
            self._with_submodules(names, codes, update, code_attrs)
        if not update:
            return None
        return Call(_dict_update, (self.target, update))

    def _with_submodules(self, names, codes: tuple, update: dict,
                         code_attrs: frozenset | None) -> None:
        """Module globals of ``update`` (or planned before) whose submodules
        the code reads (``urllib.request.urlopen`` after ``import
        urllib.request``) become ``(module, import_module(sub), ...)[0]``."""
        modules = sorted(n for n in names if type(self.source.get(n)) is _ModuleType)
        if not modules:
            return
        attrs = code_names(codes) if code_attrs is None else code_attrs
        for name in modules:
            module = self.source[name]
            subs = [s for s in submodules_used(module, attrs) if s not in self.submodules]
            if subs:
                self.submodules.update(subs)
                update[name] = _importing(module, subs)

    def with_builtins(self) -> dict:
        """``target``, holding ``__builtins__``: for globals given to
        ``types.FunctionType`` directly (no reconstructor adds it at load),
        since 3.12+ C code that imports (``Generic[T]``) reads it from the
        calling function's globals."""
        target = self.target
        if "__builtins__" not in target:
            target["__builtins__"] = builtins
            self.planned.add("__builtins__")
        return target


def _importing(module: types.ModuleType, subs: list[str]) -> Call:
    """``module``, once ``subs`` (its submodules) are imported where it loads."""
    return Call(_getitem, ((module, *(Call(_import_module, (sub,)) for sub in subs)), 0))


def annotation_names(annotations: dict, fglobals: dict, used) -> set[str]:
    """Globals beyond ``used`` (the code's) that string annotations (PEP 563)
    mention, for get_type_hints where the function loads.

    An annotation naming a global that would not pickle
    (``Annotated[int, LOCK]``) gets none of its globals shipped: it stays a
    string that get_type_hints cannot resolve there, as with cloudpickle,
    rather than failing the dump. Names are not evaluated: no code runs.
    """
    names: set[str] = set()
    for value in annotations.values():
        if type(value) is str:
            extra = [name for name in _string_names(value)
                     if name in fglobals and name not in used and name not in names]
            if extra and all(_will_pickle(fglobals[name]) for name in extra):
                names.update(extra)
    return names


def _will_pickle(value) -> bool:
    if isinstance(value, type) or type(value) is _ModuleType:  # (the common case, inlined)
        return True
    return _annotations.will_pickle(value)


def _shared_globals(pickler, fglobals: dict) -> _Globals:
    shared = pickler._globals_by_id.get(id(fglobals))
    if shared is None:
        shared = pickler._globals_by_id[id(fglobals)] = _Globals(fglobals)
    return shared


def reduce_function(pickler, func: types.FunctionType):
    closure = func.__closure__
    if closure is None:  # (a class's method batch takes no closures)
        batched = pickler._batched
        if batched:
            hit = batched.get(id(func))
            if hit is not None:  # made by its class's method batch (methods.py)
                return _getitem, hit
    code = func.__code__
    fglobals = func.__globals__
    effects = []
    key = id(code)
    slot = None
    entry = _info_cache.get(key)  # code_info(code), its cache hit inlined
    if entry is not None and entry[0] is code:
        _, data, names, load = entry
    else:
        slots = pickler._code_slots
        slot = slots.get(key) if slots else None
        if slot is not None and slot[0] is code:
            # A method whose class ships its code in one table (reduce_class).
            # (Code already pickled on its own, found above, is shipped as
            # such: correct either way, and the closure path stays lean.)
            data = slot[1].item(slot[2])
            names = globals_used(code, fglobals)
        else:
            slot = None
            data, names, load = code_info(code)  # canonical bytes, global names
    annotations = func.__annotations__
    if annotations:
        extra = annotation_names(annotations, fglobals, names)
        if extra:
            names = names | extra
    # Perf: a function without globals or closure (most lambdas) needs the
    # shared globals dict only if its __module__ differs; see the end.
    shared = None
    if names or closure is not None:
        shared = pickler._globals_by_id.get(id(fglobals))  # _shared_globals, inlined
        if shared is None:
            shared = pickler._globals_by_id[id(fglobals)] = _Globals(fglobals)
        if names:  # (no call without names: it costs more than a closure's reduce)
            effect = shared.fill(names, (code,))
            if effect is not None:
                effects.append(effect)

    if closure is not None:
        cells_seen = pickler._cells_seen
        for cell in closure:
            key = id(cell)
            if key in cells_seen:
                continue
            cells_seen[key] = cell
            try:
                value = cell.cell_contents
            except ValueError:  # empty cell stays empty
                continue
            if type(value) not in ATOMS:
                pickler._deferred_cells.add(key)
                if type(value) is _ModuleType:  # (import x.y inside the enclosing function)
                    subs = submodules_used(value, code_names((code,)))
                    if subs:
                        value = _importing(value, subs)
                effects.append(Call(setattr, (cell, "cell_contents", value)))

    attrs = {}
    if func.__defaults__ is not None:
        attrs["__defaults__"] = func.__defaults__
    if func.__kwdefaults__ is not None:
        attrs["__kwdefaults__"] = func.__kwdefaults__
    if annotations:
        attrs["__annotations__"] = annotations
    if func.__name__ != code.co_name:
        attrs["__name__"] = func.__name__
    if func.__qualname__ != code.co_qualname:
        attrs["__qualname__"] = func.__qualname__
    module = func.__module__
    module_name = fglobals.get("__name__")  # what the rebuilt globals' __name__ says
    if module != module_name:
        attrs["__module__"] = canonical_module_name(module)
    consts = code.co_consts  # the docstring FunctionType takes (_compat.doc_from_code)
    if func.__doc__ != (consts[0] if consts and type(consts[0]) is str else None):
        attrs["__doc__"] = func.__doc__
    if _PY_3_12_PLUS and func.__type_params__:
        attrs["__type_params__"] = func.__type_params__
    fdict = func.__dict__
    if fdict:
        # __wrapped__, user attributes, ...: set by name where they load (see fresh_name)
        attrs.update(zip(map(fresh_name, fdict), fdict.values()))

    if closure is None and "." in func.__qualname__:
        # Maybe a method, pickled before its class: its class's method batch
        # must leave it out, or the load would make two (methods.py).
        pickler._loose.add(id(func))
    if slot is not None:
        return _reduce_tabled(pickler, fglobals, shared, data, closure, effects, attrs)
    if closure is not None:
        # Closures come by the thousand from one code object: FunctionType
        # called directly, on a code object the memo shares, loads about
        # twice as fast as a reconstructor call per closure.
        fn_globals = shared.target
        if "__builtins__" not in fn_globals:  # (checked here first: a closure's hot path)
            shared.with_builtins()
        args = (load, fn_globals, None, None, closure)
        if not effects and not attrs:
            return _FunctionType, args
        effect = sequence(effects) if effects else None
        return _FunctionType, args, (effect, attrs) if attrs else effect
    if not names and type(module) is str and module_name == module \
            and not fglobals.get("__package__"):
        # No globals to share or fill: the module name stands in for the dict.
        # (Only a str can: exec'd code without __name__ has __module__ None.
        # Code of a package's module may import relatively: see _Globals.)
        fn_globals = canonical_module_name(module)
    else:
        if shared is None:
            shared = _shared_globals(pickler, fglobals)
        fn_globals = shared.target
    args = (data, _CODE_TAG, fn_globals)
    if not effects and not attrs:
        return function, args
    effect = sequence(effects) if effects else None
    # BUILD: a lone None-valued effect is a valid (empty) state; attributes go
    # through the slot-state dict, which BUILD applies with setattr.
    return function, args, (effect, attrs) if attrs else effect


def _reduce_tabled(pickler, fglobals, shared, code_expr, closure, effects, attrs):
    """The end of ``reduce_function`` for a method whose code is in its class's
    table: ``types.FunctionType`` is called directly."""
    if shared is None:
        shared = _shared_globals(pickler, fglobals)
    target = shared.with_builtins()
    defaults = attrs.get("__defaults__")
    if defaults is not None and ATOMS.issuperset(map(type, defaults)):
        # Plain constants cannot refer back to the function: they go in the
        # FunctionType call instead of the state.
        del attrs["__defaults__"]
        args = (code_expr, target, None, defaults, closure)
    elif closure is not None:
        args = (code_expr, target, None, None, closure)
    else:
        args = (code_expr, target)
    if not effects and not attrs:
        return types.FunctionType, args
    effect = sequence(effects) if effects else None
    return types.FunctionType, args, (effect, attrs) if attrs else effect


def reduce_cell(pickler, obj: types.CellType):
    try:
        value = obj.cell_contents
    except ValueError:
        return cell, ()
    if type(value) in ATOMS:
        return cell, (value,)
    if id(obj) in pickler._deferred_cells:
        return cell, ()  # the owning function's state fills it
    # A cell pickled on its own: fill it right after it is memoized.
    return cell, (), (None, {"cell_contents": value})


_MISSING = object()
_object_getattribute = object.__getattribute__


def _defining_class(owner, func, name: str):
    """The class whose namespace makes ``getattr(owner, name)`` give back
    ``func`` bound to ``owner``, by a static look (no descriptor or
    ``__getattr__`` runs); None if the lookup would not find it."""
    if isinstance(owner, type):  # a classmethod, bound to its class
        for klass in owner.__mro__:
            attr = klass.__dict__.get(name, _MISSING)
            if attr is not _MISSING:
                return klass if type(attr) is classmethod and attr.__func__ is func else None
        return None
    kind = type(owner)
    if kind.__getattribute__ is not _object_getattribute:
        return None  # a custom lookup decides at load time: not ours to predict
    try:
        own = _object_getattribute(owner, "__dict__")
    except AttributeError:
        own = None
    if own and name in own:
        return None  # the instance's attribute shadows the class's
    for klass in kind.__mro__:
        attr = klass.__dict__.get(name, _MISSING)
        if attr is not _MISSING:
            return klass if attr is func else None
    return None


def reduce_bound_method(pickler, method: types.MethodType):
    """A bound method: ``getattr(owner, name)`` when that finds it in an
    importable class (pickle's way, and the smallest), else
    ``types.MethodType(func, owner)``.

    Plain pickle always looks the name up, so a function bound to one object
    by hand (``obj.forward = MethodType(new_forward, obj)``, the usual
    instance patch) came back as the class's method of that name, or failed
    on load when the class has none. A class sent by value may not have the
    name yet when the lookup runs: a bound method kept in the class's own
    state (``A.factory = A.make``; pydantic keeps its bound validators in
    ``__pydantic_decorators__``) is rebuilt before the state sets ``make``.
    """
    func = method.__func__
    owner = method.__self__
    name = getattr(func, "__name__", None)
    if type(name) is str:
        klass = _defining_class(owner, func, name)
        if klass is not None and (klass.__flags__ & _HEAPTYPE == 0
                                  or lookup_by_reference(klass) is not None):
            return getattr, (owner, name)
    return types.MethodType, (func, owner)
