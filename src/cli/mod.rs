//! The command-line edge: parse, run a node or a one-shot client, print.

pub mod args;
mod output;
pub mod report;
mod shell;

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use chord_p2p::chord::{self, Id};
use chord_p2p::client::Client;
use chord_p2p::files::names::local_path;
use chord_p2p::files::{Files, FilesConfig};
use chord_p2p::net::{self, parse_target, ConnectionLimits};
use chord_p2p::node::NodeConfig;
use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;
use serde_json::json;

use args::{Cli, ClientArgs, Command, NodeArgs, RateArgs};

/// Prints one line on stdout. A closed stdout (`| head`) is not an error worth a panic.
pub fn emit(line: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// How long an informed leave may take before the process exits anyway.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(4);

pub async fn run(cli: Cli) -> Result<()> {
    let json = cli.node.output.json;
    match cli.command {
        Some(Command::Lookup { name, client }) => lookup(&name, &client, json).await,
        Some(Command::Status { client }) => status(&client, json).await,
        Some(Command::Put {
            file,
            name,
            rate,
            client,
        }) => put(&file, name, rate, &client, json).await,
        Some(Command::Get {
            name,
            output,
            force,
            rate,
            client,
        }) => get(&name, output, force, rate, &client, json).await,
        Some(Command::Ls { client }) => ls(&client, json).await,
        Some(Command::Rm { name, client }) => rm(&name, &client, json).await,
        None => run_node(cli.ip.zip(cli.port), cli.node).await,
    }
}

async fn connect(args: &ClientArgs) -> Result<(Client, net::PeerRef)> {
    let target = parse_target(&args.peer)?;
    let identity = match args.identity.clone().or_else(Client::default_identity_path) {
        Some(path) => Client::load_identity(&path)?,
        None => libp2p::identity::Keypair::generate_ed25519(),
    };
    let mut client = Client::with_identity(identity, args.timeout).await?;
    client.set_direct_wait(args.direct_wait);
    let entry = client.connect(target).await?;
    Ok((client, entry))
}

/// A progress bar on stderr when a person is watching; nothing otherwise.
pub fn progress_bar(total: u64) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    Some(bar)
}

/// A progress callback that drives a bar.
type Tick = Box<dyn Fn(u64, u64) + Send + Sync>;

/// How often `--json` progress lines are printed at most.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Runs a transfer with progress: a bar when stderr is a terminal, or with `--json` lines
/// `{"event":"progress","done":N,"total":N}` on stdout (a few a second, and the last one);
/// the transfer says the total once it knows it.
async fn with_progress<T, F>(json: bool, run: impl FnOnce(Tick) -> F) -> T
where
    F: std::future::Future<Output = T>,
{
    let bar = if json { None } else { progress_bar(0) };
    let shown = bar.clone();
    let last = std::sync::Mutex::new(None::<std::time::Instant>);
    let result = run(Box::new(move |done, total| {
        if let Some(bar) = &shown {
            bar.set_length(total);
            bar.set_position(done);
        }
        if json {
            let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
            let due = last.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY) || done == total;
            if due {
                *last = Some(std::time::Instant::now());
                emit(json!({"event": "progress", "done": done, "total": total}));
            }
        }
    }))
    .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    result
}

/// The name a local file is put under by default: its own file name.
pub fn default_name(file: &std::path::Path) -> Result<String> {
    file.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .with_context(|| format!("{} has no file name; pass a name", file.display()))
}

