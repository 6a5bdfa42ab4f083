"""One ground truth: every surface of a search agrees with its ``cv_results_`` and ``tasks_``.

A handful of small searches (grid with several metrics, randomized, halving, failing fits
under ``error_score``, prefix sharing, fused Keras stacks, resumed from a journal) are fitted
once each, logged to a real MLflow server and to TensorBoard, saved, and reported. Then, for
each: ``results_frame()`` and the saved Parquet, ``raygrid report``'s table, the data each
figure draws (read from its matplotlib artists), the HTML page, the MLflow runs and the
TensorBoard HParams sessions are checked against ``cv_results_`` and ``tasks_``.
"""

import html
import json
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from estimators import FailingRidge
from mlflow_server import MLflowServer
from scipy.stats import loguniform
from sklearn.base import clone
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import Ridge
from sklearn.tree import DecisionTreeClassifier

from raygrid import (
    RayGridSearchCV,
    RayHalvingGridSearchCV,
    RayRandomizedSearchCV,
)
from raygrid.cli import main as cli
from raygrid.report import analysis, figures
from raygrid.report.ranking import score_text, value_label
from raygrid.store.results import RESULTS_FILE
from raygrid.text import shorten
from raygrid.tracking import MLflowTracker, TensorBoardTracker

mlflow = pytest.importorskip("mlflow")

Xc, yc = make_classification(
    n_samples=90, n_features=6, n_informative=4, n_classes=3, random_state=0
)
Xc = Xc.astype(np.float32)
Xr, yr = make_regression(n_samples=60, n_features=4, noise=1.0, random_state=0)
TREE_GRID = {"max_depth": [1, 3, None], "criterion": ["gini", "entropy"]}


def keras(**params):
    from raygrid.keras import KerasClassifier

    return KerasClassifier(random_state=0, **params)


def fit_grid_multimetric(**kw):
    scoring = ["accuracy", "f1_macro"]
    search = RayGridSearchCV(
        DecisionTreeClassifier(random_state=0), TREE_GRID, cv=3, scoring=scoring, **kw
    )
    return search.set_params(refit="accuracy", return_train_score=True).fit(Xc, yc)


def fit_randomized(**kw):
    space = {"alpha": loguniform(1e-3, 1e2)}
    return RayRandomizedSearchCV(Ridge(), space, n_iter=4, cv=3, random_state=0, **kw).fit(Xr, yr)


def fit_halving(**kw):
    grid = {"max_depth": [1, 2, 3, None], "min_samples_leaf": [1, 5]}
    estimator = DecisionTreeClassifier(random_state=0)
    return RayHalvingGridSearchCV(estimator, grid, cv=3, factor=2, random_state=0, **kw).fit(
        Xc, yc
    )


