//! A radix tree of 512-entry page tables, the shape of an EPT/NPT root.
//!
//! Five levels of 9 index bits each cover 45 GFN bits: the four x86 levels
//! (bits 0-35) plus a top level (bits 36-44) so that the TDX shared bit at
//! GFN bit 39 (GPAW 52) and ranges up to 2^40 fit, as with 5-level EPT.
//! Leaves live at level 1 (4K), 2 (2M) or 3 (1G).
//!
//! A table keeps its 512 entries as three bitmaps (present, leaf, private)
//! and its child tables in a vector, in index order (an entry's child is
//! found by counting the table entries before it): a last-level table is
//! about 200 bytes, not 4 KiB, and a table with three children holds three
//! pointers, not 512, which is what makes a million scattered leaves cheap
//! to build. Walks read the present bitmap, so a zap
//! visits only present entries and costs in proportion to what is present,
//! never to the size of its range.
//!
//! Tables are shared between copies of a tree and copied on write
//! (`Arc::make_mut`): cloning a tree is O(1), and a run on a clone of a
//! prepared state copies only the tables it changes; dropping a clone
//! frees only those.
//!
//! A tree can keep a log of the leaves it loses and gains (`set_logging`),
//! so that a run can report what a step changed instead of every leaf left.

use std::sync::Arc;

use crate::model::Kind;

const BITS: u32 = 9;
const FANOUT: usize = 1 << BITS;
const WORDS: usize = FANOUT / 64;
/// Level of the top table.
pub const TOP_LEVEL: u8 = 5;
/// One past the highest GFN a tree can index.
pub const GFN_LIMIT: u64 = 1 << (BITS * TOP_LEVEL as u32);
/// The largest leaf level (1G).
pub const MAX_LEAF_LEVEL: u8 = 3;

/// Pages covered by one entry of a table at `level`.
pub fn entry_pages(level: u8) -> u64 {
    1 << (BITS * (level as u32 - 1))
}

type Bitmap = [u64; WORDS];

fn test(map: &Bitmap, index: usize) -> bool {
    map[index / 64] & (1 << (index % 64)) != 0
}

fn assign(map: &mut Bitmap, index: usize, value: bool) {
    let bit = 1u64 << (index % 64);
    if value {
        map[index / 64] |= bit;
    } else {
        map[index / 64] &= !bit;
    }
}

/// One entry's state, as read off the bitmaps.
enum Entry {
    Absent,
    Leaf,
    Table,
}

#[derive(Default, Clone)]
struct Table {
    present: Bitmap,
    leaf: Bitmap,
    private: Bitmap,
    /// The child tables of the entries that are tables, in index order.
    children: Vec<Arc<Table>>,
}

impl Table {
    fn is_empty(&self) -> bool {
        self.present.iter().all(|w| *w == 0)
    }

    fn entry(&self, index: usize) -> Entry {
        match (test(&self.present, index), test(&self.leaf, index)) {
            (false, _) => Entry::Absent,
            (true, true) => Entry::Leaf,
            (true, false) => Entry::Table,
        }
    }

    fn kind(&self, index: usize) -> Kind {
        if test(&self.private, index) {
            Kind::Private
        } else {
            Kind::Shared
        }
    }

    fn set_leaf(&mut self, index: usize, kind: Kind) {
        assign(&mut self.present, index, true);
        assign(&mut self.leaf, index, true);
        assign(&mut self.private, index, kind == Kind::Private);
    }

    fn clear(&mut self, index: usize) {
        if matches!(self.entry(index), Entry::Table) {
            self.children.remove(self.rank(index));
        }
        assign(&mut self.present, index, false);
        assign(&mut self.leaf, index, false);
        assign(&mut self.private, index, false);
    }

    /// Where the child of entry `index` is in `children`: how many entries
    /// before it are tables.
    fn rank(&self, index: usize) -> usize {
        let tables = |word: usize| self.present[word] & !self.leaf[word];
        let below = (0..index / 64).map(|w| tables(w).count_ones() as usize).sum::<usize>();
        below + (tables(index / 64) & ((1u64 << (index % 64)) - 1)).count_ones() as usize
    }

