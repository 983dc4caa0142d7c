//! Runs the Chord core in the deterministic simulator and prints what the paper measured.
//!
//! ```text
//! cargo run --release --example simulate -- --nodes 1000 --seed 1
//! cargo run --release --example simulate -- --nodes 1000 --successors 20 --fail 0.5
//! cargo run --release --example simulate -- --nodes 1000 --churn 4 --duration 120
//! cargo run --release --example simulate -- --nodes 10000 --events 100000
//! cargo run --release --example simulate -- --sweep 14
//! cargo run --release --example simulate -- --nodes 1000 --files 10000 --churn 0.4 --loss 0.01
//! cargo run --release --example simulate -- --nodes 1000 --files 10000 --hostile 1
//! ```

use std::time::{Duration, Instant};

use clap::Parser;

use chord_p2p::sim::scenario::{self, Churn};
use chord_p2p::sim::{FilesConfig, LookupStats, NetConfig, Sim, SimConfig};

/// Simulate a Chord ring of many nodes: same seed, same run.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Ring size to build (through the protocol's own joins).
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Seed of every random choice: ids, delays, losses, who joins and fails.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Successor-list length r (default: 2·log2 N, at least 4).
    #[arg(long)]
    successors: Option<usize>,
    /// Crash this fraction of the nodes at once after the ring has settled.
    #[arg(long)]
    fail: Option<f64>,
    /// Churn: joins and departures per stabilize interval each (Poisson), after settling.
    #[arg(long)]
    churn: Option<f64>,
    /// Share of churn departures that are informed leaves (the rest crash).
    #[arg(long, default_value_t = 0.5)]
    leave_share: f64,
    /// How long churn lasts, in stabilize intervals.
    #[arg(long, default_value_t = 100)]
    duration: u64,
    /// Random run: this many simulator events of random joins, leaves, crashes and lookups.
    #[arg(long)]
    events: Option<u64>,
    /// Random operations per stabilize interval in a random run (default: N/20).
    #[arg(long)]
    ops: Option<f64>,
    /// Probability that a message is lost (during growth, failures, churn and random runs).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Probability that a message is held back up to 600 ms (reordering, late answers).
    #[arg(long, default_value_t = 0.0)]
    reorder: f64,
    /// Lookups measured per phase.
    #[arg(long, default_value_t = 10_000)]
    lookups: usize,
    /// Growth per join wave (one per stabilize interval), as a fraction of the current ring.
    /// Faster growth piles joiners up as appendages that stabilize links one per round.
    #[arg(long, default_value_t = 0.1)]
    growth: f64,
    /// Run the oracle every K events (default: every event up to 2,000 nodes and during a
    /// random run at any size; every 100 events while a bigger ring is built and settled).
    #[arg(long)]
    check_every: Option<u64>,
    /// Path-length sweep over N = 2^4 … 2^MAX (ignores --nodes).
    #[arg(long)]
    sweep: Option<u32>,
    /// Route lookups through fingers only, as the paper does (default: every known node).
    #[arg(long)]
    finger_routing: bool,
    /// After the ring of --nodes has settled, grow it to this size with concurrent joins
    /// (--growth per wave), under --loss and --reorder.
    #[arg(long)]
    grow_to: Option<usize>,
    /// Put this many files once the ring is built; every node runs the replica core's repair
    /// and the file oracle checks after every event.
    #[arg(long, default_value_t = 0)]
    files: usize,
    /// Copies of each file (owner + R−1 successors).
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// Seconds between a node's repair rounds (virtual).
    #[arg(long, default_value_t = 5)]
    repair_interval: u64,
    /// Make this many adjacent members hostile once the files are placed: they keep nothing
    /// and lie in every inventory, stat, proof and push answer.
    #[arg(long, default_value_t = 0)]
    hostile: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(max) = args.sweep {
        println!("| N | r | lookups | mean path | p1 | p99 | ½·log2 N | mean/½·log2 N | paper's routing, same ring | failed | wrong | build+settle (virtual) | wall |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for exp in 4..=max {
            let n = 1usize << exp;
            let wall = Instant::now();
            let mut sim = Sim::new(config(&args, n));
            let (built, settled) = build(&mut sim, &args, n)?;
            let stats = scenario::measure_lookups(&mut sim, args.lookups, Duration::from_secs(2));
            let half = 0.5 * (n as f64).log2();
            let paper = scenario::paper_path_lengths(&mut sim, args.lookups);
            println!(
                "| {n} | {} | {} | {:.3} | {} | {} | {half:.2} | {:.3} | {:.3} ({}/{}) | {} | {} | {:.0} s + {:.0} s | {:.1} s |",
                sim.config().chord.successors,
                stats.finished(),
                stats.mean_hops(),
                pct(&stats, 1.0),
                pct(&stats, 99.0),
                stats.mean_hops() / half,
                paper.mean_hops(),
                pct(&paper, 1.0),
                pct(&paper, 99.0),
                stats.failed,
                stats.wrong,
                built.as_secs_f64(),
                settled.as_secs_f64(),
                wall.elapsed().as_secs_f64(),
            );
            report_violations(&sim)?;
        }
        return Ok(());
    }

    let n = args.nodes;
    let wall = Instant::now();
    let mut sim = Sim::new(config(&args, n));
    let (built, settled) = build(&mut sim, &args, n)?;
    println!(
        "built N={n} r={} seed={} in {:.0} s virtual (+{:.0} s to exact state), {:.1} s wall, {} events",
        sim.config().chord.successors,
        args.seed,
        built.as_secs_f64(),
        settled.as_secs_f64(),
        wall.elapsed().as_secs_f64(),
        sim.counters().events
    );
    if args.files > 0 {
        for i in 0..args.files {
            sim.put_file(&format!("file-{i}"), 1 << 20);
        }
        if args.hostile > 0 {
            let liars = sim.make_hostile(args.hostile);
            println!("{} adjacent hostile members: {liars:?}", liars.len());
        }
        let placed = scenario::settle_files(&mut sim, Duration::from_secs(600));
        println!(
            "{} files put, R={}: {}",
            args.files,
            args.replicas,
            match placed {
                Ok(t) => format!(
                    "every file at exactly its R holders after {:.0} s",
                    t.as_secs_f64()
                ),
                Err(e) => format!("not all in place after 600 s: {e}"),
            }
        );
    }
    let mut rows = vec![(
        "stable".to_string(),
        scenario::measure_lookups(&mut sim, args.lookups, Duration::from_secs(2)),
    )];
    let faulty = NetConfig {
        loss: args.loss,
        reorder: args.reorder,
        ..sim.config().net.clone()
    };

    if let Some(target) = args.grow_to {
        sim.set_net(faulty.clone());
        let from = sim.member_count();
        let took = scenario::grow(&mut sim, target, args.growth, Duration::from_secs(3600));
        let t = settle(&mut sim)?;
        let after = scenario::measure_lookups(&mut sim, args.lookups, Duration::from_secs(2));
        rows.push((
            format!(
                "grown {from} → {} in {:.0} s, exact {:.0} s later",
                sim.member_count(),
                took.as_secs_f64(),
                t.as_secs_f64()
            ),
            after,
        ));
    }

    if let Some(p) = args.fail {
        sim.set_net(faulty.clone());
        let crashed = sim.crash_fraction(p);
        // Lookups start at once, while the ring repairs itself.
        let during = scenario::measure_lookups(&mut sim, args.lookups, Duration::from_secs(2));
        rows.push((format!("{crashed} crashed, during repair"), during));
        let t = settle(&mut sim)?;
        let after = scenario::measure_lookups(&mut sim, args.lookups, Duration::from_secs(2));
        rows.push((format!("after repair ({:.0} s)", t.as_secs_f64()), after));
    }

    if let Some(rate) = args.churn {
        sim.set_net(faulty.clone());
        let interval = sim.config().chord.stabilize_interval;
        let spec = Churn {
            rate,
            leave_share: args.leave_share,
            lookups_per_interval: (n as f64 / 10.0).max(10.0),
            duration: interval * args.duration as u32,
        };
        let during = scenario::churn(&mut sim, &spec);
        rows.push((format!("churn {rate}/interval"), during));
        let t = settle(&mut sim)?;
        let after = scenario::measure_lookups(&mut sim, args.lookups, Duration::from_secs(2));
        rows.push((format!("after churn ({:.0} s)", t.as_secs_f64()), after));
    }

    if let Some(events) = args.events {
        sim.set_net(faulty.clone());
        let ops = args.ops.unwrap_or(n as f64 / 20.0);
        let wall = Instant::now();
        let start = sim.counters().clone();
        // The random run is what hunts for protocol bugs: the oracle looks after every event
        // here at any size (building a big ring checks less often; see --check-every).
        let build_checks = sim.config().check_every;
        sim.set_check_every(args.check_every.unwrap_or(1));
        let during = scenario::random_run(&mut sim, events, ops);
        sim.set_check_every(build_checks);
        let c = sim.counters();
        println!(
            "random run: {} events, {} oracle checks, {} violations, {} joins, {} leaves, {} crashes in {:.1} s virtual, {:.2} s wall",
            c.events - start.events,
            c.checks - start.checks,
            c.violations - start.violations,
            c.joins - start.joins,
            c.leaves - start.leaves,
            c.crashes - start.crashes,
            sim.now().as_secs_f64(),
            wall.elapsed().as_secs_f64()
        );
        rows.push((format!("random run ({ops} ops/interval)"), during));
        let t = settle(&mut sim)?;
        let after = scenario::measure_lookups(&mut sim, args.lookups, Duration::from_secs(2));
        rows.push((
            format!("after random run ({:.0} s)", t.as_secs_f64()),
            after,
        ));
    }

    let half = 0.5 * (sim.member_count() as f64).log2();
    println!();
    println!("| phase | lookups | mean path | p1 | p99 | ½·log2 N | failed | wrong | timeouts |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (phase, s) in &rows {
        println!(
            "| {phase} | {} | {:.3} | {} | {} | {half:.2} | {} | {} | {} |",
            s.finished(),
            s.mean_hops(),
            pct(s, 1.0),
            pct(s, 99.0),
            s.failed,
            s.wrong,
            s.timeouts
        );
    }
    let c = sim.counters();
    println!();
    println!(
        "{} events, {} messages ({} lost, {} to departed nodes, {} late), {} oracle checks, {} violations; {:.1} s wall",
        c.events, c.messages, c.lost, c.undeliverable, c.late, c.checks, c.violations,
        wall.elapsed().as_secs_f64()
    );
    println!("summary fingerprint {:016x}", sim.fingerprint());
    if args.files > 0 {
        report_files(&mut sim);
    }
    report_violations(&sim)
}

