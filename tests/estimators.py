"""Test estimators (some misbehave on purpose); importable by Ray workers and subprocesses."""

import os
import signal
import time
import uuid
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression, Ridge


class SlowRidge(Ridge):
    """Ridge that sleeps ``delay`` seconds per fit and leaves one marker file per fit.

    ``marker_dir`` counts fits across processes: each fit writes ``fit-<uuid>`` there.
    ``kill_once`` (a file path) makes the first fit of candidate ``alpha == kill_alpha``
    SIGKILL its own worker process; the file marks that it happened. ``kill_always``
    kills on every fit of that candidate; ``kill_rows`` kills (once) the first fit on
    that many rows instead, e.g. the refit on all the data.
    """

    def __init__(
        self,
        alpha=1.0,
        delay=0.0,
        marker_dir=None,
        kill_once=None,
        kill_alpha=None,
        kill_always=False,
        kill_rows=None,
    ):
        super().__init__(alpha=alpha)
        self.delay = delay
        self.marker_dir = marker_dir
        self.kill_once = kill_once
        self.kill_alpha = kill_alpha
        self.kill_always = kill_always
        self.kill_rows = kill_rows

    def fit(self, X, y, **kwargs):
        refit_to_kill = self.kill_rows is not None and len(X) == self.kill_rows
        if refit_to_kill and not os.path.exists(self.kill_once):
            with open(self.kill_once, "w") as f:
                f.write(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        if self.alpha == self.kill_alpha:
            if self.kill_always:
                os.kill(os.getpid(), signal.SIGKILL)
            if self.kill_once and not os.path.exists(self.kill_once):
                with open(self.kill_once, "w") as f:
                    f.write(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
        deadline = time.time() + self.delay
        while time.time() < deadline:
            time.sleep(0.02)
        if self.marker_dir:
            with open(os.path.join(self.marker_dir, f"fit-{uuid.uuid4().hex}"), "w") as f:
                f.write(f"{self.alpha} {os.getpid()} {time.time()}")
        return super().fit(X, y, **kwargs)


class FailingRidge(Ridge):
    """Ridge whose fit raises for every alpha at or above ``fail_from``."""

    def __init__(self, alpha=1.0, fail_from=10.0):
        super().__init__(alpha=alpha)
        self.fail_from = fail_from

    def fit(self, X, y, **kwargs):
        if self.alpha >= self.fail_from:
            raise ArithmeticError(f"alpha={self.alpha} refuses to fit")
        return super().fit(X, y, **kwargs)


class ProbeRidge(Ridge):
    """Ridge that records, per fit, which process ran it and what devices it saw.

    Each fit writes ``probe-<uuid>`` into ``probe_dir``: pid, CUDA_VISIBLE_DEVICES,
    whether TensorFlow was already imported in the process, start and end times. With
    ``import_tf`` the fit imports TensorFlow, as a Keras fit would.
    """

    def __init__(self, alpha=1.0, probe_dir=None, import_tf=False, delay=0.0):
        super().__init__(alpha=alpha)
        self.probe_dir = probe_dir
        self.import_tf = import_tf
        self.delay = delay

    def fit(self, X, y, **kwargs):
        import json
        import sys

        start = time.time()
        tf_loaded = "tensorflow" in sys.modules
        if self.import_tf:
            import tensorflow  # noqa: F401
        time.sleep(self.delay)
        super().fit(X, y, **kwargs)
        if self.probe_dir:
            probe = {
                "pid": os.getpid(),
                "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "tf_loaded": tf_loaded,
                "start": start,
                "end": time.time(),
            }
            with open(os.path.join(self.probe_dir, f"probe-{uuid.uuid4().hex}"), "w") as f:
                json.dump(probe, f)
        return self


class FlatImageClassifier(BaseEstimator, ClassifierMixin):
    """A user's own classifier written like the seed's wrapper (default tags) that takes
    image arrays of shape (n, height, width, channels) and flattens them itself."""

    def __init__(self, C=1.0):
        self.C = C

    def fit(self, X, y):
        X = np.asarray(X)
        self.model_ = LogisticRegression(C=self.C, max_iter=200).fit(X.reshape(len(X), -1), y)
        self.classes_ = self.model_.classes_
        return self

    def predict(self, X):
        X = np.asarray(X)
        return self.model_.predict(X.reshape(len(X), -1))


class MisbehavingRidge(Ridge):
    """Ridge whose fit misbehaves for ``alpha == bad_alpha``, as ``how`` says.

    ``'hang'`` sleeps for an hour; ``'keyboard_interrupt'`` and ``'system_exit'`` raise
    ``KeyboardInterrupt`` / ``SystemExit(3)``; ``'exit'`` ends the process with
    ``os._exit(3)``; ``'hog'`` holds ``hog_mib`` MiB of memory for 20 s. Each misbehaving
    fit first writes a marker file into ``marker_dir`` (to count attempts across
    processes).
    """

    def __init__(self, alpha=1.0, bad_alpha=None, how=None, marker_dir=None, hog_mib=0):
        super().__init__(alpha=alpha)
        self.bad_alpha = bad_alpha
        self.how = how
        self.marker_dir = marker_dir
        self.hog_mib = hog_mib

    def fit(self, X, y, **kwargs):
        if self.alpha == self.bad_alpha:
            if self.marker_dir:
                with open(os.path.join(self.marker_dir, f"bad-{uuid.uuid4().hex}"), "w") as f:
                    f.write(str(os.getpid()))
            if self.how == "hang":
                time.sleep(3600)
            elif self.how == "keyboard_interrupt":
                raise KeyboardInterrupt("fit interrupted itself")
            elif self.how == "system_exit":
                raise SystemExit(3)
            elif self.how == "exit":
                os._exit(3)
            elif self.how == "hog":
                hog = np.ones(self.hog_mib * 2**20 // 8)
                time.sleep(20)
                del hog
        return super().fit(X, y, **kwargs)


class SessionProbeRidge(Ridge):
    """Ridge whose every fit writes the Ray session it ran in into ``probe_dir``."""

    def __init__(self, alpha=1.0, probe_dir=None):
        super().__init__(alpha=alpha)
        self.probe_dir = probe_dir

    def fit(self, X, y, **kwargs):
        import ray

        if self.probe_dir and ray.is_initialized():
            name = ray.get_runtime_context().get_session_name()
            with open(os.path.join(self.probe_dir, f"session-{uuid.uuid4().hex}"), "w") as f:
                f.write(name)
        return super().fit(X, y, **kwargs)


class StepRegressor(BaseEstimator):
    """A user's own estimator opting in to prefix sharing: ``n_steps`` gradient steps.

    ``schedule="decay"`` sizes the step length from ``n_steps``, so a longer fit does not
    pass through a shorter one's state: it declares no shareable parameter then.
    ``fail_after`` makes training raise once that many steps have run.
    """

    def __init__(self, n_steps=10, lr=0.1, schedule="constant", fail_after=None):
        self.n_steps = n_steps
        self.lr = lr
        self.schedule = schedule
        self.fail_after = fail_after

    def prefix_fit_param(self):
        return "n_steps" if self.schedule == "constant" else None

    def prefix_fit(self, X, y, *, values, resume=False):
        X, y = np.asarray(X, dtype=float), np.asarray(y, dtype=float)
        done = self.n_iter_ if resume else 0
        if not resume:
            self.coef_ = np.zeros(X.shape[1])
        self.steps_trained_ = 0
        for step in range(done + 1, max(values) + 1):
            self._step(X, y, step)
            self.steps_trained_ += 1
            if step in values:
                self.n_iter_ = step
                yield step

    def fit(self, X, y):
        X, y = np.asarray(X, dtype=float), np.asarray(y, dtype=float)
        self.coef_ = np.zeros(X.shape[1])
        for step in range(1, self.n_steps + 1):
            self._step(X, y, step)
        self.n_iter_ = self.n_steps
        return self

    def _step(self, X, y, step):
        if self.fail_after is not None and step > self.fail_after:
            raise ValueError(f"diverged at step {step}")
        lr = self.lr if self.schedule == "constant" else self.lr * (1 - step / (self.n_steps + 1))
        self.coef_ = self.coef_ - lr * X.T @ (X @ self.coef_ - y) / len(y)

    def predict(self, X):
        return np.asarray(X, dtype=float) @ self.coef_

    def score(self, X, y):
        return -float(np.mean((self.predict(X) - np.asarray(y)) ** 2))


class ChattySeedWrapper(BaseEstimator, ClassifierMixin):
    """The seed write-up's Keras wrapper (a new ``Sequential`` and ``model.fit`` per fit).

    Like user code, it also prints a line of its own and raises a warning in each fit.
    TensorFlow is imported in ``fit``, so the driver of a search with ``refit=False``
    never imports it.
    """

    def __init__(self, units=8, learning_rate=0.01, epochs=2, batch_size=32):
        self.units = units
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.batch_size = batch_size

    def fit(self, X, y):
        import tensorflow as tf

        print(f"chatty wrapper: fitting units={self.units}", flush=True)
        warnings.warn("chatty wrapper: a warning from fit", UserWarning, stacklevel=2)
        self.classes_ = np.unique(y)
        self.model_ = tf.keras.models.Sequential(
            [
                tf.keras.layers.Input(shape=(X.shape[1],)),
                tf.keras.layers.Dense(self.units, activation="relu"),
                tf.keras.layers.Dense(len(self.classes_), activation="softmax"),
            ]
        )
        self.model_.compile(
            optimizer=tf.keras.optimizers.Adam(learning_rate=self.learning_rate),
            loss="sparse_categorical_crossentropy",
        )
        self.model_.fit(X, y, epochs=self.epochs, batch_size=self.batch_size, verbose=0)
        return self

    def predict(self, X):
        return self.classes_[np.argmax(self.model_.predict(X, verbose=0), axis=1)]


class RaiseOnceRidge(Ridge):
    """Ridge whose first fit of candidate ``alpha == raise_alpha`` raises ValueError.

    ``marker`` (a file path) records that it happened, so a rerun fits normally: an
    interrupted search that can be resumed.
    """

    def __init__(self, alpha=1.0, raise_alpha=None, marker=None):
        super().__init__(alpha=alpha)
        self.raise_alpha = raise_alpha
        self.marker = marker

    def fit(self, X, y, **kwargs):
        if self.alpha == self.raise_alpha and not os.path.exists(self.marker):
            with open(self.marker, "w") as f:
                f.write(str(os.getpid()))
            raise ValueError("RaiseOnceRidge: the planned failure")
        return super().fit(X, y, **kwargs)


class ConfigProbeRidge(Ridge):
    """Ridge whose fit raises unless scikit-learn's ``transform_output`` is ``expect``."""

    def __init__(self, alpha=1.0, expect="default"):
        super().__init__(alpha=alpha)
        self.expect = expect

    def fit(self, X, y, **kwargs):
        import sklearn

        seen = sklearn.get_config()["transform_output"]
        if seen != self.expect:
            raise RuntimeError(f"fit saw transform_output={seen!r}, not {self.expect!r}")
        return super().fit(X, y, **kwargs)
