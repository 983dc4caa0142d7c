//! File transfer benchmark: put and get through the ring, next to a bare libp2p-stream transfer
//! of the same number of bytes between two swarms built the same way, on the same transport.
//!
//! `cargo run --release --example file_bench -- [--sizes 1M,100M,1G] [--transports quic,tcp]
//! [--replicas 1] [--runs 3]`
//!
//! Every case runs in a fresh child process (this same program with `--case`), so the peak RSS
//! printed is that of one process holding every node, the client and both ends of each transfer.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chord_p2p::chord;
use chord_p2p::client::Client;
use chord_p2p::files::{Files, FilesConfig};
use chord_p2p::net::parse_target;
use chord_p2p::node::{Node, NodeConfig};
use clap::Parser;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::StreamProtocol;

const BARE: StreamProtocol = StreamProtocol::new("/chord-p2p/bench/bare/1.0.0");
const MIB: u64 = 1 << 20;

#[derive(Parser)]
struct Args {
    /// File sizes, with K, M or G suffixes (powers of 1024).
    #[arg(long, value_delimiter = ',', default_value = "1M,100M,1G")]
    sizes: Vec<String>,
    /// Transports to measure: quic, tcp.
    #[arg(long, value_delimiter = ',', default_value = "quic,tcp")]
    transports: Vec<String>,
    /// Copies of each file (nodes in the ring): 1 measures the transfer alone.
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// Runs of each case; the table shows the median.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Internal: run one case and print its figures as one JSON line.
    #[arg(long, hide = true)]
    case: Option<String>,
}

fn parse_size(text: &str) -> Result<u64> {
    let (digits, scale) = match text.chars().last() {
        Some('K' | 'k') => (&text[..text.len() - 1], 1 << 10),
        Some('M' | 'm') => (&text[..text.len() - 1], 1 << 20),
        Some('G' | 'g') => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    Ok(digits
        .parse::<u64>()
        .with_context(|| format!("bad size {text}"))?
        * scale)
}

fn listen_addr(transport: &str) -> Result<&'static str> {
    Ok(match transport {
        "quic" => "/ip4/127.0.0.1/udp/0/quic-v1",
        "tcp" => "/ip4/127.0.0.1/tcp/0",
        other => bail!("unknown transport {other}"),
    })
}

fn files_config(replicas: usize) -> FilesConfig {
    FilesConfig {
        replicas,
        ..FilesConfig::default()
    }
}

fn node_config(transport: &str) -> Result<NodeConfig> {
    Ok(NodeConfig {
        listen: vec![listen_addr(transport)?.parse()?],
        chord: chord::Config {
            stabilize_interval: Duration::from_millis(200),
            ..chord::Config::default()
        },
        ..NodeConfig::default()
    })
}

/// Fills `path` with `size` pseudo-random bytes.
fn make_file(path: &Path, size: u64) -> Result<()> {
    use std::io::Write;
    let mut xof = blake3::Hasher::new().update(b"bench").finalize_xof();
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut buf = vec![0u8; MIB as usize];
    let mut left = size;
    while left > 0 {
        let n = left.min(MIB) as usize;
        xof.fill(&mut buf[..n]);
        file.write_all(&buf[..n])?;
        left -= n as u64;
    }
    // On disk before anything is timed, like a user's file: otherwise the kernel writes the
    // source back while the transfer runs, and the timings depend on when it does.
    file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(())
}

/// Where a bare transfer takes its bytes from and puts them.
enum Ends<'a> {
    /// From a buffer in memory to nowhere: the transport alone.
    Memory,
    /// From one file to another, as a hand-written libp2p-stream copy would (no hash, no fsync).
    Files { src: &'a Path, dst: &'a Path },
}

/// `size` bytes over one fresh stream between two swarms built like the nodes'.
async fn bare(transport: &str, size: u64, ends: Ends<'_>) -> Result<Duration> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let config = node_config(transport)?;
    let sender = Node::start(config.clone()).await?;
    let receiver = Node::start(config).await?;
    let mut incoming = receiver.control().accept(BARE)?;
    let dst = match &ends {
        Ends::Files { dst, .. } => Some(dst.to_path_buf()),
        Ends::Memory => None,
    };
    let drain = tokio::spawn(async move {
        let (_, mut stream) = incoming.next().await.context("no stream")?;
        let mut out = match &dst {
            Some(path) => Some(tokio::fs::File::create(path).await?),
            None => None,
        };
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            if let Some(out) = &mut out {
                out.write_all(&buf[..n]).await?;
            }
            total += n as u64;
        }
        if let Some(out) = &mut out {
            out.flush().await?;
        }
        anyhow::Ok(total)
    });
    let peer = sender
        .handle()
        .resolve(parse_target(&receiver.listen_addrs()[0].to_string())?)
        .await?;
    let mut buf = vec![7u8; 256 * 1024];
    let started = Instant::now();
    let mut source = match &ends {
        Ends::Files { src, .. } => Some(tokio::fs::File::open(src).await?),
        Ends::Memory => None,
    };
    let mut stream = sender
        .control()
        .open_stream(peer.addr.peer_id, BARE)
        .await?;
    let mut left = size;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = match &mut source {
            Some(file) => file.read(&mut buf[..want]).await?,
            None => want,
        };
        if n == 0 {
            bail!("source file ended early");
        }
        stream.write_all(&buf[..n]).await?;
        left -= n as u64;
    }
    stream.close().await?;
    let got = drain.await??;
    let took = started.elapsed();
    if got != size {
        bail!("bare transfer moved {got} of {size} bytes");
    }
    Ok(took)
}

