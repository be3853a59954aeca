"""Load-time reconstructors of generators and coroutines.

THESE NAMES ARE A PUBLIC, FOREVER PAYLOAD API: payloads name
``marinade.frames.restore.new_generator``, ``set_frame_state`` and
``finished_generator``. Never rename or remove them, never change what an
argument means; extend only with new optional state keys.

A payload rebuilds a suspended generator (coroutine, async generator) in two
steps:

1. ``new_generator(tag, magic, func, digest)`` checks that this interpreter
   can run the frame, then calls ``func`` to get a generator that has not run
   any of its body;
2. ``set_frame_state(gen, state)`` (pickle's ``state_setter``, called once the
   generator is memoized) overwrites that generator's frame with ``state``,
   after checking it against the code.

Any check that fails raises ``marinade.UnpicklingError`` before the frame is
touched.
"""

from __future__ import annotations

import sys
import types

from .._errors import UnpicklingError

__all__ = ["finished_generator", "new_generator", "set_frame_state"]

_HERE = sys.version_info[0] * 256 + sys.version_info[1]
_SUSPENDABLE = (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType)
_CODE_ATTRS = {types.GeneratorType: "gi_code", types.CoroutineType: "cr_code",
               types.AsyncGeneratorType: "ag_code"}


def _version(tag: int) -> str:
    return f"CPython {tag // 256}.{tag % 256}"


_loaded = None


def _internals():
    """(engine, model, FrameError), imported on first use."""
    global _loaded
    if _loaded is None:
        from . import FramesUnavailable, engine, model
        from ._engine import FrameError

        try:
            _loaded = (engine(), model, FrameError)
        except FramesUnavailable as exc:
            raise UnpicklingError(
                f"cannot restore a suspended generator or coroutine: {exc}") from None
    return _loaded


_MAGIC: bytes | None = None


def _magic() -> bytes:
    global _MAGIC
    if _MAGIC is None:
        from importlib.util import MAGIC_NUMBER

        _MAGIC = MAGIC_NUMBER
    return _MAGIC


def _start(func: types.FunctionType):
    """Call ``func`` with placeholder arguments: for a generator or coroutine
    function this only builds the (not started) generator object."""
    code = func.__code__
    npos = code.co_argcount
    kwonly = code.co_varnames[npos:npos + code.co_kwonlyargcount]
    return func(*(None,) * npos, **dict.fromkeys(kwonly))


def new_generator(tag: int, magic: bytes, func: types.FunctionType, digest: bytes):
    """A new, not started generator or coroutine of ``func``, to restore into.

    - ``tag``: ``major * 256 + minor`` of the CPython that saved the frame;
    - ``magic``: that interpreter's bytecode magic number
      (``importlib.util.MAGIC_NUMBER``): frames are only valid for the exact
      bytecode they ran;
    - ``func``: the generator (or ``async def``) function, by reference or
      by value;
    - ``digest``: ``model.code_digest`` of the code the frame ran; a function
      imported by reference whose code has changed since is refused.
    """
    if tag != _HERE:
        raise UnpicklingError(
            f"this payload holds a suspended generator or coroutine saved by {_version(tag)}; "
            f"it cannot resume on {_version(_HERE)}: frames and bytecode differ between "
            "versions. Load it with the same Python version.")
    if magic != _magic():
        raise UnpicklingError(
            f"this payload holds a suspended generator or coroutine saved by a build of "
            f"{_version(tag)} with bytecode magic {bytes(magic).hex()}, this interpreter has "
            f"{_magic().hex()}: it cannot resume here")
    _, model, _ = _internals()
    if type(func) is not types.FunctionType:
        raise UnpicklingError(f"expected the generator's function, got {type(func).__name__}")
    try:
        info = model.code_info(func.__code__)
    except model.UnsupportedCode as exc:
        raise UnpicklingError(f"cannot restore a generator of {func.__qualname__}: {exc}") \
            from None
    if info.digest != digest:
        raise UnpicklingError(
            f"cannot resume a generator of {func.__module__}.{func.__qualname__}: the "
            "function's code is not the code the payload was saved from (the module "
            "changed since?)")
    gen = _start(func)
    if type(gen) not in _SUSPENDABLE:
        raise UnpicklingError(f"{func.__qualname__} did not make a generator or coroutine")
    return gen


def set_frame_state(gen, state: dict) -> None:
    """Make ``gen`` (from ``new_generator``) stand where the saved frame stood.

    ``state`` keys (absent optional keys mean their default):

    - ``"f_lasti"``: byte offset of the YIELD_VALUE the frame waits at, -1 if
      it had not started;
    - ``"f_locals"``: ``{name: value}`` of the bound fast slots: local
      variables, then cell and free variables as their cell objects;
    - ``"stack"`` (optional, default empty): the value stack, bottom first;
    - ``"stack_nulls"`` (optional): indexes in ``stack`` of empty (NULL)
      entries, stored there as None;
    - ``"stack_iterators"`` (optional): indexes in ``stack`` that must hold
      iterators after loading (the interpreter assumes they are);
    - ``"exc_value"`` (optional): the exception being handled (suspended in
      an ``except`` block);
    - ``"__name__"``, ``"__qualname__"`` (optional): names that differ from
      the function's.
    """
    if type(gen) not in _SUSPENDABLE:
        raise UnpicklingError(f"expected a generator or coroutine, got {type(gen).__name__}")
    if type(state) is not dict:
        raise UnpicklingError("malformed generator state")
    engine, model, FrameError = _internals()
    code = getattr(gen, _CODE_ATTRS[type(gen)])
    try:
        info = model.code_info(code)
        lasti = state["f_lasti"]
        fast = [model.NULL] * info.nlocalsplus
        for name, value in state["f_locals"].items():
            index = info.index.get(name)
            if index is None:
                raise FrameError(f"{code.co_qualname} has no local {name!r}")
            fast[index] = value
        stack = list(state.get("stack", ()))
        for i in state.get("stack_nulls", ()):
            if type(i) is not int or not 0 <= i < len(stack):
                raise FrameError("malformed stack")
            stack[i] = model.NULL
        if type(lasti) is not int:
            raise FrameError("malformed offset")
        engine.write(gen, info, model.FrameState(lasti, fast, stack, state.get("exc_value"),
                                                 tuple(state.get("stack_iterators", ()))))
    except (KeyError, AttributeError, TypeError, ValueError) as exc:  # FrameError, UnsupportedCode
        raise UnpicklingError(f"cannot restore the frame of {code.co_qualname}: {exc}") from None
    for attr in ("__name__", "__qualname__"):
        if attr in state:
            setattr(gen, attr, state[attr])


def finished_generator(code: types.CodeType, name: str, qualname: str):
    """A generator (or coroutine) of ``code`` that has finished: ``next`` raises
    StopIteration, ``gi_frame`` is None. ``name`` and ``qualname`` are its
    ``__name__`` and ``__qualname__``. Runs none of ``code``.
    """
    if type(code) is not types.CodeType or not code.co_flags & (0x20 | 0x80 | 0x200):
        raise UnpicklingError("expected the code of a generator or coroutine function")
    closure = tuple(types.CellType() for _ in code.co_freevars) or None
    gen = _start(types.FunctionType(code, {}, name, None, closure))
    if type(gen) is types.AsyncGeneratorType:
        closing = gen.aclose()  # an async generator that never ran closes at once
        try:
            closing.send(None)
        except StopIteration:
            pass
    else:
        gen.close()
    gen.__name__ = name
    gen.__qualname__ = qualname
    return gen
