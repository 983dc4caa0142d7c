//! Verified streaming: check a file named by its BLAKE3 hash one chunk group at a time.
//!
//! A file's name is `blake3::hash(bytes)`. Checking only that hash means a bad source is caught
//! after the whole file came in, and nobody can tell which part was wrong. BLAKE3 is a tree
//! hash, so the file can be cut into *groups* of [`GROUP_BYTES`] (2^[`GROUP_LOG`] chunks of
//! 1 KiB), each group hashed on its own to a 32-byte chaining value ([`Cv`]), and the CVs
//! merged into the very same root hash. The list of group CVs (the *outboard*, 32 bytes per
//! MiB) is checked once against the root; after that every group that arrives is checked on
//! its own against its CV. A bad source is caught within one group, and several sources can
//! serve disjoint groups at once.
//!
//! A file of one group (at most [`GROUP_BYTES`], the empty file included) has no outboard:
//! its root is not a merge of CVs but the root finalization of its only group, and a CV alone
//! cannot be turned into that root. Its outboard is the empty list and its single group is
//! checked with `blake3::hash(bytes) == root` directly ([`Outboard::check_group`] does so).
//!
//! # Tree shape
//!
//! BLAKE3 splits a node over `len > 1024` bytes into a left subtree of the largest
//! power-of-two number of whole chunks that leaves at least one byte on the right
//! (`blake3::hazmat::left_subtree_len`), and a right subtree of the rest, recursively.
//! At group granularity this is the rule "left = the largest power of two of groups `< n`":
//!
//! Let a node cover `n ≥ 2` groups, all full except possibly the last, which holds
//! `1 ≤ r ≤ GROUP_BYTES` bytes, so `len = (n - 1)·G + r` with `G = GROUP_BYTES`.
//! The left length `L` is a power of two with `L < len`. As `len > (n - 1)·G ≥ G`, the
//! largest such `L` is at least `G`, and being a power of two at least `G = 2^20`, it is
//! `p·G` for a power of two `p`. Now `p·G < len` holds for `p ≤ n - 1` (since `r ≥ 1`) and
//! fails for `p ≥ n` (since `r ≤ G`). So `L = p·G` with `p` the largest power of two `≤ n - 1`,
//! i.e. `< n`. The right subtree covers groups `p..n`: again all full but its last, so the
//! same argument applies to it; the left one covers `p` full groups, a power of two, and
//! splits in halves down to single groups. Every group is therefore a whole subtree of the
//! file's tree, whose CV `blake3::hazmat` computes with the input offset `i·G` (allowed: the
//! offset has at least 20 trailing zero bits, so a subtree of up to `G` bytes may start
//! there). The unit tests check this against `blake3::hash` with one-chunk leaves for every
//! leaf count up to 40, and with real groups for files up to 9 groups.
//!
//! Sans-IO: bytes in, hashes out. No runtime, network, disk or clock.

use std::ops::Range;

use blake3::hazmat::{self, ChainingValue, HasherExt, Mode};
use blake3::{Hash, Hasher};

/// A BLAKE3 chunk: 1 KiB, fixed by BLAKE3.
pub const CHUNK_BYTES: u64 = 1024;
/// log2 of the chunks in a group: 2^10 chunks of 1 KiB make 1 MiB, small enough to hold in
/// memory and re-fetch from another source, large enough that the outboard is 1/32768 of
/// the file.
pub const GROUP_LOG: u32 = 10;
/// The bytes of a group: 1 MiB. Every group but a file's last is exactly this long.
pub const GROUP_BYTES: u64 = CHUNK_BYTES << GROUP_LOG;
/// The bytes of one chaining value in an encoded outboard.
pub const CV_BYTES: usize = 32;

/// The BLAKE3 chaining value of a group, or of a subtree of groups: 32 bytes, never a root.
pub type Cv = ChainingValue;

/// The groups of a file of `size` bytes: `max(1, ceil(size / GROUP_BYTES))`. The empty file
/// has one, empty, group.
pub fn groups(size: u64) -> u64 {
    size.div_ceil(GROUP_BYTES).max(1)
}

/// The CVs in the outboard of a file of `size` bytes: one per group, or none when the file is
/// a single group (its data is checked against the root itself).
pub fn outboard_len(size: u64) -> u64 {
    match groups(size) {
        1 => 0,
        n => n,
    }
}

/// The bytes of group `index` in a file of `size` bytes, or `None` past the last group.
/// The empty file's one group is `0..0`.
pub fn group_span(index: u64, size: u64) -> Option<Range<u64>> {
    if index >= groups(size) {
        return None;
    }
    let start = index * GROUP_BYTES;
    Some(start..size.min(start.saturating_add(GROUP_BYTES)))
}

