"""The rules netdsl's folders keep, read from the source's imports (ast; nothing is imported).

Layers, lowest first; a module may import its own layer and those its layer lists:

    front end   errors, syntax, parser, bind, expand, ops, ir, files, checkpoint, init, version, runlog
    passes      passes/                               (reads the front end)
    compiler    compiler.py: parse, expand, the pass pipeline, Network
    views       views/: summary, explain, render, diff, ir_print   (never the backend)
    interchange interchange/: ONNX export, importers              (never the backend)
    backend     backend/, backend/cpu/, backend/gpu/
    train       train/                                (drives the backend; never the other way)
    cli         cli/
    facade      netdsl/__init__, __main__ and the public alias netdsl.render

Besides the layers: no import circles anywhere (function-level imports count: they run too);
backend/cpu/ and backend/gpu/ import nothing of the rest of backend/ (they are the devices' own
code); backend/gpu/ is imported only inside functions (the code paths where arrays are CuPy's),
never when a module loads; backend/cpu/ never imports CuPy; and only the facade imports the
public alias. Imports under `if TYPE_CHECKING:` are for type checkers and do not count.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import networkx as nx

FRONT_END = {"errors", "syntax", "parser", "bind", "expand", "ops", "ir", "files", "checkpoint", "init", "version",
             "runlog"}
FACADE = {"netdsl", "netdsl.__main__", "netdsl.render"}
ALIASES = {"netdsl.render"}

# layer -> the layers it may import (besides itself)
ALLOWED = {
    "front end": set(),
    "passes": {"front end"},
    "compiler": {"front end", "passes"},
    "views": {"front end", "passes", "compiler"},
    "interchange": {"front end", "passes", "compiler"},
    "backend": {"front end", "passes", "compiler"},
    "train": {"front end", "passes", "compiler", "backend"},
    "cli": {"front end", "passes", "compiler", "views", "interchange", "backend", "train", "facade"},
    "facade": {"front end", "passes", "compiler", "views", "interchange", "backend", "train", "cli"},
}
SUBPACKAGES = {"passes": "passes", "views": "views", "interchange": "interchange", "backend": "backend",
               "train": "train", "cli": "cli"}


def layer_of(module: str) -> str | None:
    """The layer of a netdsl module, or None for a module the rules do not know (itself a finding)."""
    if module in FACADE:
        return "facade"
    parts = module.split(".")
    if len(parts) < 2:
        return None
    if parts[1] in SUBPACKAGES:
        return SUBPACKAGES[parts[1]]
    if parts[1] == "compiler":
        return "compiler"
    if parts[1] in FRONT_END:
        return "front end"
    return None


@dataclass(frozen=True)
class Import:
    source: str      # importing module
    target: str      # imported netdsl module, or a third-party top-level name
    line: int
    lazy: bool       # inside a function body
    file: str


def module_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST, in_function: bool = False):
    """(import node, inside a function) for every import that runs, TYPE_CHECKING blocks skipped."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for sub in child.orelse:
                yield from _walk(ast.Module(body=[sub], type_ignores=[]), in_function)
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, in_function
        yield from _walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                   ast.Lambda)))


def imports(root: Path) -> list[Import]:
    """Every import in the package at `root` (the netdsl/ folder), resolved to module names."""
    modules = {module_name(root, p) for p in root.rglob("*.py")}
    found = []
    for path in sorted(root.rglob("*.py")):
        name = module_name(root, path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node, lazy in _walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                # `from pkg import name`: a submodule where one exists, else the package itself
                targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in modules else stem for a in node.names]
            for target in targets:
                found.append(Import(name, target, node.lineno, lazy, str(path)))
    return found


def violations(root: Path) -> list[str]:
    """Every broken rule, one line each, naming the file and line."""
    found = imports(root)
    problems = []
    graph = nx.DiGraph()
    for imp in found:
        where = f"{imp.file}:{imp.line}: {imp.source} imports {imp.target}"
        if imp.target.split(".")[0] != "netdsl":
            if imp.target.split(".")[0] == "cupy" and imp.source.startswith("netdsl.backend.cpu"):
                problems.append(f"{where}: backend/cpu/ never imports CuPy")
            continue
        graph.add_edge(imp.source, imp.target)
        src, dst = layer_of(imp.source), layer_of(imp.target)
        if src is None or dst is None:
            problems.append(f"{where}: a module outside the known layers (add it to tests/layout_rules.py)")
            continue
        if src != dst and dst not in ALLOWED[src]:
            problems.append(f"{where}: {src} may not import {dst}")
        if imp.target in ALIASES and src != "facade":
            problems.append(f"{where}: {imp.target} is a public alias; import the module it re-exports")
        for device in ("netdsl.backend.cpu", "netdsl.backend.gpu"):
            inside = imp.source == device or imp.source.startswith(device + ".")
            if inside and imp.target.startswith("netdsl.backend") and not (
                    imp.target == device or imp.target.startswith(device + ".")):
                problems.append(f"{where}: {device.split('.')[-1]}/ imports nothing of the rest of backend/")
        gpu = imp.target == "netdsl.backend.gpu" or imp.target.startswith("netdsl.backend.gpu.")
        if gpu and not imp.lazy and not imp.source.startswith("netdsl.backend.gpu"):
            problems.append(f"{where}: backend/gpu/ is imported only inside functions, on CuPy's code paths")
    for cycle in nx.simple_cycles(graph):
        problems.append("import circle: " + " -> ".join(cycle + cycle[:1]))
    return problems
