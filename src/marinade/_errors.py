"""Exceptions, and the diagnosis that names where pickling failed."""

from __future__ import annotations

import pickle


class PicklingError(pickle.PicklingError):
    """An object could not be pickled; the message names the path to it."""


class UnpicklingError(pickle.UnpicklingError):
    """A payload could not be loaded."""
