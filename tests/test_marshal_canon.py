"""Canonical marshal must stay loadable and equal to the original code.

Runs over every code object compiled from a set of large stdlib modules (and
the trimmed variants standalone payloads ship), on each interpreter.
"""

from __future__ import annotations

import importlib
import marshal
import types

import pytest

from marinade import standalone
from marinade.reduce._marshal_canon import canonical_marshal

MODULES = ["os", "json", "typing", "enum", "dataclasses", "asyncio.base_events", "argparse",
           "collections", "inspect", "pickle", "logging", "_pydecimal", "difflib", "ast"]


def _all_code(code: types.CodeType):
    yield code
    for const in code.co_consts:
        if type(const) is types.CodeType:
            yield from _all_code(const)


@pytest.mark.parametrize("module_name", MODULES)
def test_canonical_marshal_round_trips_stdlib_code(module_name):
    path = importlib.import_module(module_name).__file__
    with open(path, encoding="utf-8") as f:
        top = compile(f.read(), path, "exec")
    for code in _all_code(top):
        for variant in (code, standalone._trim_code(code)):
            canon = canonical_marshal(marshal.dumps(variant))
            assert marshal.loads(canon) == variant, variant
            assert canonical_marshal(canon) == canon  # a fixed point: stable bytes


def test_repeated_singletons_are_never_back_referenced():
    # marshal.loads reserves no reference slot for None/True/False/...: a
    # flagged singleton would shift later references (a crash, once).
    def f(a=None, b=None):
        x = (None, True, False, ..., None, True, "s", "s", 1.5, 1.5)
        return a, b, x, None if a else True

    code = standalone._trim_code(f.__code__)
    assert marshal.loads(canonical_marshal(marshal.dumps(code))) == code
