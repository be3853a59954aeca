"""Load-time reconstructors of portable payloads (``dumps(..., portable=True)``).

Like ``_rebuild``, every public name here is part of the payload format and
must never be renamed, removed or change meaning. They run on the LOADING
interpreter: a portable payload carries source text, never bytecode, and
these functions compile it there, whatever CPython version made the payload.

A function travels as ``function(spec, globals, closure, made_by)``.
``made_by`` is the producing CPython as ``major * 256 + minor`` (absent from
payloads made before it was added); it only serves error messages. ``spec``
is a tuple of plain data describing where the code is in its source::

    (1, qualname, filename, lineno, text, span, freevars, future)

- ``1``: the format of the spec, so later versions can read older ones.
- ``qualname``: ``co_qualname`` of the original code object.
- ``filename``: ``co_filename`` of the original code (shown in tracebacks).
- ``lineno``: line of ``text``'s first line in that file (``co_firstlineno``).
- ``text``: the source lines holding the function. For a ``def``, the whole
  statement from its first decorator (decorators are compiled but never run).
  For a lambda, the lines holding it; ``span`` says where in them.
- ``span``: None for a ``def``; for a lambda ``(col, end_col)``, the UTF-8
  byte offsets where it starts on the first line of ``text`` and ends on the
  last one.
- ``freevars``: ``co_freevars`` of the original code, the order of the cells
  in ``closure``. The loading compiler may order them differently; cells are
  matched by name.
- ``future``: ``__future__`` feature names the code was compiled with
  (``("annotations",)`` or ``()``).

The code is compiled inside a small synthetic scope that reproduces its
context: an enclosing function binding the free variables (so they compile as
closure variables), and a class of the same name when the code was written in
a class body (for ``super()`` and private name mangling). Compiled code is
cached per spec in the loading process, and the source is registered in
``linecache`` so tracebacks show the real lines.

Classes travel as ``marinade._rebuild.rebuild_class`` followed by
``set_class_state`` below, whose state may name a *generator*: the standard
library function that made the class's generated methods, run again here
with the recorded parameters (see ``set_class_state``). A ``type X = ...``
alias travels as ``type_alias``, and a type variable with options older
versions lack (PEP 695 variance inference, PEP 696 defaults) as
``type_param``: both fail with a clear error where they cannot be made.

This module uses only the standard library (and ``marinade._rebuild`` for
classes).
"""

from __future__ import annotations

import sys
import types

_SPEC_FORMAT = 1
_SCOPE = "__marinade_scope__"

# spec -> code object. Cleared when full: bounded memory whatever is loaded.
_code_cache: dict = {}
_CODE_CACHE_SIZE = 512
# Files whose linecache entry this module made (and may extend).
_our_files: set = set()


def _error(message):
    from marinade._errors import UnpicklingError

    return UnpicklingError(message)


def _python(tag) -> str:
    if type(tag) is int:
        return f"CPython {tag // 256}.{tag % 256}"
    return "an unknown CPython version (the payload does not say)"


def _here() -> str:
    return f"CPython {sys.version_info[0]}.{sys.version_info[1]}"


def _compile_error(spec, exc, made_by):
    """The error for source that this interpreter cannot compile."""
    qualname, filename, lineno = spec[1], spec[2], spec[3]
    where = f"{type(exc).__name__}: {exc.msg}"
    lines = spec[4].splitlines()
    if exc.lineno is not None and lineno <= exc.lineno < lineno + len(lines):
        where += f", line {exc.lineno}: {lines[exc.lineno - lineno].strip()}"
    older = type(made_by) is int and made_by > sys.version_info[0] * 256 + sys.version_info[1]
    hint = (f"It was pickled on {_python(made_by)}, whose syntax is newer (type parameter "
            f"lists like def f[T](), type statements...): load it on {_python(made_by)} or "
            "later, or write the function without the newer syntax"
            if older else f"It was pickled on {_python(made_by)}")
    return _error(f"cannot load portable function {qualname!r} ({filename}, line {lineno}) on "
                  f"{_here()}: its source does not compile here ({where}). {hint}.")


