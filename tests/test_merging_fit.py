"""Fitted merge weights: the inverse of Theorem 3.1, the simplex optimiser, the held-out split, and the exact
gradient on a real tiny Llama series (tests/helpers/fitting.py)."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
from helpers.fitting import heldout_file, lm_series

from wsm_exp.merging.fit import FitConfig, fit_weights, project
from wsm_exp.merging.fit_lm import LmObjective, batches, fit_or_reuse, fit_window, wandb_logger
from wsm_exp.merging.heldout_split import HeldoutError, split_heldout
from wsm_exp.merging.implied import implied_schedule, isotonic
from wsm_exp.merging.series import load_series
from wsm_exp.merging.st_io import CheckpointError
from wsm_exp.merging.weights import DECAY_CURVES, WeightsError, merge_weights

FIGURE2_N10 = {  # WSM paper, Figure 2 (3 decimals as printed)
    "linear": [0.1] * 10,
    "cosine": [0.024, 0.071, 0.111, 0.139, 0.155, 0.155, 0.139, 0.111, 0.071, 0.024],
    "1-sqrt": [0.316, 0.131, 0.101, 0.085, 0.075, 0.067, 0.062, 0.058, 0.054, 0.051],
}


# ---- the inverse of Theorem 3.1 -------------------------------------------------------------------
@pytest.mark.parametrize("curve", ["linear", "cosine", "1-sqrt"])
@pytest.mark.parametrize("n", [2, 3, 4, 8, 10, 16])
def test_paper_curves_round_trip(curve, n):
    weights = merge_weights(curve, n)
    s = implied_schedule(weights)
    f = DECAY_CURVES[curve]
    assert s.monotone
    assert s.multipliers == pytest.approx([f(i / n) for i in range(1, n)], abs=1e-12)  # the curve sampled at i/N
    assert s.closest_weights == pytest.approx(weights, abs=1e-12)
    assert merge_weights("linear", n) == pytest.approx([1 / n] * n)


@pytest.mark.parametrize("curve", FIGURE2_N10)
def test_golden_vectors_map_to_the_paper_schedules(curve):
    """The printed Figure 2 weights (3 decimals) map back onto f(i/10) to within the printing's rounding."""
    printed = FIGURE2_N10[curve]
    normalised = [c / sum(printed) for c in printed]
    s = implied_schedule(normalised)
    assert s.monotone
    f = DECAY_CURVES[curve]
    assert s.multipliers == pytest.approx([f(i / 10) for i in range(1, 10)], abs=6e-3)


def test_staircase_reads_the_multiplier_of_each_segment():
    s = implied_schedule(merge_weights("1-sqrt", 4))
    assert [s.at(t) for t in (0.0, 0.2, 0.3, 0.6, 1.0)] == pytest.approx(
        [1.0, 1.0, 1 - math.sqrt(0.25), 1 - math.sqrt(0.5), 1 - math.sqrt(0.75)])


def test_non_monotone_weights_are_flagged_with_the_closest_decay():
    """Extrapolated past the mean of 4 (α = 0.5, anchor the newest): the last multiplier is negative."""
    weights = [0.375, 0.375, 0.375, -0.125]
    s = implied_schedule(weights)
    assert not s.monotone
    assert s.multipliers == pytest.approx([0.625, 0.25, -0.125])
    assert s.closest == pytest.approx([0.625, 0.25, 0.0])
    assert s.closest_weights == pytest.approx([0.375, 0.375, 0.25, 0.0])


def test_closest_decay_is_the_least_squares_projection_fuzz():
    """Seeded weights with negative entries: the closest decay is feasible, idempotent and no farther than any
    of 200 random feasible decays (the projection onto a convex set)."""
    rng = random.Random(7)
    for _ in range(300):
        n = rng.randint(2, 9)
        raw = [rng.uniform(-1, 1) for _ in range(n)]
        weights = [x - (sum(raw) - 1) / n for x in raw]
        s = implied_schedule(weights)
        assert s.monotone == all(x >= 0 for x in weights)
        c = s.closest
        assert all(1 >= a >= b >= 0 for a, b in zip([1.0, *c], [*c, 0.0]))
        assert implied_schedule(s.closest_weights).closest == pytest.approx(c)
        assert sum(s.closest_weights) == pytest.approx(1.0)
        best = sum((a - b) ** 2 for a, b in zip(s.multipliers, c))
        for _ in range(200):
            other = sorted((rng.random() for _ in range(n - 1)), reverse=True)
            assert best <= sum((a - b) ** 2 for a, b in zip(s.multipliers, other)) + 1e-12


def test_weights_not_summing_to_one_are_refused():
    with pytest.raises(WeightsError, match="sum to 1.5, not 1"):
        implied_schedule([0.5, 1.0])


