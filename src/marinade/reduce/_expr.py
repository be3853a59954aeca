"""Small pickle expressions built from standard-library callables.

Payloads use these to run side effects while they load (fill a globals dict,
fill a closure cell) without naming any marinade function, so that the
stream stays loadable by plain ``pickle``.
"""

from __future__ import annotations

import operator
import sys


class Call:
    """Pickles as ``func(*args)``; with ``state``, as BUILD applied to the result."""

    __slots__ = ("func", "args", "state")

    def __init__(self, func, args, state=None):
        self.func = func
        self.args = args
        self.state = state

    def as_reduce(self):
        if self.state is None:
            return self.func, self.args
        return self.func, self.args, self.state


def sequence(effects: list) -> object:
    """One expression that evaluates every effect in order and returns None.

    Every effect must itself evaluate to None (``dict.update``, ``setattr``).
    """
    if len(effects) == 1:
        return effects[0]
    return Call(operator.getitem, (tuple(effects), 0))


def build_on(obj, state) -> Call:
    """An expression that applies pickle BUILD ``state`` to an already pickled ``obj``."""
    return Call(operator.getitem, ((obj,), 0), state)


# Values that cannot refer to anything: no reduction, no identity to keep, a
# repr that says all of them (cells, defaults, class keys, annotations...).
ATOMS = frozenset({int, float, complex, str, bytes, bool, type(None), type(...)})

_SET_TYPES = (set, frozenset)
_intern = sys.intern


def stable(value):
    """``value``, or for a set/frozenset an expression rebuilding it from sorted items.

    The C pickler writes sets in hash order, which changes with
    PYTHONHASHSEED, and never shows them to ``reducer_override``. Where
    marinade itself places a value (class attributes, shipped globals) it can
    make the bytes deterministic. Unorderable mixes stay as they are.
    """
    if type(value) in _SET_TYPES:
        try:
            return Call(type(value), (sorted(value),))
        except TypeError:
            return value
    return value


def canonical_module_name(name):
    """``name`` as the one interned string, wherever it came from.

    A class and a function of one module share their module name where they
    were defined; where they load, a class reused from an earlier payload
    brings its own copy. Interned, both give one memo entry in every process.
    """
    return _intern(name) if type(name) is str else name


def fresh_name(name):
    """An equal copy of ``name`` that no other object in the payload is.

    A name set with ``setattr`` (or pickle's BUILD) is interned where it
    loads, so it may become one object with an equal string elsewhere, or
    stop being one: a class attribute ``arg = "join"`` shares its string with
    the method name ``join`` where the class statement ran, not where it was
    loaded. The pickle memo goes by identity, so pickling the loaded class
    again gave other bytes. Names written as copies share with nothing, in
    every process. (Strings of one character are singletons anyway.)
    """
    if type(name) is not str:
        return name
    try:
        return name.encode().decode()
    except UnicodeEncodeError:  # (a lone surrogate)
        return "".join(name)
