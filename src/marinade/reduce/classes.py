"""Classes by value.

A class travels in two steps, like the class statement and what follows it:

1. ``rebuild_class(metaclass, name, bases, namespace, key, kwds)`` creates it
   with a minimal namespace (``__module__``, ``__qualname__``, ``__doc__``,
   ``__slots__``, ``__orig_bases__``, and Enum members), so that metaclasses
   imported by reference (ABCMeta, EnumType, typing's) run as usual.
2. ``set_class_state(cls, (attributes, extras))`` sets everything else with
   ``setattr`` once the class exists, so that methods, class attributes and
   instances may all refer back to the class.

``key`` is a digest of the definition (module, qualified name, bases,
attribute names, what the methods compute, plain constants), the same in every
process that defines the class. The loading process keeps one class per key,
so the same class from several payloads (or several producers) is one class
object, and the sending process maps the key to the original class (a round
trip in one process gives the class itself). No random ids: payload bytes are
deterministic.
"""

from __future__ import annotations

import copyreg
import hashlib
import marshal
import operator
import sys
import types
from weakref import WeakKeyDictionary

from .. import _compat, _registry
from .._lookup import lookup_by_reference
from .._rebuild import (
    _tell_cloudpickle,
    enum_member,
    load_code_table,
    rebuild_class,
    set_class_methods,
    set_class_state,
)
from ._expr import ATOMS as _ATOMS
from ._expr import Call, canonical_module_name, fresh_name, stable
from .code import _stable_filename, code_names, code_table, globals_used, scan_global_names
from .methods import BatchGlobals, MethodBatch, fglobals_disjoint

_keys: WeakKeyDictionary[type, str] = WeakKeyDictionary()
_FunctionType = types.FunctionType
_HEAPTYPE = _compat.HEAPTYPE

# Never copied: created by type() itself, or by the metaclass when it runs.
_SKIP_ALWAYS = frozenset({"__dict__", "__weakref__", "__module__", "__qualname__", "__doc__",
                          "__slots__", "__orig_bases__", "_abc_impl", "__slotnames__"})
# Enum internals that EnumType computes from the members.
_ENUM_INTERNALS = frozenset({
    "_member_names_", "_member_map_", "_value2member_map_", "_unhashable_values_",
    "_member_type_", "_value_repr_", "_singles_mask_",
    "_flag_mask_", "_all_bits_", "_boundary_", "_inverted_", "__new__", "_hashable_values_",
    "_unhashable_values_map_",
})


# Names a class may gain after its definition, as caches (``copyreg`` adds
# ``__slotnames__`` on the first pickling of an instance; reading
# ``__annotations__`` creates an empty dict). They must not change the key,
# or the same class pickled before and after would be two classes on load.
_NOT_IN_KEY = frozenset({"__slotnames__", "_abc_impl"})
# Exact types: the repr of a subclass (an IntEnum member...) runs user code.


# Containers whose contents enter a key (up to _DATA_DEPTH levels and
# _DATA_ITEMS items: a big table counts by type and size).
_DATA_DEPTH = 4
_DATA_ITEMS = 64
_TYPING_KINDS = (types.GenericAlias, types.UnionType)


