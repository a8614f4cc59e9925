//! A run's observations as changes, for the Python adapter: which leaves,
//! named by object id, a step removed and added, so that the adapter builds
//! each step's mapping set from the previous one (the first from the
//! vector's own initial set) instead of rebuilding every leaf left.
//!
//! Object ids name the Python `Mapping` objects the adapter holds: the
//! initial state's leaves get theirs from the adapter; a leaf first seen
//! during the run gets the next free id, and the adapter makes its object.
//! Equal leaves get the same id, so an initial leaf that is zapped and made
//! again is the initial object again.

use crate::fxhash::FxHashMap;
use crate::mmu::Mmu;
use crate::model::{Kind, Mapping, RootKind};
use crate::table::Leaf;

pub type ObjectId = u32;

/// How much more adding or removing one element of a Python frozenset
/// costs (hashing a `Mapping` runs its Python `__hash__`) than copying one
/// when the set is copied whole; measured at about 8 (0.3 us against 0.04).
const HASH_COST: usize = 8;

/// A leaf in one word, ordered as `Mmu::new` installs leaves (tree by
/// tree, each in GFN order): as_id (8 bits), root (2), invalid (1), GFN
/// (50), then level - 1 (2) and kind (1), which only tell apart leaves at
/// one place. None for a leaf no tree can hold anyway (GFN or level out of
/// range: `Mmu::new` says what is wrong with it).
#[inline]
pub fn pack(m: &Mapping) -> Option<u64> {
    if m.gfn >= 1 << 50 || !(1..=3).contains(&m.level) {
        return None;
    }
    Some(
        (m.as_id as u64) << 56
            | m.root.code() << 54
            | (m.invalid as u64) << 53
            | m.gfn << 3
            | ((m.level - 1) as u64) << 1
            | (m.kind == Kind::Private) as u64,
    )
}

/// The leaf `pack` packed.
#[inline]
pub fn unpack(word: u64) -> Mapping {
    Mapping {
        as_id: (word >> 56) as u8,
        root: match (word >> 54) & 3 {
            0 => RootKind::Direct,
            1 => RootKind::Mirror,
            _ => RootKind::Shadow,
        },
        invalid: word >> 53 & 1 != 0,
        gfn: word >> 3 & ((1 << 50) - 1),
        level: (word >> 1 & 3) as u8 + 1,
        kind: if word & 1 != 0 { Kind::Private } else { Kind::Shared },
    }
}

/// Where a packed leaf is: its tree and GFN.
fn place(word: u64) -> u64 {
    word >> 3
}

/// The initial leaves, packed and sorted, with their object ids.
pub struct Known {
    leaves: Vec<(u64, ObjectId)>,
}

impl Known {
    /// `leaves`: packed leaves with their ids, sorted (as `Mmu::new` takes
    /// them), no two at one place (`Mmu::new` rejects that).
    pub fn new(leaves: Vec<(u64, ObjectId)>) -> Self {
        debug_assert!(leaves.is_sorted());
        Known { leaves }
    }

    /// The leaves, in order.
    pub fn leaves(&self) -> &[(u64, ObjectId)] {
        &self.leaves
    }

    pub fn len(&self) -> usize {
        self.leaves.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// The id of each of `queries` (packed, sorted) that is an initial
    /// leaf: a galloping merge, O(k log(n/k)) for k queries.
    fn find_sorted(&self, queries: &[u64]) -> Vec<Option<ObjectId>> {
        let n = self.leaves.len();
        let mut lo = 0;
        queries
            .iter()
            .map(|&q| {
                let key = place(q);
                let mut bound = 1;
                while lo + bound < n && place(self.leaves[lo + bound].0) < key {
                    bound *= 2;
                }
                let end = (lo + bound + 1).min(n);
                lo += self.leaves[lo..end].partition_point(|&(w, _)| place(w) < key);
                self.leaves.get(lo).filter(|(w, _)| *w == q).map(|&(_, id)| id)
            })
            .collect()
    }
}

/// One step's mappings, relative to the step before (the initial state for the first).
#[derive(Debug, PartialEq, Eq)]
pub enum Delta {
    /// The same leaves.
    Same,
    /// The set before, minus `gone`, plus `new`.
    Diff { gone: Vec<ObjectId>, new: Vec<ObjectId> },
    /// Exactly these leaves (cheaper than a diff: few are left).
    Full(Vec<ObjectId>),
}

/// Follows a logging `Mmu` through a run, step by step.
pub struct Tracker<'a> {
    known: &'a Known,
    /// Leaves first seen during the run.
    seen: FxHashMap<Mapping, ObjectId>,
    next: ObjectId,
    /// Leaves after the last step observed.
    present: usize,
}