    /// The child table at `index`, allocated if the entry is absent, copied
    /// first if another tree shares it.
    fn child_mut(&mut self, index: usize) -> &mut Table {
        let rank = self.rank(index);
        if !test(&self.present, index) {
            assign(&mut self.present, index, true);
            self.children.insert(rank, Arc::default());
        }
        Arc::make_mut(&mut self.children[rank])
    }

    fn child(&self, index: usize) -> &Table {
        &self.children[self.rank(index)]
    }

    /// The present indices in `first..=last`, in order, read off the bitmap.
    fn present_in(&self, first: usize, last: usize) -> PresentIter<'_> {
        PresentIter { present: &self.present, next: first, last }
    }
}

struct PresentIter<'a> {
    present: &'a Bitmap,
    next: usize,
    last: usize,
}

impl Iterator for PresentIter<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        while self.next <= self.last {
            let word = self.next / 64;
            let bits = self.present[word] >> (self.next % 64);
            if bits == 0 {
                self.next = (word + 1) * 64;
                continue;
            }
            let found = self.next + bits.trailing_zeros() as usize;
            if found > self.last {
                return None;
            }
            self.next = found + 1;
            return Some(found);
        }
        None
    }
}

/// One leaf as stored: its GFN (index in the tree), level and kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Leaf {
    pub gfn: u64,
    pub level: u8,
    pub kind: Kind,
}

/// What a logging tree lost and gained, in order of happening within each list.
#[derive(Default, Clone)]
pub struct Log {
    removed: Vec<Leaf>,
    /// Whole trees torn down by `clear`, kept as they were with their leaf
    /// count: walked only if their leaves are asked for.
    cleared: Vec<(Arc<Table>, usize)>,
    added: Vec<Leaf>,
}

impl Log {
    /// Leaves removed, counting those of cleared trees.
    pub fn removed_count(&self) -> usize {
        self.removed.len() + self.cleared.iter().map(|(_, n)| n).sum::<usize>()
    }

    pub fn added(&self) -> &[Leaf] {
        &self.added
    }

    /// Every leaf removed (the cleared trees walked), and every leaf added.
    pub fn into_leaves(self) -> (Vec<Leaf>, Vec<Leaf>) {
        let mut removed = self.removed;
        for (top, _) in &self.cleared {
            collect(top, TOP_LEVEL, 0, &mut removed);
        }
        (removed, self.added)
    }
}

/// A root and everything below it. A clone shares every table until written.
#[derive(Clone)]
pub struct Tree {
    top: Option<Arc<Table>>,
    leaves: usize,
    log: Option<Log>,
}

impl Default for Tree {
    fn default() -> Self {
        Self::new()
    }
}

impl Tree {
    pub fn new() -> Self {
        Tree { top: None, leaves: 0, log: None }
    }

    /// Start (or stop) logging the leaves removed and added.
    pub fn set_logging(&mut self, on: bool) {
        self.log = on.then(Log::default);
    }

    /// The log so far, a fresh one begun; None when not logging.
    pub fn take_log(&mut self) -> Option<Log> {
        self.log.as_mut().map(std::mem::take)
    }

    pub fn leaf_count(&self) -> usize {
        self.leaves
    }

    /// A tree of the leaves of `items` (`leaf` makes each one's), sorted
    /// by GFN, built table by table in one pass; an error where inserting
    /// them one by one would fail.
    pub fn from_sorted<T>(items: &[T], leaf: impl Fn(&T) -> Leaf) -> Result<Self, String> {
        let mut free = 0; // the first GFN after the leaf before
        for leaf in items.iter().map(&leaf) {
            check(&leaf)?;
            if leaf.gfn < free {
                return Err(format!("leaf at gfn {:#x} overlaps the leaf before it", leaf.gfn));
            }
            free = leaf.gfn + entry_pages(leaf.level);
        }
        let mut scratch = Default::default();
        let top = (!items.is_empty()).then(|| Arc::new(build(TOP_LEVEL, 0, items, &leaf, &mut scratch)));
        Ok(Tree { top, leaves: items.len(), log: None })
    }

