"""raygrid.keras inside Ray workers: same bits in any process, same results as scikit-learn."""

import os
import sys

import numpy as np
import ray
from compare import assert_cv_results_equal
from sklearn.model_selection import GridSearchCV

from raygrid import RayGridSearchCV
from raygrid.keras import KerasClassifier

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples"))
from seed_grid_search import SEED_GRID, seed_data  # noqa: E402

X, _, y, _ = seed_data()  # the seed example's own scaled training data


@ray.remote(max_calls=1)  # a fresh worker process for every call
def fit_in_a_fresh_process(X, y, seed):
    import os

    model = KerasClassifier(units=64, epochs=5, random_state=seed).fit(X, y)
    return os.getpid(), model.predict_proba(X).tobytes()


def test_same_seed_same_predict_proba_in_two_ray_worker_processes():
    (pid_a, proba_a), (pid_b, proba_b) = ray.get(
        [fit_in_a_fresh_process.remote(X, y, 7), fit_in_a_fresh_process.remote(X, y, 7)]
    )
    assert pid_a != pid_b
    assert proba_a == proba_b
    _, other_seed = ray.get(fit_in_a_fresh_process.remote(X, y, 8))
    assert other_seed != proba_a


def test_seed_grid_same_cv_results_as_scikit_learn():
    theirs = GridSearchCV(KerasClassifier(random_state=0), SEED_GRID, cv=3).fit(X, y)
    ours = RayGridSearchCV(KerasClassifier(random_state=0), SEED_GRID, cv=3).fit(X, y)
    assert_cv_results_equal(ours.cv_results_, theirs.cv_results_)
    assert ours.best_params_ == theirs.best_params_
    np.testing.assert_array_equal(ours.predict_proba(X), theirs.predict_proba(X))
    # epochs [10, 20]: every 10-epoch fit was scored on the way to its 20-epoch twin
    tasks = ours.tasks_
    shared = tasks[tasks["trained_with"] != tasks["candidate"]]
    assert len(shared) == len(tasks) // 2
    assert (shared["params"].map(lambda p: p["epochs"]) == 10).all()


def test_fused_seed_grid_picks_the_same_best_parameters():
    unfused = RayGridSearchCV(KerasClassifier(random_state=0), SEED_GRID, cv=3).fit(X, y)
    fused = RayGridSearchCV(KerasClassifier(random_state=0), SEED_GRID, cv=3, fuse=True)
    fused.fit(X, y)
    assert fused.best_params_ == unfused.best_params_
    np.testing.assert_allclose(
        fused.cv_results_["mean_test_score"], unfused.cv_results_["mean_test_score"], atol=0.02
    )
    assert (fused.tasks_["fit_path"] == "fused").all()
    assert (unfused.tasks_["fit_path"] == "fast").all()


def test_one_warm_worker_memory_stays_flat_over_200_fits():
    grid = {**SEED_GRID, "epochs": [2], "random_state": list(range(6))}  # 108 candidates
    search = RayGridSearchCV(KerasClassifier(), grid, cv=2, n_jobs=1, progress=False)
    tasks = search.fit(X, y).tasks_.sort_values("end_time")
    assert len(tasks) == 216 and tasks["pid"].nunique() == 1
    rss = tasks["worker_rss"].to_numpy()
    growth_mb = (rss[199] - rss[19]) / 2**20
    assert growth_mb < 50, f"worker grew {growth_mb:.1f} MB from fit 20 to fit 200"