/// The groups that bytes `start..end` of a file of `size` bytes touch. The range is clamped to
/// the file; an empty (clamped) range touches no group and gives an empty range of groups.
pub fn group_range(start: u64, end: u64, size: u64) -> Range<u64> {
    let end = end.min(size);
    if start >= end {
        let at = (start / GROUP_BYTES).min(groups(size));
        return at..at;
    }
    start / GROUP_BYTES..(end - 1) / GROUP_BYTES + 1
}

/// The CV of group `index` whose bytes are `bytes`, to compare with the outboard's entry.
/// The caller reads exactly the group's length ([`group_span`]) before comparing, so a short
/// group cannot pass for the file's last; [`Outboard::check_group`] does both.
///
/// Group 0 of a one-group file has a CV too, but it says nothing about the root: such a file
/// is checked with `blake3::hash`.
///
/// # Panics
///
/// If `bytes` is empty (only the empty file's group is, and it has no CV), longer than
/// [`GROUP_BYTES`], or the group would end past 2^64 bytes (`index ≥ 2^44`: past any file).
pub fn group_cv(index: u64, bytes: &[u8]) -> Cv {
    assert!(!bytes.is_empty(), "an empty group has no CV");
    assert!(
        bytes.len() as u64 <= GROUP_BYTES,
        "a group holds at most 1 MiB"
    );
    let offset = index
        .checked_mul(GROUP_BYTES)
        .filter(|o| o.checked_add(bytes.len() as u64).is_some())
        .expect("a group index within a u64 file");
    Hasher::new()
        .set_input_offset(offset)
        .update(bytes)
        .finalize_non_root()
}

/// The root hash (`blake3::hash` of the file) of a file of `size` bytes from its outboard,
/// merged in BLAKE3's tree shape. `None` when the list is not the outboard length for `size`,
/// or the file is one group (whose root is no merge: hash its data).
pub fn root_of(cvs: &[Cv], size: u64) -> Option<[u8; 32]> {
    if outboard_len(size) == 0 || cvs.len() as u64 != outboard_len(size) {
        return None;
    }
    root_from(cvs).map(|root| *root.as_bytes())
}

/// Whether `cvs` is the outboard of a file of `size` bytes named `root`: the right length,
/// merging to `root`. A one-group file's outboard is the empty list, which this accepts:
/// there is nothing to check before its data, which is checked against `root` itself.
pub fn verify_outboard(cvs: &[Cv], size: u64, root: &[u8; 32]) -> bool {
    if outboard_len(size) == 0 {
        cvs.is_empty()
    } else {
        cvs.len() as u64 == outboard_len(size) && root_from(cvs).is_some_and(|r| r == *root)
    }
}

/// An outboard as bytes: the CVs one after the other, 32 bytes each.
pub fn encode_outboard(cvs: &[Cv]) -> Vec<u8> {
    cvs.concat()
}

/// The CVs of an encoded outboard for a file of `size` bytes, or `None` when `bytes` is not
/// exactly [`outboard_len`]`(size)` CVs long. This checks the length only: see
/// [`verify_outboard`] or [`Outboard::from_bytes`].
pub fn decode_outboard(bytes: &[u8], size: u64) -> Option<Vec<Cv>> {
    let want = usize::try_from(outboard_len(size)).ok()?;
    if bytes.len() != want.checked_mul(CV_BYTES)? {
        return None;
    }
    Some(
        bytes
            .chunks_exact(CV_BYTES)
            .map(|cv| cv.try_into().expect("chunks of CV_BYTES"))
            .collect(),
    )
}

/// Hashes a file as it streams by, in slices of any size, into its root and its outboard.
///
/// Group `i` is known complete only once a byte of group `i + 1` arrives (a file may end
/// exactly on a group boundary), so [`completed`](Self::completed) lags by one group and
/// [`finish`](Self::finish) adds the last, possibly partial, group.
#[derive(Clone, Debug)]
pub struct GroupHasher {
    /// The group being filled; its input offset set to where it starts.
    current: Hasher,
    /// Bytes in `current`.
    filled: u64,
    /// CVs of the groups before `current`.
    cvs: Vec<Cv>,
}

impl Default for GroupHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl GroupHasher {
    /// A hasher at the start of a file.
    pub fn new() -> Self {
        GroupHasher {
            current: Hasher::new(),
            filled: 0,
            cvs: Vec::new(),
        }
    }

    /// Feeds the next bytes of the file.
    pub fn update(&mut self, mut bytes: &[u8]) -> &mut Self {
        while !bytes.is_empty() {
            if self.filled == GROUP_BYTES {
                self.cvs.push(self.current.finalize_non_root());
                let offset = self.cvs.len() as u64 * GROUP_BYTES;
                self.current = Hasher::new();
                self.current.set_input_offset(offset);
                self.filled = 0;
            }
            let room = (GROUP_BYTES - self.filled) as usize;
            let (now, rest) = bytes.split_at(bytes.len().min(room));
            self.current.update(now);
            self.filled += now.len() as u64;
            bytes = rest;
        }
        self
    }

