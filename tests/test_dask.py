"""marinade.wrap on a real Dask cluster: ``distributed.LocalCluster(processes=True)``.

The script, run as ``__main__``, starts a one-worker cluster on localhost and
shuts it down. Before submitting anything it makes marinade unimportable in
the worker (an import hook installed with ``client.run``), so the wrapped
objects must load there with plain pickle. It covers what cloudpickle (Dask's
own fallback) gets wrong: a local class's ``__qualname__``, an ``lru_cache``
``__main__`` function, string annotations read with ``typing.get_type_hints``.
Dask's scheduler unpickles the graph and pickles the tasks again: these cases
only pass if the wrapped payloads stay packed through it (see wrap.py).
"""

from __future__ import annotations

import json

import pytest

from test_wrap import STANDALONE_MODULES

from helpers import run_script

pytest.importorskip("distributed", reason="dask.distributed is not installed")

SCRIPT = r'''
from __future__ import annotations

import json

if __name__ == "__main__":
    import functools
    import typing

    from distributed import Client, LocalCluster

    import marinade
    from marinade import wrap

    def hide_marinade():
        import sys

        class Hide:
            def find_spec(self, name, path=None, target=None):
                if name == "marinade" or name.startswith("marinade."):
                    raise ImportError(f"marinade is hidden on this worker: {name}")
                return None

        sys.meta_path.insert(0, Hide())
        return sorted(m for m in sys.modules if m.split(".")[0] == "marinade")

    base = 100

    class Point:
        def __init__(self, x, y):
            self.x, self.y = x, y

        def norm1(self) -> int:
            return abs(self.x) + abs(self.y)

        def moved(self, dx: int) -> Point:
            return Point(self.x + dx, self.y)

    def make_local():
        class Local:
            def hello(self):
                return "hello"
        return Local

    @functools.lru_cache(maxsize=None)
    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    def annotated(p: Point, n: int) -> list[Point]:
        return [p] * n

    def hints(f):
        return sorted((k, str(v)) for k, v in typing.get_type_hints(f).items())

    def worker_state():
        import sys
        try:
            import marinade  # noqa: F401
            importable = True
        except ImportError:
            importable = False
        return [importable, sorted(m for m in sys.modules if m.split(".")[0] == "marinade")]

    out = {}
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None, host="127.0.0.1") as cluster, \
            Client(cluster) as client:
        out["before"] = list(client.run(hide_marinade).values())[0]
        out["closure"] = client.submit(wrap(lambda x: x + base), 1).result(60)
        out["map"] = client.gather(client.map(wrap(lambda x: x * base), range(4)))
        out["method"] = client.submit(wrap(lambda p: p.moved(1).norm1()),
                                      wrap(Point(-3, 4))).result(60)
        out["instance_class"] = client.submit(
            wrap(lambda p, cls: [type(p) is cls, type(p.moved(2)) is cls, cls.__qualname__]),
            wrap(Point(1, 2)), wrap(Point)).result(60)
        out["local_class"] = client.submit(
            wrap(lambda cls: [cls.__qualname__, cls.hello.__qualname__, cls().hello()]),
            wrap(make_local())).result(60)
        out["lru_cache"] = client.submit(wrap(fib), 80).result(60)
        out["lru_cache_hits"] = client.submit(
            wrap(lambda f: [f(30), f.cache_info().hits > 0]), wrap(fib)).result(60)
        out["hints"] = client.submit(wrap(hints), wrap(annotated)).result(60)
        out["after"] = client.submit(wrap(worker_state)).result(60)
        # Control: plain Dask (pickle, then cloudpickle) on the same lru_cache
        # function. The worker cannot load it (and then stops answering), so last.
        try:
            client.submit(fib, 10).result(5)
            out["plain_dask_lru_cache"] = "worked"
        except Exception as exc:
            out["plain_dask_lru_cache"] = type(exc).__name__
    print(json.dumps(out))
'''


def test_wrapped_code_on_a_local_cluster_without_marinade(tmp_path):
    proc = run_script(tmp_path, SCRIPT, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["before"] == []  # the worker never imported marinade
    assert out["closure"] == 101
    assert out["map"] == [0, 100, 200, 300]
    assert out["method"] == 6
    assert out["instance_class"] == [True, True, "Point"]
    assert out["local_class"] == ["make_local.<locals>.Local",
                                  "make_local.<locals>.Local.hello", "hello"]
    assert out["lru_cache"] == 23416728348467685
    assert out["lru_cache_hits"] == [832040, True]
    assert out["hints"] == [["n", "<class 'int'>"], ["p", "<class '__main__.Point'>"],
                            ["return", "list[__main__.Point]"]]
    importable, loaded = out["after"]
    assert importable is False  # the hook held: nothing above needed marinade
    assert set(loaded) <= STANDALONE_MODULES  # standalone payloads' registry and kits
    assert out["plain_dask_lru_cache"] != "worked"
