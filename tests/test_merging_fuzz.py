"""Malformed checkpoints, fuzzed: the checked header reader and the real `wsm-merge` on mutated safetensors files.

Every case starts from a valid file written by the safetensors library and mutates it (seeded): a cut at any
byte, random bytes anywhere (the 8-byte length included), a lying length, headers whose offsets, shapes or
dtypes lie, duplicate and overlapping tensors, bad metadata, trailing bytes, empty files. The safetensors
library itself is the oracle: whatever it refuses, ``read_header`` must refuse too, with a ``CheckpointError``
(no other exception) naming the file on one line; whatever ``read_header`` accepts, safetensors loads with
the same names, dtypes and shapes. Mutations that cannot give a valid file must be refused outright.
"""

import json
import random
import struct
import subprocess
import tracemalloc

import pytest
import torch
from helpers.merging import WSM_MERGE
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from wsm_exp.merging.st_io import CheckpointError, read_header

ST_NAME = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.int64: "I64"}


def valid_file(rng: random.Random) -> bytes:
    """A small valid safetensors file: 1-4 tensors of mixed dtypes, no zero-sized dimension."""
    gen = torch.Generator().manual_seed(rng.randrange(1 << 30))
    tensors = {}
    for i in range(rng.randint(1, 4)):
        shape = [rng.randint(1, 4) for _ in range(rng.randint(0, 2))]
        dtype = rng.choice(list(ST_NAME))
        value = (torch.randn(shape, generator=gen) if dtype.is_floating_point
                 else torch.randint(0, 9, shape, generator=gen))
        tensors[f"layer{i}.weight"] = value.to(dtype)
    return st_save(tensors, metadata={"format": "pt"})


def split(data: bytes) -> tuple[dict, bytes]:
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + length]), data[8 + length:]


def join(header_text: str, body: bytes) -> bytes:
    raw = header_text.encode()
    return struct.pack("<Q", len(raw)) + raw + body


def tensor_names(header: dict) -> list[str]:
    return [k for k in header if k != "__metadata__"]


# Each mutation returns (bytes, must_be_refused).
def cut(data, rng):
    return data[:rng.randrange(len(data))], True


def flip_bytes(data, rng):
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out), False


def flip_length(data, rng):
    out = bytearray(data)
    out[rng.randrange(8)] ^= 1 << rng.randrange(8)
    return bytes(out), True


def lying_length(data, rng):
    (length,) = struct.unpack("<Q", data[:8])
    lie = rng.choice([0, 1, length + 1, length + 8, len(data), 2**40, 2**63 + 5, 2**64 - 1])
    return struct.pack("<Q", lie) + data[8:], lie != length


def trailing_bytes(data, rng):
    return data + bytes(rng.randrange(256) for _ in range(rng.randint(1, 16))), True


def empty(data, rng):
    return data[:rng.choice([0, 1, 7, 8])], True


def lying_offsets(data, rng):
    header, body = split(data)
    info = header[rng.choice(tensor_names(header))]
    begin, end = info["data_offsets"]
    info["data_offsets"] = rng.choice([[begin + 1, end + 1], [begin, end + rng.choice([-1, 1, 8])], [end, begin + 0.5],
                                       [begin - 1, end], [begin, len(body) + 64], [begin], "0,4", [str(begin), end]])
    if info["data_offsets"] == [begin, end]:
        info["data_offsets"] = [begin, end + 1]
    return join(json.dumps(header), body), True


def lying_shape(data, rng):
    header, body = split(data)
    info = header[rng.choice(tensor_names(header))]
    info["shape"] = rng.choice([[*info["shape"], 2], [d + 1 for d in info["shape"]] or [2], [-1, *info["shape"]],
                                [1.5], [True], "3", None, [2**70]])
    return join(json.dumps(header), body), True


def lying_dtype(data, rng):
    header, body = split(data)
    info = header[rng.choice(tensor_names(header))]
    size = {"F32": 4, "BF16": 2, "F16": 2, "I64": 8}[info["dtype"]]
    info["dtype"] = rng.choice(["F99", "", 7, None, "f32", *[d for d, s in {"F64": 8, "F32": 4, "F16": 2,
                                                                          "U8": 1}.items() if s != size]])
    return join(json.dumps(header), body), True


