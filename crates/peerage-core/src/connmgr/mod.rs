//! The connection manager: tags, protection, decaying tags, watermarks and trimming, as
//! go-libp2p's `BasicConnMgr` and decayer (`p2p/net/connmgr`), with a hard
//! cap at admission.
//!
//! [`ConnManager`] is sans-IO. The caller reports connections
//! ([`connection_established`](ConnManager::connection_established),
//! [`connection_closed`](ConnManager::connection_closed)), asks it whether to admit one
//! ([`admit`](ConnManager::admit)), and closes the peers a [`Trim`] names. It never closes
//! anything itself.
//!
//! # Counting
//!
//! The unit is the **connection**: watermarks, the hard cap and the trim target count
//! connections, and victims are whole **peers** (all their connections), as go. Connections a
//! trim already chose are not counted again while they close.
//!
//! # Trimming
//!
//! A trim runs when the count **exceeds** the high watermark (not "reaches" it, as go's ticker
//! does), at most once per silence period (10 s by default) after a trim that closed peers,
//! triggered by the connection that crosses the watermark rather than by a 10 s ticker; or on
//! demand ([`trim_open_conns`](ConnManager::trim_open_conns), unthrottled). A trim that closed
//! nothing because candidates were in their grace period disturbed nobody: the next one runs as
//! soon as the first of them leaves it (or after the silence period, if sooner), so that a node
//! at its hard cap makes room within the grace period rather than up to 10 s later.
//! Candidates are the peers that are neither protected nor in their grace period (1 min from
//! their first connection). With `n` candidate connections and low watermark `low`, a trim
//! closes the lowest-ranked candidate peers until `n - low` connections are chosen (whole peers,
//! so it may overshoot by part of one peer). It does nothing when fewer than `low` candidate
//! connections exist.
//!
//! **After a trim the count is the low watermark plus the exempt connections** (protected peers
//! and peers in grace), as go. go's counts grew to twice the high watermark that way (go-libp2p
//! GH#54, Kubo GH#9483) because nothing bounded the exempt connections; here the [hard
//! cap](Config::with_hard_cap) refuses new connections of unprotected peers at admission, so
//! peers in grace cannot push the count past it.
//!
//! Ranking, lowest first (go `SortByValueAndStreams`): lower total tag value; then peers with no
//! open streams; then peers with an inbound connection; then fewer streams; then the newest peer
//! (js's tie-break: long-standing connections are the harder ones to replace). Stream counts are
//! what the caller reports ([`set_streams`](ConnManager::set_streams)); unreported, they are 0
//! and the stream rules are neutral.
//!
//! # Tag lifetime
//!
//! As go: a peer's tags and decaying values live with its connections and are dropped when its
//! last connection closes; protection is kept. Applications tag peers when they connect (go's
//! DHT, bitswap and relay do), and keeping the tags of every peer ever seen would need unbounded
//! memory for peers that never return. Tags set on a peer before it connects are kept in a
//! temporary entry (go's "early tags"), which its first connection adopts. Unlike go, where only
//! a trim collects them, temporary entries expire after
//! [`early_tag_ttl`](Config::with_early_tag_ttl) (1 min) and at most
//! [`max_early_tags`](Config::with_max_early_tags) (4096) are kept, oldest dropped first.
//!
//! # Emergency trim
//!
//! [`force_trim`](ConnManager::force_trim) (go `ForceTrim`) closes down to the low watermark
//! ignoring grace: unprotected peers first, ranked with more streams first (they hold the most
//! memory); protected peers only if that is not enough. go's second pass runs on a wrong
//! condition and closes some peers twice (§2.8); here it runs exactly when the first pass fell
//! short, over peers not yet chosen.

mod decay;
mod trim;

use std::{
    collections::{BTreeMap, VecDeque},
    fmt,
    hash::Hash,
    sync::Arc,
    time::{Duration, Instant},
};

use foldhash::{HashMap, HashMapExt};
use multiaddr::Multiaddr;

pub use self::decay::{BumpFn, DecayFn, DecayingTag, DecayingValue, MAX_CATCH_UP};
use self::decay::{TagState, Ticks};
use crate::PeerId;

/// Configuration of the [`ConnManager`].
#[derive(Debug, Clone)]
pub struct Config {
    low_water: usize,
    high_water: usize,
    hard_cap: HardCap,
    grace_period: Duration,
    silence_period: Duration,
    decay_resolution: Duration,
    early_tag_ttl: Duration,
    max_early_tags: usize,
    memory_watermark: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HardCap {
    /// High watermark plus 10 %, rounded up.
    Derived,
    Fixed(usize),
    Off,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            low_water: 160,
            high_water: 192,
            hard_cap: HardCap::Derived,
            grace_period: Duration::from_secs(60),
            silence_period: Duration::from_secs(10),
            decay_resolution: Duration::from_secs(60),
            early_tag_ttl: Duration::from_secs(60),
            max_early_tags: 4096,
            memory_watermark: None,
        }
    }
}

