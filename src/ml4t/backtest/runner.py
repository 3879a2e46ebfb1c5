"""Run a config end to end: overrides, the run, atomic outputs and a reproducibility record.

Every file of a run is written to a staging directory first and moved into place with
``os.replace`` (atomic on one file system), so an interrupted run never leaves a file that
looks complete. The run manifest (``run_manifest.json``) is removed first and written
last: a directory whose manifest is present holds the complete outputs of that run.

Beside the results go:

- ``resolved_config.yaml``: the config after ``--set`` overrides, with every path made
  absolute, so ``ml4t-backtest run resolved_config.yaml`` reproduces the run;
- ``run_manifest.json``: the config file and overrides, the SHA-256 and size of every data
  file read, the Python, package and plugin versions, the outputs and timings.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from glob import glob
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import yaml

from .config import (
    OUTPUT_KEYS,
    BacktestConfig,
    _is_local_path,
    _is_path_key,
    _spec,
    engine_from_config,
    load_config,
)

if TYPE_CHECKING:
    from .core.results import BacktestResult
    from .core.strategy import Strategy

__all__ = ["MANIFEST", "RESOLVED_CONFIG", "resolved_config", "run_config"]

MANIFEST = "run_manifest.json"
RESOLVED_CONFIG = "resolved_config.yaml"
_PACKAGES = (
    "ml4t-backtest",
    "numpy",
    "polars",
    "pandas",
    "pyarrow",
    "numba",
    "pydantic",
    "pluggy",
    "pandas-market-calendars",
    "pyyaml",
)


def resolved_config(cfg: BacktestConfig) -> dict[str, Any]:
    """Return the config as a plain mapping with every relative path made absolute."""
    out: dict[str, Any] = cfg.model_dump(
        mode="json", by_alias=True, exclude_none=True, exclude={"base_dir", "source"}
    )

    def absolute(value: str) -> str:
        return str(cfg.path(value).resolve())

    data = out["data"]
    for key in ("asset_data", "signal_data", "context_data"):
        if key in data:
            data[key]["path"] = absolute(data[key]["path"])
    if "feed" in data:
        params = data["feed"].get("params", {})
        for k, v in params.items():
            if _is_path_key(k) and _is_local_path(v):
                params[k] = absolute(v)
    ex = out["execution"]
    for key in ("assets", "corporate_actions"):
        if isinstance(ex.get(key), str):
            ex[key] = absolute(ex[key])
    rep = out["reporting"]
    for key in ("output_dir", *OUTPUT_KEYS):
        if key in rep:
            rep[key] = absolute(rep[key])
    if "strategy" in out:
        st = out["strategy"]
        st["path"] = absolute(st["path"]) if "path" in st else str(Path(cfg.base_dir).resolve())
    return out


def data_files(cfg: BacktestConfig) -> list[Path]:
    """Return the local data files a config reads (globs expanded), sorted."""
    names: list[str] = []
    data = cfg.data
    for section in (data.asset_data, data.signal_data, data.context_data):
        if section is not None:
            names.append(str(cfg.path(section.path)))
    if data.feed is not None:
        for k, v in data.feed.params.items():
            if _is_path_key(k) and _is_local_path(v):
                names.append(str(cfg.path(v)))
    for value in (cfg.execution.assets, cfg.execution.corporate_actions):
        if isinstance(value, str):
            names.append(str(cfg.path(value)))
    files: set[Path] = set()
    for name in names:
        matches = glob(name) if any(ch in name for ch in "*?[") else [name]
        files.update(Path(m).resolve() for m in matches if Path(m).is_file())
    return sorted(files)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in _PACKAGES:
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def run_config(
    config: BacktestConfig | str | Path,
    strategy: Strategy | None = None,
    output_dir: str | Path | None = None,
    *,
    overrides: Sequence[str] = (),
    progress: Callable[[float], None] | None = None,
) -> tuple[BacktestResult, list[Path]]:
    """Build the engine from a config, run it and write its outputs atomically.

    Parameters
    ----------
    config : BacktestConfig, str or Path
        A config or the path of a YAML/JSON config file.
    strategy : Strategy, optional
        Use this strategy instead of importing the config's ``strategy`` section.
    output_dir : str or Path, optional
        Overrides ``reporting.output_dir``; the single-file outputs (``trades_output``, ...)
        are then written there too, under their file names.
    overrides : sequence of str
        ``key.path=value`` assignments applied before validation (only with a path).
    progress : callable, optional
        Passed to :meth:`BacktestEngine.run`.

    Returns
    -------
    (BacktestResult, list of Path)
        The result and every file written (none when the config names no output).
    """
    if isinstance(config, BacktestConfig):
        if overrides:
            raise TypeError("overrides apply to a config file; edit the BacktestConfig instead")
        cfg = config
    else:
        cfg = load_config(config, overrides=overrides)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    rep = cfg.reporting
    out_dir = Path(output_dir) if output_dir is not None else None
    if out_dir is None and rep.output_dir is not None:
        out_dir = cfg.path(rep.output_dir)
    singles = {kind: cfg.path(p) for kind, p in rep.outputs().items()}
    if output_dir is not None:  # --output: every file of the run goes there
        singles = {kind: Path(output_dir) / p.name for kind, p in singles.items()}
    engine = engine_from_config(cfg, strategy)
    if out_dir is None and not singles:
        return engine.run(progress=progress), []
    # hashed before the run: the record is of the data the run reads
    hashes = {str(f): {"sha256": _sha256(f), "bytes": f.stat().st_size} for f in data_files(cfg)}
    result = engine.run(progress=progress)
    home = out_dir if out_dir is not None else next(iter(singles.values())).parent
    home.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".ml4t-run-", dir=home))
    try:
        moves: list[tuple[Path, Path]] = []
        if out_dir is not None:
            reports = staging / "reports"
            specs = [_spec(r) for r in rep.reporters]
            for p in engine.report(result, reports, specs):
                moves.append((p, out_dir / p.relative_to(reports)))
        for kind, target in singles.items():
            tmp = staging / f"single-{kind}{target.suffix}"
            _write_single(result, kind, tmp)
            moves.append((tmp, target))
        (home / MANIFEST).unlink(missing_ok=True)
        written = []
        for src, dst in moves:
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
            written.append(dst)
        config_path = home / RESOLVED_CONFIG
        resolved = resolved_config(cfg)
        if out_dir is not None:  # where this run actually wrote (--output)
            resolved["reporting"]["output_dir"] = str(out_dir.resolve())
            for kind, target in singles.items():
                resolved["reporting"][f"{kind}_output"] = str(target.resolve())
        _atomic_text(config_path, yaml.safe_dump(resolved, sort_keys=False))
        written.append(config_path)
        manifest = {
            "config_file": None if cfg.source == "<config>" else str(Path(cfg.source).resolve()),
            "overrides": list(overrides),
            "resolved_config": RESOLVED_CONFIG,
            "data_files": hashes,
            "versions": _versions(),
            "plugins": result.metadata.get("plugins", []),
            "outputs": [str(p) for p in written],
            "started_at": started.isoformat(),
            "elapsed_seconds": round(time.perf_counter() - t0, 3),
            "run_seconds": round(result.elapsed_time, 3),
            "complete": result.complete,
        }
        _atomic_text(home / MANIFEST, json.dumps(manifest, indent=2, default=str))
        written.append(home / MANIFEST)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result, written


def _write_single(result: BacktestResult, kind: str, path: Path) -> None:
    if kind == "metrics":
        path.write_text(json.dumps(result.metrics, indent=2, default=str))
        return
    frame = {
        "trades": result.trades_df,
        "portfolio": result.portfolio_df,
        "fills": result.fills_df,
    }[kind]
    if path.suffix.lower() == ".csv":
        # CSV has no duration type: durations are written as ISO 8601 text ("P2DT6H")
        durations = [c for c, t in frame.schema.items() if isinstance(t, pl.Duration)]
        frame.with_columns(pl.col(c).dt.to_string() for c in durations).write_csv(path)
    else:
        frame.write_parquet(path)


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
