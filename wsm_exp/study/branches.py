"""The study protocol: stage 1, then the WSM, WSD and decay-fidelity branches, each a series.

    <cache_root>/<study key>-s<seed>/
        stage1/step_<T_switch>          warmup + constant LR on the general mix
        wsm/step_<n>, series.json        constant LR on the annealing mix, a checkpoint every Δ0
        wsd_<shape>/step_<n>, ...        the same tokens in the same order, LR decayed over the branch
        fidelity_E<e>_D<d>/...           a real decay over the last d steps, from the WSM checkpoint at e − d
        mergethendecay_E<e>_N<n>_I<i>_D<d>_<curve>/
            parent_merge/                the <curve> merge of the n WSM checkpoints i apart ending at e
            step_<n>, ...                a real decay over d steps from that merge (paper Figure 5c)
        probe_lr<η>_B<b>_wd<λ>_S<s>_wsm  the WSM branch with overridden LR, batch size, weight decay, length
        probe_..._wsd_<shape>            its matched decay (same overrides); both from the T_switch checkpoint

A branch is complete when its ``series.json`` exists (written last). ``ensure_branches`` trains
only what is missing, under an exclusive file lock, so parallel jobs train each branch once.

Branch names are built and parsed by ``wsm_exp.study.branch_spec``.

Example:
    >>> study_key(ModelConfig(), DataConfig(), TrainConfig())[:4].isalnum()
    True
"""

from __future__ import annotations

import fcntl
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

from wsm_exp.keys import content_key
from wsm_exp.timings import TRAIN_TASK, Timing, record_timing
from wsm_exp.study.branch_spec import WSD, Fidelity, MergeThenDecay, Probe, check_branch, parse_branch
from wsm_exp.study.config import DataConfig, ModelConfig, TrainConfig
from wsm_exp.study.data import build_data, data_key
from wsm_exp.study.schedules import warmup_constant, wsd

if TYPE_CHECKING:  # torch and transformers load when a study trains, not when its key is asked
    from wsm_exp.study.trainer import Logger

PARENT_MERGE = "parent_merge"


def study_key(model_cfg: ModelConfig, data_cfg: DataConfig, train_cfg: TrainConfig) -> str:
    """Content key of a study: data key + model and training configs."""
    return content_key({"data": data_key(data_cfg), "model": asdict(model_cfg), "train": asdict(train_cfg),
                        "version": 2}, length=16)


