//! Concurrent connections per IP address and subnet (go `connLimiter`).

use std::net::IpAddr;

use foldhash::{HashMap, HashMapExt};
use ipnet::IpNet;

use super::UNLIMITED;

/// A limit for every subnet of one prefix length (go `ConnLimitPerSubnet`): at most `conns`
/// connections from any single `/prefix_len` network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubnetLimit {
    /// Prefix length in bits (32 for one IPv4 address).
    pub prefix_len: u8,
    /// Connections allowed from one such subnet.
    pub conns: u64,
}

/// A limit for one explicit network (go `NetworkPrefixLimit`). The most specific matching
/// network decides alone: the subnet limits are then skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixLimit {
    /// The network.
    pub network: IpNet,
    /// Connections allowed from the whole network; [`UNLIMITED`](super::UNLIMITED) for none.
    pub conns: u64,
}

/// Limits on concurrent connections per IP address and subnet, in both directions.
///
/// Defaults (go-libp2p `defaultMaxConcurrentConns` = 8): 8 per IPv4 address, 8 per IPv6 /56
/// and 64 per /48 (both must pass), loopback (`127.0.0.0/8`, `::1`) unlimited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpLimits {
    enabled: bool,
    ipv4: Vec<SubnetLimit>,
    ipv6: Vec<SubnetLimit>,
    prefixes: Vec<PrefixLimit>,
    localhost_unlimited: bool,
}

impl Default for IpLimits {
    fn default() -> Self {
        IpLimits {
            enabled: true,
            ipv4: vec![SubnetLimit {
                prefix_len: 32,
                conns: 8,
            }],
            ipv6: vec![
                SubnetLimit {
                    prefix_len: 56,
                    conns: 8,
                },
                SubnetLimit {
                    prefix_len: 48,
                    conns: 64,
                },
            ],
            prefixes: Vec::new(),
            localhost_unlimited: true,
        }
    }
}

impl IpLimits {
    /// No per-IP limits at all (go cannot turn them off: go-libp2p GH#3431).
    pub fn disabled() -> Self {
        IpLimits {
            enabled: false,
            ..Self::default()
        }
    }

    /// Sets the IPv4 subnet limits. Default: 8 per /32.
    pub fn with_ipv4(mut self, limits: Vec<SubnetLimit>) -> Self {
        self.ipv4 = limits;
        self
    }

    /// Sets the IPv6 subnet limits. Default: 8 per /56 and 64 per /48.
    pub fn with_ipv6(mut self, limits: Vec<SubnetLimit>) -> Self {
        self.ipv6 = limits;
        self
    }

    /// Adds a limit for one network, which overrides the subnet limits for addresses in it.
    /// Default: none besides loopback.
    pub fn with_prefix(mut self, network: IpNet, conns: u64) -> Self {
        self.prefixes.push(PrefixLimit {
            network: network.trunc(),
            conns,
        });
        self
    }

    /// Whether loopback addresses are exempt (unlimited). Default: true.
    pub fn with_localhost_unlimited(mut self, unlimited: bool) -> Self {
        self.localhost_unlimited = unlimited;
        self
    }

    /// True unless [`disabled`](Self::disabled).
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }
}

/// The running limiter: counters per network.
#[derive(Debug)]
pub(crate) struct IpLimiter {
    config: IpLimits,
    /// Explicit networks, most specific first.
    prefixes: Vec<PrefixLimit>,
    counts: HashMap<IpNet, u64>,
}

/// A refusal: the network that is full, and its limit.
pub(crate) type Full = (IpNet, u64);

impl IpLimiter {
    pub(crate) fn new(config: IpLimits) -> Self {
        let mut l = IpLimiter {
            config,
            prefixes: Vec::new(),
            counts: HashMap::new(),
        };
        l.set_allowlisted(std::iter::empty(), 0);
        l
    }

    /// Gives each allowlisted network its own limit, the allowlisted system's connection
    /// limit, unless one is configured for it (go TestAllowlistAndConnLimiterPlayNice). Counts
    /// are kept.
    pub(crate) fn set_allowlisted(&mut self, allowlisted: impl Iterator<Item = IpNet>, conns: u64) {
        let mut prefixes = self.config.prefixes.clone();
        if self.config.localhost_unlimited {
            for net in ["127.0.0.0/8", "::1/128"] {
                prefixes.push(PrefixLimit {
                    network: net.parse().unwrap(),
                    conns: UNLIMITED,
                });
            }
        }
        for network in allowlisted {
            if !prefixes.iter().any(|p| p.network == network) {
                prefixes.push(PrefixLimit { network, conns });
            }
        }
        // Stable: among equal lengths, the configured one comes first.
        prefixes.sort_by_key(|p| std::cmp::Reverse(p.network.prefix_len()));
        self.prefixes = prefixes;
    }

    /// The networks counted for `ip`, each with its limit.
    fn networks(&self, ip: IpAddr) -> Vec<(IpNet, u64)> {
        if let Some(p) = self.prefixes.iter().find(|p| p.network.contains(&ip)) {
            return vec![(p.network, p.conns)];
        }
        let subnets = match ip {
            IpAddr::V4(_) => &self.config.ipv4,
            IpAddr::V6(_) => &self.config.ipv6,
        };
        subnets
            .iter()
            .filter_map(|s| {
                IpNet::new(ip, s.prefix_len)
                    .ok()
                    .map(|n| (n.trunc(), s.conns))
            })
            .collect()
    }

    /// Counts a connection from `ip`, or refuses it with the first full network. Returns the
    /// networks counted, to give back to [`remove`](Self::remove) (limits may change between
    /// the two).
    pub(crate) fn add(&mut self, ip: IpAddr) -> Result<Vec<IpNet>, Full> {
        if !self.config.enabled {
            return Ok(Vec::new());
        }
        let nets = self.networks(ip);
        for &(net, limit) in &nets {
            if limit != UNLIMITED && self.counts.get(&net).copied().unwrap_or(0) >= limit {
                return Err((net, limit));
            }
        }
        let counted: Vec<IpNet> = nets
            .into_iter()
            .filter(|&(_, limit)| limit != UNLIMITED)
            .map(|(net, _)| net)
            .collect();
        for net in &counted {
            *self.counts.entry(*net).or_default() += 1;
        }
        Ok(counted)
    }

    /// Forgets a connection counted by [`add`](Self::add) in `nets`.
    pub(crate) fn remove(&mut self, nets: &[IpNet]) {
        for net in nets {
            if let Some(c) = self.counts.get_mut(net) {
                *c -= 1;
                if *c == 0 {
                    self.counts.remove(net);
                }
            }
        }
    }

    /// Networks with connections counted.
    pub(crate) fn tracked(&self) -> usize {
        self.counts.len()
    }

    #[cfg(test)]
    pub(crate) fn prefixes(&self) -> &[PrefixLimit] {
        &self.prefixes
    }
}
