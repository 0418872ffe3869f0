//! The peerstore: facts about peers, as go-libp2p `core/peerstore` (`pstoremem`).
//!
//! - **Address book**: addresses with a [`Ttl`]. `add_addrs` never shortens a TTL or an expiry;
//!   `set_addrs` overrides, and a zero TTL deletes; `update_addrs` moves addresses from one TTL
//!   to another; an address is expired when `now >= expiry` and is then hidden.
//! - **Protocol book**: the protocols a peer supports, at most 128 per peer by default.
//! - **Metrics**: the latency EWMA (smoothing 0.1, the first sample taken as is).
//!
//! [`Peerstore`] is a `Send + Sync` handle (an `Arc` inside, short critical sections), callable
//! from anywhere, as go's. Addresses are stored without their `/p2p` suffix.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use multiaddr::{Multiaddr, Protocol};

use crate::PeerId;

/// How long an address is kept.
///
/// `Connected` and `Permanent` are variants, not sentinel durations (go uses `MaxInt64 - 1` and
/// `MaxInt64`). The order is `Finite(_) < Connected < Permanent`, so "never shorten" compares
/// them as go compares its durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ttl {
    /// Kept for this long after it was written.
    Finite(Duration),
    /// Kept while we are connected to the peer (go `ConnectedAddrTTL`).
    Connected,
    /// Kept until removed (go `PermanentAddrTTL`).
    Permanent,
}

impl Ttl {
    /// go `AddressTTL`: 1 hour.
    pub const ADDRESS: Ttl = Ttl::Finite(Duration::from_secs(3600));
    /// go `TempAddrTTL`: 2 minutes.
    pub const TEMP: Ttl = Ttl::Finite(Duration::from_secs(120));
    /// go `RecentlyConnectedAddrTTL`: 15 minutes.
    pub const RECENTLY_CONNECTED: Ttl = Ttl::Finite(Duration::from_secs(15 * 60));
    /// A zero TTL: deletes in `set_addrs` and `update_addrs`.
    pub const ZERO: Ttl = Ttl::Finite(Duration::ZERO);

    fn expiry(self, now: Instant) -> Option<Instant> {
        match self {
            Ttl::Finite(d) => Some(now + d),
            Ttl::Connected | Ttl::Permanent => None,
        }
    }
}

/// Errors of the [`Peerstore`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Adding the protocols would exceed the per-peer cap (go: "too many protocols").
    #[error("too many protocols for peer {peer} (limit {limit})")]
    TooManyProtocols {
        /// The peer.
        peer: PeerId,
        /// The per-peer cap.
        limit: usize,
    },
}

/// Configuration of the [`Peerstore`].
#[derive(Debug, Clone)]
pub struct Config {
    max_protocols_per_peer: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_protocols_per_peer: 128,
        }
    }
}

impl Config {
    /// go's defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// Cap of protocols per peer. 128 by default (go `pstoremem`).
    pub fn with_max_protocols_per_peer(mut self, n: usize) -> Self {
        self.max_protocols_per_peer = n;
        self
    }
}

/// An address and its TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    ttl: Ttl,
    /// `None` for `Connected` and `Permanent`.
    expiry: Option<Instant>,
}

impl Entry {
    fn is_expired(&self, now: Instant) -> bool {
        self.expiry.is_some_and(|e| now >= e)
    }
}

#[derive(Debug, Default)]
struct PeerData {
    addrs: HashMap<Multiaddr, Entry>,
    protocols: BTreeSet<String>,
    latency: Option<Duration>,
}

#[derive(Debug, Default)]
struct Books {
    peers: HashMap<PeerId, PeerData>,
}

/// The smoothing factor of the latency EWMA (go `LatencyEWMASmoothing`).
pub const LATENCY_EWMA_SMOOTHING: f64 = 0.1;

/// A shared, in-memory peerstore. Cloning gives another handle to the same store.
#[derive(Debug, Clone, Default)]
pub struct Peerstore {
    config: Arc<Config>,
    books: Arc<Mutex<Books>>,
}

