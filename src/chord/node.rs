//! One node's Chord protocol as a sans-IO state machine (Zave's corrected rules, DESIGN.md §3).
//!
//! Call order, for any driver: feed inputs (`handle_request`, `handle_response`, `handle_failure`,
//! `handle_timeout`, and the commands `join` / `lookup` / `leave`), then drain `poll_transmit`
//! and `poll_event`, then sleep until `poll_timeout`. Time is always passed in; the core never
//! reads a clock, spawns or sends anything itself, so the same code runs under libp2p and under
//! the deterministic simulator.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::id::{Id, M};
use super::lookup::{Lookup, LookupError, LookupResult, Next};
use super::message::{NodeRef, Request, Response};
use super::routing::Routing;

/// Timing and sizing of the protocol.
#[derive(Clone, Debug)]
pub struct Config {
    /// Successor-list length r.
    pub successors: usize,
    /// How often stabilize runs (and check_predecessor, and one fix_fingers step).
    pub stabilize_interval: Duration,
    /// How long any request may take before its target counts as failed.
    pub rpc_timeout: Duration,
    /// How many candidates a lookup step offers (the first is the closest preceding node, the
    /// rest let the asker route around failures).
    pub lookup_candidates: usize,
    /// Ping the owner a lookup found before reporting it, falling back to its successors, so a
    /// crashed owner is never reported while the ring repairs itself. Costs one round trip.
    pub verify_owner: bool,
    /// Route lookups through fingers only, as the Chord paper's closest_preceding_finger does,
    /// instead of through every known node (successor list and predecessor too). Shorter paths
    /// are the default; this is for measuring against the paper.
    pub finger_routing: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            successors: 8,
            stabilize_interval: Duration::from_secs(1),
            rpc_timeout: Duration::from_secs(3),
            lookup_candidates: 3,
            verify_owner: true,
            finger_routing: false,
        }
    }
}

/// Stabilize rounds a node waits for its only known peer before it concludes it is alone.
const LONE_PATIENCE: u32 = 5;

/// Identifies a request this core sent; the driver hands it back with the answer.
pub type RequestId = u64;
/// Identifies a lookup started with [`ChordNode::lookup`].
pub type LookupId = u64;

/// A request for the driver to deliver.
#[derive(Clone, Debug)]
pub struct Transmit<A> {
    pub id: RequestId,
    pub to: NodeRef<A>,
    pub request: Request<A>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("this node is already part of a ring")]
    AlreadyInRing,
    #[error("the ring could not be reached: {0}")]
    Lookup(#[from] LookupError),
    #[error("the successor found for this node did not answer")]
    SuccessorUnreachable,
    #[error("the ring answered with this node's own id and no other node")]
    NoOtherNode,
}

/// What happened, for the driver and its users.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event<A> {
    LookupDone {
        id: LookupId,
        result: Result<LookupResult<A>, LookupError>,
    },
    Joined {
        successor: NodeRef<A>,
    },
    JoinFailed(JoinError),
    /// An informed leave is complete: the neighbours were told (or did not answer in time).
    Left,
    PredecessorChanged {
        old: Option<NodeRef<A>>,
        new: Option<NodeRef<A>>,
    },
    SuccessorChanged {
        old: NodeRef<A>,
        new: NodeRef<A>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// In a ring, possibly alone. Periodic work runs.
    Active,
    Joining,
    Leaving,
    Left,
}

/// Why a request was sent: decides what its answer means.
#[derive(Clone, Debug)]
enum Op<A> {
    Stabilize {
        succ: NodeRef<A>,
    },
    /// `candidate` = the successor's predecessor, queried before it is adopted (Zave).
    StabilizeCandidate {
        candidate: NodeRef<A>,
        succ: Option<NodeRef<A>>,
    },
    Notify,
    CheckPredecessor {
        pred: Id,
    },
    /// Rectify: the current predecessor is pinged; `candidate` replaces it if it is dead.
    Rectify {
        pred: Id,
        candidate: NodeRef<A>,
    },
    LookupStep {
        lookup: LookupId,
        to: Id,
    },
    LookupVerify {
        lookup: LookupId,
        to: Id,
    },
    JoinNeighbours {
        owner: NodeRef<A>,
    },
    Leave,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    User,
    Join,
    Finger(usize),
}

