//! What a node's file index costs in memory: fills a store directory with N small signed
//! files (as a node writes them), opens it the way a node does at start, and measures the
//! resident memory the index adds, next to a yardstick measured in the same run: the same
//! files' whole records held in memory (what the index held before names and signatures moved
//! to disk). Also times the open, a walk through every `ls` page, and gets of records.
//!
//! `cargo run --release --example index_bench -- [--files 100000,1000000]`
//! `... --generate DIR --files N` only writes the store (tests/index_scale.rs starts a node
//! on it).

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use chord_p2p::files::store::{FileMeta, Role, Store};
use clap::Parser;
use libp2p::identity::Keypair;

#[derive(Parser)]
struct Args {
    /// Numbers of files to measure.
    #[arg(long, value_delimiter = ',', default_value = "100000")]
    files: Vec<usize>,
    /// Only write a store of `--files` files into this directory, then exit.
    #[arg(long)]
    generate: Option<std::path::PathBuf>,
}

/// The bytes of file `i`: small and different from every other.
fn content(i: usize) -> Vec<u8> {
    format!("small file number {i}\n").into_bytes()
}

fn name(i: usize) -> String {
    format!("file-{i:07}.txt")
}

/// Writes `n` files signed by one uploader into `dir`, in the store's on-disk format (data
/// and metadata named by key). No fsync: this is a fixture, not a node.
fn generate(dir: &Path, n: usize) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let uploader = Keypair::generate_ed25519();
    let created = chord_p2p::records::unix_millis();
    for i in 0..n {
        let bytes = content(i);
        let hash = *blake3::hash(&bytes).as_bytes();
        let size = bytes.len() as u64;
        let meta = FileMeta::signed(&uploader, &name(i), size, hash, created, Role::Owner);
        let stem = meta.key.to_hex();
        std::fs::write(dir.join(format!("{stem}.data")), &bytes)?;
        std::fs::write(dir.join(format!("{stem}.json")), serde_json::to_vec(&meta)?)?;
    }
    Ok(())
}

/// This process's resident memory now, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn measure(n: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    generate(dir.path(), n)?;
    let generated = started.elapsed();

    let before = rss();
    let started = Instant::now();
    let store = Store::open(dir.path())?;
    let opened = started.elapsed();
    let index = rss().saturating_sub(before);

    let started = Instant::now();
    let (mut after, mut listed) = (None, 0usize);
    loop {
        let (page, more) = store.page(after, 1000)?;
        listed += page.len();
        after = page.last().map(|m| m.key);
        if !more || after.is_none() {
            break;
        }
    }
    let paged = started.elapsed();

    let keys = store.keys();
    let started = Instant::now();
    let gets = keys.len().min(10_000);
    for (key, _) in keys
        .iter()
        .step_by((keys.len() / gets.max(1)).max(1))
        .take(gets)
    {
        store.get(key).context("a held record")?;
    }
    let per_get = started.elapsed() / gets.max(1) as u32;
    drop(keys);

    // The yardstick: every whole record in memory at once.
    let before = rss();
    let whole: Vec<FileMeta> = store.list();
    let records = rss().saturating_sub(before);
    assert_eq!(whole.len(), n);
    drop(whole);

    println!(
        "| {n} | {:.1} s | {:.2} s | {} B | {} B | {:.2} s ({listed} files) | {:.1} µs |",
        generated.as_secs_f64(),
        opened.as_secs_f64(),
        index / n as u64,
        records / n as u64,
        paged.as_secs_f64(),
        per_get.as_secs_f64() * 1e6,
    );
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(dir) = &args.generate {
        let n = args.files.first().copied().unwrap_or(0);
        return generate(dir, n);
    }
    println!("| files | generate | open (index built) | index RSS / file | whole records RSS / file | every ls page | get (record from disk) |");
    println!("|---|---|---|---|---|---|---|");
    for &n in &args.files {
        measure(n)?;
    }
    Ok(())
}