def code(spec, made_by=None):
    """The code object ``spec`` describes, compiled by this interpreter (cached).

    ``made_by`` (the producing CPython, ``major * 256 + minor``) only
    improves the error when the source does not compile here.
    """
    found = _code_cache.get(spec)
    if found is not None:
        return found
    if type(spec) is not tuple or not spec or spec[0] != _SPEC_FORMAT:
        raise _error(f"unknown portable code format {spec[:1]!r}: this payload was made by "
                     "a newer marinade; upgrade marinade where it is loaded")
    try:
        found = _compile(spec)
    except SyntaxError as exc:  # syntax newer (or older) than this interpreter's
        raise _compile_error(spec, exc, made_by) from None
    if len(_code_cache) >= _CODE_CACHE_SIZE:
        _code_cache.clear()
    _code_cache[spec] = found
    _register_source(spec[2], spec[3], spec[4])
    return found


def function(spec, globals, closure=None, made_by=None):
    """``types.FunctionType`` on ``code(spec, made_by)``.

    ``globals`` is the (shared, later filled) globals dict, or for a function
    that uses no globals just its module name. ``closure`` holds cells in the
    order of ``spec``'s free variable names.
    """
    compiled = code(spec, made_by)
    if type(globals) is str:
        globals = {"__name__": globals}
    if "__builtins__" not in globals:
        globals["__builtins__"] = sys.modules["builtins"]
    if closure is not None:
        names = spec[6]
        if names != compiled.co_freevars:
            if sorted(names) != sorted(compiled.co_freevars) or len(names) != len(closure):
                raise _error(f"{spec[1]}: free variables {names} do not match the recompiled "
                             f"code's {compiled.co_freevars}")
            by_name = dict(zip(names, closure))
            closure = tuple(by_name[name] for name in compiled.co_freevars)
    return types.FunctionType(compiled, globals, None, None, closure)


def set_class_state(cls, state):
    """``marinade._rebuild.set_class_state``, and re-run the class's generator.

    ``state`` is ``(attributes, extras, generator)``. Only a class this load
    created is touched. ``generator`` is None or ``(kind, params)``:

    - ``("dataclass", params)``: ``dataclasses.dataclass(**params)`` is
      applied once the attributes are set (the fields travel as ``Field``
      objects in the attributes), so the methods it generates are generated
      by the loading interpreter's own ``dataclasses``.
    - ``("dataclass/2", {"params": params, "markers": markers})``: the same,
      also for classes made with ``slots=True`` (their ``__slots__`` came
      with the class statement; the slot descriptors survive ``dataclass()``)
      and for string annotations (PEP 563) of pseudo-fields: ``markers`` maps
      such names to ``"classvar"``, ``"initvar"`` or ``"kw_only"``, which
      ``dataclass()`` could not recognise by name in the loading
      ``__main__``. Older loaders refuse this kind with a clear error.
    - ``("namedtuple", {"typename", "fields", "defaults", "new_annotations",
      "generic"})``: ``collections.namedtuple`` makes the generated methods,
      which are copied onto the class *before* the attributes (methods of a
      ``typing.NamedTuple`` body override generated ones); ``generic`` adds
      the ``__class_getitem__`` of ``class N(NamedTuple, Generic[T])``.
    - ``("protocol", None)``: a ``typing.Protocol`` class. Its metaclass and
      ``@runtime_checkable`` derive attributes from the members (which ones
      depends on the version); they run again once the members are set.
    """
    from marinade import _rebuild

    attrs, extras, generator = state
    reg = _rebuild._registry()
    with reg.lock:
        if cls not in reg.fresh:
            return
        if generator is None:
            _rebuild.set_class_state(cls, (attrs, extras))
            return
        kind, params = generator
        if kind == "namedtuple":
            _namedtuple_methods(cls, params)
            _rebuild.set_class_state(cls, (attrs, extras))
        elif kind == "protocol":
            _rebuild.set_class_state(cls, (attrs, extras))
            _protocol(cls)
        elif kind == "dataclass" or kind == "dataclass/2":
            if kind == "dataclass":
                params = {"params": params}
            slots = _slot_descriptors(cls)
            _rebuild.set_class_state(cls, (attrs, extras))
            _dataclass(cls, params["params"], params.get("markers") or {}, slots)
        else:
            raise _error(f"unknown class generator {kind!r} for {cls.__qualname__}: this "
                         "payload was made by a newer marinade; upgrade marinade where it "
                         "is loaded")


