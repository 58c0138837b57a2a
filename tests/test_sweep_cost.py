"""The sweep's evaluation cost switches on real micro sweeps: merge.keep=false and eval.staged=true."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from helpers.sweep import micro_study, run_sweep
from wsm_exp.evaluation.samples import samples_path
from wsm_exp.sweep.stage.screen import screen_documents, select

pytestmark = pytest.mark.slow  # real subprocess sweeps

SWEEP = ["+sweep=duration", "merge.quantity=2", "baselines.wsd_shapes=[]", "logger=none"]
KEY = ["variant", "task", "metric"]
STAGED = ["merge.duration=8,16", "merge.extrapolate=0,3"]  # α = 3 extrapolations: merges the screen can drop
SAME = [*KEY, "value", "stderr", "model_hash", "status"]


def rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[SAME].sort_values(KEY, ignore_index=True)


def test_keep_false_scores_a_merge_from_memory_bit_for_bit_and_writes_none(root, cache):
    kept = run_sweep(root, *SWEEP, "merge.duration=8,16", name="keep-true", cache=cache, fresh_results_cache=True)
    assert kept.returncode == 0, kept.stdout[-3000:] + kept.stderr[-5000:]
    memory = run_sweep(root, *SWEEP, "merge.duration=8,16", "merge.keep=false", name="keep-false", cache=cache,
                       fresh_results_cache=True)
    assert memory.returncode == 0, memory.stdout[-3000:] + memory.stderr[-5000:]
    frame = memory.results()
    assert set(frame["kind"]) == {"wsm", "raw"} and (frame["merge_seconds"][frame["kind"] == "wsm"] > 0).all()
    pd.testing.assert_frame_equal(rows(frame), rows(kept.results()), check_exact=True)
    merges = root / "keep-false-merges"
    assert not merges.exists() or not [p for p in merges.iterdir() if (p / "merge.json").is_file()]
    assert [p for p in (root / "keep-true-merges").iterdir() if (p / "merge.json").is_file()]
    computed = frame[frame["eval_seconds"] > 0]
    assert len(computed) and (computed["tokens_per_second"] > 0).all()  # the new column, measured
    # keep=true on the same folder and caches: the scores come back from the cache, the merges are now written
    again = run_sweep(root, *SWEEP, "merge.duration=8,16", name="keep-false", cache=cache, fresh_results_cache=True)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-5000:]
    pd.testing.assert_frame_equal(rows(again.results()), rows(frame), check_exact=True)
    assert "3 variant(s): 0 computed, 3 reused, 0 failed." in again.stdout
    assert len([p for p in merges.iterdir() if (p / "merge.json").is_file()]) == 2


def test_staged_sweep_screens_then_an_unstaged_rerun_completes_from_the_cache(root, cache):
    micro_study(root, cache)  # the screen runs before the jobs: a study the first job would train is not screened
    staged = run_sweep(root, *SWEEP, *STAGED, "eval.staged=true",
                       name="staged", cache=cache, fresh_results_cache=True)
    assert staged.returncode == 0, staged.stdout[-3000:] + staged.stderr[-5000:]
    record = json.loads((staged.sweep_dir / "screen.json").read_text())
    frame = staged.results()
    merges = sorted(frame.loc[frame["kind"] == "wsm", "variant"].unique())
    assert sorted(record["variants"]) == merges and len(merges) == 4
    assert record["higher_is_better"] is False  # the MICRO suite has held-out bpb: the screen
    # the decisions are the rule's, recomputed from the stored screen values and the sweep's per-document
    # values (paired: the held-out documents move every model alike, so the paired rule is the finer one)
    screens = {n: (e["value"], e["stderr"]) for n, e in record["variants"].items()}
    assert all(math.isfinite(v) and s > 0 for v, s in screens.values())
    bpb = frame[frame["task"].eq("wsm_heldout_bpb") & frame["metric"].eq("bits_per_byte")]
    documents = {row.variant: screen_documents([row], pd.read_parquet(samples_path(staged.sweep_dir, row.model_hash)))
                 for row in bpb.itertuples() if row.variant in screens}
    expected = select(screens, higher_is_better=False, documents=documents)
    assert {n: e["stage"] for n, e in record["variants"].items()} == {n: d.stage for n, d in expected.items()}
    best = min(screens, key=lambda n: screens[n][0])
    unpaired = select(screens, higher_is_better=False)  # the rule from the two standard errors alone: coarser
    assert all(record["variants"][n]["detectable"] < unpaired[n].detectable for n in screens if n != best)
    tasks = set(frame["task"])
    for name, part in frame.groupby("variant"):
        stage = set(part["eval_stage"])
        assert len(stage) == 1 and set(part["eval_reason"]) != {""}
        if name in record["variants"]:
            assert stage == {record["variants"][name]["stage"]}
            heldout = part.loc[(part["task"] == "wsm_heldout_bpb") & (part["metric"] == "bits_per_byte"), "value"].item()
            assert heldout == record["variants"][name]["value"]  # the screen is the full suite's own bpb
        else:
            assert stage == {"full"} and part["eval_reason"].iloc[0].startswith("baseline")
        assert set(part["task"]) == ({"wsm_heldout_bpb"} if stage == {"screen"} else tasks)
    assert {"full", "screen"} <= {e["stage"] for e in record["variants"].values()}  # ex+3 lands far off the best
    assert record["variants"][best]["stage"] == "full"
    report = (staged.sweep_dir / "report.md").read_text()
    assert "## Evaluation stages (eval.staged)" in report
    # the rest completes from the cache: every screened bpb is reused, only the missing tasks are computed
    rerun = run_sweep(root, *SWEEP, *STAGED, name="staged", cache=cache,
                      fresh_results_cache=True)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-5000:]
    after = rerun.results()
    assert set(after["eval_stage"]) == {"full"} and set(after["task"]) == tasks
    wsm_heldout = after["kind"].eq("wsm") & after["task"].eq("wsm_heldout_bpb")
    assert (after.loc[wsm_heldout, "eval_seconds"] == 0).all()  # measured once, by the screen
    out = sum(e["stage"] == "screen" for e in record["variants"].values())
    total = after["variant"].nunique()  # the fully evaluated variants' rows are reused as they are
    assert f"{total} variant(s): {out} computed, {total - out} reused, 0 failed." in rerun.stdout
    screened_out = after["variant"].isin([n for n, e in record["variants"].items() if e["stage"] == "screen"])
    assert (after.loc[screened_out & after["task"].ne("wsm_heldout_bpb"), "eval_seconds"] > 0).all()
    before = frame.set_index(KEY)["value"]
    common = after.set_index(KEY)["value"].reindex(before.index)
    assert (common == before).all()  # what the staged run measured is what the unstaged one reports


def test_plan_shows_the_evaluation_cost_both_ways(root, cache):
    plan = run_sweep(root, *SWEEP, "merge.duration=8,16,32", "plan=true", name="cost-plan", cache=cache)
    assert plan.returncode == 0, plan.stdout[-3000:] + plan.stderr[-3000:]
    line = next(x for x in plan.stdout.splitlines() if "evaluation cost" in x)
    unstaged = int(line.split("unstaged ")[1].split(";")[0])
    low, high = map(int, line.split("eval.staged=true ")[1].split(" ")[0].split(".."))
    assert low < high == unstaged  # 3 merges + raw; staged keeps at least the best merge, at most all
