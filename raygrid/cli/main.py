"""The ``raygrid`` command line: run a search spec here, or submit it to a Ray cluster.

::

    raygrid run SPEC.toml [--address ADDR] [--output DIR_OR_URI] [--top N] [-v]
    raygrid submit SPEC.toml [--address http://HEAD:8265] [--output DIR_OR_URI] [--no-wait]
    raygrid report PATH ...
    raygrid up [--num-cpus N] [--num-gpus N] [--idle-timeout SECONDS]
    raygrid down
    raygrid doctor [--address ADDR] [--expect-gpus N] [--json]
    raygrid plan SPEC.toml [--address ADDR] [--json]

``up`` keeps a local Ray running, with warm workers, for later scripts on this machine
to join; ``down`` stops it (see :mod:`raygrid.local.kept_alive`). ``doctor`` checks a
cluster's nodes, versions and GPUs (:mod:`raygrid.cli.doctor`); ``plan`` estimates a
spec's cost with a few probe fits, without running it (:mod:`raygrid.cli.dry_run`).

``--output`` replaces the spec's ``[output].path``, so one spec can write to a local
folder here and to object storage (``s3://bucket/dir``) on a cluster.

Exit codes: 0 success; 1 the search or the job failed; 2 a bad spec or bad usage (one
line per problem on stderr, no traceback); 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import logging
import os
import shlex
import shutil
import sys
import tempfile
import time
import tomllib
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from raygrid.cli import doctor, dry_run
from raygrid.report import build as report
from raygrid.report.ranking import format_table, parameter_columns, ranked_table
from raygrid.spec.search_spec import SearchSpec, SpecError, load_spec, parse_spec
from raygrid.spec.toml_writer import dump_toml
from raygrid.store.results import is_uri, read_output, write_output
from raygrid.text import error_line

_TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
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
    from raygrid import __version__

    parser.add_argument("--version", action="version", version=f"raygrid {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_run_parser(sub)
    _add_submit_parser(sub)
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
    _output_option(run)
    _common_options(run)
    run.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=None,
        help="more progress output (-v: a line per fit); overrides [search].verbose",
    )
    run.set_defaults(func=_run)


def _add_submit_parser(sub: Any) -> None:
    submit = sub.add_parser(
        "submit",
        help="submit a search spec as a Ray job and follow it",
        description="Check SPEC, ship it (and its local data file) as a Ray job running "
        "`python -m raygrid.cli.main run`, stream the job's logs and print the ranked results "
        "read back from [output].path; print where the results are and how to fetch "
        "them. Token authentication: the token is read from "
        "--auth-token-file, RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH, else Ray's own "
        "lookup applies (RAY_AUTH_MODE=token and ~/.ray/auth_token).",
    )
    submit.add_argument("spec", metavar="SPEC.toml", help="the search spec")
    submit.add_argument(
        "--address",
        help="the cluster's Jobs API, e.g. http://HEAD:8265; default: "
        "RAY_API_SERVER_ADDRESS, then RAY_ADDRESS",
    )
    submit.add_argument(
        "--no-wait", action="store_true", help="print the job id and return at once"
    )
    submit.add_argument(
        "--auth-token-file",
        metavar="PATH",
        help="file holding the cluster's authentication token (RAY_AUTH_MODE=token)",
    )
    submit.add_argument("--job-id", help="submission id to use (default: generated by Ray)")
    _output_option(submit)
    _common_options(submit)
    submit.set_defaults(func=_submit)


def _output_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output",
        metavar="DIR_OR_URI",
        help="where results are written, replacing the spec's [output].path: a directory, "
        "or a URI such as s3://bucket/dir, gs://bucket/dir, file:///shared/dir",
    )


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--top", type=int, default=10, metavar="N", help="rows of the ranked table (default 10)"
    )
    parser.add_argument(
        "--debug", action="store_true", help="print full tracebacks of search failures"
    )


# -- run ----------------------------------------------------------------------------------


def _load(path: str, output: str | None) -> SearchSpec:
    """Read and check a spec; ``output`` (``--output``) replaces its ``[output].path``."""
    if output is None:
        return load_spec(path)
    try:
        doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        load_spec(path)  # raises a SpecError naming the problem
        raise
    if not isinstance(doc.get("output", {}), dict):
        return load_spec(path)  # reports the malformed [output]
    doc.setdefault("output", {})["path"] = output
    return parse_spec(doc, file=path, base_dir=Path(path).resolve().parent)


def _run(args: argparse.Namespace) -> int:
    spec = _load(args.spec, args.output)
    data = spec.load_data()
    overrides: dict[str, Any] = {}
    if args.verbose is not None:
        overrides["verbose"] = 1 + args.verbose
    elif "verbose" not in spec.search_params:
        overrides["verbose"] = 1
    search = spec.build_search(ray_address=args.address, **overrides)
    n_candidates = len(spec.candidates())
    _say(f"raygrid run: {args.spec}: {spec.estimator_class.__name__}, {n_candidates} candidates")
    _say(f"raygrid run: data {data.description}")
    _warn_if_large(search, n_candidates, data)
    started = time.perf_counter()
    try:
        search.fit(data.X, data.y, **data.fit_params)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        return _failed("run", "search failed", exc, args.debug)
    elapsed = time.perf_counter() - started
    frame = search.results_frame()
    _say(f"raygrid run: {len(frame)} candidates × {search.n_splits_} folds in {elapsed:.1f} s")
    if hasattr(search, "best_params_"):
        best = getattr(search, "best_score_", None)
        score = f", best score {best:.4f}" if best is not None else ""
        _say(f"raygrid run: best parameters {search.best_params_}{score}")
    refit = spec.search_params.get("refit")
    _say(format_ranking(frame, args.top, refit if isinstance(refit, str) else None))
    if spec.output is not None:
        try:
            write_output(search, spec.output)
            # The exit status says the results are where they were asked to be: read
            # them back (from object storage too) before reporting success.
            written, _tasks, _summary = read_output(spec.output)
        except Exception as exc:
            return _failed("run", f"cannot write results to {spec.output}", exc, args.debug)
        if len(written) != len(frame):
            print(
                f"raygrid run: results at {spec.output} hold {len(written)} candidates, "
                f"expected {len(frame)}",
                file=sys.stderr,
            )
            return 1
        _say(f"raygrid run: results written to {spec.output} ({len(written)} candidates)")
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


def format_ranking(frame: Any, top: int = 10, metric: str | None = None) -> str:
    """A ranked results table as text: rank, mean ± std of ``metric``, the parameters.

    Parameters
    ----------
    frame : pandas.DataFrame
        Results as from :func:`raygrid.store.results.results_frame` or
        :func:`raygrid.store.results.load_results`, best first.
    top : int, default=10
        How many rows to show.
    metric : str, default=None
        The metric to rank by (the refit metric); by default the first one.

    Returns
    -------
    str
    """
    metrics = [c.removeprefix("rank_test_") for c in frame.columns if c.startswith("rank_test_")]
    if metric not in metrics:
        metric = metrics[0]
    table = ranked_table(frame, metric, parameter_columns(frame), max(0, top))
    shown = f" (top {len(table)} of {len(frame)})" if len(frame) > len(table) else ""
    return f"Ranked results{shown}:\n" + format_table(table, metric)


# -- submit -------------------------------------------------------------------------------


def _submit(args: argparse.Namespace) -> int:
    spec = _load(args.spec, args.output)
    if spec.output is None:
        raise SpecError(
            spec.file,
            [
                (
                    "[output].path",
                    "missing; `raygrid submit` reads the results back from it (use a "
                    "shared directory or a URI such as s3://bucket/dir, or --output)",
                )
            ],
        )
    client = _connect(args)
    if isinstance(client, int):
        return client
    spec_name = Path(args.spec).name
    with tempfile.TemporaryDirectory(prefix="raygrid-job-") as workdir:
        stage_job_dir(spec, workdir, spec_name)
        _say(f"raygrid submit: uploading {spec_name} and its data to {client.get_address()}")
        entrypoint = " ".join(
            [
                "python",
                "-m",
                "raygrid.cli.main",
                "run",
                shlex.quote(spec_name),
                "--top",
                str(args.top),
            ]
        )
        try:
            job_id = client.submit_job(
                entrypoint=entrypoint,
                submission_id=args.job_id,
                runtime_env={"working_dir": workdir, "env_vars": {"PYTHONUNBUFFERED": "1"}},
                metadata={"raygrid_spec": spec_name},
            )
        except Exception as exc:
            return _failed("submit", "the cluster refused the job", exc, args.debug)
    _say(f"raygrid submit: submitted job {job_id} ({entrypoint})")
    uri = output_uri(spec.output)
    _say(f"raygrid submit: the job writes its results to {uri}")
    if not is_uri(spec.output):
        _say(
            "raygrid submit: note: that is a local path of the node running the job (the "
            "cluster's head); it is readable here only on this machine's cluster or a "
            "shared filesystem. For a remote cluster use --output s3://bucket/dir"
        )
    if args.no_wait:
        _say(fetch_instructions(spec.output))
        print(job_id, flush=True)
        return 0
    return _follow_and_show(args, spec, client, job_id)


def _connect(args: argparse.Namespace) -> Any:
    """The Jobs API client for ``raygrid submit``, or the exit code when there is none."""
    try:
        return _job_client(args.address, args.auth_token_file)
    except Exception as exc:
        if type(exc).__name__ == "AuthenticationError":
            _failed("submit", "the cluster refused this client", exc, args.debug)
            print(
                "raygrid submit: the cluster uses token authentication: pass its token with "
                "--auth-token-file, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN",
                file=sys.stderr,
            )
            return 1
        return _failed("submit", "cannot reach the Ray Jobs API", exc, args.debug)


def _follow_and_show(args: argparse.Namespace, spec: SearchSpec, client: Any, job_id: str) -> int:
    """Stream the job's logs, then print its ranked results read back from its output."""
    uri = output_uri(spec.output)
    try:
        status = _follow(client, job_id)
    except KeyboardInterrupt:
        print(
            f"raygrid submit: stopped following job {job_id}; it keeps running "
            f"(stop it with: ray job stop {job_id})",
            file=sys.stderr,
        )
        return 130
    if status != "SUCCEEDED":
        message = ""
        with contextlib.suppress(Exception):  # the status alone is enough to report
            message = client.get_job_info(job_id).message or ""
        detail = f": {message.strip().splitlines()[0]}" if message.strip() else ""
        print(f"raygrid submit: job {job_id} {status}{detail}", file=sys.stderr)
        return 1
    _say(f"raygrid submit: job {job_id} SUCCEEDED; reading results from {uri}")
    try:
        frame, _tasks, summary = read_output(uri)
    except Exception as exc:
        code = _failed("submit", f"cannot read the results at {uri}", exc, args.debug)
        if not is_uri(spec.output):
            print(
                "raygrid submit: the job wrote them on the node it ran on; use a URI "
                "(--output s3://bucket/dir) or a shared filesystem to read them here",
                file=sys.stderr,
            )
        return code
    refit = summary.get("refit")
    _say(format_ranking(frame, args.top, refit if isinstance(refit, str) else None))
    _say(fetch_instructions(spec.output))
    return 0