impl Config {
    /// go-libp2p's defaults: watermarks 160/192 (`defaults.go`), grace period 1 min, silence
    /// period 10 s, decay resolution 1 min; a hard cap at the high watermark plus 10 %.
    pub fn new() -> Self {
        Self::default()
    }
    /// The low and high watermarks, in connections. 160 and 192 by default (go-libp2p). Either
    /// at 0 disables trimming and the derived hard cap, as go.
    pub fn with_watermarks(mut self, low: usize, high: usize) -> Self {
        self.low_water = low;
        self.high_water = high;
        self
    }
    /// The most connections of unprotected peers admitted; `None` for no cap. By default the
    /// high watermark plus 10 %, rounded up (Lighthouse's excess factor), so that a node over
    /// its high watermark still admits newcomers and trims later.
    pub fn with_hard_cap(mut self, cap: Option<usize>) -> Self {
        self.hard_cap = cap.map_or(HardCap::Off, HardCap::Fixed);
        self
    }
    /// How long a newly connected peer is spared from trims. 1 min by default (go).
    pub fn with_grace_period(mut self, d: Duration) -> Self {
        self.grace_period = d;
        self
    }
    /// Least time between two trims above the high watermark. 10 s by default (go).
    pub fn with_silence_period(mut self, d: Duration) -> Self {
        self.silence_period = d;
        self
    }
    /// Tick of the decayer; decaying tags' intervals are raised to it. 1 min by default (go
    /// `DefaultResolution`).
    pub fn with_decay_resolution(mut self, d: Duration) -> Self {
        self.decay_resolution = d;
        self
    }
    /// How long tags set on a peer that is not connected wait for its connection. 1 min by
    /// default.
    pub fn with_early_tag_ttl(mut self, d: Duration) -> Self {
        self.early_tag_ttl = d;
        self
    }
    /// Most peers with tags and no connection kept at once; the oldest goes first. 4096 by
    /// default.
    pub fn with_max_early_tags(mut self, n: usize) -> Self {
        self.max_early_tags = n;
        self
    }
    /// Resident memory of the process, in bytes, above which the glue runs an emergency trim
    /// ([`ConnManager::force_trim`]). `None` (off) by default: go's automatic emergency trims
    /// closed peers on false alarms (go-libp2p-connmgr GH#99) and were removed.
    pub fn with_memory_watermark(mut self, bytes: Option<usize>) -> Self {
        self.memory_watermark = bytes;
        self
    }
    /// The memory watermark, in bytes.
    pub fn memory_watermark(&self) -> Option<usize> {
        self.memory_watermark
    }
    /// The low watermark, in connections.
    pub fn low_water(&self) -> usize {
        self.low_water
    }
    /// The high watermark, in connections.
    pub fn high_water(&self) -> usize {
        self.high_water
    }
    /// The effective hard cap, in connections of unprotected peers.
    pub fn hard_cap(&self) -> Option<usize> {
        match self.hard_cap {
            HardCap::Fixed(n) => Some(n),
            HardCap::Off => None,
            HardCap::Derived if !self.trimming() => None,
            HardCap::Derived => Some(self.high_water + self.high_water.div_ceil(10)),
        }
    }
    /// The grace period.
    pub fn grace_period(&self) -> Duration {
        self.grace_period
    }
    /// The silence period.
    pub fn silence_period(&self) -> Duration {
        self.silence_period
    }
    /// The decay resolution.
    pub fn decay_resolution(&self) -> Duration {
        self.decay_resolution
    }
    /// Whether trimming is on (both watermarks above 0, as go).
    pub fn trimming(&self) -> bool {
        self.low_water > 0 && self.high_water > 0
    }

    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the setting if the low watermark is above the high one (go
    /// accepts it), the hard cap is below the high watermark, or the silence period or the
    /// decay resolution is zero (go: "silence period must be non-zero").
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |field, reason: String| Err(Error::Config { field, reason });
        if self.trimming() && self.low_water > self.high_water {
            return bad(
                "low_water",
                format!(
                    "{} is above the high watermark {}",
                    self.low_water, self.high_water
                ),
            );
        }
        if let (Some(cap), true) = (self.hard_cap(), self.trimming())
            && cap < self.high_water
        {
            return bad(
                "hard_cap",
                format!("{cap} is below the high watermark {}", self.high_water),
            );
        }
        if self.silence_period.is_zero() {
            return bad("silence_period", "must be above zero".into());
        }
        if self.decay_resolution.is_zero() {
            return bad("decay_resolution", "must be above zero".into());
        }
        Ok(())
    }

