"""The seed search with early stopping choosing the number of epochs, fold by fold.

Instead of searching ``epochs`` over [10, 20], each fit holds out 10% of the rows it is
given (stratified, drawn from ``random_state``), trains up to ``max_iter`` epochs in the
compiled loop, stops after ``n_iter_no_change`` epochs without a better validation loss
and keeps the best epoch's weights. Inside the search the held-out rows come from each
fold's training part, so the fold's test part never steers training; the refit holds
out its own 10% of all the training data.

Run: ``python examples/early_stopping_search.py``
"""

import os
import sys
import time

import numpy as np

from raygrid import RayGridSearchCV
from raygrid.keras import KerasClassifier

sys.path.insert(0, os.path.dirname(__file__))
from seed_grid_search import SEED_GRID, seed_data  # noqa: E402


def main() -> None:
    X_train, X_test, y_train, y_test = seed_data()
    param_grid = {name: values for name, values in SEED_GRID.items() if name != "epochs"}
    estimator = KerasClassifier(
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=10,
        max_iter=200,
        random_state=0,
    )
    search = RayGridSearchCV(estimator, param_grid, cv=3, scoring="accuracy")
    start = time.perf_counter()
    search.fit(X_train, y_train)
    elapsed = time.perf_counter() - start

    best = search.best_estimator_
    n_fits = len(search.cv_results_["params"]) * search.n_splits_
    print(f"Best parameters: {search.best_params_}")
    print(f"Best cross-validated accuracy: {search.best_score_:.4f}")
    print(f"Held-out accuracy: {search.score(X_test, y_test):.4f}")
    print(f"{n_fits} fits in {elapsed:.1f} s")
    print(
        f"Refit: {best.n_iter_} epochs run, weights of epoch {best.best_epoch_} kept "
        f"(validation loss {best.validation_loss_curve_[best.best_epoch_ - 1]:.4f}, "
        f"{len(best.validation_indices_)} held-out rows)"
    )
    # Each fold's stopping facts: epochs run and the epoch whose weights were kept.
    best_folds = search.tasks_[search.tasks_["candidate"] == search.best_index_]
    print(best_folds[["candidate", "split", "n_iter", "best_epoch"]].to_string(index=False))
    assert np.isfinite(search.best_score_)


if __name__ == "__main__":
    main()
