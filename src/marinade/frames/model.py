"""A version-neutral model of a suspended frame, and what the bytecode says about it.

``FrameState`` is what a generator or coroutine frame holds while it waits at
a yield point: the offset of that yield, the fast slots (locals, then cells,
then free variables), the value stack and the exception it is handling. The
per-version modules (``_cpython311`` ...) describe where the interpreter
keeps each of these; ``_engine`` reads and writes them; nothing else touches
interpreter memory.

``code_info`` derives from a code object, with nothing but ``dis``, the facts
needed to check a frame before it is saved or restored: the names of the fast
slots, which of them hold cells, every yield point with the stack depth the
compiler guarantees there, and a digest of the bytecode so that a payload
resumes only the code it was taken from.
"""

from __future__ import annotations

import dis
import hashlib
import opcode
import types
import weakref
from weakref import WeakKeyDictionary

__all__ = ["NULL", "CodeInfo", "FrameState", "UnsupportedCode", "code_info"]


class _Null:
    """Stands for an empty (C NULL) slot while a frame is in memory as a model."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NULL"

    def __reduce__(self):
        raise TypeError("the NULL slot marker is never pickled")


NULL = _Null()


class UnsupportedCode(ValueError):
    """The bytecode has a shape this model does not understand."""


class FrameState:
    """A frame waiting at a yield point, independent of the CPython version.

    ``lasti`` is the byte offset of the ``YIELD_VALUE`` instruction it waits
    at, or -1 for a generator that has not started. ``fast`` holds one value
    per fast slot (``CodeInfo.names``), ``stack`` the value stack from the
    bottom; both use ``NULL`` for empty slots. ``exc_value`` is the exception
    being handled inside the frame (suspended in an ``except`` block), or None.
    ``iterators`` lists the stack indexes that hold iterators: the interpreter
    calls their ``tp_iternext`` slot without checking it exists (``for``
    loops), so a restored frame must have iterators there too.
    """

    __slots__ = ("lasti", "fast", "stack", "exc_value", "iterators")

    def __init__(self, lasti: int, fast: list, stack: list, exc_value: object = None,
                 iterators: tuple = ()):
        self.lasti = lasti
        self.fast = fast
        self.stack = stack
        self.exc_value = exc_value
        self.iterators = iterators


def is_iterator(value) -> bool:
    """Whether the type of ``value`` fills the ``tp_iternext`` slot."""
    return getattr(type(value), "__next__", None) is not None


_YIELD_VALUE = opcode.opmap["YIELD_VALUE"]
_RESUME = opcode.opmap["RESUME"]
_RETURN_GENERATOR = opcode.opmap["RETURN_GENERATOR"]
_JUMPS = frozenset(dis.hasjrel) | frozenset(getattr(dis, "hasjabs", ())) | frozenset(
    getattr(dis, "hasjump", ()))
# Instructions after which execution never falls through to the next one.
_NO_FALLTHROUGH = frozenset(opcode.opmap[name] for name in (
    "RETURN_VALUE", "RETURN_CONST", "RAISE_VARARGS", "RERAISE", "JUMP_FORWARD",
    "JUMP_BACKWARD", "JUMP_BACKWARD_NO_INTERRUPT", "JUMP", "JUMP_NO_INTERRUPT",
    "JUMP_ABSOLUTE", "INTERPRETER_EXIT",
) if name in opcode.opmap)
_CO_SUSPENDABLE = 0x20 | 0x80 | 0x100 | 0x200  # generator, coroutine, iterable coro, async gen


class CodeInfo:
    """What the bytecode of one generator/coroutine code object guarantees.

    - ``names``: the fast slots in frame order (locals, cells, free variables);
    - ``cells``: indexes of the slots that always hold a cell object;
    - ``yields``: ``{lasti: (stack depth while suspended there, YIELD_VALUE oparg)}``;
    - ``return_generator``: byte offset of RETURN_GENERATOR (where a new
      generator's frame stands before it first runs);
    - ``digest``: hash of everything in the code that running it depends on.
    """

    __slots__ = ("names", "nlocalsplus", "index", "cells", "stacksize", "yields",
                 "return_generator", "digest")

    def __init__(self, code: types.CodeType):
        if not code.co_flags & _CO_SUSPENDABLE:
            raise UnsupportedCode(f"{code.co_qualname} is not a generator or coroutine")
        varnames = code.co_varnames
        known = set(varnames)
        # An argument that is also a cell keeps one slot (its local slot).
        names = [*varnames, *(n for n in code.co_cellvars if n not in known), *code.co_freevars]
        if len(set(names)) != len(names):
            raise UnsupportedCode(f"{code.co_qualname}: fast slot names are not unique")
        self.names = tuple(names)
        self.nlocalsplus = len(names)
        self.index = {name: i for i, name in enumerate(names)}
        cells = {self.index[n] for n in code.co_cellvars}
        cells.update(range(len(names) - len(code.co_freevars), len(names)))
        self.cells = frozenset(cells)
        self.stacksize = code.co_stacksize
        depths = _static_depths(code)
        raw = code.co_code
        yields = {}
        self.return_generator = -1
        for offset, depth in depths.items():
            op = raw[offset]
            if op == _YIELD_VALUE and offset + 2 < len(raw) and raw[offset + 2] == _RESUME:
                if depth < 1:
                    raise UnsupportedCode(f"{code.co_qualname}: yield at {offset} on empty stack")
                yields[offset] = (depth - 1, raw[offset + 1])
            elif op == _RETURN_GENERATOR and self.return_generator < 0:
                self.return_generator = offset
        if self.return_generator < 0:
            raise UnsupportedCode(f"{code.co_qualname}: no RETURN_GENERATOR instruction")
        self.yields = yields
        self.digest = code_digest(code)


# id(code) -> (weak reference to code, info). Faster than a WeakKeyDictionary,
# which hashes the code object's contents on every lookup.
_info_cache: dict[int, tuple[weakref.ref, CodeInfo]] = {}


def code_info(code: types.CodeType) -> CodeInfo:
    """The (cached) ``CodeInfo`` of ``code``; raises UnsupportedCode."""
    entry = _info_cache.get(id(code))
    if entry is not None and entry[0]() is code:
        return entry[1]
    info = CodeInfo(code)
    key = id(code)
    _info_cache[key] = (weakref.ref(code, lambda _, key=key: _info_cache.pop(key, None)), info)
    return info


# -- static stack depths -----------------------------------------------------

def parse_exception_table(code: types.CodeType) -> list[tuple[int, int, int, int, bool]]:
    """``(start, end, target, depth, lasti)`` entries, byte offsets, ``end`` exclusive.

    The table is a sequence of entries of four varints (6 bits a byte, 0x40
    continues, 0x80 marks an entry's first byte), in code units; see
    CPython's Objects/exception_handling_notes.txt.
    """
    table = code.co_exceptiontable
    entries = []
    pos = 0
    size = len(table)

    def varint() -> int:
        nonlocal pos
        byte = table[pos]
        pos += 1
        value = byte & 63
        while byte & 64:
            byte = table[pos]
            pos += 1
            value = (value << 6) | (byte & 63)
        return value

    while pos < size:
        if not table[pos] & 128:
            raise UnsupportedCode("malformed exception table")
        start = varint() * 2
        end = start + varint() * 2
        target = varint() * 2
        depth_lasti = varint()
        entries.append((start, end, target, depth_lasti >> 1, bool(depth_lasti & 1)))
    return entries


def _static_depths(code: types.CodeType) -> dict[int, int]:
    """Stack depth before each reachable instruction, as the compiler planned it.

    A walk over the control flow with ``dis.stack_effect`` (the numbers the
    compiler itself uses to size the stack), starting at offset 0 and at every
    exception handler with the depth the exception table gives it. Two paths
    reaching one instruction with different depths mean the model is wrong
    for this code: refuse it rather than guess.
    """
    instructions = list(dis.get_instructions(code))
    position = {ins.offset: i for i, ins in enumerate(instructions)}
    depths: dict[int, int] = {}
    work = [(0, 0)]
    for _start, _end, target, depth, lasti in parse_exception_table(code):
        work.append((target, depth + lasti + 1))  # (lasti,) exception pushed
    stack_effect = dis.stack_effect
    limit = code.co_stacksize
    while work:
        offset, depth = work.pop()
        i = position.get(offset)
        if i is None:
            raise UnsupportedCode(f"{code.co_qualname}: jump into the middle of an instruction")
        while True:
            ins = instructions[i]
            seen = depths.get(ins.offset)
            if seen is not None:
                if seen != depth:
                    raise UnsupportedCode(
                        f"{code.co_qualname}: inconsistent stack depth at {ins.offset}")
                break
            if not 0 <= depth <= limit:
                raise UnsupportedCode(f"{code.co_qualname}: stack depth out of range")
            depths[ins.offset] = depth
            op = ins.opcode
            arg = ins.arg
            if op in _JUMPS:
                effect = stack_effect(op, arg, jump=True)
                work.append((ins.argval, depth + effect))
            if op in _NO_FALLTHROUGH:
                break
            if op == _RETURN_GENERATOR:
                depth += 1  # resuming pushes the value sent in (None), which POP_TOP drops
            elif arg is None:
                depth += stack_effect(op, jump=False)
            else:
                depth += stack_effect(op, arg, jump=False)
            i += 1
            if i >= len(instructions):
                break
    return depths


# -- digest ------------------------------------------------------------------

_digest_cache: WeakKeyDictionary[types.CodeType, bytes] = WeakKeyDictionary()


def _const_key(value) -> object:
    kind = type(value)
    if kind is types.CodeType:
        return ("code", code_digest(value))
    if kind is tuple:
        return tuple(_const_key(v) for v in value)
    if kind is frozenset:  # iteration order depends on the hash seed
        return ("frozenset", sorted(repr(_const_key(v)) for v in value))
    return (kind.__name__, repr(value))


def code_digest(code: types.CodeType) -> bytes:
    """A hash of what executing ``code`` depends on: the (de-specialized)
    bytecode, exception table, constants, names and frame shape; not the file
    name or line numbers, so the same function imported from another path
    still matches."""
    try:
        return _digest_cache[code]
    except KeyError:
        pass
    parts = (
        code.co_code, code.co_exceptiontable, code.co_argcount, code.co_posonlyargcount,
        code.co_kwonlyargcount, code.co_nlocals, code.co_stacksize, code.co_flags,
        code.co_names, code.co_varnames, code.co_cellvars, code.co_freevars,
        _const_key(code.co_consts),
    )
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=16).digest()
    _digest_cache[code] = digest
    return digest
