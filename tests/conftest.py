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
