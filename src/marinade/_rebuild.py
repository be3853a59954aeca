"""Load-time reconstructors: the stable interface of the payload format.

Every function here is named inside payloads, so none may ever be renamed,
moved or have its signature changed incompatibly. Add new ones instead.
Whatever a payload can rebuild with standard-library callables
(``types.FunctionType``, ``types.CellType``, ``setattr``...) does not come here.

These functions must use nothing from marinade but this module: standalone
payloads ship them by value, so they rely only on the standard library and on
names they import inside their own bodies.
"""

from __future__ import annotations

import sys
import types


def _version_error(tag):
    import pickle

    return pickle.UnpicklingError(
        f"this payload holds code compiled by CPython {tag // 256}.{tag % 256} and cannot "
        f"run on CPython {sys.version_info[0]}.{sys.version_info[1]}: bytecode differs between "
        f"versions. Load it with CPython {tag // 256}.{tag % 256}, or make it with "
        f"marinade.dumps(obj, portable=True) to load it on any supported version "
        f"(functions and classes; a suspended generator or coroutine only resumes on the "
        f"version that paused it)."
    )


_HERE = sys.version_info[0] * 256 + sys.version_info[1]
# bytes -> code. A plain dict, not a weak one: a weak cache forgets a code
# object as soon as the loaded function is dropped, so loading the same small
# payload again paid marshal.loads every time. Cleared when full, so memory
# stays bounded whatever the process loads.
_code_cache: dict = {}
_CODE_CACHE_SIZE = 512


def load_code(data, tag):
    """Rebuild a code object from canonical marshal bytes made by CPython ``tag``.

    Loads of the same bytes share one code object (a payload with thousands
    of closures of one function, or the same payload loaded again).
    """
    code = _code_cache.get(data)
    if code is not None and tag == _HERE:
        return code
    return _unmarshal(_code_cache, data, tag, _is_code, "marshalled code")


_table_cache: dict = {}


def load_code_table(data, tag):
    """A tuple of code objects from canonical marshal bytes made by CPython ``tag``.

    A class ships all its methods' code in one table: one ``marshal.loads``
    per class, and strings the methods share stored once. Each method is then
    ``types.FunctionType(operator.getitem(table, i), globals, ...)``.
    """
    codes = _table_cache.get(data)
    if codes is not None and tag == _HERE:
        return codes
    return _unmarshal(_table_cache, data, tag, _is_code_tuple,
                      "a marshalled tuple of code objects")


def _is_code(value):
    return type(value) is types.CodeType


def _is_code_tuple(value):
    return type(value) is tuple and {types.CodeType}.issuperset(map(type, value))


def _unmarshal(cache, data, tag, valid, expected):
    """``marshal.loads(data)`` once the version is checked, validated and cached."""
    if tag != _HERE:
        raise _version_error(tag)
    import marshal

    value = marshal.loads(data)
    if not valid(value):
        import pickle

        raise pickle.UnpicklingError(f"expected {expected}, got {type(value).__name__}")
    if len(cache) >= _CODE_CACHE_SIZE:
        cache.clear()
    cache[data] = value
    return value


def function(data, tag, globals, closure=None):
    """``types.FunctionType`` on code from ``load_code(data, tag)``.

    ``globals`` is the (shared, later filled) globals dict, or for a function
    that uses no globals just its module name.
    """
    # C code that imports (PyImport_Import: ``Generic[T]`` on 3.12+) reads
    # ``__builtins__`` from the globals of the Python function calling it.
    if type(globals) is str:
        globals = {"__name__": globals, "__builtins__": sys.modules["builtins"]}
    elif "__builtins__" not in globals:
        globals["__builtins__"] = sys.modules["builtins"]
    code = _code_cache.get(data)  # load_code's hit path, inlined: the lambda load hot path
    if code is None or tag != _HERE:
        code = load_code(data, tag)
    return types.FunctionType(code, globals, None, None, closure)


def cell(*contents):
    """``types.CellType``: an empty cell, or one holding ``contents[0]``."""
    return types.CellType(*contents)


def _registry():
    mod = sys.modules.get("marinade._registry")
    if mod is None:
        # Standalone payload in a process without marinade: keep a registry
        # module under the same name, so later loads share class identity.
        import threading
        import types
        import weakref

        mod = types.ModuleType("marinade._registry")
        mod.classes = weakref.WeakValueDictionary()
        mod.keys = weakref.WeakKeyDictionary()
        mod.by_value = weakref.WeakSet()
        mod.fresh = set()  # (as in marinade._registry)
        mod.lock = threading.RLock()
        mod = sys.modules.setdefault("marinade._registry", mod)
    return mod


