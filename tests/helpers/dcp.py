"""DCP checkpoints written by torch itself: one process, or several gloo ranks each saving its shard."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp


def state(seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {"embed.weight": torch.randn(8, 6, generator=gen), "layer.bias": torch.randn(6, generator=gen),
            "half.weight": torch.randn(4, 3, generator=gen).to(torch.bfloat16),
            "step_count": torch.tensor([seed], dtype=torch.int64)}


def save_single(folder: Path, tensors: dict[str, torch.Tensor]) -> None:
    """One process, no process group (DCP then saves without collectives)."""
    dcp.save(tensors, checkpoint_id=str(folder), no_dist=True)


def _rank(rank: int, world: int, port: int, folder: str, seed: int) -> None:
    from torch.distributed.tensor import Shard, distribute_tensor, init_device_mesh

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        mesh = init_device_mesh("cpu", (world,))
        full = state(seed)
        sharded = {k: distribute_tensor(v, mesh, [Shard(0)]) if v.dim() and v.shape[0] % world == 0 else v
                   for k, v in full.items()}
        dcp.save(sharded, checkpoint_id=folder)
    finally:
        dist.destroy_process_group()


def save_sharded(folder: Path, seed: int, world: int = 2) -> None:
    """``world`` gloo ranks each write their row shard of ``state(seed)``: one .distcp file per rank."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_rank, args=(world, port, str(folder), seed), nprocs=world, join=True)
