//! The sans-IO replica core: every decision that keeps, takes, drops or picks a copy of a file,
//! as plain functions of what the node knows. No tokio, no libp2p, no disk, no clock: the
//! drivers (`files::*` on a live node) pass in the records they have already verified
//! (signatures are checked where the bytes arrive, in `records`), the node's view of the ring,
//! and `now`, and carry out what comes back.
//!
//! The rule behind every function here: nothing is deleted, replaced or blocked on another
//! node's word alone. A copy goes only when its uploader signed its removal or a newer
//! version, or when every node that should hold the key has *proved* it holds the bytes.

use std::collections::BTreeMap;

use crate::chord::Id;
use crate::records::{check_time, FileMeta, Hash, Tombstone};

pub mod plan;

/// Bytes a holder hashes to answer a proof challenge: small enough to answer often, large
/// enough that answering without the bytes means guessing.
pub const PROOF_BYTES: u64 = 64 * 1024;

/// A copy offered to this node (an upload, or a copy another member passes on).
#[derive(Clone, Copy, Debug)]
pub struct Offer<'a> {
    pub uploader: &'a str,
    pub created: u64,
    /// Known for copies of stored files; unknown (until the trailer) for uploads.
    pub hash: Option<&'a Hash>,
    /// Sent by its uploader itself (not passed on by another member).
    pub direct: bool,
}

/// What to do with an offered copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Take the bytes.
    Accept,
    /// This very version is already here.
    Identical,
    /// The uploader removed this name after this version was made (a proof to pass back).
    Removed(Box<Tombstone>),
    Refuse(String),
}

/// Whether to take `offer` for a key where this node holds `held` and knows `tombstone`.
/// Called before the bytes move, and again at commit (the name may have been taken meanwhile).
pub fn admit(
    offer: Offer<'_>,
    held: Option<&FileMeta>,
    tombstone: Option<&Tombstone>,
    now: u64,
) -> Admit {
    if let Err(e) = check_time(offer.created, now) {
        return Admit::Refuse(e.to_string());
    }
    if let Some(held) = held {
        if held.uploader != offer.uploader {
            return Admit::Refuse(format!(
                "the name belongs to another peer ({})",
                held.uploader
            ));
        }
        if offer.hash == Some(&held.hash) && offer.created == held.created {
            return Admit::Identical;
        }
        if !offer.direct && offer.created <= held.created {
            return Admit::Refuse("an equal or newer version is here".into());
        }
    }
    match tombstone {
        // The uploader's own fresh put lives whatever its clock said before; a copy passed on
        // by others must be newer than the removal.
        Some(stone)
            if !offer.direct
                && stone.removal.uploader == offer.uploader
                && offer.created <= stone.removal.at =>
        {
            Admit::Removed(Box::new(stone.clone()))
        }
        _ => Admit::Accept,
    }
}

/// What one holder said about a key when asked (`Stat`), after its records were verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Said {
    Holds(FileMeta),
    Removed(Tombstone),
    Nothing,
}

/// Which version a get should fetch, and from whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Fetch `version` from these holders (indices into the answers), best first.
    Fetch {
        version: FileMeta,
        sources: Vec<usize>,
    },
    /// Its uploader removed the name.
    Removed,
    NotFound,
}

/// Picks the version to fetch from the holders' answers (the owner's first). The uploader
/// vouched for by most holders wins (so one hostile holder cannot substitute its own signed
/// file for a name), ties going to the earliest answer; of that uploader's versions the newest
/// wins (so nobody can roll a file back), unless a removal of the same uploader covers it.
pub fn choose(answers: &[Said]) -> Choice {
    // uploader -> (holders vouching, first index)
    let mut vouched: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (i, said) in answers.iter().enumerate() {
        let uploader = match said {
            Said::Holds(meta) => meta.uploader.as_str(),
            Said::Removed(stone) => stone.removal.uploader.as_str(),
            Said::Nothing => continue,
        };
        let entry = vouched.entry(uploader).or_insert((0, i));
        entry.0 += 1;
    }
    let Some((&uploader, _)) = vouched
        .iter()
        .max_by(|a, b| a.1 .0.cmp(&b.1 .0).then(b.1 .1.cmp(&a.1 .1)))
    else {
        return Choice::NotFound;
    };
    let newest = answers
        .iter()
        .filter_map(|s| match s {
            Said::Holds(m) if m.uploader == uploader => Some(m),
            _ => None,
        })
        .max_by_key(|m| m.created);
    let removed_at = answers
        .iter()
        .filter_map(|s| match s {
            Said::Removed(t) if t.removal.uploader == uploader => Some(t.removal.at),
            _ => None,
        })
        .max();
    let Some(version) = newest else {
        return Choice::Removed;
    };
    if removed_at.is_some_and(|at| at >= version.created) {
        return Choice::Removed;
    }
    let sources = answers
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!(s, Said::Holds(m) if same_version(m, version)))
        .map(|(i, _)| i)
        .collect();
    Choice::Fetch {
        version: version.clone(),
        sources,
    }
}

