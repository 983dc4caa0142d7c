//! What is said about files, and who may say it: the records that travel between nodes and sit
//! in every store. A version ([`FileMeta`]) and a removal ([`Removal`]) are statements signed by
//! the file's uploader; everything a node believes about a file that can delete, replace or
//! block a copy rests on one of them (docs/PROTOCOL.md, "Trust"). This module sits at the
//! bottom: `net` and `files` both use it, and it uses nothing of theirs.

use libp2p::identity::{Keypair, PublicKey};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use crate::chord::Id;

/// A BLAKE3 digest.
pub type Hash = [u8; 32];

pub fn hash_hex(hash: &Hash) -> String {
    hex::encode(hash)
}

/// How far ahead of a node's own clock a signed time may be: clocks disagree a little, but a
/// time far in the future would pin a version or block a name for good.
pub const MAX_SKEW_MS: u64 = 10 * 60 * 1000;

/// Domain separation: these bytes are never mistaken for anything else the key signs.
const VERSION_CONTEXT: &[u8] = b"chord-p2p file v1\0";
const REMOVAL_CONTEXT: &[u8] = b"chord-p2p removal v1\0";

/// Why this node holds a file (local bookkeeping; not part of what the uploader signs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The key lies in (predecessor, self]: this node answers for it and keeps the replicas.
    Owner,
    /// A copy kept for the owner.
    Replica,
}

/// One version of one file: the uploader's signed statement (name, size, hash, time) and why
/// this node keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    pub name: String,
    pub key: Id,
    pub size: u64,
    #[serde(with = "bytes")]
    pub hash: Hash,
    pub role: Role,
    /// Peer id (text) of whoever put the file: only they may replace or remove it.
    pub uploader: String,
    /// Unix milliseconds when its uploader put this version, by the uploader's clock: newer
    /// wins, and a removal only beats versions created at or before it.
    pub created: u64,
    /// The uploader's Ed25519 signature over [`Version::statement`].
    #[serde(with = "bytes", default)]
    pub signature: Vec<u8>,
}

impl FileMeta {
    /// A version of `name` by `key`'s owner, signed with it.
    pub fn signed(
        key: &Keypair,
        name: &str,
        size: u64,
        hash: Hash,
        created: u64,
        role: Role,
    ) -> FileMeta {
        let mut meta = FileMeta {
            name: name.into(),
            key: Id::hash(name.as_bytes()),
            size,
            hash,
            role,
            uploader: key.public().to_peer_id().to_string(),
            created,
            signature: Vec::new(),
        };
        meta.signature = meta.version().sign(key);
        meta
    }

    /// What an index keeps of this version in memory (see [`Held`]).
    pub fn held(&self) -> Held {
        Held {
            key: self.key,
            size: self.size,
            hash: self.hash,
            created: self.created,
            uploader: self.uploader.as_str().into(),
            role: self.role,
        }
    }

    /// This version as its uploader signs it.
    pub fn version(&self) -> Version<'_> {
        Version {
            name: &self.name,
            size: self.size,
            hash: &self.hash,
            created: self.created,
            uploader: &self.uploader,
        }
    }

    /// Checks what a peer sent about `name`: the right name and key, the uploader's signature,
    /// and a time not too far ahead of `now` (Unix ms).
    pub fn check(&self, name: &str, now: u64) -> Result<(), RecordError> {
        if self.name != name || self.key != Id::hash(name.as_bytes()) {
            return Err(RecordError::OtherName(self.name.clone()));
        }
        if !self.version().is_signed(&self.signature) {
            return Err(RecordError::Unsigned(name.into()));
        }
        check_time(self.created, now)
    }
}

/// A held version without its name and signature: what planning a repair round, answering an
/// inventory and accounting space need. A store keeps this in memory for every file (about
/// 150 bytes with the index around it) and reads the rest from disk when it is asked for; the
/// uploader's text is shared between the versions of one uploader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub key: Id,
    pub size: u64,
    pub hash: Hash,
    pub created: u64,
    pub uploader: std::sync::Arc<str>,
    pub role: Role,
}

/// One version of one file, as its uploader signs it.
pub struct Version<'a> {
    pub name: &'a str,
    pub size: u64,
    pub hash: &'a Hash,
    /// Unix milliseconds, by the uploader's clock.
    pub created: u64,
    /// The uploader's peer id, in text.
    pub uploader: &'a str,
}

impl Version<'_> {
    /// The signed bytes: context ‖ u64be(len(name)) ‖ name ‖ u64be(size) ‖ hash ‖
    /// u64be(created) ‖ uploader.
    fn statement(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(VERSION_CONTEXT.len() + self.name.len() + 96);
        out.extend_from_slice(VERSION_CONTEXT);
        out.extend_from_slice(&(self.name.len() as u64).to_be_bytes());
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(self.hash);
        out.extend_from_slice(&self.created.to_be_bytes());
        out.extend_from_slice(self.uploader.as_bytes());
        out
    }

    /// The uploader's signature of this version (empty if the key cannot sign).
    pub fn sign(&self, key: &Keypair) -> Vec<u8> {
        key.sign(&self.statement()).unwrap_or_default()
    }

    /// Whether `signature` is the uploader's for this version.
    pub fn is_signed(&self, signature: &[u8]) -> bool {
        verify(self.uploader, &self.statement(), signature)
    }
}