def output_uri(output: str) -> str:
    """``output`` as a URI: a local path becomes ``file:///abs/path``; URIs are unchanged.

    Parameters
    ----------
    output : str
        A checked ``[output].path`` (an absolute local path or a URI).

    Returns
    -------
    str
    """
    return output if is_uri(output) else Path(output).absolute().as_uri()


def fetch_instructions(output: str) -> str:
    """How to copy a search's results from ``output`` to this machine and summarise them.

    Parameters
    ----------
    output : str
        As for :func:`output_uri`.

    Returns
    -------
    str
        Lines of text: the results' location, then the commands to type.
    """
    uri = output_uri(output)
    scheme = uri.split("://", 1)[0].lower()
    if scheme == "file":
        local = str(Path(output).absolute()) if not is_uri(output) else uri[len("file://") :]
        return (
            f"raygrid submit: results: {uri} (cv_results.parquet, tasks.parquet, "
            f"search.json)\nraygrid submit: summarise them with:\n"
            f"    raygrid report {shlex.quote(local)}"
        )
    name = Path(uri.split("://", 1)[1].rstrip("/")).name or "results"
    dest = shlex.quote(f"./{name}")
    if scheme == "s3":
        copy = f"aws s3 cp --recursive {shlex.quote(uri)} {dest}"
    elif scheme in ("gs", "gcs"):
        copy = (
            f"gcloud storage cp --recursive {shlex.quote('gs://' + uri.split('://', 1)[1])} {dest}"
        )
    else:
        code = f'import pyarrow.fs as f; f.copy_files("{uri}", "./{name}")'
        copy = f"python -c {shlex.quote(code)}"
    return (
        f"raygrid submit: results: {uri} (cv_results.parquet, tasks.parquet, search.json)\n"
        f"raygrid submit: fetch and summarise them with:\n"
        f"    {copy}\n"
        f"    raygrid report {dest}"
    )


