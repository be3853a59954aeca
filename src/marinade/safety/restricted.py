"""Restricted loading: ``marinade.loads(data, allow=...)``.

Before a single opcode runs, the whole payload is scanned symbolically
(``_scan``): every global it imports, every module it imports by name, and
every attribute it fetches from a global must be on the allow-list, and
anything inspection cannot resolve (names computed while loading, ``EXT``
opcodes, persistent ids, dotted names not allowed exactly) is refused.
Payloads that carry code (shipped functions or classes) are refused unless
they come signed (``key=``). Then exactly the bytes that were checked are
loaded, by an unpickler whose ``find_class`` checks the allow-list again.

The allow-list is the default below plus what the caller adds:

- an object (class or function): its ``module.qualname``;
- a module object: everything in it (``"numpy.*"``);
- ``"module.qualname"``, ``"module:qualname"`` or ``("module", "qualname")``;
- ``"package.*"``: every name of a package and its submodules.
"""

from __future__ import annotations

import _compat_pickle
import pickle
import re
import sys
import types
from collections.abc import Iterable

from .._errors import RestrictedError, UnpicklingError
from . import _rules, _scan
from ._locate import Tracking, load_or_explain

# Plain data: containers, numbers, dates, and the copyreg helpers plain
# pickle uses to rebuild instances of allowed classes.
DATA = frozenset({
    "builtins.bool", "builtins.int", "builtins.float", "builtins.complex", "builtins.str",
    "builtins.bytes", "builtins.bytearray", "builtins.list", "builtins.tuple",
    "builtins.dict", "builtins.set", "builtins.frozenset", "builtins.slice",
    "builtins.range", "builtins.object", "builtins.Ellipsis", "builtins.NotImplemented",
    "copyreg._reconstructor", "copyreg.__newobj__", "copyreg.__newobj_ex__",
    "codecs.encode",  # protocol 2 writes bytes as _codecs.encode(text, "latin1")
    "collections.OrderedDict", "collections.defaultdict", "collections.deque",
    "collections.Counter", "datetime.date", "datetime.time", "datetime.datetime",
    "datetime.timedelta", "datetime.timezone", "decimal.Decimal", "fractions.Fraction",
    "uuid.UUID", "array.array", "array._array_reconstructor",
})

# marinade's own reconstructors: named by every marinade payload with code.
# Listed one by one, not taken from the modules: a new reconstructor stays
# refused until it is reviewed here (and modelled by the scan, if it calls
# what it is given). tests/test_restricted.py checks the list is complete.
RECONSTRUCTORS = frozenset({
    "marinade._rebuild.load_code", "marinade._rebuild.load_code_table",
    "marinade._rebuild.function", "marinade._rebuild.cell",
    "marinade._rebuild.rebuild_class", "marinade._rebuild.set_class_state",
    "marinade._rebuild.set_class_methods",  # set_class_state's attributes, set earlier
    "marinade._rebuild.enum_member", "marinade._rebuild.shared_object",
    "marinade._rebuild.load_kit",
    # Data only: builds frames from a fixed empty generator, runs nothing given.
    "marinade._rebuild.traceback",
    # BUILD in two steps (the base's state, then the subclass's attributes):
    # calls nothing BUILD would not.
    "marinade._rebuild.set_subclass_state",
    "marinade.frames.restore.new_generator", "marinade.frames.restore.set_frame_state",
    "marinade.frames.restore.finished_generator", "marinade._rebuild_portable.code",
    "marinade._rebuild_portable.function", "marinade._rebuild_portable.set_class_state",
    "marinade._rebuild_portable.type_param", "marinade._rebuild_portable.type_alias",
})

