"""The ``ml4t-backtest`` command line.

Subcommands
-----------
``demo [--output DIR] [--quiet]``
    Run the embedded walk-forward ML demo (:func:`ml4t.backtest.demo.run_demo`).
``run CONFIG [--set KEY=VALUE ...] [--output DIR] [--quiet] [--no-progress] [--traceback]``
    Run the backtest a YAML/JSON config describes, print its summary and write its
    outputs atomically, with the resolved config and a run manifest (data hashes,
    versions) beside them (:func:`ml4t.backtest.runner.run_config`). A progress bar shows
    on a terminal for runs longer than a second. One run at a time writes to an output
    directory (a lock file names the holder).
``plugins [--json] [--hooks]``
    List the plugins this environment loads: name, distribution, version and the named
    models each provides.
``validate [--frameworks vectorbt,backtrader] [--scenario NAME] [--report PATH]``
    Run the cross-framework validation matrix of the repository's ``validation/``
    harness (which ships with a checkout, not with the wheel; ``--root`` points at one)
    and write its Markdown report. Exits with status 3 when a cell is a mismatch.

Errors raised by ml4t.backtest (:class:`~ml4t.backtest.BacktestError` and subclasses:
``ConfigError``, ``DataValidationError``, ``StrategyError``, ``PluginError``,
``OutputLockError``) are printed as one line on stderr and exit with status 2, without a
traceback; ``--traceback`` (before or after the subcommand) prints the full traceback
first, down to the line of the strategy or plugin code that raised. A failure to write
the output (``OSError``) exits with status 1, Ctrl-C (SIGINT) with 130 and SIGTERM with
143; on either signal a run removes its staging directory and lock and leaves earlier
outputs as they were.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from ._version import __version__
from .errors import BacktestError, RejectedOrdersWarning

__all__ = ["build_parser", "main"]

PROG = "ml4t-backtest"


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``ml4t-backtest``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Event-driven, point-in-time correct backtesting for ML strategies.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--traceback", action="store_true", help=_TRACEBACK_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="run a walk-forward ML strategy on the embedded NVDA/ORCL/YHOO daily data",
        description=(
            "Fit a ridge model walk-forward on embedded real daily bars (NVDA, ORCL, YHOO, "
            "2005-2014), trade its predictions with costs, print the metrics and write "
            "the result files."
        ),
    )
    demo.add_argument(
        "--output",
        "-o",
        metavar="DIR",
        default="ml4t_demo_output",
        help="directory for the result files (default: ./ml4t_demo_output)",
    )
    demo.add_argument("--quiet", "-q", action="store_true", help="print nothing")
    _traceback_option(demo)
    run = sub.add_parser(
        "run",
        help="run the backtest described by a YAML or JSON config",
        description="Run the backtest a config file describes and write its reports.",
    )
    run.add_argument("config", metavar="CONFIG", help="path of the .yaml/.yml/.json config")
    run.add_argument(
        "--output",
        "-o",
        metavar="DIR",
        default=None,
        help="output directory (default: the config's reporting.output_dir)",
    )
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key before validation, e.g. --set execution.fill_timing="
        "same_bar_close or --set strategy.params.top_k=10 (repeatable; VALUE is YAML)",
    )
    run.add_argument("--quiet", "-q", action="store_true", help="print nothing")
    run.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (it is shown only on a terminal, for runs over a second)",
    )
    _traceback_option(run)
    plugins = sub.add_parser(
        "plugins",
        help="list installed plugins and what each provides",
        description=(
            "List the plugins a BacktestEngine loads in this environment (builtins first, "
            "then installed entry points of group ml4t.backtest, sorted by name): name, "
            "distribution, version and the named models each provides."
        ),
    )
    plugins.add_argument("--json", action="store_true", help="print JSON")
    plugins.add_argument("--hooks", action="store_true", help="also list implemented hooks")
    val = sub.add_parser(
        "validate",
        help="compare ml4t.backtest with VectorBT, Backtrader and Zipline, scenario by scenario",
        description=(
            "Run each validation scenario through ml4t.backtest (with the framework's preset) "
            "and through the framework, compare fills, trades and equity, print the matrix "
            "and write a Markdown report. Needs a checkout of the repository (validation/) "
            "and the 'validation' extra; zipline runs in its own virtual environment, "
            "created on first use."
        ),
    )
    val.add_argument(
        "--frameworks",
        default="vectorbt,backtrader",
        help="comma-separated: vectorbt, backtrader, zipline (default: vectorbt,backtrader)",
    )
    val.add_argument(
        "--scenario",
        action="append",
        metavar="NAME",
        help="run only this scenario (repeatable; default: all)",
    )
    val.add_argument(
        "--report",
        metavar="PATH",
        default=None,
        help="Markdown report path (default: validation/REPORT.md in the checkout)",
    )
    val.add_argument(
        "--root", metavar="DIR", default=None, help="repository checkout holding validation/"
    )
    val.add_argument("--list", action="store_true", help="list the scenarios and exit")
    val.add_argument("--quiet", "-q", action="store_true", help="print only the table")
    _traceback_option(val)
    return parser


_TRACEBACK_HELP = (
    "on an error, print the full traceback (down to the strategy or plugin code that "
    "raised) before the one-line message"
)


def _traceback_option(sub: argparse.ArgumentParser) -> None:
    # SUPPRESS: the subcommand's default must not undo a --traceback given before it
    sub.add_argument(
        "--traceback", action="store_true", default=argparse.SUPPRESS, help=_TRACEBACK_HELP
    )


def _print_plugins(as_json: bool, hooks: bool) -> None:
    import json

    from .plugins import get_plugin_manager, list_plugins

    entries = list_plugins(get_plugin_manager())
    if as_json:
        print(json.dumps(entries, indent=2))
        return
    rows = [("NAME", "DISTRIBUTION", "VERSION", "PROVIDES")]
    for e in entries:
        parts = []
        for kind, names in e["provides"].items():
            alias = {n: a for a, n in e["aliases"].get(kind, {}).items()}
            parts.append(
                f"{kind}: " + ", ".join(f"{n} ({alias[n]})" if n in alias else n for n in names)
            )
        provides = "; ".join(parts)
        if hooks:
            provides += ("; " if provides else "") + "hooks: " + ", ".join(e["hooks"])
        rows.append((e["name"], e["distribution"], e["version"], provides or "-"))
    widths = [max(len(r[k]) for r in rows) for k in range(3)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3])


def _find_checkout(root: str | None) -> Path:
    from .errors import ConfigError

    candidates = [Path(root)] if root else [Path.cwd(), *Path.cwd().parents]
    for base in candidates:
        if (base / "validation" / "harness.py").is_file():
            return base.resolve()
    raise ConfigError(
        "validate: no validation/ harness found "
        + (f"in {root}" if root else "in the working directory or its parents")
        + "; it ships with a checkout of the repository, not with the installed package: "
        "run from the checkout or pass --root"
    )


def _validate(args: argparse.Namespace) -> int:
    import importlib

    base = _find_checkout(args.root)
    if str(base) not in sys.path:
        sys.path.insert(0, str(base))
    harness_cli = importlib.import_module("validation.cli")
    status: int = harness_cli.main(args, base)
    return status


def _run(args: argparse.Namespace) -> None:
    from .runner import run_config

    show = not (args.quiet or args.no_progress) and sys.stderr.isatty()
    with _progress_bar(show) as progress, warnings.catch_warnings():
        # said once below (in the summary, or on stderr with --quiet), not as a Python warning
        warnings.simplefilter("ignore", RejectedOrdersWarning)
        result, paths = run_config(
            args.config, output_dir=args.output, overrides=args.overrides, progress=progress
        )
    if args.quiet:  # otherwise the summary below says it
        for line in result.warnings:
            print(f"{PROG}: warning: {line}", file=sys.stderr)
    else:
        print(result.summary())
        for p in paths:
            print(f"wrote {p}")


@contextmanager
def _progress_bar(show: bool) -> Iterator[Callable[[float], None] | None]:
    """Yield a progress callback drawing a tqdm bar on stderr, or None when hidden."""
    if not show:
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(total=1000, desc="backtest", unit="‰", delay=1.0, leave=False, file=sys.stderr)
    bar.bar_format = "{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}"

    def update(fraction: float) -> None:
        step = int(fraction * 1000) - bar.n
        if step > 0:
            bar.update(step)

    try:
        yield update
    finally:
        bar.close()


class _Terminated(BaseException):
    """Raised by the SIGTERM handler, so ``finally`` blocks run (staging, lock)."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the clean-up runs once, undisturbed
    raise _Terminated


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into an exception for the duration (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; ``sys.argv[1:]`` when omitted.

    Returns
    -------
    int
        0 on success, 1 on an I/O error, 2 on a usage error or an ml4t.backtest error,
        130 when interrupted (SIGINT), 143 when terminated (SIGTERM).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    show_traceback = bool(getattr(args, "traceback", False))
    try:
        with _sigterm_raises():
            if args.command == "demo":
                from .demo import run_demo

                run_demo(args.output, quiet=args.quiet)
            elif args.command == "run":
                _run(args)
            elif args.command == "plugins":
                _print_plugins(args.json, args.hooks)
            elif args.command == "validate":
                return _validate(args)
            return 0
    except BacktestError as exc:
        if show_traceback:
            traceback.print_exception(exc, file=sys.stderr)
        notes = "; ".join(getattr(exc, "__notes__", ()))
        hint = ""
        if exc.__cause__ is not None and not show_traceback:
            hint = " (rerun with --traceback for the full traceback)"
        _error(f"{type(exc).__name__}: {exc}" + (f" ({notes})" if notes else "") + hint)
        return 2
    except OSError as exc:
        if show_traceback:
            traceback.print_exception(exc, file=sys.stderr)
        _error(f"{type(exc).__name__}: {exc}")
        return 1
    except KeyboardInterrupt:
        _error("interrupted (SIGINT)" + _STOPPED.get(args.command, ""))
        return 128 + signal.SIGINT
    except _Terminated:
        _error("terminated (SIGTERM)" + _STOPPED.get(args.command, ""))
        return 128 + signal.SIGTERM


_STOPPED = {
    "run": "; the run's staging directory and lock were removed, earlier outputs are unchanged"
}


def _error(message: str) -> None:
    # One line: a multi-line message (e.g. with exception notes) is joined.
    text = " ".join(message.split("\n"))
    print(f"{PROG}: error: {text}", file=sys.stderr)
