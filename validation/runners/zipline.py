"""Run a :class:`~validation.scenario.Scenario` through Zipline-reloaded in its own venv.

zipline-reloaded 3.2.1 pins ``pandas<3`` and cannot share the project environment, so
:func:`run` serialises the scenario to JSON + ``.npz`` in a temporary folder and runs
``zipline_worker.py`` (beside this file) with the Python of a dedicated virtual environment
(:func:`ensure_venv`: ``$ML4T_ZIPLINE_VENV`` or ``~/.cache/ml4t-backtest/zipline-venv``,
created on demand from ``zipline-requirements.txt``). The worker ingests the bars as a
Zipline bundle (calendar XNYS), runs ``zipline.run_algorithm`` and writes the fills, the
per-session ``portfolio_value`` / ``ending_cash`` and notes back. Source references are to
zipline-reloaded 3.2.1 under the venv's site-packages.

Mapping of the neutral semantics (see :mod:`validation.scenario`):

* fill timing: only ``next_bar_close``. Market orders placed in ``handle_data`` at bar t
  are filled in bar t+1's ``every_bar`` before ``handle_data`` (``gens/tradesimulation.py``
  L107–151) at bar t+1's close (``finance/slippage.py`` L160–206: ``price =
  data.current(asset, "close")``).
* commission: ``commission.PerDollar(rate)``, ``commission.PerShare(cost, min_trade_cost)``
  (minimum per order across partial fills) or ``commission.NoCommission()``.
* slippage: ``slippage.NoSlippage()``; ``slippage_rate`` → ``FixedBasisPointsSlippage(
  basis_points=rate * 1e4, volume_limit=VOLUME_LIMIT)``; ``slippage_fixed`` →
  ``FixedSlippage(spread=2 * amount)``. ``VOLUME_LIMIT`` (1e6 × the bar's volume) never
  binds; NoSlippage and FixedSlippage have no volume cap.
* exits: stop-loss / take-profit as ``StopOrder`` / ``LimitOrder`` for the whole position,
  placed in ``handle_data`` of the bar whose close filled the entry (levels from the entry
  fill price); the other one is cancelled when one fills. Zipline checks both against the
  close only and fills at that close (``finance/order.py`` ``check_order_triggers`` L160).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..scenario import Fill, Orders, RunResult, Scenario, Signals, TargetWeights, Unsupported

__all__ = ["DEFAULT_VENV", "REQUIREMENTS", "WORKER", "ensure_venv", "run"]

FRAMEWORK = "zipline"
HERE = Path(__file__).resolve().parent
WORKER = HERE / "zipline_worker.py"
REQUIREMENTS = HERE / "zipline-requirements.txt"
DEFAULT_VENV = Path.home() / ".cache" / "ml4t-backtest" / "zipline-venv"
STAMP = "ml4t-requirements.sha256"
VOLUME_LIMIT = 1e6
TIMEOUT = 600.0  # seconds for one worker run
INSTALL_TIMEOUT = 1800.0
ZL = "zipline-reloaded 3.2.1"


# --- the virtual environment --------------------------------------------------------------
def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _call(cmd: list[str], what: str, timeout: float, quiet: bool) -> None:
    """Run ``cmd``; raise ``RuntimeError`` naming it with the tail of its output on failure."""
    try:
        proc = subprocess.run(
            cmd,
            stdout=subprocess.PIPE if quiet else None,
            stderr=subprocess.STDOUT if quiet else None,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"{what} failed: `{' '.join(cmd)}`: {exc}") from exc
    if proc.returncode != 0:
        tail = _tail(proc.stdout or "") if quiet else "(output shown above)"
        raise RuntimeError(
            f"{what} failed (exit {proc.returncode}): `{' '.join(cmd)}`\n--- output tail ---\n"
            f"{tail}"
        )


def ensure_venv(path: Path | None = None, *, quiet: bool = True) -> Path:
    """Return the Python of the Zipline venv, creating or updating it when needed.

    Parameters
    ----------
    path : Path, optional
        The venv folder; default ``$ML4T_ZIPLINE_VENV`` or
        ``~/.cache/ml4t-backtest/zipline-venv``.
    quiet : bool
        Capture the output of ``venv`` and ``pip`` (shown only on failure).

    Returns
    -------
    Path
        The venv's ``python`` executable.

    Notes
    -----
    The venv is created with ``sys.executable -m venv``; ``zipline-requirements.txt`` is
    installed with the venv's pip when the venv is new or the file's SHA-256 differs from
    the stamp file written after the last successful install.

    Raises
    ------
    RuntimeError
        When ``venv`` or ``pip`` fails (with the command and the tail of its output).
    """
    env = os.environ.get("ML4T_ZIPLINE_VENV")
    venv = Path(path) if path is not None else Path(env) if env else DEFAULT_VENV
    venv = venv.expanduser().absolute()
    bindir = "Scripts" if os.name == "nt" else "bin"
    python = venv / bindir / ("python.exe" if os.name == "nt" else "python")
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    stamp = venv / STAMP
    if python.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return python
    if not python.exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        _call([sys.executable, "-m", "venv", str(venv)], "creating the Zipline venv", 600, quiet)
    stamp.unlink(missing_ok=True)  # the stamp marks the last complete install only
    pip = [str(python), "-m", "pip"]
    quiet_flag = ["-q"] if quiet else []
    _call(
        [*pip, "install", *quiet_flag, "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
        f"installing {REQUIREMENTS.name} into {venv}",
        INSTALL_TIMEOUT,
        quiet,
    )
    stamp.write_text(digest + "\n")
    return python


# --- what Zipline cannot express ------------------------------------------------------------
def _whole(x: float) -> bool:
    return abs(x - round(x)) < 1e-9


def check_supported(scenario: Scenario) -> None:
    """Raise :class:`Unsupported` for what Zipline cannot express (before running anything)."""
    bars, prog, sz, c, ex = (
        scenario.bars,
        scenario.compiled,
        scenario.sizing,
        scenario.costs,
        scenario.exits,
    )
    if bars.frequency != "daily":
        raise Unsupported(
            "minute bars — this runner ingests daily bundles only (minute bundles need "
            "390 bars per XNYS session; source: zipline/data/bcolz_minute_bars.py)"
        )
    if scenario.fill_timing != "next_bar_close":
        raise Unsupported(
            f"fill_timing={scenario.fill_timing!r} — {ZL} fills market orders only at the "
            "close of the bar after the order (zipline/gens/tradesimulation.py L107-151: "
            "orders fill in the next bar's every_bar; zipline/finance/slippage.py L160-206: "
            "price = data.current(asset, 'close')); zipline-reloaded #132"
        )
    if ex.trailing_stop is not None:
        raise Unsupported(
            f"trailing stop — {ZL} has no trailing order type (zipline/finance/execution.py: "
            "Market/Limit/Stop/StopLimit only); emulating it would be our logic, not Zipline's"
        )
    if c.commission_rate and (c.commission_per_share or c.commission_minimum):
        raise Unsupported(
            "commission_rate with a per-share part or a minimum — Zipline takes one equity "
            "commission model: PerDollar has no minimum, PerShare no rate "
            "(zipline/finance/commission.py PerShare L144, PerDollar L362)"
        )
    if c.slippage_rate and c.slippage_fixed:
        raise Unsupported(
            "slippage_rate and slippage_fixed together — Zipline takes one equity slippage "
            "model (zipline/finance/slippage.py FixedBasisPointsSlippage / FixedSlippage)"
        )
    any_commission = c.commission_rate or c.commission_per_share or c.commission_minimum
    fractional = (
        "fractional quantities — Zipline trades whole shares only: order() truncates the "
        "amount toward zero (zipline/algorithm.py round_order L1281) and "
        "create_transaction floors fills (zipline/finance/transaction.py)"
    )
    if isinstance(prog, Orders):
        bad = [o for o in prog.orders if not _whole(o.quantity)]
        if bad and not sz.integer:
            raise Unsupported(f"{fractional}; e.g. order quantity {bad[0].quantity}")
        for o in prog.orders:
            if o.kind != "market" and o.price is None:
                raise ValueError(f"{o.kind} order at bar {o.bar} needs a price")
    elif isinstance(prog, TargetWeights):
        if not sz.integer:
            raise Unsupported(f"{fractional}; target weights need sizing.integer=True")
    elif isinstance(prog, Signals):
        if not sz.integer and (sz.kind != "fixed" or not _whole(sz.value)):
            raise Unsupported(f"{fractional}; sizing {sz.kind}({sz.value}) with integer=False")
        if sz.kind == "all_in" and any_commission:
            raise Unsupported(
                "all_in sizing with commission — Zipline has no cash check or fee-aware "
                "sizing (blotter.order / get_transactions accept any amount; cash goes "
                "negative; quantopian/zipline #72), so 'largest affordable incl. commission' "
                "cannot be asked of it"
            )
    else:
        raise TypeError(f"unknown program type {type(prog).__name__}")


# --- serialisation ---------------------------------------------------------------------------
def _spec(scenario: Scenario) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The scenario as a JSON-able dict and a dict of arrays for ``np.savez``."""
    bars, prog = scenario.bars, scenario.compiled
    n, m = bars.close.shape
    arrays = {k: np.asarray(getattr(bars, k), dtype=float) for k in ("open", "high", "low")}
    arrays["close"] = np.asarray(bars.close, dtype=float)
    arrays["volume"] = np.asarray(bars.volume, dtype=float)
    program: dict[str, Any]
    if isinstance(prog, Signals):
        program = {"kind": "signals"}
        false = np.zeros((n, m), dtype=bool)
        for name in ("entries", "exits", "short_entries", "short_exits"):
            arr = getattr(prog, name)
            arrays[name] = false if arr is None else np.asarray(arr, dtype=bool).reshape(n, m)
    elif isinstance(prog, TargetWeights):
        program = {"kind": "weights"}
        arrays["weights"] = np.asarray(prog.weights, dtype=float).reshape(n, m)
    else:
        assert isinstance(prog, Orders)
        qty = (lambda q: float(math.trunc(q))) if scenario.sizing.integer else float
        program = {
            "kind": "orders",
            "orders": [
                {
                    "bar": int(o.bar),
                    "asset": o.asset,
                    "quantity": qty(o.quantity),
                    "kind": o.kind,
                    "price": None if o.price is None else float(o.price),
                }
                for o in prog.orders
            ],
        }
    dates = np.asarray(bars.dates, dtype="datetime64[D]").astype(str).tolist()
    spec = {
        "version": 1,
        "name": scenario.name,
        "arrays": "arrays.npz",
        "assets": list(bars.assets),
        "dates": dates,
        "initial_cash": float(scenario.initial_cash),
        "program": program,
        "sizing": asdict(scenario.sizing),
        "costs": asdict(scenario.costs),
        "exits": asdict(scenario.exits),
        "direction": scenario.direction,
        "volume_limit": VOLUME_LIMIT,
    }
    return spec, arrays


