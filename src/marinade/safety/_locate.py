"""Where a load failed: the byte offset of the opcode CPython's unpickler was
running when an error escaped it.

The C unpickler does not say where it stopped, and the file position does not
tell either: it reads a whole FRAME (and, reading bytes, the whole payload)
before decoding it. What it does leave behind is a fingerprint of its
progress: how many globals it resolved (``find_class`` calls, counted by
``Tracking``) and how many memo entries it stored (``Unpickler.memo``). Both
only grow, opcode by opcode. After the failure, the payload is replayed by the
symbolic machine of ``_scan`` (which runs nothing) up to the point where the
fingerprint is passed; the opcodes seen with exactly the observed fingerprint
are where the unpickler can have been. Of those, only a few can fail at all
once the stream is well-formed (calls, ``BUILD``, items added to something
that is not a plain container, buffers, extension codes): when one remains,
its offset is the answer. When several do (hand-made streams that memoize
nothing), the error names them all and gives no offset rather than a guess.
"""

from __future__ import annotations

import pickle

from .._errors import UnpicklingError
from . import _scan

_OP = _scan._OPCODES
_FIND_CLASS = frozenset({_OP["GLOBAL"], _OP["STACK_GLOBAL"], _OP["INST"]})
_ALWAYS = frozenset(_OP[name] for name in (
    "REDUCE", "BUILD", "NEWOBJ", "NEWOBJ_EX", "OBJ", "INST", "EXT1", "EXT2", "EXT4",
    "PERSID", "BINPERSID", "NEXT_BUFFER", "READONLY_BUFFER"))
_EXT = frozenset({_OP["EXT1"], _OP["EXT2"], _OP["EXT4"]})
# Where a MemoryError can come from besides calls: sized arguments (allocated
# before they are read), memo indices, containers.
_ALLOCATING = frozenset(_OP[name] for name in (
    "BINBYTES", "BINBYTES8", "BYTEARRAY8", "BINUNICODE", "BINUNICODE8", "BINSTRING",
    "LONG4", "LONG", "INT", "STRING", "UNICODE", "PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE",
    "FRAME", "TUPLE", "LIST", "DICT", "FROZENSET", "APPENDS", "SETITEMS", "ADDITEMS",
    "APPEND", "SETITEM", "EMPTY_DICT", "EMPTY_LIST", "EMPTY_SET", "MARK"))
# What the unpickler raises for a stream it cannot read (not a call's failure).
_FORMAT_ERRORS = (pickle.UnpicklingError, EOFError, UnicodeDecodeError, OverflowError,
                  MemoryError)
_NAMES = {code: name for name, code in _OP.items()}
_MAX_CANDIDATES = 6
# A replay runs at a few million opcodes a second: an error deep into a huge
# payload is not located rather than delayed by minutes.
MAX_REPLAY = 5_000_000


class Tracking:
    """Mixin for ``pickle.Unpickler`` subclasses: counts ``find_class`` calls
    and remembers whether the error came from one."""

    _resolved = 0
    _resolving = False

    def check_global(self, module: str, name: str) -> None:
        """Raise to refuse a global (restricted loading)."""

    def find_class(self, module: str, name: str):
        self._resolved += 1
        self._resolving = True
        self.check_global(module, name)
        value = super().find_class(module, name)
        self._resolving = False
        return value


class TrackingUnpickler(Tracking, pickle.Unpickler):
    """``pickle.Unpickler`` that can tell where it failed (see ``failure``)."""


def _arguments(args) -> str:
    """``('bad', 2)`` for a call's plain arguments, ``(...)`` otherwise."""
    items = _scan.items_of(args) if type(args) is _scan.Seq else None
    if items is None or not all(type(item) in _scan._ATOMS for item in items):
        return "(...)"
    text = ", ".join(_scan._describe(item) for item in items)
    return f"({text})" if len(text) <= 80 else "(...)"


def _hashable(value, depth: int = 0) -> bool:
    """Certainly hashes without running code (plain atoms, tuples of them)."""
    if type(value) in _scan._ATOMS:
        return True
    if type(value) is _scan.Seq and value.type == "tuple" and depth < 8:
        items = _scan.items_of(value)
        return items is not None and all(_hashable(item, depth + 1) for item in items)
    return False


