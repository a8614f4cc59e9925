//! A radix tree of 512-entry page tables, the shape of an EPT/NPT root.
//!
//! Five levels of 9 index bits each cover 45 GFN bits: the four x86 levels
//! (bits 0-35) plus a top level (bits 36-44) so that the TDX shared bit at
//! GFN bit 39 (GPAW 52) and ranges up to 2^40 fit, as with 5-level EPT.
//! Leaves live at level 1 (4K), 2 (2M) or 3 (1G). Each table keeps a
//! presence bitmap, so a walk visits only present entries: a zap costs in
//! proportion to what is present, never to the size of its range.

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

enum Entry {
    Absent,
    Leaf(Kind),
    Table(Box<Table>),
}

struct Table {
    entries: Box<[Entry]>,
    present: [u64; WORDS],
}

impl Table {
    fn new() -> Self {
        Table { entries: (0..FANOUT).map(|_| Entry::Absent).collect(), present: [0; WORDS] }
    }

    fn is_empty(&self) -> bool {
        self.present.iter().all(|w| *w == 0)
    }

    fn set(&mut self, index: usize, entry: Entry) {
        let bit = 1u64 << (index % 64);
        match entry {
            Entry::Absent => self.present[index / 64] &= !bit,
            _ => self.present[index / 64] |= bit,
        }
        self.entries[index] = entry;
    }

    /// The present indices in `first..=last`, in order, read off the bitmap.
    fn present_in(&self, first: usize, last: usize) -> PresentIter<'_> {
        PresentIter { table: self, next: first, last }
    }
}

struct PresentIter<'a> {
    table: &'a Table,
    next: usize,
    last: usize,
}

impl Iterator for PresentIter<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        while self.next <= self.last {
            let word = self.next / 64;
            let bits = self.table.present[word] >> (self.next % 64);
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
        let mut table = self.top.get_or_insert_with(|| Box::new(Table::new()));
        let mut level = TOP_LEVEL;
        loop {
            let index = index_at(leaf.gfn, level);
            if level == leaf.level {
                if !matches!(table.entries[index], Entry::Absent) {
                    return Err(format!("leaf at gfn {:#x} overlaps a present entry", leaf.gfn));
                }
                table.set(index, Entry::Leaf(leaf.kind));
                self.leaves += 1;
                return Ok(());
            }
            if matches!(table.entries[index], Entry::Absent) {
                table.set(index, Entry::Table(Box::new(Table::new())));
            }
            table = match &mut table.entries[index] {
                Entry::Table(child) => child,
                _ => return Err(format!("leaf at gfn {:#x} lies under a huge leaf", leaf.gfn)),
            };
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
    let present: Vec<usize> = table.present_in(first as usize, last as usize).collect();
    let mut zapped = 0;
    for index in present {
        let child_base = base + index as u64 * span;
        let emptied = match &mut table.entries[index] {
            Entry::Leaf(_) => {
                zapped += 1;
                true
            }
            Entry::Table(child) => {
                zapped += zap_table(child, level - 1, child_base, start, end);
                child.is_empty()
            }
            Entry::Absent => false,
        };
        if emptied {
            table.set(index, Entry::Absent);
        }
    }
    zapped
}

fn collect(table: &Table, level: u8, base: u64, out: &mut Vec<Leaf>) {
    let span = entry_pages(level);
    for index in table.present_in(0, FANOUT - 1) {
        let gfn = base + index as u64 * span;
        match &table.entries[index] {
            Entry::Leaf(kind) => out.push(Leaf { gfn, level, kind: *kind }),
            Entry::Table(child) => collect(child, level - 1, gfn, out),
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
    fn range_ends_are_exclusive() {
        let mut tree = Tree::new();
        tree.insert(leaf(0x10, 1)).unwrap();
        assert_eq!(tree.zap_range(0, 0x10), 0);
        assert_eq!(tree.zap_range(0x11, 0x20), 0);
        assert_eq!(tree.zap_range(0x10, 0x11), 1);
    }
}
