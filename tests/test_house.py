"""The house rules of the code, checked on the source: no import cycles, one-way runner steps, small modules.

Every module of ``wsm_exp`` and ``analysis`` is parsed (never imported). An import counts wherever
it stands, inside functions too: a loop hidden in a function is still a loop for a reader. Checked:
no cycles, no private ``_name`` imported from another module, no module over 400 lines, no module
basename used in two packages, a first docstring line on every module, the runner's steps
(``wsm_exp/sweep/``) importing only the steps listed before them in ``STEPS`` (docs/runner.md, "Where the
code lives"), and every module path named in docs, configs and docstrings existing.
"""

from __future__ import annotations

import ast
import functools
import re
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("wsm_exp", "analysis")
MAX_LINES = 400

# The runner's steps in flow order, each with the steps it may import (the glue on top may import all).
STEPS = {
    "spec": set(),  # what a job is, as data
    "record": {"spec"},  # the store every step writes through: rows, folder, freshness, W&B, console
    "planning": {"spec", "record"},  # compose and plan jobs from config alone
    "check": {"spec", "record", "planning"},  # the pre-flight and plan=true
    "stage": {"spec", "planning"},  # the merge stage ahead of the jobs
    "run": {"spec", "record", "planning"},  # one job: merge if needed, evaluate, record
}
GLUE = ("wsm_exp.sweep.callbacks",)
BELOW_THE_RUNNER = ("wsm_exp.keys", "wsm_exp.atomic", "wsm_exp.merging", "wsm_exp.study", "wsm_exp.evaluation",
                    "wsm_exp.cli")  # never import the runner or the report

NAMED_IN = ("README.md", "docs/*.md", "conf/**/*.yaml", "hydra_plugins/**/*.py", "benchmarks/*", "scripts/*",
            "sweeps/README.md", "wsm_exp/**/*.py", "analysis/**/*.py", "pyproject.toml")  # where module paths are named