/// After every phase: the ring settled, repair runs until each file sits at exactly its R
/// holders (or 600 s pass), then what the file layer did.
fn report_files(sim: &mut Sim) {
    let wall = Instant::now();
    sim.set_net(NetConfig {
        loss: 0.0,
        reorder: 0.0,
        ..sim.config().net.clone()
    });
    let placed = scenario::settle_files(sim, Duration::from_secs(600));
    let f = sim.file_stats();
    println!();
    println!(
        "files: {} put; lost {} (last copy gone while fewer than R holders crashed within a repair interval), {} lost beyond R failed holders (crashes within a repair interval, or liars), {} withheld by an eclipse (every holder hostile)",
        f.files, f.lost, f.lost_excused, f.eclipsed
    );
    println!(
        "after settling: {} ({:.1} s wall); copies per file {:?}",
        match placed {
            Ok(t) => format!(
                "every file at exactly its R holders after {:.0} s",
                t.as_secs_f64()
            ),
            Err(e) => format!("not all in place: {e}"),
        },
        wall.elapsed().as_secs_f64(),
        sim.copies_histogram()
    );
    println!(
        "repair traffic: {} file messages, {} whole-copy pushes, {} surplus copies dropped after proofs",
        f.messages, f.pushes, f.surplus_dropped
    );
}

