"""Classes by value.

A class travels in two steps, like the class statement and what follows it:

1. ``rebuild_class(metaclass, name, bases, namespace, key, kwds)`` creates it
   with a minimal namespace (``__module__``, ``__qualname__``, ``__doc__``,
   ``__slots__``, ``__orig_bases__``, and Enum members), so that metaclasses
   imported by reference (ABCMeta, EnumType, typing's) run as usual.
2. ``set_class_state(cls, (attributes, extras))`` sets everything else with
   ``setattr`` once the class exists, so that methods, class attributes and
   instances may all refer back to the class.

``key`` is a digest of the definition (module, qualified name, attribute
names, code of the methods). The loading process keeps one class per key, so
the same class from several payloads is one class object, and the sending
process maps the key to the original class (a round trip in one process gives
the class itself). No random ids: payload bytes are deterministic.
"""

from __future__ import annotations

import hashlib
import sys
import types
from weakref import WeakKeyDictionary

from .. import _registry
from .._rebuild import rebuild_class, set_class_state
from .code import code_bytes

_keys: WeakKeyDictionary[type, str] = WeakKeyDictionary()

# Never copied: created by type() itself, or by the metaclass when it runs.
_SKIP_ALWAYS = frozenset({"__dict__", "__weakref__", "__module__", "__qualname__", "__doc__",
                          "__slots__", "__orig_bases__", "_abc_impl"})
# Enum internals that EnumType computes from the members.
_ENUM_INTERNALS = frozenset({
    "_member_names_", "_member_map_", "_value2member_map_", "_unhashable_values_",
    "_member_type_", "_value_repr_", "_new_member_", "_use_args_", "_singles_mask_",
    "_flag_mask_", "_all_bits_", "_boundary_", "_inverted_", "__new__", "_hashable_values_",
    "_unhashable_values_map_",
})


def _code_of(value):
    """The code object behind a method-like class attribute, if any."""
    func = value
    if isinstance(value, (staticmethod, classmethod)):
        func = value.__func__
    elif isinstance(value, property):
        func = value.fget
    code = getattr(func, "__code__", None)
    return code if isinstance(code, types.CodeType) else None


def class_key(cls: type) -> str:
    """Deterministic identity of a class definition (cached per class)."""
    try:
        return _keys[cls]
    except KeyError:
        pass
    digest = hashlib.sha256()
    digest.update(f"{cls.__module__}\0{cls.__qualname__}\0".encode())
    for base in cls.__bases__:
        digest.update(f"{base.__module__}.{base.__qualname__}\0".encode())
    for name, value in cls.__dict__.items():
        digest.update(name.encode("utf-8", "surrogatepass") + b"\0")
        code = _code_of(value)
        if code is not None:
            digest.update(code_bytes(code))
    key = f"{cls.__module__}.{cls.__qualname__}#{digest.hexdigest()[:24]}"
    _keys[cls] = key
    # The sending process maps the key to the live class, so that a payload
    # loaded where it was made gives back the original.
    _registry.remember(key, cls)
    return key


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


def reduce_class(pickler, cls: type):
    clsdict = cls.__dict__
    namespace = {"__module__": cls.__module__, "__qualname__": cls.__qualname__}
    doc = clsdict.get("__doc__")
    if doc is not None:
        namespace["__doc__"] = doc
    for name in ("__slots__", "__orig_bases__"):
        if name in clsdict:
            namespace[name] = clsdict[name]

    skip = _SKIP_ALWAYS
    slots = _slot_names(cls) if "__slots__" in clsdict else ()
    kwds = None
    enum_members = _enum_members(cls)
    if enum_members is not None:
        namespace.update(enum_members)
        skip = skip | _ENUM_INTERNALS | enum_members.keys()
        boundary = clsdict.get("_boundary_")
        if boundary is not None:
            kwds = {"boundary": boundary}

    attrs = {}
    for name, value in clsdict.items():
        if name in skip or name in slots:
            continue
        attrs[name] = value

    extras = {}
    if enum_members is not None:
        member_dicts = _enum_member_dicts(cls)
        if member_dicts:
            extras["member_dicts"] = member_dicts
    abc_subclasses = _abc_registered(cls)
    if abc_subclasses:
        extras["abc_register"] = abc_subclasses

    args = (type(cls), cls.__name__, cls.__bases__, namespace, class_key(cls))
    if kwds:
        args += (kwds,)
    return rebuild_class, args, (attrs, extras or None), None, None, set_class_state


def _enum_members(cls):
    """name -> value of each Enum member (aliases included), or None."""
    enum = sys.modules.get("enum")
    if enum is None or not isinstance(cls, enum.EnumType):
        return None
    member_map = cls.__dict__.get("_member_map_")
    if member_map is None:
        return None
    return {name: member._value_ for name, member in member_map.items()}


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
