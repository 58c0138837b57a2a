"""Tidy results in, per-model scores out: which metric counts for each task, and how Overall is formed.

Primary metric per task: ``acc_norm`` if present, else ``acc``, as a percentage. Tasks that only
report a loss (bits per byte) stay out of Overall and go to the loss table. Overall is the mean over
tasks (each benchmark counts once, the paper's weighting), not over categories.

A design's identity includes its curve parameters (``alpha``), explicit-weights hash, merge dtype and
accumulation (result schema 3); older rows get them from the variant name. Folders of different
studies or eval suites are refused unless ``allow_mixed``; then each keeps its own ``group``.

Example:
    >>> import pandas as pd
    >>> rows = pd.DataFrame({"task": ["a", "a", "b"], "metric": ["acc", "acc_norm", "bits_per_byte"]})
    >>> primary_metrics(rows)
    {'a': 'acc_norm', 'b': 'bits_per_byte'}
    >>> name_fallbacks("wsm-explicit-fe59e0-N2-I8-E16-bfloat16-accfloat64-s0")
    {'alpha': nan, 'weights_hash': 'fe59e0', 'merge_dtype': 'bfloat16', 'accumulate': 'float64'}
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd

CATEGORIES = ["general_knowledge", "language", "math", "code", "professional_knowledge"]
HELDOUT_TASK = "wsm_heldout_bpb"
MERGE_IDENTITY = ["alpha", "weights_hash", "merge_dtype", "accumulate"]  # schema 3; parsed from old names
BEYOND = {"extrapolate": 0.0, "merge_order": "natural"}  # schema 3 columns of docs/beyond.md; defaults for old rows
PARENT = ["parent_quantity", "parent_interval"]  # schema 3: the merge a merge-then-decay started from
IDENTITY = ["variant", "group", "kind", "branch", "branch_kind", "curve", "min_lr", *MERGE_IDENTITY, *BEYOND, *PARENT,
            "quantity",
            "interval_steps",
            "duration_steps", "interval_tokens", "duration_tokens", "end_step", "end_tokens", "branch_steps",
            "model_hash", "samples_dir", "seed"]
DESIGN = [c for c in IDENTITY if c not in ("variant", "seed", "model_hash", "samples_dir")]
PRIMARY_BY_SUITE = {"tiny": "heldout_bpb", "benchmarks": "overall", "lm_eval": "overall"}  # conf/eval/*.yaml


class ReportError(ValueError):
    """Why a report cannot be written (a user error: exit status 2)."""


def load_results(*sweep_dirs: str | Path, allow_mixed: bool = False) -> pd.DataFrame:
    """The tidy results of one or more sweep folders (several seeds or sweeps), concatenated.

    Adds ``group`` (study and suite), ``primary`` (the suite's primary metric) and ``samples_dir``.
    Raises ReportError when a folder has no results, or when folders of different studies or suites
    are combined without ``allow_mixed``.
    """
    frames = []
    for folder in sweep_dirs:
        path = Path(folder) / "results.parquet"
        if not path.is_file():
            raise ReportError(f"{path} does not exist: run the sweep first (python -m wsm_exp +sweep=...), "
                              "or pass the sweep folder that holds results.parquet.")
        frame = pd.read_parquet(path)
        record = _sweep_record(Path(folder))
        eval_cfg = record.get("eval") or {}
        suite = _column_or(frame, "eval_suite", eval_cfg.get("name", ""))
        study = _column_or(frame, "study", record.get("key", ""))
        frame = frame.assign(eval_suite=suite, study=study, samples_dir=str(Path(folder) / "samples"),
                             primary=eval_cfg.get("primary") or PRIMARY_BY_SUITE.get(str(suite.iloc[0]) if len(suite)
                                                                                     else "", ""))
        frames.append(_with_merge_identity(frame))
    frame = _grouped(pd.concat(frames, ignore_index=True))
    groups = sorted(frame["group"].unique())
    if len(groups) > 1 and not allow_mixed:
        raise ReportError(
            f"The folders hold results of different studies or eval suites ({'; '.join(groups)}): their numbers "
            "are not comparable. Report them separately, or pass --allow-mixed (allow_mixed=True) to see them "
            "side by side.")
    return _with_primary(frame)


def eval_stages(frame: pd.DataFrame) -> pd.DataFrame:
    """Which stage each model reached under ``eval.staged`` and why (empty when no model was screened).

    >>> f = pd.DataFrame({"variant": ["a", "b"], "eval_stage": ["full", "screen"], "eval_reason": ["best", "far"]})
    >>> eval_stages(f)["eval_stage"].tolist()
    ['full', 'screen']
    """
    if "eval_stage" not in frame or not frame["eval_reason"].fillna("").astype(str).ne("").any():
        return pd.DataFrame(columns=["variant", "eval_stage", "eval_reason"])
    return (frame[["variant", "eval_stage", "eval_reason"]].drop_duplicates("variant").sort_values("variant")
            .reset_index(drop=True))


def full_suite_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows every number of the report may use: a screened-out model keeps only its held-out bits per
    byte (the full suite's own measurement); its other screen rows (tasks at a small limit) are left out.

    >>> f = pd.DataFrame({"variant": ["a", "b", "b"], "task": ["t", "t", HELDOUT_TASK],
    ...                   "eval_stage": ["full", "screen", "screen"]})
    >>> full_suite_rows(f)["variant"].tolist()
    ['a', 'b']
    """
    if "eval_stage" not in frame:
        return frame
    screened = frame["eval_stage"].fillna("full").eq("screen") & frame["task"].ne(HELDOUT_TASK)
    return frame[~screened].reset_index(drop=True)


def prepared(frame: pd.DataFrame) -> pd.DataFrame:
    """A results frame built in memory, with the columns ``load_results`` adds (no samples folder).

    >>> prepared(pd.DataFrame({"variant": ["v"], "branch": ["wsm"], "task": ["t"], "metric": ["acc"]}))["primary"].tolist()
    ['overall']
    """
    frame = frame.assign(eval_suite=_column_or(frame, "eval_suite", ""), study=_column_or(frame, "study", ""),
                         samples_dir="", primary=_column_or(frame, "primary", ""))
    return _with_primary(_grouped(_with_merge_identity(frame)))


def _grouped(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame["group"] = [f"{s or '?'} / {str(t)[:10] or '?'}" for s, t in zip(frame["eval_suite"], frame["study"])]
    return frame


def _with_primary(frame: pd.DataFrame) -> pd.DataFrame:
    frame["primary"] = [p or ("heldout_bpb" if (frame.loc[frame["group"] == g, "task"] == HELDOUT_TASK).any()
                              else "overall") for p, g in zip(frame["primary"], frame["group"])]
    return frame.drop_duplicates(["group", "variant", "task", "metric"], keep="last", ignore_index=True)


def _sweep_record(folder: Path) -> dict:
    path = folder / "sweep.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def _column_or(frame: pd.DataFrame, column: str, default: str) -> pd.Series:
    if column in frame and frame[column].notna().all() and (frame[column].astype(str) != "").all():
        return frame[column].astype(str)
    return pd.Series(default, index=frame.index, dtype=str)


def name_fallbacks(variant: str) -> dict:
    """Merge identity parsed from a variant name (only for rows written before schema 3)."""
    alpha = re.search(r"-a([0-9.eE+-]+?)(?=-(?:bfloat16|float16|float32|float64|acc|s\d))", variant)
    weights = re.search(r"-explicit-([0-9a-f]{6})-", variant)
    dtype = re.search(r"-(bfloat16|float16|float32|float64)(?=-)", variant)
    accumulate = re.search(r"-acc([a-z0-9]+)(?=-s\d+$)", variant)
    return {"alpha": float(alpha.group(1)) if alpha else math.nan, "weights_hash": weights.group(1) if weights else "",
            "merge_dtype": dtype.group(1) if dtype else "", "accumulate": accumulate.group(1) if accumulate else
            "float32"}


def _with_merge_identity(frame: pd.DataFrame) -> pd.DataFrame:
    parsed = pd.DataFrame([name_fallbacks(str(v)) for v in frame["variant"]], index=frame.index)
    for column in MERGE_IDENTITY:
        if column not in frame:
            frame[column] = parsed[column]
        else:
            frame[column] = frame[column].where(frame[column].notna(), parsed[column])
    frame["merge_dtype"] = frame["merge_dtype"].fillna("").astype(str)
    frame["weights_hash"] = frame["weights_hash"].fillna("").astype(str)
    frame["accumulate"] = frame["accumulate"].fillna("float32").replace("", "float32").astype(str)
    frame["alpha"] = frame["alpha"].astype(float)
    for column, default in BEYOND.items():
        frame[column] = frame[column].fillna(default) if column in frame else default
    for column, key in zip(PARENT, ("N", "I")):  # old rows: from the branch name mergethendecay_E.._N4_I8_..
        parsed = frame["branch"].astype(str).str.extract(rf"^mergethendecay_.*_{key}(\d+)_")[0].astype(float)
        frame[column] = frame[column].astype(float).fillna(parsed) if column in frame else parsed
    known = frame["branch_kind"].fillna("").astype(str) if "branch_kind" in frame else pd.Series("", index=frame.index)
    old = frame["branch"].astype(str).str.extract(r"^(fidelity|mergethendecay|wsd|wsm|probe|sft)")[0].fillna("")
    frame["branch_kind"] = known.where(known != "", old.replace({"mergethendecay": "merge_then_decay"}))  # old rows
    return frame


def failed(frame: pd.DataFrame) -> pd.DataFrame:
    """Failed variants with their errors (reported, never averaged)."""
    return frame.loc[frame["status"] == "failed", ["variant", "error"]].drop_duplicates("variant")


def primary_metrics(frame: pd.DataFrame) -> dict[str, str]:
    """task -> the metric that represents it."""
    out = {}
    for task, metrics in frame.groupby("task")["metric"]:
        names = set(metrics)
        out[task] = next((m for m in ("acc_norm", "acc", "exact_match", "bits_per_byte") if m in names), sorted(names)[0])
    return out


def task_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The ok rows of each task's primary metric (one per model × task)."""
    ok = frame[(frame["status"] == "ok") & frame["task"].ne("")]
    if ok.empty:
        return ok
    primary = primary_metrics(ok)
    return ok[[primary[t] == m for t, m in zip(ok["task"], ok["metric"])]]


def model_scores(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per evaluated model (variant): design columns, per-category and Overall scores (percent),
    and the held-out loss (bits per byte)."""
    chosen = task_rows(frame)
    if chosen.empty:
        return pd.DataFrame(columns=[*IDENTITY, *CATEGORIES, "overall", "heldout_bpb"])
    ok = frame[(frame["status"] == "ok") & frame["task"].ne("")]
    accuracy = chosen[chosen["metric"] != "bits_per_byte"].assign(score=lambda d: 100 * d["value"])
    index = ["group", "variant"]
    design = ok.drop_duplicates(index).set_index(index)[[c for c in IDENTITY if c not in index]]
    per_category = accuracy.pivot_table(index=index, columns="category", values="score", aggfunc="mean")
    overall = accuracy.groupby(index)["score"].mean().rename("overall")
    loss = ok[(ok["task"] == HELDOUT_TASK) & (ok["metric"] == "bits_per_byte")].set_index(index)["value"]
    table = design.join(per_category).join(overall).join(loss.rename("heldout_bpb"))
    for column in (*CATEGORIES, "overall", "heldout_bpb"):
        if column not in table:
            table[column] = float("nan")
    return table.reset_index()[[*IDENTITY, *CATEGORIES, "overall", "heldout_bpb"]]