/// A ring of `replicas` nodes and a one-shot client: times a put and a get of a file on disk.
async fn through_ring(transport: &str, size: u64, replicas: usize) -> Result<(Duration, Duration)> {
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("payload");
    make_file(&src, size)?;
    let config = node_config(transport)?;
    let member = || Files::start_node(config.clone(), files_config(replicas));
    let mut nodes = vec![member().await?];
    for _ in 1..replicas {
        let node = member().await?;
        let via = parse_target(&nodes[0].listen_addrs()[0].to_string())?;
        node.handle().join(via).await?;
        nodes.push(node);
    }
    // Let the successor lists fill, so the owner's replicas go where they belong.
    tokio::time::sleep(Duration::from_millis(200 * (replicas as u64 + 2))).await;
    let client = Client::new(Duration::from_secs(10)).await?;
    let entry = client
        .connect(parse_target(&nodes[0].listen_addrs()[0].to_string())?)
        .await?;
    // Warm the connection to the owner so neither figure includes a handshake.
    let _ = client.lookup(&entry, chord::Id::hash(b"payload")).await?;
    let started = Instant::now();
    let put = client.put(&entry, &src, "payload", None).await?;
    let put_time = started.elapsed();
    if put.replicas as usize != replicas {
        bail!("{} copies, wanted {replicas}", put.replicas);
    }
    std::fs::remove_file(&src)?;
    let out = dir.path().join("back");
    let started = Instant::now();
    client.get(&entry, "payload", &out, None).await?;
    let get_time = started.elapsed();
    if std::fs::metadata(&out)?.len() != size {
        bail!("got a file of the wrong size");
    }
    Ok((put_time, get_time))
}

async fn run_case(case: &str) -> Result<()> {
    let parts: Vec<&str> = case.split(':').collect();
    let [transport, size, replicas] = parts[..] else {
        bail!("bad case {case}");
    };
    let size = parse_size(size)?;
    let replicas: usize = replicas.parse()?;
    let memory = bare(transport, size, Ends::Memory).await?;
    let dir = tempfile::tempdir()?;
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    make_file(&src, size)?;
    let files = bare(
        transport,
        size,
        Ends::Files {
            src: &src,
            dst: &dst,
        },
    )
    .await?;
    drop(dir);
    let (put, get) = through_ring(transport, size, replicas).await?;
    println!(
        "{}",
        serde_json::json!({
            "memory_s": memory.as_secs_f64(),
            "files_s": files.as_secs_f64(),
            "put_s": put.as_secs_f64(),
            "get_s": get.as_secs_f64(),
        })
    );
    Ok(())
}

/// Runs one case in a child process; returns its figures and its peak RSS in bytes.
fn spawn_case(case: &str) -> Result<(serde_json::Value, u64)> {
    use std::io::Read;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["--case", case])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut stdout = child.stdout.take().context("stdout")?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data, filled by the kernel for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::wait4(pid, &mut status, 0, &mut usage) } != pid {
        bail!("wait4 failed");
    }
    std::mem::forget(child);
    let text = reader.join().map_err(|_| anyhow::anyhow!("reader"))?;
    if status != 0 {
        bail!("case {case} failed (status {status})");
    }
    let figures = serde_json::from_str(text.trim()).context("case output")?;
    Ok((figures, usage.ru_maxrss as u64 * 1024))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(case) = &args.case {
        return run_case(case).await;
    }
    println!(
        "| size | transport | copies | bare mem→mem MB/s | bare file→file MB/s | put MB/s | put/bare | get MB/s | get/bare | peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for size_text in &args.sizes {
        let size = parse_size(size_text)?;
        for transport in &args.transports {
            let case = format!("{transport}:{size_text}:{}", args.replicas);
            let mut rates: [Vec<f64>; 4] = Default::default();
            let mut rss = 0u64;
            for _ in 0..args.runs {
                let (v, peak) = spawn_case(&case)?;
                for (at, key) in ["memory_s", "files_s", "put_s", "get_s"].iter().enumerate() {
                    rates[at].push(size as f64 / 1e6 / v[key].as_f64().unwrap_or(f64::NAN));
                }
                rss = rss.max(peak);
            }
            let [memory, files, put, get] = rates.map(median);
            println!(
                "| {size_text} | {transport} | {} | {memory:.0} | {files:.0} | {put:.0} | {:.2} | {get:.0} | {:.2} | {} MiB |",
                args.replicas,
                put / files,
                get / files,
                rss / MIB
            );
        }
    }
    Ok(())
}
