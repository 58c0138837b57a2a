"""What the screen of ``eval.staged`` decided for each variant: ``<sweep_dir>/screen.json``, read by the jobs.

``stage.screen.run_screen`` writes it before the jobs start; each job reads its variant's (stage, reason)
with ``decision``. The rule and the pass are in ``wsm_exp.sweep.stage.screen``.

Example:
    >>> import tempfile
    >>> decision(Path(tempfile.mkdtemp()), "wsm-mean-N4") is None   # not screened: the full suite
    True
"""

from __future__ import annotations

import json
from pathlib import Path

RECORD = "screen.json"
BASELINE = "baseline: every claim is judged against it (raw checkpoint, WSD end), so it gets the full suite"
UNSCREENED = "not screened (a single job, or its series was not on disk before the jobs): full suite"


def decision(sweep_dir: Path, variant: str) -> tuple[str, str] | None:
    """The screen's (stage, reason) for ``variant``, or None when the pass did not screen it."""
    try:
        entry = json.loads((Path(sweep_dir) / RECORD).read_text())["variants"][variant]
        return str(entry["stage"]), str(entry["reason"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


__all__ = ["BASELINE", "RECORD", "UNSCREENED", "decision"]
