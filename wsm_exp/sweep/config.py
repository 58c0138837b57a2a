"""Typed views of the runner's config groups (conf/merge, conf/series, conf/logger, baselines).

Hydra composes YAML; these dataclasses check it: an unknown or misspelt key fails with the
allowed keys listed. Each default carries its reason (mirrored as comments in conf/).

Example:
    >>> from_node(MergeConfig, {"curve": "1-sqrt", "quantity": 8}).curve
    '1-sqrt'
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

T = TypeVar("T")


class ConfigError(ValueError):
    """A config key or value that cannot work, found before any training, merging or evaluation."""


@dataclass(frozen=True)
class MergeConfig:
    """One merge variant: which window of the WSM series and which weights."""

    curve: str = "mean"  # the paper's default merge; mean ≡ a linear decay (REFERENCE §1)
    quantity: int | None = 4  # N checkpoints; 4 keeps merges cheap and is in the paper's range
    interval: int | None = None  # Δ in steps; None = the series' saved spacing
    duration: int | None = None  # D = N·Δ in steps; set with quantity or interval, not both
    end: int | None = None  # newest step of the window; None or ≤ 0: relative to the newest (-32 = 32 steps before)
    min_lr: float = 0.0  # emulated final LR fraction; 0 = decay to zero like the paper
    alpha: float | None = None  # EMA factor, only for curve=ema_alpha
    weights: list[float] | None = None  # explicit weights, oldest first; overrides curve
    dtype: str | None = None  # output dtype; None keeps the checkpoints' dtype
    accumulate: str = "float32"  # accumulation precision; float64 for bit-exact studies
    branch: str = "wsm"  # series the window comes from; "wsd_<shape>" merges inside a decay (decay-then-merge)
    # --- beyond the paper (docs/beyond.md, wsm_exp/sweep/beyond.py) ---
    extrapolate: float = 0.0  # α: θ_merge + α(θ_merge − θ_anchor), ExPO's move; 0 = the plain merge
    anchor: int | None = None  # step of the extrapolation anchor; None = the window's newest checkpoint
    normalize: bool = True  # false: explicit weights used as given (negative, any sum), with a warning
    order: str = "natural"  # natural | reverse | scramble: the curve's weights laid on the window as a control
    order_seed: int = 0  # seed of the scramble permutation
    branch_lr: float | None = None  # noise probe: the WSM branch's constant LR η; None = train.peak_lr
    branch_batch_size: int | None = None  # noise probe: batch size B in sequences; None = train.batch_size
    branch_weight_decay: float | None = None  # noise probe: AdamW λ; None = train.weight_decay
    branch_steps: int | None = None  # long decays: branch length = the matched WSD decay; None = train.branch_steps


@dataclass(frozen=True)
class SeriesConfig:
    """Where checkpoints come from: the embedded study (path unset) or the user's run."""

    path: str | None = None  # folder of step_<n> checkpoints; None = train the embedded study
    tokens_per_step: int | None = None  # tokens per optimizer step; overrides series.json
    branch_start: int | None = None  # step the branch starts at (tokens count from here); None = 0 / T_switch
    wsd: dict[str, str] | None = None  # decay shape -> folder of a WSD baseline run; None = no WSD baseline
    wsd_decay_steps: int | None = None  # decay length of those runs, for the results; None = branch_start to their end
    heldout: str | None = None  # jsonl of {"text": ...} held-out documents for wsm_heldout_bpb


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
    return cls(**data)  # type: ignore[call-arg]
