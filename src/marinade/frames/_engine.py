"""Read and write suspended generator frames through ctypes.

The layout comes from one per-version module (``_cpython311`` ...): ctypes
structures for the generator object and its embedded interpreter frame, the
frame-state constants and how the instruction pointer relates to a yield.
``Engine`` checks that layout against live objects before it is ever used
(``LayoutError`` otherwise), and every read and write is checked against what
the bytecode guarantees (``model.code_info``), so that a frame this module
does not understand is refused rather than guessed at.

Why ctypes rather than a C extension built against the internal headers: it
needs no compiler on the machines that pickle or load, it works unchanged in
every supported interpreter, and the layout is short enough to verify at
run time from known values (the code, name and function a generator must
point to, the instruction offset ``f_lasti`` reports, the stack depth the
compiler planned).
"""

from __future__ import annotations

import ctypes
import gc
import types

from . import model
from .model import NULL

_py_object = ctypes.py_object
_Ptr = ctypes.c_void_p
_incref = ctypes.pythonapi.Py_IncRef
_incref.argtypes = [ctypes.py_object]
_incref.restype = None
_decref = ctypes.pythonapi.Py_DecRef
_decref.argtypes = [ctypes.py_object]
_decref.restype = None

_WORD = ctypes.sizeof(_Ptr)
_CODE_HEADER = types.CodeType.__basicsize__  # offsetof(PyCodeObject, co_code_adaptive)


_CODE_ATTRS = {types.GeneratorType: "gi_code", types.CoroutineType: "cr_code",
               types.AsyncGeneratorType: "ag_code"}


def code_of(obj) -> types.CodeType:
    """The code object of a generator, coroutine or async generator."""
    return getattr(obj, _CODE_ATTRS[type(obj)])


class LayoutError(RuntimeError):
    """The interpreter's memory does not look the way the layout says."""


class FrameError(ValueError):
    """A frame (or a saved frame state) fails the checks: refuse it."""


def _objects(address: int, count: int) -> list:
    """``count`` object pointers at ``address`` as a list, NULL as ``NULL``."""
    if count <= 0:
        return []
    raw = (_Ptr * count).from_address(address)
    objs = (_py_object * count).from_address(address)
    return [NULL if raw[i] is None else objs[i] for i in range(count)]


def _object_at(pointer: int | None) -> object:
    # The pointer's bytes read as an object reference. (Not ctypes.cast: a
    # foreign function call, which turns a RecursionError raised in it, deep
    # in a long ``yield from`` chain, into a ctypes.ArgumentError.)
    return NULL if pointer is None else _py_object.from_buffer(_Ptr(pointer)).value


