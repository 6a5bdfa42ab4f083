"""TensorFlow process hygiene for long-lived worker processes.

Everything here acts on process-wide state, so it is small and explicit:

* :func:`configure_tensorflow` sizes TensorFlow's thread pools to the CPUs the process
  was given and turns on GPU memory growth. Both must happen before TensorFlow
  initialises its runtime (the first op, not the import), so the wrappers call it before
  they touch TensorFlow, and a worker can call it itself even earlier. It acts once per
  process; later calls are no-ops.
* :func:`seeded_keras` seeds Keras' global random state for one block (building a
  user's model) and gives Python's and NumPy's global generators back afterwards; it
  does not touch TensorFlow's global seed (see there why).
* :func:`note_model_built` clears TensorFlow's kernel cache every few model builds,
  which otherwise grows with every model a process builds.

It imports nothing else from raygrid (:mod:`raygrid.keras.training` builds on it, not the
other way round).

GPU paths cannot be exercised on the CPU-only machines this package is tested on; the
GPU branches below only call documented TensorFlow APIs and swallow the ``RuntimeError``
TensorFlow raises when the devices are already initialised.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
from sklearn.utils import check_random_state

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_configured = False


def thread_count_from_env() -> int | None:
    """The CPU count this process was given, read from the environment.

    ``RAYGRID_TF_THREADS`` wins, then ``TF_NUM_INTRAOP_THREADS``, then
    ``OMP_NUM_THREADS`` (which Ray sets to a task's or actor's ``num_cpus``).

    Returns
    -------
    int or None
        None when none of the variables holds a positive integer.
    """
    for name in ("RAYGRID_TF_THREADS", "TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value:
            try:
                count = int(float(value))
            except ValueError:
                continue
            if count > 0:
                return count
    return None


def configure_tensorflow(
    num_threads: int | None = None, *, gpu_memory_growth: bool = True
) -> bool:
    """Size TensorFlow's thread pools and enable GPU memory growth, once per process.

    Parameters
    ----------
    num_threads : int, optional
        Threads for TensorFlow's intra-op and inter-op pools. Defaults to
        :func:`thread_count_from_env`; when that is None too, TensorFlow keeps its own
        defaults (one thread per core).
    gpu_memory_growth : bool, default=True
        Let TensorFlow allocate GPU memory on demand instead of reserving each visible
        device whole, so several workers can share one GPU.

    Returns
    -------
    bool
        True if this call configured the process, False if an earlier call had, or if
        TensorFlow had already initialised and the settings could not be applied.

    Examples
    --------
    >>> from raygrid.keras import configure_tensorflow
    >>> configure_tensorflow(num_threads=2)  # doctest: +SKIP
    True
    """
    global _configured
    with _lock:
        if _configured:
            return False
        _configured = True
        import tensorflow as tf  # heavy: TensorFlow loads on first use

        applied = True
        threads = num_threads if num_threads is not None else thread_count_from_env()
        if threads is not None:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(int(threads))
                tf.config.threading.set_inter_op_parallelism_threads(int(threads))
            except RuntimeError:
                applied = False
                logger.debug("TensorFlow already initialised; thread pools left as they are")
        if gpu_memory_growth:
            # Listing physical devices does not initialise them.
            for gpu in tf.config.list_physical_devices("GPU"):
                try:
                    tf.config.experimental.set_memory_growth(gpu, True)
                except (RuntimeError, ValueError):  # ValueError: a raygrid memory limit is set
                    applied = False
                    logger.debug("GPU %s already initialised; memory growth unchanged", gpu)
        return applied


def resolve_seed(random_state: Any) -> int:
    """Turn a ``random_state`` parameter into the fit's integer seed.

    Parameters
    ----------
    random_state : int, numpy.random.RandomState or None
        An int is used as it is. None draws a seed from NumPy's global generator (so
        ``np.random.seed`` makes unseeded fits repeatable, as in scikit-learn); a
        ``RandomState`` draws one from itself.

    Returns
    -------
    int
        A seed in ``[0, 2**31 - 1)``.
    """
    if isinstance(random_state, int | np.integer) and not isinstance(random_state, bool):
        seed = int(random_state)
        if seed < 0:
            raise ValueError(f"random_state must be non-negative, got {seed}.")
        return seed
    return int(check_random_state(random_state).randint(0, 2**31 - 1))


@contextlib.contextmanager
def seeded_keras(seed: int | None) -> Iterator[None]:
    """Seed Keras' global randomness for one block; restore Python's and NumPy's after.

    Keras draws the seeds of unseeded initialisers, dropout layers and its global
    ``SeedGenerator`` from Python's ``random``; that generator and NumPy's global one are
    seeded here and given back their previous state afterwards, so a seeded fit does not
    change what the caller draws next.

    TensorFlow's global seed is deliberately left alone: ``tf.random.set_seed`` clears
    TensorFlow's kernel caches, after which every compiled function is instantiated
    again (measured: about 60 ms per call of the cached training loop). Unseeded raw
    ``tf.random`` ops in a user's model builder are therefore not made reproducible.

    Parameters
    ----------
    seed : int or None
        None leaves everything as it is.
    """
    if seed is None:
        yield
        return
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    random.seed(int(seed))
    np.random.seed(int(seed) % (2**32))
    _reset_keras_seed_generator()
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def _reset_keras_seed_generator() -> None:
    """Drop Keras' global SeedGenerator; Keras recreates it from Python's ``random``."""
    try:  # Keras internals, loaded only when a fit needs them
        from keras.src.backend.common import global_state
        from keras.src.random import seed_generator
    except ImportError:  # a Keras without this layout: nothing global to reset
        return
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)


#: Fresh models built between two clearings of TensorFlow's kernel cache.
KERNEL_CACHE_PERIOD = 20
_builds_since_clear = 0


def note_model_built() -> None:
    """Count a newly built model; clear TensorFlow's kernel cache every few builds.

    Eager TensorFlow caches one kernel per distinct op attributes, and every new variable
    brings ops with a new ``shared_name``: a process that builds a model per fit grows
    by about 0.2 MB a fit (measured: 17 MB over 80 fits of a small user model). Clearing
    the cache every :data:`KERNEL_CACHE_PERIOD` builds kept 180 such fits within 2 MB;
    the price is that cached compiled functions are instantiated again once after each
    clearing.
    """
    global _builds_since_clear
    with _lock:
        _builds_since_clear += 1
        if _builds_since_clear < KERNEL_CACHE_PERIOD:
            return
        _builds_since_clear = 0
    clear_kernel_cache()


def clear_kernel_cache() -> None:
    """Clear TensorFlow's eager kernel cache (as ``keras.backend.clear_session`` does)."""
    try:  # a TensorFlow internal, loaded only when a fit needs it
        from tensorflow.python.eager import context
    except ImportError:  # a TensorFlow without this internal module: nothing to clear
        return
    context.context().clear_kernel_cache()
