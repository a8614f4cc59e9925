"""The QEMU command line: TCG with AMD SVM and nested paging (-cpu max), the
host's root read-only over 9p, and a writable share for the results."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .prereq import QEMU

ROOT_TAG = "hostroot"
OUT_TAG = "out"
P9 = "trans=virtio,version=9p2000.L,msize=512000"
MEMORY = "6G"  # within the machine's means; 2 GiB of it are 1G hugetlb pages
CPUS = 2
HUGEPAGES = "hugepagesz=1G hugepages=2 default_hugepagesz=2M"  # the kernel backend's 1G leaves


@dataclass(frozen=True)
class Boot:
    kernel: Path
    init: Path  # a script on the host's filesystem: the guest reaches it through the read-only root
    out: Path  # the writable share
    npt: bool
    memory: str = MEMORY
    cpus: int = CPUS

    def cmdline(self) -> str:
        words = [
            "console=ttyS0",
            f"root={ROOT_TAG}",
            "rootfstype=9p",
            f"rootflags={P9},cache=loose",
            "ro",
            f"init={self.init}",
            "panic=-1",  # reboot at once, and -no-reboot ends QEMU
            HUGEPAGES,
        ]
        if not self.npt:
            words.append("kvm_amd.npt=0")
        return " ".join(words)

    def argv(self, qemu: str = QEMU) -> list[str]:
        return [
            qemu,
            "-accel",
            "tcg,thread=multi",
            "-cpu",
            "max",
            "-smp",
            str(self.cpus),
            "-m",
            self.memory,
            "-nodefaults",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-monitor",
            "none",
            "-no-reboot",
            "-kernel",
            str(self.kernel),
            "-append",
            self.cmdline(),
            # multidevs=remap: without it the guest's own /proc was invisible on the 9p root
            "-virtfs",
            f"local,path=/,mount_tag={ROOT_TAG},security_model=none,readonly=on,multidevs=remap",
            "-virtfs",
            f"local,path={option_value(self.out)},mount_tag={OUT_TAG},security_model=none",
        ]


def option_value(path: Path) -> str:
    return str(path).replace(",", ",,")  # QEMU's option syntax doubles a comma inside a value
