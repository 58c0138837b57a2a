"""The SFT sweep (paper Table 2): the same fine-tuning on the two bases of the comparison.

    bases (WSD decay end, best WSM merge) -> SFT (same items, order, steps, LR schedule, seed)
    -> epoch_<k>/ per base -> every epoch evaluated (lm-eval, cached) -> rows (kind "sft") -> W&B

Where the two bases come from, first match wins:

1. ``sft.runs={wsd: DIR, wsm: DIR}``: models fine-tuned elsewhere, each DIR holding ``epoch_<k>/``
   Hugging Face folders; they are evaluated, nothing is trained.
2. ``sft.bases={wsd: DIR, wsm: DIR}``: any two model folders, fine-tuned here.
3. The series of this seed (the embedded study, or ``series.path``): the WSD base is the last
   checkpoint of the ``wsd_<sft.wsd_shape>`` branch; the WSM base is the WSM merge with the lowest
   held-out bits per byte (the tiny suite's primary metric) among this seed's rows of
   ``<sft.select_from>/results.parquet`` (the main job's folder) when that folder holds the same
   study; otherwise the merge ``sft.fallback`` (curve, N, D) ending at the branch end.

Fine-tuned epochs are cached by content (base weights, recipe, items) under ``<paths.cache>/sft/``.

Example:
    >>> from wsm_exp.sweep.sft import SFTJobConfig
    >>> SFTJobConfig().wsd_shape
    '1-sqrt'
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from wsm_exp.keys import content_key
from wsm_exp.sweep import folder, results, tracking
from wsm_exp.sweep.config import ConfigError, LoggerConfig, from_node
from wsm_exp.sweep.variants import Variant, merge_variant, sft_variant, wsd_variant

log = logging.getLogger(__name__)
ROLES = ("wsd", "wsm")  # the two rows of Table 2


@dataclass(frozen=True)
class SFTJobConfig:
    """The ``sft`` config group (conf/sft/tiny.yaml); see the module docstring for the bases."""

    recipe: dict[str, Any] = field(default_factory=dict)  # wsm_exp.study.sft_train.SFTConfig fields
    data_seed: int | None = None  # seed of the SFT items and their order; None = the run's seed
    bases: dict[str, str] | None = None  # {wsd: DIR, wsm: DIR} to fine-tune; None = the series' own
    runs: dict[str, str] | None = None  # {wsd: DIR, wsm: DIR} of epoch_<k> folders: evaluate only
    wsd_shape: str = "1-sqrt"  # the WSD base: the end of this decay branch
    select_from: str | None = None  # sweep folder whose results pick the WSM merge (the main job's)
    fallback: dict[str, Any] = field(default_factory=lambda: {"curve": "mean", "quantity": 4, "duration": 64})  # without usable results there: the duration sweep's best tiny design
    eval_bases: bool = True  # evaluate each base before SFT as epoch 0


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


def resolve_bases(cfg: DictConfig, job: SFTJobConfig, source, seed: int) -> list[Base]:
    """The two bases (training the series and merging on demand for the default)."""
    if job.runs:
        return [Base(role, _user_variant(role, seed),
                     Path(job.bases[role]) if job.bases else None, _epochs(Path(job.runs[role])))
                for role in ROLES]
    if job.bases:
        return [Base(role, _user_variant(role, seed), Path(job.bases[role])) for role in ROLES]
    from wsm_exp.merging.series import load_series

    branch = f"wsd_{job.wsd_shape}"
    if job.wsd_shape not in source.wsd_shapes:
        raise ConfigError(f"sft.wsd_shape={job.wsd_shape!r}: no such WSD branch; allowed: {list(source.wsd_shapes)}.")
    paths = source.ensure(["wsm", branch])
    wsd_end = load_series(paths[branch]).checkpoints[-1]
    wsd = Base("wsd", wsd_variant(shape=job.wsd_shape, step=wsd_end.step, seed=seed,
                                  decay_steps=source.wsd_decay_steps(wsd_end.step), min_lr=source.decay_min_lr),
               wsd_end.path)
    wsm_series = load_series(paths["wsm"])
    variant = _best_merge(job, source, seed) or _fallback_merge(job, wsm_series, seed)
    return [wsd, Base("wsm", variant, _merged(cfg, wsm_series, variant))]


def _user_variant(role: str, seed: int) -> Variant:
    return Variant(name=f"user-{role}-s{seed}", kind="user", branch=role, curve="none", steps=(0,),
                   weights=(1.0,), seed=seed)


def _epochs(path: Path) -> dict[int, Path]:
    from wsm_exp.study.sft_train import epoch_folders

    return {e: p for e, p in epoch_folders(path).items() if e >= 1}


def _best_merge(job: SFTJobConfig, source, seed: int) -> Variant | None:
    """The WSM merge with the lowest held-out bpb in the main job's results (same study, this seed)."""
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
    rows = frame[(frame["kind"] == "wsm") & (frame["seed"] == seed) & (frame["status"] == "ok")
                 & (frame["task"] == "wsm_heldout_bpb") & (frame["metric"] == "bits_per_byte")]
    if rows.empty:
        log.info("SFT: no held-out bpb of a seed-%d merge in %s; using the fallback merge", seed, root)
        return None
    best = rows.sort_values(["value", "variant"]).iloc[0]
    log.info("SFT: WSM base = %s (held-out bpb %.4f, lowest of %d merges in %s)", best["variant"], best["value"],
             len(rows), root)
    return Variant(name=str(best["variant"]), kind="wsm", branch="wsm", curve=str(best["curve"]),
                   steps=tuple(json.loads(best["steps"])), weights=tuple(json.loads(best["weights"])),
                   interval=int(best["interval_steps"]), duration=int(best["duration_steps"]),
                   min_lr=float(best["min_lr"]), seed=seed)