#[derive(Clone, Debug)]
struct Pending<A> {
    op: Op<A>,
    deadline: Instant,
}

#[derive(Clone, Debug)]
struct LookupTask<A> {
    lookup: Lookup<A>,
    purpose: Purpose,
}

#[derive(Clone, Debug)]
pub struct ChordNode<A> {
    config: Config,
    routing: Routing<A>,
    phase: Phase,
    pending: BTreeMap<RequestId, Pending<A>>,
    lookups: BTreeMap<LookupId, LookupTask<A>>,
    transmits: VecDeque<Transmit<A>>,
    events: VecDeque<Event<A>>,
    next_request: RequestId,
    next_lookup: LookupId,
    /// When the next round of periodic work (stabilize, check_predecessor, fix_fingers) is due.
    periodic_at: Instant,
    /// Periodic rounds run so far (for metrics).
    rounds: u64,
    stabilizing: bool,
    /// Stabilize rounds in a row that the only known other node has not answered.
    lone_successor_misses: u32,
    finger_lookup: Option<LookupId>,
    next_finger: usize,
    /// Neighbours that announced an informed leave, and when. Requests the leaver sent just
    /// before its `Leaving` (a notify, say) may arrive after it on another stream; for one RPC
    /// timeout such stale mentions are ignored, so the leaver is not taken back in.
    departed: Vec<(Id, Instant)>,
}

impl<A: Clone + std::fmt::Debug> ChordNode<A> {
    /// A node alone in its own ring.
    pub fn new(me: NodeRef<A>, config: Config, now: Instant) -> Self {
        let routing = Routing::new(me, config.successors);
        ChordNode {
            periodic_at: now + config.stabilize_interval,
            rounds: 0,
            config,
            routing,
            phase: Phase::Active,
            pending: BTreeMap::new(),
            lookups: BTreeMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next_request: 0,
            next_lookup: 0,
            stabilizing: false,
            lone_successor_misses: 0,
            finger_lookup: None,
            next_finger: 0,
            departed: Vec::new(),
        }
    }

    // ---- getters ----

    pub fn me(&self) -> &NodeRef<A> {
        self.routing.me()
    }