# The standard-library callables marinade's reducers put in payloads with
# code (default and standalone). Allowed only when the payload is signed.
CODE_TOOLKIT = frozenset({
    "builtins.getattr", "builtins.setattr", "builtins.type", "builtins.staticmethod",
    "builtins.classmethod", "builtins.property", "builtins.dict.update",
    "builtins.dict.fromkeys",
    "builtins.str.format", "importlib.import_module", "operator.getitem",
    "operator.methodcaller", "operator.call", "types.FunctionType", "types.LambdaType",
    "types.CellType", "types.CodeType", "types.ModuleType", "types.MappingProxyType",
    "types.MethodType", "types.SimpleNamespace", "marshal.loads", "sys.version_info",
    "functools.partial", "functools.lru_cache", "functools.singledispatch",
    "functools.cached_property",
    # Standard-library objects plain pickle refuses (reduce/stdlib.py): each
    # builds one object from its arguments and runs no code of its own.
    "builtins.iter", "builtins.reversed", "builtins.super", "builtins.memoryview",
    "_struct.Struct", "weakref.ReferenceType", "weakref.WeakMethod", "_weakref.proxy", "functools.cmp_to_key",
    "codecs.lookup", "codecs.CodecInfo", "random.SystemRandom", "json.decoder.JSONDecoder",
    # What classes shipped by value are made of: standard-library class
    # machinery that runs no command and evaluates no text.
    "builtins.len", "builtins.map", "builtins.zip", "abc.ABC", "abc.ABCMeta",
    "collections._tuplegetter", "_thread.get_ident", "dataclasses.Field",
    "dataclasses.FrozenInstanceError", "dataclasses._DataclassParams", "dataclasses._replace",
    "dataclasses._dataclass_getstate", "dataclasses._dataclass_setstate",
    "dataclasses.KW_ONLY", "dataclasses._KW_ONLY_TYPE", "dataclasses.MISSING",
    "dataclasses._MISSING_TYPE", "dataclasses._HAS_DEFAULT_FACTORY_CLASS",
    "enum.Enum", "enum.IntEnum", "enum.StrEnum", "enum.Flag", "enum.IntFlag",
    "enum.ReprEnum", "enum.EnumType", "enum.EnumMeta", "enum.FlagBoundary",
    "enum.Enum.__format__", "enum.Enum.__repr__", "enum.Enum.__str__",
    "enum.Enum._generate_next_value_", "enum.Flag.__and__", "enum.Flag.__invert__",
    "enum.Flag.__or__", "enum.Flag.__xor__", "enum.Flag._generate_next_value_",
    "typing.Generic", "typing.Protocol", "typing.NamedTuple", "typing.TypeVar",
    "typing.ParamSpec", "typing.TypeVarTuple",
})

UNSIGNED_RECONSTRUCTORS = frozenset({"marinade._rebuild.traceback",
                                     "marinade._rebuild.set_subclass_state"})

_NEVER_IMPORT = frozenset({"antigravity", "this", "idlelib", "turtledemo", "turtle",
                           "tkinter", "pydoc_data"})


class Policy:
    """An allow-list: exact dotted names and ``prefix.*`` wildcards."""

    def __init__(self, allow, signed: bool):
        self.signed = signed
        self.exact: set[str] = set(DATA) | UNSIGNED_RECONSTRUCTORS
        if signed:
            self.exact |= RECONSTRUCTORS | CODE_TOOLKIT
        self.prefixes: list[str] = []
        if allow is True:
            allow = ()
        if isinstance(allow, (str, bytes)) or not isinstance(allow, Iterable):
            allow = (allow,)
        for entry in allow:
            self._add(entry)

    def _add(self, entry) -> None:
        if isinstance(entry, tuple) and len(entry) == 2 and all(isinstance(e, str) for e in entry):
            self.exact.add(f"{entry[0]}.{entry[1]}")
        elif isinstance(entry, str):
            entry = entry.replace(":", ".")
            if entry.endswith(".*"):
                self.prefixes.append(entry[:-2])
            else:
                self.exact.add(entry)
        elif isinstance(entry, types.ModuleType):
            self.prefixes.append(entry.__name__)
        else:
            module = getattr(entry, "__module__", None)
            qualname = getattr(entry, "__qualname__", None)
            if not isinstance(module, str) or not isinstance(qualname, str):
                raise TypeError(f"cannot allow {entry!r}: give an importable class or "
                                "function, a module, or a 'module.name' string")
            self.exact.add(f"{module}.{qualname}")

    def allows_global(self, module: str, name: str) -> bool:
        """A global ``module.name``; a dotted ``name`` only when allowed exactly
        (it walks attributes: a wildcard must not cover what it reaches)."""
        dotted = f"{module}.{name}"
        if "." in name:
            return dotted in self.exact
        return self.allows(dotted)

    def allows(self, dotted: str) -> bool:
        if dotted in self.exact or _rules.canonical(dotted) in self.exact:
            return True
        for prefix in self.prefixes:
            if dotted == prefix or dotted.startswith(prefix + "."):
                return True
        return False

    def allows_module(self, name: str) -> bool:
        """May the payload import module ``name`` by name (``import_module``)?"""
        if self.allows(name) or any(d.startswith(name + ".") for d in self.exact):
            return True
        if not self.signed:
            return False
        # Signed code payloads import the modules their functions use: already
        # imported ones cost nothing, standard-library ones run no third-party code.
        top = name.partition(".")[0]
        return name in sys.modules or (top in sys.stdlib_module_names
                                       and top not in _NEVER_IMPORT)


