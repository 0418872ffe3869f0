//! The in-memory backend, as go-libp2p `pstoremem`.

use std::{
    collections::BTreeSet,
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use libp2p_core::{PeerRecord, SignedEnvelope};
use libp2p_identity::{Keypair, PublicKey};
use multiaddr::Multiaddr;

use super::{
    AddrEntry, AddrStream, Config, Error, LATENCY_EWMA_SMOOTHING, Store, Ttl, VerifiedRecord,
    own_addr, own_addr_cow,
};
use crate::PeerId;

/// Maps keyed by peer IDs and addresses, with foldhash: several times faster than SipHash on
/// 40-byte peer IDs, and randomly seeded, so that remote peers cannot choose colliding keys.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;

/// The multihash code of an identity hash, used by peer IDs that inline their key (Ed25519).
const IDENTITY_MULTIHASH: u64 = 0x00;

/// An in-memory [`Store`]: one mutex over plain maps, and an ordered index of finite expiries
/// for the GC.
#[derive(Debug)]
pub struct MemoryStore {
    config: Config,
    inner: Mutex<Inner>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(Config::default())
    }
}

#[derive(Debug, Default)]
struct Inner {
    book: AddrBook,
    keys: HashMap<PeerId, Keys>,
    protocols: HashMap<PeerId, Protocols>,
    latency: HashMap<PeerId, Duration>,
    /// A few keys per peer (identify's two, an application's own): a vector costs a fraction
    /// of a map.
    metadata: HashMap<PeerId, Vec<(String, serde_json::Value)>>,
    /// Peers changed since the last [`MemoryStore::take_changes`], if changes are tracked.
    changes: Option<HashSet<PeerId>>,
}

/// A peer's protocols: a sorted vector, not a tree, as a peer has a handful (at most
/// `max_protocols_per_peer`) and a tree's node holds room for eleven.
#[derive(Debug, Default)]
struct Protocols(Vec<String>);

impl Protocols {
    fn insert(&mut self, p: &str) {
        if let Err(i) = self.0.binary_search_by(|q| q.as_str().cmp(p)) {
            self.0.insert(i, p.to_owned());
        }
    }
    fn remove(&mut self, p: &str) {
        if let Ok(i) = self.0.binary_search_by(|q| q.as_str().cmp(p)) {
            self.0.remove(i);
        }
    }
    fn contains(&self, p: &str) -> bool {
        self.0.binary_search_by(|q| q.as_str().cmp(p)).is_ok()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn iter(&self) -> impl Iterator<Item = &String> {
        self.0.iter()
    }
}

impl<S: AsRef<str>> FromIterator<S> for Protocols {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut v: Vec<String> = iter.into_iter().map(|s| s.as_ref().to_owned()).collect();
        v.sort_unstable();
        v.dedup();
        Self(v)
    }
}

#[derive(Debug, Default)]
struct Keys {
    public: Option<PublicKey>,
    private: Option<Keypair>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    ttl: Ttl,
    expiry: Option<Instant>,
}

impl Entry {
    fn new(ttl: Ttl, now: Instant) -> Self {
        Self {
            ttl,
            expiry: ttl.expiry(now),
        }
    }

    fn is_expired(&self, now: Instant) -> bool {
        self.expiry.is_some_and(|e| now >= e)
    }
}

#[derive(Debug)]
struct Record {
    envelope: SignedEnvelope,
    seq: u64,
    addrs: HashSet<Multiaddr>,
}

/// One peer's addresses. A vector: a peer has a few dozen addresses at most (64 unconnected by
/// default, plus connected ones), and a scan of them costs less than a map's memory.
#[derive(Debug, Default)]
struct PeerAddrs {
    addrs: Vec<(Multiaddr, Entry)>,
    /// Entries with a finite TTL.
    unconnected: usize,
    /// The earliest finite expiry, as entered in the book's `expiries`.
    indexed: Option<Instant>,
    record: Option<Box<Record>>,
}

impl PeerAddrs {
    fn get(&self, addr: &Multiaddr) -> Option<&Entry> {
        self.addrs.iter().find(|(a, _)| a == addr).map(|(_, e)| e)
    }

