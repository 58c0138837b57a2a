"""Where a sweep's checkpoint series come from: the embedded tiny study, or the user's own run.

Both answer the same questions: which WSM steps will exist (for checking a sweep before any
work), where each branch's series folder is (training it if needed), tokens per step, where the
branch starts, and which held-out text the loss task reads.

Example:
    >>> src = UserSource(SeriesConfig(path="/ckpts/run", tokens_per_step=4096, wsd={"1-sqrt": "/ckpts/wsd"}))
    >>> src.branch_start, sorted(src.wsd_shapes)
    (0, ['1-sqrt'])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from omegaconf import DictConfig

from wsm_exp.sweep.spec.schemas import ConfigError, SeriesConfig


class SeriesSource(Protocol):
    """What the runner asks of a source of checkpoint series (the embedded study or a user's run)."""

    trains_branches: bool  # can train real decays on demand (fidelity, merge-then-decay)
    has_heldout: bool  # held-out text exists for the loss task (answered without building anything)
    tokens_per_step: int
    branch_start: int  # step the branch starts at; tokens count from here
    branch_steps: int  # branch length in steps: the WSD token budget
    wsd_shapes: Sequence[str]  # decay shapes with a WSD baseline series
    decay_min_lr: float  # final LR fraction of the WSD decays
    decay_shape: str  # shape of the decays the study trains for fidelity / merge-then-decay
    hf_config: Path | None  # Hugging Face config + tokenizer for DCP series (wsm_exp.sweep.planning.hf_pairing)

    def planned_wsm_steps(self) -> list[int]: ...

    def planned_steps(self, branch: str) -> list[int]: ...

    def wsd_decay_steps(self, wsd_end: int) -> int: ...

    def ensure(self, branches: Sequence[str]) -> dict[str, Path]: ...

    def heldout(self) -> Path | None: ...

    def identity(self) -> dict[str, Any]: ...


@dataclass
class EmbeddedSource:
    """The embedded study: trained on demand (once, under a lock) into the shared cache."""

    model_cfg: Any
    data_cfg: Any
    train_cfg: Any
    seed: int
    cache_root: Path
    logger: Callable[[dict, int], None] | None = None
    trains_branches = True
    has_heldout = True  # the study holds out Wikipedia articles
    hf_config = None  # the study writes Hugging Face folders

    @classmethod
    def from_cfg(cls, cfg: DictConfig, logger=None) -> "EmbeddedSource":
        from wsm_exp.study import DataConfig, ModelConfig, TrainConfig
        from wsm_exp.sweep.spec.schemas import from_node

        return cls(from_node(ModelConfig, cfg.model, key="model"), from_node(DataConfig, cfg.data, key="data"),
                   from_node(TrainConfig, cfg.train, key="train"), int(cfg.seed), Path(cfg.paths.studies), logger)

    @property
    def tokens_per_step(self) -> int:
        return int(self.train_cfg.tokens_per_step)

    @property
    def branch_start(self) -> int:
        return int(self.train_cfg.switch_step)

    @property
    def branch_steps(self) -> int:
        return int(self.train_cfg.branch_steps)

    @property
    def wsd_shapes(self) -> Sequence[str]:
        from wsm_exp.study.schedules import SHAPES

        return SHAPES

    @property
    def decay_min_lr(self) -> float:
        return float(self.train_cfg.min_lr_ratio)

    @property
    def decay_shape(self) -> str:
        return str(self.train_cfg.decay_shape)

    def planned_wsm_steps(self) -> list[int]:
        """The WSM checkpoints the trainer will save (branch start excluded: conservative)."""
        every, start = int(self.train_cfg.save_every), self.branch_start
        return [start + k * every for k in range(1, self.branch_steps // every + 1)]

    def planned_steps(self, branch: str) -> list[int]:
        """Checkpoints of a WSD branch: saved at the same steps as the WSM branch (a probe: over its own length)."""
        from wsm_exp.study.branch_spec import Probe, parse_branch

        spec = parse_branch(branch)
        if isinstance(spec, Probe):
            every, start = int(self.train_cfg.save_every), self.branch_start
            return [start + k * every for k in range(1, spec.steps // every + 1)]
        return self.planned_wsm_steps()

    def wsd_decay_steps(self, wsd_end: int) -> int:
        """Length of the WSD decay: the whole branch."""
        return self.branch_steps

    def ensure(self, branches: Sequence[str]) -> dict[str, Path]:
        from wsm_exp.study import ensure_branches

        return ensure_branches(self.model_cfg, self.data_cfg, self.train_cfg, seed=self.seed,
                               cache_root=self.cache_root, branches=list(branches), logger=self.logger)

    def heldout(self) -> Path | None:
        from wsm_exp.study import heldout_path

        return heldout_path(self.data_cfg, self.cache_root)

    def identity(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {"model": asdict(self.model_cfg), "data": asdict(self.data_cfg),
                "train": asdict(self.train_cfg), "seed": self.seed}


@dataclass
class UserSource:
    """A user's own run: a WSM (constant-LR) series plus WSD baseline series, all by path."""

    cfg: SeriesConfig
    seed: int = 0
    _series: dict[str, Any] = field(default_factory=dict)

    @property
    def wsd(self) -> dict[str, str]:
        return dict(self.cfg.wsd or {})

    @property
    def tokens_per_step(self) -> int:
        tokens = self.cfg.tokens_per_step or self.series_of("wsm").tokens_per_step
        if not tokens:
            raise ConfigError(
                f"series.tokens_per_step: unknown for {self.cfg.path} (no series.json with tokens_per_step). "
                "Give it on the command line, e.g. series.tokens_per_step=4194304 (batch size × sequence "
                "length), so token budgets and the W&B x-axis are in tokens, not steps."
            )
        return int(tokens)

    @property
    def branch_start(self) -> int:
        return int(self.cfg.branch_start or 0)

    @property
    def branch_steps(self) -> int:
        steps = [c.step for c in self.series_of("wsm").checkpoints]
        return steps[-1] - self.branch_start

    @property
    def wsd_shapes(self) -> Sequence[str]:
        return tuple(self.wsd)

    decay_min_lr = 0.0
    decay_shape = "1-sqrt"
    trains_branches = False

    @property
    def has_heldout(self) -> bool:
        return bool(self.cfg.heldout)

    @property
    def hf_config(self) -> Path | None:
        """series.hf_config: the Hugging Face folder a DCP series is paired with (None: not set)."""
        return Path(self.cfg.hf_config) if self.cfg.hf_config else None

    def check_hf_config(self) -> None:
        """Refuse a DCP series without series.hf_config (and a bad one): wsm_exp.sweep.planning.hf_pairing."""
        from wsm_exp.merging.series import SeriesError
        from wsm_exp.sweep.planning.hf_pairing import check_pairing

        series = {}
        for branch in ["wsm", *(f"wsd_{shape}" for shape in self.wsd)]:
            try:
                series[branch] = self.series_of(branch).checkpoints
            except SeriesError:
                continue  # reported with its own message where the series is used
        check_pairing(self.cfg.hf_config, series)

    def planned_wsm_steps(self) -> list[int]:
        return self.planned_steps("wsm")

    def planned_steps(self, branch: str) -> list[int]:
        return [c.step for c in self.series_of(branch).checkpoints]

    def wsd_decay_steps(self, wsd_end: int) -> int:
        """Length of the WSD decay: series.wsd_decay_steps, else from branch_start to the run's end."""
        return int(self.cfg.wsd_decay_steps or wsd_end - self.branch_start)

    def ensure(self, branches: Sequence[str]) -> dict[str, Path]:
        paths = {}
        for branch in branches:
            if branch == "wsm":
                paths[branch] = Path(self.cfg.path)
            elif branch.startswith("wsd_") and branch[4:] in self.wsd:
                paths[branch] = Path(self.wsd[branch[4:]])
            else:
                raise ConfigError(
                    f"Branch {branch!r} is not available for your own series at {self.cfg.path}: "
                    f"only the WSM series and the WSD runs given in series.wsd ({sorted(self.wsd)}) "
                    "exist. Give the WSD run's folder as series.wsd.<shape>=/path, or leave the shape "
                    "out of baselines.wsd_shapes (fidelity baselines need the embedded study)."
                )
        return paths

    def heldout(self) -> Path | None:
        return Path(self.cfg.heldout) if self.cfg.heldout else None

    def identity(self) -> dict[str, Any]:
        """The run by place: a run that grows new checkpoints stays the same run (each variant's content
        is fingerprinted on its own, see wsm_exp.sweep.record.freshness)."""
        return {"path": str(Path(self.cfg.path).resolve()), "seed": self.seed,
                "wsd": {shape: str(Path(p).resolve()) for shape, p in sorted(self.wsd.items())},
                "tokens_per_step": self.cfg.tokens_per_step, "branch_start": self.branch_start}

    def series_of(self, branch: str):
        """The loaded series of one branch (read once)."""
        if branch not in self._series:
            from wsm_exp.merging.series import load_series

            path = self.ensure([branch])[branch]
            self._series[branch] = load_series(path, tokens_per_step=self.cfg.tokens_per_step)
        return self._series[branch]


def make_source(cfg: DictConfig, logger=None) -> SeriesSource:
    """The embedded study unless ``series.path`` names the user's own checkpoints."""
    from wsm_exp.sweep.spec.schemas import from_node

    series_cfg = from_node(SeriesConfig, cfg.series, key="series")
    if series_cfg.path:
        if not Path(series_cfg.path).is_dir():
            raise ConfigError(
                f"series.path={series_cfg.path!r} is not a folder. Point it at the folder that holds "
                "your step_<n> / checkpoint-<n> checkpoints, or leave it unset for the embedded study."
            )
        source = UserSource(series_cfg, seed=int(cfg.seed))
        source.check_hf_config()
        return source
    return EmbeddedSource.from_cfg(cfg, logger)
