"""Code objects: which globals they use, and how they travel.

A code object is shipped as canonical marshal bytes (see ``_marshal_canon``)
and rebuilt by ``_rebuild.load_code``, which checks the Python version first.
Both the bytes and the global-name scan are cached per code object, so a
function pickled many times (or many closures sharing one code object) pays
for them once.
"""

from __future__ import annotations

import marshal
import types
from weakref import WeakKeyDictionary

from .. import _compat
from .._rebuild import load_code
from ._marshal_canon import canonical_marshal

_CodeType = types.CodeType

_payload_cache: WeakKeyDictionary[types.CodeType, bytes] = WeakKeyDictionary()
_names_cache: WeakKeyDictionary[types.CodeType, frozenset[str]] = WeakKeyDictionary()

_GLOBAL_OPS = _compat.GLOBAL_NAME_OPS
_LOAD_GLOBAL = _compat.LOAD_GLOBAL
_EXTENDED_ARG = _compat.EXTENDED_ARG


def code_bytes(code: types.CodeType) -> bytes:
    """Canonical marshal bytes of ``code`` (cached)."""
    try:
        return _payload_cache[code]
    except KeyError:
        pass
    data = canonical_marshal(marshal.dumps(code))
    _payload_cache[code] = data
    return data


def _scan(code: types.CodeType, names: set[str]) -> None:
    co_names = code.co_names
    raw = code.co_code  # de-specialized bytes: stable whatever the process ran
    ext = 0
    for i in range(0, len(raw), 2):
        op = raw[i]
        arg = raw[i + 1] | ext
        if op == _EXTENDED_ARG:
            ext = arg << 8
            continue
        ext = 0
        if op in _GLOBAL_OPS:
            names.add(co_names[arg >> 1 if op == _LOAD_GLOBAL else arg])
    for const in code.co_consts:
        if type(const) is _CodeType:
            _scan(const, names)


def global_names(code: types.CodeType) -> frozenset[str]:
    """Names that ``code`` (or code nested in it) reads or writes as globals."""
    try:
        return _names_cache[code]
    except KeyError:
        pass
    found: set[str] = set()
    _scan(code, found)
    names = frozenset(found)
    _names_cache[code] = names
    return names


def reduce_code(code: types.CodeType):
    return load_code, (code_bytes(code), _compat.CODE_TAG)
