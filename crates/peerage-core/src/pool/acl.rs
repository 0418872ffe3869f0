//! Access control of the pool, as Octez `P2p_acl`: bans (blacklists)
//! of IPs and peers, set by the operator and never expiring, and greylists of IPs and peers,
//! filled automatically when a peer misbehaves.
//!
//! - **IP greylist**: an exact, bounded map from IP to its greylisting time, in greylisting
//!   order. An entry expires [`Config::with_ip_greylist_cleanup_delay`] after it was greylisted
//!   (re-greylisting refreshes it). When the map is full, the oldest entry goes and the listing is
//!   marked not reliable since then ([`Acl::not_reliable_since`], Octez's
//!   `fifo_not_reliable_since`).
//! - **Peer greylist**: a FIFO set of [`Config::with_peer_greylist_size`] peers (1023); re-adding
//!   a peer refreshes its position, so the least recently greylisted goes first (Octez's
//!   `Aches.Vache` `FIFO_Precise`).
//!
//! IPv4-mapped IPv6 addresses are the same IP as their IPv4 form (Octez stores IPv4 as mapped
//! IPv6).
//!
//! > **Differences from Octez**: Octez's IP greylist is a counting Bloom filter (false
//! > positives, a 4 MiB table for its "2048 KiB", entries living 14 to 15 ticks of 5400 s). This
//! > one is exact, expires each entry after exactly the cleanup delay, and its listing is the
//! > greylist itself, not a separate FIFO. [`Acl::clear_greylist`] clears only the greylists;
//! > [`Acl::clear`] clears the bans too (Octez's `DELETE /network/greylist` does the latter
//! > under the former's name).

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use foldhash::{HashSet, HashSetExt};
use hashlink::LinkedHashMap;

use crate::PeerId;

/// Configuration of the [`Acl`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    ip_greylist_size: usize,
    ip_greylist_cleanup_delay: Duration,
    peer_greylist_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ip_greylist_size: 16_384,
            ip_greylist_cleanup_delay: Duration::from_secs(86_400),
            peer_greylist_size: 1023,
        }
    }
}

impl Config {
    /// Defaults: 16 384 greylisted IPs, kept 86 400 s (1 day); 1023 greylisted peers.
    pub fn new() -> Self {
        Self::default()
    }
    /// Most IPs in the greylist; the oldest goes when a new one comes. 16 384 by default (about
    /// 1 MiB; Octez sizes its Bloom filter at 2048 KiB).
    ///
    /// # Panics
    ///
    /// If `n` is 0.
    pub fn with_ip_greylist_size(mut self, n: usize) -> Self {
        assert!(n > 0, "ip_greylist_size must be positive");
        self.ip_greylist_size = n;
        self
    }
    /// How long an IP stays greylisted. 86 400 s (1 day) by default (Octez
    /// `ip_greylist_cleanup_delay`).
    pub fn with_ip_greylist_cleanup_delay(mut self, d: Duration) -> Self {
        self.ip_greylist_cleanup_delay = d;
        self
    }
    /// Most peers in the greylist. 1023 by default (Octez `peer_greylist_size`).
    ///
    /// # Panics
    ///
    /// If `n` is 0.
    pub fn with_peer_greylist_size(mut self, n: usize) -> Self {
        assert!(n > 0, "peer_greylist_size must be positive");
        self.peer_greylist_size = n;
        self
    }
    /// The IP greylist's capacity.
    pub fn ip_greylist_size(&self) -> usize {
        self.ip_greylist_size
    }
    /// The IP greylist's cleanup delay.
    pub fn ip_greylist_cleanup_delay(&self) -> Duration {
        self.ip_greylist_cleanup_delay
    }
    /// The peer greylist's capacity.
    pub fn peer_greylist_size(&self) -> usize {
        self.peer_greylist_size
    }
}

/// The four access control lists. See the [module docs](self).
#[derive(Debug)]
pub struct Acl {
    config: Config,
    banned_ips: HashSet<IpAddr>,
    banned_peers: HashSet<PeerId>,
    /// IP -> when it was greylisted; oldest first.
    ip_greylist: LinkedHashMap<IpAddr, Instant>,
    not_reliable_since: Option<Instant>,
    /// Greylisted peers; least recently greylisted first.
    peer_greylist: LinkedHashMap<PeerId, ()>,
    /// Bumped by every IP ban and greylisting.
    ip_generation: u64,
}

