"""Runner pieces that need no training: result schema, variant naming, typed config checks."""

import json
import math

import pandas as pd
import pytest

from wsm_exp.sweep import results
from wsm_exp.sweep.config import ConfigError, LoggerConfig, MergeConfig, from_node
from wsm_exp.sweep.variants import fidelity_branch, merge_variant, raw_variant, wsd_variant


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


def test_finished_job_needs_same_fingerprint_and_ok_rows(tmp_path):
    row = results.make_row(variant="raw-E8-s0", kind="raw", task="t", metric="acc", value=1.0)
    results.write_job(tmp_path, "raw-E8-s0", "abc", [row])
    assert results.finished_job(tmp_path, "raw-E8-s0", "abc")
    assert not results.finished_job(tmp_path, "raw-E8-s0", "changed-config")
    failed = results.make_row(variant="raw-E8-s0", kind="raw", status="failed", error="boom")
    results.write_job(tmp_path, "raw-E8-s0", "abc", [failed])
    assert not results.finished_job(tmp_path, "raw-E8-s0", "abc")
    assert math.isnan(results.gather(tmp_path)["value"][0])


def test_unknown_result_column_is_refused():
    with pytest.raises(KeyError, match="Not result columns"):
        results.make_row(variant="v", accuracy=1.0)


def test_variant_names_are_unique_and_descriptive():
    names = {
        merge_variant(curve="mean", steps=[8, 16], weights=[0.5, 0.5], interval=8, duration=16).name,
        merge_variant(curve="mean", steps=[8, 16], weights=[0.5, 0.5], interval=8, duration=16, seed=1).name,
        merge_variant(curve="mean", steps=[8, 16], weights=[0.45, 0.55], interval=8, duration=16, min_lr=0.1).name,
        raw_variant(step=16).name, wsd_variant(shape="1-sqrt", step=16, decay_steps=16).name,
        wsd_variant(shape="1-sqrt", step=16, decay_steps=8, branch=fidelity_branch(16, 8)).name,
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