class _Replay:
    """Follows the symbolic machine and collects the opcodes that match the
    unpickler's fingerprint at the time of the error."""

    def __init__(self, scanner: _scan.Scanner, resolved: int, resolving: bool,
                 memo: int, any_opcode: bool):
        self.scanner = scanner
        self.resolved = resolved
        self.resolving = resolving
        self.memo = memo
        self.any_opcode = any_opcode  # MemoryError and the like: any opcode may fail
        self.calls = 0  # find_class calls the unpickler made before the current opcode
        self.pending = 0  # ... and the current one makes, once it completes
        self.current = -1  # offset of the current opcode
        self.found: list[tuple[int, str]] = []
        self.unsure = False  # the fingerprint could not be followed
        self.left = MAX_REPLAY

    def before(self, pos: int, op: int) -> bool:
        """Called ahead of each opcode; False stops the replay."""
        scanner = self.scanner
        self.calls += self.pending  # the previous opcode completed
        self.pending = 0
        self.current = pos
        memo = scanner.memo_len
        if memo > self.memo or self.calls > self.resolved:
            return False  # past the point of failure
        self.left -= 1
        if not self.left:
            self.unsure = True
            return False
        resolves = op in _FIND_CLASS
        if op == _OP["STACK_GLOBAL"] and not self._text_operands():
            self.unsure = True  # the unpickler calls find_class only if they are str
            return False
        if op in _EXT:
            self.unsure = True  # find_class only when the extension is not cached yet
            return False
        if memo == self.memo:
            if self.resolving:
                if resolves and self.calls + 1 == self.resolved:
                    self.found.append((pos, f"importing {self._global_name(pos, op)}"))
                    return False
            elif self.calls + (op == _OP["INST"]) == self.resolved and self._may_fail(op):
                self.found.append((pos, self._describe(pos, op)))
                if len(self.found) > _MAX_CANDIDATES:
                    return False
        self.pending = resolves
        return True

    # -- which opcodes can fail in a well-formed stream ----------------------------------

    def _text_operands(self) -> bool:
        stack = self.scanner.stack
        return len(stack) >= 2 and all(_scan.text_of(v) is not None for v in stack[-2:])

    def _mark(self) -> int | None:
        marks = self.scanner.marks
        return marks[-1][0] if marks else None

    def _may_fail(self, op: int) -> bool:
        if op in _ALWAYS or self.any_opcode and op in _ALLOCATING:
            return True
        stack = self.scanner.stack
        name = _NAMES[op]
        try:
            if name == "APPEND":
                return not (type(stack[-2]) is _scan.Seq and stack[-2].type == "list")
            if name == "APPENDS":
                target = stack[self._mark() - 1]
                return not (type(target) is _scan.Seq and target.type == "list")
            if name == "SETITEM":
                return type(stack[-3]) is not _scan.Map or not _hashable(stack[-2])
            if name in ("SETITEMS", "DICT"):
                mark = self._mark()
                if name == "SETITEMS" and type(stack[mark - 1]) is not _scan.Map:
                    return True
                return not all(_hashable(key) for key in stack[mark::2])
            if name in ("ADDITEMS", "FROZENSET"):
                mark = self._mark()
                if name == "ADDITEMS" and not (type(stack[mark - 1]) is _scan.Seq
                                               and stack[mark - 1].type == "set"):
                    return True
                return not all(_hashable(item) for item in stack[mark:])
        except (IndexError, TypeError):
            return True  # a malformed stream: the replay reports it itself
        return False

    # -- descriptions ------------------------------------------------------------------------

    def _describe(self, pos: int, op: int) -> str:
        stack = self.scanner.stack
        name = _NAMES[op]
        what = _scan._describe
        try:
            if name == "REDUCE":
                return f"calling {what(stack[-2])}{_arguments(stack[-1])}"
            if name == "NEWOBJ":
                return f"creating a {what(stack[-2])} instance"
            if name == "NEWOBJ_EX":
                return f"creating a {what(stack[-3])} instance"
            if name == "OBJ":
                return f"calling {what(stack[self._mark()])}"
            if name == "INST":
                return f"calling {self._global_name(pos, op)}"
            if name == "BUILD":
                return f"setting the state of {what(stack[-2])}"
            if name in ("APPEND", "APPENDS"):
                return "appending items"
            if name in ("SETITEM", "SETITEMS", "DICT"):
                return "setting dict items"
            if name in ("ADDITEMS", "FROZENSET"):
                return "adding set items"
            if name == "STACK_GLOBAL":
                return "importing a global whose name is computed while loading"
        except (IndexError, TypeError):
            pass
        return f"{name} opcode"

    def _global_name(self, pos: int, op: int) -> str:
        if op == _OP["STACK_GLOBAL"]:
            module, name = (_scan.text_of(v) for v in self.scanner.stack[-2:])
            return f"{module}.{name}"
        src = self.scanner.src  # GLOBAL and INST: two text lines follow the opcode
        lines = bytes(src.buf[src.i:src.i + 2048]).split(b"\n", 2)
        if len(lines) < 3:
            return "a global"
        return ".".join(line.decode("utf-8", "replace") for line in lines[:2])


# Errors the C unpickler raises itself, once the stream is well-formed, and the
# opcodes that raise them: they single out one kind of step.
_OWN_ERRORS = (
    ("state is not a dictionary", "BUILD"),
    ("slot state is not a dictionary", "BUILD"),
    ("NEWOBJ_EX", "NEWOBJ_EX"),
    ("NEWOBJ", "NEWOBJ"),
    ("STACK_GLOBAL requires str", "STACK_GLOBAL"),
    ("unregistered extension code", "EXT"),
    ("persistent id", "PERSID"),
    ("out-of-band", "BUFFER"),
)


def _raised_by_unpickler(exc: BaseException) -> bool:
    """No Python code ran below the unpickler's ``load`` when ``exc`` was raised."""
    tb = exc.__traceback__
    return tb is not None and tb.tb_next is None


