//! Tickets: one string to hand a friend. A ticket names a file or folder on the ring and a few
//! members to ask for it, so `get TICKET` needs no `--peer`.
//!
//! Text form: `chord:` followed by the unpadded base32 (RFC 4648 alphabet, written lowercase,
//! read in either case) of a CBOR map `{"v": 1, "name": text, "addrs": [bytes, …]}`, each addr
//! a binary multiaddr that ends in `/p2p/<peer id>`. See docs/PROTOCOL.md, "Tickets".

use data_encoding::BASE32_NOPAD_NOCASE;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

use super::access::Access;
use super::names::{check_name, NameError};
use super::ops;
use crate::chord::Id;
use crate::net::{PeerRef, Target};

/// What every ticket starts with.
pub const PREFIX: &str = "chord:";
/// The ticket format this code writes and reads.
pub const VERSION: u32 = 1;
/// Longest ticket text read: a name of 1,024 bytes and [`MAX_ADDRS`] long addresses fit.
pub const MAX_TICKET_CHARS: usize = 16 * 1024;
/// Addresses read from one ticket at most.
pub const MAX_ADDRS: usize = 16;
/// Members a ticket names when it is made, and addresses per member.
const PEERS: usize = 3;
const ADDRS_PER_PEER: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum TicketError {
    #[error("not a ticket: it does not start with '{PREFIX}'")]
    Prefix,
    #[error("ticket is {0} characters; at most {MAX_TICKET_CHARS} are read")]
    TooLong(usize),
    #[error("the ticket is damaged (not base32): {0}")]
    Encoding(String),
    #[error("the ticket is damaged (not a ticket's CBOR): {0}")]
    Decode(String),
    #[error("ticket version {0}; this program reads version {VERSION}")]
    Version(u32),
    #[error("the ticket names no member to ask")]
    NoAddrs,
    #[error("the ticket has {0} addresses; at most {MAX_ADDRS} are read")]
    TooManyAddrs(usize),
    #[error("the ticket holds a bad address: {0}")]
    Addr(String),
    #[error("the ticket's name: {0}")]
    Name(#[from] NameError),
}

/// A name on the ring and members that can be asked for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    pub name: String,
    /// Each with `/p2p/<peer id>` at the end.
    pub addrs: Vec<Multiaddr>,
}