PATH = re.compile(r"(?<![\w./~-])wsm_exp(?:[./][A-Za-z_][A-Za-z0-9_]*)+(?:\.py)?")


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under the packages (a package is its ``__init__``)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            name = ".".join(path.relative_to(root).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports(mods: dict[str, Path]) -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    """(module -> modules it imports, [(module, private name, its module)]), imports in functions included."""
    graph: dict[str, set[str]] = defaultdict(set)
    private = []
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [(alias.name, None) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: climb from this module's package
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [(f"{base}.{alias.name}", alias.name) for alias in node.names]
            else:
                continue
            for dotted, short in targets:
                target = owner(dotted, mods)
                if target is None or target == name:
                    continue
                graph[name].add(target)
                if short and short.startswith("_") and not short.startswith("__"):
                    private.append((name, short, target))
    return graph, private


def owner(dotted: str, mods: dict[str, Path]) -> str | None:
    """The longest module name that ``dotted`` starts with (``a.b.func`` -> ``a.b``), None outside the packages.

    >>> owner("wsm_exp.keys.content_key", {"wsm_exp": Path(), "wsm_exp.keys": Path()})
    'wsm_exp.keys'
    """
    while dotted and dotted not in mods:
        dotted = dotted.rpartition(".")[0]
    return dotted or None


def cycles(graph: dict[str, set[str]], packages: set[str] = frozenset()) -> list[frozenset[str]]:
    """Groups of modules that reach each other (strongly connected, size > 1), except a package's
    ``__init__`` with its own children (a re-export a reader does not trip on).

    >>> sorted(sorted(c) for c in cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}))
    [['a', 'b', 'c']]
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[frozenset[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm; the graphs here are a few hundred edges deep at most
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.add(top)
                if top == node:
                    break
            if len(group) > 1:
                groups.append(frozenset(group))

    for node in sorted(set(graph) | {t for ts in graph.values() for t in ts}):
        if node not in index:
            visit(node)
    return [g for g in groups if not _package_with_children(g, set(packages))]


def _package_with_children(group: frozenset[str], packages: set[str]) -> bool:
    """True when the group is packages' ``__init__`` modules and at most one module inside them."""
    rest = [m for m in group if m not in packages]
    return len(rest) <= 1 and all(any(m.startswith(p + ".") for p in group & packages) for m in rest)


def step_of(module: str) -> str | None:
    """The runner step a module belongs to (``wsm_exp.sweep.<step>...``), None outside the steps."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["wsm_exp", "sweep"] and parts[2] in STEPS else None


def flow_violations(graph: dict[str, set[str]], mods) -> list[str]:
    """Runner modules outside the steps, and imports from a step to a step not below it, the glue or the report.

    >>> flow_violations({"wsm_exp.sweep.spec.a": {"wsm_exp.sweep.run.job"}}, ["wsm_exp.sweep.spec.a"])
    ['wsm_exp.sweep.spec.a -> wsm_exp.sweep.run.job (spec may import no step)']
    """
    wrong = [f"{m}: in no step" for m in mods if m.startswith("wsm_exp.sweep.") and step_of(m) is None
             and m not in GLUE]
    for module, targets in sorted(graph.items()):
        step = step_of(module)
        for target in sorted(targets) if step else ():
            other = step_of(target)
            if target in GLUE or target == "wsm_exp.sweep":
                wrong.append(f"{module} -> {target} (the glue sits on top)")
            elif target.split(".")[0] == "analysis":
                wrong.append(f"{module} -> {target} (the report comes after the runner: only the glue calls it)")
            elif other and other != step and other not in STEPS[step]:
                wrong.append(f"{module} -> {target} ({step} may import {sorted(STEPS[step]) or 'no step'})")
    return wrong


def resolves(reference: str, root: Path = ROOT) -> bool:
    """Whether a module path named in prose (``wsm_exp.a.b.name`` or ``wsm_exp/a/b.py``) exists.

    >>> resolves("wsm_exp/sweep/spec/schemas.py"), resolves("wsm_exp.sweep.spec.schemas.ConfigError")
    (True, True)
    >>> resolves("wsm_exp.sweep.config"), resolves("wsm_exp.sweep.spec.schemas.NoSuchName")
    (False, False)
    """
    parts = re.split(r"[./]", reference.removesuffix(".py"))
    path = root
    while parts and (path / parts[0]).is_dir():
        path = path / parts.pop(0)
    if parts and (path / f"{parts[0]}.py").is_file():
        path = path / f"{parts.pop(0)}.py"
    if not parts:
        return True
    if path.is_dir():
        path = path / "__init__.py"
    return path.is_file() and parts[0] in top_level_names(path)


@functools.lru_cache(maxsize=None)
def top_level_names(path: Path) -> frozenset[str]:
    """Names a module defines or imports at its top level."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            names |= {t.id for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                      if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return frozenset(names)


@pytest.fixture(scope="module")
def house():
    mods = modules()
    graph, private = imports(mods)
    return mods, graph, private


def test_no_import_cycles(house):
    _, graph, _ = house
    found = set(cycles(graph, {m for m, p in house[0].items() if p.name == "__init__.py"}))
    loops = [" -> ".join(sorted(c)) for c in found]
    assert not loops, f"modules importing each other (in functions too): {loops}"


def test_no_private_name_is_imported_from_another_module(house):
    _, _, private = house
    assert not private, f"private names imported across modules (make them public where they belong): {sorted(private)}"


def test_modules_stay_small(house):
    mods, _, _ = house
    long = {name: n for name, path in mods.items() if (n := len(path.read_text(encoding="utf-8").splitlines()))
            > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by job): {long}"


def test_no_module_basename_is_reused_across_packages(house):
    mods, _, _ = house
    by_leaf = defaultdict(list)
    for name in mods:
        if "." in name:
            by_leaf[name.rpartition(".")[2]].append(name)
    assert not {leaf: names for leaf, names in by_leaf.items() if len(names) > 1}


def test_every_module_says_what_it_is_for(house):
    mods, _, _ = house
    bare = [name for name, path in mods.items()
            if not (ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or "").strip().splitlines()]
    assert not bare, f"modules without a first docstring line saying what they are for: {bare}"


def test_runner_steps_import_only_the_steps_below(house):
    mods, graph, _ = house
    wrong = flow_violations(graph, mods)
    assert not wrong, "the runner's flow goes one way: " + "; ".join(wrong)


def test_module_paths_named_in_docs_and_code_exist():
    """README, docs, configs and docstrings name modules that exist (a move updates every mention)."""
    named = {f"{path.relative_to(ROOT)}: {ref}" for pattern in NAMED_IN for path in ROOT.glob(pattern)
             if path.is_file() for ref in set(PATH.findall(path.read_text(encoding="utf-8")))
             if not resolves(ref)}
    assert not named, f"module paths that no longer exist (moved or renamed?): {sorted(named)}"


def test_lower_packages_never_import_the_runner_or_the_report(house):
    _, graph, _ = house
    wrong = sorted(f"{m} -> {t}" for m, ts in graph.items() for t in ts
                   if m.startswith(BELOW_THE_RUNNER) and t.startswith(("wsm_exp.sweep", "analysis")))
    assert not wrong, f"merging, study, evaluation, keys, atomic and the CLI sit below the runner: {wrong}"


def test_the_checker_finds_what_it_must(tmp_path):
    """The rules fire on a made-up package: a loop through an in-function import, a private import."""
    package = tmp_path / "wsm_exp"
    (package / "sweep" / "spec").mkdir(parents=True)
    (package / "__init__.py").write_text('"""Top."""\n')
    (package / "sweep" / "__init__.py").write_text('"""Runner."""\n')
    (package / "sweep" / "spec" / "__init__.py").write_text('"""Spec."""\n')
    (package / "a.py").write_text('"""A."""\nfrom wsm_exp.b import _hidden\n')
    (package / "b.py").write_text('"""B."""\ndef f():\n    from wsm_exp import a\n')
    (package / "sweep" / "spec" / "schema.py").write_text('"""Schema."""\nfrom wsm_exp.sweep.run import job\n')
    (package / "sweep" / "run").mkdir()
    (package / "sweep" / "run" / "__init__.py").write_text('"""Run."""\n')
    (package / "sweep" / "run" / "job.py").write_text('"""Job."""\n')
    (tmp_path / "analysis").mkdir()
    mods = modules(tmp_path)
    graph, private = imports(mods)
    assert cycles(graph) == [frozenset({"wsm_exp.a", "wsm_exp.b"})]
    assert private == [("wsm_exp.a", "_hidden", "wsm_exp.b")]
    assert flow_violations(graph, mods) == [
        "wsm_exp.sweep.spec.schema -> wsm_exp.sweep.run.job (spec may import no step)"]