def _slot_descriptors(cls) -> dict:
    """The slot descriptors of ``cls``'s own ``__slots__`` (by attribute name)."""
    slots = cls.__dict__.get("__slots__")
    if slots is None:
        return {}
    if isinstance(slots, str):
        slots = (slots,)
    found = {}
    for name in slots:
        if name.startswith("__") and not name.endswith("__"):
            name = f"_{cls.__name__.lstrip('_')}{name}"  # private name mangling
        value = cls.__dict__.get(name)
        if type(value) is types.MemberDescriptorType:
            found[name] = value
    return found


def _dataclass(cls, params, markers, slots):
    import dataclasses

    annotations = cls.__dict__.get("__annotations__")
    if markers:
        # PEP 563 strings that dataclass() resolves by name in the class's
        # module: the loading __main__ does not have them. Stand in the
        # objects they named while dataclass() runs.
        import typing

        stand_ins = {"classvar": lambda text: typing.ClassVar,
                     "initvar": dataclasses.InitVar,
                     "kw_only": lambda text: dataclasses.KW_ONLY}
        working = dict(annotations)
        for name, kind in markers.items():
            if name not in working or kind not in stand_ins:
                raise _error(f"{cls.__qualname__}: unknown dataclass annotation marker "
                             f"{kind!r} for {name!r}; upgrade marinade where it is loaded")
            working[name] = stand_ins[kind](working[name])
        type.__setattr__(cls, "__annotations__", working)
    try:
        made = dataclasses.dataclass(**params)(cls)
    finally:
        if markers:
            type.__setattr__(cls, "__annotations__", annotations)
    if made is not cls:
        raise _error(f"dataclass() replaced {cls.__qualname__} while loading it")
    fields = cls.__dict__.get("__dataclass_fields__", {})
    for name in markers:
        field = fields.get(name)
        if field is not None:
            field.type = annotations[name]  # the text, as on the producing side
    if slots:
        # dataclass() replaced each slot descriptor by the field's default
        # (or deleted it), as it does for classes without slots; with slots
        # the instances keep their values in the descriptors, defaults live
        # in __init__, as after dataclass(slots=True).
        for name, descriptor in slots.items():
            type.__setattr__(cls, name, descriptor)
        if params.get("frozen"):
            # dataclass(slots=True, frozen=True) adds these so that pickle can
            # restore instances despite the frozen __setattr__.
            for name, method in _frozen_slots_state().items():
                if name not in cls.__dict__:
                    type.__setattr__(cls, name, method)


_frozen_slots_methods: dict = {}


def _frozen_slots_state() -> dict:
    """``__getstate__``/``__setstate__`` that this interpreter's
    ``dataclass(frozen=True, slots=True)`` adds, taken from a tiny probe class."""
    if not _frozen_slots_methods:
        import dataclasses

        probe = dataclasses.dataclass(frozen=True, slots=True)(type("probe", (), {}))
        for name in ("__getstate__", "__setstate__"):
            method = probe.__dict__.get(name)
            if method is not None:
                _frozen_slots_methods[name] = method
    return _frozen_slots_methods


# What the class statement or the payload provides: never copied from the
# reference class that collections.namedtuple() makes.
_NAMEDTUPLE_OWN = frozenset({"__module__", "__qualname__", "__doc__", "__slots__", "__dict__",
                             "__weakref__"})


def _namedtuple_methods(cls, params):
    import collections

    fields = tuple(params["fields"])
    reference = collections.namedtuple(params["typename"], fields, rename=True,
                                       defaults=params.get("defaults"), module=cls.__module__)
    if reference._fields != fields:
        raise _error(f"{cls.__qualname__}: collections.namedtuple() here made fields "
                     f"{reference._fields}, the payload says {fields}")
    for name, value in reference.__dict__.items():
        if name not in _NAMEDTUPLE_OWN:
            type.__setattr__(cls, name, value)
    annotations = params.get("new_annotations")
    if annotations is not None:  # typing.NamedTuple annotates __new__ too
        cls.__dict__["__new__"].__func__.__annotations__ = annotations
    if params.get("generic"):
        # class N(NamedTuple, Generic[T]): NamedTuple's metaclass adds
        # Generic's __class_getitem__; take this version's from a probe.
        type.__setattr__(cls, "__class_getitem__", _generic_named_tuple_getitem())


_probes: dict = {}


