//! The simulated world: a virtual clock, an event queue, a lossy network and a population of
//! [`ChordNode`]s, driven exactly as `chord::node` documents: feed one input, drain
//! `poll_transmit` and `poll_event`, then schedule `handle_timeout` at `poll_timeout`.
//!
//! Determinism: one `Instant` is taken when the world is made and every time the core sees is
//! that base plus a virtual offset, so the core only ever compares and adds durations that are
//! the same in every run. All randomness comes from one seeded [`StdRng`], drawn in an order fixed
//! by the event order; the queue breaks time ties by a sequence number; node state lives in
//! `Vec`s and `BTreeMap`s. Same seed, same run.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::chord::{
    self, ChordNode, Event, Id, LookupError, LookupId, LookupResult, NodeRef, Request, RequestId,
    Response,
};

use super::files_state::{FileMsg, FilesConfig, FilesWorld, NodeFiles};
use super::oracle_memory::Scratch;
use super::stats::{Counters, LookupStats, Summary};

pub use super::addr::Addr;

/// The network model, applied independently to every message (request or response).
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// One-way delay is uniform in `[min_delay, max_delay]`; any spread already reorders.
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// Probability that a message is dropped.
    pub loss: f64,
    /// Probability that a message is held back by an extra delay uniform in `[0, reorder_delay]`
    /// (long enough to overtake its deadline, so late answers are exercised too).
    pub reorder: f64,
    pub reorder_delay: Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(90),
            loss: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(600),
        }
    }
}

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub chord: chord::Config,
    pub net: NetConfig,
    /// Run the running-state oracle after every `check_every` events; 0 turns it off. 1 is the
    /// default; large rings may pick more, because the ring check walks every member.
    pub check_every: u64,
    /// How long a node whose join failed waits before trying again through another member.
    pub join_retry: Duration,
    /// Files on the ring (`None`: the Chord core alone).
    pub files: Option<FilesConfig>,
}

impl SimConfig {
    /// Defaults scaled like a real deployment: stabilize every second, 500 ms rpc deadline,
    /// 10–90 ms one-way delay (mean 50 ms, as in the Chord paper's simulator).
    pub fn new(seed: u64, successors: usize) -> Self {
        SimConfig {
            seed,
            chord: chord::Config {
                successors,
                stabilize_interval: Duration::from_secs(1),
                rpc_timeout: Duration::from_millis(500),
                lookup_candidates: 3,
                ..chord::Config::default()
            },
            net: NetConfig::default(),
            check_every: 1,
            join_retry: Duration::from_secs(1),
            files: None,
        }
    }
}

/// Operations injected into the world; who and what is drawn when the operation runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A new node joins through a random member (or founds the ring if there is none).
    Join,
    /// A random member leaves, informed (`ChordNode::leave`), then vanishes.
    Leave,
    /// A random member crashes: it vanishes silently.
    Crash,
    /// A random member looks up a random key.
    Lookup,
}

#[derive(Debug)]
enum Action {
    Request {
        from: Addr,
        to: Addr,
        id: RequestId,
        request: Request<Addr>,
    },
    Response {
        to: Addr,
        id: RequestId,
        response: Response<Addr>,
        /// The lookup key when this answers a `FindSuccessor`, to attribute timeouts.
        key: Option<Id>,
    },
    Timer(Addr),
    RetryJoin(Addr),
    Op(Op),
    File {
        from: Addr,
        to: Addr,
        msg: Box<FileMsg>,
    },
    Repair(Addr),
    RepairNow(Addr),
    ChallengeDue(Addr, Id),
    LeaveDue(Addr),
}

