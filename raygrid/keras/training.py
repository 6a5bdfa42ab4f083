"""Training and inference sessions: the API the wrappers train and predict through.

:func:`acquire` gives a fit a :class:`TrainingSession` on a compiled model from the cache
(:mod:`raygrid.keras.trace_cache`), reset to the fit's initial state; the session trains
in the compiled loop (:mod:`raygrid.keras.compiled_loop`) or with ``model.fit``, and
reports a :class:`FitResult`. :func:`predict` runs a fitted model's forward pass through
the same cache.

Fallback
    Callbacks, ``validation_split``/``validation_data``, ``verbose > 0`` and other
    ``model.fit`` arguments, or ``fast_path=False``, use ``model.fit`` (the compiled loop
    cannot call a Python callback between epochs); so does a model the fast loop fails on
    (logged once per architecture). The fallback feeds ``model.fit`` the very batches,
    in the very order, the fast path uses, and both run the same loss and optimizer ops,
    so the two paths agree: the same seed gave bitwise-identical predictions and weights
    in this package's tests. The path is a function of the parameters alone, so a given
    configuration always takes the same one; ``fit_path_`` on the estimator tells which.

Reproducibility
    A seeded fit is a function of the seed only, whether the cache was warm or cold:
    the initial values come from the seed (a NumPy generator for the default network,
    a seeded build for a user's model), the optimizer starts from its built state, the
    shuffling is stateless. Across processes, bitwise equality was observed here for the
    small networks of the tests with 1 and 2 TensorFlow threads; in general it needs the
    same thread count and hardware/library build (intra-op parallel reductions in large
    ops may change the summation order); see
    :func:`raygrid.keras.runtime.configure_tensorflow`.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from raygrid.keras import compiled_loop, trace_cache
from raygrid.keras.compiled_loop import Trained
from raygrid.keras.runtime import seeded_keras
from raygrid.keras.trace_cache import Entry

logger = logging.getLogger(__name__)

#: Rows per forward call in :func:`predict`.
PREDICT_CHUNK = 16384
#: Forward calls take a multiple of this many rows (see :func:`_forward_padded`).
PREDICT_PAD = 64
# What the training loops may watch for a plateau.
_MONITORS = (None, "loss", "val_loss")


@dataclass
class FitOptions:
    """How to train: what ``model.fit`` would be told, plus when to stop.

    Attributes
    ----------
    epochs : int
        Number of epochs; the maximum number when ``monitor`` is set.
    batch_size, shuffle, verbose
        As in ``model.fit``.
    monitor : {None, "loss", "val_loss"}
        The quantity whose plateau ends training before ``epochs``: None trains exactly
        ``epochs`` epochs; ``"loss"`` watches the training loss; ``"val_loss"`` the loss
        on ``stop_validation``.
    tol : float
        An epoch improves when the monitored loss is below the best so far by more than
        ``tol``.
    patience : int
        Training stops after this many epochs in a row without improvement.
    restore_best : bool
        Leave the weights of the best epoch (rather than the last) in the model.
    stop_validation : tuple, optional
        ``(x, y, sample_weight)``, encoded, on which ``"val_loss"`` is computed (in
        batches of ``batch_size``, as ``model.fit`` does); does not force ``model.fit``.
    callbacks : list, optional
        Keras callbacks; any forces ``model.fit``.
    validation_split : float
        Fraction of the data, taken from the end before shuffling as Keras does, held
        out for validation; non-zero forces ``model.fit``.
    validation_data : tuple, optional
        ``(x, y)`` or ``(x, y, sample_weight)``, already encoded; forces ``model.fit``.
    fast_path : bool
        False forces ``model.fit``.
    fit_kwargs : dict
        Further ``model.fit`` arguments; any forces ``model.fit``.
    """

    epochs: int = 10
    batch_size: int = 32
    shuffle: bool = True
    verbose: int = 0
    monitor: str | None = None
    tol: float = 1e-4
    patience: int = 10
    restore_best: bool = False
    stop_validation: tuple | None = None
    callbacks: list | None = None
    validation_split: float = 0.0
    validation_data: tuple | None = None
    fast_path: bool = True
    fit_kwargs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.monitor not in _MONITORS:
            raise ValueError(f"monitor must be one of {list(_MONITORS)}, got {self.monitor!r}.")

    def wants_fast_path(self) -> bool:
        """Whether these options can be honoured by the compiled loop."""
        return bool(
            self.fast_path
            and not self.callbacks
            and not self.validation_split
            and self.validation_data is None
            and not self.verbose
            and not self.fit_kwargs
        )


@dataclass
class FitResult:
    """What a fit leaves behind.

    Attributes
    ----------
    weights : list of numpy.ndarray
        ``model.get_weights()`` after training.
    history : dict
        Per-epoch values, ``{"loss": [...]}`` (plus whatever ``model.fit`` logged).
    path : str
        ``"fast"`` or ``"keras"``.
    n_iter : int
        Epochs run.
    best_epoch : int or None
        1-based epoch whose weights were kept, when the best ones were restored.
    stopped : bool
        Whether the monitored loss stopped training before the last allowed epoch.
    key : str
        Cache key of the architecture, for :func:`predict`.
    token : str
        Identifies these weights, so that predictions skip reloading them when the
        cached model still holds them.
    """

    weights: list[np.ndarray]
    history: dict[str, list[float]]
    path: str
    n_iter: int
    best_epoch: int | None
    stopped: bool
    key: str
    token: str


def _give_up_fast_path(entry: Entry, error: Exception) -> None:
    """After the compiled loop failed: this architecture trains with ``model.fit`` from now on."""
    logger.warning(
        "raygrid.keras: fast training loop failed (%s: %s); using model.fit "
        "for this architecture from now on",
        type(error).__name__,
        error,
    )
    entry.fast_failed = True
    entry.fit_loops.clear()
    entry.fit_calls.clear()


def _as_sample_weight(x: np.ndarray, sample_weight: np.ndarray | None) -> np.ndarray:
    """The sample weights as float32, ones when there are none."""
    sw = np.ones(len(x), np.float32) if sample_weight is None else sample_weight
    return np.asarray(sw, dtype=np.float32)


class TrainingSession:
    """A compiled model reset to its initial state for one fit; holds the model's lock.

    Use as a context manager; obtained from :func:`acquire`.

    Attributes
    ----------
    model : keras.Model
        The compiled model, to be inspected (output width, loss) before :meth:`fit`.
    key : str
        Its cache key.
    """

    def __init__(
        self,
        entry: Entry,
        key: str,
        initial: list[np.ndarray],
        learning_rate: float | None,
    ) -> None:
        self._entry = entry
        self.model = entry.model
        self.key = key
        self._initial = initial
        self._learning_rate = learning_rate

    @property
    def initial_values(self) -> list[np.ndarray]:
        """The values ``model.variables`` start the fit from, in that order."""
        return self._initial

    @property
    def weight_positions(self) -> list[int]:
        """Where each of ``model.get_weights()`` sits in ``model.variables``."""
        return self._entry.weight_positions

    def __enter__(self) -> TrainingSession:
        self._entry.lock.acquire()
        self._entry.reset(self._initial, self._learning_rate)
        # Lets fit_prefixes, right after this block, skip resetting a model nobody used.
        self._fresh_token = uuid.uuid4().hex
        self._entry.loaded_token = self._fresh_token
        return self

    def __exit__(self, *exc: object) -> None:
        self._entry.lock.release()

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        sample_weight: np.ndarray | None,
        options: FitOptions,
        seed: int,
    ) -> FitResult:
        """Train the model in place and return its weights and history.

        Parameters
        ----------
        x : ndarray of shape (n_samples, ...)
            float32 features.
        y : ndarray
            Encoded targets, as the model's loss expects them.
        sample_weight : ndarray of shape (n_samples,) or None
        options : FitOptions
        seed : int
            Seeds the per-epoch shuffling.

        Returns
        -------
        FitResult
        """
        if options.monitor == "val_loss" and options.stop_validation is None:
            raise ValueError('monitor="val_loss" needs stop_validation data.')
        entry = self._entry
        sw = _as_sample_weight(x, sample_weight)
        if options.wants_fast_path() and not entry.fast_failed:
            try:
                trained = compiled_loop.fit_fast(entry, x, y, sw, options, seed)
                path = "fast"
            except Exception as exc:  # noqa: BLE001 - any failure falls back to model.fit
                _give_up_fast_path(entry, exc)
                entry.reset(self._initial, self._learning_rate)
                trained = _fit_keras(entry.model, x, y, sw, options, seed)
                path = "keras"
        else:
            trained = _fit_keras(entry.model, x, y, sw, options, seed)
            path = "keras"
        token = uuid.uuid4().hex
        entry.loaded_token = token
        return self._result(entry.model.get_weights(), trained, path, token)

    def _result(
        self, weights: list[np.ndarray], trained: Trained, path: str, token: str
    ) -> FitResult:
        """The :class:`FitResult` of a training that left ``weights``."""
        return FitResult(
            weights=weights,
            history=trained.history,
            path=path,
            n_iter=len(trained.history.get("loss", [])),
            best_epoch=trained.best_epoch,
            stopped=trained.stopped,
            key=self.key,
            token=token,
        )

    def fit_prefixes(
        self,
        x: np.ndarray,
        y: np.ndarray,
        sample_weight: np.ndarray | None,
        options: FitOptions,
        seed: int,
        stops: list[int],
    ) -> Iterator[FitResult]:
        """Train once in the compiled loop, yielding what a fit to each of ``stops`` leaves.

        Epochs ``[0, stops[0])`` run, then ``[stops[0], stops[1])`` and so on, with the
        weights, the optimizer's state and the per-epoch shuffling carried over, so each
        result is the one ``fit`` with ``epochs=stop`` would give. Call it outside
        ``with session``: each segment takes the model's lock itself, and between
        segments, if another fit or prediction used the model, the model and optimizer
        are put back where this training left them.

        Parameters
        ----------
        x, y, sample_weight, seed
            As for :meth:`fit`.
        options : FitOptions
            Must take the fast path with ``monitor=None``; ``options.epochs`` is unused.
        stops : list of int
            Ascending epoch counts.

        Yields
        ------
        FitResult

        Raises
        ------
        FastPathUnavailable
            When the options or the architecture cannot use the compiled loop (before
            the first result) or the loop fails; the model's state is then undefined.
        """
        entry = self._entry
        if not options.wants_fast_path() or options.monitor is not None or entry.fast_failed:
            raise FastPathUnavailable("these options cannot train in compiled segments")
        sw = _as_sample_weight(x, sample_weight)
        losses: list[float] = []
        done, token, saved = 0, None, None
        for stop in stops:
            with entry.lock:
                self._restore_segment_start(token, saved)
                trained = self._train_segment(x, y, sw, options, seed, done, stop)
                losses.extend(trained.history["loss"])
                saved = entry.read()
                token = uuid.uuid4().hex
                entry.loaded_token = token
            weights = [saved[i] for i in entry.weight_positions]
            done = max(done, stop)
            yield self._result(weights, Trained({"loss": list(losses)}), "fast", token)

    def _restore_segment_start(self, token: str | None, saved: list[np.ndarray] | None) -> None:
        """Put the model where the previous segment left it (or fresh), if someone moved it."""
        entry = self._entry
        if token is None:
            if entry.loaded_token != getattr(self, "_fresh_token", None):
                entry.reset(self._initial, self._learning_rate)
        elif entry.loaded_token != token:
            entry.assign_all(*saved)

    def _train_segment(
        self,
        x: np.ndarray,
        y: np.ndarray,
        sw: np.ndarray,
        options: FitOptions,
        seed: int,
        start: int,
        stop: int,
    ) -> Trained:
        """Epochs ``[start, stop)`` in the compiled loop; a failure gives up the fast path."""
        try:
            return compiled_loop.fit_fast(
                self._entry, x, y, sw, options, seed, start=start, stop=stop
            )
        except Exception as exc:  # noqa: BLE001 - reported as unavailable
            _give_up_fast_path(self._entry, exc)
            raise FastPathUnavailable(f"{type(exc).__name__}: {exc}") from exc


class FastPathUnavailable(RuntimeError):
    """The compiled loop cannot (or failed to) train this model in segments."""


def acquire(
    build: Callable[[], Any],
    *,
    seed: int,
    seeded_build: bool,
    x_sample: np.ndarray,
    static_key: str | None = None,
    initial_values: Callable[[Any, int], list[np.ndarray]] | None = None,
    learning_rate: float | None = None,
) -> TrainingSession:
    """Get a compiled model for one fit, from the cache when its key is there.

    Two ways to know the initial state:

    * ``static_key`` and ``initial_values`` given (the default network): the key is
      known without building, and the initial values are computed from the seed;
      ``learning_rate`` is set on the optimizer.
    * otherwise (a user's model): a fresh model is built under
      :func:`~raygrid.keras.runtime.seeded_keras`, its variables are the initial values
      and its optimizer's learning rate is used; when its structure matches a cached
      model, that model (with its traced loop) is reset to those values and the fresh one
      is dropped.

    Parameters
    ----------
    build : callable
        Returns a new compiled model.
    seed : int
        The fit's seed.
    seeded_build : bool
        Build a user's model under the seed; False leaves Keras' own randomness (for
        ``random_state=None``).
    x_sample : ndarray
        One row of input, to build models whose variables are created on first call.
    static_key, initial_values, learning_rate
        See above.

    Returns
    -------
    TrainingSession
    """
    if static_key is not None and initial_values is not None:
        entry = trace_cache.cache_get(static_key)
        if entry is None:
            entry = Entry(trace_cache.build_model(build, x_sample))
            trace_cache.cache_put(static_key, entry)
        return TrainingSession(entry, static_key, initial_values(entry.model, seed), learning_rate)
    with seeded_keras(seed if seeded_build else None):
        fresh = trace_cache.build_model(build, x_sample)
    return _session_for_built(fresh, tuple(x_sample.shape[1:]))


def _session_for_built(fresh: Any, input_shape: tuple[int, ...]) -> TrainingSession:
    """A session starting from a freshly built model's values, on a cached twin if any."""
    initial = [v.numpy() for v in fresh.variables]
    learning_rate = trace_cache.learning_rate_of(fresh)
    key = trace_cache.structural_key(fresh, input_shape)
    entry = trace_cache.cache_get(key) if key is not None else None
    if entry is not None:
        shapes = [tuple(v.shape) for v in entry.model.variables]
        if shapes != [a.shape for a in initial]:
            entry = None
    if entry is None:
        entry = Entry(fresh)
        if key is None:
            key = "unique:" + uuid.uuid4().hex
        trace_cache.cache_put(key, entry)
    return TrainingSession(entry, key, initial, learning_rate)


# -- the model.fit path ---------------------------------------------------------------


def _epoch_batches(
    x: np.ndarray,
    y: np.ndarray,
    sw: np.ndarray,
    epochs: int,
    batch_size: int,
    seed: int,
    shuffle: bool,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """All epochs' batches, in the fast path's order, for ``model.fit``.

    A Python generator rather than a ``tf.data`` pipeline: building a new pipeline per
    fit traces new dataset functions each time, and a process grew by about 0.08 MB a
    fit that way against 0.03 MB with a generator (measured over 130 fits).
    """
    import tensorflow as tf  # heavy: TensorFlow loads on first use

    n = len(x)
    for epoch in range(epochs):
        order = compiled_loop.epoch_order(
            n, tf.constant(seed, tf.int64), tf.constant(epoch), tf.constant(bool(shuffle))
        ).numpy()
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            yield x[idx], y[idx], sw[idx]


def _fit_keras(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    sw: np.ndarray,
    options: FitOptions,
    seed: int,
) -> Trained:
    import keras  # heavy: TensorFlow loads on first use

    validation_data = options.validation_data
    if options.validation_split:
        split_at = int(math.floor(len(x) * (1.0 - options.validation_split)))
        if not 0 < split_at < len(x):
            raise ValueError(
                f"validation_split={options.validation_split} leaves no training or no "
                f"validation samples out of {len(x)}."
            )
        validation_data = (x[split_at:], y[split_at:], sw[split_at:])
        x, y, sw = x[:split_at], y[:split_at], sw[:split_at]
    if options.epochs <= 0:
        return Trained({"loss": []})
    callbacks = list(options.callbacks or [])
    stopper = None
    if options.monitor is not None:
        # Keras' own callback applies the very rule the compiled loop applies.
        stopper = keras.callbacks.EarlyStopping(
            monitor=options.monitor,
            min_delta=options.tol,
            patience=options.patience,
            restore_best_weights=options.restore_best,
        )
        callbacks.append(stopper)
        if options.monitor == "val_loss":
            validation_data = options.stop_validation
    steps = math.ceil(len(x) / options.batch_size)
    batches = _epoch_batches(x, y, sw, options.epochs, options.batch_size, seed, options.shuffle)
    history = model.fit(
        batches,
        epochs=options.epochs,
        steps_per_epoch=steps,
        validation_data=validation_data,
        callbacks=callbacks or None,
        verbose=options.verbose,
        shuffle=False,
        **options.fit_kwargs,
    )
    logged = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    restoring = [
        c
        for c in callbacks
        if isinstance(c, keras.callbacks.EarlyStopping)
        and c.restore_best_weights
        and c.best_weights is not None
    ]
    best_epoch = restoring[-1].best_epoch + 1 if restoring else None
    stopped = stopper is not None and stopper.stopped_epoch > 0
    return Trained(logged, best_epoch, stopped)


# -- inference ------------------------------------------------------------------------


def predict(
    build: Callable[[], Any],
    key: str,
    weights: list[np.ndarray],
    token: str,
    x: np.ndarray,
) -> np.ndarray:
    """Forward pass (``training=False``) with the given weights, through the cache.

    The model under ``key`` is reused (and its compiled forward function); when it is
    missing (another process, or evicted), ``build`` makes one and it is cached.

    Parameters
    ----------
    build : callable
        Returns a new compiled model of the right architecture.
    key : str
        The cache key the fit reported.
    weights : list of ndarray
        The fitted weights.
    token : str
        Their identity; the model is reloaded only if it holds other weights.
    x : ndarray
        float32 features.

    Returns
    -------
    ndarray
        The model's output, float32.
    """
    import tensorflow as tf  # heavy: TensorFlow loads on first use

    entry = trace_cache.cache_get(key)
    if entry is None:
        entry = Entry(trace_cache.build_model(build, x[:1]))
        trace_cache.cache_put(key, entry)
    with entry.lock:
        if entry.loaded_token != token:
            entry.load(weights)
            entry.loaded_token = token
        if entry.forward is None:
            model = entry.model
            function = tf.function(
                lambda batch: model(batch, training=False),
                input_signature=[compiled_loop.tensor_spec(x)],
                autograph=False,
            )
            entry.functions.append(("forward", function))
            # The traced function itself: skips tf.function's argument binding.
            entry.forward = function.get_concrete_function()
        outputs = [
            _forward_padded(entry.forward, tf, x[start : start + PREDICT_CHUNK])
            for start in range(0, len(x), PREDICT_CHUNK)
        ]
    return np.concatenate(outputs, axis=0)


def _forward_padded(forward: Callable, tf: Any, rows: np.ndarray) -> np.ndarray:
    """``forward(rows)``, with the rows padded to a multiple of :data:`PREDICT_PAD`.

    CPU matrix kernels pick their blocking by the number of rows, and a row's result can
    differ in the last bit between blockings; a fixed multiple keeps each row's output the
    same whatever else is predicted with it (scikit-learn's subset and sample-order checks).
    """
    n = len(rows)
    padded = -(-n // PREDICT_PAD) * PREDICT_PAD
    if padded != n:
        rows = np.concatenate([rows, np.zeros((padded - n, *rows.shape[1:]), rows.dtype)])
    return forward(tf.convert_to_tensor(rows)).numpy()[:n]
