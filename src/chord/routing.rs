//! A node's view of the ring: predecessor, successor list and finger table, and the pure
//! decisions made from them (who owns a key, whom to ask next). No messages, no time.

use super::id::{Id, M};
use super::message::{LookupStep, NodeRef};

#[derive(Clone, Debug)]
pub struct Routing<A> {
    me: NodeRef<A>,
    /// Successor-list length r.
    r: usize,
    predecessor: Option<NodeRef<A>>,
    /// The next r live nodes clockwise. Never holds `me`: an empty list means "alone".
    successors: Vec<NodeRef<A>>,
    /// `fingers[i]` = successor(me + 2^i), as last learned. An optimisation only.
    fingers: Vec<Option<NodeRef<A>>>,
}

impl<A: Clone> Routing<A> {
    pub fn new(me: NodeRef<A>, r: usize) -> Self {
        Routing {
            me,
            r: r.max(1),
            predecessor: None,
            successors: Vec::new(),
            fingers: vec![None; M],
        }
    }

    pub fn me(&self) -> &NodeRef<A> {
        &self.me
    }

    pub fn set_my_addr(&mut self, addr: A) {
        self.me.addr = addr;
    }

    pub fn predecessor(&self) -> Option<&NodeRef<A>> {
        self.predecessor.as_ref()
    }

    pub fn set_predecessor(&mut self, pred: Option<NodeRef<A>>) {
        self.predecessor = pred.filter(|p| p.id != self.me.id);
    }

    /// The successor list; empty when the node is alone.
    pub fn successors(&self) -> &[NodeRef<A>] {
        &self.successors
    }

    /// The first successor, or this node itself when it is alone.
    pub fn successor(&self) -> &NodeRef<A> {
        self.successors.first().unwrap_or(&self.me)
    }

    pub fn is_alone(&self) -> bool {
        self.successors.is_empty()
    }

    pub fn successor_list_len(&self) -> usize {
        self.r
    }

    pub fn fingers(&self) -> &[Option<NodeRef<A>>] {
        &self.fingers
    }

    /// Replaces the successor list by `entries` in order: duplicates skipped, trimmed to r, and
    /// cut where the list stops going clockwise from this node. A list copied from a successor
    /// that does not know this node yet runs on round the ring to nodes between this one and
    /// that successor; those entries would put the list out of ring order (Zave's
    /// OrderedSuccessorLists), so they go. A node is in its own list only when alone.
    pub fn set_successors(&mut self, entries: impl IntoIterator<Item = NodeRef<A>>) {
        let mut list: Vec<NodeRef<A>> = Vec::with_capacity(self.r);
        for node in entries {
            if list.len() == self.r {
                break;
            }
            if list.iter().any(|n| n.id == node.id) {
                continue;
            }
            let last = list.last().map_or(self.me.id, |n| n.id);
            if !node.id.in_open(&last, &self.me.id) {
                break;
            }
            list.push(node);
        }
        self.successors = list;
    }

    /// Drops a node from the successor list (it failed or left).
    pub fn remove_successor(&mut self, id: &Id) {
        self.successors.retain(|n| n.id != *id);
    }

    /// Forgets a node everywhere but the successor list, which only stabilize may shorten.
    pub fn forget_finger(&mut self, id: &Id) {
        for finger in &mut self.fingers {
            if finger.as_ref().is_some_and(|f| f.id == *id) {
                *finger = None;
            }
        }
    }

    pub fn set_finger(&mut self, i: usize, node: NodeRef<A>) {
        self.fingers[i] = Some(node);
    }

    /// Every known node other than this one, successors first, then fingers and predecessor.
    fn known(&self) -> impl Iterator<Item = &NodeRef<A>> {
        self.successors
            .iter()
            .chain(self.fingers.iter().flatten())
            .chain(self.predecessor.iter())
            .filter(move |n| n.id != self.me.id)
    }

    /// When every successor has failed: the nearest known node clockwise, if any, so the node
    /// can find its way back into the ring instead of believing it is alone.
    pub fn nearest_known(&self, except: &Id) -> Option<NodeRef<A>> {
        self.known()
            .filter(|n| n.id != *except)
            .min_by_key(|n| self.me.id.distance_to(&n.id))
            .cloned()
    }

