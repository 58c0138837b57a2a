"""Atomic publishing helpers: temporaries of killed writers are cleaned, live ones are not."""

import os
import socket

from wsm_exp.atomic import remove_stale_temps, temp_path


def test_stale_temporaries_of_dead_local_writers_are_removed(tmp_path, dead_pid):
    target = tmp_path / "model"
    host = socket.gethostname()
    stale = tmp_path / f".model.tmp-{host}-{dead_pid}-0badf00d"
    live = tmp_path / f".model.tmp-{host}-{os.getpid()}-0000cafe"
    remote = tmp_path / f".model.tmp-other-host-{dead_pid}-12345678"  # another node on a shared disk
    other = tmp_path / f".model2.tmp-{host}-{dead_pid}-deadbeef"  # another target
    for folder in (stale, live, remote, other):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"partial")
    assert remove_stale_temps(target) == [stale]
    assert not stale.exists() and live.exists() and remote.exists() and other.exists()
    assert temp_path(target).name.startswith(f".model.tmp-{host}-{os.getpid()}-")