    fn min_expiry(&self) -> Option<Instant> {
        self.addrs.iter().filter_map(|(_, e)| e.expiry).min()
    }

    fn addrs(&self) -> impl Iterator<Item = &Multiaddr> {
        self.addrs.iter().map(|(a, _)| a)
    }
}

#[derive(Debug)]
struct Subscriber {
    tx: futures_channel::mpsc::Sender<Multiaddr>,
    sent: HashSet<Multiaddr>,
}

impl Subscriber {
    /// Sends `addr` unless already sent; returns `false` once the reader is gone.
    fn offer(&mut self, addr: &Multiaddr) -> bool {
        if self.sent.contains(addr) {
            return true;
        }
        match self.tx.try_send(addr.clone()) {
            Ok(()) => {
                self.sent.insert(addr.clone());
                true
            }
            // A full buffer drops the address (not marked sent: a later write may resend it).
            Err(e) => !e.is_disconnected(),
        }
    }
}

/// The address book. Invariants, restored by [`AddrBook::tidy`] at the end of every write:
/// `expiries` holds each peer with a finite expiry once, at its earliest one (so every finite
/// TTL is covered, whatever transition made it finite); `unconnected` counts the entries with a
/// finite TTL (kept by `put` and `remove`); no peer is left without addresses.
#[derive(Debug, Default)]
struct AddrBook {
    peers: HashMap<PeerId, PeerAddrs>,
    expiries: BTreeSet<(Instant, PeerId)>,
    unconnected: usize,
    records: usize,
    subscribers: HashMap<PeerId, Vec<Subscriber>>,
}

impl AddrBook {
    fn put(&mut self, peer: &PeerId, addr: Multiaddr, entry: Entry) {
        let addrs = self.peers.entry(*peer).or_default();
        match addrs.addrs.iter_mut().find(|(a, _)| *a == addr) {
            Some((_, old)) => {
                if !old.ttl.is_connected() {
                    addrs.unconnected -= 1;
                    self.unconnected -= 1;
                }
                *old = entry;
            }
            None => addrs.addrs.push((addr, entry)),
        }
        if !entry.ttl.is_connected() {
            addrs.unconnected += 1;
            self.unconnected += 1;
        }
    }

    fn remove(&mut self, peer: &PeerId, addr: &Multiaddr) -> Option<Entry> {
        let addrs = self.peers.get_mut(peer)?;
        let i = addrs.addrs.iter().position(|(a, _)| a == addr)?;
        let (_, old) = addrs.addrs.swap_remove(i);
        if !old.ttl.is_connected() {
            addrs.unconnected -= 1;
            self.unconnected -= 1;
        }
        Some(old)
    }

    fn get(&self, peer: &PeerId, addr: &Multiaddr) -> Option<Entry> {
        self.peers.get(peer)?.get(addr).copied()
    }

    /// Removes every address of `peer` (the caller tidies).
    fn remove_all(&mut self, peer: &PeerId) {
        let addrs: Vec<Multiaddr> = self
            .peers
            .get(peer)
            .map(|a| a.addrs().cloned().collect())
            .unwrap_or_default();
        for addr in addrs {
            self.remove(peer, &addr);
        }
    }

    /// Room for `n` more addresses of `peer` in one allocation, rather than the doubling of
    /// one push at a time (a peer's batch usually arrives whole, from identify).
    fn reserve(&mut self, peer: &PeerId, n: usize) {
        self.peers.entry(*peer).or_default().addrs.reserve(n);
    }

    /// Restores the invariants for `peer` after a write: re-enters its earliest expiry in the
    /// index, and drops a peer left without addresses, with its record (go
    /// `maybeDeleteSignedPeerRecordUnlocked`).
    fn tidy(&mut self, peer: &PeerId) {
        let Some(addrs) = self.peers.get_mut(peer) else {
            return;
        };
        Self::reindex(&mut self.expiries, peer, addrs);
        if addrs.addrs.is_empty()
            && let Some(addrs) = self.peers.remove(peer)
            && addrs.record.is_some()
        {
            self.records -= 1;
        }
    }

