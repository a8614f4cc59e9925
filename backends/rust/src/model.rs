//! The spec's vocabulary in compact form, and its integer encoding.
//!
//! The encoding is shared with the Python adapter
//! (`python/conformance_rust/encode.py`); both sides must agree on every
//! code below.

/// Pages are 4 KiB.
pub const PAGE_SIZE: u64 = 4096;
/// mainline `KVM_MEMORY_ATTRIBUTE_PRIVATE`.
pub const MEMORY_ATTRIBUTE_PRIVATE: u64 = 1 << 3;
/// tdx-v10 range attributes (UPM v9 `KVM_MEM_ATTR_*`).
pub const V10_ATTR_SHARED: u64 = 1;
pub const V10_ATTR_PRIVATE: u64 = 2;
pub const EINVAL: i32 = 22;
/// `KVM_MEM_*` flag bits as userspace passes them (a flags-only change).
pub mod mem_flag {
    pub const LOG_DIRTY_PAGES: u64 = 1 << 0;
    pub const READONLY: u64 = 1 << 1;
    pub const GUEST_MEMFD: u64 = 1 << 2;
}
/// A 2 MiB host page covers this many GFNs.
pub const HUGE_2M_PAGES: u64 = 512;
pub const EEXIST: i32 = 17;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    TdxV10,
    Mainline,
}

