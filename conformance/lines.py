"""Line numbers in TOML text.

tomllib returns plain dicts without positions, so error messages would
otherwise have no line. This module scans the source text once and records,
for every key path it can recognise, the line where that path starts:

  ("vector", 2, "step", 0)                        -> the 3rd [[vector]]'s 1st [[vector.step]] header
  ("vector", 0, "initial", "mappings", 3)         -> the line of the 4th element of a multi-line array
  ("table", 0, "rows", 5)                         -> the line of the 6th row

It also finds the constructs behind errors tomllib cannot place (a string or
bracket still open at the end of the document) and how deeply brackets nest.

TOML lines end at LF only (CRLF is LF with a CR before it): every count here
is of "\\n", never `str.splitlines()`, which also splits at U+2028, \\x0c and
friends that TOML allows in comments and strings.

The scanner is best-effort on any text (it never fails and is linear in the
text's size) and exact on well-formed files; `LineIndex.line()` falls back
to the nearest enclosing path it knows.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from .errors import Key, KeyPath, render

__all__ = [
    "Key",
    "KeyPath",
    "LineIndex",
    "first_beyond",
    "line_at",
    "max_depth",
    "open_construct",
    "render",
    "toml_error_position",
]

# Lexical pieces, shared by every scanner below. Loops are unrolled
# ("a*(?:b a*)*") so that no input makes the regex engine backtrack
# more than linearly, without Python 3.11's possessive quantifiers.
_PLAIN = r"[^\"'#\[\]{}]*"  # code that opens and closes nothing (newlines too: no backtracking into comments)
_STR = r'"(?!"")[^"\\\n]*(?:\\[^\n][^"\\\n]*)*"?'  # basic string; an unterminated one stops at the line end
_LIT = r"'(?!'')[^'\n]*'?"
_STR_CLOSED = r'"(?!"")[^"\\\n]*(?:\\[^\n][^"\\\n]*)*"'
_LIT_CLOSED = r"'(?!'')[^'\n]*'"
_ML_BODY = r'"""[^"\\]*(?:(?:\\[\s\S]|"{1,2}(?!"))[^"\\]*)*'  # up to two quotes may precede the closing three
_MLL_BODY = r"'''[^']*(?:'{1,2}(?!')[^']*)*"
_MLB = _ML_BODY + r'(?:"{3,5})?'  # an unterminated one runs to the end of the text
_MLL = _MLL_BODY + r"(?:'{3,5})?"
_COMMENT = r"#[^\n]*"
_BARE = r"[^ \t\r\n,=#\[\]{}\"']+"

_ML_CLOSED = re.compile(_ML_BODY + r'"{3,5}|' + _MLL_BODY + r"'{3,5}")
# One match per bracket or multi-line string; single-line strings and comments are skipped inside the match.
_STRUCTURE = re.compile(rf"{_PLAIN}(?:(?:{_STR}|{_LIT}|{_COMMENT}){_PLAIN})*([\[\]{{}}]|{_MLB}|{_MLL}|\Z)")
_DELTA = {"[": 1, "{": 1, "]": -1, "}": -1}

_TOKEN = re.compile(
    rf"[ \t]*(?:(?P<nl>\r?\n)|(?P<comment>{_COMMENT})|(?P<open>[\[{{])|(?P<close>[\]}}])|(?P<comma>,)"
    rf"|(?P<ml>{_MLB}|{_MLL})|(?P<str>{_STR}|{_LIT})|(?P<bare>{_BARE})|(?P<end>\Z)|(?P<other>[\s\S]))"
)
# An array element with nothing nested in it and no newline: most lines of a vector file.
_FLAT_INNER = rf"[^\"'#\[\]{{}}\n]*(?:(?:{_STR_CLOSED}|{_LIT_CLOSED})[^\"'#\[\]{{}}\n]*)*"
_FLAT = rf"(?:\{{{_FLAT_INNER}\}}|\[{_FLAT_INNER}\]|{_STR_CLOSED}|{_LIT_CLOSED}|{_BARE})"
_FLAT_ELEMENT = re.compile(rf"[ \t]*{_FLAT}[ \t]*(,?)")
# Whole lines of flat elements are recognised on a skeleton of the text: the characters that open or
# close something, and "=" and "," that keep strings apart, with the rest (ASCII only) deleted in C.
# Lines are kept, so skeleton line N is text line N. A line holding one element and a comma:
_SKELETON_KEEP = "\"'#[]{},=\\\n"
_SKELETON_TABLE = {code: None for code in range(128) if chr(code) not in _SKELETON_KEEP}
_SKELETON_INNER = r"[^\"'#\\\[\]{}]*(?:(?:\"(?!\"\")[^\"\\]*\"|'(?!'')[^']*')[^\"'#\\\[\]{}]*)*"
_SKELETON_ELEMENT = re.compile(rf"(?:\{{{_SKELETON_INNER}\}}|\[{_SKELETON_INNER}\]),")

