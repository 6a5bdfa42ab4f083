"""The ``raygrid`` command line: run a search spec here, or submit it to a Ray cluster.

::

    raygrid run SPEC.toml [--address ADDR] [--output DIR_OR_URI] [--top N] [-v]
    raygrid submit SPEC.toml [--address http://HEAD:8265] [--output DIR_OR_URI] [--no-wait]
    raygrid report PATH ...
    raygrid up [--num-cpus N] [--num-gpus N] [--idle-timeout SECONDS]
    raygrid down
    raygrid doctor [--address ADDR] [--expect-gpus N] [--json]
    raygrid plan SPEC.toml [--address ADDR] [--json]

``submit`` is :mod:`raygrid.cli.submit`'s. ``up`` keeps a local Ray running, with warm
workers, for later scripts on this machine to join; ``down`` stops it (see
:mod:`raygrid.local.kept_alive`). ``doctor`` checks a cluster's nodes, versions and GPUs
(:mod:`raygrid.cli.doctor`); ``plan`` estimates a spec's cost with a few probe fits,
without running it (:mod:`raygrid.cli.dry_run`).

``--output`` replaces the spec's ``[output].path``, so one spec can write to a local
folder here and to object storage (``s3://bucket/dir``) on a cluster.

Exit codes: 0 success; 1 the search or the job failed; 2 a bad spec or bad usage (one
line per problem on stderr, no traceback); 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from raygrid.cli import common, doctor, dry_run, submit
from raygrid.report import build as report
from raygrid.spec.search_spec import SpecError
from raygrid.store.live import live_output
from raygrid.store.location import Location, LocationError
from raygrid.store.results import read_output, write_output
from raygrid.text import error_line

REPORT_PROG = "raygrid report"


def main(argv: list[str] | None = None) -> int:
    """Run the ``raygrid`` command line.

    Parameters
    ----------
    argv : list of str, default=None
        The arguments after the program name; ``sys.argv[1:]`` if None.

    Returns
    -------
    int
        The exit code: 0 success, 1 search or job failure, 2 spec or usage error,
        130 interrupted.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if argv and argv[0] == "report":
        return _report(argv[1:])
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed by argparse
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    if args.command is None:
        parser.print_usage(sys.stderr)
        print(
            "raygrid: error: a command is required (run, submit, report, up, down, doctor "
            "or plan)",
            file=sys.stderr,
        )
        return 2
    try:
        return args.func(args)
    except SpecError as exc:
        for line in exc.problems:
            print(f"raygrid {args.command}: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"raygrid {args.command}: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raygrid",
        description="Run scikit-learn grid searches on Ray, from a TOML search spec.",
    )
    from raygrid.version import __version__

    parser.add_argument("--version", action="version", version=f"raygrid {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_run_parser(sub)
    submit.add_parser(sub)
    sub.add_parser(
        "report",
        help="summarise saved results (see `raygrid report --help`)",
        add_help=False,
    )
    _add_up_down_parsers(sub)
    doctor.add_parser(sub, _non_negative_int)
    dry_run.add_parser(sub)
    return parser


def _add_up_down_parsers(sub: Any) -> None:
    from raygrid.local import kept_alive

    up = sub.add_parser(
        "up",
        help="keep a local Ray with warm workers running for later scripts to join",
        description="Start a local Ray with token authentication and warm fit workers "
        "(TensorFlow imported), detached from this terminal. Later searches on this "
        "machine with no ray_address and no RAY_ADDRESS join it. It stops after "
        "--idle-timeout seconds without a search, or at `raygrid down`. Its address and "
        f"token are in a state file readable by you only ({kept_alive.STATE_DIR_ENV}, "
        "else $XDG_RUNTIME_DIR/raygrid, else ~/.raygrid).",
    )
    up.add_argument(
        "--num-cpus", type=_positive_int, metavar="N", help="CPUs to offer (default: all)"
    )
    up.add_argument(
        "--num-gpus",
        type=_non_negative_int,
        metavar="N",
        help="GPUs to offer (default: those Ray detects)",
    )
    up.add_argument(
        "--idle-timeout",
        type=_positive_seconds,
        default=kept_alive.DEFAULT_IDLE_TIMEOUT,
        metavar="SECONDS",
        help=f"stop after this long without a search (default {kept_alive.DEFAULT_IDLE_TIMEOUT:g})",
    )
    up.set_defaults(
        func=lambda a: kept_alive.up(a.num_cpus, a.num_gpus, a.idle_timeout, out=sys.stdout)
    )
    down = sub.add_parser(
        "down",
        help="stop the local Ray of `raygrid up`",
        description="Stop every process of the kept-alive local Ray and remove its state file.",
    )
    down.set_defaults(func=lambda _args: kept_alive.down(out=sys.stdout))


def _add_run_parser(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="run a search spec (on a local Ray, or the cluster at --address)",
        description="Check SPEC, run its search, print the ranked results and write them "
        "to [output].path.",
    )
    run.add_argument("spec", metavar="SPEC.toml", help="the search spec")
    run.add_argument(
        "--address",
        help="Ray cluster to join (host:6379, ray://host:10001 or 'auto'); default: "
        "RAY_ADDRESS, an already running Ray in this process, or a new local Ray",
    )
    common.output_option(run)
    common.common_options(run)
    run.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=None,
        help="more progress output (-v: a line per fit); overrides [search].verbose",
    )
    run.set_defaults(func=_run)


# -- run ----------------------------------------------------------------------------------


