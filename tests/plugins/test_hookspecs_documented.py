"""Every hook spec has a section in docs/plugin_hooks.md headed by its exact signature."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from ml4t.backtest import hookspecs

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugin_hooks.md"
SPECS = [
    fn
    for name, fn in vars(hookspecs).items()
    if name.startswith("ml4t_") and hasattr(fn, f"{hookspecs.PROJECT}_spec")
]


def _signature(fn: object) -> str:
    params = inspect.signature(fn).parameters  # type: ignore[arg-type]
    return f"{fn.__name__}({', '.join(params)})"  # type: ignore[attr-defined]


def test_specs_found() -> None:
    assert len(SPECS) >= 12


@pytest.mark.parametrize("spec", SPECS, ids=lambda f: f.__name__)
def test_hookspec_documented_under_its_signature(spec: object) -> None:
    headings = re.findall(r"^### `([^`]+)`$", DOC.read_text(), flags=re.M)
    assert _signature(spec) in headings


@pytest.mark.parametrize("spec", SPECS, ids=lambda f: f.__name__)
def test_hookspec_docstring_says_when_called_and_builtin(spec: object) -> None:
    doc = inspect.getdoc(spec) or ""
    assert "Called" in doc and ("builtin" in doc.lower())
    opts = getattr(spec, f"{hookspecs.PROJECT}_spec")
    if opts.get("firstresult"):
        assert "first non-None result wins" in doc


def test_no_documented_hook_is_missing_from_the_specs() -> None:
    headings = re.findall(r"^### `(ml4t_\w+)\(", DOC.read_text(), flags=re.M)
    assert sorted(headings) == sorted(f.__name__ for f in SPECS)  # type: ignore[attr-defined]
