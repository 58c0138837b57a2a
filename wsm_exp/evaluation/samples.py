"""Per-document values behind each score: what paired tests between two models need.

lm-eval's per-sample outputs (``log_samples=True``) become tidy rows: task, doc_id, metric, value,
weight, source. ``source`` is the doc's own ``source`` field where the task declares one (the held-out
text a ~600-character piece was cut from, so errors can be clustered by it), else empty. A mean metric (acc, acc_norm, exact_match) keeps its per-document value with weight 1; a
bits-per-byte task keeps each document's bits per byte with its byte count as weight, so the
weighted mean Σ value·weight / Σ weight is exactly lm-eval's aggregate (total bits / total bytes).
Corpus-level metrics that are not such means (perplexities) are not kept. A sweep folder stores one
file per evaluated model, ``samples/<model_hash>.parquet``, written atomically.

Example:
    >>> rows = sample_rows("t", {"t": [{"doc_id": 0, "metrics": ["acc", "bits_per_byte"], "acc": 1.0,
    ...                                 "bits_per_byte": (-math.log(2) * 8, 4)}]})
    >>> [(r["metric"], r["value"], r["weight"]) for r in rows]
    [('acc', 1.0, 1.0), ('bits_per_byte', 2.0, 4.0)]
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from wsm_exp.atomic import temp_path

COLUMNS = {"task": "string", "doc_id": "string", "metric": "string", "value": "float64", "weight": "float64",
           "source": "string"}
BYTE_WEIGHTED = {"bits_per_byte"}  # (log-likelihood, bytes) per document, aggregated as total bits / total bytes
FOLDER = "samples"


def sample_rows(task: str, logged: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Rows of one task from ``simple_evaluate(...)["samples"]`` (subtask -> samples; groups have several)."""
    rows = []
    for subtask, samples in sorted(logged.items()):
        for sample in samples:
            doc_id = str(sample["doc_id"]) if len(logged) == 1 else f"{subtask}/{sample['doc_id']}"
            doc = sample.get("doc")
            source = str(doc["source"]) if isinstance(doc, dict) and doc.get("source") is not None else ""
            for metric in sample.get("metrics", []):
                value = sample.get(metric)
                if metric in BYTE_WEIGHTED and isinstance(value, (tuple, list)) and len(value) == 2:
                    loglikelihood, n_bytes = float(value[0]), float(value[1])
                    rows.append({"task": task, "doc_id": doc_id, "metric": metric,
                                 "value": -loglikelihood / (n_bytes * math.log(2)), "weight": n_bytes,
                                 "source": source})
                elif isinstance(value, (bool, int, float)) and metric not in {"perplexity", "byte_perplexity",
                                                                                "word_perplexity"}:
                    rows.append({"task": task, "doc_id": doc_id, "metric": metric, "value": float(value),
                                 "weight": 1.0, "source": source})
    return rows


def to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows in the samples schema (column order and dtypes)."""
    return pd.DataFrame(rows, columns=list(COLUMNS)).astype(COLUMNS)


def samples_path(sweep_dir: str | Path, model_hash: str) -> Path:
    """Where a model's per-document values live inside a sweep folder."""
    return Path(sweep_dir) / FOLDER / f"{model_hash}.parquet"


def write_samples(sweep_dir: str | Path, model_hash: str, frame: pd.DataFrame) -> Path:
    """Publish a model's samples atomically (readers see the old file or the new one)."""
    target = samples_path(sweep_dir, model_hash)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(target)
    try:
        to_frame(frame.to_dict("records")).to_parquet(tmp, index=False)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target
