"""Successive halving over a Keras grid, with the training epochs as the resource.

Every candidate of the grid first trains for a few epochs; only the best third go on to
train three times longer, and so on, so most of the training time goes to the promising
networks. Each iteration is a wave of Ray tasks on the same warm workers.

Run: ``python examples/halving_keras.py``
"""

import time

from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from raygrid import RayHalvingGridSearchCV
from raygrid.keras import KerasClassifier


def main() -> None:
    X, y = make_classification(
        n_samples=600, n_features=20, n_informative=10, n_classes=3, random_state=42
    )
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=42)
    model = make_pipeline(StandardScaler(), KerasClassifier(random_state=0))
    param_grid = {
        "kerasclassifier__units": [16, 64, 128],
        "kerasclassifier__learning_rate": [0.001, 0.01],
        "kerasclassifier__batch_size": [16, 64],
    }
    search = RayHalvingGridSearchCV(
        model,
        param_grid,
        resource="kerasclassifier__epochs",
        min_resources=3,
        max_resources=27,
        factor=3,
        cv=3,
        scoring="accuracy",
        random_state=0,
        verbose=1,
    )
    start = time.perf_counter()
    search.fit(X_train, y_train)
    elapsed = time.perf_counter() - start

    print(f"Iterations: {search.n_iterations_}, epochs per iteration: {search.n_resources_}")
    print(f"Candidates per iteration: {search.n_candidates_}")
    print(f"Best parameters: {search.best_params_}")
    print(f"Best cross-validated accuracy: {search.best_score_:.4f}")
    print(f"Held-out accuracy: {search.score(X_test, y_test):.4f}")
    print(f"{len(search.tasks_)} fits in {elapsed:.1f} s")
    columns = ["iter", "n_resources", "mean_test_score"]
    print(search.results_frame().head(5)[[*param_grid, *columns]])


if __name__ == "__main__":
    main()
