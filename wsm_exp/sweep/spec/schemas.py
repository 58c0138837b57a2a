"""Typed schemas of the whole config: every default and its reason lives here, once.

``register_schemas()`` stores these dataclasses (and the study's and eval suite's) in Hydra's
ConfigStore as ``schema/<group>``; each YAML file under conf/ extends its group's schema and lists
only what differs. So Hydra itself refuses an unknown key or a wrong type while composing, in
single runs and sweeps alike, naming the key. ``from_node`` builds the frozen dataclass a job uses.

Example:
    >>> from_node(MergeConfig, {"curve": "1-sqrt", "quantity": 8}).curve
    '1-sqrt'
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from omegaconf import MISSING, DictConfig, OmegaConf

T = TypeVar("T")


class ConfigError(ValueError):
    """A config key or value that cannot work, found before any training, merging or evaluation."""


@dataclass(frozen=True)
class MergeFitConfig:
    """``merge.fit.*``: how ``merge.curve=fitted`` fits the window's weights (``wsm_exp.merging.fit.FitConfig``)."""

    steps: int = 6  # a handful: each step costs one forward/backward plus two streaming passes over the window
    lr: float = 0.1  # largest change of one weight in the first step (projected), or of its log (mirror)
    method: str = "projected"  # projected handles the monotone constraint; mirror keeps every weight > 0
    monotone: bool = False  # true: weights non-increasing oldest→newest (a convex decay, like 1-sqrt); false: any simplex point
    tol: float = 1e-4  # an accepted step gaining less than this (nats/token) ends the fit: the curve is flat; 0: every step
    init: str = "linear"  # starting curve: the uniform mean, the paper's default merge
    fit_fraction: float = 0.5  # share of held-out documents the fit sees; the rest is the test split
    seed: int = 0  # seeds the fit/test split (fixed across training seeds: every seed is judged on the same text)
    seq_len: int = 256  # tokens per sequence of the fit loss (within the tiny study's trained context)
    batch_sequences: int = 8  # sequences per forward/backward: memory against time
    dtype: str = "float32"  # the fitted model's dtype; float64 only for exact gradient checks
    device: str = "cpu"  # where the model runs during the fit (cuda on a GPU machine); not in the fit's key
    score_on: str = "all"  # held-out documents every variant is scored on: all, or test (the split's test half; required with curve=fitted)


@dataclass(frozen=True)
class MergeConfig:
    """One merge variant: which window of the WSM series and which weights."""

    curve: str = "mean"  # the paper's default merge; mean ≡ a linear decay (REFERENCE §1)
    quantity: int | None = 4  # N checkpoints; 4 is cheap and in the paper's range; null when D and Δ fix it
    interval: int | None = None  # Δ in steps; None = the series' saved spacing
    duration: int | None = None  # D = N·Δ in steps; set with quantity or interval, not both
    end: int | None = None  # newest step of the window; None or ≤ 0: relative to the newest (-32 = 32 steps before)
    min_lr: float = 0.0  # emulated final LR fraction; 0 = decay to zero like the paper
    alpha: float | None = None  # EMA factor, only for curve=ema_alpha
    weights: list[float] | None = None  # explicit weights, oldest first; overrides curve
    dtype: str | None = None  # output dtype; None keeps the checkpoints' dtype
    accumulate: str = "float32"  # accumulation precision; float64 for bit-exact studies
    branch: str = "wsm"  # series the window comes from; "wsd_<shape>" merges inside a decay (decay-then-merge)
    # --- beyond the paper (docs/beyond.md, wsm_exp/sweep/planning/beyond_plan.py) ---
    extrapolate: float = 0.0  # α: θ_merge + α(θ_merge − θ_anchor), ExPO's move; 0 = the plain merge
    anchor: int | None = None  # step of the extrapolation anchor; None = the window's newest checkpoint
    normalize: bool = True  # false: explicit weights used as given (negative, any sum), with a warning
    order: str = "natural"  # natural | reverse | scramble: the curve's weights laid on the window as a control
    order_seed: int = 0  # seed of the scramble permutation
    branch_lr: float | None = None  # noise probe: the WSM branch's constant LR η; None = train.peak_lr
    branch_batch_size: int | None = None  # noise probe: batch size B in sequences; None = train.batch_size
    branch_weight_decay: float | None = None  # noise probe: AdamW λ; None = train.weight_decay
    branch_steps: int | None = None  # long decays: branch length = the matched WSD decay; None = train.branch_steps
    fit: MergeFitConfig = field(default_factory=MergeFitConfig)  # curve=fitted: the fit's settings (docs/beyond.md §5)
    # --- cost (docs/evaluation.md "Cost") ---
    keep: bool = True  # false: evaluate the merge from memory, never write it (same score key); true keeps it on disk


