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
import math
import os
import sys
import textwrap
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


WIDTH = 100  # characters per console line: findings are wrapped at word boundaries, never cut


def wrapped(text: str, indent: str = "    ") -> str:
    """``text`` broken into lines of at most ``WIDTH`` characters at spaces only (a word longer than a line
    stays whole on its own line): nothing a finding says is cut.

    >>> print(wrapped("best decay 1-sqrt [wsd_1-sqrt] " * 3, indent="  "))  # doctest: +NORMALIZE_WHITESPACE
      best decay 1-sqrt [wsd_1-sqrt] best decay 1-sqrt [wsd_1-sqrt] best decay 1-sqrt [wsd_1-sqrt]
    """
    return textwrap.fill(" ".join(str(text).split()), width=WIDTH, initial_indent=indent, subsequent_indent=indent,
                         break_long_words=False, break_on_hyphens=False)


def findings_text(text: str) -> str:
    """The findings for the terminal (``analysis.prose.console_text``: each claim's verdict worded with what its
    interval covers), every line wrapped at word boundaries, so nothing a finding says is cut.

    >>> print(findings_text("Findings:\\n- WSM beats WSD: inconclusive across 3 training seeds (+ evaluation)"))
    Findings:
      - WSM beats WSD: inconclusive across 3 training seeds (+ evaluation)
    """
    head, *claims = str(text).splitlines()
    return "\n".join([head, *(wrapped(line, indent="  ").replace("\n  ", "\n      ") for line in claims)])


def scores_text(models, primary: str, reused: set[str]) -> str:
    """One line per variant: the suite's primary metric and Overall, the numbers of the report's ``models``
    table (analysis.load.model_scores) as given, and whether this run computed or reused it.

    >>> import pandas as pd
    >>> models = pd.DataFrame({"variant": ["a", "b"], "overall": [25.76, float("nan")], "heldout_bpb": [2.1, 2.0]})
    >>> print(scores_text(models, "overall", {"b"}))
    Scores (as in the report; primary: Overall):
      a  Overall 25.76  held-out bpb 2.1000  computed
      b  Overall -  held-out bpb 2.0000  reused
    """
    name = {"overall": "Overall", "heldout_bpb": "held-out bpb"}
    order = [primary, *(c for c in ("overall", "heldout_bpb") if c != primary and models[c].notna().any())]
    width = max(len(str(v)) for v in models["variant"])
    lines = [f"Scores (as in the report; primary: {name.get(primary, primary)}):"]
    for row in models.sort_values("variant").to_dict("records"):
        parts = [f"{name[c]} {_number(row.get(c), c)}" for c in order if c in row]
        state = "reused" if row["variant"] in reused else "computed"
        lines.append(f"  {str(row['variant']):<{width}}  {'  '.join(parts)}  {state}")
    return "\n".join(lines)


def _number(value, column: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4f}" if column == "heldout_bpb" else f"{value:.2f}"
