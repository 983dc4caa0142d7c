//! The iterative lookup as an explicit state machine: `next_action` says whom to ask, `on_response` and
//! `on_failure` feed answers back. It holds no clock and sends nothing; whoever drives it does.

use std::collections::BTreeSet;

use super::id::Id;
use super::message::{LookupStep, NodeRef};

/// Upper bound on nodes asked by one lookup: O(log N) is the norm, this only stops a lookup fed
/// by broken or hostile nodes.
pub const MAX_ASKS: u32 = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupResult<A> {
    pub key: Id,
    pub owner: NodeRef<A>,
    /// The owner's next successors, as reported by the node that answered.
    pub backups: Vec<NodeRef<A>>,
    /// Path length as in the Chord paper: how many nodes forwarded the lookup. 0 when the first
    /// node asked knew the owner as its own successor.
    pub hops: u32,
    /// The nodes whose answers led here, in the order they answered (the asking node first
    /// when it started from its own table): the path a picture of the lookup draws.
    pub path: Vec<Id>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("no node on the lookup path answered")]
    Unreachable,
    #[error("lookup gave up after asking {MAX_ASKS} nodes")]
    TooManySteps,
}

/// What the driver should do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next<A> {
    /// Send a lookup step for the key to this node.
    Ask(NodeRef<A>),
    /// Ping this node: it was named as the owner, and a dead owner must not be reported. If it
    /// does not answer, the next backup (the next live successor) is the owner.
    Verify(NodeRef<A>),
    /// An answer is awaited.
    Waiting,
    /// The lookup is over: take `outcome`.
    Finished,
}

#[derive(Clone, Debug)]
enum Phase<A> {
    /// Walking towards the key.
    Route,
    /// The owner was named; `candidates` = [owner, backups...] are checked in order.
    Verify { candidates: Vec<NodeRef<A>> },
}

#[derive(Clone, Debug)]
pub struct Lookup<A> {
    key: Id,
    phase: Phase<A>,
    /// Nodes to try, best first. Later entries are the fallbacks that route around failures.
    queue: Vec<NodeRef<A>>,
    asked: BTreeSet<Id>,
    waiting: Option<Id>,
    hops: u32,
    /// Who answered a step, in order.
    path: Vec<Id>,
    verify: bool,
    /// Take the answerer's successors between it and the key as next hops too (the default);
    /// off, only the nodes it offered count, as in the paper's finger walk.
    via_successors: bool,
    /// From the answerer closest to the key so far: its successors at or past the key. If
    /// routing runs out of live nodes, the first live one of these is the owner.
    fallback: Option<(Id, Vec<NodeRef<A>>)>,
    /// Every node this lookup has heard of, so a node claiming to be alone on the ring (a
    /// `Found` naming itself) can be caught out.
    seen: BTreeSet<Id>,
    /// A node that named itself the owner while others are known (a view from before it
    /// learned of them, or a lie): believed only if routing finds nothing better.
    lonely: Option<(NodeRef<A>, Vec<NodeRef<A>>)>,
    outcome: Option<Result<LookupResult<A>, LookupError>>,
}

impl<A: Clone> Lookup<A> {
    /// A lookup that starts by asking `start` (best first). `hops` counts forwards that already
    /// happened before the first remote ask (1 when the local node forwarded).
    pub fn new(key: Id, start: Vec<NodeRef<A>>, hops: u32) -> Self {
        let seen = start.iter().map(|n| n.id).collect();
        Lookup {
            key,
            seen,
            lonely: None,
            phase: Phase::Route,
            queue: start,
            asked: BTreeSet::new(),
            waiting: None,
            hops,
            path: Vec::new(),
            verify: false,
            via_successors: true,
            fallback: None,
            outcome: None,
        }
    }

    /// A lookup that begins with the answer of the asking node `me` for the key.
    pub fn from_local_step(me: Id, key: Id, step: LookupStep<A>, finger_routing: bool) -> Self {
        let mut lookup = Lookup::new(key, Vec::new(), 0).finger_routing(finger_routing);
        lookup.waiting = Some(me);
        lookup.on_response(&me, step);
        // The asking node is on the ring itself: nobody else is alone on it.
        lookup.seen.insert(me);
        lookup
    }

    /// Route through the nodes answerers offer only, not their successor lists (the paper's
    /// routing, for measuring against it).
    pub fn finger_routing(mut self, on: bool) -> Self {
        self.via_successors = !on;
        self
    }

    /// Check that the owner is alive before reporting it (falling back to its successors).
    pub fn verify_owner(mut self, verify: bool) -> Self {
        self.verify = verify;
        self
    }

