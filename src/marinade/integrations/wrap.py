"""``marinade.wrap(obj)``: carry code through any pickle-based framework.

Dask, Ray, joblib, multiprocessing and Spark pickle what they ship with their
own pickler (plain pickle or cloudpickle). A wrapped object needs nothing
from them but ``__reduce_ex__``: it reduces to ``pickle.loads(<standalone
marinade payload>)``, so what arrives on the other side is ``obj`` itself,
rebuilt by plain pickle, with no marinade installed there.

Transit through a Dask scheduler. Dask's scheduler unpickles the whole task
graph and pickles each task again (pickle, else cloudpickle) for the
workers: an object unwrapped there would travel on with cloudpickle, losing
what marinade keeps (a local class's ``__qualname__``, the globals that
string annotations name, ``lru_cache`` functions of ``__main__``). So the
payload holds a small landing function (shipped by value, so it needs no
marinade either) and the object's own payload still as bytes: the landing
function returns the object, except while a Dask scheduler is unpickling,
where it returns a stand-in that pickles back to the same landing call.
The workers then unwrap it.

The payload is made each time the wrapper is pickled (it is a snapshot of
``obj`` at that moment, like any pickle), and it is deterministic: frameworks
that hash pickles to name tasks get stable names.
"""

from __future__ import annotations

import builtins
import copy
import pickle
import types
from typing import Any

from .._pickler import dumps
from ..reduce._expr import Call

# The landing function travels by value inside every wrapped payload (no
# marinade on the receiving side). It lives in a module that does not exist,
# so marinade and cloudpickle both ship it by value, never by name.
_LANDING_SOURCE = """
def _land(payload):
    import sys
    frame = sys._getframe(1)
    for _ in range(100):
        if frame is None:
            break
        if frame.f_globals.get("__name__") == "distributed.scheduler":
            break
        frame = frame.f_back
    else:
        frame = None
    if frame is None:
        import pickle
        return pickle.loads(payload)

    class InTransit:
        # Unpickled by a Dask scheduler, which pickles tasks again for the
        # workers: stay packed, and land there.
        __slots__ = ("payload",)

        def __reduce__(self):
            return _land, (self.payload,)

        def __call__(self, *args, **kwargs):  # run on the scheduler itself
            import pickle
            return pickle.loads(self.payload)(*args, **kwargs)

    transit = InTransit()
    transit.payload = payload
    return transit
"""


def _trim(code: types.CodeType) -> types.CodeType:
    # Line tables only cost bytes in every payload.
    consts = tuple(_trim(c) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return code.replace(co_consts=consts, co_linetable=b"")


_landing_namespace: dict = {"__name__": "marinade_wrap_landing", "__builtins__": builtins}
exec(_trim(compile(_LANDING_SOURCE, "<marinade.wrap>", "exec")), _landing_namespace)
_land = _landing_namespace["_land"]

__all__ = ["Wrapped", "wrap"]

_loads = pickle.loads  # reduces to the stdlib's ``_pickle.loads``: loadable anywhere


class Wrapped:
    """A stand-in for an object, that pickles as a standalone marinade payload.

    Calling it calls the object; other attributes are read from the object;
    ``__wrapped__`` is the object.
    """

    __slots__ = ("_obj",)

    def __init__(self, obj: Any):
        self._obj = obj

    @property
    def __wrapped__(self) -> Any:
        return self._obj

    def __call__(self, /, *args, **kwargs):
        return self._obj(*args, **kwargs)

    def __reduce_ex__(self, protocol):
        landing = Call(_land, (dumps(self._obj, standalone=True),))
        return _loads, (dumps(landing, standalone=True),)

    def __getattr__(self, name: str):
        if name == "_obj":  # not set yet (a half-built instance): no recursion
            raise AttributeError(name)
        return getattr(self._obj, name)

    def __copy__(self) -> Wrapped:
        return Wrapped(self._obj)

    def __deepcopy__(self, memo) -> Wrapped:
        return Wrapped(copy.deepcopy(self._obj, memo))

    def __repr__(self) -> str:
        return f"marinade.wrap({self._obj!r})"


def wrap(obj: Any) -> Wrapped:
    """Wrap ``obj`` so that any pickle-based framework can carry it.

    Pickled (by plain pickle, cloudpickle or anything that honours
    ``__reduce_ex__``), the wrapper becomes a standalone marinade payload
    that loads with plain ``pickle`` and turns back into ``obj`` on arrival,
    where marinade need not be installed. Lambdas, closures, ``__main__``
    functions and classes, their instances and any data holding them travel
    by value. Calling the wrapper calls ``obj``. Wrapping a wrapper returns it.

    The receiving side must run the same Python minor version (bytecode
    differs between versions; a mismatch fails with a clear error on load).
    """
    if type(obj) is Wrapped:
        return obj
    return Wrapped(obj)
