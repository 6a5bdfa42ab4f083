"""The seed search as a training script, to submit as a Ray job.

From the repository root, with a cluster running (e.g. ``cluster/local.sh start``)::

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python examples/train_script.py

Inside a Ray job ``RAY_ADDRESS`` is set, so ``RayGridSearchCV`` runs its fits on that
cluster; run directly (``python examples/train_script.py``) it starts a local Ray.
``--quick`` runs a 4-candidate grid instead of the seed's 36; ``--output DIR`` also
saves the results (Parquet) where ``raygrid report DIR`` reads them.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from sklearn.datasets import make_classification  # noqa: E402

from raygrid import RayGridSearchCV  # noqa: E402
from raygrid.keras import KerasClassifier  # noqa: E402

SEED_GRID = {
    "units": [32, 64, 128],
    "learning_rate": [0.001, 0.01],
    "batch_size": [16, 32, 64],
    "epochs": [10, 20],
}
QUICK_GRID = {"units": [16, 32], "learning_rate": [0.01], "batch_size": [32], "epochs": [3, 5]}


def main(argv: list[str] | None = None) -> None:
    """Run the search and print the best candidate and a ranked table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 4-candidate grid")
    parser.add_argument("--output", help="directory to save the results in (Parquet)")
    args = parser.parse_args(argv)

    X, y = make_classification(
        n_samples=400, n_features=20, n_informative=10, n_classes=3, random_state=42
    )
    search = RayGridSearchCV(
        KerasClassifier(random_state=42),
        QUICK_GRID if args.quick else SEED_GRID,
        cv=3,
        scoring="accuracy",
        verbose=1,
    )
    started = time.perf_counter()
    search.fit(X, y)
    print(f"Search took {time.perf_counter() - started:.1f} s")
    nodes = search.tasks_["node_id"].nunique()
    print(f"Fits ran on {nodes} node(s)")
    print(f"Best parameters: {search.best_params_}")
    print(f"Best cross-validation accuracy: {search.best_score_:.4f}")
    frame = search.results_frame()
    columns = [*search.param_grid, "mean_test_score", "std_test_score", "rank_test_score"]
    print(frame[columns].head(10).to_string(index=False))
    if args.output:
        search.save_results(args.output)
        print(f"Results saved to {args.output}")


if __name__ == "__main__":
    main()
