"""The tidy result row: one per variant × task × metric. The one place the schema lives.

Jobs write their rows to ``<sweep_dir>/jobs/<variant>@<suite>.json`` atomically; the end-of-sweep
callback gathers every job file into ``results.parquet`` (plus ``results.csv``). A job file also
stores the fingerprint of every input that produced it (``wsm_exp.sweep.record.freshness``), so a rerun
reuses the variant only when nothing changed.

Example:
    >>> row = make_row(variant="raw-E64", kind="raw", task="t", metric="acc", value=0.5)
    >>> row["schema_version"], row["status"]
    (3, 'ok')
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from wsm_exp.atomic import write_json_atomic
from wsm_exp.sweep.record.wrapup import publish_together

SCHEMA_VERSION = 3  # 3: branch_kind, parent_*, alpha, weights_hash, merge_dtype, accumulate, eval_suite, study

COLUMNS: dict[str, str] = {
    "schema_version": "int64",  # bumped on any incompatible change to this table
    "sweep": "string",  # sweep name (conf/sweep/<name>.yaml), e.g. "duration"
    "sweep_dir": "string",  # folder holding results.parquet
    "variant": "string",  # id of the evaluated model, unique within a sweep (includes the seed)
    "kind": "string",  # wsm | decay_merge | merge_then_decay | wsd | raw | sft (wsm_exp.sweep.spec.variants)
    "branch": "string",  # series the model comes from: "wsm", "wsd_1-sqrt", "fidelity_E128_D32", ...
    "curve": "string",  # merge curve (wsm), decay shape (wsd) or "none" (raw)
    "min_lr": "float64",  # emulated / real final LR as a fraction of the constant LR
    "quantity": "int64",  # N: checkpoints merged (1 for raw and wsd)
    "interval_steps": "int64",  # Δ between merged checkpoints (0 when N = 1)
    "interval_tokens": "int64",
    "duration_steps": "int64",  # D = N·Δ (merges) or the decay length (wsd)
    "duration_tokens": "int64",
    "end_step": "int64",  # global step of the newest checkpoint used
    "end_tokens": "int64",  # tokens since the branch point at end_step
    "branch_steps": "int64",  # branch length: the WSD token budget in steps
    "steps": "string",  # JSON list of merged global steps, oldest first
    "weights": "string",  # JSON list of merge weights, oldest first
    "branch_kind": "string",  # stage1 | wsm | wsd | fidelity | merge_then_decay | sft (wsm_exp.study.branch_spec)
    "parent_quantity": "int64",  # N of the merge a merge-then-decay branch starts from (0 otherwise)
    "parent_interval": "int64",  # Δ of that merge in steps (0 otherwise)
    "alpha": "float64",  # EMA factor of curve=ema_alpha (NaN otherwise)
    "weights_hash": "string",  # short hash of explicit merge weights ("" for a named curve)
    "merge_dtype": "string",  # dtype the merge was written in ("" = the checkpoints')
    "accumulate": "string",  # merge accumulation precision
    "extrapolate": "float64",  # α of an extrapolated merge θ_merge + α(θ_merge − θ_anchor) (0 otherwise)
    "merge_order": "string",  # natural | reverse | scramble: control orders of a curve's weights
    "eval_suite": "string",  # key of the eval suite and its settings (one per sweep folder)
    "study": "string",  # key of the study or series (without seed) the model comes from
    "model_hash": "string",  # content key of the evaluated weights
    "seed": "int64",  # training seed of the series
    "task": "string",
    "category": "string",  # general_knowledge | language | math | code | professional_knowledge | heldout | other
    "metric": "string",  # acc, acc_norm, bits_per_byte, ...
    "value": "float64",  # NaN on failed rows
    "stderr": "float64",  # NaN where the harness gives none
    "higher_is_better": "boolean",
    "merge_seconds": "float64",  # 0 for reused merges and unmerged models
    "eval_seconds": "float64",  # 0 for cached scores
    "tokens_per_second": "float64",  # tokens the model read for the task / its seconds, as measured when computed
    # (kept with a cached score); NaN in rows written before this column and for tasks with no count
    "eval_stage": "string",  # "full": the whole suite; "screen": only the screen (eval.staged, see eval_reason)
    "eval_reason": "string",  # why the model reached that stage ("" when eval.staged is off)
    "harness_version": "string",  # lm_eval.__version__
    "task_version": "string",  # lm-eval's version of the task (its metadata.version)
    "task_hash": "string",  # hash of the package's task definitions (lm_eval-<version> for built-in tasks)
    "epoch": "int64",  # SFT epoch of an sft model (0 = its base before SFT); 0 for every other kind
    "status": "string",  # "ok" | "failed"
    "error": "string",  # one-paragraph error for failed rows, "" otherwise
}

_DEFAULTS: dict[str, Any] = {
    "schema_version": SCHEMA_VERSION, "sweep": "", "sweep_dir": "", "branch": "", "curve": "none",
    "min_lr": 0.0, "quantity": 1, "interval_steps": 0, "interval_tokens": 0, "duration_steps": 0,
    "duration_tokens": 0, "end_step": 0, "end_tokens": 0, "branch_steps": 0, "steps": "[]",
    "weights": "[]", "branch_kind": "", "parent_quantity": 0, "parent_interval": 0, "alpha": math.nan,
    "weights_hash": "", "merge_dtype": "", "accumulate": "float32", "extrapolate": 0.0,
    "merge_order": "natural", "eval_suite": "", "study": "", "model_hash": "", "seed": 0, "task": "", "category": "other", "metric": "",
    "value": math.nan, "stderr": math.nan, "higher_is_better": True, "merge_seconds": 0.0,
    "eval_seconds": 0.0, "tokens_per_second": math.nan, "eval_stage": "full", "eval_reason": "",
    "harness_version": "", "task_version": "", "task_hash": "", "epoch": 0, "status": "ok",
    "error": "",
}


def make_row(**fields: Any) -> dict[str, Any]:
    """One schema-complete row; unknown field names are a programming error.

    >>> make_row(variant="v", kind="wsd", value=1.0)["quantity"]
    1
    """
    unknown = set(fields) - set(COLUMNS)
    if unknown:
        raise KeyError(f"Not result columns: {sorted(unknown)}; the schema is wsm_exp.sweep.record.results.COLUMNS.")
    return {**_DEFAULTS, **fields}


def score_rows(scores, **fields: Any) -> list[dict[str, Any]]:
    """One row per score of an evaluation (``wsm_exp.evaluation.harness.Score``) with the model's ``fields``; a
    score taken from the cache cost no evaluation time.

    >>> from types import SimpleNamespace as Score
    >>> s = Score(task="t", category="c", metric="acc", value=0.5, stderr=0.1, higher_is_better=True, seconds=2.0,
    ...           from_cache=True, harness_version="h", task_version="1", task_hash="x")
    >>> [(r["variant"], r["value"], r["eval_seconds"]) for r in score_rows([s], variant="v")]
    [('v', 0.5, 0.0)]
    """
    return [make_row(**fields, task=s.task, category=s.category, metric=s.metric, value=float(s.value),
                     stderr=float(s.stderr), higher_is_better=bool(s.higher_is_better),
                     eval_seconds=0.0 if s.from_cache else s.seconds,
                     tokens_per_second=float(getattr(s, "tokens_per_second", math.nan)),
                     harness_version=s.harness_version,
                     task_version=s.task_version, task_hash=s.task_hash)
            for s in scores]


def to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows to a DataFrame with the schema's column order and dtypes."""
    frame = pd.DataFrame([make_row(**r) for r in rows], columns=list(COLUMNS))
    return frame.astype(COLUMNS)