def stage_job_dir(spec: SearchSpec, workdir: str | os.PathLike, spec_name: str) -> Path:
    """Fill ``workdir`` with what a job needs to run ``spec``: the spec and its data file.

    A local data file is copied to ``data/<name>`` and the spec's ``[data].path`` points
    there; ``[output].path`` (unless a URI) and ``[search].results_dir`` become absolute
    paths, since the job's working directory does not outlive it. Other keys are
    unchanged.

    Parameters
    ----------
    spec : SearchSpec
        A checked spec.
    workdir : path-like
        An existing, empty directory (the job's ``working_dir``).
    spec_name : str
        File name of the spec written into ``workdir``.

    Returns
    -------
    pathlib.Path
        The spec file written.
    """
    workdir = Path(workdir)
    doc = copy.deepcopy(spec.raw)
    if spec.data.path is not None and not is_uri(spec.data.path):
        (workdir / "data").mkdir(exist_ok=True)
        name = Path(spec.data.path).name
        shutil.copy2(spec.data.path, workdir / "data" / name)
        doc["data"]["path"] = f"data/{name}"
    if spec.output is not None:
        doc.setdefault("output", {})["path"] = spec.output
    if "results_dir" in spec.search_params:  # the job's working directory is temporary
        doc["search"]["results_dir"] = spec.search_params["results_dir"]
    for tracker in spec.search_params.get("tracking", []):
        if hasattr(tracker, "logdir"):  # TensorBoard: absolute, like results_dir
            doc["tracking"]["tensorboard_dir"] = str(tracker.logdir)
    target = workdir / spec_name
    target.write_text(dump_toml(doc), encoding="utf-8")
    return target


