//! The Chord RPCs, as plain data. The core produces and consumes these; a driver (the libp2p node
//! or the simulator) only carries them. `A` is the driver's address type.

use serde::{Deserialize, Serialize};

use super::id::Id;

/// A ring member: where it sits and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRef<A> {
    pub id: Id,
    pub addr: A,
}

/// Longest node list a message may carry; longer lists from the wire are cut by the driver.
pub const MAX_LIST: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request<A> {
    /// One iterative lookup step: "who is successor(key), or whom should I ask next?"
    FindSuccessor { key: Id },
    /// Stabilize and join ask for the receiver's predecessor and successor list.
    GetNeighbours,
    /// "I might be your predecessor" (the rectify rule decides).
    Notify { node: NodeRef<A> },
    /// Liveness check (check_predecessor, rectify).
    Ping,
    /// Informed leave: the sender is leaving; here is what it knew, so its neighbours relink at once.
    Leaving {
        node: NodeRef<A>,
        predecessor: Option<NodeRef<A>>,
        successors: Vec<NodeRef<A>>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response<A> {
    Step(LookupStep<A>),
    Neighbours {
        predecessor: Option<NodeRef<A>>,
        successors: Vec<NodeRef<A>>,
    },
    Ack,
}

/// A node's answer to one lookup step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LookupStep<A> {
    /// The key lies between the answering node and its successor: `owner` holds it. `backups` are
    /// the owner's next successors, the places replicas live.
    Found {
        owner: NodeRef<A>,
        backups: Vec<NodeRef<A>>,
    },
    /// Ask one of these next: nodes strictly between the answering node and the key, closest to
    /// the key first. `successors` is the answering node's successor list: if every node
    /// between it and the key turns out dead, the first live successor past the key is the
    /// owner, and the asker can finish without waiting for the ring to repair.
    Closer {
        nodes: Vec<NodeRef<A>>,
        successors: Vec<NodeRef<A>>,
    },
}

impl<A> Request<A> {
    /// Every node reference the message carries, so a driver can check them.
    pub fn node_refs(&self) -> Vec<&NodeRef<A>> {
        match self {
            Request::Notify { node } => vec![node],
            Request::Leaving {
                node,
                predecessor,
                successors,
            } => std::iter::once(node)
                .chain(predecessor)
                .chain(successors)
                .collect(),
            Request::FindSuccessor { .. } | Request::GetNeighbours | Request::Ping => Vec::new(),
        }
    }
}

impl<A> Response<A> {
    /// Every node reference the message carries, so a driver can check them.
    pub fn node_refs(&self) -> Vec<&NodeRef<A>> {
        match self {
            Response::Step(LookupStep::Found { owner, backups }) => {
                std::iter::once(owner).chain(backups).collect()
            }
            Response::Step(LookupStep::Closer { nodes, successors }) => {
                nodes.iter().chain(successors).collect()
            }
            Response::Neighbours {
                predecessor,
                successors,
            } => predecessor.iter().chain(successors).collect(),
            Response::Ack => Vec::new(),
        }
    }
}
