"""marinade: pickle Python code by value.

Lambdas, closures, nested functions and classes defined in ``__main__``,
notebooks or ``exec``'d code travel with their code, so that a fresh process
that cannot import them still loads them, with plain ``pickle``.
"""

from ._errors import PicklingError, UnpicklingError
from ._lookup import (
    list_registry_pickle_by_value,
    register_pickle_by_value,
    unregister_pickle_by_value,
)
from ._pickler import DEFAULT_PROTOCOL, Pickler, dump, dumps, load, loads

CloudPickler = Pickler  # for code written against cloudpickle's API

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_PROTOCOL",
    "CloudPickler",
    "Pickler",
    "PicklingError",
    "UnpicklingError",
    "dump",
    "dumps",
    "list_registry_pickle_by_value",
    "load",
    "loads",
    "register_pickle_by_value",
    "unregister_pickle_by_value",
]