    /// Checks the high watermark against a connection limit, such as the resource manager's
    /// system connection limit (go `CheckLimit`; go-libp2p GH#1640: above the limit, trims never
    /// start because admission refuses first).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if the high watermark is above `limit`.
    pub fn check_limit(&self, limit: usize) -> Result<(), Error> {
        if self.high_water > limit {
            return Err(Error::Config {
                field: "high_water",
                reason: format!(
                    "{} is above the connection limit {limit}: trims would never start",
                    self.high_water
                ),
            });
        }
        Ok(())
    }
}

/// Errors of the connection manager.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is invalid.
    #[error("invalid connection manager setting `{field}`: {reason}")]
    Config {
        /// The setting.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A decaying tag with that name is registered (go: "decaying tag with name %s already
    /// exists").
    #[error("decaying tag with name {0} already exists")]
    DuplicateTag(String),
    /// The decaying tag was closed (go: "decaying tag %s had been closed; no further bumps are
    /// accepted").
    #[error("decaying tag {0} had been closed; no further bumps are accepted")]
    TagClosed(String),
}

/// A connection refused at admission because the hard cap is reached. Carried in libp2p's
/// `ConnectionDenied`, from which it can be downcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "connection manager hard cap reached: {connections} connections of unprotected peers, at most {limit}"
)]
pub struct HardCapReached {
    /// The hard cap.
    pub limit: usize,
    /// Connections of unprotected peers when the new one came.
    pub connections: usize,
}

/// Why a trim ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrimKind {
    /// The count exceeded the high watermark.
    Background,
    /// [`ConnManager::trim_open_conns`].
    Manual,
    /// [`ConnManager::force_trim`].
    Emergency,
}

impl TrimKind {
    /// A short name for logs and metric labels: `background`, `manual` or `emergency`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Background => "background",
            Self::Manual => "manual",
            Self::Emergency => "emergency",
        }
    }
}

impl fmt::Display for TrimKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A peer a trim chose: close all its connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Victim {
    /// The peer.
    pub peer: PeerId,
    /// Its connections when chosen.
    pub connections: usize,
    /// Its total tag value.
    pub value: i64,
    /// Whether it was protected (only an emergency trim closes those).
    pub protected: bool,
}

/// What a trim chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trim {
    /// Why it ran.
    pub kind: TrimKind,
    /// The peers to disconnect, in the order chosen.
    pub victims: Vec<Victim>,
}

/// A connection as [`TagInfo`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The remote address.
    pub remote: Multiaddr,
    /// When it was established.
    pub since: Instant,
    /// Whether the remote dialed it.
    pub inbound: bool,
    /// Open streams, as reported.
    pub streams: u32,
}

/// What the connection manager knows of a peer (go `TagInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagInfo {
    /// When the peer first connected, or was first tagged if it is not connected; the grace
    /// period runs from it.
    pub first_seen: Instant,
    /// Sum of its tags and decaying tags.
    pub value: i64,
    /// Its tags, decaying ones under their name.
    pub tags: BTreeMap<String, i64>,
    /// Its connections (go keys them by remote address, merging two with the same one).
    pub connections: Vec<ConnectionInfo>,
}

/// A summary of the connection manager (go `CMInfo`, with more counts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The low watermark.
    pub low_water: usize,
    /// The high watermark.
    pub high_water: usize,
    /// The hard cap.
    pub hard_cap: Option<usize>,
    /// The grace period.
    pub grace_period: Duration,
    /// The silence period.
    pub silence_period: Duration,
    /// Established connections, including those closing.
    pub connections: usize,
    /// Connections a trim chose that have not closed yet.
    pub closing: usize,
    /// Connected peers.
    pub peers: usize,
    /// Protected peers, connected or not.
    pub protected_peers: usize,
    /// Connected peers still in their grace period.
    pub peers_in_grace: usize,
    /// When the last trim ran.
    pub last_trim: Option<Instant>,
}

#[derive(Debug, Clone)]
struct Connection<C> {
    id: C,
    since: Instant,
    inbound: bool,
    remote: Multiaddr,
    streams: u32,
    /// Chosen by a trim, not yet closed.
    closing: bool,
}

/// What a trim reads of a peer. Kept apart from the rest of its entry, in a dense array
/// (`ConnManager::hot`), so that a trim walks 48 bytes a peer instead of the whole entry with
/// its 80-byte peer ID (issue 15: trimming 100,000 connections to 90,000 in at most 5 ms).
#[derive(Debug, Clone, Copy)]
struct Hot {
    /// Nanoseconds from the manager's start (the decayer's epoch) to the peer's first
    /// connection, or to the creation of its temporary entry: a trim compares integers.
    first_seen: u64,
    /// Cached sum of the peer's tags and decaying values.
    value: i64,
    /// Aggregates of the connections not closing, so that ranking a peer reads nothing else.
    live: Live,
    /// Breaks ties between peers of the same rank without reading their peer IDs (see
    /// [`tie`]).
    tie: u64,
    /// A temporary entry: tags set before any connection.
    temp: bool,
    /// Whether the peer is in `ConnManager::protected` (kept here so that trims need no
    /// lookup per peer).
    protected: bool,
    /// A trim chose the peer: its connections are closing but not yet marked so (see
    /// [`settle`]). A trim thus touches only this array, not the victims' connections.
    chosen: bool,
}