fn strip_p2p(addr: &Multiaddr) -> Multiaddr {
    let mut a = addr.clone();
    if matches!(a.iter().last(), Some(Protocol::P2p(_))) {
        a.pop();
    }
    a
}

impl Peerstore {
    /// An empty peerstore.
    pub fn new(config: Config) -> Self {
        Self {
            config: Arc::new(config),
            books: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Books> {
        // A panic in another thread cannot leave the books half-updated in a way that matters
        // more than losing the store, so a poisoned lock is taken over.
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds addresses of `peer` with `ttl` (go `AddAddrs`). For an address already known, the
    /// TTL and the expiry are each raised to the later of the old and new, never shortened. A zero
    /// TTL adds nothing.
    pub fn add_addrs<'a>(
        &self,
        peer: PeerId,
        addrs: impl IntoIterator<Item = &'a Multiaddr>,
        ttl: Ttl,
        now: Instant,
    ) {
        if ttl == Ttl::ZERO {
            return;
        }
        let mut books = self.lock();
        let data = books.peers.entry(peer).or_default();
        let expiry = ttl.expiry(now);
        for addr in addrs {
            let entry = data
                .addrs
                .entry(strip_p2p(addr))
                .or_insert(Entry { ttl, expiry });
            entry.ttl = entry.ttl.max(ttl);
            entry.expiry = match (entry.expiry, expiry) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
        }
    }

    /// Sets addresses of `peer` to `ttl`, overriding what was there (go `SetAddrs`); a zero TTL
    /// deletes them.
    pub fn set_addrs<'a>(
        &self,
        peer: PeerId,
        addrs: impl IntoIterator<Item = &'a Multiaddr>,
        ttl: Ttl,
        now: Instant,
    ) {
        let mut books = self.lock();
        let data = books.peers.entry(peer).or_default();
        for addr in addrs {
            let addr = strip_p2p(addr);
            if ttl == Ttl::ZERO {
                data.addrs.remove(&addr);
            } else {
                data.addrs.insert(
                    addr,
                    Entry {
                        ttl,
                        expiry: ttl.expiry(now),
                    },
                );
            }
        }
    }

    /// Moves every address of `peer` whose TTL is exactly `old` to `new` (go `UpdateAddrs`); a
    /// zero `new` deletes them.
    pub fn update_addrs(&self, peer: PeerId, old: Ttl, new: Ttl, now: Instant) {
        let mut books = self.lock();
        let Some(data) = books.peers.get_mut(&peer) else {
            return;
        };
        let expiry = new.expiry(now);
        data.addrs.retain(|_, e| {
            if e.ttl != old {
                return true;
            }
            *e = Entry { ttl: new, expiry };
            new != Ttl::ZERO
        });
    }

    /// Removes every address of `peer` (go `ClearAddrs`).
    pub fn clear_addrs(&self, peer: PeerId) {
        if let Some(data) = self.lock().peers.get_mut(&peer) {
            data.addrs.clear();
        }
    }

    /// The unexpired addresses of `peer`, sorted.
    pub fn addrs(&self, peer: PeerId, now: Instant) -> Vec<Multiaddr> {
        self.addrs_with_ttl(peer, now)
            .into_iter()
            .map(|(a, _)| a)
            .collect()
    }

    /// The unexpired addresses of `peer` with their TTLs, sorted by address.
    pub fn addrs_with_ttl(&self, peer: PeerId, now: Instant) -> Vec<(Multiaddr, Ttl)> {
        let books = self.lock();
        let mut addrs: Vec<(Multiaddr, Ttl)> = books
            .peers
            .get(&peer)
            .map(|d| {
                d.addrs
                    .iter()
                    .filter(|(_, e)| !e.is_expired(now))
                    .map(|(a, e)| (a.clone(), e.ttl))
                    .collect()
            })
            .unwrap_or_default();
        addrs.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
        addrs
    }

    /// Peers with at least one unexpired address (go `PeersWithAddrs`).
    pub fn peers_with_addrs(&self, now: Instant) -> Vec<PeerId> {
        self.lock()
            .peers
            .iter()
            .filter(|(_, d)| d.addrs.values().any(|e| !e.is_expired(now)))
            .map(|(p, _)| *p)
            .collect()
    }

    /// Every peer the store holds anything about (go `Peers`).
    pub fn peers(&self) -> Vec<PeerId> {
        self.lock().peers.keys().copied().collect()
    }

    /// Drops expired addresses, and peers left with nothing.
    pub fn gc(&self, now: Instant) {
        let mut books = self.lock();
        books.peers.retain(|_, d| {
            d.addrs.retain(|_, e| !e.is_expired(now));
            !(d.addrs.is_empty() && d.protocols.is_empty() && d.latency.is_none())
        });
    }

    /// Adds protocols to `peer` (go `AddProtocols`).
    ///
    /// # Errors
    ///
    /// [`Error::TooManyProtocols`] if the peer would have more than the cap; nothing is added.
    pub fn add_protocols<S: AsRef<str>>(
        &self,
        peer: PeerId,
        protocols: impl IntoIterator<Item = S>,
    ) -> Result<(), Error> {
        let limit = self.config.max_protocols_per_peer;
        let mut books = self.lock();
        let data = books.peers.entry(peer).or_default();
        let mut merged = data.protocols.clone();
        merged.extend(protocols.into_iter().map(|p| p.as_ref().to_owned()));
        if merged.len() > limit {
            return Err(Error::TooManyProtocols { peer, limit });
        }
        data.protocols = merged;
        Ok(())
    }

    /// Replaces the protocols of `peer` (go `SetProtocols`).
    ///
    /// # Errors
    ///
    /// [`Error::TooManyProtocols`] if there are more than the cap; the old set stays.
    pub fn set_protocols<S: AsRef<str>>(
        &self,
        peer: PeerId,
        protocols: impl IntoIterator<Item = S>,
    ) -> Result<(), Error> {
        let limit = self.config.max_protocols_per_peer;
        let set: BTreeSet<String> = protocols
            .into_iter()
            .map(|p| p.as_ref().to_owned())
            .collect();
        if set.len() > limit {
            return Err(Error::TooManyProtocols { peer, limit });
        }
        self.lock().peers.entry(peer).or_default().protocols = set;
        Ok(())
    }

    /// The protocols of `peer`, sorted (go `GetProtocols`).
    pub fn protocols(&self, peer: PeerId) -> Vec<String> {
        self.lock()
            .peers
            .get(&peer)
            .map(|d| d.protocols.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Which of `protocols` `peer` supports, in the order given (go `SupportsProtocols`).
    pub fn supports_protocols<'a>(&self, peer: PeerId, protocols: &[&'a str]) -> Vec<&'a str> {
        let books = self.lock();
        let Some(data) = books.peers.get(&peer) else {
            return Vec::new();
        };
        protocols
            .iter()
            .copied()
            .filter(|p| data.protocols.contains(*p))
            .collect()
    }

