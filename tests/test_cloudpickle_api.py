"""Code written against cloudpickle's public API runs with ``import marinade as cloudpickle``.

Covers the names cloudpickle exports, the call signatures people use, and the
two documented ways of customising its Pickler: ``reducer_override`` chaining
and ``dispatch_table``.
"""

import builtins
import inspect
import io
import pickle
import sys
import threading
import types

import pytest

import marinade

from helpers import LOAD, run_roundtrip, run_script

cloudpickle = pytest.importorskip("cloudpickle")


def test_exports_and_constants():
    missing = [name for name in cloudpickle.__all__ if not hasattr(marinade, name)]
    assert missing == []
    assert callable(marinade.list_registry_pickle_by_value)  # public, though not in its __all__
    assert marinade.CloudPickler is marinade.Pickler
    assert issubclass(marinade.Pickler, pickle.Pickler)
    assert marinade.DEFAULT_PROTOCOL == cloudpickle.DEFAULT_PROTOCOL == pickle.HIGHEST_PROTOCOL
    assert issubclass(marinade.PicklingError, pickle.PicklingError)


@pytest.mark.parametrize("name", ["dumps", "dump", "loads", "load"])
def test_keyword_arguments_are_accepted(name):
    # Every parameter cloudpickle's function takes by keyword, marinade takes too.
    ours = inspect.signature(getattr(marinade, name)).parameters
    theirs = inspect.signature(getattr(cloudpickle, name)).parameters
    by_keyword = [p for p, param in theirs.items()
                  if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)]
    if name in ("loads", "load"):
        # pickle.loads' text-decoding options only matter for Python 2 payloads.
        by_keyword = [p for p in by_keyword if p not in ("fix_imports", "encoding", "errors")]
    assert [p for p in by_keyword if p not in ours] == []


def test_positional_buffer_callback():
    buffers = []
    data = marinade.dumps(pickle.PickleBuffer(bytearray(b"xyz")), 5, buffers.append)
    assert bytes(pickle.loads(data, buffers=buffers)) == b"xyz"


def test_dump_load_and_out_of_band_buffers():
    def triple(x):
        return 3 * x

    file = io.BytesIO()
    marinade.dump({"f": lambda x: triple(x) + 1}, file, protocol=4)
    file.seek(0)
    assert marinade.load(file)["f"](2) == 7
    assert marinade.loads(pickle.dumps([1, 2])) == [1, 2]  # plain pickle payloads too

    buffers = []
    data = marinade.dumps(pickle.PickleBuffer(bytearray(b"abc" * 100)), protocol=5,
                          buffer_callback=buffers.append)
    assert len(buffers) == 1 and len(data) < 100
    assert bytes(marinade.loads(data, buffers=buffers)) == b"abc" * 100

    with pytest.raises(pickle.PicklingError):  # what cloudpickle users catch
        marinade.dumps({"lock": threading.Lock()})


def test_customised_picklers(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer="""
            import copyreg, io, os, weakref
            import marinade as cloudpickle

            class Secret:
                def __init__(self, value):
                    self.value = value

            class Money:
                def __init__(self, cents):
                    self.cents = cents

            class Tagged:
                def __init__(self, tag):
                    self.tag = tag

            def reduce_money(m):
                return Money, (m.cents,)

            class RedactingPickler(cloudpickle.CloudPickler):
                def reducer_override(self, obj):
                    if isinstance(obj, Secret):
                        return str, ("<redacted>",)
                    return super().reducer_override(obj)

            class TablePickler(cloudpickle.Pickler):
                dispatch_table = copyreg.dispatch_table.copy()
                dispatch_table[Money] = reduce_money
                # a type marinade has its own reducer for: the user's wins
                dispatch_table[weakref.WeakSet] = lambda ws: (sorted, (list(ws),))

            def dump_with(pickler_cls, obj, **kwargs):
                file = io.BytesIO()
                pickler = pickler_cls(file, **kwargs)
                pickler.dump(obj)
                return file.getvalue()

            class Keep:
                def __init__(self, n):
                    self.n = n
                def __lt__(self, other):
                    return self.n < other.n

            keep = [Keep(2), Keep(1)]
            money = Money(250)
            money.note = "reduce_money leaves this out"
            late_file = io.BytesIO()
            late = cloudpickle.Pickler(late_file, protocol=4)
            # loky-style: a table set on the instance after construction
            late.dispatch_table = {Tagged: lambda t: (str.upper, (t.tag,))}
            late.dump([Tagged("loky"), lambda: "still by value"])

            payloads = {
                "redacted": dump_with(RedactingPickler, {"s": Secret("pw"), "f": lambda: 7}),
                "table": dump_with(TablePickler, [money, weakref.WeakSet(keep)], protocol=5),
                "late": late_file.getvalue(),
                "plain": cloudpickle.dumps(lambda x: x * 2, protocol=cloudpickle.DEFAULT_PROTOCOL),
            }
            with open(os.environ["MARINADE_PAYLOAD"], "wb") as f:
                cloudpickle.dump(payloads, f)
        """,
        consumer=f"""
            import pickle
            {LOAD}
            redacted = pickle.loads(obj["redacted"])
            print(redacted["s"], redacted["f"]())
            money, kept = pickle.loads(obj["table"])
            print(type(money).__name__, money.cents, hasattr(money, "note"), type(kept).__name__,
                  [k.n for k in kept])
            tagged, f = pickle.loads(obj["late"])
            print(tagged, f())
            print(pickle.loads(obj["plain"])(21))
        """,
    )
    assert out.splitlines() == [
        "<redacted> 7",
        "Money 250 False list [1, 2]",
        "LOKY still by value",
        "42",
    ]


