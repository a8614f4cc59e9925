"""TDX v10 patch 047 ("KVM: x86/tdp_mmu: Don't zap private pages for unsupported cases") as posted."""

__version__ = "0.1.0"
