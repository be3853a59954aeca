"""Shipped code, read without running or even building it.

Code objects arrive as marshal bytes (marinade, ``marshal.loads`` payloads)
or as the fields of a ``CodeType(...)`` call (cloudpickle, dill). Neither is
turned into a real code object: creating one from hostile bytes can corrupt
the interpreter (CPython trusts the bytecode it quickens). Instead a small
pure-Python marshal reader yields ``CodeInfo`` records, and the bytecode is
decoded with the opcode table of the CPython version that compiled it
(``_opcodes``: 3.11, 3.12 and 3.13, whichever runs the inspection): the
version the payload names, or for untagged code every version it strictly
decodes as. Code no table decodes is analysed by the names it mentions,
which is coarser and errs on the side of flagging.
"""

from __future__ import annotations

import builtins
import opcode
import struct

from .. import _compat
from . import _rules

_BUILTIN_NAMES = frozenset(dir(builtins))


class CodeFormatError(ValueError):
    """Shipped code that is not a well-formed code object."""


class CodeInfo:
    """The parts of a code object the analysis needs (never a real code object)."""

    __slots__ = ("name", "qualname", "filename", "flags", "argcount", "code", "consts",
                 "names", "localsplus")

    def __init__(self, name, qualname, filename, flags, argcount, code, consts, names,
                 localsplus):
        self.name = name
        self.qualname = qualname
        self.filename = filename
        self.flags = flags
        self.argcount = argcount
        self.code = code
        self.consts = consts
        self.names = names
        self.localsplus = localsplus

    def walk(self):
        """This code object and every code object nested in its constants."""
        stack = [self]
        while stack:
            info = stack.pop()
            yield info
            stack.extend(c for c in info.consts if type(c) is CodeInfo)


# -- marshal ------------------------------------------------------------------------------

_RESERVED = object()  # a reference slot whose object is still being read
_NULL = object()
_MAX_DEPTH = 200