def test_isotonic_matches_brute_force_on_small_lists():
    rng = random.Random(3)
    for _ in range(200):
        values = [rng.choice([0.0, 1.0, 2.0, 3.0]) for _ in range(rng.randint(1, 6))]
        fit = isotonic(values)
        assert all(a <= b + 1e-12 for a, b in zip(fit, fit[1:]))
        grid = np.linspace(0, 3, 13)  # candidates: non-decreasing lists on a grid
        err = sum((a - b) ** 2 for a, b in zip(values, fit))
        for _ in range(100):  # no random non-decreasing list does better
            cand = sorted(rng.choice(grid) for _ in values)
            assert err <= sum((a - b) ** 2 for a, b in zip(values, cand)) + 1e-12


# ---- the optimiser -------------------------------------------------------------------------------
@pytest.mark.parametrize("monotone", [False, True])
def test_projection_is_optimal_fuzz(monotone):
    """⟨y − P(y), z − P(y)⟩ ≤ 0 for every feasible z: the Euclidean projection onto a convex set."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 9))
        y = rng.normal(size=n) * 2
        p = project(y, monotone)
        assert p.min() >= 0 and p.sum() == pytest.approx(1.0)
        if monotone:
            assert (np.diff(p) <= 1e-12).all()  # non-increasing, oldest first
        for _ in range(20):
            z = project(rng.normal(size=n) * 3, monotone)
            assert float(np.dot(y - p, z - p)) <= 1e-9


def planted(optimum, dim=40, seed=0):
    """Checkpoints θ_i around θ* = Σ w*_i θ_i; loss ‖θ_w − θ*‖² with the gradient ⟨∇_θ L, θ_i⟩."""
    rng = np.random.default_rng(seed)
    thetas = rng.normal(size=(len(optimum), dim)) + 3.0
    target = np.asarray(optimum) @ thetas

    def objective(w):
        diff = w @ thetas - target
        return float(diff @ diff), thetas @ (2 * diff)

    return objective


@pytest.mark.parametrize("method", ["projected", "mirror"])
def test_fit_recovers_a_planted_optimum(method):
    optimum = [0.1, 0.45, 0.05, 0.4]
    trace = fit_weights(planted(optimum), 4, FitConfig(steps=300, lr=0.2, tol=0.0, method=method))
    assert trace.weights == pytest.approx(optimum, abs=2e-3)
    accepted = [loss for loss, ok in zip(trace.losses, trace.accepted) if ok]
    assert accepted == sorted(accepted, reverse=True)  # the loss of accepted steps never rises


def test_fit_recovers_an_optimum_on_a_face_and_respects_monotone():
    optimum = [0.5, 0.3, 0.2, 0.0]  # on the simplex's boundary, and non-increasing (a convex decay)
    for monotone in (False, True):
        trace = fit_weights(planted(optimum, seed=1), 4, FitConfig(steps=300, lr=0.2, tol=0.0, monotone=monotone))
        assert trace.weights == pytest.approx(optimum, abs=2e-3)
    rising = [0.0, 0.2, 0.3, 0.5]  # outside the monotone set: the fit stays in it, every evaluation
    trace = fit_weights(planted(rising, seed=1), 4, FitConfig(steps=100, lr=0.2, tol=0.0, monotone=True))
    assert all(a >= b - 1e-12 for a, b in zip(trace.weights, trace.weights[1:]))
    assert all(all(a >= b - 1e-12 for a, b in zip(h, h[1:])) for h in trace.history)
    free = fit_weights(planted(rising, seed=1), 4, FitConfig(steps=300, lr=0.2, tol=0.0))
    assert free.loss < trace.loss  # the constraint binds: it costs loss where the optimum rises


def test_monotone_means_a_convex_decay():
    """Non-increasing weights are exactly the staircase decays whose drops never grow (Theorem 3.1)."""
    for curve, inside in (("linear", True), ("1-sqrt", True), ("cosine", False), ("ema", False)):
        w = merge_weights(curve, 8)
        assert (project(np.array(w), monotone=True).tolist() == pytest.approx(w, abs=1e-12)) == inside, curve
        drops = -np.diff([1.0, *implied_schedule(w).multipliers, 0.0])
        assert drops == pytest.approx(w, abs=1e-12)  # each weight is one segment's drop of the decay


def test_a_flat_curve_ends_the_fit_early():
    """An accepted step gaining less than tol ends the fit; every earlier accepted step gained at least tol."""
    objective = planted([0.1, 0.45, 0.05, 0.4])
    full = fit_weights(objective, 4, FitConfig(steps=40, lr=0.2, tol=0.0))
    short = fit_weights(objective, 4, FitConfig(steps=40, lr=0.2, tol=1e-2))
    assert len(full.losses) == 41 and len(short.losses) < len(full.losses)
    accepted = [loss for loss, ok in zip(short.losses, short.accepted) if ok]
    gains = -np.diff(accepted)
    assert gains[-1] < 1e-2 and (gains[:-1] >= 1e-2).all()
    assert short.losses == full.losses[:len(short.losses)]  # the same path, cut where it flattened
    with pytest.raises(WeightsError, match="tol=-1"):
        FitConfig(tol=-1).check()


def test_fit_settings_are_checked():
    with pytest.raises(WeightsError, match="monotone with method=mirror"):
        FitConfig(method="mirror", monotone=True).check()
    for retired in ("increasing", "decreasing", None):  # the direction words of before: a clear refusal
        with pytest.raises(WeightsError, match=r"monotone=.*true or false.*'decreasing' is this constraint"):
            FitConfig(monotone=retired).check()
    with pytest.raises(WeightsError, match="fit_fraction=1.0"):
        FitConfig(fit_fraction=1.0).check()
    with pytest.raises(WeightsError, match="Unknown merge curve"):
        FitConfig(init="nope").check()


# ---- the held-out split --------------------------------------------------------------------------
def test_split_is_deterministic_disjoint_and_independent_of_line_order(tmp_path):
    f = heldout_file(tmp_path / "h.jsonl", count=20)
    a, b = split_heldout(f, seed=3), split_heldout(f, seed=3)
    assert a.fit == b.fit and not set(a.fit) & set(a.test) and sorted(a.fit + a.test) == list(range(20))
    assert len(a.fit) == 10 and split_heldout(f, seed=4).fit != a.fit
    lines = f.read_text().splitlines()
    shuffled = tmp_path / "s.jsonl"
    shuffled.write_text("\n".join(reversed(lines)) + "\n")
    assert sorted(split_heldout(shuffled, seed=3).fit_texts()) == sorted(a.fit_texts())
    assert split_heldout(f, fit_fraction=0.01).fit != [] and split_heldout(f, fit_fraction=0.99).test != []
    written = a.write_test(tmp_path / "test.jsonl")  # what the evaluation's held-out loss task reads
    assert [json.loads(line)["text"] for line in written.read_text().splitlines()] == a.test_texts()


def test_split_refuses_bad_lines_fuzz(tmp_path):
    """Outside bytes: seeded random lines either split cleanly or give one HeldoutError naming the file."""
    rng = random.Random(11)
    good = json.dumps({"text": "a fine document."})
    for case in range(300):
        lines = [good, good]
        for _ in range(rng.randint(0, 3)):
            lines.insert(rng.randint(0, len(lines)), rng.choice([
                bytes(rng.randrange(256) for _ in range(rng.randint(0, 12))).decode("latin-1"),
                json.dumps({"text": rng.choice(["", "  ", 3, None, "ok"])}), "[1, 2]", '{"text": "x"', ""]))
        f = tmp_path / f"h{case}.jsonl"
        f.write_bytes("\n".join(lines).encode("utf-8", errors="replace"))
        try:
            s = split_heldout(f)
        except HeldoutError as err:
            assert str(f) in str(err)
        else:
            assert len(s.fit) + len(s.test) == len(s.texts) >= 2


# ---- the exact gradient and the fit on a real tiny Llama series ----------------------------------
@pytest.fixture(scope="module")
def series(tmp_path_factory):
    root = tmp_path_factory.mktemp("fit")
    lm_series(root / "run", [10, 20, 30])
    return load_series(root / "run"), heldout_file(root / "heldout.jsonl")


@pytest.mark.parametrize("tied", [False, True])
def test_gradient_equals_finite_differences_on_a_real_llama(series, tied, tmp_path):
    s, heldout = series
    if tied:  # the embedding is saved once and used twice: its gradient holds both uses
        s = load_series(lm_series(tmp_path / "tied", [10, 20, 30], seed=5, tie=True))
    objective = LmObjective(s.checkpoints, split_heldout(heldout).fit_texts(), FitConfig(dtype="float64"))
    assert ("lm_head.weight" in objective.layout) != tied
    w = np.array([0.2, 0.3, 0.5])
    loss, grad = objective(w)
    assert objective.loss(w) == loss
    eps = 1e-3  # RMSNorm computes in float32 even in a float64 model: smaller steps meet its rounding
    directions = [*np.eye(3), np.array([0.3, -0.7, 0.4])]
    for d in directions:
        fd = (objective.loss(w + eps * d) - objective.loss(w - eps * d)) / (2 * eps)
        assert fd == pytest.approx(float(grad @ d), rel=1e-4, abs=1e-6)
    assert np.abs(grad).min() > 1e-3  # a gradient that could be wrong (not all zero)
    texts = split_heldout(heldout).fit_texts()
    alone = LmObjective(s.checkpoints, texts, FitConfig(dtype="float64", batch_sequences=1))  # no padding at all
    assert alone.loss(w) == pytest.approx(loss, rel=1e-9)  # batches sorted by length change only the rounding


def test_batches_group_similar_lengths_and_keep_every_sequence():
    rng = np.random.default_rng(0)
    for _ in range(100):
        sequences = [[int(i)] * int(n) for i, n in enumerate(rng.integers(2, 257, int(rng.integers(1, 60))))]
        size = int(rng.integers(1, 12))
        grouped = batches(sequences, size)
        assert sorted(map(tuple, (s for b in grouped for s in b))) == sorted(map(tuple, sequences))
        assert all(len(b) == size for b in grouped[:-1])
        padded = sum(len(b) * max(map(len, b)) for b in grouped)
        given = sum(len(b) * max(map(len, b)) for b in (sequences[i:i + size] for i in range(0, len(sequences), size)))
        assert padded <= given  # sorted contiguous groups pad least


@pytest.mark.slow
def test_fit_on_a_real_series_lowers_the_fit_loss_and_records_provenance(series):
    s, heldout = series
    logged = []
    fitted = fit_window(s.checkpoints, heldout, FitConfig(steps=3, tol=0.0), on_step=lambda i, r: logged.append((i, r)))
    p = fitted.provenance
    assert sum(fitted.weights) == pytest.approx(1.0) and min(fitted.weights) >= 0
    assert p["fit_loss_end"] < p["fit_loss_start"] == p["losses"][0]
    assert p["fit_loss_end"] == min(p["losses"])
    assert len(p["losses"]) == len(p["accepted"]) == len(logged) == 4
    assert not set(p["fit_documents"]) & set(p["test_documents"])
    assert p["documents_used"] == len(p["fit_documents"]) == 6 and p["settings"]["steps"] == 3
    assert p["test_loss_start"] > 0 and p["test_loss_end"] > 0
    again = fit_window(s.checkpoints, heldout, FitConfig(steps=3, tol=0.0))
    assert again.weights == fitted.weights and again.key == fitted.key  # seeded and deterministic
    other = fit_window(s.checkpoints, heldout, FitConfig(steps=1, monotone=True))
    assert all(a >= b for a, b in zip(other.weights, other.weights[1:])) and other.key != fitted.key


@pytest.mark.slow
def test_fits_are_stored_under_their_key_and_reused(series, tmp_path):
    s, heldout = series
    first = fit_or_reuse(s.checkpoints, heldout, FitConfig(steps=1), tmp_path / "fits")
    assert (tmp_path / "fits" / f"{first.key}.json").is_file() and len(first.provenance["inputs"]) == 3
    nowhere = tmp_path / "no-tokenizer"  # a new fit could not even load a tokenizer from here; a reuse needs none
    again = fit_or_reuse(s.checkpoints, heldout, FitConfig(steps=1), tmp_path / "fits", tokenizer=nowhere)
    assert again.weights == first.weights and again.provenance == first.provenance
    with pytest.raises(CheckpointError, match="No tokenizer could be loaded"):
        fit_or_reuse(s.checkpoints, heldout, FitConfig(steps=2), tmp_path / "fits", tokenizer=nowhere)  # another key
    newest = s.checkpoints[-1].path
    hidden = tmp_path / "tokenizer.json"
    (newest / "tokenizer.json").rename(hidden)  # the tokenizer is in the checkpoints' identity: no stale reuse
    try:
        with pytest.raises(CheckpointError, match="No tokenizer could be loaded"):
            fit_or_reuse(load_series(newest.parent).checkpoints, heldout, FitConfig(steps=1), tmp_path / "fits")
    finally:
        hidden.rename(newest / "tokenizer.json")


@pytest.mark.slow
def test_fit_loss_curve_goes_to_a_real_offline_wandb_run(series, tmp_path):
    import wandb
    from helpers.sweep import wandb_runs

    s, heldout = series
    run = wandb.init(project="fit-test", name="fit-curve", dir=str(tmp_path), mode="offline")
    fitted = fit_window(s.checkpoints, heldout, FitConfig(steps=2), on_step=wandb_logger(run))
    run.finish()
    summary = wandb_runs(tmp_path)["fit-curve"]
    text = json.dumps(summary)
    assert "fit/best_loss" in text and "fit/w2" in text
    assert f"{fitted.provenance['fit_loss_end']:.6f}"[:6] in text