def _fingerprint(value, out: list, tabled: frozenset = frozenset(), depth: int = 0) -> None:
    """Append what distinguishes ``value`` between two definitions of a class.

    Cheap and deterministic: code, the reprs of plain constants (class
    attributes, defaults, atoms in closures and globals that methods use),
    small containers of them, classes by name and typing constructs (an
    edited ``params = {"lr": 0.5}`` or ``loss: list[int]`` is another class).
    Other objects count by type only. Code in ``tabled`` (ids of the class's
    code table, which enters the key as a whole) is not walked again.
    """
    kind = type(value)
    if kind in _ATOMS:
        out.append(repr(value))
        return
    if kind is tuple or kind is list:
        if depth >= _DATA_DEPTH or len(value) > _DATA_ITEMS:
            out.append(f"<{kind.__name__} of {len(value)}>")
            return
        out.append("(" if kind is tuple else "[")
        for item in value:
            _fingerprint(item, out, tabled, depth + 1)
        out.append(")" if kind is tuple else "]")
        return
    if kind is dict:
        if depth >= _DATA_DEPTH or len(value) > _DATA_ITEMS:
            out.append(f"<dict of {len(value)}>")
            return
        out.append("{")
        for key, item in value.items():
            _fingerprint(key, out, tabled, depth + 1)
            _fingerprint(item, out, tabled, depth + 1)
        out.append("}")
        return
    if kind is set or kind is frozenset:
        if depth >= _DATA_DEPTH or len(value) > _DATA_ITEMS \
                or not _ATOMS.issuperset(map(type, value)):
            out.append(f"<{kind.__name__} of {len(value)}>")
            return
        out.append(f"{kind.__name__}({sorted(map(repr, value))})")  # (hash order varies)
        return
    if isinstance(value, type):  # by name: no walk into another class's key
        out.append(f"<class {value.__module__}.{value.__qualname__}>")
        return
    if kind.__module__ == "typing" or isinstance(value, _TYPING_KINDS):
        out.append(repr(value))  # typing.Optional[__main__.Node], list[int], ~T
        return
    if type(value) is _FunctionType:
        _function_fingerprint(value, out, tabled)
        return
    func = value
    if isinstance(value, (staticmethod, classmethod)):
        func = value.__func__
    elif isinstance(value, property):
        for part in (value.fget, value.fset, value.fdel):
            _fingerprint(part, out, tabled)
        return
    if type(func) is _FunctionType:
        _function_fingerprint(func, out, tabled)
        return
    code = getattr(func, "__code__", None)
    if not isinstance(code, types.CodeType):
        out.append(f"<{kind.__module__}.{kind.__qualname__}>")
        return
    _code_fingerprint(code, out)


def _function_fingerprint(func: types.FunctionType, out: list, tabled: frozenset) -> None:
    code = func.__code__
    if id(code) not in tabled:
        _code_fingerprint(code, out)
    defaults = func.__defaults__
    if defaults:
        if _ATOMS.issuperset(map(type, defaults)):
            out.append(repr(defaults))
        else:
            _fingerprint(defaults, out, tabled)
    kwdefaults = func.__kwdefaults__
    if kwdefaults:
        _fingerprint(tuple(kwdefaults.values()), out, tabled)
    closure = func.__closure__
    if closure:
        for cell in closure:
            try:
                contents = cell.cell_contents
            except ValueError:
                continue
            if type(contents) in _ATOMS:
                out.append(repr(contents))
    fglobals = func.__globals__
    names = globals_used(code, fglobals)
    if names:
        for name in sorted(names):
            contents = fglobals.get(name)
            if type(contents) in _ATOMS:
                out.append(f"{name}={contents!r}")


def _code_fingerprint(code: types.CodeType, out: list) -> None:
    """What a code object computes, without where it came from.

    ``__main__`` code has the script's absolute path as ``co_filename``: the
    same script run from two folders must still give one key.
    """
    out.append(code.co_code)
    out.append(f"{code.co_name}|{code.co_qualname}|{code.co_flags}|{code.co_argcount}|"
               f"{code.co_posonlyargcount}|{code.co_kwonlyargcount}")
    out.append("|".join(code.co_names + ("|",) + code.co_varnames + ("|",) + code.co_freevars
                        + ("|",) + code.co_cellvars))
    for const in code.co_consts:
        if type(const) is types.CodeType:
            _code_fingerprint(const, out)
        else:
            out.append(_const_repr(const))


def _const_repr(const) -> str:
    """repr of a code constant, with sets in a fixed order (hash seeds vary)."""
    if type(const) is frozenset:
        return "frozenset(" + repr(sorted(map(_const_repr, const))) + ")"
    if type(const) is tuple:
        return "(" + ",".join(map(_const_repr, const)) + ",)"
    return repr(const)


