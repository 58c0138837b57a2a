"""The real `wsm-merge` console script, run as a subprocess."""

import json

import pytest
from helpers.merging import cli, updates_series
from safetensors.torch import load_file

from wsm_exp.cli.merge import main


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    root = tmp_path_factory.mktemp("series")
    updates_series(root, [0, 10, 20, 30, 40])
    return root


def test_dry_run_prints_the_plan_and_writes_nothing(series, tmp_path):
    out = cli(series, "--curve", "1-sqrt", "--quantity", "4", "--dry-run", "--out", tmp_path / "m")
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert [c["step"] for c in plan["checkpoints"]] == [10, 20, 30, 40]
    assert [round(c["weight"], 3) for c in plan["checkpoints"]] == [0.5, 0.207, 0.159, 0.134]
    assert (plan["curve"], plan["quantity"], plan["interval"], plan["duration"]) == ("1-sqrt", 4, 10, 40)
    assert plan["duration_tokens"] == 40_000
    assert not (tmp_path / "m").exists()


def test_merge_with_duration_and_interval(series, tmp_path):
    out = cli(series, "--curve", "mean", "--duration", "40", "--interval", "20", "--out", tmp_path / "m", "--quiet")
    assert out.returncode == 0, out.stderr
    record = json.loads((tmp_path / "m" / "merge.json").read_text())
    assert record["steps"] == [20, 40] and record["weights"] == [0.5, 0.5]
    a, b = (load_file(series / f"step_{s}" / "model.safetensors") for s in (20, 40))
    merged = load_file(tmp_path / "m" / "model.safetensors")
    assert all((merged[k] - (a[k] * 0.5 + b[k] * 0.5)).abs().max() == 0 for k in merged)


def test_explicit_weights_and_bf16(series, tmp_path):
    out = cli(series, "--weights", "1,1,2", "--dtype", "bfloat16", "--end", "30", "--out", tmp_path / "m", "--quiet")
    assert out.returncode == 0, out.stderr
    record = json.loads((tmp_path / "m" / "merge.json").read_text())
    assert record["steps"] == [10, 20, 30] and record["weights"] == [0.25, 0.25, 0.5]
    assert record["dtype"] == "bfloat16"