class _Marshal:
    """Reads the marshal format (versions 4 and 5, CPython 3.11 to 3.13 code).

    Bounded: nesting depth, number of objects and sizes are checked against
    the data, and nothing is built but tuples, strings, numbers and CodeInfo.
    """

    def __init__(self, data: bytes, max_objects: int):
        self.data = data
        self.pos = 0
        self.refs: list = []
        self.left = max_objects
        self.depth = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise CodeFormatError("truncated marshal data")
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk

    def i32(self) -> int:
        return int.from_bytes(self.take(4), "little", signed=True)

    def size(self) -> int:
        n = self.i32()
        if n < 0 or n > len(self.data) - self.pos:
            raise CodeFormatError("bad size in marshal data")
        return n

    def read(self):
        self.left -= 1
        if self.left < 0:
            raise CodeFormatError("too many objects in marshal data")
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise CodeFormatError("marshal data nested too deeply")
        try:
            return self._read()
        finally:
            self.depth -= 1

    def _ref(self, flag: int, value):
        if flag:
            self.refs.append(value)
        return value

    def _reserve(self, flag: int) -> int:
        if not flag:
            return -1
        self.refs.append(_RESERVED)
        return len(self.refs) - 1

    def _fill(self, index: int, value):
        if index >= 0:
            self.refs[index] = value
        return value

    def _read(self):
        code = self.take(1)[0]
        flag = code & 0x80
        kind = chr(code & 0x7F)
        if kind == "0":
            return _NULL
        if kind in "NFTS.":
            return {"N": None, "F": False, "T": True, "S": StopIteration,
                    ".": Ellipsis}[kind]
        if kind == "i":
            return self._ref(flag, self.i32())
        if kind == "l":
            n = self.i32()
            if abs(n) > 1 << 16:
                raise CodeFormatError("integer too large in marshal data")
            value = 0
            for i, digit in enumerate(struct.unpack(f"<{abs(n)}H", self.take(2 * abs(n)))):
                if digit >= 1 << 15:
                    raise CodeFormatError("bad digit in marshal data")
                value |= digit << (15 * i)
            return self._ref(flag, -value if n < 0 else value)
        if kind == "g":
            return self._ref(flag, struct.unpack("<d", self.take(8))[0])
        if kind == "y":
            real, imag = struct.unpack("<dd", self.take(16))
            return self._ref(flag, complex(real, imag))
        if kind in "fx":
            parts = 2 if kind == "x" else 1
            texts = [self.take(self.take(1)[0]) for _ in range(parts)]
            try:
                values = [float(t.decode("ascii")) for t in texts]
            except ValueError:
                raise CodeFormatError("bad float in marshal data") from None
            return self._ref(flag, values[0] if parts == 1 else complex(*values))
        if kind == "s":
            return self._ref(flag, self.take(self.size()))
        if kind in "tu":
            return self._ref(flag, self._text(self.take(self.size()), "utf-8"))
        if kind in "aA":
            return self._ref(flag, self._text(self.take(self.size()), "ascii"))
        if kind in "zZ":
            return self._ref(flag, self._text(self.take(self.take(1)[0]), "ascii"))
        if kind in "()[<>":
            n = self.take(1)[0] if kind == ")" else self.size()
            index = self._reserve(flag)
            items = [self.read() for _ in range(n)]
            if _NULL in items:
                raise CodeFormatError("NULL inside a marshal container")
            value = list(items) if kind == "[" else tuple(items)
            return self._fill(index, value)
        if kind == "{":
            index = self._reserve(flag)
            entries = []
            while True:
                key = self.read()
                if key is _NULL:
                    break
                entries.append((key, self.read()))
            return self._fill(index, entries)
        if kind == "r":
            n = self.i32()
            if not 0 <= n < len(self.refs) or self.refs[n] is _RESERVED:
                raise CodeFormatError("bad reference in marshal data")
            return self.refs[n]
        if kind == "c":
            index = self._reserve(flag)
            return self._fill(index, self._code())
        raise CodeFormatError(f"unknown marshal type code {code:#x}")

    @staticmethod
    def _text(raw: bytes, encoding: str) -> str:
        try:
            return raw.decode(encoding, "surrogatepass" if encoding == "utf-8" else "strict")
        except UnicodeDecodeError:
            raise CodeFormatError("bad string in marshal data") from None

    def _code(self) -> CodeInfo:
        argcount = self.i32()
        self.i32()  # posonlyargcount
        self.i32()  # kwonlyargcount
        self.i32()  # stacksize
        flags = self.i32()
        code = self.read()
        consts = self.read()
        names = self.read()
        localsplus = self.read()
        self.read()  # localspluskinds
        filename = self.read()
        name = self.read()
        qualname = self.read()
        self.i32()  # firstlineno
        self.read()  # linetable
        self.read()  # exceptiontable
        return make_info(name, qualname, filename, flags, argcount, code, consts, names,
                         localsplus)


def make_info(name, qualname, filename, flags, argcount, code, consts, names,
              localsplus) -> CodeInfo:
    """A CodeInfo after checking every field has the type a code object needs."""
    if type(code) is not bytes or type(consts) is not tuple or type(names) is not tuple \
            or type(localsplus) is not tuple:
        raise CodeFormatError("malformed code object")
    if not all(type(n) is str for n in names) or not all(type(n) is str for n in localsplus):
        raise CodeFormatError("malformed code object (names must be strings)")
    for text in (name, qualname, filename):
        if type(text) is not str:
            raise CodeFormatError("malformed code object (name must be a string)")
    if type(flags) is not int or type(argcount) is not int:
        raise CodeFormatError("malformed code object")
    return CodeInfo(name, qualname, filename, flags, argcount, code, consts, names,
                    localsplus)


def parse_marshal(data: bytes, max_objects: int = 200_000) -> CodeInfo:
    """The code object in marshal ``data``, as a CodeInfo (never executed or built)."""
    reader = _Marshal(bytes(data), max_objects)
    value = reader.read()
    if type(value) is not CodeInfo:
        raise CodeFormatError(f"marshal data holds {type(value).__name__}, not code")
    return value


def parse_marshal_table(data: bytes, max_objects: int = 200_000) -> tuple[CodeInfo, ...]:
    """The tuple of code objects in marshal ``data`` (``_rebuild.load_code_table``)."""
    reader = _Marshal(bytes(data), max_objects)
    value = reader.read()
    if type(value) is not tuple or not all(type(item) is CodeInfo for item in value):
        raise CodeFormatError("marshal data does not hold a tuple of code objects")
    return value


