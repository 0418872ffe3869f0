//! The peerstore: facts about peers, as go-libp2p `core/peerstore`.
//!
//! - **Address book**: addresses with a [`Ttl`]. `add_addrs` never shortens a TTL or an expiry
//!   (each is raised independently); `set_addrs` overrides, and a zero TTL deletes;
//!   `update_addrs` moves the addresses whose TTL is exactly `old` to `new`; an address is
//!   expired when `now >= expiry`, and is then hidden from every read. A trailing `/p2p/<id>` is
//!   stripped; an address whose `/p2p` names another peer is skipped.
//! - **GC**: every finite expiry is indexed, and every transition into a finite TTL (including a
//!   connected address downgraded by `set_addrs` or `update_addrs`) enters the index, so
//!   [`Store::gc`] collects everything that expired (go's downgrade hole, spec §2.2, does not
//!   exist here). [`Store::next_expiry`] is the GC's `poll_timeout`.
//! - **Caps** ([`Config`]): 64 unconnected addresses per peer (a new one evicts the peer's
//!   nearest expiry; connected addresses are exempt), 1,000,000 unconnected addresses in total
//!   (checked per address, where go checks per batch), 100,000 signed peer records.
//! - **Certified addresses**: [`Store::consume_peer_record`] takes a libp2p signed envelope
//!   holding a peer record (domain `libp2p-peer-record`, payload type `0x0301`) and verifies it
//!   itself: the signature, and that the signer is the record's peer (go trusts its caller). A
//!   lower sequence number is ignored, an equal one refreshes the TTLs, a newer record replaces the
//!   previous record's addresses (connected ones stay). Unsigned addresses that were never in a
//!   record survive a newer record, as go (js drops them); certified and unsigned addresses are
//!   one set, as go. The record goes with the peer's last address.
//! - **Key book**: a public key must match the peer ID; Ed25519 keys are derived from the ID.
//! - **Protocol book**: at most 128 protocols per peer by default ("too many protocols").
//! - **Metrics**: the latency EWMA (smoothing 0.1, the first sample taken as is).
//! - **Metadata**: JSON values by key; [`Peerstore::get`] and [`Peerstore::put`] are typed.
//!
//! [`Peerstore`] is a `Send + Sync` handle over a [`Store`] backend: [`MemoryStore`] here, a
//! persistent one in `peerage-store`. Every time-dependent call takes `now`.

mod clocked;
mod memory;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use std::{
    fmt,
    ops::Deref,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use libp2p_core::{PeerRecord, SignedEnvelope};
use libp2p_identity::{Keypair, PublicKey};
use multiaddr::Multiaddr;
use serde::{Serialize, de::DeserializeOwned};

pub use self::{
    clocked::{Clock, Clocked},
    memory::{MemoryStore, PeerState},
};
use crate::PeerId;

/// How long an address is kept.
///
/// `Connected` and `Permanent` are variants, not sentinel durations (go uses `MaxInt64 - 1` and
/// `MaxInt64`). The order is `Finite(_) < Connected < Permanent`, so "never shorten" compares
/// them as go compares its durations. Both `Connected` and `Permanent` count as *connected* for
/// the caps and the GC, as in go (`ttl >= ConnectedAddrTTL`).
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
    /// A zero TTL: a no-op in `add_addrs`, a deletion in `set_addrs` and `update_addrs`.
    pub const ZERO: Ttl = Ttl::Finite(Duration::ZERO);

    /// Whether this is `Connected` or `Permanent` (go: `ttl >= ConnectedAddrTTL`).
    pub fn is_connected(self) -> bool {
        !matches!(self, Ttl::Finite(_))
    }

    /// The expiry of an address written at `now`; `None` for connected and permanent TTLs, and
    /// for a finite TTL too long to represent (which then never expires).
    pub fn expiry(self, now: Instant) -> Option<Instant> {
        match self {
            Ttl::Finite(d) => now.checked_add(d),
            Ttl::Connected | Ttl::Permanent => None,
        }
    }
}

