"""Fused training: many small default networks of one architecture trained as one stack.

A grid over a small network spends its time on per-step dispatch, not arithmetic (a
20→128→3 network on 267 rows is microseconds of work per step). :func:`fit_fused` trains
a group of fits that share an architecture and a batch size -- different folds,
learning rates, dropout rates, seeds and epoch counts -- in one compiled loop over a
stacked array of models: every weight gets a leading model axis, dense layers become
batched matrix products, and each model keeps its own weights, Adam/SGD state, data,
per-epoch shuffling, learning rate, dropout rate and epoch count. Fits that differ only
in their epoch count are one model of the stack, trained to the largest count, whose
state is kept at each of the others on the way (the exact prefix sharing of unfused
training). A group needing more memory than the worker can spare trains as several
stacks in turn (:mod:`raygrid.keras.capacity` measures the free memory: the GPU's, as
TensorFlow counts it, or the worker's share of the machine's).

What equals the unfused fit, and what does not
    Each model starts from the very initial values its unfused fit would
    (:func:`~raygrid.keras.network.initial_values` of its seed), sees its rows in the
    very same order (``stateless_shuffle`` seeded by ``(seed, epoch)``, batches of
    ``batch_size``, the last one short), minimises the same loss (cross-entropy from
    the logits as Keras computes it, mean over the batch of the weighted per-sample
    losses) with the same update rule (Keras' Adam or plain SGD formulas). What
    differs is the order of floating-point operations: a batched matrix product and a
    sum over a padded batch do not add in the order ``MatMul`` and Keras' reduction
    do, so weights differ in the last bits after the first step, and training, being
    chaotic at that scale, carries such differences forward (observed on the seed grid:
    see ``benchmarks/results``). Dropout masks are drawn from each model's own stream
    (a hash of its seed, step and unit), not from Keras' generator, so with dropout the
    fused fit is a different random draw, not a last-bits neighbour.

When a group fuses
    :func:`fusion_key` is not None: the default network (no ``model`` callable), the
    default loss, ``optimizer`` ``"adam"`` or ``"sgd"`` without ``optimizer__``
    arguments, and a configuration :meth:`prefix_fit_param` calls shareable (an
    explicit integer ``epochs``, the compiled loop's options, an integer
    ``random_state``). Fits with equal keys may be fused.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import clone

from raygrid.keras import capacity, compiled_loop, training
from raygrid.keras.network import hidden_sizes
from raygrid.keras.wrappers import (
    KerasClassifier,
    KerasRegressor,
    plan_fused_fit,
    record_fused_fit,
    to_python,
)

_FUSABLE_OPTIMIZERS = ("adam", "sgd")
# Parameters that may differ between the models of one fused group.
_PER_MODEL = ("learning_rate", "dropout_rate", "epochs", "random_state")


def fusion_key(estimator: Any) -> str | None:
    """Key of the group an estimator's fits can be fused with, or None.

    Parameters
    ----------
    estimator : KerasClassifier or KerasRegressor

    Returns
    -------
    str or None
        Equal for configurations that differ only in ``learning_rate``,
        ``dropout_rate``, ``epochs`` and ``random_state``; None when the configuration
        cannot be fused (see the module docstring).
    """
    if not isinstance(estimator, KerasClassifier | KerasRegressor):
        return None
    params = to_python(estimator.get_params(deep=False))
    optimizer = params.get("optimizer")
    fusable = (
        estimator.prefix_fit_param() == "epochs"
        and params.get("model") is None
        and params.get("loss") is None
        and isinstance(optimizer, str)
        and optimizer.lower() in _FUSABLE_OPTIMIZERS
        and not any(k.startswith("optimizer__") for k in params)
        and isinstance(params.get("learning_rate"), int | float)
        and isinstance(params.get("activation"), str)
    )
    if not fusable:
        return None
    shared = {k: v for k, v in params.items() if k not in _PER_MODEL}
    try:
        return f"{type(estimator).__name__}:" + json.dumps(shared, sort_keys=True, default=str)
    except TypeError:
        return None


def fit_fused(
    estimator: Any,
    X: Any,
    y: Any,
    jobs: Sequence[tuple[dict[str, Any], np.ndarray]],
    **fit_params: Any,
) -> list[Any]:
    """``estimator.fit_fused(X, y, jobs=jobs, **fit_params)``: every job's fit, fused.

    ``estimator`` is a :class:`~raygrid.keras.KerasClassifier` or
    :class:`~raygrid.keras.KerasRegressor`; see their ``fit_fused`` for the parameters.
    Returns one fitted estimator per job, in order, usable like any fitted one.
    """
    X, y = np.asarray(X), np.asarray(y)
    sample_weight = fit_params.pop("sample_weight", None)
    unknown = set(fit_params) - {"class_weight"}
    if unknown:
        raise ValueError(f"fit_fused does not take {sorted(unknown)}.")
    fits = [clone(estimator).set_params(**params) for params, _ in jobs]
    keys = {fusion_key(fit) for fit in fits}
    if len(keys) != 1 or None in keys:
        raise ValueError("fit_fused needs configurations with one common, non-None fusion_key.")
    planned = [
        plan_fused_fit(fit, X[train], y[train], _rows(sample_weight, train), dict(fit_params))
        for fit, (_, train) in zip(fits, jobs, strict=True)
    ]
    plans = [plan for plan, _ in planned]
    if len({p.session.model.count_params() for p in plans}) != 1:
        raise ValueError("fit_fused: the fits' networks differ in shape (e.g. class counts).")
    trained = _train(plans, [encoded for _, encoded in planned], [train for _, train in jobs])
    for fit, plan, (values, curve) in zip(fits, plans, trained, strict=True):
        record_fused_fit(fit, plan, _fused_result(plan, values, curve))
    return fits


def _rows(sample_weight: Any, train: np.ndarray) -> np.ndarray | None:
    """The training rows' sample weights, or None."""
    return None if sample_weight is None else np.asarray(sample_weight)[train]


