//! Who may change things. Reading (GET, HEAD) is open to whoever reaches the listener: the
//! ring's files are readable by any member anyway. Everything else (PUT, DELETE, and any
//! method added later) acts as the node's identity, so it needs `Authorization: Bearer TOKEN`
//! unless it comes from this machine.
//!
//! "From this machine" means a loopback peer address *and* a loopback `Host` header: a web page
//! from elsewhere that gets a browser to send to 127.0.0.1 through a name it controls (DNS
//! rebinding) carries its own name in `Host`, and is asked for the token. A plain cross-site
//! `fetch` cannot send a PUT or DELETE at all without a CORS preflight, which this server never
//! grants. A reverse proxy on the same host makes every request look local: give it the token
//! and bind the gateway where only the proxy reaches it.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::RngCore;

use super::error::ApiError;
use super::Shared;

/// The token rule of one server.
#[derive(Debug)]
pub(super) struct Auth {
    token: Option<String>,
    loopback_is_remote: bool,
}

impl Auth {
    pub(super) fn new(token: Option<String>, loopback_is_remote: bool) -> Auth {
        Auth {
            token,
            loopback_is_remote,
        }
    }

    pub(super) fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// May a request from `peer` with these headers change anything?
    pub(super) fn allows(&self, peer: IpAddr, headers: &HeaderMap) -> bool {
        let local = !self.loopback_is_remote && is_loopback(peer) && host_is_local(headers);
        if local {
            return true;
        }
        let Some(token) = &self.token else {
            return false;
        };
        headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.strip_prefix("Bearer "))
            .any(|given| same_secret(given.trim().as_bytes(), token.as_bytes()))
    }
}

/// The middleware: reads pass, writes need the token or a local client.
pub(super) async fn check(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    if reads || state.auth.allows(peer.ip(), request.headers()) {
        return next.run(request).await;
    }
    let mut response = ApiError::unauthorized(
        "this request changes the ring: send Authorization: Bearer TOKEN (the token the node \
         printed at start, or its --http-token)",
    )
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

/// 128 bits from the operating system's generator, as 32 hex digits.
pub fn generate_token() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A token a person could type and a header can carry, long enough not to be guessed.
pub(super) fn token_is_valid(token: &str) -> bool {
    (16..=256).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_graphic())
}

/// Compares in time that does not depend on where the first difference is (the length may
/// show; the token's length is no secret worth keeping).
fn same_secret(given: &[u8], token: &[u8]) -> bool {
    given.len() == token.len() && given.iter().zip(token).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
}

/// Loopback, also as an IPv4 address mapped into IPv6 (a dual-stack listener's view).
fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// Whether the `Host` the client asked for names this machine: `localhost` (or a name under
/// it) or a loopback address. No `Host` at all (HTTP/1.0 tools) is no browser: local.
fn host_is_local(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST) else {
        return true;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        // [::1]:8080
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _port)| name),
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(is_loopback)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().expect("header value"));
        }
        map
    }

    const TOKEN: &str = "0123456789abcdef0123";
    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const REMOTE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

    #[test]
    fn local_clients_need_no_token_remote_ones_do() {
        let auth = Auth::new(Some(TOKEN.into()), false);
        assert!(auth.allows(LOCAL, &headers(&[("host", "127.0.0.1:8080")])));
        assert!(auth.allows(LOCAL, &headers(&[("host", "localhost:8080")])));
        assert!(auth.allows(LOCAL, &headers(&[("host", "[::1]:8080")])));
        assert!(auth.allows(LOCAL, &headers(&[])));
        assert!(!auth.allows(REMOTE, &headers(&[("host", "127.0.0.1:8080")])));
        let bearer = format!("Bearer {TOKEN}");
        assert!(auth.allows(REMOTE, &headers(&[("authorization", &bearer)])));
        assert!(!auth.allows(
            REMOTE,
            &headers(&[("authorization", "Bearer 0123456789abcdef0124")])
        ));
        assert!(!auth.allows(REMOTE, &headers(&[("authorization", TOKEN)])));
        // A mapped IPv4 loopback address is loopback.
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().expect("ip");
        assert!(auth.allows(mapped, &headers(&[("host", "127.0.0.1")])));
    }

    #[test]
    fn a_foreign_host_header_on_loopback_needs_the_token() {
        let auth = Auth::new(Some(TOKEN.into()), false);
        let rebound = headers(&[("host", "attacker.example:8080")]);
        assert!(!auth.allows(LOCAL, &rebound));
        let mut with_token = rebound;
        with_token.append(
            header::AUTHORIZATION,
            format!("Bearer {TOKEN}").parse().expect("value"),
        );
        assert!(auth.allows(LOCAL, &with_token));
        // Without any token, only local clients may change anything.
        let open = Auth::new(None, false);
        assert!(!open.allows(LOCAL, &headers(&[("host", "attacker.example")])));
        assert!(!open.allows(REMOTE, &headers(&[])));
    }

    #[test]
    fn the_test_switch_treats_loopback_as_remote() {
        let auth = Auth::new(Some(TOKEN.into()), true);
        assert!(!auth.allows(LOCAL, &headers(&[("host", "127.0.0.1")])));
        let bearer = format!("Bearer {TOKEN}");
        assert!(auth.allows(LOCAL, &headers(&[("authorization", &bearer)])));
    }

    #[test]
    fn generated_tokens_are_valid_and_differ() {
        let (a, b) = (generate_token(), generate_token());
        assert!(token_is_valid(&a) && token_is_valid(&b));
        assert_ne!(a, b);
        assert!(!token_is_valid("short"));
        assert!(!token_is_valid("has a space in it, sadly"));
    }
}
