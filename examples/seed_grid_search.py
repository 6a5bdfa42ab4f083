"""The seed write-up's grid search, run on Ray: the only change is the import.

The wrapper below is the write-up's own ``KerasClassifierWrapper``: plain user code that
knows nothing of raygrid. Run it with ``python examples/seed_grid_search.py``; it starts
a local Ray (or joins ``RAY_ADDRESS``) and prints the best parameters, the best score
and a ranked table.
"""

import time

import numpy as np
import tensorflow as tf
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from raygrid import RayGridSearchCV  # was: from sklearn.model_selection import GridSearchCV


class KerasClassifierWrapper(BaseEstimator, ClassifierMixin):
    def __init__(self, units=32, learning_rate=0.001, epochs=10, batch_size=32):
        self.units = units
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.batch_size = batch_size
        self.model = None
        self.num_classes = None

    def fit(self, X, y):
        self.num_classes = len(np.unique(y))
        self.model = tf.keras.models.Sequential(
            [
                tf.keras.layers.Input(shape=(X.shape[1],)),
                tf.keras.layers.Dense(self.units, activation="relu"),
                tf.keras.layers.Dense(self.num_classes, activation="softmax"),
            ]
        )
        optimizer = tf.keras.optimizers.Adam(learning_rate=self.learning_rate)
        self.model.compile(
            optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"]
        )
        self.model.fit(X, y, epochs=self.epochs, batch_size=self.batch_size, verbose=0)
        return self

    def predict(self, X):
        if self.model is None:
            raise ValueError("Model not fitted. Call fit() first.")
        predictions = self.model.predict(X, verbose=0)
        return np.argmax(predictions, axis=1)


SEED_GRID = {
    "units": [32, 64, 128],
    "learning_rate": [0.001, 0.01],
    "batch_size": [16, 32, 64],
    "epochs": [10, 20],
}


def seed_data():
    """The write-up's data: 500 samples, 80/20 split, scaled on the training part."""
    X, y = make_classification(
        n_samples=500, n_features=20, n_informative=10, n_classes=3, random_state=42
    )
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=42)
    scaler = StandardScaler()
    return scaler.fit_transform(X_train), scaler.transform(X_test), y_train, y_test


def main() -> None:
    X_train_scaled, X_test_scaled, y_train, y_test = seed_data()
    param_grid = SEED_GRID
    grid_search = RayGridSearchCV(
        KerasClassifierWrapper(), param_grid, cv=3, scoring="accuracy", verbose=1
    )
    start = time.perf_counter()
    grid_search.fit(X_train_scaled, y_train)
    elapsed = time.perf_counter() - start

    print(f"Best parameters: {grid_search.best_params_}")
    print(f"Best accuracy: {grid_search.best_score_:.4f}")
    print(
        f"Held-out accuracy of the refitted best model: {grid_search.score(X_test_scaled, y_test):.4f}"
    )
    print(
        f"Search wall time: {elapsed:.1f} s for {len(grid_search.cv_results_['params']) * 3} fits"
    )
    print_ranked_table(grid_search.cv_results_, top=10)


def print_ranked_table(results: dict, top: int) -> None:
    order = np.argsort(results["rank_test_score"], kind="stable")[:top]
    names = sorted(results["params"][0])
    header = ["rank", "mean", "std", *names]
    rows = [
        [
            str(results["rank_test_score"][i]),
            f"{results['mean_test_score'][i]:.4f}",
            f"{results['std_test_score'][i]:.4f}",
            *(str(results["params"][i][n]) for n in names),
        ]
        for i in order
    ]
    widths = [max(len(h), *(len(r[j]) for r in rows)) for j, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