def _init_subclass_owner(bases):
    """The class whose ``__init_subclass__`` a new class with ``bases`` would call."""
    for base in bases:
        for klass in base.__mro__:
            if "__init_subclass__" in klass.__dict__:
                return None if klass is object else klass
    return None


def _quiet_init_subclass(cls, **kwargs):
    pass


def _constructing_metaclass(metaclass, by_value):
    """The first metaclass in the MRO that is imported by reference.

    Metaclass code that itself travels by value is not run again (its effects
    on the class are in the state); the framework metaclass under it is.
    """
    for klass in metaclass.__mro__:
        if klass not in by_value:
            return klass
    return type


def _make_class(metaclass, maker, name, bases, namespace, kwds, quiet_owner):
    """The class statement, with ``quiet_owner.__init_subclass__`` silenced."""
    ns = maker.__prepare__(name, bases, **kwds)
    if type(ns) is dict:
        ns.update(namespace)  # (a class's methods may be in it: one C call)
    else:
        for attr, value in namespace.items():  # EnumDict & co. watch each item
            ns[attr] = value
    if quiet_owner is not None:
        saved = quiet_owner.__dict__["__init_subclass__"]
        type.__setattr__(quiet_owner, "__init_subclass__", classmethod(_quiet_init_subclass))
    try:
        if maker is metaclass:
            return metaclass(name, bases, ns, **kwds)
        cls = maker.__new__(metaclass, name, bases, ns, **kwds)
        if maker.__init__ is not type.__init__:
            maker.__init__(cls, name, bases, ns, **kwds)
        return cls
    finally:
        if quiet_owner is not None:
            type.__setattr__(quiet_owner, "__init_subclass__", saved)


def rebuild_class(metaclass, name, bases, namespace, key, kwds=None):
    """Create a class sent by value, or return the one already loaded with ``key``.

    ``key`` is a digest of the class definition: the same class loaded from
    several payloads comes back as one object, and a live class is never reset.
    Code that travels by value (the ``__init_subclass__`` of a by-value base, a
    by-value metaclass) is not run again when the class is created: its effects
    on the class are part of the state the payload carries, and it may need
    class keyword arguments that a class object does not remember. (Unless the
    base was loaded by an earlier payload: then its ``__init_subclass__`` runs
    in ``set_class_state``, to register the class with the live base.) Framework
    code imported by reference (ABCMeta, EnumType, a base that registers its
    subclasses) runs as it did for the original class statement.
    """
    reg = _registry()
    with reg.lock:
        cls = reg.classes.get(key)
        if cls is not None:
            return cls
        kwds = kwds or {}
        maker = type if metaclass is type else _constructing_metaclass(metaclass, reg.by_value)
        owner = _init_subclass_owner(bases)
        if owner is not None and owner in reg.by_value:
            cls = _make_class(metaclass, maker, name, bases, namespace, kwds, owner)
            if owner not in reg.fresh:
                # The base came alive from an earlier payload, so what its
                # __init_subclass__ did for this class where it was defined
                # (a registry entry in the base) is in no state this payload
                # sets: it runs once the class has its own state.
                later = getattr(reg, "init_subclass_later", None)
                if later is None:
                    later = reg.init_subclass_later = {}
                later[cls] = kwds
        else:
            try:
                cls = _make_class(metaclass, maker, name, bases, namespace, kwds, None)
            except TypeError:
                if owner is None:
                    raise
                # A framework __init_subclass__ that needs class keywords the
                # class object does not remember: create it without.
                cls = _make_class(metaclass, maker, name, bases, namespace, kwds, owner)
        reg.classes[key] = cls
        keys = getattr(reg, "keys", None)  # absent in registries made by older payloads
        if keys is not None:
            keys[cls] = key
        reg.by_value.add(cls)
        reg.fresh.add(cls)
        _tell_cloudpickle(cls, key)
        return cls


def _tell_cloudpickle(cls, key):
    """Give ``cls`` the cloudpickle class-tracker id ``marinade:<key>``, if
    cloudpickle is loaded here.

    A framework that ships with cloudpickle (joblib, Dask) sends results back
    that way: the class of a result then carries this id, which the process
    that sent the class with marinade maps to its own class (it registered the
    same id), so ``type(result) is Point`` and ``except MyError`` hold there.
    """
    module = sys.modules.get("cloudpickle.cloudpickle")
    by_id = getattr(module, "_DYNAMIC_CLASS_TRACKER_BY_ID", None)
    by_class = getattr(module, "_DYNAMIC_CLASS_TRACKER_BY_CLASS", None)
    lock = getattr(module, "_DYNAMIC_CLASS_TRACKER_LOCK", None)
    if by_id is None or by_class is None or lock is None:
        return
    tracker_id = "marinade:" + key
    try:
        with lock:
            by_id.setdefault(tracker_id, cls)
            by_class.setdefault(cls, tracker_id)  # (keeps an id cloudpickle gave it)
    except TypeError:  # not the mappings this was written for: leave them
        pass


