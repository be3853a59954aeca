"""Which string annotations (PEP 563) to resolve at dump time, and which not.

A class sent by value gets its string annotations evaluated where it is
pickled (``typing.resolved_class_annotations``); a function gets the globals
its string annotations name (``function.annotation_names``). Both serve
``typing.get_type_hints`` where the payload loads, and both must never cost
more than the annotations would as plain strings:

- a string is evaluated only if it is made of names, attributes, subscripts,
  literals, tuples/lists and ``|``: no call, so no user code runs at dump
  time beyond the attribute and subscript lookups typing itself performs;
- a resolved value (or a global an annotation names) that would not pickle
  leaves the annotation as its string (and the global behind), where before
  it failed the whole dump.

Kept apart from ``typing.py`` and ``function.py`` because both use it and
``function.py`` cannot import ``typing.py`` (which imports it, through
``classes.py``).
"""

from __future__ import annotations

import ast
import functools
import io
import keyword
import pickle
import re
import threading
import types
import typing

from ._expr import ATOMS

# Typing objects that marinade rebuilds from their constructor (reduce/typing.py)
# or that pickle by name.
_TYPING_LEAVES = tuple(t for t in (
    typing.TypeVar, typing.ParamSpec, typing.TypeVarTuple, typing.NewType, typing.ForwardRef,
    typing.ParamSpecArgs, typing.ParamSpecKwargs, getattr(typing, "TypeAliasType", None),
) if t is not None)
_MAX_DEPTH = 30
_PLAIN = re.compile(r"[\w\s.,\[\]|]*").fullmatch
_WORDS = re.compile(r"\w+").findall
_KEYWORDS = frozenset(keyword.kwlist) - {"None", "True", "False"}
_EXPRESSION_NODES = (ast.Expression, ast.Name, ast.Attribute, ast.Subscript, ast.Tuple,
                     ast.List, ast.Constant, ast.Starred, ast.Load, ast.BitOr, ast.USub, ast.UAdd)


@functools.lru_cache(maxsize=4096)
def evaluable(text: str) -> bool:
    """True if ``text`` is an annotation worth evaluating at dump time.

    Names, attributes, subscripts, literals, tuples, lists, ``|`` unions and
    signed numbers (``Literal[-1]``); string literals inside must pass too,
    since typing evaluates those it finds in generic arguments
    (``list["Node"]``). Anything else (a call, a lambda, a comprehension)
    stays a string: evaluating it would run arbitrary code during ``dumps``.
    """
    # Perf: most annotations are dotted names, brackets, commas and ``|``;
    # only keywords could make those anything else. Parsing costs ~10x more.
    if _PLAIN(text) is not None and _KEYWORDS.isdisjoint(_WORDS(text)):
        return True
    tree = _parse(text)
    if tree is None:
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp):
            if not isinstance(node.op, ast.BitOr):
                return False
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.USub, ast.UAdd)) or \
                    not isinstance(node.operand, ast.Constant):
                return False
        elif not isinstance(node, _EXPRESSION_NODES):
            return False
        elif isinstance(node, ast.Constant) and type(node.value) is str \
                and _parse(node.value) is not None and not evaluable(node.value):
            return False
    return True


def _parse(text: str) -> ast.Expression | None:
    if text.startswith("*"):  # ``*Ts`` (typing evaluates it as an unpacking)
        text = text[1:]
    try:
        return ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):  # (ValueError: a NUL byte)
        return None


@functools.lru_cache(maxsize=4096)
def string_names(text: str) -> tuple[str, ...]:
    """The global names a string annotation mentions (none if it does not compile)."""
    try:
        return compile(text, "<annotation>", "eval").co_names
    except (SyntaxError, ValueError):
        return ()


def will_pickle(value) -> bool:
    """True if ``value``, part of an annotation, can be pickled.

    Classes, atoms, type variables and typing's aliases over such values are
    taken as they are (a class by value travels with its own reduction, as
    everywhere else); anything else (``Annotated`` metadata, a module
    constant) is tried, alone, with a marinade pickler.
    """
    unknown: list = []
    _collect_unknown(value, unknown, 0)
    return all(_pickles(leaf) for leaf in unknown)


def _collect_unknown(value, unknown: list, depth: int) -> None:
    kind = type(value)
    if kind in ATOMS or isinstance(value, type) or kind is types.ModuleType \
            or isinstance(value, _TYPING_LEAVES):
        return
    if depth > _MAX_DEPTH:
        unknown.append(value)
        return
    if kind is list or kind is tuple:  # (Callable's argument list)
        for item in value:
            _collect_unknown(item, unknown, depth + 1)
        return
    origin = typing.get_origin(value)
    if origin is not None:
        # An alias pickles as its origin and arguments (Annotated: and its
        # metadata, which get_args lists after the type).
        _collect_unknown(origin, unknown, depth + 1)
        for arg in typing.get_args(value):
            _collect_unknown(arg, unknown, depth + 1)
        return
    if getattr(kind, "__module__", None) == "typing":  # Any, Union, ClassVar, List...
        return
    unknown.append(value)


def _pickles(value) -> bool:
    from .._pickler import Pickler  # (the pickler imports this module)

    pickler = Pickler(io.BytesIO())
    try:
        # pickle's own dump: a failure here is an answer, not an error to explain.
        pickle.Pickler.dump(pickler, value)
    except Exception:  # noqa: BLE001 - anything that fails the dump
        return False
    return True


_local = threading.local()


def resolving() -> set:
    """The ids of the classes this thread is resolving the annotations of.

    Trying a value (``_pickles``) may pickle a class whose annotations lead
    back to one being resolved; that one is then pickled with its strings.
    """
    active = getattr(_local, "active", None)
    if active is None:
        active = _local.active = set()
    return active