    /// The CVs of the groups known complete so far, group 0 first.
    pub fn completed(&self) -> &[Cv] {
        &self.cvs
    }

    /// The bytes fed so far.
    pub fn size(&self) -> u64 {
        self.cvs.len() as u64 * GROUP_BYTES + self.filled
    }

    /// The file's root hash and outboard, last group included. A one-group file's root is
    /// the root finalization of its group (equal to `blake3::hash`), and its outboard is
    /// empty: compare [`Outboard::root`] with the expected hash to check the data.
    pub fn finish(self) -> Outboard {
        let size = self.size();
        if self.cvs.is_empty() {
            return Outboard {
                size,
                root: *self.current.finalize().as_bytes(),
                cvs: Vec::new(),
            };
        }
        let mut cvs = self.cvs;
        // Not empty: a group is opened only for a byte that goes in it.
        cvs.push(self.current.finalize_non_root());
        let root = *root_from(&cvs).expect("two groups or more").as_bytes();
        Outboard { size, root, cvs }
    }
}

/// A file's size, root hash and outboard, known to agree: built by [`GroupHasher::finish`]
/// from the data, or checked by [`Outboard::new`] against an expected root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outboard {
    size: u64,
    root: [u8; 32],
    cvs: Vec<Cv>,
}

impl Outboard {
    /// The outboard `cvs` of a file of `size` bytes named `root`, if it verifies
    /// ([`verify_outboard`]).
    pub fn new(cvs: Vec<Cv>, size: u64, root: [u8; 32]) -> Option<Self> {
        verify_outboard(&cvs, size, &root).then_some(Outboard { size, root, cvs })
    }

    /// An encoded outboard ([`encode_outboard`]) of a file of `size` bytes named `root`, if
    /// its length is right and it verifies.
    pub fn from_bytes(bytes: &[u8], size: u64, root: [u8; 32]) -> Option<Self> {
        Self::new(decode_outboard(bytes, size)?, size, root)
    }

    /// The outboard as bytes, for [`Outboard::from_bytes`].
    pub fn to_bytes(&self) -> Vec<u8> {
        encode_outboard(&self.cvs)
    }

    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The file's BLAKE3 hash.
    pub fn root(&self) -> [u8; 32] {
        self.root
    }

    /// The group CVs; empty for a one-group file.
    pub fn cvs(&self) -> &[Cv] {
        &self.cvs
    }

    /// The file's groups.
    pub fn groups(&self) -> u64 {
        groups(self.size)
    }

    /// Whether `bytes` are group `index` of the file: its exact length and CV, or for a
    /// one-group file the whole file with the root hash.
    pub fn check_group(&self, index: u64, bytes: &[u8]) -> bool {
        let Some(span) = group_span(index, self.size) else {
            return false;
        };
        if bytes.len() as u64 != span.end - span.start {
            return false;
        }
        if self.cvs.is_empty() {
            return blake3::hash(bytes) == self.root;
        }
        group_cv(index, bytes) == self.cvs[index as usize]
    }

    /// The proof for groups `first..=last` ([`proof`]); `None` for a one-group file (its
    /// proof is empty: [`verify_range`] needs none) or a range out of the file.
    pub fn proof(&self, first: u64, last: u64) -> Option<Vec<Cv>> {
        proof(&self.cvs, first, last)
    }
}

/// The leaves in the left subtree of a node over `n ≥ 2` leaves: the largest power of two
/// below `n` (see the module docs for why groups follow BLAKE3's chunk rule).
fn left_leaves(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (n - 1).ilog2()
}

/// The non-root CV of the subtree over `cvs` (at least one).
fn subtree_cv(cvs: &[Cv]) -> Cv {
    match cvs {
        [] => panic!("an empty subtree has no CV"),
        [only] => *only,
        _ => {
            let (left, right) = cvs.split_at(left_leaves(cvs.len()));
            hazmat::merge_subtrees_non_root(&subtree_cv(left), &subtree_cv(right), Mode::Hash)
        }
    }
}

/// The root hash of the tree over `cvs` leaves, `None` under two (a lone leaf is no root).
fn root_from(cvs: &[Cv]) -> Option<Hash> {
    if cvs.len() < 2 {
        return None;
    }
    let (left, right) = cvs.split_at(left_leaves(cvs.len()));
    Some(hazmat::merge_subtrees_root(
        &subtree_cv(left),
        &subtree_cv(right),
        Mode::Hash,
    ))
}

