"""Requests per document and characters per request of the project's tasks, from lm-eval's own requests.

What ``wsm_exp.evaluation.documents.SHAPES`` holds (the plan's prior for a task's forward passes and
tokens): each task is built by lm-eval from the project's YAML, its requests for the first ``--docs``
documents are instantiated (nothing is evaluated), and the characters of every request's strings
(context and continuation; a generation's prompt) are counted. A group (MMLU) is measured on every
7th subject. The held-out loss reads the study's held-out file given by ``--heldout``.

    PYTHONPATH=. .venv/bin/python benchmarks/task_sizes.py --heldout <studies>/data/<key>/heldout.jsonl
"""

from __future__ import annotations

import argparse
import statistics

from lm_eval.tasks import TaskManager, get_task_dict

from wsm_exp.evaluation.documents import SHAPES, subtasks
from wsm_exp.evaluation.suites import TASK_DIR


def measure(task: str, manager: TaskManager, docs: int) -> tuple[float, float]:
    """(forward passes per document, characters per pass) over the first ``docs`` documents of ``task``: one
    per request, except that choices of one character (MMLU's letters) share one pass over their context
    (lm-eval scores one-token continuations of a context together)."""
    per = []
    for name in subtasks(task)[::7]:
        built = get_task_dict([name], manager)[name]
        built.build_all_requests(limit=docs, rank=0, world_size=1)
        characters, requests, shared = {}, {}, set()
        for instance in built.instances:
            strings = [a for a in instance.args if isinstance(a, str)]
            if len(strings) == 2 and len(strings[1].strip()) <= 1:
                if (instance.doc_id, strings[0]) in shared:
                    continue
                shared.add((instance.doc_id, strings[0]))
            characters[instance.doc_id] = characters.get(instance.doc_id, 0) + sum(map(len, strings))
            requests[instance.doc_id] = requests.get(instance.doc_id, 0) + 1
        per.append((statistics.mean(requests.values()), sum(characters.values()) / sum(requests.values())))
    return statistics.mean(r for r, _ in per), statistics.mean(c for _, c in per)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heldout", required=True, help="a held-out JSONL file (the study's heldout.jsonl)")
    parser.add_argument("--docs", type=int, default=100)
    args = parser.parse_args()
    manager = TaskManager(include_path=str(TASK_DIR), include_defaults=False,
                          metadata={"heldout_path": args.heldout})
    print("| task | passes per document | characters per pass | in SHAPES |\n|---|---|---|---|")
    for task in SHAPES:
        requests, characters = measure(task, manager, args.docs)
        print(f"| {task} | {requests:.2f} | {characters:.0f} | {SHAPES[task]} |", flush=True)


if __name__ == "__main__":
    main()