    pub fn id(&self) -> Id {
        self.routing.me().id
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn predecessor(&self) -> Option<&NodeRef<A>> {
        self.routing.predecessor()
    }

    /// The successor list; empty when alone.
    pub fn successors(&self) -> &[NodeRef<A>] {
        self.routing.successors()
    }

    pub fn successor(&self) -> &NodeRef<A> {
        self.routing.successor()
    }

    pub fn fingers(&self) -> &[Option<NodeRef<A>>] {
        self.routing.fingers()
    }

    /// Whether this node is responsible for `key`: it lies in (predecessor, self]. Unknown
    /// predecessor: only when alone.
    pub fn owns(&self, key: &Id) -> bool {
        match self.routing.predecessor() {
            Some(p) => key.in_half_open(&p.id, &self.id()),
            None => self.routing.is_alone(),
        }
    }

    /// Updates this node's own address (e.g. once the transport knows its listen addresses).
    pub fn set_my_addr(&mut self, addr: A) {
        self.routing.set_my_addr(addr);
    }

    #[cfg(test)]
    pub(crate) fn set_successors_for_test(&mut self, list: Vec<NodeRef<A>>) {
        self.routing.set_successors(list);
    }

    // ---- commands ----

    /// Whether this node may join another ring: it is alone, and nobody has joined it either.
    pub fn can_join(&self) -> bool {
        self.phase == Phase::Active
            && self.routing.is_alone()
            && self.routing.predecessor().is_none()
    }

    /// Joins the ring that `via` belongs to. Fails at once if this node is not alone.
    pub fn join(&mut self, now: Instant, via: NodeRef<A>) -> Result<(), JoinError> {
        if !self.can_join() {
            return Err(JoinError::AlreadyInRing);
        }
        self.phase = Phase::Joining;
        // successor(me) is found by asking the ring, never this lonely node.
        let lookup = Lookup::new(self.id(), vec![via], 0)
            .verify_owner(self.config.verify_owner)
            .finger_routing(self.config.finger_routing);
        self.start_lookup(now, lookup, Purpose::Join);
        Ok(())
    }

    /// Starts a lookup of successor(key); the answer comes as [`Event::LookupDone`].
    pub fn lookup(&mut self, now: Instant, key: Id) -> LookupId {
        let lookup = self.local_lookup(key);
        self.start_lookup(now, lookup, Purpose::User)
    }

    /// Starts a lookup that asks `start` first instead of consulting this node's own table: for
    /// clients that are not ring members, and for asking a particular ring.
    pub fn lookup_from(&mut self, now: Instant, key: Id, start: NodeRef<A>) -> LookupId {
        let lookup = Lookup::new(key, vec![start], 0)
            .verify_owner(self.config.verify_owner)
            .finger_routing(self.config.finger_routing);
        self.start_lookup(now, lookup, Purpose::User)
    }

    /// Informed leave: tells predecessor and successor, so they relink at once. Handing over
    /// data is the driver's job and comes first.
    pub fn leave(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Leaving | Phase::Left) {
            return;
        }
        self.phase = Phase::Leaving;
        let me = self.me().clone();
        let message = Request::Leaving {
            node: me,
            predecessor: self.routing.predecessor().cloned(),
            successors: self.routing.successors().to_vec(),
        };
        let mut targets: Vec<NodeRef<A>> = self
            .routing
            .successors()
            .first()
            .cloned()
            .into_iter()
            .collect();
        if let Some(p) = self.routing.predecessor() {
            if targets.iter().all(|t| t.id != p.id) {
                targets.push(p.clone());
            }
        }
        for to in targets {
            self.send(now, to, message.clone(), Op::Leave);
        }
        self.check_left();
    }

    // ---- inputs ----

    /// Answers a request from another node. Every request gets an immediate answer; any
    /// follow-up work (rectify's ping) is queued as transmits.
    pub fn handle_request(&mut self, now: Instant, request: Request<A>) -> Response<A> {
        match request {
            Request::FindSuccessor { key } => Response::Step(self.routing.lookup_step(
                &key,
                self.config.lookup_candidates,
                self.config.finger_routing,
            )),
            Request::GetNeighbours => Response::Neighbours {
                predecessor: self.routing.predecessor().cloned(),
                successors: self.routing.successors().to_vec(),
            },
            Request::Notify { node } => {
                self.rectify(now, node);
                Response::Ack
            }
            Request::Ping => Response::Ack,
            Request::Leaving {
                node,
                predecessor,
                successors,
            } => {
                self.on_neighbour_leaving(now, node, predecessor, successors);
                Response::Ack
            }
        }
    }

