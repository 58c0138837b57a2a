"""When a stored result may be reused: a fingerprint over every input that made it, and why it changed.

A variant's inputs are named values (``checkpoint wsm/step_400`` → content identity, ``held-out
file`` → content hash, ``task configs``, ``eval settings``, ``packages``, ``merger``, ``variant``).
The fingerprint is a hash over all of them; the inputs themselves are stored beside the rows, so a
rerun can say which one changed.

Example:
    >>> old = {"checkpoint wsm/step_400": "a1", "held-out file": "h1"}
    >>> new = {"checkpoint wsm/step_400": "b2", "held-out file": "h1"}
    >>> fingerprint(old) == fingerprint(new)
    False
    >>> what_changed(old, new)
    'checkpoint wsm/step_400 changed'
"""

from __future__ import annotations

from typing import Any

from wsm_exp.keys import content_key, package_versions  # noqa: F401  (package_versions: an input of every fingerprint)

def fingerprint(inputs: dict[str, Any]) -> str:
    """Content key over every named input (order-free)."""
    return content_key(inputs, length=20)


def digest(value: Any) -> str:
    """Short stable key of a JSON-able value (a config, a variant)."""
    return content_key(value, length=16)


def what_changed(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """One line naming the inputs that differ between two runs.

    >>> what_changed({"packages": {"torch": "2.12"}}, {"packages": {"torch": "2.13"}})
    'packages changed (torch 2.12 → 2.13)'
    >>> what_changed(None, {"a": 1})
    'stored before inputs were recorded'
    """
    if old is None:
        return "stored before inputs were recorded"
    parts = []
    for key in sorted(set(old) | set(new)):
        if key not in new:
            parts.append(f"{key} no longer used")
        elif key not in old:
            parts.append(f"{key} is new")
        elif old[key] != new[key]:
            detail = ""
            if isinstance(old[key], dict) and isinstance(new[key], dict):
                diffs = [f"{k} {old[key].get(k)} → {new[key].get(k)}" for k in sorted(set(old[key]) | set(new[key]))
                         if old[key].get(k) != new[key].get(k)]
                detail = f" ({', '.join(diffs[:4])}{', …' if len(diffs) > 4 else ''})"
            parts.append(f"{key} changed{detail}")
    return "; ".join(parts) or "nothing changed"
