"""Search specs: every kind of mistake is a SpecError naming the file and the key."""

from __future__ import annotations

import inspect
import math
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raygrid.search.family import RayGridSearchCV
from raygrid.spec.search_spec import SpecError, load_spec, parse_spec
from raygrid.spec.toml_writer import dump_toml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

BASE = """
[estimator]
class = "sklearn.tree.DecisionTreeClassifier"

[estimator.params]
random_state = 0

[search]
param_grid = {{ max_depth = [1, 2] }}
cv = 3
scoring = "accuracy"
{search_extra}

[data]
{data}
"""

DATA_FILE = 'path = "data.parquet"\ntarget = "label"'


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(30, 3)), columns=["a", "b", "c"])
    frame["label"] = np.arange(30) % 2
    frame["patient"] = np.arange(30) // 3
    frame.to_parquet(tmp_path / "data.parquet")
    frame.to_csv(tmp_path / "data.csv", index=False)
    frame.to_feather(tmp_path / "data.feather")
    return tmp_path


def write(folder: Path, text: str, name: str = "seed.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def spec_text(data: str = DATA_FILE, search_extra: str = "", output: str | None = "out") -> str:
    text = BASE.format(data=data, search_extra=search_extra)
    return text if output is None else text + f'\n[output]\npath = "{output}"\n'


def problems(path: Path) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_spec(path)
    return info.value


def assert_problem(error: SpecError, file: Path, key: str, *fragments: str) -> None:
    """Some line of ``error`` is ``FILE: KEY: ...`` and contains every fragment."""
    prefix = f"{file}: {key}: "
    lines = [line for line in error.problems if line.startswith(prefix)]
    assert lines, f"no problem about {key!r} in:\n{error}"
    assert any(all(f in line for f in fragments) for line in lines), str(error)


# -- valid specs ------------------------------------------------------------------------


def test_valid_spec_with_parquet_data(folder: Path) -> None:
    spec = load_spec(write(folder, spec_text(output=str(folder / "out"))))
    assert spec.data.path == str(folder / "data.parquet")
    assert spec.output == str(folder / "out")
    assert spec.search_params == {
        "param_grid": {"max_depth": [1, 2]},
        "cv": 3,
        "scoring": "accuracy",
    }
    data = spec.load_data()  # Parquet: a handle the workers read (raygrid.data)
    assert data.X.features == ("a", "b", "c", "patient") and data.y is None
    X, y = data.X.read()
    assert list(X.columns) == ["a", "b", "c", "patient"]
    assert y.tolist() == (np.arange(30) % 2).tolist()
    search = spec.build_search(ray_address="127.0.0.1:1")
    assert isinstance(search, RayGridSearchCV)
    assert search.ray_address == "127.0.0.1:1"
    assert search.estimator.random_state == 0


@pytest.mark.parametrize("name", ["data.csv", "data.feather"])
def test_csv_and_feather_with_features_and_groups(folder: Path, name: str) -> None:
    data = f'path = "{name}"\ntarget = "label"\nfeatures = ["a", "c"]\ngroups = "patient"'
    spec = load_spec(write(folder, spec_text(data=data)))
    loaded = spec.load_data()
    assert list(loaded.X.columns) == ["a", "c"]
    assert loaded.fit_params["groups"].tolist() == (np.arange(30) // 3).tolist()


def test_data_path_resolves_against_the_spec_folder(folder: Path, monkeypatch) -> None:
    (folder / "specs").mkdir()
    data = 'path = "../data.parquet"\ntarget = "label"'
    path = write(folder / "specs", spec_text(data=data))
    monkeypatch.chdir("/")
    assert load_spec(path).data.path == str(folder / "data.parquet")


def test_relative_output_resolves_against_the_working_directory(folder, monkeypatch) -> None:
    monkeypatch.chdir(folder)
    spec = load_spec(write(folder, spec_text(output="results/run1")))
    assert spec.output == str(folder / "results" / "run1")


def test_uri_output_is_kept(folder: Path) -> None:
    spec = load_spec(write(folder, spec_text(output="s3://bucket/runs/1")))
    assert spec.output == "s3://bucket/runs/1"


def test_generator_grid_list_cv_table_and_search_options(folder: Path) -> None:
    text = """
[estimator]
class = "sklearn.linear_model.LogisticRegression"
[search]
param_grid = [{ C = [0.1, 1.0] }, { C = [10.0], fit_intercept = [false] }]
cv = { class = "sklearn.model_selection.StratifiedKFold", n_splits = 4, shuffle = true, random_state = 1 }
scoring = ["accuracy", "f1_macro"]
refit = "f1_macro"
n_jobs = -1
error_score = nan
return_train_score = true
num_cpus_per_task = 0.5
num_gpus_per_task = 0.25
max_retries = 1
verbose = 0
pre_dispatch = "3*n_jobs"
[data]
generator = "make_classification"
[data.args]
n_samples = 50
random_state = 3
"""
    spec = load_spec(write(folder, text))
    params = spec.search_params
    assert params["param_grid"] == [{"C": [0.1, 1.0]}, {"C": [10.0], "fit_intercept": [False]}]
    assert params["cv"].n_splits == 4 and params["cv"].shuffle and params["cv"].random_state == 1
    assert params["refit"] == "f1_macro" and math.isnan(params["error_score"])
    assert len(spec.candidates()) == 3
    data = spec.load_data()
    assert data.X.shape == (50, 20)
    assert spec.output is None


def test_dataset_loader(folder: Path) -> None:
    spec = load_spec(write(folder, spec_text(data='dataset = "load_iris"', output=None)))
    assert spec.output is None
    assert spec.load_data().X.shape == (150, 4)


def test_seed_example_is_valid() -> None:
    spec = load_spec(EXAMPLES / "seed.toml")
    assert spec.estimator_class.__name__ == "KerasClassifier"
    assert len(spec.candidates()) == 36
    assert spec.search_params["cv"] == 3
    assert spec.data.generator == "make_classification"
    assert spec.output.endswith("results/seed")


def test_arrays_inside_grid_values_become_tuples(folder: Path) -> None:
    text = spec_text().replace(
        'class = "sklearn.tree.DecisionTreeClassifier"',
        'class = "sklearn.neural_network.MLPClassifier"',
    )
    text = text.replace("max_depth = [1, 2]", "hidden_layer_sizes = [[4], [4, 2]]")
    spec = load_spec(write(folder, text))
    assert spec.search_params["param_grid"] == {"hidden_layer_sizes": [(4,), (4, 2)]}


# -- mistakes ------------------------------------------------------------------------------


def test_message_format_names_file_key_expectation_and_value(folder: Path) -> None:
    path = write(folder, spec_text().replace("cv = 3", 'cv = "three"'))
    error = problems(path)
    assert str(error) == f'{path}: [search].cv: expected an int >= 2 or a table, got "three"'
    assert error.keys == ["[search].cv"]
    assert error.file == str(path)


def test_invalid_toml(folder: Path) -> None:
    path = write(folder, "[search\ncv = 3\n")
    error = problems(path)
    assert str(error).startswith(f"{path}: invalid TOML: ")


def test_missing_spec_file(folder: Path) -> None:
    error = problems(folder / "nope.toml")
    assert str(error) == f"{folder / 'nope.toml'}: no such file"


def test_unknown_table_and_unknown_key(folder: Path) -> None:
    text = spec_text(search_extra="cvv = 3") + "\n[serach]\nx = 1\n"
    path = write(folder, text)
    error = problems(path)
    assert_problem(error, path, "[search].cvv", "unknown key", "did you mean 'cv'?")
    assert_problem(error, path, "[serach]", "unknown table", "did you mean [search]?")


def test_missing_tables(folder: Path) -> None:
    path = write(folder, "[output]\npath = 'x'\n")
    error = problems(path)
    for key in ("[estimator]", "[search]", "[data]"):
        assert_problem(error, path, key, "missing table")


@pytest.mark.parametrize(
    ("extra", "key", "fragment"),
    [
        ('return_train_score = "yes"', "[search].return_train_score", 'true or false, got "yes"'),
        ("num_cpus_per_task = 0", "[search].num_cpus_per_task", "a number > 0, got 0"),
        ("num_gpus_per_task = 1.5", "[search].num_gpus_per_task", "whole number"),
        ("n_jobs = 0", "[search].n_jobs", "a non-zero int"),
        ("n_jobs = 1.5", "[search].n_jobs", "got 1.5"),
        ('error_score = "oops"', "[search].error_score", 'or "raise", got "oops"'),
        ("max_retries = -1", "[search].max_retries", "an int >= 0, got -1"),
        ("verbose = true", "[search].verbose", "an int >= 0, got true"),
        ('pre_dispatch = "lots"', "[search].pre_dispatch", 'got "lots"'),
        ('refit = "accuracy"', "[search].refit", "a metric name only with several"),
        ("refit = 3", "[search].refit", "true, false or a scoring metric name, got 3"),
    ],
)
def test_wrong_types_in_search(folder: Path, extra: str, key: str, fragment: str) -> None:
    path = write(folder, spec_text(search_extra=extra))
    assert_problem(problems(path), path, key, fragment)


def test_cv_below_two_and_bad_splitter(folder: Path) -> None:
    path = write(folder, spec_text().replace("cv = 3", "cv = 1"))
    assert_problem(problems(path), path, "[search].cv", "an int >= 2 or a table, got 1")
    table = 'cv = { class = "sklearn.model_selection.KFold", n_split = 3 }'
    path = write(folder, spec_text().replace("cv = 3", table))
    assert_problem(problems(path), path, "[search].cv.n_split", "KFold(...) failed")
    table = 'cv = { class = "sklearn.model_selection.NoSuchFold" }'
    path = write(folder, spec_text().replace("cv = 3", table))
    assert_problem(problems(path), path, "[search].cv.class", "has no attribute 'NoSuchFold'")


def test_unknown_scorer_and_refit_with_several_metrics(folder: Path) -> None:
    path = write(folder, spec_text().replace('"accuracy"', '"acuracy"'))
    assert_problem(
        problems(path), path, "[search].scoring", "unknown scorer 'acuracy'", "accuracy"
    )
    path = write(folder, spec_text().replace('"accuracy"', '["accuracy", "f1"]'))
    assert_problem(problems(path), path, "[search].refit", "missing; with several scoring")
    text = spec_text(search_extra="refit = true").replace('"accuracy"', '["accuracy", "f1"]')
    path = write(folder, text)
    assert_problem(problems(path), path, "[search].refit", "expected false or one of")


def test_bad_import_paths(folder: Path) -> None:
    cases = {
        "nosuchpkg.Model": "no module named 'nosuchpkg'",
        "sklearn.tree.DecisionTreeClasifier": "did you mean 'DecisionTreeClassifier'?",
        "sklearn.tree.export_text": "not a scikit-learn estimator class",
        "Model": "an import path like",
    }
    for target, fragment in cases.items():
        text = spec_text().replace("sklearn.tree.DecisionTreeClassifier", target)
        path = write(folder, text)
        assert_problem(problems(path), path, "[estimator].class", fragment)


def test_unknown_estimator_param_and_grid_param(folder: Path) -> None:
    path = write(folder, spec_text().replace("random_state = 0", "random_stat = 0"))
    assert_problem(
        problems(path),
        path,
        "[estimator.params].random_stat",
        "DecisionTreeClassifier has no parameter 'random_stat'",
        "did you mean 'random_state'?",
    )
    path = write(folder, spec_text().replace("max_depth = [1, 2]", "max_dept = [1, 2]"))
    assert_problem(
        problems(path),
        path,
        "[search].param_grid.max_dept",
        "has no parameter 'max_dept'",
        "did you mean 'max_depth'?",
    )


def test_grid_values_must_be_arrays(folder: Path) -> None:
    path = write(folder, spec_text().replace("max_depth = [1, 2]", "max_depth = 3"))
    assert_problem(
        problems(path), path, "[search].param_grid.max_depth", "a non-empty array", "got 3"
    )
    path = write(
        folder, spec_text().replace("param_grid = { max_depth = [1, 2] }", "param_grid = 5")
    )
    assert_problem(problems(path), path, "[search].param_grid", "got 5")


def test_missing_data_file(folder: Path) -> None:
    path = write(folder, spec_text(data='path = "missing.parquet"\ntarget = "label"'))
    assert_problem(
        problems(path), path, "[data].path", f"no such file: {folder / 'missing.parquet'}"
    )


def test_missing_columns(folder: Path) -> None:
    data = 'path = "data.parquet"\ntarget = "labl"\nfeatures = ["a", "zz"]\ngroups = "patien"'
    path = write(folder, spec_text(data=data))
    error = problems(path)
    assert_problem(error, path, "[data].target", "no column 'labl'", "did you mean 'label'?")
    assert_problem(error, path, "[data].features[1]", "no column 'zz'")
    assert_problem(error, path, "[data].groups", "no column 'patien'")


def test_target_among_features_and_missing_target(folder: Path) -> None:
    path = write(folder, spec_text(data='path = "data.parquet"\ntarget = "a"\nfeatures = ["a"]'))
    assert_problem(problems(path), path, "[data].features[0]", "the target column 'a'")
    path = write(folder, spec_text(data='path = "data.parquet"'))
    assert_problem(problems(path), path, "[data].target", "missing")


def test_unreadable_and_unknown_data_formats(folder: Path) -> None:
    (folder / "bad.parquet").write_text("not parquet")
    path = write(folder, spec_text(data='path = "bad.parquet"\ntarget = "label"'))
    assert_problem(problems(path), path, "[data].path", "cannot read", "as parquet")
    (folder / "data.xlsx").write_text("")
    path = write(folder, spec_text(data='path = "data.xlsx"\ntarget = "label"'))
    assert_problem(problems(path), path, "[data].path", ".parquet", 'got "data.xlsx"')


def test_data_source_must_be_exactly_one(folder: Path) -> None:
    data = 'path = "data.parquet"\ntarget = "label"\ngenerator = "make_moons"'
    path = write(folder, spec_text(data=data))
    assert_problem(problems(path), path, "[data]", "exactly one of", "got path, generator")
    path = write(folder, spec_text(data='target = "label"'))
    assert_problem(problems(path), path, "[data]", "got none")


def test_unknown_generator_dataset_and_argument(folder: Path) -> None:
    path = write(folder, spec_text(data='generator = "make_clasification"'))
    assert_problem(problems(path), path, "[data].generator", "did you mean 'make_classification'")
    path = write(folder, spec_text(data='dataset = "fetch_openml"'))
    assert_problem(problems(path), path, "[data].dataset", "unknown scikit-learn bundled dataset")
    data = 'generator = "make_classification"\n[data.args]\nn_sample = 10'
    path = write(folder, spec_text(data=data))
    assert_problem(problems(path), path, "[data.args].n_sample", "did you mean 'n_samples'?")
    data = 'generator = "make_classification"\ntarget = "y"'
    path = write(folder, spec_text(data=data))
    assert_problem(problems(path), path, "[data].target", "only with path")


def test_generator_failure_at_load_time(folder: Path) -> None:
    data = 'generator = "make_classification"\n[data.args]\nn_samples = "many"'
    spec = load_spec(write(folder, spec_text(data=data)))
    with pytest.raises(SpecError, match=r"\[data\].generator: make_classification\(...\) failed"):
        spec.load_data()


@pytest.mark.parametrize("uri", ["ftp://host/results", "http://host/x", "c:/results"])
def test_bad_output_uri_scheme(folder: Path, uri: str) -> None:
    path = write(folder, spec_text(output=uri))
    assert_problem(problems(path), path, "[output].path", f'got "{uri}"')


def test_output_path_that_is_a_file_and_unknown_output_key(folder: Path) -> None:
    (folder / "taken").write_text("")
    path = write(folder, spec_text(output=str(folder / "taken")) + "\nformat = 'csv'\n")
    error = problems(path)
    assert_problem(error, path, "[output].path", "a directory, but")
    assert_problem(error, path, "[output].format", "unknown key")


@pytest.mark.parametrize(
    ("name", "value", "expected", "bad", "fragment"),
    [
        ("results_dir", '"journal"', "journal", "3", "a directory path"),
        ("max_consecutive_failures", "5", 5, "0", "an int >= 1, got 0"),
        ("progress", "false", False, '"yes"', 'true, false or "auto", got "yes"'),
        ("fit_timeout", "2.5", 2.5, "0", "a number of seconds > 0, got 0"),
    ],
)
def test_newer_search_parameters_only_if_supported(folder, name, value, expected, bad, fragment):
    path = write(folder, spec_text(search_extra=f"{name} = {value}"))
    if name not in inspect.signature(RayGridSearchCV).parameters:
        assert_problem(problems(path), path, f"[search].{name}", "not supported")
        return
    got = load_spec(path).search_params[name]
    assert got == (str(Path.cwd() / expected) if name == "results_dir" else expected)
    path = write(folder, spec_text(search_extra=f"{name} = {bad}"))
    assert_problem(problems(path), path, f"[search].{name}", fragment)


def test_every_problem_is_reported_at_once(folder: Path) -> None:
    text = spec_text(search_extra='verbose = "loud"\nmax_retries = -2').replace("cv = 3", "cv = 0")
    path = write(folder, text)
    error = problems(path)
    assert error.keys == ["[search].cv", "[search].max_retries", "[search].verbose"]
    assert len(str(error).splitlines()) == 3


def test_parse_spec_without_a_file() -> None:
    with pytest.raises(SpecError, match=r"^<spec>: \[estimator\]: missing table"):
        parse_spec({"search": {}, "data": {}})


# -- writing TOML ---------------------------------------------------------------------------


def test_dump_toml_round_trips() -> None:
    doc = {
        "estimator": {"class": "a.B", "params": {"x": 1, "nested": {"deep": [1, 2]}}},
        "search": {
            "param_grid": [{"a": [1, 2.5, "s", True]}, {"b": [[1, 2], [3]]}],
            "error_score": float("nan"),
            "big": float("inf"),
            "small": 1e-05,
        },
        "data": {"path": 'we"ird\\ \n\t\x01 ü 😀', "weird key": "x"},
        "empty": {},
    }
    back = tomllib.loads(dump_toml(doc))
    assert math.isnan(back["search"].pop("error_score"))
    doc["search"].pop("error_score")
    assert back == doc


@pytest.mark.parametrize(
    "extra, cls_name, attrs",
    [
        (
            'kind = "randomized"\nn_iter = 2\nrandom_state = 0',
            "RayRandomizedSearchCV",
            {"n_iter": 2},
        ),
        ('kind = "halving_grid"\nfactor = 2', "RayHalvingGridSearchCV", {"factor": 2}),
        (
            'kind = "halving_random"\nn_candidates = 2\nrandom_state = 1',
            "RayHalvingRandomSearchCV",
            {"n_candidates": 2, "random_state": 1},
        ),
    ],
)
def test_search_kind_builds_that_search(folder: Path, extra, cls_name, attrs) -> None:
    spec = load_spec(write(folder, spec_text(search_extra=extra)))
    search = spec.build_search()
    assert type(search).__name__ == cls_name
    for name, value in attrs.items():
        assert getattr(search, name) == value
    space = getattr(search, "param_grid", None) or search.param_distributions
    assert space == {"max_depth": [1, 2]}


@pytest.mark.parametrize(
    "extra, key, fragment",
    [
        ('kind = "bayesian"', "[search].kind", "one of ['grid', 'halving_grid'"),
        ('kind = "randomized"\nn_iter = 0', "[search].n_iter", "an int in the range [1, inf)"),
        ('kind = "halving_grid"\nfactor = "big"', "[search].factor", "range"),
        ("n_iter = 3", "[search].n_iter", 'not an option of kind = "grid"'),
        ('kind = "halving_grid"\npre_dispatch = 4', "[search].pre_dispatch", "not an option"),
    ],
)
def test_search_kind_mistakes(folder: Path, extra, key, fragment) -> None:
    path = write(folder, spec_text(search_extra=extra))
    assert_problem(problems(path), path, key, fragment)
