"""Which standard-library objects each library can ship to a fresh process.

A coverage table rather than a timing: for every case below, a producer
script (run as ``__main__``) builds the object and pickles it with each
library; a fresh interpreter in another folder loads every payload and runs
the case's check on what came back. A case passes only if the check is true:
loading something that misbehaves (a copy of a sentinel, a lock that is not
a lock) is a failure.

    python benchmarks/bench_stdlib.py                 # the table
    python benchmarks/bench_stdlib.py --json out.json
    python benchmarks/bench_stdlib.py --write-docs    # refresh docs/supported-types.md

``marinade standalone`` payloads are loaded by ``python -I -S``, where no
third-party package (marinade included) can be imported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "supported-types.md"
START, END = "<!-- stdlib-table:start -->", "<!-- stdlib-table:end -->"

MODULES = ("argparse codecs collections contextvars dataclasses datetime functools hashlib "
           "inspect io "
           "itertools json logging operator queue random re struct sys threading traceback "
           "types typing warnings weakref").split()

# (group, name, expression building the object, check on the loaded ``obj``).
# Expressions run in the producer's ``__main__``; checks in a fresh interpreter.
CASES: list[tuple[str, str, str, str]] = [
    ("builtin types", "`types.FunctionType`, `types.CellType`, `types.MappingProxyType`",
     "(types.FunctionType, types.CellType, types.MappingProxyType)",
     "obj == (types.FunctionType, types.CellType, types.MappingProxyType)"),
    ("builtin types", "`type({}.keys())`, `type(iter([]))` (no module names them)",
     "(type({}.keys()), type(iter([])))", "obj == (type({}.keys()), type(iter([])))"),
    ("builtin objects", "code object", "compile('x + 1', '<expr>', 'eval')",
     "eval(obj, {'x': 1}) == 2"),
    ("builtin objects", "cell, and an empty cell", "(types.CellType(5), types.CellType())",
     "obj[0].cell_contents == 5 and repr(obj[1]).endswith('empty>')"),
    ("builtin objects", "mappingproxy", "types.MappingProxyType({'a': 1})",
     "type(obj) is types.MappingProxyType and dict(obj) == {'a': 1}"),
    ("builtin objects", "a class's `__dict__`", "argparse.Namespace.__dict__",
     "obj['__init__'] is argparse.Namespace.__init__"),
    ("builtin objects", "dict views", "({'a': 1}.keys(), {'a': 1}.values(), {'a': 1}.items())",
     "[type(v).__name__ for v in obj] == ['dict_keys', 'dict_values', 'dict_items'] "
     "and list(obj[2]) == [('a', 1)]"),
    ("builtin objects", "`OrderedDict` views", "collections.OrderedDict(b=1, a=2).keys()",
     "type(obj).__name__ == 'odict_keys' and list(obj) == ['b', 'a']"),
    ("builtin objects", "memoryview", "memoryview(bytearray(b'abc'))",
     "type(obj) is memoryview and obj.tobytes() == b'abc'"),
    ("builtin objects", "`super()` object", "super(argparse.Namespace, argparse.Namespace(a=1))",
     "type(obj) is super and obj.__self__.a == 1"),
    ("descriptors", "`property`, `classmethod`, `staticmethod`",
     "(property(operator.attrgetter('a')), classmethod(len), staticmethod(len))",
     "obj[0].fget(argparse.Namespace(a=3)) == 3 and obj[1].__func__ is len "
     "and type(obj[2]) is staticmethod"),
    ("descriptors", "`functools.cached_property`", "functools.cached_property(len)",
     "type(obj) is functools.cached_property and obj.func is len"),
    ("descriptors", "slot, getset and classmethod descriptors",
     "(inspect.Parameter.__dict__['_name'], types.FunctionType.__dict__['__code__'], "
     "dict.__dict__['fromkeys'])",
     "obj == (inspect.Parameter.__dict__['_name'], types.FunctionType.__dict__['__code__'], "
     "dict.__dict__['fromkeys'])"),
    ("weak references", "`weakref.ref` to an object in the payload",
     "[ns := argparse.Namespace(a=1), weakref.ref(ns)]", "obj[1]() is obj[0]"),
    ("weak references", "dead `weakref.ref`", "weakref.ref(argparse.Namespace())",
     "type(obj) is weakref.ref and obj() is None"),
    ("weak references", "`weakref.WeakMethod`",
     "[ns := argparse.Namespace(a=1), weakref.WeakMethod(ns.__repr__)]",
     "obj[1]()() == repr(obj[0])"),
    ("weak references", "`weakref.proxy`", "[ns := argparse.Namespace(a=1), weakref.proxy(ns)]",
     "type(obj[1]) is weakref.ProxyType and obj[1].a == 1"),
    ("weak references", "`WeakSet`, `WeakValueDictionary`, `WeakKeyDictionary`",
     "[p := functools.partial(int, base=2), weakref.WeakSet([p]), "
     "weakref.WeakValueDictionary({'k': p}), weakref.WeakKeyDictionary({p: 2})]",
     "list(obj[1])[0] is obj[0] and obj[2]['k'] is obj[0] and obj[3][obj[0]] == 2"),
    ("functools", "`functools.lru_cache` wrapper", "functools.lru_cache(maxsize=8)(abs)",
     "obj(-3) == 3 and obj.cache_parameters()['maxsize'] == 8"),
    ("functools", "`functools.singledispatch` with registrations",
     "(sd := functools.singledispatch(repr), sd.register(int, hex))[0]",
     "obj(255) == '0xff' and obj('a') == \"'a'\""),
    ("functools", "`functools.cmp_to_key`", "functools.cmp_to_key(operator.sub)",
     "sorted([3, 1, 2], key=obj) == [1, 2, 3]"),
    ("functools", "`functools.partial`", "functools.partial(int, base=2)", "obj('101') == 5"),
    ("iterators", "`itertools.count`, part consumed", "(c := itertools.count(5, 2), next(c))[0]",
     "next(obj) == 7"),
    ("iterators", "list iterator, part consumed", "(it := iter([1, 2, 3]), next(it))[0]",
     "list(obj) == [2, 3]"),
    ("iterators", "suspended generator", "(g := (x * 2 for x in range(5)), next(g))[0]",
     "list(obj) == [2, 4, 6, 8]"),
    ("streams", "`sys.stdout`, `sys.stderr`, `sys.stdin`", "(sys.stdout, sys.stderr, sys.stdin)",
     "obj == (sys.stdout, sys.stderr, sys.stdin)"),
    ("streams", "`io.StringIO`, part read", "(s := io.StringIO('abc'), s.read(1))[0]",
     "obj.read() == 'bc'"),
    ("streams", "open file (refused by marinade: local state)", "open(sys.argv[0])",
     "len(obj.read(1)) == 1"),
    ("concurrency", "`threading.Lock` (refused by marinade: local state)", "threading.Lock()",
     "obj.acquire(blocking=False)"),
    ("concurrency", "`queue.Queue` with an item (refused by marinade: holds locks)",
     "(q := queue.Queue(), q.put(1))[0]", "obj.get_nowait() == 1"),
    ("concurrency", "`contextvars.ContextVar`", "contextvars.ContextVar('v', default=1)",
     "obj.name == 'v' and obj.get() == 1"),
    ("logging", "`logging.Logger` (the loader's logger of that name)",
     "logging.getLogger('app.db')", "obj is logging.getLogger('app.db')"),
    ("logging", "`logging.StreamHandler` (refused by marinade: holds a lock)",
     "logging.StreamHandler()", "isinstance(obj, logging.StreamHandler)"),
    ("instances", "attributes of a `datetime` subclass instance",
     "(lambda stamp: (setattr(stamp, 'source', 'sensor'), stamp)[1])("
     "type('Stamp', (datetime.datetime,), {})(2024, 1, 2))",
     "type(obj).__name__ == 'Stamp' and obj.day == 2 and obj.source == 'sensor'"),
    ("instances", "a method bound by hand (`types.MethodType(f, obj)`)",
     "types.MethodType(lambda self: self.a * 10, argparse.Namespace(a=4))",
     "obj() == 40 and obj.__self__.a == 4"),
    ("modules", "an importable module", "json", "obj is json"),
    ("modules", "a module made at run time", "(m := types.ModuleType('made_up'), "
     "exec('value = 41', vars(m)))[0]", "obj.__name__ == 'made_up' and obj.value == 41"),
    ("typing", "`TypeVar` defined in `__main__`", "typing.TypeVar('T', bound=int)",
     "obj.__name__ == 'T' and obj.__bound__ is int"),
    ("typing", "`ParamSpec` defined in `__main__`", "typing.ParamSpec('P')", "obj.__name__ == 'P'"),
    ("typing", "`NewType` defined in `__main__`", "typing.NewType('UserId', int)",
     "obj(5) == 5 and obj.__supertype__ is int"),
    ("typing", "`typing.ForwardRef`", "typing.ForwardRef('X')",
     "obj == typing.ForwardRef('X')"),
    ("sentinels", "`dataclasses.MISSING`, `dataclasses.KW_ONLY` (identity)",
     "(dataclasses.MISSING, dataclasses.KW_ONLY)",
     "obj[0] is dataclasses.MISSING and obj[1] is dataclasses.KW_ONLY"),
    ("sentinels", "`dataclasses.field()`", "dataclasses.field(default=1)",
     "obj.default == 1 and obj.default_factory is dataclasses.MISSING"),
    ("other", "`struct.Struct`", "struct.Struct('<HI')", "obj.unpack(obj.pack(1, 2)) == (1, 2)"),
    ("other", "`re.Match`", "re.match('a(b)', 'ab')", "obj.group(1) == 'b'"),
    ("other", "`random.SystemRandom`", "random.SystemRandom()", "0 <= obj.random() < 1"),
    ("other", "`json.JSONDecoder` with options", "json.JSONDecoder(parse_int=str)",
     "obj.decode('[1]') == ['1']"),
    ("other", "`codecs.lookup()` result", "codecs.lookup('utf-8')",
     "obj is codecs.lookup('utf-8')"),
    ("other", "`hashlib` object, part fed", "hashlib.sha256(b'x')",
     "obj.hexdigest() == hashlib.sha256(b'x').hexdigest()"),
    ("other", "`argparse.ArgumentParser`",
     "(p := argparse.ArgumentParser(), p.add_argument('--n', type=int))[0]",
     "obj.parse_args(['--n', '3']).n == 3"),
    ("exceptions", "exception with `__cause__`",
     "(e := ValueError('outer'), e.__setattr__('__cause__', KeyError('inner')))[0]",
     "isinstance(obj.__cause__, KeyError) and obj.args == ('outer',)"),
    ("exceptions", "exception class with its own `__init__`", "_Quota('ann', 10)",
     "str(obj) == 'ann is over 10' and obj.limit == 10"),
    ("exceptions", "traceback", "_traceback()",
     "obj.tb_lineno > 0 and obj.tb_frame.f_code.co_name == '_traceback'"),
]

PRODUCER = """
import pickle, sys
{imports}
warnings.simplefilter("ignore")