/// The sibling CVs that, with the CVs of groups `first..=last`, give back the root: the CV of
/// every maximal subtree outside the range, left to right in the tree's depth-first order
/// (at most two per level). `None` for a one-group file (no outboard) or a range that is
/// empty or out of the file. Costs a merge per group outside the range.
pub fn proof(cvs: &[Cv], first: u64, last: u64) -> Option<Vec<Cv>> {
    let n = cvs.len();
    if n < 2 || first > last || last >= n as u64 {
        return None;
    }
    let range = first as usize..last as usize + 1;
    let mut out = Vec::new();
    collect_proof(cvs, 0, &range, &mut out);
    Some(out)
}

/// Adds to `out` the proof for `range` within the subtree over `cvs`, whose first leaf is
/// leaf `lo` of the file.
fn collect_proof(cvs: &[Cv], lo: usize, range: &Range<usize>, out: &mut Vec<Cv>) {
    let hi = lo + cvs.len();
    if hi <= range.start || lo >= range.end {
        out.push(subtree_cv(cvs));
    } else if range.start <= lo && hi <= range.end {
        // Inside the range: the verifier computes it from the data.
    } else {
        let mid = left_leaves(cvs.len());
        collect_proof(&cvs[..mid], lo, range, out);
        collect_proof(&cvs[mid..], lo + mid, range, out);
    }
}

/// The root from the CVs `data` of leaves `first..first + data.len()` of a tree over `n ≥ 2`
/// leaves and the proof of them; `None` if the proof is too short or too long.
fn root_from_proof(n: usize, first: usize, data: &[Cv], proof: &[Cv]) -> Option<Hash> {
    if n < 2 || data.is_empty() || first.checked_add(data.len())? > n {
        return None;
    }
    let mut proof = proof.iter();
    let mid = left_leaves(n);
    let left = rebuild(0, mid, first, data, &mut proof)?;
    let right = rebuild(mid, n, first, data, &mut proof)?;
    if proof.next().is_some() {
        return None;
    }
    Some(hazmat::merge_subtrees_root(&left, &right, Mode::Hash))
}

/// The CV of the subtree over leaves `lo..hi`, from `data` (leaves `first..`) where they
/// cover it and from the next proof entries where they do not.
fn rebuild(
    lo: usize,
    hi: usize,
    first: usize,
    data: &[Cv],
    proof: &mut std::slice::Iter<'_, Cv>,
) -> Option<Cv> {
    let end = first + data.len();
    if hi <= first || lo >= end {
        proof.next().copied()
    } else if first <= lo && hi <= end {
        Some(subtree_cv(&data[lo - first..hi - first]))
    } else {
        // Partly covered, so at least two leaves.
        let mid = lo + left_leaves(hi - lo);
        let left = rebuild(lo, mid, first, data, proof)?;
        let right = rebuild(mid, hi, first, data, proof)?;
        Some(hazmat::merge_subtrees_non_root(&left, &right, Mode::Hash))
    }
}

/// Whether `group_cvs`, the CVs of groups `first..first + group_cvs.len()` of a file of `size`
/// bytes, and `proof` ([`proof`]) merge to `root`. Always false for a one-group file, whose
/// root no CV gives: use [`verify_range`].
pub fn verify_proof(
    first: u64,
    group_cvs: &[Cv],
    proof: &[Cv],
    size: u64,
    root: &[u8; 32],
) -> bool {
    let (Ok(n), Ok(first)) = (usize::try_from(groups(size)), usize::try_from(first)) else {
        return false;
    };
    root_from_proof(n, first, group_cvs, proof).is_some_and(|r| r == *root)
}

/// Whether `bytes` are exactly groups `first..` (one or more whole groups, the file's last
/// one as long as it is) of a file of `size` bytes named `root`, given the `proof` for them.
/// For a one-group file the proof is empty and `bytes` is the whole file.
pub fn verify_range(first: u64, bytes: &[u8], proof: &[Cv], size: u64, root: &[u8; 32]) -> bool {
    let Some(span) = group_span(first, size) else {
        return false;
    };
    if outboard_len(size) == 0 {
        return proof.is_empty() && bytes.len() as u64 == size && blake3::hash(bytes) == *root;
    }
    let end = span.start.saturating_add(bytes.len() as u64);
    // Whole groups: ends on a group boundary or at the end of the file.
    if bytes.is_empty() || end > size || (end % GROUP_BYTES != 0 && end != size) {
        return false;
    }
    let cvs: Vec<Cv> = bytes
        .chunks(GROUP_BYTES as usize)
        .zip(first..)
        .map(|(group, index)| group_cv(index, group))
        .collect();
    verify_proof(first, &cvs, proof, size, root)
}

