"""Imports flow one way: an AST check of every module under src/drivewm against the layer table.

A module of package P may import package Q only if rank(Q) < rank(P) or Q == P; distinct packages of
the same rank never import each other. `errors` sits alone at the bottom, since every layer raises its
errors; `config` is the typed-config machinery (a training run's RunConfig lives in `train`); `hub`
rebuilds models from the registry and their configs. Function-level imports count; imports under
`if TYPE_CHECKING:` do not (they never run). Two more rules: the training engine imports no model
family, and the report imports no training code.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "drivewm"

RANK = {
    "errors": 0,
    "geometry": 1, "lifetime": 1, "registry": 1, "config": 1, "forecaster": 1,
    "hub": 2,
    "data": 3, "conditions": 3,
    "sim": 4, "metrics": 4,
    "tokenizers": 5, "backbones": 5, "baselines": 5,
    "dynamics": 6, "jepa": 6,
    "planning": 7, "evaluation": 7,
    "train": 8,
    "report": 9, "scaling": 9,
    "demo": 10, "play": 10,
    "cli": 11,
}
MODEL_FAMILIES = {"tokenizers", "dynamics", "jepa", "backbones"}
# Packages that must not import others regardless of rank: {importer: forbidden}.
FORBIDDEN = {"train": MODEL_FAMILIES, "report": {"train"}}


def package_of(module: str) -> str | None:
    """The layer a dotted module name belongs to ('drivewm.sim.cli' -> 'cli'); None outside drivewm
    or for the package root itself."""
    parts = module.split(".")
    if parts[0] != ROOT or len(parts) < 2:
        return None
    if parts[-1] == "cli" or parts[1] == "cli":  # every */cli.py belongs to the command-line layer
        return "cli"
    return parts[1]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """Absolute module names an ImportFrom reaches (relative imports resolved against `module`)."""
    if node.level:
        base = module.split(".")
        if not is_package:
            base = base[:-1]
        base = base[:len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    # `from drivewm import sim` imports the package sim; `from drivewm import __version__` the root.
    if prefix == ROOT:
        return [f"{ROOT}.{a.name}" if a.name in RANK else ROOT for a in node.names]
    return [prefix]


def imports_of(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, imported module) for every import in the tree outside `if TYPE_CHECKING:` blocks."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.extend((node.lineno, m) for m in _resolve(node, module, is_package))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def violations(modules: dict[str, tuple[str, str, bool]]) -> list[str]:
    """Every import that breaks the layer rules, as 'file:line importer -> imported'.

    modules: dotted module name -> (file label, source text, whether it is a package __init__).
    """
    bad = []
    for module, (label, source, is_package) in sorted(modules.items()):
        src_pkg = package_of(module)
        if src_pkg is None:
            continue
        for line, target in imports_of(ast.parse(source), module, is_package):
            dst_pkg = package_of(target)
            if dst_pkg is None or dst_pkg == src_pkg:
                continue
            unknown = src_pkg not in RANK or dst_pkg not in RANK
            if (unknown or RANK[dst_pkg] >= RANK[src_pkg]
                    or dst_pkg in FORBIDDEN.get(src_pkg, ())):
                bad.append(f"{label}:{line} {module} -> {target}")
    return bad


def source_modules(src: Path = SRC) -> dict[str, tuple[str, str, bool]]:
    out = {}
    for path in sorted((src / ROOT).rglob("*.py")):
        rel = path.relative_to(src).with_suffix("")
        parts = list(rel.parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        out[".".join(parts)] = (str(path.relative_to(src.parent)), path.read_text(), is_package)
    return out


def test_imports_follow_the_layers():
    modules = source_modules()
    assert len(modules) > 50  # the whole package was read
    bad = violations(modules)
    assert not bad, "imports against the layer table:\n" + "\n".join(bad)


def test_checker_catches_back_edges():
    modules = {
        "drivewm.data.windows": ("data/windows.py", "from drivewm.sim import simulate_episode\n", False),
        "drivewm.data.store": ("data/store.py", "from drivewm.geometry import se2_compose\n", False),
        "drivewm.sim.cli": ("sim/cli.py", "import drivewm.train.engine\n", False),
        "drivewm.sim.env": ("sim/env.py", "from ..metrics import planning\n", False),
        "drivewm.metrics.occ": ("metrics/occ.py", "from ..sim import env\n", False),
        "drivewm.geometry": ("geometry.py", "from typing import TYPE_CHECKING\n"
                             "if TYPE_CHECKING:\n    from drivewm.data.spec import GridSpec\n", False),
        "drivewm.train.run": ("train/run.py", "def f():\n    from drivewm.dynamics import token_cache\n",
                              False),
        "drivewm.report.fig": ("report/fig.py", "from drivewm import train, metrics, __version__\n", False),
        "drivewm.demo.x": ("demo/x.py", "from . import stages\nfrom drivewm.report import fig\n", False),
        "drivewm.scaling": ("scaling.py", "from drivewm.report import fig\n", False),
    }
    assert violations(modules) == [
        "data/windows.py:1 drivewm.data.windows -> drivewm.sim",          # up a rank
        "metrics/occ.py:1 drivewm.metrics.occ -> drivewm.sim",            # same rank, other package
        "report/fig.py:1 drivewm.report.fig -> drivewm.train",            # report imports no train
        "scaling.py:1 drivewm.scaling -> drivewm.report",                 # same rank
        "sim/env.py:1 drivewm.sim.env -> drivewm.metrics",                # same rank, relative import
        "train/run.py:2 drivewm.train.run -> drivewm.dynamics",            # engine imports no model
    ]


def test_package_of_maps_cli_modules_to_the_cli_layer():
    assert package_of("drivewm.sim.cli") == "cli"
    assert package_of("drivewm.cli.train") == "cli"
    assert package_of("drivewm.geometry") == "geometry"
    assert package_of("drivewm.dynamics.token_cache") == "dynamics"
    assert package_of("torch.nn") is None
