"""Log a search to MLflow: one parent run per search, one child run per candidate.

Needs ``pip install "raygrid[mlflow]"``. Everything is logged from the driver, in the
tracking thread (see :mod:`raygrid.tracking.session`): workers never talk to the tracking
server. Each finished candidate costs three requests (create its run, one batch of
params and metrics, close it) and one more at the end (its ranks), whatever the number
of metrics or epochs.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from raygrid.tracking.base import (
    CandidateResult,
    SearchStart,
    Tracker,
    TrackerRun,
    absolute_dir,
    plain_value,
)

_MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value
_CANDIDATE_TAG = "raygrid.candidate"
#: The child run tag holding what the candidate's fits ran on (``CandidateResult.devices``).
DEVICE_TAG = "raygrid.device"
_KEY_TAG = "raygrid.search_key"
_DIR_TAG = "raygrid.results_dir"


@dataclass
class MLflowTracker(Tracker):
    """Log every search and candidate to an MLflow tracking server.

    Pass it as a search's ``tracking`` option. A search becomes one parent run (its
    settings, data shape and fingerprint, best parameters and score, ``cv_results_`` and
    ``tasks_`` as Parquet, the report figures, and the refitted best estimator as an
    MLflow model); each candidate a child run (its parameters, per-split, mean and std
    test and train scores, fit and score times, ranks, and per-epoch curves such as
    ``loss_curve`` as step metrics). A search with a ``results_dir`` that is fitted again
    continues its earlier parent run.

    Parameters
    ----------
    uri : str, default=None
        The tracking URI (``http://host:5000``, ``sqlite:///mlflow.db``, a directory);
        None uses MLflow's default (``MLFLOW_TRACKING_URI``, else ``./mlruns``).
    experiment : str, default="raygrid"
        The experiment's name; created if missing.
    run_name : str, default=None
        The parent run's name; None lets MLflow pick one.
    tags : dict of str to str, default=None
        Extra tags of the parent run.
    log_model : bool, default=True
        Log ``best_estimator_`` under the artifact path ``model``; it loads back with
        ``mlflow.sklearn.load_model("runs:/<run_id>/model")``. The format is
        cloudpickle (skops cannot hold Keras networks), so load only models you trust:
        unpickling can run code.
    log_figures : bool, default=True
        Log the figures of ``raygrid report`` (needs matplotlib).
    max_retries : int, default=2
        Retries of each HTTP request before the tracker gives up, unless
        ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` is set (MLflow's own default retries for
        minutes).
    timeout : int, default=30
        Seconds per HTTP request, unless ``MLFLOW_HTTP_REQUEST_TIMEOUT`` is set.

    Examples
    --------
    >>> from raygrid.tracking import MLflowTracker
    >>> tracker = MLflowTracker("http://127.0.0.1:5000", experiment="seed")
    """

    uri: str | None = None
    experiment: str = "raygrid"
    run_name: str | None = None
    tags: dict[str, str] | None = field(default=None)
    log_model: bool = True
    log_figures: bool = True
    max_retries: int = 2
    timeout: int = 30

    name = "mlflow"

    def open(self, start: SearchStart) -> MLflowRun:
        """Create (or, for a resumed search, find) the parent run.

        Parameters
        ----------
        start : SearchStart
            As for :meth:`Tracker.open`.

        Returns
        -------
        MLflowRun
            The run that logs the search's candidates as child runs.
        """
        return MLflowRun(self, start)


@contextlib.contextmanager
def _http_env(config: MLflowTracker):
    """The tracker's retry and timeout settings for MLflow's HTTP requests.

    MLflow reads them from the environment at each request; a user's own settings win.
    Also keeps MLflow from printing two "View run" lines per closed child run.
    """
    settings = {
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(config.max_retries),
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(config.timeout),
    }
    added = [k for k in settings if k not in os.environ]
    os.environ.update({k: settings[k] for k in added})
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def _http_settings(method):
    """Run a :class:`MLflowRun` method under :func:`_http_env`."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with _http_env(self.config):
            return method(self, *args, **kwargs)

    return wrapper


class MLflowRun(TrackerRun):
    """One search logged to MLflow (see :class:`MLflowTracker`)."""

    def __init__(self, config: MLflowTracker, start: SearchStart) -> None:
        self.config = config
        self.children: dict[int, str] = {}
        with _http_env(config):
            self._open(start)

    def _open(self, start: SearchStart) -> None:
        from mlflow import MlflowClient

        config = self.config
        self.client = MlflowClient(tracking_uri=config.uri)
        self.experiment_id = self._experiment_id()
        self.run_id = self._resumed_run(start)
        params = _search_params(start)
        if self.run_id is None:
            tags = {**_search_tags(start), **(config.tags or {})}
            run = self.client.create_run(self.experiment_id, run_name=config.run_name, tags=tags)
            self.run_id = run.info.run_id
        else:
            self.client.update_run(self.run_id, status="RUNNING")
            logged = self.client.get_run(self.run_id).data.params
            params = {k: v for k, v in params.items() if k not in logged}
        self._log(self.run_id, params=params)

    def _experiment_id(self) -> str:
        experiment = self.client.get_experiment_by_name(self.config.experiment)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return self.client.create_experiment(self.config.experiment)
        except Exception:  # created meanwhile by another search
            experiment = self.client.get_experiment_by_name(self.config.experiment)
            if experiment is None:
                raise
            return experiment.experiment_id

    def _resumed_run(self, start: SearchStart) -> str | None:
        """The parent run of an earlier fit of this search with this ``results_dir``."""
        if start.search_key is None or start.results_dir is None:
            return None
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=(
                f"tags.`{_KEY_TAG}` = '{start.search_key}' "
                f"and tags.`{_DIR_TAG}` = '{_quoted(start.results_dir)}'"
            ),
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if not found:
            return None
        run_id = found[0].info.run_id
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'",
                max_results=1000,
                page_token=token,
            )
            for child in page:
                index = child.data.tags.get(_CANDIDATE_TAG)
                if index is not None:
                    self.children[int(index)] = child.info.run_id
            token = page.token
            if not token:
                return run_id

    @_http_settings
    def log_candidates(self, candidates: list[CandidateResult]) -> None:
        """One child run per candidate not logged yet (a resumed search's are)."""
        for candidate in candidates:
            if candidate.index in self.children:
                continue
            records = candidate.records
            run = self.client.create_run(
                self.experiment_id,
                start_time=_millis(min(r.start_time for r in records)),
                run_name=f"candidate-{candidate.index}",
                tags={
                    "mlflow.parentRunId": self.run_id,
                    _CANDIDATE_TAG: str(candidate.index),
                    DEVICE_TAG: candidate.devices(),
                },
            )
            child = run.info.run_id
            params = {k: plain_value(v) for k, v in candidate.params.items()}
            self._log(child, params, candidate.metrics(), candidate.curves())
            status = "FAILED" if candidate.failed else "FINISHED"
            end = max(r.end_time for r in records)
            self.client.set_terminated(child, status, end_time=_millis(end))
            self.children[candidate.index] = child

    @_http_settings
    def end(self, search: Any) -> dict[str, Any]:
        """Ranks of every child; best, tables, figures and model on the parent."""
        results = search.cv_results_
        ranks = [k for k in results if k.startswith("rank_test_")]
        for index, child in sorted(self.children.items()):
            self._log(child, metrics={k: float(results[k][index]) for k in ranks})
        metrics = {"n_candidates": len(results["params"]), "n_fits": len(search.tasks_)}
        metrics["n_failed_fits"] = int(search.tasks_["error"].notna().sum())
        params = {}
        if hasattr(search, "best_index_"):
            metrics["best_index"] = int(search.best_index_)
            params = {f"best.{k}": plain_value(v) for k, v in search.best_params_.items()}
        if hasattr(search, "best_score_"):
            metrics["best_score"] = float(search.best_score_)
        if hasattr(search, "refit_time_"):
            metrics["refit_time"] = float(search.refit_time_)
        logged = self.client.get_run(self.run_id).data.params
        self._log(self.run_id, {k: v for k, v in params.items() if k not in logged}, metrics)
        with tempfile.TemporaryDirectory(prefix="raygrid-mlflow-") as tmp:
            self._log_artifacts(search, tmp)
        self.client.set_terminated(self.run_id, "FINISHED")
        return {
            "run_id": self.run_id,
            "experiment_id": self.experiment_id,
            "tracking_uri": self.client.tracking_uri,
            "child_run_ids": [self.children[i] for i in sorted(self.children)],
        }

    def _log_artifacts(self, search: Any, tmp: str) -> None:
        results_dir = os.path.join(tmp, "results")
        search.save_results(results_dir)
        self.client.log_artifacts(self.run_id, results_dir, "results")
        if self.config.log_figures:
            figures_dir = os.path.join(tmp, "figures")
            _write_figures(results_dir, figures_dir)
            self.client.log_artifacts(self.run_id, figures_dir, "figures")
        if self.config.log_model and hasattr(search, "best_estimator_"):
            model_dir = os.path.join(tmp, "model")
            _save_model(search.best_estimator_, model_dir)
            self.client.log_artifacts(self.run_id, model_dir, "model")

    @_http_settings
    def abort(self, reason: str) -> None:
        """Mark the parent run failed (killed on Ctrl-C)."""
        status = "KILLED" if reason.startswith("KeyboardInterrupt") else "FAILED"
        self.client.set_tag(self.run_id, "raygrid.error", reason[:_MAX_PARAM_LENGTH])
        self.client.set_terminated(self.run_id, status)

    def _log(
        self,
        run_id: str,
        params: dict[str, Any] | None = None,
        metrics: dict[str, float] | None = None,
        curves: dict[str, list[float]] | None = None,
    ) -> None:
        """One ``log_batch`` (MLflow's client splits it when over the batch limits)."""
        from mlflow.entities import Metric, Param

        now = _millis(time.time())
        entities = [Metric(k, v, now, 0) for k, v in (metrics or {}).items()]
        for key, values in (curves or {}).items():
            entities.extend(Metric(key, v, now, step) for step, v in enumerate(values, 1))
        batch_params = [Param(k, _text(v)) for k, v in (params or {}).items()]
        if entities or batch_params:
            self.client.log_batch(run_id, metrics=entities, params=batch_params)


def _search_params(start: SearchStart) -> dict[str, Any]:
    search = start.search
    space = next(
        (getattr(search, n) for n in ("param_grid", "param_distributions") if hasattr(search, n)),
        None,
    )
    X = start.X
    shape = getattr(X, "shape", None) or (len(X),)
    return {
        "search": type(search).__name__,
        "estimator_class": f"{type(search.estimator).__module__}.{type(search.estimator).__name__}",
        "estimator": repr(search.estimator),
        "param_grid": _json_or_repr(space),
        "cv": repr(search.cv),
        "n_splits": start.n_splits,
        "scoring": _json_or_repr(search.scoring),
        "refit": _json_or_repr(search.refit),
        "error_score": repr(search.error_score),
        "return_train_score": search.return_train_score,
        "n_jobs": search.n_jobs,
        "n_slots": start.n_slots,
        "num_cpus_per_task": getattr(search, "num_cpus_per_task", 1),
        "num_gpus_per_task": getattr(search, "num_gpus_per_task", 0),
        "n_samples": int(shape[0]),
        "data_shape": "x".join(str(int(n)) for n in shape),
    }


def _search_tags(start: SearchStart) -> dict[str, str]:
    from raygrid.store.journal import fingerprint
    from raygrid.version import __version__

    tags = {
        "raygrid.version": __version__,
        "raygrid.data_fingerprint": fingerprint(start.X, start.y),
    }
    if start.search_key is not None and start.results_dir is not None:
        tags[_KEY_TAG] = start.search_key
        tags[_DIR_TAG] = absolute_dir(start.results_dir)
    return tags


def _write_figures(results_dir: str, figures_dir: str) -> None:
    from raygrid.report import build as report

    saved = report.read_search(results_dir)
    metric = saved.default_metric()
    pair = report.heatmap_params(saved, metric, None)
    figures, _ = report.render_figures(saved, metric, pair)
    os.makedirs(figures_dir, exist_ok=True)
    for name, png in figures.items():
        with open(os.path.join(figures_dir, report.FIGURE_FILES[name]), "wb") as f:
            f.write(png)


def _save_model(estimator: Any, path: str) -> None:
    """``estimator`` as an MLflow sklearn model (requirements pinned, not inferred)."""
    import logging
    from importlib.metadata import PackageNotFoundError, version

    import mlflow.sklearn

    requirements = []
    for package in ("raygrid", "scikit-learn", "cloudpickle", "tensorflow"):
        with contextlib.suppress(PackageNotFoundError):
            requirements.append(f"{package}=={version(package)}")
    # MLflow logs a caution about pickle formats on every save; the docstring says it.
    logger = logging.getLogger("mlflow.sklearn")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        mlflow.sklearn.save_model(
            estimator, path, serialization_format="cloudpickle", pip_requirements=requirements
        )
    finally:
        logger.setLevel(level)


def _json_or_repr(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


def _text(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _MAX_PARAM_LENGTH else text[: _MAX_PARAM_LENGTH - 3] + "..."


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _millis(seconds: float) -> int:
    return int(seconds * 1000) if seconds == seconds else int(time.time() * 1000)
