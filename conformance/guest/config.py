"""The guest kernel's configuration: a fragment kept in the repository, the
commands that apply it, and the checks on the .config they produce."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

FRAGMENT = Path(__file__).with_name("kernel-config.toml")
OPTION = re.compile(r"[A-Z0-9_]+")
SET_LINE = re.compile(r"^CONFIG_([A-Z0-9_]+)=(.*)$")
UNSET_LINE = re.compile(r"^# CONFIG_([A-Z0-9_]+) is not set$")


class FragmentError(Exception):
    pass


@dataclass(frozen=True)
class Fragment:
    base: str  # the make target that starts the .config, e.g. tinyconfig
    enable: tuple[str, ...]
    disable: tuple[str, ...]
    require: tuple[str, ...]  # must be =y in the result
    passes: int
    objects_estimate: int  # only for the progress line

    def digest(self) -> str:
        """Hash of what decides the .config; comments and the estimate do not count."""
        decisive = {"base": self.base, "enable": self.enable, "disable": self.disable, "passes": self.passes}
        return hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()


def load_fragment(path: Path = FRAGMENT) -> Fragment:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise FragmentError(f"{path}: {exc}") from None
    return parse_fragment(doc, str(path))


def parse_fragment(doc: Mapping[str, Any], where: str) -> Fragment:
    unknown = sorted(set(doc) - {"base", "enable", "disable", "require", "passes", "objects_estimate"})
    if unknown:
        raise FragmentError(f"{where}: unknown key(s) {', '.join(unknown)}")
    lists = {name: options(doc.get(name, []), f"{where}: {name}") for name in ("enable", "disable", "require")}
    both = sorted(set(lists["enable"]) & set(lists["disable"]))
    if both:
        raise FragmentError(f"{where}: both enabled and disabled: {', '.join(both)}")
    base, passes, estimate = doc.get("base", "tinyconfig"), doc.get("passes", 2), doc.get("objects_estimate", 1000)
    if not isinstance(base, str) or not base.endswith("config"):
        raise FragmentError(f"{where}: base must name a make *config target, not {base!r}")
    for name, value in (("passes", passes), ("objects_estimate", estimate)):
        if type(value) is not int or value < 1:
            raise FragmentError(f"{where}: {name} must be a positive integer, not {value!r}")
    return Fragment(base, lists["enable"], lists["disable"], lists["require"], passes, estimate)


def options(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and OPTION.fullmatch(v) for v in value):
        raise FragmentError(f"{where} must be a list of option names without CONFIG_ (A-Z, 0-9, _)")
    return tuple(value)


def commands(fragment: Fragment) -> list[list[str]]:
    """The commands that turn an empty tree's configuration into the guest's, in order."""
    flags = [f for o in fragment.enable for f in ("-e", o)] + [f for o in fragment.disable for f in ("-d", o)]
    apply = [["scripts/config", "--file", ".config", *flags], ["make", "olddefconfig"]]
    return [["make", fragment.base]] + apply * fragment.passes


def read_config(text: str) -> dict[str, str]:
    """A .config as option -> value; unset options read as 'n'."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        found = SET_LINE.match(line) or UNSET_LINE.match(line)
        if found:
            values[found.group(1)] = found.group(2) if found.re is SET_LINE else "n"
    return values


def describe(option: str, values: Mapping[str, str]) -> str:
    value = values.get(option)
    return f"CONFIG_{option}={value}" if value not in (None, "n") else f"CONFIG_{option} is not set"


def unmet(values: Mapping[str, str], required: tuple[str, ...]) -> list[str]:
    """The required options that are not built in, as they stand in the .config."""
    return [describe(o, values) for o in required if values.get(o) != "y"]


def not_applied(values: Mapping[str, str], fragment: Fragment) -> list[str]:
    """Options of the fragment that Kconfig overrode (a dependency is missing or changed)."""
    return [f"enable {o}: {describe(o, values)}" for o in fragment.enable if values.get(o) not in ("y", "m")] + [
        f"disable {o}: {describe(o, values)}" for o in fragment.disable if values.get(o, "n") != "n"
    ]
