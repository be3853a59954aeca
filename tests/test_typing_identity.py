"""Type variables from ``__main__`` keep one identity across payloads.

Like classes sent by value: the same ``TypeVar`` (``ParamSpec``,
``TypeVarTuple``, ``NewType``) carried by separate payloads, even from
separate producer processes, is one object where they are loaded, so a
generic class's ``__parameters__`` hold the very ``T`` that a function from
another payload is annotated with. Look-alikes stay distinct.
"""

from __future__ import annotations

import pickle
import sys
import textwrap
from pathlib import Path

import pytest

import marinade
from marinade import _compat
from test_standalone import NO_MARINADE

from helpers import run_roundtrip, run_script

BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)

# Writes several separate payloads (one dumps call each) to the file named by
# argv[1] (or MARINADE_PAYLOAD), as a pickled dict of bytes.
PRODUCER = """
import os, sys, typing
import marinade
from typing import Generic, ParamSpec, TypeVar, TypeVarTuple

T = TypeVar("T")
Twin = TypeVar("T")  # a look-alike: same name, same definition, another object
N = TypeVar("N", bound="Number")
S = TypeVar("S", str, bytes)
Co = TypeVar("Co", covariant=True)
P = ParamSpec("P")
Ts = TypeVarTuple("Ts")
UserId = typing.NewType("UserId", int)

class Number:
    pass

class Box(Generic[T]):
    def __init__(self, item: T) -> None:
        self.item = item

class Reader(Generic[Co, N]):
    pass

def first(items: list[T]) -> T:
    return items[0]

def call(f: typing.Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    return f(*args, **kwargs)

def twin(x: Twin) -> Twin:
    return x

def lookup(uid: UserId, *rest: typing.Unpack[Ts]) -> S:
    return uid

STANDALONE = os.environ.get("STANDALONE") == "1"
def dump(obj):
    return marinade.dumps(obj, standalone=STANDALONE)

payloads = {
    "vars": dump((T, N, S, Co, P, Ts, UserId)),
    "twin": dump(Twin),
    "classes": dump((Box, Reader, Box[int])),
    "funcs": dump((first, call, twin, lookup)),
}
path = sys.argv[1] if len(sys.argv) > 1 else os.environ["MARINADE_PAYLOAD"]
with open(path, "wb") as f:
    f.write(marinade.dumps(payloads))
"""

# Loads payloads from two producer runs (a.bin, b.bin), classes first, and
# checks identity against the variables loaded on their own.
CONSUMER = """
import pickle, sys, typing

def read(path):
    with open(path, "rb") as f:
        return pickle.load(f)

a, b = read(sys.argv[1]), read(sys.argv[2])
Box, Reader, BoxInt = pickle.loads(a["classes"])
first, call, twin, lookup = pickle.loads(b["funcs"])
T, N, S, Co, P, Ts, UserId = pickle.loads(b["vars"])
Twin = pickle.loads(a["twin"])
again = pickle.loads(a["vars"])
hints = typing.get_type_hints
print(Box.__parameters__ == (T,), Box.__parameters__[0] is T, BoxInt.__args__ == (int,),
      Reader.__parameters__[0] is Co, Reader.__parameters__[1] is N)
print(hints(first)["return"] is T, typing.get_args(hints(first)["items"])[0] is T,
      hints(call)["return"] is T, typing.get_args(hints(call)["f"])[0] is P)
lookup_hints = hints(lookup)
print(lookup_hints["uid"] is UserId, lookup_hints["return"] is S,
      typing.get_args(lookup_hints["rest"])[0] is Ts)
print(all(x is y for x, y in zip(again, (T, N, S, Co, P, Ts, UserId))))
print(Twin is not T, Twin.__name__, hints(twin)["x"] is Twin, hints(twin)["x"] is not T)
print(N.__bound__, S.__constraints__, Co.__covariant__, T.__module__, UserId(3),
      Box(5).item, type(Box[str](1)) is Box)
"""

EXPECTED = [
    "True True True True True",
    "True True True True",
    "True True True",
    "True",
    "True T True True",
    "ForwardRef('Number') (<class 'str'>, <class 'bytes'>) True __main__ 3 5 True",
]


def _produce_twice(tmp_path: Path, env: dict | None = None) -> tuple[Path, Path]:
    outs = []
    for name, seed in (("a.bin", "1"), ("b.bin", "2")):
        out = tmp_path / name
        proc = run_script(tmp_path, PRODUCER, args=[str(out)],
                          env={**(env or {}), "PYTHONHASHSEED": seed},
                          cwd=tmp_path / "producer")
        assert proc.returncode == 0, proc.stderr
        outs.append(out)
    return outs[0], outs[1]


