"""`wsm-merge` with the beyond-the-paper flags: --extrapolate, --anchor, --order, --allow-unnormalized."""

import json

import pytest
from helpers.merging import cli, updates_series
from safetensors.torch import load_file


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    root = tmp_path_factory.mktemp("series")
    updates_series(root, [0, 10, 20, 30, 40])
    return root


def _tensors(series, steps):
    return [load_file(series / f"step_{s}" / "model.safetensors") for s in steps]


@pytest.mark.parametrize("anchor", [None, 30])
def test_extrapolate_writes_the_expo_model_with_provenance(series, tmp_path, anchor):
    extra = [] if anchor is None else ["--anchor", anchor]
    out = cli(series, "--quantity", "2", "--extrapolate", "1.5", *extra, "--out", tmp_path / "m", "--quiet",
              "--accumulate", "float64")
    assert out.returncode == 0, out.stderr
    record = json.loads((tmp_path / "m" / "merge.json").read_text())
    assert record["steps"] == [30, 40] and record["note"]["extrapolate"] == 1.5 and min(record["weights"]) < 0
    assert record["note"]["anchor"] == anchor
    assert "not an average of the window" in out.stderr  # α = 1.5 puts −0.25 on the anchor
    old, new = _tensors(series, [30, 40])
    anchor_tensors = new if anchor is None else old
    merged = load_file(tmp_path / "m" / "model.safetensors")
    for k in merged:
        mean = (old[k].double() + new[k].double()) / 2
        assert (merged[k].double() - (mean + 1.5 * (mean - anchor_tensors[k].double()))).abs().max() < 1e-6, k


def test_anchor_must_be_in_the_window(series, tmp_path):
    out = cli(series, "--quantity", "2", "--extrapolate", "0.5", "--anchor", "20", "--out", tmp_path / "m")
    assert out.returncode == 2 and "--anchor 20 is not a merged checkpoint" in out.stderr
    assert not (tmp_path / "m").exists()


def test_reverse_and_scramble_orders(series, tmp_path):
    natural = json.loads(cli(series, "--curve", "1-sqrt", "--quantity", "4", "--dry-run").stdout)
    reverse = json.loads(cli(series, "--curve", "1-sqrt", "--quantity", "4", "--order", "reverse", "--dry-run").stdout)
    scramble = json.loads(cli(series, "--curve", "1-sqrt", "--quantity", "4", "--order", "scramble", "--order-seed",
                              "3", "--dry-run").stdout)
    weights = [[c["weight"] for c in plan["checkpoints"]] for plan in (natural, reverse, scramble)]
    assert weights[1] == weights[0][::-1] and sorted(weights[2]) == sorted(weights[0])
    assert (reverse["note"]["order"], scramble["note"]["order_seed"]) == ("reverse", 3)


def test_allow_unnormalized_keeps_weights_and_warns(series, tmp_path):
    refused = cli(series, "--weights=-0.5,2", "--out", tmp_path / "r")
    assert refused.returncode == 2 and "non-negative" in refused.stderr
    out = cli(series, "--weights=-0.5,2", "--allow-unnormalized", "--out", tmp_path / "m", "--quiet")
    assert out.returncode == 0, out.stderr
    assert "warning" in out.stderr
    record = json.loads((tmp_path / "m" / "merge.json").read_text())
    assert record["weights"] == [-0.5, 2.0] and record["note"]["normalized"] is False
    curve_only = cli(series, "--quantity", "2", "--allow-unnormalized", "--dry-run")
    assert curve_only.returncode == 2 and "only applies to --weights" in curve_only.stderr
