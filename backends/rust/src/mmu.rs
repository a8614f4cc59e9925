//! A VM's MMU state: TDP roots, the shadow MMU's leaves, slots and
//! attributes, with the primitives both profiles' rules are built from.
//! No profile policy lives here.

use std::collections::BTreeMap;

use crate::attrs::PrivateRanges;
use crate::fxhash::FxHashSet;
use crate::model::{Decision, Kind, Mapping, RootKind, Slot, Vm, HUGE_2M_PAGES};
use crate::table::{entry_pages, Leaf, Log, Tree};

/// One TDP MMU root (`struct kvm_mmu_page` with `role.invalid`).
#[derive(Clone)]
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

#[derive(Clone)]
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
    /// Host pages larger than 4K as (as_id, first memslot GFN, level),
    /// sorted: the vector's 2M ranges and one under every initial huge leaf
    /// (spec 1.5). Fixed once built (a sorted vector builds faster than a
    /// set, and is looked up only by dirty-logging changes).
    host_pages: Vec<(u8, u64, u8)>,
    /// Shadow 4K leaves in direct shadow pages, as (as_id, gfn): those an
    /// eager split made; initial shadow leaves map guest pages of their own
    /// size (spec 5.7).
    direct_shadow: FxHashSet<(u8, u64)>,
    /// WARN sites fired during the current step.
    pub warns: u8,
    /// `kvm_flush_remote_tlbs` calls so far.
    pub remote_flushes: u64,
}

impl Mmu {
    /// Build the initial state. Every address space of a TDP MMU VM has a
    /// valid direct root (and on TDX a mirror root): its vCPUs have run.
    pub fn new(
        vm: Vm,
        slots: &[Slot],
        private: &[(u64, u64)],
        mappings: &[Mapping],
        host_huge: &[(u64, u64, u8)],
    ) -> Result<Self, String> {
        // Tree by tree, in GFN order: each tree is then built in one pass.
        let key = |m: &Mapping| (m.as_id, m.root, m.invalid, m.gfn);
        if mappings.is_sorted_by_key(key) {
            return Self::new_sorted(vm, slots, private, mappings, |m| *m, host_huge);
        }
        let mut ordered = mappings.to_vec();
        ordered.sort_unstable_by_key(key);
        Self::new_sorted(vm, slots, private, &ordered, |m| *m, host_huge)
    }

    /// `new` from items that `mapping` turns into leaves, sorted tree by
    /// tree in GFN order (by as_id, root, validity and GFN).
    pub fn new_sorted<T>(
        vm: Vm,
        slots: &[Slot],
        private: &[(u64, u64)],
        items: &[T],
        mapping: impl Fn(&T) -> Mapping,
        host_huge: &[(u64, u64, u8)],
    ) -> Result<Self, String> {
        let mut mmu = Mmu {
            vm,
            slots: slots.iter().map(|s| (s.id, *s)).collect(),
            attrs: PrivateRanges::new(),
            roots: Vec::new(),
            shadow: (0..vm.address_spaces()).map(|_| Tree::new()).collect(),
            shadow_tables: false,
            host_pages: Vec::new(),
            direct_shadow: FxHashSet::default(),
            warns: 0,
            remote_flushes: 0,
        };
        for &(start, end, level) in host_huge {
            let pages = entry_pages(level);
            let mut gfn = start - start % pages;
            while gfn < end {
                mmu.host_pages.push((0, gfn, level));
                gfn += pages;
            }
        }
        for m in items.iter().map(&mapping).filter(|m| m.level > 1) {
            let gfn = if m.root == RootKind::Direct { m.gfn & !vm.shared_bit() } else { m.gfn };
            mmu.host_pages.push((m.as_id, gfn, m.level));
        }
        mmu.host_pages.sort_unstable();
        mmu.host_pages.dedup();
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
        // The items are sorted by tree first: each tree's are found by bisection.
        let tree = |item: &T| {
            let m = mapping(item);
            (m.as_id, m.root, m.invalid)
        };
        let mut rest = items;
        while let Some(first) = rest.first() {
            let key = tree(first);
            let end = rest.partition_point(|item| tree(item) <= key);
            mmu.install(&rest[..end], &mapping)?;
            rest = &rest[end..];
        }
        Ok(mmu)
    }

