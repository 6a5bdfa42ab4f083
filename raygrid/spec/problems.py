"""A search spec's problems: collected as ``FILE: KEY: what was expected, got what`` lines.

Every table's checks (:mod:`raygrid.spec.search_spec`, :mod:`raygrid.spec.data`,
:mod:`raygrid.spec.output`) report to one :class:`Problems`, which raises them all at once
as a :class:`SpecError`. Also here: the words for a TOML value in a message
(:func:`describe`, :func:`key_text`), TOML arrays made tuples (:func:`tuplify`), and the
URI schemes a data or output location may have (:data:`OUTPUT_SCHEMES`).
"""

from __future__ import annotations

import difflib
from typing import Any

from raygrid.spec.toml_writer import toml_key, toml_value
from raygrid.text import shorten

__all__ = [
    "MISSING",
    "OUTPUT_SCHEMES",
    "Problems",
    "SpecError",
    "describe",
    "key_text",
    "tuplify",
]

#: URI schemes accepted for ``[output].path`` and ``[data].path`` (pyarrow filesystems).
OUTPUT_SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")

#: A key not set in a table (``table.get(key, MISSING)``).
MISSING: Any = object()


class SpecError(ValueError):
    """A search spec that cannot be run, with every problem found.

    Each problem is one line ``FILE: KEY: what was expected, got what``.

    Parameters
    ----------
    file : str
        The spec file as it was named.
    problems : list of (str, str)
        ``(key, message)`` pairs; the key is ``""`` when about the whole file.

    Attributes
    ----------
    file : str
        The spec file as it was named.
    problems : list of str
        One message per problem.
    keys : list of str
        The spec key each problem is about (``""`` when about the whole file).
    """

    def __init__(self, file: str, problems: list[tuple[str, str]]) -> None:
        self.file = file
        self.keys = [key for key, _ in problems]
        self.problems = [
            f"{file}: {key}: {text}" if key else f"{file}: {text}" for key, text in problems
        ]
        super().__init__("\n".join(self.problems))


class Problems:
    """Collects every problem of a spec file, then raises them together.

    Parameters
    ----------
    file : str
        The spec file as it was named (the start of every message).
    """

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[tuple[str, str]] = []

    def fail(self, key: str, expected: str, got: Any = MISSING) -> None:
        """Note a problem about ``key``.

        Parameters
        ----------
        key : str
            The spec key, e.g. ``"[search].cv"``.
        expected : str
            What was expected; the whole message when ``got`` is not given.
        got : object, optional
            The value found, said in TOML's words after ``expected``.
        """
        if got is MISSING:
            self.problems.append((key, expected))
        else:
            self.problems.append((key, f"expected {expected}, got {describe(got)}"))

    def raise_if_failed(self) -> None:
        """Raise the problems noted so far, if any.

        Raises
        ------
        SpecError
            With every problem noted.
        """
        if self.problems:
            raise SpecError(self.file, self.problems)

    def unknown_keys(self, table: dict, allowed: tuple[str, ...], where: str) -> None:
        """Note each key of ``table`` not in ``allowed``, with the closest one as a hint.

        Parameters
        ----------
        table : dict
            The TOML table.
        allowed : tuple of str
            Its keys.
        where : str
            The table's name, e.g. ``"[data]"``.
        """
        for key in table:
            if key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1)
                text = f"unknown key; expected one of {', '.join(allowed)}"
                if hint:
                    text += f" (did you mean {hint[0]!r}?)"
                self.fail(f"{where}.{key_text(key)}", text)

    def known_scheme(self, key: str, uri: str) -> bool:
        """Whether ``uri``'s scheme is one pyarrow can read and write; a problem if not.

        Parameters
        ----------
        key : str
            The spec key the URI is the value of.
        uri : str
            A location with a scheme (``scheme://...``).

        Returns
        -------
        bool
            True when the scheme is one of :data:`OUTPUT_SCHEMES`.
        """
        if uri.split("://", 1)[0].lower() in OUTPUT_SCHEMES:
            return True
        self.fail(
            key, f"a local path or a URI with one of the schemes {', '.join(OUTPUT_SCHEMES)}", uri
        )
        return False


def tuplify(value: Any) -> Any:
    """TOML has no tuples: arrays inside grid values and arguments become tuples.

    Parameters
    ----------
    value : object
        A TOML value.

    Returns
    -------
    object
        ``value`` with every array made a tuple (tables stay dicts).
    """
    if isinstance(value, list):
        return tuple(tuplify(v) for v in value)
    if isinstance(value, dict):
        return {k: tuplify(v) for k, v in value.items()}
    return value


def describe(value: Any) -> str:
    """A TOML value as a message says what was found: ``"three"``, ``an array [1, 2]``, ...

    Parameters
    ----------
    value : object
        The value found (None when there was none).

    Returns
    -------
    str
        The value in TOML's words, shortened to 80 characters.
    """
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a table"
    try:
        text = toml_value(value)
    except TypeError:
        text = repr(value)
    if isinstance(value, list):
        text = "an array " + text
    return shorten(text, 80, mark="...")


def key_text(name: Any) -> str:
    """A key as written in TOML (quoted when it must be), for a message's ``[table].key``.

    Parameters
    ----------
    name : object
        The key; a non-string is shown as its repr.

    Returns
    -------
    str
        The key's text.
    """
    return toml_key(name) if isinstance(name, str) else repr(name)
