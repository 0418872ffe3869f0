//! The modelled network: addresses, network groups, reachability, link delays, partitions.
//! Read-only while nodes run a window; changed by the engine between windows.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use libp2p_identity::{Keypair, PeerId};
use multiaddr::{Multiaddr, Protocol};
use rand::{Rng, rngs::StdRng};

use crate::scenario::{AdversaryKind, Scenario};

/// Simulated time: nanoseconds since the start.
pub(crate) type Nanos = u64;

/// The port every node listens on.
const PORT: u16 = 9732;

/// What the model knows of a node.
#[derive(Debug, Clone)]
pub(crate) struct NodeInfo {
    pub(crate) peer: PeerId,
    pub(crate) addr: Multiaddr,
    pub(crate) ip: IpAddr,
    /// One-way delay to the network's core.
    pub(crate) delay: Nanos,
    /// Dialable (not behind NAT).
    pub(crate) reachable: bool,
    /// Started and not yet left.
    pub(crate) alive: bool,
    pub(crate) adversary: Option<AdversaryKind>,
}

/// A peer's name in the event log.
pub(crate) enum Name {
    Node(u32),
    Other(PeerId),
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Name::Node(i) => write!(f, "n{i}"),
            Name::Other(peer) => write!(f, "{peer}"),
        }
    }
}

/// The network.
#[derive(Debug)]
pub(crate) struct World {
    pub(crate) base: Instant,
    pub(crate) scenario: Scenario,
    pub(crate) nodes: Vec<NodeInfo>,
    pub(crate) by_addr: HashMap<Multiaddr, u32>,
    /// Node indices by peer ID, for the event log.
    by_peer: HashMap<PeerId, u32>,
    pub(crate) bootstrap: Vec<Multiaddr>,
    /// The open partition's share, if one is open.
    pub(crate) partition: Option<f64>,
    seed: u64,
    used_ips: std::collections::HashSet<IpAddr>,
}

impl World {
    pub(crate) fn new(scenario: Scenario, seed: u64, base: Instant) -> Self {
        Self {
            base,
            scenario,
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            by_peer: HashMap::new(),
            bootstrap: Vec::new(),
            partition: None,
            seed,
            used_ips: Default::default(),
        }
    }

    pub(crate) fn instant(&self, t: Nanos) -> Instant {
        self.base + Duration::from_nanos(t)
    }