/// Pieces of a group: 16 KiB (2^4 chunks). A read of a byte range fetches whole pieces at its
/// two ends instead of whole groups, checked against the piece CVs of those groups (which in
/// turn merge to the groups' CVs in the outboard).
pub const PIECE_LOG: u32 = 4;
pub const PIECE_BYTES: u64 = CHUNK_BYTES << PIECE_LOG;

/// The CVs of the pieces of group `index`, whose bytes are `bytes` (the whole group: 1 to
/// [`GROUP_BYTES`] bytes); `None` for bytes no group can hold.
pub fn piece_cvs(index: u64, bytes: &[u8]) -> Option<Vec<Cv>> {
    if bytes.is_empty() || bytes.len() as u64 > GROUP_BYTES {
        return None;
    }
    let base = index.checked_mul(GROUP_BYTES)?;
    base.checked_add(GROUP_BYTES)?;
    let cvs = bytes
        .chunks(PIECE_BYTES as usize)
        .enumerate()
        .map(|(i, piece)| {
            Hasher::new()
                .set_input_offset(base + i as u64 * PIECE_BYTES)
                .update(piece)
                .finalize_non_root()
        })
        .collect();
    Some(cvs)
}

/// The CV of piece `piece` of group `group` whose bytes are `bytes` (1 to [`PIECE_BYTES`]);
/// `None` for bytes no piece can hold.
pub fn piece_cv(group: u64, piece: u64, bytes: &[u8]) -> Option<Cv> {
    if bytes.is_empty() || bytes.len() as u64 > PIECE_BYTES || piece >= GROUP_BYTES / PIECE_BYTES {
        return None;
    }
    let offset = group
        .checked_mul(GROUP_BYTES)?
        .checked_add(piece * PIECE_BYTES)?;
    Some(
        Hasher::new()
            .set_input_offset(offset)
            .update(bytes)
            .finalize_non_root(),
    )
}

