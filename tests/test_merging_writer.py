"""The streaming safetensors writer: files any safetensors reader accepts, and refusals of misuse."""

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from wsm_exp.merging.writer import SafetensorsWriter


def test_written_file_reads_back_with_safetensors(tmp_path):
    tensors = {"a.weight": torch.randn(3, 5), "b.bias": torch.randn(7).to(torch.bfloat16),
               "c.ids": torch.arange(6, dtype=torch.int64).view(2, 3), "d.mask": torch.tensor([True, False, True])}
    path = tmp_path / "m.safetensors"
    entries = [(n, {torch.float32: "F32", torch.bfloat16: "BF16", torch.int64: "I64", torch.bool: "BOOL"}[t.dtype],
                tuple(t.shape)) for n, t in tensors.items()]
    with SafetensorsWriter(path, entries, {"format": "pt", "note": "x"}) as out:
        for name, tensor in tensors.items():
            out.write(name, tensor)
    loaded = load_file(path)
    assert loaded.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor)
    with safe_open(path, framework="pt") as handle:
        assert handle.metadata() == {"format": "pt", "note": "x"}


def test_out_of_order_wrong_shape_and_missing_tensors_are_refused(tmp_path):
    entries = [("a", "F32", (2,)), ("b", "F32", (3,))]
    with pytest.raises(ValueError, match="expected"), SafetensorsWriter(tmp_path / "1", entries, {}) as out:
        out.write("b", torch.zeros(3))
    with pytest.raises(ValueError, match="expected"), SafetensorsWriter(tmp_path / "2", entries, {}) as out:
        out.write("a", torch.zeros(4))
    with pytest.raises(ValueError, match="closed after 1 of 2"), SafetensorsWriter(tmp_path / "3", entries, {}) as out:
        out.write("a", torch.zeros(2))
