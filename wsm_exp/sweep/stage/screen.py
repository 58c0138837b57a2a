"""Staged evaluation (``eval.staged=true``): screen every variant cheaply, give the full suite only to those that can win.

Hydra runs one job per variant, and no job can see the others' results, so the screen is a pass of
its own before the jobs (``callbacks.on_multirun_start``, after the merge stage): ``run_screen``
plans every job, evaluates each job's merge variant on the screen suite (``SuiteConfig.screen``:
held-out bits per byte when the suite has it, else every task at ``eval.screen_limit`` documents;
scores go to the score cache, so the full suite reuses a held-out screen) and writes
``<sweep_dir>/screen.json``: each variant's screen value, standard error, stage, reason and the smallest
detectable difference it was held to. A variant gets the full suite when its screen value is within the
smallest detectable difference of the best screened value (``select``), paired over the documents both
were screened on; the others keep their screen rows only. Each job then reads
its variant's decision (``planning.screen_record.decision``); baselines (raw checkpoint, WSD ends: what every claim is
compared with) always get the full suite, and a variant the pass did not screen (a single job, a
series not trained yet) too. A rerun with ``eval.staged=false`` evaluates the rest, reusing every
cached score.

Example:
    >>> picked = select({"a": (0.90, 0.01), "b": (0.91, 0.01), "c": (1.2, 0.01)}, higher_is_better=False)
    >>> {name: decision.stage for name, decision in picked.items()}
    {'a': 'full', 'b': 'full', 'c': 'screen'}
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from statistics import NormalDist
from typing import NamedTuple

import numpy as np
from omegaconf import DictConfig, OmegaConf

from wsm_exp.atomic import write_json_atomic
from wsm_exp.evaluation.clustered import cluster_influence, detectable
from wsm_exp.sweep.planning.screen_record import RECORD

log = logging.getLogger(__name__)

ACCURACY = ("acc_norm", "acc", "exact_match")  # a task's screen metric: the first of these it reports
Z_95 = NormalDist().inv_cdf(0.975)  # the screen's gap is one pre-set pair (no selection): a two-sided z test at 5%


class Decision(NamedTuple):
    """One variant's stage, the reason in words, and the smallest detectable difference its gap was held to."""

    stage: str  # "full" | "screen"
    reason: str
    detectable: float  # NaN for the best and where there was nothing to compare


def select(screens: dict[str, tuple[float, float]], *, higher_is_better: bool, power: float = 0.8,
           documents: dict[str, dict[str, tuple[float, float, str]]] | None = None) -> dict[str, Decision]:
    """name -> ``Decision`` from each name's (screen value, standard error) and, where given, its
    per-document values (``screen_documents``).

    A variant is kept for the full suite when its gap to the best is below the smallest detectable
    difference: from the standard error of its per-document differences to the best (paired, what the
    report's intervals are) when both have per-document values on common documents, else from the two
    standard errors (unpaired); without standard errors every variant is kept. Documents move two
    nearby models alike, so the paired rule tells far finer gaps apart:

    >>> docs = {"a": {"1": (0.9, 1, "1"), "2": (1.5, 1, "2")}, "b": {"1": (0.95, 1, "1"), "2": (1.56, 1, "2")}}
    >>> [select({"a": (1.2, 0.3), "b": (1.255, 0.3)}, higher_is_better=False, documents=d)["b"].stage
    ...  for d in (None, docs)]
    ['full', 'screen']
    """
    finite = {n: (v, s) for n, (v, s) in screens.items() if math.isfinite(v)}
    if not finite:
        return {n: Decision("full", "no screen value: full suite", math.nan) for n in screens}
    best_name = (max if higher_is_better else min)(finite, key=lambda n: finite[n][0])
    best, best_se = finite[best_name]
    documents = documents or {}
    out = {}
    for name, (value, se) in screens.items():
        if name == best_name:
            out[name] = Decision("full", f"best screen value {value:.4f}", math.nan)
            continue
        gap = abs(value - best) if math.isfinite(value) else math.inf
        paired = paired_se(documents.get(name, {}), documents.get(best_name, {}))
        how = "paired over the documents" if math.isfinite(paired) else "unpaired"
        se_gap = paired if math.isfinite(paired) else math.sqrt(se**2 + best_se**2)
        threshold = detectable(se_gap, Z_95, power)
        if not math.isfinite(threshold) or gap <= threshold:
            out[name] = Decision("full", f"screen {value:.4f} within {threshold:.4f} (smallest detectable difference, "
                                         f"{how}) of the best {best:.4f}", threshold)
        else:
            out[name] = Decision("screen", f"screen {value:.4f} is {gap:.4f} from the best {best:.4f}, beyond the "
                                           f"smallest detectable difference {threshold:.4f} ({how}): screen only",
                                 threshold)
    return out


