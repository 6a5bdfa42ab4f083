"""Writes ``results-<version>-tree/`` with the installed raygrid's ``save_results`` (run
once per release whose saved layout changes).

``tests/store/test_saved_results.py`` reads it with the current code: ``load_results`` and
``raygrid report`` must still read what earlier releases saved.
"""

import os
import shutil

from sklearn.datasets import make_classification
from sklearn.tree import DecisionTreeClassifier

import raygrid
from raygrid import RayGridSearchCV

HERE = os.path.dirname(os.path.abspath(__file__))
GRID = {"max_depth": [1, 3, None], "criterion": ["gini", "entropy"]}


def tree_search():
    X, y = make_classification(n_samples=80, n_features=5, random_state=0)
    return RayGridSearchCV(DecisionTreeClassifier(random_state=0), GRID, cv=3), X, y


if __name__ == "__main__":
    path = os.path.join(HERE, f"results-{raygrid.__version__}-tree")
    shutil.rmtree(path, ignore_errors=True)
    search, X, y = tree_search()
    search.fit(X, y).save_results(path)
    print(f"wrote {path}")
