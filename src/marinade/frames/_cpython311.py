"""Where CPython 3.11 keeps generator and frame state.

From Include/cpython/genobject.h (``_PyGenObject_HEAD``) and
Include/internal/pycore_frame.h (``_PyInterpreterFrame``, ``PyFrameState``)
of 3.11. Checked against live objects when the engine loads (``_engine``).
"""

from __future__ import annotations

import ctypes

VERSION = (3, 11)

_P = ctypes.c_void_p


class ErrStackItem(ctypes.Structure):
    _fields_ = [("exc_value", _P), ("previous_item", _P)]


class InterpreterFrame(ctypes.Structure):
    _fields_ = [
        ("f_func", _P),  # strong
        ("f_globals", _P),
        ("f_builtins", _P),
        ("f_locals", _P),
        ("f_code", _P),  # strong
        ("frame_obj", _P),
        ("previous", _P),
        # The instruction *before* the next one to run: a suspended
        # generator's points at its YIELD_VALUE.
        ("prev_instr", _P),
        ("stacktop", ctypes.c_int),  # index into localsplus of the first free stack slot
        ("is_entry", ctypes.c_bool),
        ("owner", ctypes.c_char),
        ("localsplus", _P * 0),
    ]


class GenObject(ctypes.Structure):
    _fields_ = [
        ("ob_refcnt", ctypes.c_ssize_t),
        ("ob_type", _P),
        ("gi_code", _P),
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


FRAME_CREATED = -2
FRAME_SUSPENDED = -1
FRAME_EXECUTING = 0
FRAME_COMPLETED = 1

CODE_FIELD = "f_code"
FUNC_FIELD = "f_func"
IP_FIELD = "prev_instr"


def ip_for_yield(lasti: int) -> int:
    """Byte offset the instruction pointer holds while suspended at the
    YIELD_VALUE at ``lasti``."""
    return lasti


def yield_for_ip(ip: int) -> int:
    return ip


def ip_for_created(return_generator: int) -> int:
    """Instruction pointer of a generator that has not started."""
    return return_generator


def suspended_state(yield_oparg: int) -> int:
    """``gi_frame_state`` of a generator suspended at a YIELD_VALUE with this oparg.

    3.11 has one suspended state; ``gi_yieldfrom`` inspects the next RESUME.
    """
    return FRAME_SUSPENDED


SUSPENDED_STATES = frozenset({FRAME_SUSPENDED})
