"""The one digest of a model folder's side files (its config and tokenizer files, not its weights).

Evaluation reads them (transformers builds the model from ``config.json``; lm-eval tokenizes every
document with the tokenizer files) and a merge copies them beside its weights, so their content
belongs in every key that can change a number. ``side_digest`` is the one digest of them: a
checkpoint's identity includes it (wsm_exp.merging.identity), so the merge key, the score key and
the sweep's job fingerprint do; and a DCP series' ``series.hf_config`` is keyed by it
(wsm_exp.sweep.planning.hf_pairing). Each file's sha256 is cached per process by path, size, mtime and
inode, so an edited file is read again.

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "config.json").write_text("{}"); _ = (folder / "model.safetensors").write_bytes(b"")
    >>> before = side_digest(folder)
    >>> _ = (folder / "tokenizer.json").write_text('{"vocab": {}}')
    >>> side_digest(folder) != before, side_digest(folder, besides=("config.json", "tokenizer.json"))
    (True, '')
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from pathlib import Path

from wsm_exp.merging.ckpt_files import is_side_file

def side_digest(folder: Path, besides: Sequence[str] = ()) -> str:
    """sha256 (hex) over the names and contents of the folder's side files, leaving out the names in
    ``besides``; ``""`` when there are none (or ``folder`` is not a folder)."""
    folder = Path(folder)
    if not folder.is_dir():
        return ""
    items = [item for item in sorted(folder.iterdir()) if item.name not in besides and is_side_file(item)]
    if not items:
        return ""
    digest = hashlib.sha256()
    for item in items:
        stat = item.stat()
        digest.update(item.name.encode() + b"\0" + _file_digest(str(item), stat.st_size, stat.st_mtime_ns,
                                                                 stat.st_ino))
    return digest.hexdigest()


@functools.lru_cache(maxsize=1024)
def _file_digest(path: str, size: int, mtime_ns: int, inode: int) -> bytes:
    """One side file's sha256 (the other arguments key the cache: an edited or replaced file is read again)."""
    return hashlib.sha256(Path(path).read_bytes()).digest()

