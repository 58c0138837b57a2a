"""Atomic writes: readers see the old file or folder or the new one, never a partial one.

Folders are built in a temporary sibling named after their writer (``.<name>.tmp-<host>-<pid>-<rand>``)
and renamed into place; a later writer of the same target deletes siblings whose process is gone
(a killed run), never those of a live process or of another host sharing the file system.

Example:
    >>> import tempfile, pathlib, json
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.json"
    >>> write_json_atomic(p, {"x": 1}); json.loads(p.read_text())
    {'x': 1}
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON to ``path`` via a temp file in the same folder, fsync, and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=1, default=float)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def temp_path(target: Path) -> Path:
    """A private temporary path beside ``target``, named after this host and process; temporaries of
    the same target left by dead local processes (a killed run) are removed first."""
    target = Path(target)
    remove_stale_temps(target)
    return target.parent / f".{target.name}.tmp-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def remove_stale_temps(target: Path) -> list[Path]:
    """Delete temporaries of ``target`` left by processes of this host that no longer run; return them."""
    target = Path(target)
    removed = []
    for path in target.parent.glob(glob.escape(f".{target.name}.tmp-") + "*"):
        if is_stale_temp(path.name):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def is_stale_temp(name: str) -> bool:
    """Whether ``name`` is a temporary (``….tmp-<host>-<pid>-<rand>``, the last such suffix) written by a
    process of this host that no longer runs.

    >>> import socket
    >>> is_stale_temp(f".x.tmp-{socket.gethostname()}-{os.getpid()}-0badf00d"), is_stale_temp("x")
    (False, False)
    """
    if not name.startswith(".") or ".tmp-" not in name:
        return False
    parts = name.rpartition(".tmp-")[2].rsplit("-", 2)
    return (len(parts) == 3 and parts[0] == socket.gethostname() and parts[1].isdigit()
            and not _alive(int(parts[1])))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created with its folder) for the block; other processes wait."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