def paired_se(a: dict[str, tuple[float, float, str]], b: dict[str, tuple[float, float, str]]) -> float:
    """Standard error of screen ``a`` minus screen ``b`` from their per-document values on the documents both
    have ((value, weight, cluster) by document, as ``screen_documents`` gives them): the clustered
    ``weighted_se`` of the per-document differences. NaN with fewer than two clusters in common.

    >>> round(paired_se({"1": (1.0, 1, "x"), "2": (2.0, 1, "y")}, {"1": (0.5, 1, "x"), "2": (1.4, 1, "y")}), 4)
    0.05
    """
    common = sorted(a.keys() & b.keys())
    if not common:
        return math.nan
    return weighted_se([a[k][0] - b[k][0] for k in common], [a[k][1] for k in common], [a[k][2] for k in common])


def weighted_se(values, weights, clusters) -> float:
    """Standard error of the weighted mean Σ v·w / Σ w, clustered (pieces of one source text move together):
    the report's estimator, ``wsm_exp.evaluation.clustered.cluster_influence``. NaN with fewer than two clusters.

    >>> round(weighted_se([1.0, 1.0, 0.0, 1.0], [1, 1, 1, 1], ["a", "b", "c", "d"]), 4)
    0.25
    """
    _, influence = cluster_influence(values, weights, clusters)
    return float(np.sqrt((influence ** 2).sum()))


def screen_value(scores, samples=None) -> tuple[float, float, bool]:
    """(value, standard error, higher is better) of a screen's scores: held-out bits per byte (its standard
    error from the per-document ``samples`` when the harness gives none), or the mean over tasks of each
    task's accuracy metric (its standard error from the tasks' own).

    >>> from types import SimpleNamespace as S
    >>> screen_value([S(task="a", metric="acc", value=0.5, stderr=0.03), S(task="b", metric="acc", value=0.7,
    ...                                                                      stderr=0.04)])
    (0.6, 0.025, True)
    """
    for s in scores:
        if s.task == "wsm_heldout_bpb" and s.metric == "bits_per_byte":
            se = float(s.stderr)
            if not math.isfinite(se) and samples is not None:
                docs = samples[(samples["task"] == s.task) & (samples["metric"] == s.metric)]
                clusters = [src or f"doc {d}" for src, d in zip(docs["source"], docs["doc_id"])]
                se = weighted_se(docs["value"].tolist(), docs["weight"].tolist(), clusters) if len(docs) else se
            return float(s.value), se, False
    per_task: dict[str, tuple[float, float]] = {}
    for metric in reversed(ACCURACY):  # the first of ACCURACY wins
        per_task.update({s.task: (float(s.value), float(s.stderr)) for s in scores if s.metric == metric})
    if not per_task:
        return math.nan, math.nan, True
    n = len(per_task)
    value = sum(v for v, _ in per_task.values()) / n
    return round(value, 12), round(math.sqrt(sum(s**2 for _, s in per_task.values())) / n, 12), True


def screen_documents(scores, samples) -> dict[str, tuple[float, float, str]]:
    """The per-document values behind ``screen_value``'s number, "task/doc" -> (value, weight, cluster), so
    that two screens on the same documents can be compared document by document (``paired_se``): held-out
    bits per byte (weight: bytes; cluster: the source text), or each task's accuracy metric (weight
    1 / the task's documents, so the weighted mean is the mean over tasks). Empty without samples.

    >>> import pandas as pd
    >>> from types import SimpleNamespace as S
    >>> rows = pd.DataFrame({"task": ["a", "a", "b"], "doc_id": ["0", "1", "0"], "metric": ["acc"] * 3,
    ...                      "value": [1.0, 0.0, 1.0], "weight": [1.0] * 3, "source": [""] * 3})
    >>> screen_documents([S(task="a", metric="acc"), S(task="b", metric="acc")], rows)["a/1"]
    (0.0, 0.5, 'a/1')
    """
    if samples is None or not len(samples):
        return {}
    chosen = {s.task: s.metric for s in scores if s.task == "wsm_heldout_bpb" and s.metric == "bits_per_byte"}
    if not chosen:
        for metric in reversed(ACCURACY):  # the first of ACCURACY wins, as in screen_value
            chosen.update({s.task: metric for s in scores if s.metric == metric})
    out = {}
    for task, metric in chosen.items():
        docs = samples[(samples["task"] == task) & (samples["metric"] == metric)]
        share = 1.0 / len(docs) if len(docs) else 0.0
        for doc, value, weight, source in zip(docs["doc_id"], docs["value"], docs["weight"], docs["source"]):
            key = f"{task}/{doc}"
            out[key] = (float(value), float(weight) if metric == "bits_per_byte" else share, source or key)
    return out


