"""Checkpoint identity cost: full-content hashing vs a plain read of the same bytes, and the cached lookup.

    .venv/bin/python benchmarks/identity_benchmark.py [--params 250e6] [--repeats 3]

Generates two ``--params``-parameter fp32 checkpoints (merge_benchmark.py's Llama layout) in a temp
folder, backdated so their identities may be cached. For each read the page cache is dropped first
(``/proc/sys/vm/drop_caches``, needs root; without it every number is warm-cache and the table says
so), then the file is read in 16 MiB chunks: with no hash (the baseline), with the project's
``identity.file_digest`` (XXH3-128), and with sha256 and blake2b in the same loop (the alternatives).
Then: the warm-page-cache versions, ``checkpoint_identity`` through a fresh on-disk cache (a new
process's lookup: stat + one small JSON per file) and through the in-process memo, and a merge of the
two checkpoints with input identities unknown (hashed while streaming) vs already cached, taking
turns, in wall and CPU time (CPU time is the steadier one on a shared machine). Prints markdown;
medians over ``--repeats``. Not a test: timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from merge_benchmark import make_series  # noqa: E402

from wsm_exp.merging import identity  # noqa: E402
from wsm_exp.merging.identity import IdentityCache, checkpoint_identity, file_digest  # noqa: E402
from wsm_exp.merging.merger import merge_plan  # noqa: E402
from wsm_exp.merging.plan import build_plan  # noqa: E402
from wsm_exp.merging.series import load_series  # noqa: E402

CHUNK = identity.CHUNK


def drop_page_cache() -> bool:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def read_with(path: Path, make_hash) -> None:
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    h = make_hash() if make_hash else None
    with open(path, "rb", buffering=0) as handle:
        while n := handle.readinto(buffer):
            if h is not None:
                h.update(view[:n])


def timed(fn, repeats: int, cold: bool) -> float:
    times = []
    for _ in range(repeats):
        if cold:
            drop_page_cache()
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=float, default=250e6, help="parameters per checkpoint")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=Path.home()) as tmp:
        work = Path(tmp)
        make_series(work / "series", int(args.params), 2, torch.float32)
        old = time.time() - 3600
        for file in (work / "series").rglob("*"):
            os.utime(file, (old, old))
        checkpoints = load_series(work / "series").checkpoints
        path = checkpoints[0].files[0]
        gb = path.stat().st_size / 1e9
        cold = drop_page_cache()
        readers = {
            "plain read (no hash)": lambda: read_with(path, None),
            "identity.file_digest (XXH3-128)": lambda: file_digest(path),
            "same loop, sha256": lambda: read_with(path, hashlib.sha256),
            "same loop, blake2b": lambda: read_with(path, hashlib.blake2b),
        }
        print(f"checkpoint: {gb:.2f} GB ({args.params:.3g} fp32 parameters); page cache "
              f"{'dropped before each cold read' if cold else 'NOT droppable here: cold rows are warm'}\n")
        print("| read of one checkpoint | cold s | cold GB/s | cold × plain | warm s | warm GB/s | warm × plain |")
        print("|---|---|---|---|---|---|---|")
        base = {}
        for name, fn in readers.items():
            fn()  # warm-up
            row = {mode: timed(fn, args.repeats, mode == "cold") for mode in ("cold", "warm")}
            base = base or row
            print(f"| {name} | {row['cold']:.2f} | {gb / row['cold']:.2f} | {row['cold'] / base['cold']:.2f} | "
                  f"{row['warm']:.3f} | {gb / row['warm']:.2f} | {row['warm'] / base['warm']:.2f} |", flush=True)

        cache_root = work / "identity-cache"
        checkpoint_identity(checkpoints[0], IdentityCache(cache_root))  # fills the disk cache
        disk = timed(lambda: checkpoint_identity(checkpoints[0], IdentityCache(cache_root)), 20, False)
        memo_cache = IdentityCache(cache_root)
        checkpoint_identity(checkpoints[0], memo_cache)
        memo = timed(lambda: checkpoint_identity(checkpoints[0], memo_cache), 20, False)
        print("\n| cached lookup of one checkpoint | ms |\n|---|---|")
        print(f"| fresh cache object, as in a new process (stat + one JSON entry per file, config.json hashed) "
              f"| {disk * 1e3:.2f} |\n| same process (memo) | {memo * 1e3:.2f} |")

        variants = {"inputs hashed while streaming": False, "input identities cached": True}
        runs = {label: [] for label in variants}
        for repeat in range(args.repeats):  # round-robin, so a slow spell hits both
            for label, identified in variants.items():
                os.environ["WSM_IDENTITY_CACHE"] = str(work / f"merge-cache-{identified}-{repeat}")
                plan = build_plan(checkpoints, curve="mean", identify=identified)
                wall, cpu = time.perf_counter(), time.process_time()
                merge_plan(plan, work / "out", overwrite=True, progress=False)
                runs[label].append((time.perf_counter() - wall, time.process_time() - cpu))
        print("\n| merge of the two checkpoints (warm page cache) | median wall s | median CPU s |\n|---|---|---|")
        for label, times in runs.items():
            print(f"| {label} | {statistics.median(t[0] for t in times):.2f} | "
                  f"{statistics.median(t[1] for t in times):.2f} |")


if __name__ == "__main__":
    main()
