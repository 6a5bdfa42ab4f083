"""Test estimators (some misbehave on purpose); importable by Ray workers and subprocesses."""

import os
import signal
import time
import uuid

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
