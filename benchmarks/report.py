"""The benchmark report: one table over workloads and runners, sanity checks, compile probe."""

from __future__ import annotations

import math
import platform
from collections.abc import Mapping
from typing import Any

__all__ = ["cpu_model", "loadavg", "print_report", "same"]

_TOL = 1e-9
_FIELDS_EXACT = ("entries", "exits")
_FIELDS_CLOSE = ("final_value", "traded_value", "first_entry_price", "last_exit_price")


def loadavg() -> str:
    try:
        with open("/proc/loadavg", encoding="ascii") as fh:
            return " ".join(fh.read().split()[:3])
    except OSError:
        return "n/a"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def same(a: Mapping[str, Any], b: Mapping[str, Any], tol: float = _TOL) -> list[str]:
    """Return the differences between two outcomes (empty when they agree)."""
    diffs = [f"{k} {a[k]:,} vs {b[k]:,}" for k in _FIELDS_EXACT if a[k] != b[k]]
    for key in _FIELDS_CLOSE:
        x, y = a[key], b[key]
        if math.isnan(x) and math.isnan(y):
            continue
        if not (x == y or abs(x - y) <= tol * max(1.0, abs(x), abs(y))):
            diffs.append(f"{key} {x:.10g} vs {y:.10g}")
    return diffs


def _rel(x: float, y: float) -> float:
    return abs(x - y) / max(abs(x), abs(y), 1e-300)


def _mib(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.0f}"


def _ratio(ours: dict[str, Any], theirs: dict[str, Any] | None) -> str:
    if theirs is None:
        return ""
    return f"{ours['bars_per_s_median'] / theirs['bars_per_s_median']:.2f}x"


def _size_text(size: str) -> str:
    a, p = size.split("x")
    return f"{int(a):,} x {int(p):,}"


def print_report(
    workloads: Mapping[str, Any],
    results: dict[str, dict[str, dict[str, Any]]],
    probes: dict[str, list[dict[str, Any] | None]],
    sizes: dict[str, dict[str, tuple[int, int]]],
) -> dict[str, Any]:
    """Print the table and everything below it; return the summary lines for JSON."""
    print()
    head = (
        f"{'':<3}{'runner':<12}{'mode':<9}{'assets x periods':>19}{'median s':>10}"
        f"{'bars/s (med)':>14}{'peak RSS MiB':>13}{'cpu/wall':>9}{'buys':>9}{'sells':>9}"
        f"{'ml4t/VBT':>9}{'ml4t/BT':>9}  {'target':<38}{'verdict'}"
    )
    print(head)
    print("-" * len(head))
    verdicts: list[str] = []
    for key, runs in results.items():
        wl = workloads[key]
        full = sizes[key]["full"]
        vbt, bt = runs.get("vectorbt"), runs.get("backtrader")
        for name, r in runs.items():
            star = "*" if r["bars"] < full[0] * full[1] else " "
            mode = r["metadata"].get("mode", "") if name.startswith("ml4t") else ""
            target = wl.targets.get(name)
            mem = wl.targets.get("memory") if name.startswith("ml4t") else None
            ttext, vtext = "", ""
            if r["bars"] != full[0] * full[1] or sizes[key]["full"] != wl.full:
                target = mem = None  # the targets are for the workload's full size
                if name in wl.targets:
                    ttext, vtext = wl.targets[name].text, "n/a (not the full size)"
            if target is not None:
                ok = target.verdict(r["bars_per_s_median"], r["median_s"], r["peak_rss_mib"])
                ttext, vtext = target.text, "MET" if ok else "MISSED"
                verdicts.append(f"{key.upper()} {name}: {target.text}: {vtext} "
                                f"(median {r['median_s']:.3f} s, "
                                f"{r['bars_per_s_median']:,.0f} {wl.unit}/s)")  # fmt: skip
            if mem is not None:
                ok = mem.verdict(0.0, 0.0, r["peak_rss_mib"])
                ttext += ("; " if ttext else "") + "RSS <= 1.5 GB"
                vtext += ("; " if vtext else "") + ("mem MET" if ok else "mem MISSED")
                verdicts.append(f"{key.upper()} {name}: {mem.text}: "
                                f"{'MET' if ok else 'MISSED'} "
                                f"(peak RSS {_mib(r['peak_rss_mib'])} MiB)")  # fmt: skip
            is_ours = name.startswith("ml4t")
            o = r["outcome"]
            print(
                f"{key.upper():<3}{name:<12}{mode:<9}{_size_text(r['size']):>18}{star}"
                f"{r['median_s']:>10.3f}{r['bars_per_s_median']:>14,.0f}"
                f"{_mib(r['peak_rss_mib']):>13}{r['cpu_per_wall_best']:>9.2f}"
                f"{o['entries']:>9,}{o['exits']:>9,}"
                f"{_ratio(r, vbt) if is_ours else '':>9}{_ratio(r, bt) if is_ours else '':>9}"
                f"  {ttext:<38}{vtext}".rstrip()
            )
    print(
        "\n* fewer bars than the workload (Backtrader on a prefix): its throughput is "
        "extrapolated per bar. ml4t/VBT, ml4t/BT: ratio of bars/s (medians), > 1 = ml4t "
        "faster. peak RSS: the process's high-water mark during a timed run (inputs loaded "
        "before timing included)."
    )

    # Details per runner.
    print()
    for key, runs in results.items():
        full = sizes[key]["full"]
        for name, r in runs.items():
            extra = f"{r['repeats']} timed run(s): " + ", ".join(f"{w:.3f}" for w in r["wall_s"])
            if r["bars"] < full[0] * full[1]:
                est = full[0] * full[1] / r["bars_per_s_median"]
                extra += f"; est. {est:,.0f} s for the full {full[0]:,} x {full[1]:,}"
            phases = ", ".join(f"{k} {v:.3f}" for k, v in r["phases_best_s"].items())
            print(f"{key.upper()} {name} {r['version']}: {r['notes']}")
            print(
                f"    {extra}; best {r['best_s']:.3f} s; phases of the best (s): {phases}; "
                f"RSS increase {_mib(r['peak_rss_delta_mib'])} MiB"
            )
            meta = r["metadata"]
            if meta:
                print("    metadata: " + ", ".join(f"{k}={v}" for k, v in meta.items()))
    print()

    checks = _sanity(workloads, results)
    probe_lines = _probes(probes)
    busy = [
        f"{k.upper()} {n}"
        for k, runs in results.items()
        for n, r in runs.items()
        if r["cpu_per_wall_best"] < 0.9
    ]
    if busy:
        print(
            f"WARNING: {', '.join(busy)} got less than 90 % of a CPU during its best run "
            "(cpu/wall column): other processes competed for the CPUs, so their times are "
            "inflated; rerun on an idle machine for stable numbers"
        )
    print("Targets:")
    for line in verdicts:
        print("  " + line)
    return {"checks": checks, "compile_probe": probe_lines, "verdicts": verdicts}