impl<'a> Tracker<'a> {
    /// `next` is the first id free for leaves first seen in the run.
    pub fn new(known: &'a Known, next: ObjectId) -> Self {
        Tracker { known, seen: FxHashMap::default(), next, present: known.len() }
    }

    /// What the last step changed, from the logs `mmu` kept since the last
    /// call. Leaves first seen get ids in order and are appended to `fresh`.
    pub fn observe(&mut self, mmu: &mut Mmu, fresh: &mut Vec<Mapping>) -> Delta {
        let logs = mmu.take_logs();
        let now = mmu.leaf_count();
        let before = std::mem::replace(&mut self.present, now);
        let removed: usize = logs.iter().map(|(.., log)| log.removed_count()).sum();
        let added: usize = logs.iter().map(|(.., log)| log.added().len()).sum();
        if removed + added == 0 {
            return Delta::Same;
        }
        if now == 0 {
            return Delta::Full(Vec::new());
        }
        let full_cheaper = |changes: usize| HASH_COST * now <= before + HASH_COST * changes;
        if added == 0 && full_cheaper(removed) {
            return self.full(mmu, fresh); // the removed leaves need not even be listed
        }
        let (mut gone, mut new) = (Vec::with_capacity(removed), Vec::with_capacity(added));
        for (as_id, root, invalid, log) in logs {
            let (lost, gained) = log.into_leaves();
            let at = |leaf: Leaf| Mapping { as_id, root, gfn: leaf.gfn, level: leaf.level, kind: leaf.kind, invalid };
            gone.extend(lost.into_iter().map(at));
            new.extend(gained.into_iter().map(at));
        }
        cancel(&mut gone, &mut new);
        if gone.is_empty() && new.is_empty() {
            return Delta::Same;
        }
        if full_cheaper(gone.len() + new.len()) {
            return self.full(mmu, fresh);
        }
        Delta::Diff { gone: self.ids(gone, fresh), new: self.ids(new, fresh) }
    }

    fn full(&mut self, mmu: &Mmu, fresh: &mut Vec<Mapping>) -> Delta {
        Delta::Full(self.ids(mmu.leaves(), fresh))
    }

    /// The object ids of these leaves, a new one for each leaf first seen.
    fn ids(&mut self, leaves: Vec<Mapping>, fresh: &mut Vec<Mapping>) -> Vec<ObjectId> {
        let mut words: Vec<u64> = leaves.iter().map(|m| pack(m).expect("a leaf in a tree packs")).collect();
        words.sort_unstable();
        let found = self.known.find_sorted(&words);
        words
            .into_iter()
            .zip(found)
            .map(|(word, id)| {
                let leaf = unpack(word);
                id.unwrap_or_else(|| {
                    *self.seen.entry(leaf).or_insert_with(|| {
                        fresh.push(leaf);
                        self.next += 1;
                        self.next - 1
                    })
                })
            })
            .collect()
    }
}