/// A binary multiaddr as a CBOR byte string.
#[derive(Serialize, Deserialize)]
struct AddrBytes(#[serde(with = "crate::records::bytes")] Vec<u8>);

#[derive(Serialize, Deserialize)]
struct Wire {
    v: u32,
    name: String,
    addrs: Vec<AddrBytes>,
}

impl Ticket {
    /// A ticket for `name` naming `peers` in order (the first one first: the member the
    /// sharer used), at most three members and two addresses each.
    pub fn new(name: &str, peers: &[PeerRef]) -> Ticket {
        let mut addrs = Vec::new();
        let mut seen: Vec<PeerId> = Vec::new();
        for peer in peers {
            let id = peer.addr.peer_id;
            if seen.contains(&id) {
                continue;
            }
            if seen.len() == PEERS {
                break;
            }
            seen.push(id);
            for addr in peer.addr.addrs.iter().take(ADDRS_PER_PEER) {
                let mut addr = addr.clone();
                if !matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
                    addr.push(Protocol::P2p(id));
                }
                addrs.push(addr);
            }
        }
        Ticket {
            name: name.into(),
            addrs,
        }
    }

    /// Whether `text` is meant as a ticket (it may still be damaged).
    pub fn is_ticket(text: &str) -> bool {
        text.trim().starts_with(PREFIX)
    }

    pub fn encode(&self) -> String {
        let wire = Wire {
            v: VERSION,
            name: self.name.clone(),
            addrs: self.addrs.iter().map(|a| AddrBytes(a.to_vec())).collect(),
        };
        let mut bytes = Vec::new();
        // Writing CBOR into a Vec cannot fail for these plain types.
        if let Err(e) = cbor4ii::serde::to_writer(&mut bytes, &wire) {
            tracing::error!("cannot encode a ticket: {e}");
        }
        format!(
            "{PREFIX}{}",
            BASE32_NOPAD_NOCASE.encode(&bytes).to_ascii_lowercase()
        )
    }

    /// Reads a ticket a stranger may have made: every part is checked.
    pub fn decode(text: &str) -> Result<Ticket, TicketError> {
        let text = text.trim();
        if text.len() > MAX_TICKET_CHARS {
            return Err(TicketError::TooLong(text.len()));
        }
        let body = text.strip_prefix(PREFIX).ok_or(TicketError::Prefix)?;
        let bytes = BASE32_NOPAD_NOCASE
            .decode(body.as_bytes())
            .map_err(|e| TicketError::Encoding(e.to_string()))?;
        let wire: Wire =
            cbor4ii::serde::from_slice(&bytes).map_err(|e| TicketError::Decode(e.to_string()))?;
        if wire.v != VERSION {
            return Err(TicketError::Version(wire.v));
        }
        check_name(&wire.name)?;
        if wire.addrs.is_empty() {
            return Err(TicketError::NoAddrs);
        }
        if wire.addrs.len() > MAX_ADDRS {
            return Err(TicketError::TooManyAddrs(wire.addrs.len()));
        }
        let addrs = wire
            .addrs
            .into_iter()
            .map(|a| {
                let addr =
                    Multiaddr::try_from(a.0).map_err(|e| TicketError::Addr(e.to_string()))?;
                match addr.iter().last() {
                    Some(Protocol::P2p(_)) => Ok(addr),
                    _ => Err(TicketError::Addr(format!(
                        "{addr} does not end in /p2p/<id>"
                    ))),
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Ticket {
            name: wire.name,
            addrs,
        })
    }

    /// The members to dial, one target per peer (its addresses tried together), in the
    /// ticket's order.
    pub fn targets(&self) -> Vec<Target> {
        let mut targets: Vec<Target> = Vec::new();
        for full in &self.addrs {
            let mut addr = full.clone();
            let Some(Protocol::P2p(peer)) = addr.pop() else {
                continue;
            };
            match targets.iter_mut().find(|t| t.peer_id == Some(peer)) {
                Some(t) => t.addrs.push(addr),
                None => targets.push(Target {
                    peer_id: Some(peer),
                    addrs: vec![addr],
                    text: full.to_string(),
                }),
            }
        }
        targets
    }
}

/// A ticket for `name` as `access` reaches the ring: the member it asks first, then the
/// name's owner and the next holders. Never fails: without a lookup it names the entry only.
pub async fn for_name(access: &Access, name: &str) -> Ticket {
    let mut peers: Vec<PeerRef> = access.via.iter().cloned().collect();
    match access.lookup(Id::hash(name.as_bytes())).await {
        Ok(found) => peers.extend(ops::candidates(found)),
        Err(e) => tracing::info!("ticket for {name}: lookup failed: {e}"),
    }
    Ticket::new(name, &peers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::peer_ref;

    fn member(port: u16) -> PeerRef {
        let id = libp2p::identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id();
        let quic: Multiaddr = format!("/ip4/127.0.0.1/udp/{port}/quic-v1")
            .parse()
            .unwrap();
        let tcp: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
        let extra: Multiaddr = format!("/ip4/10.0.0.1/tcp/{port}").parse().unwrap();
        peer_ref(id, vec![quic, tcp, extra])
    }

    #[test]
    fn a_ticket_round_trips_and_stays_short() {
        let peers = [member(5001), member(5002), member(5003), member(5004)];
        let ticket = Ticket::new("photos/é 漢字/", &peers);
        // Three members, two addresses each.
        assert_eq!(ticket.addrs.len(), 6);
        let text = ticket.encode();
        assert!(text.starts_with("chord:"), "{text}");
        assert!(text.len() < 600, "{} chars", text.len());
        assert_eq!(Ticket::decode(&text).unwrap(), ticket);
        assert_eq!(
            Ticket::decode(&text.to_uppercase().replace("CHORD:", "chord:")).unwrap(),
            ticket
        );
        let targets = ticket.targets();
        assert_eq!(targets.len(), 3);
        assert_eq!(targets[0].peer_id, Some(peers[0].addr.peer_id));
        assert_eq!(targets[0].addrs, peers[0].addr.addrs[..2].to_vec());
    }

    #[test]
    fn damaged_tickets_are_refused() {
        let ticket = Ticket::new("x", &[member(1)]).encode();
        assert!(matches!(Ticket::decode("x"), Err(TicketError::Prefix)));
        assert!(matches!(
            Ticket::decode("chord:!!"),
            Err(TicketError::Encoding(_))
        ));
        assert!(Ticket::decode(&ticket[..ticket.len() - 7]).is_err());
        assert!(matches!(
            Ticket::decode(&format!("chord:{}", "a".repeat(MAX_TICKET_CHARS))),
            Err(TicketError::TooLong(_))
        ));
        let no_addrs = Ticket {
            name: "x".into(),
            addrs: Vec::new(),
        };
        assert!(matches!(
            Ticket::decode(&no_addrs.encode()),
            Err(TicketError::NoAddrs)
        ));
        let bad_name = Ticket {
            name: "a\u{0}b".into(),
            addrs: Ticket::new("x", &[member(1)]).addrs,
        };
        assert!(matches!(
            Ticket::decode(&bad_name.encode()),
            Err(TicketError::Name(_))
        ));
    }
}
