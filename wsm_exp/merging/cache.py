"""The merge cache: each plan's merged model at ``<merges>/<key>``, merged once, under a per-key lock.

``merge_or_reuse`` returns the cached model of a plan or merges it; concurrent processes asking for
the same key wait for one another (``exclusive``). ``remove_stale`` deletes what killed merges left in
the cache (temporaries of dead processes, unheld locks); the jobs and the sweep's merge stage call
it before they merge into a cache, so a ``kill -9`` at any point leaves nothing after the next run.

Example:
    >>> from wsm_exp.merging.series import load_series, select_window            # doctest: +SKIP
    >>> plan = build_plan(select_window(load_series("ckpts/run"), quantity=4), curve="1-sqrt")  # doctest: +SKIP
    >>> merge_or_reuse(plan, "cache/merges").out_dir                              # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from pathlib import Path

from wsm_exp.atomic import is_stale_temp
from wsm_exp.merging.merger import merge_plan
from wsm_exp.merging.output import MergeResult
from wsm_exp.merging.plan import MergePlan


def merge_or_reuse(plan: MergePlan, merges_dir: str | Path, **options) -> MergeResult:
    """The merged model of ``plan`` at ``<merges_dir>/<key>``, merged unless it is there already.

    A process that finds another merging the same key waits for it (a lock on
    ``<merges_dir>/.<key>.lock``, removed when done) and reuses its result. ``options`` go to ``merge_plan``.
    """
    plan = plan.identified()
    merges_dir = Path(merges_dir)
    out_dir = merges_dir / plan.key
    merges_dir.mkdir(parents=True, exist_ok=True)
    remove_stale(merges_dir)
    with exclusive(merges_dir / f".{plan.key}.lock"):
        record_path = out_dir / "merge.json"
        if record_path.is_file():
            record = json.loads(record_path.read_text())
            return MergeResult(out_dir, plan.key, record["output"]["identity"], 0, 0.0,
                               len(record["output"]["files"]), reused=True)
        if out_dir.is_dir():
            shutil.rmtree(out_dir)  # a cache folder without merge.json is debris of an older, killed merge
        return merge_plan(plan, out_dir, **options)


def remove_stale(merges_dir: str | Path) -> list[Path]:
    """Delete what killed merges left in ``merges_dir``: hidden temporaries whose writer (a process of this
    host) is gone, at any depth of naming (the merge stage's ``..stage.tmp-…`` too), and lock files no
    process holds. Temporaries of live processes and of other hosts are kept.

    >>> import tempfile, socket
    >>> cache = Path(tempfile.mkdtemp())
    >>> (cache / f"..stage.tmp-{socket.gethostname()}-999999999-0badf00d").mkdir()
    >>> [p.name[:8] for p in remove_stale(cache)], list(cache.iterdir())
    (['..stage.'], [])
    """
    removed = []
    for path in Path(merges_dir).glob(".*"):
        if is_stale_temp(path.name):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            removed.append(path)
        elif path.name.endswith(".lock") and _unheld(path):
            removed.append(path)
    return removed


def _unheld(path: Path) -> bool:
    """Delete lock file ``path`` if no process holds it (as ``exclusive`` deletes it on release)."""
    try:
        handle = open(path, "a")  # noqa: SIM115 (closed below)
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        try:
            if os.stat(path).st_ino != os.fstat(handle.fileno()).st_ino:
                return False
        except FileNotFoundError:
            return False
        path.unlink(missing_ok=True)
        return True


@contextlib.contextmanager
def exclusive(path: Path):
    """An exclusive lock on ``path``, which is deleted on release (so no lock files pile up).

    A waiter may have opened the file just before its holder deleted it: after locking, it checks
    that ``path`` still names the locked file, and starts over if not.
    """
    while True:
        handle = open(path, "a")  # noqa: SIM115 (closed below)
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            if os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        handle.close()
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        handle.close()
