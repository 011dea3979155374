"""The import graph of refusalscope: every module imports in a fresh interpreter, no module
imports another one back (function-local imports included), and no module imports a private
name (`from x import _y`) from another module.

A function-local import that only hides a cycle is still a cycle: the graph counts every
`import` statement in a module, at any depth. Imports under `if TYPE_CHECKING:` are left out
(they never run), and so is a dunder such as `__version__` taken from an ancestor package
(Python initialises every ancestor package before a submodule anyway).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Edges (importer, imported) left out of the cycle check, and (importer, module imported from,
# private name) left out of the private-name check: each entry says who fixes it, e.g.
#     # owned by the attacks-protocol helper (issue 19), remove when fixed
# An entry that no longer matches anything fails the test, so the lists only shrink.
ALLOWED_CYCLE_EDGES: set[tuple[str, str]] = set()
ALLOWED_PRIVATE: set[tuple[str, str, str]] = set()
# The same rule for the tests (test file, module imported from, private name). Each of these
# tests a helper its module keeps private; its owner makes the helper public (or tests it through
# a public function) and removes the entry.
ALLOWED_TEST_PRIVATE: set[tuple[str, str, str]] = {
    ("test_cli_vocabulary.py", "refusalscope.cli._common", "_rewrite"),
    ("test_generate.py", "refusalscope.generation", "_split_completion"),
    ("test_interp_geometry.py", "refusalscope.interp.geometry_report", "_label"),
    ("test_interp_geometry.py", "refusalscope.interp.geometry_report", "_short"),
    ("test_interp_steering.py", "refusalscope.interp.steer_eval", "_summary"),
    ("test_scoring_labelled.py", "refusalscope.scoring.labelled", "_pyrit_verdict"),
    ("test_study_run.py", "refusalscope.study.report", "_ci95"),
}

Edges = dict[str, dict[str, int]]  # importer -> {imported module: line of its first import}
Private = list[tuple[str, str, str, int]]  # (importer, module imported from, name, line)


def package_dirs() -> dict[str, Path]:
    """Package name -> folder, found without importing them (cli/ installs as refusalscope.cli)."""
    out = {}
    for name in ("refusalscope", "refusalscope.cli"):
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.submodule_search_locations, name
        out[name] = Path(next(iter(spec.submodule_search_locations)))
    return out


def modules() -> dict[str, tuple[Path, bool]]:
    """Every module of refusalscope: dotted name -> (file, is a package `__init__`)."""
    out: dict[str, tuple[Path, bool]] = {}
    for pkg, folder in package_dirs().items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if any(not p.isidentifier() for p in parts):
                continue
            is_pkg = parts[-1] == "__init__"
            name = ".".join([pkg, *(parts[:-1] if is_pkg else parts)])
            out.setdefault(name, (path, is_pkg))
    return out


def _owner(name: str, mods: dict[str, tuple[Path, bool]]) -> str | None:
    """The module a dotted name lives in (`a.b.c` -> `a.b` when `c` is a name in it)."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of import nodes under `if TYPE_CHECKING:` (never executed)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for stmt in node.body:
                out.update(id(n) for n in ast.walk(stmt))
    return out


def scan() -> tuple[Edges, Private]:
    """The import graph of every module, and every private name imported from another one."""
    mods = modules()
    edges: Edges = {m: {} for m in mods}
    private: Private = []
    for mod, (path, is_pkg) in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        skip = _type_checking_only(tree)
        package = mod if is_pkg else mod.rpartition(".")[0]
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = _owner(alias.name, mods)
                    if alias.name.startswith("refusalscope") and target and target != mod:
                        edges[mod].setdefault(target, node.lineno)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    source = f"{base}.{node.module}" if node.module else base
                else:
                    source = node.module or ""
                if source != "refusalscope" and not source.startswith("refusalscope."):
                    continue
                for alias in node.names:
                    full = f"{source}.{alias.name}"
                    dunder = alias.name.startswith("__")
                    if dunder and mod.startswith(source + "."):
                        continue
                    target = full if full in mods else _owner(source, mods)
                    if target and target != mod:
                        edges[mod].setdefault(target, node.lineno)
                    if alias.name.startswith("_") and not dunder and full not in mods \
                            and _owner(source, mods) != mod:
                        private.append((mod, source, alias.name, node.lineno))
    return edges, private


def cycles(edges: Edges) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges.get(w, {})))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def _describe(comp: list[str], edges: Edges) -> str:
    inside = [f"    {a} -> {b} (line {edges[a][b]})"
              for a in comp for b in sorted(edges[a]) if b in comp]
    return " <-> ".join(comp) + "\n" + "\n".join(inside)


