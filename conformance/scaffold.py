"""`python -m conformance new-backend NAME [DIR]`: a working out-of-tree backend
distribution, from the templates in conformance/templates/backend."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path

from . import registry

TEMPLATES = Path(__file__).resolve().parent / "templates" / "backend"
NAME = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")
TEMPLATE_SUFFIX = ".tmpl"


class ScaffoldError(ValueError):
    """A name or directory that cannot take a new backend."""


@dataclass(frozen=True)
class Names:
    """How one backend name is spelt in each place of its distribution."""

    name: str  # the backend and entry point: acme-fw
    dist: str  # the distribution: kvm-mmu-conformance-acme-fw
    package: str  # the import package: conformance_acme_fw
    cls: str  # the backend class: AcmeFwBackend

    @classmethod
    def of(cls, name: str) -> Names:
        if not NAME.match(name):
            raise ScaffoldError(
                f"backend name {name!r}: use lower-case letters and digits, words joined by - or _ (e.g. acme-fw)"
            )
        parts = re.split(r"[-_]", name)
        return cls(
            name,
            f"kvm-mmu-conformance-{name}",
            "conformance_" + "_".join(parts),
            "".join(p.capitalize() for p in parts) + "Backend",
        )


def check_free(names: Names) -> None:
    """The backend name and the distribution name must not be taken: names
    select backends, and this project's distributions run unisolated."""
    if registry.normalise(names.dist) in registry.FIRST_PARTY:
        raise ScaffoldError(f"backend name {names.name!r}: distribution {names.dist} is this project's own")
    sources, _ = registry.find_sources()
    if names.name in sources:
        raise ScaffoldError(
            f"backend name {names.name!r} is already registered ({sources[names.name].where()}); choose another"
        )


def templates() -> list[tuple[str, Path]]:
    """(path in the new distribution, with `package/` for the package; template file)."""
    return [
        (path.relative_to(TEMPLATES).as_posix()[: -len(TEMPLATE_SUFFIX)], path)
        for path in sorted(TEMPLATES.rglob(f"*{TEMPLATE_SUFFIX}"))
    ]


def write(names: Names, directory: Path) -> list[Path]:
    """Write the distribution into `directory` (new or empty); the files written."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ScaffoldError(f"{directory}: exists and is not an empty directory")
    values = {"name": names.name, "dist": names.dist, "package": names.package, "cls": names.cls}
    written = []
    for relative, template in templates():
        target = directory / relative.replace("package/", f"{names.package}/", 1)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(string.Template(template.read_text(encoding="utf-8")).substitute(values), encoding="utf-8")
        written.append(target)
    return written