class CodeTable:
    """The code of a class's methods, shipped as one marshal blob.

    ``call`` rebuilds the tuple of code objects at load time
    (``_rebuild.load_code_table``) and ``items[i]`` picks the i-th one, so a
    method travels as ``types.FunctionType(items[i], globals, ...)``: one
    ``marshal.loads`` per class instead of one Python-level call per method.
    """

    __slots__ = ("codes", "data", "call", "_items", "_index", "_names", "_globals",
                 "__weakref__")

    def __init__(self, codes: tuple, data: bytes):
        self.codes = codes
        self.data = data
        self.call = Call(load_code_table, (data, _compat.CODE_TAG))
        self._items = None
        self._index = None
        self._names = None
        self._globals = None

    def item(self, position: int) -> Call:
        """The load-time expression of the code at ``position``."""
        items = self._items
        if items is None:
            items = self._items = [Call(operator.getitem, (self.call, i))
                                   for i in range(len(self.codes))]
        return items[position]

    def names(self) -> frozenset[str]:
        """Every name the codes (and code nested in them) use: a superset of
        the globals they read, for a quick "none of these is a global"."""
        names = self._names
        if names is None:
            names = self._names = frozenset(code_names(self.codes))
        return names

    def global_names(self) -> list[frozenset[str]]:
        """Per code of the table, the names it reads or writes as globals."""
        found = self._globals
        if found is None:
            found = self._globals = list(map(scan_global_names, self.codes))
        return found

    def index(self) -> dict[int, int]:
        """``id(code)`` -> position in the table."""
        index = self._index
        if index is None:
            index = self._index = {id(code): i for i, code in enumerate(self.codes)}
        return index

    def key_bytes(self) -> bytes:
        """The blob without its file names: the same script run from two
        folders must give one class key."""
        data = self.data
        for name in {code.co_filename for code in self.codes}:
            # Length and characters as marshal writes them (the type byte
            # carries a reference flag that may vary).
            data = data.replace(marshal.dumps(_stable_filename(name))[1:], b"")
        return data


_tables: WeakKeyDictionary[type, CodeTable] = WeakKeyDictionary()


def _method_codes(cls: type) -> tuple:
    """Code objects compiled in the body of ``cls`` (methods, static and class
    methods, property accessors), each once, in definition order."""
    prefix = cls.__qualname__ + "."
    codes: dict[int, types.CodeType] = {}
    for value in cls.__dict__.values():
        kind = type(value)
        if kind is _FunctionType:
            funcs: tuple = (value,)
        elif kind is staticmethod or kind is classmethod:
            funcs = (value.__func__,)
        elif kind is property:
            funcs = (value.fget, value.fset, value.fdel)
        else:
            continue
        for func in funcs:
            if type(func) is _FunctionType:
                code = func.__code__
                if code.co_qualname.startswith(prefix):
                    codes[id(code)] = code
    return tuple(codes.values())


def class_code_table(cls: type) -> CodeTable | None:
    """The code table of ``cls``, made on its first dump and kept.

    Not checked against the class again: a method set on the class later is
    simply not in the table, and ``reduce_function`` ships its code on its
    own (it looks code up by identity), so a stale table costs bytes, never
    correctness. (Walking the class dict again costs more than the rest of a
    warm class dump's bookkeeping.)
    """
    table = _tables.get(cls)
    if table is not None:
        return table
    codes = _method_codes(cls)
    if not codes:
        return None
    table = _tables[cls] = CodeTable(codes, code_table(codes))
    return table


def _type_ident(kind: type) -> str:
    """How a base or metaclass enters a key: by name, or by its own key."""
    if kind.__flags__ & _HEAPTYPE and lookup_by_reference(kind) is None:
        return class_key(kind)
    return f"{kind.__module__}.{kind.__qualname__}"


