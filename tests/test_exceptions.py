"""Exceptions keep their chain (``__cause__``, ``__context__``, suppression)
and their traceback.

Plain pickle, cloudpickle and dill send ``args`` and ``__dict__`` only: a
worker's ``raise Failed(...) from error`` arrives without ``error``, and
without the place it happened.
"""

import pickle
import textwrap
import threading
import traceback

import marinade

from helpers import DUMP, LOAD, run_roundtrip


def test_chains_travel_to_a_fresh_process(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer=f"""
            class FetchFailed(Exception):
                def __init__(self, url, attempts):
                    super().__init__(url, attempts)
                    self.url = url

            def fetch(url):
                try:
                    {{}}[url]
                except KeyError as error:
                    raise FetchFailed(url, 3) from error

            def caught(fn, *args):
                try:
                    fn(*args)
                except BaseException as error:
                    return error

            def cleanup_fails():
                try:
                    fetch("a")
                except FetchFailed:
                    raise RuntimeError("cleanup failed")  # implicit context

            def hidden():
                try:
                    1 / 0
                except ZeroDivisionError:
                    raise ValueError("clean") from None

            def group():
                raise ExceptionGroup("many", [caught(fetch, "b"), caught(hidden)])

            obj = [caught(fetch, "x"), caught(cleanup_fails), caught(hidden), caught(group)]
            obj[0].add_note("while syncing")
            {DUMP}
        """,
        consumer=f"""
            import traceback
            {LOAD}
            direct, implicit, hidden, group = obj
            print(type(direct).__name__, direct.args, direct.url, repr(direct.__cause__),
                  direct.__suppress_context__, direct.__notes__)
            print(repr(implicit.__context__), repr(implicit.__context__.__cause__),
                  implicit.__cause__, implicit.__suppress_context__)
            print(repr(hidden.__context__), hidden.__suppress_context__, hidden.__cause__)
            text = "".join(traceback.format_exception(direct))
            print("direct cause of the following" in text, "KeyError: 'x'" in text)
            text = "".join(traceback.format_exception(hidden))
            print("ZeroDivisionError" in text)  # suppressed, as in the producer
            first, second = group.exceptions
            print(type(group).__name__, repr(first.__cause__), repr(second.__context__))
        """,
    )
    assert out.splitlines() == [
        "FetchFailed ('x', 3) x KeyError('x') True ['while syncing']",
        "FetchFailed('a', 3) KeyError('a') None False",
        "ZeroDivisionError('division by zero') True None",
        "True True",
        "False",
        "ExceptionGroup KeyError('b') ZeroDivisionError('division by zero')",
    ]


def test_a_link_that_cannot_travel_is_left_out():
    # Local classes: tblib (which dask installs) registers a reducer in
    # copyreg for every exception class that exists when it is installed.
    class Holder(Exception):
        pass

    class After(Exception):
        pass

    try:
        try:
            raise Holder(threading.Lock())  # its args cannot be pickled
        except Holder:
            raise After("after") from None
    except After as error:
        exc = error
    loaded = pickle.loads(marinade.dumps(exc))
    assert loaded.args == ("after",) and loaded.__context__ is None
    # The same exception as the object itself still fails, naming the lock.
    try:
        marinade.dumps(exc.__context__)
    except marinade.PicklingError as failure:
        assert "lock" in str(failure)
    else:
        raise AssertionError("a lock pickled")


def test_cycles_and_manual_chains():
    class Linked(Exception):
        pass

    first, second = Linked("first"), Linked("second")
    first.__cause__, second.__cause__ = second, first  # a cycle made by hand
    first.__suppress_context__ = False  # set after __cause__, which turned it on
    loaded = pickle.loads(marinade.dumps(first))
    assert loaded.__cause__.__cause__ is loaded
    assert loaded.__suppress_context__ is False and loaded.__cause__.__suppress_context__


def _raised_while_handling(handled: BaseException, raised: BaseException) -> BaseException:
    """``raised`` as raised in the ``except`` block of ``handled`` (its implicit context)."""
    try:
        try:
            raise handled
        except type(handled):
            raise raised  # noqa: B904 (the implicit context is the point)
    except type(raised) as error:
        return error


def test_exceptions_with_own_state_handling_are_left_alone():
    class Custom(Exception):
        def __setstate__(self, state):
            self.restored = state

    exc = _raised_while_handling(KeyError("k"), Custom("c"))
    loaded = pickle.loads(marinade.dumps(exc))
    assert loaded.args == ("c",) and loaded.__context__ is None  # as plain pickle does


def test_reducers_registered_for_an_exception_class_win():
    import copyreg

    class Registered(Exception):
        pass

    def reduce_registered(exc):
        return Registered, ("from the registered reducer",)

    exc = _raised_while_handling(KeyError("k"), Registered("r"))
    copyreg.pickle(Registered, reduce_registered)
    try:
        loaded = pickle.loads(marinade.dumps(exc))
    finally:
        del copyreg.dispatch_table[Registered]
    assert loaded.args == ("from the registered reducer",) and loaded.__context__ is None
    assert repr(pickle.loads(marinade.dumps(exc)).__context__) == "KeyError('k')"