def _build_search(spec: Any, args: argparse.Namespace) -> Any:
    """The spec's search, with ``--address`` and ``--verbose`` (progress shown by default)."""
    overrides: dict[str, Any] = {}
    if args.verbose is not None:
        overrides["verbose"] = 1 + args.verbose
    elif "verbose" not in spec.search_params:
        overrides["verbose"] = 1
    return spec.build_search(ray_address=args.address, **overrides)


def _run(args: argparse.Namespace) -> int:
    from raygrid.run.pool import SlotTooLarge

    spec = common.load(args.spec, args.output)
    if spec.output is not None:
        try:  # before any data is read or fit runs: a wrong bucket fails now
            Location(spec.output, "[output].path").probe()
        except LocationError as exc:
            return common.failed("run", f"cannot write results to {spec.output}", exc, args.debug)
    data = spec.load_data()
    search = _build_search(spec, args)
    n_candidates = len(spec.candidates())
    common.say(
        f"raygrid run: {args.spec}: {spec.estimator_class.__name__}, {n_candidates} candidates"
    )
    common.say(f"raygrid run: data {data.description}")
    _warn_if_large(search, n_candidates, data)
    started = time.perf_counter()
    try:
        with live_output(spec.output) if spec.output else contextlib.nullcontext():
            search.fit(data.X, data.y, **data.fit_params)
    except KeyboardInterrupt:
        raise
    except SlotTooLarge as exc:  # bad input, found before any fit starts
        print(f"raygrid run: {args.spec}: {error_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:
        return common.failed("run", "search failed", exc, args.debug)
    elapsed = time.perf_counter() - started
    frame = search.results_frame()
    common.say(
        f"raygrid run: {len(frame)} candidates × {search.n_splits_} folds in {elapsed:.1f} s"
    )
    if hasattr(search, "best_params_"):
        best = getattr(search, "best_score_", None)
        score = f", best score {best:.4f}" if best is not None else ""
        common.say(f"raygrid run: best parameters {search.best_params_}{score}")
    refit = spec.search_params.get("refit")
    common.say(common.format_ranking(frame, args.top, refit if isinstance(refit, str) else None))
    if spec.output is not None:
        try:
            write_output(search, spec.output)
            # The exit status says the results are where they were asked to be: read
            # them back (from object storage too) before reporting success.
            written, _tasks, _summary = read_output(spec.output)
        except Exception as exc:
            return common.failed("run", f"cannot write results to {spec.output}", exc, args.debug)
        if len(written) != len(frame):
            print(
                f"raygrid run: results at {spec.output} hold {len(written)} candidates, "
                f"expected {len(frame)}",
                file=sys.stderr,
            )
            return 1
        common.say(f"raygrid run: results written to {spec.output} ({len(written)} candidates)")
    return 0


# Grids larger than this are announced with their cost before the search starts.
LARGE_GRID = 100_000


def _warn_if_large(search: Any, n_candidates: int, data: Any) -> None:
    """Warn on stderr, before anything runs, when a grid search is very large."""
    if n_candidates <= LARGE_GRID or not hasattr(search, "param_grid"):
        return
    from sklearn.base import is_classifier
    from sklearn.model_selection import check_cv

    cv = check_cv(search.cv, data.y, classifier=is_classifier(search.estimator))
    n_splits = cv.get_n_splits(data.X, data.y, groups=data.fit_params.get("groups"))
    print(
        f"raygrid run: warning: {n_candidates:,} candidates × {n_splits} folds = "
        f"{n_candidates * n_splits:,} fits (plus the refit); this will take long. "
        'Narrow the grid or use kind = "randomized" or "halving_grid".',
        file=sys.stderr,
        flush=True,
    )


# -- report -------------------------------------------------------------------------------


class _ReportParser(argparse.ArgumentParser):
    """Usage errors raise :class:`raygrid.report.build.ReportError` (one line) instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise report.ReportError(f"{message} (see '{REPORT_PROG} --help')")


def _whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value

    return parse


_positive_int = _whole_number(1)
_non_negative_int = _whole_number(0)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def _report_parser() -> argparse.ArgumentParser:
    parser = _ReportParser(
        prog=REPORT_PROG,
        description="A saved search (RayGridSearchCV.save_results) as a ranked table, "
        "PNG figures and optionally one self-contained HTML page.",
    )
    parser.add_argument("path", metavar="PATH", help="directory written by save_results")
    parser.add_argument(
        "--out", metavar="DIR", help="where to write the PNGs (default: PATH/figures)"
    )
    parser.add_argument(
        "--html", metavar="FILE", help="also write one self-contained HTML page here"
    )
    parser.add_argument(
        "--metric", metavar="NAME", help="scoring name to rank by (default: the refit metric)"
    )
    parser.add_argument(
        "--params",
        nargs=2,
        metavar=("P1", "P2"),
        help="the heatmap's parameters (x, y); default: the two most influential",
    )
    parser.add_argument(
        "--top",
        type=_positive_int,
        default=10,
        metavar="N",
        help="rows in the table (default: 10)",
    )
    return parser


def _report(argv: list[str]) -> int:
    """Run ``raygrid report``: 0 on success; 2 for bad input, as one line on stderr."""
    path = None
    try:
        args = _report_parser().parse_args(argv)
        path = args.path
        report.run_report(args.path, args.out, args.html, args.metric, args.params, args.top)
        return 0
    except report.ReportError as exc:
        print(f"{REPORT_PROG}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        # Files that pass every check above but still hold what raygrid never writes.
        what = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        print(f"{REPORT_PROG}: {path}: not reportable raygrid results ({what})", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except BrokenPipeError:  # e.g. piped into head: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
