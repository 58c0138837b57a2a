"""Real faults during a merge: a full disk, a file-size limit, an input shrinking mid-read, a kill -9 (also of a
worker), a mistyped --out. Each ends with a one-paragraph error (or a clean next run) and nothing left behind."""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers.merging import WSM_MERGE, updates_series
from safetensors.torch import save_file

import wsm_exp.merging.output as output_module
from wsm_exp.cli.merge import main
from wsm_exp.merging.cache import exclusive, merge_or_reuse, remove_stale
from wsm_exp.merging.merger import merge_checkpoints
from wsm_exp.merging.plan import build_plan
from wsm_exp.merging.series import load_series, select_window

# Runs wsm-merge's main() (or the merge stage) in a fresh process with a hook in the engine's reads:
# HOOK=truncate:<file> cuts <file> to 1000 bytes before the first read past a tensor's first piece;
# HOOK=kill sends SIGKILL to the process doing the second read; HOOK=kill-worker only in a worker.
HOOKED = textwrap.dedent("""
    import os, signal, sys
    import wsm_exp.merging.reader as reader
    action, _, victim = os.environ["HOOK"].partition(":")
    parent, reads, original = os.getpid(), [], reader.TensorReader.read
    def read(self, index, name, start, stop, **kw):
        reads.append(name)
        if action == "truncate" and start > 0:
            os.truncate(victim, 1000)
        if action == "kill" and len(reads) == 2 or action == "kill-worker" and os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, index, name, start, stop, **kw)
    reader.TensorReader.read = read
    if sys.argv[1] in ("stage", "job"):  # stage|job <series> <merges folder>
        from pathlib import Path
        from wsm_exp.merging.cache import merge_or_reuse
        from wsm_exp.merging.plan import build_plan
        from wsm_exp.merging.series import load_series, select_window
        from wsm_exp.sweep.stage.merge_stage import merge_into_cache
        plan = build_plan(select_window(load_series(sys.argv[2]), quantity=2), curve="mean")
        if sys.argv[1] == "stage":
            merge_into_cache([(Path(sys.argv[3]), plan)])
        else:
            merge_or_reuse(plan, sys.argv[3], progress=False)
    else:
        from wsm_exp.cli.merge import main
        sys.exit(main(sys.argv[1:]))
""")


