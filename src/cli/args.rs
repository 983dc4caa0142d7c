//! Command-line arguments. Every flag's doc comment is its `--help` text.

use std::path::PathBuf;
use std::time::Duration;

use chord_p2p::net::RelayLimits;
use clap::{Parser, Subcommand};

/// A peer-to-peer node on a Chord ring, over libp2p (QUIC by default, TCP too).
///
/// With no subcommand, runs a node: an interactive shell when stdin is a terminal, headless
/// otherwise. `chord-p2p HOST PORT` is the form of the original Python tool this project grew
/// from (it took `IP PORT`): QUIC on UDP PORT and TCP on PORT.
#[derive(Debug, Parser)]
#[command(
    name = "chord-p2p",
    version,
    args_conflicts_with_subcommands = true,
    after_help = "Examples:
  chord-p2p --listen /ip4/0.0.0.0/udp/5000/quic-v1          start a ring (a shell on a terminal)
  chord-p2p 192.168.1.5 5001 --join 192.168.1.5:5000        join it (QUIC and TCP on port 5001)
  chord-p2p put report.pdf --peer 192.168.1.5:5000          share a file
  chord-p2p get report.pdf --peer 192.168.1.5:5000          fetch it anywhere
  CHORD_PEER=192.168.1.5:5000 chord-p2p ls                  a default peer instead of --peer"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// IP address or host name to listen on (with PORT): QUIC on UDP PORT and TCP on PORT.
    #[arg(value_name = "HOST", requires = "port")]
    pub ip: Option<String>,

    /// Port to listen on (with IP).
    #[arg(value_name = "PORT")]
    pub port: Option<u16>,

    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// Multiaddr to listen on; repeat for more. Default: QUIC on 127.0.0.1, a free port.
    #[arg(long, value_name = "MULTIADDR")]
    pub listen: Vec<libp2p::Multiaddr>,

    /// Join the ring of this node: a multiaddr (with or without /p2p/<id>), IP:PORT or host:PORT.
    #[arg(long, value_name = "ADDR")]
    pub join: Option<String>,

    /// Directory for the node's identity and its files (in DIR/files). Default: a per-user
    /// data directory named after the listen address; with a random port, nothing is kept.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// The node's identity key file (created if missing), instead of the one in its data
    /// directory: the node's ring id, and the uploader of what its shell puts.
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,

    /// Length r of the successor list: the ring survives r-1 adjacent failures.
    #[arg(long, value_name = "R", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub successors: u16,

    /// How often stabilize, check_predecessor and one fix_fingers step run (e.g. 1s, 200ms).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval, allow_hyphen_values = true)]
    pub stabilize_interval: Duration,

    /// How long a request to another node may take before that node counts as failed.
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_timeout, allow_hyphen_values = true)]
    pub rpc_timeout: Duration,

    /// Copies of each file on the ring: the owner's and R-1 on its next successors.
    #[arg(long, value_name = "R", default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub replicas: u16,

    /// How often files are re-replicated, handed off and checked (and after ring changes).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_interval, allow_hyphen_values = true)]
    pub repair_interval: Duration,

    /// Inbound transfers served at once from peers that are not this node's neighbours; more
    /// are refused "busy" at once.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_transfers: usize,

    /// Inbound transfers served at once from any one peer.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub max_transfers_per_peer: usize,

    /// Store at most SIZE bytes of files here (K, M, G or T: powers of 1024). A copy that
    /// would pass it is refused before its bytes move, and its owner places it on the next
    /// successor. Default: nine tenths of the disk space free at start.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_storage: Option<u64>,

    /// Reserve a slot on this relay and listen through it, for a node behind a NAT: ring
    /// members reach it through the relay, and hole punching upgrades to direct connections
    /// where the NATs allow. A multiaddr (with /p2p/<relay id> or not), IP:PORT or host:PORT;
    /// repeatable.
    #[arg(long, value_name = "ADDR")]
    pub relay: Vec<String>,

    /// Also serve circuit relay v2, so nodes behind NATs can be reached through this one.
    #[arg(long)]
    pub relay_server: bool,

    /// Relay service: bytes one relayed connection may carry; 0 = no limit. With a limit,
    /// nodes send no file data through this relay (Chord messages only).
    #[arg(long, value_name = "BYTES", default_value_t = RelayLimits::default().max_circuit_bytes)]
    pub relay_max_circuit_bytes: u64,

    /// Relay service: how long one relayed connection may last (it is reopened after).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_long, allow_hyphen_values = true)]
    pub relay_max_circuit_duration: Duration,

    /// Relay service: relayed connections at once.
    #[arg(long, value_name = "N", default_value_t = RelayLimits::default().max_circuits)]
    pub relay_max_circuits: usize,

    /// Relay service: nodes that may hold a reservation at once.
    #[arg(long, value_name = "N", default_value_t = RelayLimits::default().max_reservations)]
    pub relay_max_reservations: usize,

    /// An address where others reach this node that it cannot see itself (a port forward, a
    /// public IP in front of it); advertised as it is. Repeatable.
    #[arg(long, value_name = "MULTIADDR")]
    pub external_addr: Vec<libp2p::Multiaddr>,

    /// Show this node's open connections to anyone who asks `status` (by default only to the
    /// node's own shell and to clients on the same host).
    #[arg(long)]
    pub share_connections: bool,

    /// Established incoming connections accepted at once; more are refused.
    #[arg(long, value_name = "N", default_value_t = 512)]
    pub max_connections: u32,

    /// Incoming connections in their handshake at once; more are refused.
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub max_pending_connections: u32,

    /// Connections with any one peer, both ways.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_connections_per_peer: u32,

    /// How long a transfer to a node reached only through a relay waits for hole punching.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_timeout, allow_hyphen_values = true)]
    pub direct_wait: Duration,

    /// Serve HTTP on ADDR (e.g. 127.0.0.1:8080; port 0 picks one): files by name at
    /// /files/NAME (GET with Range, HEAD, PUT, DELETE), a JSON API under /api/, Prometheus
    /// metrics at /metrics. Off unless given. On an address other than loopback, PUT and
    /// DELETE need the token (--http-token, or one made and printed at start).
    #[arg(long, value_name = "ADDR")]
    pub http: Option<std::net::SocketAddr>,

    /// The bearer token that PUT and DELETE over --http must carry (Authorization: Bearer
    /// TOKEN) unless they come from this machine: 16 to 256 visible ASCII characters.
    #[arg(long, value_name = "TOKEN", requires = "http")]
    pub http_token: Option<String>,

    #[command(flatten)]
    pub output: OutputArgs,
}

