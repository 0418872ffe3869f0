//! New connections per IP address and subnet over time (go `connRateLimiter` and
//! `x/rate.Limiter`): token buckets from `governor`, on a clock the caller steps.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::clock::FakeRelativeClock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::HashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use ipnet::IpNet;

/// A token bucket: `burst` tokens, refilled at `per_second` (go `rate.Limit{RPS, Burst}`).
/// Buckets start full. A rate of 0 means unlimited, as in go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_second: f64,
    /// Bucket size, in connections.
    pub burst: u32,
}

/// A bucket for every subnet of one prefix length (go `SubnetLimit`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SubnetRate {
    /// Prefix length in bits.
    pub prefix_len: u8,
    /// The bucket of each such subnet.
    pub rate: Rate,
}

/// Rate limits on new connections, in both directions, checked before anything else.
///
/// Defaults (go-libp2p `defaultConnRateLimiter`): 0.2/s with a burst of 16 per IPv4 address;
/// per IPv6 /56 the same and per /48 0.5/s with a burst of 80; loopback unlimited; no global
/// limit. As in go, if the address is in some explicit network prefixes, their buckets decide
/// alone (each is charged, most specific first); otherwise every subnet bucket, most specific
/// first, then the global one must allow. A token taken from one bucket stays taken when a
/// later one refuses.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimits {
    enabled: bool,
    global: Option<Rate>,
    ipv4: Vec<SubnetRate>,
    ipv6: Vec<SubnetRate>,
    prefixes: Vec<(IpNet, Rate)>,
    localhost_unlimited: bool,
}

impl Default for RateLimits {
    fn default() -> Self {
        let rate = |per_second, burst| Rate { per_second, burst };
        RateLimits {
            enabled: true,
            global: None,
            ipv4: vec![SubnetRate {
                prefix_len: 32,
                rate: rate(0.2, 16),
            }],
            ipv6: vec![
                SubnetRate {
                    prefix_len: 56,
                    rate: rate(0.2, 16),
                },
                SubnetRate {
                    prefix_len: 48,
                    rate: rate(0.5, 80),
                },
            ],
            prefixes: Vec::new(),
            localhost_unlimited: true,
        }
    }
}

impl RateLimits {
    /// No rate limits at all.
    pub fn disabled() -> Self {
        RateLimits {
            enabled: false,
            ..Self::default()
        }
    }

    /// Sets a global bucket shared by every address. Default: none.
    pub fn with_global(mut self, rate: Rate) -> Self {
        self.global = Some(rate);
        self
    }

    /// Sets the IPv4 subnet buckets. Default: 0.2/s, burst 16 per /32.
    pub fn with_ipv4(mut self, rates: Vec<SubnetRate>) -> Self {
        self.ipv4 = rates;
        self
    }

    /// Sets the IPv6 subnet buckets. Default: 0.2/s, burst 16 per /56; 0.5/s, burst 80 per /48.
    pub fn with_ipv6(mut self, rates: Vec<SubnetRate>) -> Self {
        self.ipv6 = rates;
        self
    }

    /// Adds a bucket for one whole network; addresses in it skip the subnet and global buckets.
    /// Default: none besides loopback.
    pub fn with_prefix(mut self, network: IpNet, rate: Rate) -> Self {
        self.prefixes.push((network.trunc(), rate));
        self
    }

    /// Whether loopback addresses are exempt. Default: true.
    pub fn with_localhost_unlimited(mut self, unlimited: bool) -> Self {
        self.localhost_unlimited = unlimited;
        self
    }

    /// True unless [`disabled`](Self::disabled).
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        let rates = self
            .global
            .iter()
            .chain(self.ipv4.iter().map(|s| &s.rate))
            .chain(self.ipv6.iter().map(|s| &s.rate))
            .chain(self.prefixes.iter().map(|p| &p.1));
        for r in rates {
            if !(r.per_second >= 0.0 && r.per_second.is_finite()) {
                return Err(format!(
                    "rate {} per second must be finite and non-negative",
                    r.per_second
                ));
            }
            if r.per_second > 0.0 && r.burst == 0 {
                return Err("a limited bucket needs a burst of at least 1".into());
            }
        }
        for s in &self.ipv4 {
            if s.prefix_len > 32 {
                return Err(format!("IPv4 prefix length {} is above 32", s.prefix_len));
            }
        }
        for s in &self.ipv6 {
            if s.prefix_len > 128 {
                return Err(format!("IPv6 prefix length {} is above 128", s.prefix_len));
            }
        }
        Ok(())
    }
}

type Keyed = RateLimiter<IpNet, HashMapStateStore<IpNet>, FakeRelativeClock, NoOpMiddleware<Nanos>>;
type Direct = RateLimiter<NotKeyed, InMemoryState, FakeRelativeClock, NoOpMiddleware<Nanos>>;

