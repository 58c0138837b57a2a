"""Scoring of the generative tasks: MATH answer matching and sandboxed execution of generated code.

lm-eval calls these as ``process_results(doc, results)``; ``results[0]`` is the generated text.
Code runs only when the suite sets ``allow_code_execution`` (lm-eval refuses ``unsafe_code`` tasks
otherwise), each program in a fresh isolated Python subprocess, in an empty temporary folder, with
a wall-clock timeout and an address-space limit.

Example:
    >>> math_answer("So x = 2.\\nFinal Answer: The final answer is $\\\\frac{1}{2}$. I hope it is correct.")
    '$\\\\frac{1}{2}$'
    >>> normalize_math_answer("\\\\dfrac{1}{2}") == normalize_math_answer("\\\\frac12")
    True
"""

from __future__ import annotations

import re
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

EXEC_TIMEOUT_S = 10.0  # per program; HumanEval/MBPP reference solutions run in well under a second
EXEC_MEMORY_BYTES = 2 * 1024**3  # address-space cap, so a runaway program cannot take the machine down


# ---- MATH (Minerva format) ----------------------------------------------------------------------
def math_answer(generation: str) -> str | None:
    """The final answer of a Minerva-style solution: "The final answer is X. I hope", else the last \\boxed{}."""
    found = re.search(r"[Ff]inal [Aa]nswer:? [Tt]he final answer is (.*?)\. I hope", generation, re.DOTALL)
    if found:
        return found.group(1).strip()
    return last_boxed(generation)


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (braces balanced), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed{")
    for i in range(begin - 1, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[begin:i]
    return None


def normalize_math_answer(answer: str) -> str:
    """A canonical string for comparing final answers: no $, spaces, \\left/\\right, text units or
    trailing period; \\dfrac/\\tfrac as \\frac, \\frac12 as \\frac{1}{2}, 0.5 as .5 kept distinct."""
    s = answer.strip()
    s = re.sub(r"\\text\{\s*([^}]*)\}", r"\1", s)
    for old, new in (("$", ""), ("\\!", ""), ("\\left", ""), ("\\right", ""), ("\\dfrac", "\\frac"),
                     ("\\tfrac", "\\frac"), ("^\\circ", ""), ("^{\\circ}", ""), ("\\%", ""), ("%", ""),
                     (" ", ""), ("\\,", ""), ("\\;", "")):
        s = s.replace(old, new)
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac\{([^}]*)\}(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\sqrt(\d)", r"\\sqrt{\1}", s)
    s = s.rstrip(".")
    if re.fullmatch(r"-?\d+\.0+", s):
        s = s.split(".")[0]
    return s


def score_math(doc: dict, results: list[str]) -> dict:
    predicted = math_answer(results[0])
    correct = predicted is not None and normalize_math_answer(predicted) == normalize_math_answer(doc["answer"])
    return {"exact_match": float(correct)}


# ---- code execution -----------------------------------------------------------------------------
def run_program(source: str, timeout: float = EXEC_TIMEOUT_S) -> bool:
    """True when ``source`` runs to completion with exit status 0 within ``timeout`` seconds.

    Isolated interpreter (``-I -S``: standard library only, no site-packages, no environment),
    empty working folder, no stdin, output discarded, address space capped. A sandbox against mistakes, not against malice:
    run untrusted models' code on a disposable machine.
    """
    with tempfile.TemporaryDirectory(prefix="wsm-exec-") as folder:
        program = Path(folder) / "program.py"
        program.write_text(source)
        try:
            done = subprocess.run([sys.executable, "-I", "-S", str(program)], cwd=folder, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout,
                                  preexec_fn=_limit_memory, env={"PATH": "/usr/bin:/bin"})
        except subprocess.TimeoutExpired:
            return False
    return done.returncode == 0


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (EXEC_MEMORY_BYTES, EXEC_MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def humaneval_program(doc: dict, completion: str) -> str:
    """lm-eval's HumanEval program: prompt + completion, then the tests and ``check(entry_point)``."""
    return f"{doc['prompt']}{completion}\n\n{doc['test']}\n\ncheck({doc['entry_point']})\n"


def mbpp_program(doc: dict, completion: str) -> str:
    """lm-eval's MBPP program: the generated code, then the setup code and the three asserts."""
    return "\n".join([completion, doc.get("test_setup_code") or "", *doc["test_list"]]) + "\n"


def score_humaneval(doc: dict, results: list[str]) -> dict:
    return {"pass_at_1": float(run_program(humaneval_program(doc, results[0])))}


def score_mbpp(doc: dict, results: list[str]) -> dict:
    return {"pass_at_1": float(run_program(mbpp_program(doc, results[0])))}
