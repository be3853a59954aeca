"""A class's plain methods, rebuilt by one ``map(types.FunctionType, ...)``.

Most methods of a class are exactly what ``types.FunctionType(code,
globals, None, defaults)`` makes from their code: no closure, no attributes
of their own, name, qualified name, module and docstring as the code says.
Pickling each one on its own costs a call from the C pickler into Python and
a reduce tuple per method. Here they travel together, in the class state::

    attrs = dict.fromkeys(("scale", "__init__", "method_0", ...))  # class order
    attrs.update(zip(("__init__", "method_0", ...),
                     map(types.FunctionType, <code table>, (globals, globals, ...))))
    attrs.update({"scale": 3, ...})                                  # the rest

so one C loop makes them all at load time, and the payload holds only their
names. Only standard-library callables are named: plain ``pickle`` loads it.
When ``type()`` alone makes the class and nothing before the last method can
refer to the class, the same expression fills the namespace given to
``rebuild_class`` instead (the class is made with its methods, as by the class
statement); the globals the methods read are then filled in the state, by a
``BatchGlobals`` step, since they may name the class.

Identity is kept both ways. A batched method pickled again later (an alias, a
bound method, a global) becomes ``attrs[name]``. A method already pickled on
its own before its class's state (``reduce_function`` records those) is left
out of the batch and set from the pickle memo instead.
"""

from __future__ import annotations

import operator
import types

from .. import _compat
from ._expr import Call, sequence
from .function import ATOMS, _shared_globals

_dict_update = dict.update
_fromkeys = dict.fromkeys
_getitem = operator.getitem
_FunctionType = types.FunctionType
_PY_3_12_PLUS = _compat.PY_3_12_PLUS


class MethodBatch:
    """The plain methods of one class in one dump, and where they go.

    ``attrs`` is the load-time expression of the class attribute dict (its
    keys in class order); pickling the batch itself fills it.
    """

    __slots__ = ("table", "index", "names", "funcs", "positions", "defaults", "ids",
                 "fglobals", "module", "attrs", "ordered", "globals_later", "used")

    def __init__(self, table):
        self.table = table
        self.index = table.index()
        # In step: one entry per batched method.
        self.names: list[str] = []
        self.funcs: list = []
        self.positions: list[int] = []
        self.defaults: list = []
        self.ids: set[int] = set()
        self.fglobals = None
        self.module = None
        self.attrs = None  # the class attribute dict (or the expression making it)
        self.ordered = False  # its keys exist already, in class order
        self.globals_later = False  # globals filled by a BatchGlobals in the class state
        self.used: set[str] = set()  # globals the batched methods may use

    def offer(self, name: str, func: types.FunctionType) -> bool:
        """Take ``func`` if ``FunctionType(code, globals, None, defaults)`` gives it back."""
        code = func.__code__
        position = self.index.get(id(code))
        if position is None or func.__closure__ is not None or func.__kwdefaults__ is not None \
                or func.__dict__ or func.__annotations__:
            return False
        fglobals = func.__globals__
        if fglobals is not self.fglobals:
            if self.fglobals is not None:
                return False
            self.fglobals = fglobals
            self.module = fglobals.get("__name__")
        consts = code.co_consts  # the docstring FunctionType takes (_compat.doc_from_code)
        doc = consts[0] if consts and type(consts[0]) is str else None
        if func.__name__ != code.co_name or func.__qualname__ != code.co_qualname \
                or func.__module__ != self.module or func.__doc__ != doc:
            return False
        if _PY_3_12_PLUS and func.__type_params__:
            return False
        defaults = func.__defaults__
        if defaults is not None and not ATOMS.issuperset(map(type, defaults)):
            return False  # (others may refer back to the class: pickled on their own)
        ids = self.ids
        if id(func) in ids:
            return False  # a second name for a batched method: set from the first
        ids.add(id(func))
        self.names.append(name)
        self.funcs.append(func)
        self.positions.append(position)
        self.defaults.append(defaults)
        return True

    def state(self, order: list, others: dict) -> Call:
        """The class attribute dict: the batched methods and ``others``, keys in ``order``."""
        names = self.names
        if order[len(order) - len(names):] == names:
            # The usual layout (attributes, then methods): ``others`` itself
            # is the dict, the methods are added at its end.
            self.attrs = others
            self.ordered = False
            return Call(_getitem, ((others, self), 0))
        attrs = self.attrs = Call(_fromkeys, (tuple(order),))
        self.ordered = True
        parts: tuple = (attrs, self)
        if others:
            parts += (Call(_dict_update, (attrs, others)),)
        return Call(_getitem, (parts, 0))


