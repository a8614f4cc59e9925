"""`--backend-option NAME:KEY=VALUE`: settings for one backend, handed to its
`conformance_backend(options)` hook. Arguments of that hook are opt-in, as
pluggy's are: an implementation gets only the ones it names, so a backend
that takes no options keeps its `conformance_backend()`."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

FORMAT = "NAME:KEY=VALUE"
_OPTION = re.compile(r"^(?P<name>[^:=\s]+):(?P<key>[A-Za-z0-9_.-]+)=(?P<value>.*)$", re.S)


class OptionError(ValueError):
    """A --backend-option that cannot be read."""


def parse(values: Iterable[str]) -> dict[str, dict[str, str]]:
    """Backend name -> key -> value; a key given twice keeps its last value
    (so the command line overrides `addopts`)."""
    options: dict[str, dict[str, str]] = {}
    for text in values:
        match = _OPTION.match(text)
        if match is None:
            raise OptionError(f"--backend-option {text!r}: expected {FORMAT}, e.g. acme:firmware=/opt/acme/fw.bin")
        options.setdefault(match["name"], {})[match["key"]] = match["value"]
    return options


def hook_arguments(argnames: Sequence[str], options: Mapping[str, str]) -> list[Any]:
    """The positional arguments for a hookimpl that names `argnames` (pluggy
    checked at registration that each is an argument of the hookspec)."""
    available: dict[str, Any] = {"options": MappingProxyType(dict(options))}
    return [available[name] for name in argnames]