@dataclass(frozen=True)
class SeriesConfig:
    """Where checkpoints come from: the embedded study (path unset) or the user's run."""

    path: str | None = None  # folder of step_<n> checkpoints; None = train the embedded study
    tokens_per_step: int | None = None  # tokens per optimizer step; overrides series.json
    branch_start: int | None = None  # step your constant-LR branch starts at (tokens count from here); None = 0
    wsd: dict[str, str] = field(default_factory=dict)  # WSD baseline runs by shape: 'series.wsd={1-sqrt:/ckpts/wsd}'
    wsd_decay_steps: int | None = None  # decay length of those runs, for the results; None = branch_start to their end
    heldout: str | None = None  # jsonl of {"text": ...} held-out documents for wsm_heldout_bpb
    hf_config: str | None = None  # DCP series: folder of the HF config.json + tokenizer its merges are evaluated with


@dataclass(frozen=True)
class BaselinesConfig:
    """Reference models evaluated once per sweep beside the merges."""

    wsd_shapes: list[str] = field(default_factory=lambda: ["1-sqrt"])  # the paper's WSD baseline shape
    raw_last: bool = True  # the newest WSM checkpoint unmerged: what merging must beat
    matched_tokens: bool = True  # WSD/raw checkpoints at each variant's end step (fair token budget)
    fidelity: bool = False  # a real decay over each variant's last D steps (Figure 5a)
    merge_then_decay: bool = False  # a real decay over D steps from the merge vs from its newest checkpoint (Figure 5c)


@dataclass(frozen=True)
class LoggerConfig:
    """Experiment tracking."""

    kind: str = "wandb"  # "wandb" (offline files under the sweep folder) or "none"
    project: str = "wsm-exp"  # W&B project the runs belong to when synced later
    entity: str | None = None  # W&B entity for a later `wandb sync`
    tags: list[str] = field(default_factory=list)  # extra tags on every run


@dataclass(frozen=True)
class SFTJobConfig:
    """The ``sft`` config group (conf/sft/tiny.yaml): the SFT sweep's bases and recipe (``planning.sft_plan``)."""

    recipe: dict[str, Any] = field(default_factory=dict)  # wsm_exp.study.sft_train.SFTConfig fields
    data_seed: int | None = None  # seed of the SFT items and their order; None = the run's seed
    bases: dict[str, str] | None = None  # {wsd: DIR, wsm: DIR} to fine-tune; None = the series' own
    runs: dict[str, str] | None = None  # {wsd: DIR, wsm: DIR} of epoch_<k> folders: evaluate only
    wsd_shape: str = "1-sqrt"  # the WSD base: the end of this decay branch
    select_from: str | None = None  # sweep folder whose results pick the WSM merge (the main job's)
    fallback: dict[str, Any] = field(default_factory=lambda: {"curve": "mean", "quantity": 4, "duration": 64})  # without usable results there: the duration sweep's best tiny design
    eval_bases: bool = True  # evaluate each base before SFT as epoch 0


@dataclass(frozen=True)
class AnalysisConfig:
    """Margins and cut-offs of the report's verdicts (analysis.rules.Thresholds; docs/analysis.md)."""

    margin_overall: float = 0.5  # "≥"/"no gain" equivalence margin, Overall points: the paper's such gaps are ≤ ~0.3
    margin_bpb: float = 0.005  # the same on bits per byte: a tenth of the ~0.05 bpb merges gain on the tiny study
    r2_collapse: float = 0.8  # one noise scale "governs" the merge gain when its quadratic explains this share (adj. R²)
    power: float = 0.8  # the power at which the smallest detectable difference is stated (the usual 80%)


@dataclass(frozen=True)
class PathsConfig:
    """Where sweeps and the content-keyed cache live."""

    sweeps: str = "${cwd:}/sweeps"  # the local experiment store, under the launch folder (untracked)
    cache: str = "${paths.sweeps}/_cache"  # content-keyed store shared by all sweeps
    studies: str = "${paths.cache}/studies"  # trained series of the embedded study (by training config + seed)
    merges: str = "${paths.cache}/merges"  # merged models (by checkpoint identities + weights + dtype)
    fits: str = "${paths.cache}/fits"  # fitted merge weights (by inputs + held-out split + fit settings) and test splits
    scores: str = "${paths.cache}/scores"  # eval scores (by model hash + task config + harness version)
    sweep_dir: str = "${paths.sweeps}/${sweep_name}"  # results.parquet, report.md, figures/, wandb/, jobs/


