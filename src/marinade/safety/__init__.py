"""Safety and diagnostics: signed payloads, static inspection, restricted
loading and explanations (issue 6).

Nothing here is imported by ``import marinade``: the public entry points in
``marinade/__init__.py`` import these modules on first use.

- ``signing``: HMAC-SHA256 envelopes around payloads (``dumps(key=...)``).
- ``inspect``: what a payload would import, call and ship, without running it.
- ``restricted``: ``loads(allow=...)``, refusing globals outside an allow-list.
- ``explain``: what pickling an object would capture, with sizes.

Internals: ``_scan`` (the symbolic pickle machine), ``_code`` and ``_opcodes``
(shipped code, read with the opcode table of the version that made it),
``_rules`` (what is dangerous), ``_locate`` (where a load failed).
"""
