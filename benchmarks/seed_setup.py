"""The seed write-up's grid and data, without TensorFlow.

``examples/seed_grid_search.py`` holds the same grid and data next to the write-up's own
Keras wrapper, and so imports TensorFlow. A ``raygrid.keras`` script needs neither in
its driver (the workers import TensorFlow), so the benchmarks' ``raygrid.keras`` runs take
the grid and data from here; ``tests/project/test_benchmarks_setup.py`` checks both are equal.
"""

from __future__ import annotations

SEED_GRID = {
    "units": [32, 64, 128],
    "learning_rate": [0.001, 0.01],
    "batch_size": [16, 32, 64],
    "epochs": [10, 20],
}


def seed_data() -> tuple:
    """The write-up's data: 500 samples, 80/20 split, scaled on the training part."""
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = make_classification(
        n_samples=500, n_features=20, n_informative=10, n_classes=3, random_state=42
    )
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=42)
    scaler = StandardScaler()
    return scaler.fit_transform(X_train), scaler.transform(X_test), y_train, y_test
