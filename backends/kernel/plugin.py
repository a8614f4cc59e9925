"""Registers the live-kernel backend as `kernel` (entry point)."""
from __future__ import annotations

import atexit
import os
from typing import Optional

from conformance import capabilities
from conformance.contract import BackendInfo
from conformance.hookspecs import hookimpl
from conformance.model import GmemFlag, Layer, Observable, Observables, Observation, Profile, Root, Vector, VmType

from . import __version__, actions, layout, observe, probe, trace
from . import ioctl as k
from .reuse import Device
from .session import Session
from .trace import SpteTrace
from .vm import LiveVm, bounded_passes

OBSERVABLES = frozenset({Observable.MAPPINGS, Observable.FLUSH, Observable.ERRNO})
# VM types whose guest this backend can start: a plain vCPU with KVM_SET_SREGS.
LAUNCHABLE = frozenset({VmType.DEFAULT, VmType.SW_PROTECTED})
LAUNCH_NEEDS = {
    VmType.TDX: "a TD launch (KVM_TDX_INIT_VM, KVM_TDX_INIT_MEM_REGION, KVM_TDX_FINALIZE_VM) and a TDX module",
    VmType.SNP: "an SNP launch (KVM_SEV_INIT2, SNP_LAUNCH_START/UPDATE/FINISH) and SEV-SNP firmware",
    VmType.SEV: "a SEV launch (KVM_SEV_INIT2, LAUNCH_UPDATE_DATA) and SEV firmware",
    VmType.SEV_ES: "a SEV-ES launch (KVM_SEV_INIT2, LAUNCH_UPDATE_VMSA) and SEV firmware",
}
NOT_OBSERVABLE = {
    "decision": "the zap decision is internal to the MMU; the kernel shows only its effect",
    "warns": "WARN_ON_ONCE sites are not observable per call from userspace (dmesg is global and once-only)",
}