def test_dispatch_table_assigned_after_init_overrides_builtin_reducers():
    import weakref

    class Item:
        pass

    item = Item()
    file = io.BytesIO()
    pickler = marinade.Pickler(file)
    pickler.dispatch_table = {weakref.WeakSet: lambda ws: (list, ([],))}
    pickler.dump((weakref.WeakSet([item]), item))
    assert type(pickle.loads(file.getvalue())[0]) is list


# cloudpickle's submodules and helpers ----------------------------------------


def test_submodule_spellings():
    import marinade as cp  # "import marinade as cloudpickle", as user code spells it
    from marinade.cloudpickle import CloudPickler
    from marinade.cloudpickle_fast import CloudPickler as FastPickler

    assert CloudPickler is FastPickler is marinade.Pickler
    for module in (cp.cloudpickle, cp.cloudpickle_fast):
        # every public name of cloudpickle's own submodule API, with marinade's objects
        for name in cloudpickle.__all__:
            if name != "__version__":
                assert getattr(module, name) is getattr(marinade, name), (module, name)
        assert module.DEFAULT_PROTOCOL == pickle.HIGHEST_PROTOCOL
        assert module.list_registry_pickle_by_value is marinade.list_registry_pickle_by_value
        assert module.PicklingError is marinade.PicklingError
    scale = 3
    data = cp.cloudpickle_fast.dumps(lambda x: x * scale, protocol=4)
    assert pickle.loads(data)(2) == 6
    file = io.BytesIO()
    cp.cloudpickle.dump([lambda: "dumped"], file)
    file.seek(0)
    assert cp.cloudpickle_fast.load(file)[0]() == "dumped"
    # top level too, as cloudpickle re-exports them
    for name in ("subimport", "dynamic_subimport", "instance"):
        assert getattr(cp, name) is getattr(cp.cloudpickle, name)
        assert callable(getattr(cloudpickle, name))  # (they are cloudpickle's names)
    with pytest.raises(AttributeError):
        cp.no_such_name


_GLOBAL_G = 1


def _uses_globals(items):
    global _WRITTEN
    _WRITTEN = 1
    del _WRITTEN

    def nested():
        return io.BytesIO, _GLOBAL_G

    class Local(dict):
        attr = _GLOBAL_G

    return [len(x) for x in items], nested, Local, threading


def test_helpers_behave_like_cloudpickles():
    from marinade import cloudpickle as ours

    theirs = cloudpickle.cloudpickle
    for func in (_uses_globals, test_submodule_spellings, lambda: _GLOBAL_G):
        assert set(ours._extract_code_globals(func.__code__)) == set(
            theirs._extract_code_globals(func.__code__))
    assert set(ours._extract_code_globals(_uses_globals.__code__)) == {
        "_WRITTEN", "io", "_GLOBAL_G", "dict", "len", "threading"}

    assert ours.subimport("xml.dom") is sys.modules["xml.dom"]
    module = ours.dynamic_subimport("made_here", {"x": 41, "f": len})
    reference = theirs.dynamic_subimport("made_here", {"x": 41})
    assert type(module) is type(reference) and module.__name__ == "made_here"
    assert "made_here" not in sys.modules
    assert sorted(vars(module)) == sorted(set(vars(reference)) | {"f"})
    assert module.x == 41 and module.__builtins__ is builtins.__dict__

    @ours.instance
    class Single:
        value = 5

    assert Single.value == 5 and type(Single).__name__ == "Single"

    # is_tornado_coroutine asks Tornado's own check, only once Tornado is imported.
    async def native():
        pass

    assert ours.is_tornado_coroutine(native) is False
    fake_gen = types.ModuleType("tornado.gen")
    fake_gen.is_coroutine_function = lambda f: getattr(f, "__tornado_coroutine__", False)
    marked = types.FunctionType(native.__code__, {})
    marked.__tornado_coroutine__ = True
    sys.modules["tornado.gen"] = fake_gen
    try:
        assert ours.is_tornado_coroutine(marked) is True
        assert ours.is_tornado_coroutine(native) is False
        assert marinade.is_tornado_coroutine(marked) is True
    finally:
        del sys.modules["tornado.gen"]

    # The by-value registry under cloudpickle's private name, as a copy.
    module = types.ModuleType("by_value_for_test")
    sys.modules[module.__name__] = module
    try:
        marinade.register_pickle_by_value(module)
        assert "by_value_for_test" in ours._PICKLE_BY_VALUE_MODULES
        marinade.unregister_pickle_by_value(module)
        assert "by_value_for_test" not in ours._PICKLE_BY_VALUE_MODULES
    finally:
        del sys.modules[module.__name__]


