//! Stable ordering through one copy of the standard library's sort.
//!
//! Why this exists: `slice::sort_by` is generic over the element and the
//! comparator, and so is `collect::<BTreeMap<_, _>>()` / `collect::<BTreeSet<_>>()`
//! (they sort before building). Each call site therefore compiled its own
//! ~6 KB copy of the sort; the browser module carried fifteen of them, about
//! 95 KB of its 620 KiB. Here the standard sort runs once, on indices, with the
//! comparison behind a `dyn` call, and the result is applied as a permutation.
//! Inputs are small (policies, workloads, ports, diagnostics), so the indirect
//! call costs nothing measurable; stability is kept, which the callers rely on
//! for istiod's "ties keep input order" rule.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

/// Sort `v` stably by `cmp` (same result as `v.sort_by(cmp)`).
pub fn sort_by<T>(v: &mut [T], mut cmp: impl FnMut(&T, &T) -> Ordering) {
    if v.len() < 2 {
        return;
    }
    let mut order: Vec<usize> = (0..v.len()).collect();
    // The indices are 0..len, so `get` always finds both.
    sort_indices(&mut order, &mut |a, b| match (v.get(a), v.get(b)) {
        (Some(x), Some(y)) => cmp(x, y),
        _ => Ordering::Equal,
    });
    permute(v, &mut order);
}

/// Sort `v` stably by the key `key` (same result as `v.sort_by_key(key)`).
pub fn sort_by_key<T, K: Ord>(v: &mut [T], mut key: impl FnMut(&T) -> K) {
    sort_by(v, |a, b| key(a).cmp(&key(b)));
}

/// Sort `v` stably in its natural order (same result as `v.sort()`).
pub fn sort<T: Ord>(v: &mut [T]) {
    sort_by(v, |a, b| a.cmp(b));
}

/// Build a map from pairs; a later pair replaces an earlier one with the same key,
/// as `collect::<BTreeMap<_, _>>()` does, without that collect's own sort.
pub fn map<K: Ord, V>(pairs: impl IntoIterator<Item = (K, V)>) -> BTreeMap<K, V> {
    let mut map = BTreeMap::new();
    map.extend(pairs);
    map
}

/// Build a set, as `collect::<BTreeSet<_>>()` does, without that collect's own sort.
pub fn set<T: Ord>(items: impl IntoIterator<Item = T>) -> BTreeSet<T> {
    let mut set = BTreeSet::new();
    set.extend(items);
    set
}

// Not generic and never inlined: this is the one place the sort is instantiated.
#[inline(never)]
fn sort_indices(order: &mut [usize], cmp: &mut dyn FnMut(usize, usize) -> Ordering) {
    order.sort_by(|a, b| cmp(*a, *b));
}

/// Rearrange `v` so that position `k` holds the element that was at `order[k]`.
/// Follows each cycle of the permutation once; `order` is consumed (reset to the
/// identity) so visited positions are recognised without extra memory.
fn permute<T>(v: &mut [T], order: &mut [usize]) {
    for start in 0..order.len() {
        let mut here = start;
        while let Some(slot) = order.get_mut(here) {
            let from = std::mem::replace(slot, here);
            if from == start || from == here {
                break;
            }
            v.swap(here, from);
            here = from;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn equal_keys_keep_input_order() {
        let mut v = vec![(2, 'a'), (1, 'b'), (2, 'c'), (1, 'd'), (0, 'e')];
        sort_by_key(&mut v, |p| p.0);
        assert_eq!(v, vec![(0, 'e'), (1, 'b'), (1, 'd'), (2, 'a'), (2, 'c')]);
    }

    #[test]
    fn later_pair_wins_in_map() {
        let m = map([(2, "x"), (1, "y"), (2, "z")]);
        assert_eq!(m.into_iter().collect::<Vec<_>>(), vec![(1, "y"), (2, "z")]);
    }

    proptest! {
        #[test]
        fn same_as_std_stable_sort(mut v in proptest::collection::vec((0u8..6, any::<u16>()), 0..64)) {
            let mut want = v.clone();
            want.sort_by_key(|p| p.0);
            sort_by_key(&mut v, |p| p.0);
            prop_assert_eq!(v, want);
        }

        #[test]
        fn same_as_std_collect(v in proptest::collection::vec((0u8..10, any::<u16>()), 0..64)) {
            prop_assert_eq!(map(v.clone()), v.iter().copied().collect::<BTreeMap<_, _>>());
            prop_assert_eq!(set(v.clone()), v.iter().copied().collect::<BTreeSet<_>>());
        }
    }
}
