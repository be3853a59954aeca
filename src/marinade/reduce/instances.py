"""Instances whose base class's reduce leaves out the subclass's own attributes.

``datetime``, ``Decimal``, ``Fraction``, ``defaultdict``, ``ipaddress``
addresses, ``pathlib`` paths and numpy's ``ndarray`` each define a
``__reduce__`` written for instances without a ``__dict__``: it returns the
value (and, for ``ndarray``, the array's own state) and nothing else.
(``Counter``'s instances have one, and its reduce drops it all the same.) A user
subclass adds a ``__dict__`` (or slots), and plain pickle, cloudpickle and
dill (ndarray aside) drop what it holds without a word::

    class Stamp(datetime):
        pass
    s = Stamp(2024, 1, 1); s.source = "sensor-4"
    pickle.loads(pickle.dumps(s)).source  # AttributeError

Here such a type gets a reducer that keeps the base's reduce and adds the
missing attributes as state: as plain BUILD state when the reduce has none
and the class no ``__setstate__`` (plain pickle applies it: datetime,
Decimal...), otherwise through ``_rebuild.set_subclass_state``, which applies
the base's state as BUILD would and then the subclass's (ndarray).

Only when the class that defines the reduce cannot know about the
attributes: its own instances have no ``__dict__``, and no class between it
and the object's type defines ``__getstate__`` or ``__setstate__`` (then the
subclass's author chose). A reduce that returns the attributes after all
(``deque``'s, ``array``'s) is left as it is.
"""

from __future__ import annotations

import sys

from .. import _compat
from .._rebuild import set_subclass_state
from .classes import _slot_names

_object_reduce_ex = object.__reduce_ex__
_object_reduce = object.__reduce__
_HEAPTYPE = _compat.HEAPTYPE
_OWN_STATE_HOOKS = ("__getstate__", "__setstate__")
_MISSING = object()


def subclass_state_reducer(kind: type):
    """A reducer for instances of ``kind`` if its base's reduce loses their
    attributes, else None (pickle's own way). Asked once per type per dump."""
    if not kind.__flags__ & _HEAPTYPE:
        return None  # a builtin type: no subclass layer
    if kind.__reduce_ex__ is _object_reduce_ex and kind.__reduce__ is _object_reduce:
        return None  # the usual case: object's reduce sends __dict__ and slots
    mro = kind.__mro__
    depth = next(i for i, klass in enumerate(mro)  # (object defines both: always found)
                 if "__reduce_ex__" in klass.__dict__ or "__reduce__" in klass.__dict__)
    owner = mro[depth]
    if owner is object or (owner.__dictoffset__ and not _drops_own_dict(owner)):
        return None  # written for instances with a __dict__: it decides
    below = mro[:depth]
    if any(hook in klass.__dict__ for klass in below for hook in _OWN_STATE_HOOKS):
        return None
    slots: set[str] = set()
    for klass in below:
        if "__slots__" in klass.__dict__:
            slots |= _slot_names(klass)
    slots -= {"__dict__", "__weakref__"}
    if not kind.__dictoffset__ and not slots:
        return None  # nothing below the owner to lose
    return _make_reducer(tuple(sorted(slots)), bool(kind.__dictoffset__))


def _drops_own_dict(owner: type) -> bool:
    """``owner``'s instances have a ``__dict__`` its reduce leaves out anyway
    (``Counter.__reduce__`` returns the counts alone)."""
    collections = sys.modules.get("collections")
    return collections is not None and owner is collections.Counter


def _make_reducer(slots: tuple[str, ...], has_dict: bool):
    def reduce_with_subclass_state(pickler, obj):
        reduced = obj.__reduce_ex__(pickler._protocol)
        if type(reduced) is not tuple:
            return reduced  # a global's name
        attrs = obj.__dict__ if has_dict else None
        slot_values = {}
        for name in slots:
            value = getattr(obj, name, _MISSING)
            if value is not _MISSING:
                slot_values[name] = value
        if not attrs and not slot_values:
            return reduced
        state = reduced[2] if len(reduced) > 2 else None
        if _carries(state, attrs, slot_values) or (len(reduced) > 5 and reduced[5] is not None):
            return reduced  # it sends them after all, or sets its state its own way
        own = (attrs or None, slot_values) if slot_values else attrs
        rest = reduced[3:5] + (None,) * (5 - max(len(reduced), 3))
        if state is None and getattr(obj, "__setstate__", None) is None:
            return (*reduced[:2], own, *rest)  # plain BUILD state: plain pickle applies it
        return (*reduced[:2], (state, own), *rest, set_subclass_state)

    return reduce_with_subclass_state


def _carries(state, attrs, slot_values: dict) -> bool:
    """The base's state already holds the instance dict and the slot values
    (object's own ``(dict, slots)`` form, which ``deque`` and ``array`` send)."""
    if type(state) is tuple and len(state) == 2:
        state, slot_state = state
    else:
        slot_state = None
    if attrs and state is not attrs:
        return False
    if slot_values and not (type(slot_state) is dict and slot_values.keys() <= slot_state.keys()):
        return False
    return True
