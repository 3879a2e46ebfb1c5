"""Run a config end to end: overrides, the run, atomic outputs and a reproducibility record.

Every file of a run is written to a staging directory first and moved into place with
``os.replace`` (atomic on one file system), so an interrupted run never leaves a file that
looks complete. The run manifest (``run_manifest.json``) is removed first and written
last: a directory whose manifest is present holds the complete outputs of that run.

One run at a time writes to a directory. Before any bar is run, every output location is
checked (a file where a directory belongs, a directory that cannot be created or written
is a :class:`~ml4t.backtest.ConfigError` naming the key) and each output directory is
locked: ``.ml4t-run.lock`` records the holder (pid, host, start time, config) and is held
with an OS lock (``flock``) that dies with its process. A second run on the directory
fails at once with :class:`~ml4t.backtest.errors.OutputLockError` naming the holder; the
lock file of a run that was killed is taken over with a
:class:`~ml4t.backtest.errors.StaleLockWarning`.

Beside the results go:

- ``resolved_config.yaml``: the config after ``--set`` overrides, with every input path
  made absolute and every output path relative to the file itself, so
  ``ml4t-backtest run resolved_config.yaml`` reproduces the run in place;
- ``run_manifest.json``: the config file and overrides, the SHA-256 and size of every data
  file read, the Python, package and plugin versions, the outputs, timings and any lock
  taken over. It is the only file holding wall-clock values: the same input writes the
  same bytes to every other file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import platform
import shutil
import socket
import sys
import tempfile
import threading
import time
import warnings
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
    data_paths,
    is_local_path,
    is_path_key,
    load_config,
    model_spec,
)
from .engine import BacktestEngine
from .errors import ConfigError, OutputLockError, StaleLockWarning

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
            if is_path_key(k) and is_local_path(v):
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
    files: set[Path] = set()
    for _, path in data_paths(cfg):
        name = str(path)
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
        Overrides ``reporting.output_dir`` (``--output`` on the command line); the
        single-file outputs (``trades_output``, ...) are then written there too, under
        their file names.
    overrides : sequence of str
        ``key.path=value`` assignments applied before validation (only with a path).
    progress : callable, optional
        Passed to :meth:`BacktestEngine.run`.

    Returns
    -------
    (BacktestResult, list of Path)
        The result and every file written (none when the config names no output).

    Raises
    ------
    ConfigError
        Before any bar is run: an output location is a file where a directory belongs (or
        the reverse), or cannot be created or written; the message names the config key
        (``reporting.output_dir``, ``reporting.trades_output``, ``--output``) and the path.
    OutputLockError
        Another run holds one of the output directories; the message names the directory
        and the holder (pid, host, start time, config).
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
    if out_dir is None and not singles:
        return BacktestEngine.from_config(cfg, strategy).run(progress=progress), []
    home = out_dir if out_dir is not None else next(iter(singles.values())).parent
    dirs = _output_dirs(cfg, out_dir, singles, output_dir is not None)
    locks: list[_RunLock] = []
    created: list[Path] = []
    done = False
    try:
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": started.isoformat(),
            "config": cfg.source if cfg.source == "<config>" else str(Path(cfg.source).resolve()),
        }
        for directory, key in sorted(dirs.items()):
            try:
                created.extend(_make_dirs(directory))
                locks.append(_RunLock.acquire(directory, holder))
            except OutputLockError as exc:
                raise OutputLockError(
                    f"{cfg.source}: {key}: {exc}", path=exc.path, holder=exc.holder
                ) from None
            except OSError as exc:
                raise ConfigError(
                    f"{cfg.source}: {key}: cannot write to {directory}: {exc.strerror or exc}"
                ) from exc
        engine = BacktestEngine.from_config(cfg, strategy)
        # hashed before the run: the record is of the data the run reads
        hashes = {
            str(f): {"sha256": _sha256(f), "bytes": f.stat().st_size} for f in data_files(cfg)
        }
        result = engine.run(progress=progress)
        written = _write_outputs(cfg, engine, result, out_dir, singles, home)
        manifest = {
            "config_file": None if cfg.source == "<config>" else str(Path(cfg.source).resolve()),
            "overrides": list(overrides),
            "resolved_config": RESOLVED_CONFIG,
            "data_files": hashes,
            "versions": _versions(),
            "plugins": result.metadata.get("plugins", []),
            "outputs": [str(p) for p in written],
            "host": holder["host"],
            "pid": holder["pid"],
            "started_at": started.isoformat(),
            "finished_at": datetime.now(UTC).isoformat(),
            "created_at": result.metadata.get("created_at"),
            "elapsed_seconds": round(time.perf_counter() - t0, 3),
            "run_seconds": round(result.elapsed_time, 3),
            "stale_lock_taken_over": next((k.previous for k in locks if k.previous), None),
            "complete": result.complete,
        }
        _atomic_text(home / MANIFEST, json.dumps(manifest, indent=2, default=str))
        written.append(home / MANIFEST)
        done = True
    finally:
        for lock in reversed(locks):
            lock.release()
        if not done:  # a failed run leaves no directory it created behind, when empty
            for directory in reversed(created):
                with contextlib.suppress(OSError):
                    directory.rmdir()
    return result, written


def _write_outputs(
    cfg: BacktestConfig,
    engine: BacktestEngine,
    result: BacktestResult,
    out_dir: Path | None,
    singles: dict[str, Path],
    home: Path,
) -> list[Path]:
    """Stage every output, then move them into place; return the paths written."""
    staging = Path(tempfile.mkdtemp(prefix=".ml4t-run-", dir=home))
    try:
        moves: list[tuple[Path, Path]] = []
        if out_dir is not None:
            reports = staging / "reports"
            specs = [model_spec(r) for r in cfg.reporting.reporters]
            for p in engine.report(result, reports, specs):
                moves.append((p, out_dir / p.relative_to(reports)))
        for kind, target in singles.items():
            tmp = staging / f"single-{kind}{target.suffix}"
            _write_single(result, kind, tmp)
            moves.append((tmp, target))
        resolved = resolved_config(cfg)
        if out_dir is not None:  # where this run actually wrote (--output)
            resolved["reporting"]["output_dir"] = str(out_dir)
            for kind, target in singles.items():
                resolved["reporting"][f"{kind}_output"] = str(target)
        for key in ("output_dir", *OUTPUT_KEYS):  # relative to the resolved config itself
            if key in resolved["reporting"]:
                resolved["reporting"][key] = _relative(resolved["reporting"][key], home)
        config_tmp = staging / RESOLVED_CONFIG
        config_tmp.write_text(yaml.safe_dump(resolved, sort_keys=False))
        moves.append((config_tmp, home / RESOLVED_CONFIG))
        (home / MANIFEST).unlink(missing_ok=True)
        written = []
        for src, dst in moves:
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
            if dst not in written:  # a single-file output may replace a reporter's file
                written.append(dst)
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _relative(path: str, home: Path) -> str:
    """Return ``path`` relative to ``home`` (both made absolute), or absolute if it cannot be."""
    try:
        return os.path.relpath(Path(path).resolve(), home.resolve())
    except ValueError:  # another drive (Windows)
        return str(Path(path).resolve())


# --- output locations --------------------------------------------------------------------
def _output_dirs(
    cfg: BacktestConfig, out_dir: Path | None, singles: dict[str, Path], option: bool
) -> dict[Path, str]:
    """Check every output location now; return each output directory and its config key.

    Nothing is created here: a file where a directory belongs, a directory where a file
    belongs or a parent that is not writable is a :class:`ConfigError` naming the key.
    """
    dirs: dict[Path, str] = {}
    if out_dir is not None:
        dirs[Path(os.path.abspath(out_dir))] = "--output" if option else "reporting.output_dir"
    for kind, target in singles.items():
        key = f"reporting.{kind}_output"
        if target.is_dir():
            raise ConfigError(f"{cfg.source}: {key}: {target} is a directory, not a file")
        dirs.setdefault(Path(os.path.abspath(target.parent)), key)
    for directory, key in dirs.items():
        problem = _dir_problem(directory)
        if problem is not None:
            raise ConfigError(f"{cfg.source}: {key}: {problem}")
    return dirs


def _dir_problem(directory: Path) -> str | None:
    """Say why ``directory`` cannot be (created and) written to, or return None."""
    if directory.exists():
        if not directory.is_dir():
            return f"{directory} is not a directory (it is a file)"
        if not os.access(directory, os.W_OK | os.X_OK):
            return f"{directory} is not writable"
        return None
    parent = directory.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"cannot create {directory}: {parent} is not a directory (it is a file)"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot create {directory}: {parent} is not writable"
    return None


def _make_dirs(directory: Path) -> list[Path]:
    """Create ``directory`` and missing parents; return those created, outermost first."""
    missing = []
    p = directory
    while not p.exists():
        missing.append(p)
        p = p.parent
    for p in reversed(missing):
        p.mkdir(exist_ok=True)
    return list(reversed(missing))


# --- one run per directory -----------------------------------------------------------------
class _RunLock:
    """The lock of one output directory, held for the whole run.

    ``.ml4t-run.lock`` holds the holder's record (JSON) and an OS lock on it: ``flock`` on
    POSIX, ``msvcrt.locking`` on Windows. The OS drops the lock when its process dies, so a
    lock file whose lock can be taken is stale: a run that was killed left it.
    """

    def __init__(self, path: Path, fd: int, previous: dict[str, Any] | None) -> None:
        self.path = path
        self.fd = fd
        self.previous = previous

    @classmethod
    def acquire(cls, directory: Path, holder: dict[str, Any]) -> _RunLock:
        """Lock ``directory`` for ``holder`` or raise :class:`OutputLockError`."""
        path = directory / LOCK_FILE
        for _ in range(20):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _try_lock(fd):
                os.close(fd)
                other = _read_holder(path)
                raise OutputLockError(
                    f"output directory {directory} is in use by another run: "
                    + _describe(other)
                    + f"; wait for it to finish or write elsewhere (lock file {path})",
                    path=str(directory),
                    holder=other,
                )
            try:
                same = _same_file(fd, path)
            except BaseException:
                os.close(fd)
                raise
            if not same:  # released and removed while we waited: lock the new file
                os.close(fd)
                continue
            lock = cls(path, fd, None)
            try:
                lock.previous = _parse(_read_fd(fd))
                _write_fd(fd, json.dumps({**holder, "directory": str(directory)}))
            except BaseException:
                lock.release()
                raise
            if lock.previous is not None:
                pid = lock.previous.get("pid")
                state = (
                    "no longer running"
                    if lock.previous.get("host") == holder["host"] and not _pid_alive(pid)
                    else "no longer holding it"
                )
                warnings.warn(
                    f"output directory {directory}: took over the lock left by a run that is "
                    f"{state}: {_describe(lock.previous)}; its outputs may be incomplete "
                    "(they have no run_manifest.json unless that run finished)",
                    StaleLockWarning,
                    stacklevel=3,
                )
            return lock
        raise OutputLockError(
            f"output directory {directory}: could not take the lock {path} (it keeps being "
            "replaced)",
            path=str(directory),
            holder={},
        )

    def release(self) -> None:
        """Remove the lock file and drop the lock (in that order, so no one takes a lock
        on a file about to be removed)."""
        if sys.platform == "win32":  # an open file cannot be removed there
            os.close(self.fd)
            with contextlib.suppress(OSError):
                self.path.unlink()
            return
        try:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        finally:
            os.close(self.fd)


LOCK_FILE = ".ml4t-run.lock"
_LOCK_OFFSET = 1 << 30  # Windows locks a byte range: lock one byte far beyond the record

if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, _LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise
        return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino)


def _read_fd(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while block := os.read(fd, 65536):
        chunks.append(block)
    return b"".join(chunks).decode("utf-8", "replace")


def _write_fd(fd: int, text: str) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, text.encode())


def _parse(text: str) -> dict[str, Any] | None:
    if not text.strip():
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {"unreadable": text[:200]}
    return value if isinstance(value, dict) else {"unreadable": text[:200]}


def _read_holder(path: Path) -> dict[str, Any]:
    """Read the holder's record (it may not be written yet: retry for a moment)."""
    for _ in range(50):
        try:
            record = _parse(path.read_text())
        except OSError:
            record = None
        if record is not None:
            return record
        time.sleep(0.01)
    return {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder or "pid" not in holder:
        return "holder unknown (its lock file is empty or unreadable)"
    return (
        f"pid {holder.get('pid')} on host {holder.get('host')}, started "
        f"{holder.get('started_at')}, config {holder.get('config')}"
    )


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0 or sys.platform == "win32":
        return False  # Windows: os.kill would end the process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
