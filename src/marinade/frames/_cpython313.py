"""Where CPython 3.13 keeps generator and frame state.

From Include/internal/pycore_genobject.h (``_PyGenObject_HEAD``) and
Include/internal/pycore_frame.h of 3.13: the code is ``f_executable``, the
instruction pointer ``instr_ptr`` points at the *next* instruction (the
RESUME after a yield), and a generator delegating with ``yield from`` /
``await`` has its own state, FRAME_SUSPENDED_YIELD_FROM, which
``gi_yieldfrom`` and ``close()`` rely on. Checked against live objects when
the engine loads (``_engine``).
"""

from __future__ import annotations

import ctypes

VERSION = (3, 13)

_P = ctypes.c_void_p


class ErrStackItem(ctypes.Structure):
    _fields_ = [("exc_value", _P), ("previous_item", _P)]


class InterpreterFrame(ctypes.Structure):
    _fields_ = [
        ("f_executable", _P),  # strong; the code object for Python frames
        ("previous", _P),
        ("f_funcobj", _P),  # strong
        ("f_globals", _P),
        ("f_builtins", _P),
        ("f_locals", _P),
        ("frame_obj", _P),
        ("instr_ptr", _P),  # the instruction to run next
        ("stacktop", ctypes.c_int),
        ("return_offset", ctypes.c_uint16),
        ("owner", ctypes.c_char),
        ("localsplus", _P * 0),
    ]


class GenObject(ctypes.Structure):
    _fields_ = [
        ("ob_refcnt", ctypes.c_ssize_t),
        ("ob_type", _P),
        ("gi_weakreflist", _P),
        ("gi_name", _P),
        ("gi_qualname", _P),
        ("gi_exc_state", ErrStackItem),
        ("gi_origin_or_finalizer", _P),
        ("gi_hooks_inited", ctypes.c_char),
        ("gi_closed", ctypes.c_char),
        ("gi_running_async", ctypes.c_char),
        ("gi_frame_state", ctypes.c_int8),
        ("gi_iframe", InterpreterFrame),
    ]


FRAME_CREATED = -3
FRAME_SUSPENDED = -2
FRAME_SUSPENDED_YIELD_FROM = -1
FRAME_EXECUTING = 0
FRAME_COMPLETED = 1

CODE_FIELD = "f_executable"
FUNC_FIELD = "f_funcobj"
IP_FIELD = "instr_ptr"


def ip_for_yield(lasti: int) -> int:
    """Byte offset the instruction pointer holds while suspended at the
    YIELD_VALUE at ``lasti``: the RESUME right after it."""
    return lasti + 2


def yield_for_ip(ip: int) -> int:
    return ip - 2


def ip_for_created(return_generator: int) -> int:
    """Instruction pointer of a generator that has not started: the POP_TOP
    after RETURN_GENERATOR."""
    return return_generator + 2


def suspended_state(yield_oparg: int) -> int:
    """``gi_frame_state`` of a generator suspended at a YIELD_VALUE with this
    oparg: 1 marks the yield of a ``yield from`` / ``await`` loop."""
    return FRAME_SUSPENDED_YIELD_FROM if yield_oparg == 1 else FRAME_SUSPENDED


SUSPENDED_STATES = frozenset({FRAME_SUSPENDED, FRAME_SUSPENDED_YIELD_FROM})