    /// Install a leaf; it must be aligned and must not overlap another.
    pub fn insert(&mut self, leaf: Leaf) -> Result<(), String> {
        check(&leaf)?;
        let mut table: &mut Table = Arc::make_mut(self.top.get_or_insert_with(Arc::default));
        let mut level = TOP_LEVEL;
        loop {
            let index = index_at(leaf.gfn, level);
            let entry = table.entry(index);
            if level == leaf.level {
                if !matches!(entry, Entry::Absent) {
                    return Err(format!("leaf at gfn {:#x} overlaps a present entry", leaf.gfn));
                }
                table.set_leaf(index, leaf.kind);
                self.leaves += 1;
                if let Some(log) = self.log.as_mut() {
                    log.added.push(leaf);
                }
                return Ok(());
            }
            if matches!(entry, Entry::Leaf) {
                return Err(format!("leaf at gfn {:#x} lies under a huge leaf", leaf.gfn));
            }
            table = table.child_mut(index);
            level -= 1;
        }
    }

    /// Remove every leaf overlapping `[start, end)`; a huge leaf touched
    /// anywhere goes whole. Tables left empty are freed. Returns how many
    /// leaves went.
    pub fn zap_range(&mut self, start: u64, end: u64) -> usize {
        let end = end.min(GFN_LIMIT);
        if start >= end {
            return 0;
        }
        let Tree { top: Some(top), log, .. } = self else { return 0 };
        let table = Arc::make_mut(top);
        let zapped = match log {
            Some(log) => zap_table(table, TOP_LEVEL, 0, start, end, &mut |leaf| log.removed.push(leaf)),
            None => zap_table(table, TOP_LEVEL, 0, start, end, &mut |_| {}),
        };
        if table.is_empty() {
            self.top = None;
        }
        self.leaves -= zapped;
        zapped
    }

    /// Tear the whole root down; returns how many leaves it held.
    pub fn clear(&mut self) -> usize {
        let leaves = std::mem::take(&mut self.leaves);
        if let (Some(top), Some(log)) = (self.top.take(), self.log.as_mut()) {
            log.cleared.push((top, leaves));
        }
        leaves
    }

    /// Every leaf, in GFN order.
    pub fn leaves(&self) -> Vec<Leaf> {
        let mut out = Vec::with_capacity(self.leaves);
        if let Some(top) = &self.top {
            collect(top, TOP_LEVEL, 0, &mut out);
        }
        out
    }
}

/// A leaf's level is 4K, 2M or 1G, and its GFN aligned to it and inside the tree.
fn check(leaf: &Leaf) -> Result<(), String> {
    if !(1..=MAX_LEAF_LEVEL).contains(&leaf.level) {
        return Err(format!("leaf level {} is not 4K, 2M or 1G", leaf.level));
    }
    if !leaf.gfn.is_multiple_of(entry_pages(leaf.level)) || leaf.gfn >= GFN_LIMIT {
        return Err(format!("leaf gfn {:#x} is misaligned or beyond the tree", leaf.gfn));
    }
    Ok(())
}

/// Children being built, one list per level (reused, so that each table's
/// list is allocated once, at its size).
type Scratch = [Vec<Arc<Table>>; TOP_LEVEL as usize + 1];

/// The table at `level` covering `base..`, holding the leaves of `items`
/// (sorted, checked, not overlapping, all under it).
fn build<T>(level: u8, base: u64, items: &[T], leaf: &impl Fn(&T) -> Leaf, scratch: &mut Scratch) -> Table {
    let mut table = Table::default();
    let span = entry_pages(level);
    let mut rest = items;
    while let Some(first) = rest.first().map(leaf) {
        let index = index_at(first.gfn, level);
        if first.level == level {
            table.set_leaf(index, first.kind);
            rest = &rest[1..];
            continue;
        }
        let start = base + index as u64 * span;
        let under = rest.partition_point(|item| leaf(item).gfn < start + span);
        let child = build(level - 1, start, &rest[..under], leaf, scratch);
        assign(&mut table.present, index, true);
        scratch[level as usize].push(Arc::new(child)); // entries come in index order
        rest = &rest[under..];
    }
    table.children = scratch[level as usize].drain(..).collect();
    table
}

fn index_at(gfn: u64, level: u8) -> usize {
    ((gfn >> (BITS * (level as u32 - 1))) as usize) & (FANOUT - 1)
}

