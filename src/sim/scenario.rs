//! Workloads built from [`Sim`]'s primitives, shared by the tests and the `simulate` example.
//! Every random choice is drawn from the world's own seeded generator.

use std::time::Duration;

use rand::Rng;

use crate::chord::{Id, M};

use super::stats::LookupStats;
use super::world::{NetConfig, Op, Sim};

/// Grows the ring to `target` members through the protocol's own joins, in waves one
/// stabilize interval apart: each wave adds up to `growth` × (current members) nodes at random
/// moments of the interval, each joining through a random member. Then waits (up to `max`)
/// until every joiner is a member. Returns the virtual time it took.
pub fn grow(sim: &mut Sim, target: usize, growth: f64, max: Duration) -> Duration {
    let start = sim.now();
    let interval = sim.config().chord.stabilize_interval;
    if sim.member_count() == 0 && target > 0 {
        sim.apply(Op::Join);
    }
    let mut spawned = sim.member_count();
    while spawned < target && sim.now() - start < max {
        let wave = ((sim.member_count() as f64 * growth).ceil() as usize).max(1);
        let wave = wave.min(target - spawned);
        for _ in 0..wave {
            let at = random_within(sim, interval);
            sim.schedule(at, Op::Join);
        }
        spawned += wave;
        sim.run_for(interval);
    }
    while sim.member_count() < sim.live_count() && sim.now() - start < max {
        sim.run_for(interval);
    }
    sim.now() - start
}

/// Stops network faults (loss and held-back messages; ordinary delay spread stays) and runs until
/// the state is exactly ideal (see [`Sim::check_exact`]), checking once per stabilize interval.
/// Returns how long that took, or `None` if `max` passed first.
pub fn settle(sim: &mut Sim, max: Duration) -> Option<Duration> {
    let calm = NetConfig {
        loss: 0.0,
        reorder: 0.0,
        ..sim.config().net.clone()
    };
    sim.set_net(calm);
    let start = sim.now();
    let interval = sim.config().chord.stabilize_interval;
    loop {
        // The ring and lists first: cheap, and the fingers can only be right after them.
        if sim.exact_mismatches(false).0 == 0 && sim.exact_mismatches(true).0 == 0 {
            return Some(sim.now() - start);
        }
        if sim.now() - start >= max {
            return None;
        }
        sim.run_for(interval);
    }
}

/// Starts `count` lookups from random members for random keys, spread over `window`, and runs
/// until all have ended. Outcomes not yet taken from the world are discarded first.
pub fn measure_lookups(sim: &mut Sim, count: usize, window: Duration) -> LookupStats {
    sim.take_lookups();
    for _ in 0..count {
        let at = random_within(sim, window);
        sim.schedule(at, Op::Lookup);
    }
    sim.run_for(window);
    drain_lookups(sim);
    sim.take_lookups()
}

/// Runs until no user lookup is in flight (bounded: a lookup asks at most 64 nodes, each within
/// one rpc deadline).
pub fn drain_lookups(sim: &mut Sim) {
    let limit = sim.now() + sim.config().chord.rpc_timeout * 70;
    let step = sim.config().chord.stabilize_interval / 10;
    while sim.lookups_in_flight() > 0 && sim.now() < limit {
        sim.run_for(step);
    }
}

/// Churn as in the Chord paper's experiments: joins and departures arrive as independent
/// Poisson processes, `rate` of each per stabilize interval over the whole ring; a departure is
/// an informed leave with probability `leave_share`, else a crash. Lookups arrive at
/// `lookups_per_interval`.
#[derive(Clone, Debug)]
pub struct Churn {
    pub rate: f64,
    pub leave_share: f64,
    pub lookups_per_interval: f64,
    pub duration: Duration,
}

/// Runs `churn`; returns the outcomes of the lookups that ran during it.
pub fn churn(sim: &mut Sim, churn: &Churn) -> LookupStats {
    sim.take_lookups();
    let interval = sim.config().chord.stabilize_interval.as_secs_f64();
    let joins = poisson_times(sim, churn.rate / interval, churn.duration);
    let departures = poisson_times(sim, churn.rate / interval, churn.duration);
    let lookups = poisson_times(sim, churn.lookups_per_interval / interval, churn.duration);
    for at in joins {
        sim.schedule(at, Op::Join);
    }
    for at in departures {
        let op = if sim.rng().gen::<f64>() < churn.leave_share {
            Op::Leave
        } else {
            Op::Crash
        };
        sim.schedule(at, op);
    }
    for at in lookups {
        sim.schedule(at, Op::Lookup);
    }
    sim.run_for(churn.duration);
    drain_lookups(sim);
    sim.take_lookups()
}