    /// Re-enters `peer` in the expiry index at its earliest expiry, if that changed.
    fn reindex(expiries: &mut BTreeSet<(Instant, PeerId)>, peer: &PeerId, addrs: &mut PeerAddrs) {
        let min = addrs.min_expiry();
        if min != addrs.indexed {
            if let Some(old) = addrs.indexed {
                expiries.remove(&(old, *peer));
            }
            if let Some(new) = min {
                expiries.insert((new, *peer));
            }
            addrs.indexed = min;
        }
    }

    /// Whether a new unconnected address of `peer` may be stored: under the global cap, and,
    /// past the per-peer cap, once the peer's address with the nearest expiry is evicted.
    fn make_room(&mut self, peer: &PeerId, config: &Config) -> bool {
        if self.unconnected >= config.max_unconnected_addrs {
            return false;
        }
        let cap = config.max_addrs_per_peer;
        let Some(addrs) = self.peers.get(peer) else {
            return true;
        };
        if cap == 0 || addrs.unconnected < cap {
            return true;
        }
        let nearest = addrs
            .addrs
            .iter()
            .filter(|(_, e)| !e.ttl.is_connected())
            .min_by_key(|(a, e)| (e.expiry.is_none(), e.expiry, a.clone()))
            .map(|(a, _)| a.clone());
        match nearest {
            Some(addr) => {
                self.remove(peer, &addr);
                true
            }
            None => false,
        }
    }

    fn broadcast(&mut self, peer: &PeerId, addr: &Multiaddr) {
        if let Some(subs) = self.subscribers.get_mut(peer) {
            subs.retain_mut(|s| s.offer(addr));
            if subs.is_empty() {
                self.subscribers.remove(peer);
            }
        }
    }

