"""A search logged to MLflow (and TensorBoard), then a figure drawn from what MLflow holds.

Start a tracking server first, e.g.::

    mlflow server --host 127.0.0.1 --port 5000 --backend-store-uri sqlite:///mlflow.db

then::

    python examples/mlflow_tracking.py --uri http://127.0.0.1:5000 --tensorboard runs/digits

The grid tunes scikit-learn's ``MLPClassifier`` on the digits data shipped with
scikit-learn; each candidate's child run gets its per-epoch ``loss_curve`` as step
metrics. The figure is read back from MLflow only (child runs and metric histories):
mean test score of every candidate, and the mean learning curve of the five best.
"""

from __future__ import annotations

import argparse
import warnings

from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from raygrid import RayGridSearchCV
from raygrid.tracking import MLflowTracker, TensorBoardTracker

SHORT = {"hidden_layer_sizes": "layers", "alpha": "alpha", "learning_rate_init": "lr"}
GRID = {
    "hidden_layer_sizes": [(32,), (64,)],
    "alpha": [1e-4, 1e-2],
    "learning_rate_init": [1e-3, 1e-2],
}


def run_search(uri: str, experiment: str, tensorboard: str | None) -> RayGridSearchCV:
    """Fit the grid with MLflow (and optionally TensorBoard) tracking."""
    X, y = load_digits(return_X_y=True)
    trackers = [MLflowTracker(uri, experiment=experiment, run_name="digits-mlp")]
    if tensorboard:
        trackers.append(TensorBoardTracker(tensorboard))
    search = RayGridSearchCV(
        MLPClassifier(max_iter=30, random_state=0), GRID, cv=3, tracking=trackers
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X / 16.0, y)
    return search


def draw_from_mlflow(uri: str, run_id: str, path: str) -> None:
    """Mean test score per candidate and the best five's mean loss curves, from MLflow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    parent = client.get_run(run_id)
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'",
        order_by=["metrics.rank_test_score ASC"],
    )
    figure, (scores, curves) = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    labels = [
        ", ".join(f"{SHORT.get(k, k)}={v}" for k, v in sorted(c.data.params.items()))
        for c in children
    ]
    means = [c.data.metrics["mean_test_score"] for c in children]
    stds = [c.data.metrics["std_test_score"] for c in children]
    scores.barh(range(len(children)), means, xerr=stds, color="tab:blue", alpha=0.8)
    scores.set_yticks(range(len(children)), labels, fontsize=7)
    scores.invert_yaxis()
    scores.set_xlim(min(means) - 0.05, 1.0)
    scores.set_xlabel("mean test accuracy (± std over 3 folds)")
    scores.set_title("candidates, best first (child runs)")
    for child, label in zip(children[:5], labels[:5], strict=False):
        history = client.get_metric_history(child.info.run_id, "mean_loss_curve")
        curves.plot([m.step for m in history], [m.value for m in history], label=label)
    curves.set_yscale("log")
    curves.set_xlabel("epoch")
    curves.set_ylabel("training loss (mean over folds)")
    curves.set_title("learning curves of the 5 best")
    curves.legend(fontsize=7)
    figure.suptitle(f"MLflow run {parent.info.run_name} ({run_id[:8]})", fontsize=10)
    figure.tight_layout()
    figure.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", required=True, help="MLflow tracking URI")
    parser.add_argument("--experiment", default="digits")
    parser.add_argument("--tensorboard", help="also write TensorBoard HParams here")
    parser.add_argument("--figure", default="mlflow_runs.png")
    args = parser.parse_args()
    search = run_search(args.uri, args.experiment, args.tensorboard)
    print(f"best {search.best_params_}: {search.best_score_:.4f}")
    print(f"MLflow run {search.tracking_['mlflow']['run_id']}")
    draw_from_mlflow(args.uri, search.tracking_["mlflow"]["run_id"], args.figure)
    print(f"wrote {args.figure}")


if __name__ == "__main__":
    main()