/// The same signed version (roles aside).
pub fn same_version(a: &FileMeta, b: &FileMeta) -> bool {
    a.name == b.name
        && a.uploader == b.uploader
        && a.created == b.created
        && a.size == b.size
        && a.hash == b.hash
}

/// What a node that should hold a key showed when challenged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shown {
    /// It answered the challenge over the bytes of this very version.
    Proved,
    /// It holds a newer version of the same uploader, signed.
    Newer,
    /// Anything else: no answer, a wrong proof, another uploader, an older version.
    Not,
}

/// A surplus copy (this node is not among the `replicas` nodes that should hold its key) may
/// go only when each of those nodes has shown it holds this version or a newer one. One
/// node's say-so — an owner that "confirms" nothing, a lookup that names another owner — never
/// deletes a copy.
pub fn may_drop_surplus(shown: &[Shown], replicas: usize) -> bool {
    replicas > 0 && shown.len() >= replicas && shown.iter().all(|s| *s != Shown::Not)
}

/// What a challenger learns from a holder's answer about `mine`: the holder's version (its
/// signature already checked), whether its proof matched the one computed over `mine`, and
/// whether the holder keeps the copy as one of the key's holders (see [`keeps`]). A holder
/// whose own copy is surplus does not count: two surplus holders would otherwise vouch for
/// each other and both let their copies go.
pub fn shown(
    mine: &FileMeta,
    theirs: Option<&FileMeta>,
    proof_matches: bool,
    keeps: bool,
) -> Shown {
    match theirs {
        _ if !keeps => Shown::Not,
        Some(t) if same_version(t, mine) && proof_matches => Shown::Proved,
        Some(t) if t.uploader == mine.uploader && t.created > mine.created => Shown::Newer,
        _ => Shown::Not,
    }
}

/// Whether a node keeps its copy of a key as one of its holders, by its own lights: it owns
/// the key, or the key's owner confirmed the copy lately (its inventory listed it).
pub fn keeps(owns_key: bool, confirmed_lately: bool) -> bool {
    owns_key || confirmed_lately
}

/// The byte range `[offset, offset + len)` a challenge with `nonce` asks about in a file of
/// `size` bytes: chosen by the challenger's random nonce, so it cannot be precomputed.
pub fn proof_range(nonce: &[u8; 32], key: &Id, size: u64) -> (u64, u64) {
    let mut h = blake3::Hasher::new();
    h.update(nonce);
    h.update(&key.0);
    let digest = h.finalize();
    let mut word = [0u8; 8];
    word.copy_from_slice(&digest.as_bytes()[..8]);
    let span = size.saturating_sub(PROOF_BYTES) + 1;
    let offset = u64::from_be_bytes(word) % span;
    (offset, PROOF_BYTES.min(size - offset.min(size)))
}

/// The answer to a challenge: a keyed hash of the range's bytes (and of the version, so a
/// proof for one version never passes for another).
pub fn proof(nonce: &[u8; 32], version_hash: &Hash, range: &[u8]) -> Hash {
    let mut h = blake3::Hasher::new_keyed(nonce);
    h.update(version_hash);
    h.update(range);
    *h.finalize().as_bytes()
}

/// Whether a key is this node's own: in (predecessor, me], or any key when alone.
pub fn owns(key: &Id, me: &Id, predecessor: Option<&Id>, alone: bool) -> bool {
    match predecessor {
        Some(p) => key.in_half_open(p, me),
        None => alone,
    }
}

/// The nodes that should hold a key: its owner and the owner's next `replicas - 1` successors
/// (as a lookup names them), without repeats.
pub fn responsible<T: Clone>(
    owner: T,
    backups: &[T],
    replicas: usize,
    id: impl Fn(&T) -> Id,
) -> Vec<T> {
    let mut out = vec![owner];
    for b in backups {
        if out.len() >= replicas {
            break;
        }
        if out.iter().all(|o| id(o) != id(b)) {
            out.push(b.clone());
        }
    }
    out.truncate(replicas.max(1));
    out
}

#[cfg(test)]
mod tests;
