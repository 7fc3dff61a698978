"""The packages' imports point one way (docs/architecture.md): no circle, no upward import, and an
import inside a function (of any module: the project's, a third-party package, the stdlib) only
with its reason.

The graph is read from the source (AST), not by importing: every ``import`` / ``from ... import``
of a project module counts, at module level, inside functions and under ``TYPE_CHECKING`` alike.
The function-level rule also holds for the scripts of pipelines/ and benchmarks/ (`SCRIPT_FOLDERS`);
tests/ are exempt (a test imports what it exercises where it exercises it).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES: tuple[str, ...] = ("egotwin_bench", "egotwin_model")

LAYERS: tuple[tuple[str, ...], ...] = (
    # egotwin_bench, bottom first: a module may import its own layer or lower ones.
    ("egotwin_bench", "egotwin_bench.constants", "egotwin_bench.geometry", "egotwin_bench.hashing",
     "egotwin_bench.skeleton", "egotwin_bench.weights"),
    ("egotwin_bench.motion",),
    ("egotwin_bench.nymeria",),
    ("egotwin_bench.curation",),
    ("egotwin_bench.data",),
    ("egotwin_bench.synthetic",),
    ("egotwin_bench.metrics",),
    ("egotwin_bench.estimators",),
    ("egotwin_bench.evaluate",),
    ("egotwin_bench.training",),
    ("egotwin_bench.cli_app",),
    ("egotwin_bench.commands", "egotwin_bench.cli"),
    # egotwin_model sits on all of egotwin_bench.
    ("egotwin_model", "egotwin_model.config"),
    ("egotwin_model.pretrained", "egotwin_model.diffusion", "egotwin_model.flops", "egotwin_model.merged_attention",
     "egotwin_model.optim"),
    ("egotwin_model.interaction", "egotwin_model.encoders", "egotwin_model.precompute"),
    ("egotwin_model.dit", "egotwin_model.motion_vae"),
    ("egotwin_model.guidance", "egotwin_model.run", "egotwin_model.cached_clips", "egotwin_model.stages.base"),
    ("egotwin_model.checkpoint",),
    ("egotwin_model.stages",),
    ("egotwin_model.parallel",),
    ("egotwin_model.train",),
    ("egotwin_model.sample", "egotwin_model.coupling"),
    ("egotwin_model.commands", "egotwin_model.cli"),
)
"""Layer of each unit (a package's top-level module or sub-package; the longest listed prefix wins)."""

ENTRY_POINTS: frozenset[tuple[str, str]] = frozenset({
    ("egotwin_model.train", "egotwin_model.cli"),
})
"""Upward imports allowed inside a ``main()``: ``python -m egotwin_model.train`` (what torchrun runs)
is the CLI's ``train`` command, so its `main` calls the CLI (never imported at module level)."""

SCRIPT_FOLDERS: tuple[str, ...] = ("pipelines", "benchmarks")
"""Scripts, not layers: outside the import graph, but held to the function-level import rule."""

LAZY_REASON = "lazy"
"""An import inside a function needs a comment with this word on its line or the line above
(``# lazy: <why>``): a heavy dependency kept off a start-up path (torch for the CLI's ``--help``,
ray, timm, transformers, ...), an optional one that may be absent, a backend chosen first.
Anything else (the stdlib, light packages, what the module's importers load anyway) sits at
module level."""

FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)

START_UP_FREE: tuple[str, ...] = (
    "torch", "ray", "av", "cv2", "scipy", "pyarrow", "polars", "matplotlib", "tqdm", "safetensors", "timm",
    "torchvision", "transformers", "diffusers", "projectaria_tools", "pycolmap",
)
"""Packages that ``egotwin-bench --help`` and ``egotwin-model --help`` must not load (numpy may)."""


@dataclass(frozen=True)
class NestedImport:
    """An import statement inside a function: `path` (relative to the root) at `line`, of `modules`."""

    path: str
    line: int
    modules: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class Edge:
    """`source` imports `target` (both dotted module names) at `line`; `nested`: inside a function."""

    source: str
    target: str
    line: int
    nested: bool
    reason: str