def _notes(scenario: Scenario, out: dict[str, Any]) -> list[str]:
    notes = [
        f"zipline {out['versions']['zipline']} (pandas {out['versions']['pandas']}); "
        f"bundle ingest {out['timing']['ingest_s']:.2f} s, run_algorithm "
        f"{out['timing']['run_s']:.2f} s",
        "market orders fill at the next bar's close; no cash check (cash can go negative)",
    ]
    prog, c = scenario.compiled, scenario.costs
    px = np.stack([scenario.bars.open, scenario.bars.high, scenario.bars.low, scenario.bars.close])
    if not np.allclose(np.round(px * 1000) / 1000, px, rtol=0, atol=1e-9):
        notes.append("prices with more than 3 decimals are rounded by the bundle (uint32 × 1000)")
    if isinstance(prog, TargetWeights):
        notes.append(
            "order_target_percent truncates the trade (target − position) toward zero "
            "(algorithm.py L1281), so a reduced position can end one share above floor(target)"
        )
    if isinstance(prog, Orders) and any(o.kind != "market" for o in prog.orders):
        notes.append(
            "limit/stop orders trigger on the close only and fill at that close; prices are "
            "rounded to the cent asymmetrically (finance/execution.py asymmetric_round_price)"
        )
        if c.slippage_rate or c.slippage_fixed:
            notes.append("Zipline slips limit fills too (slippage models ignore the type)")
    if scenario.exits.any:
        notes.append(
            "stop-loss/take-profit are stop/limit orders placed after the entry fills: "
            "triggered by the close only, filled at that close (± slippage)"
        )
    if isinstance(prog, Signals) and scenario.sizing.kind == "all_in":
        notes.append("all_in sized with the signal bar's close; fills at the next close")
    if isinstance(prog, Orders) and any(not _whole(o.quantity) for o in prog.orders):
        notes.append("fractional order quantities truncated toward zero")
    if out.get("first_handle_data_bar") not in (0, None):
        notes.append(f"first handle_data call at bar {out['first_handle_data_bar']}")
    return notes + list(out.get("notes", []))


