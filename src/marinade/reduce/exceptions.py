"""Exceptions with their chain (``__cause__``, ``__context__``,
``__suppress_context__``) and their traceback.

``BaseException.__reduce__`` gives the class, ``args`` and ``__dict__``:
plain pickle (and cloudpickle, and dill) drop the chain, so a worker's
``raise LookupFailed(...) from error`` arrives without the error that
explains it. marinade adds the chain to the BUILD state, which
``BaseException.__setstate__`` applies with setattr: stdlib only at load.

A link that cannot be pickled on its own (an exception holding a socket in
its args, say) is left out, as plain pickle leaves out every link, rather
than making the whole payload fail.

An exception whose class defines its own ``__init__`` (``def __init__(self,
url, attempts): super().__init__(f"{url} failed")``) cannot be rebuilt the
plain way, which calls the class with ``args`` (a long-standing CPython
limitation that cloudpickle and dill share). When the builtin exception
underneath stores nothing but ``args`` (no C fields: not OSError,
StopIteration...), marinade makes it as pickle makes other objects, with
``cls.__new__(cls, *args)`` (NEWOBJ) and its ``__dict__`` as state, so
``__init__`` does not run again.

A traceback travels as data, the file, function and line of each frame, and
comes back as real traceback objects over empty frames
(``_rebuild.traceback``): ``traceback.print_exception`` and
``traceback.extract_tb`` show where the error happened; the frames' locals
stay behind.
"""

from __future__ import annotations

import copyreg
import types

from .. import _rebuild
from .._compat import HEAPTYPE as _HEAPTYPE

_CHAIN = ("__cause__", "__context__")
_setstate = BaseException.__setstate__
_ARGS_ONLY_SIZE = BaseException.__basicsize__
_skips_init: dict[type, bool] = {}  # class -> made with __new__ (see the module docstring)


def _made_without_init(kind: type) -> bool:
    known = _skips_init.get(kind)
    if known is not None:
        return known
    own_init = False
    result = False
    for klass in kind.__mro__:
        if klass.__flags__ & _HEAPTYPE:
            own_init = own_init or "__init__" in vars(klass)
            continue
        # The builtin class underneath: its C init stores only args when its
        # instances are no bigger than BaseException's.
        result = own_init and klass.__basicsize__ == _ARGS_ONLY_SIZE \
            and kind.__reduce__ is BaseException.__reduce__ \
            and kind.__reduce_ex__ is BaseException.__reduce_ex__
        break
    if len(_skips_init) > 4096:
        _skips_init.clear()
    _skips_init[kind] = result
    return result


class _Sink:
    """A file that forgets what it is given (trial pickling)."""

    __slots__ = ()

    def write(self, data) -> int:
        return len(data)


def _pickles(pickler, link) -> bool:
    """Does ``link`` pickle on its own, with the options ``pickler`` has?"""
    if getattr(pickler, "_trial", False):
        return True  # inside a trial: every link counts, strictly
    from .._pickler import Pickler  # (a cycle at import time)

    trial = Pickler(_Sink(), getattr(pickler, "_protocol", None),
                    standalone=getattr(pickler, "_standalone_state", None) is not None,
                    portable=getattr(pickler, "_portable_state", None) is not None)
    trial._trial = True
    try:
        trial.dump(link)
    except Exception:
        return False
    return True


def chain_state(pickler, exc: BaseException) -> dict:
    """The chain attributes of ``exc`` worth sending (set, and picklable)."""
    extra = {}
    if exc.__traceback__ is not None:
        extra["__traceback__"] = exc.__traceback__
    for name in _CHAIN:
        link = getattr(exc, name)
        if link is not None and _pickles(pickler, link):
            extra[name] = link
    if exc.__suppress_context__ or "__cause__" in extra or "__context__" in extra:
        # Last: setting __cause__ turns it on, whatever the original says.
        extra["__suppress_context__"] = exc.__suppress_context__
    return extra


def reduce_exception(pickler, exc: BaseException):
    kind = type(exc)
    if kind.__setstate__ is not _setstate:
        return NotImplemented  # a class that reads its own state
    without_init = _made_without_init(kind)
    if not without_init and exc.__cause__ is None and exc.__context__ is None \
            and exc.__traceback__ is None and not exc.__suppress_context__:
        return NotImplemented  # nothing to add
    if without_init:
        reduced: tuple = (copyreg.__newobj__, (kind, *exc.args), dict(vars(exc)))
    else:
        reduced = exc.__reduce_ex__(getattr(pickler, "_protocol", 2))
        if type(reduced) is not tuple or len(reduced) < 2:
            return NotImplemented
    state = reduced[2] if len(reduced) > 2 else None
    if state is not None and type(state) is not dict:
        return NotImplemented
    extra = chain_state(pickler, exc)
    if not extra and not without_init:
        return NotImplemented
    return (reduced[0], reduced[1], {**(state or {}), **extra} or None, *reduced[3:])


def traceback_entries(tb) -> tuple:
    """``(filename, name, qualname, module, lineno)`` per frame of ``tb``, outermost first."""
    entries = []
    while tb is not None:
        code = tb.tb_frame.f_code
        module = tb.tb_frame.f_globals.get("__name__")
        lineno = tb.tb_lineno
        entries.append((code.co_filename, code.co_name, code.co_qualname,
                        module if type(module) is str else None,
                        lineno if type(lineno) is int else 0))
        tb = tb.tb_next
    return tuple(entries)


def reduce_traceback(pickler, tb):
    if types.TracebackType in copyreg.dispatch_table:
        return NotImplemented  # tblib's (or another) registered reducer
    return _rebuild.traceback, (traceback_entries(tb),)