def _fused_result(plan: Any, values: list[np.ndarray], curve: list[float]) -> Any:
    """What a fused fit leaves, as a training result: ``values`` are the model's variables."""
    return training.FitResult(
        weights=[values[i] for i in plan.session.weight_positions],
        history={"loss": curve},
        path="fused",
        n_iter=len(curve),
        best_epoch=None,
        stopped=False,
        key=plan.session.key,
        token=uuid.uuid4().hex,
    )


def _padded(arrays: list[np.ndarray], n_max: int, dtype: Any) -> np.ndarray:
    """The arrays stacked along a new first axis, each padded with zeros to ``n_max`` rows."""
    out = np.zeros((len(arrays), n_max, *arrays[0].shape[1:]), dtype)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out


def _stacked_data(plans: list[Any], encoded: list[np.ndarray]) -> tuple:
    """Every model's rows, targets and sample weights, padded and stacked; the row counts."""
    n = np.array([len(p.X) for p in plans], np.int32)
    n_max = int(n.max())
    weights = [
        np.ones(len(p.X), np.float32) if p.sample_weight is None else p.sample_weight
        for p in plans
    ]
    return (
        _padded([p.X for p in plans], n_max, np.float32),
        _padded(encoded, n_max, encoded[0].dtype),
        _padded(weights, n_max, np.float32),
        n,
    )


def _lanes(plans: list[Any], rows: Sequence[np.ndarray]) -> list[int]:
    """The lane (stacked model) of each plan: plans differing only in ``epochs`` share one.

    Such fits are the same training stopped at different epochs (same initial values,
    rows, shuffling and updates), so the stack trains one model to the largest epoch
    count and keeps its state at each of the others on the way.
    """
    keys: dict[tuple, int] = {}
    lanes = []
    for plan, train in zip(plans, rows, strict=True):
        key = (
            plan.seed,
            plan.recipe.learning_rate,
            plan.recipe.build_kwargs.get("dropout_rate", 0.0),
            np.asarray(train).tobytes(),
        )
        lanes.append(keys.setdefault(key, len(keys)))
    return lanes


