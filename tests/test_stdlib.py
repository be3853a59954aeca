"""Standard-library objects that users expect to travel.

Most are refused by plain pickle (mappingproxy, dict views, weak containers,
modules, descriptors, the standard streams) or only work when they hold
nothing from ``__main__``. Locks must keep failing, with a message that says
where the lock is.
"""

import abc
import functools
import itertools
import pickle
import threading
import types
import warnings
import weakref

import pytest

import marinade

from helpers import DUMP, LOAD, run_roundtrip, run_script


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


def test_descriptors_whose_name_the_metaclass_also_defines():
    # type.__dict__["__name__"] is a descriptor, but getattr(type, "__name__")
    # is the string "type": the descriptor must come from the namespace.
    descriptors = [type.__dict__[name] for name in
                   ("__name__", "__doc__", "__dict__", "__mro__", "__abstractmethods__")]
    descriptors += [BaseException.__dict__["__dict__"], int.__dict__["real"]]
    back = pickle.loads(marinade.dumps(descriptors))
    assert all(a is b for a, b in zip(back, descriptors))
    assert back[0].__get__(int) == "int"


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


def test_the_environment_is_the_loaders_own(tmp_path):
    # A snapshot of os.environ would carry the producer's secrets to every
    # worker, and read values the worker does not have.
    paths = {mode: tmp_path / f"{mode}.bin" for mode in ("default", "standalone")}
    producer = run_script(tmp_path, """
        import os, marinade
        from os import environ
        where = lambda: environ.get("MARINADE_WHERE")
        obj = (where, os.environ, os.environb, environ)
        for mode in ("default", "standalone"):
            with open(os.environ["MARINADE_OUT"].format(mode), "wb") as out:
                out.write(marinade.dumps(obj, standalone=mode == "standalone"))
    """, cwd=tmp_path / "producer",
        env={"MARINADE_OUT": str(tmp_path / "{}.bin"), "MARINADE_WHERE": "producer",
             "MARINADE_TOKEN": "s3cr3t-token"})
    assert producer.returncode == 0, producer.stderr
    consumer = """
        import os, pickle
        where, env, envb, same = pickle.loads(open(os.environ["MARINADE_PAYLOAD"], "rb").read())
        print(where(), env is os.environ, envb is os.environb, same is env)
    """
    for mode, path in paths.items():
        assert b"s3cr3t-token" not in path.read_bytes()
        out = run_script(tmp_path, consumer, cwd=tmp_path / "consumer",
                         flags=["-I", "-S"] if mode == "standalone" else [],
                         env={"MARINADE_PAYLOAD": str(path), "MARINADE_WHERE": "consumer"})
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["consumer", "True", "True", "True"], mode


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


def test_more_objects_plain_pickle_refuses(tmp_path):
    # Plain pickle refuses each of these, or loads it wrong (a copy of
    # KW_ONLY; a CodecInfo its own reduce cannot rebuild). Weak references,
    # Structs, cmp_to_key keys, CodecInfo and JSONDecoder fail with
    # cloudpickle and dill too (benchmarks/bench_stdlib.py).
    out = run_roundtrip(
        tmp_path,
        producer=f"""
            import codecs, dataclasses, functools, json, random, struct, weakref

            class Node:
                def __init__(self, name, parent=None):
                    self.name = name
                    self.parent = None if parent is None else weakref.ref(parent)
                    self.children = []
                    if parent is not None:
                        parent.children.append(self)
                def hello(self):
                    return "hello " + self.name

            class Loud(Node):
                def hello(self):
                    return super().hello().upper()

            root = Node("root")
            leaf = Node("leaf", root)
            gone = weakref.ref(Node("gone"))

            _KeysView = type({{}}.keys())  # a global naming an unnamed builtin type
            _ListIterator = type(iter([]))

            def kinds(x):
                return isinstance(x, _KeysView), isinstance(x, _ListIterator)

            def by_length(a, b):
                return len(a) - len(b)

            loud = Loud("loud")
            obj = dict(
                root=root, leaf=leaf, gone=gone, kinds=kinds,
                header=struct.Struct("<HI"),
                sort_key=functools.cmp_to_key(by_length),
                one_key=functools.cmp_to_key(by_length)("abc"),
                method=weakref.WeakMethod(loud.hello), loud=loud,
                dead_method=weakref.WeakMethod(Loud("x").hello),
                parent_view=super(Loud, loud), fromkeys=dict.__dict__["fromkeys"],
                codec=codecs.lookup("utf-8"), rng=random.SystemRandom(),
                decoder=json.JSONDecoder(object_pairs_hook=lambda pairs: pairs[::-1]),
                kw_only=dataclasses.KW_ONLY,
            )
            {DUMP}
        """,
        consumer=f"""
            import codecs, dataclasses, functools, gc, random, struct
            {LOAD}
            gc.collect()
            root, leaf = obj["root"], obj["leaf"]
            print(leaf.parent() is root, root.children[0] is leaf, obj["gone"]())
            print(obj["kinds"]({{}}.keys()), obj["kinds"](iter([1])), obj["kinds"](1))
            header = obj["header"]
            print(type(header) is struct.Struct, header.unpack(header.pack(7, 9)), header.size)
            print(sorted(["ccc", "a", "bb"], key=obj["sort_key"]),
                  obj["one_key"] < obj["sort_key"]("abcd"))
            print(obj["method"]() == obj["loud"].hello, obj["method"]()(),
                  obj["dead_method"]())
            print(obj["parent_view"].hello(), obj["fromkeys"].__get__(None, dict)("ab"))
            print(obj["codec"] is codecs.lookup("utf-8"),
                  type(obj["rng"]) is random.SystemRandom, 0 <= obj["rng"].random() < 1)
            print(obj["decoder"].decode('{{"a": 1, "b": 2}}'),
                  obj["kw_only"] is dataclasses.KW_ONLY)
        """,
    )
    assert out.splitlines() == [
        "True True None",
        "(True, False) (False, True) (False, False)",
        "True (7, 9) 6",
        "['a', 'bb', 'ccc'] True",
        "True HELLO LOUD None",
        "hello loud {'a': None, 'b': None}",
        "True True True",
        "[('b', 2), ('a', 1)] True",
    ]


