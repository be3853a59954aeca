"""Deterministic marshal bytes for code objects.

``marshal.dumps`` decides whether to emit a back-reference by looking at the
reference count of each object, and writes frozenset constants in hash order.
Both differ from process to process, so the same function could give different
payload bytes in two runs. Caching systems hash payloads, so we rewrite the
stream into a canonical form: a value that occurs more than once is written
once, flagged, and referenced afterwards; nothing else is flagged; set
elements are sorted. The result is still plain marshal data that
``marshal.loads`` reads on the same Python version.

This runs once for every code object a process pickles, so it is built for
speed. One parse of the raw stream builds a DAG in which equal values are one
node: an atom is a tuple (type byte without the flag, payload bytes),
a container is a list keyed by its kind and children, and code objects are
never merged. The parse also counts, for every node, the slots of distinct
parents that point at it; a value is shared exactly when that count is two or
more. One pre-order walk of the DAG then writes the canonical stream.
"""

from __future__ import annotations

import struct

try:  # the C loop behind collections.Counter, without Counter's own overhead
    from _collections import _count_elements
except ImportError:  # pragma: no cover - other implementations
    from collections import _count_elements

_FLAG_REF = 0x80
_UNPACK_I = struct.Struct("<i").unpack_from
_PACK_I = struct.Struct("<i").pack

# Atoms: type byte -> size of their payload after the type byte.
_FIXED = {ord(c): n for c, n in (("i", 4), ("g", 8), ("y", 16))}
_LEN4 = frozenset(map(ord, "stuaA"))  # 4-byte length, then bytes
_LEN1 = frozenset(map(ord, "zZ"))  # 1-byte length, then bytes
_SEQ4 = frozenset(map(ord, "([<>"))  # 4-byte count, then items
_SMALL_TUPLE = ord(")")
_LONG = ord("l")
_DICT = ord("{")
_CODE = ord("c")
_REF = ord("r")
_NULL = ord("0")
_SETS = frozenset(map(ord, "<>"))
# Singletons: marshal.loads ignores the ref flag on them and reserves no ref
# slot, so flagging one would shift every later back-reference. They are
# written as their bare type byte, never counted.
_SINGLETONS = {k: (k, b"") for k in map(ord, "NFTS.0")}
_SINGLETON_IDS = frozenset(map(id, _SINGLETONS.values()))

# A container node is a list [kind, children, head]; ``head`` is the bytes
# between the type byte and the children (code objects: (5 ints, firstlineno)).
_KIND, _CHILDREN, _HEAD = range(3)


