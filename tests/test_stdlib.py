"""Standard-library objects that users expect to travel.

Most are refused by plain pickle (mappingproxy, dict views, weak containers,
modules, descriptors, the standard streams) or only work when they hold
nothing from ``__main__``. Locks must keep failing, with a message that says
where the lock is.
"""

import abc
import itertools
import pickle
import threading
import types
import warnings

import pytest

import marinade

from helpers import DUMP, LOAD, run_roundtrip


def test_mappings_views_and_weak_containers(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=f"""
            import collections, threading, types, weakref

            class Node:
                def __init__(self, name):
                    self.name = name
                def __repr__(self):
                    return self.name

            class Slotted:
                __slots__ = ("x",)

            config = {{"a": 1, "b": 2}}
            unpicklable_values = {{"k1": threading.Lock(), "k2": threading.Lock()}}
            od = collections.OrderedDict(z=1, y=2)

            kept1, kept2, dropped = Node("kept1"), Node("kept2"), Node("dropped")
            ws = weakref.WeakSet([kept1, kept2, dropped])
            kept1.group = ws  # a referent pointing back at its container
            wvd = weakref.WeakValueDictionary({{"one": kept1, "gone": dropped}})
            wkd = weakref.WeakKeyDictionary({{kept2: "two", dropped: "x"}})

            obj = dict(
                proxy=types.MappingProxyType(config), config=config,
                node_ns=Node.__dict__, dict_ns=dict.__dict__,
                keys=config.keys(), values=config.values(), items=config.items(),
                lock_keys=unpicklable_values.keys(),
                okeys=od.keys(), ovalues=od.values(), oitems=od.items(),
                ws=ws, wvd=wvd, wkd=wkd, empty=weakref.WeakSet(),
                empty_wvd=weakref.WeakValueDictionary(), Node=Node,
                kept=[kept1, kept2],  # 'dropped' stays behind in the producer
                Slotted=Slotted,
            )
            {DUMP}
        """,
        consumer=f"""
            import gc, types
            {LOAD}
            gc.collect()
            proxy, config = obj["proxy"], obj["config"]
            config["c"] = 3  # the proxy wraps the payload's own dict
            print(type(proxy).__name__, dict(proxy))
            Node = obj["Node"]
            print(obj["node_ns"] is not None and obj["node_ns"]["__init__"] is Node.__init__,
                  obj["dict_ns"]["keys"] is dict.keys)
            print(list(obj["keys"]), list(obj["values"]), list(obj["items"]),
                  type(obj["keys"]).__name__, type(obj["items"]).__name__)
            print(sorted(obj["lock_keys"]))
            print(list(obj["okeys"]), list(obj["ovalues"]), list(obj["oitems"]),
                  type(obj["okeys"]).__name__)
            ws, (kept1, kept2) = obj["ws"], obj["kept"]
            print(sorted(map(repr, ws)), kept1.group is ws, kept1 in ws)
            print(dict(obj["wvd"]), {{repr(k): v for k, v in obj["wkd"].items()}})
            print(len(obj["empty"]), type(obj["empty"]).__name__, len(obj["empty_wvd"]))
            s = obj["Slotted"]()
            s.x = 5
            member = obj["Slotted"].__dict__["x"]
            print(type(member).__name__, member.__get__(s))
        """,
    )
    assert out.splitlines() == [
        "mappingproxy {'a': 1, 'b': 2, 'c': 3}",
        "True True",
        "['a', 'b'] [1, 2] [('a', 1), ('b', 2)] dict_keys dict_items",
        "['k1', 'k2']",
        "['z', 'y'] [1, 2] [('z', 1), ('y', 2)] odict_keys",
        "['kept1', 'kept2'] True True",
        "{'one': kept1} {'kept2': 'two'}",
        "0 WeakSet 0",
        "member_descriptor 5",
    ]


def test_singletons_modules_streams_and_typing(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=f"""
            import json, logging, re, sys, types, typing
            from typing import Annotated, Callable, Literal, Optional, Union

            class Item:
                pass

            log = logging.getLogger("app.db")

            def report(x):
                log.info("x=%s", x)
                return json.dumps(x)

            dynamic = types.ModuleType("made_up")  # not importable anywhere
            exec("value = 41\\ndef inc():\\n    return value + 1", vars(dynamic))

            items = [1, 2]
            obj = dict(
                nothing=type(None), ni=NotImplemented, ell=Ellipsis, ell_t=type(...),
                log=log, root=logging.getLogger(), report=report,
                re_mod=re, dynamic=dynamic, json_via=report,
                items=items, append=items.append,
                out=sys.stdout, err=sys.stderr,
                pattern=re.compile(r"(\\d+)-(\\w+)", re.I),
                union=Union[int, str], opt=Optional[Item], call=Callable[[Item], int],
                lit=Literal[1, "a"], ann=Annotated[Item, "meta"], li=list[Item],
                pipe=Item | None, tlist=typing.List[int], Item=Item,
            )
            {DUMP}
        """,
        consumer=f"""
            import logging, re, sys, typing
            {LOAD}
            print(obj["nothing"] is type(None), obj["ni"] is NotImplemented,
                  obj["ell"] is Ellipsis, obj["ell_t"] is type(...))
            print(obj["log"] is logging.getLogger("app.db"),
                  obj["root"] is logging.getLogger(), obj["report"]([1]))
            print(obj["report"].__globals__["log"] is obj["log"], obj["re_mod"] is re)
            dyn = obj["dynamic"]
            print(dyn.__name__, dyn.value, dyn.inc())
            obj["append"](3)
            print(obj["items"], obj["append"].__self__ is obj["items"])
            print(obj["out"] is sys.stdout, obj["err"] is sys.stderr)
            obj["out"].write("streamed\\n")
            m = obj["pattern"].match("12-ab")
            print(m.groups(), bool(obj["pattern"].flags & re.I))
            Item = obj["Item"]
            print(obj["union"] == typing.Union[int, str], obj["opt"] == typing.Optional[Item],
                  typing.get_args(obj["call"]) == ([Item], int),
                  obj["lit"] == typing.Literal[1, "a"])
            print(typing.get_args(obj["ann"]) == (Item, "meta"), obj["li"] == list[Item],
                  obj["pipe"] == (Item | None), obj["tlist"] == typing.List[int])
        """,
    )
    assert out.splitlines() == [
        "True True True True",
        "True True [1]",
        "True True",
        "made_up 41 42",
        "[1, 2, 3] True",
        "True True",
        "streamed",
        "('12', 'ab') True",
        "True True True True",
        "True True True True",
    ]