/// The rest of a peer's entry, at the same index as its [`Hot`].
#[derive(Debug, Clone)]
struct Peer<C> {
    id: PeerId,
    tags: HashMap<String, i64>,
    decaying: Vec<(u64, DecayingValue)>,
    /// Empty for a temporary entry.
    connections: Vec<Connection<C>>,
}

/// Sums over a peer's connections that no trim chose yet.
#[derive(Debug, Clone, Copy, Default)]
struct Live {
    connections: u32,
    inbound: u32,
    streams: i64,
}

impl Hot {
    fn new(peer: &PeerId, first_seen: u64, protected: bool, temp: bool) -> Self {
        Self {
            first_seen,
            value: 0,
            live: Live::default(),
            tie: tie(peer),
            temp,
            protected,
            chosen: false,
        }
    }
}

/// Marks closing the connections of a peer a trim chose, before its connections are read or
/// changed. No connection is added to a chosen peer before this, so the connections it marks
/// are those the trim chose.
fn settle<C>(hot: &mut Hot, peer: &mut Peer<C>) {
    if std::mem::take(&mut hot.chosen) {
        for c in &mut peer.connections {
            c.closing = true;
        }
    }
}

/// A peer ID's tie-break: the last 8 bytes of its multihash digest (a hash, or the end of a
/// public key), so that peers of the same rank are ordered by a function of their IDs alone and
/// a simulation replays exactly, whatever the map's iteration order.
fn tie(peer: &PeerId) -> u64 {
    let digest = peer.as_ref().digest();
    let mut bytes = [0; 8];
    let n = digest.len().min(8);
    bytes[8 - n..].copy_from_slice(&digest[digest.len() - n..]);
    u64::from_be_bytes(bytes)
}

/// Sets a tag on a peer, keeping its cached value.
fn set_tag<C>(hot: &mut Hot, peer: &mut Peer<C>, tag: &str, value: i64) {
    let old = match peer.tags.get_mut(tag) {
        Some(v) => std::mem::replace(v, value),
        None => {
            peer.tags.insert(tag.to_owned(), value);
            0
        }
    };
    hot.value = hot.value.saturating_sub(old).saturating_add(value);
}

/// The connection manager's state: peers with their tags and connections, protection, decaying
/// tags, and the trim schedule. `C` identifies a connection (libp2p's `ConnectionId` in the
/// glue).
///
/// Every method that takes `now` first applies what fell due by then (decay visits, expiry of
/// temporary entries), so `now` must not go backwards.
#[derive(Debug, Clone)]
pub struct ConnManager<C = u64> {
    config: Config,
    /// Each known peer's index in `hot` and `peers`.
    index: HashMap<PeerId, usize>,
    /// What a trim reads of each peer, densely.
    hot: Vec<Hot>,
    /// The rest of each peer's entry.
    peers: Vec<Peer<C>>,
    protected: HashMap<PeerId, Vec<String>>,
    /// Established connections.
    connections: usize,
    /// Connections chosen by a trim, not yet closed.
    closing: usize,
    /// Connections of protected peers.
    protected_connections: usize,
    /// Temporary entries in creation order (stale ones are skipped when popped).
    temp_order: VecDeque<(Instant, PeerId)>,
    temp_count: usize,
    tags: HashMap<u64, TagState>,
    tag_names: HashMap<Arc<str>, u64>,
    next_tag: u64,
    ticks: Ticks,
    last_trim: Option<Instant>,
    /// When a background trim may next run while the count is above the high watermark.
    next_background: Option<Instant>,
}