    /// Install one tree's leaves, sorted by GFN (all of one as_id, root and validity).
    fn install<T>(&mut self, group: &[T], mapping: impl Fn(&T) -> Mapping) -> Result<(), String> {
        let m = &mapping(&group[0]);
        if m.as_id >= self.vm.address_spaces() {
            return Err(format!("{m:?}: no such address space"));
        }
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
        let leaf = |item: &T| {
            let m = mapping(item);
            Leaf { gfn: m.gfn, level: m.level, kind: m.kind }
        };
        match Tree::from_sorted(group, leaf) {
            Ok(built) if tree.leaf_count() == 0 => *tree = built,
            // Leaf by leaf, for the message naming the first leaf that does not fit.
            _ => {
                for m in group.iter().map(&mapping) {
                    tree.insert(Leaf { gfn: m.gfn, level: m.level, kind: m.kind })
                        .map_err(|e| format!("{m:?}: {e}"))?;
                }
            }
        }
        Ok(())
    }

    // -- observation

    /// Every leaf left, sorted.
    pub fn mappings(&self) -> Vec<Mapping> {
        let mut out = self.leaves();
        out.sort_unstable();
        out
    }

    /// Log, in every tree, the leaves removed and added from now on.
    pub fn set_logging(&mut self, on: bool) {
        for root in &mut self.roots {
            root.tree.set_logging(on);
        }
        for tree in &mut self.shadow {
            tree.set_logging(on);
        }
    }

    /// Every tree's log so far, with where the tree is (as_id, root, invalid);
    /// each tree starts a new one. Empty when not logging.
    pub fn take_logs(&mut self) -> Vec<(u8, RootKind, bool, Log)> {
        let mut logs = Vec::new();
        for root in &mut self.roots {
            logs.extend(root.tree.take_log().map(|log| (root.as_id, root.kind, root.invalid, log)));
        }
        for (as_id, tree) in self.shadow.iter_mut().enumerate() {
            logs.extend(tree.take_log().map(|log| (as_id as u8, RootKind::Shadow, false, log)));
        }
        logs
    }

