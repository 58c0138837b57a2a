"""DCP checkpoints written by torch: read tensor by tensor, checked metadata, refused untrusted pickles."""

from __future__ import annotations

import pickle
import random

import pytest
import torch

from helpers.dcp import save_sharded, save_single, state
from wsm_exp.merging.dcp_io import METADATA_FILE, DcpCheckpoint, is_dcp
from wsm_exp.merging.st_io import CheckpointError


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dcp") / "step_10"
    save_single(folder, state(1))
    return folder


def test_single_process_dcp_reads_back_every_tensor(single):
    assert is_dcp(single)
    ckpt = DcpCheckpoint.open(single)
    expected = state(1)
    assert ckpt.layout() == {"embed.weight": ("F32", (8, 6)), "layer.bias": ("F32", (6,)),
                             "half.weight": ("BF16", (4, 3)), "step_count": ("I64", (1,))}
    for name, tensor in expected.items():
        assert torch.equal(ckpt.get_tensor(name), tensor)
    assert ckpt.files[0].name == METADATA_FILE and all(f.suffix == ".distcp" for f in ckpt.files[1:])


@pytest.mark.slow
def test_two_ranks_sharded_dcp_is_assembled_from_both_files(tmp_path):
    save_sharded(tmp_path / "step_20", seed=2)
    ckpt = DcpCheckpoint.open(tmp_path / "step_20")
    assert sorted(f.name for f in ckpt.files[1:]) == ["__0_0.distcp", "__1_0.distcp"]
    assert len(ckpt.tensors["embed.weight"][2]) == 2  # one chunk per rank
    for name, tensor in state(2).items():
        assert torch.equal(ckpt.get_tensor(name), tensor), name


