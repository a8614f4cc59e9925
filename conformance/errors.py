"""The two kinds of problem a vector file can have.

A `RuleViolation` is what the schema and the rules raise: a key path and a
message, nothing about files. The loader turns it into a `LoadError` by
looking the key path up in the document it read, so rules run unchanged on
vectors built in code (decision-table rows, fuzzed states).
"""
from __future__ import annotations

from typing import Union

Key = Union[str, int]
KeyPath = tuple[Key, ...]


def render(path: KeyPath) -> str:
    """("vector", 2, "slot", 0, "id") -> "vector[2].slot[0].id"."""
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


class RuleViolation(Exception):
    """A value breaks a rule of the format; `path` names the key."""

    def __init__(self, path: KeyPath, message: str) -> None:
        self.path, self.message = tuple(path), message
        super().__init__(f"{render(self.path) or '<root>'}: {message}")

    def __reduce__(self) -> tuple[type, tuple[KeyPath, str]]:
        return type(self), (self.path, self.message)


class LoadError(Exception):
    """A problem in a suite or registry file, located by line and key path."""

    def __init__(self, path: str, line: int, key: str, message: str) -> None:
        self.path, self.line, self.key, self.message = path, line, key, message
        super().__init__(f"{path}:{line}: {key}: {message}")

    def __reduce__(self) -> tuple[type, tuple[str, int, str, str]]:  # picklable: xdist workers send errors back
        return type(self), (self.path, self.line, self.key, self.message)
