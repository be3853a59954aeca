"""The performance shortcuts give exactly what the general path gives.

- ``dumps`` of a simple function reuses a cached payload: it must equal what
  a ``Pickler`` writes, and follow every change made to the function.
- ``Pickler.dump`` installs a per-dump ``reducer_override`` closure that
  remembers plain instance types: mixed graphs must still round-trip, user
  overrides must still win, and no reference cycle may keep the pickler (and
  with it everything it memoized) alive after the dump.
- Per-code caches are bounded and stay correct when they are cleared.
- The canonical marshal form does not depend on reference counts.
"""

from __future__ import annotations

import dis
import gc
import io
import marshal
import pickle
import types
import weakref

import pytest

import marinade
from marinade.reduce import code as code_module
from marinade.reduce._marshal_canon import canonical_marshal

from helpers import LOAD, run_roundtrip

VARIANTS = '''
plain = lambda x: x + 1
def documented(x):
    """A docstring."""
    return x * 2
uses_builtin = lambda s: len(s)
uses_global = lambda: SCALE * 2
SCALE = 10
def with_defaults(a, b=2, *, c=3):
    return a + b + c
def annotated(a: int) -> int:
    return a
def make(n):
    return lambda x: x + n
closure = make(5)
renamed = lambda: 1
renamed.__name__ = "other"
requalified = lambda: 2
requalified.__qualname__ = "Somewhere.else"
remoduled = lambda: 3
remoduled.__module__ = "elsewhere"
redocumented = lambda: 4
redocumented.__doc__ = "set afterwards"
tagged = lambda: 5
tagged.tag = "attribute"
'''


def _namespace() -> dict:
    namespace = {"__name__": "__main__"}
    exec(compile(VARIANTS, "/tmp/variants.py", "exec"), namespace)
    return namespace


def _via_pickler(obj, protocol=None, standalone=False) -> bytes:
    file = io.BytesIO()
    marinade.Pickler(file, protocol, standalone=standalone).dump(obj)
    return file.getvalue()


NAMES = ["plain", "documented", "uses_builtin", "uses_global", "with_defaults", "annotated",
         "closure", "renamed", "requalified", "remoduled", "redocumented", "tagged"]


@pytest.mark.parametrize("protocol", [None, -1, 2, 3, 4, 5])
def test_dumps_of_functions_equals_the_pickler_output(protocol):
    namespace = _namespace()
    for name in NAMES:
        func = namespace[name]
        first = marinade.dumps(func, protocol)
        assert first == _via_pickler(func, protocol), name
        assert marinade.dumps(func, protocol) == first, name  # cached path, same bytes
        alone = marinade.dumps(func, protocol, standalone=True)
        assert alone == _via_pickler(func, protocol, standalone=True) != first, name
        assert marinade.dumps(func, protocol, standalone=True) == alone, name


def test_cached_payload_follows_changes_to_the_function():
    func = _namespace()["plain"]
    seen = {marinade.dumps(func)}
    changes = [
        lambda f: setattr(f, "__doc__", "now documented"),
        lambda f: setattr(f, "__name__", "renamed"),
        lambda f: setattr(f, "__qualname__", "Outer.renamed"),
        lambda f: setattr(f, "__defaults__", (7,)),
        lambda f: setattr(f, "__kwdefaults__", {"k": 1}),
        lambda f: setattr(f, "extra", 1),
        lambda f: setattr(f, "__code__", (lambda x: x * 3).__code__),
        lambda f: setattr(f, "__module__", "moved"),
    ]
    for change in changes:
        change(func)
        data = marinade.dumps(func)
        assert data == _via_pickler(func)
        assert data not in seen  # every change shows in the payload
        seen.add(data)


def test_changed_function_travels_with_its_changes(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer="""
            import os, marinade
            f = lambda x: x + 1
            marinade.dumps(f)  # fills the cache
            f.__name__ = "renamed"
            f.__doc__ = "changed"
            f.__defaults__ = (41,)
            open(os.environ["MARINADE_PAYLOAD"], "wb").write(marinade.dumps(f))
        """,
        consumer=LOAD + "\nprint(obj.__name__, obj.__doc__, obj())",
    )
    assert out == "renamed changed 42"


def test_dumps_with_buffer_callback_keeps_pickle_errors():
    func = _namespace()["plain"]
    with pytest.raises(ValueError):  # buffer_callback needs protocol 5, as in pickle
        marinade.dumps(func, 4, buffer_callback=lambda buf: None)


def test_mixed_graph_with_plain_instances_round_trips(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer="""
            import os, marinade

            class Meta(type):
                pass

            class Plain:
                def __init__(self, v):
                    self.v = v

            class WithMeta(metaclass=Meta):
                def get(self):
                    return "meta"

            def make(n):
                return lambda: n

            # Instances first (their type is remembered as plain), then
            # classes, metaclass instances and functions of the same dump.
            obj = [Plain(i) for i in range(50)] + [Plain, WithMeta, WithMeta(), make(3),
                                                    Meta, Plain(99)]
            open(os.environ["MARINADE_PAYLOAD"], "wb").write(marinade.dumps(obj))
        """,
        consumer=LOAD + """
plain, with_meta, wm, fn, meta = obj[50:55]
print(sum(p.v for p in obj[:50]), obj[0].__class__ is plain, obj[-1].v,
      type(wm) is with_meta, type(with_meta) is meta, wm.get(), fn())""",
    )
    assert out == "1225 True 99 True True meta 3"