/// `gone` sees every leaf removed, before it goes.
fn zap_table(table: &mut Table, level: u8, base: u64, start: u64, end: u64, gone: &mut impl FnMut(Leaf)) -> usize {
    let span = entry_pages(level);
    let first = (start.max(base) - base) / span;
    let last = (end.min(base + span * FANOUT as u64) - 1 - base) / span;
    // Iterate a copy of the bitmap: the loop clears entries as it goes.
    let present = table.present;
    let mut zapped = 0;
    for index in (PresentIter { present: &present, next: first as usize, last: last as usize }) {
        let emptied = match table.entry(index) {
            // A leaf touched anywhere goes whole.
            Entry::Leaf => {
                gone(Leaf { gfn: base + index as u64 * span, level, kind: table.kind(index) });
                zapped += 1;
                true
            }
            Entry::Table => {
                let child = table.child_mut(index);
                zapped += zap_table(child, level - 1, base + index as u64 * span, start, end, gone);
                child.is_empty()
            }
            Entry::Absent => false,
        };
        if emptied {
            table.clear(index);
        }
    }
    zapped
}

fn collect(table: &Table, level: u8, base: u64, out: &mut Vec<Leaf>) {
    let span = entry_pages(level);
    for index in table.present_in(0, FANOUT - 1) {
        let gfn = base + index as u64 * span;
        match table.entry(index) {
            Entry::Leaf => out.push(Leaf { gfn, level, kind: table.kind(index) }),
            Entry::Table => collect(table.child(index), level - 1, gfn, out),
            Entry::Absent => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(gfn: u64, level: u8) -> Leaf {
        Leaf { gfn, level, kind: Kind::Shared }
    }

    #[test]
    fn partial_overlap_removes_the_whole_huge_leaf() {
        let mut tree = Tree::new();
        tree.insert(leaf(0x200, 2)).unwrap();
        tree.insert(leaf(0x400, 1)).unwrap();
        assert_eq!(tree.zap_range(0x3ff, 0x400), 1);
        assert_eq!(tree.leaves(), vec![leaf(0x400, 1)]);
    }

    #[test]
    fn huge_range_over_sparse_leaves() {
        let mut tree = Tree::new();
        tree.insert(leaf(1 << 39, 3)).unwrap();
        tree.insert(leaf((1 << 40) - 1, 1)).unwrap();
        assert_eq!(tree.zap_range(0, 1 << 40), 2);
        assert_eq!(tree.leaf_count(), 0);
        assert!(tree.top.is_none(), "empty tables are freed");
    }

    #[test]
    fn overlap_is_rejected() {
        let mut tree = Tree::new();
        tree.insert(leaf(0, 3)).unwrap();
        assert!(tree.insert(leaf(0x200, 1)).is_err());
        assert!(tree.insert(leaf(0, 2)).is_err());
        assert!(tree.insert(leaf(0x1, 2)).is_err());
    }

    #[test]
    fn misaligned_or_out_of_range_leaves_are_rejected() {
        let mut tree = Tree::new();
        assert!(tree.insert(leaf(0x1, 2)).is_err());
        assert!(tree.insert(leaf(0x200, 3)).is_err());
        assert!(tree.insert(leaf(GFN_LIMIT, 1)).is_err());
        assert!(tree.insert(leaf(0, 4)).is_err());
        assert_eq!(tree.leaf_count(), 0);
    }

    #[test]
    fn random_inserts_and_zaps_agree_with_a_plain_set() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        let mut tree = Tree::new();
        let mut plain: Vec<Leaf> = Vec::new();
        let span = 1u64 << 30;
        for round in 0..4000 {
            if round % 5 == 4 {
                let start = next(span);
                let bits = 1 + next(28);
                let end = start + 1 + next(1 << bits);
                let before = plain.len();
                plain.retain(|l| !(l.gfn < end && start < l.gfn + entry_pages(l.level)));
                assert_eq!(tree.zap_range(start, end), before - plain.len());
            } else {
                let level = [1, 1, 1, 2, 3][next(5) as usize];
                let gfn = next(span) / entry_pages(level) * entry_pages(level);
                let new = leaf(gfn, level);
                let overlaps =
                    plain.iter().any(|l| l.gfn < gfn + entry_pages(level) && gfn < l.gfn + entry_pages(l.level));
                assert_eq!(tree.insert(new).is_ok(), !overlaps);
                if !overlaps {
                    plain.push(new);
                }
            }
            if round % 500 == 0 {
                let copy = tree.clone();
                tree.zap_range(next(span), span);
                tree = copy; // the copy is unchanged by the zap of the original
            }
        }
        plain.sort();
        assert_eq!(tree.leaves(), plain);
        assert_eq!(Tree::from_sorted(&plain, |l| *l).unwrap().leaves(), plain);
    }

    #[test]
    fn a_tree_built_in_one_pass_is_the_tree_built_leaf_by_leaf() {
        let leaves = [leaf(0, 3), leaf(1 << 18, 1), leaf(0x40200, 2), leaf(0x40400, 1), leaf((1 << 45) - 1, 1)];
        let built = Tree::from_sorted(&leaves, |l| *l).unwrap();
        let mut one_by_one = Tree::new();
        leaves.iter().for_each(|&l| one_by_one.insert(l).unwrap());
        assert_eq!((built.leaves(), built.leaf_count()), (one_by_one.leaves(), 5));
        let mut built = built;
        assert_eq!(built.zap_range(0x40300, 0x40401), 2);
        assert_eq!(built.leaves(), vec![leaf(0, 3), leaf(1 << 18, 1), leaf((1 << 45) - 1, 1)]);
        assert!(Tree::from_sorted(&[leaf(0, 2), leaf(0x1ff, 1)], |l| *l).is_err(), "under a huge leaf");
        assert!(Tree::from_sorted(&[leaf(0x200, 1), leaf(0x200, 2)], |l| *l).is_err(), "one GFN twice");
        assert!(Tree::from_sorted(&[leaf(0x201, 2)], |l| *l).is_err(), "misaligned");
        assert!(Tree::from_sorted(&[], |l: &Leaf| *l).unwrap().top.is_none());
    }

    #[test]
    fn a_clone_shares_tables_until_either_writes() {
        let mut tree = Tree::new();
        for gfn in [0x10, 0x11, 0x200_000, 1 << 39] {
            tree.insert(leaf(gfn, 1)).unwrap();
        }
        let before = tree.leaves();
        let mut copy = tree.clone();
        assert_eq!(copy.zap_range(0x11, 1 << 40), 3);
        copy.insert(leaf(0x12, 1)).unwrap();
        assert_eq!(tree.leaves(), before, "the original is untouched");
        assert_eq!(copy.leaves(), vec![leaf(0x10, 1), leaf(0x12, 1)]);
        assert_eq!(tree.zap_range(0, 0x11), 1);
        assert_eq!(copy.leaves(), vec![leaf(0x10, 1), leaf(0x12, 1)], "and the copy too");
        copy.clear();
        assert_eq!(tree.leaf_count(), 3);
    }

    #[test]
    fn a_logging_tree_reports_what_it_lost_and_gained() {
        let mut tree = Tree::new();
        tree.insert(leaf(0x10, 1)).unwrap();
        tree.set_logging(true);
        tree.insert(leaf(0x200, 2)).unwrap();
        tree.insert(leaf(0x11, 1)).unwrap();
        assert_eq!(tree.zap_range(0x11, 0x201), 2);
        let log = tree.take_log().unwrap();
        assert_eq!((log.removed_count(), log.added().len()), (2, 2));
        assert_eq!(log.into_leaves(), (vec![leaf(0x11, 1), leaf(0x200, 2)], vec![leaf(0x200, 2), leaf(0x11, 1)]));
        tree.insert(leaf(0x400, 1)).unwrap();
        assert_eq!(tree.clear(), 2);
        let log = tree.take_log().unwrap();
        assert_eq!(log.removed_count(), 2, "a cleared tree counts its leaves");
        assert_eq!(log.into_leaves().0, vec![leaf(0x10, 1), leaf(0x400, 1)]);
        assert!(tree.take_log().unwrap().into_leaves() == (vec![], vec![]), "taking the log starts a new one");
        tree.set_logging(false);
        assert!(tree.take_log().is_none());
    }

    #[test]
    fn range_ends_are_exclusive() {
        let mut tree = Tree::new();
        tree.insert(leaf(0x10, 1)).unwrap();
        assert_eq!(tree.zap_range(0, 0x10), 0);
        assert_eq!(tree.zap_range(0x11, 0x20), 0);
        assert_eq!(tree.zap_range(0x10, 0x11), 1);
    }
}
