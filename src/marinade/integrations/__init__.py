"""Integrations with process pools and cluster frameworks.

Nothing here is imported by ``import marinade``: ``marinade.get_context``,
``marinade.wrap`` and ``marinade.patch_multiprocessing`` load their module on
first use, so that programs which only pickle never pay for multiprocessing's
machinery.

- ``multiprocessing``: a multiprocessing context whose pickling goes through
  marinade, and the opt-in patch of the default one;
- ``wrap``: an object any pickle-based framework can carry, which turns back
  into the original on arrival without marinade installed there.
"""
