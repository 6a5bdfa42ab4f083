"""``raygrid report``: the ranked table, the figures, the HTML page and bad input."""

import base64
import os
import re
import shutil
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.tree import DecisionTreeClassifier

from raygrid import RayGridSearchCV
from raygrid.cli import main as cli
from raygrid.report import analysis, figures
from raygrid.report.ranking import ranked_table
from raygrid.store.results import RESULTS_FILE, SUMMARY_FILE, TASKS_FILE

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
X, y = make_classification(n_samples=100, random_state=0)
GRID = {
    "max_depth": [2, 4, None],
    "criterion": ["gini", "entropy"],
    "min_samples_leaf": [1, 10],
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A three-parameter search (strings and None among the values), saved."""
    path = tmp_path_factory.mktemp("report") / "search"
    search = RayGridSearchCV(DecisionTreeClassifier(random_state=0), GRID, cv=3)
    search.fit(X, y).save_results(path)
    return path


@pytest.fixture(scope="module")
def saved_single(tmp_path_factory):
    """A one-parameter search whose first value fails every fit."""
    path = tmp_path_factory.mktemp("report") / "single"
    search = RayGridSearchCV(
        DecisionTreeClassifier(random_state=0), {"max_depth": [-1, 1, 2, 3]}, cv=3
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search.fit(X, y)
    search.save_results(path)
    return path


@pytest.fixture
def copy_of(saved, tmp_path):
    """A fresh copy of the saved search, for tests that break it."""
    target = tmp_path / "copy"
    shutil.copytree(saved, target)
    return target


def run(capsys, *argv):
    code = cli.main(["report", *(str(a) for a in argv)])
    out, err = capsys.readouterr()
    return code, out, err


def table_rows(out):
    """The printed table's header and data rows (the lines after the dashed rule)."""
    lines = out.splitlines()
    rule = next(i for i, line in enumerate(lines) if re.fullmatch(r"[- ]+", line))
    rows = []
    for line in lines[rule + 1 :]:
        if not line.strip():
            break
        rows.append(line.split())
    return lines[rule - 1].split(), rows


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 1024


def test_table_is_ranked_best_first(saved, capsys):
    code, out, err = run(capsys, saved, "--top", 4)
    assert code == 0, err
    header, rows = table_rows(out)
    assert header[0] == "rank"
    assert {"max_depth", "criterion", "min_samples_leaf"} <= set(header)
    assert len(rows) == 4
    assert rows[0][0] == "1"
    ranks = [int(row[0]) for row in rows]
    assert ranks == sorted(ranks)
    assert all("±" in row for row in rows)
    assert "12 candidates" in out


def test_table_matches_cv_results(saved):
    search = analysis.read_search(saved)
    table = ranked_table(search.results, "score", search.params)
    assert len(table) == 12
    assert table["rank"].iloc[0] == 1
    assert table["mean"].iloc[0] == pytest.approx(search.results["mean_test_score"].max())
    assert set(table["max_depth"]) == {"2", "4", "None"}


def test_three_figures_are_written_as_png(saved, capsys):
    code, out, err = run(capsys, saved)
    assert code == 0, err
    for name in ("heatmap.png", "params.png", "timeline.png"):
        assert_png(saved / "figures" / name)
        assert f"wrote {saved / 'figures' / name}" in out


def test_out_option_chooses_the_figure_directory(saved, tmp_path, capsys):
    code, _, err = run(capsys, saved, "--out", tmp_path / "figs")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == [
        "heatmap.png",
        "params.png",
        "timeline.png",
    ]


def test_html_page_is_self_contained(saved, tmp_path, capsys):
    page_file = tmp_path / "pages" / "report.html"
    code, _, err = run(capsys, saved, "--html", page_file, "--out", tmp_path / "figs")
    assert code == 0, err
    page = page_file.read_text(encoding="utf-8")
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 3
    for image in images:
        assert base64.b64decode(image)[:8] == PNG_MAGIC
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page
    assert "<table" in page and "<td>1</td>" in page
    assert "DecisionTreeClassifier(random_state=0)" in page  # from search.json


@pytest.mark.parametrize("metric_option", [[], ["--metric", "score"]])
def test_heatmap_defaults_to_the_two_most_influential(saved, capsys, metric_option):
    code, out, err = run(capsys, saved, *metric_option)
    assert code == 0, err
    search = analysis.read_search(saved)
    influence = analysis.parameter_influence(search, "score")
    spreads = list(zip(influence["spread_of_best"], influence["spread_of_mean"], strict=True))
    assert spreads == sorted(spreads, reverse=True)
    first, second = influence.index[:2]
    assert f"heatmap parameters: {first} (x), {second} (y)" in out


def test_influence_ranks_by_spread_of_the_best_score():
    a, b, c = np.meshgrid([1, 2, 3], ["u", "v"], [0.1, 1.0], indexing="ij")
    a, b, c = a.ravel(), b.ravel(), c.ravel()
    mean = 0.5 + 0.1 * a + 0.02 * (b == "v") + 0.0 * c
    results = pd.DataFrame(
        {
            "a": a,
            "b": b,
            "c": c,
            "mean_test_score": mean,
            "std_test_score": 0.01,
            "rank_test_score": pd.Series(-mean).rank(method="min").astype(int),
        }
    )
    search = analysis.SearchResults(results, None, {}, ["a", "b", "c"], ["score"])
    influence = analysis.parameter_influence(search, "score")
    assert list(influence.index) == ["a", "b", "c"]
    assert influence.loc["a", "spread_of_best"] == pytest.approx(0.2)
    assert influence.loc["c", "spread_of_best"] == pytest.approx(0.0)
    assert analysis.heatmap_params(search, "score") == ("a", "b")


def test_params_option_overrides_the_heatmap_axes(saved, tmp_path, capsys):
    code, out, err = run(capsys, saved, "--params", "criterion", "max_depth", "--out", tmp_path)
    assert code == 0, err
    assert "heatmap parameters: criterion (x), max_depth (y): from --params" in out
    assert_png(tmp_path / "heatmap.png")
    search = analysis.read_search(saved)
    pair = analysis.heatmap_params(search, "score", ["criterion", "max_depth"])
    ax = figures.heatmap_figure(search, "score", pair).axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("criterion", "max_depth")
    # Strings keep the grid's order; None (a category) comes after the numbers.
    assert [t.get_text() for t in ax.get_xticklabels()] == ["gini", "entropy"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["2", "4", "None"]


def test_heatmap_cells_are_the_best_over_other_parameters(saved):
    search = analysis.read_search(saved)
    figure = figures.heatmap_figure(search, "score", ("criterion", "min_samples_leaf"))
    grid = figure.axes[0].images[0].get_array()
    results = search.results
    for row, leaf in enumerate([1, 10]):
        for col, criterion in enumerate(["gini", "entropy"]):
            chosen = results[
                (results["criterion"] == criterion) & (results["min_samples_leaf"] == leaf)
            ]
            assert grid[row, col] == pytest.approx(chosen["mean_test_score"].max())


def test_single_parameter_grid_skips_the_heatmap(saved_single, capsys):
    code, out, err = run(capsys, saved_single)
    assert code == 0, err
    assert "note: heatmap skipped" in out
    figures = saved_single / "figures"
    assert not (figures / "heatmap.png").exists()
    assert_png(figures / "params.png")
    assert_png(figures / "timeline.png")
    _, rows = table_rows(out)
    assert rows[0][0] == "1"
    assert rows[-1][1] == "failed"  # max_depth=-1 failed every fit: ranked last


def test_timeline_marks_failed_tasks(saved_single):
    search = analysis.read_search(saved_single)
    tasks = analysis.timeline_tasks(search.tasks)
    assert len(tasks) == 12
    ax = figures.timeline_figure(tasks, len(search.results)).axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["failed (3)"]
    assert len(ax.get_yticklabels()) == tasks[["node_id", "pid"]].drop_duplicates().shape[0]


def test_results_without_tasks_skip_the_timeline(copy_of, capsys):
    assert run(capsys, copy_of)[0] == 0
    assert (copy_of / "figures" / "timeline.png").exists()
    (copy_of / TASKS_FILE).unlink()
    code, out, err = run(capsys, copy_of)
    assert code == 0, err
    assert f"note: timeline and learning curves left out: no {TASKS_FILE} in {copy_of}" in out
    # The earlier report's timeline would not match these results: removed.
    assert f"removed {copy_of / 'figures' / 'timeline.png'}" in out
    assert not (copy_of / "figures" / "timeline.png").exists()
    assert_png(copy_of / "figures" / "heatmap.png")


def break_missing_path(path):
    shutil.rmtree(path)
    return path, []


def break_missing_file(path):
    (path / RESULTS_FILE).unlink()
    return path, []


def break_foreign_parquet(path):
    pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}).to_parquet(path / RESULTS_FILE)
    return path, []


