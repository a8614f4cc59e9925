"""The two kinds of problem a vector file can have.

A `RuleViolation` is what the schema and the rules raise: a key path and a
message, nothing about files. The loader turns it into a `LoadError` by
looking the key path up in the document it read, so rules run unchanged on
vectors built in code (decision-table rows, fuzzed states).
"""

from __future__ import annotations

Key = str | int
KeyPath = tuple[Key, ...]


def render(path: KeyPath) -> str:
    """("vector", 2, "slot", 0, "id") -> "vector[2].slot[0].id"."""
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


class RuleViolation(Exception):
    """A value breaks a rule of the format; `path` names the key, `other`
    the second key of a pair that conflict (two overlapping leaves)."""

    def __init__(self, path: KeyPath, message: str, other: KeyPath | None = None) -> None:
        self.path, self.message, self.other = tuple(path), message, other
        super().__init__(f"{render(self.path) or '<root>'}: {message}")

    def __reduce__(self) -> tuple[type, tuple[KeyPath, str, KeyPath | None]]:
        return type(self), (self.path, self.message, self.other)


class LoadError(Exception):
    """A problem in a suite or registry file, located by line and key path."""

    def __init__(self, path: str, line: int, key: str, message: str) -> None:
        self.path, self.line, self.key, self.message = path, line, key, message
        super().__init__(f"{path}:{line}: {key}: {message}")

    def __reduce__(self) -> tuple[type, tuple[str, int, str, str]]:  # picklable: xdist workers send errors back
        return type(self), (self.path, self.line, self.key, self.message)

    def __eq__(self, other: object) -> bool:  # a load (cached or not) is a value: so are its errors
        return isinstance(other, LoadError) and self.__reduce__() == other.__reduce__()

    def __hash__(self) -> int:
        return hash(self.__reduce__()[1])
