"""Typed branch specs: every series the study can train, with its name, bounds check and one parser.

A branch name is built here and parsed here, nowhere else; the runner and the result rows carry the
spec's fields (``kind``, the parent merge's N and Δ) as columns, so analysis never parses names.
Pure: no torch or transformers.

Example:
    >>> parse_branch("fidelity_E96_D32")
    Fidelity(end=96, duration=32)
    >>> MergeThenDecay(end=64, quantity=4, interval=8, duration=32, curve="1-sqrt").name
    'mergethendecay_E64_N4_I8_D32_1-sqrt'
    >>> parse_branch("wsd_cosine").kind
    'wsd'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Protocol

from wsm_exp.merging.weights import CURVES
from wsm_exp.study.schedules import SHAPES


class StudyError(ValueError):
    """A branch request the study cannot train."""


class _Bounds(Protocol):
    switch_step: int
    branch_steps: int
    save_every: int


@dataclass(frozen=True)
class BranchSpec:
    """One series of the study; subclasses add their parameters."""

    kind: ClassVar[str] = ""

    @property
    def name(self) -> str:
        raise NotImplementedError

    def check(self, cfg: _Bounds) -> None:
        """Raise StudyError when the embedded study (``train`` config) cannot produce this branch."""

    @property
    def parent_quantity(self) -> int:
        """N of the merge this branch starts from (0: it starts from a checkpoint)."""
        return 0

    @property
    def parent_interval(self) -> int:
        """Δ of the merge this branch starts from (0: it starts from a checkpoint)."""
        return 0


@dataclass(frozen=True)
class Stage1(BranchSpec):
    """Warmup + constant LR on the general mix, up to T_switch."""

    kind: ClassVar[str] = "stage1"

    @property
    def name(self) -> str:
        return "stage1"


@dataclass(frozen=True)
class WSM(BranchSpec):
    """The constant-LR branch whose checkpoints are merged."""

    kind: ClassVar[str] = "wsm"

    @property
    def name(self) -> str:
        return "wsm"


@dataclass(frozen=True)
class WSD(BranchSpec):
    """A decay over the whole branch (the WSD baseline), same tokens in the same order as WSM."""

    shape: str
    kind: ClassVar[str] = "wsd"

    @property
    def name(self) -> str:
        return f"wsd_{self.shape}"

    def check(self, cfg: _Bounds) -> None:
        if self.shape not in SHAPES:
            raise StudyError(f"Unknown branch {self.name!r}: the decay shape {self.shape!r} is not one of "
                             f"{', '.join(SHAPES)}; {_ALLOWED}.")


@dataclass(frozen=True)
class Fidelity(BranchSpec):
    """A real decay over the last ``duration`` steps ending at ``end``, from the WSM checkpoint at end − D."""

    end: int
    duration: int
    kind: ClassVar[str] = "fidelity"

    @property
    def name(self) -> str:
        return f"fidelity_E{self.end}_D{self.duration}"

    def check(self, cfg: _Bounds) -> None:
        first, last, every = cfg.switch_step, cfg.switch_step + cfg.branch_steps, cfg.save_every
        if self.duration % every or (self.end - first) % every \
                or not first <= self.end - self.duration < self.end <= last:
            raise StudyError(f"Fidelity branch {self.name!r}: the decay must start and end on WSM checkpoints "
                             f"(multiples of train.save_every={every} after step {first}) inside "
                             f"the branch [{first}, {last}].")


@dataclass(frozen=True)
class MergeThenDecay(BranchSpec):
    """A real decay over ``duration`` steps from the ``curve`` merge of N WSM checkpoints Δ apart ending at ``end``."""

    end: int
    quantity: int
    interval: int
    duration: int
    curve: str
    kind: ClassVar[str] = "merge_then_decay"

    @property
    def name(self) -> str:
        return f"mergethendecay_E{self.end}_N{self.quantity}_I{self.interval}_D{self.duration}_{self.curve}"

    @property
    def parent_quantity(self) -> int:
        return self.quantity

    @property
    def parent_interval(self) -> int:
        return self.interval

    @property
    def merged_steps(self) -> list[int]:
        """The WSM steps of the parent merge, oldest first."""
        return [self.end - k * self.interval for k in reversed(range(self.quantity))]

    def check(self, cfg: _Bounds) -> None:
        first, last, every = cfg.switch_step, cfg.switch_step + cfg.branch_steps, cfg.save_every
        oldest = self.end - (self.quantity - 1) * self.interval
        if self.curve not in CURVES or self.curve == "ema_alpha":
            raise StudyError(f"Merge-then-decay branch {self.name!r}: unknown merge curve {self.curve!r}; allowed: "
                             f"{', '.join(c for c in CURVES if c != 'ema_alpha')}.")
        if self.quantity < 1 or self.interval % every or self.duration % every or (self.end - first) % every \
                or not first < oldest <= self.end < self.end + self.duration <= last:
            raise StudyError(f"Merge-then-decay branch {self.name!r}: the merged WSM checkpoints (steps {oldest}…"
                             f"{self.end}, {self.interval} apart) and the decay after them (to step "
                             f"{self.end + self.duration}) must lie on WSM checkpoints (multiples of "
                             f"train.save_every={every} after step {first}) inside the branch ({first}, {last}].")


@dataclass(frozen=True)
class SFT(BranchSpec):
    """Supervised fine-tuning of one base of the Table 2 comparison (``role``: wsd or wsm)."""

    role: str
    kind: ClassVar[str] = "sft"

    @property
    def name(self) -> str:
        return f"sft_{self.role}"


# --- probe branches (noise-scale probe and long decays; docs/beyond.md) ---------------------------------

@dataclass(frozen=True)
class Probe(BranchSpec):
    """The WSM branch (``shape=None``) or its matched WSD decay, with overridden constant LR η, batch size B
    (sequences), weight decay λ and length S, from the same T_switch checkpoint as every branch.

    >>> Probe(lr=0.02, batch_size=16, weight_decay=0.0, steps=128).name
    'probe_lr0.02_B16_wd0.0_S128_wsm'
    >>> parse_branch("probe_lr0.02_B16_wd0.0_S128_wsd_1-sqrt").shape
    '1-sqrt'
    """

    lr: float
    batch_size: int
    weight_decay: float
    steps: int
    shape: str | None = None
    kind: ClassVar[str] = "probe"

    @property
    def name(self) -> str:
        series = "wsm" if self.shape is None else f"wsd_{self.shape}"
        return f"probe_lr{float(self.lr)!r}_B{self.batch_size}_wd{float(self.weight_decay)!r}_S{self.steps}_{series}"

    def decay(self, shape: str) -> "Probe":
        """The matched decay: same η, B, λ and length, LR decayed over the whole branch."""
        return Probe(self.lr, self.batch_size, self.weight_decay, self.steps, shape)

    def check(self, cfg: _Bounds) -> None:
        every = cfg.save_every
        if self.shape is not None and self.shape not in SHAPES:
            raise StudyError(f"Probe branch {self.name!r}: unknown decay shape {self.shape!r}; allowed: "
                             f"{', '.join(SHAPES)}.")
        if not (self.lr > 0 and self.batch_size >= 1 and self.weight_decay >= 0 and self.steps > 0
                and self.steps % every == 0):
            raise StudyError(f"Probe branch {self.name!r}: needs η > 0, B ≥ 1, λ ≥ 0 and a length that is a "
                             f"positive multiple of train.save_every={every} (e.g. merge.branch_steps=512).")


_ALLOWED = ("allowed: wsm, " + ", ".join(f"wsd_{s}" for s in SHAPES)
            + ", fidelity_E<end>_D<steps>, mergethendecay_E<end>_N<n>_I<interval>_D<steps>_<curve>, "
            "probe_lr<η>_B<batch>_wd<λ>_S<steps>_<wsm|wsd_shape>")
_PROBE = re.compile(r"^probe_lr([0-9.e+-]+)_B(\d+)_wd([0-9.e+-]+)_S(\d+)_(wsm|wsd_.+)$")
_FIDELITY = re.compile(r"^fidelity_E(\d+)_D(\d+)$")
_MERGE_THEN_DECAY = re.compile(r"^mergethendecay_E(\d+)_N(\d+)_I(\d+)_D(\d+)_(.+)$")


def parse_branch(name: str) -> BranchSpec:
    """The spec a branch name stands for; StudyError listing the allowed forms otherwise.

    >>> parse_branch("mergethendecay_E64_N4_I8_D32_mean").merged_steps
    [40, 48, 56, 64]
    >>> parse_branch("wsd_anything").shape  # a user's WSD run may have any shape label
    'anything'
    """
    if name == "stage1":
        return Stage1()
    if name == "wsm":
        return WSM()
    if name.startswith("wsd_") and len(name) > 4:
        return WSD(name[4:])
    if name.startswith("sft_") and len(name) > 4:
        return SFT(name[4:])
    if match := _FIDELITY.match(name):
        return Fidelity(int(match.group(1)), int(match.group(2)))
    if match := _MERGE_THEN_DECAY.match(name):
        end, quantity, interval, duration = (int(g) for g in match.groups()[:4])
        return MergeThenDecay(end, quantity, interval, duration, match.group(5))
    if (match := _PROBE.match(name)) and _is_float(match.group(1)) and _is_float(match.group(3)):
        series = match.group(5)
        return Probe(float(match.group(1)), int(match.group(2)), float(match.group(3)), int(match.group(4)),
                     None if series == "wsm" else series[4:])
    raise StudyError(f"Unknown branch {name!r}; {_ALLOWED}.")


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_branch(name: str, cfg: _Bounds) -> BranchSpec:
    """Parse ``name`` and check it against the study's bounds; the spec, or StudyError naming the fix."""
    spec = parse_branch(name)
    spec.check(cfg)
    return spec