def _parse(data: bytes):
    """Parse marshal ``data``: (root node, ids of the nodes to share)."""
    pos = 0
    refs: list = []  # raw back-reference slots, in marshal.loads order
    atoms: dict[tuple, tuple] = {}  # (kind, payload) -> the one tuple used as its node
    containers: dict[tuple, list] = {}
    parent_ids: list[int] = []  # id(child) for every child slot of every distinct container
    singletons, fixed, len4, len1 = _SINGLETONS, _FIXED, _LEN4, _LEN1
    unpack = _UNPACK_I

    # Atoms are most of a code object: they are parsed inline in this loop,
    # and only containers recurse.
    def values(count: int) -> list:
        nonlocal pos
        found = []
        for _ in range(count):
            code = data[pos]
            start = pos = pos + 1
            kind = code & 0x7F
            if kind in singletons:
                found.append(singletons[kind])
                continue
            if kind in len1:
                pos = start + 1 + data[start]
            elif kind in len4:
                pos = start + 4 + unpack(data, start)[0]
            elif kind in fixed:
                pos = start + fixed[kind]
            elif kind == _LONG:
                pos = start + 4 + 2 * abs(unpack(data, start)[0])
            elif kind == _REF:
                pos = start + 4
                n = refs[unpack(data, start)[0]]
                if n is None:
                    raise ValueError("marshal reference to an unfinished object")
                found.append(n)
                continue
            else:
                found.append(container(kind, start, code != kind))
                continue
            key = (kind, data[start:pos])
            n = atoms.setdefault(key, key)
            if code != kind:
                refs.append(n)  # a flagged atom's slot: no children, so pre-order holds
            found.append(n)
        return found

    def container(kind: int, start: int, flagged: bool) -> list:
        nonlocal pos
        slot = -1
        if flagged:
            slot = len(refs)
            refs.append(None)  # reserved before the children, like marshal.c
        if kind == _CODE:
            n = [kind, None, None]
            if flagged:
                refs[slot] = n
            pos = start + 20
            children = values(8)
            lineno = data[pos:pos + 4]
            pos += 4
            children += values(2)
            n[_HEAD] = (data[start:start + 20], lineno)
            n[_CHILDREN] = children
        else:
            if kind == _SMALL_TUPLE:
                pos = start + 1
                count = data[start]
                children = values(count) if count else []
            elif kind in _SEQ4:
                pos = start + 4
                children = values(unpack(data, start)[0])
            elif kind == _DICT:
                children = []
                while data[pos] != _NULL:
                    children += values(2)
                pos += 1
            else:
                raise ValueError(f"unexpected marshal type {chr(kind)!r}")
            if kind in _SETS:
                key = (kind, *sorted(map(id, children)))  # equal sets in any order
            else:
                key = (kind, *map(id, children))
            n = containers.get(key)
            if n is not None:  # an equal value seen before: its children are counted
                if flagged:
                    refs[slot] = n
                return n
            n = containers[key] = [kind, children, None]
            if flagged:
                refs[slot] = n
            # (the kind, a small int, is never the id of a node: harmless to count)
            parent_ids.extend(key)
            return n
        parent_ids.extend(map(id, children))
        return n

    (root,) = values(1)
    if pos != len(data):
        raise ValueError("trailing bytes after marshal data")
    parents: dict[int, int] = {}  # id(node) -> parent slots pointing at it
    _count_elements(parents, parent_ids)
    shared = {i for i, count in parents.items() if count >= 2}
    shared -= _SINGLETON_IDS
    shared.discard(id(root))  # written once, whatever else points at it
    return root, shared


def _sort_key(n, cache: dict) -> bytes:
    """A total order on values (for set elements): content with lengths spelled out."""
    if type(n) is tuple:
        return bytes((n[0],)) + n[1]
    key = cache.get(id(n))
    if key is None:
        kind, children = n[_KIND], n[_CHILDREN]
        if kind == _CODE:
            key = b"c%d" % id(n)
        else:
            parts = [_sort_key(c, cache) for c in children]
            if kind in _SETS:
                parts.sort()
            key = bytes((kind,)) + b"%d:" % len(parts) + b"|".join(
                b"%d:%s" % (len(p), p) for p in parts)
        cache[id(n)] = key
    return key


def _write(root, shared: set[int]) -> bytes:
    out = bytearray()
    append = out.append
    extend = out.extend
    pack = _PACK_I
    slots: dict[int, int] = {}  # id(node) -> back-reference index, once written
    sort_cache: dict = {}

    def write_all(nodes) -> None:
        # Atoms are written inline; containers recurse.
        for n in nodes:
            flag = 0
            if id(n) in shared:
                slot = slots.get(id(n))
                if slot is not None:
                    append(_REF)
                    extend(pack(slot))
                    continue
                slots[id(n)] = len(slots)
                flag = _FLAG_REF
            if type(n) is tuple:  # an atom or singleton: (kind, payload)
                append(n[0] | flag)
                extend(n[1])
                continue
            kind = n[_KIND]
            children = n[_CHILDREN]
            append(kind | flag)
            if kind == _CODE:
                ints, lineno = n[_HEAD]
                extend(ints)
                write_all(children[:8])
                extend(lineno)
                write_all(children[8:])
                continue
            if kind in _SETS:
                children = sorted(children, key=lambda c: _sort_key(c, sort_cache))
            if kind == _SMALL_TUPLE:
                append(len(children))
            elif kind != _DICT:
                extend(pack(len(children)))
            write_all(children)
            if kind == _DICT:
                append(_NULL)

    write_all((root,))
    return bytes(out)


def canonical_marshal(data: bytes) -> bytes:
    """Rewrite marshal bytes into the canonical form described above."""
    root, shared = _parse(data)
    return _write(root, shared)
