//! What a run measured: message and membership counters, lookup outcomes and path lengths.

/// Counts of what the simulator did. Compared whole between runs to prove determinism.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Events processed (message deliveries, timer firings, injected operations); stale timer
    /// entries that a newer one replaced are not counted.
    pub events: u64,
    /// Messages handed to the network (requests and responses).
    pub messages: u64,
    /// Messages the network dropped on purpose (loss).
    pub lost: u64,
    /// Requests that reached a node no longer there (crashed or left).
    pub undeliverable: u64,
    /// Responses that arrived after the requester had given up (its rpc deadline passed).
    pub late: u64,
    pub joins: u64,
    pub join_failures: u64,
    pub leaves: u64,
    pub crashes: u64,
    /// Oracle checks run, and how many found a violation.
    pub checks: u64,
    pub violations: u64,
}

/// Outcomes of user lookups ([`crate::chord::ChordNode::lookup`]) started by the simulator.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LookupStats {
    pub started: u64,
    /// Answered with the true owner: successor(key) among live members when the answer came.
    pub ok: u64,
    /// Answered, but with a node that was not the true owner at that moment.
    pub wrong: u64,
    /// Ended in an error (nobody on the path answered, or too many steps).
    pub failed: u64,
    /// Requests of these lookups that went unanswered in time (lost, sent to a dead node, or
    /// answered after the deadline while the lookup still ran).
    pub timeouts: u64,
    /// Path length (the paper's: nodes that forwarded the lookup) of every answered lookup.
    pub hops: Vec<u32>,
}

impl LookupStats {
    pub fn finished(&self) -> u64 {
        self.ok + self.wrong + self.failed
    }

    pub fn mean_hops(&self) -> f64 {
        if self.hops.is_empty() {
            return f64::NAN;
        }
        self.hops.iter().map(|&h| h as f64).sum::<f64>() / self.hops.len() as f64
    }

    /// Nearest-rank percentile of the path length, `p` in (0, 100].
    pub fn percentile(&self, p: f64) -> Option<u32> {
        if self.hops.is_empty() {
            return None;
        }
        let mut sorted = self.hops.clone();
        sorted.sort_unstable();
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        Some(sorted[rank.clamp(1, sorted.len()) - 1])
    }

    /// Adds another batch of outcomes to this one.
    pub fn merge(&mut self, other: &LookupStats) {
        self.started += other.started;
        self.ok += other.ok;
        self.wrong += other.wrong;
        self.failed += other.failed;
        self.timeouts += other.timeouts;
        self.hops.extend_from_slice(&other.hops);
    }
}

/// Everything a run produced that two runs with the same seed must agree on, bit for bit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Virtual time reached, in nanoseconds.
    pub now_ns: u64,
    pub counters: Counters,
    pub lookups: LookupStats,
    pub live_nodes: usize,
    pub members: usize,
    /// A hash of every live node's id, predecessor, successor list and fingers.
    pub fingerprint: u64,
}