def _train(
    plans: list[Any], encoded: list[np.ndarray], rows: Sequence[np.ndarray]
) -> list[tuple[list[np.ndarray], list[float]]]:
    """Train the plans' lanes in as few stacks as memory allows; unstack per plan."""
    lanes = _lanes(plans, rows)
    heads = [lanes.index(lane) for lane in range(max(lanes) + 1)]  # a plan of each lane
    # Positions of the trainable variables (a dropout layer adds a non-trainable one).
    trainable = [
        [i for i, v in enumerate(p.session.model.variables) if v.trainable] for p in plans
    ]
    stops = sorted({p.options.epochs for p in plans})
    lane_epochs = np.zeros(len(heads), np.int32)
    for plan, lane in zip(plans, lanes, strict=True):
        lane_epochs[lane] = max(lane_epochs[lane], plan.options.epochs)
    initial = [
        np.stack([plans[i].session.initial_values[trainable[i][j]] for i in heads])
        for j in range(len(trainable[0]))
    ]
    size = capacity.stack_capacity(_model_bytes(plans[0], encoded[0], initial, len(stops)))
    snapshots, losses = [], []
    for start in range(0, len(heads), size):
        chunk = slice(start, start + size)
        kept, curves = _train_stack(
            [plans[i] for i in heads[chunk]],
            [encoded[i] for i in heads[chunk]],
            lane_epochs[chunk],
            stops,
            [values[chunk] for values in initial],
        )
        snapshots.append(kept)
        losses.append(np.pad(curves, [(0, int(lane_epochs.max()) - len(curves)), (0, 0)]))
    snapshots = [np.concatenate(parts, axis=1) for parts in zip(*snapshots, strict=True)]
    losses = np.concatenate(losses, axis=1)
    out = []
    for plan, lane, positions in zip(plans, lanes, trainable, strict=True):
        at = stops.index(plan.options.epochs)
        values = list(plan.session.initial_values)
        for position, stacked_values in zip(positions, snapshots, strict=True):
            values[position] = stacked_values[at, lane]
        out.append((values, [float(v) for v in losses[: plan.options.epochs, lane]]))
    return out


def _model_bytes(plan: Any, encoded: np.ndarray, initial: list, n_kept: int) -> int:
    """:func:`capacity.model_bytes` of one model of the stack."""
    widest = max((v.shape[-1] for v in initial), default=1)
    return capacity.model_bytes(
        n_params=sum(int(np.prod(v.shape[1:])) for v in initial),
        n_rows=len(plan.X),
        row_width=int(np.prod(plan.X.shape[1:])),
        target_width=int(np.prod(encoded.shape[1:])),
        batch_size=plan.options.batch_size,
        widest_layer=widest,
        n_kept=n_kept,
    )


def _train_stack(
    stacked: list[Any],
    encoded: list[np.ndarray],
    epochs: np.ndarray,
    stops: list[int],
    initial: list[np.ndarray],
) -> tuple[list[np.ndarray], np.ndarray]:
    """One stack's training: its models' kept states ``(stops, models, ...)`` by
    variable, and their per-epoch losses ``(epochs, models)``.

    A stack of one model trains with a twin beside it, whose results are dropped:
    TensorFlow multiplies a batch of one matrix with another kernel than a batch of
    several, which rounds differently, so a model alone would not be bit for bit the
    model it is in a larger stack.
    """
    first, models = stacked[0], len(stacked)
    data = _stacked_data(stacked, encoded)
    per_lane = (
        np.array([p.seed for p in stacked], np.int64),
        np.asarray(epochs, np.int32),
        np.array([p.recipe.learning_rate for p in stacked], np.float32),
        np.array([p.recipe.build_kwargs.get("dropout_rate", 0.0) for p in stacked], np.float32),
    )
    if models == 1:
        data, per_lane, initial = (
            [np.repeat(values, 2, axis=0) for values in part] for part in (data, per_lane, initial)
        )
    args = (
        *data,
        *per_lane,
        np.int32(first.options.batch_size),
        np.bool_(first.options.shuffle),
        np.array(stops, np.int32),
        *initial,
    )
    loop = _fused_loop(first, len(initial), bool(per_lane[3].any()), args)
    snapshots, losses = loop(*args)
    return [s.numpy()[:, :models] for s in snapshots], losses.numpy()[:, :models]


