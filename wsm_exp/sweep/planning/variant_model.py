"""The model a variant is evaluated on: a checkpoint, a cached merge, or a merge held in memory.

``variant_model`` is the one place a variant's weights are found or made, for the job
(``run.job``) and the screen pass (``stage.screen``) alike: a single checkpoint is evaluated where it
lies; a merge (or a DCP checkpoint's conversion, ``planning.hf_pairing``) is taken from the merge
cache or merged into it, unless ``merge.keep=false`` and it is not cached: then it is merged into
memory (``merging.memory_sink``) and dropped afterwards, nothing written. The score key is the
same either way (the plan's key), so a merge kept and one never written share their scores.

Example:
    >>> from wsm_exp.sweep.planning.variant_model import variant_model   # with variant_model(...) as (model, key, s): ...
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from wsm_exp.merging.series import Checkpoint
from wsm_exp.sweep.planning import hf_pairing
from wsm_exp.sweep.planning.variant_merge import needs_merge, variant_plan
from wsm_exp.sweep.spec.variants import Variant


@contextmanager
def variant_model(variant: Variant, checkpoints: Sequence[Checkpoint], *, tokens_per_step: int | None,
                  hf_config: Path | None, merges: Path, keep: bool, shard_size_bytes: int,
                  identity, fitted: tuple[list[float], dict[str, Any]] | None = None) -> Iterator[tuple[Any, str, float]]:
    """(model folder or ``ModelInMemory``, its score key, merge seconds) for the time of the ``with``.

    ``identity(checkpoint)`` gives a checkpoint's content identity (the key of an unmerged model); ``fitted``:
    a fitted variant's (weights, provenance)."""
    if not (needs_merge(variant) or hf_config is not None):
        yield Path(checkpoints[0].path), identity(checkpoints[0]), 0.0
        return
    from wsm_exp.evaluation.in_memory import from_merge
    from wsm_exp.merging.cache import merge_or_reuse
    from wsm_exp.merging.memory_sink import merge_in_memory

    plan = (variant_plan(variant, checkpoints, tokens_per_step, fitted=fitted) if needs_merge(variant)
            else hf_pairing.conversion_plan(checkpoints[0])).identified()
    folder = hf_pairing.merges_dir(merges, hf_config)
    options = {"provenance": variant.merge_provenance, "hf_config": hf_config, "shard_size_bytes": shard_size_bytes}
    key = plan.key if hf_config is None else hf_pairing.model_hash(plan.key, hf_config)
    if keep or (folder / plan.key / "merge.json").is_file():
        merged = merge_or_reuse(plan, folder, **options)
        yield merged.out_dir, key, merged.seconds
        return
    with merge_in_memory(plan, progress=False, **options) as in_memory:  # merge.keep=false: nothing written
        yield from_merge(in_memory), key, in_memory.result.seconds


__all__ = ["variant_model"]