def test_import_marinade_loads_no_compat_module(tmp_path):
    proc = run_script(tmp_path, """
        import sys
        import marinade
        print(sorted(m for m in sys.modules if "cloudpickle" in m))
        marinade.cloudpickle_fast.dumps
        print(sorted(m for m in sys.modules if "cloudpickle" in m))
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "[]", "['marinade.cloudpickle', 'marinade.cloudpickle_fast']"]


def test_sys_modules_alias(tmp_path):
    # Swapping marinade in for cloudpickle under code that imports it by name:
    # the submodule spellings resolve to marinade's too.
    out = run_roundtrip(
        tmp_path,
        producer="""
            import os, sys
            import marinade
            sys.modules["cloudpickle"] = marinade

            import cloudpickle
            import cloudpickle.cloudpickle as cp_module
            from cloudpickle.cloudpickle import CloudPickler, _extract_code_globals, subimport
            from cloudpickle.cloudpickle_fast import dumps

            class Point:
                def __init__(self, x):
                    self.x = x

            assert CloudPickler is marinade.Pickler and dumps is marinade.dumps
            assert cloudpickle.cloudpickle_fast.CloudPickler is marinade.Pickler
            assert cp_module.register_pickle_by_value is marinade.register_pickle_by_value
            assert subimport("os") is os and "Point" in _extract_code_globals(
                (lambda: Point).__code__)
            real = [m for m, mod in sys.modules.items()
                    if "cloudpickle" in m and "marinade" not in getattr(mod, "__file__", "")]
            assert real == [], real  # no real cloudpickle was imported
            with open(os.environ["MARINADE_PAYLOAD"], "wb") as f:
                f.write(dumps([Point(4), lambda p: p.x + 1]))
        """,
        consumer=f"""
            {LOAD}
            point, f = obj
            print(type(point).__name__, f(point))
        """,
    )
    assert out == "Point 5"


# -- Pickler.dispatch_table read on the class, as cloudpickle code uses it -------

DISPATCH_PRODUCER = """
import collections, copyreg, io, pickle
import marinade

class Point:
    def __init__(self, x):
        self.x = x

def reduce_point(p):
    return (complex, (p.x, 7))   # a visible marker: loads as a complex number

table = marinade.CloudPickler.dispatch_table
assert isinstance(table, collections.ChainMap) and copyreg.dispatch_table in table.maps
assert isinstance(table.copy(), collections.ChainMap) and isinstance(table.new_child(), collections.ChainMap)
# nothing registered: a plain pickler has no table, the C fast path stays on
assert not hasattr(marinade.Pickler(io.BytesIO()), "dispatch_table")

class MyPickler(marinade.CloudPickler):
    dispatch_table = collections.ChainMap({Point: reduce_point}, marinade.CloudPickler.dispatch_table)

buf = io.BytesIO()
MyPickler(buf).dump([Point(3), lambda y: y * 2])
payloads = [buf.getvalue()]

marinade.Pickler.dispatch_table[Point] = reduce_point    # class-wide registration
try:
    payloads.append(marinade.dumps([Point(4), lambda y: y + 1]))
finally:
    del marinade.Pickler.dispatch_table[Point]
payloads.append(marinade.dumps([Point(5), lambda y: y - 1]))   # gone again
import os
with open(os.environ["MARINADE_PAYLOAD"], "wb") as f:
    pickle.dump(payloads, f)   # a list of bytes: plain pickle is enough
"""

DISPATCH_CONSUMER = """
import os, pickle
with open(os.environ["MARINADE_PAYLOAD"], "rb") as f:
    payloads = pickle.load(f)
for data in payloads:
    value, func = pickle.loads(data)
    print(type(value).__name__, value if isinstance(value, complex) else value.x, func(10))
"""


def test_class_level_dispatch_table_like_cloudpickle(tmp_path):
    out = run_roundtrip(tmp_path, producer=DISPATCH_PRODUCER, consumer=DISPATCH_CONSUMER)
    assert out.splitlines() == ["complex (3+7j) 20", "complex (4+7j) 11", "Point 5 9"]