/// The canonical form of `ip`: IPv4-mapped IPv6 addresses as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

impl Acl {
    /// Empty lists.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            banned_ips: HashSet::new(),
            banned_peers: HashSet::new(),
            ip_greylist: LinkedHashMap::new(),
            not_reliable_since: None,
            peer_greylist: LinkedHashMap::new(),
            ip_generation: 0,
        }
    }

    /// A number that changes whenever an IP is banned or greylisted: an admission that checked
    /// an IP at one generation need not check it again at the same one.
    pub fn ip_generation(&self) -> u64 {
        self.ip_generation
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn expired(&self, since: Instant, now: Instant) -> bool {
        now.saturating_duration_since(since) >= self.config.ip_greylist_cleanup_delay
    }

    /// Greylists `ip` (again) at `now`.
    pub fn greylist_ip(&mut self, ip: IpAddr, now: Instant) {
        self.ip_generation += 1;
        let ip = canonical(ip);
        self.ip_greylist.remove(&ip);
        if self.ip_greylist.len() >= self.config.ip_greylist_size {
            self.ip_greylist.pop_front();
            self.not_reliable_since.get_or_insert(now);
        }
        self.ip_greylist.insert(ip, now);
    }

    /// Greylists `peer` (again).
    pub fn greylist_peer(&mut self, peer: PeerId) {
        self.peer_greylist.remove(&peer);
        if self.peer_greylist.len() >= self.config.peer_greylist_size {
            self.peer_greylist.pop_front();
        }
        self.peer_greylist.insert(peer, ());
    }

    /// Whether `ip` is greylisted and its entry has not expired.
    pub fn is_ip_greylisted(&self, ip: IpAddr, now: Instant) -> bool {
        self.ip_greylist
            .get(&canonical(ip))
            .is_some_and(|since| !self.expired(*since, now))
    }

    /// Whether `peer` is greylisted.
    pub fn is_peer_greylisted(&self, peer: &PeerId) -> bool {
        self.peer_greylist.contains_key(peer)
    }

    /// Whether `ip` is blacklisted.
    pub fn is_ip_blacklisted(&self, ip: IpAddr) -> bool {
        self.banned_ips.contains(&canonical(ip))
    }

    /// Whether `peer` is blacklisted.
    pub fn is_peer_blacklisted(&self, peer: &PeerId) -> bool {
        self.banned_peers.contains(peer)
    }

    /// Whether any IP is blacklisted or greylisted: when none is, a point's IP need not be
    /// read to know it is not banned.
    pub fn has_ip_entries(&self) -> bool {
        !self.banned_ips.is_empty() || !self.ip_greylist.is_empty()
    }

    /// Whether `ip` is banned: blacklisted or greylisted (Octez `banned_addr`).
    pub fn is_ip_banned(&self, ip: IpAddr, now: Instant) -> bool {
        self.is_ip_blacklisted(ip) || self.is_ip_greylisted(ip, now)
    }

    /// Whether `peer` is banned: blacklisted or greylisted (Octez `banned_peer`).
    pub fn is_peer_banned(&self, peer: &PeerId) -> bool {
        if self.banned_peers.is_empty() && self.peer_greylist.is_empty() {
            return false;
        }
        self.is_peer_blacklisted(peer) || self.is_peer_greylisted(peer)
    }

    /// Blacklists `ip`.
    pub fn ban_ip(&mut self, ip: IpAddr) {
        self.ip_generation += 1;
        self.banned_ips.insert(canonical(ip));
    }

    /// Blacklists `peer`.
    pub fn ban_peer(&mut self, peer: PeerId) {
        self.banned_peers.insert(peer);
    }

    /// Removes `ip` from the blacklist and the greylist (Octez `unban_addr`).
    pub fn unban_ip(&mut self, ip: IpAddr) {
        let ip = canonical(ip);
        self.banned_ips.remove(&ip);
        self.ip_greylist.remove(&ip);
    }

    /// Removes `peer` from the blacklist and the greylist (Octez `unban_peer`).
    pub fn unban_peer(&mut self, peer: &PeerId) {
        self.banned_peers.remove(peer);
        self.peer_greylist.remove(peer);
    }

    /// Empties both greylists, and forgets that the IP listing overflowed.
    pub fn clear_greylist(&mut self) {
        self.ip_greylist.clear();
        self.peer_greylist.clear();
        self.not_reliable_since = None;
    }

    /// Empties all four lists, bans included (Octez `P2p_acl.clear`).
    pub fn clear(&mut self) {
        self.clear_greylist();
        self.banned_ips.clear();
        self.banned_peers.clear();
    }

    /// Drops the expired IP greylist entries (Octez `IPGreylist.gc`); returns how many went.
    /// Reads already ignore expired entries; this frees them.
    pub fn gc(&mut self, now: Instant) -> usize {
        let mut removed = 0;
        // Oldest first: stop at the first live entry.
        while let Some((_, since)) = self.ip_greylist.front() {
            if !self.expired(*since, now) {
                break;
            }
            self.ip_greylist.pop_front();
            removed += 1;
        }
        removed
    }

    /// When the oldest greylisted IP expires, if any: the next useful [`Acl::gc`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.ip_greylist
            .front()
            .map(|(_, since)| *since + self.config.ip_greylist_cleanup_delay)
    }

    /// The greylisted IPs that have not expired, oldest first.
    pub fn greylisted_ips(&self, now: Instant) -> impl Iterator<Item = IpAddr> + '_ {
        self.ip_greylist
            .iter()
            .filter(move |(_, since)| !self.expired(**since, now))
            .map(|(ip, _)| *ip)
    }

    /// The greylisted peers, least recently greylisted first.
    pub fn greylisted_peers(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.peer_greylist.keys().copied()
    }

    /// The blacklisted IPs.
    pub fn banned_ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.banned_ips.iter().copied()
    }

    /// The blacklisted peers.
    pub fn banned_peers(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.banned_peers.iter().copied()
    }

    /// Since when the IP greylist has dropped entries for lack of room (its listing misses
    /// some), if it has; reset by [`Acl::clear_greylist`].
    pub fn not_reliable_since(&self) -> Option<Instant> {
        self.not_reliable_since
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// Octez `test_p2p_banned_peers.ml`: empty, ban, clear, gc (the last one is disabled as
    /// flaky in Octez; here time is stepped).
    #[test]
    fn ip_greylist_as_octez_banned_peers_test() {
        let t0 = Instant::now();
        let mut acl = Acl::new(
            Config::new()
                .with_ip_greylist_size(1024)
                .with_ip_greylist_cleanup_delay(secs(60)),
        );
        let addrs: Vec<IpAddr> = ["ffff::3", "ffff:00::ff", "a::2"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        for ip in &addrs {
            assert!(!acl.is_ip_banned(*ip, t0), "empty");
        }
        for ip in &addrs {
            acl.greylist_ip(*ip, t0);
        }
        for ip in &addrs {
            assert!(acl.is_ip_banned(*ip, t0), "ban");
        }
        acl.clear_greylist();
        for ip in &addrs {
            assert!(!acl.is_ip_banned(*ip, t0), "clear");
        }
        for ip in &addrs {
            acl.greylist_ip(*ip, t0);
        }
        assert!(acl.is_ip_greylisted(addrs[0], t0 + secs(59)));
        assert!(!acl.is_ip_greylisted(addrs[0], t0 + secs(60)), "expired");
        assert_eq!(acl.poll_timeout(), Some(t0 + secs(60)));
        assert_eq!(acl.gc(t0 + secs(59)), 0);
        assert_eq!(acl.gc(t0 + secs(60)), 3, "gc");
        assert_eq!(acl.greylisted_ips(t0).count(), 0);
    }

    #[test]
    fn re_greylisting_an_ip_refreshes_its_expiry() {
        let t0 = Instant::now();
        let mut acl = Acl::new(Config::new().with_ip_greylist_cleanup_delay(secs(60)));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        acl.greylist_ip(a, t0);
        acl.greylist_ip(b, t0 + secs(10));
        acl.greylist_ip(a, t0 + secs(30));
        assert!(acl.is_ip_greylisted(a, t0 + secs(80)));
        assert!(!acl.is_ip_greylisted(b, t0 + secs(80)));
        assert_eq!(acl.gc(t0 + secs(80)), 1);
        assert_eq!(acl.greylisted_ips(t0 + secs(80)).collect::<Vec<_>>(), [a]);
    }

    #[test]
    fn ip_greylist_is_bounded_and_says_since_when_it_is_not_reliable() {
        let t0 = Instant::now();
        let mut acl = Acl::new(Config::new().with_ip_greylist_size(3));
        for i in 0..3u8 {
            acl.greylist_ip(IpAddr::from([10, 0, 0, i]), t0);
        }
        assert_eq!(acl.not_reliable_since(), None);
        acl.greylist_ip(IpAddr::from([10, 0, 0, 3]), t0 + secs(5));
        acl.greylist_ip(IpAddr::from([10, 0, 0, 4]), t0 + secs(6));
        assert_eq!(
            acl.not_reliable_since(),
            Some(t0 + secs(5)),
            "first overflow"
        );
        assert_eq!(acl.greylisted_ips(t0 + secs(6)).count(), 3);
        assert!(!acl.is_ip_greylisted(IpAddr::from([10, 0, 0, 0]), t0 + secs(6)));
        assert!(!acl.is_ip_greylisted(IpAddr::from([10, 0, 0, 1]), t0 + secs(6)));
        assert!(acl.is_ip_greylisted(IpAddr::from([10, 0, 0, 4]), t0 + secs(6)));
        acl.clear_greylist();
        assert_eq!(acl.not_reliable_since(), None);
    }

    #[test]
    fn mapped_ipv6_is_the_ipv4_address() {
        let t0 = Instant::now();
        let mut acl = Acl::new(Config::new());
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped = IpAddr::V6(Ipv6Addr::from([0, 0, 0, 0, 0, 0xffff, 0xc000, 0x0207]));
        acl.greylist_ip(mapped, t0);
        assert!(acl.is_ip_greylisted(v4, t0));
        acl.ban_ip(v4);
        assert!(acl.is_ip_blacklisted(mapped));
    }

    /// Octez `test_p2p_peerset.ml`, "LRU overflow" with capacity 3.
    #[test]
    fn peer_greylist_overflow_as_octez_peerset_test() {
        let mut acl = Acl::new(Config::new().with_peer_greylist_size(3));
        let [foo, bar, baz, zor, qux] = std::array::from_fn(|_| PeerId::random());
        acl.greylist_peer(foo);
        acl.greylist_peer(bar);
        acl.greylist_peer(baz);
        acl.greylist_peer(foo); // refresh
        acl.greylist_peer(zor);
        assert!(acl.is_peer_greylisted(&zor));
        assert!(acl.is_peer_greylisted(&foo));
        assert!(acl.is_peer_greylisted(&baz));
        assert!(!acl.is_peer_greylisted(&bar));
        acl.greylist_peer(baz);
        acl.greylist_peer(baz);
        acl.greylist_peer(baz);
        acl.greylist_peer(qux);
        assert!(!acl.is_peer_greylisted(&foo));
        assert!(acl.is_peer_greylisted(&zor));
        assert!(acl.is_peer_greylisted(&baz));
        assert!(acl.is_peer_greylisted(&qux));
    }

    #[test]
    fn peer_greylist_default_size_is_1023() {
        let mut acl = Acl::new(Config::new());
        let peers: Vec<PeerId> = (0..1024).map(|_| PeerId::random()).collect();
        for p in &peers {
            acl.greylist_peer(*p);
        }
        assert_eq!(acl.greylisted_peers().count(), 1023);
        assert!(!acl.is_peer_greylisted(&peers[0]));
        assert!(acl.is_peer_greylisted(&peers[1]));
    }

    #[test]
    fn unban_clears_both_lists_and_clear_clears_all_four() {
        let t0 = Instant::now();
        let mut acl = Acl::new(Config::new());
        let ip: IpAddr = "10.1.1.1".parse().unwrap();
        let peer = PeerId::random();
        acl.ban_ip(ip);
        acl.greylist_ip(ip, t0);
        acl.ban_peer(peer);
        acl.greylist_peer(peer);
        acl.unban_ip(ip);
        acl.unban_peer(&peer);
        assert!(!acl.is_ip_banned(ip, t0));
        assert!(!acl.is_peer_banned(&peer));
        acl.ban_ip(ip);
        acl.ban_peer(peer);
        acl.clear_greylist();
        assert!(acl.is_ip_banned(ip, t0), "bans survive clear_greylist");
        assert!(acl.is_peer_banned(&peer));
        acl.clear();
        assert!(!acl.is_ip_banned(ip, t0));
        assert!(!acl.is_peer_banned(&peer));
    }
}
