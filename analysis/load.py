"""Tidy results in, per-model scores out: which metric counts for each task, and how Overall is formed.

Primary metric per task: ``acc_norm`` if present, else ``acc``, as a percentage. Tasks that only
report a loss (bits per byte) stay out of Overall and go to the loss table. Overall is the mean over
tasks (each benchmark counts once, the paper's weighting), not over categories.

Example:
    >>> import pandas as pd
    >>> rows = pd.DataFrame({"task": ["a", "a", "b"], "metric": ["acc", "acc_norm", "bits_per_byte"]})
    >>> primary_metrics(rows)
    {'a': 'acc_norm', 'b': 'bits_per_byte'}
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

CATEGORIES = ["general_knowledge", "language", "math", "code", "professional_knowledge"]
HELDOUT_TASK = "wsm_heldout_bpb"
IDENTITY = ["variant", "kind", "branch", "curve", "min_lr", "quantity", "interval_steps", "duration_steps",
            "interval_tokens", "duration_tokens", "end_step", "end_tokens", "branch_steps", "seed"]
DESIGN = [c for c in IDENTITY if c not in ("variant", "seed")]


def load_results(*sweep_dirs: str | Path) -> pd.DataFrame:
    """The tidy results of one or more sweep folders (several seeds or sweeps), concatenated."""
    frames = []
    for folder in sweep_dirs:
        path = Path(folder) / "results.parquet"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: run the sweep first (python -m wsm_exp +sweep=...), "
                                    "or pass the sweep folder that holds results.parquet.")
        frames.append(pd.read_parquet(path))
    frame = pd.concat(frames, ignore_index=True)
    return frame.drop_duplicates(["variant", "task", "metric"], keep="last", ignore_index=True)


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


def model_scores(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per evaluated model (variant): design columns, per-category and Overall scores (percent),
    and the held-out loss (bits per byte)."""
    ok = frame[(frame["status"] == "ok") & frame["task"].ne("")]
    if ok.empty:
        return pd.DataFrame(columns=[*IDENTITY, *CATEGORIES, "overall", "heldout_bpb"])
    primary = primary_metrics(ok)
    chosen = ok[ok.apply(lambda r: primary[r["task"]] == r["metric"], axis=1)]
    accuracy = chosen[chosen["metric"] != "bits_per_byte"].assign(score=lambda d: 100 * d["value"])
    design = ok.drop_duplicates("variant").set_index("variant")[[c for c in IDENTITY if c != "variant"]]
    per_category = accuracy.pivot_table(index="variant", columns="category", values="score", aggfunc="mean")
    overall = accuracy.groupby("variant")["score"].mean().rename("overall")
    loss = ok[(ok["task"] == HELDOUT_TASK) & (ok["metric"] == "bits_per_byte")].set_index("variant")["value"]
    table = design.join(per_category).join(overall).join(loss.rename("heldout_bpb"))
    for column in (*CATEGORIES, "overall", "heldout_bpb"):
        if column not in table:
            table[column] = float("nan")
    return table.reset_index()