/// Random activity for (at least) `events` simulator events: operations arrive as a Poisson
/// process of `ops_per_interval` per stabilize interval, each a join (30%), informed leave (10%),
/// crash (10%) or lookup (50%), on top of the protocol's own traffic. Operations are scheduled a
/// twentieth of an interval at a time, so the run stops within that much of the target.
pub fn random_run(sim: &mut Sim, events: u64, ops_per_interval: f64) -> LookupStats {
    sim.take_lookups();
    let target = sim.counters().events + events;
    let chunk = sim.config().chord.stabilize_interval / 20;
    let rate = ops_per_interval / sim.config().chord.stabilize_interval.as_secs_f64();
    while sim.counters().events < target {
        for at in poisson_times(sim, rate, chunk) {
            let roll = sim.rng().gen_range(0..10);
            let op = match roll {
                0..=2 => Op::Join,
                3 => Op::Leave,
                4 => Op::Crash,
                _ => Op::Lookup,
            };
            sim.schedule(at, op);
        }
        sim.run_for(chunk);
    }
    drain_lookups(sim);
    sim.take_lookups()
}

fn random_within(sim: &mut Sim, window: Duration) -> Duration {
    let nanos = window.as_nanos() as u64;
    Duration::from_nanos(sim.rng().gen_range(0..nanos.max(1)))
}

/// Arrival offsets of a Poisson process of `per_second` over `duration`.
fn poisson_times(sim: &mut Sim, per_second: f64, duration: Duration) -> Vec<Duration> {
    let mut out = Vec::new();
    if per_second <= 0.0 {
        return out;
    }
    let mut t = 0.0;
    loop {
        let u: f64 = sim.rng().gen();
        t += -(1.0 - u).ln() / per_second;
        if t >= duration.as_secs_f64() {
            return out;
        }
        out.push(Duration::from_secs_f64(t));
    }
}

/// Path lengths of the Chord paper's own routing (`find_predecessor` over finger tables only,
/// SIGCOMM 2001 Fig. 4) on the current members with ideal fingers, for `count` random lookups.
/// A yardstick beside the core's measured paths: the core also routes through its successor
/// list and its predecessor, which the paper's pseudo-code does not.
pub fn paper_path_lengths(sim: &mut Sim, count: usize) -> LookupStats {
    let ring: Vec<Id> = sim
        .nodes()
        .filter(|(a, _)| sim.is_member(*a))
        .map(|(_, n)| n.id())
        .collect();
    let mut ring = ring;
    ring.sort();
    let mut stats = LookupStats::default();
    if ring.is_empty() {
        return stats;
    }
    let successor = |key: &Id| ring[ring.partition_point(|id| id < key) % ring.len()];
    for _ in 0..count {
        let mut at = ring[sim.rng().gen_range(0..ring.len())];
        let key = Id(sim.rng().gen());
        let mut hops = 0;
        while !key.in_half_open(&at, &successor(&at.finger_start(0))) {
            let next = (0..M)
                .rev()
                .map(|i| successor(&at.finger_start(i)))
                .find(|f| f.in_open(&at, &key));
            match next {
                Some(f) => at = f,
                None => break,
            }
            hops += 1;
        }
        stats.started += 1;
        stats.ok += 1;
        stats.hops.push(hops);
    }
    stats
}

/// Runs a repair interval at a time until every file sits at exactly its R responsible
/// members (see [`Sim::files_in_place`]), for at most `max` of virtual time. Returns how long
/// it took, or the last misplaced file.
pub fn settle_files(sim: &mut Sim, max: Duration) -> Result<Duration, String> {
    let start = sim.now();
    let step = sim
        .config()
        .files
        .as_ref()
        .map_or(Duration::from_secs(1), |f| f.repair_interval);
    loop {
        match sim.files_in_place() {
            Ok(()) => return Ok(sim.now() - start),
            Err(e) if sim.now() - start >= max => return Err(e),
            Err(_) => sim.run_for(step),
        }
    }
}
