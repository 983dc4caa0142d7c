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
    /// An answer is awaited.
    Waiting,
    /// The lookup is over: take `outcome`.
    Finished,
}

#[derive(Clone, Debug)]
pub struct Lookup<A> {
    key: Id,
    /// Nodes to try, best first. Later entries are the fallbacks that route around failures.
    queue: Vec<NodeRef<A>>,
    asked: BTreeSet<Id>,
    waiting: Option<Id>,
    hops: u32,
    outcome: Option<Result<LookupResult<A>, LookupError>>,
}

impl<A: Clone> Lookup<A> {
    /// A lookup that starts by asking `start` (best first). `hops` counts forwards that already
    /// happened before the first remote ask (1 when the local node forwarded).
    pub fn new(key: Id, start: Vec<NodeRef<A>>, hops: u32) -> Self {
        Lookup {
            key,
            queue: start,
            asked: BTreeSet::new(),
            waiting: None,
            hops,
            outcome: None,
        }
    }

    /// A lookup answered at once by a local step.
    pub fn finished(key: Id, owner: NodeRef<A>, backups: Vec<NodeRef<A>>) -> Self {
        let mut lookup = Lookup::new(key, Vec::new(), 0);
        lookup.outcome = Some(Ok(LookupResult {
            key,
            owner,
            backups,
            hops: 0,
        }));
        lookup
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

    /// Feeds the answer of `from`. Returns false (and changes nothing) for an answer nobody is
    /// waiting for.
    pub fn on_response(&mut self, from: &Id, step: LookupStep<A>) -> bool {
        if self.waiting != Some(*from) {
            return false;
        }
        self.waiting = None;
        match step {
            LookupStep::Found { owner, backups } => {
                self.outcome = Some(Ok(LookupResult {
                    key: self.key,
                    owner,
                    backups,
                    hops: self.hops,
                }));
            }
            LookupStep::Closer { nodes } => {
                // Only nodes strictly between the answerer and the key make progress; anything
                // else is stale or hostile, and accepting it could make the lookup loop.
                let mut closer: Vec<NodeRef<A>> = nodes
                    .into_iter()
                    .filter(|n| n.id.in_open(from, &self.key) && !self.asked.contains(&n.id))
                    .collect();
                closer.sort_by_key(|n| n.id.distance_to(&self.key));
                if !closer.is_empty() {
                    self.hops += 1;
                    closer.append(&mut self.queue);
                    self.queue = closer;
                }
            }
        }
        true
    }

    /// `from` did not answer (timeout, refused, unreachable): the next candidate is tried.
    pub fn on_failure(&mut self, from: &Id) -> bool {
        if self.waiting != Some(*from) {
            return false;
        }
        self.waiting = None;
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
                nodes: vec![node(100), node(150)]
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
                nodes: vec![node(150)]
            }
        ));
        // A "closer" node behind the answerer or past the key is no progress.
        l.on_response(
            &key(10),
            LookupStep::Closer {
                nodes: vec![node(5), node(250)],
            },
        );
        assert_eq!(l.next_action(), Next::Finished);
        assert_eq!(l.outcome(), Some(&Err(LookupError::Unreachable)));
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
