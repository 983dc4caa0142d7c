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
use chord_p2p::client::{Client, ClientError};
use chord_p2p::files::folder::{self, FolderError, FolderGetReport};
use chord_p2p::files::names::local_path;
use chord_p2p::files::{Files, FilesConfig, FilesError, Ticket};
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
        Some(Command::Lookup { name, client }) => lookup(&name, &Ask::new(&client), json).await,
        Some(Command::Status { client }) => status(&Ask::new(&client), json).await,
        Some(Command::Put {
            file,
            name,
            rate,
            client,
            sign,
            wait,
        }) => {
            put(
                &file,
                name,
                rate,
                &Ask::new(&client).sign(&sign).wait(wait),
                json,
            )
            .await
        }
        Some(Command::Get {
            name,
            output,
            force,
            rate,
            client,
            wait,
        }) => {
            get(
                &name,
                output,
                force,
                rate,
                &Ask::new(&client).wait(wait),
                json,
            )
            .await
        }
        Some(Command::Ls {
            ring: false,
            client,
            ..
        }) => ls(&Ask::new(&client), json).await,
        Some(Command::Ls {
            ring: true,
            max_members,
            client,
        }) => ls_ring(&Ask::new(&client), max_members, json).await,
        Some(Command::Rm { name, client, sign }) => {
            rm(&name, &Ask::new(&client).sign(&sign), json).await
        }
        Some(Command::Completions { shell }) => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "chord-p2p", &mut std::io::stdout());
            Ok(())
        }
        Some(Command::Man) => {
            let command = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(command)
                .render(&mut std::io::stdout())
                .context("cannot write the manual page")
        }
        None => run_node(cli.ip.zip(cli.port), cli.node).await,
    }
}

/// What a one-shot command needs to reach the ring: whom to ask, and (for puts and
/// removals) whom to sign as, and (for transfers) how long to wait for hole punching.
pub struct Ask<'a> {
    client: &'a ClientArgs,
    identity: Option<&'a std::path::Path>,
    signs: bool,
    direct_wait: Option<Duration>,
}

impl<'a> Ask<'a> {
    fn new(client: &'a ClientArgs) -> Self {
        Ask {
            client,
            identity: None,
            signs: false,
            direct_wait: None,
        }
    }

    fn sign(mut self, sign: &'a args::SignArgs) -> Self {
        self.identity = sign.identity.as_deref();
        self.signs = true;
        self
    }

    fn wait(mut self, wait: args::WaitArgs) -> Self {
        self.direct_wait = Some(wait.direct_wait);
        self
    }
}

/// The peer to ask: `--peer` (or $CHORD_PEER), else `peer` in the per-user config file.
fn peer_address(args: &ClientArgs) -> Result<String> {
    if let Some(peer) = &args.peer {
        return Ok(peer.clone());
    }
    let file = dirs::config_dir().map(|d| d.join("chord-p2p").join("config.toml"));
    if let Some(peer) = file.as_deref().and_then(config_peer) {
        return Ok(peer);
    }
    let shown = file.map_or("the config file".into(), |f| f.display().to_string());
    Err(usage(format!(
        "which node? pass --peer ADDR, set CHORD_PEER, or put peer = \"ADDR\" in {shown}"
    )))
}

/// `peer = "ADDR"` from a small TOML config file, if the file has it.
fn config_peer(file: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let config: toml::Table = text.parse().ok()?;
    config.get("peer")?.as_str().map(String::from)
}

async fn connect(ask: &Ask<'_>) -> Result<(Client, net::PeerRef)> {
    let target = parse_target(&peer_address(ask.client)?)?;
    let timeout = ask.client.timeout;
    let mut client = match (ask.signs, ask.identity) {
        (true, path) => match path
            .map(PathBuf::from)
            .or_else(Client::default_identity_path)
        {
            Some(path) => Client::with_identity(Client::load_identity(&path)?, timeout).await?,
            None => Client::new(timeout).await?,
        },
        (false, _) => Client::new(timeout).await?,
    };
    if let Some(wait) = ask.direct_wait {
        client.set_direct_wait(wait);
    }
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
    args: &Ask<'_>,
    json: bool,
) -> Result<()> {
    // Fail before connecting anywhere if the file is not there.
    let folder = input_kind(file)?;
    let name = match name {
        Some(name) => name,
        None if folder => default_folder_name(file)?,
        None => default_name(file)?,
    };
    if !folder && folder::is_folder_name(&name) {
        return Err(usage(format!(
            "'{name}' ends with /, which names a folder; put a folder under it, or drop the /"
        )));
    }
    let (mut client, entry) = connect(args).await?;
    client.set_rate_limit(rate.limit_rate);
    if folder {
        return put_folder(client, entry, file, &name, json).await;
    }
    let (c, e) = (&client, &entry);
    let report = with_progress(json, |tick| async move {
        c.put(e, file, &name, Some(&*tick)).await
    })
    .await;
    let ticket = match &report {
        Ok(r) => client.ticket(&entry, &r.name).await.encode(),
        Err(_) => String::new(),
    };
    client.close().await;
    let report = report?;
    emit(if json {
        output::with_ticket(output::put_json(&report), &ticket).to_string()
    } else {
        format!(
            "{}\n{}",
            output::put_text(&report),
            output::ticket_text(&ticket)
        )
    });
    Ok(())
}