def break_empty_results(path):
    results = pd.read_parquet(path / RESULTS_FILE)
    results.iloc[:0].to_parquet(path / RESULTS_FILE)
    return path, []


def break_params(path):
    return path, ["--params", "nope", "units"]


def break_metric(path):
    return path, ["--metric", "f1"]


def break_top(path):
    return path, ["--top", "0"]


def break_score_type(path):
    results = pd.read_parquet(path / RESULTS_FILE)
    results["mean_test_score"] = results["mean_test_score"].astype(str)
    results.to_parquet(path / RESULTS_FILE)
    return path, []


def break_rank_type(path):
    results = pd.read_parquet(path / RESULTS_FILE)
    results["rank_test_score"] = "first"
    results.to_parquet(path / RESULTS_FILE)
    return path, []


def break_task_times(path):
    tasks = pd.read_parquet(path / TASKS_FILE)
    tasks["start_time"] = "yesterday"
    tasks.to_parquet(path / TASKS_FILE)
    return path, []


def break_task_candidates(path):
    tasks = pd.read_parquet(path / TASKS_FILE)
    tasks["candidate"] = tasks["candidate"] + 1000
    tasks.to_parquet(path / TASKS_FILE)
    return path, []


def break_tasks_file(path):
    (path / TASKS_FILE).write_bytes(b"not parquet")
    return path, []