def module_names(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted name -> file of every module of `packages` under `root`."""
    out = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules: dict[str, Path]) -> list[str]:
    """The project modules one import statement loads (``from pkg import sub`` -> ``pkg.sub``)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            parts = module.split(".") if is_package else module.split(".")[:-1]
            parts = parts[: len(parts) - (node.level - 1)]
            base = ".".join(parts + ([node.module] if node.module else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    out = []
    for name in names:
        while name not in modules and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in modules:
            out.append(name)
    return out


def _imports(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement of `tree`, with whether it sits inside a function (or lambda)."""

    def walk(node: ast.AST, nested: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, nested
            yield from walk(child, nested or isinstance(child, FUNCTIONS))

    return walk(tree, False)


def _comments(lines: list[str], first: int, last: int) -> str:
    """Comments on the import's lines (1-based) and on the run of import / comment lines just above it."""
    k = first - 1
    while k > 0 and lines[k - 1].strip().startswith(("#", "import ", "from ")):
        k -= 1
    return " ".join(line.split("#", 1)[1].strip() for line in lines[k:last] if "#" in line)


def import_edges(root: Path, packages: tuple[str, ...]) -> list[Edge]:
    """Every import of a project module by a project module."""
    modules = module_names(root, packages)
    edges = []
    for module, path in modules.items():
        source = path.read_text()
        lines = source.splitlines()
        for node, nested in _imports(ast.parse(source, str(path))):
            reason = _comments(lines, node.lineno, node.end_lineno)
            for target in dict.fromkeys(_targets(node, module, path.name == "__init__.py", modules)):
                if target != module:
                    edges.append(Edge(module, target, node.lineno, nested, reason))
    return edges


def function_level_imports(root: Path, folders: tuple[str, ...]) -> list[NestedImport]:
    """Every import statement inside a function in the ``*.py`` files under `folders` of `root`."""
    found = []
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            source = path.read_text()
            lines = source.splitlines()
            for node, nested in _imports(ast.parse(source, str(path))):
                if nested:
                    names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                             else ["." * node.level + (node.module or "")])
                    found.append(NestedImport(path.relative_to(root).as_posix(), node.lineno, tuple(names),
                                              _comments(lines, node.lineno, node.end_lineno)))
    return found


def cycles(edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # recursion depth <= number of modules (~150)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer_of(module: str, layers: tuple[tuple[str, ...], ...]) -> int | None:
    """Index of the layer of the longest unit that is `module` or a package above it."""
    best, best_len = None, -1
    for k, units in enumerate(layers):
        for unit in units:
            if (module == unit or module.startswith(unit + ".")) and len(unit) > best_len:
                best, best_len = k, len(unit)
    return best


def layer_problems(edges: list[Edge], modules: list[str], layers: tuple[tuple[str, ...], ...]) -> list[str]:
    """Modules in no layer, and imports of a higher layer."""
    problems = [f"{m}: in no layer of LAYERS" for m in modules if layer_of(m, layers) is None]
    for e in edges:
        src, dst = layer_of(e.source, layers), layer_of(e.target, layers)
        allowed = e.nested and (e.source, e.target) in ENTRY_POINTS
        if src is not None and dst is not None and dst > src and not allowed:
            problems.append(f"{e.source}:{e.line} imports {e.target} (layer {dst} above {src})")
    return problems


def unexplained_lazy(edges: list[Edge]) -> list[str]:
    """Project imports inside functions without a ``# lazy: <why>`` comment."""
    return [f"{e.source}:{e.line} imports {e.target} inside a function without a '# {LAZY_REASON}: ...' reason"
            for e in edges if e.nested and LAZY_REASON not in e.reason.lower()]


def unexplained_function_imports(imports: list[NestedImport]) -> list[str]:
    """Imports inside functions (any module) without a ``# lazy: <why>`` comment."""
    return [f"{i.path}:{i.line} imports {', '.join(i.modules)} inside a function without a '# {LAZY_REASON}: ...' reason"
            for i in imports if LAZY_REASON not in i.reason.lower()]


# -- the project ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def project_edges() -> list[Edge]:
    return import_edges(ROOT, PACKAGES)


def test_no_import_circles(project_edges):
    assert cycles(project_edges) == []


def test_imports_point_down(project_edges):
    assert layer_problems(project_edges, list(module_names(ROOT, PACKAGES)), LAYERS) == []


def test_function_level_project_imports_say_why(project_edges):
    assert unexplained_lazy(project_edges) == []


def test_every_function_level_import_says_why():
    imports = function_level_imports(ROOT, PACKAGES + SCRIPT_FOLDERS)
    assert {i.path.split("/")[0] for i in imports} >= set(PACKAGES)  # the walker sees the real files
    assert unexplained_function_imports(imports) == []


@pytest.mark.parametrize("cli", ["egotwin_bench.cli", "egotwin_model.cli"])
def test_cli_help_loads_no_heavy_package(cli):
    code = ("import runpy, sys\nsys.argv = ['cli', '--help']\ntry:\n"
            f"    runpy.run_module({cli!r}, run_name='__main__')\nexcept SystemExit:\n    pass\n"
            f"print(sorted(m for m in {START_UP_FREE!r} if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr
    assert "Usage" in run.stdout
    assert run.stdout.strip().splitlines()[-1] == "[]"


# -- the walker itself, on planted faults ---------------------------------------------------------

def _package(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_walker_finds_a_planted_circle_and_an_upward_import(tmp_path):
    _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/low/__init__.py": "",
        "pkg/low/a.py": "from pkg.low import b\n",
        "pkg/low/b.py": "def f():\n    from . import c  # lazy: a circle through a function still counts\n",
        "pkg/low/c.py": ("import pkg.low.a as a\nfrom typing import TYPE_CHECKING\n"
                         "if TYPE_CHECKING:\n    from pkg.high import h\n"),
        "pkg/high/__init__.py": "",
        "pkg/high/h.py": "import json\nfrom numpy import y\n",
    })
    edges = import_edges(tmp_path, ("pkg",))
    assert cycles(edges) == [["pkg.low.a", "pkg.low.b", "pkg.low.c"]]
    layers = (("pkg", "pkg.low"), ("pkg.high",))
    assert layer_problems(edges, list(module_names(tmp_path, ("pkg",))), layers) == [
        "pkg.low.c:4 imports pkg.high.h (layer 1 above 0)"]
    assert layer_problems([], ["pkg.low.a", "pkg.other"], layers[1:]) == [
        "pkg.low.a: in no layer of LAYERS", "pkg.other: in no layer of LAYERS"]
    assert unexplained_lazy(edges) == []


def test_walker_wants_a_reason_for_a_function_level_import(tmp_path):
    _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "def f():\n    from pkg import b\n    return b\n",
        "pkg/b.py": "def g():\n    # lazy: torch is heavy\n    import pkg.c\n",
        "pkg/c.py": "X = 1\n",
    })
    edges = import_edges(tmp_path, ("pkg",))
    assert cycles(edges) == []
    assert unexplained_lazy(edges) == ["pkg.a:2 imports pkg.b inside a function without a '# lazy: ...' reason"]


def test_walker_wants_a_reason_for_any_function_level_import(tmp_path):
    _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": ("import json\ntry:\n    import spacy\nexcept ImportError:\n    spacy = None\n"
                     "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n\n"
                     "class C:\n    import shutil\n\n"
                     "    def m(self):\n        import numpy as np, os.path\n        return np\n"),
        "pkg/b.py": ("def g():\n    import torch  # lazy: heavy, kept off the CLI's start-up path\n"
                     "    # lazy: ray is heavy and only for --workers\n    import ray\n    from ray import data\n\n"
                     "    def inner():\n        from . import a\n\n"
                     "    return lambda: __import__('x')\n"),
        "scripts/run.py": "def main():\n    from tqdm import tqdm\n",
    })
    imports = function_level_imports(tmp_path, ("pkg", "scripts"))
    assert [(i.path, i.line, i.modules) for i in imports] == [
        ("pkg/a.py", 14, ("numpy", "os.path")),
        ("pkg/b.py", 2, ("torch",)), ("pkg/b.py", 4, ("ray",)), ("pkg/b.py", 5, ("ray",)), ("pkg/b.py", 8, (".",)),
        ("scripts/run.py", 2, ("tqdm",)),
    ]
    assert unexplained_function_imports(imports) == [
        "pkg/a.py:14 imports numpy, os.path inside a function without a '# lazy: ...' reason",
        "pkg/b.py:8 imports . inside a function without a '# lazy: ...' reason",
        "scripts/run.py:2 imports tqdm inside a function without a '# lazy: ...' reason",
    ]
