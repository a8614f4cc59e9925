"""kvm-mmu-conformance: which SPTEs a host event zaps, checked across implementations.

What a backend needs is importable from here: `from conformance import
BackendInfo, Observation, Profile, hookimpl, ...` (docs/backends.md). The
names are imported on first use, so that importing the package (as every
isolated backend's child process does) stays cheap.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # as typing's, which this package does not import until a name is used
# MAJOR.MINOR.PATCH: MAJOR is the vector format (schema.FORMAT), MINOR grows
# with the suite and the spec, PATCH fixes (CHANGELOG.md).
__version__ = "1.0.0"

# name -> the module that defines it (the one place to add a public name; the
# TYPE_CHECKING block below repeats it for type checkers, tests/test_vendor_api.py
# keeps the two equal)
EXPORTS: dict[str, str] = {
    **dict.fromkeys(("Backend", "BackendInfo", "KnownBug", "KnownFailure", "is_backend"), "contract"),
    **dict.fromkeys(("ENTRY_POINT_GROUP", "hookimpl"), "hookspecs"),
    **dict.fromkeys(("CAPABILITY_TAGS", "all_capabilities", "linux_tag"), "_public"),
    **dict.fromkeys(("Expectation", "load_expectations", "observation_problem"), "_public"),
    **dict.fromkeys(
        (
            # what run() receives and returns
            "Vector",
            "State",
            "Vm",
            "Slot",
            "Mapping",
            "Step",
            "Flag",
            "Observables",
            "Observation",
            # operations: call layer, then event layer
            "Operation",
            "CallOp",
            "EventOp",
            "UnmapGfnRange",
            "ZapGfnRange",
            "ZapMemslot",
            "ZapAllFast",
            "ZapAll",
            "MmuNotifierInvalidate",
            "GmemPunchHole",
            "SetMemoryAttributes",
            "MemslotDelete",
            "MemslotMove",
            "MemslotSetFlags",
            "DisableQuirk",
            "MemoryTypeChange",
            "MmRelease",
            "VmDestroy",
            "OPERATIONS",
            "op_layer",
            "op_name",
            # enums
            "Profile",
            "Layer",
            "VmType",
            "Root",
            "Level",
            "Kind",
            "Decision",
            "Observable",
            "WarnSite",
            "RangeFlag",
            "AttrFilter",
            "GmemFlag",
            "Quirk",
            # constants of the vocabulary
            "GFN_BITS",
            "PAGE_SIZE",
            "VM_TYPES",
            "PRIVATE_MEM_VMS",
            "PROTECTED_STATE_VMS",
            "CALL_OBSERVABLES",
            "EVENT_OBSERVABLES",
            "V10_ATTR_SHARED",
            "V10_ATTR_PRIVATE",
            "MEMORY_ATTRIBUTE_PRIVATE",
            "MEM_LOG_DIRTY_PAGES",
            "MEM_READONLY",
            "MEM_GUEST_MEMFD",
            "ERRNO_NAMES",
        ),
        "model",
    ),
}

__all__ = ["__version__", *EXPORTS]

if TYPE_CHECKING:
    from typing import Any

    from ._public import CAPABILITY_TAGS as CAPABILITY_TAGS
    from ._public import Expectation as Expectation
    from ._public import all_capabilities as all_capabilities
    from ._public import linux_tag as linux_tag
    from ._public import load_expectations as load_expectations
    from ._public import observation_problem as observation_problem
    from .contract import Backend as Backend
    from .contract import BackendInfo as BackendInfo
    from .contract import KnownBug as KnownBug
    from .contract import KnownFailure as KnownFailure
    from .contract import is_backend as is_backend
    from .hookspecs import ENTRY_POINT_GROUP as ENTRY_POINT_GROUP
    from .hookspecs import hookimpl as hookimpl
    from .model import CALL_OBSERVABLES as CALL_OBSERVABLES
    from .model import ERRNO_NAMES as ERRNO_NAMES
    from .model import EVENT_OBSERVABLES as EVENT_OBSERVABLES
    from .model import GFN_BITS as GFN_BITS
    from .model import MEM_GUEST_MEMFD as MEM_GUEST_MEMFD
    from .model import MEM_LOG_DIRTY_PAGES as MEM_LOG_DIRTY_PAGES
    from .model import MEM_READONLY as MEM_READONLY
    from .model import MEMORY_ATTRIBUTE_PRIVATE as MEMORY_ATTRIBUTE_PRIVATE
    from .model import OPERATIONS as OPERATIONS
    from .model import PAGE_SIZE as PAGE_SIZE
    from .model import PRIVATE_MEM_VMS as PRIVATE_MEM_VMS
    from .model import PROTECTED_STATE_VMS as PROTECTED_STATE_VMS
    from .model import V10_ATTR_PRIVATE as V10_ATTR_PRIVATE
    from .model import V10_ATTR_SHARED as V10_ATTR_SHARED
    from .model import VM_TYPES as VM_TYPES
    from .model import AttrFilter as AttrFilter
    from .model import CallOp as CallOp
    from .model import Decision as Decision
    from .model import DisableQuirk as DisableQuirk
    from .model import EventOp as EventOp
    from .model import Flag as Flag
    from .model import GmemFlag as GmemFlag
    from .model import GmemPunchHole as GmemPunchHole
    from .model import Kind as Kind
    from .model import Layer as Layer
    from .model import Level as Level
    from .model import Mapping as Mapping
    from .model import MemoryTypeChange as MemoryTypeChange
    from .model import MemslotDelete as MemslotDelete
    from .model import MemslotMove as MemslotMove
    from .model import MemslotSetFlags as MemslotSetFlags
    from .model import MmRelease as MmRelease
    from .model import MmuNotifierInvalidate as MmuNotifierInvalidate
    from .model import Observable as Observable
    from .model import Observables as Observables
    from .model import Observation as Observation
    from .model import Operation as Operation
    from .model import Profile as Profile
    from .model import Quirk as Quirk
    from .model import RangeFlag as RangeFlag
    from .model import Root as Root
    from .model import SetMemoryAttributes as SetMemoryAttributes
    from .model import Slot as Slot
    from .model import State as State
    from .model import Step as Step
    from .model import UnmapGfnRange as UnmapGfnRange
    from .model import Vector as Vector
    from .model import Vm as Vm
    from .model import VmDestroy as VmDestroy
    from .model import VmType as VmType
    from .model import WarnSite as WarnSite
    from .model import ZapAll as ZapAll
    from .model import ZapAllFast as ZapAllFast
    from .model import ZapGfnRange as ZapGfnRange
    from .model import ZapMemslot as ZapMemslot
    from .model import op_layer as op_layer
    from .model import op_name as op_name


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use (PEP 562)."""
    module = EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'conformance' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next lookup is a plain one
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(EXPORTS))