def test_identity_across_payloads_and_producer_processes(tmp_path):
    a, b = _produce_twice(tmp_path)
    # Deterministic: two processes with different hash seeds, same bytes.
    payloads_a, payloads_b = (pickle.loads(p.read_bytes()) for p in (a, b))
    assert payloads_a == payloads_b
    proc = run_script(tmp_path, CONSUMER, args=[str(a), str(b)], cwd=tmp_path / "consumer")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == EXPECTED




def test_identity_in_standalone_payloads_without_marinade(tmp_path):
    a, b = _produce_twice(tmp_path, env={"STANDALONE": "1"})
    # (the consumer has no marinade at all: naming any of it would fail there)
    proc = run_script(tmp_path, NO_MARINADE + CONSUMER, args=[str(a), str(b)],
                      cwd=tmp_path / "isolated", python=BASE_PYTHON, flags=("-I", "-S"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == EXPECTED


def test_default_and_standalone_payloads_share_identity(tmp_path):
    # A standalone payload loaded before marinade is imported keeps its own
    # registry module; payloads loaded afterwards, with marinade, use it too.
    out = run_roundtrip(tmp_path, producer="""
        import os, typing, marinade
        T = typing.TypeVar("T")
        class Box(typing.Generic[T]):
            pass
        obj = (marinade.dumps(T, standalone=True), marinade.dumps(Box))
        with open(os.environ["MARINADE_PAYLOAD"], "wb") as f:
            f.write(marinade.dumps(obj))
    """, consumer="""
        import os, pickle, sys
        with open(os.environ["MARINADE_PAYLOAD"], "rb") as f:
            standalone, default = pickle.load(f)
        T = pickle.loads(standalone)
        print("marinade" in sys.modules)
        Box = pickle.loads(default)
        print(Box.__parameters__[0] is T)
    """)
    assert out.splitlines() == ["False", "True"]


def test_round_trip_in_the_sending_process_gives_the_original():
    namespace = {"__name__": "__main__"}
    exec(textwrap.dedent("""
        import typing
        T = typing.TypeVar("T", bound=int)
        P = typing.ParamSpec("P")
        Ts = typing.TypeVarTuple("Ts")
        Id = typing.NewType("Id", str)
        Twin = typing.TypeVar("T", bound=int)
    """), namespace)
    originals = [namespace[name] for name in ("T", "P", "Ts", "Id", "Twin")]
    assert originals[0].__module__ == "__main__"  # so it travels by value
    loaded = pickle.loads(marinade.dumps(originals))
    assert all(x is y for x, y in zip(loaded, originals))
    for standalone in (False, True):
        again = pickle.loads(marinade.dumps(originals, standalone=standalone))
        assert all(x is y for x, y in zip(again, originals))


def test_keys_tell_definitions_apart():
    from marinade.reduce.typing import identity_key

    namespace = {"__name__": "__main__"}
    exec(textwrap.dedent("""
        import typing
        class A: pass
        class B: pass
        TA = typing.TypeVar("X", bound=A)
        TB = typing.TypeVar("X", bound=B)
        TU = typing.TypeVar("X", bound=typing.Optional[A])
        TC = typing.TypeVar("X", covariant=True)
        TS = typing.TypeVar("X", str, bytes)
        PX = typing.ParamSpec("X")
    """), namespace)
    keys = [identity_key(namespace[n]) for n in ("TA", "TB", "TU", "TC", "TS", "PX")]
    assert len(set(keys)) == len(keys)
    assert not any("~" in key for key in keys)  # told apart by content, not numbering
    assert identity_key(namespace["TA"]) == keys[0]  # cached and stable


@pytest.mark.skipif(not _compat.PY_3_12_PLUS, reason="PEP 695 syntax needs Python 3.12")
def test_pep695_type_params(tmp_path):
    out = run_roundtrip(tmp_path, producer="""
        import os, marinade

        class Stack[T]:
            def push(self, item: T) -> "Stack[T]":
                return self

        class Queue[T]:
            pass

        def first[T](items: list[T]) -> T:
            return items[0]

        T, = Stack.__type_params__
        obj = [marinade.dumps(x) for x in (T, Stack, Queue, first)]
        with open(os.environ["MARINADE_PAYLOAD"], "wb") as f:
            f.write(marinade.dumps(obj))
    """, consumer="""
        import os, pickle, typing
        with open(os.environ["MARINADE_PAYLOAD"], "rb") as f:
            payloads = pickle.load(f)
        Stack, Queue, first, T = [pickle.loads(p) for p in payloads[1:] + payloads[:1]]
        print(Stack.__type_params__[0] is T, Stack.__parameters__[0] is T)
        print(Queue.__type_params__[0] is not T, first.__type_params__[0] is not T,
              typing.get_type_hints(first)["return"] is first.__type_params__[0])
    """)
    assert out.splitlines() == ["True True", "True True True"]