    /// The answer to request `id`. Returns false if nothing was waiting for it (late, duplicate).
    pub fn handle_response(&mut self, now: Instant, id: RequestId, response: Response<A>) -> bool {
        let Some(pending) = self.pending.remove(&id) else {
            return false;
        };
        match (pending.op, response) {
            (
                Op::Stabilize { succ },
                Response::Neighbours {
                    predecessor,
                    successors,
                },
            ) => {
                self.lone_successor_misses = 0;
                if self.has_departed(now, &succ.id) {
                    // Answered just before it left; its Leaving has relinked us already.
                    self.stabilizing = false;
                } else {
                    self.on_successor_neighbours(now, succ, predecessor, successors)
                }
            }
            (Op::StabilizeCandidate { candidate, .. }, Response::Neighbours { successors, .. }) => {
                if !self.has_departed(now, &candidate.id) {
                    self.adopt_successors(now, candidate.clone(), successors);
                    self.notify(now, candidate);
                }
                self.stabilizing = false;
            }
            (Op::JoinNeighbours { owner }, Response::Neighbours { successors, .. }) => {
                self.adopt_successors(now, owner.clone(), successors);
                self.phase = Phase::Active;
                self.periodic_at = now;
                self.notify(now, owner.clone());
                self.events.push_back(Event::Joined { successor: owner });
            }
            (Op::LookupStep { lookup, to }, Response::Step(step)) => {
                if let Some(task) = self.lookups.get_mut(&lookup) {
                    task.lookup.on_response(&to, step);
                }
                self.drive_lookup(now, lookup);
            }
            (Op::LookupVerify { lookup, to }, Response::Ack) => {
                if let Some(task) = self.lookups.get_mut(&lookup) {
                    task.lookup.on_alive(&to);
                }
                self.drive_lookup(now, lookup);
            }
            (Op::Notify | Op::CheckPredecessor { .. } | Op::Rectify { .. }, Response::Ack) => {}
            (Op::Leave, Response::Ack) => self.check_left(),
            (op, _) => {
                // A well-formed answer of the wrong kind: the peer is broken; count it as failed.
                return self.fail(now, op);
            }
        }
        true
    }

    /// Request `id` failed (timeout, unreachable, refused). Returns false if nothing was waiting.
    pub fn handle_failure(&mut self, now: Instant, id: RequestId) -> bool {
        match self.pending.remove(&id) {
            Some(pending) => self.fail(now, pending.op),
            None => false,
        }
    }

