"""What the backend keeps from one vector to the next, and why none of it
can change what a vector observes (docs/kernel-backend.md, "What it does per vector").

Every vector still gets its own KVM VM, created and destroyed inside run():
its memslots, SPTEs, shadow pages, memory attributes, quirks, stats and
vCPU are all new. What is kept holds no guest state at all:

* **The anchor**: one VM with one vCPU that never runs, for the life of the
  process, held through its vCPU fd only (the VM fd is closed at once; the
  vCPU keeps the VM alive). While any VM exists the kernel holds
  `preempt_notifier_key` on (`kvm_create_vm`), and while any vCPU without an
  in-kernel local APIC exists, `kvm_has_noapic_vcpu` (`kvm_create_lapic`);
  each 0 <-> 1 transition live-patches kernel text on every CPU
  (`static_key_slow_inc`/`_dec` -> `smp_text_poke_batch_finish`, with IPIs).
  Without an anchor every vector paid four of them: about 14 % of the
  backend's CPU time in perf on the PVM host, plus IPI round trips to a busy
  sibling CPU. The keys select code paths, not state: while a vector's VM
  and vCPU exist they are on anyway, so holding them on between vectors
  changes nothing a vector can see. The anchor has no memslot, so its MMU
  notifier (registered on this process's mm like every VM's) finds nothing
  to zap, and each VM's stats are its own.
* **The /dev/kvm fd**: a system fd carries no VM state (KVM_CREATE_VM makes
  a new VM whichever fd asks); one per process instead of one per vector.
* **Stats descriptor tables**: the layout of a VM's and a vCPU's binary
  stats is fixed by the kernel build; each new stats fd's header is still
  read and compared, and a different header is parsed afresh.
* **The vCPU mmap size** (`KVM_GET_VCPU_MMAP_SIZE`), a constant of the
  kernel.

Nothing else crosses vectors: guest memory, memslots, guest_memfds and
hugetlb pages are allocated per VM and released in LiveVm.close().
"""
from __future__ import annotations

import os

from . import ioctl as k


class Anchor:
    """A VM with one vCPU that never runs, held through the vCPU fd alone."""

    def __init__(self, kvm: int) -> None:
        self.fd = -1
        vm = k.ioctl(kvm, k.KVM_CREATE_VM, 0)
        try:
            self.fd = k.ioctl(vm, k.KVM_CREATE_VCPU, 0)
        finally:
            os.close(vm)  # the vCPU holds a reference to the VM: no VM fd is left open

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Device:
    """The process's /dev/kvm fd, its anchor and the kernel's constants."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        self.anchor: Anchor | None = None
        self._mmap_size = 0
        try:
            self.anchor = Anchor(self.fd)
        except OSError:
            self.anchor = None  # only a speed-up: without it every vector pays the text patching

    def vcpu_mmap_size(self) -> int:
        if not self._mmap_size:
            self._mmap_size = k.ioctl(self.fd, k.KVM_GET_VCPU_MMAP_SIZE)
        return self._mmap_size

    def close(self) -> None:
        if self.anchor is not None:
            self.anchor.close()
            self.anchor = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