def _sanity(
    workloads: Mapping[str, Any], results: dict[str, dict[str, dict[str, Any]]]
) -> list[str]:
    lines: list[str] = []
    for key, runs in results.items():
        wl = workloads[key]
        ref_name = next((n for n in runs if n.startswith("ml4t")), None)
        print(f"Sanity check {key.upper()} ({wl.semantics}):")
        if ref_name is None:
            print("  skipped: the comparison is against ml4t, which was not run")
            continue
        ref = runs[ref_name]
        for name, r in runs.items():
            if name == ref_name:
                continue
            if r["size"] == ref["size"]:
                mine = ref["outcome"]
            elif ref.get("check") and ref["check"]["size"] == r["size"]:
                mine = ref["check"]
            else:
                lines.append(f"{key.upper()} {name}: no {ref_name} run on {r['size']} to compare")
                print("  " + lines[-1])
                continue
            other, n = r["outcome"], r["bars"]
            diffs = same(mine, other)
            where = f"{ref_name} vs {name} on {n:,} {wl.unit}"
            if not diffs:
                line = (
                    f"{where}: same fills ({mine['entries']:,} buys, {mine['exits']:,} sells, "
                    f"traded value {mine['traded_value']:,.2f}) and final value "
                    f"{mine['final_value']:,.6f} (rel. tol. 1e-9)"
                )
            elif name in wl.approximate:
                line = (
                    f"{where}: close, not equal, as expected ({wl.approximate[name]}): "
                    f"buys {mine['entries']:,} vs {other['entries']:,}, sells "
                    f"{mine['exits']:,} vs {other['exits']:,}, final value "
                    f"{mine['final_value']:,.2f} vs {other['final_value']:,.2f} (rel. diff. "
                    f"{_rel(mine['final_value'], other['final_value']):.2e}), traded value "
                    f"rel. diff. {_rel(mine['traded_value'], other['traded_value']):.2e}"
                )
            else:
                line = f"{where}: DIFFERENT: " + "; ".join(diffs)
            lines.append(f"{key.upper()} {line}")
            print("  " + line)
    print()
    return lines


def _probes(probes: dict[str, list[dict[str, Any] | None]]) -> list[str]:
    lines: list[str] = []
    if not probes:
        return lines
    print(
        "Numba compile time (SignalStrategy, warm-up-sized data, no warm-up run; two fresh "
        "processes sharing one NUMBA_CACHE_DIR that starts empty):"
    )
    for key, pair in probes.items():
        parts = []
        labels = ("1st process (empty cache)", "2nd process (same cache)")
        for label, r in zip(labels, pair, strict=True):
            if r is None:
                parts.append(f"{label}: failed")
                continue
            meta = r["metadata"]
            comp = meta.get("compile_seconds")
            comp_text = "n/a" if comp is None else f"{comp:.3f} s"
            parts.append(
                f"{label}: compile_seconds {comp_text}, run {r['wall_s'][0]:.3f} s, "
                f"mode {meta.get('mode', 'n/a')}"
            )
        lines.append(f"{key.upper()}: " + "; ".join(parts))
        print("  " + lines[-1])
    print()
    return lines
