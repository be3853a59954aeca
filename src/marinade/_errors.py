"""Exceptions, and the diagnosis that names where pickling failed."""

from __future__ import annotations

import pickle


class PicklingError(pickle.PicklingError):
    """An object could not be pickled; the message names the path to it."""


# Where plain pickle (and so cloudpickle) raised TypeError, AttributeError or
# ValueError, marinade's error is also one: code that catches those around
# cloudpickle.dumps keeps working with ``import marinade as cloudpickle``.
# Module-level classes, so the error itself pickles (a pool sends it back).
class PicklingTypeError(PicklingError, TypeError):
    """A PicklingError where pickle raised TypeError (``cannot pickle 'X' object``)."""


class PicklingAttributeError(PicklingError, AttributeError):
    """A PicklingError where pickle raised AttributeError (a local object)."""


class PicklingValueError(PicklingError, ValueError):
    """A PicklingError where a ``__reduce__`` raised ValueError."""


_ALSO = {TypeError: PicklingTypeError, AttributeError: PicklingAttributeError,
         ValueError: PicklingValueError}


def pickling_error(message: str, cause: BaseException) -> PicklingError:
    """The PicklingError for ``message``, also of ``cause``'s builtin kind."""
    for kind in type(cause).__mro__:
        also = _ALSO.get(kind)
        if also is not None:
            return also(message)
    return PicklingError(message)


class UnpicklingError(pickle.UnpicklingError):
    """A payload could not be loaded.

    ``offset`` is the byte position in the payload where the problem was
    found, when known (None otherwise).
    """

    def __init__(self, *args, offset: int | None = None):
        super().__init__(*args)
        self.offset = offset  # in __dict__: pickling the error keeps it


class SignatureError(UnpicklingError):
    """A signed payload failed verification, or a payload that had to be
    signed was not.

    A subclass of ``UnpicklingError`` (not ``ValueError``): it is one more
    way a payload can be refused, so code that loads untrusted bytes catches
    every refusal with one ``except UnpicklingError``.
    """


class RestrictedError(UnpicklingError):
    """Restricted loading refused a payload: it needs a global outside the
    allow-list, carries code without a valid signature, or uses an opcode
    that restricted loading does not accept (``EXT*``, persistent ids)."""
