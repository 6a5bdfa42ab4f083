"""Constructors and docstrings that extend a parent's, spelt out for scikit-learn.

scikit-learn reads an estimator's parameters from its ``__init__`` signature (for
``get_params``, ``clone`` and ``repr``), so a subclass that adds parameters must declare
its parent's again. :func:`extended_init` builds such a constructor from the parent's
signature and the added parameters' defaults, so that the list is written once: raygrid's
searches add raygrid's options to scikit-learn's searches' constructors, and
``KerasClassifier`` adds ``class_weight`` to the Keras wrappers' shared one. Likewise
:func:`shared_docs` writes once what sibling classes' docstrings share, so that each
class's reference page still lists its whole constructor, as scikit-learn's do.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T", bound=type)


def extended_init(
    parent_init: Callable, added: dict[str, Any], *, after: str | None = None
) -> Callable:
    """An ``__init__``: ``parent_init``'s parameters plus keyword-only ``added`` ones.

    The function declares the whole signature (``__signature__``, which ``inspect`` and so
    scikit-learn read), calls ``parent_init`` with the parent's arguments, then stores each
    added argument as the attribute of its name, as scikit-learn asks of constructors.

    Parameters
    ----------
    parent_init : callable
        The parent class's ``__init__``.
    added : dict
        The added parameters' names and defaults, in order.
    after : str, default=None
        The parent parameter the added ones follow in the signature; by default they
        come last (before a ``**kwargs``).

    Returns
    -------
    callable
    """
    signature = inspect.signature(parent_init)
    parameters = list(signature.parameters.values())
    rest = [p.name for p in parameters if p.kind is inspect.Parameter.VAR_KEYWORD]
    if after is not None:
        at = [p.name for p in parameters].index(after) + 1
    else:
        at = len(parameters) - len(rest)
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
        for name, default in added.items()
    ]
    full = signature.replace(parameters=[*parameters[:at], *extra, *parameters[at:]])

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        bound = full.bind(self, *args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        own = {name: arguments.pop(name) for name in added}
        more = arguments.pop(rest[0], {}) if rest else {}
        parent_init(**arguments, **more)
        for name, value in own.items():
            setattr(self, name, value)

    __init__.__signature__ = full
    __init__.__doc__ = parent_init.__doc__
    return __init__


def shared_docs(parts: dict[str, str]) -> Callable[[T], T]:
    """A class decorator that puts each of ``parts``' texts in place of its marker.

    Parameters
    ----------
    parts : dict
        Marker (a whole line of the docstring, indented) to the text that replaces it.

    Returns
    -------
    callable
        The decorator; it returns the class it is given, its ``__doc__`` filled.
    """

    def fill(cls: T) -> T:
        if cls.__doc__ is not None:  # None under python -OO
            for marker, text in parts.items():
                cls.__doc__ = cls.__doc__.replace(marker, text)
        return cls

    return fill