def ensure_branches(model_cfg: ModelConfig, data_cfg: DataConfig, train_cfg: TrainConfig, *, seed: int,
                    cache_root: Path, branches: Sequence[str], logger: Logger | None = None) -> dict[str, Path]:
    """Train whatever of ``branches`` is missing (stage 1 once, shared); return each series folder."""
    for name in branches:
        check_branch(name, train_cfg)
    root = study_root(model_cfg, data_cfg, train_cfg, seed=seed, cache_root=cache_root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        missing = [b for b in branches if not (root / b / "series.json").is_file()]
        if missing:
            _Study(model_cfg, data_cfg, train_cfg, seed, Path(cache_root), root, logger).train(missing)
    return {b: root / b for b in branches}


def _steps_done(folder: Path, start: int, end: int) -> int:
    """Steps of [start, end) a resumed segment does not train again (its newest checkpoint inside)."""
    steps = [int(p.name.removeprefix("step_")) for p in folder.glob("step_*") if p.name[5:].isdigit()]
    inside = [s for s in steps if start < s <= end]
    return max(inside) - start if inside else 0


def study_root(model_cfg: ModelConfig, data_cfg: DataConfig, train_cfg: TrainConfig, *, seed: int,
               cache_root: Path) -> Path:
    """The folder of one seed's study (``<branch>/series.json`` inside once a branch is trained)."""
    return Path(cache_root) / f"{study_key(model_cfg, data_cfg, train_cfg)}-s{seed}"


class _Study:
    def __init__(self, model_cfg, data_cfg, train_cfg, seed, cache_root, root, logger):
        self.model_cfg, self.data_cfg, self.cfg, self.seed = model_cfg, data_cfg, train_cfg, seed
        self.root, self.logger = root, logger
        self.data = build_data(data_cfg, cache_root)
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.data.tokenizer_dir)

    def train(self, branches: list[str]) -> None:
        needs_wsm = any(isinstance(parse_branch(b), (Fidelity, MergeThenDecay)) or b == "wsm" for b in branches)
        self._ensure("stage1")
        for name in (["wsm"] if needs_wsm else []) + branches:
            self._ensure(name)

    def _ensure(self, name: str) -> None:
        from wsm_exp.study.trainer import build_model, build_optimizer, load_state, train_segment, training_device

        if (self.root / name / "series.json").is_file():
            return
        cfg, switch = _train_config(self.cfg, name), self.cfg.switch_step
        branch_end = switch + cfg.branch_steps
        model = build_model(self.model_cfg, cfg, self.tokenizer, self.seed).to(training_device(cfg))
        optimizer = build_optimizer(model, cfg)
        if name == "stage1":
            tokens, start, end, offset, parent = self.data.tokens("general"), 0, switch, 0, None
            every = max(cfg.save_every, switch // 4)
            lr_at = lambda s: warmup_constant(s, peak=cfg.peak_lr, warmup=cfg.warmup_steps)  # noqa: E731
        else:
            tokens, every = self.data.tokens("anneal"), cfg.save_every
            spec = parse_branch(name)
            optimizer_parent = None
            if isinstance(spec, Fidelity):
                start, end, shape = spec.end - spec.duration, spec.end, cfg.decay_shape
                parent = self.root / ("stage1" if start == switch else "wsm") / f"step_{start}"
            elif isinstance(spec, MergeThenDecay):
                start, end, shape = spec.end, spec.end + spec.duration, cfg.decay_shape
                parent = self._parent_merge(spec)
                # a merge has no optimizer state: the moments of the newest merged checkpoint carry on
                optimizer_parent = self.root / "wsm" / f"step_{start}"
            else:
                start, end, parent = switch, branch_end, self.root / "stage1" / f"step_{switch}"
                shape = spec.shape if isinstance(spec, (WSD, Probe)) else None
            offset = start - switch  # same tokens in the same order as the WSM branch
            decay_start, decay_steps = (start, end - start)
            lr_at = (lambda s: cfg.peak_lr) if shape is None else (  # noqa: E731
                lambda s: wsd(s, peak=cfg.peak_lr, warmup=0, decay_start=decay_start, decay_steps=decay_steps,
                              shape=shape, min_ratio=cfg.min_lr_ratio))
            load_state(model, optimizer, parent, optimizer_from=optimizer_parent)
            optimizer.param_groups[0]["weight_decay"] = cfg.weight_decay  # a probe's λ, not the parent's
        started, done_before = time.perf_counter(), _steps_done(self.root / name, start, end)
        lrs = train_segment(model, optimizer, self.tokenizer, tokens, cfg=cfg, seed=self.seed, start=start,
                            end=end, data_offset=offset, lr_at=lr_at, folder=self.root / name, save_every=every,
                            logger=self.logger, desc=name)
        steps = end - start - done_before
        if steps > 0:  # the study's step rate, which plan=true estimates training from
            record_timing(self.root.parent, Timing(
                task=TRAIN_TASK, documents=steps, seconds=time.perf_counter() - started,
                parameters=sum(p.numel() for p in model.parameters()), device=str(training_device(cfg)),
                tokens=steps * cfg.tokens_per_step))
        meta = {"branch": name, "parent": str(parent) if parent else None, "seed": self.seed,
                "tokens_per_step": cfg.tokens_per_step, "branch_start": switch, "lr": {str(s): v for s, v in lrs.items()},
                "config": {"model": asdict(self.model_cfg), "data": asdict(self.data_cfg), "train": asdict(cfg)},
                "data_key": self.data.root.name}
        tmp = self.root / name / ".series.json.tmp"
        tmp.write_text(json.dumps(meta, indent=1))
        tmp.replace(self.root / name / "series.json")

    def _parent_merge(self, spec: MergeThenDecay) -> Path:
        """The merged model a merge-then-decay branch starts from (merged once, then reused)."""
        from wsm_exp.merging.merger import merge_checkpoints
        from wsm_exp.merging.series import load_series
        from wsm_exp.merging.weights import merge_weights

        out = self.root / spec.name / PARENT_MERGE
        if not (out / "merge.json").is_file():
            by_step = {c.step: c for c in load_series(self.root / "wsm").checkpoints}
            checkpoints = [by_step[step] for step in spec.merged_steps]
            merge_checkpoints(checkpoints, merge_weights(spec.curve, spec.quantity), out, overwrite=True,
                              progress=False, provenance={"curve": spec.curve, "purpose": f"parent of {spec.name}"})
        return out


def _train_config(cfg: TrainConfig, name: str) -> TrainConfig:
    """The training config of a branch: a probe overrides η, B, λ and the branch length (stage 1 is shared).

    >>> _train_config(TrainConfig(), "probe_lr0.02_B4_wd0.0_S64_wsm").tokens_per_step
    1024
    """
    spec = parse_branch(name)
    if not isinstance(spec, Probe):
        return cfg
    return replace(cfg, peak_lr=spec.lr, batch_size=spec.batch_size, weight_decay=spec.weight_decay,
                   branch_steps=spec.steps)