/// An uploader's signed word that a name is gone as of `at`: every node that holds a copy can
/// check it for itself, and copies made before `at` are not brought back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    pub name: String,
    /// Unix milliseconds, by the uploader's clock (the clock its versions' `created` use).
    pub at: u64,
    pub uploader: String,
    #[serde(with = "bytes")]
    pub signature: Vec<u8>,
}

impl Removal {
    /// The removal of `name` as of `at`, signed by `key`'s owner (the uploader).
    pub fn sign(key: &Keypair, name: &str, at: u64) -> Removal {
        let uploader = key.public().to_peer_id().to_string();
        let statement = removal_statement(name, at, &uploader);
        Removal {
            name: name.into(),
            at,
            signature: key.sign(&statement).unwrap_or_default(),
            uploader,
        }
    }

    /// Whether it carries its uploader's signature.
    pub fn is_signed(&self) -> bool {
        let statement = removal_statement(&self.name, self.at, &self.uploader);
        verify(&self.uploader, &statement, &self.signature)
    }

    /// Checks a removal from a peer: signed by its uploader and not dated too far ahead.
    pub fn check(&self, now: u64) -> Result<(), RecordError> {
        if !self.is_signed() {
            return Err(RecordError::UnsignedRemoval(self.name.clone()));
        }
        check_time(self.at, now)
    }

    /// Whether it removes `version`: the same name and uploader, made at or before it.
    pub fn removes(&self, version: &FileMeta) -> bool {
        self.name == version.name && self.uploader == version.uploader && version.created <= self.at
    }

    /// The same for a held version known by key (the key is the hash of the name).
    pub fn removes_held(&self, held: &Held) -> bool {
        Id::hash(self.name.as_bytes()) == held.key
            && *self.uploader == *held.uploader
            && held.created <= self.at
    }
}

/// A removal together with the version it removed, both signed by the uploader: the proof a
/// node keeps (and passes on with its keys) that a name of that uploader is gone. Carrying the
/// version means nobody can make a node keep a tombstone for a name its uploader never put.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub removal: Removal,
    pub removed: FileMeta,
}

impl Tombstone {
    /// Checks both signatures, that one removes the other, and the times against `now`.
    pub fn check(&self, now: u64) -> Result<(), RecordError> {
        self.removal.check(now)?;
        self.removed.check(&self.removal.name, now)?;
        if !self.removal.removes(&self.removed) {
            return Err(RecordError::Mismatch);
        }
        Ok(())
    }

    pub fn key(&self) -> Id {
        self.removed.key
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("the record names '{0}', not the file asked for")]
    OtherName(String),
    #[error("'{0}' does not carry a valid signature of its uploader")]
    Unsigned(String),
    #[error("the removal of '{0}' does not carry its uploader's signature")]
    UnsignedRemoval(String),
    #[error(
        "a signed time {ahead_ms} ms ahead of this node's clock was refused (at most {} min)",
        MAX_SKEW_MS / 60_000
    )]
    Future { ahead_ms: u64 },
    #[error("the removal does not remove the version it came with")]
    Mismatch,
}

/// A signed time must not lie more than [`MAX_SKEW_MS`] ahead of `now`.
pub fn check_time(at: u64, now: u64) -> Result<(), RecordError> {
    if at > now.saturating_add(MAX_SKEW_MS) {
        return Err(RecordError::Future { ahead_ms: at - now });
    }
    Ok(())
}

fn removal_statement(name: &str, at: u64, uploader: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(REMOVAL_CONTEXT.len() + name.len() + uploader.len() + 16);
    out.extend_from_slice(REMOVAL_CONTEXT);
    out.extend_from_slice(&(name.len() as u64).to_be_bytes());
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&at.to_be_bytes());
    out.extend_from_slice(uploader.as_bytes());
    out
}

/// Whether `signature` over `statement` was made by the key behind `uploader` (a peer id in
/// text). Only peer ids that embed their public key (Ed25519 ones do) can be checked.
fn verify(uploader: &str, statement: &[u8], signature: &[u8]) -> bool {
    let Ok(peer) = uploader.parse::<PeerId>() else {
        return false;
    };
    let Ok(key) = PublicKey::try_decode_protobuf(peer.as_ref().digest()) else {
        return false;
    };
    key.to_peer_id() == peer && key.verify(statement, signature)
}

