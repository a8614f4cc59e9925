"""Reading one TOML file: text, data, and line numbers for key paths.

Reading is strict: the bytes must be UTF-8, the text must be TOML (no byte
order mark, no bare carriage return, brackets nested at most MAX_DEPTH
deep), and every problem is a LoadError with the 1-based line it is on.

Positions cost a scan of the text, so they are computed only when
something asks for a line (an error, a vector's location).
"""

from __future__ import annotations

import functools
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

from .errors import KeyPath, LoadError, RuleViolation, render
from .lines import LineIndex, first_beyond, line_at, max_depth, toml_error_position

# Arrays and inline tables nested deeper than this are refused before tomllib
# sees them: it recurses once per level, so deep input would exhaust the stack.
# The vector format itself never nests beyond about 6 levels.
MAX_DEPTH = 32

AnyPath = str | bytes | os.PathLike[str] | os.PathLike[bytes]

_BARE_CR = re.compile(r"\r(?!\n)")
_BOM = "\ufeff"


def shown_path(path: AnyPath) -> str:
    """The path as messages print it: printable and encodable, whatever bytes the name has
    (undecodable bytes as \\xNN, control and other unprintable characters escaped)."""
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


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


def read_document(path: AnyPath) -> Document:
    """Read and parse one file; any problem is a LoadError."""
    shown = shown_path(path)
    text = _decode(_read_bytes(path, shown), shown)
    return Document(shown, text, parse_text(text, shown))


def _read_bytes(path: AnyPath, shown: str) -> bytes:
    try:
        with open(path, "rb") as stream:
            return stream.read()
    except OSError as exc:
        # str(exc) repeats the raw name, which may not be encodable; `shown` already says it
        raise LoadError(shown, 0, "<file>", f"cannot read: {exc.strerror or type(exc).__name__}") from None


def _decode(raw: bytes, shown: str) -> str:
    """UTF-8, strictly; the first bad byte is located by line, column and offset."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        start = exc.start
        column = start - (raw.rfind(b"\n", 0, start) + 1) + 1
        message = (
            f"not valid UTF-8: byte 0x{raw[start]:02x} at byte offset {start} (column {column} in bytes): {exc.reason}"
        )
        raise LoadError(shown, raw.count(b"\n", 0, start) + 1, "<file>", message) from None


def parse_text(text: str, shown: str) -> dict[str, Any]:
    """tomllib, after the checks it lacks; errors name `shown` and the line they are on."""
    if text.startswith(_BOM):
        raise LoadError(
            shown, 1, "<file>", "the file starts with a byte order mark (U+FEFF); TOML files are UTF-8 without one"
        )
    problem = _precheck(text)
    if problem is not None:
        offset, message = problem
        raise _earlier_toml_error(text, shown, offset) or LoadError(shown, line_at(text, offset), "<toml>", message)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line, message = toml_error_position(str(exc), text)
        raise LoadError(shown, line, "<toml>", message) from None
    except RecursionError:  # a safety net: the depth check should have refused this
        deepest = max_depth(text)
        where = first_beyond(text, deepest - 1)
        line = 0 if where is None else line_at(text, where)
        raise LoadError(shown, line, "<toml>", f"nested too deeply for the TOML parser ({deepest} levels)") from None


def _precheck(text: str) -> tuple[int, str] | None:
    """The first problem tomllib would miss, misplace or crash on: (offset, message)."""
    problems = []
    bare_cr = _BARE_CR.search(text)
    if bare_cr is not None:
        column = bare_cr.start() - text.rfind("\n", 0, bare_cr.start())
        problems.append(
            (bare_cr.start(), f"bare carriage return (CR without LF) at column {column} is not allowed in TOML")
        )
    if max_depth(text) > MAX_DEPTH:
        deep = first_beyond(text, MAX_DEPTH)
        assert deep is not None  # max_depth and first_beyond walk the same tokens
        problems.append((deep, f"arrays and inline tables nested more than {MAX_DEPTH} levels deep"))
    return min(problems, default=None)


def _earlier_toml_error(text: str, shown: str, offset: int) -> LoadError | None:
    """A syntax error on an earlier line comes first. The text before the problem's line passed
    the checks, so tomllib parses it safely; cutting the text there only adds end-of-document errors."""
    before = text[: text.rfind("\n", 0, offset) + 1]
    try:
        tomllib.loads(before)
    except tomllib.TOMLDecodeError as exc:
        if "at end of document" not in str(exc):
            line, message = toml_error_position(str(exc), before)
            return LoadError(shown, line, "<toml>", message)
    return None
