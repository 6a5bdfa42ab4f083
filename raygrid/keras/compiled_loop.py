"""The compiled training loop: every epoch and batch of a fit in one traced ``tf.function``.

Why a loop of our own
    ``model.fit`` spends about 4 ms of Python per step on a small network, which is most
    of a small fit. The fast path traces one ``tf.function`` per architecture that runs
    every epoch and batch in the graph (``tf.while_loop``), reshuffling each epoch with
    ``tf.random.experimental.stateless_shuffle`` seeded by ``(seed, epoch)`` and calling
    an inner ``tf.function`` train step that computes ``model.compute_loss`` and applies
    the model's optimizer, as ``model.fit``'s own train step does.

When to stop
    The compiled loop also decides, between epochs and without returning to Python,
    whether to stop: on a plateau of the training loss (the wrappers' default epoch
    policy) or of the loss on held-out data (``early_stopping``), by the rule of Keras'
    ``EarlyStopping`` callback, keeping the best epoch's weights in the second case. The
    ``model.fit`` path applies the same rule with that very callback, so both paths stop
    at the same epoch with the same weights.

Each :class:`~raygrid.keras.trace_cache.Entry` keeps the loops traced for its model
(:func:`fit_loop_for`); :func:`fit_fast` runs one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from raygrid.keras.trace_cache import Entry

if TYPE_CHECKING:
    from raygrid.keras.training import FitOptions


@dataclass
class Trained:
    """What one of the two training loops reports."""

    history: dict[str, list[float]]
    best_epoch: int | None = None
    stopped: bool = False


def epoch_order(n: Any, seed: Any, epoch: Any, shuffle: Any) -> Any:
    """Sample order of one epoch: a stateless shuffle seeded by ``(seed, epoch)``."""
    import tensorflow as tf  # heavy: TensorFlow loads on first use

    ordered = tf.range(n)
    return tf.cond(
        shuffle,
        lambda: tf.random.experimental.stateless_shuffle(
            ordered, seed=tf.stack([seed, tf.cast(epoch, tf.int64)])
        ),
        lambda: ordered,
    )


def tensor_spec(array: np.ndarray) -> Any:
    import tensorflow as tf  # heavy: TensorFlow loads on first use

    return tf.TensorSpec((None, *array.shape[1:]), tf.as_dtype(array.dtype))


def _make_fit_loop(
    model: Any, x_spec: Any, y_spec: Any, *, validated: bool, restore: bool
) -> tuple[Callable, dict[str, Callable]]:
    """Trace-once training loop for one model, input/target signature and stopping kind.

    The loop also decides when to stop, with the rule of Keras' ``EarlyStopping`` (mode
    ``"min"``): an epoch improves when ``loss + tol < best``, compared in float32 as
    Keras compares Python floats; the first epoch always improves; after ``patience``
    epochs in a row without improvement training stops (when ``watch`` is true).

    ``validated`` (watch the loss on validation data, computed in batches as
    ``model.fit`` does) and ``restore`` (put the last improving epoch's weights back at
    the end) are fixed at trace time: a loop without them traces about three times
    faster, and most fits need neither.
    """
    train_step, test_step = _make_steps(model, x_spec, y_spec)
    loop = _epochs_loop(
        train_step, test_step, list(model.weights), validated=validated, restore=restore
    )
    fit_loop = _compile_fit_loop(loop, x_spec, y_spec, validated=validated)
    return fit_loop, {"train_step": train_step, "test_step": test_step}


def _make_steps(model: Any, x_spec: Any, y_spec: Any) -> tuple[Callable, Callable]:
    """The compiled train step (loss, gradients, optimizer update) and test step (loss)."""
    import tensorflow as tf  # heavy: TensorFlow loads on first use

    optimizer = model.optimizer
    sw_spec = tf.TensorSpec((None,), tf.float32)

    @tf.function(input_signature=[x_spec, y_spec, sw_spec], autograph=False)
    def train_step(x, y, sw):
        variables = model.trainable_variables
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            loss = model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sw, training=True)
            scaled = optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, variables)
        optimizer.apply_gradients(zip(gradients, variables, strict=True))
        return tf.cast(loss, tf.float32)

    @tf.function(input_signature=[x_spec, y_spec, sw_spec], autograph=False)
    def test_step(x, y, sw):
        y_pred = model(x, training=False)
        loss = model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sw, training=False)
        return tf.cast(loss, tf.float32)

    return train_step, test_step


def _compile_fit_loop(loop: Callable, x_spec: Any, y_spec: Any, *, validated: bool) -> Callable:
    """``loop`` as one ``tf.function`` over the data (and validation data) and the scalars.

    The scalars travel as two small vectors (see :func:`_loop_scalars`): every argument
    of a call is bound and checked on its own, and eight scalars cost about 0.15 ms more
    a call than two vectors (measured on a zero-epoch call: 0.59 ms against 0.44 ms),
    which matters for the short segments of a prefix fit.
    """
    import tensorflow as tf  # heavy: TensorFlow loads on first use

    sw_spec = tf.TensorSpec((None,), tf.float32)
    scalars = [tf.TensorSpec((7,), tf.int64), tf.TensorSpec((1,), tf.float64)]

    def unpacked(ints, floats):
        start, epochs, batch_size = (tf.cast(ints[i], tf.int32) for i in range(3))
        shuffle, watch = tf.not_equal(ints[4], 0), tf.not_equal(ints[5], 0)
        patience = tf.cast(ints[6], tf.int32)
        return start, epochs, batch_size, ints[3], shuffle, watch, floats[0], patience

    if validated:

        @tf.function(
            input_signature=[x_spec, y_spec, sw_spec, x_spec, y_spec, sw_spec, *scalars],
            autograph=False,
        )
        def fit_loop(x, y, sw, x_val, y_val, sw_val, ints, floats):
            return loop(x, y, sw, (x_val, y_val, sw_val), *unpacked(ints, floats))

    else:

        @tf.function(input_signature=[x_spec, y_spec, sw_spec, *scalars], autograph=False)
        def fit_loop(x, y, sw, ints, floats):
            return loop(x, y, sw, None, *unpacked(ints, floats))

    return fit_loop


def _loop_scalars(
    options: FitOptions, seed: int, start: int, stop: int
) -> tuple[np.ndarray, np.ndarray]:
    """The compiled loop's scalar arguments: ``[start, epochs, batch_size, seed, shuffle,
    watch, patience]`` as int64 and ``[tol]`` as float64."""
    ints = [
        start,
        stop,
        options.batch_size,
        seed,
        bool(options.shuffle),
        options.monitor is not None,
        options.patience,
    ]
    return np.array(ints, np.int64), np.array([options.tol], np.float64)


def _batch_mean(step: Callable, x: Any, y: Any, sw: Any, order: Any, batch_size: Any) -> Any:
    """Mean of ``step``'s per-batch losses weighted by batch size, as Keras' loss tracker."""
    import tensorflow as tf  # heavy: TensorFlow loads on first use

    n = tf.shape(x)[0]
    n_batches = (n + batch_size - 1) // batch_size

    def run_batch(batch, total):
        start = batch * batch_size
        idx = order[start : tf.minimum(start + batch_size, n)]
        loss = step(tf.gather(x, idx), tf.gather(y, idx), tf.gather(sw, idx))
        return batch + 1, total + loss * tf.cast(tf.size(idx), tf.float32)

    _, total = tf.while_loop(
        lambda batch, _: batch < n_batches,
        run_batch,
        (tf.constant(0), tf.constant(0.0)),
    )
    return total / tf.cast(n, tf.float32)


def _plateau(
    epoch: Any,
    current: Any,
    rule: tuple[Any, Any, Any],
    best: Any,
    wait: Any,
    best_epoch: Any,
) -> tuple[Any, Any, Any, Any, Any]:
    """``EarlyStopping``'s bookkeeping after an epoch, under ``rule = (watch, tol, patience)``.

    Returns ``(improved, best, wait, best_epoch, stop)``.
    """
    import tensorflow as tf  # heavy: TensorFlow loads on first use

    watch, tol, patience = rule
    lowered = tf.cast(tf.cast(current, tf.float64) + tol, tf.float32)
    improved = tf.logical_or(tf.equal(epoch, 0), lowered < best)
    best = tf.where(improved, current, best)
    best_epoch = tf.where(improved, epoch, best_epoch)
    wait = tf.where(improved, 0, wait + 1)
    stop = tf.logical_and(
        tf.logical_and(watch, tf.logical_not(improved)),
        tf.logical_and(wait >= patience, epoch > 0),
    )
    return improved, best, wait, best_epoch, stop


def _put_back(weights: list[Any], kept: tuple, run: Any) -> None:
    """Assign the kept (best epoch's) values to ``weights`` if any epoch ran."""
    import tensorflow as tf  # heavy: TensorFlow loads on first use

    def assign():
        for variable, value in zip(weights, kept, strict=True):
            variable.assign(value)
        return tf.constant(True)

    tf.cond(run > 0, assign, lambda: tf.constant(False))


def _epochs_loop(
    train_step: Callable,
    test_step: Callable,
    weights: list[Any],
    *,
    validated: bool,
    restore: bool,
) -> Callable:
    """The body of the compiled fit loop: epochs in a ``tf.while_loop``, stopping on a plateau.

    Epochs ``[start, epochs)`` are run; the curves it returns are indexed from ``start``.
    """
    import tensorflow as tf  # heavy: TensorFlow loads on first use

    def snapshot():
        return tuple(tf.identity(w.value) for w in weights) if restore else ()

    def loop(x, y, sw, validation, start, epochs, batch_size, seed, shuffle, watch, tol, patience):
        n = tf.shape(x)[0]
        size = tf.maximum(epochs - start, 0)

        def run_epoch(epoch, losses, val_losses, best, wait, best_epoch, stop, kept):
            order = epoch_order(n, seed, epoch, shuffle)
            loss = _batch_mean(train_step, x, y, sw, order, batch_size)
            current = loss
            if validated:
                x_val, y_val, sw_val = validation
                val_order = tf.range(tf.shape(x_val)[0])
                current = _batch_mean(test_step, x_val, y_val, sw_val, val_order, batch_size)
                val_losses = val_losses.write(epoch - start, current)
            improved, best, wait, best_epoch, stop = _plateau(
                epoch, current, (watch, tol, patience), best, wait, best_epoch
            )
            if restore:
                kept = tf.cond(improved, snapshot, lambda: kept)
            losses = losses.write(epoch - start, loss)
            return epoch + 1, losses, val_losses, best, wait, best_epoch, stop, kept

        initial = (
            start,
            tf.TensorArray(tf.float32, size=size),
            tf.TensorArray(tf.float32, size=size if validated else 0),
            tf.constant(float("inf")),
            tf.constant(0),
            tf.constant(-1),
            tf.constant(False),
            snapshot(),
        )
        run, losses, val_losses, _, _, best_epoch, stop, kept = tf.while_loop(
            lambda epoch, *state: tf.logical_and(epoch < epochs, tf.logical_not(state[5])),
            run_epoch,
            initial,
        )
        if restore:
            _put_back(weights, kept, run)
        done = tf.maximum(run - start, 0)
        val_curve = val_losses.stack()[:done] if validated else tf.zeros((0,), tf.float32)
        return losses.stack()[:done], val_curve, best_epoch, stop

    return loop


def fit_loop_for(
    entry: Entry, x: np.ndarray, y: np.ndarray, *, validated: bool, restore: bool
) -> Callable:
    """The entry's compiled loop for these input/target signatures, traced on first use.

    Returned as the traced concrete function: calling it skips ``tf.function``'s argument
    binding, about 1 ms of a call that trains a small network in a few.
    """
    signature = (x.shape[1:], x.dtype.str, y.shape[1:], y.dtype.str, validated, restore)
    call = entry.fit_calls.get(signature)
    if call is None:
        loop, steps = _make_fit_loop(
            entry.model, tensor_spec(x), tensor_spec(y), validated=validated, restore=restore
        )
        entry.fit_loops[signature] = loop
        entry.functions.extend([("fit_loop", loop), *steps.items()])
        call = entry.fit_calls[signature] = loop.get_concrete_function()
    return call


def fit_fast(
    entry: Entry,
    x: np.ndarray,
    y: np.ndarray,
    sw: np.ndarray,
    options: FitOptions,
    seed: int,
    start: int = 0,
    stop: int | None = None,
) -> Trained:
    """Run epochs ``[start, stop)`` (default: all of ``options.epochs``) in the compiled loop.

    A segment starting after 0 continues from the model's and optimizer's current state;
    the shuffling of each epoch depends on ``(seed, epoch)`` only, so consecutive
    segments run exactly the epochs one call would run. Only for ``monitor=None``.
    """
    stop = options.epochs if stop is None else stop
    if start and options.monitor is not None:
        raise ValueError("Training in segments needs monitor=None.")
    validated = options.monitor == "val_loss"
    restore = bool(options.restore_best)
    loop = fit_loop_for(entry, x, y, validated=validated, restore=restore)
    validation = list(options.stop_validation) if validated else []
    losses, val_losses, best_epoch, stopped = loop(
        x, y, sw, *validation, *_loop_scalars(options, seed, start, stop)
    )
    history = {"loss": [float(v) for v in losses.numpy()]}
    if validated:
        history["val_loss"] = [float(v) for v in val_losses.numpy()]
    best = int(best_epoch.numpy())
    return Trained(history, best + 1 if restore and best >= 0 else None, bool(stopped.numpy()))