/// An address with its TTL and expiry, as [`Store::addrs_with_ttl`] returns them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrEntry {
    /// The address, without `/p2p`.
    pub addr: Multiaddr,
    /// Its TTL.
    pub ttl: Ttl,
    /// When it expires; `None` for connected and permanent addresses.
    pub expiry: Option<Instant>,
}

/// A peer and its unexpired addresses (go `peer.AddrInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer.
    pub peer_id: PeerId,
    /// Its unexpired addresses.
    pub addrs: Vec<Multiaddr>,
}

/// Errors of the peerstore.
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
    /// A key does not belong to the peer it was given for (go: "ID does not match PublicKey").
    #[error("key does not match peer {peer}")]
    KeyMismatch {
        /// The peer the key was given for.
        peer: PeerId,
    },
    /// A signed envelope is not a valid peer record: bad signature, wrong domain or payload
    /// type, a signer that is not the record's peer, or an undecodable payload.
    #[error("invalid signed peer record: {0}")]
    InvalidPeerRecord(String),
    /// The store holds the maximum number of signed peer records.
    #[error("too many signed peer records (limit {limit})")]
    TooManyPeerRecords {
        /// The cap.
        limit: usize,
    },
    /// No metadata under this key (go `ErrNotFound`).
    #[error("no metadata {key:?} for peer {peer}")]
    NotFound {
        /// The peer.
        peer: PeerId,
        /// The key.
        key: String,
    },
    /// A metadata value could not be converted to or from the requested type.
    #[error("metadata {key:?}: {reason}")]
    Metadata {
        /// The key.
        key: String,
        /// Why the conversion failed.
        reason: String,
    },
    /// The persistent backend failed.
    #[error("peerstore storage: {0}")]
    Storage(String),
}

/// Configuration of a peerstore backend. The defaults are go's.
#[derive(Debug, Clone)]
pub struct Config {
    max_protocols_per_peer: usize,
    max_addrs_per_peer: usize,
    max_unconnected_addrs: usize,
    max_peer_records: usize,
    addr_stream_buffer: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_protocols_per_peer: 128,
            max_addrs_per_peer: 64,
            max_unconnected_addrs: 1_000_000,
            max_peer_records: 100_000,
            addr_stream_buffer: 256,
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
    /// Cap of unconnected (finite-TTL) addresses per peer; a new address beyond it evicts the
    /// peer's address with the nearest expiry. 0 disables it. 64 by default (go).
    pub fn with_max_addrs_per_peer(mut self, n: usize) -> Self {
        self.max_addrs_per_peer = n;
        self
    }
    /// Cap of unconnected addresses in the whole store; a new address beyond it is dropped.
    /// 1,000,000 by default (go `WithMaxAddresses`).
    pub fn with_max_unconnected_addrs(mut self, n: usize) -> Self {
        self.max_unconnected_addrs = n;
        self
    }
    /// Cap of peers with a signed peer record. 100,000 by default (go).
    pub fn with_max_peer_records(mut self, n: usize) -> Self {
        self.max_peer_records = n;
        self
    }
    /// Addresses an [`AddrStream`] buffers for a slow reader before it drops new ones.
    /// 256 by default.
    pub fn with_addr_stream_buffer(mut self, n: usize) -> Self {
        self.addr_stream_buffer = n.max(1);
        self
    }
}

/// A stream of a peer's addresses: those stored when it was opened, then each new one, each
/// address at most once (go `AddrStream`). Removals and expiries are not signalled. It is
/// bounded: a reader more than the configured buffer behind loses the new addresses past it.
/// Dropping it unsubscribes.
pub struct AddrStream {
    rx: futures_channel::mpsc::Receiver<Multiaddr>,
}

impl fmt::Debug for AddrStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AddrStream").finish_non_exhaustive()
    }
}

impl futures_core::Stream for AddrStream {
    type Item = Multiaddr;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Multiaddr>> {
        Pin::new(&mut self.rx).poll_next(cx)
    }
}

/// A peerstore backend: go's `Peerstore` interface, with `now` passed in.
///
/// Every method takes `&self`: backends are `Send + Sync` and lock internally, briefly. The
/// conformance suite (feature `conformance`) checks a backend against go's shared suites.
pub trait Store: Send + Sync + fmt::Debug {
    // Address book.