def info_from_fields(fields: list) -> CodeInfo:
    """A CodeInfo from ``types.CodeType(*fields)`` arguments (cloudpickle, dill).

    The 18 fields of CPython 3.11 to 3.13; dill may put the old line-number
    table first.
    """
    if len(fields) == 19 and type(fields[0]) is bytes:
        fields = fields[1:]
    if len(fields) != 18:
        raise CodeFormatError(f"code object fields for another Python ({len(fields)} fields)")
    (argcount, _, _, _, _, flags, code, consts, names, varnames, filename, name, qualname,
     _, _, _, freevars, cellvars) = fields
    if type(code) is str:
        code = code.encode("latin-1", "replace")  # dill may store bytes as str
    if type(varnames) is not tuple or type(cellvars) is not tuple or type(freevars) is not tuple:
        raise CodeFormatError("malformed code object fields")
    localsplus = tuple(varnames) + tuple(c for c in cellvars if c not in varnames) \
        + tuple(freevars)
    return make_info(name, qualname, filename, flags, argcount, code, consts, names,
                     localsplus)


CURRENT_TAG = _compat.CODE_TAG


def info_from_source(spec) -> CodeInfo:
    """A CodeInfo for the code a portable payload's ``spec`` describes.

    Portable payloads carry source text. It is compiled here exactly as the
    loader will compile it (``_rebuild_portable``'s own compile step, which
    only parses and compiles: nothing runs, not even decorators), and the
    bytecode this interpreter's compiler made is then read like any other.
    """
    import marshal

    from .. import _rebuild_portable

    if type(spec) is not tuple or len(spec) != 8 or not all(
            type(part) in (str, int, tuple, type(None)) for part in spec):
        raise CodeFormatError("malformed portable code spec")
    try:
        code = _rebuild_portable._compile(spec)
    except (SyntaxError, ValueError, TypeError, IndexError, AttributeError,
            MemoryError, RecursionError) as exc:
        raise CodeFormatError(f"shipped source does not compile ({type(exc).__name__}: "
                              f"{exc})") from None
    except Exception as exc:  # noqa: BLE001 - pickle.UnpicklingError from the spec checks
        raise CodeFormatError(f"malformed portable code spec ({exc})") from None
    return parse_marshal(marshal.dumps(code))


# -- bytecode -----------------------------------------------------------------------------

class Undecodable(ValueError):
    """Bytecode that an opcode table does not describe."""


# Opcodes that never appear in ``co_code`` (caches, instrumentation, internals).
_NOT_EMITTED = frozenset({"CACHE", "RESERVED", "INTERPRETER_EXIT", "ENTER_EXECUTOR"})


class Dialect:
    """The bytecode of one CPython minor version: opcode names, inline cache
    sizes and argument encodings."""

    __slots__ = ("version", "names", "caches", "have_argument", "extended_arg",
                 "attr_shift")

    def __init__(self, version: tuple[int, int], ops: dict[str, tuple[int, int]],
                 have_argument: int):
        self.version = version
        self.names = [""] * 256
        self.caches = [0] * 256
        for name, (code, caches) in ops.items():
            if name in _NOT_EMITTED or name.startswith("INSTRUMENTED_"):
                continue
            self.names[code] = name
            self.caches[code] = caches
        self.have_argument = have_argument
        self.extended_arg = ops["EXTENDED_ARG"][0]
        # LOAD_ATTR keeps a flag in the low bit of its argument since 3.12.
        self.attr_shift = version >= (3, 12)

    @property
    def label(self) -> str:
        return f"{self.version[0]}.{self.version[1]}"

    def name_index(self, opname: str, arg: int) -> int:
        if opname == "LOAD_GLOBAL":
            return arg >> 1
        if opname == "LOAD_ATTR" and self.attr_shift:
            return arg >> 1
        if opname == "LOAD_SUPER_ATTR":
            return arg >> 2
        return arg


def _live_ops() -> dict[str, tuple[int, int]]:
    """This interpreter's own table, from its ``opcode`` module."""
    entries = opcode._inline_cache_entries  # list by opcode (3.11, 3.12) or dict by name
    ops = {}
    for code in range(256):
        name = opcode.opname[code]
        if name.startswith("<"):
            continue
        ops[name] = (code, entries.get(name, 0) if isinstance(entries, dict)
                     else entries[code])
    return ops