def test_descriptors_namespaces_and_iterators(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=f"""
            import collections, functools, itertools, types

            def area(self):
                return self.w * self.h

            def make(cls, w):
                return cls(w, w)

            def half(x):
                return x / 2

            class Base:
                def __init__(self, w, h):
                    self.w, self.h = w, h
                @functools.cached_property
                def perimeter(self):
                    "Twice the sides."
                    return 2 * (self.w + self.h)

            counter = itertools.count(10, 5)
            next(counter); next(counter)  # position 20 must travel

            obj = dict(
                prop=property(area, doc="The area."), cls_m=classmethod(make),
                static=staticmethod(half), cached=Base.__dict__["perimeter"], Base=Base,
                code_getset=type(area).__dict__["__code__"],
                ns=types.SimpleNamespace(f=half, n=1),
                chain=collections.ChainMap({{"a": 1}}, {{"a": 2, "b": half}}),
                counter=counter, fcount=itertools.count(0.5, 0.25),
            )
            {DUMP}
        """,
        consumer=f"""
            {LOAD}
            Base = obj["Base"]
            Rect = type("Rect", (Base,), {{"area": obj["prop"], "square": obj["cls_m"],
                                          "half": obj["static"]}})
            r = Rect.square(3)
            print(r.area, Rect.area.__doc__, Rect.half(9), Base(2, 5).perimeter)
            c = obj["cached"]
            print(c.attrname, c.__doc__, c.func.__name__, Base.__dict__["perimeter"] is c)
            print(obj["code_getset"].__get__(obj["ns"].f).co_name)
            ns = obj["ns"]
            print(type(ns).__name__, ns.n, ns.f(5))
            chain = obj["chain"]
            print(type(chain).__name__, chain["a"], chain["b"](4), len(chain.maps))
            print(next(obj["counter"]), next(obj["counter"]), next(obj["fcount"]),
                  next(obj["fcount"]))
        """,
    )
    assert out.splitlines() == [
        "9 The area. 4.5 14",
        "perimeter Twice the sides. perimeter True",
        "half",
        "SimpleNamespace 1 2.5",
        "ChainMap 1 2.0 2",
        "20 25 0.5 0.75",
    ]


def test_locks_fail_with_the_path():
    class Job:
        def __init__(self):
            self.lock = threading.Lock()

    job = Job()
    with pytest.raises(marinade.PicklingError, match=r"obj\['job'\]\.lock -> .*lock"):
        marinade.dumps({"job": job})

    guard = threading.RLock()

    def critical():
        with guard:
            return 1

    with pytest.raises(marinade.PicklingError, match=r"__closure__\[0\]\.cell_contents -> .*RLock"):
        marinade.dumps(critical)
    # a plain pickle.PicklingError to code that only knows the stdlib
    with pytest.raises(pickle.PicklingError):
        marinade.dumps([threading.Lock()])


def test_other_files_and_stdin_like_objects_fail(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("x")
    with open(path) as handle, pytest.raises(marinade.PicklingError, match="TextIOWrapper"):
        marinade.dumps({"handle": handle})


def test_count_pickles_without_itertools_deprecation():
    # itertools' own pickle support is deprecated in 3.12 and gone in 3.14.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        counter = pickle.loads(marinade.dumps(itertools.count(-3)))
    assert [next(counter), next(counter)] == [-3, -2]


def test_memoryview_and_abstract_descriptors():
    raw = bytearray(range(12))
    view = memoryview(raw).cast("i", [3])
    loaded = pickle.loads(marinade.dumps(view))
    assert loaded.tolist() == view.tolist() and loaded.format == "i"
    assert not loaded.readonly and loaded.shape == (3,)
    flat = pickle.loads(marinade.dumps(memoryview(b"abc")))
    assert flat.readonly and flat.tobytes() == b"abc"

    def impl(cls):
        return cls

    for kind in (abc.abstractclassmethod, abc.abstractstaticmethod):
        loaded = pickle.loads(marinade.dumps(kind(impl)))
        assert type(loaded) is kind and loaded.__func__(5) == 5
        assert loaded.__isabstractmethod__
    prop = pickle.loads(marinade.dumps(abc.abstractproperty(impl)))
    assert type(prop) is abc.abstractproperty and prop.fget(7) == 7


def test_empty_and_unhashable_views_in_process():
    assert list(pickle.loads(marinade.dumps({}.keys()))) == []
    values = pickle.loads(marinade.dumps({"a": [1], "b": [1]}.values()))
    assert list(values) == [[1], [1]]
    proxy = pickle.loads(marinade.dumps(types.MappingProxyType({"k": {1, 2}})))
    assert dict(proxy) == {"k": {1, 2}}