def set_class_state(cls, state):
    """Set what could not be part of the class statement: methods, attributes...

    Only for a class this load created: a class that was already alive keeps
    its current state (class attributes changed since are not reset).
    ``state`` is ``(attributes, extras)``; ``extras`` is None or a dict with
    optional keys ``member_dicts`` (Enum member attributes), ``abc_register``
    (virtual subclasses to register with an ABC) and ``delete`` (names that
    only the rebuilding needed, removed once the attributes are set).
    Attributes are set with ``type.__setattr__``: a metaclass ``__setattr__``
    (EnumType refuses some names) guards user code, not state being restored.
    """
    reg = _registry()
    # Under the lock, and marked done only once it worked: another thread
    # loading the same class waits here instead of seeing it half set, and a
    # load that failed midway leaves the class to be completed by the next.
    with reg.lock:
        if cls not in reg.fresh:
            return
        attrs, extras = state
        for attr, value in attrs.items():
            type.__setattr__(cls, attr, value)
        if extras:
            for attr in extras.get("delete", ()):
                if attr in cls.__dict__:
                    type.__delattr__(cls, attr)
            for member_name, member_attrs in extras.get("member_dicts", {}).items():
                vars(cls[member_name]).update(member_attrs)
            for subclass in extras.get("abc_register", ()):
                cls.register(subclass)
        later = getattr(reg, "init_subclass_later", None)
        if later and cls in later:
            kwds = later.pop(cls)
            try:
                super(cls, cls).__init_subclass__(**kwds)
            except TypeError:
                pass  # keywords the class object does not remember: as before, not run
        reg.fresh.discard(cls)


def set_class_methods(cls, attrs):
    """Set a fresh class's methods ahead of the rest of its state (since 0.6).

    For a class whose state holds instances of itself (``Money.ZERO =
    Money(0)``): pickle makes them while it reads the state, before
    ``set_class_state`` runs, and their ``__setstate__``, ``__new__`` or
    ``__reduce__`` must be on the class by then. Like ``set_class_state``,
    only for a class this load created; the class stays fresh for the
    ``set_class_state`` that follows.
    """
    reg = _registry()
    with reg.lock:
        if cls in reg.fresh:
            for attr, value in attrs.items():
                type.__setattr__(cls, attr, value)


def enum_member(cls, *args):
    """``__new__`` of an Enum class while it is rebuilt: one member, made as it was.

    The class body of the payload maps each member name to
    ``(value, data_args)``: the member is ``_member_type_.__new__(cls,
    *data_args)`` (``object.__new__(cls)`` for plain enums) with ``_value_``
    set, so a custom ``__new__`` (whose arguments are not kept anywhere) need
    not run again. EnumType passes tuple-typed enums their arguments wrapped in
    one more tuple.
    """
    if len(args) == 1:
        (args,) = args
    value, data_args = args
    member_type = cls._member_type_
    if member_type is object:
        member = object.__new__(cls)
    else:
        member = member_type.__new__(cls, *data_args)
    member._value_ = value
    return member


def shared_object(key, factory, attrs=None):
    """``factory()`` the first time ``key`` loads in this process, the same object after.

    For objects that must keep one identity across payloads, as classes sent
    by value do (a ``TypeVar`` from ``__main__``, in a generic class of one
    payload and a function of another). ``key`` is a digest of the object's
    definition; the sender maps it to the original, so a payload loaded where
    it was made gives the original back. ``attrs`` are set on a newly made
    object only (``__module__``, which constructors read from the calling
    frame): an object already alive here is never changed.
    """
    reg = _registry()
    with reg.lock:
        obj = reg.classes.get(key)
        if obj is None:
            obj = factory()
            if attrs:
                for name, value in attrs.items():
                    setattr(obj, name, value)
            reg.classes[key] = obj
            keys = getattr(reg, "keys", None)  # absent in registries made by older payloads
            if keys is not None:
                keys[obj] = key
        return obj


