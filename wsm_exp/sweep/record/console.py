"""A console a researcher reads: the package's own lines on the terminal, library chatter in the log file.

Hydra sends every log record to the terminal and to ``<job folder>/<job>.log``. lm-eval,
transformers and friends log hundreds of lines per sweep; ``quiet_terminal`` keeps the package's
own records (INFO and up) and everyone's errors on the terminal, and leaves the file complete. A
record logged with ``extra=FILE_ONLY`` (a traceback) goes to the file alone. ``library_output_to_log``
also sends what libraries print to stderr (lm-eval's progress bars) to the log file.

Example:
    >>> import logging
    >>> own = logging.LogRecord("wsm_exp.sweep.run.job", logging.INFO, "", 0, "computed x", None, None)
    >>> chatter = logging.LogRecord("lm_eval.evaluator", logging.INFO, "", 0, "Building contexts", None, None)
    >>> TerminalFilter().filter(own), TerminalFilter().filter(chatter)
    (True, False)
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

FILE_ONLY = {"file_only": True}
"""``log.info(..., extra=FILE_ONLY)``: a record for the log file, not the terminal."""

OWN_LOGGERS = ("wsm_exp", "analysis", "__main__")


class TerminalFilter(logging.Filter):
    """Own records (INFO and up, not file-only) and everyone's errors pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "file_only", False):
            return False
        return record.levelno >= logging.ERROR or record.name.split(".")[0] in OWN_LOGGERS


def _is_terminal(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler) \
        and getattr(handler, "stream", None) in (sys.stdout, sys.stderr)


def quiet_terminal() -> None:
    """Filter every terminal handler of the root logger and of the chattiest libraries (idempotent)."""
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in ("lm_eval", "lm-eval", "transformers", "datasets"))]
    for logger in loggers:
        for handler in logger.handlers:
            if _is_terminal(handler) and not any(isinstance(f, TerminalFilter) for f in handler.filters):
                handler.addFilter(TerminalFilter())


@contextlib.contextmanager
def library_output_to_log() -> Iterator[None]:
    """Within the block, stderr writes (progress bars of libraries) go to the job's log file."""
    quiet_terminal()  # libraries imported since the last call may have added terminal handlers
    files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    with contextlib.ExitStack() as stack:
        target = files[0].stream if files else stack.enter_context(open(os.devnull, "w"))
        stack.enter_context(contextlib.redirect_stderr(target))
        yield