def _refuse(message: str, offset: int | None) -> RestrictedError:
    where = f" (at byte {offset})" if offset is not None else ""
    return RestrictedError(f"restricted load refused the payload: {message}{where}",
                           offset=offset)


# Data constructors whose arguments, in a pickle, are always literal data:
# given an int or a value computed while loading (``list(range(10**12))``,
# ``bytearray(10**12)``) they only serve to exhaust memory.
_SIZED = frozenset({"builtins.bytes", "builtins.bytearray", "builtins.list", "builtins.tuple",
                    "builtins.set", "builtins.frozenset", "builtins.dict",
                    "collections.deque", "collections.OrderedDict", "collections.Counter",
                    "builtins.dict.fromkeys", "array.array"})
# The same constructors reached through copyreg (``cls.__new__(cls, *args)``,
# the NEWOBJ opcodes) take the class first (``_reconstructor``: class, base).
_CLASS_FIRST = {"copyreg.__newobj__": 1, "copyreg.__newobj_ex__": 1,
                "copyreg._reconstructor": 2}
# Fraction("1e10000000") computes 10**10000000 (seconds of CPU per 40 bytes);
# Fraction's own reduce writes "numerator/denominator", never an exponent.
_FRACTION_EXPONENT = re.compile(r"[eE]\s*[-+]?\s*0*[1-9]\d{5,}")


def _check_call(name: str, args: list, offset: int) -> None:
    skip = _CLASS_FIRST.get(name)
    if skip is not None and len(args) >= skip and type(args[skip - 1]) is _scan.Ref:
        name, args = _rules.canonical(args[skip - 1].dotted), args[skip:]
    if name in _SIZED:
        for arg in args:
            if type(arg) is str and name == "array.array":
                continue  # the type code
            if type(arg) is int or isinstance(arg, _scan.Node) and type(arg) not in (
                    _scan.Seq, _scan.Map, _scan.Blob):
                raise _refuse(f"{name} called with {_scan._describe(arg)}: not plain data",
                              offset)
    elif name == "fractions.Fraction":
        for arg in args:
            if type(arg) is str and _FRACTION_EXPONENT.search(arg.replace("_", "")):
                raise _refuse("fractions.Fraction of a text with an exponent of 100,000 or "
                              "more: it would take minutes to compute", offset)


def check(scanner: _scan.Scanner, policy: Policy) -> None:
    """Raise RestrictedError unless everything ``scanner`` saw is allowed."""
    if scanner.max_memo_index > max(1024, scanner.src.tell()):
        # Only PUT can name an index beyond the number of objects; CPython's
        # unpickler allocates (and zeroes) a memo that large.
        raise _refuse(f"memo index {scanner.max_memo_index} is out of range",
                      scanner.max_memo_offset)
    if scanner.src.crossings:
        raise _refuse("an opcode crosses the end of a FRAME (pickle.loads and pickle.load "
                      "would read the stream differently)", scanner.base + scanner.src.crossings[0])
    for code, offset in scanner.ext_codes:
        raise _refuse(f"EXT opcode (extension code {code}) is not accepted", offset)
    if scanner.persistent_ids:
        raise _refuse("persistent ids are not accepted", scanner.persistent_offset)
    where = [f.offset for f in scanner.functions] + [c.offset for c in scanner.classes]
    where += [scanner.base + c.start for c in scanner.codes]
    where += [record[1] for name, record in scanner.calls.items() if name in _scan.CODE_MAKERS]
    if where and not policy.signed:
        raise _refuse("the payload carries code (functions or classes by value); "
                      "restricted loading accepts code only in signed payloads (key=...)",
                      min(where))
    for module, name, offset in scanner.dotted_globals:
        if not policy.allows_global(module, name):
            raise _refuse(f"dotted global name {module}.{name} is not in the allow-list",
                          offset)
    for dotted, (_, offset, opcode) in scanner.imports.items():
        if opcode == "import":
            continue  # modules imported by name: below
        if not policy.allows(dotted):
            raise _refuse(f"global {dotted} is not in the allow-list", offset)
    for name, offset in scanner.module_imports:
        if name is None or not policy.allows_module(name):
            raise _refuse(f"importing module {name or '(computed name)'} is not allowed",
                          offset)
    for _, attr, dotted, offset in scanner.attr_fetches:
        if dotted is not None and not policy.allows(dotted) \
                and not policy.allows_module(dotted):
            raise _refuse(f"{dotted} (reached through getattr) is not in the allow-list",
                          offset)
        if attr.startswith("__") and attr not in ("__dict__",) and dotted is None:
            raise _refuse(f"fetching .{attr} is not allowed", offset)
    for finding in scanner.findings:
        if finding.severity != _rules.DANGER:
            continue
        if finding.name is not None and policy.allows(finding.name):
            continue  # a dangerous global the caller allowed by name
        raise _refuse(finding.message, finding.offset)