    /// Records a round-trip time to `peer` in the latency EWMA (go `RecordLatency`): the first
    /// sample is taken as is, then `ewma = 0.1 * sample + 0.9 * ewma`.
    pub fn record_latency(&self, peer: PeerId, rtt: Duration) {
        let mut books = self.lock();
        let data = books.peers.entry(peer).or_default();
        data.latency = Some(match data.latency {
            None => rtt,
            Some(prev) => Duration::from_secs_f64(
                LATENCY_EWMA_SMOOTHING * rtt.as_secs_f64()
                    + (1.0 - LATENCY_EWMA_SMOOTHING) * prev.as_secs_f64(),
            ),
        });
    }

    /// The latency EWMA of `peer`, if any sample was recorded (go `LatencyEWMA`, which returns 0
    /// instead of `None`).
    pub fn latency_ewma(&self, peer: PeerId) -> Option<Duration> {
        self.lock().peers.get(&peer).and_then(|d| d.latency)
    }

    /// Removes everything about `peer` but its addresses (go `RemovePeer`).
    pub fn remove_peer(&self, peer: PeerId) {
        let mut books = self.lock();
        if let Some(data) = books.peers.get_mut(&peer) {
            data.protocols.clear();
            data.latency = None;
            if data.addrs.is_empty() {
                books.peers.remove(&peer);
            }
        }
    }
}

#[cfg(test)]
mod tests;