_loops: dict[str, Any] = {}


def _fused_loop(plan: Any, n_params: int, any_dropout: bool, args: Sequence[Any]) -> Any:
    """The compiled fused loop for a plan's architecture (traced once per architecture,
    on the first ``args`` it is made for: see :func:`_signature`)."""
    key = json.dumps(
        {
            "task": plan.recipe.task,
            "input_shape": list(plan.recipe.input_shape),
            "dropout": any_dropout,
            "hidden": hidden_sizes(
                plan.recipe.build_kwargs["units"],
                plan.recipe.build_kwargs["n_layers"],
                plan.recipe.build_kwargs["hidden_layer_sizes"],
            ),
            "kwargs": {
                k: v for k, v in plan.recipe.build_kwargs.items() if k not in ("dropout_rate",)
            },
            "optimizer": str(plan.recipe.optimizer).lower(),
            "n_params": n_params,
        },
        sort_keys=True,
        default=str,
    )
    loop = _loops.get(key)
    if loop is None:
        loop = _loops[key] = _make_fused_loop(plan, n_params, any_dropout, _signature(args))
    return loop


def _signature(args: Sequence[Any]) -> list:
    """The loop's input signature, from one call's arguments, with the stack axis (and the
    data's rows axis) left open: one trace serves every stack and fold size."""
    import tensorflow as tf  # heavy: TensorFlow loads on first use

    specs = []
    for position, value in enumerate(args):
        value = np.asarray(value)
        open_axes = 2 if position < 3 else min(1, value.ndim)  # xs, ys, sws: models × rows
        shape = (None,) * open_axes + tuple(value.shape[open_axes:])
        specs.append(tf.TensorSpec(shape, tf.as_dtype(value.dtype)))
    return specs


def trace_counts() -> dict[str, int]:
    """Traces of each compiled fused loop of this process, by architecture key."""
    return {key: loop.experimental_get_tracing_count() for key, loop in _loops.items()}


def _dropout(h: Any, rates: Any, seeds: Any, step: Any, layer: int) -> Any:
    """Inverted dropout with each model's own stream: a hash of (seed, step, layer, unit)."""
    import tensorflow as tf  # heavy: TensorFlow loads on first use

    low = tf.constant(0x7FFFFFFF, tf.int64)
    shape = tf.shape(h, out_type=tf.int64)
    units = tf.reshape(tf.range(shape[1] * shape[2]), (1, shape[1], shape[2]))
    x = (
        (seeds[:, None, None] & low) * 0x2545F491
        + (tf.cast(step, tf.int64) & low) * 0x5BD1E995
        + units * 0x27D4EB2F
        + layer * 0x165667B1
    ) & 0xFFFFFFFF
    for shift, multiplier in ((16, 0x7FEB352D), (15, 0x046A5D35), (16, None)):
        x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, shift))
        if multiplier is not None:
            x = ((x & 0x7FFFFFFF) * multiplier) & 0xFFFFFFFF
    uniform = tf.cast(x, tf.float32) / 4294967296.0
    rate = rates[:, None, None]
    return tf.where(uniform >= rate, h / (1.0 - rate), tf.zeros_like(h))


