"""Content identity of a checkpoint: every byte of its weight files, its config.json and tokenizer files.

A weight file's digest is ``hashing.TreeDigest``: the header bytes, then each tensor's own digest
in data order (the checked header proves the tensors tile the data area, so no byte is left out),
so the merger can hash tensors as it streams them. A checkpoint's identity combines its files'
digests in order with the digest of its ``config.json`` and of its other side files (tokenizer,
generation config: ``side_files.side_digest``; a folder with none keeps the identity it had before
they were keyed).

Digests are cached by (path, size, mtime_ns, inode): in memory for this process, and on disk
as one small JSON file per entry under ``$WSM_IDENTITY_CACHE`` (default
``$XDG_CACHE_HOME/wsm-exp/identity``, i.e. ``~/.cache/wsm-exp/identity``), written atomically so
concurrent processes never read half an entry. Like git's racy-index rule, a file modified less
than ``RACY_SECONDS`` before it was hashed is not cached (a rewrite within the file system's
timestamp granularity could keep size, mtime and inode).

Example:
    >>> import tempfile, torch, pathlib
    >>> from safetensors.torch import save_file
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> save_file({"w": torch.ones(4)}, folder / "model.safetensors")
    >>> len(folder_identity(folder))
    32
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from wsm_exp.merging.ckpt_files import CONFIG_FILE, Checkpoint, weight_files
from wsm_exp.merging.hashing import CHUNK, FORMAT, TreeDigest, bytes_digest, raw_digest, tensor_hasher
from wsm_exp.merging.side_files import side_digest
from wsm_exp.merging.st_io import CheckpointError, Header, read_header

RACY_SECONDS = 2.0


def file_digest(path: str | Path, header: Header | None = None) -> str:
    """Digest of a safetensors file from one sequential read (``header`` when already checked)."""
    header = header or read_header(path)
    tree = TreeDigest(header.raw, list(header.tensors))
    pending = [(name, info.end - info.begin) for name, info in header.tensors.items()]
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    with open(header.path, "rb", buffering=0) as handle:
        handle.seek(header.data_start)
        filled = used = 0
        for name, size in pending:
            h = tensor_hasher()
            while size:
                if used == filled:
                    filled, used = handle.readinto(buffer), 0
                    if not filled:
                        raise CheckpointError(f"{header.path} got shorter while being hashed (tensor {name!r}); "
                                              "wait until it is completely written, then rerun.")
                take = min(size, filled - used)
                h.update(view[used:used + take])
                used, size = used + take, size - take
            tree.add_digest(name, h.digest())
    return tree.hexdigest()


def combine(file_digests: Sequence[str], config: Path | None) -> str:
    """A checkpoint's identity from its weight files' digests (in order), its config.json, if any, and the
    digest of its other side files (tokenizer, generation config), if any."""
    top = tensor_hasher()
    top.update(FORMAT.encode())
    for digest in file_digests:
        top.update(bytes.fromhex(digest))
    if config is not None and config.is_file():
        top.update(b"config" + bytes.fromhex(bytes_digest(config.read_bytes())))
    tokenizer = side_digest(config.parent, besides=(CONFIG_FILE,)) if config is not None else ""
    if tokenizer:  # tokenizer and other side files (wsm_exp.merging.side_files): evaluation reads them
        top.update(b"side" + bytes.fromhex(tokenizer))
    return top.hexdigest()


def config_of(path: Path) -> Path | None:
    """The config.json beside a checkpoint's weights (folders only)."""
    return path / CONFIG_FILE if path.is_dir() else None


def checkpoint_identity(checkpoint: Checkpoint, cache: IdentityCache | None = None) -> str:
    """Identity of a checkpoint's full content; unchanged files come from the cache, not the disk."""
    cache = cache or default_cache()
    return combine([cache.file_digest(f) for f in checkpoint.files], config_of(checkpoint.path))


def folder_identity(path: str | Path, cache: IdentityCache | None = None) -> str:
    """Identity of a Hugging Face model folder (or a single .safetensors file)."""
    path = Path(path)
    cache = cache or default_cache()
    return combine([cache.file_digest(f) for f in weight_files(path)], config_of(path))


