"""``wsm-merge --curve fitted --heldout FILE`` end to end on a real tiny Llama series: the fitted merge is a normal
merge (merge.json holds the weights and the fit's provenance) whose key includes the fit's split and settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers.fitting import heldout_file, lm_series
from helpers.merging import cli
from safetensors.numpy import load_file

from wsm_exp.cli.merge import main
from wsm_exp.merging.plan import PlanError, build_plan
from wsm_exp.merging.series import load_series, select_window


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    root = tmp_path_factory.mktemp("fitcli")
    lm_series(root / "run", [10, 20, 30, 40])
    return root / "run", heldout_file(root / "heldout.jsonl")


@pytest.mark.slow
def test_fitted_merge_is_a_normal_merge_with_the_fit_recorded(series, tmp_path):
    run, heldout = series
    out = tmp_path / "fit"
    done = cli(run, "--curve", "fitted", "--quantity", "3", "--heldout", heldout, "--fit-steps", "2",
               "--out", out, "--quiet")
    assert done.returncode == 0, done.stderr
    assert "fitted weights" in done.stdout and "test loss" in done.stdout
    record = json.loads((out / "merge.json").read_text())
    assert record["curve"] == "fitted" and [c["step"] for c in record["checkpoints"]] == [20, 30, 40]
    fit = record["fit"]
    assert record["weights"] == pytest.approx(fit["history"][fit["losses"].index(min(fit["losses"]))])
    assert sorted(fit["fit_documents"] + fit["test_documents"]) == list(range(12))
    assert fit["settings"]["steps"] == 2 and fit["heldout_digest"] and record["fit_key"] == fit["key"]
    merged = load_file(out / "model.safetensors")
    inputs = [load_file(run / f"step_{s}" / "model.safetensors") for s in (20, 30, 40)]
    for name, tensor in merged.items():
        expected = sum(np.float64(w) * t[name].astype(np.float64) for w, t in zip(record["weights"], inputs))
        np.testing.assert_allclose(tensor, expected, rtol=1e-5, atol=1e-6)
    assert (out / "tokenizer.json").is_file() and (out / "config.json").is_file()

    # the same weights given explicitly: the same tensors (to rounding), another merge key (the fit is in the key)
    explicit = tmp_path / "explicit"
    given = ",".join(repr(w) for w in record["weights"])
    assert cli(run, "--weights", given, "--quantity", "3", "--out", explicit, "--quiet").returncode == 0
    other = json.loads((explicit / "merge.json").read_text())
    assert other["weights"] == pytest.approx(record["weights"], abs=1e-15) and other["key"] != record["key"]
    for name, tensor in load_file(explicit / "model.safetensors").items():
        np.testing.assert_allclose(tensor, merged[name], rtol=1e-6, atol=1e-7)

    # another split seed: another fit key, so another merge key
    reseeded = tmp_path / "reseeded"
    assert cli(run, "--curve", "fitted", "--quantity", "3", "--heldout", heldout, "--fit-steps", "2",
               "--fit-seed", "1", "--out", reseeded, "--quiet").returncode == 0
    again = json.loads((reseeded / "merge.json").read_text())
    assert again["fit"]["fit_documents"] != fit["fit_documents"] and again["key"] != record["key"]


@pytest.mark.slow
def test_fitted_refusals_write_nothing(series, tmp_path):
    run, heldout = series
    out = tmp_path / "never"
    for args, message in ((["--curve", "fitted", "--quantity", "2"], "--curve fitted needs --heldout FILE"),
                          (["--curve", "fitted", "--quantity", "2", "--heldout", heldout, "--dry-run"],
                           "cannot take --dry-run"),
                          (["--curve", "fitted", "--quantity", "2", "--heldout", heldout, "--extrapolate", "0.5"],
                           "cannot take --extrapolate"),
                          (["--curve", "fitted", "--quantity", "2", "--heldout", tmp_path / "missing.jsonl"],
                           "missing.jsonl cannot be read"),
                          (["--curve", "fitted", "--quantity", "2", "--heldout", heldout, "--fit-monotone",
                            "--fit-method", "mirror"], "needs method=projected")):
        done = cli(run, *args, "--out", out)
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert not out.exists()


@pytest.mark.parametrize("given, message", [(["--fit-monotone", "increasing"], "takes no value (got 'increasing')"),
                                             (["--fit-monotone=decreasing"], "'decreasing' is this constraint")])
def test_the_monotone_direction_words_are_refused_in_process(tmp_path, capsys, given, message):
    """The switch took a direction before: the old words get the explanation, exit 2, nothing read or written."""
    out = tmp_path / "never"
    assert main([str(tmp_path / "no-series"), "--curve", "fitted", "--heldout", "h.jsonl", *given, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "non-increasing from the oldest checkpoint" in err and not out.exists()


def test_plan_key_includes_the_fit(series):
    run, _ = series
    window = select_window(load_series(run), quantity=2)
    a = build_plan(window, weights=[0.25, 0.75], fit={"key": "split-a"})
    b = build_plan(window, weights=[0.25, 0.75], fit={"key": "split-b"})
    plain = build_plan(window, weights=[0.25, 0.75])
    assert a.curve == "fitted" and len({a.key, b.key, plain.key}) == 3
    assert a.describe()["fit"] == {"key": "split-a"} and a.recipe()["fit_key"] == "split-a"
    with pytest.raises(PlanError, match="needs its weights"):
        build_plan(window, curve="mean", fit={"key": "x"})