TRACEBACK_PRODUCER = """
    import sys

    def parse(text):
        return int(text)  # fails here

    class Loader:
        def load(self, text):
            try:
                return parse(text)
            except ValueError as error:
                raise LookupError("cannot load " + text) from error

    try:
        Loader().load("x")
    except LookupError as error:
        exc = error

    def frames(tb):
        while tb is not None:
            code = tb.tb_frame.f_code
            yield code.co_filename, code.co_qualname, tb.tb_lineno
            tb = tb.tb_next

    # What the consumer must find, as seen here.
    obj = {"exc": exc, "expected": [list(frames(exc.__traceback__)),
                                    list(frames(exc.__cause__.__traceback__))]}
"""

TRACEBACK_CONSUMER = """
    import traceback
    exc, expected = obj["exc"], obj["expected"]

    def frames(tb):
        while tb is not None:
            code = tb.tb_frame.f_code
            yield code.co_filename, code.co_qualname, tb.tb_lineno
            tb = tb.tb_next

    print([list(frames(exc.__traceback__)), list(frames(exc.__cause__.__traceback__))]
          == expected, len(expected[0]), len(expected[1]))
    summary = traceback.extract_tb(exc.__cause__.__traceback__)
    print([(f.name, f.line) for f in summary])
    text = "".join(traceback.format_exception(exc))
    print("in Loader.load" in text or "in load" in text, "direct cause" in text)
    frame = exc.__traceback__.tb_next.tb_frame
    print(frame.f_globals["__name__"], frame.f_locals, frame.f_lineno == expected[0][1][2])
"""


def test_tracebacks_travel_to_a_fresh_process(tmp_path):
    out = run_roundtrip(tmp_path, producer=TRACEBACK_PRODUCER + f"\n    {DUMP}\n",
                        consumer=f"    {LOAD}\n" + TRACEBACK_CONSUMER)
    # The producer script is in the payload's file names and is readable
    # from the consumer's folder too (same machine): source lines show up.
    assert out.splitlines() == [
        "True 2 2",
        "[('load', 'return parse(text)'), ('parse', 'return int(text)  # fails here')]",
        "True True",
        "__main__ {} True",
    ]


def test_tracebacks_in_standalone_payloads(tmp_path):
    from test_standalone import roundtrip

    consumer = textwrap.dedent(TRACEBACK_CONSUMER).replace("exc, expected = obj",
                                                           "obj = load()\nexc, expected = obj")
    out = roundtrip(tmp_path, producer=textwrap.dedent(TRACEBACK_PRODUCER), consumer=consumer)
    assert out.splitlines()[0] == "True 2 2"
    assert out.splitlines()[3] == "__main__ {} True"


def test_tracebacks_are_data_for_restricted_loading(monkeypatch):
    import copyreg
    import types

    # tblib (which dask installs) registers reducers in copyreg for tracebacks
    # and for every exception class that existed then.
    for kind in (types.TracebackType, KeyError):
        monkeypatch.delitem(copyreg.dispatch_table, kind, raising=False)

    def fail():
        raise KeyError("k")

    try:
        fail()
    except KeyError as error:
        exc = error
    payload = marinade.dumps(exc)
    loaded = marinade.loads(payload, allow=[KeyError])  # unsigned: it carries no code
    assert [f.name for f in traceback.extract_tb(loaded.__traceback__)] == [
        "test_tracebacks_are_data_for_restricted_loading", "fail"]
    assert pickle.loads(marinade.dumps(exc.__traceback__)).tb_lineno == \
        exc.__traceback__.tb_lineno
    portable = pickle.loads(marinade.dumps(exc, portable=True))
    assert traceback.extract_tb(portable.__traceback__)[-1].name == "fail"


def test_classes_with_their_own_init_come_back(tmp_path):
    # Plain pickle calls the class with args: TypeError for these (and with
    # cloudpickle and dill). marinade makes them with __new__ instead.
    out = run_roundtrip(
        tmp_path,
        producer=f"""
            class FetchFailed(Exception):
                def __init__(self, url, attempts):
                    super().__init__(f"{{url}} failed after {{attempts}} attempts")
                    self.url, self.attempts = url, attempts

            class Missing(KeyError):
                def __init__(self, key, *, table):
                    super().__init__(key)
                    self.table = table

            class Done(StopIteration):  # C field 'value': made the plain way
                def __init__(self, value):
                    super().__init__(value)

            obj = [FetchFailed("http://x", 3), Missing("k", table="users"), Done(7)]
            {DUMP}
        """,
        consumer=f"""
            {LOAD}
            fetch, missing, done = obj
            print(type(fetch).__name__, fetch.args, fetch.url, fetch.attempts)
            print(str(missing), missing.table, isinstance(missing, KeyError))
            print(done.value, done.args)
        """,
    )
    assert out.splitlines() == [
        "FetchFailed ('http://x failed after 3 attempts',) http://x 3",
        "'k' users True",
        "7 (7,)",
    ]