class Engine:
    """Frame access for one CPython version, described by ``layout``."""

    def __init__(self, layout):
        self.layout = layout
        self.Gen = layout.GenObject
        self.iframe = layout.GenObject.gi_iframe.offset
        self.localsplus = self.iframe + layout.InterpreterFrame.localsplus.offset
        self._check_layout()

    # -- states -------------------------------------------------------------

    def status(self, gen) -> str:
        """'created', 'suspended', 'running' or 'finished'."""
        state = self.Gen.from_address(id(gen)).gi_frame_state
        layout = self.layout
        if state == layout.FRAME_CREATED:
            return "created"
        if state in layout.SUSPENDED_STATES:
            return "suspended"
        if state == layout.FRAME_EXECUTING:
            return "running"
        if state >= layout.FRAME_COMPLETED:
            return "finished"
        raise FrameError(f"unknown frame state {state}")

    def running_async(self, agen) -> bool:
        """Whether an async generator is inside an ``asend``/``athrow`` (its
        frame then waits at an ``await``, driven by that awaitable)."""
        return self.Gen.from_address(id(agen)).gi_running_async != b"\x00"

    def _checked(self, gen, info: model.CodeInfo):
        """The frame struct of ``gen`` after checking it belongs to its code."""
        layout = self.layout
        struct = self.Gen.from_address(id(gen))
        frame = struct.gi_iframe
        code = code_of(gen)
        if getattr(frame, layout.CODE_FIELD) != id(code):
            raise FrameError("the frame does not run the generator's code")
        if not 0 <= frame.stacktop - info.nlocalsplus <= info.stacksize:
            raise FrameError("the frame's stack pointer is out of range")
        return struct, frame, id(code) + _CODE_HEADER

    # -- reading ------------------------------------------------------------

    def read(self, gen, info: model.CodeInfo) -> tuple[model.FrameState, object]:
        """The state of a created or suspended ``gen`` (whose code ``info``
        describes), and its function.

        While it reads, the generator is marked as executing, so that another
        thread resuming it meanwhile gets "generator already executing"
        instead of changing the frame under the reader's feet.
        """
        layout = self.layout
        struct = self.Gen.from_address(id(gen))
        gc_was_enabled = gc.isenabled()
        gc.disable()  # a collection must not traverse the frame while it is claimed
        try:
            # Claim: no call between reading and writing the state, so the
            # interpreter cannot switch threads in between.
            saved = struct.gi_frame_state
            if saved != layout.FRAME_CREATED and saved not in layout.SUSPENDED_STATES:
                raise FrameError(f"the generator is {self.status(gen)}")
            struct.gi_frame_state = layout.FRAME_EXECUTING
            try:
                return self._read_claimed(gen, info, saved)
            finally:
                struct.gi_frame_state = saved
        finally:
            if gc_was_enabled:
                gc.enable()

    def _read_claimed(self, gen, info: model.CodeInfo, saved: int):
        layout = self.layout
        struct, frame, code_start = self._checked(gen, info)
        ip = getattr(frame, layout.IP_FIELD) - code_start
        depth = frame.stacktop - info.nlocalsplus
        if saved == layout.FRAME_CREATED:
            lasti = -1
            if ip != layout.ip_for_created(info.return_generator) or depth != 0:
                raise FrameError("a generator that has not started is not at its start")
        else:
            lasti = layout.yield_for_ip(ip)
            expected = info.yields.get(lasti)
            if expected is None:
                raise FrameError(f"the frame is suspended at offset {lasti}, not at a yield "
                                 "(was its line number changed by a debugger?)")
            if depth != expected[0]:
                raise FrameError(f"the frame holds {depth} values on its stack where the "
                                 f"compiler planned {expected[0]}")
            if saved != layout.suspended_state(expected[1]):
                raise FrameError("the frame's suspended state does not match its yield")
        slots = _objects(id(gen) + self.localsplus, frame.stacktop)
        exc = _object_at(struct.gi_exc_state.exc_value)
        if exc is NULL:
            exc = None
        func = _object_at(getattr(frame, layout.FUNC_FIELD))
        n = info.nlocalsplus
        return model.FrameState(lasti, slots[:n], slots[n:], exc), func

    # -- writing ------------------------------------------------------------

    def check(self, gen, info: model.CodeInfo, state: model.FrameState):
        """Refuse (FrameError) unless ``state`` can be written into the new
        ``gen``; returns what ``write`` needs."""
        layout = self.layout
        code = code_of(gen)
        if self.status(gen) != "created":
            raise FrameError("only a generator that has not started can be restored into")
        struct, frame, code_start = self._checked(gen, info)
        if frame.stacktop != info.nlocalsplus or struct.gi_exc_state.exc_value is not None or \
                getattr(frame, layout.IP_FIELD) - code_start != layout.ip_for_created(
                    info.return_generator):
            raise FrameError("the new generator is not at its start")
        fast, stack = state.fast, state.stack
        if len(fast) != info.nlocalsplus:
            raise FrameError(f"{len(fast)} fast slots given, the code has {info.nlocalsplus}")
        for i in info.cells:
            if type(fast[i]) is not types.CellType:
                raise FrameError(f"slot {info.names[i]!r} must hold a cell")
        if state.lasti == -1:
            if stack:
                raise FrameError("a generator that has not started has an empty stack")
            new_state = layout.FRAME_CREATED
            ip = None
        else:
            expected = info.yields.get(state.lasti)
            if expected is None:
                raise FrameError(f"offset {state.lasti} is not a yield point of "
                                 f"{code.co_qualname}")
            if len(stack) != expected[0]:
                raise FrameError(f"{len(stack)} stack values given, the code has "
                                 f"{expected[0]} at offset {state.lasti}")
            new_state = layout.suspended_state(expected[1])
            ip = layout.ip_for_yield(state.lasti)
        for i in state.iterators:
            if type(i) is not int or not 0 <= i < len(stack) or not model.is_iterator(stack[i]):
                raise FrameError(f"stack value {i} must be an iterator (a pickled iterator "
                                 "that loads as something else cannot resume a for loop)")
        exc = state.exc_value
        if exc is not None and not isinstance(exc, BaseException):
            raise FrameError("the handled exception is not an exception")
        return struct, frame, code_start, new_state, ip

    def write(self, gen, info: model.CodeInfo, state: model.FrameState) -> None:
        """Make the new, never started ``gen`` (whose code ``info`` describes)
        stand where ``state`` says.

        Everything is checked (``check``) before the first byte is written;
        reference counts end exact: each stored object gains one reference,
        each replaced one loses one.
        """
        layout = self.layout
        struct, frame, code_start, new_state, ip = self.check(gen, info, state)
        fast, stack, exc = state.fast, state.stack, state.exc_value
        base = id(gen) + self.localsplus
        old = _objects(base, info.nlocalsplus)  # keeps the replaced values alive until the end
        gc_was_enabled = gc.isenabled()
        gc.disable()  # no collection may see a half-written frame
        try:
            slot = _Ptr.from_address
            for i, value in enumerate(fast):
                if value is NULL:
                    slot(base + i * _WORD).value = None
                else:
                    _incref(value)
                    slot(base + i * _WORD).value = id(value)
            top = info.nlocalsplus
            for i, value in enumerate(stack, top):
                if value is NULL:
                    slot(base + i * _WORD).value = None
                else:
                    _incref(value)
                    slot(base + i * _WORD).value = id(value)
            frame.stacktop = top + len(stack)
            if exc is not None:
                _incref(exc)
                struct.gi_exc_state.exc_value = id(exc)
            if ip is not None:
                setattr(frame, layout.IP_FIELD, code_start + ip)
            struct.gi_frame_state = new_state
            for value in old:
                if value is not NULL:
                    _decref(value)  # the frame's reference; ``old`` still holds one
        finally:
            if gc_was_enabled:
                gc.enable()

    def function(self, gen):
        """The function object a created or suspended ``gen``'s frame runs."""
        return _object_at(getattr(self.Gen.from_address(id(gen)).gi_iframe,
                                  self.layout.FUNC_FIELD))

    # -- layout check -------------------------------------------------------

    def _check_layout(self) -> None:
        """Compare the layout with a live generator at every state it can be in."""
        layout = self.layout
        if types.GeneratorType.__basicsize__ != self.localsplus or \
                types.GeneratorType.__itemsize__ != _WORD:
            raise LayoutError("the generator object has an unexpected size")
        marker = object()

        def probe(a, b):
            c = [a]
            yield c
            try:
                raise KeyError(b)
            except KeyError:
                yield b
            yield from iter((b, a))

        gen = probe(marker, 7)
        struct = self.Gen.from_address(id(gen))
        frame = struct.gi_iframe
        code = code_of(gen)
        if getattr(frame, layout.CODE_FIELD) != id(code) or struct.gi_name != id(gen.__name__) \
                or struct.gi_qualname != id(gen.__qualname__):
            raise LayoutError("code or name fields are not where expected")
        func = self.function(gen)
        if type(func) is not types.FunctionType or func.__code__ is not code or \
                frame.f_globals != id(func.__globals__) or \
                frame.f_builtins != id(func.__builtins__):
            raise LayoutError("function fields are not where expected")
        info = model.code_info(code)
        if self.status(gen) != "created" or frame.stacktop != info.nlocalsplus:
            raise LayoutError("a new generator's state is not as expected")
        if _objects(id(gen) + self.localsplus, 2) != [marker, 7]:
            raise LayoutError("fast slots are not where expected")
        code_start = id(code) + _CODE_HEADER
        if getattr(frame, layout.IP_FIELD) - code_start != \
                layout.ip_for_created(info.return_generator):
            raise LayoutError("a new generator's instruction pointer is not as expected")
        for expected_value in ([marker], 7, 7):
            value = next(gen)
            if value != expected_value or self.status(gen) != "suspended":
                raise LayoutError("a suspended generator's state is not as expected")
            ip = getattr(frame, layout.IP_FIELD) - code_start
            lasti = layout.yield_for_ip(ip)
            if ip != gen.gi_frame.f_lasti or lasti not in info.yields:
                raise LayoutError("the instruction pointer is not where expected")
            depth, oparg = info.yields[lasti]
            if frame.stacktop != info.nlocalsplus + depth or \
                    struct.gi_frame_state != layout.suspended_state(oparg):
                raise LayoutError("the stack pointer or suspended state is not as expected")
            exc = _object_at(struct.gi_exc_state.exc_value)
            if (type(exc) is KeyError) != (value == 7 and gen.gi_yieldfrom is None):
                raise LayoutError("the handled exception is not where expected")
        if gen.gi_yieldfrom is None:
            raise LayoutError("yield from was not seen")
        gen.close()
        if self.status(gen) != "finished":
            raise LayoutError("a closed generator's state is not as expected")

        def running():
            yield self.status(me)

        me = running()
        if next(me) != "running":
            raise LayoutError("a running generator's state is not as expected")