def claim_key(base_key: str, obj, *, by_value: bool = True) -> str:
    """Register ``obj``, sent from this process, under ``base_key`` and return the key.

    A look-alike object (a factory making identical definitions) may hold
    ``base_key``, or (a class) have held it: then the next free
    ``base_key~N``. A payload
    loaded where it was made gives ``obj`` itself back. A class (``by_value``)
    also gets its cloudpickle class-tracker id, as where it loads (see
    ``_rebuild._tell_cloudpickle``). Call with ``_registry.lock`` held.
    """
    reg = _registry
    known, number = base_key, 1
    if by_value:
        # Every class object sent from here gets its own key, even when the
        # one that had the key is gone: a re-run notebook cell or a factory
        # may differ in what the key cannot see (an object's attributes),
        # and a worker holding the old class would give it back for the new.
        issued = getattr(reg, "issued", None)
        if issued is None:  # (a registry module made by a standalone payload)
            issued = reg.issued = {}
        number = issued.get(base_key, 0) + 1
        issued[base_key] = number
        if number > 1:
            known = f"{base_key}~{number}"
    while (live := reg.classes.get(known)) is not None and live is not obj:
        number += 1
        known = f"{base_key}~{number}"
    reg.classes[known] = obj
    if by_value:
        reg.by_value.add(obj)
        _tell_cloudpickle(obj, known)
    return known


def class_key(cls: type, batch: MethodBatch | None = None) -> str:
    """Deterministic identity of a class definition (cached per class).

    The same definition gives the same key in every process, so a class sent
    from several producers is one class where they are loaded. Two different
    live classes never share a key in one process: a clash (a factory making
    look-alike classes) gets a numbered key. ``batch``, the class's method
    batch in the current dump, only saves checking its methods again: the key
    is the same without it.
    """
    try:
        return _keys[cls]
    except KeyError:
        pass
    reg = _registry
    known = getattr(reg, "keys", {}).get(cls)
    if known is None:
        parts: list = [cls.__module__, cls.__qualname__, _type_ident(type(cls))]
        parts.extend(_type_ident(base) for base in cls.__bases__)
        table = class_code_table(cls)
        tabled: frozenset = frozenset()
        if table is not None:
            tabled = frozenset(map(id, table.codes))
            parts.append(table.key_bytes())
        # Plain methods (code in the table, no closure, constant defaults, one
        # globals dict) in one go: their defaults as one repr, the globals
        # their code may read once for all.
        plain_defaults: list = []
        fglobals = None
        # A batched method passed stricter checks than these (MethodBatch.offer).
        batched, batch_globals = (batch.ids, batch.fglobals) if batch is not None else ((), None)
        for name, value in cls.__dict__.items():
            if name in _NOT_IN_KEY or (name == "__annotations__" and not value):
                continue
            parts.append(name)
            if type(value) is _FunctionType:
                if id(value) in batched and (fglobals is None or fglobals is batch_globals):
                    fglobals = batch_globals
                    plain_defaults.append(value.__defaults__)
                    continue
                if id(value.__code__) in tabled and value.__closure__ is None \
                        and value.__kwdefaults__ is None \
                        and (fglobals is None or value.__globals__ is fglobals):
                    defaults = value.__defaults__
                    if defaults is None or _ATOMS.issuperset(map(type, defaults)):
                        fglobals = value.__globals__
                        plain_defaults.append(defaults)
                        continue
                _function_fingerprint(value, parts, tabled)
            else:
                _fingerprint(value, parts, tabled)
        if plain_defaults:
            parts.append(repr(plain_defaults))
            candidates = fglobals.keys() & table.names()  # (usually empty: no scan)
            if candidates:
                used = set().union(*table.global_names())
                # Only globals the code reads: a module global that merely
                # shares a name with an attribute must not split the class.
                for name in sorted(candidates & used):
                    contents = fglobals[name]
                    if type(contents) in _ATOMS:
                        parts.append(f"{name}={contents!r}")
        # Text and bytes (code) parts hashed as two joined streams: a few
        # hundred small parts per class, two encodes instead of one each.
        texts = "\0".join([part for part in parts if type(part) is str])
        digest = hashlib.blake2b(texts.encode("utf-8", "surrogatepass"), digest_size=12)
        for part in parts:
            if type(part) is bytes:
                digest.update(part)
        base_key = f"{cls.__module__}.{cls.__qualname__}#{digest.hexdigest()}"
        # The sending process maps the key to the live class, so that a
        # payload loaded where it was made gives back the original.
        with reg.lock:
            known = getattr(reg, "keys", {}).get(cls)
            if known is None:
                known = claim_key(base_key, cls)
                if hasattr(reg, "keys"):
                    reg.keys[cls] = known
    _keys[cls] = known
    return known