struct Scheduled {
    at: u64,
    seq: u64,
    action: Action,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Reversed, so that the max-heap pops the earliest event, first-scheduled first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A user lookup in flight.
struct UserLookup {
    key: Id,
    timeouts: u32,
}

pub(super) struct SimNode {
    pub(super) core: ChordNode<Addr>,
    /// Founded the ring or completed a join: from then on the oracle holds it to the invariants.
    pub(super) member: bool,
    /// The earliest `Timer` entry queued for this node (later entries are stale).
    timer: Option<u64>,
    lookups: BTreeMap<LookupId, UserLookup>,
    lookup_keys: BTreeMap<Id, LookupId>,
    pub(super) files: Option<NodeFiles>,
}

pub struct Sim {
    pub(super) cfg: SimConfig,
    rng: StdRng,
    base: Instant,
    /// Virtual time, nanoseconds since `base`.
    pub(super) now: u64,
    seq: u64,
    queue: BinaryHeap<Scheduled>,
    pub(super) nodes: Vec<Option<SimNode>>,
    /// Members by id: the ground truth for "successor(key) among live members".
    pub(super) members: BTreeMap<Id, Addr>,
    /// Members in a vector for uniform random picks, with each address's position in it.
    pub(super) member_list: Vec<Addr>,
    pub(super) member_pos: Vec<usize>,
    /// Nodes that received input since the last oracle check.
    pub(super) touched: Vec<Addr>,
    pub(super) scratch: Scratch,
    counters: Counters,
    lookups: LookupStats,
    violations: Vec<String>,
    pub(super) files: Option<FilesWorld>,
}

const NOT_MEMBER: usize = usize::MAX;
/// How many violation descriptions are kept (all are counted).
const KEEP_VIOLATIONS: usize = 20;

impl Sim {
    pub fn new(cfg: SimConfig) -> Self {
        let cfg_files = cfg.files.clone();
        Sim {
            rng: StdRng::seed_from_u64(cfg.seed),
            cfg,
            base: Instant::now(),
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes: Vec::new(),
            members: BTreeMap::new(),
            member_list: Vec::new(),
            member_pos: Vec::new(),
            touched: Vec::new(),
            scratch: Scratch::default(),
            counters: Counters::default(),
            lookups: LookupStats::default(),
            violations: Vec::new(),
            files: cfg_files.map(|config| FilesWorld {
                config,
                ..FilesWorld::default()
            }),
        }
    }

    // ---- getters ----

    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// Virtual time since the start.
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.now)
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn lookups(&self) -> &LookupStats {
        &self.lookups
    }

    /// Hands over the lookup outcomes gathered so far and starts a fresh tally.
    pub fn take_lookups(&mut self) -> LookupStats {
        std::mem::take(&mut self.lookups)
    }

    /// The first violations found (all are counted in [`Counters::violations`]).
    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    pub fn member_count(&self) -> usize {
        self.member_list.len()
    }

    pub fn live_count(&self) -> usize {
        self.nodes.iter().flatten().count()
    }

