"""Class attributes holding instances of their own class ("class constants").

``Money.ZERO = Money(0)``: pickle makes the instance while it reads the class
state, before ``set_class_state`` has set the methods. An instance restored
by ``__setstate__``, made by a custom ``__new__`` (``__getnewargs__``) or by
its own ``__reduce__`` was rebuilt without them: silently wrong state, or a
failed load (cloudpickle has the same three failures). Such classes now set
their methods first (``_rebuild.set_class_methods``), portable payloads too.
"""

from __future__ import annotations

import pickle

import pytest

import marinade
from test_portable import _consumer_python
from test_standalone import roundtrip as standalone_roundtrip

from helpers import run_roundtrip

PRODUCER = """
    class Stateful:
        def __init__(self, v):
            self.v = v
            self.cache = {"built": "init"}
        def __getstate__(self):
            return {"v": self.v}
        def __setstate__(self, state):
            self.v = state["v"]
            self.cache = {"built": "setstate"}

    Stateful.DEFAULT = Stateful(1)

    class Money:
        def __new__(cls, cents):
            self = super().__new__(cls)
            self.cents = cents
            return self
        def __getnewargs__(self):
            return (self.cents,)
        def __add__(self, other):
            return Money(self.cents + other.cents)
        def __repr__(self):
            return f"Money({self.cents})"

    Money.ZERO = Money(0)
    Money.COINS = (Money(1), Money(5))       # in a container too
    Money.BY_NAME = {"ten": Money(10)}

    class Reduced:
        def __init__(self, n):
            self.n = n
        def __reduce__(self):
            return (Reduced.make, (self.n,))
        @classmethod
        def make(cls, n):
            return cls(n * 1)

    Reduced.ONE = Reduced(1)

    class Batched:          # enough methods for a method batch
        def __init__(self, x): self.x = x
        def __getstate__(self): return {"x": self.x, "tag": "sent"}
        def __setstate__(self, state): self.__dict__.update(state, seen=True)
        def a(self): return 1
        def b(self): return 2
        def c(self): return 3

    Batched.ORIGIN = Batched(0)
    obj = [Stateful, Money, Reduced, Batched]
"""

CONSUMER = """
    Stateful, Money, Reduced, Batched = obj
    print(Stateful.DEFAULT.v, Stateful.DEFAULT.cache["built"], type(Stateful.DEFAULT) is Stateful)
    print(Money.ZERO + Money.COINS[1] + Money.BY_NAME["ten"], type(Money.ZERO) is Money)
    print(Reduced.ONE.n, type(Reduced.ONE) is Reduced, Batched.ORIGIN.seen, Batched.ORIGIN.tag,
          Batched.ORIGIN.c())
"""

EXPECTED = ["1 setstate True", "Money(15) True", "1 True True sent 3"]


def test_class_constants_load_with_their_methods(tmp_path):
    out = run_roundtrip(
        tmp_path, PRODUCER + "\n    import os, marinade\n"
        "    open(os.environ['MARINADE_PAYLOAD'], 'wb').write(marinade.dumps(obj))\n",
        "import os, pickle\nobj = pickle.loads(open(os.environ['MARINADE_PAYLOAD'], 'rb').read())\n"
        + CONSUMER.replace("\n    ", "\n"))
    assert out.splitlines() == EXPECTED


def test_class_constants_standalone(tmp_path):
    out = standalone_roundtrip(tmp_path, PRODUCER, "obj = load()\n" + CONSUMER.replace("\n    ", "\n"))
    assert out.splitlines() == EXPECTED


def test_only_classes_holding_their_instances_pay_for_it():
    # A class whose attributes are atoms and containers of others: one state step.
    # And only if pickle would call the class's own hooks to make them.
    local = type("Local", (), {"k": (1, "a"), "f": lambda self: 2})
    data = marinade.dumps(local)
    assert b"set_class_methods" not in data
    assert pickle.loads(data)().f() == 2
    local.SELF = local()
    assert b"set_class_methods" not in marinade.dumps(local)  # a plain instance
    local.__setstate__ = lambda self, state: self.__dict__.update(state)
    data = marinade.dumps(local)
    assert b"set_class_methods" in data
    assert pickle.loads(data).SELF.f() == 2


@pytest.mark.parametrize("version", ["311", "312", "313"])
def test_class_constants_portable_across_versions(tmp_path, version):
    # Portable payloads carry source, compiled where they load: the class
    # state order matters the same way there.
    out = run_roundtrip(
        tmp_path, PRODUCER + "\n    import os, marinade\n"
        "    open(os.environ['MARINADE_PAYLOAD'], 'wb').write(marinade.dumps(obj, portable=True))\n",
        "import os, pickle\nobj = pickle.loads(open(os.environ['MARINADE_PAYLOAD'], 'rb').read())\n"
        + CONSUMER.replace("\n    ", "\n"), consumer_python=_consumer_python(version))
    assert out.splitlines() == EXPECTED