def fit_failing(**kw):
    grid = {"alpha": [0.1, 1.0, 10.0, 100.0]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return RayGridSearchCV(FailingRidge(), grid, cv=3, error_score=np.nan, **kw).fit(Xr, yr)


def fit_prefix(**kw):
    grid = {"units": [4, 8], "epochs": [2, 4]}
    return RayGridSearchCV(keras(), grid, cv=2, **kw).fit(Xc, yc)


def fit_fused(**kw):
    grid = {"units": [4, 8], "learning_rate": [0.01, 0.05]}
    return RayGridSearchCV(keras(epochs=3), grid, cv=2, fuse=True, **kw).fit(Xc, yc)


def fit_resumed(tmp, **kw):
    search = RayGridSearchCV(
        Ridge(), {"alpha": [0.1, 1.0, 10.0]}, cv=3, results_dir=str(tmp / "journal"), **kw
    )
    clone(search).set_params(tracking=None).fit(Xr, yr)  # the first run: journaled
    return search.fit(Xr, yr)  # every fit read back from the journal


SEARCHES = {
    "grid_multimetric": fit_grid_multimetric,
    "randomized": fit_randomized,
    "halving": fit_halving,
    "failing": fit_failing,
    "prefix": fit_prefix,
    "fused": fit_fused,
    "resumed": fit_resumed,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    started = MLflowServer(tmp_path_factory.mktemp("mlflow"))
    try:
        started.wait_ready()
        yield started
    finally:
        started.stop()


class Fitted:
    """A fitted search and where its surfaces are: saved results, report, page, logs."""

    def __init__(self, name, search, path, out, page, logdir):
        self.name, self.search, self.path = name, search, path
        self.out, self.page, self.logdir = out, page, logdir
        self.cv = search.cv_results_
        self.tasks = search.tasks_
        self.metric = search.refit if isinstance(search.refit, str) else "score"


@pytest.fixture(scope="module", params=list(SEARCHES))
def fitted(request, server, tmp_path_factory):
    name = request.param
    tmp = tmp_path_factory.mktemp(name)
    trackers = [MLflowTracker(server.uri, experiment=name), TensorBoardTracker(tmp / "tb")]
    options = {"tracking": trackers, "progress": False}
    make = SEARCHES[name]
    search = make(tmp, **options) if name == "resumed" else make(**options)
    search.save_results(tmp / "saved")
    page = tmp / "page.html"
    out = _report(tmp / "saved", page)
    return Fitted(name, search, tmp / "saved", out, page, tmp / "tb")


def _report(path, page):
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = cli.main(["report", str(path), "--html", str(page), "--top", "50"])
    assert code == 0, buffer.getvalue()
    return buffer.getvalue()


# -- what cv_results_ says -----------------------------------------------------------------


def param_names(cv):
    return [k.removeprefix("param_") for k in cv if k.startswith("param_")]


def param_value(cv, name, candidate):
    column = cv[f"param_{name}"]
    return None if np.ma.getmaskarray(column)[candidate] else column[candidate]


def ranked(cv, metric):
    """Candidate ids, best first (ties: the lower id first, as best_index_)."""
    return list(np.argsort(cv[f"rank_test_{metric}"], kind="stable"))


def expected_rows(cv, metric):
    rows = []
    for c in ranked(cv, metric):
        cells = [str(cv[f"rank_test_{metric}"][c])]
        cells.append(score_text(cv[f"mean_test_{metric}"][c], cv[f"std_test_{metric}"][c]))
        cells += [shorten(value_label(param_value(cv, p, c)), 30) for p in param_names(cv)]
        rows.append(cells)
    return rows


# -- the surfaces --------------------------------------------------------------------------


def test_results_frame_and_saved_parquet(fitted):
    cv = fitted.cv
    frame = fitted.search.results_frame()
    assert sorted(frame.index) == list(range(len(cv["params"])))
    for c, row in frame.iterrows():  # the frame's index is the candidate id
        assert row["params"] == cv["params"][c]
        for name in param_names(cv):
            value = param_value(cv, name, c)
            assert value_label(row[name]) == value_label(value)
        for key in cv:
            if re.match(r"^(mean|std|rank|split\d+)_", key):
                np.testing.assert_equal(row[key], cv[key][c])
    saved = pd.read_parquet(fitted.path / RESULTS_FILE)
    assert list(saved.columns) == list(pd.DataFrame(cv).columns)
    assert [json.loads(p) for p in saved["params"]] == json.loads(
        json.dumps(cv["params"], default=repr)
    )
    for key in cv:
        if re.match(r"^(mean|std|rank|split\d+)_", key):
            np.testing.assert_array_equal(saved[key], cv[key])


def test_report_table_and_html_page(fitted):
    lines = fitted.out.splitlines()
    rule = next(i for i, line in enumerate(lines) if re.fullmatch(r"[- ]+", line))
    printed = []
    for line in lines[rule + 1 :]:
        if not line.strip():
            break
        printed.append(re.split(r"\s{2,}", line.strip()))
    expected = expected_rows(fitted.cv, fitted.metric)
    assert printed == expected
    page = fitted.page.read_text()
    cells = [
        [html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", row)]
        for row in re.findall(r"<tr><td>.*?</tr>", page)
    ]
    assert cells == expected


def best_by_label(cv, metric, names):
    """The best mean test score per combination of parameter labels (NaN if all failed)."""
    best = {}
    for c in range(len(cv["params"])):
        key = tuple(value_label(param_value(cv, n, c)) for n in names)
        score = cv[f"mean_test_{metric}"][c]
        best[key] = np.nanmax([best.get(key, np.nan), score])
    return best


def test_figures_draw_the_results(fitted):
    cv, metric = fitted.cv, fitted.metric
    saved = analysis.read_search(fitted.path)
    assert saved.notes == []
    panels = figures.parameters_figure(saved, metric).axes
    for name in param_names(cv):
        (ax,) = [a for a in panels if a.get_visible() and a.get_xlabel() == name]
        order = analysis.parameter_axis(saved, name).order
        drawn = np.asarray(ax.containers[0].lines[0].get_ydata(), dtype=float)  # best per value
        best = best_by_label(cv, metric, [name])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            np.testing.assert_allclose(drawn, [best[(label,)] for label in order])
    pair = analysis.heatmap_params(saved, metric)
    if pair is not None:
        image = figures.heatmap_figure(saved, metric, pair).axes[0].images[0].get_array()
        x_order, y_order = (analysis.parameter_axis(saved, p).order for p in pair)
        best = best_by_label(cv, metric, list(pair))
        for (row, col), value in np.ndenumerate(image.filled(np.nan)):
            want = best.get((x_order[col], y_order[row]), np.nan)
            np.testing.assert_allclose(value, want)
    _check_timeline(fitted, saved)
    if "loss_curve" in fitted.tasks:
        _check_curves(fitted, saved)


def _check_timeline(fitted, saved):
    shown = fitted.tasks
    if "resumed" in shown:
        shown = shown[~shown["resumed"].astype(bool)]
    if not len(shown):
        assert "timeline left out: no tasks with start and end times" in fitted.out
        return
    tasks = analysis.timeline_tasks(saved.tasks)
    ax = figures.timeline_figure(tasks, len(saved.results)).axes[0]
    assert len(ax.patches) == len(shown)  # one bar per task run
    share = int(re.search(r"busy (\d+)%", ax.get_title()).group(1))
    assert 0 < share <= 100
    for label in ax.get_yticklabels():
        assert int(label.get_text().rsplit("(", 1)[1].rstrip("%)")) <= 100
    if ax.get_xlabel().startswith("seconds"):
        t0 = shown["start_time"].min()
        bars = sorted((round(p.get_x(), 6), p.get_y()) for p in ax.patches)
        starts = sorted(round((t - t0).total_seconds(), 6) for t in shown["start_time"])
        assert [x for x, _ in bars] == starts


def _check_curves(fitted, saved):
    cv, metric = fitted.cv, fitted.metric
    ax = figures.curves_figure(saved, metric, top=5).axes[0]
    palette = figures.load_matplotlib().colormaps["tab10"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    for k, c in enumerate(ranked(cv, metric)[:5]):
        params = ", ".join(f"{p}={value_label(param_value(cv, p, c))}" for p in param_names(cv))
        assert legend[k] == f"#{cv[f'rank_test_{metric}'][c]}: " + shorten(params, 60)
        drawn = [
            line.get_ydata()
            for line in ax.lines
            if line.get_linestyle() == "-" and np.allclose(line.get_color(), palette(k))
        ]
        rows = fitted.tasks[fitted.tasks["candidate"] == c].sort_values("split")
        assert len(drawn) == len(rows)
        for curve, expected in zip(drawn, rows["loss_curve"], strict=True):
            np.testing.assert_allclose(curve, expected)


def test_mlflow_runs(fitted, server):
    from mlflow import MlflowClient

    cv = fitted.cv
    info = fitted.search.tracking_["mlflow"]
    client = MlflowClient(server.uri)
    runs = client.search_runs(
        [info["experiment_id"]], filter_string=f"tags.`mlflow.parentRunId` = '{info['run_id']}'"
    )
    children = {int(r.data.tags["raygrid.candidate"]): r for r in runs}
    assert sorted(children) == list(range(len(cv["params"])))
    for c, child in children.items():
        assert child.data.params == {k: str(v) for k, v in cv["params"][c].items()}
        for key in cv:
            if re.match(r"^(mean|std|split\d+)_test_", key) and not np.isnan(cv[key][c]):
                assert child.data.metrics[key] == pytest.approx(cv[key][c], rel=1e-12), key
        if "loss_curve" in fitted.tasks:
            row = fitted.tasks[(fitted.tasks.candidate == c) & (fitted.tasks.split == 0)]
            history = client.get_metric_history(child.info.run_id, "split0_loss_curve")
            curve = row["loss_curve"].iloc[0]
            assert [m.step for m in history] == list(range(1, len(curve) + 1))
            assert [m.value for m in history] == pytest.approx(list(curve))


def test_tensorboard_hparams(fitted):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata
    from tensorboard.util import tensor_util

    cv = fitted.cv
    for c, params in enumerate(cv["params"]):
        session = EventAccumulator(
            str(fitted.logdir / f"candidate-{c:04d}"), size_guidance={"tensors": 0}
        )
        session.Reload()
        content = session.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_START_INFO_TAG]
        start = metadata.parse_session_start_info_plugin_data(content)
        logged = {k: getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}
        assert sorted(logged) == sorted(params)
        for name, value in params.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                assert logged[name] == pytest.approx(value), name
            else:
                assert logged[name] == str(value), name
        key = f"mean_test_{fitted.metric}"
        if not np.isnan(cv[key][c]):
            value = tensor_util.make_ndarray(session.Tensors(key)[0].tensor_proto)
            assert float(value) == pytest.approx(cv[key][c], rel=1e-6)
