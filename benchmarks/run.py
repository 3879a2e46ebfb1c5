"""Benchmark runner: workload W1 through ml4t.backtest, VectorBT and Backtrader.

Run from the repository root::

    python -m benchmarks.run                       # defaults: 1,000,000 bars, all three
    python -m benchmarks.run --bars 200000 --frameworks ml4t,vectorbt --json out.json

Each framework runs in a fresh subprocess (``--worker NAME``), pinned to one CPU with
single-threaded polars/numba/BLAS, so wall time and peak memory are its own. The parent
collects one JSON line per worker, prints a table, the throughput ratios and whether the
500,000 bars/s target is met. See ``benchmarks/README.md`` for what each column means.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TARGET_BARS_PER_S = 500_000
RESULT_PREFIX = "BENCHMARK_RESULT "
DEFAULT_FRAMEWORKS = "ml4t,vectorbt,backtrader"
KNOWN_FRAMEWORKS = ("ml4t", "vectorbt", "backtrader", "loop")
WARMUP_BARS = 2_000
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
def _pin(cpu: int | None) -> int | None:
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return None
    os.sched_setaffinity(0, {cpu})
    return cpu


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all threads (ns clock, not 10 ms ticks)."""
    return time.process_time()


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
    """Run one framework (in this process) and return its measurements."""
    cpu = _pin(args.pin)
    _import_framework(args.worker)
    from benchmarks.workloads import FRAMEWORKS, generate_bars, slice_bars

    fw = FRAMEWORKS[args.worker]
    t_gen = time.perf_counter()
    data = generate_bars(args.data_bars)
    t_gen = time.perf_counter() - t_gen
    bars = args.bars
    work = fw.prepare(slice_bars(data, bars))

    # Warm-up on a tiny input: first-call costs (numba JIT in vectorbt, lazy imports and
    # caches anywhere) are excluded from the timed runs.
    t_warm = time.perf_counter()
    fw.execute(fw.prepare(slice_bars(data, min(WARMUP_BARS, bars))))
    t_warm = time.perf_counter() - t_warm

    walls: list[float] = []
    cpus: list[float] = []
    mems: list[float] = []
    phases: list[dict[str, float]] = []
    outcome = None
    hwm_resettable = True
    trimmed = True
    for k in range(args.repeat):
        gc.collect()
        trimmed = _trim_heap() and trimmed
        hwm_resettable = _reset_peak_rss() and hwm_resettable
        rss0 = _status_kib("VmRSS")
        c0 = _cpu_seconds()
        t0 = time.perf_counter()
        raw, ph = fw.execute(work)
        wall = time.perf_counter() - t0
        cpus.append(_cpu_seconds() - c0)
        hwm = _status_kib("VmHWM")
        walls.append(wall)
        phases.append(ph)
        if rss0 is not None and hwm is not None:
            mems.append((hwm - rss0) / 1024.0)
        if k == 0:
            outcome = fw.outcome(raw)
        del raw
    assert outcome is not None

    tracemalloc_mib = None
    if args.tracemalloc:
        import tracemalloc

        gc.collect()
        tracemalloc.start()
        raw, _ = fw.execute(work)
        tracemalloc_mib = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        del raw

    check = None
    if args.check_bars and args.check_bars != bars:
        raw, _ = fw.execute(fw.prepare(slice_bars(data, args.check_bars)))
        check = {"bars": args.check_bars, **fw.outcome(raw).as_dict()}
        del raw

    best = min(walls)
    best_i = walls.index(best)
    return {
        "framework": fw.name,
        "version": fw.version(),
        "notes": fw.notes,
        "bars": bars,
        "repeats": len(walls),
        "wall_s": walls,
        "cpu_s": cpus,
        "cpu_per_wall_best": cpus[best_i] / best if best > 0 else float("nan"),
        "best_s": best,
        "median_s": statistics.median(walls),
        "bars_per_s": bars / best,
        "bars_per_s_median": bars / statistics.median(walls),
        "phases_best_s": phases[best_i],
        "peak_rss_mib": max(mems) if mems else None,
        "peak_rss_reset": hwm_resettable,
        "malloc_trim": trimmed,
        "tracemalloc_peak_mib": tracemalloc_mib,
        "outcome": outcome.as_dict(),
        "check": check,
        "pinned_cpu": cpu,
        "threads_env": {k: os.environ.get(k) for k in _THREAD_ENV},
        "datagen_s": t_gen,
        "warmup_s": t_warm,
    }