def run(scenario: Scenario, *, python: Path | None = None, timeout: float = TIMEOUT) -> RunResult:
    """Run ``scenario`` through Zipline in its venv and return the result.

    Parameters
    ----------
    scenario : Scenario
        The scenario (daily bars on XNYS sessions, ``fill_timing='next_bar_close'``).
    python : Path, optional
        The venv's Python; default :func:`ensure_venv` ``()``.
    timeout : float
        Seconds allowed for the worker.

    Returns
    -------
    RunResult
        ``framework="zipline"``; fills with their session's bar index, signed quantity,
        price and commission; ``equity`` = ``portfolio_value`` and ``cash`` =
        ``ending_cash`` per bar.

    Raises
    ------
    Unsupported
        When Zipline cannot express the scenario (checked before anything starts).
    RuntimeError
        When the worker fails (with its stderr tail).
    """
    check_supported(scenario)
    exe = python if python is not None else ensure_venv()
    spec, arrays = _spec(scenario)
    with tempfile.TemporaryDirectory(prefix="ml4t-zipline-") as tmp:
        src, dst = Path(tmp) / "scenario.json", Path(tmp) / "result.json"
        np.savez(Path(tmp) / spec["arrays"], allow_pickle=False, **arrays)
        src.write_text(json.dumps(spec))
        cmd = [str(exe), str(WORKER), str(src), str(dst)]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
            raise RuntimeError(
                f"zipline worker timed out after {timeout:.0f} s on {scenario.name!r}\n"
                f"--- stderr tail ---\n{_tail(err)}"
            ) from exc
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0 or not dst.exists():
            raise RuntimeError(
                f"zipline worker failed on {scenario.name!r} (exit {proc.returncode}): "
                f"`{' '.join(cmd)}`\n--- stderr tail ---\n{_tail(proc.stderr)}"
            )
        out = json.loads(dst.read_text())
    if "unsupported" in out:
        raise Unsupported(out["unsupported"])
    n = scenario.bars.n_bars
    equity = np.asarray(out["equity"], dtype=float)
    cash = np.asarray(out["cash"], dtype=float)
    if len(equity) != n or np.isnan(equity).any():
        raise RuntimeError(f"zipline reported {np.isfinite(equity).sum()} of {n} sessions")
    fills = [
        Fill(
            bar=int(f["bar"]),
            asset=str(f["asset"]),
            quantity=float(f["quantity"]),
            price=float(f["price"]),
            commission=float(f["commission"]),
        )
        for f in out["fills"]
    ]
    notes = _notes(scenario, out)
    notes.append(f"worker wall time {elapsed:.2f} s (Python start-up + imports included)")
    return RunResult(
        framework=FRAMEWORK,
        fills=fills,
        equity=equity,
        cash=cash,
        rejected=int(out["rejected"]),
        notes=notes,
    )
