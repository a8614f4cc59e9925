"""Line numbers for TOML key paths.

tomllib returns plain dicts without positions, so error messages would
otherwise have no line. This module scans the source text once and records,
for every key path it can recognise, the line where that path starts:

  ("vector", 2, "step", 0)                        -> the 3rd [[vector]]'s 1st [[vector.step]] header
  ("vector", 0, "initial", "mappings", 3)         -> the line of the 4th element of a multi-line array
  ("table", 0, "rows", 5)                         -> the line of the 6th row

It is a best-effort scanner for well-formed files (tomllib has already
accepted the text); `LineIndex.line()` falls back to the nearest enclosing
path it knows.
"""
from __future__ import annotations

import re
from typing import Optional, Union

Key = Union[str, int]
Path = tuple[Key, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column \d+\)|\s*\(at end of document\)")


def render(path: Path) -> str:
    """("vector", 2, "slot", 0, "id") -> "vector[2].slot[0].id"."""
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


def toml_error_position(message: str, text: str) -> tuple[int, str]:
    """Split a TOMLDecodeError message into (line, message without the position)."""
    match = _TOML_POSITION.search(message)
    if not match:
        return 0, message
    line = int(match.group(1)) if match.group(1) else max(1, len(text.splitlines()))
    return line, message[: match.start()] + message[match.end():]


class LineIndex:
    """Key path -> line number (1-based) for one TOML text."""

    def __init__(self, text: str) -> None:
        self._lines = _scan(text)

    def line(self, path: Path) -> int:
        """The line of `path`, else of its nearest known ancestor, else 0."""
        path = tuple(path)
        while path:
            if path in self._lines:
                return self._lines[path]
            path = path[:-1]
        return 0


def _scan(text: str) -> dict[Path, int]:
    index: dict[Path, int] = {}
    aot: dict[Path, int] = {}  # array-of-tables path -> occurrences so far
    table: Path = ()
    pending: Optional[_Value] = None  # a value still open at the end of a line
    for lineno, raw in enumerate(text.splitlines(), 1):
        if pending is not None:
            pending.feed(raw, lineno)
            pending = None if pending.done else pending
            continue
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("["):
            table = _header(stripped, lineno, aot, index)
            continue
        keys, rest = _parse_key(stripped)
        if not keys or not rest.startswith("="):
            continue  # not a key/value line we understand; tomllib accepted it anyway
        path = table + keys
        for depth in range(len(table) + 1, len(path)):
            index.setdefault(path[:depth], lineno)  # dotted keys open implicit tables
        index[path] = lineno
        value = _Value(path, index)
        value.feed(rest[1:], lineno)
        pending = None if value.done else value
    return index


def _header(text: str, lineno: int, aot: dict[Path, int], index: dict[Path, int]) -> Path:
    """Resolve `[a.b]` / `[[a.b]]` to a concrete path, counting array-of-tables entries."""
    is_array = text.startswith("[[")
    keys, _ = _parse_key(text[2 if is_array else 1:])
    if not keys:
        return ()
    path: Path = ()
    for key in keys[:-1]:
        path = _latest(path + (key,), aot)
    path += (keys[-1],)
    if is_array:
        count = aot.get(path, 0)
        aot[path] = count + 1
        index.setdefault(path, lineno)
        path += (count,)
    index[path] = lineno
    return path


def _latest(path: Path, aot: dict[Path, int]) -> Path:
    """Inside an array of tables, a header continues its most recent entry."""
    return path + (aot[path] - 1,) if path in aot else path


def _parse_key(text: str) -> tuple[Path, str]:
    """Parse a (dotted, possibly quoted) key; return its parts and the rest of the text."""
    parts: list[str] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos < len(text) and text[pos] in "\"'":
            quote = text[pos]
            end = pos + 1
            while end < len(text) and text[end] != quote:
                end += 2 if quote == '"' and text[end] == "\\" else 1
            if end >= len(text):
                return (), text
            parts.append(_unescape(text[pos + 1:end]) if quote == '"' else text[pos + 1:end])
            pos = end + 1
        else:
            match = _BARE_KEY.match(text, pos)
            if not match:
                return (), text
            parts.append(match.group())
            pos = match.end()
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos < len(text) and text[pos] == ".":
            pos += 1
            continue
        return tuple(parts), text[pos:]


def _unescape(text: str) -> str:
    # Good enough for keys: the common escapes; exotic keys only cost a line number.
    return text.replace('\\"', '"').replace("\\\\", "\\")


class _Value:
    """Tracks one value across lines, recording the start line of each element
    of a top-level array (one level deep: rows, inline tables)."""

    def __init__(self, path: Path, index: dict[Path, int]) -> None:
        self.path = path
        self.index = index
        self.depth = 0
        self.string: Optional[str] = None  # the open string's delimiter
        self.is_array: Optional[bool] = None
        self.expect_element = False
        self.elements = 0
        self.done = False

    def feed(self, text: str, lineno: int) -> None:
        pos = 0
        while pos < len(text):
            if self.string is not None:
                pos = self._in_string(text, pos)
                continue
            char = text[pos]
            if char == "#":
                break
            if char in " \t,":
                self.expect_element |= char == "," and self.depth == 1
                pos += 1
                continue
            self._element_start(char, lineno)
            if char in "\"'":
                triple = text.startswith(char * 3, pos)
                self.string = char * 3 if triple else char
                pos += 3 if triple else 1
                continue
            if char in "[{":
                self.depth += 1
                self.expect_element = self.depth == 1 and char == "["
            elif char in "]}":
                self.depth -= 1
            pos += 1
        if self.string is not None and len(self.string) == 1:
            self.string = None  # single-line strings cannot continue; tomllib would have failed
        self.done = self.depth <= 0 and self.string is None

    def _element_start(self, char: str, lineno: int) -> None:
        if self.is_array is None:
            self.is_array = char == "["
            return
        if self.is_array and self.depth == 1 and self.expect_element and char not in "]":
            self.index[self.path + (self.elements,)] = lineno
            self.elements += 1
            self.expect_element = False

    def _in_string(self, text: str, pos: int) -> int:
        assert self.string is not None
        if self.string[0] == '"' and text[pos] == "\\":
            return pos + 2
        if text.startswith(self.string, pos):
            end = pos + len(self.string)
            self.string = None
            return end
        return pos + 1
