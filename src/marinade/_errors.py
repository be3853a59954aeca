"""Exceptions, and the diagnosis that names where pickling failed."""

from __future__ import annotations

import pickle


class PicklingError(pickle.PicklingError):
    """An object could not be pickled; the message names the path to it."""


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