def describe(p: probe.Probe) -> tuple[frozenset[str], dict[str, str], dict[str, str]]:
    """Capability tags this kernel meets, the reason for each it does not, and the probed facts."""
    tdp = f"tdp_mmu={p.tdp_mmu or 'unreadable'}"
    types = f"KVM_CAP_VM_TYPES={p.vm_types:#x}"
    gflags = {GmemFlag.MMAP: k.GUEST_MEMFD_FLAG_MMAP, GmemFlag.INIT_SHARED: k.GUEST_MEMFD_FLAG_INIT_SHARED}
    default_vm = p.per_vm.get("DEFAULT", probe.VmCaps(False, 0, 0))
    gmem_ok = p.user_memory2 and any(c.guest_memfd for c in p.per_vm.values())
    gmem_flags = default_vm.gmem_flags if default_vm.guest_memfd else p.gmem_flags
    have = {
        "mmu:shadow": (not p.tdp_mmu_on, f"TDP MMU on: {tdp}"),
        "mmu:tdp": (p.tdp_mmu_on, f"TDP MMU off: {tdp}"),
        "rmaps:nested": (False, f"rmaps beside the TDP MMU need a nested (L2) guest, which this backend does not run; {tdp}"),
        "smm": (p.smm and p.address_spaces == 2,
                f"as_id 1 needs SMM (KVM_CAP_X86_SMM={int(p.smm)}) and a second address space "
                f"(KVM_CAP_MULTI_ADDRESS_SPACE={p.address_spaces})"),
        "tdx:gpaw48": (False, f"needs a TDX VM: VM type TDX not in {types}"),
        "huge:2M": (p.thp in ("always", "madvise"), f"2M SPTEs need host THPs: transparent_hugepage/enabled="
                                                    f"{p.thp or 'unreadable'}"),
        "huge:1G": (p.giant_pages > 0 and p.gbpages,
                    "1G SPTEs need 1 GiB guest pages (Page1GB not in KVM_GET_SUPPORTED_CPUID)" if not p.gbpages else
                    "1G SPTEs need 1 GiB hugetlb pages: /sys/kernel/mm/hugepages/hugepages-1048576kB/"
                    f"free_hugepages={p.giant_pages} (reserve some with nr_hugepages, or hugepagesz=1G hugepages=N "
                    "on the kernel command line)"),
        "huge:private": (False, "guest_memfd on this kernel allocates 4K folios: a private leaf is always 4K "
                                f"(no huge-page flag in KVM_CAP_GUEST_MEMFD_FLAGS={p.gmem_flags:#x})"),
        "invalid_roots": (False, "leaves in roots already marked invalid exist only inside a zap; userspace cannot "
                                 "prepare them"),
        "private_slot": (gmem_ok, "guest_memfd memslots need KVM_CAP_USER_MEMORY2 "
                                  f"(={int(p.user_memory2)}) and a VM type whose fd answers KVM_CAP_GUEST_MEMFD=1 ("
                                  + ", ".join(f"{n}: {int(c.guest_memfd)}" for n, c in p.per_vm.items()) + ")"),
        "attribute-mismatch": (False, "the state has a leaf whose kind differs from its GFN's memory attribute; "
                                      "no kernel can build it (a fault maps only the kind the attribute names, "
                                      "kvm_mmu_faultin_pfn; a conversion zaps the other kind, "
                                      "kvm_arch_pre_set_memory_attributes)"),
        "gmem:no_private_mem": (gmem_ok and default_vm.guest_memfd,
                                "a DEFAULT VM answers KVM_CAP_GUEST_MEMFD="
                                f"{int(default_vm.guest_memfd)} on its fd: this kernel takes guest_memfd slots only "
                                "in VMs with private memory (check_memory_region_flags)"),
        "gmem:punch_hole": (gmem_ok, f"needs KVM_CAP_GUEST_MEMFD (={int(p.guest_memfd)})"),
        "memory_attributes": (bool(p.memory_attributes), "private memory needs KVM_CAP_MEMORY_ATTRIBUTES "
                                                         f"(={p.memory_attributes} on this kernel)"),
        "quirk:SLOT_ZAP_ALL": (bool(p.quirks & k.KVM_X86_QUIRK_SLOT_ZAP_ALL),
                               f"KVM_X86_QUIRK_SLOT_ZAP_ALL not in KVM_CAP_DISABLE_QUIRKS2={p.quirks:#x}"),
        "dirty_logging": (True, ""),
        "memslot:set_flags": (True, ""),
        "host_huge": (p.thp in ("always", "madvise"), f"huge host pages need THPs: transparent_hugepage/enabled="
                                                     f"{p.thp or 'unreadable'}"),
        "readonly_slot": (p.readonly_mem, "KVM_CAP_READONLY_MEM=0"),
    }
    for flag, bit in gflags.items():
        have[f"gmem:{flag.value}"] = (gmem_ok and bool(gmem_flags & bit),
                                      f"GUEST_MEMFD_FLAG_{flag.value} not in KVM_CAP_GUEST_MEMFD_FLAGS={gmem_flags:#x}")
    release = capabilities.linux_tag(p.release)  # meets the since: tags up to the running kernel
    caps = frozenset(tag for tag, (ok, _) in have.items() if ok) | ({release} if release else set())
    why = {tag: reason for tag, (ok, reason) in have.items() if not ok}
    for t in VmType:
        if t.value not in p.vm_type_names:
            why[f"vm:{t.value}"] = f"VM type {t.value} not in {types}"
        elif t not in LAUNCHABLE:
            why[f"vm:{t.value}"] = f"VM type {t.value} is in {types}, but this backend cannot start its guest: " \
                                   f"that needs {LAUNCH_NEEDS[t]}"
    why["layer:call"] = ("call-layer vectors call MMU functions with internal arguments; a live kernel is "
                         "driven through host events only")
    why[f"profile:{Profile.TDX_V10.value}"] = (f"the live kernel is Linux {p.release}; tdx-v10 is the 2022 TDX v10 "
                                               "design, which no running kernel implements")
    details = {
        "device": p.device,
        "kernel": p.release,
        "KVM_GET_API_VERSION": str(p.api_version),
        "KVM_CAP_VM_TYPES": f"{p.vm_types:#x} ({', '.join(p.vm_type_names)})",
        "tdp_mmu": p.tdp_mmu or "unreadable",
        "npt/ept": p.npt or "no kvm_amd/kvm_intel",
        "eager_page_split": p.eager_page_split or "unreadable",
        "1 GiB hugetlb pages free": str(p.giant_pages),
        **{f"VM fd of {name}": f"GUEST_MEMFD={int(c.guest_memfd)} GUEST_MEMFD_FLAGS={c.gmem_flags:#x} "
                               f"MEMORY_ATTRIBUTES={c.memory_attributes:#x}" for name, c in p.per_vm.items()},
        "KVM_CAP_GUEST_MEMFD": f"{int(p.guest_memfd)} (flags {p.gmem_flags:#x})",
        "KVM_CAP_MEMORY_ATTRIBUTES": f"{p.memory_attributes:#x}",
        "KVM_CAP_DISABLE_QUIRKS2": f"{p.quirks:#x}",
        "KVM_CAP_READONLY_MEM": str(int(p.readonly_mem)),
        "KVM_CAP_X86_SMM": str(int(p.smm)),
        "KVM_CAP_NR_MEMSLOTS": str(p.nr_memslots),
        "guest MAXPHYADDR": str(p.phys_bits),
        "transparent_hugepage": p.thp or "unreadable",
        "tracefs": str(p.tracefs) if p.tracefs else "no writable tracefs with kvmmmu events",
        "observes": ("mappings (" + ("kvm_tdp_mmu_spte_changed trace" if use_trace(p) else
                                     "per-page read re-touch") + ", checked against pages_4k/2m/1g), "
                     "flush (remote_tlb_flush_requests delta), errno"),
        **{f"not observable: {name}": reason for name, reason in NOT_OBSERVABLE.items()},
    }
    return caps, why, details


OBSERVER_ENV = "KVM_CONFORMANCE_OBSERVER"