    /// Adds addresses of `peer` with `ttl` (go `AddAddrs`); never shortens a TTL or an expiry.
    /// A zero TTL adds nothing.
    fn add_addrs(&self, peer: &PeerId, addrs: &[Multiaddr], ttl: Ttl, now: Instant);
    /// Sets addresses of `peer` to `ttl` (go `SetAddrs`); a zero TTL deletes them.
    fn set_addrs(&self, peer: &PeerId, addrs: &[Multiaddr], ttl: Ttl, now: Instant);
    /// Moves every address of `peer` whose TTL is exactly `old` to `new`, expiring `new` from
    /// `now` (go `UpdateAddrs`); a zero `new` deletes them.
    fn update_addrs(&self, peer: &PeerId, old: Ttl, new: Ttl, now: Instant);
    /// Removes every address of `peer`, and its signed record (go `ClearAddrs`).
    fn clear_addrs(&self, peer: &PeerId);
    /// The unexpired addresses of `peer`, with TTL and expiry, sorted by address.
    fn addrs_with_ttl(&self, peer: &PeerId, now: Instant) -> Vec<AddrEntry>;
    /// The unexpired addresses of `peer`, in no particular order (go `Addrs`, whose order is
    /// random; [`Store::addrs_with_ttl`] sorts).
    fn addrs(&self, peer: &PeerId, now: Instant) -> Vec<Multiaddr> {
        self.addrs_with_ttl(peer, now)
            .into_iter()
            .map(|e| e.addr)
            .collect()
    }
    /// Peers with at least one unexpired address. (go also lists peers whose addresses expired
    /// but were not collected yet; this does not.)
    fn peers_with_addrs(&self, now: Instant) -> Vec<PeerId>;
    /// Removes every address that expired at `now`, and records left without addresses.
    /// Returns the number of addresses removed.
    fn gc(&self, now: Instant) -> usize;
    /// The earliest expiry of any stored address: when [`Store::gc`] next has work.
    fn next_expiry(&self) -> Option<Instant>;
    /// Number of unconnected (finite-TTL) addresses stored, expired or not.
    fn unconnected_addrs(&self) -> usize;
    /// A stream of the addresses of `peer`: those stored now, then each new one.
    fn addr_stream(&self, peer: &PeerId) -> AddrStream;

    // Certified address book.

    /// Verifies and stores a signed peer record, and adds its addresses with `ttl`. Returns
    /// `false` if a record with a greater sequence number is stored (the envelope is ignored).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPeerRecord`] for a bad envelope, [`Error::TooManyPeerRecords`] if the
    /// store is full of records. The store is unchanged on error.
    fn consume_peer_record(
        &self,
        envelope: &SignedEnvelope,
        ttl: Ttl,
        now: Instant,
    ) -> Result<bool, Error>;
    /// As [`Store::consume_peer_record`], for a record already verified: a store that
    /// overrides this (the memory and redb stores do) does not check the signature again.
    /// By default it verifies the envelope again.
    ///
    /// # Errors
    ///
    /// As [`Store::consume_peer_record`].
    fn consume_verified_record(
        &self,
        record: &VerifiedRecord,
        ttl: Ttl,
        now: Instant,
    ) -> Result<bool, Error> {
        self.consume_peer_record(&record.envelope(), ttl, now)
    }
    /// The signed record of `peer`, if it has one and an unexpired address.
    fn peer_record(&self, peer: &PeerId, now: Instant) -> Option<SignedEnvelope>;

    // Key book.

    /// The public key of `peer`: the stored one, else the one its ID inlines (Ed25519).
    fn pub_key(&self, peer: &PeerId) -> Option<PublicKey>;
    /// Stores the public key of `peer`.
    ///
    /// # Errors
    ///
    /// [`Error::KeyMismatch`] if the key is not `peer`'s.
    fn add_pub_key(&self, peer: &PeerId, key: &PublicKey) -> Result<(), Error>;
    /// The private key of `peer` (in practice, our own).
    fn priv_key(&self, peer: &PeerId) -> Option<Keypair>;
    /// Stores the private key of `peer`.
    ///
    /// # Errors
    ///
    /// [`Error::KeyMismatch`] if the key is not `peer`'s.
    fn add_priv_key(&self, peer: &PeerId, key: &Keypair) -> Result<(), Error>;
    /// Peers with a stored public or private key.
    fn peers_with_keys(&self) -> Vec<PeerId>;