class _Unpickler(Tracking, pickle.Unpickler):
    """Checks ``find_class`` against the policy again: the scan and the C
    unpickler must agree on every global, or the load fails."""

    def __init__(self, file, policy: Policy, buffers=None):
        super().__init__(file, buffers=buffers)
        self._policy = policy

    def check_global(self, module: str, name: str) -> None:
        mapped = _compat_pickle.NAME_MAPPING.get((module, name))
        if mapped is None:
            mapped = (_compat_pickle.IMPORT_MAPPING.get(module, module), name)
        if not (self._policy.allows_global(module, name)
                or self._policy.allows_global(*mapped)):
            raise _refuse(f"global {module}.{name} is not in the allow-list", None)

    def persistent_load(self, pid):
        raise _refuse("persistent ids are not accepted", None)


def _scan_checked(source: _scan.Source, policy: Policy, base: int) -> _scan.Scanner:
    scanner = _scan.Scanner(source, base=base)
    scanner.call_hook = _check_call
    try:
        scanner.run()
    except _scan.FormatError as exc:
        if source.crossings:  # the real reason it reads as garbage
            raise _refuse("an opcode crosses the end of a FRAME (pickle.loads and "
                          "pickle.load would read the stream differently)",
                          base + source.crossings[0]) from None
        raise UnpicklingError(f"not a readable pickle: {exc} (at byte {exc.offset})",
                              offset=exc.offset) from None
    except _scan.LimitReached as exc:
        raise _refuse(f"the payload exceeds an inspection limit: {exc}", exc.offset) from None
    except RecursionError:
        raise _refuse("the payload nests too deeply to be checked", base + source.tell()) \
            from None
    check(scanner, policy)
    return scanner


def _load(data: bytes, policy: Policy, buffers, base: int):
    from .signing import BytesReader

    unpickler = _Unpickler(BytesReader(data), policy, buffers)  # decoded as checked
    return load_or_explain(unpickler, data, base)


def loads_checked(data, *, buffers=None, allow=None, signed: bool, base: int = 0):
    """Load ``data`` (a verified payload if ``signed``), restricted if ``allow`` is set."""
    if allow is None:
        from .signing import load_payload

        return load_payload(data, buffers, None, signed, base)
    if not isinstance(data, bytes):
        data = bytes(data)  # checked and loaded from one immutable copy
    policy = Policy(allow, signed)
    _scan_checked(_scan.Source(data), policy, base)
    return _load(data, policy, buffers, base)


def load_checked(file, *, buffers=None, allow=None):
    """``marinade.load(file, allow=...)``: reads exactly one pickle from ``file``."""
    policy = Policy(allow, signed=False)
    try:
        seekable = file.seekable()
    except (AttributeError, OSError, ValueError):
        seekable = False
    source = _scan.Source(file=file, record=True, exact=not seekable)
    try:
        _scan_checked(source, policy, 0)
    except UnpicklingError:
        if not (source.record or source.buf):  # nothing left: the end of a pickle stream
            raise EOFError("Ran out of input") from None
        raise
    finally:
        source.unread()
    return _load(source.consumed(), policy, buffers, 0)