    pub fn key(&self) -> Id {
        self.key
    }

    /// The node whose answer is awaited, if any.
    pub fn waiting_on(&self) -> Option<Id> {
        self.waiting
    }

    pub fn next_action(&mut self) -> Next<A> {
        if self.outcome.is_some() {
            return Next::Finished;
        }
        if self.waiting.is_some() {
            return Next::Waiting;
        }
        if let Phase::Verify { candidates } = &mut self.phase {
            if !self.verify && !candidates.is_empty() {
                let mut candidates = std::mem::take(candidates);
                let owner = candidates.remove(0);
                self.finish(owner, candidates);
                return Next::Finished;
            }
            return match candidates.first() {
                Some(owner) => {
                    self.waiting = Some(owner.id);
                    Next::Verify(owner.clone())
                }
                None => {
                    self.outcome = Some(Err(LookupError::Unreachable));
                    Next::Finished
                }
            };
        }
        if self.queue.is_empty() && self.fallback.is_none() {
            if let Some((owner, backups)) = self.lonely.take() {
                self.found(owner, backups);
                return self.next_action();
            }
        }
        if self.queue.is_empty() {
            if let Some((_, candidates)) = self.fallback.take() {
                // Everyone between the last answerer and the key is dead: its first live
                // successor past the key owns it. Always checked, since failures are afoot.
                self.verify = true;
                self.phase = Phase::Verify { candidates };
                return self.next_action();
            }
        }
        while !self.queue.is_empty() {
            let node = self.queue.remove(0);
            if !self.asked.insert(node.id) {
                continue;
            }
            if self.asked.len() as u32 > MAX_ASKS {
                self.outcome = Some(Err(LookupError::TooManySteps));
                return Next::Finished;
            }
            self.waiting = Some(node.id);
            return Next::Ask(node);
        }
        self.outcome = Some(Err(LookupError::Unreachable));
        Next::Finished
    }

    fn finish(&mut self, owner: NodeRef<A>, backups: Vec<NodeRef<A>>) {
        self.outcome = Some(Ok(LookupResult {
            key: self.key,
            owner,
            backups,
            hops: self.hops,
            path: self.path.clone(),
        }));
    }

    /// The owner is named; `next_action` reports it, after a ping if verification is on.
    fn found(&mut self, owner: NodeRef<A>, backups: Vec<NodeRef<A>>) {
        let candidates = std::iter::once(owner).chain(backups).collect();
        self.phase = Phase::Verify { candidates };
    }

    /// Feeds the answer of `from` to a lookup step. Returns false (and changes nothing) for an
    /// answer nobody is waiting for.
    pub fn on_response(&mut self, from: &Id, step: LookupStep<A>) -> bool {
        if self.waiting != Some(*from) || !matches!(self.phase, Phase::Route) {
            return false;
        }
        self.waiting = None;
        self.path.push(*from);
        match step {
            LookupStep::Found { owner, backups } => {
                // The key must lie between the answerer and the owner it names. A node naming
                // itself claims to be alone, which this lookup may know to be false: then
                // routing goes on around it, and the claim stands only if nothing better turns
                // up. A misplaced owner counts as no answer at all.
                if owner.id == *from {
                    if self.seen.iter().all(|id| id == from) {
                        self.found(owner, backups);
                    } else if self.lonely.is_none() {
                        self.lonely = Some((owner, backups));
                    }
                } else if self.key.in_half_open(from, &owner.id) {
                    self.found(owner, backups);
                }
            }
            LookupStep::Closer { nodes, successors } => {
                self.seen
                    .extend(nodes.iter().chain(&successors).map(|n| n.id));
                // Only nodes strictly between the answerer and the key make progress; anything
                // else is stale or hostile, and accepting it could make the lookup loop.
                let key = self.key;
                let (between, past): (Vec<_>, Vec<_>) = successors
                    .into_iter()
                    .partition(|s| s.id.in_open(from, &key));
                let between = if self.via_successors {
                    between
                } else {
                    Vec::new()
                };
                let mut closer: Vec<NodeRef<A>> = nodes
                    .into_iter()
                    .chain(between)
                    .filter(|n| n.id.in_open(from, &key) && !self.asked.contains(&n.id))
                    .collect();
                closer.sort_by_key(|n| n.id.distance_to(&key));
                closer.dedup_by_key(|n| n.id);
                let past: Vec<NodeRef<A>> = past
                    .into_iter()
                    .filter(|s| key.in_half_open(from, &s.id))
                    .collect();
                let nearer = match &self.fallback {
                    Some((best, _)) => from.distance_to(&key) < best.distance_to(&key),
                    None => true,
                };
                if nearer && !past.is_empty() {
                    self.fallback = Some((*from, past));
                }
                if !closer.is_empty() {
                    self.hops += 1;
                    closer.append(&mut self.queue);
                    self.queue = closer;
                }
            }
        }
        true
    }