class _Quota(Exception):
    def __init__(self, user, limit):
        super().__init__(f"{{user}} is over {{limit}}")
        self.user, self.limit = user, limit

def _traceback():
    try:
        raise ValueError("boom")
    except ValueError as error:
        return error.__traceback__

lib, out = sys.argv[1], sys.argv[2]
if lib == "pickle":
    dumps = pickle.dumps
elif lib == "marinade standalone":
    import marinade
    def dumps(obj):
        return marinade.dumps(obj, standalone=True)
else:
    dumps = __import__(lib).dumps
results = {{}}
for name, expression in {cases!r}:
    try:
        obj = eval(expression)
    except Exception as error:
        results[name] = ("setup", f"{{type(error).__name__}}: {{error}}")
        continue
    try:
        results[name] = ("ok", dumps(obj))
    except BaseException as error:
        results[name] = ("dumps", f"{{type(error).__name__}}: {{error}}"[:300])
with open(out, "wb") as handle:
    pickle.dump(results, handle)
"""

CONSUMER = """
import pickle, sys
{imports}
warnings.simplefilter("ignore")
checks = dict({checks!r})
with open(sys.argv[1], "rb") as handle:
    results = pickle.load(handle)
verdicts = {{}}
for name, (status, value) in results.items():
    if status != "ok":
        verdicts[name] = (status, value)
        continue
    try:
        obj = pickle.loads(value)
    except BaseException as error:
        verdicts[name] = ("loads", f"{{type(error).__name__}}: {{error}}"[:300])
        continue
    try:
        good = bool(eval(checks[name]))
    except BaseException as error:
        verdicts[name] = ("check", f"{{type(error).__name__}}: {{error}}"[:300])
        continue
    verdicts[name] = ("ok", "") if good else ("check", "loaded, but the check is false")
