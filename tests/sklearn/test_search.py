"""RayGridSearchCV against GridSearchCV itself: same inputs, same cv_results_."""

import pickle
import re
import warnings

import numpy as np
import pytest
from compare import assert_cv_results_equal
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs, make_classification, make_regression
from sklearn.exceptions import FitFailedWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, GroupKFold, KFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeRegressor
from threadpoolctl import threadpool_limits

from raygrid import RayGridSearchCV

Xc, yc = make_classification(n_samples=90, n_features=6, n_informative=4, random_state=0)
Xr, yr = make_regression(n_samples=80, n_features=5, noise=5.0, random_state=0)
Xb, _ = make_blobs(n_samples=60, centers=3, random_state=0)


def both(estimator, grid, X, y=None, fit_params=None, **kwargs):
    """Run the same search through scikit-learn and raygrid."""
    fit_params = fit_params or {}
    # Ray workers of one CPU run one BLAS/OpenMP thread; so must scikit-learn here, or
    # multi-threaded reductions (KMeans) differ in the last bit.
    with threadpool_limits(1):
        theirs = GridSearchCV(estimator, grid, **kwargs).fit(X, y, **fit_params)
    ours = RayGridSearchCV(estimator, grid, **kwargs).fit(X, y, **fit_params)
    return ours, theirs


def assert_same_search(ours, theirs):
    assert_cv_results_equal(ours.cv_results_, theirs.cv_results_)
    for attr in ("best_index_", "best_params_", "best_score_", "n_splits_", "multimetric_"):
        assert hasattr(ours, attr) == hasattr(theirs, attr), attr
        if hasattr(theirs, attr):
            assert repr(getattr(ours, attr)) == repr(getattr(theirs, attr)), attr


def weighted_accuracy_index(results):
    """A refit callable: the candidate with the lowest std among the top two."""
    top = np.argsort(results["rank_test_score"])[:2]
    return int(top[np.argmin(results["std_test_score"][top])])