def _plain_creation(bases: tuple) -> bool:
    """No ``__init_subclass__`` but object's runs when a class with ``bases`` is made."""
    for base in bases:
        for klass in base.__mro__:
            if "__init_subclass__" in klass.__dict__ and klass is not object:
                return False
    return True


def _constant_prefix(order: list, attrs: dict, batch) -> list | None:
    """The attribute names up to the last batched method, if the others among
    them are all plain constants.

    Then they and the batched methods can go in the class statement's
    namespace (nothing in it may refer to the class, which does not exist
    yet), keeping the class's attribute order; what comes after is set later.
    """
    prefix = order[:order.index(batch.names[-1]) + 1]
    for name in prefix:
        if name in attrs and type(attrs[name]) not in _ATOMS:
            return None
    return prefix


def _slot_names(cls: type) -> set[str]:
    slots = cls.__dict__.get("__slots__", ())
    if isinstance(slots, str):
        slots = (slots,)
    names = set()
    for name in slots:
        if name.startswith("__") and not name.endswith("__"):
            name = f"_{cls.__name__.lstrip('_')}{name}"  # private name mangling
        names.add(name)
    return names


# Fewer plain methods than this are pickled one by one: measured on 3.11, a
# batch costs about as much as four methods (benchmarks/bench_core.py class).
_MIN_BATCH = 4


def _place_methods(pickler, cls, batch, namespace: dict, attrs: dict, order: list,
                   bases: tuple, kwds, *, may_batch: bool = True) -> tuple:
    """Where the class's plain methods go: ``(namespace, state attributes)``.

    With enough of them, one batch: in the class statement's namespace when
    ``type()`` alone makes the class (it is then made with its methods at
    once, instead of one setattr each), else in the state. The methods not
    batched take their code from the class's table (see reduce_function).
    """
    table = batch.table
    batched = may_batch and len(batch.names) >= _MIN_BATCH
    taken = set(batch.positions) if batched else ()
    code_slots = pickler._code_slots
    for position, code in enumerate(table.codes):
        if position not in taken:
            code_slots[id(code)] = (code, table, position)
    if not batched:  # too few to pay for the batch's own bytes and calls
        clsdict = cls.__dict__
        return namespace, {name: attrs[name] if name in attrs else clsdict[name]
                           for name in order}
    prefix = None
    if type(cls) is type and kwds is None and _plain_creation(bases):
        prefix = _constant_prefix(order, attrs, batch)
    if prefix is None:
        return namespace, batch.state(order, attrs)
    namespace_order = list(namespace) + prefix
    namespace.update((name, attrs.pop(name)) for name in prefix if name in attrs)
    if fglobals_disjoint(batch):
        return batch.state(namespace_order, namespace), attrs
    # The methods' globals may hold the class itself: filled in the state,
    # once the class exists.
    return (batch.state(namespace_order, namespace),
            Call(operator.getitem, ((attrs, BatchGlobals(batch)), 0)))


_METHOD_KINDS = frozenset({_FunctionType, classmethod, staticmethod, property})


# What pickle calls on the class to make or fill one of its instances.
_RESTORE_HOOKS = frozenset({"__setstate__", "__new__", "__reduce__", "__reduce_ex__",
                            "__getnewargs__", "__getnewargs_ex__", "__setattr__"})


