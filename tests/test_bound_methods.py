"""Bound methods come back bound to the same function, not to a namesake.

Plain pickle reduces every bound method to ``getattr(owner, name)``: a
function bound to one object by hand (``obj.forward = MethodType(f, obj)``,
the usual way to patch one instance) came back as the class's method of that
name, or failed to load when the class has none. marinade keeps pickle's
small form when the lookup finds the same function in an importable class,
and otherwise sends ``types.MethodType(func, owner)`` (a class sent by value
may not have the name yet when the lookup runs).
"""

from __future__ import annotations

import pickle
import pickletools
import types

import marinade

from helpers import DUMP, LOAD, run_roundtrip


def test_bound_methods_keep_their_function(tmp_path):
    out = run_roundtrip(tmp_path, f"""
        import types

        class Model:
            scale = 10

            def forward(self, x):
                return x + 1

            @classmethod
            def build(cls):
                return cls()

        def forward(self, x):              # the patch: same name as the class's method
            return x * 100

        def scaled(self, x):               # a helper no class defines
            return x * self.scale

        class Logged(Model):
            def __getattribute__(self, name):
                return object.__getattribute__(self, name)

        patched = Model()
        patched.forward = types.MethodType(forward, patched)
        plain = Model()
        kept = plain.forward               # bound before the class changes below
        logged = Logged()
        obj = dict(patched=patched, other=types.MethodType(scaled, plain), kept=kept,
                   build=Model.build, logged=logged.forward, plain=plain)
        Model.forward = lambda self, x: -x
        {DUMP}
    """, f"""
        {LOAD}
        print(obj["patched"].forward(2), obj["other"](2), obj["kept"](2))
        print(obj["other"].__self__ is obj["plain"] is obj["kept"].__self__)
        print(type(obj["build"]()).__name__, obj["logged"](2))
    """)
    assert out.splitlines() == ["200 20 3", "True", "Model 3"]


def _globals_in(data: bytes) -> set[str]:
    return {arg for op, arg, _ in pickletools.genops(data)
            if op.name in ("SHORT_BINUNICODE", "BINUNICODE") and isinstance(arg, str)}


class Counter:
    def __init__(self):
        self.n = 0

    def bump(self):
        self.n += 1
        return self.n


def test_a_method_found_by_name_keeps_the_small_form():
    counter = Counter()
    data = marinade.dumps(counter.bump)
    assert "MethodType" not in _globals_in(data)  # getattr(counter, "bump"), as pickle
    again = pickle.loads(data)
    assert again() == 1 and again.__self__.n == 1
    # Shadowed by an instance attribute: the lookup would find the other one.
    counter.bump = types.MethodType(lambda self: -1, counter)
    method = pickle.loads(marinade.dumps(counter.bump))
    assert "MethodType" in _globals_in(marinade.dumps(counter.bump))
    assert method() == -1 and method.__self__.bump() == -1


def test_bound_methods_kept_in_their_own_class_state(tmp_path):
    # The class's state holds methods bound to the class or to an instance:
    # a name lookup would run before the state sets the name. (pydantic keeps
    # its bound classmethod validators in __pydantic_decorators__ like this.)
    out = run_roundtrip(tmp_path, """
        import os, pickle, marinade

        class Registry:
            @classmethod
            def make(cls, x):
                return ("made", cls.__name__, x)

            def hello(self):
                return "hi " + self.who

            def __init__(self, who="default"):
                self.who = who

        Registry.factory = Registry.make
        Registry.greeter = Registry("kept").hello
        Registry.table = {"make": Registry.make}

        class Child(Registry):
            pass

        Child.inherited = Child.make   # found on the parent, bound to the child
        obj = [Registry, Child]
        open(os.environ["MARINADE_PAYLOAD"], "wb").write(pickle.dumps(
            (marinade.dumps(obj), marinade.dumps(obj, standalone=True))))
    """, """
        import os, pickle
        for data in pickle.loads(open(os.environ["MARINADE_PAYLOAD"], "rb").read()):
            Registry, Child = pickle.loads(data)
            print(Registry.factory(1), Registry.greeter(), Registry.table["make"](2),
                  Child.inherited(3), Registry.factory.__func__ is Registry.make.__func__)
    """)
    line = "('made', 'Registry', 1) hi kept ('made', 'Registry', 2) ('made', 'Child', 3) True"
    assert out.splitlines() == [line, line]