/// Whether a put shares a folder (else one file), checked before connecting anywhere.
fn input_kind(path: &std::path::Path) -> Result<bool> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(meta.is_dir()),
        Err(e) => Err(usage(format!(
            "cannot read {}: {}",
            path.display(),
            io_cause(&e)
        ))),
    }
}

/// The name a local folder is shared under by default: its own name (also for `.`).
fn default_folder_name(dir: &std::path::Path) -> Result<String> {
    let full = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    default_name(&full)
}

/// `put DIR`: every file, then the manifest, with progress over the whole folder.
async fn put_folder(
    client: Client,
    entry: net::PeerRef,
    dir: &std::path::Path,
    name: &str,
    json: bool,
) -> Result<()> {
    let (c, e) = (&client, &entry);
    let report = with_progress(json, |tick| async move {
        c.put_folder(e, dir, name, Some(&*tick)).await
    })
    .await;
    let ticket = match &report {
        Ok(r) => client.ticket(&entry, &r.name).await.encode(),
        Err(_) => String::new(),
    };
    client.close().await;
    let report = report?;
    emit(if json {
        output::folder_put_json(&report, &ticket).to_string()
    } else {
        output::folder_put_text(&report, &ticket)
    });
    Ok(())
}

async fn get(
    name: &str,
    output: Option<PathBuf>,
    force: bool,
    rate: RateArgs,
    args: &Ask<'_>,
    json: bool,
) -> Result<()> {
    let ticket = if Ticket::is_ticket(name) {
        Some(Ticket::decode(name).map_err(|e| usage(e.to_string()))?)
    } else {
        None
    };
    let name = ticket.as_ref().map_or(name, |t| t.name.as_str());
    let ticket = ticket.as_ref();
    if folder::is_folder_name(name) {
        let target = folder_target(name, output, force)?;
        let (mut client, entry) = connect_for(args, ticket).await?;
        client.set_rate_limit(rate.limit_rate);
        return get_folder(client, entry, name, &target, force, json).await;
    }
    let out = match output_path(name, output.clone(), force) {
        Ok(out) => out,
        // A folder is there: the name is taken as a folder's, to resume a get under way
        // into it, or to write into it with `force`.
        Err(e) => match folder_place(name, output) {
            Ok(target) if target.is_dir() => {
                check_folder_target(&target, force)?;
                let (mut client, entry) = connect_for(args, ticket).await?;
                client.set_rate_limit(rate.limit_rate);
                return get_folder(client, entry, name, &target, force, json).await;
            }
            _ => return Err(e),
        },
    };
    let (mut client, entry) = connect_for(args, ticket).await?;
    client.set_rate_limit(rate.limit_rate);
    let (c, e) = (&client, &entry);
    let report = with_progress(json, |tick| async move {
        c.get(e, name, &out, Some(&*tick)).await
    })
    .await;
    let report = match report {
        // No file has that name: perhaps a folder does (its manifest is `name/`).
        Err(ClientError::Files(FilesError::NotFound(missing))) => {
            let folder = match folder_target(name, output, force) {
                Ok(target) => {
                    let folder = folder::folder_name(name);
                    Some(fetch_folder(c, e, &folder, &target, force, json).await)
                }
                Err(_) => None,
            };
            client.close().await;
            return match folder {
                Some(Err(ClientError::Folder(FolderError::Files(FilesError::NotFound(_)))))
                | None => Err(FilesError::NotFound(missing).into()),
                Some(folder) => print_folder(folder?, json),
            };
        }
        other => other,
    };
    client.close().await;
    let report = report?;
    emit(if json {
        output::get_json(&report).to_string()
    } else {
        output::get_text(&report)
    });
    Ok(())
}

/// Where a folder get writes: `-o NEW`, a folder a get is under way into, inside `-o DIR`
/// (as `cp -r` does), or the folder's last component here. Checked before the ring is
/// asked: an existing folder is written into only when a get into it is under way (a re-run
/// resumes), it is empty, or with `force`.
fn folder_target(name: &str, output: Option<PathBuf>, force: bool) -> Result<PathBuf> {
    let target = folder_place(name, output)?;
    check_folder_target(&target, force)?;
    Ok(target)
}