def load_kit(names, defaults, data, tag):
    """The reconstructors a standalone payload carries: ``{name: function}``.

    ``data`` is the canonical marshal of their code objects (a tuple, in the
    order of ``names``), made by CPython ``tag``, with runs of zero bytes
    (half of it: the inline caches of the bytecode) packed as ``0xFF, n``
    and a literal 0xFF as ``0xFF, 0``. The functions share one
    globals dict, as they do in this module. They are made once per process
    for given bytes: a later payload carrying the same kit gets the same
    functions back from ``sys.modules["marinade._kits"]`` for a dict lookup.
    Standalone payloads ship this function itself by value, so it is short
    and uses nothing but local imports.
    """
    import sys

    kits = sys.modules.get("marinade._kits")
    if kits is None:
        import types

        kits = sys.modules.setdefault("marinade._kits", types.ModuleType("marinade._kits"))
    kit = kits.__dict__.get(data)
    if kit is None:
        import builtins
        import marshal
        import types

        if tag != sys.version_info[0] * 256 + sys.version_info[1]:
            raise ValueError("a standalone kit made by another CPython version")
        namespace = {"__name__": __name__, "__builtins__": builtins, "sys": sys}
        kit = {}
        chunks = data.split(b"\xff")
        table = b"".join([chunks[0]] + [b"\0" * c[0] + c[1:] if c[0] else b"\xff" + c[1:]
                                         for c in chunks[1:]])
        for name, code, func_defaults in zip(names, marshal.loads(table), defaults, strict=True):
            kit[name] = namespace[name] = types.FunctionType(code, namespace, name, func_defaults)
        kit = kits.__dict__.setdefault(data, kit)
    return kit


def _kit_code_table(data):
    """A class's code table in a standalone payload, loaded through the kit.

    ``marshal.loads`` once per process for given bytes, as ``load_code_table``
    does for default payloads (a class loaded again costs a dict lookup). The
    cache lives beside the kits in ``sys.modules["marinade._kits"]``. No
    version check of its own: ``load_kit`` refuses a kit from another CPython
    version, and kit and table come from one dump. (Shipped in every
    standalone payload with a class: kept short.)
    """
    cache = sys.modules["marinade._kits"].__dict__.setdefault("code tables", {})
    codes = cache.get(data)
    if codes is None:
        if len(cache) > 511:
            cache.clear()
        import marshal

        codes = cache[data] = marshal.loads(data)
    return codes


def set_subclass_state(obj, state):
    """State setter for an instance whose base class's reduce leaves out the
    subclass's attributes (since 0.5): ``state`` is ``(base_state, own)``.

    ``base_state`` (None for none) goes where BUILD would put it (the
    object's ``__setstate__``, numpy's for an ndarray subclass); ``own`` is
    the instance dict, or ``(dict or None, slot values)``, set as BUILD sets
    a plain state. Standalone payloads ship this function by value, so it
    names nothing outside itself.
    """
    base_state, own = state
    for part, use_setstate in ((base_state, True), (own, False)):
        if part is None:
            continue
        setstate = getattr(obj, "__setstate__", None) if use_setstate else None
        if setstate is not None:
            setstate(part)
            continue
        slot_values = None
        if type(part) is tuple and len(part) == 2:
            part, slot_values = part
        if part:
            obj.__dict__.update(part)
        if slot_values:
            for name, value in slot_values.items():
                setattr(obj, name, value)


def traceback(entries):
    """A traceback rebuilt from ``(filename, name, qualname, module, lineno)``
    entries, outermost call first (since 0.4).

    For printing and inspection where the exception lands: each frame is the
    unstarted frame of an empty generator whose code carries the entry's
    file, function and line, in globals holding only ``__name__``. No code of
    the payload runs, and the frames have no local variables. Standalone
    payloads ship this function by value, so it uses only local imports.
    """
    import types

    def frame_stub():
        yield

    stub = frame_stub.__code__
    # Where an unstarted frame says it stands, relative to its code's first
    # line (the def line or the next, depending on the CPython version). None
    # if a line table was dropped: the frames' f_lineno is None then
    # (tb_lineno, which tracebacks print, is set).
    probe = frame_stub().gi_frame.f_lineno
    shift = 0 if probe is None else probe - stub.co_firstlineno
    namespaces = {}
    tb = None
    for filename, name, qualname, module, lineno in reversed(entries):
        code = stub.replace(co_filename=filename, co_name=name, co_qualname=qualname,
                            co_firstlineno=max(lineno - shift, 1))
        namespace = namespaces.get(module)
        if namespace is None:
            namespace = namespaces[module] = {"__name__": module}
        tb = types.TracebackType(tb, types.FunctionType(code, namespace)().gi_frame, -1, lineno)
    return tb


