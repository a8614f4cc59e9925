//! A VM's MMU state: TDP roots, the shadow MMU's leaves, slots and
//! attributes, with the primitives both profiles' rules are built from.
//! No profile policy lives here.

use std::collections::BTreeMap;

use crate::attrs::PrivateRanges;
use crate::model::{Decision, Mapping, RootKind, Slot, Vm};
use crate::table::{Leaf, Tree};

/// One TDP MMU root (`struct kvm_mmu_page` with `role.invalid`).
pub struct TdpRoot {
    pub as_id: u8,
    pub kind: RootKind,
    pub invalid: bool,
    pub tree: Tree,
}

/// Which roots a walk visits, as the kernel's root-type mask does.
#[derive(Clone, Copy)]
pub struct RootFilter {
    pub as_id: Option<u8>,
    pub direct: bool,
    pub mirror: bool,
    pub valid: bool,
    pub invalid: bool,
}

impl RootFilter {
    fn matches(&self, root: &TdpRoot) -> bool {
        let kind = match root.kind {
            RootKind::Direct => self.direct,
            RootKind::Mirror => self.mirror,
            RootKind::Shadow => false,
        };
        let validity = if root.invalid { self.invalid } else { self.valid };
        kind && validity && self.as_id.is_none_or(|a| a == root.as_id)
    }
}

pub struct Mmu {
    pub vm: Vm,
    pub slots: BTreeMap<u64, Slot>,
    pub attrs: PrivateRanges,
    /// TDP roots, newest first as in `kvm->arch.tdp_mmu_roots`.
    roots: Vec<TdpRoot>,
    /// The shadow MMU's leaves per address space, found through rmaps.
    shadow: Vec<Tree>,
    /// Shadow page tables exist below the roots. A leaf implies them; leaf
    /// zaps clear SPTEs but leave the tables, so only a zap of every shadow
    /// page frees them (spec 5.6). The trees above free empty tables, so
    /// this is kept apart.
    shadow_tables: bool,
    /// WARN sites fired during the current step.
    pub warns: u8,
    /// `kvm_flush_remote_tlbs` calls so far.
    pub remote_flushes: u64,
}

impl Mmu {
    /// Build the initial state. Every address space of a TDP MMU VM has a
    /// valid direct root (and on TDX a mirror root): its vCPUs have run.
    pub fn new(vm: Vm, slots: &[Slot], private: &[(u64, u64)], mappings: &[Mapping]) -> Result<Self, String> {
        let mut mmu = Mmu {
            vm,
            slots: slots.iter().map(|s| (s.id, *s)).collect(),
            attrs: PrivateRanges::new(),
            roots: Vec::new(),
            shadow: (0..vm.address_spaces()).map(|_| Tree::new()).collect(),
            shadow_tables: false,
            warns: 0,
            remote_flushes: 0,
        };
        for &(start, end) in private {
            mmu.attrs.set(start, end, true);
        }
        if vm.tdp_mmu {
            for as_id in 0..vm.address_spaces() {
                // The private root is allocated first, so it sits last.
                if vm.mirror() {
                    mmu.roots.insert(0, TdpRoot { as_id, kind: RootKind::Mirror, invalid: false, tree: Tree::new() });
                }
                mmu.roots.insert(0, TdpRoot { as_id, kind: RootKind::Direct, invalid: false, tree: Tree::new() });
            }
        }
        // Tree by tree, in GFN order: each walk then finds its path warm.
        let mut ordered = mappings.to_vec();
        ordered.sort_unstable_by_key(|m| (m.as_id, m.root, m.invalid, m.gfn));
        for m in &ordered {
            mmu.install(m)?;
        }
        Ok(mmu)
    }

