"""Find where in an object graph pickling failed, for the error message.

Runs only after a dump has failed: it walks the graph the way the pickler
does (function globals and closure cells, class attributes, the reduce tuple
of everything else) and pickles each candidate alone, descending into the
first one that fails, until it reaches an object whose parts all pickle. That
object and the path to it make the message:
``obj.handler.__closure__[0].cell_contents -> _thread.lock``.
"""

from __future__ import annotations

import copyreg
import functools
import io
import pickle
import sys
import types
import weakref

from ._compat import HEAPTYPE as _HEAPTYPE

PICKLING_FAILURES = (pickle.PicklingError, TypeError, AttributeError, ValueError,
                     NotImplementedError)
_MAX_DEPTH = 60
_MISSING = object()
# Attributes under which builtin wrappers (methods, staticmethod, property,
# functools.partial...) keep what their reduce tuple carries, so that the path
# reads ``obj.method.__func__`` rather than ``obj.method.__reduce__()[1][0]``.
_PART_NAMES = ("__func__", "__self__", "fget", "fset", "fdel", "func", "args", "keywords",
               "__wrapped__", "default_factory")


def _key(key) -> str:
    """repr of a dict key or set item for a path, cut short if long."""
    text = repr(key)
    return text if len(text) <= 40 else text[:37] + "..."


def _type_name(obj) -> str:
    kind = type(obj)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def _new_pickler(pickler_cls, protocol):
    """A pickler of the user's class writing to memory, or marinade's own if
    that class cannot be built with the standard arguments."""
    try:
        return pickler_cls(io.BytesIO(), protocol)
    except Exception:  # noqa: BLE001 - a subclass with its own __init__ signature
        from ._pickler import Pickler

        return Pickler(io.BytesIO(), protocol)


def _fails(obj, pickler_cls, protocol):
    """The exception pickling ``obj`` alone raises, or None."""
    pickler = _new_pickler(pickler_cls, protocol)
    try:
        # pickle.Pickler.dump, not ours: the check must not diagnose recursively.
        pickle.Pickler.dump(pickler, obj)
    except RecursionError:
        return None
    except Exception as exc:  # noqa: BLE001 - any failure marks the culprit
        return exc
    return None


def _function_children(func: types.FunctionType) -> list:
    from .reduce.code import global_names
    from .reduce.function import annotation_names

    found = []
    fglobals = func.__globals__
    names = set(global_names(func.__code__))
    annotations = func.__annotations__
    if annotations:  # PEP 563 annotations: the names they mention travel too (those that pickle)
        names.update(annotation_names(annotations, fglobals, names))
    for name in sorted(names):
        if name in fglobals:
            found.append((f".__globals__[{name!r}]", fglobals[name]))
    for i, cell in enumerate(func.__closure__ or ()):
        try:
            found.append((f".__closure__[{i}].cell_contents", cell.cell_contents))
        except ValueError:  # empty cell
            pass
    for i, value in enumerate(func.__defaults__ or ()):
        found.append((f".__defaults__[{i}]", value))
    for key, value in (func.__kwdefaults__ or {}).items():
        found.append((f".__kwdefaults__[{key!r}]", value))
    for key, value in annotations.items():
        found.append((f".__annotations__[{key!r}]", value))
    for i, value in enumerate(getattr(func, "__type_params__", ())):
        found.append((f".__type_params__[{i}]", value))
    for key, value in func.__dict__.items():
        found.append((f".{key}", value))
    return found


def _class_children(cls: type) -> list:
    found = [(f".{key}", value) for key, value in cls.__dict__.items()
             if key not in ("__dict__", "__weakref__")]
    if "__annotations__" in cls.__dict__:
        # What a class by value ships: its string annotations evaluated.
        from .reduce.typing import resolved_class_annotations

        try:
            resolved = resolved_class_annotations(cls)
        except Exception:  # noqa: BLE001 - the raw ones then
            resolved = None
        if resolved is not None:
            found = [(key, resolved if key == ".__annotations__" else value)
                     for key, value in found]
    found.extend((f".__bases__[{i}]", base) for i, base in enumerate(cls.__bases__))
    if type(cls) is not type:
        found.append((".__class__", type(cls)))
    return found


def _reduce(obj, pickler, protocol):
    """The reduce tuple the pickler would use for ``obj``, or None."""
    try:
        reduced = pickler.reducer_override(obj)
        if reduced is NotImplemented:
            table = getattr(pickler, "dispatch_table", copyreg.dispatch_table)
            reducer = table.get(type(obj))
            reduced = reducer(obj) if reducer is not None else obj.__reduce_ex__(protocol)
    except Exception:  # noqa: BLE001 - no reduce tuple: no parts to descend into
        return None
    return reduced if isinstance(reduced, tuple) else None


def _part_name(obj, part, index: int) -> str:
    if part is type(obj):
        return ".__class__"
    kind = type(obj)
    module = kind.__module__
    if not kind.__flags__ & _HEAPTYPE or (
            type(module) is str and module.partition(".")[0] in sys.stdlib_module_names):
        # Builtin or stdlib wrapper: name the attribute holding this part.
        # (User classes are skipped: their attributes may run arbitrary code.)
        for attr in _PART_NAMES:
            try:
                if getattr(obj, attr, _MISSING) is part:
                    return f".{attr}"
            except Exception:  # noqa: BLE001, S112
                continue
    return f".__reduce__()[1][{index}]"


