"""The seed write-up's dropout variant, with raygrid's own Keras wrapper.

The write-up hand-writes ``KerasClassifierWrapperDropout`` to add a ``Dropout`` layer.
``raygrid.keras.KerasClassifier`` has ``dropout_rate`` built in (and seeded, picklable,
leak-free fits), so the search needs no wrapper code at all.

Run: ``python examples/seed_dropout.py``
"""

import time

import numpy as np
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from raygrid import RayGridSearchCV
from raygrid.keras import KerasClassifier


def main() -> None:
    X, y = make_classification(
        n_samples=500, n_features=20, n_informative=10, n_classes=3, random_state=42
    )
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=42)
    scaler = StandardScaler()
    X_train, X_test = scaler.fit_transform(X_train), scaler.transform(X_test)

    param_grid = {
        "units": [32, 64, 128],
        "learning_rate": [0.001, 0.01],
        "batch_size": [16, 32, 64],
        "epochs": [10, 20],
        "dropout_rate": [0.2, 0.5],
    }
    search = RayGridSearchCV(
        KerasClassifier(random_state=0), param_grid, cv=3, scoring="accuracy", verbose=1
    )
    start = time.perf_counter()
    search.fit(X_train, y_train)
    elapsed = time.perf_counter() - start

    n_fits = len(search.cv_results_["params"]) * search.n_splits_
    print(f"Best parameters: {search.best_params_}")
    print(f"Best cross-validated accuracy: {search.best_score_:.4f}")
    print(f"Held-out accuracy: {search.score(X_test, y_test):.4f}")
    print(f"{n_fits} fits in {elapsed:.1f} s")
    print(search.results_frame().head(5)[[*param_grid, "mean_test_score", "std_test_score"]])
    assert np.isfinite(search.best_score_)


if __name__ == "__main__":
    main()