# One module namespace per (producer process, module name), for the payloads
# of marinade's multiprocessing integration (since 0.6): a pool's initializer
# and its tasks travel in separate payloads, yet must see one module, as they
# do with the stdlib, where the worker imports the module once.
# _producer_spaces: (producer, module name) -> namespace. _producer_records:
# id(namespace) -> (namespace, record), where record maps a name to (the value
# last shipped, a copy of its items or None), or to _CHANGED_HERE once this
# process changed it. (No lock: a pool worker loads in one thread.)
_producer_spaces: dict = {}
_producer_records: dict = {}
_PRODUCER_SPACES_MAX = 256
_CHANGED_HERE = ("set here",)  # a unique marker (a tuple: records only hold tuples)
_SNAPSHOT_TYPES = (dict, list, set)
# Larger containers get no copy of their items: it would double their memory
# (and, in a fork child, touch every item, unsharing the pages fork shares).
# Only rebinding them counts as a change.
_SNAPSHOT_MAX_ITEMS = 1024


def _producer_globals(producer, name, package=None):
    """The globals dict of module ``name`` of the process ``producer`` (a
    token the producer picked), made on first use (since 0.6).

    Every payload from that process that names this module here gets the same
    dict back, and its functions share it: a global one of them sets (a pool
    initializer's ``global conn``) is seen by the others, across payloads.
    Payloads fill it through ``_merge_producer_globals``. Not a restricted-mode
    reconstructor: only the multiprocessing integration makes these payloads,
    and it loads them with plain ``pickle``.
    """
    key = (producer, name)
    namespace = _producer_spaces.get(key)
    if namespace is None:
        namespace = {"__name__": name}
        if package is not None:
            namespace["__package__"] = package
        namespace["__builtins__"] = sys.modules["builtins"]
        namespace = _producer_namespace(key, namespace, {})
    return namespace


def _producer_namespace(key, namespace, record):
    """Registers ``namespace`` (and its record) under ``key``; gives the one registered."""
    if len(_producer_spaces) >= _PRODUCER_SPACES_MAX:
        # A process fed by many short-lived producers: forget the oldest (their
        # functions keep their dicts; a later payload starts a new one).
        for old in list(_producer_spaces)[:_PRODUCER_SPACES_MAX // 4]:
            _producer_records.pop(id(_producer_spaces.pop(old, None)), None)
    namespace = _producer_spaces.setdefault(key, namespace)
    _producer_records.setdefault(id(namespace), (namespace, record))
    return namespace


def _merge_producer_globals(namespace, values):
    """``namespace.update(values)`` for a ``_producer_globals`` dict, except the
    names this process changed since they last arrived (since 0.6).

    A payload ships the values its sender had; this process may have rebound
    some of those globals since (an initializer's ``global conn; conn = ...``),
    deleted them, or changed the items of a dict, list or set in place (one
    of up to _SNAPSHOT_MAX_ITEMS items when it arrived): those keep this
    process's value, now and later. The others (the sender changed them, or
    nobody did) take the shipped value. A name set here before any payload
    shipped it counts as changed here.
    """
    entry = _producer_records.get(id(namespace))
    if entry is None or entry[0] is not namespace:  # (forgotten meanwhile: a plain update)
        namespace.update(values)
        return
    record = entry[1]
    for name, value in values.items():
        last = record.get(name)
        if last is None:
            if name in namespace:
                record[name] = _CHANGED_HERE
                continue
        elif last is _CHANGED_HERE:
            continue
        else:
            shipped, items = last
            if namespace.get(name, _CHANGED_HERE) is not shipped or (
                    items is not None and not _same_items(shipped, items)):
                record[name] = _CHANGED_HERE  # changed here: ours from now on
                continue
        namespace[name] = value
        record[name] = (value, _snapshot(value))


def _snapshot(value):
    if type(value) in _SNAPSHOT_TYPES and len(value) <= _SNAPSHOT_MAX_ITEMS:
        return value.copy()
    return None


def _same_items(container, snapshot):
    # The snapshot holds the same objects: == compares them by identity first,
    # so only items replaced here run their own __eq__ (which may refuse).
    try:
        return bool(container == snapshot)
    except Exception:
        return False


def _adopt_producer_globals(producer, name, namespace):
    """Registers ``namespace`` (a module dict this process inherited by fork
    from ``producer``) as that producer's module ``name`` (since 0.6).

    Called in a fork child before it runs anything else: every current value
    counts as shipped by the producer, so the child's later changes are told
    apart from the producer's.
    """
    record = {key: (value, _snapshot(value)) for key, value in list(namespace.items())}
    old = _producer_spaces.pop((producer, name), None)
    _producer_records.pop(id(old), None)
    _producer_namespace((producer, name), namespace, record)
