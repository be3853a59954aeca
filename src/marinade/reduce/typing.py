"""Reducers for ``typing`` constructs defined by value (TypeVar, ParamSpec...).

``reducers()`` gives the type -> reducer table merged into the Pickler's.
"""

from __future__ import annotations


def reducers() -> dict:
    return {}