def _generic_named_tuple_getitem():
    found = _probes.get("namedtuple_getitem")
    if found is None:
        import typing

        param = typing.TypeVar("param")
        probe = types.new_class("probe", (typing.NamedTuple, typing.Generic[param]),
                                exec_body=lambda ns: ns.update(__annotations__={"x": param},
                                                               __module__=__name__))
        found = _probes["namedtuple_getitem"] = probe.__dict__["__class_getitem__"]
    return found


def _protocol(cls):
    """Let this version's Protocol machinery derive what it derives from the
    members (``__protocol_attrs__``...), now that they are set."""
    import typing

    from marinade import _compat

    if not _compat.PY_3_13_PLUS:
        # What 3.13 records about a class body, in payloads made before
        # portable.py left it out: older typing counts them as members that
        # no class has.
        for name in ("__firstlineno__", "__static_attributes__"):
            if name in cls.__dict__:
                delattr(cls, name)
    type(typing.Protocol).__init__(cls, cls.__name__, cls.__bases__, {})
    if cls.__dict__.get("_is_runtime_protocol"):
        typing.runtime_checkable(cls)


_TYPE_PARAMS = ("TypeVar", "ParamSpec", "TypeVarTuple")


def type_param(kind, args, kwargs, made_by=None):
    """``typing.<kind>(*args, **kwargs)`` for a type parameter with newer options.

    Used for type variables that only a newer CPython can make: those of
    PEP 695 syntax (``class C[T]``, ``def f[T]``: ``infer_variance=True``,
    3.12+) and those with a ``default`` (3.13+). Where they cannot be made,
    the error names both versions instead of a bare ``TypeError``.
    """
    import typing

    if kind not in _TYPE_PARAMS:
        raise _error(f"unknown type parameter kind {kind!r}")
    try:
        return getattr(typing, kind)(*args, **kwargs)
    except TypeError as exc:
        options = ", ".join(f"{key}=" for key in kwargs)
        raise _error(f"cannot load the type parameter {args[0]!r} ({kind} with {options}, "
                     f"pickled on {_python(made_by)}) on {_here()}: {exc}. It comes from "
                     "syntax or options this version does not have (class C[T] / def f[T] "
                     f"need CPython 3.12+, defaults 3.13+). Load it on {_python(made_by)}"
                     ) from None


def type_alias(name, value, type_params=(), made_by=None):
    """``typing.TypeAliasType(name, value, type_params=...)`` (``type X = ...``, 3.12+).

    On an interpreter without ``type`` statements this fails with an error
    naming both versions instead of pickle's "Can't get attribute".
    """
    import typing

    make = getattr(typing, "TypeAliasType", None)
    if make is None:
        raise _error(f"cannot load the type alias {name!r} (a 'type {name} = ...' statement, "
                     f"pickled on {_python(made_by)}) on {_here()}, which has no type aliases "
                     f"(CPython 3.12+). Load it on {_python(made_by)}, or define it as a plain "
                     "assignment")
    return make(name, value, type_params=tuple(type_params))


# -- compiling ----------------------------------------------------------------

def _compile(spec):
    import ast

    _, qualname, filename, lineno, text, span, freevars, future = spec
    name = qualname.rpartition(".")[2]
    if span is None:  # a def statement, at its original indentation
        indented = text[:1] in (" ", "\t")
        tree = _parse("if 1:\n" + text if indented else text, filename, "exec",
                      lineno - 1 if indented else lineno)
        stmt = tree.body[0].body[0] if indented else tree.body[0]
        ast.increment_lineno(stmt, lineno - 2 if indented else lineno - 1)
    else:  # a lambda: its exact span, in parentheses so that it may span lines
        col, end_col = span
        raw = text.encode("utf-8")
        lines = raw.splitlines(keepends=True)
        if len(lines) == 1:
            expr = lines[0][col:end_col]
        else:
            expr = lines[0][col:] + b"".join(lines[1:-1]) + lines[-1][:end_col]
        tree = _parse(b"(" + expr + b"\n)", filename, "eval", lineno)
        node = tree.body
        shift = col - 1  # back to the original columns (the "(" took one)
        for child in ast.walk(node):
            if getattr(child, "lineno", None) == 1:
                child.col_offset += shift
            if getattr(child, "end_lineno", None) == 1:
                child.end_col_offset += shift
        ast.increment_lineno(node, lineno - 1)
        stmt = ast.Expr(node)
        ast.copy_location(stmt, node)
    private = _enclosing_class(qualname)
    module, has_scope = _scope(stmt, freevars, private)
    flags = 0
    for feature in future:
        import __future__

        flags |= getattr(__future__, feature).compiler_flag
    top = compile(module, filename, "exec", flags=flags, dont_inherit=True)
    found = top
    if has_scope:
        found = _child(found, _SCOPE)
    if private is not None:
        found = _child(found, private)
    target = _find_target(found, name, lineno)
    if target is None:
        raise _error(f"could not find {qualname} in its recompiled source ({filename}:{lineno})")
    return _requalify(target, target.co_qualname, qualname)


