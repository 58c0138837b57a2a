"""Planning the beyond-the-paper options from real Hydra configs (no training): weights, names, branches, refusals;
and a seeded fuzz of the probe branch names (one parser, built and parsed in wsm_exp.study.branch_spec)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from wsm_exp.merging.extrapolate import extrapolate, reorder
from wsm_exp.merging.weights import merge_weights
from wsm_exp.study.branch_spec import Probe, StudyError, parse_branch
from wsm_exp.sweep.planning.job_plan import plan_job
from wsm_exp.sweep.planning.sources import make_source
from wsm_exp.sweep.spec.schemas import ConfigError

CONF = str(Path(__file__).resolve().parents[1] / "conf")
OmegaConf.register_new_resolver("cwd", lambda: "/tmp", replace=True)


def plan(sweep: str, *overrides: str):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("config", overrides=[f"+sweep={sweep}", "logger=none", *overrides])
    return plan_job(cfg, make_source(cfg))


def test_controls_reverse_and_scramble_the_curve_on_one_window():
    natural = plan("controls", "merge.curve=1-sqrt").variant
    reverse = plan("controls", "merge.curve=1-sqrt", "merge.order=reverse").variant
    scramble = plan("controls", "merge.curve=1-sqrt", "merge.order=scramble", "merge.order_seed=4").variant
    assert list(natural.weights) == merge_weights("1-sqrt", 8)
    assert list(reverse.weights) == reorder(natural.weights, "reverse")
    assert list(scramble.weights) == reorder(natural.weights, "scramble", 4)
    assert natural.steps == reverse.steps == scramble.steps and natural.duration == 64
    assert (reverse.name, scramble.curve, reverse.order) == ("wsm-1-sqrt-reverse-N8-I8-E1756-s0", "1-sqrt-scramble4",
                                                             "reverse")


def test_extrapolate_one_set_of_weights_with_an_anchor():
    base = plan("extrapolate").variant
    assert (base.quantity, base.duration, base.interval) == (4, 64, 16)
    moved = plan("extrapolate", "merge.extrapolate=0.5").variant
    assert list(moved.weights) == extrapolate(list(base.weights), 0.5) and moved.name == "wsm-mean-ex+0.5-N4-I16-E1756-s0"
    anchored = plan("extrapolate", "merge.extrapolate=-0.25", f"merge.anchor={base.steps[0]}").variant
    assert list(anchored.weights) == extrapolate(list(base.weights), -0.25, anchor=0)
    assert anchored.curve == f"mean-ex-0.25@{base.steps[0]}"
    row = moved.row_fields(tokens_per_step=2048, branch_start=1500, branch_steps=256)
    assert (row["extrapolate"], row["merge_order"]) == (0.5, "natural")
    assert moved.merge_provenance["convex"] is False and moved.merge_provenance["weights_sum"] == pytest.approx(1)


def test_noise_probe_plans_its_own_branches_and_baselines():
    job = plan("noise", "merge.branch_lr=0.02", "merge.branch_batch_size=16", "merge.branch_weight_decay=0.0")
    wsm = "probe_lr0.02_B16_wd0.0_S128_wsm"
    assert job.branches == [wsm, "probe_lr0.02_B16_wd0.0_S128_wsd_1-sqrt"]
    assert (job.variant.kind, job.variant.branch, job.variant.end_step) == ("wsm", wsm, 1500 + 128)
    assert [b.name for b in job.baselines] == [f"raw-{wsm}-E1628-s0", "wsd-probe_lr0.02_B16_wd0.0_S128_wsd_1-sqrt-E1628-s0"]
    assert job.baselines[1].duration == 128
    long = plan("long_decay", "merge.branch_steps=1536")
    assert long.branches[0] == "probe_lr0.01_B8_wd0.1_S1536_wsm" and long.variant.end_step == 1500 + 1536


@pytest.mark.parametrize("overrides, message", [
    (["merge.order=backwards"], "merge.order='backwards'"),
    (["merge.extrapolate=0.5", "merge.anchor=1000"], "merge.anchor=1000: not a checkpoint of the window"),
    (["merge.normalize=false"], "only applies to explicit merge.weights"),
    (["merge.branch_steps=100"], "positive multiple of train.save_every=8"),
    (["merge.branch_lr=-1"], "η > 0"),
    (["merge.branch_lr=0.02", "baselines.fidelity=true"], "not trained for probe branches"),
    (["merge.branch_lr=0.02", "merge.branch=wsd_1-sqrt"], "leave merge.branch=wsm"),
    (["merge.branch_lr=0.02", "series.path=/tmp"], "trained by the embedded study"),
    (["merge.extrapolate=0.5", "baselines.merge_then_decay=true", "merge.end=-64"], "merge.extrapolate or merge.order"),
])
def test_bad_options_are_refused_before_any_work(overrides, message):
    with pytest.raises(ConfigError, match=None) as err:
        plan("extrapolate", *overrides)
    assert message in str(err.value)


def test_explicit_weights_unnormalised_only_on_request():
    job = plan("extrapolate", "merge.quantity=2", "merge.duration=16", "merge.weights=[-0.5,2.0]",
               "merge.normalize=false")
    assert list(job.variant.weights) == [-0.5, 2.0] and job.variant.explicit
    with pytest.raises(ConfigError, match="non-negative"):
        plan("extrapolate", "merge.quantity=2", "merge.duration=16", "merge.weights=[-0.5,2.0]")


def test_probe_names_round_trip_and_mutations_never_mis_parse():
    rng = random.Random(0)
    for _ in range(300):
        spec = Probe(lr=rng.choice([1e-5, 3e-4, 0.005, 0.01, 0.02, 0.123456789, 1.0]), batch_size=rng.randint(1, 512),
                     weight_decay=rng.choice([0.0, 0.01, 0.1, 1e-6]), steps=8 * rng.randint(1, 300),
                     shape=rng.choice([None, "1-sqrt", "linear", "cosine"]))
        assert parse_branch(spec.name) == spec
        name = list(spec.name)
        for _ in range(rng.randint(1, 3)):  # flip, drop or insert bytes: a valid other spec or a clear error
            i = rng.randrange(len(name))
            action = rng.choice(["flip", "drop", "insert"])
            if action == "flip":
                name[i] = chr(rng.randrange(32, 127))
            elif action == "drop":
                del name[i]
            else:
                name.insert(i, chr(rng.randrange(32, 127)))
        mutated = "".join(name)
        try:
            parsed = parse_branch(mutated)
        except StudyError as err:
            assert "Unknown branch" in str(err)
        else:
            assert parse_branch(parsed.name) == parsed  # whatever it parses to is itself consistent
