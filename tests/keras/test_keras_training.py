"""The training paths: reproducibility (warm/cold, fast/model.fit, across processes),
compiled-loop reuse, accuracy against plain Keras, and process configuration."""

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from raygrid.keras import KerasClassifier, KerasRegressor, runtime, trace_cache

X, y = make_classification(
    n_samples=150, n_features=8, n_informative=5, n_classes=3, random_state=0
)
X = StandardScaler().fit_transform(X)


def build_user(hidden=8, n_features_in_=None, n_classes_=None):
    return keras.Sequential(
        [
            keras.Input((n_features_in_,)),
            keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(n_classes_, activation="softmax"),
        ]
    )


# Each configuration is fitted here and in a fresh interpreter; the hashes must agree.
CONFIGS = {
    "default": dict(units=16, epochs=4, random_state=7),
    "dropout": dict(units=16, dropout_rate=0.4, n_layers=2, epochs=4, random_state=7),
    "user": dict(model=build_user, model__hidden=6, epochs=4, random_state=7),
}


def digest(estimator):
    return hashlib.sha256(estimator.predict_proba(X).tobytes()).hexdigest()


def test_same_seed_same_bits_warm_or_cold_and_on_both_paths():
    first = {name: digest(KerasClassifier(**cfg).fit(X, y)) for name, cfg in CONFIGS.items()}
    # other fits in between: other seeds, other data sizes, other architectures
    KerasClassifier(units=16, epochs=2, random_state=1).fit(X[:90], y[:90])
    KerasClassifier(model=build_user, model__hidden=6, epochs=2, random_state=3).fit(X, y)
    KerasClassifier(units=5, epochs=2).fit(X, y)
    warm = {name: digest(KerasClassifier(**cfg).fit(X, y)) for name, cfg in CONFIGS.items()}
    assert warm == first
    trace_cache.clear_tensorflow_state()  # cold again: nothing cached, every loop traced anew
    cold = {name: digest(KerasClassifier(**cfg).fit(X, y)) for name, cfg in CONFIGS.items()}
    assert cold == first
    slow = {}
    for name, cfg in CONFIGS.items():
        est = KerasClassifier(fast_path=False, **cfg).fit(X, y)
        assert est.fit_path_ == "keras"
        slow[name] = digest(est)
    assert slow == first


def test_fast_and_keras_paths_match_for_regressor_with_weights():
    Xr, yr = X, np.column_stack([X[:, 0] - X[:, 1], X[:, 2]])
    sw = np.linspace(0.5, 2.0, len(X))
    fast = KerasRegressor(epochs=5, batch_size=16, random_state=2).fit(Xr, yr, sample_weight=sw)
    slow = KerasRegressor(epochs=5, batch_size=16, random_state=2, fast_path=False).fit(
        Xr, yr, sample_weight=sw
    )
    assert (fast.fit_path_, slow.fit_path_) == ("fast", "keras")
    np.testing.assert_array_equal(fast.predict(Xr), slow.predict(Xr))
    np.testing.assert_allclose(fast.history_["loss"], slow.history_["loss"], rtol=1e-5)


def test_unseeded_fits_differ_and_numpy_seed_makes_them_repeatable():
    a = KerasClassifier(epochs=2).fit(X, y).predict_proba(X)
    b = KerasClassifier(epochs=2).fit(X, y).predict_proba(X)
    assert not np.array_equal(a, b)
    np.random.seed(5)
    c = KerasClassifier(epochs=2).fit(X, y).predict_proba(X)
    np.random.seed(5)
    d = KerasClassifier(epochs=2).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(c, d)


def test_seeded_fit_leaves_global_generators_alone():
    import random

    np.random.seed(11)
    random.seed(11)
    KerasClassifier(model=build_user, epochs=1, random_state=0).fit(X, y)
    after = (np.random.random(), random.random())
    np.random.seed(11)
    random.seed(11)
    assert after == (np.random.random(), random.random())


