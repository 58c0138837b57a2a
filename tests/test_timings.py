"""The calibration store (wsm_exp/timings.py) and what plan=true makes of it (wsm_exp/sweep/check/estimate.py)."""

from __future__ import annotations

import json
import multiprocessing
import random

from wsm_exp.sweep.check.estimate import TASK_SECONDS, task_seconds
from wsm_exp.timings import FILE, Timing, read, record_timing


def _append_many(root: str, worker: int) -> None:
    for i in range(200):
        record_timing(root, Timing(task=f"t{worker}", documents=i + 1, seconds=0.5, parameters=10, device="cpu"))


def test_two_processes_append_whole_lines(tmp_path):
    """Two writers at once: every record readable, none torn or lost."""
    processes = [multiprocessing.Process(target=_append_many, args=(str(tmp_path), w)) for w in (0, 1)]
    for p in processes:
        p.start()
    for p in processes:
        p.join()
    timings = read(tmp_path)
    assert len(timings) == 400
    assert sorted(t.documents for t in timings if t.task == "t1") == list(range(1, 201))


def test_the_reader_survives_any_bytes(tmp_path):
    """Seeded fuzz: torn lines, foreign JSON, random bytes and wrong types are skipped; good lines are kept."""
    rng = random.Random(0)
    good = json.dumps({"task": "wsm_piqa", "documents": 8, "seconds": 1.0, "parameters": 26720, "device": "cpu"})
    for case in range(300):
        noise = []
        for _ in range(rng.randint(0, 6)):
            kind = rng.randrange(5)
            if kind == 0:
                noise.append(good[: rng.randrange(len(good))])  # torn
            elif kind == 1:
                noise.append(bytes(rng.randrange(256) for _ in range(rng.randrange(40))).decode("latin-1"))
            elif kind == 2:
                payload = json.loads(good)
                payload[rng.choice(list(payload))] = rng.choice([None, "x", -1, [], {}, True, 1.5])
                noise.append(json.dumps(payload))
            elif kind == 3:
                noise.append(json.dumps(rng.choice([[], 1, "s", None, {"task": "t"}])))
            else:
                noise.append("")
        lines = noise + [good] + noise[::-1]
        (tmp_path / FILE).write_bytes("\n".join(lines).encode("utf-8", "surrogateescape"))
        kept = read(tmp_path)
        assert Timing("wsm_piqa", 8, 1.0, 26720, "cpu") in kept, case
        assert all(t.documents > 0 and t.parameters > 0 and t.seconds >= 0 for t in kept), case


def test_estimates_follow_the_records_of_the_device_and_size():
    past = [Timing("wsm_piqa", 200, 4.0, 1_000_000, "cpu"), Timing("wsm_piqa", 200, 40.0, 100_000_000, "cpu"),
            Timing("wsm_piqa", 200, 1.0, 1_000_000, "cuda")]
    assert task_seconds("wsm_piqa", 200, 1_000_000, "cpu", past) == (4.0, "measured")
    assert task_seconds("wsm_piqa", 200, 1_000_000, "cuda", past) == (1.0, "measured")
    assert task_seconds("wsm_piqa", 200, 100_000_000, "cpu", past) == (40.0, "measured")  # the nearest size
    seconds, origin = task_seconds("wsm_arc_easy", 200, 1_000_000, "cpu", past)
    assert origin == "prior" and seconds > TASK_SECONDS
