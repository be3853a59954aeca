"""Classes by value, across processes: __main__ classes, local classes,
metaclasses, ABCs, exceptions, zero-argument super().

Each test runs a producer script as ``__main__`` and loads its payload in a
fresh interpreter that cannot import the producer. Related checks share one
producer/consumer pair to keep the number of subprocesses small.
"""

from helpers import DUMP, LOAD, run_roundtrip


def test_main_class_features(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=f"""
            class Point:
                '''A point.'''
                dims = 2
                registry = []

                def __init__(self, x, y):
                    self.x = x
                    self.y = y

                def norm2(self):
                    return self.x ** 2 + self.y ** 2

                @classmethod
                def origin(cls):
                    return cls(0, 0)

                @staticmethod
                def add(a, b):
                    return a + b

                @property
                def label(self):
                    return f"{{self.x}},{{self.y}}"

                @label.setter
                def label(self, text):
                    self.x, self.y = map(int, text.split(","))

                def clone(self):
                    # refers to the class by its global name
                    return Point(self.x, self.y)

                def __repr__(self):
                    return f"Point({{self.x}}, {{self.y}})"

                def __eq__(self, other):
                    return type(other) is Point and (self.x, self.y) == (other.x, other.y)

                __hash__ = None

            class Slotted:
                __slots__ = ("a", "__b")

                def __init__(self, a, b):
                    self.a = a
                    self.__b = b

                def get_b(self):
                    return self.__b

            p = Point(3, 4)
            p.extra = "kept"
            obj = (Point, p, Slotted, Slotted(1, 2))
            {DUMP}
        """,
        consumer=f"""
            {LOAD}
            Point, p, Slotted, s = obj
            assert type(p) is Point
            print(Point.__module__, Point.__qualname__, Point.__doc__)
            print(p, p.norm2(), p.extra, Point.dims, Point.registry)
            print(Point.origin(), type(Point.origin()) is Point, Point.add(2, 5))
            print(p.label)
            p.label = "6,8"
            print(p, p.norm2())
            c = p.clone()
            print(c == p, c is not p, type(c) is Point, Point.__hash__)
            print(s.a, s.get_b(), Slotted.__slots__, hasattr(s, "__dict__"))
            try:
                s.other = 1
            except AttributeError:
                print("slots enforced")
        """,
    )
    assert out.splitlines() == [
        "__main__ Point A point.",
        "Point(3, 4) 25 kept 2 []",
        "Point(0, 0) True 7",
        "3,4",
        "Point(6, 8) 100",
        "True True True None",
        "1 2 ('a', '__b') False",
        "slots enforced",
    ]


def test_local_classes(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=f"""
            def make(n):
                class C:
                    scale = n

                    def __init__(self, v):
                        self.v = v

                    def scaled(self):
                        return self.v * n * self.scale

                    def clone(self):
                        # C is a closure cell here, holding the class itself
                        return C(self.v)

                    class Inner:
                        def hello(self):
                            return "inner"

                return C

            C2 = make(2)
            C3 = make(3)
            obj = (C2, C3, C2(5), C3(5), C2.Inner())
            {DUMP}
        """,
        consumer=f"""
            {LOAD}
            C2, C3, c2, c3, inner = obj
            print(C2.__qualname__, C2.Inner.__qualname__, C2.__module__)
            print(C2 is C3, type(c2) is C2, type(c3) is C3)
            print(c2.scaled(), c3.scaled(), C2(1).scaled(), C3(1).scaled())
            print(inner.hello(), type(inner) is C2.Inner)
            print(type(c2.clone()) is C2, type(c3.clone()) is C3, c3.clone().scaled())
        """,
    )
    assert out.splitlines() == [
        "make.<locals>.C make.<locals>.C.Inner __main__",
        "False True True",
        "20 45 4 9",
        "inner True",
        "True True 45",
    ]


def test_super_and_inheritance(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=f"""
            import collections

            class Base:
                def __init__(self, x):
                    self.x = x

                def describe(self):
                    return f"Base({{self.x}})"

            class Mid(Base):
                def __init__(self, x, y):
                    super().__init__(x)
                    self.y = y

                def describe(self):
                    return "Mid<" + super().describe() + ">"

            class Leaf(Mid):
                def describe(self):
                    return "Leaf<" + super().describe() + ">"

                @classmethod
                def make(cls, v):
                    return cls(v, v + 1)

            class LRU(collections.OrderedDict):
                def __init__(self, size=None):
                    # OrderedDict pickles as cls(), items, then __dict__: size
                    # needs a default that does not trim while items come back
                    super().__init__()
                    self.size = size

                def __setitem__(self, key, value):
                    super().__setitem__(key, value)
                    self.move_to_end(key)
                    while self.size is not None and len(self) > self.size:
                        self.popitem(last=False)

            lru = LRU(2)
            lru["a"] = 1
            lru["b"] = 2
            obj = (Leaf, Leaf(1, 2), lru)
            {DUMP}
        """,
        consumer=f"""
            {LOAD}
            Leaf, leaf, lru = obj
            Mid, Base = Leaf.__mro__[1:3]
            print([c.__name__ for c in Leaf.__mro__])
            print(leaf.describe(), leaf.y)
            print(Leaf.make(7).describe(), type(Leaf.make(7)) is Leaf)
            # the __class__ cell of zero-argument super() is the rebuilt class
            cell = Mid.describe.__closure__[0].cell_contents
            print(cell is Mid, Leaf.describe.__closure__[0].cell_contents is Leaf)
            print(isinstance(leaf, Base), issubclass(Leaf, Base))
            LRU = type(lru)
            print(LRU.__bases__[0].__module__, dict(lru), lru.size)
            lru["c"] = 3
            print(list(lru))
            fresh = LRU(1)
            fresh["x"] = 1
            fresh["y"] = 2
            print(list(fresh))
        """,
    )
    assert out.splitlines() == [
        "['Leaf', 'Mid', 'Base', 'object']",
        "Leaf<Mid<Base(1)>> 2",
        "Leaf<Mid<Base(7)>> True",
        "True True",
        "True True",
        "collections {'a': 1, 'b': 2} 2",
        "['b', 'c']",
        "['y']",
    ]


