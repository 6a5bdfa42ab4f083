"""Time one fit of the seed's grid: raygrid's fast path against model.fit.

The seed's data (make_classification(500, 20, n_informative=10, n_classes=3), scaled) is
split like one fold of a 3-fold search on the 400 training rows (267 rows), and a seed
configuration (units=64, learning_rate=0.001, batch_size=32, epochs=10) is fitted:

* ``fast, warm``: ``KerasClassifier`` with its compiled loop already traced (what every
  fit after the first costs in a long-lived worker);
* ``fast, first``: the same after the cache was cleared (trace included);
* ``model.fit, warm``: ``KerasClassifier(fast_path=False)`` on its cached model;
* ``seed wrapper``: the seed write-up's recipe, building, compiling and fitting a new
  model each time with ``model.fit``.

Usage: ``python benchmarks/keras_fit_speed.py [--repeats 7] [--threads 1]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed fits per variant")
    parser.add_argument(
        "--threads", type=int, default=1, help="TensorFlow threads (a 1-CPU Ray task)"
    )
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    from raygrid.keras import KerasClassifier, clear_tensorflow_state, configure_tensorflow

    configure_tensorflow(args.threads)

    import keras
    import numpy as np
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = make_classification(
        n_samples=500, n_features=20, n_informative=10, n_classes=3, random_state=42
    )
    X_train, _, y_train, _ = train_test_split(X, y, test_size=0.2, random_state=42)
    X_train = StandardScaler().fit_transform(X_train)
    X_fold, y_fold = X_train[:267], y_train[:267]
    params = dict(units=64, learning_rate=0.001, batch_size=32, epochs=10)

    def timed(make, repeats):
        times = []
        for seed in range(repeats):
            started = time.perf_counter()
            make(seed)
            times.append(time.perf_counter() - started)
        return times

    def seed_wrapper(_):
        # Unseeded, as in the seed: keras.utils.set_random_seed would also clear
        # TensorFlow's kernel caches and slow every later call down.
        model = keras.Sequential(
            [
                keras.Input((X_fold.shape[1],)),
                keras.layers.Dense(params["units"], activation="relu"),
                keras.layers.Dense(3, activation="softmax"),
            ]
        )
        model.compile(
            optimizer=keras.optimizers.Adam(params["learning_rate"]),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        model.fit(X_fold, y_fold, epochs=params["epochs"], batch_size=32, verbose=0)

    def fast(seed):
        return KerasClassifier(random_state=seed, **params).fit(X_fold, y_fold)

    def slow(seed):
        return KerasClassifier(random_state=seed, fast_path=False, **params).fit(X_fold, y_fold)

    results = {}
    clear_tensorflow_state()
    results["fast, first (trace)"] = timed(fast, 1)
    results["fast, warm"] = timed(fast, args.repeats)
    slow(0)  # trace model.fit's own train function once
    results["model.fit, warm"] = timed(slow, args.repeats)
    seed_wrapper(0)
    results["seed wrapper (new model)"] = timed(seed_wrapper, args.repeats)

    clf = fast(0)
    predict_times = timed(lambda _: clf.predict(X_fold), args.repeats)
    plain = clf.model_
    keras_predict_times = timed(lambda _: plain.predict(X_fold, verbose=0), args.repeats)

    warm = statistics.median(results["fast, warm"])
    print(f"one seed fit, {len(X_fold)} rows, {params}, {args.threads} TF thread(s)")
    print(f"{'variant':28s} {'median ms':>10s} {'x fast warm':>12s}")
    for name, times in results.items():
        median = statistics.median(times)
        print(f"{name:28s} {median * 1e3:10.1f} {median / warm:12.1f}")
    p_ours, p_keras = statistics.median(predict_times), statistics.median(keras_predict_times)
    print(
        f"predict: wrapper {p_ours * 1e3:.1f} ms, model.predict {p_keras * 1e3:.1f} ms "
        f"({p_keras / p_ours:.1f}x)"
    )
    print(f"fast path accuracy (train fold): {clf.score(X_fold, y_fold):.3f}")
    assert np.isfinite(warm)


if __name__ == "__main__":
    main()
