"""Code written against cloudpickle's public API runs with ``import marinade as cloudpickle``.

Covers the names cloudpickle exports, the call signatures people use, and the
two documented ways of customising its Pickler: ``reducer_override`` chaining
and ``dispatch_table``.
"""

import inspect
import io
import pickle
import threading

import pytest

import marinade

from helpers import LOAD, run_roundtrip

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