    fn install(&mut self, m: &Mapping) -> Result<(), String> {
        if m.as_id >= self.vm.address_spaces() {
            return Err(format!("{m:?}: no such address space"));
        }
        let leaf = Leaf { gfn: m.gfn, level: m.level, kind: m.kind };
        let tree = match m.root {
            RootKind::Shadow => {
                if !self.vm.rmaps || m.invalid {
                    return Err(format!("{m:?}: shadow leaves need rmaps and a valid root"));
                }
                self.shadow_tables = true;
                &mut self.shadow[m.as_id as usize]
            }
            kind => {
                // Only into a root this VM has loaded, or an invalid one beside it.
                let same = |r: &TdpRoot| r.as_id == m.as_id && r.kind == kind;
                if !self.roots.iter().any(|r| same(r) && !r.invalid) {
                    return Err(format!("{m:?}: this VM has no such root"));
                }
                let index = match self.roots.iter().position(|r| same(r) && r.invalid == m.invalid) {
                    Some(i) => i,
                    None => {
                        self.roots.push(TdpRoot { as_id: m.as_id, kind, invalid: true, tree: Tree::new() });
                        self.roots.len() - 1
                    }
                };
                &mut self.roots[index].tree
            }
        };
        tree.insert(leaf).map_err(|e| format!("{m:?}: {e}"))
    }

    // -- observation

    /// Every leaf left, sorted.
    pub fn mappings(&self) -> Vec<Mapping> {
        let mut out = Vec::new();
        for root in &self.roots {
            out.extend(root.tree.leaves().into_iter().map(|l| mapping(root.as_id, root.kind, root.invalid, l)));
        }
        for (as_id, tree) in self.shadow.iter().enumerate() {
            out.extend(tree.leaves().into_iter().map(|l| mapping(as_id as u8, RootKind::Shadow, false, l)));
        }
        out.sort_unstable();
        out
    }

    pub fn leaf_count(&self) -> usize {
        self.roots.iter().map(|r| r.tree.leaf_count()).sum::<usize>()
            + self.shadow.iter().map(Tree::leaf_count).sum::<usize>()
    }

    pub fn warn(&mut self, site: u8) {
        self.warns |= site;
    }

    pub fn flush_remote_tlbs(&mut self) {
        self.remote_flushes += 1;
    }

    /// The decision for walking TDP roots of these kinds (§3.1).
    pub fn kinds_in(&self, direct: bool, mirror: bool) -> Decision {
        Decision::of_roots(self.vm.mirror(), direct, mirror)
    }

    // -- TDP roots

    /// Leaf-zap `[start, end)` memslot GFNs in every root the filter
    /// selects. `counts(invalid)` says whether a zap in such a root counts
    /// towards the flush; returns whether any counted zap happened.
    pub fn zap_leafs(&mut self, filter: RootFilter, start: u64, end: u64, counts: impl Fn(bool) -> bool) -> bool {
        let alias = self.vm.shared_bit();
        let mut flush = false;
        for root in self.roots.iter_mut().filter(|r| filter.matches(r)) {
            // The TDX alias: a direct root is indexed with the shared bit set.
            let bit = if root.kind == RootKind::Direct { alias } else { 0 };
            let zapped = root.tree.zap_range(start | bit, end | bit) > 0;
            flush |= zapped && counts(root.invalid);
        }
        flush
    }

    /// Tear down every root the filter selects, whole. In the kernel a valid
    /// root is invalidated and freed and the vCPUs load a fresh one, and an
    /// invalid root is freed; here the root is emptied, which stands for
    /// both: an empty root zaps nothing and shows nothing. No TLB flush.
    pub fn zap_roots(&mut self, filter: RootFilter) {
        for root in self.roots.iter_mut().filter(|r| filter.matches(r)) {
            root.tree.clear();
        }
    }

    // -- the shadow MMU

    /// `__kvm_rmap_zap_gfn_range`: the slot's shadow leaves in range, every
    /// level, no private/shared filter.
    pub fn zap_rmaps(&mut self, slot: &Slot, start: u64, end: u64) -> bool {
        if !self.vm.rmaps {
            return false;
        }
        let Some((lo, hi)) = slot.clip(start, end) else { return false };
        self.shadow.get_mut(slot.as_id as usize).is_some_and(|tree| tree.zap_range(lo, hi) > 0)
    }