def test_subclass_reducer_override_is_still_called():
    calls = []

    class Counting(marinade.Pickler):
        def reducer_override(self, obj):
            calls.append(type(obj).__name__)
            return super().reducer_override(obj)

    class Plain:
        pass

    file = io.BytesIO()
    Counting(file).dump([Plain(), Plain(), lambda: 1])
    assert calls.count("Plain") == 2 and "function" in calls
    assert callable(pickle.loads(file.getvalue())[2])


def test_instance_attribute_reducer_override_is_respected():
    file = io.BytesIO()
    pickler = marinade.Pickler(file)
    seen = []

    def mine(obj):
        seen.append(obj)
        return NotImplemented

    pickler.reducer_override = mine
    pickler.dump([1.5j, range(3)])
    assert 1.5j in seen and range(3) in seen  # ours was called, and stays in place
    assert pickler.reducer_override is mine


@pytest.mark.parametrize("standalone", [False, True])
def test_pickler_is_freed_without_the_garbage_collector(standalone):
    class Plain:
        pass

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        pickler = marinade.Pickler(io.BytesIO(), standalone=standalone)
        pickler.dump([Plain(), lambda: 1])
        ref = weakref.ref(pickler)
        del pickler
        assert ref() is None  # no pickler -> override -> pickler cycle survives a dump
    finally:
        if was_enabled:
            gc.enable()


def test_same_pickler_dumps_twice():
    # As with pickle, the memo spans dumps: one Unpickler reads both.
    file = io.BytesIO()
    pickler = marinade.Pickler(file)
    pickler.dump([lambda: 1, lambda: "a"])
    pickler.dump([lambda: 2, lambda: "a"])
    file.seek(0)
    unpickler = pickle.Unpickler(file)
    assert [f() for f in unpickler.load()] == [1, "a"]
    assert [f() for f in unpickler.load()] == [2, "a"]


def test_code_caches_follow_the_life_of_code_objects():
    # The weak caches are keyed by id(code): their entries must go when the
    # code dies (no stale hit for a new object that reuses the id) and stay
    # correct for live code.
    namespace = {"__name__": "__main__"}
    funcs = []
    for i in range(12):
        exec(f"f{i} = lambda x: x + {i} + G{i}", namespace)
        funcs.append(namespace[f"f{i}"])
    first = [marinade.dumps(f) for f in funcs]
    assert [marinade.dumps(f) for f in funcs] == first
    for i, f in enumerate(funcs):
        assert code_module.global_names(f.__code__) == {f"G{i}"}
        assert marshal.loads(code_module.code_bytes(f.__code__)) == f.__code__
    ids = [id(f.__code__) for f in funcs]
    assert all(key in code_module._bytes_cache for key in ids)
    namespace.clear()
    del funcs, f
    code_module._info_cache.clear()  # the bounded level that holds code strongly
    gc.collect()
    for cache in (code_module._bytes_cache, code_module._names_cache):
        assert not any(key in cache for key in ids)


def test_canonical_marshal_ignores_reference_counts():
    source = (
        "def f(x):\n"
        "    a = ('a long string constant', 1234567, 1.5, b'raw', ('nested', 7654321))\n"
        "    return x in {'p', 'q', 'r'}, a, 'a long string constant', lambda: 1234567\n"
    )
    code = compile(source, "/tmp/canon.py", "exec").co_consts[0]
    canon = canonical_marshal(marshal.dumps(code))
    keep = list(code.co_consts) + [c for c in code.co_consts if isinstance(c, tuple)]
    held = canonical_marshal(marshal.dumps(code))  # constants now have more references
    reloaded = marshal.loads(canon)  # a different object graph (sharing as in canon)
    assert held == canon
    assert canonical_marshal(marshal.dumps(reloaded)) == canon
    assert reloaded == code
    del keep


def _dis_global_names(code) -> set[str]:
    """Independent oracle: the names dis reports for global-name opcodes."""
    ops = {"LOAD_GLOBAL", "STORE_GLOBAL", "DELETE_GLOBAL", "LOAD_NAME", "STORE_NAME",
           "DELETE_NAME", "LOAD_FROM_DICT_OR_GLOBALS"}
    found = {i.argval for i in dis.get_instructions(code) if i.opname in ops}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            found |= _dis_global_names(const)
    return found


def test_global_names_match_dis_including_extended_args():
    # 600 globals push name indexes past 255: EXTENDED_ARG prefixes.
    source = "def big():\n" + "".join(f"    v{i} = g{i}\n" for i in range(600))
    source += "    global out\n    out = [h for h in range(3) if h in HIDDEN]\n    del out\n"
    source += "class Body:\n    attr = value_in_class_body\n    x = lambda: inner_global\n"
    module = compile(source, "/tmp/names.py", "exec")
    for code in [module, *[c for c in module.co_consts if isinstance(c, types.CodeType)]]:
        code_module._names_cache.pop(id(code), None)
        names = code_module.global_names(code)
        assert names == _dis_global_names(code)
    big = next(c for c in module.co_consts if getattr(c, "co_name", "") == "big")
    assert {"g0", "g599", "out", "HIDDEN", "range"} <= code_module.global_names(big)
