"""Reducers for generators and coroutines.

A suspended (or not yet started) one pickles as::

    new_generator(CODE_TAG, MAGIC, function, code digest)   -> a new generator
    set_frame_state(<that generator>, state)                 (pickle's state_setter)

so that the generator is memoized before its state is pickled: a local that
refers back to the generator (or to a structure holding it) pickles fine. A
finished one pickles as ``finished_generator(code, name, qualname)``. The
state is a dict (see ``restore.set_frame_state``) whose keys name the frame's
parts, so that a value that cannot be pickled is reported with its path, e.g.
``obj.f_locals['sock'] -> socket.socket``.
"""

from __future__ import annotations

import types
from importlib.util import MAGIC_NUMBER

from .. import _compat
from .._errors import PicklingError
from . import FramesUnavailable, engine, model, restore
from .model import NULL

_KINDS = {types.GeneratorType: ("generator", "gi_code"),
          types.CoroutineType: ("coroutine", "cr_code"),
          types.AsyncGeneratorType: ("async generator", "ag_code")}


def _refuse(kind: str, obj, why: str) -> PicklingError:
    return PicklingError(f"cannot pickle {kind} {obj.__qualname__}: {why}")


def reduce_suspended(pickler, obj):
    """Reduce a generator or coroutine (see the module docstring)."""
    kind, code_attr = _KINDS[type(obj)]
    if getattr(pickler, "_standalone_state", None) is not None:
        raise _refuse(kind, obj, "a standalone payload cannot carry a suspended frame (it "
                                 "needs marinade installed where it loads); pickle it without "
                                 "standalone=True")
    try:
        frames = engine()
    except FramesUnavailable as exc:
        raise _refuse(kind, obj, str(exc)) from None
    code = getattr(obj, code_attr)
    try:
        status = frames.status(obj)
    except ValueError as exc:
        raise _refuse(kind, obj, str(exc)) from None
    if status == "running":
        raise _refuse(kind, obj, "it is running (a generator cannot pickle itself, nor "
                                 "be pickled from a thread while it runs)")
    if type(obj) is types.AsyncGeneratorType and frames.running_async(obj):
        raise _refuse(kind, obj, "it is in the middle of an iteration (an asend() or athrow() "
                                 "is awaiting inside it); pickle it between iterations")
    try:
        if status == "finished":
            return restore.finished_generator, (code, obj.__name__, obj.__qualname__)
        info = model.code_info(code)
        state, func = frames.read(obj, info)
    except (model.UnsupportedCode, ValueError) as exc:
        raise _refuse(kind, obj, f"its frame cannot be saved: {exc}") from None

    if type(func) is not types.FunctionType or func.__code__ is not code:
        # The function's code was replaced after the generator was made: ship
        # a function with the code the frame runs.
        nfree = len(code.co_freevars)
        closure = tuple(state.fast[len(state.fast) - nfree:]) if nfree else None
        fn_globals = func.__globals__ if type(func) is types.FunctionType else {}
        func = types.FunctionType(code, fn_globals, obj.__name__, None, closure)

    names = info.names
    saved: dict = {
        "f_lasti": state.lasti,
        "f_locals": {names[i]: value for i, value in enumerate(state.fast) if value is not NULL},
    }
    stack = state.stack
    if stack:
        saved["stack"] = [None if value is NULL else value for value in stack]
        nulls = tuple(i for i, value in enumerate(stack) if value is NULL)
        if nulls:
            saved["stack_nulls"] = nulls
        iterators = tuple(i for i, value in enumerate(stack)
                          if value is not NULL and model.is_iterator(value))
        if iterators:
            saved["stack_iterators"] = iterators
    if state.exc_value is not None:
        saved["exc_value"] = state.exc_value
    if obj.__name__ != func.__name__:
        saved["__name__"] = obj.__name__
    if obj.__qualname__ != func.__qualname__:
        saved["__qualname__"] = obj.__qualname__
    return (restore.new_generator, (_compat.CODE_TAG, MAGIC_NUMBER, func, info.digest), saved,
            None, None, restore.set_frame_state)
