//! Uploaders sign what they put: name, size, content hash and time, with their libp2p key. Every
//! node that stores a copy checks the signature against the uploader's peer id, so nobody can
//! store a file, or a newer version of one, in someone else's name — not even a ring member
//! passing it on as a replica. Removals are signed the same way.

use libp2p::identity::{Keypair, PublicKey};
use libp2p::PeerId;

use super::store::Hash;
use crate::net::protocol::Removal;

/// Domain separation: these bytes are never mistaken for anything else the key signs.
const CONTEXT: &[u8] = b"chord-p2p file v1\0";
const REMOVAL: &[u8] = b"chord-p2p removal v1\0";

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
    fn statement(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CONTEXT.len() + self.name.len() + 96);
        out.extend_from_slice(CONTEXT);
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

fn removal_statement(name: &str, at: u64, uploader: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(REMOVAL.len() + name.len() + uploader.len() + 16);
    out.extend_from_slice(REMOVAL);
    out.extend_from_slice(&(name.len() as u64).to_be_bytes());
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&at.to_be_bytes());
    out.extend_from_slice(uploader.as_bytes());
    out
}

/// The removal of `name` as of `at`, signed by `key`'s owner (the uploader).
pub fn sign_removal(key: &Keypair, name: &str, at: u64) -> Removal {
    let uploader = key.public().to_peer_id().to_string();
    let statement = removal_statement(name, at, &uploader);
    Removal {
        name: name.into(),
        at,
        signature: key.sign(&statement).unwrap_or_default(),
        uploader,
    }
}

/// Whether a removal carries its uploader's signature.
pub fn removal_is_signed(removal: &Removal) -> bool {
    let statement = removal_statement(&removal.name, removal.at, &removal.uploader);
    verify(&removal.uploader, &statement, &removal.signature)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_uploaders_key_signs_for_it() {
        let alice = Keypair::generate_ed25519();
        let mallory = Keypair::generate_ed25519();
        let who = alice.public().to_peer_id().to_string();
        let version = |size, created| Version {
            name: "notes.txt",
            size,
            hash: &[7; 32],
            created,
            uploader: &who,
        };
        let signature = version(5, 1000).sign(&alice);
        assert!(version(5, 1000).is_signed(&signature));
        // Another key, another size, a later time: all refused.
        assert!(!version(5, 1000).is_signed(&version(5, 1000).sign(&mallory)));
        assert!(!version(6, 1000).is_signed(&signature));
        assert!(!version(5, 2000).is_signed(&signature));
        let stranger = Version {
            uploader: "not a peer id",
            ..version(5, 1000)
        };
        assert!(!stranger.is_signed(&signature));
        // Removals: only the uploader's own, unaltered.
        let removal = sign_removal(&alice, "notes.txt", 3000);
        assert!(removal_is_signed(&removal));
        let later = Removal {
            at: 4000,
            ..removal.clone()
        };
        assert!(!removal_is_signed(&later));
        let forged = Removal {
            uploader: who.clone(),
            ..sign_removal(&mallory, "notes.txt", 3000)
        };
        assert!(!removal_is_signed(&forged));
    }
}
