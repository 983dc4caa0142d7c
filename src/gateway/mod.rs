//! The node's HTTP face (`--http ADDR`): a gateway that reads and writes files on the ring for
//! anything that speaks HTTP (`/files/…`), a JSON mirror of `status`, `lookup` and `ls`
//! (`/api/…`), and Prometheus metrics (`/metrics`). It uses only what the node already offers
//! its own shell — the file service ([`Files`]) and its [`crate::files::Access`] — so every
//! read is verified as any get is, and every write is signed by the node's identity.
//!
//! One module per job: [`auth`] (who may change things), [`files`] (the gateway), [`api`],
//! [`metrics`], [`dashboard`] (the page at `/`, its assets embedded with `include_str!`, the
//! ring view of [`ring`] and its live updates as server-sent events), and [`error`] (how
//! failures become status codes). Each contributes its own routes to the [`router`].

mod api;
mod auth;
mod dashboard;
mod error;
mod files;
mod metrics;
mod ring;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::{middleware, Router};
use tokio::task::JoinHandle;

use crate::files::Files;
use auth::Auth;
use metrics::Metrics;

pub use auth::generate_token;

/// Where and how to serve.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub addr: SocketAddr,
    /// The bearer token that requests changing anything must carry unless they come from
    /// loopback. Required (generated when `None`) on an address other than loopback.
    pub token: Option<String>,
    /// Tests only: treat loopback clients like remote ones, so the token rule can be tested
    /// on 127.0.0.1 (no test may listen elsewhere).
    #[doc(hidden)]
    pub loopback_is_remote: bool,
}

impl GatewayConfig {
    pub fn new(addr: SocketAddr) -> GatewayConfig {
        GatewayConfig {
            addr,
            token: None,
            loopback_is_remote: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot serve HTTP on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error(
        "an HTTP token must be 16 to 256 visible ASCII characters (letters, digits, \
         punctuation; no spaces)"
    )]
    BadToken,
}

/// A bound HTTP listener, not serving yet: binding comes first so a node whose `--http`
/// address is taken fails before it starts (and leaves nothing behind).
pub struct Bound {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    auth: Auth,
    generated: bool,
}

impl Bound {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `files` (a ring member's file service) until the returned [`Gateway`] drops.
    pub fn serve(self, files: Files) -> Gateway {
        let token = self.auth.token().map(str::to_string);
        let state = Shared {
            metrics: Arc::new(Metrics::new(files.clone())),
            files,
            auth: Arc::new(self.auth),
            scratch: Arc::new(tokio::sync::Semaphore::new(files::MAX_SCRATCH)),
        };
        let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
        let listener = self.listener;
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!("the HTTP server stopped: {e}");
            }
        });
        Gateway {
            addr: self.addr,
            token,
            generated: self.generated,
            task,
        }
    }
}

/// A running HTTP server. Dropping it stops it (requests under way are cut).
pub struct Gateway {
    addr: SocketAddr,
    token: Option<String>,
    generated: bool,
    task: JoinHandle<()>,
}

impl Gateway {
    /// Checks the token rule and binds `config.addr` (port 0 picks a free port).
    pub async fn bind(config: GatewayConfig) -> Result<Bound, GatewayError> {
        let bind_error = |e: std::io::Error| GatewayError::Bind {
            addr: config.addr,
            reason: e.to_string(),
        };
        let (token, generated) = match config.token {
            Some(token) if auth::token_is_valid(&token) => (Some(token), false),
            Some(_) => return Err(GatewayError::BadToken),
            None if config.addr.ip().is_loopback() => (None, false),
            None => (Some(generate_token()), true),
        };
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        Ok(Bound {
            listener,
            addr,
            auth: Auth::new(token, config.loopback_is_remote),
            generated,
        })
    }

    /// Binds and serves at once.
    pub async fn start(files: Files, config: GatewayConfig) -> Result<Gateway, GatewayError> {
        Ok(Gateway::bind(config).await?.serve(files))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR:PORT/`: what to open or curl.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The token writes must carry from outside loopback, if there is one.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Whether the token was made at start (and so must be shown to the user).
    pub fn token_generated(&self) -> bool {
        self.generated
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
struct Shared {
    files: Files,
    auth: Arc<Auth>,
    metrics: Arc<Metrics>,
    /// Places for whole files in scratch files (see [`files::MAX_SCRATCH`]).
    scratch: Arc<tokio::sync::Semaphore>,
}

/// Every route, behind the token check and, outermost, the request metrics (so refusals
/// are counted too).
fn router(state: Shared) -> Router {
    Router::new()
        .merge(dashboard::routes())
        .merge(files::routes())
        .merge(api::routes())
        .merge(metrics::routes())
        .fallback(error::no_route)
        .layer(middleware::from_fn_with_state(state.clone(), auth::check))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::count_requests,
        ))
        .with_state(state)
}
