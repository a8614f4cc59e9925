//! A radix tree of 512-entry page tables, the shape of an EPT/NPT root.
//!
//! Five levels of 9 index bits each cover 45 GFN bits: the four x86 levels
//! (bits 0-35) plus a top level (bits 36-44) so that the TDX shared bit at
//! GFN bit 39 (GPAW 52) and ranges up to 2^40 fit, as with 5-level EPT.
//! Leaves live at level 1 (4K), 2 (2M) or 3 (1G).
//!
//! A table keeps its 512 entries as three bitmaps (present, leaf, private)
//! and, only once it has a child table, an array of child pointers: a
//! last-level table is 200 bytes, not 4 KiB, which is what makes a million
//! scattered leaves cheap to build. Walks read the present bitmap, so a zap
//! visits only present entries and costs in proportion to what is present,
//! never to the size of its range.

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
type Children = [Option<Box<Table>>; FANOUT];

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

#[derive(Default)]
struct Table {
    present: Bitmap,
    leaf: Bitmap,
    private: Bitmap,
    children: Option<Box<Children>>,
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
        assign(&mut self.present, index, false);
        assign(&mut self.leaf, index, false);
        assign(&mut self.private, index, false);
        if let Some(children) = self.children.as_mut() {
            children[index] = None;
        }
    }

    /// The child table at `index`, allocated if the entry is absent.
    fn child_mut(&mut self, index: usize) -> &mut Table {
        if !test(&self.present, index) {
            assign(&mut self.present, index, true);
        }
        let children = self.children.get_or_insert_with(|| Box::new(std::array::from_fn(|_| None)));
        children[index].get_or_insert_with(Box::default)
    }

    fn child(&self, index: usize) -> &Table {
        self.children.as_ref().and_then(|c| c[index].as_deref()).expect("a table entry has a child")
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

/// A root and everything below it.
pub struct Tree {
    top: Option<Box<Table>>,
    leaves: usize,
}

impl Default for Tree {
    fn default() -> Self {
        Self::new()
    }
}

impl Tree {
    pub fn new() -> Self {
        Tree { top: None, leaves: 0 }
    }

    pub fn leaf_count(&self) -> usize {
        self.leaves
    }

    /// Install a leaf; it must be aligned and must not overlap another.
    pub fn insert(&mut self, leaf: Leaf) -> Result<(), String> {
        if !(1..=MAX_LEAF_LEVEL).contains(&leaf.level) {
            return Err(format!("leaf level {} is not 4K, 2M or 1G", leaf.level));
        }
        if !leaf.gfn.is_multiple_of(entry_pages(leaf.level)) || leaf.gfn >= GFN_LIMIT {
            return Err(format!("leaf gfn {:#x} is misaligned or beyond the tree", leaf.gfn));
        }
        let mut table: &mut Table = self.top.get_or_insert_with(Box::default);
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
        let Some(top) = self.top.as_mut() else { return 0 };
        let zapped = zap_table(top, TOP_LEVEL, 0, start, end);
        if top.is_empty() {
            self.top = None;
        }
        self.leaves -= zapped;
        zapped
    }

    /// Tear the whole root down; returns how many leaves it held.
    pub fn clear(&mut self) -> usize {
        self.top = None;
        std::mem::take(&mut self.leaves)
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

fn index_at(gfn: u64, level: u8) -> usize {
    ((gfn >> (BITS * (level as u32 - 1))) as usize) & (FANOUT - 1)
}

fn zap_table(table: &mut Table, level: u8, base: u64, start: u64, end: u64) -> usize {
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
                zapped += 1;
                true
            }
            Entry::Table => {
                let child = table.child_mut(index);
                zapped += zap_table(child, level - 1, base + index as u64 * span, start, end);
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
    fn range_ends_are_exclusive() {
        let mut tree = Tree::new();
        tree.insert(leaf(0x10, 1)).unwrap();
        assert_eq!(tree.zap_range(0, 0x10), 0);
        assert_eq!(tree.zap_range(0x11, 0x20), 0);
        assert_eq!(tree.zap_range(0x10, 0x11), 1);
    }
}