    /// Up to `k` distinct known nodes strictly between this node and `key`, closest to the key
    /// first: the next nodes to ask, and the fallbacks if the first does not answer. With
    /// `fingers_only`, only finger entries count (the paper's closest_preceding_finger).
    pub fn closest_preceding(&self, key: &Id, k: usize, fingers_only: bool) -> Vec<NodeRef<A>> {
        let candidates: Box<dyn Iterator<Item = &NodeRef<A>>> = if fingers_only {
            Box::new(self.fingers.iter().flatten().filter(|n| n.id != self.me.id))
        } else {
            Box::new(self.known())
        };
        // A node n lies in (me, key) when 0 < d(me, n) < d(me, key); the farther it is from
        // me, the closer it is to the key. Each distance is computed once.
        let limit = self.me.id.distance_to(key);
        let mut found: Vec<(Id, &NodeRef<A>)> = candidates
            .map(|n| (self.me.id.distance_to(&n.id), n))
            .filter(|(d, _)| *d != Id::default() && (*key == self.me.id || *d < limit))
            .collect();
        // Stable, so of a node's duplicate entries (a node in many fingers) the first known one
        // (successor list before fingers) is kept; equal ids have equal distances, sit together.
        found.sort_by_key(|(d, _)| std::cmp::Reverse(*d));
        found.dedup_by_key(|(d, _)| *d);
        found.truncate(k);
        found.into_iter().map(|(_, n)| n.clone()).collect()
    }

    /// This node's answer to "who is successor(key)?".
    pub fn lookup_step(&self, key: &Id, k: usize, fingers_only: bool) -> LookupStep<A> {
        let succ = self.successor();
        if key.in_half_open(&self.me.id, &succ.id) {
            // The nodes after the owner, where its replicas live. A list shorter than r means
            // the ring is smaller than r + 1 and the list has come round to this node: then
            // it is the next one after the last (in a ring of three, the owner's second
            // successor is its predecessor, which answers).
            let mut backups: Vec<NodeRef<A>> = self.successors.iter().skip(1).cloned().collect();
            if self.successors.len() < self.r && succ.id != self.me.id {
                backups.push(self.me.clone());
            }
            return LookupStep::Found {
                owner: succ.clone(),
                backups,
            };
        }
        let mut nodes = self.closest_preceding(key, k, fingers_only);
        if nodes.is_empty() && fingers_only {
            // Fingers not learned yet: the successor list still leads on.
            nodes = self.closest_preceding(key, k, false);
        }
        if nodes.is_empty() {
            // Unreachable while `succ` is in (me, key); kept total for safety.
            return LookupStep::Found {
                owner: succ.clone(),
                backups: Vec::new(),
            };
        }
        LookupStep::Closer {
            nodes,
            successors: self.successors.clone(),
        }
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

    #[test]
    fn successor_list_stops_at_self_and_skips_duplicates() {
        let mut r = Routing::new(node(10), 4);
        r.set_successors([node(20), node(20), node(30), node(10), node(40)]);
        let ids: Vec<u8> = r.successors().iter().map(|n| n.addr).collect();
        assert_eq!(ids, vec![20, 30]);
        r.set_successors((1..=9).map(|i| node(10 + i)));
        assert_eq!(r.successors().len(), 4);
    }

    #[test]
    fn a_copied_list_is_cut_where_it_would_pass_this_node() {
        // Regression (simulator, joins under loss): 60's list ran on round the ring to 30, a
        // node between 10 and 50 that 50 knows and 10 does not know yet. Taken whole, 10's
        // list would name 30 after 200, out of ring order.
        let mut r = Routing::new(node(10), 8);
        r.set_successors([node(50), node(60), node(200), node(30), node(40)]);
        let ids: Vec<u8> = r.successors().iter().map(|n| n.addr).collect();
        assert_eq!(ids, vec![50, 60, 200]);
    }

    #[test]
    fn alone_owns_everything() {
        let r = Routing::new(node(10), 4);
        match r.lookup_step(&node(200).id, 3, false) {
            LookupStep::Found { owner, .. } => assert_eq!(owner.addr, 10),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn step_finds_or_forwards() {
        let mut r = Routing::new(node(10), 4);
        r.set_successors([node(20), node(30)]);
        r.set_finger(7, node(100));
        r.set_finger(6, node(60));
        // 15 is in (10, 20]: the successor owns it.
        assert!(
            matches!(r.lookup_step(&node(15).id, 3, false), LookupStep::Found { owner, .. } if owner.addr == 20)
        );
        // 90: ask the nodes before it, closest first; 100 is past the key.
        match r.lookup_step(&node(90).id, 3, false) {
            LookupStep::Closer { nodes, .. } => {
                assert_eq!(
                    nodes.iter().map(|n| n.addr).collect::<Vec<_>>(),
                    vec![60, 30, 20]
                )
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
