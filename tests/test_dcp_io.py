"""DCP checkpoints written by torch: read tensor by tensor, checked metadata, refused untrusted pickles."""

from __future__ import annotations

import pickle
import random

import pytest
import torch

from dcp_helpers import save_sharded, save_single, state
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