def _holds_own_instances(cls: type, attrs: dict) -> bool:
    """A class attribute is an instance of ``cls`` (or a container of some),
    and ``cls`` defines how its instances are made or restored.

    Pickle makes them while it reads the class state, before the state's
    methods are set: their ``__setstate__``/``__new__``/``__reduce__`` would
    be missing (see ``_rebuild.set_class_methods``).
    """
    if _RESTORE_HOOKS.isdisjoint(cls.__dict__):
        return False
    for value in attrs.values():
        kind = type(value)
        if kind in _ATOMS or kind in _METHOD_KINDS:
            continue
        if isinstance(value, cls):
            return True
        if kind is dict:
            value = value.values()
        elif kind is not tuple and kind is not list:
            continue
        for item in value:
            if isinstance(item, cls):
                return True
    return False


def methods_first_state(cls: type, attrs: dict) -> Call:
    """``attrs`` as class state whose methods are set on ``cls`` before the
    rest is made (for ``_holds_own_instances`` classes)."""
    early = {name: value for name, value in attrs.items() if type(value) in _METHOD_KINDS}
    late = {name: value for name, value in attrs.items() if name not in early}
    return Call(operator.getitem, ((Call(set_class_methods, (cls, early)), late), 1))


_encode = str.encode
_decode = bytes.decode


def _fresh_names(clsdict) -> list:
    """The keys of ``clsdict`` as ``fresh_name`` copies (what re-pickling a
    loaded class needs to give the same bytes), in one C loop."""
    try:
        return list(map(_decode, map(_encode, clsdict)))
    except (TypeError, UnicodeEncodeError):  # a lone surrogate (or a non-str key)
        return list(map(fresh_name, clsdict))


def reduce_class(pickler, cls: type, *, bases: tuple | None = None):
    """Reduce tuple that rebuilds ``cls`` by value.

    ``bases`` replaces ``cls.__bases__`` for metaclasses that want the bases
    of the class statement rather than the resulting ones (TypedDict).
    """
    clsdict = cls.__dict__
    namespace = {"__module__": canonical_module_name(cls.__module__),
                 "__qualname__": cls.__qualname__}
    doc = clsdict.get("__doc__")
    if doc is not None:
        namespace["__doc__"] = doc
    for name in ("__slots__", "__orig_bases__"):
        if name in clsdict:
            namespace[name] = clsdict[name]

    skip = _SKIP_ALWAYS
    slots = _slot_names(cls) if "__slots__" in clsdict else ()
    kwds = None
    extras = {}
    enum_plan = _enum_namespace(cls)
    if enum_plan is not None:
        members, stand_ins, delete = enum_plan
        skip = skip | _ENUM_INTERNALS | members.keys()
        namespace.update(members)
        namespace.update(stand_ins)
        if delete:
            extras["delete"] = delete
        boundary = clsdict.get("_boundary_")
        if boundary is not None:
            kwds = {"boundary": boundary}

    table = class_code_table(cls)
    batch = None
    if table is not None and pickler._portable_state is None:
        batch = MethodBatch(table)
        offer = batch.offer
    attrs = {}
    order = []
    for name, value in zip(_fresh_names(clsdict), clsdict.values()):
        if name in skip or name in slots:
            continue
        order.append(name)
        if batch is not None and type(value) is _FunctionType and offer(name, value):
            continue
        attrs[name] = stable(value)
    if "__annotations__" in attrs:
        # String annotations evaluated here, where their names exist:
        # get_type_hints(cls) looks them up in the loading process's module
        # of that name, which is another __main__ (see resolved_class_annotations).
        from .typing import resolved_class_annotations  # (typing imports this module)

        resolved = resolved_class_annotations(cls)
        if resolved is not None:
            attrs["__annotations__"] = resolved

    if enum_plan is not None:
        member_dicts = _enum_member_dicts(cls)
        if member_dicts:
            extras["member_dicts"] = member_dicts
    abc_subclasses = _abc_registered(cls)
    if abc_subclasses:
        extras["abc_register"] = abc_subclasses

    if bases is None:
        bases = cls.__bases__
    key = class_key(cls, batch)
    state_attrs = attrs
    methods_first = pickler._portable_state is None and _holds_own_instances(cls, attrs)
    if batch is not None:  # (methods_first: each method in the state, to be set first)
        namespace, state_attrs = _place_methods(pickler, cls, batch, namespace, attrs, order,
                                                bases, kwds, may_batch=not methods_first)
    if methods_first:
        state_attrs = methods_first_state(cls, state_attrs)
    args = (type(cls), cls.__name__, bases, namespace, key)
    if kwds:
        args += (kwds,)
    return rebuild_class, args, (state_attrs, extras or None), None, None, set_class_state


