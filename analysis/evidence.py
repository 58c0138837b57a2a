"""The evidence behind a comparison of two designs: their models joined by seed id, their per-document
values (``samples/<model_hash>.parquet``) and which tasks sit at chance.

A metric is ``"overall"`` (percent, mean over accuracy tasks), ``"heldout_bpb"`` (bits per byte) or a
task name (its primary metric; percent for accuracies). A missing samples file falls back to the
seed-only statistics, and the comparison says so.

Held-out text cut into pieces is clustered by the samples' ``source`` column (the text a piece came
from); without it each document is its own cluster. Tasks not significantly above chance (one-sided,
simultaneous over the models) carry no verdict.

Example:
    >>> Evidence(pd.DataFrame(columns=["status", "task"]), pd.DataFrame()).chance.columns.tolist()[-2:]
    ['documents', 'at_chance']
"""

from __future__ import annotations

import math
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.load import DESIGN, HELDOUT_TASK, task_rows
from analysis.rules import higher_is_better
from analysis.stats import Comparison, DocNoise, cluster_influence, compare, comparisons
from wsm_exp.evaluation.chance import chance_level


class Evidence:
    """Per-model values and samples of one results frame (one group)."""

    def __init__(self, frame: pd.DataFrame, scores: pd.DataFrame, samples: dict | None = None):
        """``samples``: per-document values by model hash, held in memory (else read from the sweep folders)."""
        self.frame, self.scores = frame, scores
        self.rows = task_rows(frame)
        self._samples: dict[tuple[str, str], pd.DataFrame | None] = {}
        self._given = samples
        self._tasks: dict[tuple, dict | None] = {}  # model → its samples by (task, metric)
        self._pairs: dict[tuple, tuple] = {}  # (design A, design B, metric) → paired values and noise

    @cached_property
    def task_metric(self) -> dict[str, str]:
        return dict(zip(self.rows["task"], self.rows["metric"]))

    @cached_property
    def accuracy_tasks(self) -> list[str]:
        return sorted(t for t, m in self.task_metric.items() if m != "bits_per_byte")

    @cached_property
    def chance(self) -> pd.DataFrame:
        """Per task: its chance level, its documents (``pieces`` where the held-out text is cut) and whether it is
        *not* significantly above chance for any model (one-sided, Bonferroni over the models), so a task at or
        below chance never carries a verdict."""
        from scipy.stats import norm

        out = []
        columns = ["task", "category", "metric", "chance", "models", "mean", "documents", "at_chance"]
        if self.rows.empty:
            return pd.DataFrame(columns=columns)
        for task, rows in self.rows.groupby("task"):
            z = float(norm.ppf(1 - 0.05 / len(rows)))
            level = chance_level(task) if rows["metric"].iloc[0] != "bits_per_byte" else None
            known = level is not None and rows["stderr"].notna().all()
            above = bool(((rows["value"] - z * rows["stderr"]) > level).any()) if known else True
            out.append({"task": task, "category": rows["category"].iloc[0], "metric": rows["metric"].iloc[0],
                        "chance": level, "models": len(rows), "mean": rows["value"].mean(),
                        "documents": self.documents(task), "at_chance": not above})
        return pd.DataFrame(out, columns=columns)

    def documents(self, task: str) -> str:
        """How many documents a task scored (``"78 pieces of 60 texts"`` for cut held-out text), from samples."""
        for _, model in self.scores.iterrows():
            samples = self.samples(model) if "model_hash" in model else None
            if samples is None:
                continue
            rows = samples[samples["task"] == task].drop_duplicates("doc_id")
            if rows.empty:
                return ""
            texts = rows["source"].replace("", pd.NA).dropna().nunique() if "source" in rows else 0
            return f"{len(rows)} pieces of {texts} texts" if texts else f"{len(rows)} documents"
        return ""

    def at_chance(self, metric: str) -> bool:
        """True when the metric rests only on tasks not significantly above chance (it carries no verdict)."""
        flagged = set(self.chance.loc[self.chance["at_chance"], "task"])
        tasks = self.accuracy_tasks if metric == "overall" else [metric]
        return bool(tasks) and set(tasks) <= flagged

    def models(self, design: pd.Series) -> pd.DataFrame:
        """The models (one per seed) of a design; seed NaNs are not seeds."""
        found = self._designs.get(_key(design, self._keys))
        if found is None:
            return self.scores.iloc[:0].set_index("seed")
        return found

    @cached_property
    def _keys(self) -> list[str]:
        return [c for c in DESIGN if c in self.scores]

    @cached_property
    def _designs(self) -> dict[tuple, pd.DataFrame]:
        seeded = self.scores[self.scores["seed"].notna()] if "seed" in self.scores else self.scores.iloc[:0]
        groups: dict[tuple, list[int]] = {}
        for i, (_, row) in enumerate(seeded.iterrows()):
            groups.setdefault(_key(row, self._keys), []).append(i)
        return {k: seeded.iloc[v].drop_duplicates("seed", keep="last").set_index("seed") for k, v in groups.items()}

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
        if self._given is not None:
            return self._given.get(key[1])
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

    def _task_differences(self, pairs, task: str, name: str) -> pd.DataFrame | None:
        """Per document of one task: the A − B difference averaged over the seed pairs, its weight and cluster."""
        diffs, first = [], None
        for a, b in pairs:
            da, db = self._values(a, task, name), self._values(b, task, name)
            if da is None or db is None:
                return None
            first = da if first is None else first
            diffs.append(da["value"] - db["value"].reindex(da.index))
        joined = pd.concat(diffs, axis=1).dropna()  # documents every seed pair scored
        if len(joined) < 2:
            return None
        return pd.DataFrame({"diff": joined.mean(axis=1), "weight": first["weight"].reindex(joined.index),
                             "source": first["source"].reindex(joined.index)})

    def _values(self, model: pd.Series, task: str, name: str) -> pd.DataFrame | None:
        """One model's per-document values of one task, indexed by doc_id (sorted), with weight and source."""
        key = (str(model.get("samples_dir", "")), str(model["model_hash"]))
        if key not in self._tasks:  # split a model's samples by (task, metric) once
            samples = self.samples(model)
            if samples is not None:
                source = samples["source"].fillna("").astype(str) if "source" in samples else ""
                samples = samples.assign(source=source)
            self._tasks[key] = None if samples is None else {
                part: rows.set_index("doc_id")[["value", "weight", "source"]].sort_index()
                for part, rows in samples.groupby(["task", "metric"], sort=False)}
        split = self._tasks[key]
        return None if split is None else split.get((task, name), _EMPTY)

    def doc_noise(self, pairs: list[tuple[pd.Series, pd.Series]], metric: str) -> DocNoise | None:
        """Paired per-document difference A − B of the seed-averaged values, clustered by source text where the
        samples name one (pieces of one text are correlated); None without samples."""
        if not pairs:
            return None
        effect, influence, docs, clusters, unit = 0.0, {}, [], [], "documents"
        for task, name, coef in self.parts(metric):
            per_doc = self._task_differences(pairs, task, name)
            if per_doc is None:
                return None
            sources = per_doc["source"]
            clustered = bool((sources != "").all())
            groups = sources.to_numpy() if clustered else None
            e, u = cluster_influence(per_doc["diff"].to_numpy(), per_doc["weight"].to_numpy(), groups)
            effect += coef * e
            keys = np.unique(groups.astype(str)) if clustered else per_doc.index.astype(str)
            influence.update({(task, k): coef * v for k, v in zip(keys, u)})
            docs.append(len(per_doc))
            clusters.append(len(u))
            unit = "pieces" if clustered and len(u) < len(per_doc) else unit
        if not docs:
            return None
        se = math.sqrt(sum(v * v for v in influence.values()))
        return DocNoise(effect, se, min(docs), len(pairs), min(clusters), unit, influence)

    def paired(self, a: pd.Series, b: pd.Series, metric: str):
        """(seeds, A's values, B's values, document noise) of two designs joined by seed id."""
        key = (_key(a, self._keys), _key(b, self._keys), metric)
        if key not in self._pairs:
            self._pairs[key] = self._paired(a, b, metric)
        return self._pairs[key]

    def _paired(self, a: pd.Series, b: pd.Series, metric: str):
        models_a, models_b = self.models(a), self.models(b)
        seeds = sorted(set(models_a.index) & set(models_b.index))
        va = [self.value(models_a.loc[s], metric) for s in seeds]
        vb = [self.value(models_b.loc[s], metric) for s in seeds]
        keep = [i for i in range(len(seeds)) if not (math.isnan(va[i]) or math.isnan(vb[i]))]
        pairs = [(models_a.loc[seeds[i]], models_b.loc[seeds[i]]) for i in keep]
        return ([seeds[i] for i in keep], [va[i] for i in keep], [vb[i] for i in keep],
                self.doc_noise(pairs, metric))

    def compare(self, a: pd.Series, b: pd.Series, metric: str, *, claimed_higher=None, power: float = 0.8):
        """A vs B on ``metric``, joined by seed id; ``claimed_higher`` overrides the metric's direction."""
        _, va, vb, noise = self.paired(a, b, metric)
        direction = higher_is_better(metric) if claimed_higher is None else claimed_higher
        return compare(va, vb, higher_is_better=direction, eval_noise=noise, power=power)

    def compare_best(self, candidates: pd.DataFrame, reference: pd.Series, metric: str, *, by: str | None = None,
                     claimed_higher=None, power: float = 0.8) -> tuple[pd.Series | None, Comparison]:
        """The best of ``candidates`` (by ``by``, default ``metric``, in the claimed direction) against
        ``reference``, its interval corrected for the pick by max-t over every candidate's joint differences
        (per-document influence and per-seed differences): K = the candidates, all picked in the claim's favour."""
        direction = higher_is_better(metric) if claimed_higher is None else claimed_higher
        by = by or metric
        tested = self._paired_all(candidates, reference, metric)
        if not tested:
            return None, compare([], [])
        if by == metric:
            sign = 1 if direction else -1
            best = max(range(len(tested)), key=lambda i: sign * float(np.mean(np.subtract(tested[i][2], tested[i][3]))))
        else:
            values = [float(t[0][by]) for t in tested]
            best = (int(np.nanargmax(values)) if higher_is_better(by) else int(np.nanargmin(values)))
        return self._corrected(tested, direction, power, only=best)[0]

    def compare_all(self, candidates: pd.DataFrame, reference: pd.Series, metric: str, *, claimed_higher=None,
                    power: float = 0.8) -> list[tuple[pd.Series, Comparison]]:
        """Every candidate sharing a seed with ``reference`` against it, each interval corrected for the best of
        the K candidates by max-t over their joint differences: simultaneous 95% intervals, the best one's equal
        to ``compare_best``'s (the figures draw these)."""
        direction = higher_is_better(metric) if claimed_higher is None else claimed_higher
        return self._corrected(self._paired_all(candidates, reference, metric), direction, power)

    def _paired_all(self, candidates: pd.DataFrame, reference: pd.Series, metric: str) -> list[tuple]:
        """(row, seeds, A's values, B's values, document noise) of every candidate sharing a seed with reference."""
        tested = []
        for _, row in candidates.iterrows():
            seeds, va, vb, noise = self.paired(row, reference, metric)
            if seeds:
                tested.append((row, seeds, va, vb, noise))
        return tested

    @staticmethod
    def _corrected(tested: list[tuple], direction: bool, power: float, only: int | None = None) \
            -> list[tuple[pd.Series, Comparison]]:
        """Comparisons of the tested candidates (or only the one at index ``only``), corrected for K = all of them
        (analysis.stats.comparisons: max-t over their joint per-seed and per-document differences)."""
        diffs = [dict(zip(seeds, np.subtract(va, vb))) for _, seeds, va, vb, _ in tested]
        compared = comparisons(diffs, [t[4] for t in tested], higher_is_better=direction, power=power)
        pairs = [(t[0], c) for t, c in zip(tested, compared)]
        return pairs if only is None else [pairs[only]]


_EMPTY = pd.DataFrame({"value": [], "weight": [], "source": []}, index=pd.Index([], name="doc_id"))


def _key(row: pd.Series, keys: list[str]) -> tuple:
    """A design's identity as a hashable key in which every missing value is the same None."""
    return tuple(None if pd.isna(row[k]) else row[k] for k in keys)
