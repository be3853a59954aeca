"""Smoke tests for the cross-process helpers (stdlib pickle only)."""

import sys

import pytest

from helpers import LOAD, run_roundtrip, run_script


def test_roundtrip_plain_data(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer="""
            import os, pickle
            with open(os.environ["MARINADE_PAYLOAD"], "wb") as f:
                f.write(pickle.dumps({"a": 1}))
        """,
        consumer=f"""
            {LOAD}
            print(obj)
        """,
    )
    assert out == "{'a': 1}"


def test_consumer_cannot_import_producer(tmp_path):
    out = run_roundtrip(
        tmp_path,
        producer="""
            import os, pickle

            def helper():
                return 1

            assert __name__ == "__main__"
            with open(os.environ["MARINADE_PAYLOAD"], "wb") as f:
                f.write(pickle.dumps("payload"))
        """,
        consumer="""
            import os, sys
            try:
                import script
            except ImportError:
                print("import failed")
            else:
                print("imported", script.__file__)
            print(os.path.exists(os.environ["MARINADE_PAYLOAD"]))
        """,
    )
    assert out.splitlines() == ["import failed", "True"]


def test_pickled_main_function_fails_without_by_value(tmp_path):
    # Baseline for marinade: stdlib pickle stores __main__ functions by
    # reference, so loading in the consumer must fail.
    with pytest.raises(AssertionError, match="AttributeError|Can't get attribute"):
        run_roundtrip(
            tmp_path,
            producer="""
                import os, pickle
                def f():
                    return 1
                open(os.environ["MARINADE_PAYLOAD"], "wb").write(pickle.dumps(f))
            """,
            consumer=LOAD,
        )


def test_producer_failure_is_reported(tmp_path):
    with pytest.raises(AssertionError, match="producer exited with code 3"):
        run_roundtrip(tmp_path, "import sys; sys.exit(3)", "print('unreached')")


def test_run_script_uses_same_interpreter(tmp_path):
    proc = run_script(tmp_path, "import sys; print(sys.executable)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == sys.executable
