//! Running a node from the command line: where it listens, where it keeps itself, what it
//! says at start, and how it stops.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use chord_p2p::chord;
use chord_p2p::client::Client;
use chord_p2p::files::{Files, FilesConfig};
use chord_p2p::gateway::{self, Gateway, GatewayConfig, GatewayError};
use chord_p2p::net::{self, parse_target, ConnectionLimits};
use chord_p2p::node::NodeConfig;
use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;
use serde_json::json;

use super::args::NodeArgs;
use super::{emit, output, shell, usage};

/// How long an informed leave may take before the process exits anyway.
pub(super) const LEAVE_TIMEOUT: Duration = Duration::from_secs(4);

/// The address a `HOST PORT` node listens on: an IP as it is, a host name resolved (IPv4
/// first, as the original tool did).
pub(super) fn listen_ip(host: &str, port: u16) -> Result<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    use std::net::ToSocketAddrs;
    let found: Vec<IpAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| usage(format!("cannot resolve {host}: {e}")))?
        .map(|a| a.ip())
        .collect();
    found
        .iter()
        .find(|ip| ip.is_ipv4())
        .or(found.first())
        .copied()
        .ok_or_else(|| usage(format!("{host} has no address")))
}

pub(super) fn listen_addrs(
    host_port: Option<(String, u16)>,
    args: &NodeArgs,
) -> Result<Vec<Multiaddr>> {
    let mut listen = args.listen.clone();
    if let Some((host, port)) = host_port {
        listen.extend(net::quic_and_tcp(listen_ip(&host, port)?, port));
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
    Ok(listen)
}

/// The default data dir: one per listen address under the user's data directory, so the same
/// `IP PORT` keeps its identity across restarts. A random port means a new node every time.
pub(super) fn default_data_dir(listen: &[Multiaddr]) -> Option<PathBuf> {
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

pub(super) async fn run_node(host_port: Option<(String, u16)>, args: NodeArgs) -> Result<()> {
    let json = args.output.json;
    // A lookup's answer names the owner and the next successors of the node before it, one
    // fewer than that node's list holds: R copies can all be found (and all serve a get) only
    // when R ≤ r.
    if args.replicas > args.successors {
        return Err(usage(format!(
            "--replicas {} needs --successors {} or more: a file's copies sit on its owner's \
             successors, and a lookup names only as many holders as the successor list is long",
            args.replicas, args.replicas
        )));
    }
    let listen = listen_addrs(host_port, &args)?;
    // The HTTP port first: one that is taken fails the start before anything is made.
    let http = match args.http {
        Some(addr) => Some(bind_http(addr, args.http_token.clone()).await?),
        None => None,
    };
    let data_dir = args.data_dir.clone().or_else(|| default_data_dir(&listen));
    // What this start creates on disk, removed again if the start fails.
    let made: Vec<PathBuf> = [data_dir.as_deref(), args.identity.as_deref()]
        .into_iter()
        .flatten()
        .filter_map(first_missing)
        .collect();
    let started = start_node(&args, listen, data_dir).await;
    let node = match started {
        Ok(node) => node,
        Err(e) => {
            for path in &made {
                let _ = std::fs::remove_dir_all(path).or_else(|_| std::fs::remove_file(path));
            }
            return Err(e);
        }
    };
    let handle = node.handle();
    let status = handle.status().await?;
    announce_identity(&args, &status, json);
    if let Some(storage) = status.storage {
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

    let gateway = match (http, Files::of(&node)) {
        (Some(bound), Some(files)) => Some(bound.serve(files.clone())),
        _ => None,
    };
    if let Some(gateway) = &gateway {
        announce_http(gateway, json);
    }

    // The line editor puts the terminal in raw mode; a SIGTERM while it waits for a line
    // would leave it so. What it was before is put back at the end, whatever happens.
    let _terminal = shell::wanted().then(TerminalMode::save);
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
            // Ctrl-C belongs to the shell (it cancels the running command); SIGTERM stops.
            signal = terminate_signal() => { signal?; false }
        }
    } else {
        shutdown_signal().await?;
        false
    };
    // No HTTP request reaches a node that is leaving.
    drop(gateway);
    if !left {
        match tokio::time::timeout(LEAVE_TIMEOUT, node.leave()).await {
            Ok(Ok(left)) => emit(output::left(&left, json)),
            Ok(Err(e)) => tracing::warn!("leave: {e}"),
            Err(_) => tracing::warn!("leave timed out; exiting anyway"),
        }
    }
    if json {
        emit(json!({"event": "stopped"}));
    }
    Ok(())
}

/// Binds `--http ADDR` (with `--http-token`, or a token made when ADDR is not loopback).
async fn bind_http(addr: std::net::SocketAddr, token: Option<String>) -> Result<gateway::Bound> {
    let config = GatewayConfig {
        token,
        ..GatewayConfig::new(addr)
    };
    Gateway::bind(config).await.map_err(|e| match e {
        GatewayError::BadToken => usage(format!("--http-token: {e}")),
        other => anyhow::Error::new(other),
    })
}

/// Says where the HTTP server is (`http://ADDR:PORT/`), and the token it made, if any: the
/// only place it is ever shown.
fn announce_http(gateway: &Gateway, json: bool) {
    let made = gateway.token().filter(|_| gateway.token_generated());
    if json {
        let mut event = json!({"event": "http", "url": gateway.url()});
        if let (Some(token), Some(map)) = (made, event.as_object_mut()) {
            map.insert("token".into(), token.into());
        }
        emit(event);
        return;
    }
    emit(gateway.url());
    if let Some(token) = made {
        emit(format!(
            "http token {token} (PUT and DELETE from other machines send Authorization: \
             Bearer {token}; --http-token picks one)"
        ));
    }
}

/// The topmost of `path` and its ancestors that does not exist yet: what creating `path`
/// makes.
pub(super) fn first_missing(path: &std::path::Path) -> Option<PathBuf> {
    let mut missing = None;
    for p in path.ancestors().filter(|p| !p.as_os_str().is_empty()) {
        if p.exists() {
            break;
        }
        missing = Some(p.to_path_buf());
    }
    missing
}

/// Starts the node and joins its ring if asked; says where it listens only once it is a
/// member (a dead `--join` target fails before anything looks started).
pub(super) async fn start_node(
    args: &NodeArgs,
    listen: Vec<Multiaddr>,
    data_dir: Option<PathBuf>,
) -> Result<chord_p2p::node::Node> {
    let json = args.output.json;
    let identity = match &args.identity {
        Some(file) => Some(Client::load_identity(file)?),
        None => None,
    };
    let config = NodeConfig {
        listen,
        data_dir,
        identity,
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
    let joined = match target {
        Some(target) => match node.handle().join(target).await {
            Ok(successor) => Some(successor),
            Err(e) => {
                node.kill().await;
                return Err(anyhow::Error::new(e).context("cannot join the ring"));
            }
        },
        None => None,
    };
    for addr in node.listen_addrs() {
        if json {
            emit(json!({"event": "listening", "addr": addr.to_string()}));
        } else {
            emit(addr);
        }
    }
    if let Some(successor) = joined {
        if json {
            emit(json!({"event": "joined", "successor": output::node_json(&successor)}));
        } else {
            emit(format!(
                "joined the ring; successor {}",
                successor.addr.peer_id
            ));
        }
    }
    Ok(node)
}

/// Says who the node is and where it keeps itself; a throwaway identity is called one.
pub(super) fn announce_identity(
    args: &NodeArgs,
    status: &chord_p2p::net::StatusReport,
    json: bool,
) {
    let peer = status.node.addr.peer_id;
    let file = args.identity.clone().or_else(|| {
        let dir = status.data_dir.as_ref()?;
        Some(std::path::Path::new(dir).join("identity.key"))
    });
    let throwaway = file.is_none();
    if json {
        emit(json!({
            "event": "identity",
            "peer_id": peer.to_string(),
            "identity_file": file.as_ref().map(|f| f.display().to_string()),
            "data_dir": status.data_dir,
            "throwaway": throwaway,
        }));
        return;
    }
    match (&file, &status.data_dir) {
        (Some(file), dir) => {
            emit(format!("identity {peer} (key in {})", file.display()));
            if let Some(dir) = dir {
                emit(format!("data in {dir}"));
            }
            emit(format!(
                "act as this node from the command line with --identity {}",
                file.display()
            ));
        }
        (None, _) => emit(format!(
            "identity {peer} is throwaway: a node on a random port keeps nothing, so files \
             put from here can be removed only while it runs (pass --data-dir DIR or \
             --identity FILE to keep one)"
        )),
    }
}

/// Nine tenths of the space free where the files will live (or in the temp dir), at start.
pub(super) fn default_storage(data_dir: Option<&std::path::Path>) -> u64 {
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
pub(super) async fn shutdown_signal() -> Result<()> {
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

/// Resolves on SIGTERM only: while the shell runs, SIGINT is the user's Ctrl-C, which the
/// shell turns into "cancel the running command" (see `shell::run`).
pub(super) async fn terminate_signal() -> Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        term.recv().await;
        Ok(())
    }
    #[cfg(not(unix))]
    {
        std::future::pending().await
    }
}

/// The terminal's settings when the node started, restored when dropped.
struct TerminalMode(Option<libc::termios>);

impl TerminalMode {
    fn save() -> TerminalMode {
        // SAFETY: tcgetattr fills a plain struct we own; on failure we keep nothing.
        unsafe {
            let mut mode: libc::termios = std::mem::zeroed();
            let saved = libc::tcgetattr(libc::STDIN_FILENO, &mut mode) == 0;
            TerminalMode(saved.then_some(mode))
        }
    }
}

impl Drop for TerminalMode {
    fn drop(&mut self) {
        if let Some(mode) = &self.0 {
            // SAFETY: restores settings read from this same descriptor.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, mode);
            }
        }
    }
}