def duplicate_tensor(data, rng):
    header, body = split(data)
    name = rng.choice(tensor_names(header))
    text = json.dumps(header)
    entry = json.dumps({name: header[name]})[1:-1]
    return join(text[:-1] + ", " + entry + "}", body), True


def overlapping_tensor(data, rng):
    header, body = split(data)
    name = rng.choice(tensor_names(header))
    header["extra.weight"] = dict(header[name])
    return join(json.dumps(header), body), True


def bad_metadata(data, rng):
    header, body = split(data)
    header["__metadata__"] = rng.choice([{"format": 1}, ["pt"], "pt", {"format": {"x": "y"}}, None])
    return join(json.dumps(header), body), True


def not_an_object(data, rng):
    header, body = split(data)
    text = rng.choice([json.dumps(list(header.items())), json.dumps(header)[:-1], " " + json.dumps(header),
                       "\xff" + json.dumps(header), '"a string"', "{}x"])
    raw = text.encode("latin-1") if text.startswith("\xff") else text.encode()
    return struct.pack("<Q", len(raw)) + raw + body, True


MUTATIONS = [cut, flip_bytes, flip_length, lying_length, trailing_bytes, empty, lying_offsets, lying_shape,
             lying_dtype, duplicate_tensor, overlapping_tensor, bad_metadata, not_an_object]
CASES = 650


def fuzz_case(seed: int) -> tuple[str, bytes, bool]:
    rng = random.Random(seed)
    mutation = MUTATIONS[seed % len(MUTATIONS)]
    data, must_fail = mutation(valid_file(rng), rng)
    return mutation.__name__, data, must_fail


def test_checked_reader_agrees_with_safetensors_on_mutated_files(tmp_path):
    path = tmp_path / "model.safetensors"
    refused = 0
    for seed in range(CASES):
        name, data, must_fail = fuzz_case(seed)
        path.write_bytes(data)
        try:
            theirs = st_load(data)
        except Exception:  # noqa: BLE001 — any refusal by the library
            theirs = None
        try:
            header = read_header(path)
        except CheckpointError as err:
            message = str(err)
            assert str(path) in message and "\n" not in message and "Traceback" not in message, (seed, message)
            refused += 1
            continue
        assert not must_fail, f"seed {seed} ({name}) must be refused"
        assert theirs is not None, f"seed {seed} ({name}): accepted a file safetensors refuses"
        assert {k: (i.dtype, i.shape) for k, i in header.tensors.items()} == {
            k: (ST_NAME[t.dtype], tuple(t.shape)) for k, t in theirs.items()}, seed
    assert refused > CASES * 0.8  # most mutations break the file; flipped data bytes may not


@pytest.mark.parametrize("length", [2**40, 2**62, 2**64 - 1])
def test_lying_length_allocates_nothing(tmp_path, length):
    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", length) + b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}' + bytes(4))
    tracemalloc.start()
    with pytest.raises(CheckpointError, match="declare"):
        read_header(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20


def test_wsm_merge_on_malformed_files_exits_2_naming_the_file(tmp_path):
    """A sample of refused cases through the real console script: exit 2, one paragraph, nothing written."""
    valid = valid_file(random.Random(0))
    sample = [case for case in (fuzz_case(seed) for seed in range(CASES)) if case[2]][::23][:20]
    assert len(sample) == 20
    for index, (name, data, _) in enumerate(sample):
        series = tmp_path / f"series{index}"
        series.mkdir()
        (series / "checkpoint-1.safetensors").write_bytes(valid)
        bad = series / "checkpoint-2.safetensors"
        bad.write_bytes(data)
        out = tmp_path / f"out{index}"
        run = subprocess.run([WSM_MERGE, str(series), "--quantity", "2", "--out", str(out), "--quiet"],
                             capture_output=True, text=True)
        assert run.returncode == 2, (name, run.stderr)
        assert run.stderr.startswith("wsm-merge: error: ") and run.stderr.count("\n") == 1, (name, run.stderr)
        assert str(bad) in run.stderr and "Traceback" not in run.stderr, (name, run.stderr)
        assert not out.exists() and not list(tmp_path.glob(f".out{index}*"))