/// The local folder a get of the folder `name` writes (see [`folder_target`]), unchecked.
fn folder_place(name: &str, output: Option<PathBuf>) -> Result<PathBuf> {
    let bare = name.trim_end_matches('/');
    Ok(match output {
        Some(dir) if dir.is_dir() && !folder::get_under_way(&dir) => local_path(&dir, bare)?,
        Some(path) => path,
        None => local_path(std::path::Path::new("."), bare)?,
    })
}

fn check_folder_target(target: &std::path::Path, force: bool) -> Result<()> {
    match folder::check_target(target, force) {
        Ok(_) => Ok(()),
        Err(FolderError::Exists(shown)) => Err(usage(format!(
            "{shown} already exists; pass --force to write into it (files that differ are \
             replaced)"
        ))),
        Err(e) => Err(usage(e.to_string())),
    }
}

/// Connects for a get: to the ticket's members when there is a ticket (all dialed at once),
/// falling back to the peer the user named; else as every command does.
async fn connect_for(ask: &Ask<'_>, ticket: Option<&Ticket>) -> Result<(Client, net::PeerRef)> {
    let Some(ticket) = ticket else {
        return connect(ask).await;
    };
    let mut client = Client::new(ask.client.timeout).await?;
    if let Some(wait) = ask.direct_wait {
        client.set_direct_wait(wait);
    }
    match client.connect_any(ticket.targets()).await {
        Ok(entry) => Ok((client, entry)),
        Err(e) if peer_address(ask.client).is_ok() => {
            tracing::info!("no member of the ticket answered ({e}); asking the peer given");
            client.close().await;
            connect(ask).await
        }
        Err(e) => Err(anyhow::Error::from(e).context("no member the ticket names answered")),
    }
}

/// Gets a folder with progress over all its files.
async fn fetch_folder(
    client: &Client,
    entry: &net::PeerRef,
    name: &str,
    target: &std::path::Path,
    force: bool,
    json: bool,
) -> Result<FolderGetReport, ClientError> {
    with_progress(json, |tick| async move {
        client
            .get_folder(entry, name, target, force, Some(&*tick))
            .await
    })
    .await
}

/// `get NAME/`: the folder into `target`, then what it did.
async fn get_folder(
    client: Client,
    entry: net::PeerRef,
    name: &str,
    target: &std::path::Path,
    force: bool,
    json: bool,
) -> Result<()> {
    let folder = folder::folder_name(name);
    let report = fetch_folder(&client, &entry, &folder, target, force, json).await;
    client.close().await;
    print_folder(report?, json)
}

fn print_folder(report: FolderGetReport, json: bool) -> Result<()> {
    emit(if json {
        output::folder_get_json(&report).to_string()
    } else {
        output::folder_get_text(&report)
    });
    Ok(())
}

async fn ls(args: &Ask<'_>, json: bool) -> Result<()> {
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

async fn ls_ring(args: &Ask<'_>, max_members: usize, json: bool) -> Result<()> {
    let (client, entry) = connect(args).await?;
    let listing = client.list_ring(&entry, max_members).await;
    client.close().await;
    let listing = listing?;
    emit(if json {
        output::ring_files_json(&listing).to_string()
    } else {
        output::ring_files_text(&listing)
    });
    Ok(())
}

async fn rm(name: &str, args: &Ask<'_>, json: bool) -> Result<()> {
    let (client, entry) = connect(args).await?;
    let copies = client.remove(&entry, name).await;
    client.close().await;
    let copies = copies?;
    emit(output::removed(name, copies, json));
    Ok(())
}

async fn lookup(name: &str, args: &Ask<'_>, json: bool) -> Result<()> {
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

async fn status(args: &Ask<'_>, json: bool) -> Result<()> {
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

/// The address a `HOST PORT` node listens on: an IP as it is, a host name resolved (IPv4
/// first, as the original tool did).
fn listen_ip(host: &str, port: u16) -> Result<IpAddr> {
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

fn listen_addrs(host_port: Option<(String, u16)>, args: &NodeArgs) -> Result<Vec<Multiaddr>> {
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

async fn run_node(host_port: Option<(String, u16)>, args: NodeArgs) -> Result<()> {
    let json = args.output.json;
    if args.replicas > args.successors + 1 {
        return Err(usage(format!(
            "--replicas {} needs --successors {} or more: a file's copies sit on its owner's \
             successors",
            args.replicas,
            args.replicas - 1
        )));
    }
    let listen = listen_addrs(host_port, &args)?;
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

/// The topmost of `path` and its ancestors that does not exist yet: what creating `path`
/// makes.
fn first_missing(path: &std::path::Path) -> Option<PathBuf> {
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
async fn start_node(
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
fn announce_identity(args: &NodeArgs, status: &chord_p2p::net::StatusReport, json: bool) {
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

/// Resolves on SIGTERM only: while the shell runs, SIGINT is the user's Ctrl-C, which the
/// shell turns into "cancel the running command" (see `shell::run`).
async fn terminate_signal() -> Result<()> {
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
