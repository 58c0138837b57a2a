"""The end of a real Hydra multirun under faults: never exit 0 without the results, never half-written.

A user series of three tiny random Llamas is swept (``-m``, two merge variants and the raw
baseline) through the real entry point; then the sweep folder is sabotaged the way a full or
foreign folder would (a folder where ``results.parquet`` goes, a corrupt job file, a file where the
report's tables go) and the same command is rerun.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.evaluation import tiny_lm
from helpers.sweep import ROOT

pytestmark = pytest.mark.slow

HELDOUT = [{"text": f"Held-out document {k}: the quick brown fox jumps over the lazy dog."} for k in range(8)]


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    for seed, step in enumerate((100, 200, 300)):
        tiny_lm(root / "series" / f"step_{step}", seed=seed)
    (root / "heldout.jsonl").write_text("".join(json.dumps(d) + "\n" for d in HELDOUT))
    return root


def _sweep(root: Path) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "wsm_exp", "-m", f"paths.sweeps={root}/sweeps", "sweep_name=faults",
            f"series.path={root}/series", "series.tokens_per_step=1000", f"series.heldout={root}/heldout.jsonl",
            "baselines.wsd_shapes=[]", "baselines.matched_tokens=false", "merge.quantity=2,3",
            "eval.tasks=[wsm_heldout_bpb]", "eval.limit=4", "eval.limits={}", "logger=none"]
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


def test_a_blocked_results_path_exits_non_zero_and_replaces_nothing(series):
    folder = series / "sweeps" / "faults"
    first = _sweep(series)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    report, csv = (folder / "report.md").read_bytes(), (folder / "results.csv").read_bytes()

    (folder / "results.parquet").unlink()
    (folder / "results.parquet").mkdir()  # a folder in the way of the results
    blocked = _sweep(series)
    assert blocked.returncode == 1, blocked.stdout[-2000:] + blocked.stderr[-3000:]
    error = [line for line in blocked.stderr.splitlines() if line.startswith("Error: ")]
    assert len(error) == 1 and "IsADirectoryError" in error[0] and "results.parquet" in error[0], blocked.stderr
    assert "were not written" in error[0] or "were not replaced" in error[0]
    assert "Traceback" not in blocked.stderr and "raised IsADirectoryError" not in blocked.stderr  # no Hydra warning
    assert (folder / "report.md").read_bytes() == report and (folder / "results.csv").read_bytes() == csv
    assert not _temporaries(folder)

    (folder / "results.parquet").rmdir()
    job = folder / "jobs" / "stray@x.json"  # a job file cut short by another tool (no job of this sweep rewrites it)
    job.write_text('{"fingerprint": "f", "rows": [{"variant"')
    corrupt = _sweep(series)
    assert corrupt.returncode == 1 and f"{job}: not a readable job file" in corrupt.stderr, corrupt.stderr[-3000:]
    assert not (folder / "results.parquet").exists() and (folder / "report.md").read_bytes() == report
    assert not _temporaries(folder)
    job.unlink()


def test_a_report_that_cannot_be_written_exits_non_zero_without_a_stale_report(series):
    folder = series / "sweeps" / "faults"
    assert _sweep(series).returncode == 0 and (folder / "report.md").is_file()
    old = (folder / "results.parquet").stat().st_mtime_ns
    tables = folder / "tables"
    for item in tables.iterdir():
        item.unlink()
    tables.rmdir()
    tables.write_text("a file where the report's tables go")
    failed = _sweep(series)
    assert failed.returncode == 1, failed.stdout[-2000:] + failed.stderr[-2000:]
    assert "The report could not be written" in failed.stdout
    assert (folder / "results.parquet").stat().st_mtime_ns > old  # the results are this run's ...
    assert not (folder / "report.md").exists()  # ... and no report of other results is left beside them
    assert not _temporaries(folder)
    tables.unlink()

    (folder / "report.md").mkdir()  # a folder where the report goes
    blocked = _sweep(series)
    assert blocked.returncode == 1, blocked.stdout[-2000:] + blocked.stderr[-2000:]
    error = [line for line in blocked.stderr.splitlines() if line.startswith("Error: ")]
    assert len(error) == 1 and "report.md" in error[0] and "the report was not" in error[0], blocked.stderr
    assert not _temporaries(folder)
    (folder / "report.md").rmdir()