def _import_all(order: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    code = ("import importlib, sys, traceback\n"
            "bad = []\n"
            "for name in sys.argv[1:]:\n"
            "    try:\n"
            "        importlib.import_module(name)\n"
            "    except BaseException as e:\n"
            "        bad.append(f'{name}: {type(e).__name__}: {e}')\n"
            "print('\\n'.join(bad))\n"
            "sys.exit(1 if bad else 0)\n")
    env = {**os.environ, "REFUSALSCOPE_HOME": str(tmp_path / "home"),
           "REFUSALSCOPE_ARTIFACTS": str(tmp_path / "artifacts"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code, *order], capture_output=True, text=True,
                          env=env, timeout=900)


def test_every_module_imports_in_a_fresh_interpreter(tmp_path: Path) -> None:
    """Sorted, then reversed, so each module of a would-be cycle is once imported first."""
    names = sorted(modules())
    assert {"refusalscope.runs", "refusalscope.cli.app", "refusalscope.scoring.drift"} <= set(names)
    for order in (names, names[::-1]):
        res = _import_all(order, tmp_path)
        assert res.returncode == 0, \
            f"modules that failed to import:\n{res.stdout}{res.stderr[-2000:]}"


@pytest.fixture(scope="module")
def graph() -> tuple[Edges, Private]:
    return scan()


def test_no_import_cycles(graph: tuple[Edges, Private]) -> None:
    edges, _ = graph
    stale = sorted(e for e in ALLOWED_CYCLE_EDGES if e[1] not in edges.get(e[0], {}))
    assert not stale, f"allow-listed edges that no longer exist (remove them): {stale}"
    kept = {a: {b: ln for b, ln in bs.items() if (a, b) not in ALLOWED_CYCLE_EDGES}
            for a, bs in edges.items()}
    found = cycles(kept)
    assert not found, "import cycles:\n" + "\n".join(_describe(c, kept) for c in found)


def test_no_private_names_imported_across_modules(graph: tuple[Edges, Private]) -> None:
    _, private = graph
    stale = sorted(ALLOWED_PRIVATE - {(m, s, n) for m, s, n, _ in private})
    assert not stale, f"allow-listed private imports that no longer exist (remove them): {stale}"
    bad = sorted(p for p in private if p[:3] not in ALLOWED_PRIVATE)
    assert not bad, "private names imported from another module (make them public):\n" + \
        "\n".join(f"    {m} line {ln}: from {s} import {n}" for m, s, n, ln in bad)


def test_tests_import_no_private_names() -> None:
    """`from refusalscope.x import _y` in a test ties it to a name its module may change at
    will: tests use public names (`ALLOWED_TEST_PRIVATE` lists the old ones, and only shrinks)."""
    mods = modules()
    found = set()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("refusalscope"):
                found.update((path.name, node.module, a.name) for a in node.names
                             if a.name.startswith("_") and not a.name.startswith("__")
                             and f"{node.module}.{a.name}" not in mods)
    assert not ALLOWED_TEST_PRIVATE - found, \
        f"allow-listed entries that no longer exist (remove them): {ALLOWED_TEST_PRIVATE - found}"
    assert not found - ALLOWED_TEST_PRIVATE, \
        f"tests importing private names (use or make a public one): {found - ALLOWED_TEST_PRIVATE}"


def test_the_checks_see_a_function_local_cycle_and_a_private_import(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scanner itself: a cycle closed only inside a function, and `from x import _y`."""
    pkg = tmp_path / "refusalscope"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("__version__ = '0'\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("from refusalscope import __version__\n"
                                      "from refusalscope.sub.b import g\n")
    (pkg / "sub" / "b.py").write_text("from typing import TYPE_CHECKING\n"
                                      "if TYPE_CHECKING:\n    from refusalscope.sub import c\n"
                                      "def g():\n    from refusalscope.sub.a import _h\n")
    (pkg / "sub" / "c.py").write_text("from .b import g\n")
    monkeypatch.setattr(sys.modules[__name__], "package_dirs", lambda: {"refusalscope": pkg})
    edges, private = scan()
    assert edges["refusalscope.sub.a"] == {"refusalscope.sub.b": 2}  # no edge for __version__
    assert edges["refusalscope.sub.b"] == {"refusalscope.sub.a": 5}  # TYPE_CHECKING left out
    assert edges["refusalscope.sub.c"] == {"refusalscope.sub.b": 1}  # relative import resolved
    assert cycles(edges) == [["refusalscope.sub.a", "refusalscope.sub.b"]]
    assert private == [("refusalscope.sub.b", "refusalscope.sub.a", "_h", 5)]
