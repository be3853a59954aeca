"""Concurrent use: many threads dumping and loading at once.

marinade keeps process-wide caches (code bytes, global names, class keys, the
class registry, the by-value module registry); none of them may give a wrong
payload, a wrong object or an exception when threads race on them.
"""

from __future__ import annotations

import textwrap

from helpers import run_roundtrip, run_script

THREADS = 8


def src(*parts: str) -> str:
    return "\n".join(textwrap.dedent(part) for part in parts)


def test_threads_dump_and_load_across_processes(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=src(f"""
            import os, pickle, threading
            import marinade

            THREADS = {THREADS}
            ROUNDS = 40

            class Point:
                def __init__(self, x, y):
                    self.x, self.y = x, y
                def norm1(self):
                    return abs(self.x) + abs(self.y)

            def make_adder(n):
                def add(x):
                    return x + n
                return add

            shared_adder = make_adder(100)
            barrier = threading.Barrier(THREADS)
            results = [None] * THREADS
            errors = []

            def work(tid):
                mine = make_adder(tid)
                made = []
                barrier.wait()
                try:
                    for j in range(ROUNDS):
                        case = j % 5
                        if case == 0:
                            obj, arg, expected = shared_adder, j, j + 100
                        elif case == 1:
                            obj, arg, expected = mine, j, j + tid
                        elif case == 2:
                            obj, arg, expected = (lambda v, t=tid: v * t), j, j * tid
                        elif case == 3:
                            obj, arg, expected = Point, (tid, -j), tid + j
                        else:
                            obj, arg, expected = Point(tid, j), None, tid + j
                        data = marinade.dumps(obj)
                        back = pickle.loads(data)
                        if case == 3:
                            assert back is Point, back
                            got = back(*arg).norm1()
                        elif case == 4:
                            assert type(back) is Point
                            got = back.norm1()
                        else:
                            got = back(arg)
                        assert got == expected, (tid, j, got, expected)
                        made.append((data, case, arg, expected))
                except BaseException as exc:
                    errors.append(repr(exc))
                results[tid] = made

            threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert not errors, errors
            with open(os.environ["MARINADE_PAYLOAD"], "wb") as f:
                pickle.dump(results, f)
        """),
        consumer=src(f"""
            import os, pickle, threading

            THREADS = {THREADS}
            results = pickle.load(open(os.environ["MARINADE_PAYLOAD"], "rb"))
            items = [item for made in results for item in made]
            barrier = threading.Barrier(THREADS)
            errors = []
            classes = [set() for _ in range(THREADS)]
            checked = [0] * THREADS

            def work(tid):
                order = items[tid::2] + items[::-1]  # overlap on purpose
                barrier.wait()
                try:
                    for data, case, arg, expected in order:
                        back = pickle.loads(data)
                        if case == 3:
                            classes[tid].add(id(back))
                            got = back(*arg).norm1()
                        elif case == 4:
                            classes[tid].add(id(type(back)))
                            got = back.norm1()
                        else:
                            got = back(arg)
                        assert got == expected, (got, expected)
                        checked[tid] += 1
                except BaseException as exc:
                    errors.append(repr(exc))

            threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            print(errors or "no errors")
            print(len(items), sum(checked))
            # one Point class in the whole process, whichever thread loaded it
            print(len(set().union(*classes)))
        """),
        timeout=120,
    )
    n = THREADS * 40
    checks = sum(len(range(t, n, 2)) + n for t in range(THREADS))
    assert out.splitlines() == ["no errors", f"{n} {checks}", "1"]


def test_threads_loading_one_class_payload_get_one_class(tmp_path):
    # Each round, all threads load the same fresh class payload at the same
    # moment and use the class at once: they must get the same, complete class.
    out = run_roundtrip(
        tmp_path,
        producer="""
            import os, pickle
            import marinade

            payloads = []
            for i in range(30):
                namespace = {}
                body = "\\n".join(f"    def m{k}(self):\\n        return {k} + {i}"
                                  for k in range(40))
                exec(f"class C{i}:\\n    tag = {i}\\n{body}\\n", namespace)
                cls = namespace[f"C{i}"]
                cls.__module__ = "__main__"
                payloads.append(marinade.dumps(cls))
            with open(os.environ["MARINADE_PAYLOAD"], "wb") as f:
                pickle.dump(payloads, f)
        """,
        consumer=src(f"""
            import os, pickle, threading

            THREADS = {THREADS}
            payloads = pickle.load(open(os.environ["MARINADE_PAYLOAD"], "rb"))
            barrier = threading.Barrier(THREADS)
            got = [[None] * len(payloads) for _ in range(THREADS)]
            errors = []

            def work(tid):
                for i, data in enumerate(payloads):
                    barrier.wait()
                    try:
                        cls = pickle.loads(data)
                        obj = cls()
                        assert cls.tag == i and obj.m39() == 39 + i and obj.m0() == i
                        got[tid][i] = cls
                    except BaseException as exc:
                        errors.append(repr(exc))

            threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            print(errors[:3] or "no errors")
            same = all(len({{id(got[t][i]) for t in range(THREADS)}}) == 1
                       for i in range(len(payloads)))
            print(same, len({{id(c) for c in got[0]}}))
        """),
        timeout=120,
    )
    assert out.splitlines() == ["no errors", "True 30"]


