"""A small convolutional network on scikit-learn's bundled digits images (no download).

The 8x8 images arrive flattened (64 pixels); scaling happens inside a Pipeline, so each
fold's scaler sees only that fold's training images and no statistics leak across
folds. The network is a user ``model`` callable: its own arguments are searched as
``model__<name>``, and it asks for the fit-time facts it needs (``n_features_in_``,
``n_classes_``).

Run: ``python examples/digits_image_classification.py``
"""

import time

import keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler

from raygrid import RayGridSearchCV
from raygrid.keras import KerasClassifier


def small_cnn(n_features_in_, n_classes_, filters=8, dense=32):
    """8x8 grey images (flattened) -> one conv layer -> dense -> softmax."""
    side = int(round(n_features_in_**0.5))
    return keras.Sequential(
        [
            keras.Input(shape=(n_features_in_,)),
            keras.layers.Reshape((side, side, 1)),
            keras.layers.Conv2D(filters, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(dense, activation="relu"),
            keras.layers.Dense(n_classes_, activation="softmax"),
        ]
    )


def main() -> None:
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0
    )
    pipeline = Pipeline(
        [
            ("scale", MinMaxScaler()),
            (
                "cnn",
                KerasClassifier(
                    model=small_cnn, model__filters=8, model__dense=32, epochs=10, random_state=0
                ),
            ),
        ]
    )
    grid = {
        "cnn__model__filters": [4, 8],
        "cnn__model__dense": [16, 32],
        "cnn__learning_rate": [0.003, 0.01],
    }
    search = RayGridSearchCV(pipeline, grid, cv=3, scoring="accuracy", verbose=1)
    start = time.perf_counter()
    search.fit(X_train, y_train)
    print(f"Search took {time.perf_counter() - start:.1f} s")
    print(f"Best parameters: {search.best_params_}")
    print(f"Best cross-validated accuracy: {search.best_score_:.4f}")
    print(f"Held-out accuracy: {search.score(X_test, y_test):.4f}")


if __name__ == "__main__":
    main()