@dataclass(frozen=True)
class _StackedNetwork:
    """A stack of default networks of one architecture: its maths, fixed at trace time.

    The models' variables travel through the loop as one ``(models, parameters)`` matrix
    (and Adam's two moments as two more): a loop carrying each variable and moment
    separately spends more time passing them from step to step than on the step.
    ``shapes`` are the variables' shapes without the model axis, in the flat order.
    """

    n_hidden: int
    activation: Any
    classify: bool
    adam: bool
    any_dropout: bool
    # Keras' Adam defaults: beta_1, beta_2, epsilon.
    adam_constants: tuple[float, float, float]
    shapes: tuple[tuple[int, ...], ...]

    def unflatten(self, flat: Any) -> list:
        """The variables from the flat matrix (or stack of them), keeping its leading axes."""
        import tensorflow as tf  # heavy: TensorFlow loads on first use

        sizes = [int(np.prod(shape)) for shape in self.shapes]
        parts = tf.split(flat, sizes, axis=-1)
        leading = tf.shape(flat)[:-1]
        return [
            tf.reshape(p, tf.concat([leading, shape], axis=0))
            for p, shape in zip(parts, self.shapes, strict=True)
        ]

    def forward(self, params: list, x: Any, rates: Any, seeds: Any, step: Any) -> Any:
        """Every model's outputs (logits) for its own batch ``x[model]``."""
        import tensorflow as tf  # heavy: TensorFlow loads on first use

        h = tf.reshape(x, (tf.shape(x)[0], tf.shape(x)[1], -1))
        for layer in range(self.n_hidden):
            bias = tf.expand_dims(params[2 * layer + 1], 1)
            h = self.activation(tf.matmul(h, params[2 * layer]) + bias)
            if self.any_dropout:
                h = _dropout(h, rates, seeds, step, layer)
        return tf.matmul(h, params[-2]) + tf.expand_dims(params[-1], 1)

    def per_sample_loss(self, out: Any, target: Any) -> Any:
        """Cross-entropy from the logits (classification) or squared error, per sample."""
        import tensorflow as tf  # heavy: TensorFlow loads on first use

        if self.classify:
            return tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.cast(target, tf.int64), logits=out
            )
        return tf.reduce_mean(tf.square(target - out), axis=-1)

    def batch_losses(self, flat, data, idx, valid, rates, seeds, step) -> tuple:
        """Each model's mean loss on its batch, its batch size, and the flat gradient."""
        import tensorflow as tf  # heavy: TensorFlow loads on first use

        xs, ys, sws = data
        with tf.GradientTape() as tape:
            tape.watch(flat)
            params = self.unflatten(flat)
            out = self.forward(params, tf.gather(xs, idx, batch_dims=1), rates, seeds, step)
            weighted = self.per_sample_loss(out, tf.gather(ys, idx, batch_dims=1))
            weighted = weighted * tf.gather(sws, idx, batch_dims=1) * valid
            count = tf.reduce_sum(valid, axis=1)
            loss = tf.reduce_sum(weighted, axis=1) / tf.maximum(count, 1.0)
            summed = tf.reduce_sum(loss)
        return loss, count, tape.gradient(summed, flat)

    def step_all(self, flat, moments, iters, g, lrs, active) -> tuple:
        """One SGD or Adam step of the ``active`` models; count their steps.

        Models sit a step out when their epochs are done or their rows are (the last
        batch of a longer fold); when none does, as in most steps, the masking is skipped.
        """
        import tensorflow as tf  # heavy: TensorFlow loads on first use

        iters_next = iters + tf.cast(active, iters.dtype)
        if self.adam:
            beta_1, beta_2, epsilon = self.adam_constants
            m, v = moments
            t = tf.cast(iters + 1, tf.float32)
            alpha = (lrs * tf.sqrt(1 - tf.pow(beta_2, t)) / (1 - tf.pow(beta_1, t)))[:, None]
            m_new = m + (g - m) * (1 - beta_1)
            v_new = v + (tf.square(g) - v) * (1 - beta_2)
            old, new = (
                (flat, m, v),
                (flat - (m_new * alpha) / (tf.sqrt(v_new) + epsilon), m_new, v_new),
            )
        else:
            old, new = (flat,), (flat - g * lrs[:, None],)

        def masked():
            keep = tf.broadcast_to(active[:, None], tf.shape(flat))
            return tuple(tf.where(keep, n, o) for n, o in zip(new, old, strict=True))

        kept = tf.cond(tf.reduce_all(active), lambda: new, masked)
        return kept[0], tuple(kept[1:]), iters_next


