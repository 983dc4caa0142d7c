//! Reaching the ring from a one-shot command: which member to ask (`--peer`, `CHORD_PEER`, the
//! config file, or a ticket's members) and whom to sign as.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use chord_p2p::client::Client;
use chord_p2p::files::Ticket;
use chord_p2p::net::{self, parse_target};

use super::args::{self, ClientArgs};
use super::usage;

/// What a one-shot command needs to reach the ring: whom to ask, and (for puts and
/// removals) whom to sign as, and (for transfers) how long to wait for hole punching.
pub struct Ask<'a> {
    client: &'a ClientArgs,
    identity: Option<&'a std::path::Path>,
    signs: bool,
    direct_wait: Option<Duration>,
}

impl<'a> Ask<'a> {
    pub(super) fn new(client: &'a ClientArgs) -> Self {
        Ask {
            client,
            identity: None,
            signs: false,
            direct_wait: None,
        }
    }

    pub(super) fn sign(mut self, sign: &'a args::SignArgs) -> Self {
        self.identity = sign.identity.as_deref();
        self.signs = true;
        self
    }

    pub(super) fn wait(mut self, wait: args::WaitArgs) -> Self {
        self.direct_wait = Some(wait.direct_wait);
        self
    }
}

/// The peer to ask: `--peer` (or $CHORD_PEER), else `peer` in the per-user config file.
pub(super) fn peer_address(args: &ClientArgs) -> Result<String> {
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
pub(super) fn config_peer(file: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let config: toml::Table = text.parse().ok()?;
    config.get("peer")?.as_str().map(String::from)
}

pub(super) async fn connect(ask: &Ask<'_>) -> Result<(Client, net::PeerRef)> {
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

/// Connects for a get: to the ticket's members when there is a ticket (all dialed at once),
/// falling back to the peer the user named; else as every command does.
pub(super) async fn connect_for(
    ask: &Ask<'_>,
    ticket: Option<&Ticket>,
) -> Result<(Client, net::PeerRef)> {
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