    // Protocol book.

    /// The protocols of `peer`, sorted.
    fn protocols(&self, peer: &PeerId) -> Vec<String>;
    /// Adds protocols to `peer`.
    ///
    /// # Errors
    ///
    /// [`Error::TooManyProtocols`] if the stored and given protocols (duplicates counted, as go)
    /// exceed the cap; nothing is added.
    fn add_protocols(&self, peer: &PeerId, protocols: &[String]) -> Result<(), Error>;
    /// Replaces the protocols of `peer`.
    ///
    /// # Errors
    ///
    /// [`Error::TooManyProtocols`] if more than the cap are given; the old set stays.
    fn set_protocols(&self, peer: &PeerId, protocols: &[String]) -> Result<(), Error>;
    /// Removes protocols from `peer`.
    fn remove_protocols(&self, peer: &PeerId, protocols: &[String]);
    /// Which of `protocols` `peer` supports, in the order given.
    fn supports_protocols(&self, peer: &PeerId, protocols: &[&str]) -> Vec<String>;
    /// The first of `protocols` that `peer` supports.
    fn first_supported_protocol(&self, peer: &PeerId, protocols: &[&str]) -> Option<String>;

    // Metrics.

    /// Records a round-trip time to `peer`: the first sample is taken as is, then
    /// `ewma = 0.1 * sample + 0.9 * ewma`.
    fn record_latency(&self, peer: &PeerId, rtt: Duration);
    /// The latency EWMA of `peer`, if any sample was recorded (go returns 0 instead).
    fn latency_ewma(&self, peer: &PeerId) -> Option<Duration>;
    /// Forgets `peer`'s latency: the next sample is taken as is. go-libp2p's `Metrics` forgets
    /// it only with the whole peer (`RemovePeer`); the node machine uses this to replace a
    /// connection's first ping, taken while the remote may still be starting, by its second.
    fn reset_latency(&self, peer: &PeerId);

    // Metadata.

    /// Stores a metadata value.
    fn put_value(&self, peer: &PeerId, key: &str, value: serde_json::Value);
    /// A metadata value.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if the peer has no value under `key`.
    fn get_value(&self, peer: &PeerId, key: &str) -> Result<serde_json::Value, Error>;

    // The whole peer.

    /// Peers with keys or addresses (go `Peers`: peers with only protocols or metadata are not
    /// listed).
    fn peers(&self, now: Instant) -> Vec<PeerId>;
    /// Removes everything about `peer` but its addresses and record (go `RemovePeer`).
    fn remove_peer(&self, peer: &PeerId);

    /// Makes every write so far durable. A no-op in memory.
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] if the backend cannot write.
    fn flush(&self) -> Result<(), Error> {
        Ok(())
    }
}

/// The smoothing factor of the latency EWMA (go `LatencyEWMASmoothing`).
pub const LATENCY_EWMA_SMOOTHING: f64 = 0.1;

/// A signed peer record whose signature was checked (the standard domain
/// `libp2p-peer-record` and payload type `0x0301`, as go-libp2p and js-libp2p seal them). Only
/// [`VerifiedRecord::open`] makes one, so a store may take it without verifying it again
/// ([`Store::consume_verified_record`]): each record is verified once on its way in.
#[derive(Debug, Clone)]
pub struct VerifiedRecord {
    /// The record, which holds its envelope.
    record: PeerRecord,
}

impl VerifiedRecord {
    /// Verifies `envelope` and reads the peer record in it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPeerRecord`] if the signature does not verify, or the envelope is not a
    /// peer record (another domain or payload type, or a payload that does not decode).
    pub fn open(envelope: SignedEnvelope) -> Result<Self, Error> {
        let record = PeerRecord::from_signed_envelope_interop(envelope)
            .map_err(|e| Error::InvalidPeerRecord(e.to_string()))?;
        Ok(Self { record })
    }