def _fallback_merge(job: SFTJobConfig, series, seed: int) -> Variant:
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


def _merged(cfg: DictConfig, series, variant: Variant) -> Path:
    """The merge's folder in the shared merge cache (the main job's, when it made it already)."""
    from wsm_exp.merging.cache import merge_or_reuse
    from wsm_exp.merging.plan import build_plan

    by_step = {c.step: c for c in series.checkpoints}
    plan = build_plan([by_step[s] for s in variant.steps], curve=variant.curve)
    return merge_or_reuse(plan, Path(cfg.paths.merges)).out_dir


def finetuned(base: Base, items, recipe, *, seed: int, cache: Path, logger=None) -> dict[int, Path]:
    """{epoch: folder} of the SFT of ``base`` (trained once per base × recipe × items, under a lock)."""
    from wsm_exp.evaluation import model_identity
    from wsm_exp.study.sft_train import finetune

    if base.epochs:
        return base.epochs
    items_hash = hashlib.sha256(json.dumps([[i.prompt, i.answer] for i in items]).encode()).hexdigest()
    key = hashlib.sha256(json.dumps({"base": model_identity(base.path), "recipe": asdict(recipe),
                                     "items": items_hash, "seed": seed, "version": 1}, sort_keys=True)
                         .encode()).hexdigest()[:16]
    out = cache / key
    out.mkdir(parents=True, exist_ok=True)
    with open(cache / f".{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return finetune(base.path, out, items, recipe, seed=seed, desc=f"sft-{base.role}", logger=logger)


def run_sft_job(cfg: DictConfig) -> list[str]:
    """Fine-tune both bases (or take their given epochs), evaluate every epoch; return failed variants."""
    from wsm_exp.evaluation import SuiteConfig
    from wsm_exp.study.sft_data import training_items
    from wsm_exp.sweep.job import sweep_paths
    from wsm_exp.sweep.sources import make_source

    job, recipe = check_sft(cfg)
    sweep, sweep_dir = sweep_paths(cfg)
    seed = int(cfg.seed)
    data_seed = seed if job.data_seed is None else job.data_seed
    logger_cfg = from_node(LoggerConfig, cfg.logger, key="logger")
    train_log = tracking.LazyRun(logger_cfg, sweep_dir, sweep, name=f"train-s{seed}", job_type="train")
    source = make_source(cfg, logger=train_log.log)
    suite = from_node(SuiteConfig, cfg.eval, key="eval")
    evaluator = _Evaluator(sweep, sweep_dir, logger_cfg, suite, OmegaConf.to_container(cfg.eval, resolve=True),
                           Path(cfg.paths.scores), source)
    setup = Variant(name=f"sft-bases-s{seed}", kind="sft", branch="sft", curve="none", steps=(0,),
                    weights=(1.0,), seed=seed)
    try:
        key, payload = folder.identity(source.identity(), evaluator.eval_identity)
        folder.check(sweep_dir, key)
        folder.claim(sweep_dir, key, payload)
        bases = resolve_bases(cfg, job, source, seed)
        items = [] if job.runs else training_items(recipe.items_per_skill, data_seed)
    except Exception as err:  # noqa: BLE001 — recorded as a failed row; the other seeds go on
        evaluator.record_failure(setup, 0, err)
        return [setup.name]
    finally:
        train_log.finish()
    results.job_file(sweep_dir, setup.name).unlink(missing_ok=True)  # a failure of an earlier try is gone
    failed = []
    for base in bases:
        sft_log = tracking.LazyRun(logger_cfg, sweep_dir, sweep, name=f"sft-train-{base.role}-s{seed}",
                                   job_type="train")  # one run per base: each logs steps from 1
        try:
            epochs = finetuned(base, items, recipe, seed=data_seed, cache=Path(cfg.paths.cache) / "sft",
                               logger=sft_log.log)
        except Exception as err:  # noqa: BLE001 — the base's first epoch carries the failure
            first = sft_variant(base=base.variant, role=base.role, epoch=1)
            evaluator.record_failure(first, 1, err)
            failed.append(first.name)
            continue
        finally:
            sft_log.finish()
        models = ({0: base.path} if job.eval_bases and base.path else {}) | epochs
        for epoch, path in models.items():
            variant = sft_variant(base=base.variant, role=base.role, epoch=epoch)
            if not evaluator.evaluate(variant, epoch, path):
                failed.append(variant.name)
    return failed


class _Evaluator:
    """Evaluates one SFT model per call and records its rows (skipped when finished with the same model)."""

    def __init__(self, sweep, sweep_dir, logger_cfg, suite, eval_identity, scores: Path, source):
        self.sweep, self.sweep_dir, self.logger_cfg = sweep, Path(sweep_dir), logger_cfg
        self.suite, self.eval_identity, self.scores, self.source = suite, eval_identity, scores, source

    def _fields(self, variant: Variant, epoch: int) -> dict[str, Any]:
        fields = variant.row_fields(tokens_per_step=self.source.tokens_per_step,
                                    branch_start=self.source.branch_start, branch_steps=self.source.branch_steps)
        return {**fields, "epoch": epoch, "sweep": self.sweep, "sweep_dir": str(self.sweep_dir)}

    def evaluate(self, variant: Variant, epoch: int, path: Path) -> bool:
        from wsm_exp.evaluation import evaluate_model, model_identity
        from wsm_exp.sweep.job import _variant_lock

        with _variant_lock(self.sweep_dir, variant.name):
            try:
                model_hash = model_identity(path)
                fingerprint = content_key({"eval": self.eval_identity, "variant": asdict(variant),
                                           "model": model_hash}, length=20)
                if results.finished_job(self.sweep_dir, variant.name, fingerprint):
                    return True
                heldout = self.source.heldout() if "wsm_heldout_bpb" in self.suite.tasks else None
                scores = evaluate_model(path, self.suite, cache_dir=self.scores, model_hash=model_hash,
                                        extra_data={"heldout": heldout} if heldout else None)
                rows = [results.make_row(
                    **self._fields(variant, epoch), model_hash=model_hash, task=s.task, category=s.category,
                    metric=s.metric, value=float(s.value), stderr=float(s.stderr),
                    higher_is_better=bool(s.higher_is_better), eval_seconds=0.0 if s.from_cache else s.seconds,
                    harness_version=s.harness_version, task_version=s.task_version, task_hash=s.task_hash)
                    for s in scores]
                tracking.log_variant(self.logger_cfg, self.sweep_dir, self.sweep, variant, rows)
            except Exception as err:  # noqa: BLE001 — a failed row; a rerun retries it
                self.record_failure(variant, epoch, err)
                return False
            results.write_job(self.sweep_dir, variant.name, fingerprint, rows)
            return True

    def record_failure(self, variant: Variant, epoch: int, err: BaseException) -> None:
        message = f"{type(err).__name__}: {err}"
        log.error("variant %s failed: %s\n%s", variant.name, message, traceback.format_exc())
        row = results.make_row(**self._fields(variant, epoch), status="failed", error=message)
        results.write_job(self.sweep_dir, variant.name, "failed", [row])
