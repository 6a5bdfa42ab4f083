"""The default network: a small multi-layer perceptron, built from searchable parameters.

Its weights are drawn by :func:`initial_values` from a seeded NumPy generator rather than
by Keras' initialisers, so that a network taken from the per-process cache of compiled
training loops (see :mod:`raygrid.keras.training`) can be reset to exactly the values a
freshly built one would get from the same seed.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Names of the wrapper parameters that shape the default network.
NETWORK_PARAMS = ("units", "n_layers", "hidden_layer_sizes", "activation", "dropout_rate")

# Mixed into each seed so the weights, the dropout masks and the shuffling draw from
# independent streams.
_WEIGHTS_STREAM = 0x5EED_0001
_DROPOUT_STREAM = 0x5EED_0002


def hidden_sizes(
    units: int, n_layers: int, hidden_layer_sizes: Sequence[int] | None
) -> tuple[int, ...]:
    """Return the widths of the hidden layers.

    Parameters
    ----------
    units : int
        Width of every hidden layer when ``hidden_layer_sizes`` is None.
    n_layers : int
        Number of hidden layers when ``hidden_layer_sizes`` is None (0 gives a linear or
        logistic model).
    hidden_layer_sizes : sequence of int or None
        Explicit widths, one per hidden layer; overrides ``units`` and ``n_layers``.

    Returns
    -------
    tuple of int
    """
    if hidden_layer_sizes is not None:
        if isinstance(hidden_layer_sizes, int | np.integer):
            hidden_layer_sizes = (hidden_layer_sizes,)
        sizes = tuple(int(s) for s in hidden_layer_sizes)
    else:
        if int(n_layers) < 0:
            raise ValueError(f"n_layers must be >= 0, got {n_layers!r}.")
        sizes = (int(units),) * int(n_layers)
    if any(s < 1 for s in sizes):
        raise ValueError(f"Hidden layer widths must be >= 1, got {sizes!r}.")
    return sizes


def _build_network(
    input_shape: tuple[int, ...],
    n_outputs: int,
    output_activation: str,
    *,
    units: int = 32,
    n_layers: int = 1,
    hidden_layer_sizes: Sequence[int] | None = None,
    activation: Any = "relu",
    dropout_rate: float = 0.0,
) -> Any:
    """Build the default (uncompiled) network.

    ``Input -> [Flatten] -> (Dense(activation) -> [Dropout]) * k -> Dense(n_outputs)``.

    Parameters
    ----------
    input_shape : tuple of int
        Shape of one sample.
    n_outputs : int
        Width of the output layer.
    output_activation : str
        ``"softmax"``, ``"sigmoid"`` or ``"linear"``.
    units, n_layers, hidden_layer_sizes
        See :func:`hidden_sizes`.
    activation : str or callable
        Activation of the hidden layers.
    dropout_rate : float
        Dropout after each hidden layer; 0 adds no dropout layer.

    Returns
    -------
    keras.Sequential
    """
    import keras  # heavy: TensorFlow loads on first use

    dropout_rate = float(dropout_rate)
    if not 0.0 <= dropout_rate < 1.0:
        raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate!r}.")
    layers: list[Any] = [keras.Input(shape=tuple(input_shape))]
    if len(input_shape) > 1:
        layers.append(keras.layers.Flatten())
    for width in hidden_sizes(units, n_layers, hidden_layer_sizes):
        layers.append(keras.layers.Dense(width, activation=activation))
        if dropout_rate > 0.0:
            layers.append(keras.layers.Dropout(dropout_rate))
    layers.append(keras.layers.Dense(int(n_outputs), activation=output_activation))
    return keras.Sequential(layers)


def initial_values(model: Any, seed: int) -> list[np.ndarray]:
    """Seeded initial values for every variable of a default network.

    Kernels are Glorot-uniform (Keras' default for ``Dense``), biases zero, and each
    dropout layer's random-generator state gets its own seed.

    Parameters
    ----------
    model : keras.Model
        A network made by :func:`_build_network`.
    seed : int
        The fit's seed.

    Returns
    -------
    list of numpy.ndarray
        One array per entry of ``model.variables``, in that order.
    """
    weights_rng = np.random.default_rng([_WEIGHTS_STREAM, seed])
    dropout_seeds = np.random.SeedSequence([_DROPOUT_STREAM, seed])
    values = []
    for variable in model.variables:
        shape = tuple(variable.shape)
        dtype = np.dtype(variable.dtype)
        name = variable.path.rsplit("/", 1)[-1]
        if name == "seed_generator_state":
            (child,) = dropout_seeds.spawn(1)
            # Keras seeds are positive int32 values; the second word is a counter.
            first = int(child.generate_state(1)[0] % (2**31 - 2)) + 1
            values.append(np.array([first, 0], dtype=dtype))
        elif name == "kernel":
            fan_in, fan_out = int(np.prod(shape[:-1])), shape[-1]
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            values.append(weights_rng.uniform(-limit, limit, size=shape).astype(dtype))
        else:
            values.append(np.zeros(shape, dtype=dtype))
    return values


def loss_name(loss: Any) -> str:
    """A lower-case name for a Keras loss given as a string, an object or a function.

    Parameters
    ----------
    loss : str, keras.losses.Loss, callable or None

    Returns
    -------
    str
        Empty for None.
    """
    if loss is None:
        return ""
    if isinstance(loss, str):
        return loss.lower()
    name = getattr(loss, "name", None) or getattr(loss, "__name__", None)
    if isinstance(name, str):
        return name.lower()
    return type(loss).__name__.lower()


def loss_from_logits(loss: Any) -> bool:
    """Whether a Keras loss object was told its inputs are logits.

    Parameters
    ----------
    loss : str, keras.losses.Loss, callable or None

    Returns
    -------
    bool
    """
    get_config = getattr(loss, "get_config", None)
    if get_config is None:
        return False
    try:
        return bool(get_config().get("from_logits", False))
    except (TypeError, NotImplementedError):
        return False


def output_width(model: Any, x_sample: np.ndarray | None = None) -> int:
    """Width of a single-output model's output (its last dimension).

    Parameters
    ----------
    model : keras.Model
    x_sample : ndarray, optional
        Input for one forward pass, needed when the model has no symbolic outputs.

    Returns
    -------
    int
    """
    outputs = getattr(model, "outputs", None)
    if outputs:
        if len(outputs) != 1:
            raise ValueError("The wrappers support models with exactly one output.")
        return int(outputs[0].shape[-1])
    if x_sample is None:
        raise ValueError("Cannot tell the output width of an unbuilt model without data.")
    out = model(x_sample, training=False)
    return int(out.shape[-1]) if len(out.shape) > 1 else 1


def _make_optimizer(optimizer: Any, learning_rate: float | None, kwargs: dict[str, Any]) -> Any:
    """A new Keras optimizer from a name, a class or an instance (which is copied).

    Parameters
    ----------
    optimizer : str, type or keras.optimizers.Optimizer
        E.g. ``"adam"``, ``keras.optimizers.SGD`` or ``keras.optimizers.RMSprop(0.1)``.
    learning_rate : float or None
        Overrides the optimizer's own rate when not None.
    kwargs : dict
        Further optimizer arguments (``momentum``, ``beta_1``, ...).

    Returns
    -------
    keras.optimizers.Optimizer
    """
    import keras  # heavy: TensorFlow loads on first use

    overrides = dict(kwargs)
    if learning_rate is not None:
        overrides["learning_rate"] = float(learning_rate)
    if isinstance(optimizer, str):
        return keras.optimizers.get({"class_name": optimizer, "config": overrides})
    if isinstance(optimizer, type):
        return optimizer(**overrides)
    if isinstance(optimizer, keras.optimizers.Optimizer):
        config = {**optimizer.get_config(), **overrides}
        return type(optimizer).from_config(config)
    raise TypeError(
        f"optimizer must be a name such as 'adam', a Keras optimizer class or instance; "
        f"got {optimizer!r}."
    )


def _identity(value: Any) -> Any:
    """A JSON-able description of a parameter value, for cache keys."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_identity(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _identity(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    get_config = getattr(value, "get_config", None)
    if get_config is not None:
        try:
            config = dict(get_config())
            config.pop("learning_rate", None)
            return {
                "class": f"{type(value).__module__}.{type(value).__qualname__}",
                **_identity(config),
            }
        except (TypeError, NotImplementedError):
            pass
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}"
    # Unknown objects are only equal to themselves (the cache lives in this process).
    return f"{type(value).__qualname__}@{id(value)}"