def test_same_seed_same_bits_in_a_fresh_process():
    here = {name: digest(KerasClassifier(**cfg).fit(X, y)) for name, cfg in CONFIGS.items()}
    script = textwrap.dedent(
        """
        import json, sys
        sys.path.insert(0, {tests!r})
        import test_keras_training as t
        from raygrid.keras import KerasClassifier
        print(json.dumps({{n: t.digest(KerasClassifier(**c).fit(t.X, t.y))
                          for n, c in t.CONFIGS.items()}}))
        """
    ).format(tests=os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    there = json.loads(out.stdout.strip().splitlines()[-1])
    assert there == here


def test_one_compiled_loop_serves_a_whole_seed_grid():
    trace_cache.clear_cache()
    loops = set()
    for lr in (0.001, 0.01):
        for batch_size in (16, 32, 64):
            for epochs in (1, 2):
                est = KerasClassifier(
                    units=8, learning_rate=lr, batch_size=batch_size, epochs=epochs, random_state=0
                ).fit(X[: 100 + epochs], y[: 100 + epochs])
                assert est.fit_path_ == "fast"
                entry = trace_cache.cache_get(est._model_key)
                loops.update(entry.fit_loops.values())
    assert len(trace_cache.cached_keys()) == 1
    (loop,) = loops
    assert loop.experimental_get_tracing_count() == 1
    # the learning rate is not part of the key, yet each fit used its own
    a = KerasClassifier(units=8, learning_rate=0.001, epochs=10, random_state=0).fit(X, y)
    b = KerasClassifier(units=8, learning_rate=0.05, epochs=10, random_state=0).fit(X, y)
    assert b.history_["loss"][-1] < a.history_["loss"][-1]


def test_user_models_share_a_loop_by_structure():
    trace_cache.clear_cache()
    for seed in range(3):
        KerasClassifier(model=build_user, model__hidden=5, epochs=1, random_state=seed).fit(X, y)
    KerasClassifier(model=build_user, model__hidden=9, epochs=1, random_state=0).fit(X, y)
    keys = trace_cache.cached_keys()
    assert len(keys) == 2 and all(k.startswith("user:") for k in keys)


def test_cache_is_bounded(monkeypatch):
    monkeypatch.setenv(trace_cache.CACHE_SIZE_ENV, "2")
    trace_cache.clear_cache()
    fitted = [KerasClassifier(units=u, epochs=1, random_state=0).fit(X, y) for u in (3, 4, 5)]
    assert len(trace_cache.cached_keys()) == 2
    # an evicted architecture is rebuilt for prediction, with the same results
    proba = fitted[0].predict_proba(X)
    np.testing.assert_array_equal(proba, fitted[0].predict_proba(X))
    assert len(trace_cache.cached_keys()) == 2


def test_cache_can_be_turned_off(monkeypatch):
    cfg = CONFIGS["user"]
    expected = digest(KerasClassifier(**cfg).fit(X, y))
    monkeypatch.setenv(trace_cache.CACHE_SIZE_ENV, "0")
    trace_cache.clear_cache()
    est = KerasClassifier(**cfg).fit(X, y)
    assert trace_cache.cached_keys() == []
    assert digest(est) == expected


def test_accuracy_fast_path_vs_model_fit_vs_plain_keras():
    """The seed's data and a configuration from its grid, trained three ways."""
    Xs, ys = make_classification(
        n_samples=500, n_features=20, n_informative=10, n_classes=3, random_state=42
    )
    X_train, X_test, y_train, y_test = train_test_split(Xs, ys, test_size=0.2, random_state=42)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    params = dict(units=64, learning_rate=0.01, batch_size=32, epochs=20)

    fast = KerasClassifier(random_state=0, **params).fit(X_train, y_train)
    slow = KerasClassifier(random_state=0, fast_path=False, **params).fit(X_train, y_train)
    assert (fast.fit_path_, slow.fit_path_) == ("fast", "keras")
    acc_fast, acc_slow = fast.score(X_test, y_test), slow.score(X_test, y_test)

    # the seed's own recipe: plain Keras, its own initialisation and shuffling
    keras.utils.set_random_seed(0)
    plain = keras.Sequential(
        [
            keras.Input((20,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    plain.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    plain.fit(X_train, y_train, epochs=20, batch_size=32, verbose=0)
    acc_plain = float((plain.predict(X_test, verbose=0).argmax(axis=1) == y_test).mean())
    runtime.clear_kernel_cache()  # undo tf.random.set_seed's effect on later timings

    print(f"accuracy fast={acc_fast:.3f} model.fit={acc_slow:.3f} plain keras={acc_plain:.3f}")
    assert acc_fast > 0.6 and acc_slow > 0.6
    assert abs(acc_fast - acc_slow) <= 0.05
    assert abs(acc_fast - acc_plain) <= 0.1
    assert fast.history_["loss"][-1] < 0.5 * fast.history_["loss"][0]


def test_configure_tensorflow_in_a_fresh_process():
    script = textwrap.dedent(
        """
        import tensorflow as tf
        from raygrid.keras import runtime
        first = runtime.configure_tensorflow()
        again = runtime.configure_tensorflow()
        print(first, again, tf.config.threading.get_intra_op_parallelism_threads(),
              tf.config.threading.get_inter_op_parallelism_threads())
        """
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("RAYGRID_TF_THREADS", None)
    env.pop("TF_NUM_INTRAOP_THREADS", None)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["True", "False", "1", "1"]


def test_configure_tensorflow_gpu_branch(monkeypatch):
    """GPU memory growth, with TensorFlow's device API faked (no GPU on this machine)."""
    import tensorflow as tf

    calls = []
    monkeypatch.setattr(runtime, "_configured", False)
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["gpu0", "gpu1"])
    monkeypatch.setattr(
        tf.config.experimental, "set_memory_growth", lambda dev, on: calls.append((dev, on))
    )
    monkeypatch.setattr(
        tf.config.threading, "set_intra_op_parallelism_threads", lambda n: calls.append(n)
    )
    monkeypatch.setattr(
        tf.config.threading, "set_inter_op_parallelism_threads", lambda n: calls.append(n)
    )
    assert runtime.configure_tensorflow(num_threads=3)
    assert calls == [3, 3, ("gpu0", True), ("gpu1", True)]


@pytest.mark.parametrize("value, expected", [("2", 2), ("", None), ("x", None), ("0", None)])
def test_thread_count_from_env(monkeypatch, value, expected):
    for name in ("RAYGRID_TF_THREADS", "TF_NUM_INTRAOP_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert runtime.thread_count_from_env() == expected


def build_user_with_rate(learning_rate, n_features_in_=None, n_classes_=None):
    model = build_user(6, n_features_in_, n_classes_)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy"
    )
    return model


def test_one_trace_per_architecture_over_a_seed_like_grid():
    """Batch sizes × learning rates × epochs × fold sizes, fits, prefix fits and
    predictions: every compiled function of an architecture is traced once."""
    trace_cache.clear_cache()
    architectures = {
        "default-8": dict(units=8),
        "default-16-dropout": dict(units=16, dropout_rate=0.2),
        "user": dict(model=build_user_with_rate),
    }
    for params in architectures.values():
        for lr in (0.001, 0.01, 0.05):
            for batch_size in (16, 32, 64):
                for rows in (100, 101, 120):
                    est = KerasClassifier(
                        learning_rate=lr, batch_size=batch_size, epochs=3, random_state=0, **params
                    )
                    est.fit(X[:rows], y[:rows]).predict_proba(X)
                    assert est.fit_path_ == "fast"
                for _ in est.prefix_fit(X, y, values=[1, 2, 4]):
                    est.predict(X[:7])
    counts = trace_cache.trace_counts()
    assert len(counts) == len(architectures)
    for per_kind in counts.values():
        assert per_kind == {
            "assign": 1,
            "fit_loop": 1,
            "train_step": 1,
            "test_step": 0,
            "forward": 1,
            "read": 1,
        }
