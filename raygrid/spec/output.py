"""A search spec's ``[output]`` and ``[tracking]`` tables: where the results go.

``[output].path`` is a local directory (resolved against the working directory) or a URI
with a scheme pyarrow writes to; ``[tracking]`` names the experiment trackers the search
logs to (MLflow, TensorBoard), built here as :mod:`raygrid.tracking` objects. Problems are
reported to a :class:`~raygrid.spec.problems.Problems` as ``FILE: [table].key: ...`` lines.
"""

from __future__ import annotations

import os
import re
from typing import Any

from raygrid.spec.problems import MISSING, Problems
from raygrid.store.results import is_uri

__all__ = ["OUTPUT_KEYS", "TRACKING_KEYS", "check_output", "check_tracking"]

#: The keys of ``[output]``.
OUTPUT_KEYS = ("path",)
#: The keys of ``[tracking]``.
TRACKING_KEYS = ("uri", "experiment", "run_name", "tags", "tensorboard_dir")


def check_tracking(p: Problems, table: dict) -> list[Any]:
    """``[tracking]``: MLflow when any MLflow key is set, TensorBoard when its dir is.

    Parameters
    ----------
    p : Problems
        Where problems are reported.
    table : dict
        The ``[tracking]`` table as read from TOML.

    Returns
    -------
    list
        The trackers, for the search's ``tracking`` parameter.
    """
    from raygrid.tracking import MLflowTracker, TensorBoardTracker

    p.unknown_keys(table, TRACKING_KEYS, "[tracking]")
    for key in ("uri", "experiment", "run_name", "tensorboard_dir"):
        if key in table and (not isinstance(table[key], str) or not table[key]):
            p.fail(f"[tracking].{key}", "a non-empty string", table[key])
    tags = table.get("tags", {})
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        p.fail("[tracking].tags", 'a table of strings, e.g. { team = "vision" }', tags)
    trackers: list[Any] = []
    mlflow_keys = {k: table[k] for k in ("uri", "experiment", "run_name", "tags") if k in table}
    if mlflow_keys:
        trackers.append(MLflowTracker(**mlflow_keys))
    if "tensorboard_dir" in table:
        trackers.append(TensorBoardTracker(os.path.abspath(table["tensorboard_dir"])))
    if not trackers:
        p.fail("[tracking]", "empty; set uri/experiment (MLflow) or tensorboard_dir")
    return trackers


def check_output(p: Problems, table: dict) -> str | None:
    """``[output].path``: a directory (not a file), or a URI of a known scheme.

    Parameters
    ----------
    p : Problems
        Where problems are reported.
    table : dict
        The ``[output]`` table as read from TOML.

    Returns
    -------
    str or None
        An absolute local path or the URI; None when there is a problem.
    """
    p.unknown_keys(table, OUTPUT_KEYS, "[output]")
    path = table.get("path", MISSING)
    if path is MISSING:
        p.fail("[output].path", "missing; expected a directory path or URI")
        return None
    if not isinstance(path, str) or not path:
        p.fail("[output].path", "a directory path or URI (a string)", path)
        return None
    if is_uri(path):
        return path if p.known_scheme("[output].path", path) else None
    if "://" in path or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:/", path):
        p.fail("[output].path", "a local path or a URI like s3://bucket/dir", path)
        return None
    resolved = os.path.abspath(os.path.expanduser(path))
    if os.path.exists(resolved) and not os.path.isdir(resolved):
        p.fail("[output].path", f"a directory, but {resolved} is a file")
        return None
    return resolved
