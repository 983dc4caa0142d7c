//! Inbound transfers among the node's limits (`--max-transfers`, `--max-transfers-per-peer`,
//! counted apart for gets and puts). When the total is reached, the transfer that has moved
//! nothing for longest — no 256 KiB chunk for [`IDLE`], below about 85 KiB/s, far below any
//! real link — gives its place to the newcomer: peers that open transfers and then crawl
//! cannot keep everyone else out.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use tokio::sync::Notify;

/// Inbound transfers are counted by kind: a flood of uploads (and the forwards an owner makes
/// of them) never keeps a node from serving gets, nor the other way round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Get,
    Put,
}

/// How many transfers a node serves at once.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    pub total: usize,
    pub per_peer: usize,
}

/// A poisoned lock still holds consistent data here (single inserts and removes).
fn locked(m: &Mutex<Serving>) -> std::sync::MutexGuard<'_, Serving> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A transfer that completed no chunk for this long may be cut to make room.
pub const IDLE: Duration = Duration::from_secs(3);
/// How long a newcomer waits for the place of a transfer it had cut.
const HANDOVER: Duration = Duration::from_secs(2);

/// The transfers under way.
#[derive(Default)]
pub(super) struct Serving {
    by_peer: HashMap<(PeerId, Kind), usize>,
    active: BTreeMap<u64, Active>,
    next_id: u64,
    /// Transfers that held a place and ended (well or not), by kind: counted where the place
    /// is freed, under the lock already taken there, so metrics cost nothing on the byte path.
    finished: HashMap<Kind, u64>,
    /// File bytes moved by transfers that ended, by kind (sent for gets, received for puts).
    bytes: HashMap<Kind, u64>,
}

/// Inbound transfers this node serves and has served since it started. `Get` counts every
/// read (whole gets, ranges, outboards, piece values), `Put` every upload and copy received.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransferCounts {
    pub active_gets: u64,
    pub active_puts: u64,
    pub finished_gets: u64,
    pub finished_puts: u64,
    /// File bytes sent by gets and received by puts that ended.
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

struct Active {
    kind: Kind,
    peer: PeerId,
    started: Instant,
    /// Milliseconds after `started` when the transfer last completed a chunk.
    moved_at: Arc<AtomicU64>,
    cut: Arc<Notify>,
}

/// One inbound transfer's place among the node's limits; freed when dropped. The transfer
/// reports progress with [`TransferSlot::moved`] and stops when [`TransferSlot::cut`] fires.
pub(super) struct TransferSlot<'a> {
    serving: &'a Mutex<Serving>,
    at: (PeerId, Kind),
    id: u64,
    started: Instant,
    moved_at: Arc<AtomicU64>,
    /// File bytes moved so far (the byte loop's own count).
    moved_bytes: Arc<AtomicU64>,
    pub cut: Arc<Notify>,
}

impl TransferSlot<'_> {
    /// A progress callback for the transfer's byte loop: each call marks it as moving and
    /// notes how far it got.
    pub fn moved(&self) -> impl Fn(u64, u64) + Send + Sync + 'static {
        let (started, moved_at, bytes) = (
            self.started,
            self.moved_at.clone(),
            self.moved_bytes.clone(),
        );
        move |done, _| {
            moved_at.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
            bytes.store(done, Ordering::Relaxed);
        }
    }
}

impl Drop for TransferSlot<'_> {
    fn drop(&mut self) {
        let mut serving = locked(self.serving);
        serving.active.remove(&self.id);
        *serving.finished.entry(self.at.1).or_insert(0) += 1;
        *serving.bytes.entry(self.at.1).or_insert(0) += self.moved_bytes.load(Ordering::Relaxed);
        if let Some(n) = serving.by_peer.get_mut(&self.at) {
            *n -= 1;
            if *n == 0 {
                serving.by_peer.remove(&self.at);
            }
        }
    }
}

/// Why no place was given at once.
enum Full {
    /// This peer has its share.
    Peer,
    /// The node has its total.
    Total,
}

