"""Each statistical rule with a planted effect and a planted null: paired per-document tests, honest
selection of the best of K, chance levels, claims of several parts, seeds joined by id, design identity,
mixed studies, the loss table, and reports that never crash. Null rates: tests/test_null_rates.py."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from analysis import ReportError, findings, load_results, loss_table, model_scores, write_report
from analysis.report import build_tables
from analysis.stats import cluster_influence, paired_difference
from analysis.tables import by_design
from helpers.analysis import write_doc_sweep, write_sweep

def claim(folder, name="WSM beats WSD", **load):
    frame = load_results(folder, **load)
    return findings(model_scores(frame), frame).set_index("claim").loc[name]


def report_tables(folder) -> dict[str, pd.DataFrame]:
    """The tables ``write_report`` writes for a one-group folder, without drawing its figures."""
    return build_tables(load_results(folder))


def test_clustered_standard_error_grows_with_correlated_pieces():
    """Pieces of one text share a text-level error: clustering by text gives the larger (honest) error."""
    rng = np.random.default_rng(4)
    text = np.repeat(rng.normal(0, 1, 30), 5)
    diff = text + rng.normal(0, 0.2, 150)
    plain = np.sqrt((cluster_influence(diff)[1] ** 2).sum())
    clustered = np.sqrt((cluster_influence(diff, clusters=np.repeat(np.arange(30), 5))[1] ** 2).sum())
    assert clustered > 1.8 * plain


def test_paired_bpb_statistic_is_the_aggregate_difference():
    rng = np.random.default_rng(1)
    a, b, w = rng.gamma(2, 1, 50), rng.gamma(2, 1, 50), rng.integers(10, 900, 50).astype(float)
    effect, se = paired_difference(a, b, w)
    assert float(effect) == pytest.approx(np.average(a, weights=w) - np.average(b, weights=w))
    assert 0 < float(se) < 1


def test_one_seed_with_samples_confirms_a_planted_gain(tmp_path):
    row = claim(write_doc_sweep(tmp_path, merge_bpb_gain=0.05))
    assert row["outcome"] == "reproduced" and row["metric"] == "heldout_bpb"
    assert row["verdict"] == "reproduced on evaluation noise (1 seed; training seeds not covered)"
    assert row["noise"].startswith("evaluation noise only (300 documents, 1 seed")
    assert row["difference"] == pytest.approx(-0.05, abs=0.02) and row["candidates"] == 6  # the merges only
    assert 0 < row["detectable"] < 0.05


@pytest.mark.parametrize("gain", [0.0, -0.05])
def test_one_seed_with_samples_does_not_confirm_a_planted_null_or_loss(tmp_path, gain):
    row = claim(write_doc_sweep(tmp_path, merge_bpb_gain=gain))
    assert row["outcome"] == ("inconclusive" if gain == 0 else "not reproduced")


def test_missing_samples_fall_back_to_seed_statistics_and_say_so(tmp_path):
    folder = write_doc_sweep(tmp_path, samples=False)
    assert claim(folder)["verdict"].startswith("unconfirmed (1 seed, no per-document values")
    text = write_report([folder]).path.read_text()
    assert "no per-document values" in text


def test_two_seeds_show_both_intervals_and_judge_on_seeds(tmp_path):
    row = claim(write_doc_sweep(tmp_path, seeds=(0, 1, 2), merge_bpb_gain=0.05))
    assert row["noise"].startswith("training seeds + evaluation (3 seeds, 300 documents")
    assert row["verdict"].endswith("across 3 training seeds (+ evaluation)")
    assert row["eval_ci95"] and row["seed_ci95"] and row["ci95"] == row["seed_ci95"]


def test_seeds_join_by_seed_id_not_position(tmp_path):
    """The WSD run lacks seed 0: merge seed s pairs with WSD seed s only; big seed shifts would otherwise
    leak into the difference."""
    folder = write_doc_sweep(tmp_path, seeds=(0, 1, 2), wsd_seeds=(1, 2), seed_shift=1.0, merge_bpb_gain=0.05)
    row = claim(folder)
    assert row["seeds"] == 2 and row["difference"] == pytest.approx(-0.05, abs=0.02)


def test_nan_seeds_are_not_seeds(tmp_path):
    frame = load_results(write_doc_sweep(tmp_path, seeds=(0, 1)))
    frame["seed"] = frame["seed"].astype(float)
    frame.loc[frame["seed"] == 1, "seed"] = np.nan
    row = findings(model_scores(frame), frame).set_index("claim").loc["WSM beats WSD"]
    assert row["seeds"] == 1


def test_raw_checkpoint_is_never_the_best_merge(tmp_path):
    """An N = 1 "merge" (the raw checkpoint) better than every merge stays the baseline."""
    row = claim(write_doc_sweep(tmp_path, raw_bpb_gain=0.5))
    assert "N=1" not in row["evidence"] and ("N=2" in row["evidence"] or "N=4" in row["evidence"])


ACCURACY = {"wsm_arc_easy": ("general_knowledge", 0.25), "wsm_piqa": ("language", 0.5)}


def test_tasks_at_chance_carry_no_verdict(tmp_path):
    folder = write_doc_sweep(tmp_path, accuracy=ACCURACY, primary="overall", suite="benchmarks")
    tables = report_tables(folder)
    tasks = tables["tasks"].set_index("task")
    assert tasks.loc["wsm_arc_easy", "at_chance"] and tasks.loc["wsm_piqa", "at_chance"]
    assert not tasks.loc["wsm_heldout_bpb", "at_chance"]  # a loss has no chance level
    table = tables["findings"].set_index("claim")
    assert table.loc["WSM beats WSD", "verdict"] == "at chance (no verdict)"
    assert "at chance" in table.loc["merged models can have higher loss yet better scores", "verdict"]


def test_tasks_below_chance_carry_no_verdict(tmp_path):
    """Significantly below chance is not signal: such a task is marked at chance (one-sided test)."""
    folder = write_doc_sweep(tmp_path, accuracy={"wsm_arc_easy": ("general_knowledge", 0.05)}, primary="overall",
                             suite="benchmarks")
    tables = report_tables(folder)
    assert tables["tasks"].set_index("task").loc["wsm_arc_easy", "at_chance"]
    assert tables["findings"].set_index("claim").loc["WSM beats WSD", "verdict"] == "at chance (no verdict)"


def test_tasks_above_chance_keep_their_verdicts(tmp_path):
    folder = write_doc_sweep(tmp_path, accuracy={"wsm_piqa": ("language", 0.8)}, primary="overall",
                             suite="benchmarks")
    tables = report_tables(folder)
    assert not tables["tasks"].set_index("task").loc["wsm_piqa", "at_chance"]
    assert "at chance" not in tables["findings"].set_index("claim").loc["WSM beats WSD", "verdict"]


@pytest.mark.parametrize("ema_gain, expected", [(-0.05, "reproduced"), (0.0, "inconclusive")])
def test_multi_part_claim_needs_every_part(tmp_path, ema_gain, expected):
    """1-sqrt ≈ mean holds in both cases; "mean > EMA" holds only when EMA is clearly worse (higher bpb)."""
    folder = write_doc_sweep(tmp_path, curves=("1-sqrt", "mean", "ema"), bpb_doc_noise=0.01,
                             curve_gain={"1-sqrt": 0.0, "mean": 0.0, "ema": ema_gain})
    assert claim(folder, "1-sqrt ≥ mean > EMA")["outcome"] == expected


def test_design_identity_keeps_dtype_and_alpha_apart(tmp_path):
    folder = write_sweep(tmp_path, seeds=(0,))
    frame = load_results(folder)
    copy = frame[frame["variant"].str.startswith("wsm-mean-N4-I8")].copy()
    copy["variant"] += "-bf"
    copy["merge_dtype"] = "bfloat16"
    scores = model_scores(pd.concat([frame, copy], ignore_index=True))
    designs = by_design(scores)
    matching = designs[(designs["quantity"] == 4) & (designs["interval_steps"] == 8)]
    assert sorted(matching["merge_dtype"]) == ["", "bfloat16"]


@pytest.mark.slow  # runs the CLI in a subprocess
def test_mixed_studies_are_refused_unless_asked_for(tmp_path):
    write_doc_sweep(tmp_path / "a", study="study-a")
    write_doc_sweep(tmp_path / "b", study="study-b", suite="benchmarks", primary="overall")
    with pytest.raises(ReportError, match="different studies or eval suites"):
        load_results(tmp_path / "a", tmp_path / "b")
    out = subprocess.run([sys.executable, "-m", "analysis.report", str(tmp_path / "a"), str(tmp_path / "b"),
                          "--out", str(tmp_path / "r")], capture_output=True, text=True)
    assert out.returncode == 2 and "--allow-mixed" in out.stderr
    report = write_report([tmp_path / "a", tmp_path / "b"], tmp_path / "r", allow_mixed=True)
    text = report.path.read_text()
    assert "side by side" in text and "tiny / study-a" in text and "benchmarks / study-b" in text


def test_loss_table_shows_every_bpb_task_by_category(tmp_path):
    folder = write_doc_sweep(tmp_path, extra_bpb_tasks=True)
    frame = load_results(folder)
    table = loss_table(frame, model_scores(frame))
    assert {"heldout", "math", "code", "bpb:wsm_gsm8k_bpb", "bpb:wsm_humaneval_bpb"} <= set(table.columns)
    assert table["math"].notna().all() and len(table) == 8  # 6 merges, raw, WSD
    assert "## Losses by category" in write_report([folder]).path.read_text()


@pytest.mark.slow  # runs the CLI in a subprocess
def test_report_without_heldout_and_with_zero_scores_does_not_crash(tmp_path):
    folder = write_sweep(tmp_path, seeds=(0,), wsd_score=0.0, wsm_gain=0.0)
    frame = pd.read_parquet(folder / "results.parquet")
    frame = frame[frame["task"] != "wsm_heldout_bpb"]
    frame["value"] = 0.0
    frame.to_parquet(folder / "results.parquet")
    out = subprocess.run([sys.executable, "-m", "analysis.report", str(folder)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "WSM beats WSD" in (folder / "report.md").read_text()


@pytest.mark.slow  # runs the CLI in a subprocess
def test_report_that_cannot_be_written_exits_non_zero_with_the_reason(tmp_path):
    folder = write_sweep(tmp_path, seeds=(0,))
    frame = pd.read_parquet(folder / "results.parquet")
    frame["status"] = "failed"
    frame.to_parquet(folder / "results.parquet")
    with pytest.raises(ReportError, match="every variant failed"):
        write_report([folder])
    out = subprocess.run([sys.executable, "-m", "analysis.report", str(folder)], capture_output=True, text=True)
    assert out.returncode == 2 and "every variant failed" in out.stderr and "Traceback" not in out.stderr


def test_report_opens_with_one_sentence_per_claim_and_the_claims_figure(tmp_path):
    report = write_report([write_doc_sweep(tmp_path)])
    text = report.path.read_text()
    top = text[:text.index("## Findings")]
    claims = report.tables["findings"]
    untested = claims[claims["verdict"] == "not tested"]["claim"].tolist()
    assert top.count("\n- **") == len(claims) - len(untested) and untested  # one sentence per tested claim (or part)
    assert f"- Not tested by this design (reasons under Findings): {'; '.join(untested)}." in top
    assert "**WSM beats WSD**: on heldout_bpb (lower is better), best merge − best decay = -0.0" in top
    assert "evaluation noise only" in top and "**reproduced on evaluation noise (1 seed; training seeds not covered)**" in top
    assert "smallest difference this run detects" in top
    assert (tmp_path / "figures" / "claims.png").stat().st_size > 5_000


@pytest.mark.slow  # runs the CLI in a subprocess
def test_report_of_a_losses_only_suite_without_heldout_does_not_crash(tmp_path):
    """No accuracy task (Overall is empty) and no held-out text: the gold-bpb tasks still get their table."""
    folder = write_doc_sweep(tmp_path, extra_bpb_tasks=True, suite="benchmarks", primary="overall")
    frame = pd.read_parquet(folder / "results.parquet")
    frame[frame["task"] != "wsm_heldout_bpb"].to_parquet(folder / "results.parquet")
    out = subprocess.run([sys.executable, "-m", "analysis.report", str(folder)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    losses = pd.read_csv(folder / "tables" / "losses.csv")
    assert {"math", "code"} <= set(losses.columns) and "heldout" not in losses.columns


def test_worse_than_raw_flags_only_its_own_design(tmp_path):
    """An extrapolated merge (α = 1) worse than raw is flagged; the plain merge of the same window is not."""
    from analysis.report import _with_raw_flag
    from analysis.tables import worse_than_raw

    folder = write_sweep(tmp_path, seeds=(0,))
    frame = load_results(folder)
    copy = frame[frame["variant"].str.startswith("wsm-mean-N4-I8")].copy()
    copy["variant"] += "-x1"
    copy["extrapolate"] = 1.0
    copy.loc[copy["task"] != "wsm_heldout_bpb", "value"] = 0.0  # far below the raw checkpoint's ~0.35
    scores = model_scores(pd.concat([frame, copy], ignore_index=True))
    worse = worse_than_raw(scores)
    assert worse["extrapolate"].tolist() == [1.0]
    shown = _with_raw_flag(scores, worse)
    window = shown[(shown["quantity"] == 4) & (shown["interval_steps"] == 8)]
    assert dict(zip(window["extrapolate"], window["worse_than_raw"])) == {0.0: False, 1.0: True}
    assert shown["worse_than_raw"].sum() == 1
