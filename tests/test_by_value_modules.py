"""``register_pickle_by_value``: modules the loading side does not have.

The producer writes a small package next to itself, imports it and registers
it; the consumer never sees the package (or, in one test, sees a different
version of it, which tells by-value from by-reference apart).
"""

import sys
import types

import pytest

import marinade

from helpers import DUMP, LOAD, run_roundtrip

# Written by the producer before it imports the package.
_WRITE_PACKAGE = '''
import os, sys, textwrap
FILES = {
    "mypkg/__init__.py": """
        ORIGIN = "producer"
        from .core import Greeter, Point, greet, scaled
    """,
    "mypkg/core.py": """
        import dataclasses
        import functools
        from .sub import deep

        SCALE = 10

        def greet(name):
            return f"hello {name} (x{SCALE})"

        class Greeter:
            def __init__(self, who):
                self.who = who
            def __call__(self):
                return greet(self.who)

        @dataclasses.dataclass
        class Point:
            x: int
            y: int = 0
            def norm1(self):
                return abs(self.x) + abs(self.y)

        def scaled(v):
            return deep.triple(v) * SCALE

        @functools.lru_cache(maxsize=8)
        def cached_cube(v):
            return v ** 3
    """,
    "mypkg/other.py": """
        def origin():
            return "producer"
    """,
    "mypkg/sub/__init__.py": "",
    "mypkg/sub/deep.py": """
        def triple(v):
            return 3 * v

        def origin():
            return "producer"
    """,
}
root = os.path.join(os.getcwd(), "libsrc")
for rel, text in FILES.items():
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(textwrap.dedent(text))
sys.path.insert(0, root)
'''


def test_registered_package_travels_by_value(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=_WRITE_PACKAGE + f"""
import marinade
import mypkg
import mypkg.sub.deep

marinade.register_pickle_by_value(mypkg)
registry = marinade.list_registry_pickle_by_value()

def use_module(v):
    return mypkg.sub.deep.triple(v) + 1  # the submodule object itself travels

obj = dict(
    greet=mypkg.greet, greeter=mypkg.Greeter("ann"), Point=mypkg.Point,
    point=mypkg.Point(3, -4), scaled=mypkg.scaled, triple=mypkg.sub.deep.triple,
    use_module=use_module, registry=registry, cached=mypkg.core.cached_cube,
)
{DUMP}
""",
        consumer=f"""
            import dataclasses
            {LOAD}
            try:
                import mypkg
            except ImportError:
                print("no mypkg here")
            print(sorted(obj["registry"]))
            print(obj["greet"]("bo"), obj["greeter"]())
            Point, p = obj["Point"], obj["point"]
            print(type(p) is Point, p.norm1(), Point(1), dataclasses.is_dataclass(Point))
            print(obj["scaled"](2), obj["triple"](5), obj["use_module"](1))
            print(Point.__module__, obj["greet"].__module__)
            cached = obj["cached"]
            print(cached(3), cached(3), tuple(cached.cache_info()))
        """,
    )
    assert out.splitlines() == [
        "no mypkg here",
        "['mypkg']",
        "hello bo (x10) hello ann (x10)",
        "True 7 Point(x=1, y=0) True",
        "60 15 4",
        "mypkg.core mypkg.core",
        "27 27 (1, 1, 8, 1)",
    ]


def test_submodule_registration_and_unregister(tmp_path):
    # The consumer has its own, different mypkg: functions sent by value
    # report "producer", functions sent by reference report "consumer".
    out = run_roundtrip(
        tmp_path,
        producer=_WRITE_PACKAGE + f"""
import marinade
import mypkg.other
import mypkg.sub.deep

def snapshot():
    return marinade.dumps([mypkg.sub.deep.origin, mypkg.other.origin])

phases = {{"none": snapshot()}}
marinade.register_pickle_by_value(mypkg.sub)  # the subpackage only
phases["sub"] = snapshot()
marinade.unregister_pickle_by_value(mypkg.sub)
phases["unregistered"] = snapshot()
marinade.register_pickle_by_value(mypkg)  # covers every submodule
phases["all"] = snapshot()
obj = phases
{DUMP}
""",
        consumer=f"""
            import os, pickle, sys
            for rel, text in {{
                "mypkg/__init__.py": "",
                "mypkg/other.py": "def origin():\\n    return 'consumer'\\n",
                "mypkg/sub/__init__.py": "",
                "mypkg/sub/deep.py": "def origin():\\n    return 'consumer'\\n",
            }}.items():
                path = os.path.join("ownlib", rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    f.write(text)
            sys.path.insert(0, "ownlib")
            {LOAD}
            for phase in ("none", "sub", "unregistered", "all"):
                deep, other = pickle.loads(obj[phase])
                print(phase, deep(), other())
        """,
    )
    assert out.splitlines() == [
        "none consumer consumer",
        "sub producer consumer",
        "unregistered consumer consumer",
        "all producer producer",
    ]


@pytest.fixture
def fresh_module():
    module = types.ModuleType("marinade_test_fresh_module")
    sys.modules[module.__name__] = module
    yield module
    sys.modules.pop(module.__name__, None)
    if module.__name__ in marinade.list_registry_pickle_by_value():
        marinade.unregister_pickle_by_value(module)


def test_registry_api(fresh_module):
    name = fresh_module.__name__
    before = marinade.list_registry_pickle_by_value()
    marinade.register_pickle_by_value(fresh_module)
    try:
        listed = marinade.list_registry_pickle_by_value()
        assert listed == before | {name}
        listed.clear()  # a copy: the registry is unchanged
        assert name in marinade.list_registry_pickle_by_value()
        marinade.register_pickle_by_value(fresh_module)  # registering twice is harmless
    finally:
        marinade.unregister_pickle_by_value(fresh_module)
    assert marinade.list_registry_pickle_by_value() == before


def _errors_of(api, fresh_module):
    """Exception types (or None) for the misuses both libraries must refuse."""
    unimported = types.ModuleType("marinade_test_never_imported")
    attempts = [
        lambda: api.register_pickle_by_value("json"),  # a name, not a module
        lambda: api.register_pickle_by_value(len),
        lambda: api.register_pickle_by_value(unimported),
        lambda: api.unregister_pickle_by_value(fresh_module),  # never registered
        lambda: api.unregister_pickle_by_value("json"),
    ]
    found = []
    for attempt in attempts:
        try:
            attempt()
        except Exception as exc:  # noqa: BLE001 - comparing what is raised
            found.append((type(exc), str(exc)))
        else:
            found.append((None, ""))
    return found


def test_misuse_raises_like_cloudpickle(fresh_module):
    cloudpickle = pytest.importorskip("cloudpickle")
    ours = _errors_of(marinade, fresh_module)
    theirs = _errors_of(cloudpickle, fresh_module)
    assert [kind for kind, _ in ours] == [kind for kind, _ in theirs] == [ValueError] * 5
    messages = [message for _, message in ours]
    assert "module" in messages[0] and "'json'" in messages[0]
    assert "marinade_test_never_imported" in messages[2] and "sys.modules" in messages[2]
    assert "not registered" in messages[3]
