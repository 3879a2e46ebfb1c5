"""Fake entry points for discovery tests: nothing is installed, metadata is monkeypatched."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest


@dataclass
class FakeDist:
    name: str
    version: str


class FakeEntryPoint:
    """Quacks like ``importlib.metadata.EntryPoint``; ``load`` returns or raises."""

    def __init__(self, name: str, obj: Any, dist: str = "fake-dist", version: str = "1.2.3"):
        self.name = name
        self.value = f"fake_{name}"
        self.group = "ml4t.backtest"
        self.dist = FakeDist(dist, version)
        self._obj = obj

    def load(self) -> Any:
        if isinstance(self._obj, BaseException):
            raise self._obj
        return self._obj


@pytest.fixture
def fake_entry_points(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Install fake entry points of group ``ml4t.backtest`` (other groups unchanged)."""
    real = importlib.metadata.entry_points
    monkeypatch.delenv("ML4T_BACKTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("ML4T_BACKTEST_PLUGINS", raising=False)
    monkeypatch.delenv("ML4T_BACKTEST_BLOCK_PLUGINS", raising=False)

    def install(*eps: FakeEntryPoint) -> None:
        def entry_points(**kwargs: Any) -> Any:
            if kwargs.get("group") == "ml4t.backtest":
                return list(eps)
            return real(**kwargs)

        monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)

    install()
    return install


@pytest.fixture
def ep() -> type[FakeEntryPoint]:
    return FakeEntryPoint