    /// The owner candidate `from` answered its ping: it is the owner.
    pub fn on_alive(&mut self, from: &Id) -> bool {
        if self.waiting != Some(*from) {
            return false;
        }
        let Phase::Verify { candidates } = &mut self.phase else {
            return false;
        };
        self.waiting = None;
        let mut candidates = std::mem::take(candidates);
        let owner = candidates.remove(0);
        self.finish(owner, candidates);
        true
    }

    /// `from` did not answer (timeout, refused, unreachable): the next candidate is tried.
    pub fn on_failure(&mut self, from: &Id) -> bool {
        if self.waiting != Some(*from) {
            return false;
        }
        self.waiting = None;
        if let Phase::Verify { candidates } = &mut self.phase {
            candidates.remove(0);
        }
        true
    }

    pub fn outcome(&self) -> Option<&Result<LookupResult<A>, LookupError>> {
        self.outcome.as_ref()
    }

    pub fn into_outcome(self) -> Option<Result<LookupResult<A>, LookupError>> {
        self.outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(x: u8) -> NodeRef<u8> {
        let mut id = [0u8; 20];
        id[0] = x;
        NodeRef {
            id: Id(id),
            addr: x,
        }
    }

    fn key(x: u8) -> Id {
        node(x).id
    }

    #[test]
    fn follows_redirects_and_counts_hops() {
        let mut l = Lookup::new(key(200), vec![node(10)], 0);
        assert_eq!(l.next_action(), Next::Ask(node(10)));
        assert_eq!(l.next_action(), Next::Waiting);
        assert!(l.on_response(
            &key(10),
            LookupStep::Closer {
                nodes: vec![node(100), node(150)],
                successors: vec![],
            }
        ));
        assert_eq!(l.next_action(), Next::Ask(node(150)));
        let found = LookupStep::Found {
            owner: node(210),
            backups: vec![node(220)],
        };
        assert!(l.on_response(&key(150), found));
        assert_eq!(l.next_action(), Next::Finished);
        let result = l.into_outcome().unwrap().unwrap();
        assert_eq!((result.owner.addr, result.hops), (210, 1));
    }

    #[test]
    fn routes_around_failures_without_counting_them() {
        let mut l = Lookup::new(key(200), vec![node(10)], 0);
        l.next_action();
        l.on_response(
            &key(10),
            LookupStep::Closer {
                nodes: vec![node(100), node(150)],
                successors: vec![],
            },
        );
        assert_eq!(l.next_action(), Next::Ask(node(150)));
        assert!(l.on_failure(&key(150)));
        assert_eq!(l.next_action(), Next::Ask(node(100)));
        l.on_response(
            &key(100),
            LookupStep::Found {
                owner: node(210),
                backups: vec![],
            },
        );
        l.next_action();
        assert_eq!(l.outcome().unwrap().as_ref().unwrap().hops, 1);
    }

    #[test]
    fn ignores_stale_and_backward_answers() {
        let mut l = Lookup::new(key(200), vec![node(10)], 0);
        l.next_action();
        assert!(!l.on_response(
            &key(99),
            LookupStep::Closer {
                nodes: vec![node(150)],
                successors: vec![],
            }
        ));
        // A "closer" node behind the answerer or past the key is no progress.
        l.on_response(
            &key(10),
            LookupStep::Closer {
                nodes: vec![node(5), node(250)],
                successors: vec![],
            },
        );
        assert_eq!(l.next_action(), Next::Finished);
        assert_eq!(l.outcome(), Some(&Err(LookupError::Unreachable)));
    }

    #[test]
    fn a_dead_owner_is_replaced_by_its_next_live_successor() {
        let mut l = Lookup::new(key(200), vec![node(10)], 0).verify_owner(true);
        l.next_action();
        l.on_response(
            &key(10),
            LookupStep::Found {
                owner: node(210),
                backups: vec![node(220), node(230)],
            },
        );
        assert_eq!(l.next_action(), Next::Verify(node(210)));
        assert!(
            !l.on_response(
                &key(210),
                LookupStep::Closer {
                    nodes: vec![],
                    successors: vec![]
                }
            ),
            "a step is no ping answer"
        );
        l.on_failure(&key(210));
        assert_eq!(l.next_action(), Next::Verify(node(220)));
        assert!(l.on_alive(&key(220)));
        assert_eq!(l.next_action(), Next::Finished);
        let result = l.into_outcome().unwrap().unwrap();
        assert_eq!(result.owner.addr, 220);
        assert_eq!(result.backups, vec![node(230)]);
    }

    #[test]
    fn a_local_answer_is_verified_too() {
        let step = LookupStep::Found {
            owner: node(20),
            backups: vec![],
        };
        let mut l =
            Lookup::from_local_step(key(10), key(15), step.clone(), false).verify_owner(true);
        assert_eq!(l.next_action(), Next::Verify(node(20)));
        l.on_failure(&key(20));
        assert_eq!(l.next_action(), Next::Finished);
        assert_eq!(l.outcome(), Some(&Err(LookupError::Unreachable)));
        let mut unverified =
            Lookup::from_local_step(key(10), key(15), step, false).verify_owner(false);
        assert_eq!(unverified.next_action(), Next::Finished);
        assert_eq!(unverified.outcome().unwrap().as_ref().unwrap().hops, 0);
    }

    #[test]
    fn a_dead_successor_before_the_key_is_passed_over() {
        // 100 answers "ask 150" (its dead successor, just before the key 160); 170 is next.
        let mut l = Lookup::new(key(160), vec![node(100)], 0);
        l.next_action();
        let step = LookupStep::Closer {
            nodes: vec![node(150)],
            successors: vec![node(150), node(170), node(180)],
        };
        l.on_response(&key(100), step);
        assert_eq!(l.next_action(), Next::Ask(node(150)));
        l.on_failure(&key(150));
        assert_eq!(l.next_action(), Next::Verify(node(170)));
        l.on_alive(&key(170));
        assert_eq!(l.next_action(), Next::Finished);
        let result = l.into_outcome().unwrap().unwrap();
        assert_eq!((result.owner.addr, result.backups), (170, vec![node(180)]));
    }

    #[test]
    fn a_found_answer_that_misplaces_the_key_does_not_end_the_lookup() {
        // Asking about key 95: a hostile 50 answers "Found: it's me" (as if alone), 40
        // answers "Found: 60" (a node before the key). Routing goes on past both, to 30, who
        // names the true owner.
        let mut lookup = Lookup::new(key(95), vec![node(50), node(40), node(30)], 0);
        assert_eq!(lookup.next_action(), Next::Ask(node(50)));
        assert!(lookup.on_response(
            &node(50).id,
            LookupStep::Found {
                owner: node(50),
                backups: vec![]
            }
        ));
        assert_eq!(lookup.next_action(), Next::Ask(node(40)));
        assert!(lookup.on_response(
            &node(40).id,
            LookupStep::Found {
                owner: node(60),
                backups: vec![]
            }
        ));
        assert_eq!(lookup.next_action(), Next::Ask(node(30)));
        assert!(lookup.on_response(
            &node(30).id,
            LookupStep::Closer {
                nodes: vec![node(90)],
                successors: vec![]
            }
        ));
        assert_eq!(lookup.next_action(), Next::Ask(node(90)));
        assert!(lookup.on_response(
            &node(90).id,
            LookupStep::Found {
                owner: node(99),
                backups: vec![]
            }
        ));
        assert_eq!(lookup.next_action(), Next::Finished);
        assert!(matches!(lookup.outcome(), Some(Ok(r)) if r.owner == node(99)));
        // A node that really is alone may say so to the only asker that knows of nobody else.
        let mut lone = Lookup::new(key(95), vec![node(50)], 0);
        assert_eq!(lone.next_action(), Next::Ask(node(50)));
        lone.on_response(
            &node(50).id,
            LookupStep::Found {
                owner: node(50),
                backups: vec![],
            },
        );
        assert_eq!(lone.next_action(), Next::Finished);
        assert!(matches!(lone.outcome(), Some(Ok(r)) if r.owner == node(50)));
    }

    #[test]
    fn gives_up_when_everyone_fails() {
        let mut l = Lookup::new(key(200), vec![node(10), node(20)], 0);
        for x in [10, 20] {
            assert_eq!(l.next_action(), Next::Ask(node(x)));
            l.on_failure(&key(x));
        }
        assert_eq!(l.next_action(), Next::Finished);
        assert_eq!(l.outcome(), Some(&Err(LookupError::Unreachable)));
    }
}
