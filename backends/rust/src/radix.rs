//! An LSD radix sort on a 64-bit key, for the million-element sorts of
//! preparing a state (object addresses, packed leaves): a few linear
//! passes instead of n log n comparisons. Digits that are the same in
//! every key (the high bits of addresses, of GFNs) cost one counting pass
//! and no scatter.

const DIGIT: u32 = 11;
const BUCKETS: usize = 1 << DIGIT;
const PASSES: usize = 64_usize.div_ceil(DIGIT as usize);

/// Sort `items` by `key`, stably.
pub fn sort_by_key<T: Copy>(items: &mut Vec<T>, key: impl Fn(&T) -> u64) {
    if items.len() < 256 {
        items.sort_by_key(&key);
        return;
    }
    let mut counts = vec![[0usize; BUCKETS]; PASSES];
    for item in items.iter() {
        let k = key(item);
        for (pass, count) in counts.iter_mut().enumerate() {
            count[digit(k, pass)] += 1;
        }
    }
    let mut scratch: Vec<T> = Vec::with_capacity(items.len());
    for (pass, count) in counts.iter().enumerate() {
        if count.contains(&items.len()) {
            continue; // every key has this digit
        }
        let mut next = [0usize; BUCKETS];
        let mut total = 0;
        for (slot, &c) in next.iter_mut().zip(count) {
            *slot = total;
            total += c;
        }
        let out = scratch.spare_capacity_mut();
        for item in items.iter() {
            let d = digit(key(item), pass);
            out[next[d]].write(*item);
            next[d] += 1;
        }
        // SAFETY: the scatter wrote each of the `items.len()` slots exactly
        // once (the offsets partition 0..len by the counts of each digit).
        unsafe { scratch.set_len(items.len()) };
        std::mem::swap(items, &mut scratch);
        scratch.clear();
    }
}

fn digit(key: u64, pass: usize) -> usize {
    (key >> (pass as u32 * DIGIT)) as usize & (BUCKETS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_as_the_standard_sort_does_and_stably() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for (len, mask) in [(0, u64::MAX), (10, u64::MAX), (5000, u64::MAX), (5000, 0xff_f000), (100_000, 0x3ff)] {
            let mut items: Vec<(u64, u32)> = (0..len).map(|i| (next() & mask, i)).collect();
            let mut expected = items.clone();
            expected.sort_by_key(|&(k, _)| k);
            sort_by_key(&mut items, |&(k, _)| k);
            assert_eq!(items, expected, "len {len}, mask {mask:#x}");
        }
    }
}
