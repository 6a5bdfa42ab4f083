"""scikit-learn estimators that train Keras networks: parameters, routing, fit/predict/score.

Parameters reach the network three ways:

* named wrapper parameters (``units``, ``learning_rate``, ``epochs``, ...), which shape
  the default network, the optimizer and the training;
* ``model__<name>``: keyword arguments of a user's ``model`` callable (the scikeras
  convention), given to the constructor and searchable like any other parameter;
* ``fit__<name>`` (``model.fit`` arguments, e.g. ``fit__shuffle=False``) and
  ``optimizer__<name>`` (optimizer settings, e.g. ``optimizer__momentum=0.9``).

A ``model`` callable may also ask for fit-time facts by naming them as arguments:
``n_features_in_``, ``input_shape``, ``n_outputs_``, ``n_classes_``, ``classes_``,
``target_type_`` or ``meta`` (a dict of all of them), and for any named wrapper
parameter (``units``, ``dropout_rate``, ``optimizer``, ...).
"""

from __future__ import annotations

import copy
import functools
import inspect
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils._param_validation import (
    Interval,
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from raygrid.constructors import extended_init, shared_docs
from raygrid.keras import training
from raygrid.keras.network import (
    NETWORK_PARAMS,
    NetworkRecipe,
    initial_values,
    loss_from_logits,
    loss_name,
    output_width,
)
from raygrid.keras.runtime import configure_tensorflow, resolve_seed

#: Prefixes of the routed (``**kwargs``) parameters.
_ROUTED_PREFIXES = ("model__", "fit__", "optimizer__")

# Keyword arguments of fit() that the wrapper interprets itself; others go to model.fit.
_FIT_OPTIONS = ("epochs", "batch_size", "shuffle", "verbose", "callbacks", "validation_split")
# model.fit arguments the wrapper always sets itself.
_OWNED_FIT_ARGS = frozenset({"x", "y", "sample_weight", "steps_per_epoch", "validation_steps"})
# fit() options whose values fit() checks against _parameter_constraints again.
_FIT_OPTIONS_CHECKED = ("epochs", "batch_size", "validation_split")
# Fitted attributes that only some fits set: dropped at the start of every fit.
_OPTIONAL_FITTED = ("validation_loss_curve_", "validation_indices_")
# fit__ parameters that leave a fit on the compiled loop and its epochs independent.
_PREFIX_SAFE_FIT_ARGS = frozenset({"batch_size", "shuffle"})


@dataclass
class FitPlan:
    """Everything a fit decided before training: data, options, recipe, seed, model.

    ``X``, ``y`` and ``sample_weight`` are the validated training data (``y`` as the
    wrapper encodes labels, before the loss's own encoding); ``session`` holds the
    compiled model reset to the fit's initial values.
    """

    X: np.ndarray
    y: np.ndarray
    sample_weight: np.ndarray | None
    options: training.FitOptions
    extras: dict[str, Any]
    recipe: NetworkRecipe
    seed: int
    session: training.TrainingSession


def _check_stops(values: Sequence[int]) -> list[int]:
    """``values`` of a prefix fit as a list, checked: non-negative ints, ascending, unique."""
    stops = [to_python(v) for v in values]
    if not stops or any(
        not isinstance(v, Integral) or isinstance(v, bool) or v < 0 for v in stops
    ):
        raise ValueError(f"values must be non-negative integers, got {list(values)!r}.")
    if any(b <= a for a, b in zip(stops, stops[1:], strict=False)):
        raise ValueError(f"values must be ascending without duplicates, got {stops!r}.")
    return [int(v) for v in stops]


def _monitor(early_stopping: bool, epochs: int | None) -> str | None:
    """What the training loop watches: held-out loss, training loss, or nothing."""
    if early_stopping:
        return "val_loss"
    return "loss" if epochs is None else None


def _callbacks_for_fit(callbacks: Sequence | None, given_to_fit: bool) -> list | None:
    """The callbacks one fit trains with: the estimator's own ones copied, None for none.

    Callbacks hold state (and a model once used): a fit never trains with the
    estimator's parameter objects, only with copies; callbacks given to ``fit()`` itself
    are used as they are.
    """
    if callbacks is None:
        return None
    callbacks = list(callbacks) if given_to_fit else copy.deepcopy(list(callbacks))
    return callbacks or None


def to_python(value: Any) -> Any:
    """Convert NumPy scalars, also inside lists, tuples and dicts, to Python objects.

    Keras rejects e.g. ``Dense(units=np.int64(32))``, and grids often hold NumPy values.
    Arrays are left alone.

    Parameters
    ----------
    value : object

    Returns
    -------
    object
    """
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return type(value)(to_python(v) for v in value)
    if isinstance(value, dict):
        return {to_python(k): to_python(v) for k, v in value.items()}
    return value


@functools.cache
def _constructor_params(cls: type) -> tuple[str, ...]:
    """scikit-learn's parameter names of ``cls``, read from its constructor once."""
    return tuple(super(_BaseKerasEstimator, cls)._get_param_names())


class _BaseKerasEstimator(BaseEstimator):
    """Constructor, parameters, routing and the fit/predict machinery of both wrappers.

    scikit-learn reads an estimator's parameters from its class's ``__init__`` signature:
    :class:`KerasRegressor` inherits this constructor as it is, and
    :class:`KerasClassifier` extends it with its one extra parameter, ``class_weight``
    (:func:`raygrid.constructors.extended_init`). Routed parameters (``model__<name>``, ``fit__<name>``,
    ``optimizer__<name>``) are the only keywords ``**kwargs`` takes; as scikit-learn
    asks, ``__init__`` and ``set_params`` only store them, and ``fit`` reports any other
    keyword.
    """

    _task = ""

    _parameter_constraints: dict = {
        "model": [callable, None],
        "units": [Interval(Integral, 1, None, closed="left")],
        "n_layers": [Interval(Integral, 0, None, closed="left")],
        "hidden_layer_sizes": ["array-like", None],
        "activation": [str, callable, None],
        "dropout_rate": [Interval(Real, 0, 1, closed="left")],
        "optimizer": "no_validation",  # a name, a Keras optimizer class or instance
        "learning_rate": [Interval(Real, 0, None, closed="neither"), None],
        "loss": "no_validation",  # a name, a Keras loss, a callable
        "epochs": [Interval(Integral, 0, None, closed="left"), None],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "validation_split": [Interval(Real, 0, 1, closed="left"), None],
        "callbacks": [list, tuple, None],
        "random_state": ["random_state"],
        "fast_path": ["boolean"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        model: Any = None,
        *,
        units: int = 32,
        n_layers: int = 1,
        hidden_layer_sizes: tuple[int, ...] | None = None,
        activation: Any = "relu",
        dropout_rate: float = 0.0,
        optimizer: Any = "adam",
        learning_rate: float | None = 0.001,
        loss: Any = None,
        epochs: int | None = None,
        max_iter: int = 200,
        tol: float = 1e-4,
        n_iter_no_change: int = 10,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        batch_size: int = 32,
        validation_split: float = 0.0,
        callbacks: list | None = None,
        random_state: int | None = None,
        fast_path: bool = True,
        verbose: int = 0,
        **kwargs: Any,
    ) -> None:
        self.model = model
        self.units = units
        self.n_layers = n_layers
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.dropout_rate = dropout_rate
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.loss = loss
        self.epochs = epochs
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.batch_size = batch_size
        self.validation_split = validation_split
        self.callbacks = callbacks
        self.random_state = random_state
        self.fast_path = fast_path
        self.verbose = verbose
        # Routed parameters live in one private dict: scikit-learn wants no public
        # attributes besides the signature's.
        self._extra_params = dict(kwargs)

    @classmethod
    def _get_param_names(cls) -> list[str]:
        # scikit-learn reads the constructor's signature at every get_params (a clone
        # calls it twice); a class's signature does not change, so it is read once.
        return list(_constructor_params(cls))

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Get the parameters of this estimator, including routed ``prefix__name`` ones.

        Parameters
        ----------
        deep : bool, default=True
            Also return the parameters of contained estimators.

        Returns
        -------
        dict
            Parameter names mapped to their values.
        """
        params = super().get_params(deep=deep)
        params.update(self.__dict__.get("_extra_params", {}))
        return params

    def set_params(self, **params: Any) -> _BaseKerasEstimator:
        """Set parameters, including routed ones such as ``model__hidden``.

        Parameters
        ----------
        **params
            Parameter names and values.

        Returns
        -------
        object
            The estimator, ``self``.
        """
        extra = self.__dict__.setdefault("_extra_params", {})
        plain = {}
        for key, value in params.items():
            if key.startswith(_ROUTED_PREFIXES) or key in extra:
                extra[key] = value
            else:
                plain[key] = value
        if plain:
            super().set_params(**plain)
        return self

    def _check_extra_params(self) -> None:
        unknown = [
            k for k in self.__dict__.get("_extra_params", {}) if not k.startswith(_ROUTED_PREFIXES)
        ]
        if unknown:
            raise ValueError(
                f"{type(self).__name__} got unknown parameter(s) {unknown}; routed parameters "
                f"start with one of {_ROUTED_PREFIXES}."
            )

    def _routed(self, params: dict[str, Any], prefix: str) -> dict[str, Any]:
        return {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}

    # -- pickling -----------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        # Live Keras objects are rebuilt from the recipe and the weights on demand.
        state.pop("_model_view", None)
        return state

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "_weights")

    # -- fitting ------------------------------------------------------------------

    def _validate_X(self, X: Any, *, reset: bool) -> np.ndarray:
        X = validate_data(self, X, reset=reset, dtype=np.float32, allow_nd=True)
        return np.ascontiguousarray(X, dtype=np.float32)

    def _fit_options(
        self, params: dict[str, Any], fit_params: dict[str, Any]
    ) -> tuple[training.FitOptions, dict[str, Any]]:
        """Merge constructor parameters, ``fit__`` parameters and ``fit()`` keywords."""
        merged, extra = self._merged_fit_args(params, fit_params)
        validation_data = extra.pop("validation_data", None)
        class_weight = extra.pop("class_weight", params.get("class_weight"))
        self._check_fit_args(merged, extra)
        epochs = merged.get("epochs")
        batch_size = merged.get("batch_size", 32)
        split = merged.get("validation_split", 0.0) or 0.0
        stopping = self._stopping_options(params)
        if stopping["early_stopping"] and (split or validation_data is not None):
            raise ValueError(
                "early_stopping=True holds out its own validation part (validation_fraction "
                "of the data given to fit); it cannot be combined with validation_split or "
                "validation_data."
            )
        options = training.FitOptions(
            epochs=stopping["max_iter"] if epochs is None else int(epochs),
            batch_size=32 if batch_size is None else int(batch_size),
            monitor=_monitor(stopping["early_stopping"], epochs),
            tol=stopping["tol"],
            patience=stopping["n_iter_no_change"],
            restore_best=stopping["early_stopping"],
            shuffle=bool(merged.get("shuffle", True)),
            verbose=int(merged.get("verbose", 0) or 0),
            callbacks=_callbacks_for_fit(merged.get("callbacks"), "callbacks" in fit_params),
            validation_split=float(split),
            fast_path=bool(params.get("fast_path", True)),
            fit_kwargs=extra,
        )
        return options, {
            "validation_data": validation_data,
            "class_weight": class_weight,
            "validation_fraction": stopping["validation_fraction"],
            "max_iter_reached_warns": epochs is None,
        }

    def _merged_fit_args(
        self, params: dict[str, Any], fit_params: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The fit options the wrapper reads, and the other ``model.fit`` arguments.

        Later sources override earlier ones: constructor parameters, ``fit__`` parameters,
        ``fit()`` keywords.
        """
        merged = {name: params[name] for name in _FIT_OPTIONS if name in params}
        merged.update(self._routed(params, "fit__"))
        merged.update(
            {k: to_python(v) if k != "validation_data" else v for k, v in fit_params.items()}
        )
        extra = {k: merged.pop(k) for k in list(merged) if k not in _FIT_OPTIONS}
        return merged, extra

    def _check_fit_args(self, merged: dict[str, Any], extra: dict[str, Any]) -> None:
        """Refuse ``model.fit`` arguments the wrapper sets; check options by the class rules."""
        clashing = sorted(set(extra) & _OWNED_FIT_ARGS)
        if clashing:
            raise ValueError(
                f"{clashing[0]!r} cannot be passed to model.fit through the wrapper: it sets "
                "it itself (sample weights go to fit(X, y, sample_weight=...))."
            )
        # Values given to fit() or as fit__ parameters pass the constructor's rules too.
        validate_parameter_constraints(
            {name: self._parameter_constraints[name] for name in _FIT_OPTIONS_CHECKED},
            {name: merged[name] for name in _FIT_OPTIONS_CHECKED if name in merged},
            caller_name=f"{type(self).__name__}.fit",
        )

    @staticmethod
    def _stopping_options(params: dict[str, Any]) -> dict[str, Any]:
        """``max_iter``, ``tol``, ``n_iter_no_change`` and early-stopping values, typed."""
        return {
            "max_iter": int(params["max_iter"]),
            "tol": float(params["tol"]),
            "n_iter_no_change": int(params["n_iter_no_change"]),
            "early_stopping": bool(params["early_stopping"]),
            "validation_fraction": float(params["validation_fraction"]),
        }

    def _model_kwargs(
        self, builder: Any, params: dict[str, Any], meta: dict[str, Any]
    ) -> dict[str, Any]:
        """Arguments for the user's ``model`` callable: ``model__`` values, meta, parameters."""
        routed = self._routed(params, "model__")
        signature = inspect.signature(builder)
        takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
        kwargs: dict[str, Any] = {}
        for name, parameter in signature.parameters.items():
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                continue
            if name in routed:
                kwargs[name] = routed[name]
            elif name == "meta":
                kwargs[name] = dict(meta)
            elif name in meta:
                kwargs[name] = meta[name]
            elif name in params and name != "model" and "__" not in name:
                kwargs[name] = params[name]
        unused = [name for name in routed if name not in kwargs]
        if unused and not takes_any:
            raise ValueError(
                f"model__{unused[0]} is not an argument of the model callable "
                f"{getattr(builder, '__qualname__', builder)!r}."
            )
        kwargs.update({name: routed[name] for name in unused})
        return kwargs

    def _make_recipe(
        self, params: dict[str, Any], meta: dict[str, Any], head: dict[str, Any]
    ) -> NetworkRecipe:
        import keras  # heavy: TensorFlow loads on first use

        builder = params.get("model")
        learning_rate = params.get("learning_rate")
        if learning_rate is not None:
            learning_rate = float(learning_rate)
        common = {
            "task": self._task,
            "input_shape": tuple(meta["input_shape"]),
            "optimizer": params.get("optimizer", "adam"),
            "learning_rate": learning_rate,
            "optimizer_kwargs": self._routed(params, "optimizer__"),
            "loss": params.get("loss"),
        }
        if builder is None:
            if self._routed(params, "model__"):
                raise ValueError("model__ parameters need a `model` callable.")
            build_kwargs = {name: params[name] for name in NETWORK_PARAMS}
            build_kwargs.update(head)
            return NetworkRecipe(builder=None, build_kwargs=build_kwargs, **common)
        if isinstance(builder, keras.Model) or not callable(builder):
            raise TypeError(
                "model must be a callable that returns a Keras model (not a model instance); "
                f"got {type(builder).__name__}."
            )
        return NetworkRecipe(
            builder=builder, build_kwargs=self._model_kwargs(builder, params, meta), **common
        )

    def _fit_network(
        self,
        X: np.ndarray,
        y: Any,
        sample_weight: np.ndarray | None,
        meta: dict[str, Any],
        head: dict[str, Any],
        fit_params: dict[str, Any],
    ) -> None:
        """Build (or reuse) the network, train it and record the fitted state."""
        plan = self._plan_fit(X, y, sample_weight, meta, head, fit_params)
        with plan.session as session:
            X, y_encoded, sample_weight = self._encode_for(plan, session)
            result = session.fit(X, y_encoded, sample_weight, plan.options, plan.seed)
        self._record_fit(plan, result)

    def _plan_fit(
        self,
        X: np.ndarray,
        y: Any,
        sample_weight: np.ndarray | None,
        meta: dict[str, Any],
        head: dict[str, Any],
        fit_params: dict[str, Any],
    ) -> FitPlan:
        """Validate the parameters and get a compiled model: everything before training."""
        self._validate_params()
        self._check_extra_params()
        params = to_python(self.get_params(deep=False))
        options, extras = self._fit_options(params, fit_params)
        sample_weight = self._weight_samples(sample_weight, y, extras["class_weight"], X)
        recipe = self._make_recipe(params, meta, head)
        random_state = params.get("random_state")
        seed = resolve_seed(random_state)
        x_sample = X[:1]
        session = training.acquire(
            lambda: recipe.build(x_sample),
            seed=seed,
            seeded_build=random_state is not None,
            x_sample=x_sample,
            static_key=recipe.static_key,
            initial_values=initial_values if recipe.builder is None else None,
            learning_rate=recipe.initial_learning_rate(),
        )
        for name in _OPTIONAL_FITTED:
            self.__dict__.pop(name, None)
        return FitPlan(X, y, sample_weight, options, extras, recipe, seed, session)

    def _encode_for(
        self, plan: FitPlan, session: training.TrainingSession
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Targets encoded for the model's loss; the early-stopping part held out."""
        self._set_output_format(session.model, plan.X[:1])
        y_encoded = self._encode_y(plan.y)
        options, extras = plan.options, plan.extras
        if extras["validation_data"] is not None:
            options.validation_data = self._encode_validation(extras["validation_data"])
        if options.monitor == "val_loss":
            return self._hold_out(
                plan.X,
                plan.y,
                y_encoded,
                plan.sample_weight,
                extras["validation_fraction"],
                plan.seed,
                options,
            )
        return plan.X, y_encoded, plan.sample_weight

    def _record_fit(self, plan: FitPlan, result: training.FitResult) -> None:
        """Set the fitted attributes from a training result."""
        options = plan.options
        self._recipe = plan.recipe
        self._weights = result.weights
        self._model_key = result.key
        self._weights_token = result.token
        self.__dict__.pop("_model_view", None)
        self.history_ = result.history
        self.fit_path_ = result.path
        self.n_iter_ = result.n_iter
        self.best_epoch_ = result.best_epoch
        self.loss_curve_ = list(result.history.get("loss", []))
        if "val_loss" in result.history:
            self.validation_loss_curve_ = list(result.history["val_loss"])
        if (
            options.monitor is not None
            and plan.extras["max_iter_reached_warns"]
            and not result.stopped
            and result.n_iter == options.epochs
        ):
            watched = "validation" if options.monitor == "val_loss" else "training"
            warnings.warn(
                f"{type(self).__name__}: max_iter={options.epochs} epochs reached and the "
                f"{watched} loss was still improving by more than tol={options.tol} within "
                f"n_iter_no_change={options.patience} epochs; consider a larger max_iter.",
                ConvergenceWarning,
                stacklevel=4,
            )

    def _hold_out(
        self,
        X: np.ndarray,
        y: np.ndarray,
        y_encoded: np.ndarray,
        sample_weight: np.ndarray | None,
        fraction: float,
        seed: int,
        options: training.FitOptions,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Split the early-stopping validation part off the data ``fit`` received.

        Stratified on the labels for a classifier, drawn from the fit's seed; the rows
        are recorded in ``validation_indices_`` and both parts keep their order.
        """
        rows = np.arange(len(X))
        stratify = y if self._task == "classification" else None
        try:
            train, held = train_test_split(
                rows, test_size=fraction, random_state=seed, stratify=stratify
            )
        except ValueError as exc:
            raise ValueError(
                f"early_stopping cannot hold out validation_fraction={fraction} of "
                f"{len(X)} samples: {exc}"
            ) from exc
        train, held = np.sort(train), np.sort(held)
        weights = np.ones(len(X), np.float32) if sample_weight is None else sample_weight
        options.stop_validation = (X[held], y_encoded[held], weights[held])
        self.validation_indices_ = held
        return X[train], y_encoded[train], weights[train]

    def _encode_validation(self, data: Any) -> tuple:
        if not isinstance(data, tuple | list) or len(data) not in (2, 3):
            raise ValueError("validation_data must be (X, y) or (X, y, sample_weight).")
        x_val = self._validate_X(data[0], reset=False)
        y_val = self._encode_y(self._check_y_like_fit(data[1]))
        if len(data) == 3 and data[2] is not None:
            return x_val, y_val, _check_sample_weight(data[2], x_val, dtype=np.float32)
        return x_val, y_val

    def _weight_samples(
        self, sample_weight: Any, y: Any, class_weight: Any, X: np.ndarray
    ) -> np.ndarray | None:
        if class_weight is not None:
            raise ValueError(f"{type(self).__name__} does not support class_weight.")
        if sample_weight is not None:
            sample_weight = _check_sample_weight(
                sample_weight, X, dtype=np.float32, ensure_non_negative=True
            )
        return sample_weight

    def _forward(self, X: Any) -> np.ndarray:
        """Network outputs for ``X`` (validated), through the process' compiled-model cache."""
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        recipe = self._recipe
        return training.predict(
            lambda: recipe.build(X[:1]), self._model_key, self._weights, self._weights_token, X
        )

    @property
    def model_(self) -> Any:
        """A standalone Keras model holding the fitted weights (built on first access)."""
        check_is_fitted(self)
        model = self.__dict__.get("_model_view")
        if model is None:
            model = self._recipe.build(np.zeros((1, *self._recipe.input_shape), np.float32))
            model.set_weights(self._weights)
            self.__dict__["_model_view"] = model
        return model

    # -- device hook: what TensorFlow sees in a worker that holds GPUs ------------

    def visible_devices(self) -> dict[str, Any]:
        """The GPUs TensorFlow can use in this process (raygrid's device hook).

        A search's worker that holds GPUs calls it before its first fit and stops the
        search when the list is empty (see :mod:`raygrid.run.devices`).

        Returns
        -------
        dict
            ``framework``, ``gpus`` (e.g. ``["GPU:0 NVIDIA A10G"]``) and ``built_for``;
            see :func:`raygrid.keras.devices.tensorflow_devices`.
        """
        from raygrid.keras.devices import tensorflow_devices

        return tensorflow_devices()

    # -- prefix fits: one training run scored at several epoch counts -------------

    def prefix_fit_param(self) -> str | None:
        """The parameter along which fits share their prefix: ``"epochs"``, or None.

        ``"epochs"`` when, as configured, a fit to more epochs passes bit for bit through
        the state a fit to fewer epochs ends in: an explicit integer ``epochs`` trained
        by the compiled loop (``fast_path``, no callbacks, ``validation_split``,
        ``verbose`` or ``fit__`` arguments other than ``batch_size``/``shuffle``), no
        ``early_stopping`` (its held-out loss decides the end), an integer
        ``random_state`` (an unseeded fit is not reproducible to begin with), and a
        ``model`` callable, if any, that does not take ``epochs`` (it could size a
        learning-rate schedule from it). A schedule that is a fixed function of the step
        counter is fine: steps carry over. None otherwise.

        Returns
        -------
        str or None
            ``"epochs"`` or None, as above.
        """
        params = to_python(self.get_params(deep=False))
        epochs = params.get("epochs")
        random_state = params.get("random_state")
        fit_args = set(self._routed(params, "fit__"))
        plain = (
            isinstance(epochs, Integral)
            and not isinstance(epochs, bool)
            and isinstance(random_state, Integral)
            and not isinstance(random_state, bool)
            and params.get("fast_path", True)
            and not params.get("early_stopping", False)
            and not params.get("callbacks")
            and not params.get("verbose")
            and not params.get("validation_split")
            and fit_args <= _PREFIX_SAFE_FIT_ARGS
        )
        if not plain:
            return None
        builder = params.get("model")
        if builder is not None:
            try:
                if "epochs" in inspect.signature(builder).parameters:
                    return None
            except (TypeError, ValueError):
                return None
        return "epochs"

    def prefix_fit(
        self, X: Any, y: Any = None, *, values: Sequence[int], **fit_params: Any
    ) -> Iterator[int]:
        """Train once to ``max(values)`` epochs and stop at each value on the way.

        A generator: each ``next`` trains up to the next value of ``values`` and yields
        it, with ``self`` then fitted exactly as ``clone(self).set_params(epochs=v)
        .fit(X, y, **fit_params)`` would be (same predictions, bit for bit, and same
        ``n_iter_``, ``loss_curve_``, ``history_``; ``self.epochs`` is set to ``v``).
        Score ``self`` between yields; do not keep references to its fitted state.
        When :meth:`prefix_fit_param` is None, or ``fit_params`` leave the compiled loop
        (``callbacks``, ``epochs``, ``validation_data``, ...), each value is fitted
        independently instead: same results, no time saved.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Training data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Target values.
        values : sequence of int
            Epoch counts, ascending, without duplicates.
        **fit_params
            As for :meth:`fit` (``sample_weight`` included).

        Yields
        ------
        int
            The epoch count ``self`` is now fitted to.
        """
        stops = _check_stops(values)
        sample_weight = fit_params.pop("sample_weight", None)
        plan = None
        if self.prefix_fit_param() == "epochs" and "epochs" not in fit_params:
            configure_tensorflow()
            self.set_params(epochs=stops[-1])
            X_valid, y_target, meta, head = self._fit_inputs(X, y)
            plan = self._plan_fit(X_valid, y_target, sample_weight, meta, head, fit_params)
            if not plan.options.wants_fast_path() or plan.options.monitor is not None:
                plan = None
        done = 0
        if plan is not None:
            with plan.session as session:
                X_enc, y_enc, weights = self._encode_for(plan, session)
            segments = plan.session.fit_prefixes(
                X_enc, y_enc, weights, plan.options, plan.seed, stops
            )
            try:
                for stop, result in zip(stops, segments, strict=True):
                    self.set_params(epochs=stop)
                    self._record_fit(plan, result)
                    done += 1
                    yield stop
            except training.FastPathUnavailable:
                pass  # the remaining values are fitted independently below
        for stop in stops[done:]:
            self.set_params(epochs=stop)
            self.fit(X, y, sample_weight=sample_weight, **fit_params)
            yield stop

    # -- fused fits: many configurations trained as one stack ----------------------

    def fusion_key(self) -> str | None:
        """Key of the group of fits this configuration can be trained with, or None.

        The fusion hook raygrid's searches use with ``fuse=True`` (see
        :mod:`raygrid.run.fusion`); :func:`raygrid.keras.fused.fusion_key` says which
        configurations fuse.

        Returns
        -------
        str or None
            Equal for configurations that differ only in ``learning_rate``,
            ``dropout_rate``, ``epochs`` and ``random_state``; None when this one
            cannot be fused.
        """
        from raygrid.keras import fused  # imports TensorFlow: only when asked

        return fused.fusion_key(self)

    def fit_fused(
        self,
        X: Any,
        y: Any = None,
        *,
        jobs: Sequence[tuple[dict[str, Any], np.ndarray]],
        **fit_params: Any,
    ) -> list[Any]:
        """Fit ``clone(self).set_params(**params)`` on ``X[train]`` for every job, fused.

        The fusion hook raygrid's searches use with ``fuse=True`` (see
        :mod:`raygrid.run.fusion`): the fits train together as one stack of networks
        (:mod:`raygrid.keras.fused`).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data of every job.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Target values of every job.
        jobs : sequence of (dict, array of int)
            Parameters and training rows of each fit; every configuration must have the
            same :meth:`fusion_key`.
        **fit_params
            ``sample_weight`` (for all of ``X``) and ``class_weight``.

        Returns
        -------
        list
            One fitted estimator per job, in order (``fit_path_`` is ``"fused"``).
        """
        from raygrid.keras import fused

        return fused.fit_fused(self, X, y, jobs, **fit_params)

    # -- hooks for the subclasses -------------------------------------------------

    def _fit_inputs(
        self, X: Any, y: Any
    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any], dict[str, Any]]:
        """Validate ``X`` and ``y``, set the data-dependent fitted attributes.

        Returns ``(X, y as the wrapper encodes it, meta, output head)``.
        """
        raise NotImplementedError

    def _set_output_format(self, model: Any, x_sample: np.ndarray) -> None:
        raise NotImplementedError

    def _encode_y(self, y: Any) -> np.ndarray:
        raise NotImplementedError

    def _check_y_like_fit(self, y: Any) -> np.ndarray:
        raise NotImplementedError


# -- what fused training (raygrid.keras.fused) needs from a wrapper ----------------


def plan_fused_fit(
    estimator: _BaseKerasEstimator,
    X: np.ndarray,
    y: np.ndarray,
    sample_weight: np.ndarray | None,
    fit_params: dict[str, Any],
) -> tuple[FitPlan, np.ndarray]:
    """Everything ``estimator.fit(X, y)`` does before training, for a fit trained elsewhere.

    Validates the data and the parameters, sets the data-dependent fitted attributes
    and gets the compiled model (not entered: its initial values are what fused
    training reads).

    Returns
    -------
    plan : FitPlan
    y_encoded : ndarray
        ``plan.y`` encoded as the model's loss expects it.
    """
    X_valid, y_target, meta, head = estimator._fit_inputs(X, y)
    plan = estimator._plan_fit(X_valid, y_target, sample_weight, meta, head, fit_params)
    estimator._set_output_format(plan.session.model, X_valid[:1])
    return plan, estimator._encode_y(plan.y)


def record_fused_fit(
    estimator: _BaseKerasEstimator, plan: FitPlan, result: training.FitResult
) -> None:
    """Set ``estimator``'s fitted attributes from a training result, as ``fit`` does.

    For a fit planned by :func:`plan_fused_fit`.
    """
    estimator._record_fit(plan, result)


# What the two wrappers' docstrings share, written once: the decorator puts it in place of
# the markers, so each class's reference page lists its whole constructor, as
# scikit-learn's do.
_SHARED_DOCS = {
    "    {network parameters}": """\
    model : callable, optional
        Returns a Keras model (compiled or not; an uncompiled one is compiled with
        ``optimizer``, ``learning_rate`` and ``loss``, a compiled one keeps its own).
        Its arguments are filled from ``model__<name>`` parameters, fit-time facts
        (``n_features_in_``, ``input_shape``, ``n_outputs_`` -- the width the output
        layer needs: the number of classes for a classifier, of target columns for a
        regressor --, ``n_classes_``, ``classes_``, ``target_type_``, ``meta``: a dict
        of these) and same-named wrapper parameters (``units``, ``dropout_rate``, ...). None builds the
        default network: ``n_layers`` hidden ``Dense(units, activation)`` layers (or
        ``hidden_layer_sizes``), each followed by ``Dropout(dropout_rate)`` when that is
        non-zero, then the output layer.
    units : int, default=32
        Width of each hidden layer of the default network.
    n_layers : int, default=1
        Number of hidden layers of the default network.
    hidden_layer_sizes : tuple of int, optional
        Widths of the hidden layers; overrides ``units`` and ``n_layers``.
    activation : str or callable, default="relu"
        Activation of the hidden layers.
    dropout_rate : float, default=0.0
        Dropout rate after each hidden layer.
    optimizer : str, keras optimizer class or instance, default="adam"
        E.g. ``"adam"``, ``"sgd"``, ``"rmsprop"``; ``optimizer__<name>`` parameters set
        its other arguments (``optimizer__momentum=0.9``).
    learning_rate : float, default=0.001
        The optimizer's learning rate; None keeps the optimizer's own.
    loss : str or keras loss, optional""",
    "    {training parameters}": """\
    epochs : int or None, default=None
        None (the default) trains like scikit-learn's MLP: up to ``max_iter`` epochs,
        stopping once the training loss has not improved by more than ``tol`` for
        ``n_iter_no_change`` epochs in a row. An int trains exactly that many epochs
        (``max_iter``, ``tol`` and ``n_iter_no_change`` are then unused), unless
        ``early_stopping`` is on, which makes it the maximum instead of ``max_iter``.
    max_iter : int, default=200
        Maximum number of epochs when ``epochs`` is None. Reaching it before the
        watched loss stopped improving emits a ``ConvergenceWarning``.
    tol : float, default=1e-4
        An epoch improves when the watched loss (training loss, or validation loss with
        ``early_stopping``) is below the best so far by more than ``tol``.
    n_iter_no_change : int, default=10
        Training stops after this many epochs in a row without improvement (the
        ``patience`` of Keras' ``EarlyStopping``).
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data given to ``fit`` (stratified for a
        classifier, drawn from ``random_state``), watch the loss on it instead of the
        training loss, and keep the weights of the best epoch. Inside a search the
        held-out rows come from each fold's training part, never from its test part.
        Runs in the compiled loop, with the stopping rule of
        ``keras.callbacks.EarlyStopping(min_delta=tol, patience=n_iter_no_change,
        restore_best_weights=True)``.
    validation_fraction : float, default=0.1
        Fraction of the data held out for ``early_stopping``.
    batch_size : int, default=32
        Number of samples per gradient step.
    validation_split : float, default=0.0
        Fraction of the training data held out (from its end) for Keras' validation
        metrics, e.g. for a user's ``EarlyStopping(monitor="val_loss")`` callback;
        not with ``early_stopping``.
    callbacks : list of keras callbacks, optional
        Copied for every fit. Any callback trains with ``model.fit`` (the compiled loop
        cannot call Python between epochs), so Keras' ``EarlyStopping`` or
        ``ReduceLROnPlateau`` work as in Keras, at ``model.fit``'s speed.""",
    "    {run parameters}": """\
    random_state : int or None, default=None
        Seeds weights, dropout and shuffling: the same seed gives the same predictions
        in any process (with the same TensorFlow thread count). None gives ordinary
        randomness.
    fast_path : bool, default=True
        Train with the compiled, cached training loop when the options allow it: no
        callbacks, ``validation_split``, ``validation_data`` or extra ``model.fit``
        arguments, and ``verbose=0`` (``early_stopping`` and the ``tol`` rule run in the
        compiled loop); False always uses ``model.fit``. Both give the same result for
        the same seed.
    verbose : int, default=0
        ``model.fit`` verbosity; non-zero uses ``model.fit``.
    **kwargs
        Routed parameters: ``model__<name>``, ``fit__<name>``, ``optimizer__<name>``.""",
    "    {fitted attributes}": """\
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of str
        Names of the features seen during ``fit``; only when ``X`` had string column names.
    history_ : dict
        Per-epoch training loss (and what ``model.fit`` logged).
    n_iter_ : int
        Number of epochs run.
    best_epoch_ : int or None
        1-based epoch whose weights were kept, with ``early_stopping`` (or a user's
        ``EarlyStopping(restore_best_weights=True)`` callback); None otherwise.
    loss_curve_ : list of float
        Training loss of each epoch.
    validation_loss_curve_ : list of float
        Validation loss of each epoch; only when there was validation data.
    validation_indices_ : ndarray of int
        Rows of the ``X`` given to ``fit`` held out for ``early_stopping``; only then.
    fit_path_ : str
        ``"fast"`` or ``"keras"``: the training loop used.
    model_ : keras.Model
        The fitted network (built on first access; not pickled, rebuilt on demand).""",
}


@shared_docs(_SHARED_DOCS)
class KerasClassifier(ClassifierMixin, _BaseKerasEstimator):
    """A scikit-learn classifier that trains a Keras network (TensorFlow backend).

    Labels may be any values scikit-learn accepts (strings, non-contiguous integers,
    binary or multiclass); ``predict`` returns them, ``predict_proba`` has one column per
    class in ``classes_`` order and ``score`` is accuracy.

    Parameters
    ----------
    {network parameters}
        Used when the wrapper compiles the model; None picks sparse categorical cross-entropy (binary cross-entropy for a one-unit output).
    {training parameters}
    class_weight : dict, "balanced" or None, default=None
        Weights per class label, multiplied into the sample weights.
    {run parameters}

    Attributes
    ----------
    {fitted attributes}
    classes_ : ndarray of shape (n_classes,)
        The class labels seen during ``fit``.
    n_classes_ : int
        Number of classes.

    See Also
    --------
    KerasRegressor : The same network and training options for regression.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from raygrid.keras import KerasClassifier
    >>> X, y = make_classification(n_samples=60, n_features=4, random_state=0)
    >>> clf = KerasClassifier(units=8, epochs=5, random_state=0).fit(X, y)
    >>> clf.predict_proba(X).shape
    (60, 2)
    """

    _task = "classification"

    _parameter_constraints: dict = {
        **_BaseKerasEstimator._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    # scikit-learn reads the parameters from the signature: the base class's, plus
    # class_weight.
    __init__ = extended_init(
        _BaseKerasEstimator.__init__, {"class_weight": None}, after="callbacks"
    )

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        tags.classifier_tags.multi_label = False
        return tags

    def fit(self, X: Any, y: Any, sample_weight: Any = None, **fit_params: Any) -> KerasClassifier:
        """Train the network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, ...)
            Training data.
        y : array-like of shape (n_samples,)
            Class labels.
        sample_weight : array-like of shape (n_samples,), optional
            Weight of each sample in the loss; None weighs them equally.
        **fit_params
            ``class_weight``, ``epochs``, ``batch_size``, ``shuffle``, ``verbose``,
            ``callbacks``, ``validation_split``, ``validation_data`` (in label space) or
            any other ``model.fit`` argument; they override the constructor's values.

        Returns
        -------
        object
            The fitted estimator, ``self``.
        """
        configure_tensorflow()
        X, y_index, meta, head = self._fit_inputs(X, y)
        self._fit_network(X, y_index, sample_weight, meta, head, fit_params)
        return self

    def _fit_inputs(
        self, X: Any, y: Any
    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any], dict[str, Any]]:
        X, y = validate_data(self, X, y, dtype=np.float32, allow_nd=True)
        X = np.ascontiguousarray(X, dtype=np.float32)
        check_classification_targets(y)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        self.n_classes_ = len(self.classes_)
        if self.n_classes_ < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes; got one class "
                f"({self.classes_[0]!r})."
            )
        meta = {
            "n_features_in_": self.n_features_in_,
            "input_shape": tuple(X.shape[1:]),
            "n_classes_": self.n_classes_,
            "n_outputs_": self.n_classes_,
            "classes_": self.classes_,
            "target_type_": type_of_target(y),
        }
        binary_head = self.n_classes_ == 2 and "binary" in loss_name(self.loss)
        head = (
            {"n_outputs": 1, "output_activation": "sigmoid"}
            if binary_head
            else {"n_outputs": self.n_classes_, "output_activation": "softmax"}
        )
        return X, y_index, meta, head

    def _weight_samples(
        self, sample_weight: Any, y: Any, class_weight: Any, X: np.ndarray
    ) -> np.ndarray | None:
        sample_weight = super()._weight_samples(sample_weight, y, None, X)
        if class_weight is None:
            return sample_weight
        weights = compute_sample_weight(class_weight, self.classes_[y]).astype(np.float32)
        return weights if sample_weight is None else sample_weight * weights

    def _set_output_format(self, model: Any, x_sample: np.ndarray) -> None:
        width = output_width(model, x_sample)
        loss = getattr(model, "loss", None)
        name = loss_name(loss)
        if width == 1:
            if self.n_classes_ != 2:
                raise ValueError(
                    f"The model has one output unit but y has {self.n_classes_} classes."
                )
            self._target_encoding = "binary"
        elif width != self.n_classes_:
            raise ValueError(
                f"The model's output has {width} units but y has {self.n_classes_} classes."
            )
        else:
            self._target_encoding = "sparse" if "sparse" in name else "onehot"
        self._output_logits = loss_from_logits(loss)

    def _check_y_like_fit(self, y: Any) -> np.ndarray:
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()
        index = np.searchsorted(self.classes_, y)
        index = np.clip(index, 0, len(self.classes_) - 1)
        if not np.array_equal(self.classes_[index], y):
            raise ValueError("validation y holds labels not seen in the training y.")
        return index

    def _encode_y(self, y_index: np.ndarray) -> np.ndarray:
        y_index = np.asarray(y_index)
        if self._target_encoding == "sparse":
            return y_index.astype(np.int32)
        if self._target_encoding == "binary":
            return y_index.astype(np.float32).reshape(-1, 1)
        return np.eye(self.n_classes_, dtype=np.float32)[y_index]

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples, shaped like the training data.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Columns in ``classes_`` order, rows summing to 1 (also for two classes).
        """
        out = self._forward(X).astype(np.float64)
        if out.ndim == 1:
            out = out.reshape(-1, 1)
        if out.shape[1] == 1:
            p = 1.0 / (1.0 + np.exp(-out[:, 0])) if self._output_logits else out[:, 0]
            p = np.clip(p, 0.0, 1.0)
            return np.column_stack([1.0 - p, p])
        if self._output_logits:
            out = np.exp(out - out.max(axis=1, keepdims=True))
        out = np.clip(out, 0.0, None)
        return out / out.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples, shaped like the training data.

        Returns
        -------
        ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


@shared_docs(_SHARED_DOCS)
class KerasRegressor(RegressorMixin, _BaseKerasEstimator):
    """A scikit-learn regressor that trains a Keras network (TensorFlow backend).

    ``y`` may have one or several columns; ``predict`` returns the same shape (1-D for
    1-D ``y``) and ``score`` is R².

    Parameters
    ----------
    {network parameters}
        Used when the wrapper compiles the model; None picks mean squared error.
    {training parameters}
    {run parameters}

    Attributes
    ----------
    {fitted attributes}
    n_outputs_ : int
        Number of target columns.

    See Also
    --------
    KerasClassifier : The same network and training options for classification.

    Examples
    --------
    >>> from sklearn.datasets import make_regression
    >>> from raygrid.keras import KerasRegressor
    >>> X, y = make_regression(n_samples=60, n_features=4, random_state=0)
    >>> reg = KerasRegressor(units=8, epochs=5, random_state=0).fit(X, y)
    >>> reg.predict(X).shape
    (60,)
    """

    _task = "regression"

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.single_output = True
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X: Any, y: Any, sample_weight: Any = None, **fit_params: Any) -> KerasRegressor:
        """Train the network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, ...)
            Training data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Target values.
        sample_weight : array-like of shape (n_samples,), optional
            Weight of each sample in the loss; None weighs them equally.
        **fit_params
            ``epochs``, ``batch_size``, ``shuffle``, ``verbose``, ``callbacks``,
            ``validation_split``, ``validation_data`` or any other ``model.fit``
            argument; they override the constructor's values.

        Returns
        -------
        object
            The fitted estimator, ``self``.
        """
        configure_tensorflow()
        X, y2, meta, head = self._fit_inputs(X, y)
        self._fit_network(X, y2, sample_weight, meta, head, fit_params)
        return self

    def _fit_inputs(
        self, X: Any, y: Any
    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any], dict[str, Any]]:
        X, y = validate_data(
            self, X, y, dtype=np.float32, allow_nd=True, multi_output=True, y_numeric=True
        )
        X = np.ascontiguousarray(X, dtype=np.float32)
        y = np.asarray(y)
        self._y_1d = y.ndim == 1
        y2 = y.reshape(len(y), -1).astype(np.float32)
        self.n_outputs_ = y2.shape[1]
        meta = {
            "n_features_in_": self.n_features_in_,
            "input_shape": tuple(X.shape[1:]),
            "n_outputs_": self.n_outputs_,
            "target_type_": type_of_target(y),
        }
        head = {"n_outputs": self.n_outputs_, "output_activation": "linear"}
        return X, y2, meta, head

    def _set_output_format(self, model: Any, x_sample: np.ndarray) -> None:
        width = output_width(model, x_sample)
        if width != self.n_outputs_:
            raise ValueError(
                f"The model's output has {width} units but y has {self.n_outputs_} columns."
            )

    def _check_y_like_fit(self, y: Any) -> np.ndarray:
        return np.asarray(y, dtype=np.float32).reshape(len(y), -1)

    def _encode_y(self, y: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(y, dtype=np.float32)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted targets.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples, shaped like the training data.

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Float64; 1-D when the model was fitted on 1-D ``y``.
        """
        out = self._forward(X).astype(np.float64).reshape(-1, self.n_outputs_)
        return out[:, 0] if self._y_1d else out