def test_every_unnamed_builtin_type_round_trips():
    from marinade._pickler import _UNNAMED_TYPES

    assert type({}.keys()) in _UNNAMED_TYPES and type(iter(())) in _UNNAMED_TYPES
    for kind in _UNNAMED_TYPES:
        with pytest.raises((pickle.PicklingError, TypeError, AttributeError)):
            pickle.dumps(kind)  # else the table would be needless
        assert pickle.loads(marinade.dumps(kind)) is kind


def test_weak_references_keep_their_callbacks():
    class Target:
        pass

    target = Target()
    seen = []  # the callback appends to the payload's copy of this list
    seen, ref = pickle.loads(marinade.dumps([seen, weakref.ref(target, seen.append)]))
    # The payload held the only strong reference: the referent is gone once
    # the load ends, and the callback ran for it.
    assert ref() is None and seen == [ref]
    seen = []
    seen, kept, ref = pickle.loads(marinade.dumps([seen, target,
                                                   weakref.ref(target, seen.append)]))
    assert ref() is kept and seen == []
    del kept
    assert ref() is None and seen == [ref]
    # Proxies: the referent is found behind the proxy, the callback kept.
    seen = []
    seen, kept, proxy = pickle.loads(marinade.dumps([seen, target,
                                                     weakref.proxy(target, seen.append)]))
    assert type(proxy) is weakref.ProxyType and proxy.__sizeof__.__self__ is kept
    del kept
    assert len(seen) == 1 and type(seen[0]) is weakref.ProxyType
    dead = pickle.loads(marinade.dumps(weakref.proxy(Target())))
    with pytest.raises(ReferenceError):
        dead.anything
    double = functools.partial(int, base=2)
    _, call = pickle.loads(marinade.dumps([double, weakref.proxy(double)]))
    assert type(call) is weakref.CallableProxyType and call("11") == 3
    kind, to_class = pickle.loads(marinade.dumps([Target, weakref.proxy(Target)]))
    assert type(to_class) is weakref.CallableProxyType and type(to_class()) is kind
    with pytest.raises(marinade.PicklingError, match="KeyedRef"):
        marinade.dumps(weakref.KeyedRef(target, None, "k"))


def test_json_decoder_and_codec_info_keep_their_options():
    import codecs
    import json

    decoder = pickle.loads(marinade.dumps(json.JSONDecoder(strict=False, parse_int=str)))
    assert decoder.decode('{"n": 12, "s": "a\\tb"}') == {"n": "12", "s": "a\tb"}
    custom = codecs.CodecInfo(codecs.utf_8_encode, codecs.utf_8_decode, name="mine")
    loaded = pickle.loads(marinade.dumps(custom))
    assert loaded.name == "mine" and loaded.encode("é") == ("é".encode(), 1)
    assert loaded is not custom and loaded._is_text_encoding == custom._is_text_encoding
