"""Public names that their own modules spell otherwise (re-exported by the package)."""

from __future__ import annotations

from .capabilities import TAGS as CAPABILITY_TAGS
from .capabilities import everything as all_capabilities
from .capabilities import linux_tag
from .expectations import Expectation
from .expectations import load as load_expectations
from .validate import problem as observation_problem

__all__ = [
    "CAPABILITY_TAGS",
    "Expectation",
    "all_capabilities",
    "linux_tag",
    "load_expectations",
    "observation_problem",
]