_KEY_PART = re.compile(rf"[ \t]*(?:([A-Za-z0-9_-]+)|({_STR_CLOSED})|({_LIT_CLOSED}))[ \t]*")
_ESCAPE = re.compile(r"\\(?:u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|([\s\S]))")
_SIMPLE_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column \d+\)|\s*\(at end of document\)")
_TOML_BLANK = " \t\r\n"


def line_at(text: str, pos: int) -> int:
    """The 1-based line of offset `pos`: lines end at LF only."""
    return text.count("\n", 0, pos) + 1


def toml_error_position(message: str, text: str) -> tuple[int, str]:
    """Split a TOMLDecodeError message into (line, message without the position).

    tomllib says "at end of document" when a string or bracket is never
    closed; the line is then where that construct opens."""
    match = _TOML_POSITION.search(message)
    if not match:
        return 0, message
    bare = message[: match.start()] + message[match.end() :]
    if match.group(1):
        return int(match.group(1)), bare
    opened = open_construct(text)
    if opened is not None:
        return opened[0], f"{bare} at end of document: {opened[1]}"
    last = len(text.rstrip(_TOML_BLANK))
    return line_at(text, max(0, last - 1)), f"{bare} (at end of document)"


# ---------------------------------------------------------------- structure: nesting and unclosed constructs


def max_depth(text: str) -> int:
    """How deeply arrays and inline tables nest (table headers count too). Linear, no Python loop per token."""
    tokens = _STRUCTURE.findall(text)
    return max(itertools.chain((0,), itertools.accumulate(map(_DELTA.get, tokens, itertools.repeat(0)))))


def _structure(text: str) -> Iterator[tuple[int, str]]:
    """(offset, token) for each bracket and multi-line string outside strings and comments."""
    for match in _STRUCTURE.finditer(text):
        if match.group(1):
            yield match.start(1), match.group(1)


def first_beyond(text: str, limit: int) -> int | None:
    """The offset of the bracket where nesting first goes deeper than `limit`, if it does."""
    depth = 0
    for pos, token in _structure(text):
        depth += _DELTA.get(token, 0)
        if depth > limit:
            return pos
    return None


def open_construct(text: str) -> tuple[int, str] | None:
    """(line, description) of what is still open at the end of the text: an
    unterminated multi-line string, else the innermost unclosed bracket."""
    opened: list[tuple[int, str]] = []  # (offset, "[" / "{" / "header")
    for pos, token in _structure(text):
        if token in "[{":
            opened.append((pos, "header" if _opens_header(text, pos, opened) else token))
        elif token in "]}":
            if opened:
                opened.pop()
        elif not _ML_CLOSED.fullmatch(token):
            return line_at(text, pos), f"the multi-line string {token[:3]} opened on this line is never closed"
    if not opened:
        return None
    pos, what = opened[-1]
    name = {"header": "table header", "[": "array '['", "{": "inline table '{'"}[what]
    return line_at(text, pos), f"the {name} opened on this line is never closed"


def _opens_header(text: str, pos: int, opened: list[tuple[int, str]]) -> bool:
    """A `[` outside any value with only blanks before it on its line (or the second `[` of `[[`)."""
    if text[pos] != "[":
        return False
    if opened:
        return opened[-1] == (pos - 1, "header")
    return not text[text.rfind("\n", 0, pos) + 1 : pos].strip(" \t")


# ---------------------------------------------------------------- key paths


# Longer key paths are not indexed (lookups fall back to an ancestor): a file that passed
# reading's checks never has them, and indexing every prefix of a long path costs quadratic time.
_INDEXED_DEPTH = 64

_Run = tuple[int, int, int]  # (first element, its line, elements): element first + k is on line + k


