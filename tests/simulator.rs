//! CI-sized runs of the deterministic simulator (the full-size ones are in BENCHMARKS.md, made
//! with `examples/simulate.rs`). The oracle runs after every event in all of them.

use std::time::Duration;

use chord_p2p::sim::scenario::{self, Churn};
use chord_p2p::sim::{FilesConfig, LookupStats, NetConfig, Sim, SimConfig, Summary};

const MAX_SETTLE: Duration = Duration::from_secs(600);

/// A settled ring of `n` members grown through the protocol's own joins.
fn ring(seed: u64, n: usize, r: usize) -> Sim {
    let mut sim = Sim::new(SimConfig::new(seed, r));
    scenario::grow(&mut sim, n, 0.25, Duration::from_secs(600));
    assert_eq!(sim.member_count(), n);
    settled(&mut sim);
    sim
}

fn settled(sim: &mut Sim) -> Duration {
    let took = scenario::settle(sim, MAX_SETTLE);
    let Some(took) = took else {
        let (wrong, notes) = sim.exact_mismatches(true);
        panic!("not exact after {MAX_SETTLE:?}: {wrong} wrong, e.g. {notes:?}");
    };
    assert_clean(sim);
    took
}

fn assert_clean(sim: &Sim) {
    assert!(sim.counters().checks > 0, "the oracle never ran");
    assert_eq!(
        sim.counters().violations,
        0,
        "invariant violations: {:#?}",
        sim.violations()
    );
}

fn faulty(sim: &Sim, loss: f64, reorder: f64) -> NetConfig {
    NetConfig {
        loss,
        reorder,
        ..sim.config().net.clone()
    }
}

#[test]
fn path_length_is_half_log2_n() {
    // The paper's setting: a finger table and one successor (r = 1), stable rings. The mean of
    // one ring of 64 varies by a few percent with its ids, so two rings are pooled per size.
    for exp in [6u32, 7, 8] {
        let n = 1usize << exp;
        let mut stats = LookupStats::default();
        for seed in [exp as u64, 100 + exp as u64] {
            let mut sim = ring(seed, n, 1);
            stats.merge(&scenario::measure_lookups(
                &mut sim,
                1000,
                Duration::from_secs(2),
            ));
            assert_clean(&sim);
        }
        let half = exp as f64 / 2.0;
        let mean = stats.mean_hops();
        assert_eq!((stats.failed, stats.wrong), (0, 0), "N={n}: {stats:?}");
        assert!(
            (mean - half).abs() <= 0.1 * half,
            "N={n}: mean path {mean:.3}, want ½·log2 N = {half} ± 10%"
        );
    }
}

#[test]
fn the_core_routing_by_fingers_alone_reproduces_the_paper() {
    // The paper's closest_preceding_finger walk, run by the core's own lookup state machine
    // over a real successor list (r = 2·log2 N): ½·log2 N within 10%.
    for exp in [6u32, 7] {
        let n = 1usize << exp;
        let mut config = SimConfig::new(40 + exp as u64, 2 * exp as usize);
        config.chord.finger_routing = true;
        let mut sim = Sim::new(config);
        scenario::grow(&mut sim, n, 0.25, Duration::from_secs(600));
        settled(&mut sim);
        let stats = scenario::measure_lookups(&mut sim, 2000, Duration::from_secs(2));
        let half = exp as f64 / 2.0;
        assert_eq!((stats.failed, stats.wrong), (0, 0), "N={n}: {stats:?}");
        assert!(
            (stats.mean_hops() - half).abs() <= 0.1 * half,
            "N={n}: mean path {:.3}, want {half} ± 10%",
            stats.mean_hops()
        );
    }
}

#[test]
fn small_rings_route_at_least_as_well_as_the_paper() {
    // At N = 16 the core is ~11% under ½·log2 N: it also routes through its predecessor, so a
    // key just behind the asking node takes 1 hop where the paper's finger walk takes ~log2 N.
    let mut sim = ring(1, 16, 1);
    let core = scenario::measure_lookups(&mut sim, 2000, Duration::from_secs(2));
    let paper = scenario::paper_path_lengths(&mut sim, 2000);
    assert_eq!(core.ok, 2000);
    assert!(
        (paper.mean_hops() - 2.0).abs() <= 0.2,
        "{}",
        paper.mean_hops()
    );
    assert!(
        core.mean_hops() <= paper.mean_hops(),
        "{} > {}",
        core.mean_hops(),
        paper.mean_hops()
    );
}

#[test]
fn half_the_nodes_crash_at_once() {
    // The paper's run is N = 1000, r = 20 (see BENCHMARKS.md); a quarter of it here.
    let mut sim = ring(7, 250, 16);
    let crashed = sim.crash_fraction(0.5);
    assert_eq!(crashed, 125);
    let during = scenario::measure_lookups(&mut sim, 300, Duration::from_secs(1));
    assert_eq!(during.finished(), 300);
    assert!(
        during.timeouts > 0,
        "nobody noticed the crashes: {during:?}"
    );
    settled(&mut sim);
    let after = scenario::measure_lookups(&mut sim, 500, Duration::from_secs(2));
    assert_eq!(
        (after.ok, after.failed, after.wrong, after.timeouts),
        (500, 0, 0, 0)
    );
    assert_clean(&sim);
}

