"""Short text for terminals and error messages: one way to cut a value or an exception down."""

from __future__ import annotations


def shorten(text: str, width: int, mark: str = "…") -> str:
    """``text`` cut to at most ``width`` characters, ending in ``mark`` when cut.

    Parameters
    ----------
    text : str
    width : int
        The longest result, ``mark`` included.
    mark : str, default="…"
        What replaces the cut-off end.

    Returns
    -------
    str

    Examples
    --------
    >>> shorten("learning_rate_init", 10)
    'learning_…'
    """
    return text if len(text) <= width else text[: width - len(mark)] + mark


def error_line(exc: BaseException) -> str:
    """An exception as one line: its class name and the first line of its message.

    Parameters
    ----------
    exc : BaseException

    Returns
    -------
    str

    Examples
    --------
    >>> error_line(ValueError("bad value\\nmore detail"))
    'ValueError: bad value'
    """
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"
