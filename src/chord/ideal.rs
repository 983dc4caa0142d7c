//! The ring as it should be: given every live id, what each node's predecessor, successor list
//! and fingers must be once stabilization is done. The yardstick for tests, the simulator and
//! benchmarks.

use super::id::{Id, M};

/// The ideal ring over a set of ids.
#[derive(Clone, Debug)]
pub struct IdealRing {
    sorted: Vec<Id>,
}

impl IdealRing {
    pub fn new(ids: impl IntoIterator<Item = Id>) -> Self {
        let mut sorted: Vec<Id> = ids.into_iter().collect();
        sorted.sort();
        sorted.dedup();
        IdealRing { sorted }
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// successor(key): the first id at or after `key`, wrapping around.
    pub fn successor(&self, key: &Id) -> Option<Id> {
        let at = self.sorted.partition_point(|id| id < key);
        self.sorted.get(at).or(self.sorted.first()).copied()
    }

    fn position(&self, id: &Id) -> Option<usize> {
        self.sorted.binary_search(id).ok()
    }

    /// The node before `id` (itself when alone).
    pub fn predecessor(&self, id: &Id) -> Option<Id> {
        let at = self.position(id)?;
        let n = self.sorted.len();
        Some(self.sorted[(at + n - 1) % n])
    }

    /// The next min(r, N-1) nodes after `id`.
    pub fn successors(&self, id: &Id, r: usize) -> Vec<Id> {
        let Some(at) = self.position(id) else {
            return Vec::new();
        };
        let n = self.sorted.len();
        (1..=r.min(n - 1))
            .map(|k| self.sorted[(at + k) % n])
            .collect()
    }

    /// finger[i] of `id` for every i: successor(id + 2^i).
    pub fn fingers(&self, id: &Id) -> Vec<Id> {
        (0..M)
            .filter_map(|i| self.successor(&id.finger_start(i)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(x: u8) -> Id {
        let mut b = [0u8; 20];
        b[0] = x;
        Id(b)
    }

    #[test]
    fn small_ring() {
        let ring = IdealRing::new([id(30), id(10), id(20)]);
        assert_eq!(ring.successor(&id(15)), Some(id(20)));
        assert_eq!(ring.successor(&id(20)), Some(id(20)));
        assert_eq!(ring.successor(&id(31)), Some(id(10)));
        assert_eq!(ring.predecessor(&id(10)), Some(id(30)));
        assert_eq!(ring.successors(&id(30), 5), vec![id(10), id(20)]);
        assert_eq!(ring.fingers(&id(10))[159], id(10));
    }
}