/// Whether `pieces` are the piece CVs of a group whose CV is `group` (of `len` bytes): the
/// right count, merging (in BLAKE3's shape, as groups do into the root) to that CV.
pub fn pieces_match(pieces: &[Cv], len: u64, group: &Cv) -> bool {
    let count = len.div_ceil(PIECE_BYTES).max(1);
    !pieces.is_empty() && pieces.len() as u64 == count && subtree_cv(pieces) == *group
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    const G: u64 = GROUP_BYTES;

    /// Test bytes, the same for every test: a cheap mix so no two chunks are alike.
    fn data() -> &'static [u8] {
        static DATA: OnceLock<Vec<u8>> = OnceLock::new();
        DATA.get_or_init(|| {
            (0..9 * G as u32 + 4096)
                .map(|i| (i.wrapping_mul(0x9E37_79B1) >> 24) as u8)
                .collect()
        })
    }

    /// The sizes the brief names: around chunks, around 1 group, around 2, 3, 5, 7, 8, 9.
    fn sizes() -> Vec<u64> {
        let mut out = vec![0, 1, 1023, 1024, 1025, 3 * 1024 + 7, G - 1, G, G + 1];
        for k in [2, 3, 5, 7, 8, 9] {
            out.extend([k * G - 3, k * G, k * G + 1]);
        }
        out
    }

    /// `blake3::hash` as the crate keeps it.
    fn hash(bytes: &[u8]) -> [u8; 32] {
        *blake3::hash(bytes).as_bytes()
    }

    fn outboard(bytes: &[u8]) -> Outboard {
        let mut hasher = GroupHasher::new();
        hasher.update(bytes);
        hasher.finish()
    }

    #[test]
    fn groups_and_spans() {
        assert_eq!(GROUP_BYTES, 1 << 20);
        assert_eq!(groups(0), 1);
        assert_eq!(groups(1), 1);
        assert_eq!(groups(G), 1);
        assert_eq!(groups(G + 1), 2);
        assert_eq!(groups(u64::MAX), u64::MAX.div_ceil(G));
        assert_eq!(outboard_len(G), 0);
        assert_eq!(outboard_len(2 * G), 2);
        assert_eq!(group_span(0, 0), Some(0..0));
        assert_eq!(group_span(1, 0), None);
        assert_eq!(group_span(1, 2 * G + 5), Some(G..2 * G));
        assert_eq!(group_span(2, 2 * G + 5), Some(2 * G..2 * G + 5));
        assert_eq!(group_span(3, 2 * G + 5), None);
        let last = u64::MAX / G;
        assert_eq!(group_span(last, u64::MAX), Some(last * G..u64::MAX));
    }

    #[test]
    fn group_ranges() {
        let size = 3 * G + 10;
        assert_eq!(group_range(0, 1, size), 0..1);
        assert_eq!(group_range(0, G, size), 0..1);
        assert_eq!(group_range(0, G + 1, size), 0..2);
        assert_eq!(group_range(G - 1, G + 1, size), 0..2);
        assert_eq!(group_range(G, 2 * G, size), 1..2);
        assert_eq!(group_range(3 * G, u64::MAX, size), 3..4);
        assert_eq!(group_range(0, u64::MAX, size), 0..4);
        // Empty ranges touch nothing.
        assert!(group_range(5, 5, size).is_empty());
        assert!(group_range(size, size + 9, size).is_empty());
        assert!(group_range(10 * G, 11 * G, size).is_empty());
        assert!(group_range(0, 10, 0).is_empty());
        assert_eq!(group_range(0, 10, 5), 0..1);
    }

    #[test]
    fn the_root_from_the_outboard_is_the_blake3_hash() {
        for size in sizes() {
            let bytes = &data()[..size as usize];
            let out = outboard(bytes);
            assert_eq!(out.root(), hash(bytes), "size {size}");
            assert_eq!(out.size(), size);
            assert_eq!(out.cvs().len() as u64, outboard_len(size), "size {size}");
            if outboard_len(size) > 0 {
                assert_eq!(root_of(out.cvs(), size), Some(hash(bytes)));
            } else {
                assert_eq!(root_of(out.cvs(), size), None);
            }
            assert!(verify_outboard(out.cvs(), size, &hash(bytes)));
        }
    }

    #[test]
    fn odd_slices_give_the_same_outboard() {
        let steps = [
            1usize,
            7,
            1023,
            1024,
            1025,
            4096 + 3,
            65_537,
            G as usize + 1,
            13,
        ];
        for size in sizes() {
            let bytes = &data()[..size as usize];
            let whole = outboard(bytes);
            let mut hasher = GroupHasher::new();
            let mut at = 0;
            for step in steps.iter().cycle() {
                if at == bytes.len() {
                    break;
                }
                let next = bytes.len().min(at + step);
                hasher.update(&bytes[at..next]).update(&[]);
                at = next;
                // Completed groups are whole groups only, and lag the input.
                assert!(hasher.completed().len() as u64 * G < hasher.size().max(1));
                assert_eq!(hasher.completed(), &whole.cvs()[..hasher.completed().len()]);
            }
            assert_eq!(hasher.finish(), whole, "size {size}");
        }
    }

    #[test]
    fn each_group_cv_matches_and_checks() {
        for size in sizes() {
            let bytes = &data()[..size as usize];
            let out = outboard(bytes);
            for index in 0..groups(size) {
                let span = group_span(index, size).unwrap();
                let group = &bytes[span.start as usize..span.end as usize];
                if outboard_len(size) > 0 {
                    assert_eq!(group_cv(index, group), out.cvs()[index as usize]);
                }
                assert!(out.check_group(index, group), "size {size} group {index}");
                // The right bytes at the wrong place, or cut short, do not pass.
                assert!(!out.check_group(index + 1, group));
                if !group.is_empty() {
                    assert!(!out.check_group(index, &group[..group.len() - 1]));
                }
            }
        }
    }

    #[test]
    fn a_flipped_byte_changes_exactly_its_groups_cv() {
        for size in [G + 1, 3 * G - 3, 5 * G, 9 * G + 1] {
            let good = outboard(&data()[..size as usize]);
            for at in [0, G - 1, G, 2 * G + 12_345, size - 1] {
                if at >= size {
                    continue;
                }
                let mut bytes = data()[..size as usize].to_vec();
                bytes[at as usize] ^= 0x20;
                let bad = outboard(&bytes);
                let hit = at / G;
                for (index, (b, g)) in bad.cvs().iter().zip(good.cvs()).enumerate() {
                    assert_eq!(b == g, index as u64 != hit, "size {size} byte {at}");
                }
                let span = group_span(hit, size).unwrap();
                assert!(!good.check_group(hit, &bytes[span.start as usize..span.end as usize]));
                assert_ne!(bad.root(), good.root());
            }
        }
    }

    #[test]
    fn one_group_files_are_checked_by_their_hash() {
        for size in [0, 1, 1024, 1025, G - 1, G] {
            let bytes = &data()[..size as usize];
            let root = hash(bytes);
            let out = outboard(bytes);
            assert!(out.cvs().is_empty());
            assert_eq!(Outboard::new(Vec::new(), size, root), Some(out.clone()));
            assert!(!verify_outboard(&[[0; 32]], size, &root));
            assert!(out.check_group(0, bytes));
            assert!(!out.check_group(1, &[]));
            if size > 0 {
                let mut flipped = bytes.to_vec();
                flipped[size as usize / 2] ^= 1;
                assert!(!out.check_group(0, &flipped));
                // Its lone CV is well defined but is no root.
                assert_ne!(group_cv(0, bytes), root);
            }
            assert_eq!(out.proof(0, 0), None);
            assert!(verify_range(0, bytes, &[], size, &root));
            assert!(!verify_range(0, bytes, &[[0; 32]], size, &root));
            assert!(!verify_proof(0, &[], &[], size, &root));
        }
        // The last group a u64 file can have still has a CV.
        group_cv(u64::MAX / G, &[1]);
    }

    #[test]
    #[should_panic(expected = "empty group")]
    fn an_empty_group_has_no_cv() {
        group_cv(0, &[]);
    }

    #[test]
    #[should_panic(expected = "at most 1 MiB")]
    fn a_group_holds_at_most_a_mib() {
        group_cv(1, &vec![0; G as usize + 1]);
    }

    #[test]
    #[should_panic(expected = "within a u64 file")]
    fn a_group_index_past_any_file_has_no_cv() {
        group_cv(u64::MAX / G + 1, &[1]);
    }

    #[test]
    fn verify_outboard_rejects_wrong_lists() {
        let size = 5 * G - 3;
        let bytes = &data()[..size as usize];
        let root = hash(bytes);
        let cvs = outboard(bytes).cvs().to_vec();
        assert!(verify_outboard(&cvs, size, &root));
        assert!(!verify_outboard(&cvs[..4], size, &root));
        assert!(!verify_outboard(
            &[cvs.clone(), vec![cvs[0]]].concat(),
            size,
            &root
        ));
        assert!(!verify_outboard(&[], size, &root));
        assert!(!verify_outboard(&cvs, size + G, &root));
        assert!(!verify_outboard(&cvs, size, &hash(b"another file")));
        let mut swapped = cvs.clone();
        swapped.swap(1, 2);
        assert!(!verify_outboard(&swapped, size, &root));
        for index in 0..cvs.len() {
            let mut bad = cvs.clone();
            bad[index][31] ^= 0x80;
            assert!(!verify_outboard(&bad, size, &root));
            assert!(Outboard::new(bad, size, root).is_none());
        }
    }

    #[test]
    fn outboard_bytes_round_trip_with_length_checks() {
        let size = 3 * G + 1;
        let bytes = &data()[..size as usize];
        let out = outboard(bytes);
        let encoded = out.to_bytes();
        assert_eq!(encoded.len(), 4 * CV_BYTES);
        assert_eq!(decode_outboard(&encoded, size).as_deref(), Some(out.cvs()));
        assert_eq!(
            Outboard::from_bytes(&encoded, size, out.root()),
            Some(out.clone())
        );
        assert_eq!(decode_outboard(&encoded[..encoded.len() - 1], size), None);
        assert_eq!(
            decode_outboard(&[encoded.clone(), vec![0]].concat(), size),
            None
        );
        assert_eq!(decode_outboard(&encoded[..3 * CV_BYTES], size), None);
        assert_eq!(decode_outboard(&encoded, 5 * G), None);
        assert_eq!(decode_outboard(&[], 0), Some(Vec::new()));
        assert_eq!(decode_outboard(&[], G), Some(Vec::new()));
        assert_eq!(decode_outboard(&encoded[..CV_BYTES], G), None);
        let mut bad = encoded.clone();
        bad[40] ^= 1;
        assert_eq!(Outboard::from_bytes(&bad, size, out.root()), None);
    }

    /// One-chunk leaves: the CVs of each 1 KiB chunk of `bytes`.
    fn chunk_cvs(bytes: &[u8]) -> Vec<Cv> {
        bytes
            .chunks(CHUNK_BYTES as usize)
            .enumerate()
            .map(|(i, chunk)| {
                Hasher::new()
                    .set_input_offset(i as u64 * CHUNK_BYTES)
                    .update(chunk)
                    .finalize_non_root()
            })
            .collect()
    }

    #[test]
    fn the_merge_shape_is_blake3s_for_every_leaf_count() {
        // The tree over leaves does not depend on how big a leaf is: with 1-chunk leaves
        // (and a partial last chunk) the merge must give blake3::hash for every count.
        for leaves in 2..=40usize {
            for short in [0, 1, 1023] {
                let bytes = &data()[..leaves * CHUNK_BYTES as usize - short];
                let cvs = chunk_cvs(bytes);
                assert_eq!(
                    root_from(&cvs),
                    Some(blake3::hash(bytes)),
                    "{leaves} leaves"
                );
            }
        }
        assert_eq!(left_leaves(2), 1);
        assert_eq!(left_leaves(3), 2);
        assert_eq!(left_leaves(4), 2);
        assert_eq!(left_leaves(5), 4);
        assert_eq!(left_leaves(9), 8);
        assert_eq!(left_leaves(1 << 40), 1 << 39);
        assert_eq!(left_leaves((1 << 40) + 1), 1 << 40);
    }

    #[test]
    fn proofs_rebuild_the_root_for_every_range() {
        for leaves in 2..=17usize {
            let bytes = &data()[..leaves * CHUNK_BYTES as usize - 5];
            let cvs = chunk_cvs(bytes);
            let root = blake3::hash(bytes);
            for first in 0..leaves {
                for last in first..leaves {
                    let p = proof(&cvs, first as u64, last as u64).unwrap();
                    assert!(p.len() <= 2 * (leaves.ilog2() as usize + 1));
                    let data = &cvs[first..=last];
                    assert_eq!(root_from_proof(leaves, first, data, &p), Some(root));
                    // A changed, missing or extra entry, or the wrong place, fails.
                    assert_eq!(
                        root_from_proof(leaves, first, data, &[p.clone(), vec![[0; 32]]].concat()),
                        None
                    );
                    if let Some((_, short)) = p.split_last() {
                        assert_eq!(root_from_proof(leaves, first, data, short), None);
                        let mut bad = p.clone();
                        bad[0][0] ^= 1;
                        assert_ne!(root_from_proof(leaves, first, data, &bad), Some(root));
                    }
                    if first < leaves - data.len() {
                        let moved = root_from_proof(leaves, first + 1, data, &p);
                        assert_ne!(moved, Some(root));
                    }
                }
            }
            assert_eq!(proof(&cvs, 1, 0), None);
            assert_eq!(proof(&cvs, 0, leaves as u64), None);
            assert_eq!(proof(&cvs, 0, leaves as u64 - 1), Some(Vec::new()));
        }
        assert_eq!(proof(&[[0; 32]], 0, 0), None);
    }

    #[test]
    fn ranges_of_groups_verify_with_their_proof() {
        let size = 9 * G + 1;
        let bytes = &data()[..size as usize];
        let out = outboard(bytes);
        let root = out.root();
        for (first, last) in [(0, 0), (3, 5), (8, 9), (9, 9), (0, 9), (4, 4)] {
            let p = out.proof(first, last).unwrap();
            let start = (first * G) as usize;
            let end = (((last + 1) * G).min(size)) as usize;
            let cvs = &out.cvs()[first as usize..=last as usize];
            assert!(verify_proof(first, cvs, &p, size, &root));
            assert!(verify_range(first, &bytes[start..end], &p, size, &root));
            // Not whole groups, or a flipped byte, fails.
            assert!(!verify_range(
                first,
                &bytes[start..end - 1],
                &p,
                size,
                &root
            ));
            assert!(!verify_range(
                first,
                &bytes[start + 1..end],
                &p,
                size,
                &root
            ));
            let mut bad = bytes[start..end].to_vec();
            let mid = bad.len() / 2;
            bad[mid] ^= 4;
            assert!(!verify_range(first, &bad, &p, size, &root));
        }
        assert!(!verify_range(10, &[], &[], size, &root));
        assert!(!verify_range(
            0,
            &[],
            &out.proof(0, 0).unwrap(),
            size,
            &root
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]

        #[test]
        fn random_sizes_and_slices_hash_to_blake3(
            size in 0..3 * G + 2048,
            steps in proptest::collection::vec(1usize..200_000, 1..8),
        ) {
            let bytes = &data()[..size as usize];
            let mut hasher = GroupHasher::new();
            let mut at = 0;
            for step in steps.iter().cycle() {
                if at == bytes.len() {
                    break;
                }
                let next = bytes.len().min(at + step);
                hasher.update(&bytes[at..next]);
                at = next;
            }
            let out = hasher.finish();
            prop_assert_eq!(out.root(), hash(bytes));
            prop_assert!(verify_outboard(out.cvs(), size, &hash(bytes)));
            prop_assert_eq!(out.cvs().len() as u64, outboard_len(size));
        }
    }

    #[test]
    fn pieces_merge_to_their_group_and_catch_a_flipped_byte() {
        let size = 2 * GROUP_BYTES + 5 * PIECE_BYTES + 100;
        let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        let mut hasher = GroupHasher::new();
        hasher.update(&data);
        let outboard = hasher.finish();
        for g in 0..groups(size) {
            let span = group_span(g, size).expect("group");
            let bytes = &data[span.start as usize..span.end as usize];
            let pieces = piece_cvs(g, bytes).expect("pieces");
            let len = span.end - span.start;
            assert!(
                pieces_match(&pieces, len, &outboard.cvs()[g as usize]),
                "group {g}"
            );
            for (i, piece) in bytes.chunks(PIECE_BYTES as usize).enumerate() {
                assert_eq!(piece_cv(g, i as u64, piece), Some(pieces[i]));
            }
            let mut bad = bytes.to_vec();
            let middle = bad.len() / 2;
            bad[middle] ^= 1;
            let bad_pieces = piece_cvs(g, &bad).expect("pieces");
            assert!(!pieces_match(&bad_pieces, len, &outboard.cvs()[g as usize]));
        }
    }
}
