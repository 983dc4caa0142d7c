//! What a node counts about itself, for Prometheus (`GET /metrics` when `--http` is on): the
//! Chord work (stabilize rounds, pointer changes, requests by kind, lookups), the bytes of each
//! protocol, the repairs made, and libp2p's own metrics (`libp2p-metrics`: connections, dials,
//! identify, ping, relay, hole punching, bytes per transport).
//!
//! Every node keeps them, with or without `--http`: they are atomic counters bumped once per
//! message, stream read or write, or lookup, so keeping them costs no measurable throughput
//! (BENCHMARKS.md, "Metrics"). Nothing here knows the layers above; they call in.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{AsyncRead, AsyncWrite};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    /// `find_successor`, `status`, `inventory`, … (see `WireRequest::kind`).
    kind: &'static str,
    /// `inbound` (answered here) or `outbound` (asked by this node).
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BytesLabels {
    /// `chord` (the request-response messages) or `transfer` (file streams).
    protocol: &'static str,
    /// `in` or `out`.
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PointerLabels {
    pointer: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
}

/// A protocol whose bytes are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Chord,
    Transfer,
}

impl Protocol {
    fn label(self) -> &'static str {
        match self {
            Protocol::Chord => "chord",
            Protocol::Transfer => "transfer",
        }
    }
}

/// What repair did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepairAction {
    /// A copy sent to a replica holder that lacked it.
    Push,
    /// A key this node no longer owns sent to its new owner.
    HandOff,
    /// A replica nobody confirms any more, dropped after asking its owner.
    Drop,
    /// A corrupt copy replaced by a good one.
    Replace,
}

impl RepairAction {
    fn label(self) -> &'static str {
        match self {
            RepairAction::Push => "push",
            RepairAction::HandOff => "hand_off",
            RepairAction::Drop => "drop",
            RepairAction::Replace => "replace",
        }
    }
}

/// The node's counters; cheap to clone (they are shared).
#[derive(Clone)]
pub struct NodeMetrics {
    inner: Arc<Inner>,
}

struct Inner {
    /// Ours and libp2p's, as scraped.
    registry: Mutex<Registry>,
    libp2p: libp2p::metrics::Metrics,
    rpcs: Family<RpcLabels, Counter>,
    rpc_failures: Family<RpcLabels, Counter>,
    bytes: Family<BytesLabels, Counter>,
    stabilize_rounds: Counter,
    pointer_changes: Family<PointerLabels, Counter>,
    lookups: Family<ResultLabels, Counter>,
    lookup_hops: Histogram,
    lookup_seconds: Histogram,
    repairs: Family<ActionLabels, Counter>,
}

impl std::fmt::Debug for NodeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeMetrics")
    }
}

impl Default for NodeMetrics {
    fn default() -> Self {
        NodeMetrics::new()
    }
}

impl NodeMetrics {
    pub fn new() -> NodeMetrics {
        let mut registry = Registry::default();
        let libp2p = libp2p::metrics::Metrics::new(&mut registry);
        let rpcs = Family::<RpcLabels, Counter>::default();
        let rpc_failures = Family::<RpcLabels, Counter>::default();
        let bytes = Family::<BytesLabels, Counter>::default();
        let stabilize_rounds = Counter::default();
        let pointer_changes = Family::<PointerLabels, Counter>::default();
        let lookups = Family::<ResultLabels, Counter>::default();
        let lookup_hops = Histogram::new([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 12.0, 16.0]);
        // Seconds, from 1 ms to about 16 s.
        let lookup_seconds = Histogram::new(exponential_buckets(0.001, 4.0, 8));
        let repairs = Family::<ActionLabels, Counter>::default();
        let chord = registry.sub_registry_with_prefix("chord");
        chord.register(
            "rpcs",
            "Chord-protocol requests by kind: answered here (inbound) or asked (outbound)",
            rpcs.clone(),
        );
        chord.register(
            "rpc_failures",
            "Requests this node asked that got no answer (timeout, refused, connection lost)",
            rpc_failures.clone(),
        );
        chord.register(
            "protocol_bytes",
            "Bytes of the Chord messages and of file transfer streams, in and out",
            bytes.clone(),
        );
        chord.register(
            "stabilize_rounds",
            "Periodic rounds run (stabilize, check_predecessor, fix_fingers)",
            stabilize_rounds.clone(),
        );
        chord.register(
            "pointer_changes",
            "Changes of this node's predecessor or first successor",
            pointer_changes.clone(),
        );
        chord.register(
            "lookups",
            "Lookups this node made (for itself, its clients and its gateway), by result",
            lookups.clone(),
        );
        chord.register(
            "lookup_hops",
            "Hops of this node's successful lookups",
            lookup_hops.clone(),
        );
        chord.register(
            "lookup_duration_seconds",
            "Time this node's lookups took",
            lookup_seconds.clone(),
        );
        chord.register(
            "repairs",
            "What repair did: copies pushed to holders, keys handed off, replicas dropped, \
             corrupt copies replaced",
            repairs.clone(),
        );
        NodeMetrics {
            inner: Arc::new(Inner {
                registry: Mutex::new(registry),
                libp2p,
                rpcs,
                rpc_failures,
                bytes,
                stabilize_rounds,
                pointer_changes,
                lookups,
                lookup_hops,
                lookup_seconds,
                repairs,
            }),
        }
    }