    /// go `AddAddrs`. Written for the hot path (identify, one address at a time from some
    /// callers): one lookup of the peer, no clone of an address already stored.
    fn add(&mut self, peer: &PeerId, addrs: &[Multiaddr], ttl: Ttl, now: Instant, config: &Config) {
        if ttl == Ttl::ZERO {
            // Nothing to add, but a caller may have removed addresses before.
            self.tidy(peer);
            return;
        }
        let new = Entry::new(ttl, now);
        let watched = !self.subscribers.is_empty() && self.subscribers.contains_key(peer);
        let mut added = Vec::new();
        let book = self.peers.entry(*peer).or_default();
        book.addrs.reserve(addrs.len());
        for addr in addrs {
            let Some(addr) = own_addr_cow(peer, addr) else {
                continue;
            };
            if let Some((_, old)) = book.addrs.iter_mut().find(|(a, _)| *a == *addr) {
                // TTL and expiry are each raised, never lowered; `None` is "never".
                let merged = Entry {
                    ttl: old.ttl.max(ttl),
                    expiry: match (old.expiry, new.expiry) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        _ => None,
                    },
                };
                if !old.ttl.is_connected() && merged.ttl.is_connected() {
                    book.unconnected -= 1;
                    self.unconnected -= 1;
                }
                *old = merged;
                continue;
            }
            if !ttl.is_connected() {
                if self.unconnected >= config.max_unconnected_addrs {
                    continue;
                }
                let cap = config.max_addrs_per_peer;
                if cap > 0 && book.unconnected >= cap {
                    // Evict the unconnected address with the nearest expiry (go).
                    let Some(i) = book
                        .addrs
                        .iter()
                        .enumerate()
                        .filter(|(_, (_, e))| !e.ttl.is_connected())
                        .min_by_key(|(_, (a, e))| (e.expiry.is_none(), e.expiry, a.clone()))
                        .map(|(i, _)| i)
                    else {
                        continue;
                    };
                    book.addrs.swap_remove(i);
                    book.unconnected -= 1;
                    self.unconnected -= 1;
                }
                book.unconnected += 1;
                self.unconnected += 1;
            }
            let addr = addr.into_owned();
            if watched {
                added.push(addr.clone());
            }
            book.addrs.push((addr, new));
        }
        // `tidy` without a second lookup of the peer.
        Self::reindex(&mut self.expiries, peer, book);
        let empty = book.addrs.is_empty();
        for addr in added {
            self.broadcast(peer, &addr);
        }
        if empty {
            self.tidy(peer);
        }
    }

    fn set(&mut self, peer: &PeerId, addrs: &[Multiaddr], ttl: Ttl, now: Instant, config: &Config) {
        let new = Entry::new(ttl, now);
        if ttl != Ttl::ZERO {
            self.reserve(peer, addrs.len());
        }
        for addr in addrs {
            let Some(addr) = own_addr(peer, addr) else {
                continue;
            };
            if ttl == Ttl::ZERO {
                self.remove(peer, &addr);
                continue;
            }
            match self.get(peer, &addr) {
                Some(old) => {
                    if old.ttl.is_connected()
                        && !ttl.is_connected()
                        && self.unconnected >= config.max_unconnected_addrs
                    {
                        self.remove(peer, &addr);
                        continue;
                    }
                }
                None => {
                    if !ttl.is_connected() && !self.make_room(peer, config) {
                        continue;
                    }
                }
            }
            self.put(peer, addr.clone(), new);
            self.broadcast(peer, &addr);
        }
        self.tidy(peer);
    }

    fn update(&mut self, peer: &PeerId, old: Ttl, new: Ttl, now: Instant, config: &Config) {
        let Some(addrs) = self.peers.get(peer) else {
            return;
        };
        let matching: Vec<Multiaddr> = addrs
            .addrs
            .iter()
            .filter(|(_, e)| e.ttl == old)
            .map(|(a, _)| a.clone())
            .collect();
        let entry = Entry::new(new, now);
        for addr in matching {
            let to_unconnected = old.is_connected() && !new.is_connected();
            if new == Ttl::ZERO
                || (to_unconnected && self.unconnected >= config.max_unconnected_addrs)
            {
                self.remove(peer, &addr);
            } else {
                self.put(peer, addr, entry);
            }
        }
        self.tidy(peer);
    }

    fn unexpired(&self, peer: &PeerId, now: Instant) -> impl Iterator<Item = (&Multiaddr, &Entry)> {
        self.peers
            .get(peer)
            .into_iter()
            .flat_map(|a| a.addrs.iter())
            .filter(move |(_, e)| !e.is_expired(now))
            .map(|(addr, entry)| (addr, entry))
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            inner: Mutex::default(),
        }
    }

    /// An empty store that records which peers each write changes, for a persistent backend
    /// to write them out (see [`MemoryStore::take_changes`]).
    pub fn tracking_changes(config: Config) -> Self {
        let store = Self::new(config);
        store.lock().changes = Some(HashSet::default());
        store
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update leaves the maps consistent before any call that could panic, so a
        // poisoned lock holds usable data.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lock, for a write that changes `peer`.
    fn write(&self, peer: &PeerId) -> MutexGuard<'_, Inner> {
        let mut inner = self.lock();
        if let Some(changes) = &mut inner.changes {
            changes.insert(*peer);
        }
        inner
    }

    /// The peers changed since the last call (empty unless built with
    /// [`MemoryStore::tracking_changes`]). The set is taken whole, in O(1) under the lock, so a
    /// flush of many changed peers does not hold up the store's other users.
    pub fn take_changes(&self) -> HashSet<PeerId> {
        self.lock()
            .changes
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Number of peers changed since the last [`MemoryStore::take_changes`].
    pub fn pending_changes(&self) -> usize {
        self.lock().changes.as_ref().map_or(0, HashSet::len)
    }

    /// Marks peers as changed again (after a failed write-out).
    pub fn restore_changes(&self, peers: impl IntoIterator<Item = PeerId>) {
        if let Some(changes) = &mut self.lock().changes {
            changes.extend(peers);
        }
    }

    /// Everything stored about `peer`, or `None` if nothing is.
    pub fn export_peer(&self, peer: &PeerId) -> Option<PeerState> {
        let inner = self.lock();
        let mut addrs: Vec<AddrEntry> = inner
            .book
            .peers
            .get(peer)
            .map(|a| {
                a.addrs
                    .iter()
                    .map(|(addr, e)| AddrEntry {
                        addr: addr.clone(),
                        ttl: e.ttl,
                        expiry: e.expiry,
                    })
                    .collect()
            })
            .unwrap_or_default();
        addrs.sort_by(|a, b| a.addr.cmp(&b.addr));
        let keys = inner.keys.get(peer);
        let state = PeerState {
            addrs,
            record: inner
                .book
                .peers
                .get(peer)
                .and_then(|a| a.record.as_ref())
                .map(|r| r.envelope.clone()),
            public_key: keys.and_then(|k| k.public.clone()),
            private_key: keys.and_then(|k| k.private.clone()),
            protocols: inner
                .protocols
                .get(peer)
                .map(|p| p.iter().cloned().collect())
                .unwrap_or_default(),
            latency: inner.latency.get(peer).copied(),
            metadata: inner
                .metadata
                .get(peer)
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
        };
        (!state.is_empty()).then_some(state)
    }

    /// Replaces everything stored about `peer` with `state`, as loaded from disk: addresses keep
    /// their TTLs and expiries (the caller converts and demotes them), the caps are not applied,
    /// and no change is recorded. A record that does not verify is dropped.
    pub fn import_peer(&self, peer: &PeerId, state: PeerState) {
        let mut inner = self.lock();
        let book = &mut inner.book;
        book.remove_all(peer);
        for e in state.addrs {
            book.put(
                peer,
                e.addr,
                Entry {
                    ttl: e.ttl,
                    expiry: e.expiry,
                },
            );
        }
        let record = state.record.and_then(|envelope| {
            let parsed = PeerRecord::from_signed_envelope_interop(envelope.clone()).ok()?;
            (parsed.peer_id() == *peer).then(|| Record {
                seq: parsed.seq(),
                addrs: parsed
                    .addresses()
                    .iter()
                    .filter_map(|a| own_addr(peer, a))
                    .collect(),
                envelope,
            })
        });
        if let Some(record) = record
            && let Some(addrs) = book.peers.get_mut(peer)
            && addrs.record.replace(Box::new(record)).is_none()
        {
            book.records += 1;
        }
        book.tidy(peer);
        inner.keys.remove(peer);
        if state.public_key.is_some() || state.private_key.is_some() {
            inner.keys.insert(
                *peer,
                Keys {
                    public: state.public_key,
                    private: state.private_key,
                },
            );
        }
        inner.protocols.remove(peer);
        if !state.protocols.is_empty() {
            inner
                .protocols
                .insert(*peer, state.protocols.into_iter().collect());
        }
        inner.latency.remove(peer);
        if let Some(l) = state.latency {
            inner.latency.insert(*peer, l);
        }
        inner.metadata.remove(peer);
        if !state.metadata.is_empty() {
            inner
                .metadata
                .insert(*peer, state.metadata.into_iter().collect());
        }
    }

    /// Every peer with anything stored.
    pub fn all_peers(&self) -> Vec<PeerId> {
        let inner = self.lock();
        let mut peers: Vec<PeerId> = inner
            .book
            .peers
            .keys()
            .chain(inner.keys.keys())
            .chain(inner.protocols.keys())
            .chain(inner.latency.keys())
            .chain(inner.metadata.keys())
            .copied()
            .collect();
        peers.sort();
        peers.dedup();
        peers
    }
}

