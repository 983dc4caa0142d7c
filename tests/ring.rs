//! Acceptance tests of the ring: real nodes in one process, talking QUIC (or TCP) on 127.0.0.1.

mod common;

use std::time::Duration;

use chord_p2p::chord::Id;
use chord_p2p::node::Node;
use common::*;

const R: usize = 4;
const CONVERGE: Duration = Duration::from_secs(30);

fn refs(nodes: &[Node]) -> Vec<&Node> {
    nodes.iter().collect()
}

/// `count` lookups of names from rotating nodes; every answer must be the true owner among
/// `live`. Returns the mean hop count.
async fn lookups_are_right(nodes: &[&Node], count: usize, seed: u64) -> f64 {
    let mut rng = Rng::new(seed);
    let mut ids: Vec<Id> = nodes.iter().map(|n| n.id()).collect();
    ids.sort();
    let mut hops = 0u64;
    for i in 0..count {
        let name = format!("file-{seed}-{i}.txt");
        let key = Id::hash(name.as_bytes());
        let from = nodes[rng.below(nodes.len())];
        let result = from.handle().lookup(key).await.expect("lookup succeeds");
        assert_eq!(
            result.owner.id,
            true_successor(&ids, &key),
            "owner of {name}"
        );
        hops += u64::from(result.hops);
    }
    hops as f64 / count as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_nodes_joining_one_by_one_form_the_exact_ring_and_look_up_correctly() {
    let nodes = ring_one_by_one(16, &test_config(QUIC), 7).await;
    wait_exact(
        &refs(&nodes),
        R,
        CONVERGE,
        "exact ring after sequential joins",
    )
    .await;
    let mean = lookups_are_right(&refs(&nodes), 200, 11).await;
    let bound = 0.5 * 16f64.log2() + 1.0;
    assert!(mean <= bound, "mean hops {mean} above {bound}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_nodes_joining_at_once_through_one_node_form_the_exact_ring() {
    let config = test_config(QUIC);
    let bootstrap = start(&config).await;
    let mut joiners = Vec::new();
    for _ in 0..15 {
        joiners.push(start(&config).await);
    }
    let via = target_of(&bootstrap);
    let joins = joiners.iter().map(|n| {
        let handle = n.handle();
        let via = via.clone();
        async move { handle.join(via).await }
    });
    for result in futures::future::join_all(joins).await {
        result.expect("concurrent join succeeds");
    }
    let mut all = vec![&bootstrap];
    all.extend(joiners.iter());
    wait_exact(&all, R, CONVERGE, "exact ring after concurrent joins").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_heals_after_three_crashes_two_of_them_adjacent() {
    let mut nodes = ring_one_by_one(16, &test_config(QUIC), 3).await;
    wait_exact(&refs(&nodes), R, CONVERGE, "exact ring before crashes").await;
    // Sort by id so "adjacent" means ring neighbours.
    nodes.sort_by_key(|n| n.id());
    let crashed: Vec<Node> = [10, 4, 3].into_iter().map(|i| nodes.remove(i)).collect();
    for node in crashed {
        node.kill().await;
    }
    let live = refs(&nodes);
    // At once, before anyone has noticed the crashes: every lookup, from every survivor, still
    // names the right live owner (dead owners are pinged and passed over, dead hops routed around).
    let mut ids: Vec<Id> = live.iter().map(|n| n.id()).collect();
    ids.sort();
    let probes = live.iter().enumerate().flat_map(|(i, node)| {
        (0..8).map(move |k| {
            let handle = node.handle();
            let key = Id::hash(format!("probe-{i}-{k}").as_bytes());
            async move { (key, handle.lookup(key).await) }
        })
    });
    let answers = tokio::time::timeout(Duration::from_secs(30), futures::future::join_all(probes))
        .await
        .expect("lookups during repair finish in bounded time");
    for (key, answer) in answers {
        let found = answer.expect("lookup during repair succeeds");
        assert_eq!(
            found.owner.id,
            true_successor(&ids, &key),
            "owner during repair"
        );
    }
    wait_exact(&live, R, CONVERGE, "exact ring after crashes").await;
    lookups_are_right(&live, 100, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn informed_leaves_relink_neighbours_at_once() {
    let mut config = test_config(QUIC);
    // Failure detection would take 30 s: anything that heals sooner was the leave itself.
    config.chord.rpc_timeout = Duration::from_secs(30);
    config.chord.stabilize_interval = Duration::from_millis(100);
    let mut nodes = ring_one_by_one(12, &config, 9).await;
    wait_exact(&refs(&nodes), R, CONVERGE, "exact ring before leaves").await;
    nodes.sort_by_key(|n| n.id());
    for pick in [5usize, 0, 7, 2] {
        let n = nodes.len();
        let leaver = nodes.remove(pick);
        let pred = nodes[(pick + n - 2) % (n - 1)].handle();
        let succ = nodes[pick % (n - 1)].handle();
        let (pred_id, succ_id) = (
            nodes[(pick + n - 2) % (n - 1)].id(),
            nodes[pick % (n - 1)].id(),
        );
        leaver.leave().await.expect("leave completes");
        // Right after the leave returns, before any stabilize could matter, they point at each other.
        let p = pred.status().await.expect("status");
        let s = succ.status().await.expect("status");
        assert_eq!(
            p.successors[0].id, succ_id,
            "predecessor relinked to successor"
        );
        assert_eq!(
            s.predecessor.map(|x| x.id),
            Some(pred_id),
            "successor relinked to predecessor"
        );
        // Every successor list is exact again within r stabilize intervals (plus slack).
        let limit = config.chord.stabilize_interval * (R as u32 + 4);
        wait_for(limit, "successor lists exact after leave", || async {
            let ids: Vec<Id> = nodes.iter().map(|n| n.id()).collect();
            for node in &nodes {
                let report = node.handle().status().await.map_err(|e| e.to_string())?;
                let (_, succs, _) = ideal(&ids, &node.id(), R);
                let got: Vec<Id> = report.successors.iter().map(|s| s.id).collect();
                if got != succs {
                    return Err(format!(
                        "{} has a stale successor list",
                        &node.id().to_hex()[..8]
                    ));
                }
            }
            Ok(())
        })
        .await;
    }
    wait_exact(&refs(&nodes), R, CONVERGE, "exact ring after leaves").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_over_tcp_is_exact_and_looks_up_correctly() {
    let nodes = ring_one_by_one(8, &test_config(TCP), 21).await;
    wait_exact(&refs(&nodes), R, CONVERGE, "exact ring over TCP").await;
    lookups_are_right(&refs(&nodes), 50, 2).await;
}