impl NodeArgs {
    /// The relay service's limits, when it is on.
    pub fn relay_limits(&self) -> Option<RelayLimits> {
        self.relay_server.then_some(RelayLimits {
            max_reservations: self.relay_max_reservations,
            max_circuits: self.relay_max_circuits,
            max_circuit_duration: self.relay_max_circuit_duration,
            max_circuit_bytes: self.relay_max_circuit_bytes,
        })
    }
}

#[derive(Debug, Clone, Copy, clap::Args)]
pub struct OutputArgs {
    /// Print JSON (one object per line) instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// Log more on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Find the node responsible for a name, asking the ring through one member.
    #[command(after_help = "Example:\n  chord-p2p lookup report.pdf --peer 127.0.0.1:5000")]
    Lookup {
        /// The name (a file name, or any string).
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a node's predecessor, successor list and finger table.
    #[command(
        after_help = "Examples:\n  chord-p2p status --peer 127.0.0.1:5000\n  chord-p2p status --peer 127.0.0.1:5000 --json | jq .successors"
    )]
    Status {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Put a local file or folder on the ring (stored at successor(SHA-1(name)) and its
    /// replicas); prints a ticket (chord:…) that `get` takes without --peer.
    #[command(
        after_help = "Examples:\n  chord-p2p put notes.txt --peer 127.0.0.1:5000\n  chord-p2p put ./build/app.tar --name releases/app-1.2.tar --peer 127.0.0.1:5000\n  chord-p2p put big.iso --limit-rate 2M --peer 127.0.0.1:5000\n  chord-p2p put ~/photos --peer 127.0.0.1:5000     a folder: its files, then its manifest under photos/"
    )]
    Put {
        /// The local file or folder to upload (a folder's files go under NAME/path, its
        /// manifest under NAME/).
        file: PathBuf,
        /// The name on the ring (default: the file's or folder's name).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        rate: RateArgs,
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        sign: SignArgs,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Get a file or folder from the ring, verified by its hash (an interrupted get resumes).
    #[command(
        after_help = "Examples:\n  chord-p2p get notes.txt --peer 127.0.0.1:5000\n  chord-p2p get releases/app-1.2.tar -o ~/Downloads/ --peer 127.0.0.1:5000\n  chord-p2p get notes.txt --force --peer 127.0.0.1:5000     replace a local notes.txt\n  chord-p2p get photos/ --peer 127.0.0.1:5000     a folder, into ./photos\n  chord-p2p get chord:unqx…     what a ticket names, from the members it names"
    )]
    Get {
        /// The name on the ring (a folder's ends with /; a name that is no file is tried as a
        /// folder), or a ticket (chord:…), which needs no --peer.
        name: String,
        /// Where to write it: a file, or a directory to write it into (default: the name's
        /// last component, in the current directory).
        #[arg(short, long, value_name = "OUT")]
        output: Option<PathBuf>,
        /// Replace the local file if it exists; for a folder, write into an existing one
        /// (only the files that are missing or differ are fetched).
        #[arg(long)]
        force: bool,
        /// Only bytes START to END (inclusive, as in HTTP ranges), fetching about that much;
        /// with `-o -` they go to stdout.
        #[arg(long, value_name = "START-END", value_parser = parse_byte_range)]
        range: Option<(u64, u64)>,
        #[command(flatten)]
        rate: RateArgs,
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// List the files one node holds, or with --ring every file on the ring.
    #[command(
        after_help = "Examples:\n  chord-p2p ls --peer 127.0.0.1:5000            what that node holds (owner and replica)\n  chord-p2p ls --ring --peer 127.0.0.1:5000     every file on the ring, once, with its owner"
    )]
    Ls {
        /// Walk the ring along successors and list what each member owns: every file once.
        #[arg(long)]
        ring: bool,
        /// With --ring: members to walk at most.
        #[arg(long, value_name = "N", default_value_t = 1024, requires = "ring")]
        max_members: usize,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove every copy of a file (only its uploader may).
    #[command(
        after_help = "Examples:\n  chord-p2p rm notes.txt --peer 127.0.0.1:5000\n  chord-p2p rm notes.txt --identity ~/.local/share/chord-p2p/NODE/identity.key --peer 127.0.0.1:5000   as that node"
    )]
    Rm {
        /// The name on the ring.
        name: String,
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        sign: SignArgs,
    },
    /// Print a completion script for a shell.
    #[command(
        after_help = "Examples:\n  chord-p2p completions bash > ~/.local/share/bash-completion/completions/chord-p2p\n  chord-p2p completions zsh > ~/.zfunc/_chord-p2p\n  chord-p2p completions fish > ~/.config/fish/completions/chord-p2p.fish"
    )]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), made from these very definitions.
    #[command(after_help = "Example:\n  chord-p2p man > chord-p2p.1 && man ./chord-p2p.1")]
    Man,
}

