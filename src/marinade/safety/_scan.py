"""A symbolic pickle machine: runs a pickle stream without running anything.

It reads opcodes exactly as CPython's C unpickler (``_pickle.c``, what
``pickle.loads`` uses) does, stack, mark stack and memo included, but every
value is a symbol: ``Ref("os.system")`` for a global, ``FuncV`` for a function
rebuilt from shipped code, ``Obj`` for the unknown result of a call... Calls
to the callables that matter (``getattr``, ``importlib.import_module``,
``operator.getitem``, ``marshal.loads``, the reconstructors of marinade,
cloudpickle and dill) are evaluated symbolically, so that attribute chains,
memo aliases and dictionary tricks resolve to the names they reach at load
time. Nothing from the payload is imported, called or built.

Memory stays bounded whatever the payload size (``Limits``): string and
bytes data is not held but re-read on demand, within a budget, for names,
shipped code and nested pickles; containers keep their first items, and only
the containers most recently built or extended keep theirs at all; the memo
knows exactly which indices are set (MEMOIZE numbers entries by their count)
but keeps the values of the most recently used only. A value dropped at a
limit reads as ELIDED, and a step that needs it is reported as dangerous:
the scan fails closed, it never guesses.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import heapq
import re
import struct
import types
from collections import OrderedDict

from . import _code, _rules

_u16 = struct.Struct("<H").unpack_from
_i32 = struct.Struct("<i").unpack_from
_u32 = struct.Struct("<I").unpack_from
_u64 = struct.Struct("<Q").unpack_from
_f64 = struct.Struct(">d").unpack_from


class Limits:
    """Bounds that keep a scan's memory independent of the payload size.

    The defaults hold a scan to a few tens of megabytes. Raising ``memo`` and
    ``kept_items`` trades memory for fewer values dropped on very large
    payloads (a dropped value that a later step needs makes that step fail
    closed); ``stack`` bounds how many values one MARK can gather.
    """

    def __init__(self, *, kept_bytes: int = 64 << 20, blob: int = 16 << 20,
                 memo: int = 32_768, memo_index: int = 1 << 28, stack: int = 1_000_000,
                 items: int = 2048, kept_items: int = 100_000, nesting: int = 4,
                 functions: int = 10_000, line: int = 1 << 20):
        self.kept_bytes = kept_bytes  # str/bytes data kept in total (names, code, pickles)
        self.blob = blob  # one str/bytes value kept at most
        self.memo = memo  # memo values kept (the most recently used)
        self.memo_index = memo_index  # highest memo index followed
        self.stack = stack  # stack depth before the scan gives up
        self.items = items  # items kept per container
        self.kept_items = kept_items  # items kept by all containers (the recent ones)
        self.nesting = nesting  # nested pickles inspected
        self.functions = functions  # shipped functions and classes detailed
        self.line = line  # longest text line (protocol 0 arguments)


class FormatError(Exception):
    """The stream is not a pickle CPython could load (offset attached)."""

    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.offset = offset


class SourceError(FormatError):
    """Truncated input: the scanner reports it at the opcode being read."""


class LimitReached(Exception):
    """A scan limit was exceeded: the report is incomplete."""

    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.offset = offset


# -- the input ------------------------------------------------------------------------------


class Source:
    """Bytes or a binary file, read forward with bounded buffering.

    ``exact``: never read past what the opcodes consume (a pipe shared with
    a later reader must not lose bytes).

    Frames. Before gh-154848 was fixed (CPython 3.13.15, 3.14.7), the C
    unpickler's ``pickle.loads(data)`` treats FRAME as a mere length check,
    while the same unpickler reading a *file* (``pickle.load``) loads each
    frame into a buffer and, when an opcode needs more bytes than the buffer
    has left, drops the leftover and reads on from the file after the frame:
    the same bytes decode differently. Picklers never write an opcode across
    a frame's end (and fixed releases refuse it), so every crossing is
    recorded (``crossings``); with ``emulate_file`` the source reads the
    stream the way an older ``pickle.load`` of a file does.
    """

    def __init__(self, data=None, file=None, *, chunk: int = 1 << 16, exact: bool = False,
                 record: bool = False, emulate_file: bool = False):
        self.file = file
        self.i = 0
        self.base = 0
        self.frame_end: int | None = None  # where the C unpickler's frame buffer ends
        self.crossings: list[int] = []  # offsets of reads that cross a frame's end
        self.emulate_file = emulate_file
        self.chunk = 1 if exact else chunk
        self.record: bytearray | None = bytearray() if record else None
        self.origin: int | None = None  # file offset of the stream's first byte, if seekable
        if file is None:
            self.buf = data if isinstance(data, bytes) else bytes(data)
            self.size: int | None = len(self.buf)
        else:
            self.buf = b""
            self.size = None
            try:
                if file.seekable():
                    here = file.tell()
                    end = file.seek(0, 2)
                    file.seek(here)
                    self.size = end - here
                    self.origin = here
            except (AttributeError, OSError, ValueError):
                self.size = None

    def _frame_check(self, n: int) -> None:
        """Before reading ``n`` bytes: leave the frame buffer, noting a crossing."""
        end = self.frame_end
        p = self.tell()
        if end is None or p + n < end:
            return
        self.frame_end = None
        if p < end < p + n:
            if len(self.crossings) < 100:
                self.crossings.append(p)
            if self.emulate_file:
                self._skip(end - p)  # the leftover of the frame buffer is dropped

    def begin_frame(self, n: int) -> None:
        """A FRAME of ``n`` bytes starts here (after its 8-byte length).

        A frame that opens before the previous one ended is never written by
        a pickler; CPython releases that enforce frames refuse it (gh-154848).
        """
        end = self.frame_end
        p = self.tell()
        if end is not None and p < end:
            if len(self.crossings) < 100:
                self.crossings.append(p)
            if p + n <= end:
                return  # within the current buffer: older CPython re-reads it from there
            if self.emulate_file:
                self._skip(end - p)
                p = end
        self.frame_end = p + n if n else None

    def lazy(self, n: int, keep: bool):
        """Consume ``n`` bytes; return a function that fetches them later, or
        None when they cannot be had. Unseekable input is read now if ``keep``."""
        if self.frame_end is not None:
            self._frame_check(n)
        if self.file is None:
            i = self.i
            if i + n > len(self.buf):
                raise SourceError("pickle data was truncated", self.tell())
            self.i = i + n
            view = memoryview(self.buf)[i:i + n]
            return view.tobytes
        if self.origin is None or self.record is not None:
            if keep:
                data = self.read(n)
                return lambda: data
            self.skip(n)
            return None
        offset = self.origin + self.tell()
        self.skip(n)
        file = self.file

        def load() -> bytes | None:
            try:
                here = file.tell()
                file.seek(offset)
                data = file.read(n)
                file.seek(here)
            except (OSError, ValueError):
                return None
            return data if len(data) == n else None

        return load

    def tell(self) -> int:
        return self.base + self.i

    def remaining(self) -> int | None:
        return None if self.size is None else self.size - self.tell()

    def _refill(self, need: int) -> bool:
        """Make ``need`` bytes available at ``i``; False at end of input."""
        if self.file is None:
            return False
        rest = self.buf[self.i:]
        if self.record is not None:
            self.record += self.buf[:self.i]
        self.base += self.i
        self.i = 0
        want = max(self.chunk, need - len(rest))
        more = self.file.read(want)
        while more and len(rest) + len(more) < need:
            rest += more
            more = self.file.read(max(self.chunk, need - len(rest)))
        self.buf = rest + (more or b"")
        return len(self.buf) >= need

    def byte(self) -> int:
        if self.frame_end is not None and self.base + self.i + 1 >= self.frame_end:
            self._frame_check(1)
        i = self.i
        if i >= len(self.buf) and not self._refill(1):
            raise SourceError("pickle data was truncated", self.tell())
        i = self.i
        self.i = i + 1
        return self.buf[i]

    def at_end(self) -> bool:
        return self.i >= len(self.buf) and not self._refill(1)

    def read(self, n: int) -> bytes:
        if self.frame_end is not None and self.base + self.i + n >= self.frame_end:
            self._frame_check(n)
        i = self.i
        if i + n > len(self.buf):
            if not self._refill(n):
                raise SourceError("pickle data was truncated", self.tell())
            i = self.i
        self.i = i + n
        return self.buf[i:i + n]

    def skip(self, n: int) -> None:
        """Consume ``n`` bytes without keeping them (large values over budget)."""
        if self.frame_end is not None:
            self._frame_check(n)
        self._skip(n)

    def _skip(self, n: int) -> None:
        avail = len(self.buf) - self.i
        if n <= avail:
            self.i += n
            return
        if self.file is None:
            raise SourceError("pickle data was truncated", self.tell())
        start = self.tell()
        if self.record is not None:
            self.record += self.buf[:]
        self.base += len(self.buf)
        self.buf = b""
        self.i = 0
        left = n - avail
        while left:
            more = self.file.read(min(left, 1 << 20))
            if not more:
                raise SourceError("pickle data was truncated", start)
            if self.record is not None:
                self.record += more
            left -= len(more)
            self.base += len(more)

    def line(self, limit: int) -> bytes:
        """Bytes up to and including the next newline."""
        while True:
            end = self.buf.find(b"\n", self.i)
            if end >= 0:
                if self.frame_end is not None:
                    before = self.tell()
                    self._frame_check(end + 1 - self.i)
                    if self.tell() != before:  # emulating a file: the line starts anew
                        continue
                chunk = self.buf[self.i:end + 1]
                self.i = end + 1
                return chunk
            if len(self.buf) - self.i > limit:
                raise SourceError("text argument longer than the inspection limit", self.tell())
            if not self._refill(len(self.buf) - self.i + 1):
                raise SourceError("pickle data was truncated", self.tell())

    def consumed(self) -> bytes:
        """Every byte read so far (``record=True`` only)."""
        assert self.record is not None
        return bytes(self.record + self.buf[:self.i])

    def unread(self) -> None:
        """Give back read-ahead bytes to a seekable file."""
        extra = len(self.buf) - self.i
        if self.file is not None and extra:
            try:
                self.file.seek(-extra, 1)
            except (AttributeError, OSError, ValueError):
                return
            self.buf = self.buf[:self.i]


# -- symbolic values ------------------------------------------------------------------------


class Node:
    """A value that is not plain data. ``start``/``end``: the payload bytes it spans."""

    __slots__ = ("start", "end")
    kind = "value"

    def describe(self) -> str:
        return self.kind


class Ref(Node):
    """The object at an import path: a module, or an attribute reached from one."""

    __slots__ = ("dotted", "tag", "namespace")
    kind = "global"

    def __init__(self, dotted: str, tag: int | None = None, namespace: bool = False):
        self.dotted = dotted
        self.tag = tag  # the bytecode version a marshal guard vouches for
        self.namespace = namespace  # vars(module): items are the module's attributes

    def describe(self) -> str:
        return f"vars({self.dotted})" if self.namespace else self.dotted


class Blob(Node):
    """A str or bytes value too long to hold as a plain atom.

    Its contents are fetched only when the analysis needs them (a name, a
    code object, a nested pickle): from the caller's buffer without a copy,
    or re-read from a seekable file. ``data`` is None when they cannot be
    had (a pipe, past the memory budget).
    """

    __slots__ = ("type", "size", "_data", "_load")
    kind = "data"

    def __init__(self, type_: str, size: int, data=None, load=None):
        self.type = type_
        self.size = size
        self._data = data
        self._load = load

    @property
    def data(self):
        if self._data is None and self._load is not None:
            load, self._load = self._load, None
            raw = load()
            if raw is not None:
                if self.type == "str":
                    try:
                        raw = raw.decode("utf-8", "surrogatepass")
                    except UnicodeDecodeError:
                        raw = None
                self._data = raw
        return self._data

    def describe(self) -> str:
        return f"{self.type} of {_human(self.size)}"


class Seq(Node):
    """A tuple, list, set or frozenset: ``count`` items, the first of which
    are kept in ``items`` (all of them while ``len(items) == count``).

    ``charged``: item slots accounted to the scan's budget (``Scanner._keep``);
    -1 once the budget dropped them: ``items`` then no longer line up with
    positions, and the container keeps nothing more.
    """

    __slots__ = ("type", "items", "count", "charged")
    kind = "data"

    def __init__(self, type_: str, items: list, count: int | None = None):
        self.type = type_
        self.items = items
        self.count = len(items) if count is None else count
        self.charged = 0

    def describe(self) -> str:
        return f"{self.type} of {self.count} items"


class Map(Node):
    """A dict: ``count`` items, of which ``entries`` (plain-data keys) and
    ``values`` (under other keys) keep some. ``charged`` as for Seq."""

    __slots__ = ("entries", "count", "values", "charged")
    kind = "data"

    def __init__(self):
        self.entries: dict = {}  # plain-data keys
        self.values: list = []  # values under keys that are not plain data
        self.count = 0
        self.charged = 0

    def describe(self) -> str:
        return f"dict of {self.count} items"


class Obj(Node):
    """Something made while loading that inspection cannot name precisely."""

    __slots__ = ("what", "of")
    kind = "object"

    def __init__(self, what: str, of=None):
        self.what = what
        self.of = of  # the class (Ref or ClassV) of an instance, when known

    def describe(self) -> str:
        return self.what


class AttrV(Node):
    """``getattr(value, name)`` for a value that is not an import path."""

    __slots__ = ("base", "name")
    kind = "attribute"

    def __init__(self, base, name: str):
        self.base = base
        self.name = name

    def describe(self) -> str:
        base = self.base
        if type(base) is Obj and type(base.of) is Ref:
            return f"{base.of.dotted}.{self.name}"  # a method of an instance: Class.method
        return f"{_describe(base)}.{self.name}"


class CodeV(Node):
    """Shipped code: marshal bytes or ``CodeType`` fields, analysed after the scan."""

    __slots__ = ("source", "data", "tag", "info", "error", "facts", "size")
    kind = "code"

    def __init__(self, source: str, data, tag: int | None, size: int):
        # "marshal", "fields", "source" (a portable payload's spec), or "table"
        # (an entry of a marinade code table, parsed with the table)
        self.source = source
        self.data = data  # bytes, or the list of field values
        self.tag = tag
        self.info: _code.CodeInfo | None = None
        self.error: str | None = None
        self.facts: _code.CodeFacts | None = None
        self.size = size

    def parse(self) -> _code.CodeInfo | None:
        if self.info is None and self.error is None:
            try:
                if self.source == "marshal":
                    if self.data is None:
                        raise _code.CodeFormatError("code bytes over the inspection budget")
                    self.info = _code.parse_marshal(self.data)
                elif self.source == "source":
                    self.info = _code.info_from_source(self.data)
                    self.tag = _code.CURRENT_TAG  # compiled here, by this interpreter
                else:
                    self.info = _code.info_from_fields(self.data)
            except (_code.CodeFormatError, RecursionError) as exc:
                self.error = str(exc)
        return self.info

    def describe(self) -> str:
        info = self.parse()
        return f"code of {info.qualname}" if info is not None else "code"


class FuncV(Node):
    __slots__ = ("code", "globals", "closure", "attrs", "maker", "offset", "known")
    kind = "function"

    def __init__(self, code, fglobals, closure, maker: str, offset: int):
        self.code = code
        self.globals = fglobals
        self.closure = closure
        self.attrs: dict = {}
        self.maker = maker
        self.offset = offset
        # The marinade reconstructor this is a byte-identical shipped copy of
        # (standalone payloads carry them by value), or None.
        self.known: str | None = None

    def qualname(self) -> str:
        name = self.attrs.get("__qualname__")
        if type(name) is str:
            return name
        info = self.code.parse() if type(self.code) is CodeV else None
        return info.qualname if info is not None else "<function>"

    def module(self) -> str | None:
        module = self.attrs.get("__module__")
        if type(module) is str:
            return module
        fglobals = self.globals
        if type(fglobals) is str:
            return fglobals
        if type(fglobals) is Map:
            name = fglobals.entries.get("__name__")
            return name if type(name) is str else None
        return None

    def describe(self) -> str:
        if self.known is not None:
            return f"function {self.known} (shipped copy)"
        module = self.module()
        return f"function {module + '.' if module else ''}{self.qualname()}"


class CellV(Node):
    __slots__ = ("value",)
    kind = "cell"

    def __init__(self, value):
        self.value = value


_EMPTY = Obj("empty cell")


class ClassV(Node):
    __slots__ = ("name", "attrs", "maker", "offset", "bases")
    kind = "class"

    def __init__(self, name, attrs: dict, maker: str, offset: int, bases=None):
        self.name = name if type(name) is str else "<class>"
        self.attrs = attrs
        self.maker = maker
        self.offset = offset
        self.bases = bases

    def qualname(self) -> str:
        name = self.attrs.get("__qualname__")
        return name if type(name) is str else self.name

    def describe(self) -> str:
        module = self.attrs.get("__module__")
        prefix = module + "." if type(module) is str else ""
        return f"class {prefix}{self.qualname()}"


class Getter(Node):
    """``operator.attrgetter(*names)`` or ``operator.methodcaller(name, *args)``."""

    __slots__ = ("names", "method", "args")
    kind = "getter"

    def __init__(self, names, method: bool, args=()):
        self.names = names
        self.method = method
        self.args = args


class PartialV(Node):
    __slots__ = ("func", "args")
    kind = "partial"

    def __init__(self, func, args: list):
        self.func = func
        self.args = args


class OneOf(Node):
    """One of several values, chosen at load time by a key inspection cannot compute."""

    __slots__ = ("options",)
    kind = "choice"

    def __init__(self, options: list):
        self.options = options


class _Elided(Node):
    __slots__ = ()
    kind = "dropped"

    def describe(self) -> str:
        return "a value dropped at an inspection limit"


ELIDED = _Elided()
_UNSET = object()
_ATOMS = (type(None), bool, int, float, str, bytes)
_ATOM_TEXT = 4096  # str and bytes longer than this become Blobs


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _describe(value) -> str:
    if isinstance(value, Node):
        return value.describe()
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def text_of(value) -> str | None:
    """The str a value certainly is, or None."""
    if type(value) is str:
        return value
    if type(value) is Blob and value.type == "str" and value.data is not None:
        return value.data
    return None


def bytes_of(value) -> bytes | None:
    if type(value) is bytes:
        return value
    if type(value) is Blob and value.type in ("bytes", "bytearray") and value.data is not None:
        return value.data
    return None


def items_of(value) -> list | None:
    """Items of a tuple or list value when all were kept."""
    if type(value) is Seq and len(value.items) == value.count:
        return value.items
    return None


# -- findings -------------------------------------------------------------------------------


class Finding:
    """``name``: the dotted global a finding is about, None for structural
    findings (computed names, chains through dunders, limits...)."""

    __slots__ = ("severity", "message", "offset", "where", "name")

    def __init__(self, severity: str, message: str, offset: int | None, where: str = "",
                 name: str | None = None):
        self.severity = severity
        self.message = message
        self.offset = offset
        self.where = where
        self.name = name

    def as_dict(self) -> dict:
        return {"severity": self.severity, "message": self.message, "offset": self.offset,
                "where": self.where}


_GUARD = re.compile(r"CPython (\d+)\.(\d+) bytecode cannot run on (\d+)\.(\d+)\Z")
_ESCAPE_DUNDERS = {"__class__", "__base__", "__bases__", "__mro__", "__subclasses__",
                   "__globals__", "__builtins__", "__code__", "__closure__", "__self__",
                   "__func__", "__getattribute__", "__reduce__", "__reduce_ex__", "__init__",
                   "__import__", "__loader__", "__spec__", "__call__", "__kwdefaults__",
                   "__defaults__", "__setstate__", "__getstate__"}


class Scanner:
    """One pickle stream, scanned. ``run()`` returns at its STOP opcode."""

    def __init__(self, source: Source, limits: Limits | None = None, *, base: int = 0,
                 depth: int = 0, buffers: bool = True):
        self.src = source
        self.limits = limits or Limits()
        self.base = base  # offset of this stream in what the user passed
        self.depth = depth
        self.proto = 0
        self.stack: list = []
        self.starts: list[int] = []
        self.marks: list[tuple[int, int]] = []  # (stack length, MARK offset)
        self.fence = 0
        # The memo: values by index, least recently used first (see _store).
        self.memo: OrderedDict[int, object] = OrderedDict()
        self.memo_len = 0  # how many entries the unpickler's memo holds
        self.memo_dropped = 0  # values dropped at the limit
        self._kept: OrderedDict[int, object] = OrderedDict()  # containers with items, by age
        self.kept_items = 0  # item slots they hold
        self._budget = self.limits.kept_items
        self.containers_dropped = 0  # containers whose items were dropped at the budget
        self._memo_bits = bytearray()  # which indices are set
        self.kept = 0  # bytes of str/bytes data fetched for analysis
        self.held = 0  # bytes read ahead from unseekable input and held
        self.findings: list[Finding] = []
        self.imports: dict[str, list] = {}  # dotted -> [count, first offset, opcode]
        self.calls: dict[str, list] = {}  # callable -> [count, first offset]
        self.functions: list[FuncV] = []
        self.classes: list[ClassV] = []
        self.codes: list[CodeV] = []
        self.nested: list = []  # (offset, Report) of pickles loaded by this one
        self.largest: list[tuple[int, int, str]] = []  # heap of (size, offset, description)
        self.frames = 0
        self.ext_codes: list[tuple[int, int]] = []  # (code, offset)
        self.dotted_globals: list[tuple[str, str, int]] = []
        self.persistent_ids = 0
        self.buffers = 0
        self.attr_fetches: list[tuple[object, str, str | None, int]] = []
        self.module_imports: list[tuple[str | None, int]] = []
        self.shipped_calls: list[tuple[str, int]] = []
        self.opcodes = 0
        self.max_memo_index = -1
        self.max_memo_offset = 0
        self.persistent_offset: int | None = None
        self.call_hook = None  # f(dotted, args, offset): restricted loading's extra checks
        self.result = None
        self._pos = 0
        self._dispatch = self._table()

    # -- reporting --------------------------------------------------------------------------

    def flag(self, severity: str, message: str, offset: int | None = None,
             name: str | None = None) -> None:
        if offset is None:
            offset = self._pos
        if len(self.findings) < 1000:
            self.findings.append(Finding(severity, message, self.base + offset, "", name))

    def _note_large(self, size: int, offset: int, what) -> None:
        heap = self.largest
        if len(heap) < 10:
            heapq.heappush(heap, (size, offset, _describe(what)))
        elif size > heap[0][0]:
            heapq.heapreplace(heap, (size, offset, _describe(what)))

    # -- stack ------------------------------------------------------------------------------

    def _error(self, message: str) -> FormatError:
        return FormatError(message, self.base + self._pos)

    def push(self, value, start: int) -> None:
        # (the depth limit is checked by run(), every 1024 opcodes: an opcode
        # pushes one value at most)
        self.stack.append(value)
        self.starts.append(start)

    def pop(self):
        if len(self.stack) <= self.fence:
            raise self._error("unpickling stack underflow")
        self.starts.pop()
        return self.stack.pop()

    def pop_start(self) -> tuple[object, int]:
        if len(self.stack) <= self.fence:
            raise self._error("unpickling stack underflow")
        return self.stack.pop(), self.starts.pop()

    def top(self):
        if len(self.stack) <= self.fence:
            raise self._error("unpickling stack underflow")
        return self.stack[-1]

    def _close_mark(self) -> tuple[int, int]:
        """Drop the last MARK: the stack length and offset it recorded (C ``marker()``)."""
        if not self.marks:
            raise self._error("could not find MARK")
        length, offset = self.marks.pop()
        self.fence = self.marks[-1][0] if self.marks else 0
        return length, offset

    def pop_mark(self) -> tuple[list, int]:
        """Items above the last MARK, and the MARK's offset."""
        length, offset = self._close_mark()
        items = self.stack[length:]
        del self.stack[length:]
        del self.starts[length:]
        return items, offset

    def pop_n(self, n: int) -> tuple[list, int]:
        if len(self.stack) - n < self.fence:
            raise self._error("unpickling stack underflow")
        items = self.stack[len(self.stack) - n:]
        start = self.starts[len(self.stack) - n] if n else self._pos
        del self.stack[len(self.stack) - n:]
        del self.starts[len(self.starts) - n:]
        return items, start

    # -- the loop ---------------------------------------------------------------------------

    def run(self):
        src = self.src
        table = self._dispatch
        stack = self.stack
        limit = self.limits.stack
        count = 0
        while True:
            i = src.i
            pos = self._pos = src.base + i
            end = src.frame_end
            if i < len(src.buf) and (end is None or pos + 1 < end):
                op = src.buf[i]  # the common case, inlined: one byte, no frame to leave
                src.i = i + 1
            else:
                try:
                    op = src.byte()
                except SourceError:
                    raise FormatError("pickle data was truncated" if pos else
                                      "Ran out of input", self.base + pos) from None
            handler = table[op]
            if handler is None:
                raise FormatError(f"invalid load key, {chr(op)!r}", self.base + pos)
            count += 1
            if not count & 1023:
                self.opcodes = count
                if len(stack) > limit:
                    raise LimitReached("stack deeper than the inspection limit",
                                       self.base + pos)
            try:
                if handler(pos):
                    self.opcodes = count
                    return self.result
            except SourceError as exc:
                raise FormatError(str(exc), self.base + pos) from None
            except (ValueError, OverflowError, struct.error) as exc:
                if isinstance(exc, FormatError):
                    raise
                raise FormatError(f"{type(exc).__name__}: {exc}", self.base + pos) from None

    def run_stepwise(self, before):
        """``run()``, calling ``before(offset, opcode)`` ahead of each opcode
        (slow: for replays); stops early, returning None, when it returns False."""
        src = self.src
        table = self._dispatch
        while True:
            pos = self._pos = src.tell()
            try:
                op = src.byte()
            except SourceError:
                raise FormatError("pickle data was truncated" if pos else "Ran out of input",
                                  self.base + pos) from None
            handler = table[op]
            if handler is None:
                raise FormatError(f"invalid load key, {chr(op)!r}", self.base + pos)
            if before(pos, op) is False:
                return None
            try:
                if handler(pos):
                    return self.result
            except SourceError as exc:
                raise FormatError(str(exc), self.base + pos) from None
            except (ValueError, OverflowError, struct.error) as exc:
                if isinstance(exc, FormatError):
                    raise
                raise FormatError(f"{type(exc).__name__}: {exc}", self.base + pos) from None

    def _table(self) -> list:
        table: list = [None] * 256
        for name in dir(self):
            if name.startswith("op_"):
                code = _OPCODES[name[3:]]
                table[code] = getattr(self, name)
        return table

    # -- data opcodes -----------------------------------------------------------------------

    def _read_line(self) -> bytes:
        line = self.src.line(self.limits.line)
        return line

    def _text_or_blob(self, n: int, kind: str, pos: int):
        """Read an ``n``-byte str/bytes argument, keeping it while the budget allows."""
        if n <= _ATOM_TEXT:
            raw = self.src.read(n)
            return self._decode(raw, kind)
        type_ = "str" if kind == "ascii" else kind
        keep = n <= self.limits.blob and self.held + n <= self.limits.kept_bytes
        if keep and self.src.origin is None and self.src.file is not None:
            self.held += n  # read now from a pipe: it counts while the scan lasts
        fetch = self.src.lazy(n, keep)
        blob = Blob(type_, n, None, None if fetch is None else self._budgeted(fetch, n))
        blob.start = pos
        blob.end = self.src.tell()
        self._note_large(n, pos, blob)
        return blob

    def _budgeted(self, fetch, n: int):
        """``fetch`` limited by the memory budget for data the analysis holds."""
        def load():
            if n > self.limits.blob or self.kept + n > self.limits.kept_bytes:
                return None
            self.kept += n
            return fetch()
        return load

    def _decode(self, raw: bytes, kind: str):
        if kind == "bytes":
            return raw
        if kind == "bytearray":
            return raw  # the same bytes; its type only matters to the loader
        try:
            if kind == "str":
                return raw.decode("utf-8", "surrogatepass")
            return raw.decode("ascii")  # BINSTRING with the default encoding
        except UnicodeDecodeError as exc:
            raise self._error(f"cannot decode string: {exc.reason}") from None

    def op_PROTO(self, pos):
        proto = self.src.byte()
        if proto > 5:
            raise self._error(f"unsupported pickle protocol: {proto}")
        self.proto = proto

    def op_FRAME(self, pos):
        (size,) = _u64(self.src.read(8))
        self.src.begin_frame(size)
        remaining = self.src.remaining()
        if remaining is not None and size > remaining:
            raise self._error("pickle data was truncated")
        self.frames += 1

    def op_STOP(self, pos):
        self.result = self.pop()
        return True

    def op_MARK(self, pos):
        self.marks.append((len(self.stack), pos))
        self.fence = len(self.stack)

    def op_POP(self, pos):
        length = len(self.stack)
        if self.marks and self.marks[-1][0] == length:
            self.marks.pop()
            self.fence = self.marks[-1][0] if self.marks else 0
        elif length <= self.fence:
            raise self._error("unpickling stack underflow")
        else:
            self.stack.pop()
            self.starts.pop()

    def op_POP_MARK(self, pos):
        self.pop_mark()

    def op_DUP(self, pos):
        value = self.top()
        self.push(value, self.starts[-1])

    def op_NONE(self, pos):
        self.push(None, pos)

    def op_NEWTRUE(self, pos):
        self.push(True, pos)

    def op_NEWFALSE(self, pos):
        self.push(False, pos)

    def op_INT(self, pos):
        line = self._read_line()
        if len(line) < 2:
            raise self._error("pickle data was truncated")
        if line in (b"00\n", b"01\n"):
            self.push(line == b"01\n", pos)
            return
        self.push(self._c_int(line, strtol=True), pos)

    def _c_int(self, line: bytes, strtol: bool) -> int:
        """The int C's ``load_int``/``load_long`` make of a text line."""
        text = line[:-1].decode("latin-1")
        if strtol:
            value = _strtol(text)
            if value is not None:
                return value
        try:
            return int(text.strip(), 0)
        except ValueError:
            raise self._error(f"invalid literal for int() with base 0: {text[:40]!r}") from None

    # The most frequent opcodes read their argument straight from the buffer
    # when it is there and ends before the frame does (``_fast``); otherwise
    # they take the general path (``Source.read``), which handles refills and
    # frame ends.

    def op_BININT(self, pos):
        src = self.src
        i = src.i
        if i + 4 <= len(src.buf) and (src.frame_end is None or pos + 5 < src.frame_end):
            src.i = i + 4
            self.stack.append(_i32(src.buf, i)[0])
            self.starts.append(pos)
            return
        self.push(_i32(self.src.read(4))[0], pos)

    def op_BININT1(self, pos):
        src = self.src
        i = src.i
        if i < len(src.buf) and (src.frame_end is None or pos + 2 < src.frame_end):
            src.i = i + 1
            self.stack.append(src.buf[i])
            self.starts.append(pos)
            return
        self.push(self.src.byte(), pos)

    def op_BININT2(self, pos):
        src = self.src
        i = src.i
        if i + 2 <= len(src.buf) and (src.frame_end is None or pos + 3 < src.frame_end):
            src.i = i + 2
            self.stack.append(_u16(src.buf, i)[0])
            self.starts.append(pos)
            return
        self.push(_u16(self.src.read(2))[0], pos)

    def op_LONG(self, pos):
        line = self._read_line()
        if len(line) < 2:
            raise self._error("pickle data was truncated")
        if line.endswith(b"L\n"):
            line = line[:-2] + b"\n"
        self.push(self._c_int(line, strtol=False), pos)

    def _long(self, n: int, pos: int):
        if n > 4096:  # an int of >32k bits matters to no resolution: keep its size only
            self.src.skip(n)
            self.push(Obj(f"int of {n} bytes"), pos)
            return
        self.push(int.from_bytes(self.src.read(n), "little", signed=True), pos)

    def op_LONG1(self, pos):
        self._long(self.src.byte(), pos)

    def op_LONG4(self, pos):
        (n,) = _i32(self.src.read(4))
        if n < 0:
            raise self._error("LONG pickle has negative byte count")
        self._long(n, pos)

    def op_FLOAT(self, pos):
        line = self._read_line()
        try:
            value = float(line[:-1].decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            raise self._error("could not convert string to float") from None
        self.push(value, pos)

    def op_BINFLOAT(self, pos):
        src = self.src
        i = src.i
        if i + 8 <= len(src.buf) and (src.frame_end is None or pos + 9 < src.frame_end):
            src.i = i + 8  # (the common case, inlined)
            self.stack.append(_f64(src.buf, i)[0])
            self.starts.append(pos)
            return
        self.push(_f64(src.read(8))[0], pos)

    def op_STRING(self, pos):
        line = self._read_line()
        text = line.rstrip(b"\x00\t\n\x0b\x0c\r ")
        if len(line) < 2:
            raise self._error("pickle data was truncated")
        if len(text) >= 2 and text[0] == text[-1] and text[:1] in (b"'", b'"'):
            text = text[1:-1]
        else:
            raise self._error("the STRING opcode argument must be quoted")
        try:
            raw = codecs.escape_decode(text)[0]
            self.push(raw.decode("ascii"), pos)
        except (ValueError, UnicodeDecodeError):
            raise self._error("cannot decode STRING argument") from None

    def op_BINSTRING(self, pos):
        (n,) = _i32(self.src.read(4))
        if n < 0:
            raise self._error("BINSTRING pickle has negative byte count")
        self.push(self._text_or_blob(n, "ascii", pos), pos)

    def op_SHORT_BINSTRING(self, pos):
        self.push(self._text_or_blob(self.src.byte(), "ascii", pos), pos)

    def op_BINBYTES(self, pos):
        self.push(self._text_or_blob(_u32(self.src.read(4))[0], "bytes", pos), pos)

    def op_SHORT_BINBYTES(self, pos):
        self.push(self._text_or_blob(self.src.byte(), "bytes", pos), pos)

    def op_BINBYTES8(self, pos):
        self.push(self._text_or_blob(_u64(self.src.read(8))[0], "bytes", pos), pos)

    def op_BYTEARRAY8(self, pos):
        value = self._text_or_blob(_u64(self.src.read(8))[0], "bytearray", pos)
        if type(value) is bytes:
            value = Blob("bytearray", len(value), value)
            value.start, value.end = pos, self.src.tell()
        self.push(value, pos)

    def op_UNICODE(self, pos):
        line = self._read_line()
        try:
            self.push(line[:-1].decode("raw-unicode-escape"), pos)
        except UnicodeDecodeError:
            raise self._error("cannot decode UNICODE argument") from None

    def op_BINUNICODE(self, pos):
        self.push(self._text_or_blob(_u32(self.src.read(4))[0], "str", pos), pos)

    def op_SHORT_BINUNICODE(self, pos):
        src = self.src
        buf = src.buf
        i = src.i
        if i < len(buf):
            end = i + 1 + buf[i]
            if end <= len(buf) and (src.frame_end is None
                                    or pos + 1 + end - i < src.frame_end):
                try:
                    text = buf[i + 1:end].decode("utf-8", "surrogatepass")
                except UnicodeDecodeError as exc:
                    raise self._error(f"cannot decode string: {exc.reason}") from None
                src.i = end
                self.stack.append(text)
                self.starts.append(pos)
                return
        self.push(self._text_or_blob(self.src.byte(), "str", pos), pos)

    def op_BINUNICODE8(self, pos):
        self.push(self._text_or_blob(_u64(self.src.read(8))[0], "str", pos), pos)

    # -- containers -------------------------------------------------------------------------

    def _seq(self, type_: str, items: list, start: int):
        kept = self.limits.items
        seq = Seq(type_, items if len(items) <= kept else items[:kept], len(items))
        seq.start = start
        seq.end = self.src.base + self.src.i
        if seq.items:
            self._keep(seq, len(seq.items))
        if seq.end - start > 4096:
            self._note_large(seq.end - start, start, seq)
        return seq

    def _keep(self, container, added: int) -> None:
        """Account ``added`` more item slots kept by ``container``.

        Containers keep their items within one budget for the whole scan
        (``limits.kept_items``): past it, the containers least recently made
        or extended drop theirs (``charged = -1``). What inspection needs from
        a container (call arguments, a function's globals, a class namespace)
        is needed right after it is built; a dropped item that is needed later
        reads as ELIDED, which fails closed.
        """
        container.charged += added
        self.kept_items += added
        kept = self._kept
        key = id(container)
        if key in kept:
            kept.move_to_end(key)
        else:
            kept[key] = container
        if self.kept_items > self._budget:
            while self.kept_items > self._budget and kept:
                self._drop(kept.popitem(last=False)[1], listed=False)

    def _drop(self, container, listed: bool = True) -> None:
        """Drop the items ``container`` keeps: it only counts from now on."""
        if container.charged < 0:
            return
        if listed:
            self._kept.pop(id(container), None)
        self.kept_items -= container.charged
        container.charged = -1
        if type(container) is Map:
            container.entries = {}
            container.values = []
        else:
            container.items = []
        self.containers_dropped += 1

    def op_EMPTY_TUPLE(self, pos):
        self.push(self._seq("tuple", [], pos), pos)

    def op_TUPLE(self, pos):
        items, start = self.pop_mark()
        self.push(self._seq("tuple", items, start), start)

    def op_TUPLE1(self, pos):
        items, start = self.pop_n(1)
        self.push(self._seq("tuple", items, start), start)

    def op_TUPLE2(self, pos):
        items, start = self.pop_n(2)
        self.push(self._seq("tuple", items, start), start)

    def op_TUPLE3(self, pos):
        items, start = self.pop_n(3)
        self.push(self._seq("tuple", items, start), start)

    def op_EMPTY_LIST(self, pos):
        seq = Seq("list", [], 0)
        seq.start = seq.end = pos
        self.stack.append(seq)
        self.starts.append(pos)

    def op_LIST(self, pos):
        items, start = self.pop_mark()
        self.push(self._seq("list", items, start), start)

    def op_EMPTY_SET(self, pos):
        self.push(self._seq("set", [], pos), pos)

    def op_FROZENSET(self, pos):
        items, start = self.pop_mark()
        self.push(self._seq("frozenset", items, start), start)

    def op_EMPTY_DICT(self, pos):
        value = Map()
        value.start = value.end = pos
        self.stack.append(value)
        self.starts.append(pos)

    def op_DICT(self, pos):
        items, start = self.pop_mark()
        if len(items) % 2:
            raise self._error("odd number of items for DICT")
        value = Map()
        value.start = start
        self._set_items(value, items)
        value.end = self.src.tell()
        self.push(value, start)

    def _set_items(self, target, items: list) -> None:
        if type(target) is Map:
            target.end = self.src.base + self.src.i
            if target.charged < 0:  # dropped at the budget: counts only
                target.count += len(items) // 2
                return
            kept = self.limits.items
            entries = target.entries
            before = len(entries) + len(target.values)
            for i in range(0, len(items), 2):
                key = items[i]
                target.count += 1
                if type(key) in _ATOMS:
                    if len(entries) < kept or key in entries:
                        entries[key] = items[i + 1]
                elif len(target.values) < kept:
                    target.values.append(items[i + 1])
            added = len(entries) + len(target.values) - before
            if added:
                self._keep(target, added)
            return
        # ``obj[key] = value`` on anything else runs its __setitem__.
        self._method_call(target, "__setitem__")

    def op_SETITEM(self, pos):
        self._do_setitems(len(self.stack) - 2)

    def op_SETITEMS(self, pos):
        marks = self.marks
        if not marks:
            raise self._error("could not find MARK")
        x = marks.pop()[0]
        self.fence = marks[-1][0] if marks else 0
        stack = self.stack
        target = stack[x - 1] if 0 < x <= len(stack) else None
        if type(target) is Map and not (len(stack) - x) % 2:
            items = stack[x:]  # the common case, inlined: a plain dict
            del stack[x:]
            del self.starts[x:]
            self._set_items(target, items)
            return
        self._do_setitems(x)

    def _items_above(self, x: int) -> list:
        """Take the items above stack position ``x``, which must hold the target."""
        if x > len(self.stack) or x <= 0:
            raise self._error("unpickling stack underflow")
        items = self.stack[x:]
        del self.stack[x:]
        del self.starts[x:]
        return items

    def _do_setitems(self, x: int) -> None:
        if (len(self.stack) - x) % 2 and 0 < x <= len(self.stack):
            raise self._error("odd number of items for SETITEMS")
        items = self._items_above(x)
        if items:
            self._set_items(self.stack[x - 1], items)

    def op_APPEND(self, pos):
        self._do_append(len(self.stack) - 1)

    def op_APPENDS(self, pos):
        marks = self.marks
        if not marks:
            raise self._error("could not find MARK")
        x = marks.pop()[0]
        self.fence = marks[-1][0] if marks else 0
        self._do_append(x)

    def _do_append(self, x: int) -> None:
        stack = self.stack
        if x > len(stack) or x <= 0:
            raise self._error("unpickling stack underflow")
        items = stack[x:]
        if not items:
            return
        del stack[x:]
        del self.starts[x:]
        target = stack[x - 1]
        if type(target) is Seq and target.type == "list":
            room = self.limits.items - len(target.items)
            if room > 0 and target.charged >= 0:
                added = items if room >= len(items) else items[:room]
                target.items.extend(added)
                self._keep(target, len(added))
            target.count += len(items)
            target.end = self.src.base + self.src.i
            return
        self._method_call(target, "extend")  # C tries extend, then append

    def op_ADDITEMS(self, pos):
        x, _ = self._close_mark()
        items = self._items_above(x)
        if not items:
            return
        target = self.stack[x - 1]
        if type(target) is Seq and target.type == "set":
            room = self.limits.items - len(target.items)
            if room > 0 and target.charged >= 0:
                added = items[:room]
                target.items.extend(added)
                self._keep(target, len(added))
            target.count += len(items)
            return
        self._method_call(target, "add")

    def _method_call(self, target, method: str) -> None:
        """APPENDS, SETITEMS and ADDITEMS call methods of objects that are not
        plain containers: account for them like calls."""
        if type(target) in (Seq, Map):
            return
        self._call(AttrV(target, method), [], None, self._pos)

    # -- memo -------------------------------------------------------------------------------

    def _memo_put(self, index: int) -> None:
        if len(self.stack) <= self.fence:
            raise self._error("unpickling stack underflow")
        self._store(index, self.stack[-1])

    def _store(self, index: int, value) -> None:
        """``memo[index] = value``. Which indices are set is known exactly (the
        unpickler's MEMOIZE numbers entries by their count); their values are
        kept for the ``limits.memo`` most recently used, and a value dropped
        past that comes back as ELIDED, which fails closed where it matters."""
        bits = self._memo_bits
        byte = index >> 3
        if byte >= len(bits):
            if index >= self.limits.memo_index:
                raise LimitReached(f"memo index {index} beyond the inspection limit",
                                   self.base + self._pos)
            bits.extend(bytes(max(byte + 1, 2 * len(bits)) - len(bits)))
        mask = 1 << (index & 7)
        if not bits[byte] & mask:
            bits[byte] |= mask
            self.memo_len += 1
        if index > self.max_memo_index:
            self.max_memo_index = index
            self.max_memo_offset = self.base + self._pos
        memo = self.memo
        if index in memo:
            memo.move_to_end(index)
        elif len(memo) >= self.limits.memo:
            memo.popitem(last=False)  # the least recently used value
            self.memo_dropped += 1
        memo[index] = value

    def _memo_get(self, index: int, pos: int) -> None:
        memo = self.memo
        value = memo.get(index, _UNSET)
        if value is _UNSET:
            byte = index >> 3
            if byte >= len(self._memo_bits) or not self._memo_bits[byte] & 1 << (index & 7):
                raise self._error(f"Memo value not found at index {index}")
            value = ELIDED  # set, but its value was dropped at the limit
        else:
            memo.move_to_end(index)
        self.push(value, pos)

    def op_PUT(self, pos):
        line = self._read_line()
        try:
            index = int(line[:-1].decode("ascii"), 10)
        except (ValueError, UnicodeDecodeError):
            raise self._error("invalid PUT argument") from None
        if index < 0:
            raise self._error("negative PUT argument")
        self._memo_put(index)

    def op_BINPUT(self, pos):
        src = self.src
        i = src.i
        if i < len(src.buf) and (src.frame_end is None or pos + 2 < src.frame_end):
            src.i = i + 1
            self._memo_put(src.buf[i])
            return
        self._memo_put(self.src.byte())

    def op_LONG_BINPUT(self, pos):
        self._memo_put(_u32(self.src.read(4))[0])

    def op_MEMOIZE(self, pos):
        stack = self.stack
        if len(stack) <= self.fence:
            raise self._error("unpickling stack underflow")
        index = self.memo_len
        bits = self._memo_bits
        byte = index >> 3
        if byte < len(bits) and not bits[byte] & 1 << (index & 7):
            # The common case, inlined: a new index (so not in memo either).
            bits[byte] |= 1 << (index & 7)
            self.memo_len = index + 1
            if index > self.max_memo_index:
                self.max_memo_index = index
                self.max_memo_offset = self.base + pos
            memo = self.memo
            if len(memo) >= self.limits.memo:
                memo.popitem(last=False)
                self.memo_dropped += 1
            memo[index] = stack[-1]
            return
        self._store(index, stack[-1])

    def op_GET(self, pos):
        line = self._read_line()
        try:
            index = int(line[:-1].decode("ascii"), 10)
        except (ValueError, UnicodeDecodeError):
            raise self._error("invalid GET argument") from None
        self._memo_get(index, pos)

    def op_BINGET(self, pos):
        src = self.src
        i = src.i
        if i < len(src.buf) and (src.frame_end is None or pos + 2 < src.frame_end):
            src.i = i + 1
            index = src.buf[i]
            memo = self.memo
            if index in memo:
                memo.move_to_end(index)
                self.stack.append(memo[index])
                self.starts.append(pos)
                return
            self._memo_get(index, pos)
            return
        self._memo_get(self.src.byte(), pos)

    def op_LONG_BINGET(self, pos):
        self._memo_get(_u32(self.src.read(4))[0], pos)

    # -- globals ----------------------------------------------------------------------------

    def _utf8_line(self) -> str:
        line = self._read_line()
        if len(line) < 2:
            raise self._error("pickle data was truncated")
        try:
            return line[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise self._error("cannot decode global name") from None

    def op_GLOBAL(self, pos):
        module = self._utf8_line()
        name = self._utf8_line()
        self.push(self._global(module, name, pos, "GLOBAL"), pos)

    def op_STACK_GLOBAL(self, pos):
        name = self.pop()
        module = self.pop()
        module_text, name_text = text_of(module), text_of(name)
        if module_text is None or name_text is None:
            for part in (module, name):
                if type(part) in _ATOMS and type(part) is not str or type(part) in (Seq, Map) \
                        or type(part) is Blob and part.type != "str":
                    raise self._error("STACK_GLOBAL requires str")
            if ELIDED in (module, name):
                self._limit_used(pos)
            self.flag(_rules.DANGER, "imports a global whose name is computed while loading "
                      f"({_describe(module)}, {_describe(name)}): inspection cannot tell what "
                      "it is", pos)
            value = Obj("a global chosen while loading")
            value.start = value.end = pos
            self.push(value, pos)
            return
        self.push(self._global(module_text, name_text, pos, "STACK_GLOBAL"), pos)

    def _global(self, module: str, name: str, pos: int, opcode: str) -> Ref:
        """What C ``find_class`` would return, as a Ref; findings recorded."""
        if self.proto < 3:
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        dotted = f"{module}.{name}"
        record = self.imports.get(dotted)
        if record is None:
            if len(self.imports) < _MAX_RECORDS:
                self.imports[dotted] = [1, self.base + pos, opcode]
            reason = _rules.danger(dotted, at_load=True)
            if reason is not None:
                self.flag(_rules.DANGER, f"imports {_rules.canonical(dotted)} ({reason})", pos,
                          dotted)
            if "." in name:
                _add(self.dotted_globals, (module, name, self.base + pos))
                reason = _rules.chain_danger(name)
                parts = name.split(".")
                for i in range(1, len(parts) - 1):
                    # 'path.os.system' reaches os.system through os.path's namespace
                    reason = reason or _rules.danger(".".join(parts[i:]), at_load=True)
                if reason is not None:
                    self.flag(_rules.DANGER, f"imports {dotted}: a dotted name that walks "
                              f"attributes to something dangerous ({reason})", pos)
        else:
            record[0] += 1
        ref = Ref(dotted)
        ref.start = ref.end = pos
        return ref

    def _ext(self, code: int, pos: int) -> None:
        import copyreg

        _add(self.ext_codes, (code, self.base + pos))
        key = copyreg._inverted_registry.get(code)
        known = f" (here registered as {key[0]}.{key[1]})" if key else ""
        self.flag(_rules.DANGER, f"uses extension code {code}{known}: EXT opcodes load "
                  "whatever the loading process registered under that code, and skip "
                  "Unpickler.find_class once it is cached", pos)
        value = Obj(f"extension {code}") if key is None else Ref(f"{key[0]}.{key[1]}")
        value.start = value.end = pos
        self.push(value, pos)

    def op_EXT1(self, pos):
        code = self.src.byte()
        if code <= 0:
            raise self._error("EXT specifies code <= 0")
        self._ext(code, pos)

    def op_EXT2(self, pos):
        code = _u16(self.src.read(2))[0]
        if code <= 0:
            raise self._error("EXT specifies code <= 0")
        self._ext(code, pos)

    def op_EXT4(self, pos):
        code = _i32(self.src.read(4))[0]
        if code <= 0:
            raise self._error("EXT specifies code <= 0")
        self._ext(code, pos)

    # -- calls ------------------------------------------------------------------------------

    def op_REDUCE(self, pos):
        args = self.pop()
        func, start = self.pop_start()
        arg_items = self._args(args, "REDUCE")
        self.push(self._result(self._call(func, arg_items, None, pos), start), start)

    def _args(self, args, opcode: str) -> list:
        if type(args) is Seq and args.type == "tuple":
            if args.count != len(args.items):
                return args.items + [ELIDED]
            return args.items
        if isinstance(args, _ATOMS) or type(args) in (Seq, Map, Blob):
            raise self._error(f"{opcode} argument must be a tuple")
        return [ELIDED]  # computed while loading: inspection cannot see the arguments

    def _result(self, value, start: int):
        # Only values made by this call get its span: a call may return an
        # existing value (a dict item, an attribute), whose span stays its own.
        if isinstance(value, Node) and getattr(value, "start", None) is None:
            value.start = start
            value.end = self.src.tell()
            size = value.end - start
            if size > 4096:
                self._note_large(size, start, value)
        return value

    def op_BUILD(self, pos):
        state = self.pop()
        if len(self.stack) <= self.fence:
            raise self._error("unpickling stack underflow")
        self._build(self.stack[-1], state, pos)

    def op_INST(self, pos):
        module = self._utf8_line()
        name = self._utf8_line()
        items, start = self.pop_mark()
        cls = self._global(module, name, pos, "INST")
        self.push(self._result(self._call(cls, items, None, pos), start), start)

    def op_OBJ(self, pos):
        items, start = self.pop_mark()
        if not items:
            raise self._error("unpickling stack underflow")
        self.push(self._result(self._call(items[0], items[1:], None, pos), start), start)

    def op_NEWOBJ(self, pos):
        args = self.pop()
        cls, start = self.pop_start()
        self._args(args, "NEWOBJ")
        self._newobj_hook(cls, args, pos)
        self.push(self._result(self._instance(cls, pos), start), start)

    def op_NEWOBJ_EX(self, pos):
        self.pop()
        args = self.pop()
        cls, start = self.pop_start()
        self._args(args, "NEWOBJ_EX")
        self._newobj_hook(cls, args, pos)
        self.push(self._result(self._instance(cls, pos), start), start)

    def _newobj_hook(self, cls, args, pos) -> None:
        """``cls.__new__(cls, *args)`` shown to restricted loading's checks as
        ``copyreg.__newobj__(cls, *args)`` (``bytes.__new__(bytes, 10**12)``)."""
        if self.call_hook is not None and type(cls) is Ref:
            items = list(args.items) if type(args) is Seq else [args]
            self.call_hook("copyreg.__newobj__", [cls, *items], self.base + pos)

    def op_PERSID(self, pos):
        self._read_line()
        self._persistent(pos)

    def op_BINPERSID(self, pos):
        self.pop()
        self._persistent(pos)

    def _persistent(self, pos: int) -> None:
        self.persistent_ids += 1
        if self.persistent_ids == 1:
            self.persistent_offset = self.base + pos
            self.flag(_rules.WARNING, "uses persistent ids: what they load is decided by the "
                      "loader's persistent_load (plain pickle.loads refuses them)", pos)
        value = Obj("a persistent object")
        value.start = value.end = pos
        self.push(value, pos)

    def op_NEXT_BUFFER(self, pos):
        self.buffers += 1
        value = Obj("an out-of-band buffer")
        value.start = value.end = pos
        self.push(value, pos)

    def op_READONLY_BUFFER(self, pos):
        self.top()

    # -- symbolic evaluation ----------------------------------------------------------------

    def _record_call(self, name: str, pos: int) -> None:
        record = self.calls.get(name)
        if record is None:
            if len(self.calls) < _MAX_RECORDS:
                self.calls[name] = [1, self.base + pos]
        else:
            record[0] += 1

    def _instance(self, cls, pos: int):
        """``cls.__new__(cls)`` (NEWOBJ, ``copyreg.__newobj__``)."""
        if type(cls) is Ref:
            self._record_call(f"{cls.dotted}.__new__", pos)
            reason = _rules.danger(cls.dotted, at_load=True)
            if reason is not None:
                self.flag(_rules.DANGER, f"creates {_rules.canonical(cls.dotted)} ({reason})",
                          pos, cls.dotted)
            return Obj(f"{cls.dotted} instance", cls)
        if type(cls) is ClassV:
            self._record_call(f"{cls.describe()}.__new__", pos)
            return Obj(f"{cls.qualname()} instance", cls)
        if cls is ELIDED:
            self._limit_used(pos)
        return Obj("an instance")

    def _limit_used(self, pos: int) -> None:
        self.flag(_rules.DANGER, "needs a value that inspection dropped at one of its limits: "
                  "the payload cannot be vouched for", pos)

    def _call(self, func, args: list, kwargs, pos: int):
        kind = type(func)
        if kind is Ref:
            name = _rules.canonical(func.dotted)
            self._record_call(name, pos)
            if self.call_hook is not None:
                self.call_hook(name, args, self.base + pos)
            reason = _rules.danger(func.dotted, at_load=True)
            if reason is not None:
                self.flag(_rules.DANGER, f"calls {name} ({reason})", pos, func.dotted)
            handler = _HANDLERS.get(name)
            if handler is not None:
                return handler(self, func, args, pos)
            if func.namespace:
                return Obj(f"result of {func.describe()}(...)")
            return Obj(f"{name}(...)", func)
        if kind is AttrV:
            return self._call_method(func, args, pos)
        if kind is FuncV and func.known is not None:
            self._record_call(func.known, pos)
            handler = _HANDLERS.get(func.known)
            if handler is not None:
                return handler(self, Ref(func.known), args, pos)
            return Obj(f"result of {func.known}(...)")
        if kind is FuncV:
            name = func.describe()
            self._record_call(name, pos)
            _add(self.shipped_calls, (name, self.base + pos))
            self.flag(_rules.WARNING, f"runs shipped code while loading: calls {name}", pos)
            return Obj(f"result of {name}(...)")
        if kind is ClassV:
            name = func.describe()
            self._record_call(name, pos)
            shipped = [m for m in ("__new__", "__init__") if type(func.attrs.get(m)) is FuncV]
            if shipped:
                _add(self.shipped_calls, (name, self.base + pos))
                self.flag(_rules.WARNING, f"calls {name} while loading: its shipped "
                          f"{' and '.join(shipped)} run", pos)
            return Obj(f"{func.qualname()} instance", func)
        if kind is PartialV:
            return self._call(func.func, func.args + args, kwargs, pos)
        if kind is Getter:
            target = args[0] if args else ELIDED
            if func.method:
                method = self._attr(target, func.names[0], pos)
                return self._call(method, list(func.args), None, pos)
            for name in func.names:
                for part in name.split("."):
                    target = self._attr(target, part, pos)
            return target
        if kind is OneOf:
            results = [self._call(option, args, kwargs, pos) for option in func.options]
            return OneOf(results)
        if func is ELIDED:
            self._limit_used(pos)
            return Obj("result of an unknown call")
        if kind is Obj and type(func.of) is Ref and func.of.dotted in _SAFE_DECORATOR_MAKERS:
            # functools.lru_cache(maxsize)(function): wraps it, calls nothing.
            self._record_call(f"<{func.describe()}>", pos)
            return Obj(f"result of {func.describe()}")
        if kind is Obj or kind is CodeV or kind is CellV:
            # What the value is, the scan does not know (pkgutil.resolve_name
            # and other reflective lookups return os.system as well as
            # anything): failing closed, that call is the danger.
            self._record_call(f"<{func.describe()}>", pos)
            self.flag(_rules.DANGER, f"calls a value made while loading ({func.describe()}): "
                      "inspection cannot tell what it runs", pos)
            return Obj(f"result of calling {func.describe()}")
        self.flag(_rules.WARNING, f"calls {_describe(func)}, which is not callable: loading "
                  "would fail here", pos)
        return Obj("result of a failing call")

    def _call_method(self, method: AttrV, args: list, pos: int):
        base, name = method.base, method.name
        self._record_call(method.describe(), pos)
        if type(base) is Map and name == "update" and args:
            self._merge(base, args[0])
            return None
        if type(base) is Ref and base.dotted == "builtins.dict" and name == "update":
            if len(args) >= 2 and type(args[0]) is Map:
                self._merge(args[0], args[1])
            return None
        if type(base) is Seq and base.type == "list" and name in ("append", "extend"):
            return None
        if type(base) is Ref and base.dotted == "builtins.str" and name == "format":
            return Obj("a formatted str")
        if name == "format" and text_of(base) is not None:
            return Obj("a formatted str")
        if type(base) is FuncV or type(base) is ClassV:
            _add(self.shipped_calls, (method.describe(), self.base + pos))
            self.flag(_rules.WARNING, f"runs shipped code while loading: calls "
                      f"{method.describe()}", pos)
        return Obj(f"result of {method.describe()}(...)")

    def _merge(self, target: Map, other) -> None:
        if type(other) is Map:
            if target.charged < 0 or other.charged < 0:
                target.count += other.count
                self._drop(target)  # what the other held is gone: so is the merge
                return
            before = len(target.entries) + len(target.values)
            for key, value in other.entries.items():
                if key not in target.entries:
                    target.count += 1
                target.entries[key] = value
            target.values.extend(other.values[: self.limits.items])
            target.count += len(other.values)
            self._keep(target, len(target.entries) + len(target.values) - before)

    def _attr(self, base, name, pos: int, via: str = "getattr"):
        """``getattr(base, name)``, symbolically, with findings."""
        text = text_of(name)
        if text is None:
            self.flag(_rules.DANGER, f"fetches an attribute of {_describe(base)} whose name is "
                      "computed while loading", pos)
            _add(self.attr_fetches, (base, "", None, self.base + pos))
            return Obj("an attribute chosen while loading")
        if base is ELIDED:
            self._limit_used(pos)
        named = type(base) is Ref and not base.namespace
        if text in _ESCAPE_DUNDERS:
            self.flag(_rules.DANGER, f"fetches .{text} of {_describe(base)}: a step of "
                      "attribute chains that reach arbitrary callables", pos)
        elif text in _rules.DANGER_ATTRS and not named:
            self.flag(_rules.DANGER, f"fetches .{text} of {_describe(base)} "
                      f"({_rules.DANGER_ATTRS[text]})", pos)
        if named:
            dotted = f"{base.dotted}.{text}"
            _add(self.attr_fetches, (base, text, dotted, self.base + pos))
            reason = _rules.danger(dotted, at_load=True) or _rules.DANGER_ATTRS.get(text)
            if reason is not None:
                self.flag(_rules.DANGER, f"reaches {_rules.canonical(dotted)} through {via} "
                          f"({reason})", pos, dotted)
            if text == "__dict__":
                return Ref(base.dotted, namespace=True)
            return Ref(dotted)
        _add(self.attr_fetches, (base, text, None, self.base + pos))
        return AttrV(base, text)

    def _build(self, inst, state, pos: int) -> None:
        """BUILD: ``inst.__setstate__(state)``, or its dict and slots updated."""
        dict_state, slot_state = state, None
        if type(state) is Seq and state.type == "tuple" and state.count == 2:
            dict_state, slot_state = state.items
        if type(inst) is Ref:
            self.flag(_rules.DANGER, f"BUILD sets attributes of the global {inst.dotted}: "
                      "it changes that object for the whole process", pos)
        for part in (dict_state, slot_state):
            if type(part) is Obj or type(part) is OneOf or part is ELIDED:
                self.flag(_rules.DANGER, f"BUILD with a state computed while loading "
                          f"({_describe(part)}): inspection cannot tell what it sets", pos)
            if type(part) is not Map:
                continue
            for key, value in part.entries.items():
                if type(key) is str and key in _rules.DANGER_SET_ATTRS and type(inst) is not ClassV:
                    self.flag(_rules.DANGER, f"BUILD sets {key} on {_describe(inst)}: a later "
                              "step may then call anything", pos)
                self._set_attr(inst, key, value, pos, check=False)
        if type(inst) is Obj and type(inst.of) is ClassV and "__setstate__" in inst.of.attrs:
            _add(self.shipped_calls, (f"{inst.of.describe()}.__setstate__", self.base + pos))
        if isinstance(inst, Node) and getattr(inst, "start", None) is not None:
            inst.end = self.src.tell()

    def _set_attr(self, obj, name, value, pos: int, check: bool = True) -> None:
        if type(name) is not str:
            if check:
                self.flag(_rules.DANGER, f"sets an attribute of {_describe(obj)} whose name is "
                          "computed while loading", pos)
            return
        if check and name in _rules.DANGER_SET_ATTRS:
            self.flag(_rules.DANGER, f"sets {name} on {_describe(obj)}: a later step may then "
                      "call anything", pos)
        kind = type(obj)
        if kind is CellV and name == "cell_contents":
            obj.value = value
        elif kind is FuncV or kind is ClassV:
            obj.attrs[name] = value
            if kind is FuncV and name == "__code__":
                obj.code = value

    # -- shipped code -----------------------------------------------------------------------

    def _new_code(self, source: str, data, tag: int | None, size: int, pos: int) -> CodeV:
        code = CodeV(source, data, tag, size)
        code.start = pos
        code.end = self.src.tell()
        if len(self.codes) < self.limits.functions:
            self.codes.append(code)
        elif len(self.codes) == self.limits.functions:
            self.codes.append(code)
            self.flag(_rules.DANGER, "more shipped code objects than inspection analyses: the "
                      "rest is not vouched for", pos)
        return code

    def _marshal_code(self, value, tag: int | None, pos: int):
        data = bytes_of(value)
        size = len(data) if data is not None else (value.size if type(value) is Blob else 0)
        if data is None and not (type(value) is Blob and value.type == "bytes"):
            self.flag(_rules.DANGER, "loads code from a value computed while loading: "
                      "inspection cannot read it", pos)
        return self._new_code("marshal", data, tag, size, pos)

    def _new_function(self, code, fglobals, closure, maker: str, pos: int) -> FuncV:
        func = FuncV(code, fglobals, closure, maker, self.base + pos)
        if type(code) is CodeV and code.source == "marshal" and code.data is not None:
            func.known = known_reconstructors().get(code.data)
        if type(code) is not CodeV:
            if code is ELIDED:
                self._limit_used(pos)
            elif not (type(code) is Obj and code.what == "a global chosen while loading"):
                self.flag(_rules.DANGER, f"builds a function from {_describe(code)}, which "
                          "inspection cannot read as code", pos)
        if len(self.functions) < self.limits.functions:
            self.functions.append(func)
        return func

    def _new_class(self, name, attrs, maker: str, pos: int, bases=None) -> ClassV:
        cls = ClassV(name, attrs, maker, self.base + pos, bases)
        if len(self.classes) < self.limits.functions:
            self.classes.append(cls)
        return cls

    def _nested(self, value, pos: int):
        data = bytes_of(value)
        if data is None:
            self.flag(_rules.DANGER, "loads a nested pickle that inspection cannot read", pos)
            return Obj("result of a nested pickle")
        if self.depth >= self.limits.nesting:
            self.flag(_rules.DANGER, "nested pickles deeper than inspection follows", pos)
            return Obj("result of a nested pickle")
        from .._errors import UnpicklingError
        from .inspect import inspect_bytes

        try:
            # Offsets in the nested report are within the nested pickle.
            report = inspect_bytes(data, limits=self.limits, depth=self.depth + 1)
        except UnpicklingError as exc:
            self.flag(_rules.WARNING, f"the nested pickle is not readable ({exc}): loading "
                      "would fail here", pos)
            return Obj("result of a nested pickle")
        self.nested.append((self.base + pos, report))
        return Obj("result of a nested pickle")


_MAX_RECORDS = 100_000


def _add(records: list, item) -> None:
    """Append to a bounded record list."""
    if len(records) < _MAX_RECORDS:
        records.append(item)


_known: dict[bytes, str] | None = None


def known_reconstructors() -> dict[bytes, str]:
    """Code bytes of the marinade reconstructors standalone payloads ship, as
    this marinade and this Python make them -> their dotted name."""
    global _known
    if _known is None:
        from .. import _rebuild, standalone
        from ..reduce.code import code_bytes

        found = {}
        for name, value in vars(_rebuild).items():
            if isinstance(value, types.FunctionType) and value.__module__ == _rebuild.__name__:
                shipped = standalone.shippable_rebuild_function(value)
                found[code_bytes(shipped.__code__)] = f"{_rebuild.__name__}.{name}"
        _known = found
    return _known


def _strtol(text: str) -> int | None:
    """C ``strtol(text, &end, 0)`` when it consumes everything, else None."""
    s = text.lstrip(" \t\n\r\x0b\x0c")
    sign = 1
    if s[:1] in ("+", "-"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s[:2].lower() == "0x" and len(s) > 2:
        base, digits = 16, s[2:]
    elif s[:1] == "0":
        base, digits = 8, s
    else:
        base, digits = 10, s
    valid = "0123456789abcdef"[:base]
    if not digits or any(c not in valid for c in digits.lower()):
        return None
    value = sign * int(digits, base)
    if not -(1 << 63) <= value < (1 << 63):
        return None  # strtol overflows: C falls back to PyLong_FromString
    return value


# -- handlers of known callables -------------------------------------------------------------


def _h_getattr(self: Scanner, func, args, pos):
    if len(args) < 2:
        return Obj("getattr(...)")
    return self._attr(args[0], args[1], pos)


def _h_import(self: Scanner, func, args, pos):
    name = text_of(args[0]) if args else None
    if name is None:
        self.flag(_rules.DANGER, f"imports a module whose name is computed while loading "
                  f"(via {func.dotted})", pos)
        _add(self.module_imports, (None, self.base + pos))
        return Obj("a module chosen while loading")
    _add(self.module_imports, (name, self.base + pos))
    record = self.imports.get(name)
    if record is None:
        if len(self.imports) < _MAX_RECORDS:
            self.imports[name] = [1, self.base + pos, "import"]
        reason = _rules.danger(name, at_load=True)
        if reason is not None:
            self.flag(_rules.DANGER, f"imports module {name} ({reason})", pos, name)
    else:
        record[0] += 1
    return Ref(name)


def _h_getitem(self: Scanner, func, args, pos):
    if len(args) < 2:
        return Obj("getitem(...)")
    container, key = args[0], args[1]
    if type(container) is Map:
        if type(key) in _ATOMS and key in container.entries:
            return container.entries[key]
        if len(container.entries) + len(container.values) < container.count:
            return ELIDED  # an item past the container limit
        if type(key) in _ATOMS or not container.entries:
            return Obj("a missing dict item")
        values = list(container.entries.values())
        if len(values) == 1:
            value = values[0]
            (guard,) = container.entries
            match = _GUARD.match(guard) if type(guard) is str else None
            if match and type(value) is Ref and match.group(1, 2) == match.group(3, 4):
                # marinade's standalone guard: {"CPython X.Y ... X.Y": marshal.loads}[...]
                return Ref(value.dotted, tag=int(match[1]) * 256 + int(match[2]))
            return value
        if len(values) > 16:  # beyond what the scan follows: fail closed
            self.flag(_rules.DANGER, f"looks up one of {len(values)} dict values by a key "
                      "computed while loading: too many to follow", pos)
        return OneOf(values[:16])
    if type(container) is Seq:
        if type(key) is int and -container.count <= key < container.count:
            if len(container.items) == container.count:
                return container.items[key]
            if 0 <= key < len(container.items) and container.charged >= 0:
                return container.items[key]  # (the kept items are the first ones)
            return ELIDED  # an item dropped at a limit
        return Obj(f"an item of a {container.type}")
    if type(container) is Ref:
        text = text_of(key)
        if container.namespace or _rules.canonical(container.dotted) == "sys.modules":
            if text is None:
                self.flag(_rules.DANGER, f"looks up {container.describe()} with a key computed "
                          "while loading", pos)
                return Obj("an item chosen while loading")
            if container.namespace:
                return self._attr(Ref(container.dotted), text, pos, via="vars()")
            return _h_import(self, Ref("sys.modules"), [text], pos)
    if container is ELIDED:
        self._limit_used(pos)
    return Obj(f"an item of {_describe(container)}")


def _h_attrgetter(self: Scanner, func, args, pos):
    names = [text_of(a) for a in args]
    if not names or None in names:
        self.flag(_rules.DANGER, "builds an attrgetter with names computed while loading", pos)
        return Obj("an attrgetter")
    return Getter(names, method=False)


def _h_methodcaller(self: Scanner, func, args, pos):
    name = text_of(args[0]) if args else None
    if name is None:
        self.flag(_rules.DANGER, "builds a methodcaller with a name computed while loading",
                  pos)
        return Obj("a methodcaller")
    if name in _rules.DANGER_ATTRS:
        self.flag(_rules.DANGER, f"builds a methodcaller of .{name} "
                  f"({_rules.DANGER_ATTRS[name]})", pos)
    return Getter([name], method=True, args=tuple(args[1:]))


def _h_partial(self: Scanner, func, args, pos):
    if not args:
        return Obj("a partial")
    return PartialV(args[0], list(args[1:]))


def _h_operator_call(self: Scanner, func, args, pos):
    if not args:
        return Obj("call()")
    return self._call(args[0], list(args[1:]), None, pos)


def _h_reduce(self: Scanner, func, args, pos):
    """``functools.reduce(f, items, initial)``: calls ``f`` along ``items``."""
    if len(args) < 2:
        return Obj("reduce(...)")
    items = items_of(args[1])
    if items is None:
        return self._call(args[0], [ELIDED, ELIDED], None, pos)
    acc = args[2] if len(args) > 2 else (items[0] if items else ELIDED)
    if len(items) > 64:  # beyond what the scan follows: fail closed
        self.flag(_rules.DANGER, f"functools.reduce over {len(items)} items: too many "
                  "to follow", pos)
    for item in items[(0 if len(args) > 2 else 1):64]:
        acc = self._call(args[0], [acc, item], None, pos)
    return acc


def _h_map(self: Scanner, func, args, pos):
    """``map(f, *iterables)``: calls ``f`` with the items in step, as a class's
    method batch does (``map(types.FunctionType, codes, (globals, ...))``)."""
    if len(args) < 2:
        return Obj("map(...)")
    columns = [items_of(arg) for arg in args[1:]]
    if any(column is None for column in columns):
        # Items inspection cannot read: judge the callable on its own.
        self._call(args[0], [ELIDED] * len(columns), None, pos)
        return Obj("a map iterator")
    results = [self._call(args[0], list(step), None, pos) for step in zip(*columns)]
    return self._seq("map", results, pos)


def _h_zip(self: Scanner, func, args, pos):
    columns = [items_of(arg) for arg in args]
    if not columns or any(column is None for column in columns):
        return Obj("a zip iterator")
    length = min(map(len, columns))
    pairs = [self._seq("tuple", [column[k] for column in columns], pos) for k in range(length)]
    return self._seq("zip", pairs, pos)


def _h_fromkeys(self: Scanner, func, args, pos):
    keys = items_of(args[0]) if args else None
    result = Map()
    result.start = pos
    if keys is None:
        return Obj("dict.fromkeys(...)")
    self._set_items(result, [item for key in keys for item in (key, args[1] if len(args) > 1
                                                                 else None)])
    return result


def _h_setattr(self: Scanner, func, args, pos):
    if len(args) >= 3:
        self._set_attr(args[0], text_of(args[1]), args[2], pos)
    return None


def _h_set_subclass_state(self: Scanner, func, args, pos):
    # (obj, (base_state, own)): two BUILD steps on obj.
    if len(args) >= 2:
        state = args[1]
        if type(state) is Seq and state.type == "tuple" and state.count == 2:
            for part in state.items:
                if part is not None:
                    self._build(args[0], part, pos)
    return None


def _h_vars(self: Scanner, func, args, pos):
    if args and type(args[0]) is Ref:
        return Ref(args[0].dotted, namespace=True)
    return Obj("a namespace")


def _h_codecs_encode(self: Scanner, func, args, pos):
    # Protocol 2 writes bytes as _codecs.encode(text, "latin1").
    text = text_of(args[0]) if args else None
    encoding = text_of(args[1]) if len(args) > 1 else "utf-8"
    if text is not None and encoding in ("latin1", "latin-1"):
        try:
            data = text.encode("latin-1")
        except UnicodeEncodeError:
            return Obj("encoded bytes")
        if len(data) <= _ATOM_TEXT:
            return data
        return Blob("bytes", len(data), data)
    return Obj("encoded bytes")


def _h_bytes(self: Scanner, func, args, pos):
    if args and bytes_of(args[0]) is not None:
        return args[0]
    return Obj("bytes")


def _h_builtin_type(self: Scanner, func, args, pos):
    name = text_of(args[0]) if args else None
    if name is None:
        return Obj("a type")
    if name == "ClassType":
        return Ref("builtins.type")
    return self._attr(Ref("types"), name, pos, via="_builtin_type")


_DILL_TYPES = {"PartialType": "functools.partial", "MethodCallerType": "operator.methodcaller",
               "AttrGetterType": "operator.attrgetter", "ItemGetterType": "operator.itemgetter",
               "SuperType": "builtins.super", "ExitType": "builtins.exit"}


def _h_dill_load_type(self: Scanner, func, args, pos):
    name = text_of(args[0]) if args else None
    if name is None:
        return Obj("a type")
    import builtins

    if name in _DILL_TYPES:
        return Ref(_DILL_TYPES[name])
    if hasattr(types, name):
        return Ref(f"types.{name}")
    if hasattr(builtins, name):
        return Ref(f"builtins.{name}")
    return Obj(f"dill type {name}")


def _h_marshal_loads(self: Scanner, func, args, pos):
    data = bytes_of(args[0]) if args else None
    if data and data[0] & 0x7F in _MARSHAL_TUPLE:
        return _code_table(self, data, func.tag, pos)  # a standalone class's code table
    return self._marshal_code(args[0] if args else ELIDED, func.tag, pos)


_MARSHAL_TUPLE = (ord("("), ord(")"))


def _tag(value) -> int | None:
    return value if type(value) is int else None


def _h_load_code(self: Scanner, func, args, pos):
    tag = _tag(args[1]) if len(args) > 1 else None
    return self._marshal_code(args[0] if args else ELIDED, tag, pos)


def _h_load_code_table(self: Scanner, func, args, pos):
    """``load_code_table(data, tag)``: the code of a class's methods, one
    marshal tuple; ``operator.getitem`` then picks each method's code."""
    return _code_table(self, bytes_of(args[0]) if args else None,
                       _tag(args[1]) if len(args) > 1 else None, pos)


def _h_kit_code_table(self: Scanner, func, args, pos):
    """``_kit_code_table(data)`` of this marinade's kit (vouched for, so made
    by this CPython): ``load_code_table`` without the tag."""
    from .._compat import CODE_TAG

    return _code_table(self, bytes_of(args[0]) if args else None, CODE_TAG, pos)


def _code_table(self: Scanner, data, tag, pos):
    if data is None:
        self.flag(_rules.DANGER, "loads a code table inspection cannot read", pos)
        return Obj("a code table")
    try:
        infos = _code.parse_marshal_table(data)
    except (_code.CodeFormatError, RecursionError) as exc:
        self.flag(_rules.DANGER, f"loads a code table that is not well-formed ({exc})", pos)
        return Obj("a code table")
    codes = []
    for info in infos:
        code = self._new_code("table", None, tag, len(info.code), pos)
        code.info = info
        codes.append(code)
    table = Seq("tuple", codes)
    table.start, table.end = pos, self.src.tell()
    return table


def _h_load_kit(self: Scanner, func, args, pos):
    """``load_kit(names, defaults, data, tag)``: the reconstructors a standalone
    payload carries, ``{name: function}``. Vouched for when ``data`` is this
    marinade's own kit; otherwise each is shipped code, read like any other."""
    from .. import standalone

    names = [text_of(name) for name in items_of(args[0]) or ()] if args else []
    data = bytes_of(args[2]) if len(args) > 2 else None
    unpacked = None
    if data is not None and standalone.unpacked_size(data) <= self.limits.blob:
        try:
            unpacked = standalone.unpack_zeros(data)
        except IndexError:  # a 0xFF at the very end: not something pack_zeros writes
            pass
    table = _code_table(self, unpacked, _tag(args[3]) if len(args) > 3 else None, pos)
    codes = items_of(table) if type(table) is Seq else None
    if codes is None or len(codes) != len(names) or None in names:
        self.flag(_rules.DANGER, "loads a reconstructor kit inspection cannot read", pos)
        return Obj("a reconstructor kit")
    known = data == standalone.reconstructor_kit()[0].args[2]
    kit = Map()
    items = []
    for name, code in zip(names, codes):
        function = self._new_function(code, Map(), None, "marinade", pos)
        if known:
            function.known = f"marinade._rebuild.{name}"
        items += (name, function)
    self._set_items(kit, items)
    return kit


def _h_marinade_function(self: Scanner, func, args, pos):
    tag = _tag(args[1]) if len(args) > 1 else None
    code = self._marshal_code(args[0] if args else ELIDED, tag, pos)
    fglobals = args[2] if len(args) > 2 else None
    closure = args[3] if len(args) > 3 else None
    return self._new_function(code, fglobals, closure, "marinade", pos)


def _h_function_type(self: Scanner, func, args, pos):
    code = args[0] if args else ELIDED
    fglobals = args[1] if len(args) > 1 else None
    closure = args[4] if len(args) > 4 else None
    maker = "marinade" if type(code) is CodeV and code.source == "table" \
        else "types.FunctionType"
    result = self._new_function(code, fglobals, closure, maker, pos)
    if len(args) > 2 and type(args[2]) is str:
        result.attrs["__name__"] = args[2]
    return result


def _fields(value) -> list:
    """Python values of CodeType fields (tuples of names and constants)."""
    if type(value) is Seq and value.type == "tuple":
        return tuple(_fields(item) for item in value.items)
    if type(value) is CodeV:
        info = value.parse()
        return info if info is not None else value
    if type(value) is Blob:
        return value.data if value.data is not None else value
    return value


def _h_code_fields(self: Scanner, func, args, pos):
    fields = [_fields(a) for a in args]
    size = sum(len(f) for f in fields if type(f) in (bytes, str))
    return self._new_code("fields", fields, None, size, pos)


def _h_cloudpickle_function(self: Scanner, func, args, pos):
    code = args[0] if args else ELIDED
    return self._new_function(code, args[1] if len(args) > 1 else None,
                              args[4] if len(args) > 4 else None, "cloudpickle", pos)


def _h_dill_function(self: Scanner, func, args, pos):
    code = args[0] if args else ELIDED
    result = self._new_function(code, args[1] if len(args) > 1 else None,
                                args[4] if len(args) > 4 else None, "dill", pos)
    if len(args) > 5 and type(args[5]) is Map:
        result.attrs.update(args[5].entries)
    return result


def _h_cloudpickle_setstate(self: Scanner, func, args, pos):
    """``_function_setstate(func, (state, slotstate))`` and ``_class_setstate``."""
    if len(args) < 2:
        return None
    target, state = args[0], args[1]
    parts = state.items if type(state) is Seq and state.type == "tuple" else [state]
    for part in parts:
        if type(part) is not Map:
            continue
        for key, value in part.entries.items():
            if type(target) is FuncV and key == "__globals__":
                if type(target.globals) is Map:
                    self._merge(target.globals, value)
                else:
                    target.globals = value
            elif type(target) is FuncV and key == "__closure__":
                target.closure = value
            else:
                # A class being rebuilt gets its methods, dunders included.
                self._set_attr(target, key, value, pos, check=type(target) is not ClassV)
    return target


def _h_cell(self: Scanner, func, args, pos):
    return CellV(args[0] if args else _EMPTY)


def _h_rebuild_class(self: Scanner, func, args, pos):
    name = args[1] if len(args) > 1 else None
    namespace = args[3] if len(args) > 3 else None
    attrs = dict(namespace.entries) if type(namespace) is Map else {}
    return self._new_class(name, attrs, "marinade", pos, args[2] if len(args) > 2 else None)


def _set_class_attrs(cls, attrs) -> None:
    if type(cls) is ClassV and type(attrs) is Map:
        for key, value in attrs.entries.items():
            cls.attrs[key] = value


def _h_set_class_state(self: Scanner, func, args, pos):
    if len(args) >= 2:
        state = args[1]
        _set_class_attrs(args[0], state.items[0] if type(state) is Seq and state.items else state)
    return None


def _h_set_class_methods(self: Scanner, func, args, pos):
    if len(args) >= 2:
        _set_class_attrs(args[0], args[1])
    return None


def _h_cloudpickle_class(self: Scanner, func, args, pos):
    name = args[1] if len(args) > 1 else None
    return self._new_class(name, {}, "cloudpickle", pos, args[2] if len(args) > 2 else None)


def _h_dill_class(self: Scanner, func, args, pos):
    name = args[1] if len(args) > 1 else None
    attrs = dict(args[3].entries) if len(args) > 3 and type(args[3]) is Map else {}
    return self._new_class(name, attrs, "dill", pos, args[2] if len(args) > 2 else None)


def _h_type(self: Scanner, func, args, pos):
    if len(args) == 3:
        attrs = dict(args[2].entries) if type(args[2]) is Map else {}
        return self._new_class(args[0], attrs, "type()", pos, args[1])
    return Obj("type(...)")


def _h_finished_generator(self: Scanner, func, args, pos):
    return Obj("a finished generator")


def _h_new_generator(self: Scanner, func, args, pos):
    target = args[2] if len(args) > 2 else None
    return Obj(f"a generator of {_describe(target)}")


def _h_reconstructor(self: Scanner, func, args, pos):
    # copyreg._reconstructor(cls, base, state) calls base.__new__ and base.__init__;
    # __newobj__/__newobj_ex__ call cls.__new__: they must be named classes.
    for what in args[:2] if func.dotted.endswith("_reconstructor") else args[:1]:
        if type(what) is not Ref and type(what) is not ClassV:
            self.flag(_rules.DANGER, f"{func.dotted} on {_describe(what)}, not a class: "
                      "it calls that value's __new__/__init__", pos)
    return self._instance(args[0] if args else ELIDED, pos)


def _h_nested(self: Scanner, func, args, pos):
    return self._nested(args[0] if args else ELIDED, pos)


def _h_dict_update(self: Scanner, func, args, pos):
    if len(args) >= 2 and type(args[0]) is Map:
        other = args[1]
        if type(other) is Seq:  # key/value pairs (zip(names, map(...)) of a method batch)
            pairs = items_of(other)
            if pairs is None:
                self._drop(args[0])
                return None
            items = []
            for pair in pairs:
                kv = items_of(pair)
                if kv is None or len(kv) != 2:
                    self._drop(args[0])
                    return None
                items += kv
            other = Map()
            self._set_items(other, items)
        self._merge(args[0], other)
    return None


_NAME_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


def _h_eval_repr(self: Scanner, func, args, pos):
    """dill evaluates reprs of a few singletons (``NotImplemented``): a bare
    name is a lookup, judged like a global; anything else is eval."""
    text = text_of(args[0]) if args else None
    if text is None or not _NAME_PATH.match(text) or "__" in text:
        self.flag(_rules.DANGER, f"evaluates {_describe(args[0] if args else None)} with "
                  "dill._dill._eval_repr (eval)", pos)
        return Obj("result of eval")
    reason = _rules.danger(text, at_load=True) or _rules.danger(f"builtins.{text}",
                                                                at_load=True)
    if reason is not None:
        self.flag(_rules.DANGER, f"evaluates {text} ({reason})", pos, text)
    return Ref(text if "." in text else f"builtins.{text}")


def _h_portable_code(self: Scanner, func, args, pos):
    spec = _fields(args[0]) if args else ELIDED
    size = len(spec[4]) if type(spec) is tuple and len(spec) > 4 and type(spec[4]) is str else 0
    return self._new_code("source", spec, None, size, pos)


def _h_portable_function(self: Scanner, func, args, pos):
    code = _h_portable_code(self, func, args[:1], pos)
    return self._new_function(code, args[1] if len(args) > 1 else None,
                              args[2] if len(args) > 2 else None, "marinade (portable)", pos)


def _h_portable_class_state(self: Scanner, func, args, pos):
    return _h_set_class_state(self, func, args, pos)


def _h_shared_object(self: Scanner, func, args, pos):
    """``shared_object(key, factory, attrs)``: calls ``factory()`` (first time
    only, at load) and sets ``attrs`` on what it returns."""
    if len(args) < 2:
        return Obj("a shared object")
    result = self._call(args[1], [], None, pos)
    attrs = args[2] if len(args) > 2 else None
    if type(attrs) is Map and not attrs.values \
            and len(attrs.entries) == attrs.count:
        for name, value in attrs.entries.items():
            self._set_attr(result, name, value, pos)
    elif attrs is not None and not (type(attrs) is Map and attrs.count == 0):
        self.flag(_rules.DANGER, f"sets attributes inspection cannot read ({_describe(attrs)}) "
                  f"on {_describe(result)}", pos)
    return result


def _h_enum_member(self: Scanner, func, args, pos):
    return Obj("an enum member", args[0] if args else None)


# Standard-library callables whose result is a decorator that only wraps
# what it is given (marinade ships an lru_cache function as
# ``functools.lru_cache(maxsize, typed)(function)``).
_SAFE_DECORATOR_MAKERS = frozenset({"functools.lru_cache"})


def _h_lru_cache(self: Scanner, func, args, pos):
    """``functools.lru_cache(maxsize, typed)``: a decorator that only wraps;
    ``functools.lru_cache(f)``: ``f`` itself, as far as calling it goes."""
    first = args[0] if args else None
    if first is None or type(first) is int:
        return Obj("functools.lru_cache(...)", func)
    return first


_HANDLERS = {
    "builtins.getattr": _h_getattr,
    "dill._dill._get_attr": _h_getattr,
    "dill._dill._eval_repr": _h_eval_repr,
    "importlib.import_module": _h_import,
    "builtins.__import__": _h_import,
    "cloudpickle.cloudpickle.subimport": _h_import,
    "cloudpickle.cloudpickle.dynamic_subimport": _h_import,
    "dill._dill._import_module": _h_import,
    "operator.getitem": _h_getitem,
    "operator.attrgetter": _h_attrgetter,
    "operator.methodcaller": _h_methodcaller,
    "operator.call": _h_operator_call,
    "functools.partial": _h_partial,
    "functools.reduce": _h_reduce,
    "functools.lru_cache": _h_lru_cache,
    "builtins.setattr": _h_setattr,
    "dill._dill._setattr": _h_setattr,
    "builtins.dict.update": _h_dict_update,
    "builtins.dict.fromkeys": _h_fromkeys,
    "builtins.map": _h_map,
    "builtins.zip": _h_zip,
    "builtins.vars": _h_vars,
    "codecs.encode": _h_codecs_encode,
    "builtins.bytes": _h_bytes,
    "cloudpickle.cloudpickle._builtin_type": _h_builtin_type,
    "dill._dill._load_type": _h_dill_load_type,
    "marshal.loads": _h_marshal_loads,
    "marinade._rebuild.load_code": _h_load_code,
    "marinade._rebuild.load_code_table": _h_load_code_table,
    "marinade._rebuild._kit_code_table": _h_kit_code_table,
    "marinade._rebuild.load_kit": _h_load_kit,
    "marinade._rebuild.function": _h_marinade_function,
    "types.FunctionType": _h_function_type,
    "types.LambdaType": _h_function_type,
    "types.CodeType": _h_code_fields,
    "dill._dill._create_code": _h_code_fields,
    "cloudpickle.cloudpickle._make_function": _h_cloudpickle_function,
    "cloudpickle.cloudpickle._function_setstate": _h_cloudpickle_setstate,
    "cloudpickle.cloudpickle._class_setstate": _h_cloudpickle_setstate,
    "dill._dill._create_function": _h_dill_function,
    "types.CellType": _h_cell,
    "marinade._rebuild.cell": _h_cell,
    "cloudpickle.cloudpickle._make_cell": _h_cell,
    "cloudpickle.cloudpickle._make_empty_cell": _h_cell,
    "dill._dill._create_cell": _h_cell,
    "marinade._rebuild.rebuild_class": _h_rebuild_class,
    "marinade._rebuild.set_class_state": _h_set_class_state,
    "marinade._rebuild.set_class_methods": _h_set_class_methods,
    "marinade._rebuild.enum_member": _h_enum_member,
    "marinade._rebuild.shared_object": _h_shared_object,
    "marinade._rebuild.set_subclass_state": _h_set_subclass_state,
    "marinade._rebuild_portable.code": _h_portable_code,
    "marinade._rebuild_portable.function": _h_portable_function,
    "marinade._rebuild_portable.set_class_state": _h_portable_class_state,
    "cloudpickle.cloudpickle._make_skeleton_class": _h_cloudpickle_class,
    "cloudpickle.cloudpickle._make_skeleton_enum": _h_cloudpickle_class,
    "dill._dill._create_type": _h_dill_class,
    "builtins.type": _h_type,
    "marinade.frames.restore.finished_generator": _h_finished_generator,
    "marinade.frames.restore.new_generator": _h_new_generator,
    "copyreg._reconstructor": _h_reconstructor,
    "copyreg.__newobj__": _h_reconstructor,
    "copyreg.__newobj_ex__": _h_reconstructor,
    "pickle.loads": _h_nested,
    "pickle._loads": _h_nested,
    "cloudpickle.loads": _h_nested,
    "dill.loads": _h_nested,
    "dill._dill.loads": _h_nested,
    "marinade.loads": _h_nested,
}

# Callables whose use means the payload carries code (restricted loading refuses
# them without a signature).
CODE_MAKERS = frozenset({
    "marshal.loads", "marinade._rebuild.load_code", "marinade._rebuild.load_code_table",
    "marinade._rebuild.function", "marinade._rebuild.load_kit", "marinade._rebuild._kit_code_table",
    "types.FunctionType", "types.LambdaType", "types.CodeType", "dill._dill._create_code",
    "cloudpickle.cloudpickle._make_function", "dill._dill._create_function",
    "marinade._rebuild.rebuild_class", "cloudpickle.cloudpickle._make_skeleton_class",
    "cloudpickle.cloudpickle._make_skeleton_enum", "dill._dill._create_type",
    "marinade.frames.restore.finished_generator", "marinade.frames.restore.new_generator",
    "marinade._rebuild_portable.code", "marinade._rebuild_portable.function",
})

_OPCODES = {
    "MARK": ord("("), "STOP": ord("."), "POP": ord("0"), "POP_MARK": ord("1"),
    "DUP": ord("2"), "FLOAT": ord("F"), "INT": ord("I"), "BININT": ord("J"),
    "BININT1": ord("K"), "LONG": ord("L"), "BININT2": ord("M"), "NONE": ord("N"),
    "PERSID": ord("P"), "BINPERSID": ord("Q"), "REDUCE": ord("R"), "STRING": ord("S"),
    "BINSTRING": ord("T"), "SHORT_BINSTRING": ord("U"), "UNICODE": ord("V"),
    "BINUNICODE": ord("X"), "APPEND": ord("a"), "BUILD": ord("b"), "GLOBAL": ord("c"),
    "DICT": ord("d"), "EMPTY_DICT": ord("}"), "APPENDS": ord("e"), "GET": ord("g"),
    "BINGET": ord("h"), "INST": ord("i"), "LONG_BINGET": ord("j"), "LIST": ord("l"),
    "EMPTY_LIST": ord("]"), "OBJ": ord("o"), "PUT": ord("p"), "BINPUT": ord("q"),
    "LONG_BINPUT": ord("r"), "SETITEM": ord("s"), "TUPLE": ord("t"), "EMPTY_TUPLE": ord(")"),
    "SETITEMS": ord("u"), "BINFLOAT": ord("G"), "PROTO": 0x80, "NEWOBJ": 0x81,
    "EXT1": 0x82, "EXT2": 0x83, "EXT4": 0x84, "TUPLE1": 0x85, "TUPLE2": 0x86, "TUPLE3": 0x87,
    "NEWTRUE": 0x88, "NEWFALSE": 0x89, "LONG1": 0x8A, "LONG4": 0x8B, "BINBYTES": ord("B"),
    "SHORT_BINBYTES": ord("C"), "SHORT_BINUNICODE": 0x8C, "BINUNICODE8": 0x8D,
    "BINBYTES8": 0x8E, "EMPTY_SET": 0x8F, "ADDITEMS": 0x90, "FROZENSET": 0x91,
    "NEWOBJ_EX": 0x92, "STACK_GLOBAL": 0x93, "MEMOIZE": 0x94, "FRAME": 0x95,
    "BYTEARRAY8": 0x96, "NEXT_BUFFER": 0x97, "READONLY_BUFFER": 0x98,
}