# --- parent -----------------------------------------------------------------------------
def _spawn(
    name: str, bars: int, repeat: int, args: argparse.Namespace, check_bars: int | None
) -> dict[str, Any] | None:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.run",
        "--worker",
        name,
        "--bars",
        str(bars),
        "--data-bars",
        str(args.bars),
        "--repeat",
        str(repeat),
    ]
    if args.pin is not None:
        cmd += ["--pin", str(args.pin)]
    if check_bars:
        cmd += ["--check-bars", str(check_bars)]
    if args.tracemalloc:
        cmd.append("--tracemalloc")
    env = dict(os.environ)
    if not args.multithreaded:
        env.update(_THREAD_ENV)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
    print(f"  {name:<10} {bars:>10,} bars x {repeat} ...", end=" ", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=_ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            print(f"done ({elapsed:.1f} s in the subprocess incl. start-up and data)")
            return json.loads(line[len(RESULT_PREFIX) :])  # type: ignore[no-any-return]
    print(f"FAILED (exit code {proc.returncode})")
    sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:] + "\n")
    return None


def _loadavg() -> str:
    try:
        with open("/proc/loadavg", encoding="ascii") as fh:
            return " ".join(fh.read().split()[:3])
    except OSError:
        return "n/a"


def _fmt_mib(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.1f}"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _same(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Return the differences between two outcomes (empty when they agree)."""
    diffs = []
    for key in ("entries", "exits"):
        if a[key] != b[key]:
            diffs.append(f"{key} {a[key]} vs {b[key]}")
    for key, tol in (("final_value", 1e-9), ("first_entry_price", 1e-9), ("last_exit_price", 1e-9)):
        x, y = a[key], b[key]
        if not (x == y or abs(x - y) <= tol * max(1.0, abs(x), abs(y))):
            diffs.append(f"{key} {x:.10g} vs {y:.10g}")
    return diffs