fn quota(rate: Rate) -> Option<Quota> {
    if rate.per_second <= 0.0 {
        return None;
    }
    let period = Duration::from_secs_f64(1.0 / rate.per_second);
    let burst = NonZeroU32::new(rate.burst)?;
    Some(Quota::with_period(period)?.allow_burst(burst))
}

/// Checks left between two clean-ups of full (forgettable) buckets.
const CLEANUP_EVERY: u32 = 256;

/// The running limiter.
pub(crate) struct ConnRateLimiter {
    enabled: bool,
    clock: FakeRelativeClock,
    /// The instant the clock's zero stands for; `None` until the first check.
    epoch: Option<Instant>,
    last: Duration,
    /// Explicit networks, most specific first; `None` for an unlimited one.
    prefixes: Vec<(IpNet, Option<Keyed>)>,
    ipv4: Vec<(u8, Keyed)>,
    ipv6: Vec<(u8, Keyed)>,
    global: Option<Direct>,
    until_cleanup: u32,
}

impl std::fmt::Debug for ConnRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// Refusal: the network whose bucket is empty (`None` for the global one).
pub(crate) type Empty = Option<IpNet>;

impl ConnRateLimiter {
    pub(crate) fn new(config: &RateLimits) -> Self {
        let clock = FakeRelativeClock::default();
        let keyed = |r: Rate| quota(r).map(|q| Keyed::hashmap_with_clock(q, clock.clone()));
        let mut prefixes: Vec<(IpNet, Option<Keyed>)> = config
            .prefixes
            .iter()
            .map(|&(n, r)| (n, keyed(r)))
            .collect();
        if config.localhost_unlimited {
            for network in super::allowlist::loopback() {
                prefixes.push((network, None));
            }
        }
        prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.prefix_len()));
        let subnets = |v: &[SubnetRate]| {
            let mut out: Vec<(u8, Keyed)> = v
                .iter()
                .filter_map(|s| Some((s.prefix_len, keyed(s.rate)?)))
                .collect();
            out.sort_by_key(|s| std::cmp::Reverse(s.0));
            out
        };
        ConnRateLimiter {
            enabled: config.enabled,
            prefixes,
            ipv4: subnets(&config.ipv4),
            ipv6: subnets(&config.ipv6),
            global: config
                .global
                .and_then(quota)
                .map(|q| Direct::direct_with_clock(q, clock.clone())),
            clock,
            epoch: None,
            last: Duration::ZERO,
            until_cleanup: CLEANUP_EVERY,
        }
    }

    fn step(&mut self, now: Instant) {
        let epoch = *self.epoch.get_or_insert(now);
        let t = now.saturating_duration_since(epoch);
        if t > self.last {
            self.clock.advance(t - self.last);
            self.last = t;
        }
    }

    /// Takes a token for a new connection from `ip` at `now`.
    pub(crate) fn allow(&mut self, ip: IpAddr, now: Instant) -> Result<(), Empty> {
        if !self.enabled {
            return Ok(());
        }
        self.step(now);
        self.until_cleanup -= 1;
        if self.until_cleanup == 0 {
            self.until_cleanup = CLEANUP_EVERY;
            self.cleanup();
        }
        let mut matched = false;
        for (net, bucket) in self.prefixes.iter().filter(|p| p.0.contains(&ip)) {
            matched = true;
            if bucket.as_ref().is_some_and(|b| b.check_key(net).is_err()) {
                return Err(Some(*net));
            }
        }
        if matched {
            return Ok(());
        }
        let subnets = match ip {
            IpAddr::V4(_) => &self.ipv4,
            IpAddr::V6(_) => &self.ipv6,
        };
        for (len, bucket) in subnets {
            let Ok(net) = IpNet::new(ip, *len) else {
                continue;
            };
            let net = net.trunc();
            if bucket.check_key(&net).is_err() {
                return Err(Some(net));
            }
        }
        match &self.global {
            Some(g) if g.check().is_err() => Err(None),
            _ => Ok(()),
        }
    }

    /// Forgets full buckets: a full bucket is the same as a new one (go drops them too).
    fn cleanup(&mut self) {
        for k in self.keyed() {
            k.retain_recent();
            k.shrink_to_fit();
        }
    }

    /// Every keyed bucket set: prefixes, then subnets.
    fn keyed(&self) -> impl Iterator<Item = &Keyed> {
        self.prefixes
            .iter()
            .filter_map(|p| p.1.as_ref())
            .chain(self.ipv4.iter().map(|s| &s.1))
            .chain(self.ipv6.iter().map(|s| &s.1))
    }

    /// Buckets held (not full).
    pub(crate) fn tracked(&self) -> usize {
        self.keyed().map(|k| k.len()).sum()
    }

    #[cfg(test)]
    pub(crate) fn force_cleanup(&mut self, now: Instant) {
        self.step(now);
        self.cleanup();
    }
}