#[test]
fn concurrent_joins_with_loss_and_reordering() {
    let r = 4;
    let mut sim = ring(11, r + 1, r);
    sim.set_net(faulty(&sim, 0.05, 0.05));
    scenario::grow(&mut sim, 10 * (r + 1), 0.5, Duration::from_secs(600));
    assert!(sim.counters().lost > 0);
    assert_clean(&sim);
    settled(&mut sim);
    assert_eq!(sim.member_count(), 10 * (r + 1));
    sim.check_exact().unwrap();
}

#[test]
fn churn_then_no_lookup_fails() {
    let mut sim = ring(5, 64, 8);
    sim.set_net(faulty(&sim, 0.01, 0.01));
    let spec = Churn {
        rate: 1.0,
        leave_share: 0.5,
        lookups_per_interval: 10.0,
        duration: Duration::from_secs(60),
    };
    let during = scenario::churn(&mut sim, &spec);
    assert!(sim.counters().crashes > 0 && sim.counters().leaves > 0);
    assert!(during.finished() > 0);
    assert_clean(&sim);
    settled(&mut sim);
    let after = scenario::measure_lookups(&mut sim, 300, Duration::from_secs(2));
    assert_eq!(
        (after.ok, after.failed, after.wrong),
        (300, 0, 0),
        "{after:?}"
    );
}

#[test]
fn randomised_runs_keep_the_invariants() {
    for seed in 20..24 {
        let mut sim = ring(seed, 24, 6);
        sim.set_net(faulty(&sim, 0.03, 0.05));
        scenario::random_run(&mut sim, 15_000, 2.0);
        assert_clean(&sim);
        settled(&mut sim);
    }
}

fn short_run(seed: u64, check_every: u64) -> Summary {
    let mut cfg = SimConfig::new(seed, 4);
    cfg.check_every = check_every;
    cfg.net.loss = 0.05;
    cfg.net.reorder = 0.1;
    let mut sim = Sim::new(cfg);
    scenario::grow(&mut sim, 20, 0.5, Duration::from_secs(120));
    scenario::random_run(&mut sim, 5_000, 2.0);
    sim.summary()
}

#[test]
fn same_seed_same_run() {
    let a = short_run(3, 1);
    let b = short_run(3, 1);
    assert_eq!(a, b);
    // The oracle only reads: checking less often changes nothing but the check count.
    let c = short_run(3, 0);
    assert_eq!(
        (a.fingerprint, a.now_ns, &a.lookups),
        (c.fingerprint, c.now_ns, &c.lookups)
    );
    assert_ne!(a.fingerprint, short_run(4, 1).fingerprint);
}

#[test]
fn the_oracle_catches_a_broken_ring() {
    // r = 2: crashing two neighbours at once leaves the node before them with no live
    // successor — beyond what Chord promises, so the oracle must say so.
    let mut sim = ring(9, 10, 2);
    let mut by_id: Vec<_> = sim.nodes().map(|(addr, n)| (n.id(), addr)).collect();
    by_id.sort();
    sim.crash(by_id[3].1);
    sim.crash(by_id[4].1);
    sim.run_for(Duration::from_millis(1));
    sim.apply(chord_p2p::sim::Op::Lookup);
    assert!(sim.counters().violations > 0);
    assert!(
        sim.violations()[0].contains("no live member"),
        "{:?}",
        sim.violations()
    );
}

/// A ring of `n` with `files` files on it (R = 3), every node running the replica core.
fn ring_with_files(seed: u64, n: usize, files: usize) -> Sim {
    let mut cfg = SimConfig::new(seed, 8);
    cfg.files = Some(FilesConfig::default());
    let mut sim = Sim::new(cfg);
    scenario::grow(&mut sim, n, 0.25, Duration::from_secs(600));
    settled(&mut sim);
    for i in 0..files {
        assert!(sim.put_file(&format!("f{i}"), 1 << 20));
    }
    sim
}

#[test]
fn files_survive_churn_loss_and_a_liar_and_settle_at_exactly_r_copies() {
    for hostile in [0, 1] {
        let mut sim = ring_with_files(17, 150, 1500);
        if hostile > 0 {
            assert_eq!(sim.make_hostile(hostile).len(), hostile);
        }
        sim.set_net(faulty(&sim, 0.01, 0.01));
        let churn = Churn {
            rate: 0.6,
            leave_share: 0.5,
            lookups_per_interval: 5.0,
            duration: Duration::from_secs(60),
        };
        scenario::churn(&mut sim, &churn);
        sim.set_net(faulty(&sim, 0.0, 0.0));
        settled(&mut sim);
        let placed = scenario::settle_files(&mut sim, Duration::from_secs(300));
        let stats = sim.file_stats();
        assert!(sim.counters().crashes > 0 && sim.counters().leaves > 0);
        assert!(stats.pushes > 0, "repair never moved a copy");
        // No file lost while fewer than R of its holders failed; the oracle checked on every
        // change of every file's copies (a loss is a violation).
        assert_eq!(stats.lost, 0, "hostile {hostile}: {:#?}", sim.violations());
        assert_clean(&sim);
        let copies = sim.copies_histogram();
        if hostile == 0 {
            // Once settled, exactly R copies of each file, at its R rightful holders.
            placed.unwrap_or_else(|e| panic!("not in place: {e}"));
            let lost_beyond = stats.lost_excused;
            assert_eq!(
                copies.get(&3).copied().unwrap_or(0) + lost_beyond,
                1500,
                "{copies:?}"
            );
        } else {
            // A liar among a key's holders keeps nothing: the honest ones hold at least R-1.
            assert!(copies.keys().all(|&c| c >= 2 || c == 0), "{copies:?}");
            assert_eq!(copies.get(&0).copied().unwrap_or(0), stats.lost_excused);
        }
    }
}