def _report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    print()
    header = (
        f"{'framework':<11}{'version':<14}{'bars':>11}{'best s':>9}{'median s':>10}"
        f"{'bars/s (best)':>15}{'bars/s (med)':>14}{'cpu/wall':>9}{'peak MiB':>10}"
        f"{'trades':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in results.values():
        star = "*" if r["bars"] < args.bars else " "
        print(
            f"{r['framework']:<11}{r['version']:<14}{r['bars']:>10,}{star}{r['best_s']:>9.3f}"
            f"{r['median_s']:>10.3f}{r['bars_per_s']:>15,.0f}{r['bars_per_s_median']:>14,.0f}"
            f"{r['cpu_per_wall_best']:>9.2f}"
            f"{_fmt_mib(r['peak_rss_mib']):>10}{r['outcome']['trades']:>8,}"
        )
    print()
    for r in results.values():
        extra = f"; repeats: {r['repeats']}"
        if r["bars"] < args.bars:
            est = args.bars / r["bars_per_s"]
            extra += (
                f"; * measured on {r['bars']:,} bars, not {args.bars:,}: its "
                f"throughput is extrapolated per bar, est. {est:,.1f} s for "
                f"{args.bars:,} bars"
            )
        phases = ", ".join(f"{k} {v:.3f}" for k, v in r["phases_best_s"].items())
        print(f"{r['framework']}: {r['notes']}{extra}")
        if not r["peak_rss_reset"]:
            print(
                "    peak MiB: the RSS high-water mark could not be reset (no "
                "/proc/self/clear_refs), so it is the process peak minus the RSS before "
                "the run and may include data generation"
            )
        print(f"    phases of the best run (s): {phases}")
        if r.get("tracemalloc_peak_mib") is not None:
            print(
                f"    tracemalloc peak (Python/numpy allocations only, separate run): "
                f"{r['tracemalloc_peak_mib']:,.1f} MiB"
            )
    print()

    # Sanity check: the same trades everywhere.
    checks: list[str] = []
    ref = results.get("ml4t")
    if ref is not None:
        for name, r in results.items():
            if name == "ml4t":
                continue
            if r["bars"] == ref["bars"]:
                other, mine, n = r["outcome"], ref["outcome"], r["bars"]
            elif ref.get("check") and ref["check"]["bars"] == r["bars"]:
                other, mine, n = r["outcome"], ref["check"], r["bars"]
            else:
                checks.append(f"{name}: no ml4t run on the same {r['bars']:,} bars to compare")
                continue
            diffs = _same(mine, other)
            if diffs:
                checks.append(f"ml4t vs {name} on {n:,} bars: DIFFERENT: " + "; ".join(diffs))
            else:
                checks.append(
                    f"ml4t vs {name} on {n:,} bars: same fills ({mine['entries']:,} entries, "
                    f"{mine['exits']:,} exits, first entry {mine['first_entry_price']:.6f}, "
                    f"last exit {mine['last_exit_price']:.6f}) and final value "
                    f"{mine['final_value']:,.6f} (rel. tol. 1e-9)"
                )
    print("Sanity check (fills at next-bar open, 100 units, no costs):")
    if ref is None:
        checks.append("skipped: the comparison is against ml4t, which was not run")
    for c in checks:
        print("  " + c)
    if ref is not None and ref["outcome"]["entries"] > ref["outcome"]["exits"]:
        print(
            "  (one more entry than exits: the last position is still open at the end of "
            "the data and is marked at the last close in every framework)"
        )
    print()

    # Ratios and target.
    lines: list[str] = []
    if ref is not None:
        for name, r in results.items():
            if name == "ml4t":
                continue
            ratio = ref["bars_per_s"] / r["bars_per_s"]
            ratio_med = ref["bars_per_s_median"] / r["bars_per_s_median"]
            line = (
                f"ml4t / {name} = {ratio:.2f}× throughput (best of runs; "
                f"{ratio_med:.2f}× on medians)"
            )
            if r["bars"] < args.bars:
                line += f"; {name} measured on {r['bars']:,} bars and extrapolated per bar"
            lines.append(line)
            if ratio < 1.0:
                ns_ours = 1e9 / ref["bars_per_s"]
                ns_theirs = 1e9 / r["bars_per_s"]
                why = {
                    "vectorbt": "VectorBT simulates the whole series in one compiled Numba "
                    "loop with no Python call per bar, while ml4t calls a Python "
                    "Strategy.on_market_data per bar",
                    "loop": "the bare loop does no validation, bookkeeping or results",
                }.get(name, "")
                lines.append(
                    f"  ml4t is SLOWER than {name}: {ns_ours:,.0f} ns per bar vs "
                    f"{ns_theirs:,.0f} ns ({1 / ratio:.1f}× slower)" + (f"; {why}" if why else "")
                )
        best, med = ref["bars_per_s"], ref["bars_per_s_median"]
        met_best, met_med = best >= TARGET_BARS_PER_S, med >= TARGET_BARS_PER_S
        verdict = "MET" if met_best and met_med else "MET on the best run only"
        if not met_best:
            verdict = "NOT MET"
        lines.append(
            f"Target >= {TARGET_BARS_PER_S:,} bars/s on one core: {verdict} "
            f"(ml4t best {best:,.0f} bars/s: {'meets' if met_best else 'misses'} it; "
            f"median {med:,.0f} bars/s: {'meets' if met_med else 'misses'} it)"
        )
    for line in lines:
        print(line)
    return {"checks": checks, "ratios": lines}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--bars", type=int, default=1_000_000, help="bars of W1 (default 1,000,000)")
    p.add_argument(
        "--frameworks",
        default=DEFAULT_FRAMEWORKS,
        help=f"comma-separated from {','.join(KNOWN_FRAMEWORKS)} "
        f"(default {DEFAULT_FRAMEWORKS}; 'loop' is a bare Python loop)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="timed runs per framework except backtrader (default 3)",
    )
    p.add_argument(
        "--backtrader-bars",
        type=int,
        default=200_000,
        help="bars Backtrader runs on (default 200,000; throughput is "
        "extrapolated per bar and the output says so)",
    )
    p.add_argument(
        "--backtrader-repeat", type=int, default=1, help="timed Backtrader runs (default 1)"
    )
    p.add_argument(
        "--pin",
        type=int,
        metavar="CPU",
        help="pin each worker to this CPU index (default: no pinning; the "
        "workers are single-threaded anyway, see --multithreaded)",
    )
    p.add_argument(
        "--multithreaded",
        action="store_true",
        help="do not set POLARS_MAX_THREADS/NUMBA_NUM_THREADS/OMP/BLAS to 1",
    )
    p.add_argument(
        "--tracemalloc",
        action="store_true",
        help="also measure the tracemalloc peak in an extra untimed run",
    )
    p.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    p.add_argument("--worker", choices=KNOWN_FRAMEWORKS, help=argparse.SUPPRESS)
    p.add_argument("--only", choices=KNOWN_FRAMEWORKS, dest="worker", help=argparse.SUPPRESS)
    p.add_argument("--data-bars", type=int, help=argparse.SUPPRESS)
    p.add_argument("--check-bars", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.bars < 2 or args.repeat < 1 or args.backtrader_bars < 2:
        p.error("--bars and --backtrader-bars must be >= 2 and --repeat >= 1")

    if args.worker:
        args.data_bars = max(args.data_bars or args.bars, args.bars)
        print(RESULT_PREFIX + json.dumps(worker(args)), flush=True)
        return 0

    names = [n.strip() for n in args.frameworks.split(",") if n.strip()]
    unknown = [n for n in names if n not in KNOWN_FRAMEWORKS]
    if unknown or not names:
        p.error(f"unknown frameworks {unknown}; choose from {', '.join(KNOWN_FRAMEWORKS)}")
    bt_bars = min(args.backtrader_bars, args.bars)
    check_bars = bt_bars if "backtrader" in names and bt_bars < args.bars else None

    print(
        f"ml4t.backtest benchmark, workload W1: 1 asset x {args.bars:,} one-minute bars, "
        "per-bar strategy on a {-1, 0, +1} signal, market orders, next-bar-open fills"
    )
    print(
        f"machine: {_cpu_model()}, {os.cpu_count()} CPUs; Python {platform.python_version()}"
        "; each framework in a fresh subprocess"
        + (
            ""
            if args.multithreaded
            else ", single-threaded (POLARS_MAX_THREADS=NUMBA_NUM_THREADS=OMP/BLAS threads=1)"
        )
        + ("" if args.pin is None else f", pinned to CPU {args.pin}")
    )
    load_before = _loadavg()
    print(f"load average before: {load_before}")
    print(
        "timed: data conversion + backtest + reading the final value; not timed: Python "
        "start-up, imports, synthetic data generation (seed 42), and a warm-up run on "
        f"{WARMUP_BARS:,} bars (excludes numba JIT compilation for vectorbt)"
    )
    t0 = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        bars = bt_bars if name == "backtrader" else args.bars
        repeat = args.backtrader_repeat if name == "backtrader" else args.repeat
        out = _spawn(name, bars, repeat, args, None if name == "backtrader" else check_bars)
        if out is not None:
            results[name] = out
    if not results:
        print("no framework ran successfully")
        return 1
    summary = _report(results, args)
    load_after = _loadavg()
    print(f"\nload average after: {load_after} (1, 5, 15 min)")
    busy = [r["framework"] for r in results.values() if r["cpu_per_wall_best"] < 0.9]
    if busy:
        print(
            f"WARNING: {', '.join(busy)} got less than 90 % of a CPU during its best run "
            "(cpu/wall column): other processes competed for the CPUs, so their times are "
            "inflated; rerun on an idle machine for stable numbers"
        )
    print(f"\ntotal benchmark time {time.perf_counter() - t0:.1f} s")
    if args.json:
        payload = {
            "workload": "W1",
            "bars": args.bars,
            "machine": {
                "cpu": _cpu_model(),
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "load_before": load_before,
                "load_after": load_after,
            },
            "command": " ".join(["python -m benchmarks.run", *(argv or sys.argv[1:])]),
            "target_bars_per_s": TARGET_BARS_PER_S,
            "results": results,
            **summary,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2))
        print(f"results written to {args.json}")
    return 0 if len(results) == len(names) else 1


if __name__ == "__main__":
    raise SystemExit(main())