def hooked(hook: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", HOOKED, *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "HOOK": hook})


def big_series(root: Path) -> Path:
    """Two checkpoints of two 2 MiB tensors (four pieces each), as single safetensors files."""
    root.mkdir(parents=True)
    gen = torch.Generator().manual_seed(0)
    for step in (1, 2):
        save_file({"a": torch.randn(1024, 512, generator=gen), "w": torch.randn(1024, 512, generator=gen)},
                  root / f"step_{step}.safetensors")
    return root


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    root = tmp_path_factory.mktemp("series")
    updates_series(root, [0, 10])
    return root


# --overwrite replaces only what wsm-exp wrote


def test_overwrite_refuses_a_folder_with_the_users_files(series, tmp_path, capsys):
    out = tmp_path / "notes"
    (out / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    assert main([str(series), "--quantity", "2", "--out", str(out), "--overwrite", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{out} is not one (no merge.json" in err and "Nothing was deleted" in err and err.count("\n") == 1
    assert (out / "notes.txt").read_text() == "mine" and (out / "sub").is_dir()


def test_overwrite_refuses_a_merge_output_the_user_added_to(series, tmp_path, capsys):
    out = tmp_path / "m"
    assert main([str(series), "--quantity", "2", "--out", str(out), "--quiet"]) == 0
    assert main([str(series), "--quantity", "2", "--out", str(out), "--overwrite", "--quiet"]) == 0  # replaced
    (out / "eval").mkdir()
    (out / "scores.txt").write_text("mine")
    assert main([str(series), "--quantity", "2", "--out", str(out), "--overwrite", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "also holds what a merge did not write: eval/, scores.txt." in err
    assert (out / "scores.txt").read_text() == "mine" and (out / "model.safetensors").is_file()
    assert leftovers(tmp_path) == []


# disk full, file-size limit


class _FullOnClose:
    """A file whose buffered bytes never reach the disk: flush and close fail with ENOSPC (the file is closed)."""

    def __init__(self, file):
        self.file = file

    def write(self, data):
        return len(memoryview(data))  # buffered, as a page cache accepts writes it cannot flush

    def fileno(self):
        return self.file.fileno()

    def flush(self):
        raise OSError(errno.ENOSPC, "No space left on device")

    def close(self):
        self.file.close()
        raise OSError(errno.ENOSPC, "No space left on device")


def test_enospc_on_close_leaves_no_temporary(tmp_path, monkeypatch):
    updates_series(tmp_path / "s", [0, 4])
    cks = load_series(tmp_path / "s").checkpoints

    class FullDisk(output_module.SafetensorsWriter):
        def __init__(self, path, entries, metadata):
            super().__init__(path, entries, metadata)
            self._file = _FullOnClose(self._file)

    monkeypatch.setattr(output_module, "SafetensorsWriter", FullDisk)
    with pytest.raises(OSError, match="No space left"):
        merge_checkpoints(cks, [0.5, 0.5], tmp_path / "out", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_full_tmpfs_leaves_no_temporary(series, tmp_path):
    """A real full disk: a 64 KiB tmpfs (in a user and mount namespace) and a ~110 KB merge."""
    disk = tmp_path / "disk"
    disk.mkdir()
    script = (f"mount -t tmpfs -o size=64k tmpfs {disk} || exit 77; {WSM_MERGE} {series} --quantity 2 --quiet "
              f"--out {disk}/m; echo rc=$?; ls -A {disk}")
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True)
    if done.returncode == 77 or "unshare" in done.stderr[:40]:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()[:200]}")
    assert "rc=2" in done.stdout and done.stdout.strip().endswith("rc=2"), done  # nothing listed after rc
    assert "No space left on device" in done.stderr and "free space" in done.stderr and "Traceback" not in done.stderr


def test_file_size_limit_is_a_clean_error(series, tmp_path):
    """RLIMIT_FSIZE below the shard's size: EFBIG (Python ignores SIGXFSZ), not a killed process."""
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))

    done = subprocess.run([WSM_MERGE, series, "--quantity", "2", "--quiet", "--out", tmp_path / "m"],
                          capture_output=True, text=True, preexec_fn=limit)
    assert done.returncode == 2, done
    assert "File too large" in done.stderr and "ulimit -f" in done.stderr and done.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# an input that shrinks while it is read; worker failures


@pytest.mark.parametrize("workers", ["1", "2"])
def test_input_truncated_mid_merge_is_a_clean_error(tmp_path, workers):
    root = big_series(tmp_path / "s")
    victim = root / "step_2.safetensors"
    done = hooked(f"truncate:{victim}", root, "--quantity", "2", "--quiet", "--out", tmp_path / "m",
                  "--workers", workers, "--shard-size", "0.001")
    assert done.returncode == 2, done  # not 135 (SIGBUS)
    assert done.stderr.startswith(f"wsm-merge: error: {victim} ")  # a worker may see it first in the header
    assert "got shorter while the merge read it" in done.stderr or "a truncated file" in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_a_killed_worker_is_a_clean_error(tmp_path):
    root = big_series(tmp_path / "s")
    done = hooked("kill-worker", root, "--quantity", "2", "--quiet", "--out", tmp_path / "m", "--workers", "2",
                  "--shard-size", "0.001")
    assert done.returncode == 2, done
    assert done.stderr.startswith("wsm-merge: error: A merge worker process ended abruptly")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


# kill -9: the next run on the cache removes what the killed one left


def test_stage_killed_mid_merge_is_cleaned_by_the_next_run(tmp_path):
    root = big_series(tmp_path / "s")
    merges = tmp_path / "merges"
    done = hooked("kill", "stage", root, merges)
    assert done.returncode == -9, done
    left = leftovers(merges)
    assert len(left) == 1 and left[0].startswith("..stage.tmp-"), left  # the stage's own temporary, half written
    alive = merges / f".other.tmp-{socket.gethostname()}-{os.getpid()}-0badf00d"  # a live writer's: kept
    alive.mkdir()
    again = hooked("none", "stage", root, merges)  # the next stage on this cache
    assert again.returncode == 0, again
    assert leftovers(merges) == [alive.name] and len(list(merges.glob("*/merge.json"))) == 1


def test_job_killed_mid_merge_is_cleaned_by_the_next_run(tmp_path):
    root = big_series(tmp_path / "s")
    merges = tmp_path / "merges"
    done = hooked("kill", "job", root, merges)
    assert done.returncode == -9, done
    assert [n.rsplit(".", 1)[-1][:4] for n in leftovers(merges)] == ["lock", "tmp-"]  # .<key>.lock, .<key>.tmp-…
    other = build_plan(select_window(load_series(root), quantity=2), weights=[0.25, 0.75])  # another key
    merge_or_reuse(other, merges, progress=False)
    assert leftovers(merges) == [] and [p.name for p in merges.iterdir()] == [other.identified().key]


def test_remove_stale_keeps_held_locks_and_other_hosts(tmp_path, dead_pid):
    (tmp_path / f".k.tmp-{socket.gethostname()}-{dead_pid}-0badf00d").mkdir()
    (tmp_path / f".k.tmp-elsewhere-{dead_pid}-0badf00d").mkdir()
    (tmp_path / ".old.lock").touch()
    (tmp_path / "key").mkdir()
    with exclusive(tmp_path / ".held.lock"):
        removed = remove_stale(tmp_path)
        assert sorted(p.name for p in removed) == [".k.tmp-" + f"{socket.gethostname()}-{dead_pid}-0badf00d",
                                                   ".old.lock"]
        assert sorted(p.name for p in tmp_path.iterdir()) == [".held.lock", f".k.tmp-elsewhere-{dead_pid}-0badf00d",
                                                              "key"]


def test_outputs_are_recorded_for_overwrite(series, tmp_path):
    """merge.json lists every file the merge wrote (what --overwrite may replace)."""
    assert main([str(series), "--quantity", "2", "--out", str(tmp_path / "m"), "--quiet"]) == 0
    output = json.loads((tmp_path / "m" / "merge.json").read_text())["output"]
    assert sorted(["merge.json", *output["files"], *output["side_files"]]) == sorted(
        p.name for p in (tmp_path / "m").iterdir())
    assert "config.json" in output["side_files"]


def completed_calls(trace: str) -> list[str]:
    """The successful calls of an ``strace -f`` trace in the order they returned, a call that another thread
    interrupted (``<unfinished ...>`` … ``<... fsync resumed>``) joined back into one line."""
    pending, calls = {}, []
    for line in trace.splitlines():
        pid, call = line.split(None, 1)
        if call.endswith("<unfinished ...>"):
            pending[pid] = call[: -len("<unfinished ...>")].rstrip()
            continue
        if call.startswith("<... ") and pid in pending:
            call = pending.pop(pid) + call.split(">", 1)[1]
        if " = 0" in call:
            calls.append(call)
    return calls


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace to see the real syscalls")
def test_outputs_are_fsynced_before_the_rename_and_the_folder_after(series, tmp_path):
    """Traced syscalls of the real command: every output file and the temporary folder are fsynced before
    the rename that publishes them, the parent folder after it (durable across a power loss)."""
    trace = tmp_path / "trace"
    done = subprocess.run(["strace", "-f", "-y", "-o", trace, "-e", "trace=fsync,rename,renameat,renameat2",
                           WSM_MERGE, series, "--quantity", "2", "--quiet", "--out", tmp_path / "m"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    calls = completed_calls(trace.read_text())
    rename = next(i for i, c in enumerate(calls) if c.startswith("rename") and f'"{tmp_path / "m"}"' in c)
    tmp = calls[rename].split('"')[1]
    synced = {c.split("<", 1)[1].split(">", 1)[0] for c in calls[:rename] if c.startswith("fsync(")}
    written = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert {f"{tmp}/{name}" for name in written} | {tmp} <= synced, (written, synced)
    assert any(c.startswith("fsync(") and f"<{tmp_path}>" in c for c in calls[rename:])
