//! Network groups: the unit of diversity (Bitcoin Core `NetGroupManager::GetGroup`).

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use multiaddr::{Multiaddr, Protocol};

use super::asmap::Asmap;

/// The network group of an address: addresses in one group are assumed to be under one
/// operator's control, so the address book, the outbound connections and the inbound slots
/// each hold only a few of any one group.
///
/// As Bitcoin Core (`src/netgroup.cpp`): an IPv4 address's group is its /16, an IPv6
/// address's its /32, or, when an asmap is given, the AS number that announces it. An IPv4
/// address embedded in IPv6 (`::ffff:a.b.c.d`, 6to4, Teredo) counts as that IPv4 address.
/// Addresses the /16 rule cannot judge each form one group of their own: loopback, private
/// (RFC 1918, RFC 4193, link-local, CGNAT `100.64.0.0/10`), relayed (`/p2p-circuit`), DNS
/// names (`/dns*`), and anything else unroutable. One group per kind, not per name: a name
/// costs nothing to make, so a thousand names are still one group.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Group {
    /// An IPv4 /16: the first two bytes.
    Ipv4([u8; 2]),
    /// An IPv6 /32: the first four bytes.
    Ipv6([u8; 4]),
    /// An autonomous system, from the asmap.
    As(u32),
    /// Loopback addresses (`127.0.0.0/8`, `::1`).
    Loopback,
    /// Private, link-local and shared (CGNAT) addresses.
    Private,
    /// Addresses reached through a relay (`/p2p-circuit`).
    Relay,
    /// Addresses by DNS name (`/dns`, `/dns4`, `/dns6`, `/dnsaddr`).
    Dns,
    /// Anything else: unspecified, multicast, documentation ranges, unknown protocols.
    Unroutable,
}

impl Group {
    /// Whether addresses of this group are routable on the public internet (and are
    /// therefore subject to the diversity rules that exempt loopback and private groups).
    pub fn is_public(&self) -> bool {
        matches!(self, Group::Ipv4(_) | Group::Ipv6(_) | Group::As(_))
    }

    /// A stable byte encoding, for keyed hashing.
    pub(crate) fn key(&self) -> [u8; 5] {
        match *self {
            Group::Ipv4([a, b]) => [1, a, b, 0, 0],
            Group::Ipv6([a, b, c, d]) => [2, a, b, c, d],
            Group::As(n) => {
                let [a, b, c, d] = n.to_be_bytes();
                [3, a, b, c, d]
            }
            Group::Loopback => [4, 0, 0, 0, 0],
            Group::Private => [5, 0, 0, 0, 0],
            Group::Relay => [6, 0, 0, 0, 0],
            Group::Dns => [7, 0, 0, 0, 0],
            Group::Unroutable => [8, 0, 0, 0, 0],
        }
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Group::Ipv4([a, b]) => write!(f, "{a}.{b}.0.0/16"),
            Group::Ipv6([a, b, c, d]) => {
                write!(
                    f,
                    "{:x}:{:x}::/32",
                    u16::from_be_bytes([*a, *b]),
                    u16::from_be_bytes([*c, *d])
                )
            }
            Group::As(n) => write!(f, "AS{n}"),
            Group::Loopback => f.write_str("loopback"),
            Group::Private => f.write_str("private"),
            Group::Relay => f.write_str("relay"),
            Group::Dns => f.write_str("dns"),
            Group::Unroutable => f.write_str("unroutable"),
        }
    }
}

/// How addresses are grouped: the asmap, if any, and whether loopback counts as public space.
///
/// Default: IPv4 /16 and IPv6 /32, no asmap, loopback one group.
#[derive(Debug, Clone, Default)]
pub struct Grouping {
    asmap: Option<Asmap>,
    loopback_as_public: bool,
}

impl Grouping {
    /// The default grouping.
    pub fn new() -> Self {
        Self::default()
    }

    /// Group public addresses by the AS number `asmap` gives them (Bitcoin Core `-asmap`,
    /// against attackers who hold many /16s in few networks, such as Erebus). Addresses the
    /// asmap does not map keep their /16 or /32. Default: none.
    pub fn with_asmap(mut self, asmap: Asmap) -> Self {
        self.asmap = Some(asmap);
        self
    }

    /// Count `127.a.b.c` by its /16 (`127.a`), as public space, so that tests on one machine can
    /// play many network groups. Default: off (all loopback is one group, exempt from the
    /// diversity rules).
    pub fn with_loopback_as_public(mut self, on: bool) -> Self {
        self.loopback_as_public = on;
        self
    }

    /// Whether `127.a.b.c` counts by its /16.
    pub fn loopback_as_public(&self) -> bool {
        self.loopback_as_public
    }

    /// The asmap, if one is set.
    pub fn asmap(&self) -> Option<&Asmap> {
        self.asmap.as_ref()
    }

