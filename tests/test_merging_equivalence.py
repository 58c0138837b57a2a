"""WSM's equivalence (Theorem 3.1), tensor by tensor on a real transformers model.

Checkpoints θ_j = θ_0 − Σ_{l<j} g_l built from fixed update vectors; the merge with weights c must
equal θ_0 − Σ_i w_i g_{i−1}, where w are the emulated LR multipliers of c.
"""

import pytest
import torch
from helpers.merging import updates_series
from safetensors.torch import load_file

from wsm_exp.merging.merger import merge_checkpoints
from wsm_exp.merging.series import load_series, select_window
from wsm_exp.merging.weights import merge_weights, multipliers_from_weights


@pytest.mark.parametrize("curve", ["1-sqrt", "cosine", "ema", "mean"])
def test_merge_equals_training_with_the_emulated_schedule(tmp_path, curve):
    steps = [0, 8, 16, 24, 32, 40]
    theta0, updates = updates_series(tmp_path / "s", steps, seed=3)
    window = select_window(load_series(tmp_path / "s"), quantity=len(steps))
    weights = merge_weights(curve, len(steps))
    merge_checkpoints(window.checkpoints, weights, tmp_path / "m", accumulate="float64", dtype="float32",
                      progress=False)
    merged = load_file(tmp_path / "m" / "model.safetensors")
    multipliers = multipliers_from_weights(weights)
    assert len(multipliers) == len(updates)
    for name, start in theta0.items():
        expected = start.double() - sum(w * g[name].double() for w, g in zip(multipliers, updates))
        torch.testing.assert_close(merged[name].double(), expected, rtol=0, atol=1e-6, msg=name)
