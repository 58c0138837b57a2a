"""Real training steps, resume equivalence, determinism and the series layout."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from helpers.study import DATA, MODEL, TRAIN
from wsm_exp.merging.series import load_series
from wsm_exp.study import ensure_branches
from wsm_exp.study.branch_spec import StudyError
from wsm_exp.study.schedules import wsd


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    losses = []
    paths = ensure_branches(MODEL, DATA, TRAIN, seed=0, cache_root=root, branches=["wsm", "wsd_1-sqrt"],
                            logger=lambda metrics, step: losses.append((step, metrics)))
    return root, paths, losses


def test_loss_decreases_and_progress_is_logged(study):
    _, _, losses = study
    stage1 = [m["stage1/loss"] for _, m in losses if "stage1/loss" in m]
    assert len(stage1) == TRAIN.switch_step
    assert sum(stage1[-4:]) / 4 < sum(stage1[:4]) / 4 - 0.5
    assert all("stage1/tokens_per_s" in m for _, m in losses if "stage1/loss" in m)


def test_series_layout(study):
    _, paths, _ = study
    wsm = load_series(paths["wsm"])
    start, end = TRAIN.switch_step, TRAIN.switch_step + TRAIN.branch_steps
    assert wsm.steps == list(range(start + TRAIN.save_every, end + 1, TRAIN.save_every))
    meta = json.loads((paths["wsm"] / "series.json").read_text())
    assert meta["tokens_per_step"] == TRAIN.tokens_per_step and meta["branch"] == "wsm"
    assert set(meta["lr"].values()) == {TRAIN.peak_lr} and len(meta["lr"]) == TRAIN.branch_steps
    wsd = json.loads((paths["wsd_1-sqrt"] / "series.json").read_text())
    lrs = [wsd["lr"][str(s)] for s in range(start, end)]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] == 0.0
    model = AutoModelForCausalLM.from_pretrained(paths["wsm"] / f"step_{end}")
    tok = AutoTokenizer.from_pretrained(paths["wsm"] / f"step_{end}")
    assert model(**tok("Hello world", return_tensors="pt")).logits.shape[-1] == len(tok)


def test_branches_share_the_switch_checkpoint_and_data(study):
    root, paths, _ = study
    first_wsm = load_file(paths["wsm"] / f"step_{TRAIN.switch_step + TRAIN.save_every}" / "model.safetensors")
    first_wsd = load_file(paths["wsd_1-sqrt"] / f"step_{TRAIN.switch_step + TRAIN.save_every}" / "model.safetensors")
    # same start, same batches, smaller LR: close but not equal
    diff = max((first_wsm[k] - first_wsd[k]).abs().max().item() for k in first_wsm)
    assert 0 < diff < 0.1


@pytest.mark.slow  # > 5 s: the full suite runs it
def test_resume_after_a_crash_gives_identical_weights(tmp_path, study):
    _, paths, _ = study

    def crash(metrics, step):
        if step == TRAIN.switch_step + 6:
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        ensure_branches(MODEL, DATA, TRAIN, seed=0, cache_root=tmp_path, branches=["wsm"], logger=crash)
    resumed = ensure_branches(MODEL, DATA, TRAIN, seed=0, cache_root=tmp_path, branches=["wsm"])
    end = f"step_{TRAIN.switch_step + TRAIN.branch_steps}"
    a = load_file(resumed["wsm"] / end / "model.safetensors")
    b = load_file(paths["wsm"] / end / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)  # also proves determinism across runs


def test_cached_branches_are_not_retrained(study):
    root, paths, _ = study
    calls = []
    again = ensure_branches(MODEL, DATA, TRAIN, seed=0, cache_root=root, branches=["wsm"],
                            logger=lambda m, s: calls.append(s))
    assert again["wsm"] == paths["wsm"] and calls == []


def test_fidelity_branch_and_bad_names(study):
    root, paths, _ = study
    end = TRAIN.switch_step + TRAIN.branch_steps
    fid = ensure_branches(MODEL, DATA, TRAIN, seed=0, cache_root=root, branches=[f"fidelity_E{end}_D8"])
    meta = json.loads((fid[f"fidelity_E{end}_D8"] / "series.json").read_text())
    assert meta["parent"].endswith(f"wsm/step_{end - 8}")
    assert load_series(fid[f"fidelity_E{end}_D8"]).steps == [end - 4, end]
    with pytest.raises(StudyError, match="allowed: wsm, wsd_1-sqrt"):
        ensure_branches(MODEL, DATA, TRAIN, seed=0, cache_root=root, branches=["wsd_step"])
    with pytest.raises(StudyError, match="multiples of train.save_every"):
        ensure_branches(MODEL, DATA, TRAIN, seed=0, cache_root=root, branches=[f"fidelity_E{end}_D6"])


def test_merge_then_decay_branch_starts_from_the_merge(study):
    root, paths, _ = study
    start = TRAIN.switch_step + 8
    name = f"mergethendecay_E{start}_N2_I4_D8_mean"
    branch = ensure_branches(MODEL, DATA, TRAIN, seed=0, cache_root=root, branches=[name])[name]
    meta = json.loads((branch / "series.json").read_text())
    merge = json.loads((Path(meta["parent"]) / "merge.json").read_text())
    assert Path(meta["parent"]) == branch / "parent_merge"
    assert merge["steps"] == [start - 4, start] and merge["weights"] == [0.5, 0.5]
    assert load_series(branch).steps == [start + 4, start + 8]  # the merge folder is not a checkpoint
    decay = [wsd(s, peak=TRAIN.peak_lr, warmup=0, decay_start=start, decay_steps=8, shape="1-sqrt", min_ratio=0.0)
             for s in range(start, start + 8)]
    assert [meta["lr"][str(s)] for s in range(start, start + 8)] == pytest.approx(decay)  # the 1-sqrt decay
    end = TRAIN.switch_step + TRAIN.branch_steps
    for bad, message in [(f"mergethendecay_E{end}_N2_I4_D8_mean", "inside the branch"),
                         (f"mergethendecay_E{start}_N2_I4_D8_median", "unknown merge curve 'median'")]:
        with pytest.raises(StudyError, match=message):
            ensure_branches(MODEL, DATA, TRAIN, seed=0, cache_root=root, branches=[bad])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_cuda_training_without_a_gpu_is_refused_with_the_fix(tmp_path):
    from dataclasses import replace

    with pytest.raises(RuntimeError, match=r"train.device='cuda' but torch sees no CUDA GPU.*train.device=cpu"):
        ensure_branches(MODEL, DATA, replace(TRAIN, device="cuda"), seed=0, cache_root=tmp_path, branches=["wsm"])
    assert not any((tmp_path).rglob("step_*"))


def test_parent_with_a_missing_or_extra_tensor_is_refused_by_name(study, tmp_path):
    import shutil

    from safetensors.torch import save_file

    from wsm_exp.study.trainer import build_model, build_optimizer, load_state

    _, paths, _ = study
    source = paths["wsm"] / f"step_{TRAIN.switch_step + TRAIN.branch_steps}"
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = build_model(MODEL, TRAIN, tokenizer, seed=0)
    optimizer = build_optimizer(model, TRAIN)
    load_state(model, optimizer, source)  # the real checkpoint loads strictly
    tensors = load_file(source / "model.safetensors")
    dropped = sorted(tensors)[1]
    for label, edit in [("missing", lambda t: t.pop(dropped)), ("unexpected", lambda t: t.update(extra=t[dropped].clone()))]:
        broken = tmp_path / label
        shutil.copytree(source, broken)
        changed = dict(tensors)
        edit(changed)
        save_file(changed, broken / "model.safetensors", metadata={"format": "pt"})
        with pytest.raises(RuntimeError, match=f"{label} tensor\\(s\\) \\['{dropped if label == 'missing' else 'extra'}'\\]"):
            load_state(model, optimizer, broken)


def test_training_prints_progress_lines_on_stdout(tmp_path, capsys):
    """Someone tailing a job's stdout sees step, loss, tokens/s and ETA (the tqdm bar is stderr only)."""
    import numpy as np

    from helpers.evaluation import tiny_lm
    from wsm_exp.study.trainer import build_optimizer, train_segment

    folder = tiny_lm(tmp_path / "lm")
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokens = np.random.default_rng(0).integers(0, len(tokenizer), size=TRAIN.seq_len * 16)
    train_segment(model, build_optimizer(model, TRAIN), tokenizer, tokens, cfg=TRAIN, seed=0, start=0, end=3,
                  data_offset=0, lr_at=lambda step: 1e-3, folder=tmp_path / "run", save_every=3,
                  desc="stage1", progress_every_s=0.0)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("stage1: step")]
    assert [line.split(" (")[0] for line in lines] == ["stage1: step 1", "stage1: step 2", "stage1: step 3"]
    assert all("loss " in line and "tokens/s" in line and "ETA" in line for line in lines)
    assert lines[-1].endswith("ETA 0s") and "(3/3, 100%)" in lines[-1]
