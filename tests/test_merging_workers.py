"""Shard-parallel merges (--workers P): identical to one process, published once, atomically."""

from __future__ import annotations

import json

import pytest
import torch
from helpers.merging import updates_series
from safetensors.torch import save_file

from wsm_exp.merging import merger
from wsm_exp.merging.merger import MergeError, merge_plans
from wsm_exp.merging.plan import build_plan
from wsm_exp.merging.series import load_series, select_window

SHARD = 40_000  # bytes: the tiny Llama's output splits into several shards


def plans(root, quantities=(3, 4)):
    series = load_series(root)
    return [build_plan(select_window(series, quantity=q), curve="1-sqrt", identify=False) for q in quantities]


def files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_two_workers_write_the_same_bytes_as_one_process(tmp_path, monkeypatch):
    monkeypatch.setenv("WSM_IDENTITY_CACHE", str(tmp_path / "ids"))
    updates_series(tmp_path / "run", [10, 20, 30, 40])
    one = merge_plans(plans(tmp_path / "run"), [tmp_path / "p1a", tmp_path / "p1b"], shard_size_bytes=SHARD,
                      progress=False)
    monkeypatch.setenv("WSM_IDENTITY_CACHE", str(tmp_path / "ids2"))  # workers hash the inputs too
    groups = []
    real = merger._stream_in_workers
    monkeypatch.setattr(merger, "_stream_in_workers", lambda *a: groups.extend(a[3]) or real(*a))
    two = merge_plans(plans(tmp_path / "run"), [tmp_path / "p2a", tmp_path / "p2b"], shard_size_bytes=SHARD,
                      progress=False, workers=2)
    assert one[0].shards > 2 and len(groups) == 2  # two processes, each with whole shards
    for a, b, x, y in zip(one, two, ("p1a", "p1b"), ("p2a", "p2b")):
        assert (a.key, a.identity, a.bytes_read) == (b.key, b.identity, b.bytes_read)
        fa, fb = files(tmp_path / x), files(tmp_path / y)
        ra, rb = json.loads(fa.pop("merge.json")), json.loads(fb.pop("merge.json"))
        assert fa == fb  # every shard and the index, byte for byte
        assert ra == rb


def test_a_failing_worker_publishes_nothing(tmp_path):
    for step in (1, 2):
        state = {f"w{i}": torch.ones(2000) for i in range(8)}
        if step == 2:
            state["w6"][3] = float("nan")
        save_file(state, tmp_path / f"step_{step}.safetensors")
    with pytest.raises(MergeError, match="'w6'.*NaN"):
        merge_plans(plans(tmp_path, (2,)), [tmp_path / "out" / "m"], shard_size_bytes=20_000, progress=False,
                    workers=2)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_wsm_merge_workers_option(tmp_path, monkeypatch, capsys):
    from wsm_exp.cli.merge import main

    monkeypatch.setenv("WSM_IDENTITY_CACHE", str(tmp_path / "ids"))
    updates_series(tmp_path / "run", [10, 20, 30])
    for p in (1, 2):
        assert main([str(tmp_path / "run"), "--quantity", "3", "--shard-size", "0.00004", "--workers", str(p),
                     "--out", str(tmp_path / f"w{p}"), "--quiet"]) == 0
    one, two = files(tmp_path / "w1"), files(tmp_path / "w2")
    assert len(one) > 4 and one.keys() == two.keys()
    assert all(one[name] == two[name] for name in one if name != "merge.json")
