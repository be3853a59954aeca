"""cloudpickle's ``cloudpickle_fast`` module: an older name for ``marinade.cloudpickle``.

cloudpickle 1.x and 2.x kept ``CloudPickler``, ``dumps`` and ``dump`` here,
and code still imports them from it.
"""

from __future__ import annotations

from marinade import cloudpickle as _cloudpickle

__all__ = list(_cloudpickle.__all__)


def __getattr__(name: str):
    return getattr(_cloudpickle, name)