/// Everything a store holds about one peer, for persistent backends:
/// [`MemoryStore::export_peer`] and [`MemoryStore::import_peer`].
#[derive(Debug, Clone, Default)]
pub struct PeerState {
    /// Every stored address, expired or not, with its TTL and expiry.
    pub addrs: Vec<AddrEntry>,
    /// The signed peer record.
    pub record: Option<SignedEnvelope>,
    /// The public key, if one was added (derived keys are not stored).
    pub public_key: Option<PublicKey>,
    /// The private key, if one was added.
    pub private_key: Option<Keypair>,
    /// The protocols, sorted.
    pub protocols: Vec<String>,
    /// The latency EWMA.
    pub latency: Option<Duration>,
    /// The metadata, sorted by key.
    pub metadata: std::collections::BTreeMap<String, serde_json::Value>,
}

impl PeerState {
    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
            && self.record.is_none()
            && self.public_key.is_none()
            && self.private_key.is_none()
            && self.protocols.is_empty()
            && self.latency.is_none()
            && self.metadata.is_empty()
    }
}

fn derived_key(peer: &PeerId) -> Option<PublicKey> {
    let multihash: &multiaddr::multihash::Multihash<64> = peer.as_ref();
    if multihash.code() != IDENTITY_MULTIHASH {
        return None;
    }
    PublicKey::try_decode_protobuf(multihash.digest()).ok()
}

