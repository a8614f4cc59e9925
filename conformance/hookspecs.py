"""The backend contract, as pluggy hooks under the project marker `conformance`.

A backend plugin is any module (or object) with a `conformance_backend`
hookimpl, registered through the entry-point group ENTRY_POINT_GROUP.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .contract import Backend

PROJECT = "conformance"
ENTRY_POINT_GROUP = "kvm_mmu_conformance.backends"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def conformance_backend(options: Mapping[str, str]) -> Backend | None:
    """Return this plugin's backend object (see conformance.contract.Backend).

    Called once per process. Probing belongs in here or in the backend's
    constructor; a backend that cannot run returns itself with
    `info.unavailable` set to the reason rather than raising.

    Arguments are opt-in: an implementation receives only those it names.
    `options`: the user's `--backend-option NAME:KEY=VALUE` for this
    backend, as KEY -> VALUE (empty when none were given).
    """


@hookspec
def conformance_mutants() -> list[Backend]:
    """Return deliberately broken backends (opt-in): `python -m conformance
    kill-matrix` runs the suite against each and reports which vectors kill
    it. The runner never collects them as ordinary backends."""
