"""Pickle protocols 2-5, out-of-band buffers, and Pickler subclasses."""

from __future__ import annotations

import copyreg
import io
import pickle
import textwrap

import pytest

import marinade

from helpers import run_roundtrip


def src(*parts: str) -> str:
    return "\n".join(textwrap.dedent(part) for part in parts)


def test_all_protocols_round_trip(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer="""
            import os, pickle, pickletools
            import marinade

            class Point:
                __slots__ = ("x", "y")
                def __init__(self, x, y):
                    self.x, self.y = x, y
                def total(self):
                    return self.x + self.y

            class Tagged:
                label = "t"
                def describe(self):
                    return f"{self.label}:{self.n}"

            def make_scaler(k):
                def scale(v):
                    return v * k
                return scale

            def counter():
                n = 0
                def bump():
                    nonlocal n
                    n += 1
                    return n
                return bump

            tagged = Tagged()
            tagged.n = 7
            objects = [lambda a: a - 1, make_scaler(3), counter(), Point, Point(2, 5), tagged]
            payloads = {}
            for protocol in (2, 3, 4, 5):
                data = marinade.dumps(objects, protocol=protocol)
                # the stream really is in the protocol asked for
                first = next(pickletools.genops(data))
                assert first[0].name == "PROTO" and first[1] == protocol, first
                payloads[protocol] = data
            with open(os.environ["MARINADE_PAYLOAD"], "wb") as f:
                pickle.dump(payloads, f, protocol=2)
        """,
        consumer="""
            import os, pickle
            payloads = pickle.load(open(os.environ["MARINADE_PAYLOAD"], "rb"))
            for protocol, data in sorted(payloads.items()):
                lam, scale, bump, Point, point, tagged = pickle.loads(data)
                bump()
                print(protocol, lam(10), scale(4), bump(), Point(1, 2).total(), point.total(),
                      type(point) is Point, tagged.describe())
        """,
    )
    assert out.splitlines() == [f"{p} 9 12 2 3 7 True t:7" for p in (2, 3, 4, 5)]


def test_out_of_band_buffers_cross_process(tmp_path):
    pytest.importorskip("numpy")
    buffers_dir = tmp_path / "buffers"
    out = run_roundtrip(
        tmp_path,
        producer=f"""
            import os, pathlib
            import numpy as np
            import marinade

            table = np.arange(250_000, dtype=np.float64)  # 2 MB

            def make():
                weights = table
                def weighted(i):
                    return float(weights[i] * 2)
                return weighted

            buffers = []
            data = marinade.dumps(make(), protocol=5, buffer_callback=buffers.append)
            assert len(buffers) >= 1, buffers
            assert len(data) < 10_000, len(data)
            folder = pathlib.Path({str(buffers_dir)!r})
            folder.mkdir()
            for i, buf in enumerate(buffers):
                (folder / f"{{i}}.bin").write_bytes(buf.raw())
            open(os.environ["MARINADE_PAYLOAD"], "wb").write(data)
            print(len(buffers))
        """,
        consumer=f"""
            import os, pathlib, pickle
            folder = pathlib.Path({str(buffers_dir)!r})
            files = sorted(folder.iterdir(), key=lambda p: int(p.stem))
            buffers = [bytearray(p.read_bytes()) for p in files]
            data = open(os.environ["MARINADE_PAYLOAD"], "rb").read()
            f = pickle.loads(data, buffers=buffers)
            print(f(0), f(1234), f(249_999))
            # without the buffers the payload cannot be loaded
            try:
                pickle.loads(data)
            except pickle.UnpicklingError:
                print("needs buffers")
        """,
    )
    assert out.splitlines() == ["0.0 2468.0 499998.0", "needs buffers"]


def test_out_of_band_buffers_in_process():
    np = pytest.importorskip("numpy")
    array = np.arange(100_000, dtype=np.int64)

    def make():
        captured = array

        def head(n):
            return captured[:n].tolist()

        return head

    buffers = []
    data = marinade.dumps(make(), protocol=5, buffer_callback=buffers.append)
    assert len(buffers) >= 1
    assert len(data) < array.nbytes // 50
    head = pickle.loads(data, buffers=buffers)
    assert head(4) == [0, 1, 2, 3]
    # zero copy: the loaded array is a view on the buffer we handed over
    raw = buffers[0].raw()
    assert np.shares_memory(head.__closure__[0].cell_contents, np.frombuffer(raw, np.int64))

    # in band (no callback) the same closure carries its data
    inline = marinade.dumps(make(), protocol=5)
    assert len(inline) > array.nbytes
    assert pickle.loads(inline)(3) == [0, 1, 2]


class _Special:
    def __init__(self, v):
        self.v = v


def _custom_property(prop):
    return str, ("user's property",)


class _UserPickler(marinade.Pickler):
    # The user's table wins over marinade's reducer for property.
    dispatch_table = copyreg.dispatch_table.copy()
    dispatch_table[property] = _custom_property
    dispatch_table[_Special] = lambda obj: (int, (obj.v * 10,))

    def reducer_override(self, obj):
        if getattr(obj, "__name__", None) == "replace_me":
            return str, ("replaced by user",)
        return super().reducer_override(obj)


def test_pickler_subclass_reducers_win_cross_process(tmp_path):
    # The subclass is defined in the producer (run as __main__); the consumer
    # gets the user's reductions and marinade's for everything else.
    out = run_roundtrip(
        tmp_path,
        producer="""
            import copyreg, io, os
            import marinade

            class Special:
                def __init__(self, v):
                    self.v = v

            class Point:
                def __init__(self, x):
                    self.x = x
                @property
                def double(self):
                    return self.x * 2

            def replace_me():
                return "original"

            class UserPickler(marinade.Pickler):
                dispatch_table = copyreg.dispatch_table.copy()
                dispatch_table[Special] = lambda obj: (int, (obj.v * 10,))
                dispatch_table[property] = lambda obj: (str, ("user's property",))

                def reducer_override(self, obj):
                    if getattr(obj, "__name__", None) == "replace_me":
                        return str, ("replaced by user",)
                    return super().reducer_override(obj)

            buf = io.BytesIO()
            UserPickler(buf).dump([Special(4), replace_me, Point.__dict__["double"],
                                   lambda: "marinade lambda", Point(5)])
            open(os.environ["MARINADE_PAYLOAD"], "wb").write(buf.getvalue())
        """,
        consumer="""
            import os, pickle
            obj = pickle.loads(open(os.environ["MARINADE_PAYLOAD"], "rb").read())
            special, replaced, prop, lam, point = obj
            print(special, replaced, prop, lam())
            # the class travelled with marinade, its property through the user's table
            print(type(point).__name__, point.x, type(point).__dict__["double"])
        """,
    )
    assert out.splitlines() == [
        "40 replaced by user user's property marinade lambda",
        "Point 5 user's property",
    ]


def test_pickler_subclass_in_process():
    def replace_me():
        return "original"

    buf = io.BytesIO()
    _UserPickler(buf).dump([_Special(2), replace_me, property(len), (lambda: 3)])
    special, replaced, prop, lam = pickle.loads(buf.getvalue())
    assert (special, replaced, prop, lam()) == (20, "replaced by user", "user's property", 3)


def test_dispatch_table_set_on_instance():
    buf = io.BytesIO()
    pickler = marinade.Pickler(buf)
    pickler.dispatch_table = copyreg.dispatch_table.copy()
    pickler.dispatch_table[property] = _custom_property
    pickler.dump(property(len))
    assert pickle.loads(buf.getvalue()) == "user's property"