    /// Expires overdue requests and runs the periodic work that is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let overdue: Vec<RequestId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in overdue {
            self.handle_failure(now, id);
        }
        if self.phase == Phase::Active && self.periodic_at <= now {
            self.periodic_at = now + self.config.stabilize_interval;
            self.rounds += 1;
            self.stabilize(now);
            self.check_predecessor(now);
            self.fix_next_finger(now);
        }
    }

    // ---- outputs ----

    /// How many periodic rounds (stabilize, check_predecessor, fix_fingers) have run.
    pub fn rounds(&self) -> u64 {
        self.rounds
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit<A>> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event<A>> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let periodic = (self.phase == Phase::Active).then_some(self.periodic_at);
        self.pending
            .values()
            .map(|p| p.deadline)
            .chain(periodic)
            .min()
    }

    // ---- the rules ----

    fn send(&mut self, now: Instant, to: NodeRef<A>, request: Request<A>, op: Op<A>) {
        let id = self.next_request;
        self.next_request += 1;
        self.pending.insert(
            id,
            Pending {
                op,
                deadline: now + self.config.rpc_timeout,
            },
        );
        self.transmits.push_back(Transmit { id, to, request });
    }

    fn notify(&mut self, now: Instant, to: NodeRef<A>) {
        let node = self.me().clone();
        self.send(now, to, Request::Notify { node }, Op::Notify);
    }

    /// Stabilize, step 1: ask the first successor for its predecessor and successor list. Alone
    /// but with a predecessor (someone joined through us), that predecessor is the candidate.
    fn stabilize(&mut self, now: Instant) {
        if self.stabilizing {
            return;
        }
        if let Some(succ) = self.routing.successors().first().cloned() {
            self.stabilizing = true;
            self.send(
                now,
                succ.clone(),
                Request::GetNeighbours,
                Op::Stabilize { succ },
            );
        } else if let Some(candidate) = self.routing.predecessor().cloned() {
            self.stabilizing = true;
            let op = Op::StabilizeCandidate {
                candidate: candidate.clone(),
                succ: None,
            };
            self.send(now, candidate, Request::GetNeighbours, op);
        }
    }

    /// Stabilize, step 2: the successor answered.
    fn on_successor_neighbours(
        &mut self,
        now: Instant,
        succ: NodeRef<A>,
        predecessor: Option<NodeRef<A>>,
        successors: Vec<NodeRef<A>>,
    ) {
        self.adopt_successors(now, succ.clone(), successors);
        match predecessor {
            Some(p) if p.id.in_open(&self.id(), &succ.id) && !self.has_departed(now, &p.id) => {
                // A node sits between us and our successor: query it before adopting it.
                let op = Op::StabilizeCandidate {
                    candidate: p.clone(),
                    succ: Some(succ),
                };
                self.send(now, p, Request::GetNeighbours, op);
            }
            _ => {
                self.notify(now, succ);
                self.stabilizing = false;
            }
        }
    }

    /// `succ_list := [first] ++ rest`, trimmed, without nodes that just left; reports a change
    /// of first successor.
    fn adopt_successors(&mut self, now: Instant, first: NodeRef<A>, rest: Vec<NodeRef<A>>) {
        let old = self.routing.successor().clone();
        let rest: Vec<NodeRef<A>> = rest
            .into_iter()
            .filter(|n| !self.has_departed(now, &n.id))
            .collect();
        self.routing
            .set_successors(std::iter::once(first).chain(rest));
        self.report_successor_change(old);
    }

    fn report_successor_change(&mut self, old: NodeRef<A>) {
        let new = self.routing.successor().clone();
        if new.id != old.id {
            self.events.push_back(Event::SuccessorChanged { old, new });
        }
    }

    fn set_predecessor(&mut self, new: Option<NodeRef<A>>) {
        let old = self.routing.predecessor().cloned();
        self.routing.set_predecessor(new);
        let new = self.routing.predecessor().cloned();
        if old.as_ref().map(|n| n.id) != new.as_ref().map(|n| n.id) {
            self.events
                .push_back(Event::PredecessorChanged { old, new });
        }
    }

    /// Rectify (Zave): adopt `node` as predecessor if there is none or it is closer; otherwise
    /// ping the current one and adopt `node` only if that one is dead.
    fn rectify(&mut self, now: Instant, node: NodeRef<A>) {
        if node.id == self.id() || self.has_departed(now, &node.id) {
            return;
        }
        match self.routing.predecessor().cloned() {
            None => self.set_predecessor(Some(node)),
            Some(p) if p.id == node.id => self.routing.set_predecessor(Some(node)),
            Some(p) if node.id.in_open(&p.id, &self.id()) => self.set_predecessor(Some(node)),
            Some(p) => {
                let already = self
                    .pending
                    .values()
                    .any(|x| matches!(&x.op, Op::Rectify { pred, .. } if *pred == p.id));
                if !already {
                    let op = Op::Rectify {
                        pred: p.id,
                        candidate: node,
                    };
                    self.send(now, p, Request::Ping, op);
                }
            }
        }
    }

    fn check_predecessor(&mut self, now: Instant) {
        let Some(p) = self.routing.predecessor().cloned() else {
            return;
        };
        let busy = self.pending.values().any(|x| {
            matches!(&x.op, Op::CheckPredecessor { pred } | Op::Rectify { pred, .. } if *pred == p.id)
        });
        if !busy {
            self.send(
                now,
                p.clone(),
                Request::Ping,
                Op::CheckPredecessor { pred: p.id },
            );
        }
    }

    /// One fix_fingers step: fingers whose start lies before the successor are the successor;
    /// the first one that does not gets a lookup.
    fn fix_next_finger(&mut self, now: Instant) {
        if self.finger_lookup.is_some() {
            return;
        }
        let me = self.id();
        let succ = self.routing.successor().clone();
        for _ in 0..M {
            let i = self.next_finger;
            let start = me.finger_start(i);
            if start.in_half_open(&me, &succ.id) {
                self.routing.set_finger(i, succ.clone());
                self.next_finger = (i + 1) % M;
                if self.next_finger == 0 {
                    return; // one full round per call at most
                }
                continue;
            }
            let lookup = self.local_lookup(start);
            let id = self.start_lookup(now, lookup, Purpose::Finger(i));
            if self.lookups.contains_key(&id) {
                self.finger_lookup = Some(id);
            }
            return;
        }
    }

    /// A finger lookup ended: finger i and every later finger whose start also lies in
    /// (me, owner] get the owner.
    fn on_finger_found(&mut self, i: usize, result: Result<LookupResult<A>, LookupError>) {
        self.next_finger = (i + 1) % M;
        let Ok(result) = result else {
            return;
        };
        let me = self.id();
        let mut j = i;
        while j < M && (j == i || me.finger_start(j).in_half_open(&me, &result.owner.id)) {
            self.routing.set_finger(j, result.owner.clone());
            j += 1;
        }
        self.next_finger = j % M;
    }

    fn on_neighbour_leaving(
        &mut self,
        now: Instant,
        node: NodeRef<A>,
        predecessor: Option<NodeRef<A>>,
        successors: Vec<NodeRef<A>>,
    ) {
        if node.id == self.id() {
            return;
        }
        self.departed
            .retain(|(_, at)| now < *at + self.config.rpc_timeout);
        self.departed.push((node.id, now));
        if self.routing.predecessor().is_some_and(|p| p.id == node.id) {
            self.set_predecessor(predecessor.filter(|p| p.id != node.id));
        }
        if let Some(at) = self
            .routing
            .successors()
            .iter()
            .position(|s| s.id == node.id)
        {
            let old = self.routing.successor().clone();
            let before: Vec<NodeRef<A>> = self.routing.successors()[..at].to_vec();
            let after = successors.into_iter().filter(|s| s.id != node.id);
            self.routing.set_successors(before.into_iter().chain(after));
            self.report_successor_change(old.clone());
            let new = self.routing.successor().clone();
            if new.id != old.id && !self.routing.is_alone() {
                self.notify(now, new);
            }
        }
        self.routing.forget_finger(&node.id);
    }

    fn has_departed(&self, now: Instant, id: &Id) -> bool {
        self.departed
            .iter()
            .any(|(d, at)| d == id && now < *at + self.config.rpc_timeout)
    }

    fn check_left(&mut self) {
        let waiting = self.pending.values().any(|p| matches!(p.op, Op::Leave));
        if self.phase == Phase::Leaving && !waiting {
            self.phase = Phase::Left;
            self.events.push_back(Event::Left);
        }
    }

    /// A lookup that starts from this node's own routing state. Locally every known preceding
    /// node is a candidate (not only the few a remote answer carries), so a lookup started here
    /// can route around as many failures as this node knows ways past.
    fn local_lookup(&self, key: Id) -> Lookup<A> {
        let step = self
            .routing
            .lookup_step(&key, usize::MAX, self.config.finger_routing);
        Lookup::from_local_step(self.id(), key, step, self.config.finger_routing)
            .verify_owner(self.config.verify_owner)
    }

    fn start_lookup(&mut self, now: Instant, lookup: Lookup<A>, purpose: Purpose) -> LookupId {
        let id = self.next_lookup;
        self.next_lookup += 1;
        self.lookups.insert(id, LookupTask { lookup, purpose });
        self.drive_lookup(now, id);
        id
    }

    fn drive_lookup(&mut self, now: Instant, id: LookupId) {
        loop {
            let Some(task) = self.lookups.get_mut(&id) else {
                return;
            };
            match task.lookup.next_action() {
                Next::Ask(node) if node.id == self.routing.me().id => {
                    // A path can lead back here (during joins, or stale views): answer locally.
                    let step = self.routing.lookup_step(
                        &task.lookup.key(),
                        self.config.lookup_candidates,
                        self.config.finger_routing,
                    );
                    let me = node.id;
                    if let Some(task) = self.lookups.get_mut(&id) {
                        task.lookup.on_response(&me, step);
                    }
                }
                Next::Ask(node) => {
                    let key = task.lookup.key();
                    let op = Op::LookupStep {
                        lookup: id,
                        to: node.id,
                    };
                    self.send(now, node, Request::FindSuccessor { key }, op);
                    return;
                }
                Next::Verify(node) if node.id == self.routing.me().id => {
                    task.lookup.on_alive(&node.id);
                }
                Next::Verify(node) => {
                    let op = Op::LookupVerify {
                        lookup: id,
                        to: node.id,
                    };
                    self.send(now, node, Request::Ping, op);
                    return;
                }
                Next::Waiting => return,
                Next::Finished => {
                    if let Some(task) = self.lookups.remove(&id) {
                        let result = task
                            .lookup
                            .into_outcome()
                            .unwrap_or(Err(LookupError::Unreachable));
                        self.finish_lookup(now, id, task.purpose, result);
                    }
                    return;
                }
            }
        }
    }

    fn finish_lookup(
        &mut self,
        now: Instant,
        id: LookupId,
        purpose: Purpose,
        result: Result<LookupResult<A>, LookupError>,
    ) {
        match purpose {
            Purpose::User => self.events.push_back(Event::LookupDone { id, result }),
            Purpose::Finger(i) => {
                self.finger_lookup = None;
                self.on_finger_found(i, result);
            }
            Purpose::Join => match result {
                Err(e) => self.join_failed(JoinError::Lookup(e)),
                Ok(found) => {
                    // If the ring still lists a previous incarnation of this node, take the next.
                    let me = self.id();
                    let owner = std::iter::once(found.owner)
                        .chain(found.backups)
                        .find(|n| n.id != me);
                    match owner {
                        Some(owner) => {
                            let op = Op::JoinNeighbours {
                                owner: owner.clone(),
                            };
                            self.send(now, owner, Request::GetNeighbours, op);
                        }
                        None => self.join_failed(JoinError::NoOtherNode),
                    }
                }
            },
        }
    }

    fn join_failed(&mut self, error: JoinError) {
        self.phase = Phase::Active;
        self.events.push_back(Event::JoinFailed(error));
    }

    fn fail(&mut self, now: Instant, op: Op<A>) -> bool {
        match op {
            Op::Stabilize { succ } => {
                // Drop the dead successor and go on with the next live entry at once.
                let old = self.routing.successor().clone();
                let last_one = self.routing.successors().len() == 1;
                let fallback = self.routing.nearest_known(&succ.id);
                if last_one && fallback.is_none() && self.lone_successor_misses < LONE_PATIENCE {
                    // The only node this one knows did not answer. One lost message is no
                    // proof of death, and giving up would split the ring in two: keep it,
                    // and ask again next round.
                    self.lone_successor_misses += 1;
                    self.stabilizing = false;
                    return true;
                }
                self.lone_successor_misses = 0;
                self.routing.remove_successor(&succ.id);
                self.routing.forget_finger(&succ.id);
                if self.routing.is_alone() {
                    if let Some(next) = fallback {
                        self.routing.set_successors([next]);
                    }
                }
                self.report_successor_change(old);
                self.stabilizing = false;
                if self.phase == Phase::Active {
                    self.stabilize(now);
                }
            }
            Op::StabilizeCandidate { candidate, succ } => {
                self.routing.forget_finger(&candidate.id);
                if let Some(succ) = succ {
                    self.notify(now, succ);
                }
                self.stabilizing = false;
            }
            Op::Notify | Op::Leave => {}
            Op::CheckPredecessor { pred } => {
                if self.routing.predecessor().is_some_and(|p| p.id == pred) {
                    self.set_predecessor(None);
                }
            }
            Op::Rectify { pred, candidate } => {
                if self.routing.predecessor().is_some_and(|p| p.id == pred) {
                    self.set_predecessor(Some(candidate));
                }
            }
            Op::LookupStep { lookup, to } | Op::LookupVerify { lookup, to } => {
                self.routing.forget_finger(&to);
                if let Some(task) = self.lookups.get_mut(&lookup) {
                    task.lookup.on_failure(&to);
                }
                self.drive_lookup(now, lookup);
            }
            Op::JoinNeighbours { .. } => self.join_failed(JoinError::SuccessorUnreachable),
        }
        if matches!(self.phase, Phase::Leaving) {
            self.check_left();
        }
        true
    }
}