    /// Runs `f` on the registry: to add metrics (the swarm's bandwidth, the gateway's) or to
    /// encode them all.
    pub fn with_registry<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        let mut registry = self
            .inner
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        f(&mut registry)
    }

    /// Feeds a libp2p event (swarm or behaviour) to libp2p's own metrics.
    pub fn record<E>(&self, event: &E)
    where
        libp2p::metrics::Metrics: libp2p::metrics::Recorder<E>,
    {
        libp2p::metrics::Recorder::record(&self.inner.libp2p, event)
    }

    pub fn rpc(&self, kind: &'static str, inbound: bool) {
        let direction = if inbound { "inbound" } else { "outbound" };
        self.inner
            .rpcs
            .get_or_create(&RpcLabels { kind, direction })
            .inc();
    }

    pub fn rpc_failed(&self, kind: &'static str) {
        let labels = RpcLabels {
            kind,
            direction: "outbound",
        };
        self.inner.rpc_failures.get_or_create(&labels).inc();
    }

    /// The counter of `protocol`'s bytes one way: `read` for bytes in.
    pub fn bytes(&self, protocol: Protocol, read: bool) -> Counter {
        let direction = if read { "in" } else { "out" };
        let labels = BytesLabels {
            protocol: protocol.label(),
            direction,
        };
        self.inner.bytes.get_or_create(&labels).clone()
    }

    /// Bytes of `protocol` so far, in (`read`) or out.
    pub fn bytes_so_far(&self, protocol: Protocol, read: bool) -> u64 {
        self.bytes(protocol, read).get()
    }

    /// `stream`, with its bytes counted as `protocol`'s.
    pub fn count<S>(&self, protocol: Protocol, stream: S) -> Counted<S> {
        Counted {
            inner: stream,
            read: self.bytes(protocol, true),
            written: self.bytes(protocol, false),
        }
    }

    pub fn stabilize_rounds(&self, rounds: u64) {
        self.inner.stabilize_rounds.inc_by(rounds);
    }

    /// The predecessor (`true`) or the first successor changed.
    pub fn pointer_changed(&self, predecessor: bool) {
        let pointer = if predecessor {
            "predecessor"
        } else {
            "successor"
        };
        self.inner
            .pointer_changes
            .get_or_create(&PointerLabels { pointer })
            .inc();
    }

    /// A lookup ended: with its hops, or failed.
    pub fn looked_up(&self, hops: Option<u32>, took: Duration) {
        let result = if hops.is_some() { "ok" } else { "failed" };
        self.inner
            .lookups
            .get_or_create(&ResultLabels { result })
            .inc();
        self.inner.lookup_seconds.observe(took.as_secs_f64());
        if let Some(hops) = hops {
            self.inner.lookup_hops.observe(hops.into());
        }
    }

    pub fn repaired(&self, action: RepairAction) {
        let labels = ActionLabels {
            action: action.label(),
        };
        self.inner.repairs.get_or_create(&labels).inc();
    }
}

/// A stream whose bytes each way add to two counters.
#[derive(Debug)]
pub struct Counted<S> {
    inner: S,
    read: Counter,
    written: Counter,
}

impl<S> Counted<S> {
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.read.inc_by(n as u64);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.written.inc_by(n as u64);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}
