"""Code objects: which globals they use, and how they travel.

A code object is shipped as canonical marshal bytes (see ``_marshal_canon``)
and rebuilt by ``_rebuild.load_code``, which checks the Python version first.
Both the bytes and the global-name scan are cached per code object, so a
function pickled many times (or many closures sharing one code object) pays
for them once.
"""

from __future__ import annotations

import marshal
import re
import types
from weakref import WeakKeyDictionary

from .. import _compat
from .._rebuild import load_code
from ._marshal_canon import canonical_marshal

_CodeType = types.CodeType

_GLOBAL_OPS = _compat.GLOBAL_NAME_OPS
_LOAD_GLOBAL = _compat.LOAD_GLOBAL
_EXTENDED_ARG = _compat.EXTENDED_ARG

# Two cache levels per code object. The first is a plain dict keyed by
# ``id(code)`` whose entries hold the code object itself: a lookup costs a
# fraction of a WeakKeyDictionary's, and while the entry keeps the code alive
# no other object can take its id. It is bounded (cleared when full), so it
# pins at most _FAST_MAX code objects; the weak second level keeps results
# for every live code object beyond that.
_FAST_MAX = 4096
_bytes_fast: dict[int, tuple[types.CodeType, bytes]] = {}
_names_fast: dict[int, tuple[types.CodeType, frozenset[str]]] = {}
_payload_cache: WeakKeyDictionary[types.CodeType, tuple[int, bytes]] = WeakKeyDictionary()
_names_cache: WeakKeyDictionary[types.CodeType, frozenset[str]] = WeakKeyDictionary()


def code_bytes(code: types.CodeType) -> bytes:
    """Canonical marshal bytes of ``code`` (cached)."""
    entry = _bytes_fast.get(id(code))
    if entry is not None and entry[0] is code:
        return entry[1]
    # Code objects compare equal when only co_filename differs: the weak
    # level is keyed by equality, so its entry must also be this very object.
    cached = _payload_cache.get(code)
    if cached is not None and cached[0] == id(code):
        data = cached[1]
    else:
        shipped = code
        if _NOTEBOOK_FILENAME.match(code.co_filename):
            shipped = _with_stable_filename(code)
        data = _deterministic_marshal(shipped)
        if cached is None:
            _payload_cache[code] = (id(code), data)
    if len(_bytes_fast) >= _FAST_MAX:
        _bytes_fast.clear()
    _bytes_fast[id(code)] = (code, data)
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


def global_names(code: types.CodeType) -> frozenset[str]:
    """Names that ``code`` (or code nested in it) reads or writes as globals."""
    entry = _names_fast.get(id(code))
    if entry is not None and entry[0] is code:
        return entry[1]
    names = _names_cache.get(code)
    if names is None:
        found: set[str] = set()
        _scan(code, found)
        names = _names_cache[code] = frozenset(found)
    if len(_names_fast) >= _FAST_MAX:
        _names_fast.clear()
    _names_fast[id(code)] = (code, names)
    return names


_info_fast: dict[int, tuple[types.CodeType, bytes, frozenset[str]]] = {}


def code_info(code: types.CodeType) -> tuple[types.CodeType, bytes, frozenset[str]]:
    """``(code, code_bytes(code), global_names(code))`` in one lookup.

    ``reduce_function`` needs both for every function it pickles; one cached
    entry instead of two lookups is a measurable part of a closure's cost.
    """
    entry = _info_fast.get(id(code))
    if entry is not None and entry[0] is code:
        return entry
    entry = (code, code_bytes(code), global_names(code))
    if len(_info_fast) >= _FAST_MAX:
        _info_fast.clear()
    _info_fast[id(code)] = entry
    return entry


def reduce_code(code: types.CodeType):
    return load_code, (code_bytes(code), _compat.CODE_TAG)
