"""Content hashing, the leaf every digest is built on: XXH3-128 hashers, tensor-tree and raw-file digests.

A safetensors file's digest is a small tree, so it can be computed in any tensor order (the merger
hashes tensors as it streams them) and equals a plain sequential read of the file: the digest of
``header bytes`` followed by each tensor's own digest in data order. Other files (DCP's) are
hashed as plain bytes. XXH3-128 (``xxhash``) runs at ~15 GB/s on one core, far above disk speed,
and 128 bits make an accidental clash negligible; digests key caches, they are not a defence
against forged files.

Example:
    >>> h = tensor_hasher(); h.update(b"ab"); h.update(b"c")
    >>> h.hexdigest() == bytes_digest(b"abc")
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import xxhash

HASH_NAME = "xxh3_128"
FORMAT = f"wsm-identity-1-{HASH_NAME}"  # change when the digest layout or hash changes: old entries are ignored
CHUNK = 16 * 1024**2  # large reads: few syscalls, and within the hash's fast path


def tensor_hasher():
    """A hasher to feed bytes in pieces (one tensor's, one file's): its digest is the same however they are cut.

    >>> h = tensor_hasher(); h.update(b"ab"); h.update(b"c")
    >>> whole = tensor_hasher(); whole.update(b"abc")
    >>> h.digest() == whole.digest()
    True
    """
    return xxhash.xxh3_128()


class TreeDigest:
    """Digest of one safetensors file, fed tensor by tensor in any order.

    >>> tree = TreeDigest(b'{"a":{}}', ["a", "b"])
    >>> for name, data in (("b", b"\\x00" * 4), ("a", b"\\x01" * 2)):
    ...     h = tensor_hasher(); h.update(data); tree.add_digest(name, h.digest())
    >>> len(tree.hexdigest())
    32
    """

    def __init__(self, raw_header: bytes, names_in_data_order: Sequence[str]):
        self._raw, self._names, self._parts = raw_header, list(names_in_data_order), {}

    def add_digest(self, name: str, digest: bytes) -> None:
        """The digest of tensor ``name``'s bytes (a ``tensor_hasher``'s ``digest()``)."""
        self._parts[name] = digest

    def hexdigest(self) -> str:
        missing = [n for n in self._names if n not in self._parts]
        if missing:
            raise ValueError(f"TreeDigest: no bytes for tensor(s) {missing[:3]}")
        top = tensor_hasher()
        top.update(FORMAT.encode() + len(self._raw).to_bytes(8, "little") + self._raw)
        for name in self._names:
            top.update(self._parts[name])
        return top.hexdigest()


def raw_digest(path: str | Path) -> str:
    """Digest of a file's bytes in order (DCP's ``.metadata`` and ``.distcp`` files).

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "__0_0.distcp"
    >>> _ = f.write_bytes(b"abc")
    >>> raw_digest(f) == bytes_digest(b"abc")
    True
    """
    h = tensor_hasher()
    with open(path, "rb", buffering=0) as handle:
        while chunk := handle.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def bytes_digest(data: bytes) -> str:
    """``raw_digest`` of a file holding ``data``."""
    h = tensor_hasher()
    h.update(data)
    return h.hexdigest()
