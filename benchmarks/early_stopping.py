"""What early stopping costs: per fit (compiled loop vs model.fit + Keras' EarlyStopping)
and per search (the seed grid with fixed epochs vs early stopping), all in one run.

Per fit: one fold of the seed search (267 of the seed's 400 scaled training rows), the
seed network (units=64, learning_rate=0.001, batch_size=32), one TensorFlow thread (a
1-CPU Ray task). Variants, each over ``--repeats`` seeds:

* ``fast, early_stopping``: ``KerasClassifier(early_stopping=True)``, the compiled loop
  (10% held out, up to max_iter=200 epochs, n_iter_no_change=10, tol=1e-4);
* ``model.fit + EarlyStopping``: the same split and seed trained by ``model.fit`` with
  ``keras.callbacks.EarlyStopping(min_delta=1e-4, patience=10, restore_best_weights=True)``;
* ``fast, epochs=10`` and ``fast, default epochs`` (training-loss plateau) for scale.

"cold" is the first fit of a variant in the process (tracing included), "warm" the median
of the later ones. Per search: ``RayGridSearchCV`` on the seed grid (36 candidates with
``epochs`` in [10, 20]) and on the seed grid without ``epochs`` and with
``early_stopping=True`` (18 candidates), cold (first run, Ray start excluded) and warm
(median of ``--search-repeats`` later runs).

Usage: ``python benchmarks/early_stopping.py [--repeats 7] [--search-repeats 3] [--no-search]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed fits per variant")
    parser.add_argument("--no-search", action="store_true", help="skip the search part")
    parser.add_argument("--search-repeats", type=int, default=3, help="warm runs per search")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", message=".*max_iter.*")

    from raygrid.keras import KerasClassifier, clear_tensorflow_state, configure_tensorflow

    configure_tensorflow(1)

    import keras
    import numpy as np

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
    from seed_grid_search import SEED_GRID, seed_data

    X_train, X_test, y_train, y_test = seed_data()
    X_fold, y_fold = X_train[:267], y_train[:267]
    seed_net = dict(units=64, learning_rate=0.001, batch_size=32)

    def fast_es(seed):
        return KerasClassifier(early_stopping=True, random_state=seed, **seed_net).fit(
            X_fold, y_fold
        )

    def keras_es(seed):
        # the split the fast path would use for this seed, then model.fit with Keras' callback
        held = fast_split[seed]
        kept = np.setdiff1d(np.arange(len(X_fold)), held)
        stop = keras.callbacks.EarlyStopping(
            monitor="val_loss", min_delta=1e-4, patience=10, restore_best_weights=True
        )
        return KerasClassifier(epochs=200, random_state=seed, **seed_net).fit(
            X_fold[kept],
            y_fold[kept],
            callbacks=[stop],
            validation_data=(X_fold[held], y_fold[held]),
        )

    def fast_fixed(seed):
        return KerasClassifier(epochs=10, random_state=seed, **seed_net).fit(X_fold, y_fold)

    def fast_default(seed):
        return KerasClassifier(random_state=seed, **seed_net).fit(X_fold, y_fold)

    def timed(make, seeds):
        times, fitted = [], []
        for seed in seeds:
            started = time.perf_counter()
            fitted.append(make(seed))
            times.append(time.perf_counter() - started)
        return times, fitted

    seeds = list(range(args.repeats + 1))
    clear_tensorflow_state()
    fast_split = {}
    rows = {}
    for name, make in (
        ("fast, early_stopping", fast_es),
        ("model.fit + EarlyStopping", keras_es),
        ("fast, epochs=10", fast_fixed),
        ("fast, default epochs", fast_default),
    ):
        times, fitted = timed(make, seeds)
        if make is fast_es:
            fast_split.update(
                {s: f.validation_indices_ for s, f in zip(seeds, fitted, strict=True)}
            )
        rows[name] = (times, fitted)

    same = all(
        (a.n_iter_, a.best_epoch_) == (b.n_iter_, b.best_epoch_)
        for a, b in zip(
            rows["fast, early_stopping"][1], rows["model.fit + EarlyStopping"][1], strict=True
        )
    )
    print(
        f"one fit: {len(X_fold)} rows, {seed_net}, 1 TF thread, seeds {seeds[0]}..{seeds[-1]} "
        f"(cold = seed {seeds[0]}, warm = median of the other {args.repeats})"
    )
    print(
        f"{'variant':28s} {'cold ms':>9s} {'warm ms':>9s} {'epochs':>7s} {'ms/epoch':>9s} "
        f"{'best ep':>8s} {'accuracy':>9s}"
    )
    warm = {}
    for name, (times, fitted) in rows.items():
        warm[name] = statistics.median(times[1:])
        epochs = statistics.median(f.n_iter_ for f in fitted[1:])
        best = [f.best_epoch_ for f in fitted[1:] if f.best_epoch_ is not None]
        accuracy = statistics.median(f.score(X_test, y_test) for f in fitted[1:])
        print(
            f"{name:28s} {times[0] * 1e3:9.1f} {warm[name] * 1e3:9.1f} {epochs:7.0f} "
            f"{warm[name] * 1e3 / epochs:9.2f} {statistics.median(best) if best else '-':>8} "
            f"{accuracy:9.3f}"
        )
    ratio = warm["model.fit + EarlyStopping"] / warm["fast, early_stopping"]
    print(f"warm per-fit ratio model.fit+EarlyStopping / fast early_stopping: {ratio:.1f}x")
    print(
        "warm per-fit ratio fast early_stopping / fast epochs=10: "
        f"{warm['fast, early_stopping'] / warm['fast, epochs=10']:.1f}x"
    )
    print(f"same stopping epoch and best epoch on both paths for every seed: {same}")

    if args.no_search:
        return
    from raygrid import RayGridSearchCV
    from raygrid.local.connect import start_local

    start_local(num_cpus=2, log_to_driver=False)
    no_epochs = {k: v for k, v in SEED_GRID.items() if k != "epochs"}
    searches = {
        "seed grid, epochs in [10, 20]": (KerasClassifier(random_state=0), SEED_GRID),
        "seed grid, early_stopping": (
            KerasClassifier(early_stopping=True, random_state=0),
            no_epochs,
        ),
    }
    print()
    print("search: RayGridSearchCV(cv=3) on the seed's 400 training rows, 2 CPU slots")
    print(
        f"{'search':30s} {'fits':>5s} {'cold s':>7s} {'warm s':>7s} {'best cv':>8s} "
        f"{'test acc':>9s}  best params (refit's epochs)"
    )
    warm_search = {}
    for name, (estimator, grid) in searches.items():
        walls = []
        for _ in range(1 + args.search_repeats):
            search = RayGridSearchCV(estimator, grid, cv=3, progress=False)
            started = time.perf_counter()
            search.fit(X_train, y_train)
            walls.append(time.perf_counter() - started)
        n_fits = len(search.cv_results_["params"]) * 3
        warm_search[name] = statistics.median(walls[1:])
        best = search.best_estimator_
        print(
            f"{name:30s} {n_fits:5d} {walls[0]:7.1f} {warm_search[name]:7.1f} "
            f"{search.best_score_:8.4f} {search.score(X_test, y_test):9.4f}  "
            f"{search.best_params_} ({best.n_iter_})"
        )
    fixed, stopped = warm_search.values()
    print(f"warm search ratio early_stopping / fixed epochs: {stopped / fixed:.2f}x")


if __name__ == "__main__":
    main()
