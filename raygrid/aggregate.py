"""Turn per-task records into scikit-learn's ``cv_results_``, ranks and best index.

The output is built to be identical, key for key, dtype for dtype and value for value,
to what ``GridSearchCV`` produces for the same fits; the test-suite checks this against
scikit-learn itself.
"""

from __future__ import annotations

import numbers
import warnings
from collections import Counter
from typing import Any

import numpy as np
from numpy.ma import MaskedArray
from scipy.stats import rankdata
from sklearn.exceptions import FitFailedWarning


def check_fit_failures(records: list[dict[str, Any]], error_score: Any) -> None:
    """Raise if every fit failed; warn once, summarising the tracebacks, if some did."""
    errors = [r["fit_error"] for r in records if r["fit_error"] is not None]
    if not errors:
        return
    delimiter = "-" * 80 + "\n"
    summary = "\n".join(
        f"{delimiter}{count} fits failed with the following error:\n{error}"
        for error, count in Counter(errors).items()
    )
    if len(errors) == len(records):
        raise ValueError(
            f"\nAll the {len(records)} fits failed.\n"
            "It is very likely that your model is misconfigured.\n"
            "You can try to debug the error by setting error_score='raise'.\n\n"
            f"Below are more details about the failures:\n{summary}"
        )
    warnings.warn(
        f"\n{len(errors)} fits failed out of a total of {len(records)}.\n"
        "The score on these train-test partitions for these parameters"
        f" will be set to {error_score}.\n"
        "If these failures are not expected, you can try to debug them "
        "by setting error_score='raise'.\n\n"
        f"Below are more details about the failures:\n{summary}",
        FitFailedWarning,
        stacklevel=3,
    )


def fill_failed_multimetric(records: list[dict[str, Any]], error_score: Any) -> None:
    """Give failed fits a score per metric when the scoring is multimetric.

    A failed fit only knows ``error_score``; which metric names to fill is learnt from
    the first successful fit (a callable scorer's names are only known once called).
    """
    ok = next((r["test_scores"] for r in records if r["fit_error"] is None), None)
    if not isinstance(ok, dict):
        return
    for record in records:
        if record["fit_error"] is not None:
            record["test_scores"] = dict.fromkeys(ok, error_score)
            if "train_scores" in record:
                record["train_scores"] = dict.fromkeys(ok, error_score)


def build_cv_results(
    candidates: list[dict[str, Any]],
    n_splits: int,
    records: list[dict[str, Any]],
    return_train_score: bool,
) -> dict[str, Any]:
    """Build ``cv_results_`` from records sorted candidate-major.

    Parameters
    ----------
    candidates : list of dict
        The candidates' parameters, in grid order.
    n_splits : int
        Number of CV splits.
    records : list of dict
        One record per (candidate, split), candidate-major, each with ``fit_time``,
        ``score_time``, ``test_scores`` and, when asked, ``train_scores``.
    return_train_score : bool
        Whether to include the train scores.

    Returns
    -------
    dict
        ``cv_results_`` in scikit-learn's layout.
    """
    results: dict[str, Any] = {}
    shape = (len(candidates), n_splits)

    def store(name: str, values, splits: bool = False, rank: bool = False) -> None:
        array = np.array(values, dtype=np.float64).reshape(shape)
        if splits:
            for k in range(n_splits):
                results[f"split{k}_{name}"] = array[:, k]
        means = array.mean(axis=1)
        results[f"mean_{name}"] = means
        if name.startswith(("train_", "test_")) and not np.isfinite(means).all():
            warnings.warn(
                f"One or more of the {name.split('_')[0]} scores are non-finite: {means}",
                category=UserWarning,
                stacklevel=4,
            )
        results[f"std_{name}"] = np.sqrt(((array - means[:, None]) ** 2).mean(axis=1))
        if rank:
            results[f"rank_{name}"] = rank_scores(means)

    store("fit_time", [r["fit_time"] for r in records])
    store("score_time", [r["score_time"] for r in records])
    results.update(param_columns(candidates))
    results["params"] = candidates

    test = _per_metric([r["test_scores"] for r in records])
    train = _per_metric([r["train_scores"] for r in records]) if return_train_score else {}
    for metric, values in test.items():
        store(f"test_{metric}", values, splits=True, rank=True)
        if return_train_score:
            store(f"train_{metric}", train[metric], splits=True)
    return results


def rank_scores(means: np.ndarray) -> np.ndarray:
    """Rank mean scores, best first; ties share the lowest rank; NaN ranks last."""
    if np.isnan(means).all():
        return np.ones_like(means, dtype=np.int32)
    filled = np.where(np.isnan(means), np.nanmin(means) - 1, means)
    return rankdata(-filled, method="min").astype(np.int32, copy=False)


def param_columns(candidates: list[dict[str, Any]]) -> dict[str, MaskedArray]:
    """One masked array per parameter name, masked where a candidate lacks it.

    The dtype is the one NumPy infers from the values, except that strings and values
    that would make a multi-dimensional array are kept as ``object``.
    """
    values: dict[str, dict[int, Any]] = {}
    for index, params in enumerate(candidates):
        for name, value in params.items():
            values.setdefault(f"param_{name}", {})[index] = value

    columns = {}
    for key, by_index in values.items():
        try:
            inferred = np.array(list(by_index.values()))
        except ValueError:
            dtype = np.dtype(object)
        else:
            keep = inferred.dtype.kind != "U" and inferred.ndim == 1
            dtype = inferred.dtype if keep else np.dtype(object)
        column = MaskedArray(np.empty(len(candidates), dtype=dtype), mask=True)
        for index, value in by_index.items():
            column[index] = value
        columns[key] = column
    return columns


def select_best_index(refit: Any, refit_metric: str, results: dict[str, Any]) -> int:
    """The best candidate: ``refit(results)`` if callable, else the first of rank 1."""
    if callable(refit):
        best = refit(results)
        if not isinstance(best, numbers.Integral):
            raise TypeError("best_index_ returned is not an integer")
        if best < 0 or best >= len(results["params"]):
            raise IndexError("best_index_ index out of range")
        return best
    return results[f"rank_test_{refit_metric}"].argmin()


def _per_metric(scores: list[Any]) -> dict[str, list[float]]:
    if scores and isinstance(scores[0], dict):
        return {name: [s[name] for s in scores] for name in scores[0]}
    return {"score": scores}