def test_class_is_complete_when_another_thread_is_still_building_it(tmp_path):
    # A tiny switch interval makes the threads interleave inside one load.
    out = run_roundtrip(
        tmp_path,
        producer="""
            import os, pickle
            import marinade

            payloads = []
            for i in range(100):
                namespace = {"__name__": "__main__"}
                body = "\\n".join(f"    def m{k}(self):\\n        return {k}" for k in range(60))
                exec(f"class C{i}:\\n{body}\\n", namespace)
                payloads.append(marinade.dumps(namespace[f"C{i}"]))
            with open(os.environ["MARINADE_PAYLOAD"], "wb") as f:
                pickle.dump(payloads, f)
        """,
        consumer=src(f"""
            import os, pickle, sys, threading

            sys.setswitchinterval(1e-6)
            THREADS = {THREADS}
            payloads = pickle.load(open(os.environ["MARINADE_PAYLOAD"], "rb"))
            barrier = threading.Barrier(THREADS)
            errors = []

            def work():
                for data in payloads:
                    barrier.wait()
                    try:
                        pickle.loads(data)().m59()
                    except BaseException as exc:
                        errors.append(repr(exc))

            threads = [threading.Thread(target=work) for _ in range(THREADS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            print(len(errors), errors[:2])
        """),
        timeout=120,
    )
    assert out == "0 []"


def test_register_toggled_while_other_threads_pickle(tmp_path):
    helper_module = tmp_path / "script" / "toggled_mod.py"
    helper_module.parent.mkdir(parents=True)
    helper_module.write_text(textwrap.dedent("""
        FACTOR = 3

        def triple(x):
            return x * FACTOR

        class Box:
            def __init__(self, v):
                self.v = v
            def get(self):
                return triple(self.v)
    """))
    proc = run_script(tmp_path, src(f"""
        import pickle, threading
        import marinade
        import toggled_mod

        THREADS = {THREADS}
        stop = threading.Event()
        errors = []
        counts = {{"by_value": 0, "by_ref": 0, "toggles": 0}}
        count_lock = threading.Lock()

        def toggler():
            while not stop.is_set():
                marinade.register_pickle_by_value(toggled_mod)
                marinade.unregister_pickle_by_value(toggled_mod)
                counts["toggles"] += 1

        def make(n):
            return lambda x: toggled_mod.triple(x) + n

        def worker(tid):
            closure = make(tid)
            try:
                for j in range(300):
                    obj = [toggled_mod.triple, toggled_mod.Box, toggled_mod.Box(j), closure]
                    data = marinade.dumps(obj)
                    triple, Box, box, closure_back = pickle.loads(data)
                    # by value or by reference, the results must be right
                    assert triple(j) == 3 * j
                    assert box.get() == 3 * j and isinstance(box, Box)
                    assert Box(2).get() == 6
                    assert closure_back(j) == 3 * j + tid
                    # a by-value class loaded where it was made is the original
                    assert Box is toggled_mod.Box
                    by_ref = b"toggled_mod\\x94\\x8c\\x06triple" in data
                    with count_lock:
                        counts["by_ref" if by_ref else "by_value"] += 1
            except BaseException as exc:
                errors.append(repr(exc))

        t = threading.Thread(target=toggler)
        t.start()
        workers = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        stop.set()
        t.join()
        print(errors[:3] or "no errors")
        print(counts["by_value"] + counts["by_ref"], counts["toggles"] > 0)
        print(marinade.list_registry_pickle_by_value())
    """), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["no errors", f"{THREADS * 300} True", "set()"]
