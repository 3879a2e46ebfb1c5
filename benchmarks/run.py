"""Benchmark runner: workloads W1-W3 through ml4t.backtest's modes, VectorBT and Backtrader.

Run from the repository root::

    python -m benchmarks.run                          # W1, W2, W3, every mode (~10 min)
    python -m benchmarks.run --quick                  # small sizes: a smoke test (~1 min)
    python -m benchmarks.run --workloads w2 --modes batch,signal --frameworks ml4t,vectorbt

The data of each workload is generated once (untimed) into a temporary directory. Each
runner (an ml4t mode, VectorBT, Backtrader) then runs in a fresh subprocess with
single-threaded polars/numba/BLAS, so wall time and peak memory are its own. The parent
prints one table with throughput, wall time, peak RSS, the ratios to VectorBT and
Backtrader and the issue's targets, then the cross-framework sanity check and the numba
compile-time probe. See ``benchmarks/README.md`` for what each column means.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .report import cpu_model, loadavg, print_report

RESULT_PREFIX = "BENCHMARK_RESULT "
DEFAULT_FRAMEWORKS = "ml4t,vectorbt,backtrader"
KNOWN_FRAMEWORKS = ("ml4t", "vectorbt", "backtrader", "loop")
KNOWN_MODES = ("bar", "batch", "signal")
_ROOT = Path(__file__).resolve().parent.parent
_THREAD_ENV = {
    "POLARS_MAX_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


# --- memory -----------------------------------------------------------------------------
def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _trim_heap() -> bool:
    """Give free glibc heap pages back to the OS, so reused memory shows up in RSS again."""
    try:
        import ctypes

        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0) >= 0)
    except (OSError, AttributeError):
        return False


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


# --- worker -----------------------------------------------------------------------------
def _size(text: str) -> tuple[int, int]:
    a, p = text.split("x")
    return int(a), int(p)


def _shape(size: tuple[int, int]) -> str:
    return f"{size[0]:,} x {size[1]:,}"


def _import_framework(name: str) -> None:
    """Import everything the timed region needs, so imports are never timed."""
    import numpy  # noqa: F401
    import pandas  # noqa: F401

    if name == "ml4t":
        import polars  # noqa: F401

        import ml4t.backtest  # noqa: F401
    elif name == "vectorbt":
        import vectorbt  # type: ignore[import-untyped]  # noqa: F401
    elif name == "backtrader":
        import backtrader  # type: ignore[import-untyped]  # noqa: F401


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """Run one runner of one workload in this process and return its measurements."""
    from .workloads import WORKLOADS

    wl = WORKLOADS[args.workload]
    runner = wl.runners[args.worker]
    _import_framework(runner.framework)
    data_dir = Path(args.data_dir)
    size = _size(args.size)
    bars = size[0] * size[1]

    t_warm = 0.0
    if not args.probe:  # warm-up: first-call costs (numba JIT, lazy imports) not timed
        t_warm = time.perf_counter()
        runner.execute(runner.prepare(data_dir, _size(args.warmup_size)))
        t_warm = time.perf_counter() - t_warm
    work = runner.prepare(data_dir, size)

    walls: list[float] = []
    cpus: list[float] = []
    peaks: list[float] = []
    deltas: list[float] = []
    phases: list[dict[str, float]] = []
    outcome: dict[str, Any] | None = None
    metadata: dict[str, Any] = {}
    hwm_resettable = True
    spent = 0.0
    for k in range(args.repeat):
        if k and spent >= args.budget:
            break  # enough: the median of the runs done so far
        gc.collect()
        _trim_heap()
        hwm_resettable = _reset_peak_rss() and hwm_resettable
        rss0 = _status_kib("VmRSS")
        c0 = time.process_time()
        t0 = time.perf_counter()
        raw, ph = runner.execute(work)
        wall = time.perf_counter() - t0
        cpus.append(time.process_time() - c0)
        hwm = _status_kib("VmHWM")
        walls.append(wall)
        spent += wall
        phases.append(ph)
        if rss0 is not None and hwm is not None:
            peaks.append(hwm / 1024.0)
            deltas.append((hwm - rss0) / 1024.0)
        if k == 0:
            outcome = runner.outcome(raw).as_dict()
            metadata = runner.metadata(raw)
        del raw
    assert outcome is not None

    check = None
    if args.check_size and args.check_size != args.size:
        raw, _ = runner.execute(runner.prepare(data_dir, _size(args.check_size)))
        check = {"size": args.check_size, **runner.outcome(raw).as_dict()}
        del raw

    best = min(walls)
    median = statistics.median(walls)
    best_i = walls.index(best)
    return {
        "workload": wl.key,
        "runner": runner.name,
        "framework": runner.framework,
        "version": runner.version(),
        "notes": runner.notes,
        "size": args.size,
        "bars": bars,
        "repeats": len(walls),
        "wall_s": walls,
        "cpu_s": cpus,
        "cpu_per_wall_best": cpus[best_i] / best if best > 0 else float("nan"),
        "best_s": best,
        "median_s": median,
        "bars_per_s": bars / best,
        "bars_per_s_median": bars / median,
        "phases_best_s": phases[best_i],
        "peak_rss_mib": max(peaks) if peaks else None,
        "peak_rss_delta_mib": max(deltas) if deltas else None,
        "peak_rss_reset": hwm_resettable,
        "outcome": outcome,
        "metadata": metadata,
        "check": check,
        "threads_env": {k: os.environ.get(k) for k in _THREAD_ENV},
        "numba_cache_dir": os.environ.get("NUMBA_CACHE_DIR"),
        "warmup_s": t_warm,
    }


# --- parent -----------------------------------------------------------------------------
def _spawn(
    wl_key: str,
    runner: str,
    size: tuple[int, int],
    repeat: int,
    args: argparse.Namespace,
    data_dir: Path,
    warmup: tuple[int, int],
    check: tuple[int, int] | None = None,
    probe_cache: Path | None = None,
) -> dict[str, Any] | None:
    cmd = [
        sys.executable, "-m", "benchmarks.run", "--workload", wl_key, "--worker", runner,
        "--size", f"{size[0]}x{size[1]}", "--repeat", str(repeat),
        "--budget", str(args.budget), "--data-dir", str(data_dir),
        "--warmup-size", f"{warmup[0]}x{warmup[1]}",
    ]  # fmt: skip
    if check:
        cmd += ["--check-size", f"{check[0]}x{check[1]}"]
    env = dict(os.environ)
    if not args.multithreaded:
        env.update(_THREAD_ENV)
    if probe_cache is not None:
        cmd.append("--probe")
        env["NUMBA_CACHE_DIR"] = str(probe_cache)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
    label = f"{wl_key} {runner}" + (" (compile probe)" if probe_cache else "")
    print(f"  {label:<30} {size[0] * size[1]:>12,} bars x {repeat} ...", end=" ", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=_ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            out: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            print(f"done ({elapsed:.1f} s in the subprocess, {out['repeats']} timed)")
            out["process_s"] = elapsed
            return out
    print(f"FAILED (exit code {proc.returncode})")
    sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:] + "\n")
    return None


def _select(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Return ``{workload: [runner names]}`` from --workloads, --frameworks and --modes."""
    from .workloads import WORKLOADS

    def split(text: str) -> list[str]:
        return [x.strip().lower() for x in text.split(",") if x.strip()]

    workloads, frameworks, modes = split(args.workloads), split(args.frameworks), split(args.modes)
    for kind, given, known in (
        ("workloads", workloads, tuple(WORKLOADS)),
        ("frameworks", frameworks, KNOWN_FRAMEWORKS),
        ("modes", modes, KNOWN_MODES),
    ):
        bad = [x for x in given if x not in known]
        if bad or not given:
            parser.error(f"unknown {kind} {bad}; choose from {', '.join(known)}")
    chosen: dict[str, list[str]] = {}
    for key in workloads:
        names = []
        for name, runner in WORKLOADS[key].runners.items():
            if runner.framework not in frameworks:
                continue
            if runner.mode is not None and runner.mode not in modes:
                continue
            names.append(name)
        chosen[key] = names
    return chosen


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--workloads", default="w1,w2,w3", help="comma-separated (default w1,w2,w3)")
    p.add_argument(
        "--modes",
        default=",".join(KNOWN_MODES),
        help="ml4t modes: bar (per-bar Strategy), batch (BatchStrategy), signal "
        "(SignalStrategy); default all (W1 has no batch mode)",
    )
    p.add_argument(
        "--frameworks",
        default=DEFAULT_FRAMEWORKS,
        help=f"comma-separated from {','.join(KNOWN_FRAMEWORKS)} (default {DEFAULT_FRAMEWORKS}; "
        "'loop' is a bare Python loop, W1 only)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        help="timed runs per runner except Backtrader (default 3, 1 with --quick); the "
        "table shows their median",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=60.0,
        help="stop repeating a runner once its timed runs took this many seconds "
        "(default 60: the W3 per-bar run is timed once)",
    )
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    p.add_argument("--bars", type=int, help="bars of W1 (default 1,000,000; 50,000 with --quick)")
    p.add_argument(
        "--backtrader-bars",
        type=int,
        help="W1 bars Backtrader runs on (default 200,000); extrapolated per bar",
    )
    p.add_argument(
        "--backtrader-repeat", type=int, default=1, help="timed Backtrader runs (default 1)"
    )
    p.add_argument("--no-probe", action="store_true", help="skip the numba compile-time probe")
    p.add_argument(
        "--multithreaded",
        action="store_true",
        help="do not set POLARS_MAX_THREADS/NUMBA_NUM_THREADS/OMP/BLAS to 1",
    )
    p.add_argument(
        "--keep-data", type=Path, help="generate the data into this directory and keep it"
    )
    p.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    # worker-only options
    p.add_argument("--workload", help=argparse.SUPPRESS)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--size", help=argparse.SUPPRESS)
    p.add_argument("--warmup-size", help=argparse.SUPPRESS)
    p.add_argument("--check-size", help=argparse.SUPPRESS)
    p.add_argument("--data-dir", help=argparse.SUPPRESS)
    p.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if (args.quick or args.probe) else 3
    if args.repeat < 1 or args.backtrader_repeat < 1:
        p.error("--repeat and --backtrader-repeat must be >= 1")

    if args.worker:
        print(RESULT_PREFIX + json.dumps(worker(args)), flush=True)
        return 0

    from .workloads import WORKLOADS

    chosen = _select(args, p)
    sizes: dict[str, dict[str, tuple[int, int]]] = {}
    for key in chosen:
        wl = WORKLOADS[key]
        full, bt = (wl.quick, wl.backtrader_quick) if args.quick else (wl.full, wl.backtrader)
        if key == "w1":
            if args.bars is not None:
                full = (1, args.bars)
            if args.backtrader_bars is not None:
                bt = (1, args.backtrader_bars)
            if full[1] < 2 or bt[1] < 2:
                p.error("--bars and --backtrader-bars must be >= 2")
        bt = (min(bt[0], full[0]), min(bt[1], full[1]))
        warm = (min(wl.warmup[0], full[0]), min(wl.warmup[1], full[1]))
        sizes[key] = {"full": full, "backtrader": bt, "warmup": warm}

    print(
        f"ml4t.backtest benchmarks: {', '.join(k.upper() for k in chosen)}"
        + (" (--quick sizes)" if args.quick else "")
    )
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} CPUs; Python {platform.python_version()}"
        "; each runner in a fresh subprocess"
        + ("" if args.multithreaded else ", single-threaded (POLARS/NUMBA/OMP/BLAS threads=1)")
    )
    load_before = loadavg()
    print(f"load average before: {load_before}")
    print(
        "timed: data conversion/feed + backtest + results + reading the final value; not "
        "timed: start-up, imports, data generation, loading the inputs, a warm-up run on a "
        f"small prefix (numba JIT); median of up to {args.repeat} runs (Backtrader "
        f"{args.backtrader_repeat}), repeats stop after {args.budget:g} s of timed runs"
    )
    t_start = time.perf_counter()
    data_dir = args.keep_data or Path(tempfile.mkdtemp(prefix="ml4t-bench-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    probes: dict[str, list[dict[str, Any] | None]] = {}
    failures = 0
    try:
        for key, names in chosen.items():
            wl, sz = WORKLOADS[key], sizes[key]
            t0 = time.perf_counter()
            wl.materialise(data_dir, sz["full"], [sz["backtrader"], sz["warmup"]])
            print(
                f"{wl.title}\n  this run: {_shape(sz['full'])} (Backtrader "
                f"{_shape(sz['backtrader'])}, warm-up {_shape(sz['warmup'])}); data "
                f"generated in {time.perf_counter() - t0:.1f} s (untimed)"
            )
            ref = next((n for n in names if n.startswith("ml4t-")), None)
            results[key] = {}
            for name in names:
                is_bt = name == "backtrader"
                size = sz["backtrader"] if is_bt else sz["full"]
                needs_check = (
                    name == ref and "backtrader" in names and sz["backtrader"] != sz["full"]
                )
                out = _spawn(
                    key, name, size, args.backtrader_repeat if is_bt else args.repeat, args,
                    data_dir, sz["warmup"], sz["backtrader"] if needs_check else None,
                )  # fmt: skip
                if out is None:
                    failures += 1
                else:
                    results[key][name] = out
            if "ml4t-signal" in names and not args.no_probe:
                cache = data_dir / f"numba-cache-{key}"
                shutil.rmtree(cache, ignore_errors=True)
                cache.mkdir()
                probes[key] = [
                    _spawn(key, "ml4t-signal", sz["warmup"], 1, args, data_dir, sz["warmup"],
                           probe_cache=cache)
                    for _ in range(2)
                ]  # fmt: skip
    finally:
        if args.keep_data is None:
            shutil.rmtree(data_dir, ignore_errors=True)

    summary = print_report(WORKLOADS, results, probes, sizes)
    load_after = loadavg()
    print(f"\nload average after: {load_after} (1, 5, 15 min)")
    total = time.perf_counter() - t_start
    print(f"total benchmark time {total:.1f} s")
    if args.json:
        payload = {
            "machine": {
                "cpu": cpu_model(),
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "load_before": load_before,
                "load_after": load_after,
            },
            "command": " ".join(["python -m benchmarks.run", *(argv or sys.argv[1:])]),
            "sizes": sizes,
            "results": results,
            "probes": probes,
            "total_s": total,
            **summary,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2))
        print(f"results written to {args.json}")
    return 1 if failures or not any(results.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