@dataclass(frozen=True)
class RunConfig:
    """The whole config: one job = one merge variant plus its baselines (groups typed by their own schema)."""

    series: Any = MISSING  # conf/series: where the checkpoints come from (SeriesConfig)
    model: Any = MISSING  # conf/model: the embedded study's model (ModelConfig)
    data: Any = MISSING  # conf/data: the embedded study's corpora (DataConfig)
    train: Any = MISSING  # conf/train: the embedded study's schedule (TrainConfig)
    merge: Any = MISSING  # conf/merge: the merge variant (MergeConfig)
    eval: Any = MISSING  # conf/eval: the lm-eval suite (SuiteConfig)
    logger: Any = MISSING  # conf/logger: experiment tracking (LoggerConfig)
    sft: Any = None  # conf/sft: the SFT stage, set by the sft sweep only (SFTJobConfig, checked at plan time)
    sweep_name: str = "single"  # folder under paths.sweeps; every sweep file sets its own
    seed: int = 0  # training seed of the embedded series; sweep it with seed=0,1,2
    plan: bool = False  # true: print what the command would train, merge and evaluate, then stop
    plan_probe: bool = True  # a plan without past timings of the model's size times it here; false off the run's machine
    merge_stage: bool = True  # before a sweep's jobs, every merge they need in one pass (each checkpoint read once)
    merge_stage_tasks: int = 0  # P ≥ 2: the stage in P parts by output shard (Slurm array or processes); 0 = one
    merge_shard_mib: float = 2048.0  # merged models' shard size (MiB): bounded memory, a few shards for 7B to split
    baselines: BaselinesConfig = field(default_factory=BaselinesConfig)  # reference models beside the merges
    paths: PathsConfig = field(default_factory=PathsConfig)  # sweep folders and the shared cache
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)  # the report's verdict margins and cut-offs


def schemas() -> dict[str, type]:
    """Every schema by its ConfigStore name under ``schema/`` (the groups' and the root's ``run``)."""
    from wsm_exp.evaluation.suites import SuiteConfig
    from wsm_exp.study.config import DataConfig, ModelConfig, TrainConfig

    return {"run": RunConfig, "series": SeriesConfig, "model": ModelConfig, "data": DataConfig,
            "train": TrainConfig, "merge": MergeConfig, "eval": SuiteConfig, "logger": LoggerConfig}


def register_schemas() -> None:
    """Store every schema in Hydra's ConfigStore as ``schema/<name>``; conf/ files extend them.

    >>> register_schemas()
    >>> from hydra.core.config_store import ConfigStore
    >>> "model.yaml" in ConfigStore.instance().list("schema")
    True
    """
    from hydra.core.config_store import ConfigStore

    OmegaConf.register_new_resolver("cwd", os.getcwd, replace=True)  # ${cwd:} in PathsConfig: the launch folder
    store = ConfigStore.instance()
    for name, cls in schemas().items():
        node = OmegaConf.structured(cls)
        _open_for_overrides(node, cls)
        store.store(group="schema", name=name, node=node)


def _open_for_overrides(node: DictConfig, cls: type) -> None:
    """Frozen dataclasses are for jobs: let overrides merge in, and let maps (eval.limits, series.wsd)
    take new keys, so ``eval.limits={wsm_mmlu:20}`` and ``eval.limits.wsm_mmlu=20`` both work."""
    OmegaConf.set_readonly(node, None)
    for name, hint in typing.get_type_hints(cls).items():
        if OmegaConf.is_missing(node, name):
            continue
        if dataclasses.is_dataclass(hint):
            _open_for_overrides(node[name], hint)
        elif isinstance(node[name], DictConfig):
            OmegaConf.set_struct(node[name], False)


def shard_size_bytes(cfg: DictConfig) -> int:
    """``merge_shard_mib`` in bytes: the shard size of every merge a sweep writes (stage and jobs alike).

    >>> shard_size_bytes(OmegaConf.create({"merge_shard_mib": 0.5}))
    524288
    """
    mib = float(cfg.get("merge_shard_mib", RunConfig.merge_shard_mib))
    if not mib > 0:
        raise ConfigError(f"merge_shard_mib={mib:g}: a shard size must be a positive number of MiB (default "
                          f"{RunConfig.merge_shard_mib:g}; e.g. merge_shard_mib=512 for more shards to split).")
    return max(1, int(mib * 1024**2))


def from_node(cls: type[T], node: DictConfig | dict[str, Any] | None, *, key: str = "") -> T:
    """Build a config dataclass from a Hydra node, naming unknown keys and the allowed ones.

    >>> from_node(LoggerConfig, {"kind": "none"}).kind
    'none'
    """
    data = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node or {})
    allowed = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - allowed)
    if unknown:
        where = f"{key}." if key else ""
        raise ConfigError(
            f"Unknown config key(s) {', '.join(where + k for k in unknown)}. Allowed under "
            f"{key or cls.__name__}: {', '.join(sorted(allowed))}. Fix the spelling of the override."
        )
    hints = typing.get_type_hints(cls)
    for name, value in data.items():  # nested schemas (merge.fit) as their own dataclass, keys named in full
        if dataclasses.is_dataclass(hints.get(name)) and isinstance(value, dict):
            data[name] = from_node(hints[name], value, key=f"{key}.{name}" if key else name)
    return cls(**data)  # type: ignore[call-arg]
