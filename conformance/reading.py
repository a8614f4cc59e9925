"""Reading one TOML file: text, data, and line numbers for key paths.

Positions cost a scan of the text, so they are computed only when
something asks for a line (an error, a vector's location).
"""
from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

from .errors import KeyPath, LoadError, RuleViolation, render
from .lines import LineIndex, toml_error_position


def shown_path(path: str | os.PathLike[str]) -> str:
    """The path as messages print it."""
    return str(os.fspath(path))


@dataclass(frozen=True)
class Document:
    """A parsed TOML file. `line()` maps a key path to its 1-based line."""

    path: str
    text: str = field(repr=False)
    data: dict[str, Any] = field(repr=False)

    @functools.cached_property
    def _index(self) -> LineIndex:
        return LineIndex(self.text)

    def line(self, path: KeyPath) -> int:
        return self._index.line(path)

    def error(self, violation: RuleViolation) -> LoadError:
        """The violation, located in this file (with the line of the other key of a pair)."""
        message = violation.message
        if violation.other is not None:
            message += f" (line {self.line(violation.other)})"
        return LoadError(self.path, self.line(violation.path), render(violation.path) or "<root>", message)


def read_document(path: str | os.PathLike[str]) -> Document:
    """Read and parse one file; any problem is a LoadError."""
    shown = shown_path(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LoadError(shown, 0, "<file>", str(exc)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line, message = toml_error_position(str(exc), text)
        raise LoadError(shown, line, "<toml>", message) from None
    return Document(shown, text, data)