def run_screen(config: DictConfig, config_name: str | None = None) -> dict[str, Decision]:
    """Screen every job's merge variant and write ``screen.json`` (see the module docstring)."""
    from wsm_exp.evaluation import SuiteConfig, evaluate
    from wsm_exp.merging.identity import checkpoint_identity
    from wsm_exp.merging.series import load_series
    from wsm_exp.sweep.planning import hf_pairing
    from wsm_exp.sweep.planning.compose import launched_jobs
    from wsm_exp.sweep.planning.job_plan import plan_job
    from wsm_exp.sweep.planning.sources import make_source
    from wsm_exp.sweep.spec.schemas import ConfigError, MergeConfig, from_node, shard_size_bytes
    from wsm_exp.sweep.stage.merge_stage import series_on_disk
    from wsm_exp.sweep.planning.variant_model import variant_model

    started = time.perf_counter()
    screens: dict[str, tuple[float, float]] = {}
    documents: dict[str, dict[str, tuple[float, float, str]]] = {}
    higher = True
    baselines: set[str] = set()
    for cfg in launched_jobs(config, config_name, multirun=True):
        if OmegaConf.select(cfg, "sft") is not None:
            continue
        try:
            source = make_source(cfg)
            job = plan_job(cfg, source)
        except ConfigError:
            continue  # the pre-flight reported it
        baselines |= {b.name for b in job.baselines}
        variant = job.variant
        if variant.name in screens or variant.name in baselines:
            continue
        root = series_on_disk(source, variant.branch)
        if root is None:
            continue  # the job trains it and evaluates fully
        by_step = {c.step: c for c in load_series(root, tokens_per_step=source.tokens_per_step).checkpoints}
        if any(s not in by_step for s in variant.steps):
            continue  # the job reports the missing step
        checkpoints = [by_step[s] for s in variant.steps]
        suite = from_node(SuiteConfig, cfg.eval, key="eval")
        heldout = source.heldout()
        with variant_model(variant, checkpoints, tokens_per_step=source.tokens_per_step,
                           hf_config=hf_pairing.paired_config(source.hf_config, checkpoints),
                           merges=Path(cfg.paths.merges), keep=from_node(MergeConfig, cfg.merge, key="merge").keep,
                           shard_size_bytes=shard_size_bytes(cfg), identity=checkpoint_identity) as (model, key, _):
            evaluation = evaluate(model, suite.screen(heldout is not None), cache_dir=Path(cfg.paths.scores),
                                  extra_data={"heldout": heldout} if heldout else None, model_hash=key)
        value, se, higher = screen_value(evaluation.scores, evaluation.samples)
        screens[variant.name] = (value, se)
        documents[variant.name] = screen_documents(evaluation.scores, evaluation.samples)
        log.info("screened %s: %.4f ± %.4f", variant.name, value, se)
    screens = {n: v for n, v in screens.items() if n not in baselines}
    power = float(OmegaConf.select(config, "analysis.power", default=0.8))  # the report's power, where it states SDDs
    picked = select(screens, higher_is_better=higher, documents=documents, power=power)
    sweep_dir = Path(config.paths.sweep_dir)
    write_json_atomic(sweep_dir / RECORD, {"higher_is_better": higher,
                                           "seconds": round(time.perf_counter() - started, 2), "variants": {
        name: {"value": screens[name][0], "stderr": screens[name][1], "stage": d.stage, "reason": d.reason,
               "detectable": None if math.isnan(d.detectable) else d.detectable} for name, d in picked.items()}})
    return picked


def log_screen(config: DictConfig, config_name: str | None = None) -> None:
    """Run the screen when ``eval.staged`` is true; a failure is logged and every job evaluates fully."""
    if not OmegaConf.select(config, "eval.staged", default=False):
        return
    (Path(config.paths.sweep_dir) / RECORD).unlink(missing_ok=True)  # decisions of an earlier run do not carry over
    try:
        picked = run_screen(config, config_name)
    except Exception as err:  # noqa: BLE001 — without a screen the jobs evaluate fully (the unstaged sweep)
        log.warning("screen skipped (%s: %s); every variant gets the full suite", type(err).__name__, err)
        return
    full = sum(d.stage == "full" for d in picked.values())
    log.info("screen: %d of %d variants get the full suite", full, len(picked))


__all__ = ["Decision", "log_screen", "paired_se", "run_screen", "screen_documents", "screen_value",
           "select", "weighted_se"]