def _copy(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_malformed_metadata_gets_one_clear_error(single, tmp_path):
    raw = (single / METADATA_FILE).read_bytes()
    rng = random.Random(0)
    cases = [raw[:n] for n in sorted(rng.sample(range(len(raw)), 150))]
    cases += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))) for _ in range(100)]
    for _ in range(150):  # flipped bytes inside a real file
        b = bytearray(raw)
        for _ in range(rng.randrange(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        cases.append(bytes(b))
    folder = _copy(single, tmp_path / "step_10")
    opened = 0
    for case in cases:
        (folder / METADATA_FILE).write_bytes(case)
        try:
            ckpt = DcpCheckpoint.open(folder)
        except CheckpointError as err:
            message = str(err)
            assert str(folder) in message and "\n" not in message and "Traceback" not in message
            continue
        opened += 1  # a flip in a harmless byte (e.g. a uuid): every tensor must still read back or fail clearly
        for name in ckpt.keys():
            try:
                ckpt.get_tensor(name)
            except CheckpointError as err:
                assert str(folder) in str(err)
    assert opened < len(cases) // 2


class _Boom:
    def __reduce__(self):
        return (print, ("pwned",))


def test_metadata_naming_code_is_refused_unread(single, tmp_path, capsys):
    folder = _copy(single, tmp_path / "step_10")
    (folder / METADATA_FILE).write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(CheckpointError, match="builtins.print, which is not part of DCP metadata"):
        DcpCheckpoint.open(folder)
    assert "pwned" not in capsys.readouterr().out


def test_metadata_pointing_outside_the_folder_or_past_a_file_is_refused(single, tmp_path):
    metadata = pickle.loads((single / METADATA_FILE).read_bytes())  # our own file: trusted here
    key = next(iter(metadata.storage_data))
    for field, value, expect in [("relative_path", "../../etc/passwd", "not a __<rank>_<k>.distcp"),
                                 ("length", 10**9, "truncated copy")]:
        folder = _copy(single, tmp_path / f"bad-{field}")
        bad = pickle.loads((single / METADATA_FILE).read_bytes())
        setattr(bad.storage_data[key], field, value)
        (folder / METADATA_FILE).write_bytes(pickle.dumps(bad))
        with pytest.raises(CheckpointError, match=expect):
            DcpCheckpoint.open(folder)
    folder = _copy(single, tmp_path / "no-data")
    for f in folder.glob("*.distcp"):
        f.unlink()
    with pytest.raises(CheckpointError, match="which is missing"):
        DcpCheckpoint.open(folder)


@pytest.mark.slow
def test_dcp_series_merges_into_dcp_that_torch_loads_and_into_a_hugging_face_folder(tmp_path, monkeypatch):
    """A series of DCP checkpoints of a real tiny Llama: mean merge as DCP (dcp.load reads it) and as HF."""
    import torch.distributed.checkpoint as dcp
    from transformers import AutoModelForCausalLM

    from helpers.merging import tiny_model
    from wsm_exp.cli.merge import main
    from wsm_exp.merging.identity import folder_identity

    monkeypatch.setenv("WSM_IDENTITY_CACHE", str(tmp_path / "ids"))
    states = [tiny_model(seed).state_dict() for seed in range(3)]
    for step, sd in zip((10, 20, 30), states):
        save_single(tmp_path / "run" / f"step_{step}", sd)
    mean = {k: (states[0][k] * (1 / 3) + states[1][k] * (1 / 3) + states[2][k] * (1 / 3)) for k in states[0]}

    assert main([str(tmp_path / "run"), "--quantity", "3", "--out", str(tmp_path / "as-dcp"), "--quiet"]) == 0
    loaded = {k: torch.zeros_like(v) for k, v in states[0].items()}
    dcp.load(loaded, checkpoint_id=str(tmp_path / "as-dcp"), no_dist=True)
    for k in mean:
        torch.testing.assert_close(loaded[k], mean[k], rtol=0, atol=1e-6)
    record = __import__("json").loads((tmp_path / "as-dcp" / "merge.json").read_text())
    assert record["output"]["identity"] == folder_identity(tmp_path / "as-dcp")
    assert [c["step"] for c in record["checkpoints"]] == [10, 20, 30]
    assert all(c["identity"] for c in record["checkpoints"])

    hf = tmp_path / "hf"
    tiny_model(0).save_pretrained(hf)
    (hf / "model.safetensors").unlink()  # only config (and tokenizer files, if any) are taken from here
    assert main([str(tmp_path / "run"), "--quantity", "3", "--hf-config", str(hf), "--out", str(tmp_path / "as-hf"),
                 "--quiet"]) == 0
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "as-hf")
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded[k]), k  # the same merge, bit for bit, in either format


def test_damaged_dcp_checkpoint_fails_the_merge_cleanly(single, tmp_path, capsys):
    from wsm_exp.cli.merge import main

    run = tmp_path / "run"
    run.mkdir()
    _copy(single, run / "step_10")
    bad = _copy(single, run / "step_20")
    (bad / METADATA_FILE).write_bytes((bad / METADATA_FILE).read_bytes()[:100])
    assert main([str(run), "--quantity", "2", "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "step_20/.metadata is not valid DCP metadata" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_dcp_series_with_an_empty_tensor_merges(tmp_path, monkeypatch):
    """A zero-element tensor (an empty buffer some frameworks save) is merged, not a crash."""
    import torch.distributed.checkpoint as dcp

    from wsm_exp.cli.merge import main

    monkeypatch.setenv("WSM_IDENTITY_CACHE", str(tmp_path / "ids"))
    for step in (10, 20):
        save_single(tmp_path / "run" / f"step_{step}", state(step) | {"step_count": torch.tensor([0]),
                                                                      "empty": torch.zeros(0, 4)})
    assert main([str(tmp_path / "run"), "--quantity", "2", "--out", str(tmp_path / "out"), "--quiet"]) == 0
    loaded = {k: torch.zeros_like(v) for k, v in (state(0) | {"empty": torch.zeros(0, 4)}).items()}
    dcp.load(loaded, checkpoint_id=str(tmp_path / "out"), no_dist=True)
    assert loaded["empty"].shape == (0, 4)
    torch.testing.assert_close(loaded["layer.bias"], (state(10)["layer.bias"] + state(20)["layer.bias"]) / 2)