/// Drop the leaves both removed and added in one step (in either order:
/// they were there before and are after, or neither), one for one.
fn cancel(gone: &mut Vec<Mapping>, new: &mut Vec<Mapping>) {
    if gone.is_empty() || new.is_empty() {
        return;
    }
    gone.sort_unstable();
    new.sort_unstable();
    let (mut kept_gone, mut kept_new) = (Vec::new(), Vec::new());
    let (mut g, mut n) = (gone.iter().peekable(), new.iter().peekable());
    loop {
        match (g.peek(), n.peek()) {
            (Some(a), Some(b)) if a == b => {
                g.next();
                n.next();
            }
            (Some(a), Some(b)) if a < b => kept_gone.push(*g.next().unwrap()),
            (Some(_), Some(_)) => kept_new.push(*n.next().unwrap()),
            (Some(_), None) => kept_gone.push(*g.next().unwrap()),
            (None, Some(_)) => kept_new.push(*n.next().unwrap()),
            (None, None) => break,
        }
    }
    *gone = kept_gone;
    *new = kept_new;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Op, Profile, RootKind, Slot, Vm, VmType};
    use crate::run::{step, Observe};

    /// The leaves packed and sorted, numbered in the given order.
    fn numbered(mappings: &[Mapping]) -> Vec<(u64, ObjectId)> {
        let mut out: Vec<(u64, ObjectId)> = mappings.iter().map(|m| pack(m).unwrap()).zip(0..).collect();
        out.sort_unstable();
        out
    }

    fn vm() -> Vm {
        Vm { vm_type: VmType::Tdx, tdp_mmu: true, rmaps: false, gpaw: 52, slot_zap_all: true }
    }

    fn leaf(root: RootKind, gfn: u64, level: u8) -> Mapping {
        let kind = if root == RootKind::Mirror { Kind::Private } else { Kind::Shared };
        let gfn = if root == RootKind::Direct { gfn | vm().shared_bit() } else { gfn };
        Mapping { as_id: 0, root, gfn, level, kind, invalid: false }
    }

    /// Replays deltas on the initial ids and checks each against the model.
    fn check(initial: &[Mapping], ops: &[Op], expect: &[&str]) {
        let slots = [Slot { id: 1, as_id: 0, base_gfn: 0, npages: 1 << 30, flags: 1 }];
        let mut mmu = Mmu::new(vm(), &slots, &[], initial, &[]).unwrap();
        let known = Known::new(numbered(initial));
        let mut objects: Vec<Mapping> = initial.to_vec();
        let mut current: Vec<ObjectId> = (0..initial.len() as ObjectId).collect();
        let mut tracker = Tracker::new(&known, initial.len() as ObjectId);
        mmu.set_logging(true);
        for (op, want) in ops.iter().zip(expect) {
            step(&mut mmu, Profile::Mainline, op, Observe::Outcomes).unwrap();
            let mut fresh = Vec::new();
            let delta = tracker.observe(&mut mmu, &mut fresh);
            objects.extend(fresh);
            let kind = match &delta {
                Delta::Same => "same",
                Delta::Diff { .. } => "diff",
                Delta::Full(_) => "full",
            };
            assert_eq!(kind, *want, "{op:?}");
            current = match delta {
                Delta::Same => current,
                Delta::Full(ids) => ids,
                Delta::Diff { gone, new } => {
                    let mut next: Vec<ObjectId> = current.into_iter().filter(|id| !gone.contains(id)).collect();
                    next.extend(new);
                    next
                }
            };
            let mut seen: Vec<Mapping> = current.iter().map(|&id| objects[id as usize]).collect();
            seen.sort_unstable();
            assert_eq!(seen, mmu.mappings(), "{op:?}");
        }
    }

    #[test]
    fn few_changes_are_a_diff_many_a_full_set_none_the_same() {
        let mut initial: Vec<Mapping> = (0..64).map(|g| leaf(RootKind::Mirror, g * 2, 1)).collect();
        initial.extend((0..4).map(|g| leaf(RootKind::Direct, 0x200 * (g + 1), 2)));
        let ops = [
            Op::MmuNotifierInvalidate { as_id: 0, start: 0x400, end: 0x600 }, // one shared 2M leaf
            Op::MmuNotifierInvalidate { as_id: 0, start: 0x400, end: 0x600 }, // nothing left there
            Op::ZapAllFast,                                                   // the other shared leaves
            Op::ZapGfnRange { start: 0, end: 120 },                           // 60 of 64 private leaves
            Op::VmDestroy,                                                    // everything
            Op::ZapAll,
        ];
        check(&initial, &ops, &["diff", "same", "diff", "full", "full", "same"]);
    }

    #[test]
    fn leaves_made_by_a_step_get_new_ids_and_keep_them() {
        // Dirty logging splits the 2M leaf into 512 4K leaves, then recovers it.
        let initial = [leaf(RootKind::Direct, 0x200, 2), leaf(RootKind::Mirror, 0x10, 1)];
        let ops = [
            Op::MemslotSetFlags { slot: 1, flags: 4 }, // refused: GUEST_MEMFD slots are immutable
        ];
        check(&initial, &ops, &["same"]);
        let vm = Vm { vm_type: VmType::Default, ..vm() };
        let slots = [Slot { id: 1, as_id: 0, base_gfn: 0, npages: 0x1000, flags: 0 }];
        let huge =
            Mapping { as_id: 0, root: RootKind::Direct, gfn: 0x200, level: 2, kind: Kind::Shared, invalid: false };
        let mut mmu = Mmu::new(vm, &slots, &[], &[huge], &[]).unwrap();
        let known = Known::new(numbered(&[huge]));
        let mut tracker = Tracker::new(&known, 1);
        mmu.set_logging(true);
        let mut fresh = Vec::new();
        step(&mut mmu, Profile::Mainline, &Op::MemslotSetFlags { slot: 1, flags: 1 }, Observe::Outcomes).unwrap();
        let Delta::Full(ids) = tracker.observe(&mut mmu, &mut fresh) else { panic!("512 new leaves for one gone") };
        assert_eq!((ids.len(), fresh.len()), (512, 512));
        assert_eq!(ids, (1..513).collect::<Vec<_>>());
        step(&mut mmu, Profile::Mainline, &Op::MemslotSetFlags { slot: 1, flags: 0 }, Observe::Outcomes).unwrap();
        let delta = tracker.observe(&mut mmu, &mut fresh);
        assert_eq!(delta, Delta::Full(vec![0]), "the recovered 2M leaf is the initial object again");
        assert_eq!(fresh.len(), 512, "no new object");
    }

    #[test]
    fn a_leaf_removed_and_made_again_in_one_step_is_no_change() {
        let a = leaf(RootKind::Mirror, 0x10, 1);
        let b = leaf(RootKind::Mirror, 0x20, 1);
        let (mut gone, mut new) = (vec![b, a, a], vec![a, leaf(RootKind::Mirror, 0x30, 1)]);
        cancel(&mut gone, &mut new);
        assert_eq!((gone, new), (vec![a, b], vec![leaf(RootKind::Mirror, 0x30, 1)]));
    }

    #[test]
    fn galloping_finds_initial_leaves_by_place_level_and_kind() {
        let initial: Vec<Mapping> = (0..1000).map(|g| leaf(RootKind::Mirror, g * 3, 1)).collect();
        let known = Known::new(numbered(&initial));
        let mut queries = vec![initial[0], initial[999], leaf(RootKind::Mirror, 1, 1), initial[500]];
        queries.push(Mapping { level: 2, ..initial[700] }); // same place, another level
        queries.push(Mapping { kind: Kind::Shared, ..initial[701] }); // same place, another kind
        queries.push(leaf(RootKind::Direct, 0, 1));
        let mut words: Vec<u64> = queries.iter().map(|m| pack(m).unwrap()).collect();
        words.sort_unstable();
        let named: Vec<(u64, Option<ObjectId>)> =
            words.iter().map(|&w| unpack(w).gfn).zip(known.find_sorted(&words)).collect();
        assert_eq!(
            named,
            vec![
                (vm().shared_bit(), None),
                (0, Some(0)),
                (1, None),
                (1500, Some(500)),
                (2100, None),
                (2103, None),
                (2997, Some(999))
            ]
        );
    }

    #[test]
    fn packing_keeps_every_field_and_the_install_order() {
        let a = Mapping {
            as_id: 1,
            root: RootKind::Shadow,
            gfn: (1 << 50) - 512,
            level: 2,
            kind: Kind::Private,
            invalid: false,
        };
        let b = Mapping { as_id: 0, root: RootKind::Mirror, gfn: 7, level: 1, kind: Kind::Shared, invalid: true };
        let c =
            Mapping { as_id: 0, root: RootKind::Mirror, gfn: 1 << 40, level: 3, kind: Kind::Private, invalid: false };
        for m in [a, b, c] {
            assert_eq!(unpack(pack(&m).unwrap()), m);
        }
        let key = |m: &Mapping| (m.as_id, m.root, m.invalid, m.gfn);
        assert_eq!(pack(&b) < pack(&c), key(&b) < key(&c));
        assert!(pack(&c) < pack(&a) && pack(&b) > pack(&c));
        assert_eq!(pack(&Mapping { gfn: 1 << 50, ..a }), None);
        assert_eq!(pack(&Mapping { level: 4, ..a }), None);
    }
}