def job_file(sweep_dir: Path, variant: str, suite: str = "") -> Path:
    """Where a variant's rows under one eval suite (its key) live inside a sweep folder."""
    return Path(sweep_dir) / "jobs" / (f"{variant}@{suite}.json" if suite else f"{variant}.json")


def write_job(sweep_dir: Path, variant: str, fingerprint: str, rows: list[dict[str, Any]], *, suite: str = "",
              inputs: dict[str, Any] | None = None, from_cache: bool = False) -> Path:
    """Publish a variant's rows (all or nothing) with the fingerprint and the inputs that made them;
    ``from_cache``: every score came from the score cache (the console counts the variant as reused)."""
    path = job_file(sweep_dir, variant, suite)
    write_json_atomic(path, {"fingerprint": fingerprint, "inputs": inputs, "from_cache": from_cache,
                             "rows": [make_row(**r) for r in rows]})
    if suite:  # the same result stored before suites were part of the key
        job_file(sweep_dir, variant).unlink(missing_ok=True)
    return path


def read_job(sweep_dir: Path, variant: str, suite: str = "") -> dict[str, Any] | None:
    """A variant's stored job file ({fingerprint, inputs, rows}), or None when absent or unreadable."""
    for path in dict.fromkeys((job_file(sweep_dir, variant, suite), job_file(sweep_dir, variant))):
        try:
            payload = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(payload, dict) and isinstance(payload.get("rows"), list):
            return payload
    return None


def finished_job(sweep_dir: Path, variant: str, fingerprint: str, suite: str = "") -> bool:
    """True when the variant's stored rows are all ``ok`` and were made by inputs with this fingerprint."""
    stored = read_job(sweep_dir, variant, suite)
    return stored is not None and stored.get("fingerprint") == fingerprint and all_ok(stored)


def all_ok(payload: dict[str, Any] | None) -> bool:
    """True when a stored job holds rows and every one is ``ok``."""
    rows = (payload or {}).get("rows") or []
    return bool(rows) and all(r.get("status") == "ok" for r in rows)


def gather(sweep_dir: Path) -> pd.DataFrame:
    """All job files of a sweep folder as one tidy table (sorted, one row per variant×task×metric)."""
    rows: list[dict[str, Any]] = []
    for path in sorted((Path(sweep_dir) / "jobs").glob("*.json")):
        try:
            rows.extend(json.loads(path.read_text())["rows"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}: not a readable job file ({type(err).__name__}: {err}); delete it, and the "
                             "rerun recomputes that variant") from err
    frame = to_frame(rows)
    return frame.sort_values(["kind", "variant", "task", "metric"], ignore_index=True)


def write_results(sweep_dir: Path) -> pd.DataFrame:
    """Gather the job files into ``results.parquet`` and ``results.csv`` (published together or not at all)."""
    frame = gather(sweep_dir)
    publish_together({Path(sweep_dir) / "results.parquet": lambda tmp: frame.to_parquet(tmp, index=False),
                      Path(sweep_dir) / "results.csv": lambda tmp: frame.to_csv(tmp, index=False)})
    return frame
