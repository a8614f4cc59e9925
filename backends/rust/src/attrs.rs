//! Memory attributes: the GFN ranges whose attribute is private, kept as
//! disjoint, coalesced intervals (the kernel keeps an xarray per GFN; an
//! interval map answers the same questions at a cost independent of size).

use std::collections::BTreeMap;

#[derive(Default, Clone)]
pub struct PrivateRanges {
    /// start -> end, disjoint and never adjacent.
    ranges: BTreeMap<u64, u64>,
}

impl PrivateRanges {
    pub fn new() -> Self {
        Self::default()
    }

    /// Store the attribute of `[start, end)`: private or shared.
    pub fn set(&mut self, start: u64, end: u64, private: bool) {
        if start >= end {
            return;
        }
        let overlapping: Vec<(u64, u64)> =
            self.ranges.range(..=end).filter(|(_, hi)| **hi >= start).map(|(lo, hi)| (*lo, *hi)).collect();
        let (mut lo, mut hi) = (start, end);
        for (a, b) in overlapping {
            self.ranges.remove(&a);
            if private {
                // Merge touching private ranges into one.
                lo = lo.min(a);
                hi = hi.max(b);
            } else {
                if a < start {
                    self.ranges.insert(a, start);
                }
                if b > end {
                    self.ranges.insert(end, b);
                }
            }
        }
        if private {
            self.ranges.insert(lo, hi);
        }
    }

    /// Is every GFN of `[start, end)` private?
    pub fn all_private(&self, start: u64, end: u64) -> bool {
        // Ranges never touch, so full coverage means one range covers it.
        self.ranges.range(..=start).next_back().is_some_and(|(_, hi)| *hi >= end)
    }

    /// Is no GFN of `[start, end)` private?
    pub fn all_shared(&self, start: u64, end: u64) -> bool {
        self.ranges.range(..end).next_back().is_none_or(|(_, hi)| *hi <= start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(attrs: &PrivateRanges) -> Vec<(u64, u64)> {
        attrs.ranges.iter().map(|(lo, hi)| (*lo, *hi)).collect()
    }

    #[test]
    fn set_keeps_ranges_disjoint_and_nonempty() {
        let mut attrs = PrivateRanges::new();
        attrs.set(0x10, 0x20, true);
        attrs.set(0x10, 0x18, false);
        assert_eq!(spans(&attrs), vec![(0x18, 0x20)]);
        attrs.set(0x1c, 0x20, false);
        assert_eq!(spans(&attrs), vec![(0x18, 0x1c)]);
        attrs.set(0x1c, 0x30, true);
        assert_eq!(spans(&attrs), vec![(0x18, 0x30)]);
    }

    #[test]
    fn set_merges_and_splits() {
        let mut attrs = PrivateRanges::new();
        attrs.set(0x10, 0x20, true);
        attrs.set(0x20, 0x30, true);
        assert!(attrs.all_private(0x10, 0x30));
        attrs.set(0x18, 0x19, false);
        assert!(!attrs.all_private(0x10, 0x30));
        assert!(attrs.all_shared(0x18, 0x19));
        assert!(!attrs.all_shared(0x17, 0x19));
        assert!(attrs.all_private(0x19, 0x30));
        assert!(attrs.all_shared(0, 0x10));
        assert!(attrs.all_shared(0x30, 0x40));
    }
}
