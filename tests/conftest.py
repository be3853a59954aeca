"""pytest configuration.

``tests/`` is put on ``sys.path`` by ``pythonpath = ["tests"]`` in
pyproject.toml, so tests can ``from helpers import run_roundtrip``; the
fallback below keeps that working if pytest is run with another rootdir.
"""

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

# Hypothesis tests gate CI the same way on every run: a fixed (derandomized)
# set of examples, unless MARINADE_FUZZ_RANDOM=1 asks to explore (see
# test_fuzz_safety.py). Tests that set ``derandomize`` themselves keep theirs.
try:
    import os

    from hypothesis import settings as _hypothesis_settings
except ImportError:  # (a dev extra; the tests that need it skip without it)
    pass
else:
    _hypothesis_settings.register_profile(
        "marinade", derandomize=not os.environ.get("MARINADE_FUZZ_RANDOM"))
    _hypothesis_settings.load_profile("marinade")