    /// The peer that signed it.
    pub fn peer(&self) -> PeerId {
        self.record.peer_id()
    }

    /// Its sequence number: a record replaces one with a lower number.
    pub fn seq(&self) -> u64 {
        self.record.seq()
    }

    /// Its addresses, as signed.
    pub fn addrs(&self) -> &[Multiaddr] {
        self.record.addresses()
    }

    /// A copy of the signed envelope (what the peerstore keeps and passes on).
    pub fn envelope(&self) -> SignedEnvelope {
        self.record.to_signed_envelope()
    }
}

/// A shared peerstore: a cheap-to-clone handle over a [`Store`]. It dereferences to the store,
/// and adds the typed metadata accessors.
#[derive(Debug, Clone)]
pub struct Peerstore {
    store: Arc<dyn Store>,
}

impl Default for Peerstore {
    fn default() -> Self {
        Self::memory(Config::default())
    }
}

impl Deref for Peerstore {
    type Target = dyn Store;

    fn deref(&self) -> &Self::Target {
        &*self.store
    }
}

impl Peerstore {
    /// A handle over `store`.
    pub fn new(store: impl Store + 'static) -> Self {
        Self {
            store: Arc::new(store),
        }
    }

    /// A handle over a new [`MemoryStore`].
    pub fn memory(config: Config) -> Self {
        Self::new(MemoryStore::new(config))
    }

    /// `peer` and its unexpired addresses (go `PeerInfo`).
    pub fn peer_info(&self, peer: &PeerId, now: Instant) -> PeerInfo {
        PeerInfo {
            peer_id: *peer,
            addrs: self.store.addrs(peer, now),
        }
    }

    /// Stores `value` under `key` for `peer` (go `Put`).
    ///
    /// # Errors
    ///
    /// [`Error::Metadata`] if the value does not serialize to JSON.
    pub fn put<T: Serialize + ?Sized>(
        &self,
        peer: &PeerId,
        key: &str,
        value: &T,
    ) -> Result<(), Error> {
        let value = serde_json::to_value(value).map_err(|e| Error::Metadata {
            key: key.to_owned(),
            reason: e.to_string(),
        })?;
        self.store.put_value(peer, key, value);
        Ok(())
    }

    /// The value under `key` for `peer`, as a `T` (go `Get`).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if there is none, [`Error::Metadata`] if it is not a `T`.
    pub fn get<T: DeserializeOwned>(&self, peer: &PeerId, key: &str) -> Result<T, Error> {
        let value = self.store.get_value(peer, key)?;
        serde_json::from_value(value).map_err(|e| Error::Metadata {
            key: key.to_owned(),
            reason: e.to_string(),
        })
    }
}

/// As [`own_addr`], without a copy when `addr` has no `/p2p` suffix.
pub(crate) fn own_addr_cow<'a>(
    peer: &PeerId,
    addr: &'a Multiaddr,
) -> Option<std::borrow::Cow<'a, Multiaddr>> {
    // Fast path: without the bytes of the `/p2p` code (0x01a5 as a varint) anywhere, there is
    // no `/p2p` component, and no need to decode the address.
    if !addr.as_ref().windows(2).any(|w| w == [0xa5, 0x03]) {
        return Some(std::borrow::Cow::Borrowed(addr));
    }
    match addr.iter().last() {
        Some(multiaddr::Protocol::P2p(id)) if id != *peer => None,
        Some(multiaddr::Protocol::P2p(_)) => {
            let mut a = addr.clone();
            a.pop();
            Some(std::borrow::Cow::Owned(a))
        }
        _ => Some(std::borrow::Cow::Borrowed(addr)),
    }
}

/// Splits a trailing `/p2p/<id>` off `addr`: `Some(addr)` without it if it named `peer` or was
/// absent, `None` if it names another peer (go skips such addresses).
pub(crate) fn own_addr(peer: &PeerId, addr: &Multiaddr) -> Option<Multiaddr> {
    own_addr_cow(peer, addr).map(std::borrow::Cow::into_owned)
}

#[cfg(test)]
mod tests;