fn check_key(peer: &PeerId, key: &PublicKey) -> Result<(), Error> {
    if key.to_peer_id() != *peer {
        return Err(Error::KeyMismatch { peer: *peer });
    }
    Ok(())
}

impl Store for MemoryStore {
    fn add_addrs(&self, peer: &PeerId, addrs: &[Multiaddr], ttl: Ttl, now: Instant) {
        self.write(peer)
            .book
            .add(peer, addrs, ttl, now, &self.config);
    }

    fn set_addrs(&self, peer: &PeerId, addrs: &[Multiaddr], ttl: Ttl, now: Instant) {
        self.write(peer)
            .book
            .set(peer, addrs, ttl, now, &self.config);
    }

    fn update_addrs(&self, peer: &PeerId, old: Ttl, new: Ttl, now: Instant) {
        self.write(peer)
            .book
            .update(peer, old, new, now, &self.config);
    }

    fn clear_addrs(&self, peer: &PeerId) {
        let mut inner = self.write(peer);
        inner.book.remove_all(peer);
        inner.book.tidy(peer);
    }

    fn addrs_with_ttl(&self, peer: &PeerId, now: Instant) -> Vec<AddrEntry> {
        let inner = self.lock();
        let mut entries: Vec<AddrEntry> = inner
            .book
            .unexpired(peer, now)
            .map(|(addr, e)| AddrEntry {
                addr: addr.clone(),
                ttl: e.ttl,
                expiry: e.expiry,
            })
            .collect();
        entries.sort_by(|a, b| a.addr.cmp(&b.addr));
        entries
    }

    fn addrs(&self, peer: &PeerId, now: Instant) -> Vec<Multiaddr> {
        let addrs: Vec<Multiaddr> = self
            .lock()
            .book
            .unexpired(peer, now)
            .map(|(a, _)| a.clone())
            .collect();
        addrs
    }

    fn peers_with_addrs(&self, now: Instant) -> Vec<PeerId> {
        let inner = self.lock();
        let mut peers: Vec<PeerId> = inner
            .book
            .peers
            .keys()
            .filter(|p| inner.book.unexpired(p, now).next().is_some())
            .copied()
            .collect();
        peers.sort();
        peers
    }

    fn gc(&self, now: Instant) -> usize {
        let mut inner = self.lock();
        let book = &mut inner.book;
        let mut removed = 0;
        let mut touched = Vec::new();
        while let Some((expiry, peer)) = book.expiries.first().copied() {
            if expiry > now {
                break;
            }
            book.expiries.pop_first();
            let expired: Vec<Multiaddr> = book
                .peers
                .get_mut(&peer)
                .map(|a| {
                    a.indexed = None;
                    a.addrs
                        .iter()
                        .filter(|(_, e)| e.is_expired(now))
                        .map(|(a, _)| a.clone())
                        .collect()
                })
                .unwrap_or_default();
            for addr in expired {
                book.remove(&peer, &addr);
                removed += 1;
            }
            // Re-entered at its next expiry, which is after `now`.
            book.tidy(&peer);
            touched.push(peer);
        }
        if let Some(changes) = &mut inner.changes {
            changes.extend(touched);
        }
        removed
    }

    fn next_expiry(&self) -> Option<Instant> {
        self.lock().book.expiries.first().map(|(e, _)| *e)
    }

    fn unconnected_addrs(&self) -> usize {
        self.lock().book.unconnected
    }

