"""Series discovery, window selection and validation (headers only)."""


import pytest
import torch
from helpers.merging import file_series, updates_series
from safetensors.torch import save_file

from wsm_exp.merging.series import (
    SeriesError,
    load_series,
    planned_series,
    select_window,
    validate_window,
)


@pytest.mark.parametrize("pattern", ["step_{}", "step{}", "checkpoint-{}", "iter_{}", "global_step{}"])
def test_step_name_patterns(tmp_path, pattern):
    for step in (30, 10, 20):
        save_file({"w": torch.ones(2)}, tmp_path / (pattern.format(step) + ".safetensors"))
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / "logs").mkdir()
    series = load_series(tmp_path)
    assert series.steps == [10, 20, 30]
    assert series.spacing == 10


def test_hf_folders_sharded_and_series_json(tmp_path):
    updates_series(tmp_path, [0, 4, 8], shard="20KB")
    series = load_series(tmp_path)
    assert series.tokens_per_step == 1000 and series.meta["branch"] == "wsm"
    assert all(len(c.files) > 1 for c in series.checkpoints)
    assert load_series(tmp_path, tokens_per_step=7).tokens_per_step == 7


def test_explicit_list(tmp_path):
    file_series(tmp_path, [5, 10, 15])
    series = load_series([tmp_path / "checkpoint-15.safetensors", tmp_path / "checkpoint-5.safetensors"])
    assert series.steps == [5, 15]


@pytest.mark.parametrize("kwargs, steps, n, delta, d", [
    ({"quantity": 3}, [20, 30, 40], 3, 10, 30),
    ({"quantity": 2, "interval": 20}, [20, 40], 2, 20, 40),
    ({"duration": 40, "quantity": 2}, [20, 40], 2, 20, 40),
    ({"duration": 40, "interval": 10}, [10, 20, 30, 40], 4, 10, 40),
    ({"duration": 20}, [30, 40], 2, 10, 20),
    ({"quantity": 2, "end": 30}, [20, 30], 2, 10, 20),
    ({"quantity": 1}, [40], 1, 10, 10),
])
def test_select_window(kwargs, steps, n, delta, d):
    w = select_window(planned_series([0, 10, 20, 30, 40], tokens_per_step=100), **kwargs)
    assert [c.step for c in w.checkpoints] == steps
    assert (w.quantity, w.interval, w.duration, w.span) == (n, delta, d, (n - 1) * delta)
    assert w.tokens(w.duration) == d * 100


@pytest.mark.parametrize("kwargs, message", [
    ({"quantity": 9}, "Largest N at Δ=10 ending at 40 is 5"),
    ({"quantity": 2, "interval": 15}, "not a multiple of the saved spacing 10"),
    ({"duration": 50, "interval": 20}, "D=50 is not a multiple of Δ=20"),
    ({"duration": 30, "quantity": 4}, "D=30 is not a multiple of N=4"),
    ({"quantity": 2, "end": 35}, "No checkpoint at end step 35"),
    ({"quantity": 2, "interval": 10, "duration": 30}, "D=30 ≠ N·Δ"),
    ({"quantity": 0}, "positive integer"),
    ({}, "Give the merge quantity"),
])
def test_window_errors_say_what_would_work(kwargs, message):
    with pytest.raises(SeriesError, match=message) as err:
        select_window(planned_series([0, 10, 20, 30, 40]), **kwargs)
    if "Largest" in message:
        assert "Available steps: [0, 10, 20, 30, 40]" in str(err.value)


def test_validation_names_first_mismatch(tmp_path):
    file_series(tmp_path, [1, 2])
    save_file({"w": torch.zeros(8, 5), "b": torch.zeros(4), "position_ids": torch.arange(6)},
              tmp_path / "checkpoint-3.safetensors")
    with pytest.raises(SeriesError, match=r"'w' differs: .*checkpoint-1.safetensors has F32 \[8, 4\].*\[8, 5\]"):
        validate_window(select_window(load_series(tmp_path), quantity=3))
    save_file({"w": torch.zeros(8, 4)}, tmp_path / "checkpoint-3.safetensors")
    with pytest.raises(SeriesError, match="is missing from"):
        validate_window(select_window(load_series(tmp_path), quantity=3))
    save_file({"w": torch.zeros(8, 4, dtype=torch.bfloat16), "b": torch.zeros(4), "position_ids": torch.arange(6)},
              tmp_path / "checkpoint-3.safetensors")
    with pytest.raises(SeriesError, match="BF16"):
        validate_window(select_window(load_series(tmp_path), quantity=3))


def test_bad_series_errors(tmp_path):
    with pytest.raises(SeriesError, match="does not exist"):
        load_series(tmp_path / "nope")
    with pytest.raises(SeriesError, match="No checkpoints found"):
        load_series(tmp_path)
    (tmp_path / "step_1").mkdir()
    with pytest.raises(SeriesError, match="has no model.safetensors"):
        load_series(tmp_path)
    (tmp_path / "step_1" / "model.safetensors").write_bytes(b"garbage!")
    save_file({"w": torch.ones(1)}, tmp_path / "step1.safetensors")
    with pytest.raises(SeriesError, match="Two checkpoints claim step 1"):
        load_series(tmp_path)
    (tmp_path / "series.json").write_text("{oops")
    with pytest.raises(SeriesError, match="series.json is not valid JSON"):
        load_series(tmp_path)