/// Unix time in milliseconds (the drivers' clock; cores take it as an argument).
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Hashes and signatures: a CBOR byte string on the wire, lowercase hex in JSON (the store's
/// metadata files and `--json` output), chosen by the format's `is_human_readable`.
pub mod bytes {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, T: AsRef<[u8]>>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex::encode(value.as_ref()))
        } else {
            s.serialize_bytes(value.as_ref())
        }
    }

    pub fn deserialize<'de, D, T>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<Vec<u8>>,
    {
        let raw: Vec<u8> = if d.is_human_readable() {
            let text = String::deserialize(d)?;
            hex::decode(&text).map_err(D::Error::custom)?
        } else {
            serde_bytes_buf(d)?
        };
        let len = raw.len();
        T::try_from(raw).map_err(|_| D::Error::custom(format!("wrong length {len}")))
    }

    /// A CBOR byte string (definite or not) into a buffer.
    fn serde_bytes_buf<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_byte_buf(Visit)
    }
}

/// `Option<Hash>` the same way as [`bytes`].
pub mod opt_bytes {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Wrap(#[serde(with = "super::bytes")] super::Hash);

    pub fn serialize<S: Serializer>(value: &Option<super::Hash>, s: S) -> Result<S::Ok, S::Error> {
        value.map(Wrap).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<super::Hash>, D::Error> {
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(key: &Keypair, name: &str, created: u64) -> FileMeta {
        FileMeta::signed(key, name, 5, [7; 32], created, Role::Owner)
    }

    #[test]
    fn only_the_uploaders_key_signs_for_it() {
        let alice = Keypair::generate_ed25519();
        let mallory = Keypair::generate_ed25519();
        let good = meta(&alice, "notes.txt", 1000);
        assert_eq!(good.check("notes.txt", 1000), Ok(()));
        // Another key, another size, a later time, another name: all refused.
        let forged = FileMeta {
            signature: meta(&mallory, "notes.txt", 1000).signature,
            ..good.clone()
        };
        assert!(forged.check("notes.txt", 1000).is_err());
        let bigger = FileMeta {
            size: 6,
            ..good.clone()
        };
        assert!(bigger.check("notes.txt", 1000).is_err());
        assert!(matches!(
            good.check("other.txt", 1000),
            Err(RecordError::OtherName(_))
        ));
        let stranger = FileMeta {
            uploader: "not a peer id".into(),
            ..good.clone()
        };
        assert!(stranger.check("notes.txt", 1000).is_err());
        // Removals: only the uploader's own, unaltered.
        let removal = Removal::sign(&alice, "notes.txt", 3000);
        assert!(removal.is_signed() && removal.removes(&good));
        let later = Removal {
            at: 4000,
            ..removal.clone()
        };
        assert!(!later.is_signed());
        let forged = Removal {
            uploader: good.uploader.clone(),
            ..Removal::sign(&mallory, "notes.txt", 3000)
        };
        assert!(!forged.is_signed());
        // A removal of someone else's version proves nothing about it.
        let theirs = Removal::sign(&mallory, "notes.txt", 3000);
        assert!(!theirs.removes(&good));
        let stone = Tombstone {
            removal: theirs,
            removed: good.clone(),
        };
        assert_eq!(stone.check(3000), Err(RecordError::Mismatch));
        let stone = Tombstone {
            removal,
            removed: good,
        };
        assert_eq!(stone.check(3000), Ok(()));
    }

    #[test]
    fn times_far_ahead_of_the_clock_are_refused() {
        let alice = Keypair::generate_ed25519();
        let now = 1_000_000_000;
        let year = 365 * 24 * 3600 * 1000;
        assert!(meta(&alice, "a", now + MAX_SKEW_MS).check("a", now).is_ok());
        assert!(matches!(
            meta(&alice, "a", now + year).check("a", now),
            Err(RecordError::Future { .. })
        ));
        assert!(Removal::sign(&alice, "a", now + year).check(now).is_err());
    }

    #[test]
    fn hashes_and_signatures_are_bytes_on_the_wire_and_hex_in_json() {
        let alice = Keypair::generate_ed25519();
        let m = meta(&alice, "x", 5);
        let mut cbor = Vec::new();
        cbor4ii::serde::to_writer(&mut cbor, &m).unwrap();
        // 0x58 0x20: a CBOR byte string of 32 bytes, then the hash itself.
        let mut expected = vec![0x58, 0x20];
        expected.extend_from_slice(&m.hash);
        assert!(
            cbor.windows(34).any(|w| w == expected),
            "hash not raw bytes"
        );
        let back: FileMeta = cbor4ii::serde::from_slice(&cbor).unwrap();
        assert_eq!(back, m);
        let text = serde_json::to_string(&m).unwrap();
        assert!(text.contains(&hash_hex(&m.hash)));
        assert_eq!(serde_json::from_str::<FileMeta>(&text).unwrap(), m);
        // 64 bytes, but not 64 hex digits: refused, never sliced.
        let hostile = text.replace(&hash_hex(&m.hash), &format!("é{}", "a".repeat(62)));
        assert!(serde_json::from_str::<FileMeta>(&hostile).is_err());
        let short = text.replace(&hash_hex(&m.hash), "abcd");
        assert!(serde_json::from_str::<FileMeta>(&short).is_err());
    }
}