def _dialects() -> dict[int, Dialect]:
    from . import _opcodes

    found = {}
    for version, (have_argument, text) in _opcodes.TABLES.items():
        found[version[0] * 256 + version[1]] = Dialect(version, _opcodes.parse(text),
                                                       have_argument)
    # The running interpreter's table comes from itself, whatever the list says.
    found[_compat.CODE_TAG] = Dialect(_compat.PY_VERSION, _live_ops(), opcode.HAVE_ARGUMENT)
    return found


DIALECTS = _dialects()  # CODE_TAG -> Dialect


def instructions(info: CodeInfo, dialect: Dialect):
    """``(opname, argval)`` pairs of ``info``'s own bytecode read as ``dialect``,
    argval resolved for name, local and const ops.

    Strict: every instruction must be one the compiler of that version emits,
    with its inline cache entries zeroed (as ``co_code`` and marshal give
    them), no argument on instructions that take none, and a RESUME. Code
    compiled by another version almost never passes (its caches and opcode
    numbers differ), so a strict decoding also tells which version made the
    code. Raises Undecodable otherwise.
    """
    code = info.code
    names, consts, localsplus = info.names, info.consts, info.localsplus
    if len(code) % 2:
        raise Undecodable("odd bytecode length")
    opnames, caches, have_argument = dialect.names, dialect.caches, dialect.have_argument
    extended_arg = dialect.extended_arg
    out = []
    i = 0
    ext = 0
    n = len(code)
    resumed = False
    try:
        while i < n:
            op = code[i]
            name = opnames[op]
            if not name:
                raise Undecodable(f"opcode {op} at {i} is not a CPython {dialect.label} "
                                  "instruction")
            arg = code[i + 1]
            if op < have_argument and arg:
                raise Undecodable(f"{name} at {i} has an argument")
            size = caches[op]
            end = i + 2 + 2 * size
            if size and code[i + 2:end].count(0) != 2 * size:
                raise Undecodable(f"{name} at {i} is not followed by empty caches")
            i = end
            arg |= ext
            if op == extended_arg:
                ext = arg << 8
                continue
            ext = 0
            if name in _GLOBAL_LOAD or name in _GLOBAL_STORE or name in _ATTR_LOAD \
                    or name in _ATTR_STORE or name in _NAME_OPS:
                out.append((name, names[dialect.name_index(name, arg)]))
            elif name in _LOCAL_LOAD or name in _LOCAL_STORE:
                out.append((name, localsplus[arg]))
            elif name in ("LOAD_FAST_LOAD_FAST", "STORE_FAST_STORE_FAST",
                          "STORE_FAST_LOAD_FAST"):
                out.append((name, (localsplus[arg >> 4], localsplus[arg & 15])))
            elif name in _CONST_OPS:
                out.append((name, consts[arg]))
            else:
                if name == "RESUME":
                    resumed = True
                out.append((name, arg))
    except IndexError:
        raise Undecodable("bytecode argument out of range") from None
    if i != n:
        raise Undecodable("bytecode ends inside an instruction")
    if not resumed:
        raise Undecodable("no RESUME instruction")
    return out


_GLOBAL_LOAD = {"LOAD_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS"}
_GLOBAL_STORE = {"STORE_GLOBAL", "STORE_NAME"}
_ATTR_LOAD = {"LOAD_ATTR", "LOAD_METHOD", "LOAD_SUPER_ATTR"}
_ATTR_STORE = {"STORE_ATTR", "DELETE_ATTR"}
_LOCAL_LOAD = {"LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_FAST_AND_CLEAR", "LOAD_CLOSURE",
               "LOAD_DEREF", "LOAD_CLASSDEREF", "LOAD_FROM_DICT_OR_DEREF"}
_LOCAL_STORE = {"STORE_FAST", "STORE_DEREF", "STORE_FAST_MAYBE_NULL"}
_CONST_OPS = {"LOAD_CONST", "RETURN_CONST", "KW_NAMES"}
_NAME_OPS = {"IMPORT_NAME", "IMPORT_FROM", "DELETE_GLOBAL", "DELETE_NAME"}


# -- analysis -----------------------------------------------------------------------------

