"""The lifecycle every run shares, whichever runner runs its bars.

:func:`execute` is the only lifecycle: prepare the run (clock, context, calendar, broker
books, history); pick the runner (the per-bar loop of :mod:`.bar_loop`, or a kernel the
strategy declares through :meth:`~ml4t.backtest.Strategy.compiled_runner`); bind the
strategy, ``run_start``, ``on_start``, the runner, the result, ``run_end``, ``on_end``.
An error anywhere in it is wrapped once, here (:func:`wrap_error`), with the partial
result.
"""

from __future__ import annotations

import os
import time
import traceback
import warnings
from typing import TYPE_CHECKING, Any

from ..errors import BacktestError, OutsideSessionWarning, PluginError, StrategyError
from .bar_loop import EventRunner
from .clock import describe_ts
from .culprit import ModelFiles, find_culprit
from .results import RunRecord, build_result
from .run import Run

if TYPE_CHECKING:
    from .results import BacktestResult
    from .runtime import Progress, Runner

__all__ = ["execute", "wrap_error"]


def execute(run: Run, progress: Progress | None = None) -> BacktestResult:
    """Run the backtest once, in whichever runner, and return its result.

    Raises
    ------
    StrategyError
        Strategy code raised (in a callback, ``on_start`` or ``on_end``); the error
        names the timestamp and asset and carries ``partial_result``.
    PluginError
        A plugin's model raised during the run, named with its plugin.
    """
    t0 = time.perf_counter()
    strategy, obs = run.strategy, run.setup.observers
    run.prepare(progress)
    runner: Runner | None = strategy.compiled_runner(run)
    if runner is None:
        runner = EventRunner(run)
    run.mode = runner.mode
    run.run_info["mode"] = runner.mode
    try:
        strategy._bind(run)
        if obs.run_start is not None:
            obs.run_start()
        strategy.on_start()
        runner.run(run, progress)
        if run.pending_trade_events:
            run.flush_trade_events()
    except Exception as exc:
        partial = None
        try:
            if runner.salvage(run):
                partial = _result(run, time.perf_counter() - t0, complete=False)
        except Exception as inner:  # never hide the run's error behind this one
            exc.add_note(f"(no partial result: building it raised {inner!r})")
        wrapped = wrap_error(run, exc, partial)
        if wrapped is exc:
            raise
        raise wrapped from exc
    if progress is not None:
        progress(1.0)
    cal = run.calendar
    if run.outside_session_bars and cal is not None and cal.outside_sessions == "warn":
        warnings.warn(run.outside_message(), OutsideSessionWarning, stacklevel=3)
    result = _result(run, time.perf_counter() - t0, complete=True)
    run.finished = True
    if obs.run_end is not None:
        obs.run_end(result)
    try:
        strategy.on_end(result)
    except Exception as exc:
        raise StrategyError(
            f"strategy {type(strategy).__name__} raised {type(exc).__name__} in on_end: "
            f"{exc}. The run itself completed; its result is exc.partial_result.",
            partial_result=result,
        ) from exc
    return result


def _result(run: Run, elapsed: float, complete: bool) -> BacktestResult:
    """Build the result from what the runner booked."""
    broker = run.broker
    record = RunRecord(
        name=run.setup.name,
        strategy=type(run.strategy).__qualname__,
        clock=run.clock,
        portfolio=broker.portfolio,
        context_names=tuple(run.context.names),
        price_of=run.price_of,
        orders=broker.order_records(),
        broker_settings=broker.settings(),
        broker_metrics=broker.run_metrics(),
        feeds=[repr(f) for f in run.setup.feeds],
        calendar=None if run.calendar is None else run.calendar.name,
        outside_session_bars=run.outside_session_bars,
        run_info=run.run_info,
        provenance=run.setup.provenance(),
        records=run.records,
    )
    assert run.books is not None
    # user code -> BacktestEngine.run -> execute -> _result -> build_result
    return build_result(record, run.ts_parts, run.books.arrays(), elapsed, complete, stacklevel=4)


def wrap_error(run: Run, exc: Exception, partial: Any) -> Exception:
    """Return the error to raise for ``exc``, raised during the run.

    Strategy code raising becomes a :class:`StrategyError`, a model of a (non-builtin)
    plugin raising a :class:`PluginError`; whichever of the two is innermost in the
    traceback is the culprit. Both name the timestamp and asset and carry the partial
    result. Anything else is returned as it is, with notes saying where it happened.
    """
    frames = traceback.extract_tb(exc.__traceback__)
    when, asset = "start-up", None
    to_dt = run.clock.to_datetime
    if run.last_ts >= 0:
        when = f"after {describe_ts(to_dt, run.last_ts)} (between bars)"
    chunk = run.chunk
    in_broker = any(f.name in ("process_open", "process_close") for f in frames)
    several = False
    if run.session_ts is not None:  # a session callback: no asset is being handled
        when = describe_ts(to_dt, run.session_ts)
    elif run.where is not None and chunk is not None:
        i, r = run.where
        when = describe_ts(to_dt, chunk.ts[i])
        if in_broker:  # orders of every asset of the timestamp: one row names it
            r0, r1 = chunk.offsets[i], chunk.offsets[i + 1]
            r, several = (r0 if r1 - r0 == 1 else -1), r1 - r0 > 1
        if 0 <= r < len(chunk.code):
            asset = run.clock.asset_ids[chunk.code[r]]
    blame = run.setup.blame
    files = blame.model_files() if blame is not None else {}
    culprit = find_culprit(run.strategy, files, exc)
    at = f"timestamp {when}" + (f", asset {asset!r}" if asset else "")
    if culprit == "strategy":
        message = (
            f"strategy {type(run.strategy).__name__} raised {type(exc).__name__} at {at}: "
            f"{exc}. The partial result (exc.partial_result) covers the bars up to that "
            "timestamp and is marked incomplete."
        )
        return StrategyError(message, timestamp=when, asset_id=asset, partial_result=partial)
    if isinstance(culprit, tuple) and blame is not None and not isinstance(exc, BacktestError):
        plugin, model = culprit
        if several and asset is None:
            at += ", asset not known (the broker was filling orders of several assets)"
        err = blame.error(
            plugin,
            f"raised {type(exc).__name__} in {model} at {at}: {exc}. The partial result "
            "(exc.partial_result) covers the bars up to that timestamp and is marked "
            "incomplete",
        )
        err.model, err.timestamp, err.asset_id = model, when, asset
        err.partial_result = partial
        return err
    # not ours to name (or already one of our errors): keep it, say where it happened
    exc.add_note(f"while handling timestamp {when}" + (f", asset {asset}" if asset else ""))
    if blame is not None and not isinstance(exc, PluginError):
        plugin_name = _innermost_plugin(files, exc)
        if plugin_name is not None:
            exc.add_note(f"raised by a model of plugin {blame.describe(plugin_name)}")
    if isinstance(exc, PluginError) and exc.partial_result is None:
        exc.timestamp, exc.asset_id, exc.partial_result = when, asset, partial
    return exc


def _innermost_plugin(files: ModelFiles, exc: BaseException) -> str | None:
    found = None
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        hit = files.get(os.path.realpath(frame.f_code.co_filename))
        if hit is not None:
            found = hit[0]
    return found
