"""The end of a sweep never passes silently: result files published together, any failure an exit 1.

Hydra turns an exception raised in a callback into a warning and exits 0, so a sweep whose
``results.parquet`` could not be written used to look successful. The end-of-sweep callback runs
inside ``exit_on_failure``: any error gathering the job files or writing the results or the report
is logged with its traceback to the log file, said in one paragraph, and the process exits 1
(SystemExit passes through Hydra's callback handling). ``publish_together`` writes several files
to private temporaries and renames them into place only once all of them are written.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> publish_together({folder / "a.txt": lambda p: p.write_text("a"), folder / "b.txt": lambda p: p.write_text("b")})
    >>> sorted(p.name for p in folder.iterdir())
    ['a.txt', 'b.txt']
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

from wsm_exp.atomic import temp_path
from wsm_exp.sweep.record.console import FILE_ONLY

log = logging.getLogger(__name__)
EXIT_CODE = 1  # like a failed variant: the sweep's outputs are not all there


def publish_together(writers: dict[Path, Callable[[Path], object]]) -> None:
    """Write each target through its writer into a private temporary, then rename all into place.

    A target that exists but is not a plain file (a folder in its way) is refused before anything is
    written; a writer's error removes every temporary and replaces nothing.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp()); (folder / "r.csv").mkdir()
    >>> publish_together({folder / "r.csv": lambda p: p.write_text("x")})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    IsADirectoryError: .../r.csv is a folder (or another non-file) where the sweep writes a file...
    """
    blocked = [target for target in writers if os.path.lexists(target) and not Path(target).is_file()]
    if blocked:
        raise IsADirectoryError(f"{blocked[0]} is a folder (or another non-file) where the sweep writes a file; "
                                "move it out of the way")
    temps: dict[Path, Path] = {}
    try:
        for target, write in writers.items():
            temps[target] = temp_path(target)  # private: two sweeps finishing at once never share one
            write(temps[target])
        for target, tmp in temps.items():
            os.replace(tmp, target)
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)  # a published one is gone already


@contextlib.contextmanager
def exit_on_failure(sweep_dir: Path, since: float = 0.0) -> Iterator[None]:
    """Run the end of a sweep (started at ``since``); on any error log the traceback, say one paragraph
    naming the cause and what was and was not written, and exit ``EXIT_CODE``."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 — every cause ends the same way: named, non-zero
        log.info("end of sweep failed:\n%s", traceback.format_exc(), extra=FILE_ONLY)
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            traceback.print_exc()
        cause = " ".join(str(err).split()) or "no message"  # one paragraph, whatever the library's message
        print(f"Error: the end of the sweep failed ({type(err).__name__}: {cause}). {written(sweep_dir, since)} "
              f"Each variant's own result is kept under {Path(sweep_dir) / 'jobs'}. Fix the cause and rerun the "
              "same command: finished variants are reused, nothing is recomputed.", file=sys.stderr, flush=True)
        sys.exit(EXIT_CODE)


def written(sweep_dir: Path, since: float) -> str:
    """What of results.parquet, results.csv and report.md this run (started at ``since``) replaced.

    >>> import tempfile, pathlib
    >>> written(pathlib.Path(tempfile.mkdtemp()), 0.0)
    'results.parquet, results.csv and report.md were not written.'
    """
    def fresh(name: str) -> bool:
        path = Path(sweep_dir) / name
        return path.is_file() and path.stat().st_mtime >= since

    if not fresh("results.parquet"):
        old = (Path(sweep_dir) / "results.parquet").is_file()
        return ("results.parquet, results.csv and report.md were not replaced: those there are the previous run's."
                if old else "results.parquet, results.csv and report.md were not written.")
    return ("results.parquet, results.csv and report.md were written." if fresh("report.md")
            else "results.parquet and results.csv were written, the report was not.")
