"""Find where in an object graph pickling failed, for the error message.

Runs only after a dump has failed: it walks the graph the way the pickler
does (function globals and closure cells, instance state, container items)
and pickles each candidate alone, descending into the first one that fails,
until it reaches an object whose parts all pickle. That object and the path
to it make the message: ``obj.handler.__closure__[0].cell_contents -> _thread.lock``.
"""

from __future__ import annotations

import io
import pickle
import types

PICKLING_FAILURES = (pickle.PicklingError, TypeError, AttributeError, ValueError,
                     NotImplementedError)
_MAX_DEPTH = 60


def _type_name(obj) -> str:
    kind = type(obj)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def _children(obj, protocol):
    """(path suffix, child) pairs, in the order the pickler visits them."""
    if isinstance(obj, (list, tuple)):
        return [(f"[{i}]", item) for i, item in enumerate(obj)]
    if isinstance(obj, dict):
        return [(f"[{key!r}]", value) for key, value in obj.items()]
    if isinstance(obj, (set, frozenset)):
        return [(f"{{{item!r}}}", item) for item in obj]
    if isinstance(obj, types.FunctionType):
        from .reduce.code import global_names

        found = []
        fglobals = obj.__globals__
        for name in sorted(global_names(obj.__code__)):
            if name in fglobals:
                found.append((f".__globals__[{name!r}]", fglobals[name]))
        for i, cell in enumerate(obj.__closure__ or ()):
            try:
                found.append((f".__closure__[{i}].cell_contents", cell.cell_contents))
            except ValueError:
                pass
        for i, value in enumerate(obj.__defaults__ or ()):
            found.append((f".__defaults__[{i}]", value))
        for key, value in (obj.__kwdefaults__ or {}).items():
            found.append((f".__kwdefaults__[{key!r}]", value))
        for key, value in obj.__dict__.items():
            found.append((f".{key}", value))
        return found
    if isinstance(obj, type):
        return [(f".{key}", value) for key, value in obj.__dict__.items()
                if key not in ("__dict__", "__weakref__")]
    try:
        reduced = obj.__reduce_ex__(protocol)
    except Exception:
        return []
    if not isinstance(reduced, tuple):
        return []
    found = []
    if len(reduced) > 1 and isinstance(reduced[1], tuple):
        args = reduced[1]
        # copyreg.__newobj__(cls, *args): the class is args[0]
        found.extend((f".__reduce__()[1][{i}]", a) for i, a in enumerate(args) if a is not obj)
    state = reduced[2] if len(reduced) > 2 else None
    if isinstance(state, tuple) and len(state) == 2:
        dict_state, slot_state = state
        for part in (dict_state, slot_state):
            if isinstance(part, dict):
                found.extend((f".{k}", v) for k, v in part.items())
    elif isinstance(state, dict):
        found.extend((f".{k}", v) for k, v in state.items())
    elif state is not None:
        found.append((".__getstate__()", state))
    if len(reduced) > 3 and reduced[3] is not None:
        try:
            found.extend((f"[{i}]", item) for i, item in enumerate(list(reduced[3])))
        except Exception:
            pass
    if len(reduced) > 4 and reduced[4] is not None:
        try:
            found.extend((f"[{k!r}]", v) for k, v in list(reduced[4]))
        except Exception:
            pass
    return found


def _fails(obj, pickler_cls, protocol):
    try:
        pickler = pickle.Pickler.__new__(pickler_cls)
        pickler_cls.__init__(pickler, io.BytesIO(), protocol)
        # Bypass our own dump() so the check does not recurse into diagnosis.
        pickle.Pickler.dump(pickler, obj)
    except RecursionError:
        return None
    except Exception as exc:  # noqa: BLE001 - any failure marks the culprit
        return exc
    return None


def find_culprit(obj, pickler_cls, protocol, root_name="obj"):
    """(path, culprit, error) of the innermost failing object, or None."""
    error = _fails(obj, pickler_cls, protocol)
    if error is None:
        return None
    path = root_name
    seen = {id(obj)}
    for _ in range(_MAX_DEPTH):
        for suffix, child in _children(obj, protocol):
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


def explain_failure(obj, exc, pickler_cls, protocol) -> str:
    found = find_culprit(obj, pickler_cls, protocol)
    if found is None:
        return f"cannot pickle {_type_name(obj)} object: {exc}"
    path, culprit, error = found
    return f"cannot pickle {path} -> {_type_name(culprit)}: {error}"