with open(sys.argv[2], "w", encoding="utf-8") as handle:
    import json
    json.dump(verdicts, handle)
"""

LIBRARIES = ("pickle", "cloudpickle", "dill", "marinade", "marinade standalone")


def _run(args: list[str], cwd: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"{args[:3]} failed:\n{proc.stdout}\n{proc.stderr}")


def survey(libraries=LIBRARIES, cases=CASES) -> dict[str, dict[str, tuple[str, str]]]:
    imports = "import " + ", ".join(MODULES)
    producer = PRODUCER.format(imports=imports, cases=[(c[1], c[2]) for c in cases])
    consumer = CONSUMER.format(imports=imports, checks=[(c[1], c[3]) for c in cases])
    found: dict[str, dict[str, tuple[str, str]]] = {}
    with tempfile.TemporaryDirectory() as work:
        made, elsewhere = Path(work, "made"), Path(work, "elsewhere")
        made.mkdir()
        elsewhere.mkdir()
        (made / "producer.py").write_text(producer, encoding="utf-8")
        (elsewhere / "consumer.py").write_text(consumer, encoding="utf-8")
        for lib in libraries:
            payloads, verdicts = made / "payloads.pkl", elsewhere / "verdicts.json"
            _run([sys.executable, "producer.py", lib, str(payloads)], cwd=str(made))
            # A bare interpreter for standalone payloads: no site-packages at all.
            loader = [sys.executable, "-I", "-S"] if lib == "marinade standalone" else [
                sys.executable]
            _run([*loader, "consumer.py", str(payloads), str(verdicts)], cwd=str(elsewhere))
            found[lib] = {k: tuple(v) for k, v in
                          json.loads(verdicts.read_text(encoding="utf-8")).items()}
    return found


def _versions(libraries) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for lib in libraries:
        name = lib.split()[0]
        if name != "pickle" and name not in versions:
            try:
                versions[name] = __import__(name).__version__
            except (ImportError, AttributeError):
                versions[name] = "?"
    return versions


def markdown(found: dict, cases=CASES) -> str:
    libs = list(found)
    lines = ["| object | " + " | ".join(libs) + " |", "|---|" + "---|" * len(libs)]
    for _group, name, _build, _check in cases:
        marks = ["yes" if found[lib][name][0] == "ok" else "no" for lib in libs]
        lines.append(f"| {name} | " + " | ".join(marks) + " |")
    totals = [sum(found[lib][c[1]][0] == "ok" for c in cases) for lib in libs]
    lines.append(f"| **of {len(cases)}** | " + " | ".join(f"**{t}**" for t in totals) + " |")
    return "\n".join(lines)


def write_docs(table: str, versions: dict[str, str]) -> None:
    text = DOC.read_text(encoding="utf-8")
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    stamp = ", ".join(f"{k} {v}" for k, v in versions.items())
    DOC.write_text(f"{head}{START}\n{table}\n\nMeasured with {stamp}.\n{END}{tail}",
                   encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="PATH", help="write the verdicts as JSON to PATH")
    parser.add_argument("--libs", nargs="+", choices=LIBRARIES, default=list(LIBRARIES))
    parser.add_argument("--write-docs", action="store_true",
                        help=f"replace the table in {DOC.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    found = survey(args.libs)
    table = markdown(found)
    print(table)
    for lib, verdicts in found.items():
        for name, (status, detail) in verdicts.items():
            if status != "ok" and lib.startswith("marinade"):
                print(f"  {lib}: {name}: {status}: {detail}")
    versions = _versions(args.libs)
    if args.json:
        Path(args.json).write_text(json.dumps({"versions": versions, "verdicts": found},
                                              indent=1), encoding="utf-8")
    if args.write_docs:
        write_docs(table, versions)
    return 0


if __name__ == "__main__":
    sys.exit(main())
