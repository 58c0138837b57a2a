"""The key reference of docs/config.md, generated from the schemas (their field comments are the one source).

    python -m wsm_exp.sweep.spec.config_doc   # rewrites the tables; tests/test_config.py checks the docs match

Example:
    >>> "| `merge.curve` | str | mean |" in reference()
    True
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import typing
from pathlib import Path

from omegaconf import OmegaConf

from wsm_exp.sweep.spec.schemas import SFTJobConfig, schemas

FIELD = re.compile(r"^    (\w+): (.+?) = .+?  # (.+)$")
GROUPS = ("series", "model", "data", "train", "merge", "eval", "logger")


def fields_of(cls: type) -> list[tuple[str, str, str]]:
    """(name, type, reason) of each field, read from the class source."""
    found = [FIELD.match(line) for line in inspect.getsource(cls).splitlines()]
    return [(m.group(1), m.group(2), m.group(3)) for m in found if m]


def _value(value) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text[1:-1] if isinstance(value, str) else text


def table(prefix: str, cls: type) -> list[str]:
    defaults = OmegaConf.to_container(OmegaConf.structured(cls), resolve=False)
    nested = {k for k, v in typing.get_type_hints(cls).items() if dataclasses.is_dataclass(v)}
    rows = ["| key | type | default | why |", "|---|---|---|---|"]
    for name, kind, reason in fields_of(cls):
        if kind == "Any" or name in nested:
            continue
        rows.append(f"| `{prefix}{name}` | {kind.replace('|', 'or')} | {_value(defaults[name])} | {reason} |")
    return rows


def reference() -> str:
    """Markdown tables: the root keys, then each group's keys, each with type, default and reason."""
    run = schemas()["run"]
    hints = typing.get_type_hints(run)
    out = ["### Root keys (`conf/config.yaml`, schema `RunConfig`)", "", *table("", run)]
    for name in ("baselines", "paths", "analysis"):
        out += ["", f"### `{name}.*` (schema `{hints[name].__name__}`)", "", *table(f"{name}.", hints[name])]
    for group in GROUPS:
        cls = schemas()[group]
        out += ["", f"### `{group}.*` (`conf/{group}/`, schema `{cls.__name__}` in `{cls.__module__}`)", "",
                *table(f"{group}.", cls)]
        for field, sub in typing.get_type_hints(cls).items():  # nested schemas (merge.fit) under their group
            if dataclasses.is_dataclass(sub):
                out += ["", f"### `{group}.{field}.*` (schema `{sub.__name__}`)", "", *table(f"{group}.{field}.", sub)]
    out += ["", "### `sft.*` (`conf/sft/`, the `sft` sweep only; `SFTJobConfig` in `wsm_exp.sweep.spec.schemas`; "
            "`sft.recipe.*`: `SFTConfig` in `wsm_exp.study.sft_train`)", "", *table("sft.", SFTJobConfig)]
    return "\n".join(out) + "\n"


def update(page: Path) -> None:
    """Rewrite the key tables between ``<!-- keys -->`` and ``<!-- /keys -->`` in ``page``."""
    head, rest = page.read_text().split("<!-- keys -->\n", 1)
    _, tail = rest.split("<!-- /keys -->", 1)
    page.write_text(f"{head}<!-- keys -->\n{reference()}<!-- /keys -->{tail}")


if __name__ == "__main__":  # python -m wsm_exp.sweep.spec.config_doc: refresh docs/config.md
    update(Path(__file__).resolve().parents[3] / "docs" / "config.md")
