//! The allowlist of addresses and networks, optionally bound to a peer (go `Allowlist`).

use std::net::IpAddr;

use ipnet::IpNet;
use libp2p_identity::PeerId;
use multiaddr::{Multiaddr, Protocol};

/// An allowlist entry could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid allowlist entry `{addr}`: {reason}")]
pub struct AllowlistError {
    addr: Multiaddr,
    reason: &'static str,
}

/// One entry: a network and, optionally, the only peer allowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Entry {
    pub(crate) network: IpNet,
    pub(crate) peer: Option<PeerId>,
}

impl Entry {
    /// Parses `/ip4/1.2.3.4`, `/ip6/...`, `/ip4/1.2.3.0/ipcidr/24`, each optionally followed by
    /// `/p2p/<id>`, as go `WithAllowlistedMultiaddrs`.
    pub(crate) fn parse(addr: &Multiaddr) -> Result<Self, AllowlistError> {
        let bad = |reason| AllowlistError {
            addr: addr.clone(),
            reason,
        };
        let mut it = addr.iter();
        let (ip, max) = match it.next() {
            Some(Protocol::Ip4(ip)) => (IpAddr::V4(ip), 32),
            Some(Protocol::Ip6(ip)) => (IpAddr::V6(ip), 128),
            _ => return Err(bad("missing ip address")),
        };
        let mut len = max;
        let mut peer = None;
        for p in it {
            match p {
                Protocol::Ipcidr(l) if peer.is_none() && len == max => {
                    if l > max {
                        return Err(bad("prefix length too long for the address"));
                    }
                    len = l;
                }
                Protocol::P2p(p) if peer.is_none() => peer = Some(p),
                _ => {
                    return Err(bad(
                        "expected an IP address, an optional /ipcidr and an optional /p2p",
                    ));
                }
            }
        }
        let network = IpNet::new(ip, len)
            .map_err(|_| bad("invalid prefix length"))?
            .trunc();
        Ok(Entry { network, peer })
    }
}

/// Loopback networks, exempt from the per-IP and rate limits by default (as go's defaults).
pub(crate) fn loopback() -> [IpNet; 2] {
    ["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]
}

/// The address an endpoint connects from: its first IP component (go `manet.ToIP`).
pub(crate) fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

/// Networks whose connections may use the allowlisted scopes when the normal ones refuse.
/// A linear scan, as go's ("good enough for < 1000 entries").
#[derive(Debug, Clone, Default)]
pub(crate) struct Allowlist {
    entries: Vec<Entry>,
}

impl Allowlist {
    pub(crate) fn add(&mut self, addr: &Multiaddr) -> Result<Entry, AllowlistError> {
        let e = Entry::parse(addr)?;
        if !self.entries.contains(&e) {
            self.entries.push(e);
        }
        Ok(e)
    }

    pub(crate) fn remove(&mut self, addr: &Multiaddr) -> Result<bool, AllowlistError> {
        let e = Entry::parse(addr)?;
        let before = self.entries.len();
        self.entries.retain(|x| *x != e);
        Ok(self.entries.len() != before)
    }

    pub(crate) fn networks(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.entries
            .iter()
            .filter(|e| e.peer.is_none())
            .map(|e| e.network)
    }

    /// True if some entry's network holds `ip`, whatever its peer (go `Allowed`).
    pub(crate) fn allowed(&self, ip: IpAddr) -> bool {
        self.entries.iter().any(|e| e.network.contains(&ip))
    }

    /// True if an entry holds `ip` with no peer constraint or with `peer` (go
    /// `AllowedPeerAndMultiaddr`).
    pub(crate) fn allowed_peer(&self, peer: PeerId, ip: IpAddr) -> bool {
        self.entries
            .iter()
            .any(|e| e.network.contains(&ip) && e.peer.is_none_or(|p| p == peer))
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}