def _stacked_network(plan: Any, n_params: int, any_dropout: bool) -> _StackedNetwork:
    """The stacked maths of a plan's default network (``n_params`` variables)."""
    import keras  # heavy: TensorFlow loads on first use

    recipe = plan.recipe
    config = keras.optimizers.Adam().get_config()
    return _StackedNetwork(
        n_hidden=(n_params - 2) // 2,
        activation=keras.activations.get(recipe.build_kwargs["activation"]),
        classify=recipe.task == "classification",
        adam=str(recipe.optimizer).lower() == "adam",
        any_dropout=any_dropout,
        adam_constants=(config["beta_1"], config["beta_2"], config["epsilon"]),
        shapes=tuple(
            tuple(int(d) for d in v.shape) for v in plan.session.model.variables if v.trainable
        ),
    )


def _epoch_orders(seeds: Any, n: Any, n_max: Any, epoch: Any, shuffle: Any) -> Any:
    """Each model's sample order for one epoch (as its unfused fit), padded to ``n_max``."""
    import tensorflow as tf  # heavy: TensorFlow loads on first use

    def order_of(args, epoch):
        seed, count = args
        order = compiled_loop.epoch_order(count, seed, epoch, shuffle)
        return tf.pad(order, [[0, n_max - count]])

    return tf.map_fn(lambda a, e=epoch: order_of(a, e), (seeds, n), fn_output_signature=tf.int32)


def _make_fused_loop(plan: Any, n_params: int, any_dropout: bool, signature: list) -> Any:
    """Trace-once loop training a stack of default networks (see the module docstring)."""
    import tensorflow as tf  # heavy: TensorFlow loads on first use

    net = _stacked_network(plan, n_params, any_dropout)

    @tf.function(input_signature=signature)
    def fused_loop(
        xs, ys, sws, n, seeds, epochs, lrs, rates, batch_size, shuffle, stops, *initial
    ):
        n_max = tf.shape(xs)[1]
        flat = tf.concat([tf.reshape(p, (tf.shape(p)[0], -1)) for p in initial], axis=1)
        moments = (tf.zeros_like(flat), tf.zeros_like(flat)) if net.adam else ()
        iters = tf.zeros_like(n)
        losses = tf.TensorArray(tf.float32, size=tf.reduce_max(epochs))
        # The state at each epoch count in ``stops``, for the plans stopping there.
        snapshots = tf.zeros(tf.concat([tf.shape(stops), tf.shape(flat)], 0), flat.dtype)
        step = tf.constant(0, tf.int64)
        for epoch in tf.range(tf.reduce_max(epochs)):
            orders = _epoch_orders(seeds, n, n_max, epoch, shuffle)
            total = tf.zeros_like(lrs)
            for batch in tf.range((n_max + batch_size - 1) // batch_size):
                pos = batch * batch_size + tf.range(batch_size)
                valid = tf.cast(pos[None, :] < n[:, None], tf.float32)
                idx = tf.gather(orders, tf.minimum(pos, n_max - 1), axis=1)
                active = tf.logical_and(batch * batch_size < n, epoch < epochs)
                loss, count, grads = net.batch_losses(
                    flat, (xs, ys, sws), idx, valid, rates, seeds, step
                )
                flat, moments, iters = net.step_all(flat, moments, iters, grads, lrs, active)
                total = total + loss * count
                step = step + 1
            losses = losses.write(epoch, total / tf.cast(n, tf.float32))
            reached = tf.reshape(tf.equal(stops, epoch + 1), (-1, 1, 1))
            snapshots = tf.where(reached, flat[None], snapshots)
        return net.unflatten(snapshots), losses.stack()

    return fused_loop