def _job_client(address: str | None, token_file: str | None) -> Any:
    from ray.job_submission import JobSubmissionClient

    token = None
    if token_file:
        token = Path(token_file).expanduser().read_text().strip()
    elif os.environ.get("RAY_AUTH_TOKEN"):
        token = os.environ["RAY_AUTH_TOKEN"].strip()
    elif os.environ.get("RAY_AUTH_TOKEN_PATH"):
        token = Path(os.environ["RAY_AUTH_TOKEN_PATH"]).expanduser().read_text().strip()
    headers = {"Authorization": f"Bearer {token}"} if token else None
    # Ray's SDK logs every package upload and websocket close at INFO level.
    for name in (
        "ray.dashboard.modules.dashboard_sdk",
        "ray.dashboard.modules.job.sdk",
        "ray._private.runtime_env.packaging",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
    return JobSubmissionClient(address, headers=headers)


def _follow(client: Any, job_id: str) -> str:
    """Print the job's logs as they come; return its final status."""

    async def tail() -> None:
        async for lines in client.tail_job_logs(job_id):
            print(lines, end="", flush=True)

    shown = 0
    try:
        asyncio.run(tail())
        shown = -1
    except Exception as exc:  # e.g. a proxy without websockets: poll instead
        print(f"raygrid submit: log streaming failed ({exc}); polling", file=sys.stderr)
    while True:
        status = str(client.get_job_status(job_id).value)
        if shown >= 0:
            logs = client.get_job_logs(job_id)
            print(logs[shown:], end="", flush=True)
            shown = len(logs)
        if status in _TERMINAL:
            return status
        time.sleep(1.0)


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


# -- helpers ------------------------------------------------------------------------------


def _say(text: str) -> None:
    print(text, flush=True)


def _failed(command: str, what: str, exc: BaseException, debug: bool) -> int:
    if debug:
        traceback.print_exception(exc)
    print(f"raygrid {command}: {what}: {error_line(exc)}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
