"""Code objects: which globals they use, and how they travel.

A code object is shipped as canonical marshal bytes (see ``_marshal_canon``)
and rebuilt by ``_rebuild.load_code``, which checks the Python version first.
Both the bytes and the global-name scan are cached per code object, so a
function pickled many times (or many closures sharing one code object) pays
for them once.
"""

from __future__ import annotations

import itertools
import marshal
import operator
import re
import types
from weakref import KeyedRef

from .. import _compat
from .._rebuild import load_code
from ._expr import Call
from ._marshal_canon import canonical_marshal

_CodeType = types.CodeType
_co_names = operator.attrgetter("co_names")
_co_consts = operator.attrgetter("co_consts")
_chain_consts = itertools.chain.from_iterable

_GLOBAL_OPS = _compat.GLOBAL_NAME_OPS
_LOAD_GLOBAL = _compat.LOAD_GLOBAL
_EXTENDED_ARG = _compat.EXTENDED_ARG

# Results per live code object, in dicts keyed by ``id(code)``: looking a
# code object up by itself would hash its whole content (every fresh lambda or
# class would pay that). Each entry holds a weak reference whose callback
# drops the entry when the code object dies, so nothing is pinned, no entry
# outlives its code, and no other object can meet a stale entry under a
# reused id (the callback runs while the old object is being freed).
def _forgetter(cache: dict):
    pop = cache.pop

    def forget(ref: KeyedRef) -> None:
        pop(ref.key, None)

    return forget


_bytes_cache: dict[int, tuple[KeyedRef, bytes]] = {}
_names_cache: dict[int, tuple[KeyedRef, frozenset[str]]] = {}
_forget_bytes = _forgetter(_bytes_cache)
_forget_names = _forgetter(_names_cache)


def code_bytes(code: types.CodeType) -> bytes:
    """Canonical marshal bytes of ``code`` (cached)."""
    key = id(code)
    entry = _bytes_cache.get(key)
    if entry is not None and entry[0]() is code:
        return entry[1]
    shipped = code
    if _NOTEBOOK_FILENAME.match(code.co_filename):
        shipped = _with_stable_filename(code)
    data = _deterministic_marshal(shipped)
    _bytes_cache[key] = (KeyedRef(code, _forget_bytes, key), data)
    return data


def _deterministic_marshal(code: types.CodeType) -> bytes:
    """marshal bytes of ``code`` that do not depend on the process.

    ``marshal.dumps`` flags an object for back-references when its reference
    count is above one, which depends on whatever else the process holds.
    Dumping a fresh copy from ``marshal.loads`` fixes that: in the copy,
    interned strings and small ints are shared with the original (always
    flagged) and everything else is referenced only from inside the copy.
    What remains is frozenset constants, written in hash order: those (rare:
    ``x in {"a", "b"}``) go through the full canonical rewrite.
    """
    raw = marshal.dumps(code)
    if _holds_frozenset(code.co_consts):
        return canonical_marshal(raw)
    return marshal.dumps(marshal.loads(raw))


def _holds_frozenset(consts: tuple) -> bool:
    """A frozenset among ``consts``, inside tuples or nested code objects."""
    for const in consts:
        kind = type(const)
        if kind is frozenset:
            return True
        if kind is tuple and _holds_frozenset(const):
            return True
        if kind is _CodeType and _holds_frozenset(const.co_consts):
            return True
    return False


# Notebook cells get file names that change from run to run: ipykernel uses
# /tmp/ipykernel_<pid>/<hash>.py, IPython's terminal <ipython-input-<n>-<hash>>
# with the execution count n. Caches hash payloads, so the shipped code keeps
# only the stable part (the hash of the cell source).
_NOTEBOOK_FILENAME = re.compile(r".*/ipykernel_\d+/(\w+\.py)$|<ipython-input-\d+-(\w+)>$")


def _stable_filename(filename: str) -> str:
    match = _NOTEBOOK_FILENAME.match(filename)
    if match is None:
        return filename
    if match.group(1) is not None:
        return f"<ipykernel>/{match.group(1)}"
    return f"<ipython-input-{match.group(2)}>"


def _with_stable_filename(code: types.CodeType) -> types.CodeType:
    consts = tuple(_with_stable_filename(c) if type(c) is _CodeType else c
                   for c in code.co_consts)
    return code.replace(co_filename=_stable_filename(code.co_filename), co_consts=consts)


# Global-name opcodes as a regex character class: the scan below lets the re
# engine find them among the opcode bytes instead of looping in Python.
_GLOBAL_OPS_RE = re.compile(
    b"[" + b"".join(re.escape(bytes((op,))) for op in sorted(_GLOBAL_OPS)) + b"]")


