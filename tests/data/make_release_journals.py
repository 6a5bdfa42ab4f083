"""Writes the journals in this folder with the installed raygrid (run once per release).

``python tests/data/make_release_journals.py`` writes ``journal-<version>-ridge/`` and
``journal-<version>-keras/``; ``tests/store/test_release_journals.py`` resumes them with the
current code and checks that no fit runs again.
"""

import os
import shutil
import sys

from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import Ridge

import raygrid
from raygrid import RayGridSearchCV

HERE = os.path.dirname(os.path.abspath(__file__))


def ridge_search(results_dir):
    X, y = make_regression(n_samples=60, n_features=4, noise=1.0, random_state=0)
    grid = {"alpha": [0.1, 1.0, 10.0]}
    return RayGridSearchCV(Ridge(), grid, cv=3, results_dir=results_dir), X, y


def keras_search(results_dir):
    from raygrid.keras import KerasClassifier

    X, y = make_classification(n_samples=90, n_features=6, random_state=0)
    estimator = KerasClassifier(hidden_layer_sizes=(8,), epochs=2, random_state=0, verbose=0)
    grid = {"learning_rate": [0.01, 0.1]}
    return RayGridSearchCV(estimator, grid, cv=3, results_dir=results_dir), X, y


SEARCHES = {"ridge": ridge_search, "keras": keras_search}

if __name__ == "__main__":
    for name, make in SEARCHES.items():
        path = os.path.join(HERE, f"journal-{raygrid.__version__}-{name}")
        shutil.rmtree(path, ignore_errors=True)
        search, X, y = make(path)
        search.fit(X, y)
        print(name, "written to", path, file=sys.stderr)
