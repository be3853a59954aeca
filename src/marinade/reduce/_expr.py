"""Small pickle expressions built from standard-library callables.

Payloads use these to run side effects while they load (fill a globals dict,
fill a closure cell) without naming any marinade function, so that the
stream stays loadable by plain ``pickle``.
"""

from __future__ import annotations

import operator


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


_SET_TYPES = (set, frozenset)


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