impl<C: Copy + Eq + Hash + fmt::Debug> ConnManager<C> {
    /// A connection manager started at `now` (the decayer ticks from it).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if the configuration is invalid (see [`Config::validate`]).
    pub fn new(config: Config, now: Instant) -> Result<Self, Error> {
        config.validate()?;
        let ticks = Ticks {
            epoch: now,
            resolution: config.decay_resolution,
        };
        Ok(Self {
            config,
            index: HashMap::new(),
            hot: Vec::new(),
            peers: Vec::new(),
            protected: HashMap::new(),
            connections: 0,
            closing: 0,
            protected_connections: 0,
            temp_order: VecDeque::new(),
            temp_count: 0,
            tags: HashMap::new(),
            tag_names: HashMap::new(),
            next_tag: 0,
            ticks,
            last_trim: None,
            next_background: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Established connections, including those a trim chose that have not closed yet.
    pub fn connections(&self) -> usize {
        self.connections
    }

    /// Connected peers.
    pub fn connected_peers(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.hot
            .iter()
            .zip(&self.peers)
            .filter(|(h, _)| !h.temp)
            .map(|(_, p)| p.id)
    }

    /// Sets a tag's value on a peer (go `TagPeer`). An unknown peer gets a temporary entry that
    /// its first connection adopts.
    pub fn tag_peer(&mut self, peer: PeerId, tag: &str, value: i64, now: Instant) {
        self.advance(now);
        let i = self.entry(peer, now);
        set_tag(&mut self.hot[i], &mut self.peers[i], tag, value);
    }

    /// Removes a tag from a peer (go `UntagPeer`). Nothing happens for an unknown peer or tag.
    pub fn untag_peer(&mut self, peer: &PeerId, tag: &str) {
        if let Some(&i) = self.index.get(peer)
            && let Some(old) = self.peers[i].tags.remove(tag)
        {
            let hot = &mut self.hot[i];
            hot.value = hot.value.saturating_sub(old);
        }
    }

    /// Sets a tag to `upsert(current)`, the current value being 0 if the tag is not set (go
    /// `UpsertTag`). An unknown peer gets a temporary entry, as [`tag_peer`](Self::tag_peer).
    pub fn upsert_tag(
        &mut self,
        peer: PeerId,
        tag: &str,
        upsert: impl FnOnce(i64) -> i64,
        now: Instant,
    ) {
        self.advance(now);
        let i = self.entry(peer, now);
        let p = &mut self.peers[i];
        let value = upsert(p.tags.get(tag).copied().unwrap_or(0));
        set_tag(&mut self.hot[i], p, tag, value);
    }

    /// The total value of a peer's tags, decaying ones included; 0 for an unknown peer.
    /// [`ConnManager::tag_info`]'s `value`, without copying the tags and connections (the
    /// eviction of an inbound peer asks it of every inbound peer).
    pub fn tag_value(&self, peer: &PeerId) -> i64 {
        self.index.get(peer).map_or(0, |&i| self.hot[i].value)
    }

    /// Each of `peers`' [`tag_value`](Self::tag_value) and whether it is protected under any
    /// tag, in order: what the node machine's inbound eviction weighs
    /// (`node::ConnectionManager::standing`).
    pub fn standing(&self, peers: &[PeerId]) -> Vec<(i64, bool)> {
        peers
            .iter()
            .map(|p| (self.tag_value(p), self.is_protected(p, "")))
            .collect()
    }

    /// What is known of a peer: first seen, total value, tags (decaying ones under their name)
    /// and connections; `None` for an unknown peer (go `GetTagInfo`).
    pub fn tag_info(&self, peer: &PeerId) -> Option<TagInfo> {
        let i = *self.index.get(peer)?;
        let (hot, p) = (&self.hot[i], &self.peers[i]);
        let mut tags: BTreeMap<String, i64> = p.tags.iter().map(|(k, v)| (k.clone(), *v)).collect();
        for (id, v) in &p.decaying {
            if let Some(tag) = self.tags.get(id) {
                tags.insert(tag.name.to_string(), v.value);
            }
        }
        Some(TagInfo {
            first_seen: self.ticks.epoch + Duration::from_nanos(hot.first_seen),
            value: hot.value,
            tags,
            connections: p
                .connections
                .iter()
                .map(|c| ConnectionInfo {
                    remote: c.remote.clone(),
                    since: c.since,
                    inbound: c.inbound,
                    streams: c.streams,
                })
                .collect(),
        })
    }

    /// Protects a peer under `tag`: no trim closes it, except an emergency one when
    /// unprotected peers are not enough, and the hard cap does not apply to it. Idempotent, not
    /// reference-counted, valid for peers not connected (go `Protect`).
    pub fn protect(&mut self, peer: PeerId, tag: &str) {
        let tags = self.protected.entry(peer).or_default();
        if tags.is_empty()
            && let Some(&i) = self.index.get(&peer)
        {
            self.hot[i].protected = true;
            self.protected_connections += self.peers[i].connections.len();
        }
        if !tags.iter().any(|t| t == tag) {
            tags.push(tag.to_owned());
        }
    }

    /// Removes one protection tag; returns whether the peer is still protected under another
    /// (go `Unprotect`).
    pub fn unprotect(&mut self, peer: &PeerId, tag: &str) -> bool {
        let Some(tags) = self.protected.get_mut(peer) else {
            return false;
        };
        tags.retain(|t| t != tag);
        if !tags.is_empty() {
            return true;
        }
        self.protected.remove(peer);
        if let Some(&i) = self.index.get(peer) {
            self.hot[i].protected = false;
            self.protected_connections -= self.peers[i].connections.len();
        }
        false
    }

    /// Whether the peer is protected under `tag`, or under any tag if `tag` is empty (go
    /// `IsProtected`).
    pub fn is_protected(&self, peer: &PeerId, tag: &str) -> bool {
        self.protected
            .get(peer)
            .is_some_and(|tags| tag.is_empty() || tags.iter().any(|t| t == tag))
    }

    /// The protected peers and their protection tags.
    pub fn protected_peers(&self) -> impl Iterator<Item = (&PeerId, &[String])> {
        self.protected.iter().map(|(p, t)| (p, t.as_slice()))
    }

    /// Whether a new connection of `peer` may be established: always for a protected peer,
    /// otherwise while the connections of unprotected peers are under the hard cap.
    ///
    /// # Errors
    ///
    /// [`HardCapReached`] when the cap is reached.
    pub fn admit(&self, peer: &PeerId) -> Result<(), HardCapReached> {
        let Some(limit) = self.config.hard_cap() else {
            return Ok(());
        };
        let connections = self.connections - self.protected_connections;
        if connections >= limit && !self.is_protected(peer, "") {
            return Err(HardCapReached { limit, connections });
        }
        Ok(())
    }

    /// Counts an established connection. Returns `false`, changing nothing, if it is already
    /// counted (go's `TestDoubleConnection`). The first connection of a peer starts its grace
    /// period, also for a peer tagged before.
    pub fn connection_established(
        &mut self,
        peer: PeerId,
        id: C,
        inbound: bool,
        remote: Multiaddr,
        now: Instant,
    ) -> bool {
        self.advance(now);
        let protected = self.protected.contains_key(&peer);
        let nanos = self.nanos(now);
        let i = match self.index.get(&peer) {
            Some(&i) if self.peers[i].connections.iter().any(|c| c.id == id) => return false,
            Some(&i) => {
                let hot = &mut self.hot[i];
                if hot.temp {
                    self.temp_count -= 1;
                    hot.temp = false;
                    hot.first_seen = nanos;
                }
                i
            }
            None => self.insert(peer, Hot::new(&peer, nanos, protected, false)),
        };
        let (hot, p) = (&mut self.hot[i], &mut self.peers[i]);
        settle(hot, p);
        p.connections.push(Connection {
            id,
            since: now,
            inbound,
            remote,
            streams: 0,
            closing: false,
        });
        hot.live.connections += 1;
        hot.live.inbound += u32::from(inbound);
        self.connections += 1;
        if protected {
            self.protected_connections += 1;
        }
        true
    }

    /// Uncounts a closed connection. Returns `false`, changing nothing, for an unknown one.
    /// When a peer's last connection closes, its tags and decaying values go (see the module
    /// docs); its protection stays.
    pub fn connection_closed(&mut self, peer: &PeerId, id: C) -> bool {
        let Some(&i) = self.index.get(peer) else {
            return false;
        };
        let (hot, p) = (&mut self.hot[i], &mut self.peers[i]);
        settle(hot, p);
        let Some(c) = p.connections.iter().position(|c| c.id == id) else {
            return false;
        };
        let conn = p.connections.swap_remove(c);
        if !conn.closing {
            hot.live.connections -= 1;
            hot.live.inbound -= u32::from(conn.inbound);
            hot.live.streams -= i64::from(conn.streams);
        }
        let last = p.connections.is_empty();
        self.connections -= 1;
        if conn.closing {
            self.closing -= 1;
        }
        if self.protected.contains_key(peer) {
            self.protected_connections -= 1;
        }
        if last {
            self.remove_entry(peer, false);
        }
        true
    }

    /// Reports the number of open streams on a connection, for the ranking's stream rules.
    pub fn set_streams(&mut self, peer: &PeerId, id: C, streams: u32) {
        let Some(&i) = self.index.get(peer) else {
            return;
        };
        let (hot, p) = (&mut self.hot[i], &mut self.peers[i]);
        settle(hot, p);
        if let Some(c) = p.connections.iter_mut().find(|c| c.id == id) {
            if !c.closing {
                hot.live.streams += i64::from(streams) - i64::from(c.streams);
            }
            c.streams = streams;
        }
    }

    /// Registers a decaying tag (go `RegisterDecayingTag`). Its first visit is one interval
    /// after the last decayer tick; an interval below the decay resolution is raised to it.
    ///
    /// # Errors
    ///
    /// [`Error::DuplicateTag`] if a tag of that name is registered and not closed.
    pub fn register_decaying_tag(
        &mut self,
        name: &str,
        interval: Duration,
        decay: DecayFn,
        bump: BumpFn,
        now: Instant,
    ) -> Result<DecayingTag, Error> {
        self.advance(now);
        if self.tag_names.contains_key(name) {
            return Err(Error::DuplicateTag(name.to_owned()));
        }
        let interval = interval.max(self.ticks.resolution);
        let name: Arc<str> = name.into();
        let id = self.next_tag;
        self.next_tag += 1;
        let next_due = self.ticks.floor(self.ticks.offset(now)) + interval;
        self.tags.insert(
            id,
            TagState {
                name: name.clone(),
                interval,
                next_due,
                decay,
                bump,
                peers: Default::default(),
            },
        );
        self.tag_names.insert(name.clone(), id);
        Ok(DecayingTag { id, name, interval })
    }

    /// Bumps a peer's value under a decaying tag with its bump function; a new value starts at
    /// 0. An unknown peer gets a temporary entry, as [`tag_peer`](Self::tag_peer).
    ///
    /// # Errors
    ///
    /// [`Error::TagClosed`] if the tag was closed.
    pub fn bump(
        &mut self,
        tag: &DecayingTag,
        peer: PeerId,
        delta: i64,
        now: Instant,
    ) -> Result<(), Error> {
        self.advance(now);
        if !self.tags.contains_key(&tag.id) {
            return Err(Error::TagClosed(tag.name.to_string()));
        }
        let slot = self.entry(peer, now);
        let (hot, p) = (&mut self.hot[slot], &mut self.peers[slot]);
        let i = match p.decaying.iter().position(|(id, _)| *id == tag.id) {
            Some(i) => i,
            None => {
                p.decaying.push((
                    tag.id,
                    DecayingValue {
                        peer,
                        added: now,
                        last_visit: now,
                        last_bump: now,
                        value: 0,
                    },
                ));
                p.decaying.len() - 1
            }
        };
        let state = self.tags.get_mut(&tag.id).expect("checked above");
        let v = &mut p.decaying[i].1;
        let new = state.bump.apply(v, delta);
        hot.value = hot.value.saturating_sub(v.value).saturating_add(new);
        v.value = new;
        v.last_bump = now;
        state.peers.insert(peer);
        Ok(())
    }

    /// Removes a peer's value under a decaying tag. Removing an absent value does nothing.
    ///
    /// # Errors
    ///
    /// [`Error::TagClosed`] if the tag was closed.
    pub fn remove_decaying(
        &mut self,
        tag: &DecayingTag,
        peer: &PeerId,
        now: Instant,
    ) -> Result<(), Error> {
        self.advance(now);
        let Some(state) = self.tags.get_mut(&tag.id) else {
            return Err(Error::TagClosed(tag.name.to_string()));
        };
        state.peers.remove(peer);
        self.remove_decaying_value(peer, tag.id);
        Ok(())
    }

    /// Closes a decaying tag: its values are removed from every peer, and its name can be
    /// registered again. Closing a closed tag does nothing (go logs a warning).
    pub fn close_decaying_tag(&mut self, tag: &DecayingTag, now: Instant) {
        self.advance(now);
        let Some(state) = self.tags.remove(&tag.id) else {
            return;
        };
        self.tag_names.remove(&state.name);
        for peer in &state.peers {
            self.remove_decaying_value(peer, tag.id);
        }
    }

    /// Applies what fell due by `now` (decay, expiry of temporary entries), then trims if the
    /// count exceeds the high watermark and the silence period since the last trim has passed.
    /// Call it at [`poll_timeout`](Self::poll_timeout) and after connections are established.
    pub fn poll(&mut self, now: Instant) -> Option<Trim> {
        self.advance(now);
        let due = self.background_trim_due()?;
        (due <= now).then(|| self.run_trim(TrimKind::Background, now))
    }

    /// Trims down to the low watermark now, whatever the count and the silence period (go
    /// `TrimOpenConns`).
    pub fn trim_open_conns(&mut self, now: Instant) -> Trim {
        self.advance(now);
        self.run_trim(TrimKind::Manual, now)
    }

    /// Trims down to the low watermark ignoring grace periods, protected peers last (go
    /// `ForceTrim`, without its second-pass bug). For a process short of memory.
    pub fn force_trim(&mut self, now: Instant) -> Trim {
        self.advance(now);
        self.run_trim(TrimKind::Emergency, now)
    }

    /// When [`poll`](Self::poll) next has work: a decay visit of a tag holding values, the
    /// expiry of a temporary entry, or a trim above the high watermark.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let decay = self.tags.values().filter_map(|t| t.next_visit(&self.ticks));
        let temp = self
            .temp_order
            .front()
            .map(|(t, _)| *t + self.config.early_tag_ttl);
        decay.chain(temp).chain(self.background_trim_due()).min()
    }

    /// A summary, with peers in grace counted at `now`.
    pub fn info(&self, now: Instant) -> Info {
        let connected = self.hot.iter().filter(|h| !h.temp);
        let now = self.nanos(now);
        let (peers, in_grace) = connected.fold((0, 0), |(n, g), h| {
            (n + 1, g + usize::from(self.in_grace(h, now)))
        });
        Info {
            low_water: self.config.low_water,
            high_water: self.config.high_water,
            hard_cap: self.config.hard_cap(),
            grace_period: self.config.grace_period,
            silence_period: self.config.silence_period,
            connections: self.connections,
            closing: self.closing,
            peers,
            protected_peers: self.protected.len(),
            peers_in_grace: in_grace,
            last_trim: self.last_trim,
        }
    }

    /// Whether a peer is in its grace period at `now`, in nanoseconds from the manager's
    /// start (see [`nanos`](Self::nanos)).
    fn in_grace(&self, hot: &Hot, now: u64) -> bool {
        Duration::from_nanos(now.saturating_sub(hot.first_seen)) < self.config.grace_period
    }

    /// An instant in nanoseconds from the manager's start (the decayer's epoch), as `Hot`
    /// keeps it; an instant before the start is 0.
    fn nanos(&self, t: Instant) -> u64 {
        let since = t.saturating_duration_since(self.ticks.epoch);
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    }

    /// When a background trim is due: while the count exceeds the high watermark, at once if
    /// no trim ran yet, else when `next_background` says (see `run_trim`).
    fn background_trim_due(&self) -> Option<Instant> {
        let over =
            self.config.trimming() && self.connections - self.closing > self.config.high_water;
        over.then(|| self.next_background.unwrap_or(self.ticks.epoch))
    }

    /// The index of the peer's entry, created temporary if unknown (go `tagInfoFor`).
    fn entry(&mut self, peer: PeerId, now: Instant) -> usize {
        if let Some(&i) = self.index.get(&peer) {
            return i;
        }
        while self.temp_count >= self.config.max_early_tags.max(1) {
            let Some((created, old)) = self.temp_order.pop_front() else {
                break;
            };
            self.remove_temp_if_current(&old, created);
        }
        self.temp_order.push_back((now, peer));
        self.temp_count += 1;
        let protected = self.protected.contains_key(&peer);
        let hot = Hot::new(&peer, self.nanos(now), protected, true);
        self.insert(peer, hot)
    }

    /// Adds an entry for a peer not in the table; returns its index.
    fn insert(&mut self, peer: PeerId, hot: Hot) -> usize {
        let i = self.peers.len();
        self.index.insert(peer, i);
        self.hot.push(hot);
        self.peers.push(Peer {
            id: peer,
            tags: HashMap::new(),
            decaying: Vec::new(),
            connections: Vec::new(),
        });
        i
    }

    /// Removes the temporary entry of `peer` created at `created`, if it is still that one.
    fn remove_temp_if_current(&mut self, peer: &PeerId, created: Instant) {
        let created = self.nanos(created);
        if self
            .index
            .get(peer)
            .is_some_and(|&i| self.hot[i].temp && self.hot[i].first_seen == created)
        {
            self.remove_entry(peer, true);
        }
    }

    /// Removes a peer's entry; `temp` says whether it is a temporary one (a peer whose last
    /// connection just closed has none left, but was not). The last entry takes its index.
    fn remove_entry(&mut self, peer: &PeerId, temp: bool) {
        let Some(i) = self.index.remove(peer) else {
            return;
        };
        self.hot.swap_remove(i);
        let p = self.peers.swap_remove(i);
        if let Some(moved) = self.peers.get(i) {
            self.index.insert(moved.id, i);
        }
        if temp {
            self.temp_count -= 1;
        }
        for (id, _) in &p.decaying {
            if let Some(tag) = self.tags.get_mut(id) {
                tag.peers.remove(peer);
            }
        }
    }

    /// Removes a peer's value under the decaying tag `tag`, if it has one.
    fn remove_decaying_value(&mut self, peer: &PeerId, tag: u64) {
        if let Some(&slot) = self.index.get(peer) {
            let p = &mut self.peers[slot];
            if let Some(i) = p.decaying.iter().position(|(id, _)| *id == tag) {
                let (_, v) = p.decaying.swap_remove(i);
                let hot = &mut self.hot[slot];
                hot.value = hot.value.saturating_sub(v.value);
            }
        }
    }

    /// Applies the decay visits and the expiries due at `now`.
    fn advance(&mut self, now: Instant) {
        let Self {
            tags,
            index,
            hot,
            peers,
            ticks,
            ..
        } = self;
        for (id, tag) in tags.iter_mut() {
            let visits = tag.take_visits(ticks, now);
            if visits.is_empty() {
                continue;
            }
            let decay = tag.decay.clone();
            tag.peers.retain(|peer| {
                let Some(&slot) = index.get(peer) else {
                    return false;
                };
                let (h, p) = (&mut hot[slot], &mut peers[slot]);
                let Some(i) = p.decaying.iter().position(|(t, _)| t == id) else {
                    return false;
                };
                for at in &visits {
                    let v = &mut p.decaying[i].1;
                    match decay.apply(v, *at) {
                        Some(new) => {
                            h.value = h.value.saturating_sub(v.value).saturating_add(new);
                            v.value = new;
                            v.last_visit = *at;
                        }
                        None => {
                            let (_, v) = p.decaying.swap_remove(i);
                            h.value = h.value.saturating_sub(v.value);
                            return false;
                        }
                    }
                }
                true
            });
        }
        while let Some((created, peer)) = self.temp_order.front().copied() {
            if created + self.config.early_tag_ttl > now {
                break;
            }
            self.temp_order.pop_front();
            self.remove_temp_if_current(&peer, created);
        }
    }
}

#[cfg(test)]
mod tests;