@dataclass
class NetworkRecipe:
    """What to build for one fit, and how to compile it. Picklable (given a picklable builder).

    Attributes
    ----------
    task : {"classification", "regression"}
    input_shape : tuple of int
        Shape of one sample.
    builder : callable or None
        The user's ``model`` callable; None builds the default network.
    build_kwargs : dict
        Keyword arguments for ``builder``, or for :func:`_build_network` (including
        ``n_outputs`` and ``output_activation``).
    optimizer, learning_rate, optimizer_kwargs
        Passed to :func:`_make_optimizer` when the wrapper compiles.
    loss : str, keras loss or None
        None picks a default from the task and the output width.
    """

    task: str
    input_shape: tuple[int, ...]
    builder: Callable[..., Any] | None
    build_kwargs: dict[str, Any]
    optimizer: Any = "adam"
    learning_rate: float | None = 0.001
    optimizer_kwargs: dict[str, Any] = field(default_factory=dict)
    loss: Any = None

    def build(self, x_sample: np.ndarray | None = None) -> Any:
        """Build and (unless the builder did) compile a new model.

        Parameters
        ----------
        x_sample : ndarray, optional
            A batch of input, used to build a model whose variables are created on
            first call.

        Returns
        -------
        keras.Model
        """
        import keras  # heavy: TensorFlow loads on first use

        if self.builder is None:
            model = _build_network(self.input_shape, **self.build_kwargs)
        else:
            model = self.builder(**self.build_kwargs)
            if not isinstance(model, keras.Model):
                raise TypeError(
                    f"The model callable must return a keras.Model, got {type(model).__name__}."
                )
        if not model.built and x_sample is not None:
            model(x_sample, training=False)
        if not getattr(model, "compiled", False):
            loss = self.loss
            if loss is None:
                loss = self.default_loss(output_width(model, x_sample))
            model.compile(
                optimizer=_make_optimizer(
                    self.optimizer, self.learning_rate, self.optimizer_kwargs
                ),
                loss=loss,
                jit_compile=False,
            )
        return model

    def default_loss(self, width: int) -> str:
        """The loss used when none is given: cross-entropy or mean squared error."""
        if self.task == "regression":
            return "mean_squared_error"
        return "binary_crossentropy" if width == 1 else "sparse_categorical_crossentropy"

    @property
    def static_key(self) -> str | None:
        """Cache key of the default network (known before building); None for a builder."""
        if self.builder is not None:
            return None
        description = {
            "task": self.task,
            "input_shape": list(self.input_shape),
            "network": _identity(self.build_kwargs),
            "optimizer": _identity(self.optimizer),
            "optimizer_kwargs": _identity(self.optimizer_kwargs),
            "loss": _identity(self.loss),
        }
        if self.initial_learning_rate() is None:
            # The optimizer's own default rate is not known here: keep it in the key.
            description["optimizer_default_rate"] = True
        return "default:" + json.dumps(description, sort_keys=True)

    def initial_learning_rate(self) -> float | None:
        """The constant learning rate a fit starts from (for the default network).

        Returns
        -------
        float or None
            ``learning_rate``, else a number given as ``optimizer__learning_rate``, else
            the optimizer instance's own rate; None when the rate is a schedule (the
            optimizer then has no rate variable to reset) or not known.
        """
        if self.learning_rate is not None:
            return float(self.learning_rate)
        rate = self.optimizer_kwargs.get("learning_rate")
        if rate is None:
            get_config = getattr(self.optimizer, "get_config", None)
            rate = None if get_config is None else get_config().get("learning_rate")
        if isinstance(rate, numbers.Real) and not isinstance(rate, bool):
            return float(rate)
        return None