def _parse(source, filename, mode, first):
    """``ast.parse``; a SyntaxError says the file's line number (``first`` is
    the file line of the source's first line)."""
    import ast

    try:
        return ast.parse(source, filename, mode=mode)
    except SyntaxError as exc:
        if exc.lineno is not None:
            exc.lineno += first - 1
        raise


def _find_target(code, name, lineno):
    """The code object of ``name`` at ``lineno`` among ``code``'s constants.

    A generic function (``def f[T]()``, 3.12+) sits one level down, inside
    the annotation scope that binds its type parameters.
    """
    for const in code.co_consts:
        if type(const) is types.CodeType:
            if const.co_name == name and const.co_firstlineno == lineno:
                return const
            if const.co_name.startswith("<generic parameters of "):
                found = _find_target(const, name, lineno)
                if found is not None:
                    return found
    return None


def _child(code, name):
    for const in code.co_consts:
        if type(const) is types.CodeType and const.co_name == name:
            return const
    raise _error(f"internal error: no {name} in recompiled code")


def _enclosing_class(qualname):
    """The innermost class around the code: its name drives private name mangling."""
    parts = qualname.split(".")[:-1]
    for i in range(len(parts) - 1, -1, -1):
        nxt = parts[i + 1] if i + 1 < len(parts) else None
        if nxt != "<locals>" and not parts[i].startswith("<"):
            return parts[i]
    return None


def _scope(stmt, freevars, private):
    """A module whose innermost body is ``stmt``, with the context it needs.

    Returns ``(module, has_scope)``: whether an enclosing function was needed.
    """
    import ast

    for name in freevars + ((private,) if private else ()):
        if not name.isidentifier():
            raise _error(f"invalid name in portable code spec: {name!r}")
    bound = [n for n in freevars if not (private is not None and n == "__class__")]
    lines = []
    indent = ""
    if bound:
        lines.append(f"def {_SCOPE}():")
        indent = "    "
        if private is not None and private not in bound:
            # The class statement below must not turn references to the
            # class's (global) name into closure variables.
            lines.append(f"{indent}global {private}")
        lines.append(indent + " = ".join(bound) + " = None")
    if private is not None:
        lines.append(f"{indent}class {private}:")
        indent += "    "
    lines.append(indent + "pass")
    module = ast.parse("\n".join(lines) + "\n")
    holder = module
    while holder.body and not isinstance(holder.body[-1], ast.Pass):
        holder = holder.body[-1]
    holder.body[-1] = stmt
    return module, bool(bound)


def _requalify(code, old, new):
    """``code`` with ``old`` (the synthetic scope's qualname prefix) replaced by ``new``."""
    consts = code.co_consts
    if any(type(c) is types.CodeType for c in consts):
        consts = tuple(_requalify(c, old, new) if type(c) is types.CodeType else c
                       for c in consts)
    qualname = code.co_qualname
    if qualname == old or qualname.startswith(old + "."):
        qualname = new + qualname[len(old):]
    return code.replace(co_qualname=qualname, co_consts=consts)


def _register_source(filename, lineno, text):
    """Put ``text`` at ``lineno`` of ``filename`` in linecache, for tracebacks.

    A file linecache already knows (read from disk, or registered by
    IPython) is left alone; entries made here are merged, one payload's
    functions after another's, and never expire (no mtime).
    """
    import linecache

    entry = linecache.cache.get(filename)
    if entry is not None and filename not in _our_files:
        return
    lines = list(entry[2]) if entry is not None else []
    new = text.splitlines(keepends=True)
    if new and not new[-1].endswith("\n"):
        new[-1] += "\n"
    start = lineno - 1
    if len(lines) < start + len(new):
        lines.extend("\n" for _ in range(start + len(new) - len(lines)))
    lines[start:start + len(new)] = new
    linecache.cache[filename] = (sum(map(len, lines)), None, lines, filename)
    _our_files.add(filename)
