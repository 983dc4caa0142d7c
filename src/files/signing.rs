//! Uploaders sign what they put: name, size, content hash and time, with their libp2p key. Every
//! node that stores a copy checks the signature against the uploader's peer id, so nobody can
//! store a file, or a newer version of one, in someone else's name — not even a ring member
//! passing it on as a replica.

use libp2p::identity::{Keypair, PublicKey};
use libp2p::PeerId;

use super::store::Hash;

/// Domain separation: these bytes are never mistaken for anything else the key signs.
const CONTEXT: &[u8] = b"chord-p2p file v1\0";
const REMOVAL: &[u8] = b"chord-p2p removal v1\0";

/// What an uploader signs for one version of one file.
pub fn statement(name: &str, size: u64, hash: &Hash, created: u64, uploader: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(CONTEXT.len() + name.len() + uploader.len() + 64);
    out.extend_from_slice(CONTEXT);
    out.extend_from_slice(&(name.len() as u64).to_be_bytes());
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(hash);
    out.extend_from_slice(&created.to_be_bytes());
    out.extend_from_slice(uploader.as_bytes());
    out
}

/// What an uploader signs to remove a name as of `at`.
pub fn removal_statement(name: &str, at: u64, uploader: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(REMOVAL.len() + name.len() + uploader.len() + 16);
    out.extend_from_slice(REMOVAL);
    out.extend_from_slice(&(name.len() as u64).to_be_bytes());
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&at.to_be_bytes());
    out.extend_from_slice(uploader.as_bytes());
    out
}

/// Signs a statement with the uploader's key (empty if the key cannot sign).
pub fn sign(key: &Keypair, statement: &[u8]) -> Vec<u8> {
    key.sign(statement).unwrap_or_default()
}

/// Whether `signature` over `statement` was made by the key behind `uploader` (a peer id in
/// text). Only peer ids that embed their public key (Ed25519 ones do) can be checked.
pub fn verify(uploader: &str, statement: &[u8], signature: &[u8]) -> bool {
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
        let said = statement("notes.txt", 5, &[7; 32], 1000, &who);
        let signature = sign(&alice, &said);
        assert!(verify(&who, &said, &signature));
        // Another key, another size, a later time: all refused.
        assert!(!verify(&who, &said, &sign(&mallory, &said)));
        let bigger = statement("notes.txt", 6, &[7; 32], 1000, &who);
        assert!(!verify(&who, &bigger, &signature));
        let later = statement("notes.txt", 5, &[7; 32], 2000, &who);
        assert!(!verify(&who, &later, &signature));
        assert!(!verify("not a peer id", &said, &signature));
    }
}
