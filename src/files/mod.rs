//! Files on the ring, as thin drivers around the replica core (`crate::replica`), each one job:
//! the disk ([`store`]), stream framing ([`transfer`]), allowed names ([`names`]), what users
//! do ([`ops`]: put, get, rm; `swarm`: a get from every holder at once; [`folder`]: folders;
//! [`ticket`]: what to hand a friend), and a
//! member's service ([`Files`]): the transfer server, the request handlers, local operations,
//! repair and the scrub.

pub mod access;
pub mod error;
pub mod folder;
mod handlers;
mod local;
mod member;
pub mod names;
pub mod ops;
mod outboard;
pub mod range;
mod repair;
mod scrub;
mod server;
mod slots;
pub mod store;
mod swarm;
pub mod throttle;
pub mod ticket;
pub mod transfer;

use std::time::Duration;

pub use access::{Access, Via};
pub use error::FilesError;
pub use folder::{FolderError, FolderGetReport, FolderPutReport};
pub use member::{Files, HasFiles};
pub use ops::{GetReport, PutReport};
pub use slots::TransferCounts;
pub use store::{FileMeta, Hash, Role};
pub use ticket::{Ticket, TicketError};

/// How a node keeps its files.
#[derive(Clone, Debug)]
pub struct FilesConfig {
    /// Copies of each file: the owner's and R-1 replicas on its next successors.
    pub replicas: usize,
    /// How often replication, hand-off and the integrity scrub run (also after ring changes).
    pub repair_interval: Duration,
    /// A replica its owner has not confirmed for this many rounds is handed back or dropped.
    pub stale_rounds: u32,
    /// Bound on connecting to a peer and on each control message of a transfer.
    pub timeout: Duration,
    /// How long a transfer to a peer reached only through a relay waits for hole punching
    /// to bring a direct connection.
    pub direct_wait: Duration,
    /// Inbound transfers served at once, in all and from one peer, gets and puts each; more
    /// are refused with "busy" at once (each holds a disk thread, a few chunk buffers and two
    /// descriptors). The node's predecessor and successors count only per peer.
    pub max_transfers: usize,
    pub max_transfers_per_peer: usize,
    /// Bytes this node stores at most (files, tombstones and transfers under way); over it a
    /// copy is refused before its bytes move. `None`: no limit.
    pub max_storage: Option<u64>,
}

impl Default for FilesConfig {
    fn default() -> Self {
        FilesConfig {
            replicas: 3,
            repair_interval: Duration::from_secs(5),
            stale_rounds: 5,
            timeout: Duration::from_secs(10),
            direct_wait: Duration::from_secs(5),
            max_transfers: 64,
            max_transfers_per_peer: 8,
            max_storage: None,
        }
    }
}