_DYNAMIC = {"builtins.getattr", "builtins.vars", "builtins.globals", "builtins.__import__",
            "operator.attrgetter", "operator.methodcaller", "importlib.import_module",
            "builtins.eval", "builtins.exec"}
_DYNAMIC_ATTRS = {"__dict__", "__getattribute__", "__getattr__"}
_CODE_SET_ATTRS = {"__code__", "__globals__", "__builtins__"}


class CodeFacts:
    """What a shipped code object (and the code nested in it) uses."""

    __slots__ = ("uses", "imports", "attrs", "strings", "mode", "versions", "findings",
                 "error")

    def __init__(self):
        self.uses: dict[str, None] = {}  # dotted names, in order of first use
        self.imports: dict[str, None] = {}
        self.attrs: dict[str, None] = {}  # attributes of values inspection could not name
        self.strings: set[str] = set()
        self.mode = "bytecode"
        self.versions: list[str] = []  # the CPython versions its bytecode was read as
        self.findings: list[tuple[str, str]] = []  # (severity, message)
        self.error: str | None = None

    def flag(self, severity: str, message: str) -> None:
        if (severity, message) not in self.findings:
            self.findings.append((severity, message))


def analyse(info: CodeInfo, resolve_global, tag: int | None) -> CodeFacts:
    """Facts about ``info``'s code; ``resolve_global(name)`` names a global's value.

    ``tag`` is ``major * 256 + minor`` of the Python that compiled the code,
    or None when the payload does not say (cloudpickle, dill, raw marshal).
    Tagged code is read with its version's opcode table. Untagged code runs
    on whichever interpreter loads it, so it is read as every known version
    it strictly decodes as, and what any reading uses counts. Code no known
    table decodes falls back to the names it mentions.
    """
    facts = CodeFacts()
    readings = []
    if tag is not None:
        dialect = DIALECTS.get(tag)
        if dialect is None:
            facts.error = (f"bytecode of {_compat.describe_code_tag(tag)}, which this "
                           "inspector has no opcode table for: analysed by names only")
        else:
            try:
                readings.append((dialect, [(each, instructions(each, dialect))
                                           for each in info.walk()]))
            except Undecodable as exc:
                # No compiler wrote this: the payload vouches for a version whose
                # bytecode this is not. The loader would still run it.
                facts.flag(_rules.DANGER, f"shipped code is not valid "
                           f"{_compat.describe_code_tag(tag)} bytecode ({exc})")
                facts.error = "bytecode not decodable: analysed by names only"
    else:
        for dialect in DIALECTS.values():
            try:
                readings.append((dialect, [(each, instructions(each, dialect))
                                           for each in info.walk()]))
            except Undecodable:
                continue
        if not readings:
            facts.error = ("bytecode of no CPython version this inspector knows "
                           f"({', '.join(d.label for d in DIALECTS.values())}): analysed "
                           "by names only")
    if not readings:
        facts.mode = "names"
        _by_names(info, facts)
    for dialect, decoded in readings:
        facts.versions.append(dialect.label)
        aliases: dict[str, str] = {}
        for each, instrs in decoded:
            _by_bytecode(each, instrs, resolve_global, aliases, facts)
    _judge(facts)
    return facts


