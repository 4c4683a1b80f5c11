"""Layers import downward only (docs/design.md §1), and fitting, reporting and recommending never
load the training stack. Checked on the source (every import, lazy ones included) and by
importing the top layers in a fresh interpreter."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "scaler"

# layer -> the layers it may import (besides itself); the table in docs/design.md §1
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "config": {"errors"},
    "runtime": set(),
    "store": {"errors", "config"},
    "model": {"config"},
    "data": {"errors", "config", "model"},
    "train": {"errors", "config", "runtime", "model", "data"},
    "sweep": {"errors", "config", "store", "runtime", "model", "data", "train"},
    "fitting": {"errors", "config"},
    "decision": {"errors", "config", "fitting"},
    "report": {"errors", "config", "fitting"},
    "session": {"errors", "config", "store", "data", "fitting", "decision", "report"},
    "advance_step": {"errors", "config", "store", "model", "sweep", "fitting", "session"},
    "simulate": {"errors", "config", "fitting"},
    "workflow": {"errors", "config", "store", "model", "data", "sweep", "fitting", "session", "advance_step", "simulate"},
    "cli": {"errors", "config", "store", "runtime", "model", "data", "train", "sweep", "fitting", "decision", "report",
            "session", "advance_step", "simulate", "workflow"},
    "__init__": {"errors", "config", "store", "fitting", "decision", "report", "session", "workflow"},
}
# Removed by issue 21 and kept out: fit, decision and report open no store and no data build (the
# session layer does), data imports the store for no error type (scaler.errors), train writes run
# folders through train/folders.RunFolders (handed in), and no two modules import each other,
# directly or around a loop.
FORBIDDEN = {"fitting": {"store", "data"}, "decision": {"store", "data"}, "report": {"store", "data"},
             "data": {"store"}, "train": {"store"}}


def _layer(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def _scaler_imports(path: Path) -> set[str]:
    """Every `scaler.X...` module a file imports, at any depth of the file (lazy imports too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("scaler."))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "scaler":
                found.update(f"scaler.{alias.name}" for alias in node.names)
            elif node.module.startswith("scaler."):
                found.add(node.module)
    return found


def test_every_module_imports_only_its_own_or_lower_layers() -> None:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        layer = _layer(path)
        assert layer in ALLOWED, f"{path}: a new layer {layer!r}: add it to ALLOWED and docs/design.md §1"
        for module in _scaler_imports(path):
            target = module.split(".")[1]
            if target != layer and target not in ALLOWED[layer]:
                problems.append(f"{path.relative_to(PACKAGE.parent)} ({layer}) imports {module}")
    assert not problems, "\n".join(problems)


def test_what_was_removed_stays_removed() -> None:
    problems = [f"{path.relative_to(PACKAGE.parent)} imports {module}"
                for path in sorted(PACKAGE.rglob("*.py")) for module in _scaler_imports(path)
                if module.split(".")[1] in FORBIDDEN.get(_layer(path), set())]
    assert not problems, "\n".join(problems)
    assert all(not (FORBIDDEN[layer] & ALLOWED[layer]) for layer in FORBIDDEN)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Module -> the scaler modules it imports (lazy imports too); `from scaler.fitting import laws`
    is an edge to scaler.fitting.laws."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in modules:
                subs = {f"{node.module}.{a.name}" for a in node.names} & set(modules)
                edges.update(subs or {node.module})
                if len(subs) < len(node.names):
                    edges.add(node.module)
        graph[name] = edges - {name}
    return graph


def test_no_module_imports_one_that_imports_it_back() -> None:
    graph = _import_graph()
    state: dict[str, int] = {}  # 1: on the DFS path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt == "scaler":
                continue  # the package's own API imports everything: a module never imports it back
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_data_layer_never_imports_the_trainer() -> None:
    for path in (PACKAGE / "data").rglob("*.py"):
        assert not any(m.startswith(("scaler.train", "scaler.sweep")) for m in _scaler_imports(path)), path


def test_config_does_not_import_the_model_family() -> None:
    assert _scaler_imports(PACKAGE / "config.py") <= {"scaler.errors"}


def _modules_after(code: str) -> set[str]:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, env=env, check=True, cwd=PACKAGE.parent)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_fit_recommend_and_report_do_not_load_the_training_stack() -> None:
    loaded = _modules_after("import scaler, scaler.fitting.pipeline, scaler.fitting.fitter, scaler.decision, "
                            "scaler.report.render\nscaler.laws.chinchilla(), scaler.build_report")
    stack = sorted(m for m in loaded if m.startswith(("scaler.train", "scaler.model", "scaler.sweep", "flax", "optax",
                                                      "orbax")))
    assert not stack, stack


def test_importing_scaler_changes_no_environment_and_loads_no_jax() -> None:
    code = ("import os, numpy, polars, fsspec, pydantic, typer, rich  # their own import-time settings aside\n"
            "before = dict(os.environ)\n"
            "import scaler, scaler.cli\n"
            "assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items())")
    loaded = _modules_after(code)
    assert "jax" not in loaded


# written in pieces so that this file does not contain them itself
OUTSIDE = tuple("".join(parts) for parts in (("..", "/shared"), ("/work", "/"), ("DESIGN", " §"), ("DESIGN", ".md"),
                                             ("/proc", "/")))


def test_the_repository_refers_to_nothing_outside_it() -> None:
    """A clone has nothing beside it: no path into a sibling folder or this machine's /work."""
    root = PACKAGE.parent
    tracked = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=root, check=True).stdout.split()
    suffixes = (".py", ".md", ".toml", ".cfg", ".txt", "Makefile", "run")
    problems = []
    for name in tracked:
        if not name.endswith(suffixes) or name.startswith("reports/"):
            continue
        text = (root / name).read_text(errors="replace")
        for needle in OUTSIDE:
            if needle in text:
                problems.append(f"{name}: {needle}")
    assert not problems, problems
