"""The study protocol: stage 1, then the WSM, WSD and decay-fidelity branches, each a series.

    <cache_root>/<study key>-s<seed>/
        stage1/step_<T_switch>          warmup + constant LR on the general mix
        wsm/step_<n>, series.json        constant LR on the annealing mix, a checkpoint every Δ0
        wsd_<shape>/step_<n>, ...        the same tokens in the same order, LR decayed over the branch
        fidelity_E<e>_D<d>/...           a real decay over the last d steps, from the WSM checkpoint at e − d

A branch is complete when its ``series.json`` exists (written last). ``ensure_branches`` trains
only what is missing, under an exclusive file lock, so parallel jobs train each branch once.

Example:
    >>> parse_fidelity("fidelity_E96_D32")
    (96, 32)
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from transformers import AutoTokenizer

from wsm_exp.study.config import DataConfig, ModelConfig, TrainConfig
from wsm_exp.study.data import build_data, data_key
from wsm_exp.study.schedules import SHAPES, warmup_constant, wsd
from wsm_exp.study.trainer import Logger, build_model, build_optimizer, load_state, train_segment, training_device

FIDELITY = re.compile(r"^fidelity_E(\d+)_D(\d+)$")


class StudyError(ValueError):
    """A branch request the study cannot train."""


def parse_fidelity(name: str) -> tuple[int, int] | None:
    match = FIDELITY.match(name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def study_key(model_cfg: ModelConfig, data_cfg: DataConfig, train_cfg: TrainConfig) -> str:
    """Content key of a study: data key + model and training configs."""
    payload = json.dumps({"data": data_key(data_cfg), "model": asdict(model_cfg), "train": asdict(train_cfg),
                          "version": 2}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def check_branch(name: str, cfg: TrainConfig) -> None:
    """Raise StudyError for a branch name the study cannot produce, listing the valid ones."""
    if name in ("wsm", "stage1") or (name.startswith("wsd_") and name[4:] in SHAPES):
        return
    fid = parse_fidelity(name)
    if fid:
        end, duration = fid
        first, last = cfg.switch_step, cfg.switch_step + cfg.branch_steps
        if duration % cfg.save_every or (end - first) % cfg.save_every or not first <= end - duration < end <= last:
            raise StudyError(f"Fidelity branch {name!r}: the decay must start and end on WSM checkpoints "
                             f"(multiples of train.save_every={cfg.save_every} after step {first}) inside "
                             f"the branch [{first}, {last}].")
        return
    raise StudyError(f"Unknown branch {name!r}; allowed: wsm, {', '.join('wsd_' + s for s in SHAPES)}, "
                     "fidelity_E<end>_D<steps>.")


def ensure_branches(model_cfg: ModelConfig, data_cfg: DataConfig, train_cfg: TrainConfig, *, seed: int,
                    cache_root: Path, branches: Sequence[str], logger: Logger | None = None) -> dict[str, Path]:
    """Train whatever of ``branches`` is missing (stage 1 once, shared); return each series folder."""
    for name in branches:
        check_branch(name, train_cfg)
    root = Path(cache_root) / f"{study_key(model_cfg, data_cfg, train_cfg)}-s{seed}"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        missing = [b for b in branches if not (root / b / "series.json").is_file()]
        if missing:
            _Study(model_cfg, data_cfg, train_cfg, seed, Path(cache_root), root, logger).train(missing)
    return {b: root / b for b in branches}


class _Study:
    def __init__(self, model_cfg, data_cfg, train_cfg, seed, cache_root, root, logger):
        self.model_cfg, self.data_cfg, self.cfg, self.seed = model_cfg, data_cfg, train_cfg, seed
        self.root, self.logger = root, logger
        self.data = build_data(data_cfg, cache_root)
        self.tokenizer = AutoTokenizer.from_pretrained(self.data.tokenizer_dir)

    def train(self, branches: list[str]) -> None:
        needs_wsm = any(b == "wsm" or parse_fidelity(b) for b in branches)
        self._ensure("stage1")
        for name in (["wsm"] if needs_wsm else []) + branches:
            self._ensure(name)

    def _ensure(self, name: str) -> None:
        if (self.root / name / "series.json").is_file():
            return
        cfg, switch = self.cfg, self.cfg.switch_step
        branch_end = switch + cfg.branch_steps
        model = build_model(self.model_cfg, cfg, self.tokenizer, self.seed).to(training_device(cfg))
        optimizer = build_optimizer(model, cfg)
        if name == "stage1":
            tokens, start, end, offset, parent = self.data.tokens("general"), 0, switch, 0, None
            every = max(cfg.save_every, switch // 4)
            lr_at = lambda s: warmup_constant(s, peak=cfg.peak_lr, warmup=cfg.warmup_steps)  # noqa: E731
        else:
            tokens, every = self.data.tokens("anneal"), cfg.save_every
            fid = parse_fidelity(name)
            if fid:
                end, duration = fid
                start, shape = end - duration, cfg.decay_shape
                parent = self.root / ("stage1" if start == switch else "wsm") / f"step_{start}"
            else:
                start, end, parent = switch, branch_end, self.root / "stage1" / f"step_{switch}"
                shape = name[4:] if name.startswith("wsd_") else None
            offset = start - switch  # same tokens in the same order as the WSM branch
            decay_start, decay_steps = (start, end - start)
            lr_at = (lambda s: cfg.peak_lr) if shape is None else (  # noqa: E731
                lambda s: wsd(s, peak=cfg.peak_lr, warmup=0, decay_start=decay_start, decay_steps=decay_steps,
                              shape=shape, min_ratio=cfg.min_lr_ratio))
            load_state(model, optimizer, parent)
        lrs = train_segment(model, optimizer, self.tokenizer, tokens, cfg=cfg, seed=self.seed, start=start,
                            end=end, data_offset=offset, lr_at=lr_at, folder=self.root / name, save_every=every,
                            logger=self.logger, desc=name)
        meta = {"branch": name, "parent": str(parent) if parent else None, "seed": self.seed,
                "tokens_per_step": cfg.tokens_per_step, "branch_start": switch, "lr": {str(s): v for s, v in lrs.items()},
                "config": {"model": asdict(self.model_cfg), "data": asdict(self.data_cfg), "train": asdict(cfg)},
                "data_key": self.data.root.name}
        tmp = self.root / name / ".series.json.tmp"
        tmp.write_text(json.dumps(meta, indent=1))
        tmp.replace(self.root / name / "series.json")