def _kind_of(exc: BaseException) -> str | None:
    """The kind of opcode that raised ``exc``, if the C unpickler's own message says."""
    if type(exc) is not pickle.UnpicklingError or not _raised_by_unpickler(exc):
        return None  # raised by code the unpickler called
    text = str(exc)
    for fragment, kind in _OWN_ERRORS:
        if fragment in text:
            return kind
    return None


def locate(data: bytes, *, resolved: int, resolving: bool, memo: int,
           any_opcode: bool = False
           ) -> tuple[list[tuple[int, str]], bool, tuple[int, str] | None]:
    """Opcodes of ``data`` where an unpickler with this fingerprint can have
    failed: ``([(offset, what it was doing)], sure, malformed)``. ``sure`` is
    False when the replay could not follow the fingerprint (the list is then
    empty); ``malformed`` is ``(offset, why)`` where the stream stops being a
    pickle, if the replay got there."""
    scanner = _scan.Scanner(_scan.Source(data))
    replay = _Replay(scanner, resolved, resolving, memo, any_opcode)
    malformed = None
    try:
        scanner.run_stepwise(replay.before)
    except _scan.FormatError as exc:
        # (A signed payload is loaded unchecked.) The unpickler stops here at
        # the latest, unless one of its calls failed earlier.
        malformed = (exc.offset, str(exc))
        if exc.offset != replay.current:  # the next opcode could not even be read
            replay.calls += replay.pending
        if scanner.memo_len == memo and replay.calls == resolved and not resolving:
            replay.found = [(pos, what) for pos, what in replay.found if pos != exc.offset]
            replay.found.append((exc.offset, f"malformed: {exc}"))
    except (_scan.LimitReached, RecursionError):
        return [], False, None
    if replay.unsure:
        return [], False, None
    return replay.found, True, malformed


def load_or_explain(unpickler, data, base: int = 0):
    """``unpickler.load()``; what it raises comes out as ``failure(...)`` says,
    the original error kept as the cause."""
    try:
        return unpickler.load()
    except Exception as exc:  # noqa: BLE001 - one library error, the cause kept
        error = failure(exc, data, unpickler, base)
        if error is exc:
            raise
        raise error from exc


def failure(exc: BaseException, data, unpickler, base: int = 0) -> UnpicklingError:
    """One library error for whatever loading ``data`` with ``unpickler`` raised,
    with the offset of the failing opcode (``base`` + its position in ``data``)
    when it can be told, None otherwise; the original error is the cause."""
    if isinstance(exc, UnpicklingError) and exc.offset is not None:
        return exc
    text = str(exc) if type(exc) is pickle.UnpicklingError else f"{type(exc).__name__}: {exc}"
    data = data if type(data) is bytes else bytes(data)
    try:
        memo = len(unpickler.memo.copy())
        found, sure, malformed = locate(
            data, resolved=unpickler._resolved, resolving=unpickler._resolving, memo=memo,
            any_opcode=isinstance(exc, (MemoryError, RecursionError)))
    except Exception:  # noqa: BLE001 - locating is best effort; the error stands
        found, sure, malformed = [], False, None
    kind = _kind_of(exc)
    if len(found) > 1 and found[-1][1].startswith("malformed") \
            and isinstance(exc, _FORMAT_ERRORS) and _raised_by_unpickler(exc) \
            and kind is None:
        # The unpickler's own complaint about the stream: where the stream
        # stops being one, which the replay found.
        found = found[-1:]
    if kind is not None and len(found) > 1:
        # e.g. "state is not a dictionary": of the candidates, only a BUILD.
        # (A candidate may sit at the end of the stream: "ends without STOP".)
        names = [(pos, what, _NAMES.get(data[pos], "") if pos < len(data) else "")
                 for pos, what in found]
        narrowed = [(pos, what) for pos, what, name in names
                    if name.startswith(kind) or kind == "BUFFER" and name.endswith("BUFFER")]
        found = narrowed or found
    offset = None
    if len(found) == 1:
        offset = base + found[0][0]
        where = f"at byte {offset}, {found[0][1]}"
    elif found:
        steps = ", ".join(f"byte {base + pos} ({what})" for pos, what in
                          found[:_MAX_CANDIDATES])
        more = " or a later one" if len(found) > _MAX_CANDIDATES else ""
        where = f"in one of the steps at {steps}{more}: the payload memoizes too little " \
            "to tell which"
    elif sure:
        where = "while running the payload's calls, at a step that cannot be pinned down"
    else:
        where = "at an offset that cannot be told"
    if malformed is not None and not (len(found) == 1 and found[0][0] == malformed[0]):
        where += f"; the stream is malformed at byte {base + malformed[0]} ({malformed[1]})"
    if isinstance(exc, UnpicklingError):  # a refusal with no offset (find_class)
        exc.offset = offset
        exc.args = (f"{exc} ({where})",)
        return exc
    error = UnpicklingError(f"cannot load payload: {text} ({where})", offset=offset)
    error.__cause__ = exc
    return error
