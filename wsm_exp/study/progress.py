"""Training progress on stdout: one line (step, loss, tokens/s, ETA) at most once a minute.

The tqdm bar goes to stderr and redraws in place, which a log file or a batch system's stdout never
shows; this line is what someone tailing a job's output sees while the study trains.

Example:
    >>> lines = []
    >>> progress = ProgressLine("stage1", total=100, every_s=60.0, emit=lines.append,
    ...                         clock=iter([0.0, 0.0, 1.0, 61.0]).__next__)
    >>> progress.update(step=10, done=10, loss=3.21, tokens_per_s=1500.0)  # the first step always prints
    >>> progress.update(step=20, done=20, loss=3.10, tokens_per_s=1500.0)  # 1 s later: quiet
    >>> progress.update(step=30, done=30, loss=3.05, tokens_per_s=1500.0)  # a minute later: prints
    >>> lines[1]
    'stage1: step 30 (30/100, 30%), loss 3.050, 1,500 tokens/s, ETA 2m 22s'
"""

from __future__ import annotations

import time
from collections.abc import Callable


def eta_text(seconds: float) -> str:
    """Seconds as ``1h 02m``, ``2m 22s`` or ``9s``.

    >>> eta_text(3725), eta_text(142.3), eta_text(9.4)
    ('1h 02m', '2m 22s', '9s')
    """
    seconds = max(int(round(seconds)), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


class ProgressLine:
    """Prints a progress line on the first update, then at most every ``every_s`` seconds, and on the last step."""

    def __init__(self, desc: str, total: int, *, every_s: float = 60.0, emit: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.desc, self.total, self.every_s = desc, total, every_s
        self.emit = emit or (lambda line: print(line, flush=True))
        self.clock = clock
        self.started = clock()
        self.last: float | None = None

    def update(self, *, step: int, done: int, loss: float, tokens_per_s: float) -> None:
        """Report global ``step`` after ``done`` of ``total`` steps of this segment."""
        now = self.clock()
        if self.last is not None and now - self.last < self.every_s and done < self.total:
            return
        self.last = now
        rate = done / max(now - self.started, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else 0.0
        self.emit(f"{self.desc}: step {step} ({done}/{self.total}, {100 * done // max(self.total, 1)}%), "
                  f"loss {loss:.3f}, {tokens_per_s:,.0f} tokens/s, ETA {eta_text(eta)}")
