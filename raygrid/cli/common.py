"""What the ``raygrid`` commands share: reading a spec, the ranked table, messages."""

from __future__ import annotations

import argparse
import sys
import tomllib
import traceback
from pathlib import Path
from typing import Any

from raygrid.report.ranking import display_frame, format_table, parameter_columns, ranked_table
from raygrid.spec.search_spec import SearchSpec, load_spec, parse_spec
from raygrid.text import error_line


def output_option(parser: argparse.ArgumentParser) -> None:
    """``--output``, which replaces the spec's ``[output].path``."""
    parser.add_argument(
        "--output",
        metavar="DIR_OR_URI",
        help="where results are written, replacing the spec's [output].path: a directory, "
        "or a URI such as s3://bucket/dir, gs://bucket/dir, file:///shared/dir",
    )


def common_options(parser: argparse.ArgumentParser) -> None:
    """``--top`` and ``--debug``."""
    parser.add_argument(
        "--top", type=int, default=10, metavar="N", help="rows of the ranked table (default 10)"
    )
    parser.add_argument(
        "--debug", action="store_true", help="print full tracebacks of search failures"
    )


def load(path: str, output: str | None) -> SearchSpec:
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
    frame = display_frame(frame)
    metrics = [c.removeprefix("rank_test_") for c in frame.columns if c.startswith("rank_test_")]
    if metric not in metrics:
        metric = metrics[0]
    table = ranked_table(frame, metric, parameter_columns(frame), max(0, top))
    shown = f" (top {len(table)} of {len(frame)})" if len(frame) > len(table) else ""
    return f"Ranked results{shown}:\n" + format_table(table, metric)


def say(text: str) -> None:
    """Print a line of the command's progress, at once."""
    print(text, flush=True)


def failed(command: str, what: str, exc: BaseException, debug: bool) -> int:
    """Report a failure on stderr in one line (the traceback with ``--debug``); exit code 1."""
    if debug:
        traceback.print_exception(exc)
    print(f"raygrid {command}: {what}: {error_line(exc)}", file=sys.stderr)
    return 1