#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// The node to ask: a multiaddr, IP:PORT or host:PORT. Default: $CHORD_PEER, else
    /// `peer = "ADDR"` in the config file (chord-p2p/config.toml in the per-user config dir).
    #[arg(long, value_name = "ADDR", env = "CHORD_PEER")]
    pub peer: Option<String>,

    /// How long to wait for each connection and answer.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_timeout, allow_hyphen_values = true)]
    pub timeout: Duration,
}

/// Who signs what a command puts or removes.
#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// Identity file to sign with (created if missing). Files belong to whoever put them, so
    /// keep it to replace or remove your files later; a node's own key file (its data dir's
    /// identity.key, or its --identity) acts as that node. Default: in the per-user config dir.
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
}

/// How a transfer reaches a node behind a NAT.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct WaitArgs {
    /// How long a transfer to a node reached only through a relay waits for hole punching.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_timeout, allow_hyphen_values = true)]
    pub direct_wait: Duration,
}

#[derive(Debug, Clone, Copy, clap::Args)]
pub struct RateArgs {
    /// Cap the transfer at RATE bytes per second: a number with an optional K, M or G suffix
    /// (powers of 1024), e.g. 500K or 4M.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub limit_rate: Option<u64>,
}

/// `START-END`: bytes START to END, both included (as HTTP's `Range: bytes=START-END`).
fn parse_byte_range(text: &str) -> Result<(u64, u64), String> {
    let bad = || format!("'{text}' is not a byte range (e.g. 1000-1999: bytes 1000 to 1999)");
    let (start, end) = text.split_once('-').ok_or_else(bad)?;
    let start: u64 = start.trim().parse().map_err(|_| bad())?;
    let end: u64 = end.trim().parse().map_err(|_| bad())?;
    if end < start {
        return Err(format!("'{text}': the range ends before it starts"));
    }
    Ok((start, end))
}