    fn addr_stream(&self, peer: &PeerId) -> AddrStream {
        let (tx, rx) = futures_channel::mpsc::channel(self.config.addr_stream_buffer);
        let mut sub = Subscriber {
            tx,
            sent: HashSet::default(),
        };
        let mut inner = self.lock();
        let mut current: Vec<&Multiaddr> = inner
            .book
            .peers
            .get(peer)
            .map(|a| a.addrs().collect())
            .unwrap_or_default();
        current.sort();
        for addr in current {
            sub.offer(addr);
        }
        inner.book.subscribers.entry(*peer).or_default().push(sub);
        AddrStream { rx }
    }

    fn consume_peer_record(
        &self,
        envelope: &SignedEnvelope,
        ttl: Ttl,
        now: Instant,
    ) -> Result<bool, Error> {
        self.consume_verified_record(&VerifiedRecord::open(envelope.clone())?, ttl, now)
    }

    fn consume_verified_record(
        &self,
        record: &VerifiedRecord,
        ttl: Ttl,
        now: Instant,
    ) -> Result<bool, Error> {
        let peer = record.peer();
        let seq = record.seq();
        let mut inner = self.write(&peer);
        let book = &mut inner.book;
        let previous = book.peers.get_mut(&peer).and_then(|a| a.record.take());
        match &previous {
            Some(stored) if stored.seq > seq => {
                book.peers.get_mut(&peer).expect("had a record").record = previous;
                return Ok(false);
            }
            None if book.records >= self.config.max_peer_records => {
                return Err(Error::TooManyPeerRecords {
                    limit: self.config.max_peer_records,
                });
            }
            None => book.records += 1,
            Some(_) => {}
        }
        let addrs: Vec<Multiaddr> = record
            .addrs()
            .iter()
            .filter_map(|a| own_addr(&peer, a))
            .collect();
        let current: HashSet<Multiaddr> = addrs.iter().cloned().collect();
        // A newer record replaces the previous record's addresses; connected ones stay.
        if let Some(previous) = previous {
            for addr in previous.addrs.difference(&current) {
                if book.get(&peer, addr).is_some_and(|e| !e.ttl.is_connected()) {
                    book.remove(&peer, addr);
                }
            }
        }
        book.peers.entry(peer).or_default().record = Some(Box::new(Record {
            envelope: record.envelope(),
            seq,
            addrs: current,
        }));
        // `add` tidies: with no address left (say, a zero TTL), the record goes again.
        book.add(&peer, &addrs, ttl, now, &self.config);
        Ok(true)
    }

    fn peer_record(&self, peer: &PeerId, now: Instant) -> Option<SignedEnvelope> {
        let inner = self.lock();
        let addrs = inner.book.peers.get(peer)?;
        let record = addrs.record.as_ref()?;
        addrs
            .addrs
            .iter()
            .any(|(_, e)| !e.is_expired(now))
            .then(|| record.envelope.clone())
    }

    fn pub_key(&self, peer: &PeerId) -> Option<PublicKey> {
        let stored = self.lock().keys.get(peer).and_then(|k| {
            k.public
                .clone()
                .or_else(|| k.private.as_ref().map(Keypair::public))
        });
        stored.or_else(|| derived_key(peer))
    }

    fn add_pub_key(&self, peer: &PeerId, key: &PublicKey) -> Result<(), Error> {
        check_key(peer, key)?;
        self.write(peer).keys.entry(*peer).or_default().public = Some(key.clone());
        Ok(())
    }

    fn priv_key(&self, peer: &PeerId) -> Option<Keypair> {
        self.lock().keys.get(peer).and_then(|k| k.private.clone())
    }

    fn add_priv_key(&self, peer: &PeerId, key: &Keypair) -> Result<(), Error> {
        check_key(peer, &key.public())?;
        self.write(peer).keys.entry(*peer).or_default().private = Some(key.clone());
        Ok(())
    }

    fn peers_with_keys(&self) -> Vec<PeerId> {
        let mut peers: Vec<PeerId> = self.lock().keys.keys().copied().collect();
        peers.sort();
        peers
    }