    pub(crate) fn nanos(&self, at: Instant) -> Nanos {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The least one-way delay of any link: the engine's lookahead.
    /// How the event log names `peer`: `n<index>` for a node of the world, else its ID.
    pub(crate) fn name(&self, peer: &PeerId) -> Name {
        match self.by_peer.get(peer) {
            Some(i) => Name::Node(*i),
            None => Name::Other(*peer),
        }
    }

    pub(crate) fn min_delay(&self) -> Nanos {
        self.scenario
            .latency
            .iter()
            .map(|c| nanos(c.delay))
            .min()
            .unwrap_or(1)
            .max(1)
    }

    /// Adds a node, drawing its address, class and reachability from `rng`; returns its index.
    /// Its peer ID comes from its key, derived from the seed and the index.
    pub(crate) fn add_node(
        &mut self,
        rng: &mut StdRng,
        bootstrap: bool,
        adversary: Option<AdversaryKind>,
    ) -> u32 {
        let index = u32::try_from(self.nodes.len()).expect("fewer than 2^32 nodes");
        let key = node_key(self.seed, index);
        let peer = key.public().to_peer_id();
        self.by_peer.insert(peer, index);
        let groups = self.scenario.groups();
        let ip = loop {
            let group = rng.random_range(0..groups);
            let ip = if !bootstrap && rng.random_bool(self.scenario.ipv6_share) {
                IpAddr::V6(ipv6_in(group, rng))
            } else {
                IpAddr::V4(ipv4_in(group, rng))
            };
            if self.used_ips.insert(ip) {
                break ip;
            }
        };
        let class = {
            let total: f64 = self.scenario.latency.iter().map(|c| c.share).sum();
            let mut x = rng.random::<f64>() * total;
            let mut delay = self.scenario.latency[0].delay;
            for c in &self.scenario.latency {
                delay = c.delay;
                if x < c.share {
                    break;
                }
                x -= c.share;
            }
            nanos(delay)
        };
        let reachable = bootstrap
            || adversary.is_some()
            || !rng.random_bool(self.scenario.nat_share.clamp(0.0, 1.0));
        let addr = Multiaddr::empty()
            .with(match ip {
                IpAddr::V4(ip) => Protocol::Ip4(ip),
                IpAddr::V6(ip) => Protocol::Ip6(ip),
            })
            .with(Protocol::Tcp(PORT));
        self.by_addr.insert(addr.clone(), index);
        if bootstrap {
            self.bootstrap.push(addr.clone());
        }
        self.nodes.push(NodeInfo {
            peer,
            addr,
            ip,
            delay: class,
            reachable,
            alive: false,
            adversary,
        });
        index
    }

    /// One-way delay between two nodes: the mean of their delays to the core, plus a jitter
    /// fixed per link (a hash of the pair), so both directions agree.
    pub(crate) fn delay(&self, a: u32, b: u32) -> Nanos {
        let (lo, hi) = (a.min(b), a.max(b));
        let base = (self.nodes[lo as usize].delay + self.nodes[hi as usize].delay) / 2;
        let jitter = nanos(self.scenario.jitter);
        if jitter == 0 {
            return base.max(1);
        }
        let h = mix(self.seed ^ (u64::from(lo) << 32 | u64::from(hi)));
        (base + h % jitter).max(1)
    }

    /// Which side of a partition a node is on.
    pub(crate) fn side(&self, node: u32) -> bool {
        self.partition
            .is_some_and(|share| (mix(u64::from(node) ^ 0x5eed) % 10_000) as f64 / 10_000.0 < share)
    }

    /// Whether a message between `a` and `b` gets through now.
    pub(crate) fn connected(&self, a: u32, b: u32) -> bool {
        self.partition.is_none() || self.side(a) == self.side(b)
    }

    /// An inbound connection's remote address: the dialer's IP, an ephemeral port.
    pub(crate) fn remote_addr(&self, dialer: u32, conn: u64) -> Multiaddr {
        let ip = self.nodes[dialer as usize].ip;
        let port = 32768 + u16::try_from(conn % 28_000).expect("below 28000");
        Multiaddr::empty()
            .with(match ip {
                IpAddr::V4(ip) => Protocol::Ip4(ip),
                IpAddr::V6(ip) => Protocol::Ip6(ip),
            })
            .with(Protocol::Tcp(port))
    }
}

pub(crate) fn nanos(d: Duration) -> Nanos {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A node's key, from the seed and its index: the same run gives the same peer IDs.
pub(crate) fn node_key(seed: u64, index: u32) -> Keypair {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..12].copy_from_slice(&index.to_le_bytes());
    bytes[12..16].copy_from_slice(b"node");
    Keypair::ed25519_from_bytes(bytes).expect("32 bytes")
}

/// splitmix64's finaliser: a fixed, well-mixed hash.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// An address in public IPv4 space, in /16 group `group` (groups spread over 1.0/16 to
/// 223.255/16, skipping 10/8, 127/8, 172.16/12 and 192.168/16).
fn ipv4_in(group: usize, rng: &mut StdRng) -> Ipv4Addr {
    let mut g = (group * 7919) % (222 * 256);
    loop {
        let a = 1 + g / 256;
        let b = g % 256;
        let private =
            a == 10 || a == 127 || (a == 172 && (16..32).contains(&b)) || (a == 192 && b == 168);
        if !private {
            let [c, d] = [rng.random::<u8>(), rng.random_range(1..255u8)];
            return Ipv4Addr::new(
                u8::try_from(a).expect("below 224"),
                u8::try_from(b).expect("byte"),
                c,
                d,
            );
        }
        g = (g + 1) % (222 * 256);
    }
}

/// An address in 2001:db8::/32-like space, one /32 per group.
fn ipv6_in(group: usize, rng: &mut StdRng) -> Ipv6Addr {
    let g = u16::try_from(group % 0xFFFF).expect("below 0xFFFF");
    Ipv6Addr::new(
        0x2a00 | (g >> 12),
        g,
        rng.random(),
        rng.random(),
        0,
        0,
        0,
        rng.random_range(1..u16::MAX),
    )
}
