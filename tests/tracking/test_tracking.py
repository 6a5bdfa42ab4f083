"""Experiment tracking: searches logged to a real MLflow server and to TensorBoard files."""

import os
import re
import threading
import time
import warnings

import numpy as np
import pandas as pd
import pytest
from compare import assert_cv_results_equal
from estimators import RaiseOnceRidge, SlowRidge
from mlflow_server import MLflowServer
from sklearn.base import clone
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.utils._param_validation import InvalidParameterError

from raygrid import RayGridSearchCV
from raygrid.tracking import MLflowTracker, TensorBoardTracker, TrackingWarning

mlflow = pytest.importorskip("mlflow")

MLP_GRID = {"alpha": [1e-4, 1e-2], "learning_rate_init": [0.01, 0.05]}
# cv_results_ columns every child run carries as a metric of the same name.
CHILD_METRIC = re.compile(r"^(split\d+|mean|std|rank)_(test|train)_score$|^(mean|std)_\w+_time$")


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Two MLflow servers (the second is stopped by a test), started side by side."""
    root = tmp_path_factory.mktemp("mlflow")
    started = [MLflowServer(root / "main"), MLflowServer(root / "down")]
    try:
        for server in started:
            server.wait_ready()
        yield started
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="module")
def mlp_data():
    return make_classification(n_samples=150, n_features=6, n_informative=4, random_state=0)


def mlp_search(**options):
    estimator = MLPClassifier(hidden_layer_sizes=(8,), max_iter=15, random_state=0)
    return RayGridSearchCV(estimator, MLP_GRID, cv=3, return_train_score=True, **options)


def child_runs(client, experiment_id, parent_id):
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'"
    )
    return {int(r.data.tags["raygrid.candidate"]): r for r in runs}


@pytest.mark.slow
def test_mlflow_parent_children_artifacts_and_model(servers, mlp_data, tmp_path):
    from mlflow import MlflowClient

    server = servers[0]
    X, y = mlp_data
    tracker = MLflowTracker(server.uri, experiment="mlp", run_name="grid", tags={"team": "t"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search = mlp_search(tracking=tracker).fit(X, y)
    info = search.tracking_["mlflow"]
    client = MlflowClient(server.uri)
    parent = client.get_run(info["run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.info.run_name == "grid" and parent.data.tags["team"] == "t"
    params = parent.data.params
    assert params["search"] == "RayGridSearchCV" and params["n_splits"] == "3"
    assert params["data_shape"] == "150x6" and "MLPClassifier" in params["estimator"]
    assert params["best.alpha"] == str(search.best_params_["alpha"])
    assert parent.data.metrics["best_score"] == search.best_score_
    assert parent.data.metrics["n_fits"] == 12

    children = child_runs(client, info["experiment_id"], info["run_id"])
    results = search.cv_results_
    assert sorted(children) == list(range(len(results["params"])))
    for index, child in children.items():
        assert child.data.params == {k: str(v) for k, v in results["params"][index].items()}
        assert child.data.tags["raygrid.device"] == "CPU"  # what its fits ran on
        expected = {k: float(v[index]) for k, v in results.items() if CHILD_METRIC.match(k)}
        assert len(expected) == (3 + 3) + (3 + 2) + 4  # test, train (no rank), times
        got = {k: child.data.metrics[k] for k in expected}
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)

    # Learning curves: one step per epoch, the fold's own loss_curve_.
    tasks = search.tasks_
    for index, child in children.items():
        for split in range(3):
            row = tasks[(tasks.candidate == index) & (tasks.split == split)].iloc[0]
            history = client.get_metric_history(child.info.run_id, f"split{split}_loss_curve")
            assert [m.step for m in history] == list(range(1, row["n_iter"] + 1))
            assert [m.value for m in history] == pytest.approx(row["loss_curve"])

    # Artifacts: the results tables, the report figures and the model, readable.
    local = mlflow.artifacts.download_artifacts(
        run_id=info["run_id"], artifact_path="", dst_path=str(tmp_path), tracking_uri=server.uri
    )
    saved = pd.read_parquet(os.path.join(local, "results", "cv_results.parquet"))
    # Saved in scikit-learn's layout: row i is candidate i.
    np.testing.assert_array_equal(saved["mean_test_score"], search.cv_results_["mean_test_score"])
    assert len(pd.read_parquet(os.path.join(local, "results", "tasks.parquet"))) == 12
    with open(os.path.join(local, "figures", "params.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    model = mlflow.sklearn.load_model(os.path.join(local, "model"))
    np.testing.assert_array_equal(model.predict(X), search.best_estimator_.predict(X))
    np.testing.assert_array_equal(model.predict_proba(X), search.best_estimator_.predict_proba(X))


@pytest.mark.slow
def test_mlflow_resumed_search_continues_its_parent_run(servers, tmp_path):
    from mlflow import MlflowClient

    server = servers[0]
    X, y = make_regression(n_samples=60, n_features=4, random_state=0)
    estimator = RaiseOnceRidge(raise_alpha=1.0, marker=str(tmp_path / "raised"))
    search = RayGridSearchCV(
        estimator,
        {"alpha": [0.01, 0.1, 1.0, 10.0]},
        cv=3,
        error_score="raise",
        n_jobs=1,
        results_dir=str(tmp_path / "journal"),
        tracking=MLflowTracker(server.uri, experiment="resume"),
    )
    with pytest.raises(ValueError, match="planned failure"):
        clone(search).fit(X, y)
    client = MlflowClient(server.uri)
    experiment = client.get_experiment_by_name("resume")
    runs = client.search_runs([experiment.experiment_id])
    (first,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert first.info.status == "FAILED"
    logged_before = child_runs(client, experiment.experiment_id, first.info.run_id)
    assert 0 < len(logged_before) < 4

    search.fit(X, y)
    assert search.tasks_["resumed"].any()
    assert search.tracking_["mlflow"]["run_id"] == first.info.run_id
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert [p.info.run_id for p in parents] == [first.info.run_id]
    assert client.get_run(first.info.run_id).info.status == "FINISHED"
    children = child_runs(client, experiment.experiment_id, first.info.run_id)
    assert sorted(children) == [0, 1, 2, 3] and len(runs) == 1 + 4
    for index, run_id in ((i, r.info.run_id) for i, r in logged_before.items()):
        assert children[index].info.run_id == run_id
    for index, child in children.items():
        assert child.data.metrics["mean_test_score"] == pytest.approx(
            search.cv_results_["mean_test_score"][index], rel=1e-12
        )
        assert (
            child.data.metrics["rank_test_score"] == search.cv_results_["rank_test_score"][index]
        )


@pytest.mark.slow
def test_mlflow_server_stopped_mid_search(servers):
    from mlflow import MlflowClient

    server = servers[1]
    X, y = make_regression(n_samples=60, n_features=4, random_state=0)
    grid = {"alpha": [0.01 * 2**i for i in range(12)]}
    reference = RayGridSearchCV(SlowRidge(delay=0.25), grid, cv=3).fit(X, y)

    client = MlflowClient(server.uri)
    seen: list[int] = []

    def stop_after_two_candidates():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            experiment = client.get_experiment_by_name("down")
            if experiment is not None:
                runs = client.search_runs([experiment.experiment_id])
                children = [r for r in runs if "raygrid.candidate" in r.data.tags]
                if len(children) >= 2:
                    seen.append(len(children))
                    server.stop()
                    return
            time.sleep(0.1)

    stopper = threading.Thread(target=stop_after_two_candidates)
    stopper.start()
    search = RayGridSearchCV(
        SlowRidge(delay=0.25), grid, cv=3, tracking=MLflowTracker(server.uri, experiment="down")
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        search.fit(X, y)
    stopper.join()
    assert seen and seen[0] < 12, "the server was not stopped mid-search"
    assert_cv_results_equal(search.cv_results_, reference.cv_results_)
    tracking_warnings = [w for w in caught if issubclass(w.category, TrackingWarning)]
    assert len(tracking_warnings) == 1
    assert "MLflowTracker" in str(tracking_warnings[0].message)
    assert "results are not affected" in str(tracking_warnings[0].message)
    assert "mlflow" not in search.tracking_


@pytest.mark.slow
def test_tensorboard_hparams_parse_back(mlp_data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata
    from tensorboard.util import tensor_util

    X, y = mlp_data
    logdir = tmp_path / "tb"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search = mlp_search(tracking=TensorBoardTracker(logdir)).fit(X, y)
    assert search.tracking_ == {"tensorboard": {"logdir": str(logdir)}}
    results = search.cv_results_

    def load(path):
        accumulator = EventAccumulator(str(path), size_guidance={"tensors": 0})
        accumulator.Reload()
        return accumulator

    experiment = load(logdir).PluginTagToContent(metadata.PLUGIN_NAME)
    config = metadata.parse_experiment_plugin_data(experiment[metadata.EXPERIMENT_TAG])
    assert sorted(h.name for h in config.hparam_infos) == sorted(MLP_GRID)
    metric_tags = {m.name.tag for m in config.metric_infos}
    assert {"mean_test_score", "split2_test_score", "mean_fit_time"} <= metric_tags

    sessions = sorted(p for p in os.listdir(logdir) if p.startswith("candidate-"))
    assert len(sessions) == len(results["params"])
    for index, name in enumerate(sessions):
        session = load(logdir / name)
        content = session.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_START_INFO_TAG]
        start = metadata.parse_session_start_info_plugin_data(content)
        hparams = {k: v.number_value for k, v in start.hparams.items()}
        assert hparams == results["params"][index]

        def scalar(tag, event_index=0, session=session):
            event = session.Tensors(tag)[event_index]
            return event.step, float(tensor_util.make_ndarray(event.tensor_proto))

        for key in ("mean_test_score", "std_test_score", "split1_test_score", "mean_train_score"):
            assert scalar(key) == (0, pytest.approx(results[key][index], rel=1e-6))
        row = search.tasks_[(search.tasks_.candidate == index) & (search.tasks_.split == 0)]
        curve = session.Tensors("split0_loss_curve")
        assert [e.step for e in curve] == list(range(1, row["n_iter"].iloc[0] + 1))


def test_tracking_option_is_validated():
    X, y = make_regression(n_samples=30, n_features=3, random_state=0)
    with pytest.raises(InvalidParameterError, match="tracking"):
        RayGridSearchCV(SlowRidge(), {"alpha": [1.0]}, tracking="mlflow").fit(X, y)
    with pytest.raises(TypeError, match="tracking must be"):
        RayGridSearchCV(SlowRidge(), {"alpha": [1.0]}, tracking=["mlflow"]).fit(X, y)


def test_spec_tracking_table_builds_the_trackers(tmp_path, monkeypatch):
    from raygrid.spec.search_spec import SpecError, parse_spec

    monkeypatch.chdir(tmp_path)
    doc = {
        "estimator": {"class": "sklearn.linear_model.Ridge"},
        "search": {"param_grid": {"alpha": [0.1, 1.0]}, "cv": 3},
        "data": {"generator": "make_regression", "args": {"n_samples": 30}},
        "tracking": {
            "uri": "http://127.0.0.1:5000",
            "experiment": "seed",
            "run_name": "nightly",
            "tags": {"team": "vision"},
            "tensorboard_dir": "runs",
        },
    }
    search = parse_spec(doc).build_search()
    assert search.tracking == [
        MLflowTracker("http://127.0.0.1:5000", "seed", "nightly", {"team": "vision"}),
        TensorBoardTracker(str(tmp_path / "runs")),
    ]
    doc["tracking"] = {"uri": 5, "tags": {"team": 1}, "exp": "x"}
    with pytest.raises(SpecError) as info:
        parse_spec(doc)
    text = str(info.value)
    assert (
        "[tracking].uri" in text
        and "[tracking].tags" in text
        and "[tracking].exp: unknown key" in text
    )