@pytest.mark.parametrize("args, message", [
    (["--quantity", "9"], "Largest N at Δ=10 ending at 40 is 5"),
    (["--curve", "exponential", "--quantity", "2"], "Unknown merge curve 'exponential'"),
    (["--duration", "30", "--interval", "20"], "D=30 is not a multiple of Δ=20"),
    (["--weights", "1,-1", "--quantity", "2"], "non-negative"),
    (["--quantity", "2", "--min-lr", "1.5"], "min_lr"),
    (["--weights", "1,1,2", "--min-lr", "0.5"], "--curve, --min-lr and --alpha would be ignored"),
    (["--weights", "1,1", "--curve", "cosine"], "--curve, --min-lr and --alpha would be ignored"),
])
def test_errors_are_one_paragraph_exit_2_and_write_nothing(series, tmp_path, args, message, capsys):
    """The CLI's own main() in-process (the subprocess path is covered by the tests above)."""
    assert main([str(series), *args, "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("wsm-merge: error:")
    assert not (tmp_path / "m").exists()


def test_missing_out_and_unwritable_out_are_clear_errors(series, tmp_path, capsys):
    assert main([str(series), "--quantity", "2"]) == 2
    assert "--out is required" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main([str(series), "--quantity", "2", "--out", str(blocker / "m"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"wsm-merge: error: --out {blocker / 'm'}: {blocker} is a file, not a folder")
    assert main([str(series), "--quantity", "2", "--out", str(blocker), "--overwrite", "--quiet"]) == 2
    assert f"{blocker} is a file, not a folder" in capsys.readouterr().err
    assert blocker.read_text() == "not a folder"


def test_overwrite_never_replaces_the_series_itself(series, tmp_path, capsys):
    """--out naming the series folder (which holds the inputs) must not delete the checkpoints."""
    before = sorted(p.name for p in series.iterdir())
    assert main([str(series), "--quantity", "2", "--out", str(series), "--overwrite", "--quiet"]) == 2
    assert "would destroy the checkpoints" in capsys.readouterr().err
    assert main([str(series), "--quantity", "2", "--out", str(series / "step_40" / "m"), "--quiet"]) == 2
    assert sorted(p.name for p in series.iterdir()) == before
    assert not (series / "step_40" / "m").exists()


def test_existing_output_needs_overwrite(series, tmp_path):
    (tmp_path / "m").mkdir()
    out = cli(series, "--quantity", "2", "--out", tmp_path / "m")
    assert out.returncode == 2 and "--overwrite" in out.stderr
    assert cli(series, "--quantity", "2", "--out", tmp_path / "m", "--overwrite", "--quiet").returncode == 0


def test_help_explains_every_option():
    out = cli("--help")
    assert out.returncode == 0
    for option in ("--curve", "--quantity", "--interval", "--duration", "--end", "--min-lr", "--alpha", "--weights",
                   "--dtype", "--accumulate", "--tokens-per-step", "--shard-size", "--dry-run", "--overwrite",
                   "--allow-nonfinite", "--quiet", "examples:"):
        assert option in out.stdout


def test_nudges_toward_the_series_folder(series, tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "run-a").symlink_to(series)
    assert main([str(runs), "--quantity", "2", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "No checkpoints found" in err and f"one level below, in {runs / 'run-a'}" in err
    assert main([str(series / "step_40"), "--quantity", "2", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"looks like one checkpoint: pass the folder above it, {series}" in err
    assert main([str(series / "step_40" / "model.safetensors"), "--quantity", "2", "--dry-run"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


@pytest.mark.parametrize("args, said, unsaid", [
    (["--curve", "exponential", "--quantity", "2"], "--curve 1-sqrt", "merge.curve"),
    (["--curve", "ema_alpha", "--quantity", "2"], "--alpha 0.2", "merge.alpha"),
    (["--weights", "1,2,3", "--quantity", "2"], "--weights 0.2,0.3,0.5", "merge.weights"),
    (["--duration", "60", "--quantity", "4"], "D=60 with N=4 gives Δ = D/N = 15 steps", "Interval Δ"),
    (["--duration", "25"], "D=25 is not a multiple of the saved spacing 10 (the default Δ)", "Δ=10"),
])
def test_errors_speak_in_the_options_the_user_passed(series, args, said, unsaid, capsys):
    assert main([str(series), *args, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert said in err and unsaid not in err, err


def test_dry_run_key_matches_the_merge(series, tmp_path, monkeypatch):
    """The dry run, merge.json and the key are views of one plan; after a merge the key is known up front."""
    from helpers.merging import age

    age(series)
    monkeypatch.setenv("WSM_IDENTITY_CACHE", str(tmp_path / "identity-cache"))
    before = json.loads(cli(series, "--quantity", "3", "--curve", "sma", "--dry-run").stdout)
    assert before["key"] is None and (before["curve"], before["alias_of"]) == ("sma", "linear")
    assert cli(series, "--quantity", "3", "--curve", "mean", "--out", tmp_path / "m", "--quiet").returncode == 0
    record = json.loads((tmp_path / "m" / "merge.json").read_text())
    after = json.loads(cli(series, "--quantity", "3", "--curve", "sma", "--dry-run").stdout)
    assert after["key"] == record["key"] and after["checkpoints"] == record["checkpoints"]
    assert record["curve"] == "mean"  # each names the curve as asked; the key is one
    assert {k: record[k] for k in before if k not in ("key", "checkpoints", "curve")} == {
        k: v for k, v in before.items() if k not in ("key", "checkpoints", "curve")}


def test_an_alias_keeps_its_name_in_folders_merge_json_and_the_dry_run(series, tmp_path):
    """--curve mean is linear's weights under the name the user asked for; the output is the same bytes."""
    dry = cli(series, "--curve", "mean", "--quantity", "2", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert (plan["curve"], plan["alias_of"]) == ("mean", "linear")
    done = cli(series, "--curve", "mean,linear", "--quantity", "2", "--out", tmp_path / "grid", "--quiet")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "grid").iterdir()) == ["linear-N2-I10-E40", "mean-N2-I10-E40"]
    mean = json.loads((tmp_path / "grid" / "mean-N2-I10-E40" / "merge.json").read_text())
    linear = json.loads((tmp_path / "grid" / "linear-N2-I10-E40" / "merge.json").read_text())
    assert (mean["curve"], mean["alias_of"], linear["curve"]) == ("mean", "linear", "linear") and "alias_of" not in linear
    assert mean["key"] == linear["key"]  # one content key: an alias never changes a number
    assert ((tmp_path / "grid" / "mean-N2-I10-E40" / "model.safetensors").read_bytes()
            == (tmp_path / "grid" / "linear-N2-I10-E40" / "model.safetensors").read_bytes())