    /// Every shadow page zapped; true when page tables were there, leaves
    /// or not (`kvm_mmu_commit_zap_page` flushes a non-empty list).
    pub fn zap_all_shadow(&mut self) -> bool {
        // Not `any()`: every tree must be cleared, not just up to the first.
        let mut had_leaves = false;
        for tree in &mut self.shadow {
            had_leaves |= tree.clear() > 0;
        }
        std::mem::replace(&mut self.shadow_tables, false) || had_leaves
    }

    // -- slots

    pub fn slot(&self, id: u64) -> Result<Slot, String> {
        self.slots.get(&id).copied().ok_or_else(|| format!("no slot {id}"))
    }

    /// Slots overlapping `[start, end)`, optionally of one address space,
    /// in (as_id, base) order.
    pub fn slots_overlapping(&self, start: u64, end: u64, as_id: Option<u8>) -> Vec<Slot> {
        let mut found: Vec<Slot> = self
            .slots
            .values()
            .filter(|s| as_id.is_none_or(|a| a == s.as_id) && s.base_gfn < end && start < s.end_gfn())
            .copied()
            .collect();
        found.sort_by_key(|s| (s.as_id, s.base_gfn));
        found
    }

    pub fn slot_overlaps_other(&self, slot: &Slot, new_base: u64) -> bool {
        let end = new_base.saturating_add(slot.npages);
        self.slots
            .values()
            .any(|s| s.id != slot.id && s.as_id == slot.as_id && s.base_gfn < end && new_base < s.end_gfn())
    }
}

fn mapping(as_id: u8, root: RootKind, invalid: bool, leaf: Leaf) -> Mapping {
    Mapping { as_id, root, gfn: leaf.gfn, level: leaf.level, kind: leaf.kind, invalid }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kind, VmType};

    fn vm(vm_type: VmType, tdp_mmu: bool, rmaps: bool) -> Vm {
        Vm { vm_type, tdp_mmu, rmaps, gpaw: 52, slot_zap_all: true }
    }

    fn leaf(root: RootKind, invalid: bool) -> Mapping {
        Mapping { as_id: 0, root, gfn: 0x10, level: 1, kind: Kind::Shared, invalid }
    }

    fn builds(vm: Vm, m: Mapping) -> bool {
        Mmu::new(vm, &[], &[], &[m]).is_ok()
    }

    #[test]
    fn leaves_only_go_where_the_vm_has_such_a_root() {
        let nested = vm(VmType::Default, true, true);
        assert!(builds(nested, leaf(RootKind::Shadow, false)));
        assert!(builds(nested, leaf(RootKind::Direct, false)));
        assert!(builds(nested, leaf(RootKind::Direct, true)));
        assert!(!builds(nested, leaf(RootKind::Shadow, true)), "shadow roots are never invalid");
        assert!(!builds(nested, leaf(RootKind::Mirror, false)), "only TDX has a mirror root");
        assert!(!builds(vm(VmType::Default, true, false), leaf(RootKind::Shadow, false)), "no rmaps");
        assert!(!builds(vm(VmType::Default, false, true), leaf(RootKind::Direct, false)), "no TDP MMU");
        assert!(builds(vm(VmType::Tdx, true, false), leaf(RootKind::Mirror, false)));
        let smm = Mapping { as_id: 1, ..leaf(RootKind::Direct, false) };
        assert!(!builds(vm(VmType::Tdx, true, false), smm), "TDX has one address space");
        assert!(!builds(vm(VmType::Tdx, true, false), Mapping { invalid: true, ..smm }));
        assert!(builds(nested, smm));
    }

    #[test]
    fn leaf_count_sums_every_tree() {
        let nested = vm(VmType::Default, true, true);
        let leaves = [leaf(RootKind::Shadow, false), leaf(RootKind::Direct, false), leaf(RootKind::Direct, true)];
        assert_eq!(Mmu::new(nested, &[], &[], &leaves).unwrap().leaf_count(), 3);
    }
}