/// `4M`, `512K`, `1G`, `1000`, also with a trailing `B`, `iB` or `/s`.
fn parse_rate(text: &str) -> Result<u64, String> {
    parse_bytes(text.trim().trim_end_matches("/s"))
        .ok_or_else(|| format!("'{text}' is not a rate (e.g. 500K, 4M, 1G)"))
}

/// `10M`, `500G`, `2T`, `4096`, also with a trailing `B` or `iB`.
fn parse_size(text: &str) -> Result<u64, String> {
    parse_bytes(text).ok_or_else(|| format!("'{text}' is not a size (e.g. 500M, 20G, 2T)"))
}

/// A number of bytes with an optional K, M, G or T suffix (powers of 1024); at least 1.
fn parse_bytes(text: &str) -> Option<u64> {
    let trimmed = text.trim();
    let trimmed = trimmed
        .strip_suffix("iB")
        .or_else(|| trimmed.strip_suffix('B'))
        .unwrap_or(trimmed);
    let (digits, unit) = match trimmed
        .char_indices()
        .find(|(_, c)| c.is_ascii_alphabetic())
    {
        Some((at, _)) => trimmed.split_at(at),
        None => (trimmed, ""),
    };
    let scale: u64 = match unit.to_ascii_uppercase().as_str() {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return None,
    };
    let value: f64 = digits.trim().parse().ok()?;
    let bytes = value * scale as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return None;
    }
    Some(bytes as u64)
}

/// A duration from `min` to `max` (e.g. 200ms, 5s, 1m): a typo such as `1ms` for a timeout
/// or `100y` for an interval is refused rather than run with.
fn duration_between(text: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let text = text.trim();
    if text.starts_with('-') {
        return Err(format!("'{text}': a duration cannot be negative"));
    }
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("'{text}' is not a duration ({e}; e.g. 200ms, 5s, 1m)"))?;
    let shown = |d: Duration| humantime::format_duration(d).to_string();
    if d < min {
        return Err(format!("'{text}' is too short: at least {}", shown(min)));
    }
    if d > max {
        return Err(format!("'{text}' is too long: at most {}", shown(max)));
    }
    Ok(d)
}

/// How often something periodic runs: 10 ms to 1 h.
fn parse_interval(text: &str) -> Result<Duration, String> {
    duration_between(text, Duration::from_millis(10), Duration::from_secs(3600))
}

/// How long to wait for a peer: 50 ms to 10 min.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    duration_between(text, Duration::from_millis(50), Duration::from_secs(600))
}

/// How long a relayed connection may last: 1 s to 1 day.
fn parse_long(text: &str) -> Result<Duration, String> {
    duration_between(text, Duration::from_secs(1), Duration::from_secs(86_400))
}

#[cfg(test)]
mod tests {
    use super::{parse_interval, parse_rate, parse_size, parse_timeout};
    use std::time::Duration;

    #[test]
    fn durations_are_positive_and_sane() {
        assert_eq!(parse_interval("200ms"), Ok(Duration::from_millis(200)));
        let negative = parse_interval("-1s").unwrap_err();
        assert!(negative.contains("cannot be negative"), "{negative}");
        assert!(parse_interval("100y").unwrap_err().contains("too long"));
        assert!(parse_timeout("1ms").unwrap_err().contains("too short"));
        assert!(parse_timeout("soon")
            .unwrap_err()
            .contains("not a duration"));
    }

    #[test]
    fn rates_read_like_curl() {
        assert_eq!(parse_rate("1000"), Ok(1000));
        assert_eq!(parse_rate("4M"), Ok(4 << 20));
        assert_eq!(parse_rate("512k"), Ok(512 << 10));
        assert_eq!(parse_rate("1.5MiB/s"), Ok(3 << 19));
        assert_eq!(parse_rate("2GB"), Ok(2 << 30));
        for bad in ["", "0", "fast", "4X", "-1K"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_size("10M"), Ok(10 << 20));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        assert!(parse_size("10M/s").is_err());
    }
}
