"""Layering rules: core never imports builtin; ml4t stays a PEP 420 namespace."""

from __future__ import annotations

import ast
from pathlib import Path

import ml4t.backtest

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


def test_core_modules_never_import_builtin() -> None:
    offenders = []
    for path in sorted((PKG / "core").glob("*.py")):
        for name in _imports(path):
            if "builtin" in name or name.startswith(("ml4t.backtest.builtin", "..cli", "..demo")):
                offenders.append(f"{path.name}: {name}")
    assert offenders == []


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


def test_plugin_packages_use_only_public_names() -> None:
    offenders = []
    for path in sorted(REPO.glob("plugins/*/src/**/*.py")):
        for name in _imports(path):
            if name.startswith("ml4t.") and name not in PUBLIC_MODULES:
                offenders.append(f"{path.relative_to(REPO)}: {name}")
    assert offenders == []


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