    /// Every live node, in address order.
    pub fn nodes(&self) -> impl Iterator<Item = (Addr, &ChordNode<Addr>)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (Addr(i as u32), &n.core)))
    }

    pub fn node(&self, addr: Addr) -> Option<&ChordNode<Addr>> {
        self.slot(addr).map(|n| &n.core)
    }

    /// Lookups started but not finished yet, over all nodes.
    pub fn lookups_in_flight(&self) -> usize {
        self.nodes.iter().flatten().map(|n| n.lookups.len()).sum()
    }

    /// successor(key) among live members: the node that should answer a lookup for `key`.
    pub fn true_owner(&self, key: &Id) -> Option<(Id, Addr)> {
        self.members
            .range(key..)
            .next()
            .or_else(|| self.members.iter().next())
            .map(|(id, addr)| (*id, *addr))
    }

    /// The world's one random source, for workloads that must stay reproducible too.
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    pub fn set_net(&mut self, net: NetConfig) {
        self.cfg.net = net;
    }

    pub fn set_check_every(&mut self, k: u64) {
        self.cfg.check_every = k;
    }

    /// The results two runs with the same seed must share.
    pub fn summary(&self) -> Summary {
        Summary {
            now_ns: self.now,
            counters: self.counters.clone(),
            lookups: self.lookups.clone(),
            live_nodes: self.live_count(),
            members: self.member_count(),
            fingerprint: self.fingerprint(),
        }
    }

    /// FNV-1a over every live node's routing state, in address order.
    pub fn fingerprint(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for b in bytes {
                h ^= *b as u64;
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        for (addr, node) in self.nodes() {
            eat(&addr.0.to_be_bytes());
            eat(&node.id().0);
            let pred = node.predecessor().map(|p| p.id).unwrap_or_default();
            eat(&pred.0);
            for s in node.successors() {
                eat(&s.id.0);
            }
            for f in node.fingers().iter().flatten() {
                eat(&f.id.0);
            }
        }
        h
    }

    // ---- injecting work ----

    /// Queues `op` to run `after` from now.
    pub fn schedule(&mut self, after: Duration, op: Op) {
        let at = self.now + after.as_nanos() as u64;
        self.push(at, Action::Op(op));
    }

    /// Runs `op` at once. Returns the node it concerned, if any.
    pub fn apply(&mut self, op: Op) -> Option<Addr> {
        let addr = self.run_op(op);
        self.counters.events += 1;
        self.after_event();
        addr
    }

    fn run_op(&mut self, op: Op) -> Option<Addr> {
        match op {
            Op::Join => Some(self.spawn()),
            Op::Leave => self.random_member().inspect(|&a| self.leave(a)),
            Op::Crash => self.random_member().inspect(|&a| self.crash(a)),
            Op::Lookup => {
                let from = self.random_member();
                if let Some(from) = from {
                    let key = Id(self.rng.gen());
                    self.lookup(from, key);
                }
                from
            }
        }
    }

    /// Crashes `fraction` of the members at once (chosen at random), as in the paper's
    /// simultaneous-failure experiment. Returns how many crashed.
    pub fn crash_fraction(&mut self, fraction: f64) -> usize {
        let count = ((self.member_list.len() as f64) * fraction).round() as usize;
        let count = count.min(self.member_list.len().saturating_sub(1));
        for _ in 0..count {
            if let Some(addr) = self.random_member() {
                self.crash(addr);
            }
        }
        self.after_event();
        count
    }

    /// Starts a lookup of `key` at `from`; its outcome lands in [`Sim::lookups`].
    pub fn lookup(&mut self, from: Addr, key: Id) {
        let now = self.instant();
        let Some(node) = self.slot_mut(from) else {
            return;
        };
        let id = node.core.lookup(now, key);
        node.lookups.insert(id, UserLookup { key, timeouts: 0 });
        node.lookup_keys.insert(key, id);
        self.lookups.started += 1;
        self.touched.push(from);
        self.drain(from);
    }

    /// Removes `addr` without a word: its peers find out through their own rpc deadlines.
    pub fn crash(&mut self, addr: Addr) {
        if self.remove_node(addr, true) {
            self.counters.crashes += 1;
        }
    }

    /// Informed leave: the node hands its files over (with files on: it asks its successors
    /// what they lack first, and leaves once they answered or a deadline passed), tells its
    /// neighbours (`ChordNode::leave`), its messages go out, then it vanishes without waiting
    /// for their acknowledgements.
    pub fn leave(&mut self, addr: Addr) {
        if self.files_begin_leave(addr) {
            return;
        }
        self.leave_now(addr);
    }

    pub(super) fn leave_now(&mut self, addr: Addr) {
        let now = self.instant();
        let Some(node) = self.slot_mut(addr) else {
            return;
        };
        node.core.leave(now);
        self.drain(addr);
        if self.remove_node(addr, false) {
            self.counters.leaves += 1;
        }
    }

    // ---- running ----

    /// Processes the next event. Returns false if nothing is queued.
    pub fn step(&mut self) -> bool {
        let Some(next) = self.queue.pop() else {
            return false;
        };
        self.now = self.now.max(next.at);
        if self.dispatch(next.action) {
            self.counters.events += 1;
            self.after_event();
        }
        true
    }

    /// Runs every event due within `d` of now, then moves the clock to now + `d`.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d.as_nanos() as u64;
        while self.queue.peek().is_some_and(|e| e.at <= until) {
            self.step();
        }
        self.now = self.now.max(until);
    }

    /// Runs until `events` more events have been processed (or nothing is left to do).
    pub fn run_events(&mut self, events: u64) {
        let target = self.counters.events + events;
        while self.counters.events < target && self.step() {}
    }

    // ---- internals ----

    fn instant(&self) -> Instant {
        self.base + Duration::from_nanos(self.now)
    }

    fn virtual_of(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_nanos() as u64
    }

    fn push(&mut self, at: u64, action: Action) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at,
            seq: self.seq,
            action,
        });
    }

    fn slot(&self, addr: Addr) -> Option<&SimNode> {
        self.nodes.get(addr.0 as usize).and_then(Option::as_ref)
    }

    fn slot_mut(&mut self, addr: Addr) -> Option<&mut SimNode> {
        self.nodes.get_mut(addr.0 as usize).and_then(Option::as_mut)
    }

    /// Whether `addr` is a live node that founded the ring or completed its join.
    pub fn is_member(&self, addr: Addr) -> bool {
        self.member_pos
            .get(addr.0 as usize)
            .is_some_and(|&p| p != NOT_MEMBER)
    }

    fn random_member(&mut self) -> Option<Addr> {
        if self.member_list.is_empty() {
            return None;
        }
        let i = self.rng.gen_range(0..self.member_list.len());
        Some(self.member_list[i])
    }

    fn add_member(&mut self, addr: Addr) {
        if self.is_member(addr) {
            return;
        }
        let Some(id) = self.slot(addr).map(|n| n.core.id()) else {
            return;
        };
        if let Some(n) = self.slot_mut(addr) {
            n.member = true;
        }
        self.member_pos[addr.0 as usize] = self.member_list.len();
        self.member_list.push(addr);
        self.members.insert(id, addr);
        self.scratch.stale = true;
    }

    /// Takes a node out of the world (crash or leave). Returns false if it was not there.
    fn remove_node(&mut self, addr: Addr, crashed: bool) -> bool {
        let Some(mut node) = self.nodes.get_mut(addr.0 as usize).and_then(Option::take) else {
            return false;
        };
        self.files_removed(node.files.take(), crashed);
        // Its unfinished lookups die with it; they are not counted as outcomes.
        self.lookups.started -= node.lookups.len() as u64;
        let pos = self.member_pos[addr.0 as usize];
        if pos != NOT_MEMBER {
            self.member_list.swap_remove(pos);
            if let Some(&moved) = self.member_list.get(pos) {
                self.member_pos[moved.0 as usize] = pos;
            }
            self.member_pos[addr.0 as usize] = NOT_MEMBER;
            self.members.remove(&node.core.id());
            self.scratch.stale = true;
        }
        true
    }

    /// A new node: it founds the ring if there is no member, else joins through a random one.
    fn spawn(&mut self) -> Addr {
        let addr = Addr(self.nodes.len() as u32);
        let id = loop {
            let id = Id(self.rng.gen());
            if !self.members.contains_key(&id) {
                break id;
            }
        };
        let core = ChordNode::new(NodeRef { id, addr }, self.cfg.chord.clone(), self.instant());
        self.nodes.push(Some(SimNode {
            core,
            member: false,
            timer: None,
            lookups: BTreeMap::new(),
            lookup_keys: BTreeMap::new(),
            files: self.files.as_ref().map(|_| NodeFiles::default()),
        }));
        if let Some(interval) = self.files.as_ref().map(|w| w.config.repair_interval) {
            // The first round at a random point of the interval, so rounds do not march in step.
            let first = self.rng.gen_range(0..=interval.as_nanos() as u64);
            self.schedule_repair(addr, self.now + first);
        }
        self.member_pos.push(NOT_MEMBER);
        self.scratch.spawned(id);
        if self.member_list.is_empty() {
            self.add_member(addr);
            self.counters.joins += 1;
        } else {
            self.start_join(addr);
        }
        self.touched.push(addr);
        self.drain(addr);
        addr
    }

    fn start_join(&mut self, addr: Addr) {
        let Some(via) = self.random_member() else {
            return;
        };
        let Some(via_ref) = self.slot(via).map(|n| n.core.me().clone()) else {
            return;
        };
        let now = self.instant();
        let Some(node) = self.slot_mut(addr) else {
            return;
        };
        if let Err(e) = node.core.join(now, via_ref) {
            tracing::debug!(?addr, %e, "join refused by the core");
        }
    }

    /// Runs one action; false when it turned out to be a stale timer (nothing happened).
    fn dispatch(&mut self, action: Action) -> bool {
        match action {
            Action::Request {
                from,
                to,
                id,
                request,
            } => {
                let key = match &request {
                    Request::FindSuccessor { key } => Some(*key),
                    _ => None,
                };
                let now = self.instant();
                let Some(node) = self.slot_mut(to) else {
                    self.counters.undeliverable += 1;
                    self.count_timeout(from, key);
                    return true;
                };
                let response = node.core.handle_request(now, request);
                self.touched.push(to);
                self.drain(to);
                let back = Action::Response {
                    to: from,
                    id,
                    response,
                    key,
                };
                self.transmit(from, key, back);
            }
            Action::Response {
                to,
                id,
                response,
                key,
            } => {
                let now = self.instant();
                let Some(node) = self.slot_mut(to) else {
                    return true;
                };
                if !node.core.handle_response(now, id, response) {
                    self.counters.late += 1;
                    self.count_timeout(to, key);
                }
                self.touched.push(to);
                self.drain(to);
            }
            Action::Timer(addr) => {
                let (at, now) = (self.now, self.instant());
                let Some(node) = self.slot_mut(addr) else {
                    return false;
                };
                if node.timer != Some(at) {
                    return false;
                }
                node.timer = None;
                node.core.handle_timeout(now);
                self.touched.push(addr);
                self.drain(addr);
            }
            Action::RetryJoin(addr) => {
                if self.slot(addr).is_some_and(|n| !n.member) {
                    self.start_join(addr);
                    self.touched.push(addr);
                    self.drain(addr);
                }
            }
            Action::Op(op) => {
                self.run_op(op);
            }
            Action::File { from, to, msg } => {
                if self.slot(to).is_none() {
                    self.counters.undeliverable += 1;
                    return true;
                }
                self.on_file_msg(from, to, *msg);
            }
            Action::Repair(addr) => {
                if self.slot(addr).is_none() {
                    return false;
                }
                self.files_round(addr, true);
            }
            Action::RepairNow(addr) => {
                if self.slot(addr).is_none() {
                    return false;
                }
                self.files_round(addr, false);
            }
            Action::ChallengeDue(addr, key) => self.finish_challenge(addr, key),
            Action::LeaveDue(addr) => self.files_finish_leave(addr),
        }
        true
    }

    // ---- what the file layer (`sim::files`) uses ----

    pub(super) fn files_of(&self, addr: Addr) -> Option<&NodeFiles> {
        self.slot(addr)?.files.as_ref()
    }

    pub(super) fn files_of_mut(&mut self, addr: Addr) -> Option<&mut NodeFiles> {
        self.slot_mut(addr)?.files.as_mut()
    }

    pub(super) fn random_member_addr(&mut self) -> Option<Addr> {
        self.random_member()
    }

    pub(super) fn schedule_repair(&mut self, addr: Addr, at: u64) {
        self.push(at, Action::Repair(addr));
    }

    pub(super) fn schedule_repair_now(&mut self, addr: Addr, at: u64) {
        self.push(at, Action::RepairNow(addr));
    }

    pub(super) fn schedule_challenge_due(&mut self, addr: Addr, key: Id, at: u64) {
        self.push(at, Action::ChallengeDue(addr, key));
    }

    pub(super) fn schedule_leave_due(&mut self, addr: Addr, at: u64) {
        self.push(at, Action::LeaveDue(addr));
    }

    pub(super) fn transmit_file(&mut self, from: Addr, to: Addr, msg: FileMsg) {
        let msg = Box::new(msg);
        self.transmit(from, None, Action::File { from, to, msg });
    }

    pub(super) fn instant_now(&self) -> Instant {
        self.instant()
    }

    pub(super) fn core_lookup(&mut self, addr: Addr, now: Instant, key: Id) -> Option<LookupId> {
        let id = self.slot_mut(addr)?.core.lookup(now, key);
        self.touched.push(addr);
        Some(id)
    }

    pub(super) fn drain_node(&mut self, addr: Addr) {
        self.drain(addr);
    }

    pub(super) fn record_violation(&mut self, v: String) {
        self.counters.violations += 1;
        let v = format!("t={:?} event {}: {v}", self.now(), self.counters.events);
        tracing::warn!("{v}");
        if self.violations.len() < KEEP_VIOLATIONS {
            self.violations.push(v);
        }
    }

    /// Puts a message on the wire: maybe lost, else delivered after a random delay.
    fn transmit(&mut self, sender: Addr, key: Option<Id>, action: Action) {
        self.counters.messages += 1;
        let net = &self.cfg.net;
        let (loss, reorder) = (net.loss, net.reorder);
        let (min, max) = (
            net.min_delay.as_nanos() as u64,
            net.max_delay.as_nanos() as u64,
        );
        let extra = net.reorder_delay.as_nanos() as u64;
        if loss > 0.0 && self.rng.gen::<f64>() < loss {
            self.counters.lost += 1;
            self.count_timeout(sender, key);
            return;
        }
        let mut delay = self.rng.gen_range(min..=max.max(min));
        if reorder > 0.0 && self.rng.gen::<f64>() < reorder {
            delay += self.rng.gen_range(0..=extra);
        }
        self.push(self.now + delay, action);
    }

    /// A request of a user lookup at `addr` for `key` will not be answered in time.
    fn count_timeout(&mut self, addr: Addr, key: Option<Id>) {
        let Some(key) = key else {
            return;
        };
        let Some(node) = self.slot_mut(addr) else {
            return;
        };
        if let Some(id) = node.lookup_keys.get(&key).copied() {
            if let Some(l) = node.lookups.get_mut(&id) {
                l.timeouts += 1;
            }
        }
    }

    /// After an input: send what the core wants sent, act on its events, and make sure a
    /// timer is queued for its next deadline.
    fn drain(&mut self, addr: Addr) {
        let mut transmits = Vec::new();
        let mut events = Vec::new();
        let wake = {
            let Some(node) = self.slot_mut(addr) else {
                return;
            };
            while let Some(t) = node.core.poll_transmit() {
                transmits.push(t);
            }
            while let Some(e) = node.core.poll_event() {
                events.push(e);
            }
            node.core.poll_timeout()
        };
        for t in transmits {
            let key = match &t.request {
                Request::FindSuccessor { key } => Some(*key),
                _ => None,
            };
            let action = Action::Request {
                from: addr,
                to: t.to.addr,
                id: t.id,
                request: t.request,
            };
            self.transmit(addr, key, action);
        }
        for e in events {
            self.on_core_event(addr, e);
        }
        if let Some(wake) = wake {
            let at = self.virtual_of(wake).max(self.now);
            if let Some(node) = self.slot_mut(addr) {
                if node.timer.is_none_or(|t| at < t) {
                    node.timer = Some(at);
                    self.push(at, Action::Timer(addr));
                }
            }
        }
    }

    fn on_core_event(&mut self, addr: Addr, event: Event<Addr>) {
        match event {
            Event::Joined { .. } => {
                self.add_member(addr);
                self.counters.joins += 1;
            }
            Event::JoinFailed(e) => {
                tracing::debug!(?addr, %e, "join failed; retrying");
                self.counters.join_failures += 1;
                let at = self.now + self.cfg.join_retry.as_nanos() as u64;
                self.push(at, Action::RetryJoin(addr));
            }
            Event::LookupDone { id, result } => self.on_lookup_done(addr, id, result),
            Event::PredecessorChanged { .. } | Event::SuccessorChanged { .. } => {
                self.files_ring_changed(addr)
            }
            Event::Left => {}
        }
    }

    fn on_lookup_done(
        &mut self,
        addr: Addr,
        id: LookupId,
        result: Result<LookupResult<Addr>, LookupError>,
    ) {
        if self.files_lookup_done(addr, id, &result) {
            return;
        }
        let Some(node) = self.slot_mut(addr) else {
            return;
        };
        let Some(record) = node.lookups.remove(&id) else {
            return;
        };
        node.lookup_keys.remove(&record.key);
        self.lookups.timeouts += record.timeouts as u64;
        match result {
            Ok(found) => {
                let truth = self.true_owner(&record.key).map(|(id, _)| id);
                if truth == Some(found.owner.id) {
                    self.lookups.ok += 1;
                } else {
                    self.lookups.wrong += 1;
                }
                self.lookups.hops.push(found.hops);
            }
            Err(_) => self.lookups.failed += 1,
        }
    }

    /// Runs the oracle when it is due.
    fn after_event(&mut self) {
        let k = self.cfg.check_every;
        if k > 0 && self.counters.events.is_multiple_of(k) {
            self.counters.checks += 1;
            if let Err(v) = self.check_running() {
                self.record_violation(v);
            }
            self.touched.clear();
        }
    }
}
