"""Everything that depends on the running interpreter's version, as named flags.

This is the only module that reads ``sys.version_info``; the rest of the package
asks these flags instead, so supporting a new CPython means editing one place.
"""

from __future__ import annotations

import sys
from opcode import opmap

PY_VERSION: tuple[int, int] = sys.version_info[:2]
PY_3_12_PLUS = PY_VERSION >= (3, 12)
PY_3_13_PLUS = PY_VERSION >= (3, 13)

SUPPORTED_VERSIONS = ((3, 11), (3, 12), (3, 13))
IS_SUPPORTED = PY_VERSION in SUPPORTED_VERSIONS and sys.implementation.name == "cpython"

# Code objects travel as marshal data, which is only valid for the minor
# version that wrote it. Payloads carry this tag next to every code object so
# that a loader on another version refuses it with a clear error instead of
# running bytecode it does not understand.
CODE_TAG: int = PY_VERSION[0] * 256 + PY_VERSION[1]


# Py_TPFLAGS_HEAPTYPE in ``cls.__flags__``: a class made by a class statement
# or ``type()``, as opposed to a builtin (static) type.
HEAPTYPE = 1 << 9


def describe_code_tag(tag: int) -> str:
    """Human form of a CODE_TAG: 779 -> 'CPython 3.11'."""
    return f"CPython {tag // 256}.{tag % 256}"


# Opcodes whose argument names a global (or, in class bodies and exec'd code,
# a name looked up in globals after locals). LOAD_GLOBAL packs a flag into the
# low bit of its argument since 3.11.
GLOBAL_NAME_OPS = frozenset(
    opmap[name]
    for name in (
        "LOAD_GLOBAL",
        "STORE_GLOBAL",
        "DELETE_GLOBAL",
        "LOAD_NAME",
        "STORE_NAME",
        "DELETE_NAME",
        "LOAD_FROM_DICT_OR_GLOBALS",  # 3.12+: class bodies with annotations scopes
    )
    if name in opmap
)
LOAD_GLOBAL = opmap["LOAD_GLOBAL"]
EXTENDED_ARG = opmap["EXTENDED_ARG"]


def doc_from_code(code) -> object:
    """The ``__doc__`` that ``types.FunctionType`` derives from a code object.

    3.11-3.13 take ``co_consts[0]`` when it is a str. (3.14 uses a code flag
    instead; revisit when 3.14 is supported.)
    """
    consts = code.co_consts
    if consts and type(consts[0]) is str:
        return consts[0]
    return None