CASES = {
    "logreg": (LogisticRegression(max_iter=300), {"C": [0.01, 1.0, 100.0]}, Xc, yc, {}),
    "svc-proba": (
        SVC(probability=True, random_state=0),
        {"C": [0.5, 2.0], "kernel": ["rbf", "linear"]},
        Xc,
        yc,
        {"scoring": "neg_log_loss"},
    ),
    "pipeline-scaler": (
        Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]),
        {"clf__C": [0.1, 1.0], "scale": [StandardScaler(), MinMaxScaler(), "passthrough"]},
        Xc,
        yc,
        {},
    ),
    "tree-regressor": (
        DecisionTreeRegressor(random_state=0),
        {"max_depth": [2, 4, None], "min_samples_leaf": [1, 5]},
        Xr,
        yr,
        {"cv": KFold(4, shuffle=True, random_state=1)},
    ),
    "kmeans-unsupervised": (
        KMeans(n_init=2, random_state=0),
        {"n_clusters": [2, 3, 4]},
        Xb,
        None,
        {},
    ),
    "multimetric-refit-str": (
        LogisticRegression(max_iter=300),
        {"C": [0.1, 1.0]},
        Xc,
        yc,
        {"scoring": ["accuracy", "f1", "roc_auc"], "refit": "f1", "return_train_score": True},
    ),
    "multimetric-dict-refit-false": (
        Ridge(),
        {"alpha": [0.1, 10.0]},
        Xr,
        yr,
        {"scoring": {"r2": "r2", "mae": "neg_mean_absolute_error"}, "refit": False},
    ),
    "refit-false-single": (Ridge(), {"alpha": [0.1, 10.0]}, Xr, yr, {"refit": False}),
    "refit-callable": (
        LogisticRegression(max_iter=300),
        {"C": [0.01, 0.1, 1.0, 10.0]},
        Xc,
        yc,
        {"refit": weighted_accuracy_index},
    ),
    "train-score": (
        Ridge(),
        {"alpha": [0.1, 1.0]},
        Xr,
        yr,
        {"return_train_score": True, "cv": 5},
    ),
    "list-of-dicts-masked": (
        SVC(),
        [{"kernel": ["rbf"], "gamma": [0.1, 1.0]}, {"kernel": ["poly"], "degree": [2, 3]}],
        Xc,
        yc,
        {},
    ),
    "none-and-string-values": (
        DecisionTreeRegressor(random_state=0),
        {"max_depth": [None, 3], "criterion": ["squared_error", "absolute_error"]},
        Xr,
        yr,
        {},
    ),
    "callable-scorer-dict": (
        Ridge(),
        {"alpha": [0.1, 1.0]},
        Xr,
        yr,
        {
            "scoring": lambda est, X, y: {"a": est.score(X, y), "b": -abs(est.intercept_)},
            "refit": "a",
        },
    ),
    "cv-iterable": (
        Ridge(),
        {"alpha": [0.1, 1.0]},
        Xr,
        yr,
        {"cv": [(np.arange(0, 40), np.arange(40, 80)), (np.arange(40, 80), np.arange(0, 40))]},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_same_cv_results_as_scikit_learn(case):
    estimator, grid, X, y, kwargs = CASES[case]
    ours, theirs = both(estimator, grid, X, y, **kwargs)
    assert_same_search(ours, theirs)
    if theirs.refit:
        method = "predict" if hasattr(theirs, "predict") else "transform"
        np.testing.assert_allclose(getattr(ours, method)(X), getattr(theirs, method)(X))


def test_groups_with_group_kfold_and_sliced_fit_params():
    groups = np.repeat(np.arange(6), 15)
    weights = np.random.default_rng(0).uniform(0.5, 2.0, size=len(yc))
    fit_params = {"groups": groups, "sample_weight": weights}
    ours, theirs = both(
        LogisticRegression(max_iter=300),
        {"C": [0.1, 1.0]},
        Xc,
        yc,
        fit_params=fit_params,
        cv=GroupKFold(3),
    )
    assert_same_search(ours, theirs)


def test_one_shot_generator_cv():
    splits = list(StratifiedKFold(3).split(Xc, yc))
    theirs = GridSearchCV(SVC(), {"C": [1, 2]}, cv=(s for s in splits)).fit(Xc, yc)
    ours = RayGridSearchCV(SVC(), {"C": [1, 2]}, cv=(s for s in splits)).fit(Xc, yc)
    assert_same_search(ours, theirs)


def test_estimator_valued_param():
    grid = {"clf": [LogisticRegression(), SVC()], "scale": [StandardScaler(), "passthrough"]}
    pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())])
    ours, theirs = both(pipe, grid, Xc, yc)
    assert_same_search(ours, theirs)
    assert ours.cv_results_["param_clf"].dtype == object


def test_delegated_methods_and_attributes_match():
    ours, theirs = both(SVC(probability=True, random_state=0), {"C": [1, 3]}, Xc, yc)
    for method in ("predict", "predict_proba", "predict_log_proba", "decision_function"):
        np.testing.assert_allclose(getattr(ours, method)(Xc), getattr(theirs, method)(Xc))
    assert ours.score(Xc, yc) == theirs.score(Xc, yc)
    np.testing.assert_array_equal(ours.classes_, theirs.classes_)
    assert ours.n_features_in_ == theirs.n_features_in_
    assert ours.refit_time_ >= 0
    assert repr(ours.scorer_) == repr(theirs.scorer_)
    with pytest.raises(AttributeError, match="transform"):
        ours.transform(Xc)


def test_feature_names_in_and_transform():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(Xc, columns=[f"f{i}" for i in range(Xc.shape[1])])
    ours, theirs = both(
        StandardScaler(),
        {"with_mean": [True, False]},
        frame,
        None,
        scoring=lambda est, X, y=None: float(-np.abs(est.transform(X)).mean()),
    )
    assert_same_search(ours, theirs)
    np.testing.assert_array_equal(ours.feature_names_in_, theirs.feature_names_in_)
    np.testing.assert_allclose(ours.inverse_transform(ours.transform(frame)), Xc)


