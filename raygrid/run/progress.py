"""What the driver prints while a search runs: scikit-learn's ``verbose`` lines."""

from __future__ import annotations

from typing import Any

from raygrid.store.record import FitRecord


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
    record: FitRecord,
    params: dict[str, Any],
    split: tuple[int, int],
    candidate: tuple[int, int],
    verbose: int,
) -> str:
    """scikit-learn's ``[CV] END`` line for one finished fit (shown at ``verbose > 1``).

    Parameters
    ----------
    record : FitRecord
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
        test = record.test_scores
        train = record.train_scores
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
    total = record.fit_time + record.score_time
    message += f" total time={short_time(total)}"
    head = f"[CV{progress}] END "
    return head + "." * (80 - len(head) - len(message)) + message


def short_time(seconds: float) -> str:
    """Seconds as joblib and scikit-learn print them."""
    if seconds > 60:
        return f"{seconds / 60.0:4.1f}min"
    return f" {seconds:5.1f}s"


class ProgressBar:
    """A tqdm bar on the driver: fits done / total, failures, ETA, best score so far.

    ``show`` is the search's ``progress``: ``"auto"`` shows the bar when stderr is a
    terminal or in a notebook, ``True`` always, ``False`` never. The best score is the
    best mean test score (first metric) among candidates whose every split has finished.
    """

    def __init__(self, show: bool | str, total: int, n_splits: int, done: int = 0) -> None:
        self.bar = None
        self.n_splits = n_splits
        self.failures = 0
        self.best: float | None = None
        self._scores: dict[int, list[float]] = {}
        if show == "auto":
            show = _interactive()
        if show:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total, initial=done, desc="raygrid", unit="fit", dynamic_ncols=True
            )

    def update(self, candidate: int, record: FitRecord, resumed: bool = False) -> None:
        """Count one finished fit of ``candidate`` (``resumed``: already counted as done)."""
        if self.bar is None:
            return
        if record.failed:
            self.failures += 1
        score = record.test_scores
        if isinstance(score, dict):
            score = next(iter(score.values()))
        scores = self._scores.setdefault(candidate, [])
        scores.append(float(score))
        if len(scores) == self.n_splits:
            mean = sum(scores) / len(scores)
            if mean == mean and (self.best is None or mean > self.best):
                self.best = mean
        postfix = {"failed": self.failures}
        if self.best is not None:
            postfix["best"] = f"{self.best:.4f}"
        self.bar.set_postfix(postfix, refresh=False)
        if not resumed:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _interactive() -> bool:
    import sys

    try:
        shell = get_ipython().__class__.__name__  # type: ignore[name-defined]  # noqa: F821
        if shell == "ZMQInteractiveShell":
            return True
    except NameError:
        pass
    return sys.stderr is not None and sys.stderr.isatty()
