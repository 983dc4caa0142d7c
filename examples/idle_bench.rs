//! What an idle member costs: starts a ring of node processes (the release binary beside this
//! example) with stabilize every second, lets it settle, then measures every member's CPU
//! time and resident memory over a window in which nobody asks anything.
//!
//! `cargo build --release && cargo run --release --example idle_bench -- [--nodes 32]
//! [--settle 20] [--window 30]`

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Members of the ring.
    #[arg(long, default_value_t = 32)]
    nodes: usize,
    /// Seconds to let the ring settle after the last join.
    #[arg(long, default_value_t = 20)]
    settle: u64,
    /// Seconds over which CPU time is measured.
    #[arg(long, default_value_t = 30)]
    window: u64,
}

/// Kills the node processes however the bench ends.
struct Ring(Vec<Child>);

impl Drop for Ring {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn binary() -> Result<PathBuf> {
    // target/release/examples/idle_bench → target/release/chord-p2p
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(|examples| examples.parent())
        .context("target dir")?
        .join("chord-p2p");
    if !bin.exists() {
        bail!(
            "{} is not built: run `cargo build --release` first",
            bin.display()
        );
    }
    Ok(bin)
}

/// Starts a member and returns it with its first listen address.
fn start(bin: &PathBuf, dir: &std::path::Path, join: Option<&str>) -> Result<(Child, String)> {
    let mut command = Command::new(bin);
    command
        .args(["--json", "--listen", "/ip4/127.0.0.1/udp/0/quic-v1"])
        .args(["--stabilize-interval", "1s", "--data-dir"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(join) = join {
        command.args(["--join", join]);
    }
    let mut child = command.spawn().context("starting a node")?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut addr = None;
    let mut joined = join.is_none();
    while addr.is_none() || !joined {
        let line = lines.next().context("the node stopped")??;
        let v: serde_json::Value = serde_json::from_str(&line)?;
        match v["event"].as_str() {
            Some("listening") if addr.is_none() => addr = v["addr"].as_str().map(String::from),
            Some("joined") => joined = true,
            _ => {}
        }
    }
    // Keep reading so the node never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Ok((child, addr.context("listen address")?))
}

/// CPU time (user + system) of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) end with ')'.
    let rest = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11).context("utime")?.parse()?;
    let stime: u64 = fields.get(12).context("stime")?.parse()?;
    Ok(utime + stime)
}

fn rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .context("VmRSS")?;
    Ok(kb * 1024)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let bin = binary()?;
    let dir = tempfile::tempdir()?;
    let mut ring = Ring(Vec::new());
    let mut first = None;
    let started = Instant::now();
    for i in 0..args.nodes {
        let (child, addr) = start(&bin, &dir.path().join(i.to_string()), first.as_deref())?;
        ring.0.push(child);
        first.get_or_insert(addr);
    }
    println!("{} members joined in {:?}", args.nodes, started.elapsed());
    std::thread::sleep(Duration::from_secs(args.settle));

    let pids: Vec<u32> = ring.0.iter().map(Child::id).collect();
    let before: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p)).collect::<Result<_>>()?;
    let window = Instant::now();
    std::thread::sleep(Duration::from_secs(args.window));
    let elapsed = window.elapsed().as_secs_f64();
    let after: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p)).collect::<Result<_>>()?;
    // SAFETY: sysconf has no preconditions.
    let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut cpu: Vec<f64> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| (a - b) as f64 / ticks_per_sec / elapsed * 100.0)
        .collect();
    let mut mem: Vec<u64> = pids.iter().map(|p| rss(*p)).collect::<Result<_>>()?;
    cpu.sort_by(f64::total_cmp);
    mem.sort_unstable();
    let median = |v: &[f64]| v[v.len() / 2];
    println!("| members | CPU per member, median (max) | RSS per member, median (max) |");
    println!("|---|---|---|");
    println!(
        "| {} | {:.2}% ({:.2}%) of one core | {:.1} MB ({:.1} MB) |",
        args.nodes,
        median(&cpu),
        cpu.last().copied().unwrap_or(0.0),
        mem[mem.len() / 2] as f64 / 1e6,
        mem.last().copied().unwrap_or(0) as f64 / 1e6,
    );
    Ok(())
}