impl Serving {
    /// What is served now and what was.
    pub(super) fn counts(this: &Mutex<Serving>) -> TransferCounts {
        let serving = locked(this);
        let active = |kind| serving.active.values().filter(|a| a.kind == kind).count() as u64;
        let finished = |kind| serving.finished.get(&kind).copied().unwrap_or(0);
        let bytes = |kind| serving.bytes.get(&kind).copied().unwrap_or(0);
        TransferCounts {
            bytes_sent: bytes(Kind::Get),
            bytes_received: bytes(Kind::Put),
            active_gets: active(Kind::Get),
            active_puts: active(Kind::Put),
            finished_gets: finished(Kind::Get),
            finished_puts: finished(Kind::Put),
        }
    }

    /// A place for one more inbound transfer from `peer`, if the limits allow it, making room
    /// by cutting a crawling transfer when only the total is reached. The node's own
    /// neighbours (predecessor, successors) are held to the per-peer limit only, so strangers
    /// filling the total never keep the ring from moving its copies.
    pub(super) async fn slot(
        this: &Mutex<Serving>,
        limits: Limits,
        peer: PeerId,
        kind: Kind,
        neighbour: bool,
    ) -> Option<TransferSlot<'_>> {
        // Full for this peer: its own idlest transfer gives way (a crawling upload's forwards
        // along a chain would otherwise keep a neighbour's new transfers out). Full in all:
        // anyone's idlest.
        let from = match Serving::try_slot(this, limits, peer, kind, neighbour) {
            Ok(slot) => return Some(slot),
            Err(Full::Peer) => Some(peer),
            Err(Full::Total) => None,
        };
        if !locked(this).cut_idlest(kind, from) {
            return None;
        }
        let deadline = Instant::now() + HANDOVER;
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Ok(slot) = Serving::try_slot(this, limits, peer, kind, neighbour) {
                return Some(slot);
            }
        }
        None
    }

    fn try_slot(
        this: &Mutex<Serving>,
        limits: Limits,
        peer: PeerId,
        kind: Kind,
        neighbour: bool,
    ) -> Result<TransferSlot<'_>, Full> {
        let mut serving = locked(this);
        let total: usize = serving
            .by_peer
            .iter()
            .filter(|((_, k), _)| *k == kind)
            .map(|(_, n)| n)
            .sum();
        let at = (peer, kind);
        if serving.by_peer.get(&at).copied().unwrap_or(0) >= limits.per_peer {
            return Err(Full::Peer);
        }
        if total >= limits.total && !neighbour {
            return Err(Full::Total);
        }
        *serving.by_peer.entry(at).or_insert(0) += 1;
        let id = serving.next_id;
        serving.next_id += 1;
        let (started, moved_at, cut) = (Instant::now(), Arc::default(), Arc::new(Notify::new()));
        serving.active.insert(
            id,
            Active {
                kind,
                peer,
                started,
                moved_at: Arc::clone(&moved_at),
                cut: Arc::clone(&cut),
            },
        );
        Ok(TransferSlot {
            serving: this,
            at,
            id,
            started,
            moved_at,
            moved_bytes: Arc::default(),
            cut,
        })
    }

    /// Cuts the transfer of `kind` (from `from`, when given) idle for longest, if one has
    /// been idle for [`IDLE`].
    fn cut_idlest(&self, kind: Kind, from: Option<PeerId>) -> bool {
        let idle = |a: &Active| {
            let moved = Duration::from_millis(a.moved_at.load(Ordering::Relaxed));
            a.started.elapsed().saturating_sub(moved)
        };
        let idlest = self
            .active
            .values()
            .filter(|a| a.kind == kind && from.is_none_or(|p| a.peer == p) && idle(a) >= IDLE)
            .max_by_key(|a| idle(a));
        match idlest {
            Some(active) => {
                active.cut.notify_one();
                true
            }
            None => false,
        }
    }
}
