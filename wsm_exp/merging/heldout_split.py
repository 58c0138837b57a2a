"""Deterministic fit/test split of a held-out jsonl file (``{"text": ...}`` per line) for fitted merge weights.

A document goes to the *fit* split when its seeded hash ``sha256(f"{seed}:{text}")`` ranks among the
lowest ``round(fit_fraction · n)`` (at least one document each side): the split depends on the texts and
the seed only, not on line order. Documents are named
by their 0-based position among the file's non-empty lines, so a report can say which ones each used.

Example:
    >>> import tempfile, json, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "heldout.jsonl"
    >>> _ = f.write_text("".join(json.dumps({"text": f"doc {i}"}) + "\\n" for i in range(6)))
    >>> s = split_heldout(f, fit_fraction=0.5, seed=0)
    >>> len(s.fit), len(s.test), sorted(s.fit + s.test) == list(range(6))
    (3, 3, True)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class HeldoutError(ValueError):
    """A held-out file that cannot be split: the message names the file, the line and the fix."""


@dataclass(frozen=True)
class HeldoutSplit:
    """The documents of a held-out file and which of them the fit and the test use (indices, ascending)."""

    path: Path
    digest: str  # sha256 of the file's bytes, first 16 hex digits
    texts: tuple[str, ...]
    fit: list[int]
    test: list[int]
    fit_fraction: float
    seed: int

    def fit_texts(self) -> list[str]:
        return [self.texts[i] for i in self.fit]

    def test_texts(self) -> list[str]:
        return [self.texts[i] for i in self.test]

    def record(self) -> dict[str, Any]:
        """What a merge's provenance says about the split (and its key uses, less the path)."""
        return {"heldout": str(self.path), "heldout_digest": self.digest, "fit_fraction": self.fit_fraction,
                "split_seed": self.seed, "fit_documents": self.fit, "test_documents": self.test}

    def write_test(self, path: str | Path) -> Path:
        """The test split as a jsonl file of its own (what the held-out loss task of the evaluation reads)."""
        path = Path(path)
        path.write_text("".join(json.dumps({"text": t}) + "\n" for t in self.test_texts()))
        return path


def split_heldout(path: str | Path, *, fit_fraction: float = 0.5, seed: int = 0) -> HeldoutSplit:
    """Read ``path`` and split its documents into fit and test (see the module docstring)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise HeldoutError(f"Held-out file {path} cannot be read ({err.strerror or err}). Give a jsonl file with one "
                           "{\"text\": ...} document per line (--heldout FILE).") from None
    texts = []
    for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not row["text"].strip():
            raise HeldoutError(f"Line {number} of the held-out file {path} is not a JSON object with a non-empty "
                               "\"text\" string. Each line must be {\"text\": \"...\"}; fix or drop that line.")
        texts.append(row["text"])
    if len(texts) < 2:
        raise HeldoutError(f"The held-out file {path} holds {len(texts)} document(s); the fit needs at least 2 (one "
                           "to fit on, one to test on). Give more held-out text.")
    if not 0.0 < fit_fraction < 1.0:
        raise HeldoutError(f"fit_fraction={fit_fraction!r} must lie in (0, 1): the rest of {path} is the test split.")
    count = min(max(round(fit_fraction * len(texts)), 1), len(texts) - 1)
    rank = sorted(range(len(texts)), key=lambda i: (hashlib.sha256(f"{seed}:{texts[i]}".encode()).digest(), i))
    fit = sorted(rank[:count])
    test = sorted(rank[count:])
    return HeldoutSplit(path, hashlib.sha256(raw).hexdigest()[:16], tuple(texts), fit, test, fit_fraction, seed)