fn config(args: &Args, n: usize) -> SimConfig {
    let r = args
        .successors
        .unwrap_or_else(|| ((2.0 * (n as f64).log2()).round() as usize).max(4));
    let mut cfg = SimConfig::new(args.seed, r);
    cfg.check_every = args.check_every.unwrap_or(if n <= 2000 { 1 } else { 100 });
    // The ring is built on a calm network (Zave's correctness starts from a ring of r+1
    // nodes); --loss and --reorder apply to the phases after.
    cfg.chord.finger_routing = args.finger_routing;
    if args.files > 0 {
        cfg.files = Some(FilesConfig {
            replicas: args.replicas,
            repair_interval: Duration::from_secs(args.repair_interval),
            ..FilesConfig::default()
        });
    }
    cfg
}

/// Grows the ring to `n` and settles it; returns (growth time, settle time), virtual.
fn build(sim: &mut Sim, args: &Args, n: usize) -> anyhow::Result<(Duration, Duration)> {
    let built = scenario::grow(sim, n, args.growth, Duration::from_secs(3600));
    let settled = settle(sim)?;
    Ok((built, settled))
}

fn settle(sim: &mut Sim) -> anyhow::Result<Duration> {
    match scenario::settle(sim, Duration::from_secs(600)) {
        Some(t) => Ok(t),
        None => {
            for v in sim.violations() {
                eprintln!("violation: {v}");
            }
            let (wrong, notes) = sim.exact_mismatches(true);
            anyhow::bail!("did not reach the exact state in 600 s: {wrong} wrong, e.g. {notes:?}")
        }
    }
}

fn pct(s: &LookupStats, p: f64) -> String {
    s.percentile(p).map_or("-".into(), |v| v.to_string())
}

fn report_violations(sim: &Sim) -> anyhow::Result<()> {
    if sim.counters().violations > 0 {
        for v in sim.violations() {
            eprintln!("violation: {v}");
        }
        anyhow::bail!("{} invariant violations", sim.counters().violations);
    }
    Ok(())
}
