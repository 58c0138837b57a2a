"""Two real processes merging the same key: one merges, the other waits for it and reuses the result."""

import fcntl
import json
import os
import subprocess
import sys
import time

from helpers.merging import age, updates_series

from wsm_exp.merging.cache import merge_or_reuse
from wsm_exp.merging.merger import merge_plan
from wsm_exp.merging.plan import build_plan
from wsm_exp.merging.series import load_series, select_window

WORKER = """
import json, os, sys, time
from pathlib import Path
from wsm_exp.merging.cache import merge_or_reuse
from wsm_exp.merging.plan import build_plan
from wsm_exp.merging.series import load_series, select_window
series, merges, curve, go = sys.argv[1:5]
plan = build_plan(select_window(load_series(series), quantity=3), curve=curve)
print("planned", plan.key, flush=True)
while not Path(go).exists():
    time.sleep(0.01)
result = merge_or_reuse(plan, merges, progress=False)
print(json.dumps({"key": result.key, "reused": result.reused, "out": str(result.out_dir),
                  "identity": result.identity}), flush=True)
"""


def start(series, merges, curve, go, env):
    return subprocess.Popen([sys.executable, "-c", WORKER, str(series), str(merges), curve, str(go)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(proc):
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def env_with_cache(tmp_path):
    return {**os.environ, "WSM_IDENTITY_CACHE": str(tmp_path / "identity-cache")}


def test_two_processes_same_key_through_aliases(tmp_path, monkeypatch):
    """`mean` here and `sma` in another process are one canonical curve: one key, one merge, one reuse."""
    updates_series(tmp_path / "s", [0, 4, 8])
    age(tmp_path / "s")
    go, env = tmp_path / "go", env_with_cache(tmp_path)
    monkeypatch.setenv("WSM_IDENTITY_CACHE", env["WSM_IDENTITY_CACHE"])
    proc = start(tmp_path / "s", tmp_path / "merges", "sma", go, env)
    plan = build_plan(select_window(load_series(tmp_path / "s"), quantity=3), curve="mean")
    assert proc.stdout.readline().split()[1] == plan.key  # the other process has planned: both merge now
    go.touch()
    mine = merge_or_reuse(plan, tmp_path / "merges", progress=False)
    theirs = finish(proc)
    assert theirs["key"] == mine.key and sorted([mine.reused, theirs["reused"]]) == [False, True]
    assert theirs["out"] == str(mine.out_dir) and theirs["identity"] == mine.identity
    assert [p.name for p in (tmp_path / "merges").iterdir()] == [mine.key]  # no lock file left behind
    record = json.loads((mine.out_dir / "merge.json").read_text())  # whichever alias merged first names it
    assert record["curve"] in ("mean", "sma") and record["alias_of"] == "linear"


def test_a_waiting_process_reuses_the_merge_it_waited_for(tmp_path, monkeypatch):
    updates_series(tmp_path / "s", [0, 4, 8])
    age(tmp_path / "s")
    monkeypatch.setenv("WSM_IDENTITY_CACHE", str(tmp_path / "identity-cache"))
    plan = build_plan(select_window(load_series(tmp_path / "s"), quantity=3), curve="mean")
    merges = tmp_path / "merges"
    merges.mkdir()
    go = tmp_path / "go"
    go.touch()
    with open(merges / f".{plan.key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # this process is "merging"
        proc = start(tmp_path / "s", merges, "mean", go, env_with_cache(tmp_path))
        assert proc.stdout.readline().split()[1] == plan.key
        time.sleep(1.0)
        assert proc.poll() is None and not (merges / plan.key).exists()  # it waits instead of merging
        merge_plan(plan, merges / plan.key, progress=False)
        fcntl.flock(lock, fcntl.LOCK_UN)
    result = finish(proc)
    assert result["reused"] and result["key"] == plan.key
    assert [p.name for p in merges.iterdir()] == [plan.key]