def test_exception_classes(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=f"""
            class AppError(Exception):
                pass

            class CodeError(AppError):
                def __init__(self, code, msg="failed"):
                    super().__init__(code, msg)
                    self.code = code

                def __str__(self):
                    return f"[{{self.code}}] {{self.args[1]}}"

            def fail(code):
                raise CodeError(code, "boom")

            obj = (AppError, CodeError, fail, CodeError(7, "seven"))
            {DUMP}
        """,
        consumer=f"""
            {LOAD}
            AppError, CodeError, fail, err = obj
            try:
                fail(3)
            except AppError as exc:
                print(type(exc) is CodeError, exc.code, str(exc), exc.args)
            try:
                raise err
            except CodeError as exc:
                print(exc is err, exc.code, str(exc))
            print(issubclass(CodeError, Exception), CodeError.__mro__[1] is AppError)
        """,
    )
    assert out.splitlines() == [
        "True 3 [3] boom (3, 'boom')",
        "True 7 [7] seven",
        "True True",
    ]


def test_init_subclass_and_class_getitem(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=f"""
            class Plugin:
                registry = {{}}
                calls = 0

                def __init_subclass__(cls, /, name, priority=0, **kwargs):
                    super().__init_subclass__(**kwargs)
                    Plugin.calls += 1
                    cls.plugin_name = name
                    cls.priority = priority
                    Plugin.registry[name] = cls

                def __class_getitem__(cls, item):
                    return f"{{cls.__name__}}[{{item.__name__}}]"

            class Csv(Plugin, name="csv", priority=3):
                pass

            class Json(Plugin, name="json"):
                def run(self):
                    return self.plugin_name.upper()

            obj = (Plugin, Json, Csv)
            {DUMP}
        """,
        consumer=f"""
            {LOAD}
            Plugin, Json, Csv = obj
            print(Plugin.calls, sorted(Plugin.registry), Plugin.registry["csv"] is Csv)
            print(Csv.plugin_name, Csv.priority, Json.priority, Json().run())
            print(Plugin[int], Json[str])

            # __init_subclass__ still works for new subclasses made after load
            class Yaml(Plugin, name="yaml", priority=9):
                pass
            print(Plugin.calls, Plugin.registry["yaml"] is Yaml, Yaml.priority)
        """,
    )
    assert out.splitlines() == [
        "2 ['csv', 'json'] True",
        "csv 3 0 JSON",
        "Plugin[int] Json[str]",
        "3 True 9",
    ]


def test_metaclasses(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=f"""
            class Meta(type):
                created = []

                def __new__(mcls, name, bases, ns, *, tag="none", **kwargs):
                    ns["tag"] = tag
                    ns["made_by_meta"] = name.lower()
                    cls = super().__new__(mcls, name, bases, ns, **kwargs)
                    Meta.created.append(name)
                    return cls

                def __init__(cls, name, bases, ns, **kwargs):
                    super().__init__(name, bases, ns)

                def __call__(cls, *args, **kwargs):
                    inst = super().__call__(*args, **kwargs)
                    inst.via_meta = True
                    return inst

                def describe(cls):
                    return f"{{cls.__name__}}:{{cls.tag}}"

            class Model(metaclass=Meta, tag="model"):
                def __init__(self, v):
                    self.v = v

            class Sub(Model, tag="sub"):
                pass

            obj = (Model, Sub, Sub(4))
            {DUMP}
        """,
        consumer=f"""
            {LOAD}
            Model, Sub, sub = obj
            Meta = type(Model)
            print(Meta.__name__, type(Sub) is Meta, Meta.created)
            print(Model.tag, Sub.tag, Model.made_by_meta, Sub.made_by_meta)
            print(Model.describe(), Sub.describe())
            fresh = Sub(5)
            print(fresh.v, fresh.via_meta, sub.v, sub.via_meta, type(sub) is Sub)

            class Later(Sub, tag="later"):
                pass
            print(Later.tag, Later.made_by_meta, Meta.created, Later(1).via_meta)
        """,
    )
    assert out.splitlines() == [
        "Meta True ['Model', 'Sub']",
        "model sub model sub",
        "Model:model Sub:sub",
        "5 True 4 True True",
        "later later ['Model', 'Sub', 'Later'] True",
    ]


