"""Checkpoint identities see every byte, are cached by (path, size, mtime_ns, inode), and come free with a merge."""

import json

import pytest
from helpers.merging import age, file_series, updates_series
from safetensors.torch import load_file, save_file

import wsm_exp.merging.identity as identity
from wsm_exp.merging.identity import IdentityCache, checkpoint_identity, file_digest, folder_identity
from wsm_exp.merging.merger import merge_plan
from wsm_exp.merging.plan import build_plan
from wsm_exp.merging.series import load_series, select_window


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    root = tmp_path / "identity-cache"
    monkeypatch.setenv("WSM_IDENTITY_CACHE", str(root))
    return root


@pytest.fixture
def hashed(monkeypatch):
    """Paths hashed from disk (a spy on the real file_digest)."""
    calls = []
    real = identity.file_digest

    def spy(path, header=None):
        calls.append(path)
        return real(path, header)

    monkeypatch.setattr(identity, "file_digest", spy)
    return calls


def test_every_byte_counts(tmp_path, cache_dir):
    file_series(tmp_path / "s", [1])
    (checkpoint,) = load_series(tmp_path / "s").checkpoints
    path = checkpoint.files[0]
    original = path.read_bytes()
    before = file_digest(path)
    changed = set()
    for offset in range(len(original) - 96, len(original)):  # every byte of the last tensors' data
        data = bytearray(original)
        data[offset] ^= 0x01
        path.write_bytes(bytes(data))
        changed.add(file_digest(path))
    path.write_bytes(original)
    assert file_digest(path) == before and len(changed) == 96 and before not in changed


def test_config_json_is_part_of_a_folder_identity(tmp_path, cache_dir):
    updates_series(tmp_path / "s", [0])
    folder = tmp_path / "s" / "step_0"
    before = folder_identity(folder)
    config = json.loads((folder / "config.json").read_text())
    config["rope_theta"] = 1234.0
    (folder / "config.json").write_text(json.dumps(config))
    assert folder_identity(folder) != before


def test_identical_copies_share_an_identity(tmp_path, cache_dir):
    for name, seed in (("a", 0), ("b", 0), ("c", 5)):
        file_series(tmp_path / name, [1], seed=seed)
    ident = [checkpoint_identity(load_series(tmp_path / x).checkpoints[0]) for x in "abc"]
    assert ident[0] == ident[1] != ident[2]


def test_unchanged_files_are_not_read_again_across_processes(tmp_path, cache_dir, hashed):
    updates_series(tmp_path / "s", [0, 4], shard="20KB")
    age(tmp_path / "s")
    checkpoint = load_series(tmp_path / "s").checkpoints[0]
    first = checkpoint_identity(checkpoint)
    assert len(hashed) == len(checkpoint.files) > 1
    assert checkpoint_identity(checkpoint, IdentityCache(cache_dir)) == first  # a fresh memo: the disk entries
    assert len(hashed) == len(checkpoint.files)
    for entry in cache_dir.rglob("*.json"):  # an unreadable entry costs a re-hash, never a wrong answer
        entry.write_text("{half an entr")
    assert checkpoint_identity(checkpoint, IdentityCache(cache_dir)) == first
    assert len(hashed) == 2 * len(checkpoint.files)


def test_rewritten_file_is_hashed_again(tmp_path, cache_dir):
    file_series(tmp_path / "s", [1])
    age(tmp_path / "s")
    checkpoint = load_series(tmp_path / "s").checkpoints[0]
    before = checkpoint_identity(checkpoint)
    state = load_file(checkpoint.files[0])
    state["w"][0, 0] += 1  # same size, same inode: only the mtime tells
    save_file(state, checkpoint.files[0])
    assert checkpoint_identity(checkpoint) != before


def test_freshly_written_files_are_not_cached(tmp_path, cache_dir, hashed):
    """Racy: a rewrite within the file system's timestamp granularity could keep size, mtime and inode."""
    file_series(tmp_path / "s", [1])
    checkpoint = load_series(tmp_path / "s").checkpoints[0]
    assert checkpoint_identity(checkpoint) == checkpoint_identity(checkpoint)
    assert len(hashed) == 2 and not list(cache_dir.rglob("*.json"))


def test_a_merge_identifies_its_inputs_without_a_second_read(tmp_path, cache_dir, hashed, monkeypatch):
    updates_series(tmp_path / "s", [0, 4, 8], shard="20KB")
    age(tmp_path / "s")
    window = select_window(load_series(tmp_path / "s"), quantity=3)
    plan = build_plan(window, curve="1-sqrt", identify=False)
    result = merge_plan(plan, tmp_path / "out", progress=False)
    assert hashed == []  # every input byte was hashed from the tensors the merge read
    assert build_plan(window, curve="1-sqrt").key == result.key  # now from the cache alone
    assert hashed == []
    record = json.loads((tmp_path / "out" / "merge.json").read_text())
    assert [c["identity"] for c in record["checkpoints"]] == list(build_plan(window).identities)
    monkeypatch.setenv("WSM_IDENTITY_CACHE", str(tmp_path / "other-cache"))  # cold: hash from disk, same answer
    assert [checkpoint_identity(c) for c in window.checkpoints] == list(build_plan(window).identities)
    assert len(hashed) == 3 * len(window.checkpoints[0].files)
