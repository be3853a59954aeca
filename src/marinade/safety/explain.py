"""``marinade.explain(obj)``: what pickling ``obj`` would capture, with sizes.

A function pickled by value carries its code, the globals its code uses,
its closure cells, defaults and attributes; each of those may be a module
(imported by name on load), a function or class (by reference if the loading
side can import it, by value otherwise) or plain data. The explanation walks
that graph the way the pickler does and measures each part by pickling it
alone (into a byte counter: nothing is kept; protocol 5 buffers such as
NumPy arrays are counted without being copied), so the classic surprise
(a closure that captured a 2 GB DataFrame) is the first line of the summary.

Sizes of parts do not add up to the whole: a part shared by several others
is counted in each, and the whole pays for it once.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field

from .. import _diagnose, _lookup
from .._compat import HEAPTYPE
from ..reduce.code import code_bytes, global_names
from . import _scan


@dataclass
class Part:
    """One node of the tree: something ``obj`` would carry."""

    path: str  # e.g. "obj.__globals__['df']", as in PicklingError messages
    label: str  # e.g. "global df"
    type: str  # e.g. "pandas.core.frame.DataFrame"
    decision: str  # "by value", "by reference", "data", or "cannot pickle"
    size: int | None  # bytes when pickled alone; None when not measured
    detail: str = ""
    children: list[Part] = field(default_factory=list)
    more: int = 0  # children left out (max_children)

    def as_dict(self) -> dict:
        return {"path": self.path, "label": self.label, "type": self.type,
                "decision": self.decision, "size": self.size, "detail": self.detail,
                "children": [c.as_dict() for c in self.children], "more": self.more}

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass
class Explanation:
    root: Part

    def largest(self, n: int = 5) -> list[Part]:
        """The ``n`` biggest parts below the root (leaves and inner nodes)."""
        parts = [p for p in self.root.walk() if p is not self.root and p.size is not None]
        return sorted(parts, key=lambda p: -p.size)[:n]

    def as_dict(self) -> dict:
        return {"root": self.root.as_dict(),
                "largest": [{"path": p.path, "size": p.size} for p in self.largest()]}

    def __str__(self) -> str:
        lines = [_line(self.root)]
        _tree(self.root, "", lines)
        big = self.largest()
        if big:
            lines.append("largest parts:")
            for part in big:
                lines.append(f"  {_human(part.size):>9}  {part.path}")
        return "\n".join(lines)


def _human(size: int | None) -> str:
    return "?" if size is None else _scan._human(size)


def _line(part: Part) -> str:
    detail = f"  ({part.detail})" if part.detail else ""
    return f"{part.label}: {part.type}  {part.decision}  {_human(part.size)}{detail}"


def _tree(part: Part, prefix: str, lines: list[str]) -> None:
    children = part.children
    for i, child in enumerate(children):
        last = i == len(children) - 1 and not part.more
        lines.append(f"{prefix}{'└── ' if last else '├── '}{_line(child)}")
        _tree(child, prefix + ("    " if last else "│   "), lines)
    if part.more:
        lines.append(f"{prefix}└── ... {part.more} more")


# -- measuring ------------------------------------------------------------------------------


class _Counter:
    """A file that only counts what is written to it."""

    __slots__ = ("size",)

    def __init__(self):
        self.size = 0

    def write(self, data) -> int:
        n = memoryview(data).nbytes
        self.size += n
        return n


class _Measure:
    def __init__(self, protocol: int | None):
        self.protocol = 5 if protocol is None else protocol
        self.cache: dict[int, tuple[object, int | None, str]] = {}

    def __call__(self, obj) -> tuple[int | None, str]:
        """(size in bytes, error text) of pickling ``obj`` alone."""
        entry = self.cache.get(id(obj))
        if entry is not None and entry[0] is obj:
            return entry[1], entry[2]
        from .._pickler import Pickler

        counter = _Counter()
        out_of_band = 0

        def count_buffer(buffer):
            nonlocal out_of_band
            out_of_band += memoryview(buffer).nbytes  # not copied: counted in place

        try:
            if self.protocol >= 5:
                Pickler(counter, self.protocol, buffer_callback=count_buffer).dump(obj)
            else:
                Pickler(counter, self.protocol).dump(obj)
            result = (counter.size + out_of_band, "")
        except Exception as exc:  # noqa: BLE001 - an unpicklable part is reported, not raised
            result = (None, f"{type(exc).__name__}: {exc}")
        self.cache[id(obj)] = (obj, *result)
        return result


# -- the walk -------------------------------------------------------------------------------


def _type_name(obj) -> str:
    if isinstance(obj, (types.FunctionType, type)):
        kind = "class" if isinstance(obj, type) else "function"
        return f"{kind} {obj.__module__}.{obj.__qualname__}"
    if isinstance(obj, types.ModuleType):
        return f"module {obj.__name__}"
    kind = type(obj)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def _decision(obj) -> tuple[str, str]:
    """(decision, detail) the pickler makes for ``obj``."""
    if isinstance(obj, types.ModuleType):
        if _lookup.is_dynamic_module(obj):
            return "by value", f"module {obj.__name__} cannot be imported where it loads"
        return "by reference", f"import {obj.__name__}"
    if isinstance(obj, (types.FunctionType, type)):
        ref = _lookup.lookup_by_reference(obj)
        if ref is None and isinstance(obj, type) and obj in _unnamed_types():
            return "by reference", f"type of a sample: type({_sample_text(obj)})"
        if ref is not None or (isinstance(obj, type) and not obj.__flags__ & HEAPTYPE):
            where = ref or (obj.__module__, obj.__qualname__)
            return "by reference", f"{where[0]}.{where[1]}"
        return "by value", ""
    return "data", ""


def _unnamed_types() -> dict:
    from .._pickler import _UNNAMED_TYPES  # (a cycle at import time)

    return _UNNAMED_TYPES


def _sample_text(kind: type) -> str:
    """``dict.keys({})`` for the sample expression of an unnamed builtin type."""
    from ..reduce._expr import Call

    def text(value) -> str:
        if type(value) is Call:
            func = value.func
            name = getattr(func, "__qualname__", None) or repr(func)
            return f"{name}({', '.join(map(text, value.args))})"
        return repr(value)

    return text(_unnamed_types()[kind][1][0])


class _Walker:
    def __init__(self, depth: int, max_children: int, protocol: int | None):
        self.depth = depth
        self.max_children = max_children
        self.measure = _Measure(protocol)
        self.pickler = None
        self.protocol = self.measure.protocol

    def part(self, obj, path: str, label: str, depth: int, on_path: frozenset) -> Part:
        if type(obj) is _CodeBytes:
            return Part(path, label, "code", "by value", len(obj), "canonical marshal bytes")
        decision, detail = _decision(obj)
        size, error = self.measure(obj)
        if error:
            decision, detail = "cannot pickle", error
        part = Part(path, label, _type_name(obj), decision, size, detail)
        if decision == "by reference" or depth >= self.depth or id(obj) in on_path:
            return part
        on_path = on_path | {id(obj)}
        children = self.children(obj, path)
        if type(obj) in _CONTAINERS:
            # Items of data: the big ones matter, the many small ones are noise.
            measured = children[:_MEASURED]
            parts = [self.part(child, p, lbl, depth + 1, on_path) for p, lbl, child in measured]
            floor = max(64, (size or 0) // 100)
            parts = sorted((p for p in parts if p.size is None or p.size >= floor),
                           key=lambda p: -(p.size or 0))
            part.children = parts[: self.max_children]
            part.more = len(children) - len(part.children)
            return part
        keep = children[: self.max_children]
        part.more = len(children) - len(keep)
        for child_path, child_label, child in keep:
            part.children.append(self.part(child, child_path, child_label, depth + 1, on_path))
        return part

    def children(self, obj, path: str) -> list[tuple[str, str, object]]:
        if isinstance(obj, types.FunctionType):
            return self._function(obj, path)
        if isinstance(obj, type):
            return self._class(obj, path)
        if type(obj) not in _CONTAINERS and type(obj) not in _WRAPPERS \
                and _decision(type(obj))[0] != "by value":
            # An instance of an importable class (an array, a DataFrame): its
            # size is what matters, its pickling internals are not.
            return []
        if self.pickler is None:
            from .._pickler import Pickler

            self.pickler = Pickler(_Counter(), self.protocol)
        try:
            found = _diagnose._children(obj, self.pickler, self.protocol)
        except Exception:  # noqa: BLE001 - an object whose parts cannot be listed
            return []
        return [(path + suffix, suffix.lstrip("."), child) for suffix, child in found]

    def _function(self, func: types.FunctionType, path: str) -> list:
        found: list[tuple[str, str, object]] = []
        code = func.__code__
        found.append((f"{path}.__code__", "code", _CodeBytes(code_bytes(code))))
        fglobals = func.__globals__
        for name in sorted(global_names(code)):
            if name in fglobals:
                found.append((f"{path}.__globals__[{name!r}]", f"global {name}",
                              fglobals[name]))
        for name, cell in zip(code.co_freevars, func.__closure__ or ()):
            try:
                value = cell.cell_contents
            except ValueError:
                continue  # an empty cell carries nothing
            index = code.co_freevars.index(name)
            found.append((f"{path}.__closure__[{index}].cell_contents", f"closure {name}",
                          value))
        for i, value in enumerate(func.__defaults__ or ()):
            found.append((f"{path}.__defaults__[{i}]", f"default {i}", value))
        for key, value in (func.__kwdefaults__ or {}).items():
            found.append((f"{path}.__kwdefaults__[{key!r}]", f"default {key}", value))
        for key, value in func.__dict__.items():
            found.append((f"{path}.{key}", f"attribute {key}", value))
        return found

    def _class(self, cls: type, path: str) -> list:
        found = []
        for key, value in cls.__dict__.items():
            if key in ("__dict__", "__weakref__", "__module__", "__qualname__", "__doc__"):
                continue
            found.append((f"{path}.{key}", f"attribute {key}", value))
        for i, base in enumerate(cls.__bases__):
            if base is not object:
                found.append((f"{path}.__bases__[{i}]", f"base {base.__qualname__}", base))
        return found


_CONTAINERS = frozenset({dict, list, tuple, set, frozenset})
_WRAPPERS = frozenset({types.MethodType, types.CellType, staticmethod, classmethod, property,
                       __import__("functools").partial})
_MEASURED = 1000  # items of one container measured at most


class _CodeBytes(bytes):
    """The canonical marshal bytes a function's code travels as."""

    __slots__ = ()


def explain(obj, *, depth: int = 4, max_children: int = 50,
            protocol: int | None = None, name: str = "obj") -> Explanation:
    """What pickling ``obj`` would carry, as a tree with sizes.

    Each part says how it travels: ``by value`` (its code and contents are
    in the payload), ``by reference`` (imported by name where it loads),
    ``data``, or ``cannot pickle`` with the reason. ``depth`` bounds how far
    the tree goes into parts; ``max_children`` how many parts of one object
    are listed. ``str(explanation)`` is the readable tree; ``largest()``
    the biggest parts.
    """
    walker = _Walker(depth, max_children, protocol)
    root = walker.part(obj, name, name, 0, frozenset())
    return Explanation(root)
