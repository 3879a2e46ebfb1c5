"""Layering rules on the real import graph, and what code outside ``src/`` may import.

The rule (``docs/architecture.md``): the import graph of ``src/`` has no circle, counting
lazy and ``TYPE_CHECKING`` imports; each layer imports only the layers below it, and
``core`` nothing but itself, ``kernels`` and ``errors``. Code outside the package
(examples, plugins, validation, benchmarks, compat) uses only ``ml4t.backtest.__all__``
and the public test kit.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

import ml4t.backtest

from .import_graph import cycles, import_graph, module_files, upward

PKG = Path(ml4t.backtest.__file__).resolve().parent


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            prefix = "." * node.level
            out.append(prefix + (node.module or ""))
        elif isinstance(node, ast.Import):
            out.extend(alias.name for alias in node.names)
    return out


def test_ml4t_is_a_namespace_package_without_init() -> None:
    assert not (PKG.parent / "__init__.py").exists()


def test_public_names_are_importable_and_listed() -> None:
    for name in ml4t.backtest.__all__:
        assert hasattr(ml4t.backtest, name), name
    for name in ("BacktestEngine", "Strategy", "PolarsDataFeed", "SimulationBroker", "Context"):
        assert name in ml4t.backtest.__all__


def test_package_ships_py_typed() -> None:
    assert (PKG / "py.typed").is_file()


REPO = PKG.parents[2]
PUBLIC_MODULES = {"ml4t.backtest", "ml4t.backtest.testing"}
#: code outside src/ that may use only the public API
OUTSIDE = ("examples", "plugins", "validation", "benchmarks", "compat")
P = "ml4t.backtest"

#: layer -> the layers it may import (besides itself); ``core`` is the floor
LAYERS: dict[str, tuple[str, ...]] = {
    f"{P}.kernels": (),
    f"{P}.errors": (),
    f"{P}.markers": (),
    f"{P}.kernel_cache": (),
    f"{P}._version": (),
    f"{P}.core": (f"{P}.errors", f"{P}.kernels"),
    f"{P}.registry": (f"{P}.errors",),
    f"{P}.hookspecs": (f"{P}.markers", f"{P}.core", f"{P}.registry"),
    f"{P}.plugins": (f"{P}.errors", f"{P}.markers", f"{P}.hookspecs", f"{P}.registry"),
    f"{P}.builtin": (
        f"{P}.core",
        f"{P}.kernels",
        f"{P}.errors",
        f"{P}.markers",
        f"{P}.registry",
        f"{P}.kernel_cache",
    ),
    f"{P}.declarative": (f"{P}.core", f"{P}.builtin", f"{P}.kernels", f"{P}.errors"),
    f"{P}.alignment": (f"{P}.core", f"{P}.errors"),
    # the schema derives from the simulation broker's settings object and presets
    f"{P}.config": (
        f"{P}.core",
        f"{P}.kernels",
        f"{P}.errors",
        f"{P}.plugins",
        f"{P}.registry",
        f"{P}.builtin",
    ),
    f"{P}.assemble": (f"{P}.config", f"{P}.builtin", f"{P}.core", f"{P}.errors"),
}


def _graph(root: Path = PKG) -> dict[str, set[str]]:
    return import_graph(module_files(root, P))


def test_src_import_graph_has_no_circle() -> None:
    assert cycles(_graph()) == []


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_each_layer_imports_only_the_layers_below_it(layer: str) -> None:
    assert upward(_graph(), layer, (layer, *LAYERS[layer])) == []


def test_core_runs_without_the_layers_above_it() -> None:
    """Importing core (every module) loads nothing of plugins, config, builtin or engine."""
    import subprocess
    import sys

    code = (
        "import importlib, pkgutil, sys\n"
        "import ml4t.backtest.core as core\n"
        "for m in pkgutil.iter_modules(core.__path__):\n"
        "    importlib.import_module('ml4t.backtest.core.' + m.name)\n"
        "above = ('plugins', 'config', 'builtin', 'engine', 'declarative', 'runner', "
        "'assemble', 'registry', 'hookspecs')\n"
        "print(sorted(n for n in sys.modules if n.split('.')[2:3] and "
        "n.split('.')[2] in above and n.startswith('ml4t.backtest.')))\n"
    )
    # the package __init__ imports everything: load core without it, as a plain package
    prelude = (
        "import importlib.machinery, importlib.util, sys, types\n"
        f"pkg = types.ModuleType('ml4t.backtest'); pkg.__path__ = [{str(PKG)!r}]\n"
        "sys.modules['ml4t.backtest'] = pkg\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def _copy_package(tmp_path: Path) -> Path:
    root = tmp_path / "backtest"
    shutil.copytree(PKG, root, ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.nbi"))
    return root


def test_a_lazy_import_from_core_upwards_is_caught(tmp_path: Path) -> None:
    root = _copy_package(tmp_path)
    orders = root / "core" / "orders.py"
    orders.write_text(
        orders.read_text()
        + "\n\ndef _planted() -> object:\n    from ..plugins import get_plugin_manager\n\n"
        "    return get_plugin_manager\n"
    )
    graph = _graph(root)
    assert f"{P}.core.orders -> {P}.plugins" in upward(graph, f"{P}.core", LAYERS[f"{P}.core"])
    assert any(f"{P}.core.orders" in c and f"{P}.plugins" in c for c in cycles(graph))


def test_a_type_checking_circle_is_caught(tmp_path: Path) -> None:
    root = _copy_package(tmp_path)
    hist = root / "core" / "history.py"
    text = hist.read_text().replace(
        "from .data import Block\n",
        "from .data import Block\n\nif TYPE_CHECKING:\n    from .run import Run\n",
    )
    hist.write_text(text.replace("from typing import Any", "from typing import TYPE_CHECKING, Any"))
    found = cycles(_graph(root))
    assert any(f"{P}.core.history" in c and f"{P}.core.run" in c for c in found), found


def test_code_outside_src_uses_only_the_public_api() -> None:
    offenders = []
    for top in OUTSIDE:
        for path in sorted((REPO / top).rglob("*.py")):
            if "/src/" not in str(path) and top == "plugins" and "/tests/" in str(path):
                continue  # a plugin's own tests may reach into its package
            for name in _imports(path):
                if name.startswith("ml4t.backtest") and name not in PUBLIC_MODULES:
                    offenders.append(f"{path.relative_to(REPO)}: {name}")
    assert offenders == []


def test_the_public_api_check_sees_a_private_import(tmp_path: Path) -> None:
    planted = tmp_path / "example.py"
    planted.write_text("from ml4t.backtest.core.orders import Order\nimport ml4t.backtest\n")
    names = [n for n in _imports(planted) if n.startswith("ml4t.backtest")]
    assert [n for n in names if n not in PUBLIC_MODULES] == ["ml4t.backtest.core.orders"]


def test_src_never_imports_first_party_plugins() -> None:
    offenders = [
        f"{path.name}: {name}"
        for path in sorted(PKG.rglob("*.py"))
        for name in _imports(path)
        if name.startswith("ml4t_backtest_")
    ]
    assert offenders == []


def test_kernels_import_only_numpy_numba_and_each_other() -> None:
    allowed = ("numpy", "numba", "math", "__future__", "collections.abc", "typing", ".")
    offenders = []
    for path in sorted((PKG / "kernels").glob("*.py")):
        for name in _imports(path):
            if not name.startswith(allowed) or name.startswith(".."):
                offenders.append(f"{path.name}: {name}")
    assert offenders == []
