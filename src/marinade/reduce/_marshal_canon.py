"""Deterministic marshal bytes for code objects.

``marshal.dumps`` decides whether to emit a back-reference by looking at the
reference count of each object, and writes frozenset constants in hash order.
Both differ from process to process, so the same function could give different
payload bytes in two runs. Caching systems hash payloads, so we rewrite the
stream into a canonical form: equal atoms are shared by value (first occurrence
flagged, later ones referenced), containers are flagged only when referenced,
and set elements are sorted. The result is still plain marshal data that
``marshal.loads`` reads on the same Python version.
"""

from __future__ import annotations

import struct

_FLAG_REF = 0x80
_UNPACK_I = struct.Struct("<i").unpack_from
_UNPACK_L = struct.Struct("<l").unpack_from
_PACK_I = struct.Struct("<i").pack

# Atoms: type byte -> how their payload is sized.
_FIXED = {ord(c): n for c, n in (("N", 0), ("F", 0), ("T", 0), ("S", 0), (".", 0), ("0", 0),
                                  ("i", 4), ("g", 8), ("y", 16))}
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


class _Node:
    __slots__ = ("kind", "head", "children", "key", "target")

    def __init__(self, kind, head, children=None):
        self.kind = kind  # type byte without the ref flag
        self.head = head  # raw bytes after the type byte (atoms, counts, code ints)
        self.children = children  # list of _Node, or None for atoms
        self.key = None
        self.target = None  # for refs: the node referred to


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0
        self.refs: list[_Node] = []

    def node(self) -> _Node:
        data = self.data
        code = data[self.pos]
        self.pos += 1
        flag = code & _FLAG_REF
        kind = code & ~_FLAG_REF
        slot = None
        if flag:
            slot = len(self.refs)
            self.refs.append(None)  # reserved in pre-order, like marshal.c
        start = self.pos
        if kind in _FIXED:
            self.pos += _FIXED[kind]
            n = _Node(kind, data[start:self.pos])
        elif kind in _LEN4:
            size = _UNPACK_I(data, start)[0]
            self.pos += 4 + size
            n = _Node(kind, data[start:self.pos])
        elif kind in _LEN1:
            self.pos += 1 + data[start]
            n = _Node(kind, data[start:self.pos])
        elif kind == _LONG:
            digits = abs(_UNPACK_I(data, start)[0])
            self.pos += 4 + 2 * digits
            n = _Node(kind, data[start:self.pos])
        elif kind in _SEQ4 or kind == _SMALL_TUPLE:
            if kind == _SMALL_TUPLE:
                count = data[start]
                self.pos += 1
            else:
                count = _UNPACK_I(data, start)[0]
                self.pos += 4
            n = _Node(kind, b"", [])
            if slot is not None:
                self.refs[slot] = n
            n.children = [self.node() for _ in range(count)]
            return n
        elif kind == _DICT:
            n = _Node(kind, b"", [])
            if slot is not None:
                self.refs[slot] = n
            while self.data[self.pos] != _NULL:
                n.children.append(self.node())
                n.children.append(self.node())
            self.pos += 1
            return n
        elif kind == _CODE:
            n = _Node(kind, b"", [])
            if slot is not None:
                self.refs[slot] = n
            ints = data[start:start + 20]
            self.pos += 20
            objs = [self.node() for _ in range(8)]
            lineno = data[self.pos:self.pos + 4]
            self.pos += 4
            objs.append(self.node())
            objs.append(self.node())
            n.head = (ints, lineno)
            n.children = objs
            return n
        elif kind == _REF:
            index = _UNPACK_I(data, start)[0]
            self.pos += 4
            n = _Node(_REF, b"")
            n.target = self.refs[index]
            if n.target is None:
                raise ValueError("marshal reference to an unfinished object")
            return n
        else:
            raise ValueError(f"unexpected marshal type {chr(kind)!r}")
        if slot is not None:
            self.refs[slot] = n
        return n


def _key(node: _Node) -> bytes:
    """Content of a node with references expanded: equal keys, equal objects."""
    if node.kind == _REF:
        return _key(node.target)
    if node.key is None:
        if node.children is None:
            node.key = bytes((node.kind,)) + node.head
        elif node.kind == _CODE:
            # Code objects are never shared by value: identity is cheap to keep.
            node.key = b"c%d" % id(node)
        else:
            parts = [_key(c) for c in node.children]
            if node.kind in _SETS:
                parts.sort()
            node.key = bytes((node.kind,)) + b"%d:" % len(parts) + b"|".join(
                b"%d:%s" % (len(p), p) for p in parts)
    return node.key


class _Writer:
    def __init__(self):
        self.out = bytearray()
        self.index: dict[bytes, int] = {}
        self.shared: set[bytes] = set()

    def count(self, node: _Node) -> None:
        """First pass: find which values occur more than once."""
        key = _key(node)
        if key in self.index:
            self.shared.add(key)
            return
        self.index[key] = -1
        if node.kind == _REF:
            return
        for child in node.children or ():
            self.count(child)

    def write(self, node: _Node) -> None:
        if node.kind == _REF:
            node = node.target
        key = _key(node)
        out = self.out
        slot = self.index.get(key, -1)
        if slot >= 0:
            out.append(_REF)
            out += _PACK_I(slot)
            return
        if key in self.shared:
            self.index[key] = self._next
            self._next += 1
            out.append(node.kind | _FLAG_REF)
        else:
            out.append(node.kind)
        if node.children is None:
            out += node.head
            return
        if node.kind == _CODE:
            ints, lineno = node.head
            out += ints
            for child in node.children[:8]:
                self.write(child)
            out += lineno
            for child in node.children[8:]:
                self.write(child)
            return
        children = node.children
        if node.kind in _SETS:
            children = sorted(children, key=_key)
        if node.kind == _SMALL_TUPLE:
            out.append(len(children))
        elif node.kind != _DICT:
            out += _PACK_I(len(children))
        for child in children:
            self.write(child)
        if node.kind == _DICT:
            out.append(_NULL)

    def run(self, root: _Node) -> bytes:
        self.count(root)
        self.index = {}
        self._next = 0
        self.write(root)
        return bytes(self.out)


def canonical_marshal(data: bytes) -> bytes:
    """Rewrite marshal bytes into the canonical form described above."""
    reader = _Reader(data)
    root = reader.node()
    if reader.pos != len(data):
        raise ValueError("trailing bytes after marshal data")
    return _Writer().run(root)