def _state_children(state) -> list:
    if isinstance(state, tuple) and len(state) == 2 and all(
            part is None or isinstance(part, dict) for part in state):
        found = []
        for part in state:  # (instance dict, slots dict)
            if part:
                found.extend((f".{k}", v) for k, v in part.items())
        return found
    if isinstance(state, dict):
        return [(f".{k}", v) for k, v in state.items()]
    return [(".__getstate__()", state)]


def _children(obj, pickler, protocol) -> list:
    """(path suffix, child) pairs: the parts of ``obj`` the pickler writes."""
    kind = type(obj)
    # Exact types only: a subclass (defaultdict, a list with attributes) may
    # carry more than its items, which its reduce tuple shows.
    if kind is list or kind is tuple:
        return [(f"[{i}]", item) for i, item in enumerate(obj)]
    if kind is dict or kind is types.MappingProxyType:
        return [(f"[{_key(key)}]", value) for key, value in obj.items()]
    if kind is set or kind is frozenset:
        return [(f"{{{_key(item)}}}", item) for item in obj]
    if isinstance(obj, tuple) and isinstance(getattr(kind, "_fields", None), tuple):
        return [(f".{name}", value) for name, value in zip(kind._fields, obj)]
    if isinstance(obj, types.FunctionType):
        return _function_children(obj)
    if isinstance(obj, type):
        return _class_children(obj)
    if isinstance(obj, functools.partial):
        return [(".func", obj.func),
                *((f".args[{i}]", a) for i, a in enumerate(obj.args)),
                *((f".keywords[{k!r}]", v) for k, v in obj.keywords.items()),
                *((f".{k}", v) for k, v in vars(obj).items())]
    if isinstance(obj, types.CellType):
        try:
            return [(".cell_contents", obj.cell_contents)]
        except ValueError:
            return []
    if isinstance(obj, BaseException):
        found = [(f".args[{i}]", a) for i, a in enumerate(obj.args)]
        found.extend((f".{k}", v) for k, v in getattr(obj, "__dict__", {}).items())
        return found + [(f".{name}", getattr(obj, name)) for name in
                        ("__cause__", "__context__") if getattr(obj, name) is not None]
    if kind is weakref.ref or kind is weakref.WeakMethod:
        referent = obj()
        return [] if referent is None else [("()", referent)]

    reduced = _reduce(obj, pickler, protocol)
    if reduced is None:
        return []
    found = []
    func = reduced[0]
    args = reduced[1] if len(reduced) > 1 and isinstance(reduced[1], tuple) else ()
    if func is copyreg.__newobj_ex__ and len(args) == 3:
        cls, new_args, new_kwargs = args
        found.append((".__class__", cls))
        found.extend((f".__getnewargs_ex__()[0][{i}]", a) for i, a in enumerate(new_args))
        found.extend((f".__getnewargs_ex__()[1][{k!r}]", v) for k, v in new_kwargs.items())
    elif func is copyreg.__newobj__ and args:
        found.append((".__class__", args[0]))
        found.extend((f".__getnewargs__()[{i}]", a) for i, a in enumerate(args[1:]))
    else:
        found.extend((_part_name(obj, a, i), a) for i, a in enumerate(args) if a is not obj)
    if len(reduced) > 2 and reduced[2] is not None:
        found.extend(_state_children(reduced[2]))
    if len(reduced) > 3 and reduced[3] is not None:
        try:
            found.extend((f"[{i}]", item) for i, item in enumerate(list(reduced[3])))
        except Exception:  # noqa: BLE001, S110 - a broken iterator: nothing to report
            pass
    if len(reduced) > 4 and reduced[4] is not None:
        try:
            found.extend((f"[{_key(k)}]", v) for k, v in list(reduced[4]))
        except Exception:  # noqa: BLE001, S110
            pass
    return found


def find_culprit(obj, pickler_cls, protocol, root_name="obj"):
    """(path, culprit, error) of the innermost failing object, or None if
    ``obj`` pickles fine on its own."""
    error = _fails(obj, pickler_cls, protocol)
    if error is None:
        return None
    pickler = _new_pickler(pickler_cls, protocol)
    path = root_name
    seen = {id(obj)}  # objects on the path: a cycle must not send us round
    for _ in range(_MAX_DEPTH):
        for suffix, child in _children(obj, pickler, protocol):
            if id(child) in seen:
                continue
            child_error = _fails(child, pickler_cls, protocol)
            if child_error is not None:
                seen.add(id(child))
                path += suffix
                obj, error = child, child_error
                break
        else:
            break
    return path, obj, error


def _culprit_message(obj, pickler_cls, protocol, *, below_root: bool) -> str | None:
    """``cannot pickle <path> -> <type>: <error>`` for the innermost failing
    object, or None if none is found (or, ``below_root``, it is ``obj``)."""
    try:
        found = find_culprit(obj, pickler_cls, protocol)
    except Exception:  # noqa: BLE001 - the diagnosis must never hide the real error
        return None
    if found is None or (below_root and found[0] == "obj"):
        return None
    path, culprit, error = found
    return f"cannot pickle {path} -> {_type_name(culprit)}: {error}"


def explain_failure(obj, exc, pickler_cls, protocol) -> str:
    """Message for a failed dump of ``obj``: the path to the culprit and its type."""
    message = _culprit_message(obj, pickler_cls, protocol, below_root=False)
    if message is None:
        return f"cannot pickle {_type_name(obj)} object: {exc}"
    return message


def locate_refusal(obj, pickler_cls, protocol) -> str | None:
    """The message of marinade's own refusal of a part of ``obj``, with the
    path to it (``cannot pickle obj['jobs'][0] -> async_generator: ...``), or
    None when that is ``obj`` itself or cannot be found again."""
    return _culprit_message(obj, pickler_cls, protocol, below_root=True)
