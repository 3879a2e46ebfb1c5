"""The kernel cache stamp: cached kernels go when any kernel source changes, stay otherwise."""

from __future__ import annotations

from pathlib import Path

from ml4t.backtest.kernel_cache import drop_stale_cache


def _kernels(tmp_path: Path) -> Path:
    kernels = tmp_path / "kernels"
    (kernels / "__pycache__").mkdir(parents=True)
    (kernels / "signal.py").write_text("def run_nb(): return fill_nb()\n")
    (kernels / "fills.py").write_text("def fill_nb(): return 1\n")
    return kernels


def _cache(kernels: Path) -> list[str]:
    (kernels / "__pycache__" / "signal.run_nb-1.py311.nbi").write_text("index")
    (kernels / "__pycache__" / "signal.run_nb-1.py311.1.nbc").write_text("code")
    return sorted(p.name for p in (kernels / "__pycache__").glob("*.nb?"))


def test_kernel_cache_dropped_when_a_called_module_changes(tmp_path: Path) -> None:
    kernels = _kernels(tmp_path)
    drop_stale_cache(kernels)  # first stamp
    assert len(_cache(kernels)) == 2
    assert drop_stale_cache(kernels) is False  # nothing changed: the cache stays
    assert len(list((kernels / "__pycache__").glob("*.nb?"))) == 2
    (kernels / "fills.py").write_text("def fill_nb(): return 2\n")  # only the callee changes
    assert drop_stale_cache(kernels) is True
    assert list((kernels / "__pycache__").glob("*.nb?")) == []
    _cache(kernels)
    assert drop_stale_cache(kernels) is False  # the new stamp holds


def test_kernel_cache_stamp_covers_the_real_kernels() -> None:
    from ml4t.backtest import kernel_cache

    names = {p.name for p in kernel_cache.KERNELS.glob("*.py")}
    assert {"signal_kernel.py", "fills.py", "costs.py", "matching.py"} <= names