/// Where a get writes: `-o FILE`, inside `-o DIR` (as `cp` does), or the name's last
/// component here. Checked before anything is asked of the ring, so a mistake costs nothing:
/// an existing file is replaced only with `force`, and the folder must exist.
pub fn output_path(name: &str, output: Option<PathBuf>, force: bool) -> Result<PathBuf> {
    let path = match output {
        Some(dir) if dir.is_dir() => local_path(&dir, name)?,
        Some(path) => path,
        None => local_path(std::path::Path::new("."), name)?,
    };
    let shown = path.display();
    if path.is_dir() {
        return Err(usage(format!("{shown} is a directory")));
    }
    if path.exists() && !force {
        return Err(usage(format!(
            "{shown} already exists; pass --force to replace it"
        )));
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent.filter(|p| !p.is_dir()) {
        let folder = parent.display();
        return Err(usage(format!(
            "cannot write {shown}: there is no folder {folder}"
        )));
    }
    Ok(path)
}

/// The local file a put reads, checked before connecting anywhere.
pub fn input_file(file: &std::path::Path) -> Result<()> {
    let shown = file.display();
    match std::fs::metadata(file) {
        Ok(meta) if meta.is_dir() => Err(usage(format!(
            "{shown} is a directory; put takes one file (put each file, or pack the folder first)"
        ))),
        Ok(_) => Ok(()),
        Err(e) => Err(usage(format!("cannot read {shown}: {}", io_cause(&e)))),
    }
}

fn usage(text: String) -> anyhow::Error {
    report::Usage(text).into()
}

/// An OS error without its "(os error N)" suffix, as a person reads it.
fn io_cause(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

async fn put(
    file: &std::path::Path,
    name: Option<String>,
    rate: RateArgs,
    args: &ClientArgs,
    json: bool,
) -> Result<()> {
    let name = match name {
        Some(name) => name,
        None => default_name(file)?,
    };
    // Fail before connecting anywhere if the file is not there.
    input_file(file)?;
    let (mut client, entry) = connect(args).await?;
    client.set_rate_limit(rate.limit_rate);
    let (c, e) = (&client, &entry);
    let report = with_progress(json, |tick| async move {
        c.put(e, file, &name, Some(&*tick)).await
    })
    .await;
    client.close().await;
    let report = report?;
    emit(if json {
        output::put_json(&report).to_string()
    } else {
        output::put_text(&report)
    });
    Ok(())
}

async fn get(
    name: &str,
    output: Option<PathBuf>,
    force: bool,
    rate: RateArgs,
    args: &ClientArgs,
    json: bool,
) -> Result<()> {
    let out = output_path(name, output, force)?;
    let (mut client, entry) = connect(args).await?;
    client.set_rate_limit(rate.limit_rate);
    let (c, e) = (&client, &entry);
    let report = with_progress(json, |tick| async move {
        c.get(e, name, &out, Some(&*tick)).await
    })
    .await;
    client.close().await;
    let report = report?;
    emit(if json {
        output::get_json(&report).to_string()
    } else {
        output::get_text(&report)
    });
    Ok(())
}

async fn ls(args: &ClientArgs, json: bool) -> Result<()> {
    let (client, entry) = connect(args).await?;
    let files = client.list(&entry).await;
    client.close().await;
    let files = files?;
    emit(if json {
        output::files_json(&files).to_string()
    } else {
        output::files_text(&files)
    });
    Ok(())
}

async fn rm(name: &str, args: &ClientArgs, json: bool) -> Result<()> {
    let (client, entry) = connect(args).await?;
    let copies = client.remove(&entry, name).await;
    client.close().await;
    let copies = copies?;
    emit(output::removed(name, copies, json));
    Ok(())
}

async fn lookup(name: &str, args: &ClientArgs, json: bool) -> Result<()> {
    let (client, entry) = connect(args).await?;
    let result = client.lookup(&entry, Id::hash(name.as_bytes())).await;
    client.close().await;
    let result = result?;
    if json {
        emit(output::lookup_json(name, &result));
    } else {
        emit(output::lookup_text(name, &result));
    }
    Ok(())
}

async fn status(args: &ClientArgs, json: bool) -> Result<()> {
    let (client, entry) = connect(args).await?;
    let report = client.status(&entry).await;
    client.close().await;
    let report = report?;
    if json {
        emit(output::status_json(&report));
    } else {
        emit(output::status_text(&report));
    }
    Ok(())
}

fn listen_addrs(ip_port: Option<(IpAddr, u16)>, args: &NodeArgs) -> Vec<Multiaddr> {
    let mut listen = args.listen.clone();
    if let Some((ip, port)) = ip_port {
        listen.extend(net::quic_and_tcp(ip, port));
    }
    if listen.is_empty() {
        // Behind a relay the node is on a real network: listen on every interface, so hole
        // punching can reuse the port. Otherwise stay on loopback.
        let ip = if args.relay.is_empty() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            IpAddr::from([0, 0, 0, 0])
        };
        listen.push(
            Multiaddr::from(ip)
                .with(Protocol::Udp(0))
                .with(Protocol::QuicV1),
        );
    }
    listen
}

/// The default data dir: one per listen address under the user's data directory, so the same
/// `IP PORT` keeps its identity across restarts. A random port means a new node every time.
fn default_data_dir(listen: &[Multiaddr]) -> Option<PathBuf> {
    let random_port = listen
        .iter()
        .flat_map(|a| a.iter())
        .any(|p| matches!(p, Protocol::Tcp(0) | Protocol::Udp(0)));
    if random_port {
        return None;
    }
    let first = listen.first()?.to_string();
    let slug: String = first
        .trim_start_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    Some(dirs::data_dir()?.join("chord-p2p").join(slug))
}

async fn run_node(ip_port: Option<(IpAddr, u16)>, args: NodeArgs) -> Result<()> {
    let json = args.output.json;
    let listen = listen_addrs(ip_port, &args);
    let data_dir = args.data_dir.clone().or_else(|| default_data_dir(&listen));
    let config = NodeConfig {
        listen,
        data_dir,
        chord: chord::Config {
            successors: args.successors.into(),
            stabilize_interval: args.stabilize_interval,
            rpc_timeout: args.rpc_timeout,
            ..chord::Config::default()
        },
        relay_server: args.relay_limits(),
        relays: args
            .relay
            .iter()
            .map(|r| parse_target(r))
            .collect::<Result<_, _>>()?,
        external_addrs: args.external_addr.clone(),
        share_connections: args.share_connections,
        connection_limits: ConnectionLimits {
            max_incoming: args.max_connections,
            max_pending_incoming: args.max_pending_connections,
            max_per_peer: args.max_connections_per_peer,
        },
        ..NodeConfig::default()
    };
    let target = args.join.as_deref().map(parse_target).transpose()?;
    let files = FilesConfig {
        replicas: args.replicas.into(),
        repair_interval: args.repair_interval,
        direct_wait: args.direct_wait,
        max_transfers: args.max_transfers,
        max_transfers_per_peer: args.max_transfers_per_peer,
        max_storage: Some(
            args.max_storage
                .unwrap_or_else(|| default_storage(config.data_dir.as_deref())),
        ),
        ..FilesConfig::default()
    };
    let node = Files::start_node(config, files).await?;
    for addr in node.listen_addrs() {
        if json {
            emit(json!({"event": "listening", "addr": addr.to_string()}));
        } else {
            emit(addr);
        }
    }
    let handle = node.handle();
    if let Some(target) = target {
        let successor = handle.join(target).await.context("cannot join the ring")?;
        if json {
            emit(json!({"event": "joined", "successor": output::node_json(&successor)}));
        } else {
            emit(format!(
                "joined the ring; successor {}",
                successor.addr.peer_id
            ));
        }
    }

    if let Some(storage) = handle.status().await?.storage {
        let limit = storage.limit.unwrap_or(u64::MAX);
        if json {
            emit(
                json!({"event": "storage", "used": storage.used, "limit": limit, "files": storage.files}),
            );
        } else {
            emit(format!(
                "storing up to {} ({} used, {} files; --max-storage)",
                output::size_text(limit),
                output::size_text(storage.used),
                storage.files
            ));
        }
    }

    let left = if shell::wanted() {
        let runtime = tokio::runtime::Handle::current();
        let shell_handle = shell::ShellNode {
            handle: handle.clone(),
            files: Files::of(&node).cloned(),
        };
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let exit = shell::run(shell_handle, runtime, json);
            let _ = done_tx.send(exit);
        });
        tokio::select! {
            exit = done_rx => matches!(exit, Ok(shell::Exit::Left)),
            signal = shutdown_signal() => { signal?; false }
        }
    } else {
        shutdown_signal().await?;
        false
    };
    if !left {
        match tokio::time::timeout(LEAVE_TIMEOUT, node.leave()).await {
            Ok(Ok(())) => tracing::info!("left the ring"),
            Ok(Err(e)) => tracing::warn!("leave: {e}"),
            Err(_) => tracing::warn!("leave timed out; exiting anyway"),
        }
    }
    if json {
        emit(json!({"event": "stopped"}));
    }
    Ok(())
}

/// Nine tenths of the space free where the files will live (or in the temp dir), at start.
fn default_storage(data_dir: Option<&std::path::Path>) -> u64 {
    let place = match data_dir {
        Some(dir) => dir
            .ancestors()
            .find(|p| p.exists())
            .map(|p| p.to_path_buf()),
        None => Some(std::env::temp_dir()),
    };
    let free = place
        .as_deref()
        .and_then(chord_p2p::files::transfer::free_bytes);
    free.map_or(u64::MAX, |f| f / 10 * 9)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() -> Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.context("cannot watch Ctrl-C")
    }
}