def _by_bytecode(info: CodeInfo, instrs, resolve_global, aliases: dict, facts: CodeFacts):
    uses, imports, attrs, strings = facts.uses, facts.imports, facts.attrs, facts.strings
    chain: str | None = None  # dotted name of the value the last instruction produced
    import_base: str | None = None
    consts: list = []  # last two constants (IMPORT_NAME's level and fromlist)

    def end(name: str | None) -> None:
        if name is not None:
            uses.setdefault(name)

    for opname, argval in instrs:
        if opname in _ATTR_LOAD:
            if chain is not None:
                chain = f"{chain}.{argval}"
            else:
                attrs.setdefault(argval)
            continue
        if opname == "IMPORT_FROM":
            if import_base is not None:
                chain = f"{import_base}.{argval}"
                imports.setdefault(chain)
            continue
        if opname in _LOCAL_STORE or opname in _GLOBAL_STORE:
            if chain is not None:
                aliases[argval] = chain
            else:
                aliases.pop(argval, None)
            chain = None
            continue
        if opname in ("STORE_FAST_STORE_FAST", "STORE_FAST_LOAD_FAST"):
            target, other = argval
            if chain is not None:
                aliases[target] = chain
            else:
                aliases.pop(target, None)
            chain = aliases.get(other) if opname == "STORE_FAST_LOAD_FAST" else None
            if opname == "STORE_FAST_STORE_FAST":
                aliases.pop(other, None)
            continue
        end(chain)
        chain = None
        if opname in _GLOBAL_LOAD:
            chain = aliases.get(argval) or resolve_global(argval)
            if chain is None and argval in _BUILTIN_NAMES:
                chain = f"builtins.{argval}"
        elif opname in _LOCAL_LOAD:
            chain = aliases.get(argval)
        elif opname == "LOAD_FAST_LOAD_FAST":
            end(aliases.get(argval[0]))
            chain = aliases.get(argval[1])
        elif opname == "IMPORT_NAME":
            level = consts[-2] if len(consts) >= 2 else 0
            fromlist = consts[-1] if consts else None
            if type(level) is not int or not 0 <= level < 100:
                level = 0  # (hostile bytecode: the import would fail anyway)
            module = argval if not level else "." * level + argval
            imports.setdefault(module)
            import_base = module
            chain = module if fromlist else module.partition(".")[0]
        elif opname in _CONST_OPS:
            if type(argval) is str and len(argval) <= 200:
                strings.add(argval)
            consts.append(argval)
            del consts[:-2]
        elif opname in _ATTR_STORE:
            if argval in _CODE_SET_ATTRS:
                facts.flag(_rules.DANGER, f"replaces .{argval} of an object")
    end(chain)
    for const in info.consts:
        if type(const) is str and len(const) <= 200:
            strings.add(const)


def _by_names(info: CodeInfo, facts: CodeFacts) -> None:
    names: set[str] = set()
    for each in info.walk():
        names.update(each.names)
        facts.strings.update(c for c in each.consts if type(c) is str and len(c) <= 200)
    for name in sorted(names):
        facts.attrs.setdefault(name)
        if name in _BUILTIN_NAMES and _rules.danger(f"builtins.{name}", at_load=False):
            facts.uses.setdefault(f"builtins.{name}")
        elif _rules.danger(name, at_load=False):
            facts.uses.setdefault(name)
    modules = {"os", "posix", "nt"} & names
    for name in sorted(names):
        for module in modules:
            if _rules.danger(f"{module}.{name}", at_load=False):
                facts.uses.setdefault(f"{module}.{name}")


def _judge(facts: CodeFacts) -> None:
    dynamic = False
    for name in facts.uses:
        canonical = _rules.canonical(name)
        if canonical in _DYNAMIC:
            dynamic = True
        reason = _rules.danger(name, at_load=False)
        if reason is not None:
            facts.flag(_rules.DANGER, f"uses {canonical} ({reason})")
            continue
        warning = _rules.code_warning(name)
        if warning is not None:
            facts.flag(_rules.WARNING, f"uses {canonical} ({warning})")
    for name in facts.imports:
        reason = _rules.danger(name, at_load=False)
        if reason is not None:
            facts.flag(_rules.DANGER, f"imports {name} ({reason})")
    for attr in facts.attrs:
        if attr in _DYNAMIC_ATTRS:
            dynamic = True
        reason = _rules.DANGER_ATTRS.get(attr)
        if reason is not None:
            facts.flag(_rules.DANGER, f"fetches .{attr} ({reason})")
    modules_as_values = [name for name in facts.uses
                         if _rules.canonical(name) in _rules.DANGER_MODULE_VALUES]
    if dynamic:
        for text in sorted(facts.strings):
            reason = _rules.DANGER_ATTRS.get(text) or _rules.danger(text, at_load=False) \
                or _rules.danger(f"builtins.{text}", at_load=False) \
                or _rules.danger(f"os.{text}", at_load=False)
            if reason is not None:
                facts.flag(_rules.DANGER, f"names {text!r} for a dynamic lookup ({reason})")
        for module in modules_as_values:
            facts.flag(_rules.DANGER, f"passes module {module} to a dynamic lookup")
    if facts.mode == "names" and facts.error:
        facts.flag(_rules.WARNING, facts.error)
