"""Where the SFT job's two bases come from, and its keys checked: decided before any training.

The SFT sweep (paper Table 2) fine-tunes the same way the two bases of the comparison; the first
match wins:

1. ``sft.runs={wsd: DIR, wsm: DIR}``: models fine-tuned elsewhere, each DIR holding ``epoch_<k>/``
   Hugging Face folders; they are evaluated, nothing is trained.
2. ``sft.bases={wsd: DIR, wsm: DIR}``: any two model folders, fine-tuned here.
3. The series of this seed (the embedded study, or ``series.path``): the WSD base is the last
   checkpoint of the ``wsd_<sft.wsd_shape>`` branch; the WSM base is the WSM merge with the lowest
   held-out bits per byte (the tiny suite's primary metric) among this seed's rows of
   ``<sft.select_from>/results.parquet`` (the main job's folder) when that folder holds the same
   study; otherwise the merge ``sft.fallback`` (curve, N, D) ending at the branch end.

The job that trains and evaluates them is ``run.sft_job``.

Example:
    >>> user_variant("wsd", 0).name
    'user-wsd-s0'
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

from wsm_exp.sweep.record import folder
from wsm_exp.sweep.spec.schemas import ConfigError, SFTJobConfig, from_node
from wsm_exp.sweep.spec.variants import Variant, merge_variant

log = logging.getLogger(__name__)
ROLES = ("wsd", "wsm")  # the two rows of Table 2


@dataclass
class Base:
    """One side of the comparison: its model folder (None for runs given as epochs) and description."""

    role: str
    variant: Variant  # the base model as the other sweeps name it (wsd-…, wsm-…, or user-…)
    path: Path | None = None
    epochs: dict[int, Path] = field(default_factory=dict)  # given fine-tuned epochs (sft.runs)


def check_sft(cfg: DictConfig):
    """(job config, recipe) with every key checked; ConfigError naming the key otherwise."""
    from wsm_exp.study.schedules import SHAPES
    from wsm_exp.study.sft_train import SFTConfig, epoch_folders

    job = from_node(SFTJobConfig, cfg.sft, key="sft")
    recipe = from_node(SFTConfig, job.recipe, key="sft.recipe")
    if recipe.epochs < 1 or recipe.items_per_skill < 1 or recipe.batch_size < 1:
        raise ConfigError("sft.recipe.epochs, items_per_skill and batch_size must be ≥ 1.")
    if recipe.decay_shape not in SHAPES:
        raise ConfigError(f"sft.recipe.decay_shape={recipe.decay_shape!r}; allowed: {', '.join(SHAPES)}.")
    for key in ("bases", "runs"):
        given = getattr(job, key)
        if given is None:
            continue
        if sorted(given) != sorted(ROLES):
            raise ConfigError(f"sft.{key} must name exactly the two bases {list(ROLES)} (got {sorted(given)}), "
                              f"e.g. 'sft.{key}={{wsd:/path/a,wsm:/path/b}}'.")
        for role, path in given.items():
            if not Path(path).is_dir():
                raise ConfigError(f"sft.{key}.{role}={path!r} is not a folder.")
            if key == "runs" and not epoch_folders(Path(path)):
                raise ConfigError(f"sft.runs.{role}={path!r} holds no epoch_<k> model folders (children named "
                                  "epoch_1, epoch_2, …, each a Hugging Face folder with config.json).")
            if key == "bases" and not (Path(path) / "config.json").is_file():
                raise ConfigError(f"sft.bases.{role}={path!r} is not a Hugging Face model folder (no config.json).")
    return job, recipe


def user_variant(role: str, seed: int) -> Variant:
    return Variant(name=f"user-{role}-s{seed}", kind="user", branch=role, curve="none", steps=(0,),
                   weights=(1.0,), seed=seed)


def given_epochs(path: Path) -> dict[int, Path]:
    from wsm_exp.study.sft_train import epoch_folders

    return {e: p for e, p in epoch_folders(path).items() if e >= 1}


def best_merge(job: SFTJobConfig, source, seed: int) -> Variant | None:
    """The plain WSM merge (N ≥ 2, the curve's own order, no extrapolation) with the lowest held-out bpb in the
    main job's results (same study, this seed): controls and extrapolations are not the recipe under test."""
    import pandas as pd

    root = Path(job.select_from) if job.select_from else None
    if root is None or not (root / "results.parquet").is_file() or not (root / folder.RECORD).is_file():
        log.info("SFT: no results in %s; the WSM base is the fallback merge %s", root, job.fallback)
        return None
    mine = json.loads(json.dumps({k: v for k, v in source.identity().items() if k != "seed"}, default=str))
    if json.loads((root / folder.RECORD).read_text()).get("source") != mine:
        log.warning("SFT: %s holds another study; the WSM base is the fallback merge %s", root, job.fallback)
        return None
    frame = pd.read_parquet(root / "results.parquet")
    plain = ((frame["quantity"] >= 2) & (frame["extrapolate"].fillna(0.0) == 0.0)
             & (frame["merge_order"].fillna("natural").isin(["natural", ""])))
    rows = frame[(frame["kind"] == "wsm") & (frame["seed"] == seed) & (frame["status"] == "ok") & plain
                 & (frame["task"] == "wsm_heldout_bpb") & (frame["metric"] == "bits_per_byte")]
    if rows.empty:
        log.info("SFT: no held-out bpb of a plain seed-%d merge (N >= 2, natural order, no extrapolation) in %s; "
                 "using the fallback merge", seed, root)
        return None
    best = rows.sort_values(["value", "variant"]).iloc[0]
    log.info("SFT: WSM base = %s (held-out bpb %.4f, lowest of %d merges in %s)", best["variant"], best["value"],
             len(rows), root)
    return Variant(name=str(best["variant"]), kind="wsm", branch="wsm", curve=str(best["curve"]),
                   steps=tuple(json.loads(best["steps"])), weights=tuple(json.loads(best["weights"])),
                   interval=int(best["interval_steps"]), duration=int(best["duration_steps"]),
                   min_lr=float(best["min_lr"]), seed=seed)


def fallback_merge(job: SFTJobConfig, series, seed: int) -> Variant:
    from wsm_exp.merging.series import SeriesError, select_window
    from wsm_exp.merging.weights import WeightsError, merge_weights

    spec = dict(job.fallback)
    try:
        curve = spec.pop("curve")
        window = select_window(series, **spec)
        weights = merge_weights(curve, window.quantity)
    except (KeyError, TypeError, SeriesError, WeightsError) as err:
        raise ConfigError(f"sft.fallback={job.fallback}: {err} (give curve plus quantity/interval/duration).") from None
    return merge_variant(curve=curve, steps=[c.step for c in window.checkpoints], weights=weights,
                         interval=window.interval, duration=window.duration, seed=seed)