def test_abstract_base_classes(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=f"""
            import abc

            class Shape(abc.ABC):
                @abc.abstractmethod
                def area(self):
                    ...

                def double(self):
                    return 2 * self.area()

            class Square(Shape):
                def __init__(self, s):
                    self.s = s

                def area(self):
                    return self.s ** 2

            class Half(Shape):
                pass

            class Virtual:
                def area(self):
                    return 1

            Shape.register(Virtual)
            Shape.register(tuple)
            obj = (Shape, Square, Half, Virtual, Square(3))
            {DUMP}
        """,
        consumer=f"""
            {LOAD}
            import abc
            Shape, Square, Half, Virtual, sq = obj
            print(type(Shape) is abc.ABCMeta, sorted(Shape.__abstractmethods__))
            for cls in (Shape, Half):
                try:
                    cls()
                except TypeError:
                    print("abstract", cls.__name__)
            print(sq.double(), Square(2).double(), isinstance(sq, Shape))
            print(isinstance(Virtual(), Shape), issubclass(Virtual, Shape))
            print(isinstance((), Shape), isinstance([], Shape))

            class Later:
                pass
            Shape.register(Later)
            print(isinstance(Later(), Shape))
        """,
    )
    assert out.splitlines() == [
        "True ['area']",
        "abstract Shape",
        "abstract Half",
        "18 8 True",
        "True True",
        "True False",
        "True",
    ]


def test_producer_round_trip_and_repickle(tmp_path):
    # In the producer, a round trip gives back the class itself; in the
    # consumer, a loaded class pickles again by value for a third process.
    out = run_roundtrip(
        tmp_path,
        producer=f"""
            import pickle, marinade

            class K:
                def f(self):
                    return "k"

            def make():
                class L:
                    pass
                return L

            L = make()
            assert pickle.loads(marinade.dumps(K)) is K
            assert pickle.loads(marinade.dumps(L)) is L
            k = pickle.loads(marinade.dumps(K()))
            assert type(k) is K
            obj = K
            {DUMP}
        """,
        consumer=f"""
            {LOAD}
            import marinade, subprocess, sys
            again = marinade.dumps(obj)
            code = "import pickle, sys; K = pickle.loads(sys.stdin.buffer.read()); print(K().f())"
            res = subprocess.run([sys.executable, "-c", code], input=again,
                                 capture_output=True, check=True)
            print(res.stdout.decode().strip(), pickle.loads(again) is obj)
        """,
    )
    assert out.splitlines() == ["k True"]


def test_importable_framework_base(tmp_path):
    # A base class importable on both sides (by reference) keeps running its
    # own __init_subclass__ for classes rebuilt from a payload; one that needs
    # class keywords (which a class object does not remember) is skipped
    # rather than failing the load.
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "framework.py").write_text(
        "registry = []\n"
        "class Registered:\n"
        "    def __init_subclass__(cls, **kwargs):\n"
        "        super().__init_subclass__(**kwargs)\n"
        "        registry.append(cls.__name__)\n"
        "class NeedsKind:\n"
        "    def __init_subclass__(cls, *, kind, **kwargs):\n"
        "        super().__init_subclass__(**kwargs)\n"
        "        cls.kind = kind\n"
        "        registry.append(kind)\n"
    )
    out = run_roundtrip(
        tmp_path,
        producer=f"""
            import framework

            class Auto(framework.Registered):
                pass

            class Typed(framework.NeedsKind, kind="typed"):
                def get(self):
                    return self.kind

            obj = (Auto, Typed)
            {DUMP}
        """,
        consumer=f"""
            import framework
            {LOAD}
            Auto, Typed = obj
            print(framework.registry, Typed.kind, Typed().get(), Auto.__bases__[0].__module__)
        """,
        env={"PYTHONPATH": str(lib)},
    )
    assert out.splitlines() == ["['Auto'] typed typed framework"]


REPLACED_METHOD_PRODUCER = """
import os, marinade

class Greeter:
    def hello(self):
        return "old hello"

    def bye(self):
        return "bye"

marinade.dumps(Greeter)            # the class's code table is made here
Greeter.hello = lambda self: "new hello"
def extra(self):
    return "extra " + self.bye()
Greeter.extra = extra
with open(os.environ["MARINADE_PAYLOAD"], "wb") as f:
    f.write(marinade.dumps(Greeter()))
"""

REPLACED_METHOD_CONSUMER = LOAD + """
print(obj.hello(), "|", obj.bye(), "|", obj.extra())
"""


def test_methods_changed_after_a_first_dump_travel(tmp_path):
    out = run_roundtrip(tmp_path, producer=REPLACED_METHOD_PRODUCER,
                        consumer=REPLACED_METHOD_CONSUMER)
    assert out.strip() == "new hello | bye | extra bye"