class IdentityCache:
    """File digests by (path, size, mtime_ns, inode): a memo in front of an on-disk store."""

    def __init__(self, root: Path | None):
        self.root, self._memo = root, {}

    def file_digest(self, path: Path) -> str:
        """The digest of ``path``, hashing it only when no entry matches its current stat."""
        key = stat_key(path)
        cached = self.lookup(key)
        if cached is not None:
            return cached
        digest = file_digest(path) if Path(path).suffix == ".safetensors" else raw_digest(path)
        self.store(path, key, digest)
        return digest

    def lookup(self, key: str) -> str | None:
        if key in self._memo:
            return self._memo[key]
        entry = self._entry(key)
        if entry is None or not entry.is_file():
            return None
        try:
            record = json.loads(entry.read_text())
        except (OSError, ValueError):
            return None  # unreadable entry: hash again and overwrite it
        if record.get("key") != key:
            return None
        self._memo[key] = record["digest"]
        return record["digest"]

    def store(self, path: Path, key: str, digest: str) -> None:
        """Remember ``digest`` if ``path`` still has the stat it had before hashing and is not racy."""
        st = os.stat(path)
        if stat_key(path, st) != key or time.time() - st.st_mtime < RACY_SECONDS:
            return
        self._memo[key] = digest
        entry = self._entry(key)
        if entry is None:
            return
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{entry.name}.", dir=entry.parent)
            with os.fdopen(fd, "w") as handle:
                json.dump({"key": key, "digest": digest, "path": str(path)}, handle)
            os.replace(tmp, entry)
        except OSError:
            pass  # a read-only or full cache only costs a re-hash next time

    def _entry(self, key: str) -> Path | None:
        if self.root is None:
            return None
        name = hashlib.sha256(key.encode()).hexdigest()[:32]
        return self.root / name[:2] / f"{name}.json"


class StreamingIdentity:
    """A checkpoint's identity from the tensor bytes a merge reads anyway (no second read).

    Files whose digest is cached are not hashed; the others are fed tensor by tensor with ``add_digest``.
    """

    def __init__(self, checkpoint: Checkpoint, cache: IdentityCache | None = None):
        self.checkpoint, self.cache = checkpoint, cache or default_cache()
        self.keys = [stat_key(f) for f in checkpoint.files]
        self.known = [self.cache.lookup(k) for k in self.keys]
        self.trees = {}
        for index, (file, digest) in enumerate(zip(checkpoint.files, self.known)):
            if digest is None and file.suffix != ".safetensors":
                self.known[index] = self.cache.file_digest(file)  # DCP files: hashed by a plain read
            elif digest is None:
                header = read_header(file)
                self.trees[index] = TreeDigest(header.raw, list(header.tensors))

    def wants(self, file_index: int) -> bool:
        return file_index in self.trees

    def add_digest(self, file_index: int, name: str, digest: bytes) -> None:
        """The digest (a ``tensor_hasher``'s) of tensor ``name`` of file ``file_index``."""
        self.trees[file_index].add_digest(name, digest)

    def identity(self) -> str:
        """Combine the files' digests; the streamed ones go into the cache."""
        digests = list(self.known)
        for index, tree in self.trees.items():
            digests[index] = tree.hexdigest()
            self.cache.store(self.checkpoint.files[index], self.keys[index], digests[index])
        return combine(digests, config_of(self.checkpoint.path))


def stat_key(path: Path, st: os.stat_result | None = None) -> str:
    """What must stay equal for a cached digest to hold: resolved path, size, mtime_ns, inode."""
    st = st or os.stat(path)
    return json.dumps([FORMAT, str(Path(path).resolve()), st.st_size, st.st_mtime_ns, st.st_ino])


_CACHES: dict[str, IdentityCache] = {}


def cache_root() -> Path:
    """``$WSM_IDENTITY_CACHE``, else ``$XDG_CACHE_HOME/wsm-exp/identity`` (``~/.cache/...``)."""
    if os.environ.get("WSM_IDENTITY_CACHE"):
        return Path(os.environ["WSM_IDENTITY_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "wsm-exp" / "identity"


def default_cache() -> IdentityCache:
    """The process's cache for the current ``cache_root()`` (one memo per root)."""
    root = str(cache_root())
    if root not in _CACHES:
        _CACHES[root] = IdentityCache(Path(root))
    return _CACHES[root]
