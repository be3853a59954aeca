"""Suspended generators, coroutines and async generators, pickled with their frames.

A generator (or coroutine, or async generator) travels as its function (by
reference or by value, like any function) plus the state of its frame: where
it waits, its local variables and cells, its value stack (the iterators of
enclosing ``for`` loops, the ``__exit__`` of enclosing ``with`` blocks, the
sub-generator of a ``yield from`` or the awaitable of an ``await``) and the
exception it is handling. Loading calls the function to get a new generator
that has not run any of its body and overwrites its frame with that state
(see ``restore``). Supported on CPython 3.11, 3.12 and 3.13.

What cannot be resumed, and why:

- a generator that is running (it is pickling itself, or another thread is
  inside it), or an async generator in the middle of an ``asend``/``athrow``
  (its state is split with that awaitable): refused;
- a frame holding a value that cannot be pickled (an open file or socket, a
  lock, a ``for`` loop over a file): refused with the path to the value,
  e.g. ``obj.f_locals['sock'] -> socket.socket``;
- a frame whose instruction offset was moved by a debugger away from a
  yield, or whose stack the bytecode analysis does not confirm: refused;
- another Python version or bytecode magic than the one that saved it, or a
  function imported by reference whose code has changed since: refused at
  load, before anything is written;
- ``standalone=True`` payloads: refused (restoring needs marinade);
- tracebacks of exceptions held by the frame are not kept (exceptions pickle
  without them); iterators come back as their ``__reduce__`` makes them
  (a dict iterator as a list iterator over the remaining items).

Layout of the package:

- ``model``: the version-neutral frame state and what bytecode guarantees;
- ``_cpython311`` / ``_cpython312`` / ``_cpython313``: where each CPython
  version keeps that state (chosen in ``_layout_module`` below, the only
  place that looks at the version);
- ``_engine``: reads and writes frames through ctypes, after checking the
  layout against live objects;
- ``_reduce``: the reducers; ``restore``: the load-time reconstructors named
  in payloads.
"""

from __future__ import annotations

import types

from .. import _compat

__all__ = ["FramesUnavailable", "engine", "reducers"]


class FramesUnavailable(RuntimeError):
    """This interpreter cannot read or write generator frames."""


_instance = None
_unavailable: str | None = None


def _layout_module():
    """The module describing this interpreter's frame layout, or None."""
    if not _compat.IS_SUPPORTED:
        return None
    if _compat.PY_3_13_PLUS:
        from . import _cpython313 as layout
    elif _compat.PY_3_12_PLUS:
        from . import _cpython312 as layout
    else:
        from . import _cpython311 as layout
    return layout if layout.VERSION == _compat.PY_VERSION else None


def engine():
    """The frame engine for this interpreter (created and checked on first use).

    Raises ``FramesUnavailable`` with the reason on an unsupported Python or
    when the interpreter's memory layout is not the expected one.
    """
    global _instance, _unavailable
    if _instance is not None:
        return _instance
    if _unavailable is None:
        import platform
        import sys

        version = f"{platform.python_implementation()} {sys.version.split()[0]}"
        layout = _layout_module()
        if layout is None:
            _unavailable = (f"marinade saves generator and coroutine frames on CPython "
                             f"3.11, 3.12 and 3.13 only; this is {version}")
        else:
            try:
                from ._engine import Engine

                _instance = Engine(layout)
                return _instance
            except Exception as exc:  # noqa: BLE001 - any surprise means: do not touch frames
                _unavailable = (f"this interpreter ({version}, {sys.platform}) does not lay "
                                 f"out generator frames as marinade expects ({exc}); saving "
                                 "and restoring them is disabled")
    raise FramesUnavailable(_unavailable)


def reducers() -> dict:
    """Reducers for the pickler's table: ``{type: reducer(pickler, obj)}``."""
    return {types.GeneratorType: _reduce_suspended, types.CoroutineType: _reduce_suspended,
            types.AsyncGeneratorType: _reduce_suspended}


def _reduce_suspended(pickler, obj):
    # Imported on first use: ``dis`` and ``ctypes`` stay out of ``import marinade``.
    from ._reduce import reduce_suspended

    return reduce_suspended(pickler, obj)
