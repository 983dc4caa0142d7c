//! What users type to name a node: a multiaddr (with or without `/p2p/<id>`), or the original
//! tool's `IP:PORT` / `[IPv6]:PORT` / `host:PORT`.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

/// A node to dial: addresses to try (best first), and its peer id if the user gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub peer_id: Option<PeerId>,
    pub addrs: Vec<Multiaddr>,
    /// What the user typed, for error messages.
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    #[error("'{0}' is not a valid multiaddr: {1}")]
    Multiaddr(String, String),
    #[error("'{0}' is not an address: use a multiaddr, IP:PORT, [IPv6]:PORT or host:PORT")]
    Form(String),
    #[error("'{0}' has no valid port (1-65535)")]
    Port(String),
    #[error("host '{0}' could not be resolved: {1}")]
    Resolve(String, String),
    #[error("'{0}' names no transport this node speaks (QUIC over UDP, or TCP)")]
    NoTransport(String),
}

/// The two listen/dial addresses the original `IP PORT` form stands for: QUIC first, then TCP.
pub fn quic_and_tcp(ip: IpAddr, port: u16) -> [Multiaddr; 2] {
    let base = Multiaddr::from(ip);
    [
        base.clone()
            .with(Protocol::Udp(port))
            .with(Protocol::QuicV1),
        base.with(Protocol::Tcp(port)),
    ]
}

/// Parses a user-supplied node address.
pub fn parse_target(text: &str) -> Result<Target, AddressError> {
    let text = text.trim();
    if text.starts_with('/') {
        let mut addr: Multiaddr = text.parse().map_err(|e: libp2p::multiaddr::Error| {
            AddressError::Multiaddr(text.into(), e.to_string())
        })?;
        let peer_id = match addr.iter().last() {
            Some(Protocol::P2p(peer)) => {
                addr.pop();
                Some(peer)
            }
            _ => None,
        };
        let dialable = addr.iter().any(|p| {
            matches!(
                p,
                Protocol::Tcp(_) | Protocol::QuicV1 | Protocol::P2pCircuit | Protocol::Memory(_)
            )
        });
        if !dialable {
            return Err(AddressError::NoTransport(text.into()));
        }
        return Ok(Target {
            peer_id,
            addrs: vec![addr],
            text: text.into(),
        });
    }
    let (host, port) = split_host_port(text)?;
    let ips: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => {
            let resolved = (host, port)
                .to_socket_addrs()
                .map_err(|e| AddressError::Resolve(host.into(), e.to_string()))?;
            let mut ips: Vec<IpAddr> = resolved.map(|s: SocketAddr| s.ip()).collect();
            ips.dedup();
            ips
        }
    };
    if ips.is_empty() {
        return Err(AddressError::Resolve(host.into(), "no addresses".into()));
    }
    let quic = ips.iter().map(|ip| quic_and_tcp(*ip, port)[0].clone());
    let tcp = ips.iter().map(|ip| quic_and_tcp(*ip, port)[1].clone());
    Ok(Target {
        peer_id: None,
        addrs: quic.chain(tcp).collect(),
        text: text.into(),
    })
}

fn split_host_port(text: &str) -> Result<(&str, u16), AddressError> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| AddressError::Form(text.into()))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| AddressError::Form(text.into()))?;
        (host, port)
    } else {
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| AddressError::Form(text.into()))?;
        if host.contains(':') {
            // A bare IPv6 address: the port is ambiguous without brackets.
            return Err(AddressError::Form(text.into()));
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(AddressError::Form(text.into()));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((host, p)),
        _ => Err(AddressError::Port(text.into())),
    }
}

/// `addr` with `/p2p/<peer>` appended: the form users copy to join through this node.
pub fn with_peer(addr: &Multiaddr, peer: PeerId) -> Multiaddr {
    match addr.iter().last() {
        Some(Protocol::P2p(_)) => addr.clone(),
        _ => addr.clone().with(Protocol::P2p(peer)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_port_maps_to_quic_then_tcp() {
        let t = parse_target("127.0.0.1:5000").unwrap();
        let addrs: Vec<String> = t.addrs.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            addrs,
            ["/ip4/127.0.0.1/udp/5000/quic-v1", "/ip4/127.0.0.1/tcp/5000"]
        );
        assert_eq!(t.peer_id, None);
        let t = parse_target("[::1]:7").unwrap();
        assert_eq!(t.addrs[0].to_string(), "/ip6/::1/udp/7/quic-v1");
        let t = parse_target("localhost:9").unwrap();
        assert!(t
            .addrs
            .iter()
            .any(|a| a.to_string() == "/ip4/127.0.0.1/udp/9/quic-v1"));
    }

    #[test]
    fn multiaddr_with_and_without_peer_id() {
        let peer = PeerId::random();
        let t = parse_target(&format!("/ip4/127.0.0.1/tcp/1/p2p/{peer}")).unwrap();
        assert_eq!(t.peer_id, Some(peer));
        assert_eq!(t.addrs[0].to_string(), "/ip4/127.0.0.1/tcp/1");
        let t = parse_target("/ip4/127.0.0.1/udp/1/quic-v1").unwrap();
        assert_eq!(t.peer_id, None);
    }

    #[test]
    fn malformed_addresses_are_errors() {
        for bad in [
            "",
            "nonsense",
            "1.2.3.4",
            "1.2.3.4:0",
            "1.2.3.4:99999",
            "::1:80",
            "/ip4/999.0.0.1/tcp/1",
            "/ip4/127.0.0.1",
            "[::1]80",
        ] {
            assert!(parse_target(bad).is_err(), "{bad} should be rejected");
        }
    }
}
