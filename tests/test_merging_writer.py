"""The streaming safetensors writer: files any safetensors reader accepts, and refusals of misuse."""

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from wsm_exp.merging.dcp_io import to_numpy
from wsm_exp.merging.identity import file_digest
from wsm_exp.merging.writer import SafetensorsWriter


def test_written_file_reads_back_with_safetensors(tmp_path):
    tensors = {"a.weight": torch.randn(3, 5), "b.bias": torch.randn(7).to(torch.bfloat16),
               "c.ids": torch.arange(6, dtype=torch.int64).view(2, 3), "d.mask": torch.tensor([True, False, True])}
    path = tmp_path / "m.safetensors"
    entries = [(n, {torch.float32: "F32", torch.bfloat16: "BF16", torch.int64: "I64", torch.bool: "BOOL"}[t.dtype],
                tuple(t.shape)) for n, t in tensors.items()]
    with SafetensorsWriter(path, entries, {"format": "pt", "note": "x"}) as out:
        for name, tensor in tensors.items():
            data = to_numpy(tensor)
            for piece in np.array_split(data, 2):  # in pieces, as the merger writes
                out.write(name, piece)
    assert out.digest() == file_digest(path)
    loaded = load_file(path)
    assert loaded.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor)
    with safe_open(path, framework="pt") as handle:
        assert handle.metadata() == {"format": "pt", "note": "x"}


def test_out_of_order_wrong_shape_and_missing_tensors_are_refused(tmp_path):
    entries = [("a", "F32", (2,)), ("b", "F32", (3,))]
    with pytest.raises(ValueError, match="expected"), SafetensorsWriter(tmp_path / "1", entries, {}) as out:
        out.write("b", np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="expected"), SafetensorsWriter(tmp_path / "2", entries, {}) as out:
        out.write("a", np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="expected"), SafetensorsWriter(tmp_path / "4", entries, {}) as out:
        out.write("a", np.zeros(2, np.float64))  # a float entry's data must have its dtype
    with pytest.raises(ValueError, match="expected"), SafetensorsWriter(tmp_path / "5", entries, {}) as out:
        out.write("a", np.zeros(1, np.float32))
        out.write("b", np.zeros(3, np.float32))  # "a" is not complete yet
    with pytest.raises(ValueError, match="closed after 1 of 2"), SafetensorsWriter(tmp_path / "3", entries, {}) as out:
        out.write("a", np.zeros(2, np.float32))