def break_foreign_tasks(path):
    """The tasks of another search (4 candidates, other parameters) next to these results."""
    other = path.parent / "other"
    search = RayGridSearchCV(DecisionTreeClassifier(random_state=0), {"max_depth": [1, 2]}, cv=3)
    search.fit(X, y).save_results(other)
    shutil.copy(other / TASKS_FILE, path / TASKS_FILE)
    return path, []


def break_task_columns(path):
    pd.DataFrame({"a": [1, 2]}).to_parquet(path / TASKS_FILE)
    return path, []


@pytest.mark.parametrize(
    ("breaker", "reason"),
    [
        (break_task_times, f"{TASKS_FILE}: column start_time holds"),
        (break_task_candidates, f"{TASKS_FILE}: candidate indices outside"),
        (break_tasks_file, f"{TASKS_FILE}: not a readable Parquet file"),
        (break_task_columns, "holds no raygrid tasks (no candidate column)"),
        (break_foreign_tasks, f"{TASKS_FILE} belongs to another search: its candidate 0 has"),
    ],
)
def test_bad_tasks_leave_out_their_figures_and_say_why(copy_of, capsys, breaker, reason):
    assert run(capsys, copy_of)[0] == 0
    path, options = breaker(copy_of)
    code, out, err = run(capsys, path, *options)
    assert code == 0, err
    header, rows = table_rows(out)
    assert header[0] == "rank" and len(rows) == 10  # the table, as without tasks
    notes = [line for line in out.splitlines() if line.startswith("note: ")]
    assert [n for n in notes if "left out" in n] == [
        next(n for n in notes if n.startswith("note: timeline and learning curves left out: "))
    ]
    assert reason in out
    assert not (copy_of / "figures" / "timeline.png").exists()  # never mismatched data
    assert_png(copy_of / "figures" / "heatmap.png")


def break_summary(path):
    (path / SUMMARY_FILE).write_text("{'estimator': 1}")
    return path, []


