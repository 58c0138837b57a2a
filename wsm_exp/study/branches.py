"""The study protocol: stage 1, then the WSM, WSD and decay-fidelity branches, each a series.

    <cache_root>/<study key>-s<seed>/
        stage1/step_<T_switch>          warmup + constant LR on the general mix
        wsm/step_<n>, series.json        constant LR on the annealing mix, a checkpoint every Δ0
        wsd_<shape>/step_<n>, ...        the same tokens in the same order, LR decayed over the branch
        fidelity_E<e>_D<d>/...           a real decay over the last d steps, from the WSM checkpoint at e − d
        mergethendecay_E<e>_N<n>_I<i>_D<d>_<curve>/
            parent_merge/                the <curve> merge of the n WSM checkpoints i apart ending at e
            step_<n>, ...                a real decay over d steps from that merge (paper Figure 5c)

A branch is complete when its ``series.json`` exists (written last). ``ensure_branches`` trains
only what is missing, under an exclusive file lock, so parallel jobs train each branch once.

Example:
    >>> parse_fidelity("fidelity_E96_D32")
    (96, 32)
    >>> parse_merge_then_decay("mergethendecay_E64_N4_I8_D32_1-sqrt")
    (64, 4, 8, 32, '1-sqrt')
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from wsm_exp.merging.weights import CURVES
from wsm_exp.study.config import DataConfig, ModelConfig, TrainConfig
from wsm_exp.study.data import build_data, data_key
from wsm_exp.study.schedules import SHAPES, warmup_constant, wsd

if TYPE_CHECKING:  # torch and transformers load when a study trains, not when its key is asked
    from wsm_exp.study.trainer import Logger

FIDELITY = re.compile(r"^fidelity_E(\d+)_D(\d+)$")
MERGE_THEN_DECAY = re.compile(r"^mergethendecay_E(\d+)_N(\d+)_I(\d+)_D(\d+)_(.+)$")
PARENT_MERGE = "parent_merge"


class StudyError(ValueError):
    """A branch request the study cannot train."""


def parse_fidelity(name: str) -> tuple[int, int] | None:
    match = FIDELITY.match(name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def parse_merge_then_decay(name: str) -> tuple[int, int, int, int, str] | None:
    """(merge end, quantity, interval, decay steps, curve) of a merge-then-decay branch name."""
    match = MERGE_THEN_DECAY.match(name)
    if not match:
        return None
    end, quantity, interval, duration = (int(g) for g in match.groups()[:4])
    return end, quantity, interval, duration, match.group(5)


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
    mtd = parse_merge_then_decay(name)
    if mtd:
        end, quantity, interval, duration, curve = mtd
        first, last, every = cfg.switch_step, cfg.switch_step + cfg.branch_steps, cfg.save_every
        oldest = end - (quantity - 1) * interval
        if curve not in CURVES or curve == "ema_alpha":
            raise StudyError(f"Merge-then-decay branch {name!r}: unknown merge curve {curve!r}; allowed: "
                             f"{', '.join(c for c in CURVES if c != 'ema_alpha')}.")
        if quantity < 1 or interval % every or duration % every or (end - first) % every \
                or not first < oldest <= end < end + duration <= last:
            raise StudyError(f"Merge-then-decay branch {name!r}: the merged WSM checkpoints (steps {oldest}…{end}, "
                             f"{interval} apart) and the decay after them (to step {end + duration}) must lie on "
                             f"WSM checkpoints (multiples of train.save_every={every} after step {first}) inside "
                             f"the branch ({first}, {last}].")
        return
    raise StudyError(f"Unknown branch {name!r}; allowed: wsm, {', '.join('wsd_' + s for s in SHAPES)}, "
                     "fidelity_E<end>_D<steps>, mergethendecay_E<end>_N<n>_I<interval>_D<steps>_<curve>.")


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
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.data.tokenizer_dir)

    def train(self, branches: list[str]) -> None:
        needs_wsm = any(b == "wsm" or parse_fidelity(b) or parse_merge_then_decay(b) for b in branches)
        self._ensure("stage1")
        for name in (["wsm"] if needs_wsm else []) + branches:
            self._ensure(name)

    def _ensure(self, name: str) -> None:
        from wsm_exp.study.trainer import build_model, build_optimizer, load_state, train_segment, training_device

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
            fid, mtd = parse_fidelity(name), parse_merge_then_decay(name)
            optimizer_parent = None
            if fid:
                end, duration = fid
                start, shape = end - duration, cfg.decay_shape
                parent = self.root / ("stage1" if start == switch else "wsm") / f"step_{start}"
            elif mtd:
                start, quantity, interval, duration, curve = mtd
                end, shape = start + duration, cfg.decay_shape
                parent = self._parent_merge(name, start, quantity, interval, curve)
                # a merge has no optimizer state: the moments of the newest merged checkpoint carry on
                optimizer_parent = self.root / "wsm" / f"step_{start}"
            else:
                start, end, parent = switch, branch_end, self.root / "stage1" / f"step_{switch}"
                shape = name[4:] if name.startswith("wsd_") else None
            offset = start - switch  # same tokens in the same order as the WSM branch
            decay_start, decay_steps = (start, end - start)
            lr_at = (lambda s: cfg.peak_lr) if shape is None else (  # noqa: E731
                lambda s: wsd(s, peak=cfg.peak_lr, warmup=0, decay_start=decay_start, decay_steps=decay_steps,
                              shape=shape, min_ratio=cfg.min_lr_ratio))
            load_state(model, optimizer, parent, optimizer_from=optimizer_parent)
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

    def _parent_merge(self, name: str, end: int, quantity: int, interval: int, curve: str) -> Path:
        """The merged model a merge-then-decay branch starts from (merged once, then reused)."""
        from wsm_exp.merging.merger import merge_checkpoints
        from wsm_exp.merging.series import load_series
        from wsm_exp.merging.weights import merge_weights

        out = self.root / name / PARENT_MERGE
        if not (out / "merge.json").is_file():
            by_step = {c.step: c for c in load_series(self.root / "wsm").checkpoints}
            checkpoints = [by_step[end - k * interval] for k in reversed(range(quantity))]
            merge_checkpoints(checkpoints, merge_weights(curve, quantity), out, overwrite=True, progress=False,
                              provenance={"curve": curve, "purpose": f"parent of {name}"})
        return out