impl Profile {
    pub fn decode(code: u64) -> Result<Self, String> {
        match code {
            0 => Ok(Profile::TdxV10),
            1 => Ok(Profile::Mainline),
            _ => Err(format!("unknown profile code {code}")),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmType {
    Default,
    SwProtected,
    Sev,
    SevEs,
    Snp,
    Tdx,
}

impl VmType {
    pub fn decode(code: u64) -> Result<Self, String> {
        Ok(match code {
            0 => VmType::Default,
            1 => VmType::SwProtected,
            2 => VmType::Sev,
            3 => VmType::SevEs,
            4 => VmType::Snp,
            5 => VmType::Tdx,
            _ => return Err(format!("unknown VM type code {code}")),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Shared,
    Private,
}

/// Where a leaf lives: a TDP MMU root (direct or mirror) or the shadow MMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RootKind {
    Direct,
    Mirror,
    Shadow,
}

impl RootKind {
    pub fn decode(code: u64) -> Result<Self, String> {
        match code {
            0 => Ok(RootKind::Direct),
            1 => Ok(RootKind::Mirror),
            2 => Ok(RootKind::Shadow),
            _ => Err(format!("unknown root code {code}")),
        }
    }

    pub fn code(self) -> u64 {
        self as u64
    }
}

/// Which kinds of mapping an operation's private/shared rule selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    None = 0,
    Shared = 1,
    Private = 2,
    Both = 3,
}

impl Decision {
    /// The decision for walking TDP roots of these kinds (§3.1).
    pub fn of_roots(tdx: bool, direct: bool, mirror: bool) -> Self {
        match (tdx, direct, mirror) {
            (false, true, _) => Decision::Both,
            (false, false, _) => Decision::None,
            (true, true, true) => Decision::Both,
            (true, true, false) => Decision::Shared,
            (true, false, true) => Decision::Private,
            (true, false, false) => Decision::None,
        }
    }
}

/// WARN_ON_ONCE sites, as bits of the `warns` observable.
pub mod warn {
    pub const KVM_UNMAP_GFN_RANGE: u8 = 1 << 0;
    pub const FILTER_TO_ROOT_TYPES: u8 = 1 << 1;
    pub const TDP_MMU_ROOT_MATCH: u8 = 1 << 2;
    pub const KVM_ZAP_GFN_RANGE: u8 = 1 << 3;
}

/// Slot flag bits.
pub mod slot_flag {
    pub const PRIVATE: u64 = 1 << 0;
    pub const LOG_DIRTY: u64 = 1 << 1;
    pub const READONLY: u64 = 1 << 2;
    pub const GMEM_MMAP: u64 = 1 << 3;
    pub const GMEM_INIT_SHARED: u64 = 1 << 4;
}

/// Bits of `unmap_gfn_range`'s flag word.
pub mod unmap_flag {
    pub const FLUSH_IN: u64 = 1 << 0;
    pub const RESTRICTED_MEM: u64 = 1 << 1;
    pub const SET_MEM_ATTR: u64 = 1 << 2;
    pub const HAS_ATTR: u64 = 1 << 3;
    pub const FILTER_SHARED: u64 = 1 << 4;
    pub const FILTER_PRIVATE: u64 = 1 << 5;
}

#[derive(Clone, Copy, Debug)]
pub struct Vm {
    pub vm_type: VmType,
    pub tdp_mmu: bool,
    pub rmaps: bool,
    pub gpaw: u32,
    pub slot_zap_all: bool,
}

impl Vm {
    /// `kvm_arch_has_private_mem`.
    pub fn private_mem(&self) -> bool {
        matches!(self.vm_type, VmType::SwProtected | VmType::Snp | VmType::Tdx)
    }

    /// `kvm->arch.has_protected_state`: no `KVM_MEM_READONLY` slots.
    pub fn protected_state(&self) -> bool {
        matches!(self.vm_type, VmType::SevEs | VmType::Snp | VmType::Tdx)
    }

    /// `kvm_has_mirrored_tdp`.
    pub fn mirror(&self) -> bool {
        self.vm_type == VmType::Tdx
    }

    /// The TDX shared GFN bit (GPA bit gpaw-1); 0 elsewhere.
    pub fn shared_bit(&self) -> u64 {
        if self.mirror() {
            1 << (self.gpaw - 1 - 12)
        } else {
            0
        }
    }

    /// `kvm_arch_nr_memslot_as_ids`: SMM exists only without private memory.
    pub fn address_spaces(&self) -> u8 {
        if self.private_mem() {
            1
        } else {
            2
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub id: u64,
    pub as_id: u8,
    pub base_gfn: u64,
    pub npages: u64,
    pub flags: u64,
}

impl Slot {
    pub fn end_gfn(&self) -> u64 {
        self.base_gfn + self.npages
    }

    pub fn private(&self) -> bool {
        self.flags & slot_flag::PRIVATE != 0
    }

    pub fn init_shared(&self) -> bool {
        self.flags & slot_flag::GMEM_INIT_SHARED != 0
    }

    pub fn log_dirty(&self) -> bool {
        self.flags & slot_flag::LOG_DIRTY != 0
    }

    pub fn readonly(&self) -> bool {
        self.flags & slot_flag::READONLY != 0
    }

    /// The slot's `KVM_MEM_*` flags as userspace passes them.
    pub fn mem_flags(&self) -> u64 {
        let mut bits = 0;
        if self.log_dirty() {
            bits |= mem_flag::LOG_DIRTY_PAGES;
        }
        if self.readonly() {
            bits |= mem_flag::READONLY;
        }
        if self.private() {
            bits |= mem_flag::GUEST_MEMFD;
        }
        bits
    }

    /// This slot's part of `[start, end)`, if any.
    pub fn clip(&self, start: u64, end: u64) -> Option<(u64, u64)> {
        let (lo, hi) = (start.max(self.base_gfn), end.min(self.end_gfn()));
        (lo < hi).then_some((lo, hi))
    }
}

/// A leaf as the vectors describe it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mapping {
    pub as_id: u8,
    pub root: RootKind,
    pub gfn: u64,
    pub level: u8,
    pub kind: Kind,
    pub invalid: bool,
}

/// The `unmap_gfn_range` arguments of both profiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unmap {
    pub slot: u64,
    pub start: u64,
    pub end: u64,
    pub flags: u64,
    pub attr: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    UnmapGfnRange(Unmap),
    ZapGfnRange {
        start: u64,
        end: u64,
    },
    ZapMemslot {
        slot: u64,
    },
    ZapAllFast,
    ZapAll,
    MmuNotifierInvalidate {
        as_id: u8,
        start: u64,
        end: u64,
    },
    GmemPunchHole {
        slot: u64,
        start: u64,
        end: u64,
    },
    SetMemoryAttributes {
        address: u64,
        size: u64,
        attributes: u64,
        flags: u64,
    },
    MemslotDelete {
        slot: u64,
    },
    MemslotMove {
        slot: u64,
        new_base_gfn: u64,
    },
    /// A flags-only memslot change; `flags` are `KVM_MEM_*` bits.
    MemslotSetFlags {
        slot: u64,
        flags: u64,
    },
    DisableQuirk,
    MemoryTypeChange {
        start: u64,
        end: u64,
    },
    MmRelease,
    VmDestroy,
    /// Not a spec operation: panics on purpose, to prove a panic becomes
    /// the item's error and not the end of the session.
    DebugPanic,
}

/// Op code of [`Op::DebugPanic`], outside the range the encoder produces.
pub const DEBUG_PANIC_CODE: u64 = 255;

impl Op {
    /// Decode `(code, args)` as written by the Python encoder.
    pub fn decode(code: u64, args: &[u64]) -> Result<Self, String> {
        let arg = |i: usize| args.get(i).copied().ok_or_else(|| format!("op code {code}: missing argument {i}"));
        Ok(match code {
            0 => Op::UnmapGfnRange(Unmap {
                slot: arg(0)?,
                start: arg(1)?,
                end: arg(2)?,
                flags: arg(3)?,
                attr: (arg(3)? & unmap_flag::HAS_ATTR != 0).then_some(arg(4)?),
            }),
            1 => Op::ZapGfnRange { start: arg(0)?, end: arg(1)? },
            2 => Op::ZapMemslot { slot: arg(0)? },
            3 => Op::ZapAllFast,
            4 => Op::ZapAll,
            5 => Op::MmuNotifierInvalidate {
                as_id: u8::try_from(arg(0)?).map_err(|e| e.to_string())?,
                start: arg(1)?,
                end: arg(2)?,
            },
            6 => Op::GmemPunchHole { slot: arg(0)?, start: arg(1)?, end: arg(2)? },
            7 => Op::SetMemoryAttributes { address: arg(0)?, size: arg(1)?, attributes: arg(2)?, flags: arg(3)? },
            8 => Op::MemslotDelete { slot: arg(0)? },
            9 => Op::MemslotMove { slot: arg(0)?, new_base_gfn: arg(1)? },
            10 => Op::DisableQuirk,
            11 => Op::MemoryTypeChange { start: arg(0)?, end: arg(1)? },
            12 => Op::MmRelease,
            13 => Op::VmDestroy,
            14 => Op::MemslotSetFlags { slot: arg(0)?, flags: arg(1)? },
            DEBUG_PANIC_CODE => Op::DebugPanic,
            _ => return Err(format!("unknown op code {code}")),
        })
    }

    /// Call-layer operations observe decision and WARNs; events observe errno.
    pub fn is_call(&self) -> bool {
        matches!(
            self,
            Op::UnmapGfnRange(_) | Op::ZapGfnRange { .. } | Op::ZapMemslot { .. } | Op::ZapAllFast | Op::ZapAll
        )
    }
}

/// What one step leaves and says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepResult {
    pub mappings: Vec<Mapping>,
    pub flush: bool,
    pub decision: Option<Decision>,
    pub warns: Option<u8>,
    pub errno: Option<i32>,
}