    /// The group of an address. Only the first component decides, except that a
    /// `/p2p-circuit` anywhere makes the address relayed.
    pub fn group(&self, addr: &Multiaddr) -> Group {
        if addr.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
            return Group::Relay;
        }
        match addr.iter().next() {
            Some(Protocol::Ip4(ip)) => self.group_ip(IpAddr::V4(ip)),
            Some(Protocol::Ip6(ip)) => self.group_ip(IpAddr::V6(ip)),
            Some(
                Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_) | Protocol::Dnsaddr(_),
            ) => Group::Dns,
            _ => Group::Unroutable,
        }
    }

    /// The group of an IP address.
    pub fn group_ip(&self, ip: IpAddr) -> Group {
        let ip = match ip {
            IpAddr::V6(v6) => match embedded_v4(v6) {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            },
            v4 => v4,
        };
        match ip {
            IpAddr::V4(v4) => {
                let [a, b, _, _] = v4.octets();
                if v4.is_loopback() {
                    if self.loopback_as_public {
                        return Group::Ipv4([a, b]);
                    }
                    return Group::Loopback;
                }
                if v4.is_private() || v4.is_link_local() || (a == 100 && (b & 0xc0) == 64) {
                    return Group::Private;
                }
                if v4.is_unspecified()
                    || v4.is_broadcast()
                    || v4.is_multicast()
                    || v4.is_documentation()
                    || a == 0
                    || a >= 240
                {
                    return Group::Unroutable;
                }
                if let Some(asn) = self.asmap.as_ref().and_then(|m| m.lookup(ip)) {
                    return Group::As(asn);
                }
                Group::Ipv4([a, b])
            }
            IpAddr::V6(v6) => {
                let s = v6.segments();
                if v6.is_loopback() {
                    return Group::Loopback;
                }
                if (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80 {
                    return Group::Private;
                }
                if v6.is_unspecified() || v6.is_multicast() || (s[0] == 0x2001 && s[1] == 0x0db8) {
                    return Group::Unroutable;
                }
                if let Some(asn) = self.asmap.as_ref().and_then(|m| m.lookup(ip)) {
                    return Group::As(asn);
                }
                let o = v6.octets();
                Group::Ipv6([o[0], o[1], o[2], o[3]])
            }
        }
    }
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:0:0/96`), 6to4 (`2002::/16`) or Teredo
/// (`2001::/32`) address: Bitcoin Core groups these by the IPv4 address they carry.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let o = v6.octets();
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    match v6.segments() {
        [0x2002, ..] => Some(Ipv4Addr::new(o[2], o[3], o[4], o[5])),
        // Teredo stores the client's address inverted in the last four bytes.
        [0x2001, 0x0000, ..] => Some(Ipv4Addr::new(!o[12], !o[13], !o[14], !o[15])),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(s: &str) -> Group {
        Grouping::new().group(&s.parse().unwrap())
    }

    #[test]
    fn ipv4_by_16_and_ipv6_by_32() {
        assert_eq!(g("/ip4/1.2.3.4/tcp/1"), Group::Ipv4([1, 2]));
        assert_eq!(g("/ip4/1.2.250.9/udp/1/quic-v1"), Group::Ipv4([1, 2]));
        assert_ne!(g("/ip4/1.3.3.4/tcp/1"), g("/ip4/1.2.3.4/tcp/1"));
        assert_eq!(
            g("/ip6/2a01:4f8:1:2::1/tcp/1"),
            Group::Ipv6([0x2a, 0x01, 0x04, 0xf8])
        );
        assert_eq!(
            g("/ip6/2a01:4f8:ffff::1/tcp/1"),
            g("/ip6/2a01:4f8:1:2::1/tcp/1")
        );
    }

    #[test]
    fn embedded_ipv4_counts_as_ipv4() {
        assert_eq!(g("/ip6/::ffff:1.2.3.4/tcp/1"), Group::Ipv4([1, 2]));
        assert_eq!(g("/ip6/2002:102:304::1/tcp/1"), Group::Ipv4([1, 2]));
        // Teredo: 2001:0:<server>:<flags>:<port>:<client inverted>; !(fe.fd) = 1.2.
        assert_eq!(
            g("/ip6/2001:0:4136:e378:8000:63bf:fefd:fcfb/tcp/1"),
            Group::Ipv4([1, 2])
        );
    }

    #[test]
    fn kinds_that_form_one_group_each() {
        assert_eq!(g("/ip4/127.0.0.1/tcp/1"), Group::Loopback);
        assert_eq!(g("/ip4/127.9.0.1/tcp/1"), Group::Loopback);
        assert_eq!(g("/ip6/::1/tcp/1"), Group::Loopback);
        for private in [
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.1",
            "169.254.1.1",
            "100.64.0.1",
        ] {
            assert_eq!(
                g(&format!("/ip4/{private}/tcp/1")),
                Group::Private,
                "{private}"
            );
        }
        assert_eq!(g("/ip6/fd00::1/tcp/1"), Group::Private);
        assert_eq!(g("/ip6/fe80::1/tcp/1"), Group::Private);
        assert_eq!(g("/dns4/a.example.com/tcp/1"), Group::Dns);
        assert_eq!(g("/dns/b.example.org/tcp/1"), Group::Dns);
        let relayed = "/ip4/1.2.3.4/tcp/1/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA/p2p-circuit";
        assert_eq!(g(relayed), Group::Relay);
        assert_eq!(g("/ip4/0.0.0.0/tcp/1"), Group::Unroutable);
        assert_eq!(g("/ip4/224.0.0.1/tcp/1"), Group::Unroutable);
        assert_eq!(g("/ip4/192.0.2.1/tcp/1"), Group::Unroutable);
        assert_eq!(g("/ip6/2001:db8::1/tcp/1"), Group::Unroutable);
        assert_eq!(g("/memory/1"), Group::Unroutable);
        assert!(!Group::Loopback.is_public() && Group::Ipv4([1, 2]).is_public());
    }

    #[test]
    fn loopback_as_public_counts_127_by_16() {
        let grouping = Grouping::new().with_loopback_as_public(true);
        let group = |s: &str| grouping.group(&s.parse().unwrap());
        assert_eq!(group("/ip4/127.3.0.1/tcp/1"), Group::Ipv4([127, 3]));
        assert_eq!(group("/ip4/127.3.9.9/tcp/1"), Group::Ipv4([127, 3]));
        assert_ne!(group("/ip4/127.4.0.1/tcp/1"), group("/ip4/127.3.0.1/tcp/1"));
        assert!(group("/ip4/127.3.0.1/tcp/1").is_public());
    }
}
