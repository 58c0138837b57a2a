"""The evidence behind a comparison of two designs: their models joined by seed id, their per-document
values (``samples/<model_hash>.parquet``) and which tasks sit at chance.

A metric is ``"overall"`` (percent, mean over accuracy tasks), ``"heldout_bpb"`` (bits per byte) or a
task name (its primary metric; percent for accuracies). A missing samples file falls back to the
seed-only statistics, and the comparison says so.

Example:
    >>> higher_is_better("heldout_bpb"), higher_is_better("overall"), higher_is_better("wsm_math_bpb")
    (False, True, False)
"""

from __future__ import annotations

import math
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.load import DESIGN, HELDOUT_TASK, task_rows
from analysis.stats import DocNoise, compare, paired_difference, quantile
from wsm_exp.evaluation.chance import chance_level


def higher_is_better(metric: str) -> bool:
    return not (metric == "heldout_bpb" or metric.endswith("_bpb"))


class Evidence:
    """Per-model values and samples of one results frame (one group)."""

    def __init__(self, frame: pd.DataFrame, scores: pd.DataFrame):
        self.frame, self.scores = frame, scores
        self.rows = task_rows(frame)
        self._samples: dict[tuple[str, str], pd.DataFrame | None] = {}

    @cached_property
    def task_metric(self) -> dict[str, str]:
        return dict(zip(self.rows["task"], self.rows["metric"]))

    @cached_property
    def accuracy_tasks(self) -> list[str]:
        return sorted(t for t, m in self.task_metric.items() if m != "bits_per_byte")

    @cached_property
    def chance(self) -> pd.DataFrame:
        """Per task: its chance level and whether every model's interval includes it. The intervals are
        simultaneous over the models (Bonferroni), so a task truly at chance is marked so ≥ 95% of the time."""
        out = []
        for task, rows in self.rows.groupby("task"):
            z = quantile(math.inf, len(rows))
            level = chance_level(task) if rows["metric"].iloc[0] != "bits_per_byte" else None
            covers = (rows["value"] - z * rows["stderr"] <= level) & (level <= rows["value"] + z * rows["stderr"]) \
                if level is not None else pd.Series(dtype=bool)
            known = level is not None and rows["stderr"].notna().all()
            out.append({"task": task, "category": rows["category"].iloc[0], "metric": rows["metric"].iloc[0],
                        "chance": level, "models": len(rows), "mean": rows["value"].mean(),
                        "at_chance": bool(known and covers.all())})
        return pd.DataFrame(out, columns=["task", "category", "metric", "chance", "models", "mean", "at_chance"])

    def at_chance(self, metric: str) -> bool:
        """True when the metric rests only on tasks at chance for every model (it carries no verdict)."""
        flagged = set(self.chance.loc[self.chance["at_chance"], "task"])
        tasks = self.accuracy_tasks if metric == "overall" else [metric]
        return bool(tasks) and set(tasks) <= flagged

    def models(self, design: pd.Series) -> pd.DataFrame:
        """The models (one per seed) of a design; seed NaNs are not seeds."""
        mask = pd.Series(True, index=self.scores.index)
        for key in [c for c in DESIGN if c in self.scores]:
            mask &= (self.scores[key] == design[key]) | (self.scores[key].isna() & pd.isna(design[key]))
        models = self.scores[mask & self.scores["seed"].notna()]
        return models.drop_duplicates("seed", keep="last").set_index("seed")

    def value(self, model: pd.Series, metric: str) -> float:
        if metric in ("overall", "heldout_bpb"):
            return float(model[metric])
        rows = self.rows[(self.rows["variant"] == model["variant"]) & (self.rows["task"] == metric)]
        if rows.empty:
            return math.nan
        value = float(rows["value"].iloc[0])
        return value if rows["metric"].iloc[0] == "bits_per_byte" else 100 * value

    def samples(self, model: pd.Series) -> pd.DataFrame | None:
        key = (str(model.get("samples_dir", "")), str(model["model_hash"]))
        if key not in self._samples:
            path = Path(key[0]) / f"{key[1]}.parquet"
            self._samples[key] = pd.read_parquet(path) if key[1] and path.is_file() else None
        return self._samples[key]

    def parts(self, metric: str) -> list[tuple[str, str, float]]:
        """(task, sample metric, coefficient) whose weighted sum is ``metric``."""
        if metric == "heldout_bpb":
            return [(HELDOUT_TASK, "bits_per_byte", 1.0)]
        if metric == "overall":
            tasks = self.accuracy_tasks
            return [(t, self.task_metric[t], 100.0 / len(tasks)) for t in tasks]
        scale = 1.0 if self.task_metric.get(metric) == "bits_per_byte" else 100.0
        return [(metric, self.task_metric.get(metric, ""), scale)]

    def doc_noise(self, pairs: list[tuple[pd.Series, pd.Series]], metric: str) -> DocNoise | None:
        """Paired per-document difference A − B, pooled over the seed pairs; None without samples."""
        effects, variances, docs = [], [], []
        for a, b in pairs:
            sa, sb = self.samples(a), self.samples(b)
            if sa is None or sb is None:
                return None
            effect = variance = 0.0
            for task, name, coef in self.parts(metric):
                da = sa[(sa["task"] == task) & (sa["metric"] == name)]
                db = sb[(sb["task"] == task) & (sb["metric"] == name)]
                joined = da.merge(db, on="doc_id", suffixes=("_a", "_b"))
                if len(joined) < 2:
                    return None
                e, se = paired_difference(joined["value_a"].to_numpy(), joined["value_b"].to_numpy(),
                                          joined["weight_a"].to_numpy())
                effect += coef * float(e)
                variance += (coef * float(se)) ** 2
                docs.append(len(joined))
            effects.append(effect)
            variances.append(variance)
        if not effects:
            return None
        return DocNoise(float(np.mean(effects)), math.sqrt(sum(variances)) / len(effects), min(docs), len(effects))

    def compare(self, a: pd.Series, b: pd.Series, metric: str, *, candidates: int = 1, claimed_higher=None):
        """A vs B on ``metric``, joined by seed id; ``claimed_higher`` overrides the metric's direction."""
        models_a, models_b = self.models(a), self.models(b)
        seeds = sorted(set(models_a.index) & set(models_b.index))
        va = [self.value(models_a.loc[s], metric) for s in seeds]
        vb = [self.value(models_b.loc[s], metric) for s in seeds]
        keep = [i for i in range(len(seeds)) if not (math.isnan(va[i]) or math.isnan(vb[i]))]
        pairs = [(models_a.loc[seeds[i]], models_b.loc[seeds[i]]) for i in keep]
        direction = higher_is_better(metric) if claimed_higher is None else claimed_higher
        return compare([va[i] for i in keep], [vb[i] for i in keep], higher_is_better=direction,
                       candidates=candidates, eval_noise=self.doc_noise(pairs, metric) if pairs else None)
