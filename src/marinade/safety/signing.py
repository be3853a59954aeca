"""Signed payloads: a small versioned envelope around a pickle.

Layout (all integers big-endian)::

    magic        7 bytes   b"\\x00MRNSIG"   (0x00 is no pickle opcode: plain
                                            pickle refuses the envelope at once)
    version      1 byte    1
    key id size  1 byte    n (0..255)
    key id       n bytes   UTF-8, chosen by the signer, not secret
    payload size 8 bytes
    mac          32 bytes  HMAC-SHA256(key, everything above but the mac + payload)
    payload      the pickle stream

The MAC covers the header too, so the key id and sizes cannot be altered.
Verification compares in constant time (``hmac.compare_digest``) and happens
before a single pickle opcode is read; the pickle loaded is exactly the bytes
that were verified (a private ``bytes`` copy when the caller passed a mutable
buffer).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .._errors import SignatureError

MAGIC = b"\x00MRNSIG"
VERSION = 1
MAC_SIZE = 32
_SIZE = struct.Struct(">Q")
_MIN_HEADER = len(MAGIC) + 2 + _SIZE.size + MAC_SIZE

@dataclass(frozen=True)
class Envelope:
    """A parsed (not yet verified) envelope of ``data``."""

    version: int
    key_id: str
    header_size: int  # offset of the payload in the data
    payload_size: int
    mac: bytes

    def header_view(self, data) -> memoryview:
        """The header without its MAC: what the MAC covers before the payload."""
        return memoryview(data)[: self.header_size - MAC_SIZE]


def _as_key(key, what: str = "key") -> bytes:
    if isinstance(key, str):
        key = key.encode("utf-8")
    elif isinstance(key, (bytearray, memoryview)):
        key = bytes(key)
    if not isinstance(key, bytes):
        raise TypeError(f"a {what} must be bytes or str, got {type(key).__name__}")
    if not key:
        raise ValueError(f"a {what} must not be empty")
    return key


def _key_id(key_id) -> bytes:
    if key_id is None:
        return b""
    if not isinstance(key_id, str):
        raise TypeError(f"key_id must be a str, got {type(key_id).__name__}")
    raw = key_id.encode("utf-8")
    if len(raw) > 255:
        raise ValueError("key_id must be at most 255 bytes in UTF-8")
    return raw


def signing_key(key, key_id: str | None) -> tuple[bytes, str | None]:
    """The one key to sign with, and its id.

    ``key`` may be a keyring (a mapping of key id to key): ``key_id`` then
    picks the key, and may be left out when the keyring holds one key.
    """
    if isinstance(key, Mapping):
        if key_id is None:
            if len(key) != 1:
                raise ValueError("signing with a keyring of several keys needs key_id=")
            ((key_id, value),) = key.items()
        elif key_id not in key:
            raise ValueError(f"key_id {key_id!r} is not in the keyring")
        else:
            value = key[key_id]
        return _as_key(value), key_id
    if isinstance(key, (bytes, str, bytearray, memoryview)):
        return _as_key(key), key_id
    raise TypeError("key must be bytes, str, or a mapping of key id to key when signing")


def verifying_keys(key) -> tuple[dict[str, bytes] | None, list[bytes]]:
    """``(keyring, keys)``: a keyring selects by key id, a list is tried in turn."""
    if isinstance(key, Mapping):
        if not key:
            raise ValueError("the keyring is empty")
        return {str(k): _as_key(v) for k, v in key.items()}, []
    if isinstance(key, (bytes, str, bytearray, memoryview)):
        return None, [_as_key(key)]
    if isinstance(key, Iterable):
        keys = [_as_key(k) for k in key]
        if not keys:
            raise ValueError("no key given")
        return None, keys
    raise TypeError(f"key must be bytes, str, a list of keys or a keyring, got {type(key).__name__}")


def _mac(key: bytes, header: memoryview | bytes, payload) -> bytes:
    mac = hmac.new(key, header, hashlib.sha256)
    mac.update(payload)
    return mac.digest()


def sign(payload, key, key_id: str | None = None) -> bytes:
    """Wrap ``payload`` (a pickle) in a signed envelope."""
    raw_key, key_id = signing_key(key, key_id)
    kid = _key_id(key_id)
    payload = memoryview(payload).cast("B")
    header = MAGIC + bytes((VERSION, len(kid))) + kid + _SIZE.pack(len(payload))
    return b"".join((header, _mac(raw_key, header, payload), payload))


def is_signed(data) -> bool:
    """True if ``data`` starts like a signed envelope (not verified)."""
    return bytes(memoryview(data)[: len(MAGIC)]) == MAGIC


def parse(data) -> Envelope:
    """Read the envelope header of ``data``; SignatureError if malformed."""
    view = memoryview(data).cast("B")
    size = len(view)
    if bytes(view[: len(MAGIC)]) != MAGIC:
        raise SignatureError(
            "payload is not signed: it does not start with a marinade signature envelope",
            offset=0)
    if size < _MIN_HEADER:
        raise SignatureError("signed payload is truncated (incomplete header)", offset=size)
    envelope = _read_header(view)
    pos = envelope.header_size
    payload_size = envelope.payload_size
    if size - pos != payload_size:
        what = "truncated" if size - pos < payload_size else "followed by extra bytes"
        raise SignatureError(f"signed payload is {what}: the envelope announces "
                             f"{payload_size} bytes of payload, {size - pos} follow",
                             offset=min(size, pos + payload_size))
    return envelope


def _check(envelope: Envelope, header: memoryview | bytes, payload, key) -> None:
    keyring, keys = verifying_keys(key)
    if keyring is not None:
        chosen = keyring.get(envelope.key_id)
        if chosen is None:
            raise SignatureError(
                f"payload was signed with key id {envelope.key_id!r}, which is not in "
                "the keyring", offset=len(MAGIC) + 2)
        keys = [chosen]
    ok = False
    for candidate in keys:  # every key is tried: the time does not tell which matched
        ok |= hmac.compare_digest(_mac(candidate, header, payload), envelope.mac)
    if not ok:
        raise SignatureError(
            "signature mismatch: the payload was altered, or signed with another key",
            offset=envelope.header_size - MAC_SIZE)


def verify(data, key) -> tuple[Envelope, memoryview]:
    """Check the envelope of ``data``; return it and a view of the payload.

    ``data`` must be immutable for the view to stay the verified bytes:
    ``loads`` passes a private ``bytes`` copy.
    """
    envelope = parse(data)
    view = memoryview(data).cast("B")
    payload = view[envelope.header_size:]
    _check(envelope, envelope.header_view(view), payload, key)
    return envelope, payload


def _read_exact(file, size: int, offset: int) -> bytes:
    chunks = []
    left = size
    while left:
        chunk = file.read(min(left, 1 << 24))
        if not chunk:
            raise SignatureError("signed payload is truncated", offset=offset + size - left)
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_envelope(file) -> tuple[Envelope, bytes, bytes]:
    """Read one envelope from a binary file: ``(envelope, header, payload)``.

    Reads exactly the envelope, so several signed payloads can follow one
    another in a file, as pickles can.
    """
    head = file.read(len(MAGIC) + 2)
    if not head:
        raise EOFError("Ran out of input")
    if head[: len(MAGIC)] != MAGIC[: len(head)]:
        raise SignatureError(
            "payload is not signed: it does not start with a marinade signature envelope",
            offset=0)
    if len(head) < len(MAGIC) + 2:
        raise SignatureError("signed payload is truncated (incomplete header)",
                             offset=len(head))
    rest = _read_exact(file, head[-1] + _SIZE.size + MAC_SIZE, len(head))
    header = head + rest
    envelope_head = parse_header_only(header)
    payload = _read_exact(file, envelope_head.payload_size, len(header))
    return envelope_head, header, payload


def parse_header_only(header: bytes) -> Envelope:
    """Parse a complete header (no payload after it)."""
    return _read_header(memoryview(header))


def _read_header(view) -> Envelope:
    """The header fields after MAGIC; SignatureError if malformed or cut short."""
    version = view[len(MAGIC)]
    if version != VERSION:
        raise SignatureError(f"unsupported signature envelope version {version}",
                             offset=len(MAGIC))
    id_size = view[len(MAGIC) + 1]
    pos = len(MAGIC) + 2
    if len(view) < pos + id_size + _SIZE.size + MAC_SIZE:
        raise SignatureError("signed payload is truncated (incomplete header)",
                             offset=len(view))
    try:
        key_id = bytes(view[pos:pos + id_size]).decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureError("malformed key id in signature envelope", offset=pos) from None
    pos += id_size
    (payload_size,) = _SIZE.unpack_from(view, pos)
    pos += _SIZE.size
    return Envelope(version, key_id, pos + MAC_SIZE, payload_size,
                    bytes(view[pos:pos + MAC_SIZE]))


# -- the loaders ---------------------------------------------------------------------------


class BytesReader:
    """A file over immutable bytes for ``pickle.Unpickler``, read as ``pickle.loads``
    reads bytes.

    The C unpickler reading a file drops the rest of a FRAME's buffer when an
    opcode runs past it (see ``_scan.Source``); ``peek`` returning everything
    left keeps its buffer whole, so the bytes are decoded exactly as the
    checks (and ``pickle.loads``) decode them.
    """

    def __init__(self, data):
        self._view = memoryview(data).cast("B")
        self.pos = 0

    def peek(self, n: int = 0) -> memoryview:
        return self._view[self.pos:]

    def read(self, n: int = -1) -> bytes:
        end = len(self._view) if n is None or n < 0 else min(self.pos + n, len(self._view))
        data = self._view[self.pos:end].tobytes()
        self.pos = end
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(memoryview(buffer)))
        memoryview(buffer).cast("B")[:len(data)] = data
        return len(data)

    def readline(self, limit: int = -1) -> bytes:
        rest = self._view[self.pos:]
        end = bytes(rest).find(b"\n")
        n = len(rest) if end < 0 else end + 1
        return self.read(n if limit is None or limit < 0 else min(n, limit))

    def tell(self) -> int:
        return self.pos


def load_payload(payload, buffers, allow, signed: bool, base: int):
    """Unpickle verified (or, restricted, checked) payload bytes, errors wrapped."""
    if allow is not None:
        from . import restricted

        return restricted.loads_checked(payload, buffers=buffers, allow=allow, signed=signed,
                                        base=base)
    from ._locate import TrackingUnpickler, load_or_explain

    unpickler = TrackingUnpickler(BytesReader(payload), buffers=buffers)
    return load_or_explain(unpickler, payload, base)


def dumps(obj, protocol, buffer_callback, standalone, key, key_id, portable=False) -> bytes:
    """``marinade.dumps(..., key=...)``."""
    from .._pickler import Pickler

    signing_key(key, key_id)  # fail on a bad key before pickling anything
    file = io.BytesIO()
    options = {"portable": True} if portable else {}
    Pickler(file, protocol, buffer_callback=buffer_callback, standalone=standalone,
            **options).dump(obj)
    return sign(file.getbuffer(), key, key_id)


def dump(obj, file, protocol, buffer_callback, standalone, key, key_id, portable=False) -> None:
    """``marinade.dump(..., key=...)``."""
    file.write(dumps(obj, protocol, buffer_callback, standalone, key, key_id, portable))


def loads(data, buffers=None, key=None, allow=None):
    """``marinade.loads(data, key=..., allow=...)``."""
    if not isinstance(data, bytes):
        data = bytes(data)  # a private copy: the caller cannot change it after the check
    if key is None:
        from . import restricted

        if is_signed(data):
            raise SignatureError("payload is signed: pass key= to verify and load it",
                                 offset=0)
        return restricted.loads_checked(data, buffers=buffers, allow=allow, signed=False,
                                        base=0)
    envelope, payload = verify(data, key)
    return load_payload(payload, buffers, allow, True, envelope.header_size)


def load(file, buffers=None, key=None, allow=None):
    """``marinade.load(file, key=..., allow=...)``."""
    if key is None:
        from . import restricted

        return restricted.load_checked(file, buffers=buffers, allow=allow)
    envelope, header, payload = read_envelope(file)
    _check(envelope, memoryview(header)[: envelope.header_size - MAC_SIZE], payload, key)
    return load_payload(payload, buffers, allow, True, envelope.header_size)