class LineIndex:
    """Key path -> line number (1-based) for one TOML text."""

    def __init__(self, text: str) -> None:
        scanner = _Scanner(text)
        self._lines = scanner.run()
        self._runs = scanner.runs

    def line(self, path: KeyPath) -> int:
        """The line of `path`, else of its nearest known ancestor, else 0."""
        path = tuple(path[:_INDEXED_DEPTH])  # nothing longer is indexed
        while path:
            found = self._lines.get(path)
            if found is None and isinstance(path[-1], int):
                found = self._run_line(path[:-1], path[-1])
            if found is not None:
                return found
            path = path[:-1]
        return 0

    def _run_line(self, array: KeyPath, element: int) -> int | None:
        runs = self._runs.get(array, [])
        at = bisect.bisect_right(runs, (element, sys.maxsize, 0)) - 1
        if at >= 0 and element < runs[at][0] + runs[at][2]:
            return runs[at][1] + element - runs[at][0]
        return None


@dataclass(slots=True)
class _Frame:
    """An open array or inline table. `path` is None inside values the scanner could not place."""

    path: KeyPath | None
    is_array: bool
    count: int = 0  # elements so far (arrays)
    expect: bool = True  # arrays: the next value is a new element; tables: the next token is a key


class _Scanner:
    """One pass over the text, statement by statement; values are walked token by token,
    except that values with nothing nested in them are taken whole."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.index: dict[KeyPath, int] = {}
        self.aot: dict[KeyPath, int] = {}  # array-of-tables path -> entries so far
        self.runs: dict[KeyPath, list[_Run]] = {}  # array path -> runs of one-line elements
        self.table: KeyPath | None = ()  # None under a header the scanner does not index
        self.stack: list[_Frame] = []  # brackets open in the current value
        self.pending: KeyPath | None = None  # the path of the value that starts at the next value token

    def run(self) -> dict[KeyPath, int]:
        while self.pos < len(self.text):
            self._statement()
        return self.index

    def _statement(self) -> None:
        text = self.text
        start = self.pos
        while start < len(text) and text[start] in " \t":
            start += 1
        if text.startswith("[", start):
            self._header(start)
        elif start < len(text) and text[start] not in "\r\n#":
            keys, end = parse_key(text, start)
            if keys and text.startswith("=", end):
                self.pos = end + 1
                self._value(None if self.table is None else self._record_key(self.table, keys))
        self._skip_line()

    def _skip_line(self) -> None:
        end = self.text.find("\n", self.pos)
        self.pos = len(self.text) if end < 0 else end + 1
        if end >= 0:
            self.line += 1

    def _record_key(self, table: KeyPath, keys: KeyPath) -> KeyPath | None:
        """A key's path; its line also opens the implicit tables of its dotted parts."""
        path = table + keys
        for depth in range(len(table) + 1, min(len(path), _INDEXED_DEPTH + 1)):
            self.index.setdefault(path[:depth], self.line)
        if len(path) > _INDEXED_DEPTH:
            return None
        self.index[path] = self.line
        return path

    def _header(self, start: int) -> None:
        """Resolve `[a.b]` / `[[a.b]]` to a concrete path, counting array-of-tables entries."""
        is_array = self.text.startswith("[[", start)
        keys, _ = parse_key(self.text, start + (2 if is_array else 1))
        self.pos = start
        self.table = None
        if not keys or len(keys) > _INDEXED_DEPTH // 2:  # each key may add an array-of-tables index
            return
        path: KeyPath = ()
        for key in keys[:-1]:
            path = self._latest(path + (key,))
            self.index.setdefault(path, self.line)
        path += (keys[-1],)
        if is_array:
            count = self.aot.get(path, 0)
            self.aot[path] = count + 1
            self.index.setdefault(path, self.line)
            path += (count,)
        self.index[path] = self.line
        self.table = path

    def _latest(self, path: KeyPath) -> KeyPath:
        """Inside an array of tables, a header continues its most recent entry."""
        return path + (self.aot[path] - 1,) if path in self.aot else path

    # -------------------------------------------------------------- values

    def _value(self, path: KeyPath | None) -> None:
        """Walk one value from self.pos to its end, recording array elements and inline-table keys."""
        self.stack = []
        self.pending = path
        while self._step():
            pass

    def _step(self) -> bool:
        """Consume one token or flat value (or a run of flat array elements); False once the value is complete."""
        top = self.stack[-1] if self.stack else None
        if self.pending is not None or (top is not None and top.is_array and top.expect and top.path is not None):
            flat = self._flat(top)
            if flat is not None:
                return flat
        match = _TOKEN.match(self.text, self.pos)
        assert match is not None  # the last alternatives match any character and the end
        kind = match.lastgroup
        if kind == "end" or (kind == "nl" and top is None):
            return False  # a newline outside brackets ends the statement; _skip_line consumes it
        self.pos = match.end()
        line = self.line
        if kind in ("nl", "ml"):
            self.line += match.group().count("\n")
        if kind in ("nl", "comment", "other"):
            return True
        if kind == "comma":
            if top is not None:
                top.expect = True
            return True
        if kind == "close":
            if self.stack:
                self.stack.pop()
            return bool(self.stack)
        if top is not None and not top.is_array and top.expect and kind in ("bare", "str"):
            self._table_key(top, match.start(kind))
            return True
        opens = match.group("open")
        return self._value_token(top, None if opens is None else opens == "[", line)

    def _value_token(self, top: _Frame | None, array: bool | None, line: int) -> bool:
        """A value starts at `line`: a scalar (`array` None), an array or an inline table."""
        target = self.pending if self.pending is not None else self._element(top, line)
        self.pending = None
        if array is not None:
            self.stack.append(_Frame(target, array))
            return True
        return top is not None  # a scalar outside brackets completes the statement

    def _element(self, top: _Frame | None, line: int) -> KeyPath | None:
        """A value inside an array starts its next element."""
        if top is None or not top.is_array or not top.expect or top.path is None:
            return None
        top.count += 1
        top.expect = False
        if len(top.path) >= _INDEXED_DEPTH:
            return None
        path = top.path + (top.count - 1,)
        self.index[path] = line
        return path

    def _table_key(self, top: _Frame, start: int) -> None:
        """`key =` inside an inline table: its value belongs to the key's path."""
        top.expect = False
        keys, end = parse_key(self.text, start)
        if keys and self.text.startswith("=", end):
            self.pos = end + 1
            self.pending = None if top.path is None else self._record_key(top.path, keys)

    def _flat(self, top: _Frame | None) -> bool | None:
        """A value with nothing nested in it and no newline, taken whole (at a line start in an
        array, all the following lines that hold one such element each); None if there is none."""
        at_line_start = self.pos == 0 or self.text[self.pos - 1] == "\n"
        if self.pending is None and at_line_start and top is not None and self._flat_lines(top):
            return True
        match = _FLAT_ELEMENT.match(self.text, self.pos)
        if match is None:
            return None
        self.pos = match.end()
        more = self._value_token(top, None, self.line)
        if match.group(1) and top is not None:
            top.expect = True
        return more

    def _flat_lines(self, top: _Frame) -> bool:
        """The lines from here on that each hold one flat element and a comma, as one run."""
        assert top.path is not None
        if len(top.path) >= _INDEXED_DEPTH:
            return False
        lines, flat = self._skeleton
        following = map(lines.__getitem__, range(self.line - 1, len(lines) - 1))  # islice would step over them
        found = len(list(itertools.takewhile(flat.__contains__, following)))
        if not found:
            return False
        self.runs.setdefault(top.path, []).append((top.count, self.line, found))
        for _ in range(found):
            self.pos = self.text.index("\n", self.pos) + 1
        top.count += found
        self.line += found
        return True

    @functools.cached_property
    def _skeleton(self) -> tuple[list[str], frozenset[str]]:
        """The skeleton's lines, and those of them that hold one flat element and a comma."""
        lines = self.text.translate(_SKELETON_TABLE).split("\n")
        return lines, frozenset(line for line in set(lines) if _SKELETON_ELEMENT.fullmatch(line))


def parse_key(text: str, pos: int) -> tuple[KeyPath, int]:
    """Parse a (dotted, possibly quoted) key at `pos`: its parts and the offset after it, or ((), pos)."""
    parts: list[Key] = []
    while True:
        match = _KEY_PART.match(text, pos)
        if match is None:
            return (), pos
        bare, basic, literal = match.groups()
        parts.append(bare if bare is not None else _unescape(basic[1:-1]) if basic is not None else literal[1:-1])
        pos = match.end()
        if not text.startswith(".", pos):
            return tuple(parts), pos
        pos += 1


def _unescape(text: str) -> str:
    return _ESCAPE.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    code = match.group(1) or match.group(2)
    if code is not None:
        value = int(code, 16)
        return chr(value) if value <= 0x10FFFF else match.group()
    return _SIMPLE_ESCAPES.get(match.group(3), match.group())
