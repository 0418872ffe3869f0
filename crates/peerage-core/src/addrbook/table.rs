//! A sparse table of buckets: memory follows the entries, not the slots.

use foldhash::{HashMap, HashMapExt};
use rand::Rng;

/// One bucket's occupied slots, by position.
#[derive(Debug, Clone, Default)]
struct Bucket {
    /// `(position, entry)`, sorted by position.
    slots: Vec<(u8, u32)>,
    /// Where the bucket sits in [`Table::nonempty`].
    index: u32,
}

/// Buckets of `bucket_size` slots, each slot empty or holding an entry ID. Only non-empty
/// buckets are stored, and each stores only its occupied slots.
#[derive(Debug, Clone, Default)]
pub(super) struct Table {
    buckets: HashMap<u32, Bucket>,
    /// The non-empty buckets, for a uniform draw.
    nonempty: Vec<u32>,
    /// Occupied slots.
    slots: usize,
}

impl Table {
    pub(super) fn new() -> Self {
        Table {
            buckets: HashMap::new(),
            nonempty: Vec::new(),
            slots: 0,
        }
    }

    /// Occupied slots.
    pub(super) fn slots(&self) -> usize {
        self.slots
    }

    /// The entry in a slot.
    pub(super) fn get(&self, bucket: u32, pos: u8) -> Option<u32> {
        let b = self.buckets.get(&bucket)?;
        b.slots
            .binary_search_by_key(&pos, |s| s.0)
            .ok()
            .map(|i| b.slots[i].1)
    }

    /// Puts `id` in a slot, returning what it held.
    pub(super) fn set(&mut self, bucket: u32, pos: u8, id: u32) -> Option<u32> {
        let index = self.nonempty.len() as u32;
        let b = self.buckets.entry(bucket).or_insert_with(|| Bucket {
            slots: Vec::new(),
            index,
        });
        if b.slots.is_empty() {
            self.nonempty.push(bucket);
        }
        match b.slots.binary_search_by_key(&pos, |s| s.0) {
            Ok(i) => Some(std::mem::replace(&mut b.slots[i].1, id)),
            Err(i) => {
                b.slots.insert(i, (pos, id));
                self.slots += 1;
                None
            }
        }
    }

    /// Empties a slot, returning what it held.
    pub(super) fn clear(&mut self, bucket: u32, pos: u8) -> Option<u32> {
        let b = self.buckets.get_mut(&bucket)?;
        let i = b.slots.binary_search_by_key(&pos, |s| s.0).ok()?;
        let (_, id) = b.slots.remove(i);
        self.slots -= 1;
        if b.slots.is_empty() {
            let index = b.index as usize;
            self.buckets.remove(&bucket);
            self.nonempty.swap_remove(index);
            if let Some(moved) = self.nonempty.get(index) {
                self.buckets
                    .get_mut(moved)
                    .expect("every non-empty bucket is stored")
                    .index = index as u32;
            }
        }
        Some(id)
    }

    /// A slot drawn as Bitcoin Core's `Select_` draws one, given that some bucket is not empty:
    /// a random bucket (here, among the non-empty ones, which is the same distribution without
    /// the empty draws), a random position in it, and the first occupied slot from there on,
    /// wrapping around within the bucket.
    pub(super) fn draw(&self, rng: &mut impl Rng, bucket_size: u32) -> Option<u32> {
        if self.nonempty.is_empty() {
            return None;
        }
        let bucket = self.nonempty[rng.random_range(0..self.nonempty.len())];
        let start = rng.random_range(0..bucket_size) as u8;
        let slots = &self.buckets[&bucket].slots;
        let i = slots.partition_point(|s| s.0 < start);
        Some(slots.get(i).unwrap_or(&slots[0]).1)
    }

    /// Every occupied slot, `(bucket, position, entry)`, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u32, u8, u32)> + '_ {
        self.buckets
            .iter()
            .flat_map(|(b, bucket)| bucket.slots.iter().map(move |&(p, id)| (*b, p, id)))
    }
}

#[cfg(test)]
mod tests {
    use rand::{SeedableRng, rngs::StdRng};

    use super::*;

    #[test]
    fn sets_clears_and_draws_only_occupied_slots() {
        let mut t = Table::new();
        assert_eq!(t.set(3, 10, 1), None);
        assert_eq!(t.set(3, 2, 2), None);
        assert_eq!(t.set(7, 63, 3), None);
        assert_eq!(t.set(3, 10, 4), Some(1));
        assert_eq!((t.slots(), t.get(3, 10), t.get(3, 11)), (3, Some(4), None));
        let mut rng = StdRng::seed_from_u64(1);
        let mut seen = [0; 5];
        for _ in 0..1000 {
            seen[t.draw(&mut rng, 64).unwrap() as usize] += 1;
        }
        // Bucket 7 (one entry) is drawn half the time, as Bitcoin Core draws a bucket first.
        assert!((400..600).contains(&seen[3]), "{seen:?}");
        assert_eq!(seen[1], 0);
        assert_eq!(t.clear(7, 63), Some(3));
        assert_eq!(t.clear(7, 63), None);
        assert_eq!(t.clear(3, 2), Some(2));
        assert_eq!(t.clear(3, 10), Some(4));
        assert_eq!((t.slots(), t.draw(&mut rng, 64)), (0, None));
        assert!(t.buckets.is_empty() && t.nonempty.is_empty());
    }
}