    /// Every leaf left, per tree in GFN order (not sorted across trees).
    pub fn leaves(&self) -> Vec<Mapping> {
        let mut out = Vec::with_capacity(self.leaf_count());
        for root in &self.roots {
            out.extend(root.tree.leaves().into_iter().map(|l| mapping(root.as_id, root.kind, root.invalid, l)));
        }
        for (as_id, tree) in self.shadow.iter().enumerate() {
            out.extend(tree.leaves().into_iter().map(|l| mapping(as_id as u8, RootKind::Shadow, false, l)));
        }
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

    // -- huge pages

    /// `host_pfn_mapping_level`: the size of the host page backing a memslot GFN.
    pub fn host_level(&self, as_id: u8, gfn: u64) -> u8 {
        (2..=3)
            .rev()
            .find(|&level| self.host_pages.binary_search(&(as_id, gfn - gfn % entry_pages(level), level)).is_ok())
            .unwrap_or(1)
    }

    /// Valid TDP roots of an address space, as indices (direct before mirror).
    fn valid_roots(&self, as_id: u8) -> Vec<usize> {
        (0..self.roots.len()).filter(|&i| !self.roots[i].invalid && self.roots[i].as_id == as_id).collect()
    }

    /// The tree index of a memslot GFN in a root of this kind (the TDX alias).
    fn tree_gfn(&self, kind: RootKind, gfn: u64) -> u64 {
        if kind == RootKind::Direct {
            gfn | self.vm.shared_bit()
        } else {
            gfn
        }
    }

    /// Every huge leaf of the slot becomes 4K leaves of its kind: in the
    /// valid TDP roots of its address space, and with `shadow` in the
    /// shadow MMU, whose new leaves sit in direct shadow pages.
    pub fn split_slot(&mut self, slot: &Slot, shadow: bool) {
        for i in self.valid_roots(slot.as_id) {
            let (lo, hi) =
                (self.tree_gfn(self.roots[i].kind, slot.base_gfn), self.tree_gfn(self.roots[i].kind, slot.end_gfn()));
            split_tree(&mut self.roots[i].tree, lo, hi);
        }
        if shadow {
            if let Some(tree) = self.shadow.get_mut(slot.as_id as usize) {
                for gfn in split_tree(tree, slot.base_gfn, slot.end_gfn()) {
                    self.direct_shadow.insert((slot.as_id, gfn));
                }
            }
        }
    }

    /// The slot's shadow 4K leaves in direct shadow pages whose table
    /// (`allowed(mmu, table gfn)`) may be mapped huge are zapped; true if any went.
    pub fn zap_collapsible_shadow(&mut self, slot: &Slot, allowed: impl Fn(&Mmu, u64) -> bool) -> bool {
        let Some(tree) = self.shadow.get(slot.as_id as usize) else { return false };
        let doomed: Vec<u64> = tree
            .leaves()
            .into_iter()
            .filter(|l| l.level == 1 && self.direct_shadow.contains(&(slot.as_id, l.gfn)))
            .map(|l| l.gfn)
            .filter(|&gfn| {
                let table = gfn - gfn % HUGE_2M_PAGES;
                slot.base_gfn <= table && table < slot.end_gfn() && allowed(self, table)
            })
            .collect();
        let tree = &mut self.shadow[slot.as_id as usize];
        for &gfn in &doomed {
            tree.zap_range(gfn, gfn + 1);
        }
        !doomed.is_empty()
    }

    /// Recover huge leaves in the slot's valid TDP roots, top down: a 1G and
    /// then a 2M block that starts in the slot, holds smaller leaves and
    /// `allowed(memslot gfn, level)` gets one leaf of that level, of the kind
    /// of its lowest leaf. Returns, per root, whether it changed.
    pub fn recover_slot(&mut self, slot: &Slot, allowed: impl Fn(&Mmu, u64, u8) -> bool) -> Vec<bool> {
        let mut changed = Vec::new();
        for i in self.valid_roots(slot.as_id) {
            let kind = self.roots[i].kind;
            let (lo, hi) = (self.tree_gfn(kind, slot.base_gfn), self.tree_gfn(kind, slot.end_gfn()));
            let bit = if kind == RootKind::Direct { self.vm.shared_bit() } else { 0 };
            let leaves: Vec<Leaf> =
                self.roots[i].tree.leaves().into_iter().filter(|l| lo <= l.gfn && l.gfn < hi && l.level < 3).collect();
            let mut plan: Vec<(u64, u8, Kind)> = Vec::new();
            let mut blocks: BTreeMap<u64, Vec<Leaf>> = BTreeMap::new();
            for leaf in leaves {
                blocks.entry(leaf.gfn - leaf.gfn % entry_pages(3)).or_default().push(leaf);
            }
            for (block, inside) in &blocks {
                let start_in = |gfn: u64| slot.base_gfn <= gfn & !bit && gfn & !bit < slot.end_gfn();
                if start_in(*block) && allowed(self, block & !bit, 3) {
                    plan.push((*block, 3, lowest(inside)));
                    continue;
                }
                let mut subs: BTreeMap<u64, Vec<Leaf>> = BTreeMap::new();
                for leaf in inside.iter().filter(|l| l.level == 1) {
                    subs.entry(leaf.gfn - leaf.gfn % entry_pages(2)).or_default().push(*leaf);
                }
                for (sub, small) in &subs {
                    if start_in(*sub) && allowed(self, sub & !bit, 2) {
                        plan.push((*sub, 2, lowest(small)));
                    }
                }
            }
            let tree = &mut self.roots[i].tree;
            for &(gfn, level, kind) in &plan {
                tree.zap_range(gfn, gfn + entry_pages(level));
                tree.insert(Leaf { gfn, level, kind }).expect("a block emptied of its leaves takes a huge leaf");
            }
            changed.push(!plan.is_empty());
        }
        changed
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

/// Replace every huge leaf lying in `[lo, hi)` by 4K leaves; their GFNs.
fn split_tree(tree: &mut Tree, lo: u64, hi: u64) -> Vec<u64> {
    let mut made = Vec::new();
    for leaf in tree.leaves().into_iter().filter(|l| l.level > 1 && lo <= l.gfn && l.gfn < hi) {
        let pages = entry_pages(leaf.level);
        tree.zap_range(leaf.gfn, leaf.gfn + pages);
        for gfn in leaf.gfn..leaf.gfn + pages {
            tree.insert(Leaf { gfn, level: 1, kind: leaf.kind }).expect("a zapped huge leaf's range is free");
            made.push(gfn);
        }
    }
    made
}

/// The kind of a block's lowest leaf (`tdp_mmu_make_huge_spte` builds the
/// huge SPTE from the first leaf it finds).
fn lowest(leaves: &[Leaf]) -> Kind {
    leaves.iter().min_by_key(|l| l.gfn).expect("a block with leaves").kind
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
        Mmu::new(vm, &[], &[], &[m], &[]).is_ok()
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
        assert_eq!(Mmu::new(nested, &[], &[], &leaves, &[]).unwrap().leaf_count(), 3);
    }
}