    fn protocols(&self, peer: &PeerId) -> Vec<String> {
        self.lock()
            .protocols
            .get(peer)
            .map(|p| p.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn add_protocols(&self, peer: &PeerId, protocols: &[String]) -> Result<(), Error> {
        let limit = self.config.max_protocols_per_peer;
        let mut inner = self.write(peer);
        let existing = inner.protocols.get(peer).map_or(0, Protocols::len);
        if existing + protocols.len() > limit {
            return Err(Error::TooManyProtocols { peer: *peer, limit });
        }
        if !protocols.is_empty() {
            let set = inner.protocols.entry(*peer).or_default();
            for p in protocols {
                set.insert(p);
            }
        }
        Ok(())
    }

    fn set_protocols(&self, peer: &PeerId, protocols: &[String]) -> Result<(), Error> {
        let limit = self.config.max_protocols_per_peer;
        if protocols.len() > limit {
            return Err(Error::TooManyProtocols { peer: *peer, limit });
        }
        let mut inner = self.write(peer);
        if protocols.is_empty() {
            inner.protocols.remove(peer);
        } else {
            inner
                .protocols
                .insert(*peer, protocols.iter().cloned().collect());
        }
        Ok(())
    }

    fn remove_protocols(&self, peer: &PeerId, protocols: &[String]) {
        let mut inner = self.write(peer);
        if let Some(set) = inner.protocols.get_mut(peer) {
            for p in protocols {
                set.remove(p);
            }
            if set.is_empty() {
                inner.protocols.remove(peer);
            }
        }
    }

    fn supports_protocols(&self, peer: &PeerId, protocols: &[&str]) -> Vec<String> {
        let inner = self.lock();
        let Some(set) = inner.protocols.get(peer) else {
            return Vec::new();
        };
        protocols
            .iter()
            .filter(|p| set.contains(p))
            .map(|p| (*p).to_owned())
            .collect()
    }

    fn first_supported_protocol(&self, peer: &PeerId, protocols: &[&str]) -> Option<String> {
        let inner = self.lock();
        let set = inner.protocols.get(peer)?;
        protocols
            .iter()
            .find(|p| set.contains(p))
            .map(|p| (*p).to_owned())
    }

    fn record_latency(&self, peer: &PeerId, rtt: Duration) {
        let mut inner = self.write(peer);
        let ewma = match inner.latency.get(peer) {
            None => rtt,
            Some(prev) => Duration::from_secs_f64(
                LATENCY_EWMA_SMOOTHING * rtt.as_secs_f64()
                    + (1.0 - LATENCY_EWMA_SMOOTHING) * prev.as_secs_f64(),
            ),
        };
        inner.latency.insert(*peer, ewma);
    }

    fn latency_ewma(&self, peer: &PeerId) -> Option<Duration> {
        self.lock().latency.get(peer).copied()
    }

    fn reset_latency(&self, peer: &PeerId) {
        self.write(peer).latency.remove(peer);
    }

    fn put_value(&self, peer: &PeerId, key: &str, value: serde_json::Value) {
        let mut inner = self.write(peer);
        let entries = inner.metadata.entry(*peer).or_default();
        match entries.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => entries.push((key.to_owned(), value)),
        }
    }

    fn get_value(&self, peer: &PeerId, key: &str) -> Result<serde_json::Value, Error> {
        self.lock()
            .metadata
            .get(peer)
            .and_then(|m| m.iter().find(|(k, _)| k == key))
            .map(|(_, v)| v.clone())
            .ok_or_else(|| Error::NotFound {
                peer: *peer,
                key: key.to_owned(),
            })
    }

    fn peers(&self, now: Instant) -> Vec<PeerId> {
        let mut peers = self.peers_with_addrs(now);
        peers.extend(self.peers_with_keys());
        peers.sort();
        peers.dedup();
        peers
    }

    fn remove_peer(&self, peer: &PeerId) {
        let mut inner = self.write(peer);
        inner.keys.remove(peer);
        inner.protocols.remove(peer);
        inner.latency.remove(peer);
        inner.metadata.remove(peer);
    }
}