def _scan(code: types.CodeType, names: set[str]) -> None:
    co_names = code.co_names
    if co_names:  # global opcodes index co_names: none without names
        raw = code.co_code  # de-specialized bytes: stable whatever the process ran
        ops = raw[::2]  # one byte per code unit (inline caches are 0: never a match)
        for match in _GLOBAL_OPS_RE.finditer(ops):
            i = match.start()
            op = ops[i]
            arg = raw[2 * i + 1]
            shift = 8
            i -= 1
            while i >= 0 and ops[i] == _EXTENDED_ARG:  # high bytes of a large argument
                arg |= raw[2 * i + 1] << shift
                shift += 8
                i -= 1
            names.add(co_names[arg >> 1 if op == _LOAD_GLOBAL else arg])
    for const in code.co_consts:
        if type(const) is _CodeType:
            _scan(const, names)


def code_names(codes) -> set[str]:
    """Every name in ``co_names`` of ``codes`` and the code nested in them
    (globals and attribute names alike)."""
    # One C pass over all names and one over all constants (the methods of a
    # class: a per-code Python loop cost twice as much); nested code is rare.
    found: set[str] = set().union(*map(_co_names, codes))
    if _CodeType not in set(map(type, _chain_consts(map(_co_consts, codes)))):
        return found
    stack = [c for c in _chain_consts(map(_co_consts, codes)) if type(c) is _CodeType]
    while stack:
        code = stack.pop()
        found.update(code.co_names)
        stack.extend(c for c in code.co_consts if type(c) is _CodeType)
    return found


def global_names(code: types.CodeType) -> frozenset[str]:
    """Names that ``code`` (or code nested in it) reads or writes as globals."""
    key = id(code)
    entry = _names_cache.get(key)
    if entry is not None and entry[0]() is code:
        return entry[1]
    names = scan_global_names(code)
    _names_cache[key] = (KeyedRef(code, _forget_names, key), names)
    return names


def scan_global_names(code: types.CodeType) -> frozenset[str]:
    """``global_names(code)`` without its cache, for callers that keep the
    result themselves (a class's code table: one entry per class instead of
    a weak reference per method)."""
    found: set[str] = set()
    _scan(code, found)
    return frozenset(found)


def _may_use_globals(code: types.CodeType, fglobals: dict) -> bool:
    for name in code.co_names:
        if name in fglobals:
            return True
    for const in code.co_consts:
        if type(const) is _CodeType and _may_use_globals(const, fglobals):
            return True
    return False


def globals_used(code: types.CodeType, fglobals: dict) -> frozenset[str]:
    """``global_names(code)``, or nothing when no name of the code is in ``fglobals``.

    Only names found in a function's globals are shipped, so fresh code (the
    methods of a new class: attribute names, builtins) usually skips the
    opcode scan. A superset of what gets shipped: callers still check
    ``name in fglobals``.
    """
    entry = _names_cache.get(id(code))
    if entry is not None and entry[0]() is code:
        return entry[1]
    if not _may_use_globals(code, fglobals):
        return frozenset()
    return global_names(code)


# The hottest lookup (every function pickled) holds its code object
# strongly, so a hit is one dict lookup and one identity test, no weak
# reference call; bounded (cleared when full) so it pins at most _INFO_MAX
# code objects. The weak caches above still answer for the others.
_INFO_MAX = 4096
_info_cache: dict[int, tuple[types.CodeType, bytes, frozenset[str], Call]] = {}


def code_info(code: types.CodeType) -> tuple[bytes, frozenset[str], Call]:
    """``(code_bytes(code), global_names(code), <load_code expression>)`` in one lookup.

    ``reduce_function`` needs them for every function it pickles; one cached
    entry instead of several lookups is a measurable part of a closure's
    cost. The expression is shared by every dump (each memoizes it once).
    """
    key = id(code)
    entry = _info_cache.get(key)
    if entry is not None and entry[0] is code:
        return entry[1], entry[2], entry[3]
    data = code_bytes(code)
    names = global_names(code)
    load = Call(load_code, (data, _compat.CODE_TAG))
    if len(_info_cache) >= _INFO_MAX:
        _info_cache.clear()
    _info_cache[key] = (code, data, names, load)
    return data, names, load


def code_table(codes: tuple) -> bytes:
    """Canonical marshal bytes of a tuple of code objects (the methods of a class).

    One marshal pass for all of them instead of one per code object, and the
    strings they share (file name, argument names) are written once.
    """
    filenames = {code.co_filename for code in codes}
    if any(_NOTEBOOK_FILENAME.match(name) for name in filenames):
        codes = tuple(_with_stable_filename(code) for code in codes)
    raw = marshal.dumps(codes)
    kinds = set(map(type, _chain_consts(map(_co_consts, codes))))
    if not kinds.isdisjoint(_MAY_HOLD_FROZENSET):  # (a C pass first: usually none)
        for code in codes:
            if _holds_frozenset(code.co_consts):
                return canonical_marshal(raw)
    return marshal.dumps(marshal.loads(raw))


_MAY_HOLD_FROZENSET = frozenset({frozenset, tuple, _CodeType})


def reduce_code(code: types.CodeType):
    return load_code, (code_bytes(code), _compat.CODE_TAG)