def test_fitted_search_pickles():
    search = RayGridSearchCV(LogisticRegression(), {"C": [1.0, 2.0]}).fit(Xc, yc)
    again = pickle.loads(pickle.dumps(search))
    np.testing.assert_array_equal(again.predict(Xc), search.predict(Xc))
    assert_cv_results_equal(again.cv_results_, search.cv_results_)


def test_unfitted_search_raises_like_scikit_learn():
    search = RayGridSearchCV(SVC(), {"C": [1]})
    with pytest.raises(Exception, match="not fitted") as ours:
        search.predict(Xc)
    with pytest.raises(Exception, match="not fitted") as theirs:
        GridSearchCV(SVC(), {"C": [1]}).predict(Xc)
    assert type(ours.value) is type(theirs.value)


class FailingClassifier(LogisticRegression):
    """Fails to fit when C is the sentinel value."""

    def fit(self, X, y, **kw):
        if self.C == 0.5:
            raise ValueError("Failing classifier failed as required")
        return super().fit(X, y, **kw)


def test_numeric_error_score_fills_and_warns_once():
    grid = {"C": [0.5, 1.0]}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = RayGridSearchCV(FailingClassifier(), grid, error_score=-1.0).fit(Xc, yc)
    fit_failed = [w for w in caught if issubclass(w.category, FitFailedWarning)]
    assert len(fit_failed) == 1
    assert "5 fits failed out of a total of 10" in str(fit_failed[0].message)
    assert "Failing classifier failed as required" in str(fit_failed[0].message)
    with pytest.warns(FitFailedWarning):
        theirs = GridSearchCV(FailingClassifier(), grid, error_score=-1.0).fit(Xc, yc)
    assert_same_search(ours, theirs)


@pytest.mark.parametrize("scoring", [["accuracy", "f1"], {"acc": "accuracy"}])
def test_failures_with_multimetric_scoring(scoring):
    grid = {"C": [0.5, 1.0]}
    kwargs = {"scoring": scoring, "refit": False, "return_train_score": True}
    with pytest.warns(FitFailedWarning):
        ours = RayGridSearchCV(FailingClassifier(), grid, **kwargs).fit(Xc, yc)
    with pytest.warns(FitFailedWarning):
        theirs = GridSearchCV(FailingClassifier(), grid, **kwargs).fit(Xc, yc)
    assert_same_search(ours, theirs)


def test_error_score_nan_ranks_failures_last():
    with pytest.warns(FitFailedWarning):
        ours = RayGridSearchCV(FailingClassifier(), {"C": [0.5, 1.0, 2.0]}).fit(Xc, yc)
    with pytest.warns(FitFailedWarning):
        theirs = GridSearchCV(FailingClassifier(), {"C": [0.5, 1.0, 2.0]}).fit(Xc, yc)
    assert_same_search(ours, theirs)
    assert ours.cv_results_["rank_test_score"][0] == 3


def test_error_score_raise_reraises_original_exception():
    search = RayGridSearchCV(FailingClassifier(), {"C": [0.5, 1.0]}, error_score="raise")
    with pytest.raises(ValueError, match="Failing classifier failed as required") as info:
        search.fit(Xc, yc)
    assert any("Ray worker" in note for note in getattr(info.value, "__notes__", []))


def test_all_fits_failing_raises_value_error():
    with pytest.raises(ValueError, match="All the 5 fits failed"):
        RayGridSearchCV(FailingClassifier(), {"C": [0.5]}).fit(Xc, yc)


@pytest.mark.parametrize("verbose", [2, 3, 10])
def test_verbose_lines_match_scikit_learn(capsys, verbose):
    def lines():
        # Times differ between runs; the rest of each line must match.
        out = capsys.readouterr().out.splitlines()
        return sorted(re.sub(r"total time=.*", "", line) for line in out if line.strip())

    kwargs = {"cv": 3, "verbose": verbose, "return_train_score": True}
    GridSearchCV(Ridge(), {"alpha": [1.0, 2.0]}, **kwargs).fit(Xr, yr)
    expected = lines()
    RayGridSearchCV(Ridge(), {"alpha": [1.0, 2.0]}, **kwargs).fit(Xr, yr)
    assert lines() == expected
    assert len(expected) == 1 + 6 * (2 if verbose > 9 else 1)
