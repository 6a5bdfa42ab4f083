"""Every kind of input GridSearchCV accepts gives the same cv_results_ through raygrid.

Whether an estimator accepts N-D arrays, NaN, text, categoricals or dataframes is the
estimator's business: raygrid ships the data as it is and lets the fits find out.
"""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import scipy.sparse as sp
from compare import assert_cv_results_equal
from estimators import FlatImageClassifier
from sklearn.compose import ColumnTransformer
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from raygrid import RayGridSearchCV

X, y = make_classification(
    n_samples=60, n_features=4, n_informative=2, n_redundant=1, random_state=0
)


def images():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 48)
    pictures = rng.normal(size=(48, 6, 6, 1)) + labels[:, None, None, None]
    return FlatImageClassifier(), {"C": [0.1, 1.0]}, pictures, labels


def with_nan():
    bad = X.copy()
    bad[::7, 1] = np.nan
    return (
        make_pipeline(SimpleImputer(), LogisticRegression()),
        {"logisticregression__C": [0.1, 1]},
        bad,
        y,
    )


def frame_with_text():
    frame = pd.DataFrame({"num": X[:, 0], "city": np.where(X[:, 1] > 0, "Paris", "Lyon")})
    encode = ColumnTransformer([("city", OneHotEncoder(), ["city"])], remainder="passthrough")
    return (
        make_pipeline(encode, LogisticRegression()),
        {"logisticregression__C": [0.1, 1]},
        frame,
        y,
    )


def documents():
    words = ["good great fine", "bad awful poor", "great good", "poor bad"]
    docs = [words[i % 4] + f" w{i % 5}" for i in range(40)]
    labels = [i % 2 for i in range(40)]
    grid = {"logisticregression__C": [0.1, 10]}
    return make_pipeline(TfidfVectorizer(), LogisticRegression()), grid, docs, labels


def categoricals():
    frame = pd.DataFrame({"a": X[:, 0], "b": pd.Categorical(np.where(X[:, 2] > 0, "x", "y"))})
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0)
    return model, {"max_iter": [5, 10]}, frame, y


def sparse():
    return LogisticRegression(), {"C": [0.1, 1]}, sp.csr_matrix(np.where(X > 0.5, X, 0)), y


def list_of_lists():
    return LogisticRegression(), {"C": [0.1, 1]}, X.tolist(), y.tolist()


def string_labels():
    return LogisticRegression(), {"C": [0.1, 1]}, X, np.where(y == 1, "cat", "dog")


def multioutput():
    Xr, yr = make_regression(n_samples=50, n_features=4, n_targets=2, random_state=0)
    return Ridge(), {"alpha": [0.1, 10]}, Xr, yr


def frame_and_series():
    frame = pd.DataFrame(X, columns=list("abcd"))
    return LogisticRegression(), {"C": [0.1, 1]}, frame, pd.Series(y, name="target")


def polars_frame():
    pl = pytest.importorskip("polars")
    return LogisticRegression(), {"C": [0.1, 1]}, pl.DataFrame(X, schema=list("abcd")), y


def arrow_table():
    return (
        LogisticRegression(),
        {"C": [0.1, 1]},
        pa.table({c: X[:, i] for i, c in enumerate("abcd")}),
        y,
    )


KINDS = {
    f.__name__: f
    for f in (
        images,
        with_nan,
        frame_with_text,
        documents,
        categoricals,
        sparse,
        list_of_lists,
        string_labels,
        multioutput,
        frame_and_series,
        polars_frame,
        arrow_table,
    )
}


@pytest.mark.parametrize("make", KINDS.values(), ids=KINDS.keys())
def test_input_kind_same_cv_results_as_scikit_learn(make):
    estimator, grid, data, target = make()
    theirs = GridSearchCV(estimator, grid, cv=3).fit(data, target)
    ours = RayGridSearchCV(estimator, grid, cv=3, progress=False).fit(data, target)
    assert_cv_results_equal(ours.cv_results_, theirs.cv_results_)
    assert ours.best_params_ == theirs.best_params_
    np.testing.assert_array_equal(ours.predict(data), theirs.predict(data))
    if hasattr(theirs, "feature_names_in_"):
        np.testing.assert_array_equal(ours.feature_names_in_, theirs.feature_names_in_)