def use_trace(p: probe.Probe) -> bool:
    return p.tdp_mmu_on and p.tracefs is not None and os.environ.get(OBSERVER_ENV, "trace") != "retouch"


def where(p: probe.Probe) -> dict[str, str]:
    """What every result of this backend records about the machine it ran on."""
    return {"kernel": p.release, "tdp_mmu": p.tdp_mmu or "unreadable", "npt": p.npt or "none",
            "vm_types": ",".join(p.vm_type_names), "memory_attributes": f"{p.memory_attributes:#x}",
            "observer": "tdp-trace" if use_trace(p) else "retouch"}


class KernelBackend:
    def __init__(self, device: Optional[str] = None) -> None:
        self.device = device or probe.device_path()
        self.probe: Optional[probe.Probe] = None
        self._cpuid: Optional[k.Cpuid2] = None
        self._trace: Optional[SpteTrace] = None
        self.kvm: Optional[Device] = None
        try:
            self.probe = probe.probe(self.device)
        except OSError as err:
            self.info = self.unavailable(f"cannot open {self.device}: {err.strerror}")
            return
        if self.probe.api_version != k.KVM_API_VERSION:
            self.info = self.unavailable(f"KVM_GET_API_VERSION={self.probe.api_version}, expected {k.KVM_API_VERSION}")
            return
        if not self.probe.binary_stats:
            self.info = self.unavailable("KVM_CAP_BINARY_STATS_FD=0: no way to count SPTEs")
            return
        caps, why, details = describe(self.probe)
        self.info = BackendInfo(
            name="kernel", version=__version__, profiles=frozenset({Profile.MAINLINE}),
            layers=frozenset({Layer.EVENT}),
            vm_types=frozenset(VmType(n) for n in self.probe.vm_type_names) & LAUNCHABLE,
            observables=OBSERVABLES, capabilities=caps, explanations=why, details=details,
            where=where(self.probe))
        # The process's /dev/kvm fd and its anchor VM (reuse.py), opened here so
        # that they exist before anyone counts this process's fds.
        try:
            self.kvm = Device(self.device)
        except OSError as err:
            self.info = self.unavailable(f"cannot open {self.device}: {err.strerror}")
            return
        atexit.register(self.kvm.close)

    @staticmethod
    def unavailable(reason: str) -> BackendInfo:
        return BackendInfo(name="kernel", version=__version__, profiles=frozenset({Profile.MAINLINE}),
                           layers=frozenset({Layer.EVENT}), vm_types=frozenset(), observables=OBSERVABLES,
                           unavailable=reason)

    def cpuid(self) -> k.Cpuid2:
        if self._cpuid is None:  # one table per process: ctypes objects per vector leak (live-kernel.md §6)
            assert self.kvm is not None
            self._cpuid = probe.supported_cpuid(self.kvm.fd)
        return self._cpuid

    def trace(self) -> Optional[SpteTrace]:
        """The TDP MMU's SPTE trace, one tracefs instance per process; None
        where there is no TDP MMU or no writable tracefs, or where the user
        asks for the per-leaf reads (KVM_CONFORMANCE_OBSERVER=retouch: the
        two observers can then be checked against each other)."""
        assert self.probe is not None
        if self._trace is None and use_trace(self.probe):
            assert self.probe.tracefs is not None
            trace.remove_stale(self.probe.tracefs)
            self._trace = SpteTrace(self.probe.tracefs, f"{trace.INSTANCE_PREFIX}{os.getpid()}")
            atexit.register(self._trace.close)  # an instance outlives its process, with its buffers
        return self._trace

    def run(self, vector: Vector, profile: Profile) -> Observation:
        assert self.probe is not None, self.info.unavailable
        root = Root.DIRECT if self.probe.tdp_mmu_on else Root.SHADOW
        plan = layout.plan(vector.state, root, self.probe.phys_bits, self.probe.nr_memslots)
        vm_type = list(VmType).index(vector.state.vm.type)
        steps: list[Observables] = []
        assert self.kvm is not None
        with bounded_passes() as timed, LiveVm(self.kvm, vm_type) as vm:
            vm.timed = timed
            s = Session(vm, plan, self.cpuid(), self.trace())
            if not vector.state.vm.slot_zap_all:
                vm.disable_quirks(k.KVM_X86_QUIRK_SLOT_ZAP_ALL)
            s.build(vector.state)
            for step in vector.steps:
                if s.destroyed:
                    raise actions.NotPerformed("a step after vm_destroy")
                flushes = vm.stats.read("remote_tlb_flush_requests")
                errno = actions.perform(s, step.op)
                if s.destroyed:  # nothing of a destroyed VM is left to look at
                    gone = "no VM is left to observe (holding its stats fd would keep it alive)"
                    steps.append(Observables(errno=errno, withheld=(("mappings", gone), ("flush", gone))))
                    continue
                flushed = vm.stats.read("remote_tlb_flush_requests") != flushes
                steps.append(Observables(mappings=observe.observe(s, root), flush=flushed, errno=errno))
        return Observation(steps=tuple(steps))


@hookimpl
def conformance_backend() -> KernelBackend:
    return KernelBackend()