def reduce_method_batch(pickler, batch: MethodBatch):
    """Fill the class attribute dict with the batched methods (an expression giving None).

    Decided now, not when the class was reduced: a method pickled on its own
    in between (found in the class namespace, say) is in ``pickler._loose``
    and keeps that identity.
    """
    fglobals = batch.fglobals
    target = _shared_globals(pickler, fglobals).with_builtins()
    attrs = batch.attrs
    names, funcs, positions, defaults = batch.names, batch.funcs, batch.positions, batch.defaults
    late: dict = {}
    effects = []
    loose = pickler._loose
    if loose and not batch.ids.isdisjoint(loose):
        if not batch.ordered:  # keys first, so that the late ones keep their place
            effects.append(Call(_dict_update, (attrs, Call(_fromkeys, (tuple(names),)))))
        kept = [k for k, func in enumerate(funcs) if id(func) not in loose]
        late = {names[k]: funcs[k] for k in range(len(funcs)) if id(funcs[k]) in loose}
        names, funcs, positions, defaults = ([column[k] for k in kept]
                                             for column in (names, funcs, positions, defaults))
    if names:
        names = tuple(names)
        pickler._batched.update(zip(map(id, funcs), zip((attrs,) * len(names), names)))
        codes = batch.table.call
        if positions != list(range(len(positions))):
            codes = Call(map, (_getitem, (codes,) * len(positions), tuple(positions)))
        # The globals as often as there are methods (a memo reference, two
        # bytes each): cheaper to load than itertools.repeat.
        args: tuple = (_FunctionType, codes, (target,) * len(names))
        if any(d is not None for d in defaults):
            args += ((None,) * len(names), tuple(defaults))
        # zip stops at the last name: map makes no function past it.
        effects.append(Call(_dict_update, (attrs, Call(zip, (names, Call(map, args))))))
    if late:
        effects.append(Call(_dict_update, (attrs, late)))  # already in the pickle memo
    # After the methods exist: a global may be one of them.
    if not fglobals_disjoint(batch):
        per_code = batch.table.global_names()
        batch.used.update(*[per_code[position] for position in positions])
        if not batch.globals_later:
            effect = _globals_effect(pickler, batch)
            if effect is not None:
                effects.append(effect)
    return sequence(effects).as_reduce()


def fglobals_disjoint(batch: MethodBatch) -> bool:
    """None of the names the batched code uses is a global of its module."""
    return batch.fglobals.keys().isdisjoint(batch.table.names())


def _globals_effect(pickler, batch: MethodBatch):
    table = batch.table
    return _shared_globals(pickler, batch.fglobals).fill(batch.used, table.codes, table.names())


class BatchGlobals:
    """The globals of a method batch made in the class namespace, filled in
    the class state: they may refer to the class, which the namespace precedes."""

    __slots__ = ("batch",)

    def __init__(self, batch: MethodBatch):
        self.batch = batch
        batch.globals_later = True


def reduce_batch_globals(pickler, obj: BatchGlobals):
    effect = _globals_effect(pickler, obj.batch)
    if effect is None:  # all planned already: an update with nothing
        effect = Call(_dict_update, (_shared_globals(pickler, obj.batch.fglobals).target, {}))
    return effect.as_reduce()