@pytest.mark.parametrize(
    ("breaker", "message"),
    [
        (break_score_type, f"{RESULTS_FILE}: column mean_test_score holds"),
        (break_rank_type, f"{RESULTS_FILE}: column rank_test_score holds"),
        (break_summary, f"{SUMMARY_FILE}: not a raygrid search summary"),
        (break_missing_path, "no such directory"),
        (break_missing_file, f"no {RESULTS_FILE} here"),
        (break_foreign_parquet, "not raygrid search results"),
        (break_empty_results, "zero rows"),
        (break_params, "--params: no parameter 'nope' in the results"),
        (break_metric, "--metric: no metric 'f1'"),
        (break_top, "--top"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(copy_of, capsys, breaker, message):
    path, options = breaker(copy_of)
    code, out, err = run(capsys, path, *options)
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith("raygrid report: ")
    assert message in err
    assert "Traceback" not in err


def test_missing_matplotlib_says_how_to_install(saved, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, out, err = run(capsys, saved)
    assert code == 2
    assert len(err.splitlines()) == 1
    assert err.startswith("raygrid report: ")
    assert "pip install 'raygrid[plot]'" in err


def test_help_returns_zero(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "--params" in out


def test_grid_without_parameters(tmp_path, capsys):
    search = RayGridSearchCV(DecisionTreeClassifier(random_state=0), {}, cv=3).fit(X, y)
    search.save_results(tmp_path)
    code, out, err = run(capsys, tmp_path)
    assert code == 0, err
    header, rows = table_rows(out)
    assert header[0] == "rank"
    assert rows == [["1", *rows[0][1:]]]
    assert "note: heatmap skipped" in out
    assert_png(tmp_path / "figures" / "params.png")


def test_report_on_the_seed_search(tmp_path, capsys):
    """`raygrid run examples/seed.toml` then `raygrid report` on its output."""
    spec = tmp_path / "seed.toml"
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "examples", "seed.toml")) as f:
        source = f.read()
    spec.write_text(source.replace('path = "results/seed"', f'path = "{tmp_path / "seed"}"'))
    assert cli.main(["run", str(spec)]) == 0
    capsys.readouterr()
    html = tmp_path / "seed.html"
    assert run(capsys, tmp_path / "seed", "--html", html)[0] == 0
    for name in ("heatmap.png", "params.png", "curves.png", "timeline.png"):  # Keras: curves
        assert_png(tmp_path / "seed" / "figures" / name)
    page = html.read_text()
    assert page.count("data:image/png;base64,") == 4 and "units" in page


def synthetic_search(columns):
    """A saved search read back, with the given parameter columns and made-up scores."""
    n = len(next(iter(columns.values())))
    results = pd.DataFrame(columns)
    results["mean_test_score"] = np.linspace(0.5, 0.9, n)
    results["std_test_score"] = 0.01
    results["rank_test_score"] = np.arange(n, 0, -1)
    return analysis.SearchResults(results, None, {}, list(columns), ["score"])


@pytest.mark.parametrize(
    "values, log",
    [
        ([0.001, 0.01] * 2, True),  # the seed grid's learning rates: one decade
        ([0.001, 0.01, 0.1], True),
        ([0.1, 1.0, 10.0, 100.0], True),
        ([10, 30, 100, 300, 1000], True),
        (list(range(1, 11)), False),  # a decade, but evenly spaced on a linear scale
        ([32, 64, 128], False),  # less than a decade
        ([16, 32, 64], False),
        ([-1.0, 0.1, 10.0], False),  # not all positive
        ([0.0, 0.01, 1.0], False),
    ],
)
def test_numeric_axis_is_logarithmic_when_values_span_decades(values, log):
    axis = analysis.parameter_axis(synthetic_search({"p": values}), "p")
    assert axis.values == sorted(set(float(v) for v in values))
    assert axis.log is log


@pytest.mark.parametrize(
    "values, order",
    [
        ([True, False, True], ["False", "True"]),
        (["relu", "tanh", "relu"], ["relu", "tanh"]),
        ([0.1, None, 1.0], ["0.1", "1", "None"]),
    ],
)
def test_boolean_string_and_none_parameters_are_categories(values, order):
    axis = analysis.parameter_axis(synthetic_search({"p": values}), "p")
    assert axis.values is None and not axis.log
    assert axis.order == order


def test_parameter_panels_use_log_and_category_axes(tmp_path):
    grid = {"C": [0.001, 0.01, 0.1, 1.0], "fit_intercept": [True, False], "max_iter": [50, 100]}
    search = RayGridSearchCV(LogisticRegression(), grid, cv=3, progress=False)
    search.fit(X, y).save_results(tmp_path)
    figure = figures.parameters_figure(analysis.read_search(tmp_path), "score")
    panels = {ax.get_xlabel(): ax for ax in figure.axes if ax.get_visible()}
    assert set(panels) == set(grid)
    assert panels["C"].get_xscale() == "log"
    assert panels["max_iter"].get_xscale() == "linear"
    booleans = panels["fit_intercept"]
    assert booleans.get_xscale() == "linear"
    assert [t.get_text() for t in booleans.get_xticklabels()] == ["True", "False"]
    assert list(booleans.get_xticks()) == [0, 1]


def test_learning_curves_of_the_best_candidates(tmp_path, capsys):
    grid = {"hidden_layer_sizes": [(4,), (8,)], "alpha": [1e-4, 1e-2, 1.0]}
    mlp = MLPClassifier(max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search = RayGridSearchCV(mlp, grid, cv=2).fit(X, y)
    search.save_results(tmp_path)
    saved = analysis.read_search(tmp_path)
    curves = saved.tasks["loss_curve"]
    assert all(len(curve) == 5 for curve in curves)  # a list per fold, read back as numbers
    np.testing.assert_allclose(curves.iloc[0], search.tasks_["loss_curve"].iloc[0])
    assert set(saved.results["hidden_layer_sizes"]) == {"(4,)", "(8,)"}  # parameters: repr

    code, out, err = run(capsys, tmp_path, "--html", tmp_path / "page.html")
    assert code == 0, err
    assert_png(tmp_path / "figures" / "curves.png")
    assert "Loss per epoch of the best candidates" in (tmp_path / "page.html").read_text()
    ax = figures.curves_figure(saved, "score").axes[0]
    assert len(ax.lines) == 5 * 2  # the 5 best candidates, one line per fold
    assert len(ax.get_legend().get_texts()) == 5


def test_no_learning_curves_without_per_epoch_losses(saved, capsys):
    code, out, err = run(capsys, saved)
    assert code == 0, err
    assert not (saved / "figures" / "curves.png").exists()


@pytest.fixture(scope="module")
def keras_search(tmp_path_factory):
    """The seed spec's shape, small: raygrid.keras, epochs shared as prefixes, saved."""
    from raygrid.keras import KerasClassifier

    Xk, yk = make_classification(
        n_samples=90, n_features=6, n_informative=4, n_classes=3, random_state=0
    )
    grid = {"units": [4, 8], "learning_rate": [0.001, 0.05], "epochs": [2, 4]}
    search = RayGridSearchCV(KerasClassifier(random_state=0), grid, cv=2, progress=False)
    search.fit(Xk.astype(np.float32), yk)
    assert (search.tasks_["trained_with"] != search.tasks_["candidate"]).any()  # shared
    path = tmp_path_factory.mktemp("report") / "keras"
    search.save_results(path)
    return search, path


def test_learning_curve_k_is_the_candidate_ranked_k(keras_search):
    search, path = keras_search
    saved = analysis.read_search(path)
    ax = figures.curves_figure(saved, "score", top=5).axes[0]
    best = np.argsort(search.cv_results_["rank_test_score"], kind="stable")[:5]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(legend) == 5
    palette = figures.load_matplotlib().colormaps["tab10"]
    for k, candidate in enumerate(best):
        params = search.cv_results_["params"][candidate]
        rank = search.cv_results_["rank_test_score"][candidate]
        assert legend[k] == f"#{rank}: " + ", ".join(f"{p}={params[p]}" for p in sorted(params))
        drawn = [
            line.get_ydata()
            for line in ax.lines
            if line.get_linestyle() == "-" and np.allclose(line.get_color(), palette(k))
        ]
        tasks = search.tasks_[search.tasks_["candidate"] == candidate].sort_values("split")
        assert len(drawn) == len(tasks) == 2
        for curve, expected in zip(drawn, tasks["loss_curve"], strict=True):
            assert len(curve) == params["epochs"]
            np.testing.assert_allclose(curve, expected)


def union_seconds(intervals):
    """The length of the union of (start, end) timestamp pairs, by a sweep over events."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    covered, depth, since = 0.0, 0, None
    for time, step in events:
        if depth == 0 and step == 1:
            since = time
        depth += step
        if depth == 0:
            covered += (time - since).total_seconds()
    return covered


def test_timeline_counts_each_workers_wall_time_once(keras_search):
    search, path = keras_search
    saved = analysis.read_search(path)
    tasks = analysis.timeline_tasks(saved.tasks)
    ax = figures.timeline_figure(tasks, len(saved.results)).axes[0]
    wall = (tasks["end_time"].max() - tasks["start_time"].min()).total_seconds()
    labels = {t.get_text().split("pid ")[1].split()[0]: t.get_text() for t in ax.get_yticklabels()}
    busy_total = 0.0
    for pid, rows in tasks.groupby("pid"):
        busy = union_seconds(list(zip(rows["start_time"], rows["end_time"], strict=True)))
        busy_total += busy
        share = int(labels[str(pid)].rsplit("(", 1)[1].rstrip("%)"))
        assert share == round(100 * busy / wall) and share <= 100
    overall = re.search(r"busy (\d+)%", ax.get_title()).group(1)
    assert int(overall) == round(100 * busy_total / (wall * len(labels))) <= 100
