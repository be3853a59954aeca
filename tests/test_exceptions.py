"""Exceptions keep their chain (``__cause__``, ``__context__``, suppression).

Plain pickle, cloudpickle and dill send ``args`` and ``__dict__`` only: a
worker's ``raise Failed(...) from error`` arrives without ``error``.
"""

import pickle
import threading

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


def test_exceptions_with_own_state_handling_are_left_alone():
    class Custom(Exception):
        def __setstate__(self, state):
            self.restored = state

    try:
        try:
            raise KeyError("k")
        except KeyError:
            raise Custom("c")  # noqa: B904 (the implicit context is the point)
    except Custom as error:
        exc = error
    loaded = pickle.loads(marinade.dumps(exc))
    assert loaded.args == ("c",) and loaded.__context__ is None  # as plain pickle does


def test_reducers_registered_for_an_exception_class_win():
    import copyreg

    class Registered(Exception):
        pass

    def reduce_registered(exc):
        return Registered, ("from the registered reducer",)

    try:
        try:
            raise KeyError("k")
        except KeyError:
            raise Registered("r")  # noqa: B904 (the implicit context is the point)
    except Registered as error:
        exc = error
    copyreg.pickle(Registered, reduce_registered)
    try:
        loaded = pickle.loads(marinade.dumps(exc))
    finally:
        del copyreg.dispatch_table[Registered]
    assert loaded.args == ("from the registered reducer",) and loaded.__context__ is None
    assert repr(pickle.loads(marinade.dumps(exc)).__context__) == "KeyError('k')"