def _enum_namespace(cls):
    """Members and stand-ins for the class body, and names to delete after; or None.

    Usually each member name maps to its value, and EnumType makes the member
    as it did the first time. A custom ``__new__`` (in the class or inherited)
    took arguments that nothing remembers, so then each name maps to
    ``(value, data_args)`` and ``_rebuild.enum_member`` stands in as
    ``__new__`` (with a do-nothing ``__init__``, since EnumType passes it the
    same arguments); both go away once the real attributes are set.
    """
    enum = sys.modules.get("enum")
    if enum is None or not isinstance(cls, enum.EnumType):
        return None
    member_map = cls.__dict__.get("_member_map_")
    if member_map is None:
        return None
    member_type = cls.__dict__.get("_member_type_", object)
    new = cls.__dict__.get("_new_member_", object.__new__)
    if new is object.__new__:
        # Plain enums get _value_ = the class body value back. A mixin whose
        # __new__ is object's (a dataclass) got member_type(*args) instead,
        # which its _value_ cannot reproduce.
        simple = member_type is object
    else:
        # int, str, tuple...: member_type.__new__(cls, value) gives the same
        # data and value; so does StrEnum's __new__.
        simple = new == member_type.__new__ or getattr(new, "__module__", None) == "enum"
    by_value = {name: member._value_ for name, member in member_map.items()}
    if simple:
        return by_value, {}, ()
    members: dict = {}
    for name, member in member_map.items():
        data_args = _enum_data_args(member_type, member)
        if data_args is None:  # unknown data type: let its own __new__ try
            return by_value, {}, ()
        members[name] = (member._value_, data_args)
    stand_ins = {"__new__": enum_member, "__init__": enum.Enum.__init__}
    delete = tuple(name for name in ("__init__", "__new_member__") if name not in cls.__dict__)
    return members, stand_ins, delete


def _enum_data_args(member_type: type, member) -> tuple | None:
    """Arguments for ``member_type.__new__`` that recreate the member's data."""
    if member_type is object:
        return ()
    try:
        reduced = member_type.__reduce_ex__(member, 4)
    except Exception:
        return None
    func, args = reduced[0], reduced[1]
    if func is copyreg.__newobj__ and args and args[0] is type(member):
        return tuple(args[1:])
    if func is member_type or func is type(member):
        return tuple(args)
    return None


def _enum_member_dicts(cls):
    """Attributes members got from a custom __init__/__new__ (Planet.mass)."""
    found = {}
    for name, member in cls.__dict__["_member_map_"].items():
        if member._name_ != name:
            continue  # alias
        extra = {k: v for k, v in vars(member).items()
                 if k not in ("_value_", "_name_", "__objclass__", "_sort_order_")}
        if extra:
            found[name] = extra
    return found


def _abc_registered(cls):
    """Virtual subclasses registered with ``cls.register`` (ABCs only)."""
    if "_abc_impl" not in cls.__dict__:
        return None
    import abc

    try:
        registry = abc._get_dump(cls)[0]
    except (AttributeError, TypeError):  # pure-Python abc (_py_abc)
        return None
    subclasses = [ref() for ref in registry]
    subclasses = [c for c in subclasses if c is not None]
    subclasses.sort(key=lambda c: (c.__module__, c.__qualname__))
    return subclasses
