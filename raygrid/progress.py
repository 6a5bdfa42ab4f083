"""What the driver prints while a search runs: scikit-learn's ``verbose`` lines."""

from __future__ import annotations

from typing import Any


def start_line(n_splits: int, n_candidates: int) -> str:
    """scikit-learn's opening line of a search."""
    return (
        f"Fitting {n_splits} folds for each of {n_candidates} candidates,"
        f" totalling {n_splits * n_candidates} fits"
    )


def fit_start_line(
    params: dict[str, Any], split: tuple[int, int], candidate: tuple[int, int]
) -> str:
    """scikit-learn's ``[CV] START`` line for one fit (shown at ``verbose > 9``)."""
    line = f"[CV {split[0] + 1}/{split[1]}; {candidate[0] + 1}/{candidate[1]}] START "
    line += ", ".join(f"{k}={params[k]}" for k in sorted(params))
    return line + "." * (80 - len(line))


def end_line(
    record: dict[str, Any],
    params: dict[str, Any],
    split: tuple[int, int],
    candidate: tuple[int, int],
    verbose: int,
) -> str:
    """scikit-learn's ``[CV] END`` line for one finished fit (shown at ``verbose > 1``).

    Parameters
    ----------
    record : dict
        The task's record: scores and times.
    params : dict
        The candidate's parameters.
    split, candidate : tuple of int
        ``(index, total)`` of the split and of the candidate.
    verbose : int
        The search's verbosity; above 2 the line carries scores and the split number,
        above 9 the candidate number too.
    """
    progress = ""
    if verbose > 2:
        progress = f" {split[0] + 1}/{split[1]}"
        if verbose > 9:
            progress += f"; {candidate[0] + 1}/{candidate[1]}"
    message = ", ".join(f"{k}={params[k]}" for k in sorted(params))
    message += ";" if message else ""
    if verbose > 2:
        test = record["test_scores"]
        train = record.get("train_scores")
        if isinstance(test, dict):
            for name in sorted(test):
                message += f" {name}: ("
                if train is not None:
                    message += f"train={train[name]:.3f}, "
                message += f"test={test[name]:.3f})"
        elif train is not None:
            message += f", score=(train={train:.3f}, test={test:.3f})"
        else:
            message += f", score={test:.3f}"
    total = record["fit_time"] + record["score_time"]
    message += f" total time={short_time(total)}"
    head = f"[CV{progress}] END "
    return head + "." * (80 - len(head) - len(message)) + message


def short_time(seconds: float) -> str:
    """Seconds as joblib and scikit-learn print them."""
    if seconds > 60:
        return f"{seconds / 60.0:4.1f}min"
    return f" {seconds:5.1f}s"
