"""Static inspection: what a payload would import, call and ship, unexecuted.

``inspect(data)`` scans a pickle with the symbolic machine of ``_scan`` and
then reads every shipped code object (``_code``): the report lists the
globals the payload imports, the callables it calls while loading, each
function shipped by value with the names its code uses and the modules it
would import, where the bytes go, and findings: ``danger`` (something that
runs commands, evaluates or imports code by name, loads more pickles,
touches files or the network, or cannot be vouched for) and ``warning``.

It reads marinade (default and standalone), cloudpickle, dill and plain
pickle payloads. Several pickles written one after another to one file are
all inspected (a loop of ``pickle.load`` would run them all).
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field

from .._errors import UnpicklingError
from . import _code, _rules, _scan
from ._scan import (
    ELIDED,
    Blob,
    CellV,
    CodeV,
    Finding,
    FuncV,
    Limits,
    Map,
    Node,
    Obj,
    Ref,
    Scanner,
    Seq,
)

__all__ = ["FunctionReport", "Limits", "Report", "inspect", "inspect_bytes"]


@dataclass
class FunctionReport:
    """A function shipped by value."""

    name: str
    maker: str  # who built the payload: marinade, cloudpickle, dill, types.FunctionType
    offset: int
    python: str | None  # the CPython version the payload says compiled it
    analysis: str  # "bytecode", or "names" when no known opcode table decodes it
    code_size: int
    # the CPython versions whose bytecode it was read as (untagged code may
    # decode as several: what any of them uses counts)
    bytecode: list[str] = field(default_factory=list)
    uses: list[str] = field(default_factory=list)
    imports: list[str] = field(default_factory=list)
    attributes: list[str] = field(default_factory=list)  # of values inspection cannot name
    globals: dict[str, dict] = field(default_factory=dict)  # name -> {"value", "size"}
    closure: list[dict] = field(default_factory=list)
    extras: dict[str, int] = field(default_factory=dict)  # other attributes -> size

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Report:
    """What ``inspect`` found. ``dangerous`` is the verdict."""

    size: int
    protocol: int
    imports: list[dict] = field(default_factory=list)
    calls: list[dict] = field(default_factory=list)
    functions: list[FunctionReport] = field(default_factory=list)
    classes: list[dict] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    largest: list[dict] = field(default_factory=list)
    nested: list[tuple[str, Report]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    signed: dict | None = None
    complete: bool = True
    offset: int = 0  # where this pickle starts in the inspected data

    @property
    def dangerous(self) -> bool:
        """True if this pickle, or one it contains or is followed by, is flagged."""
        return any(f.severity == _rules.DANGER for f in self.findings) or any(
            report.dangerous for _, report in self.nested)

    def all_findings(self) -> list[Finding]:
        found = list(self.findings)
        for label, report in self.nested:
            for finding in report.all_findings():
                found.append(Finding(finding.severity, finding.message, finding.offset,
                                     f"{label}: {finding.where}" if finding.where else label))
        return found

    def as_dict(self) -> dict:
        return {
            "dangerous": self.dangerous,
            "complete": self.complete,
            "size": self.size,
            "offset": self.offset,
            "protocol": self.protocol,
            "signed": self.signed,
            "imports": self.imports,
            "calls": self.calls,
            "functions": [f.as_dict() for f in self.functions],
            "classes": self.classes,
            "findings": [f.as_dict() for f in self.findings],
            "largest": self.largest,
            "nested": [{"what": label, "report": report.as_dict()}
                       for label, report in self.nested],
            "notes": self.notes,
        }

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.as_dict(), **kwargs)

    def __str__(self) -> str:
        return "\n".join(self._lines())

    def _lines(self, indent: str = "") -> list[str]:
        out = []
        verdict = "DANGEROUS" if self.dangerous else "no danger found"
        out.append(f"{indent}pickle of {_human(self.size)} at byte {self.offset}, protocol "
                   f"{self.protocol}: {verdict}" + ("" if self.complete else " (incomplete)"))
        if self.signed is not None:
            state = {True: "verified", False: "NOT verified", None: "not checked"}[
                self.signed.get("verified")]
            out.append(f"{indent}  signed with key id {self.signed['key_id']!r}: "
                       f"signature {state}")
        findings = self.findings
        if findings:
            out.append(f"{indent}  findings:")
            for f in findings:
                where = f" [{f.where}]" if f.where else ""
                out.append(f"{indent}    {f.severity.upper():7} @{f.offset}{where}: "
                           f"{f.message}")
        if self.imports:
            out.append(f"{indent}  imports:")
            for item in self.imports:
                count = f" x{item['count']}" if item["count"] > 1 else ""
                out.append(f"{indent}    {item['name']}{count}  (@{item['offset']})")
        if self.calls:
            out.append(f"{indent}  calls while loading:")
            for item in self.calls:
                count = f" x{item['count']}" if item["count"] > 1 else ""
                out.append(f"{indent}    {item['callable']}{count}")
        for func in self.functions:
            python = f"CPython {func.python}" if func.python else "unknown Python"
            how = func.analysis
            if func.bytecode:
                how += f" of {' and '.join(func.bytecode)}"
            out.append(f"{indent}  shipped function {func.name} ({func.maker}, {python}, "
                       f"code {_human(func.code_size)}, analysed by {how})")
            if func.uses:
                out.append(f"{indent}    uses: {', '.join(func.uses)}")
            if func.imports:
                out.append(f"{indent}    imports: {', '.join(func.imports)}")
            for name, info in func.globals.items():
                out.append(f"{indent}    global {name} = {info['value']} "
                           f"({_human(info['size'])})")
            for i, info in enumerate(func.closure):
                out.append(f"{indent}    closure[{i}] = {info['value']} "
                           f"({_human(info['size'])})")
            for name, size in func.extras.items():
                out.append(f"{indent}    {name} ({_human(size)})")
        for cls in self.classes:
            out.append(f"{indent}  shipped class {cls['name']} ({cls['maker']}, "
                       f"{len(cls['attributes'])} attributes)")
            big = sorted(cls["attributes"].items(), key=lambda kv: -kv[1])[:5]
            for name, size in big:
                if size >= 1024:
                    out.append(f"{indent}    {name} ({_human(size)})")
        if self.largest:
            out.append(f"{indent}  largest parts:")
            for item in self.largest:
                out.append(f"{indent}    {_human(item['size']):>9}  {item['what']} "
                           f"(@{item['offset']})")
        for note in self.notes:
            out.append(f"{indent}  note: {note}")
        for label, report in self.nested:
            out.append(f"{indent}  {label}:")
            out.extend(report._lines(indent + "    "))
        return out


def _human(size: int) -> str:
    return _scan._human(size)


# -- sizes ----------------------------------------------------------------------------------


def _size(value) -> int:
    if type(value) in (str, bytes):
        return len(value)
    if type(value) is Blob:
        return value.size
    if isinstance(value, Node):
        start = getattr(value, "start", None)
        end = getattr(value, "end", None)
        if start is not None and end is not None:
            return max(end - start, 1)
        return 0
    return 8


def _value_text(value) -> str:
    if type(value) is Ref:
        return value.describe()
    if type(value) is CellV:
        return f"cell({_value_text(value.value)})"
    return _scan._describe(value)


# -- building the report --------------------------------------------------------------------


def _resolver(fglobals):
    """``resolve_global(name)`` for shipped code: the dotted name a global holds."""
    entries = fglobals.entries if type(fglobals) is Map else {}

    def resolve(name: str) -> str | None:
        value = entries.get(name)
        if type(value) is Ref and not value.namespace:
            return value.dotted
        if type(value) is Obj and type(value.of) is Ref:
            return None  # an instance: its attributes are its own
        return None

    return resolve


def _tag_text(tag: int | None) -> str | None:
    if tag is None:
        return None
    return f"{tag // 256}.{tag % 256}"


def _analyse(code: CodeV, resolve, where: str, offset: int, report: Report) -> None:
    info = code.parse()
    if info is None:
        report.findings.append(Finding(
            _rules.DANGER, f"shipped code cannot be read ({code.error}): it is not vouched for",
            offset, where))
        return
    try:
        facts = _code.analyse(info, resolve, code.tag)
    except (ValueError, TypeError, IndexError, KeyError, RecursionError) as exc:
        # Hostile code objects may defeat the analysis: that fails closed.
        report.findings.append(Finding(
            _rules.DANGER, f"shipped code cannot be analysed ({type(exc).__name__}: {exc})",
            offset, where))
        return
    code.facts = facts
    for severity, message in facts.findings:
        report.findings.append(Finding(severity, message, offset, where))


def _function_report(func: FuncV, report: Report) -> FunctionReport:
    code = func.code
    where = func.describe().removeprefix("function ")
    entry = FunctionReport(where, func.maker, func.offset, None, "none", 0)
    if type(code) is CodeV:
        entry.python = _tag_text(code.tag)
        entry.code_size = code.size
        if code.facts is None:
            _analyse(code, _resolver(func.globals), where, func.offset, report)
        if code.source == "source":
            entry.python = "any (ships source)"
        if code.facts is not None:
            entry.analysis = code.facts.mode
            entry.bytecode = list(code.facts.versions)
            entry.uses = list(code.facts.uses)
            entry.imports = list(code.facts.imports)
            entry.attributes = list(code.facts.attrs)
    fglobals = func.globals
    if type(fglobals) is Map:
        for name, value in fglobals.entries.items():
            if name in ("__name__", "__builtins__", "__package__", "__file__"):
                continue
            entry.globals[str(name)] = {"value": _value_text(value), "size": _size(value)}
    closure = func.closure
    if type(closure) is Seq:
        for cell in closure.items:
            value = cell.value if type(cell) is CellV else cell
            entry.closure.append({"value": _value_text(value), "size": _size(value)})
    for name, value in func.attrs.items():
        if name in ("__qualname__", "__module__", "__name__", "__doc__") or value is None \
                or type(value) in (Map, Seq) and value.count == 0:
            continue
        entry.extras[str(name)] = _size(value)
    return entry


def _build_report(scanner: Scanner, size: int, offset: int) -> Report:
    report = Report(size=size, protocol=scanner.proto, offset=offset)
    report.findings.extend(scanner.findings)
    report.imports = [{"name": name, "count": r[0], "offset": r[1], "opcode": r[2]}
                      for name, r in scanner.imports.items()]
    report.calls = [{"callable": name, "count": r[0], "offset": r[1]}
                    for name, r in scanner.calls.items()]
    done = set()
    for func in scanner.functions:
        done.add(id(func.code))
        if func.known is not None:
            continue  # marinade's own reconstructor, byte-identical: nothing to report
        report.functions.append(_function_report(func, report))
    for code in scanner.codes:
        if id(code) not in done:
            # Code no function was built from: a code object in data, a
            # finished generator, marshal.loads called on its own.
            info = code.parse()
            where = f"code {info.qualname}" if info is not None else "code"
            _analyse(code, lambda name: None, where, (code.start or 0) + scanner.base, report)
    for cls in scanner.classes:
        attrs = {str(k): _size(v) for k, v in cls.attrs.items()
                 if k not in ("__module__", "__qualname__", "__doc__")}
        module = cls.attrs.get("__module__")
        report.classes.append({"name": (module + "." if type(module) is str else "")
                               + cls.qualname(), "maker": cls.maker, "offset": cls.offset,
                               "attributes": attrs})
    report.largest = [{"size": s, "offset": scanner.base + o, "what": w}
                      for s, o, w in sorted(scanner.largest, reverse=True)]
    for pos, nested in scanner.nested:
        report.nested.append((f"nested pickle loaded at byte {pos} (offsets within it)",
                              nested))
    if scanner.buffers:
        report.notes.append(f"{scanner.buffers} out-of-band buffers: load with buffers=")
    if scanner.persistent_ids:
        report.notes.append(f"{scanner.persistent_ids} persistent ids")
    if type(scanner.result) is not type(ELIDED) and scanner.result is not None:
        report.notes.append(f"loads {_value_text(scanner.result)}")
    return report


def _scan_one(source: _scan.Source, limits: Limits, depth: int, base: int) -> Report:
    start = source.tell()
    scanner = Scanner(source, limits, base=base, depth=depth)
    complete = True
    try:
        scanner.run()
    except _scan.LimitReached as exc:
        complete = False
        scanner.findings.append(Finding(
            _rules.DANGER, f"inspection stopped: {exc} (the rest is not vouched for)",
            exc.offset))
    except RecursionError:
        complete = False
        scanner.findings.append(Finding(_rules.DANGER, "inspection stopped: nesting too deep",
                                        base + source.tell()))
    report = _build_report(scanner, source.tell() - start, base + start)
    report.complete = complete
    return report


def _error(exc: _scan.FormatError) -> UnpicklingError:
    return UnpicklingError(f"not a readable pickle: {exc} (at byte {exc.offset})",
                           offset=exc.offset)


def _diverging(source: _scan.Source, start: int, base: int, limits: Limits,
               depth: int, failure: _scan.FormatError | None) -> list:
    """Findings (and the file reading's report) for a stream whose opcodes
    cross frame ends: ``pickle.loads`` and ``pickle.load`` read it differently."""
    where = source.crossings[0]
    how = f"; read as pickle.loads does, it fails: {failure}" if failure else ""
    findings = [Finding(_rules.DANGER, "an opcode crosses the end of a FRAME: pickle.loads "
                        "(bytes) and pickle.load (file) read this stream differently, a "
                        f"scanner-evasion technique{how}", base + where)]
    alternative = None
    file = source.file
    try:
        if file is None:
            alt = _scan.Source(source.buf, emulate_file=True)
            alt._skip(start)
            alternative = _scan_one(alt, limits, depth, base)
        elif source.origin is not None:
            here = file.tell()
            file.seek(source.origin + start)
            try:
                alternative = _scan_one(_scan.Source(file=file, emulate_file=True), limits,
                                        depth, base + start)
            finally:
                file.seek(here)
    except _scan.FormatError as exc:
        findings.append(Finding(_rules.WARNING, "read as pickle.load does, the stream is not "
                                f"a pickle either ({exc})", exc.offset))
    return findings + ([alternative] if alternative is not None else [])


def _inspect_source(source: _scan.Source, limits: Limits, depth: int, base: int) -> Report:
    start = source.tell()
    try:
        first = _scan_one(source, limits, depth, base)
        failure = None
    except _scan.FormatError as exc:
        if not source.crossings:
            raise _error(exc) from None
        failure = exc
        first = Report(size=source.tell() - start, protocol=0, offset=base + start,
                       complete=False)
    if source.crossings:
        extra = _diverging(source, start, base, limits, depth, failure)
        first.findings[:0] = [f for f in extra if isinstance(f, Finding)]
        for report in extra:
            if isinstance(report, Report):
                first.nested.append(("as pickle.load reads it from a file", report))
        if failure is not None:
            return first
    if not first.complete:
        return first
    count = 1
    while not source.at_end():
        start = source.tell()
        try:
            following = _scan_one(source, limits, depth, base)
        except _scan.FormatError as exc:
            first.notes.append(f"{_human(_remaining(source, start))} after the pickle's STOP "
                               f"are not a pickle ({exc} at byte {exc.offset}); pickle.loads "
                               "ignores them")
            break
        count += 1
        first.nested.append((f"pickle #{count} (follows at byte {base + start})", following))
        if not following.complete or count >= 1000:
            break
    return first


def _remaining(source: _scan.Source, start: int) -> int:
    if source.size is not None:
        return source.size - (start - 0)
    return 0


def inspect_bytes(data, *, limits: Limits | None = None, depth: int = 0,
                  base: int = 0) -> Report:
    """Inspect one in-memory pickle stream (no signature handling)."""
    return _inspect_source(_scan.Source(data), limits or Limits(), depth, base)


def inspect(data, *, key=None, limits: Limits | None = None) -> Report:
    """Report what loading ``data`` would import, call and ship, without loading it.

    ``data`` is bytes (or any buffer), a binary file object, or a path. A
    signed payload (``dumps(..., key=...)``) is unwrapped; with ``key=`` its
    signature is verified first (``SignatureError`` if it fails). Nothing in
    the payload is executed, imported or built; files are read as a stream
    with bounded memory.

    Raises ``marinade.UnpicklingError`` (with ``.offset``) when ``data`` is not
    a readable pickle.
    """
    limits = limits or Limits()
    if isinstance(data, (str, os.PathLike)):  # a path (bytes are the payload itself)
        with open(data, "rb") as file:
            return inspect(file, key=key, limits=limits)
    if hasattr(data, "read"):
        return _inspect_file(data, key, limits)
    if not isinstance(data, bytes):
        data = bytes(data)
    from . import signing

    if signing.is_signed(data):
        envelope = signing.parse(data)
        if key is not None:
            signing.verify(data, key)
        report = inspect_bytes(memoryview(data)[envelope.header_size:].tobytes(),
                               limits=limits, base=envelope.header_size)
        report.signed = {"key_id": envelope.key_id, "verified": True if key else None}
        return report
    if key is not None:
        signing.parse(data)  # raises: a key was demanded, the payload is not signed
    return inspect_bytes(data, limits=limits)


def _inspect_file(file, key, limits: Limits) -> Report:
    from . import signing

    head = _peek(file, len(signing.MAGIC))
    if head == signing.MAGIC:
        envelope, header, payload = signing.read_envelope(file)
        if key is not None:
            signing._check(envelope, memoryview(header)[: envelope.header_size
                                                        - signing.MAC_SIZE], payload, key)
        report = inspect_bytes(payload, limits=limits, base=envelope.header_size)
        report.signed = {"key_id": envelope.key_id, "verified": True if key else None}
        return report
    if key is not None:
        raise signing.SignatureError(
            "payload is not signed: it does not start with a marinade signature envelope",
            offset=0)
    return _inspect_source(_scan.Source(file=file), limits, 0, 0)


def _peek(file, n: int) -> bytes:
    """The first ``n`` bytes of ``file`` without consuming them (seek or peek)."""
    try:
        here = file.tell()
        head = file.read(n)
        file.seek(here)
        return head
    except (AttributeError, OSError, io.UnsupportedOperation):
        peek = getattr(file, "peek", None)
        if peek is not None:
            return peek(n)[:n]
        return b""

