//! The connection manager on a swarm: a [`Handle`] applications call from anywhere, and a
//! [`Behaviour`] that admits connections under the hard cap and closes the peers trims choose.
//!
//! The rules (watermarks, grace and silence periods, ranking, decaying tags, emergency trims)
//! are those of [`peerage_core::connmgr`], go-libp2p's `BasicConnMgr` with a hard cap; read its
//! docs for the counting unit and what a trim leaves.
//!
//! ```no_run
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use peerage::connmgr::{self, BumpFn, DecayFn};
//!
//! let behaviour = connmgr::Behaviour::new(connmgr::Config::new().with_watermarks(32, 96))?;
//! let handle = behaviour.handle(); // Clone + Send + Sync: give it to every part of the app
//! let peer = peerage::PeerId::random();
//! handle.tag_peer(&peer, "dht", 10);
//! handle.protect(&peer, "relay");
//! let deliveries = handle.register_decaying_tag(
//!     "pubsub-deliveries",
//!     Duration::from_secs(60),
//!     DecayFn::fixed(1),
//!     BumpFn::sum_bounded(0, 100),
//! )?;
//! deliveries.bump(&peer, 5)?;
//! // Compose `behaviour` into the swarm's behaviour, e.g. with #[derive(NetworkBehaviour)].
//! # Ok(()) }
//! ```

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    future::Future,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll, Waker},
    time::{Duration, Instant, SystemTime},
};

use futures::{FutureExt, channel::oneshot};
use libp2p::{
    Multiaddr, PeerId,
    core::{Endpoint, transport::PortUse},
    swarm::{
        CloseConnection, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler,
        THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
    },
};
pub use peerage_core::connmgr::{
    BumpFn, Config, ConnectionInfo, DecayFn, DecayingValue, Error, HardCapReached, Info, TagInfo,
    Trim, TrimKind, Victim,
};
use peerage_core::connmgr::{ConnManager, DecayingTag as CoreTag};

use crate::timer::Timer;

/// How often the process's memory is sampled when a memory watermark is set.
const MEMORY_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Events of the connection manager [`Behaviour`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A trim chose peers; their connections are being closed.
    Trimmed(Trim),
}

/// Counters of what the connection manager [`Behaviour`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Trims run, of every kind (including those that closed nothing).
    pub trims: u64,
    /// Peers closed by trims.
    pub pruned_peers: u64,
    /// Connections denied at the hard cap.
    pub denied_connections: u64,
}

/// What `register_metrics` reports beside the core's state.
#[derive(Debug, Default, Clone, Copy)]
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
struct Counts {
    trims: [u64; 3],
    pruned: [u64; 3],
    denied: u64,
    last_trim: Option<SystemTime>,
}

#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
fn kind_index(kind: TrimKind) -> usize {
    match kind {
        TrimKind::Background => 0,
        TrimKind::Manual => 1,
        TrimKind::Emergency => 2,
    }
}

#[cfg(feature = "metrics")]
const KINDS: [TrimKind; 3] = [TrimKind::Background, TrimKind::Manual, TrimKind::Emergency];

struct State {
    core: ConnManager<ConnectionId>,
    /// Callers of `trim_open_conns` waiting for the next trim.
    trim_waiters: Vec<oneshot::Sender<()>>,
    /// A `force_trim` waits to be run by the behaviour.
    force_requested: bool,
    counts: Counts,
    waker: Option<Waker>,
    /// The behaviour is gone: trims are no longer run.
    detached: bool,
}

impl State {
    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// A shared handle on the connection manager: `Clone + Send + Sync`, callable from any task or
/// thread (go's `ConnManager` interface). Calls take a short lock; none is held across an
/// `.await`. Changes that need the swarm (closing connections) are carried out by the
/// [`Behaviour`], which the handle wakes.
#[derive(Clone)]
pub struct Handle {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

impl Handle {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent counters (every update is a few
        // plain writes), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets a tag's value on a peer (go `TagPeer`); see [`ConnManager::tag_peer`].
    pub fn tag_peer(&self, peer: &PeerId, tag: &str, value: i64) {
        let mut s = self.lock();
        s.core.tag_peer(*peer, tag, value, Instant::now());
        s.wake();
    }

    /// Removes a tag from a peer (go `UntagPeer`).
    pub fn untag_peer(&self, peer: &PeerId, tag: &str) {
        self.lock().core.untag_peer(peer, tag);
    }

    /// Sets a tag to `upsert(current)`, 0 if unset (go `UpsertTag`).
    pub fn upsert_tag(&self, peer: &PeerId, tag: &str, upsert: impl FnOnce(i64) -> i64) {
        let mut s = self.lock();
        s.core.upsert_tag(*peer, tag, upsert, Instant::now());
        s.wake();
    }

    /// What is known of a peer, `None` if nothing (go `GetTagInfo`).
    pub fn tag_info(&self, peer: &PeerId) -> Option<TagInfo> {
        self.lock().core.tag_info(peer)
    }

    /// Protects a peer under `tag` (go `Protect`): spared by trims and exempt from the hard cap.
    pub fn protect(&self, peer: &PeerId, tag: &str) {
        self.lock().core.protect(*peer, tag);
    }

    /// Removes a protection tag; returns whether another still protects the peer (go
    /// `Unprotect`).
    pub fn unprotect(&self, peer: &PeerId, tag: &str) -> bool {
        let mut s = self.lock();
        let still = s.core.unprotect(peer, tag);
        s.wake();
        still
    }

    /// Reports the open streams of a connection, for trimming: among peers of equal value, those
    /// with fewer streams are closed first (go `connmgr`). `peerage::Behaviour` reports them
    /// from the muxer's counts (`rcmgr::Muxer`, with the `rcmgr` feature).
    pub fn set_streams(&self, peer: &PeerId, id: ConnectionId, streams: u32) {
        self.lock().core.set_streams(peer, id, streams);
    }

    /// Whether the peer is protected under `tag`, or any tag if empty (go `IsProtected`).
    pub fn is_protected(&self, peer: &PeerId, tag: &str) -> bool {
        self.lock().core.is_protected(peer, tag)
    }

    /// The protected peers and their tags.
    pub fn protected_peers(&self) -> Vec<(PeerId, Vec<String>)> {
        let s = self.lock();
        s.core
            .protected_peers()
            .map(|(p, t)| (*p, t.to_vec()))
            .collect()
    }

    /// Registers a decaying tag (go `RegisterDecayingTag`).
    ///
    /// # Errors
    ///
    /// [`Error::DuplicateTag`] if the name is taken.
    pub fn register_decaying_tag(
        &self,
        name: &str,
        interval: Duration,
        decay: DecayFn,
        bump: BumpFn,
    ) -> Result<DecayingTag, Error> {
        let mut s = self.lock();
        let tag = s
            .core
            .register_decaying_tag(name, interval, decay, bump, Instant::now())?;
        Ok(DecayingTag {
            tag,
            handle: self.clone(),
        })
    }

    /// Trims down to the low watermark (go `TrimOpenConns`). Single-flight: calls made while a
    /// trim waits to run join it. Resolves once the behaviour has chosen the victims and asked
    /// the swarm to close them, or at once if the behaviour is gone.
    pub fn trim_open_conns(&self) -> impl Future<Output = ()> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let mut s = self.lock();
        if !s.detached {
            s.trim_waiters.push(tx);
            s.wake();
        }
        rx.map(|_| ())
    }

    /// Asks for an emergency trim (go `ForceTrim`): down to the low watermark, ignoring grace
    /// periods, protected peers last. Runs at the behaviour's next poll.
    pub fn force_trim(&self) {
        let mut s = self.lock();
        s.force_requested = true;
        s.wake();
    }

    /// `peers` in the order a trim closes them, protected peers left out; see
    /// [`ConnManager::close_order`].
    pub fn close_order(&self, peers: &[PeerId], now: Instant) -> Vec<PeerId> {
        self.lock().core.close_order(peers, now)
    }

    /// The total value of a peer's tags, 0 if unknown.
    pub fn tag_value(&self, peer: &PeerId) -> i64 {
        self.lock().core.tag_value(peer)
    }

    /// Whether one more connection of `peer` fits under the hard cap (protected peers are
    /// exempt); a refusal is counted in [`Stats::denied_connections`].
    ///
    /// # Errors
    ///
    /// [`HardCapReached`] when the cap is reached.
    pub fn admit(&self, peer: &PeerId) -> Result<(), HardCapReached> {
        let mut s = self.lock();
        s.core.admit(peer).inspect_err(|e| {
            s.counts.denied += 1;
            tracing::debug!(%peer, "connection denied: {e}");
        })
    }

    /// What the behaviour did: trims run and peers closed by kind, connections denied.
    pub fn stats(&self) -> Stats {
        let c = self.lock().counts;
        Stats {
            trims: c.trims.iter().sum(),
            pruned_peers: c.pruned.iter().sum(),
            denied_connections: c.denied,
        }
    }

    /// A summary (go `GetInfo`).
    pub fn info(&self) -> Info {
        self.lock().core.info(Instant::now())
    }

    /// The configuration.
    pub fn config(&self) -> Config {
        self.lock().core.config().clone()
    }

    /// Registers the connection manager's metrics, computed at each scrape:
    /// `connections`, `closing_connections`, `peers`, `protected_peers`, `peers_in_grace`,
    /// `low_water`, `high_water`, `hard_cap`, `last_trim_timestamp_seconds`, and the counters
    /// `trims_total{kind}`, `pruned_peers_total{kind}` and `denied_connections_total`. Register
    /// them under a prefix such as `libp2p_connmgr` (nim-libp2p's names). With the `metrics`
    /// feature.
    #[cfg(feature = "metrics")]
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register_collector(Box::new(metrics::Collector(self.clone())));
    }
}

/// A decaying tag (go `DecayingTag`), bound to its connection manager.
#[derive(Debug, Clone)]
pub struct DecayingTag {
    tag: CoreTag,
    handle: Handle,
}

impl DecayingTag {
    /// The tag's name.
    pub fn name(&self) -> &str {
        self.tag.name()
    }
    /// The effective interval (raised to the decay resolution if it was shorter).
    pub fn interval(&self) -> Duration {
        self.tag.interval()
    }
    /// Bumps a peer's value with the tag's bump function.
    ///
    /// # Errors
    ///
    /// [`Error::TagClosed`] after [`close`](Self::close).
    pub fn bump(&self, peer: &PeerId, delta: i64) -> Result<(), Error> {
        let mut s = self.handle.lock();
        s.core.bump(&self.tag, *peer, delta, Instant::now())?;
        s.wake();
        Ok(())
    }
    /// Removes a peer's value.
    ///
    /// # Errors
    ///
    /// [`Error::TagClosed`] after [`close`](Self::close).
    pub fn remove(&self, peer: &PeerId) -> Result<(), Error> {
        let mut s = self.handle.lock();
        s.core.remove_decaying(&self.tag, peer, Instant::now())
    }
    /// Closes the tag: every peer's value goes; later bumps fail. Closing twice does nothing.
    pub fn close(&self) {
        let mut s = self.handle.lock();
        s.core.close_decaying_tag(&self.tag, Instant::now());
    }
}

/// The connection manager as a `NetworkBehaviour`: it denies established connections over the
/// hard cap (with [`HardCapReached`], downcastable from the `ConnectionDenied`), counts
/// connections on [`FromSwarm::ConnectionEstablished`] and [`FromSwarm::ConnectionClosed`] only
/// (a sibling behaviour may still deny a connection it admitted), runs trims and closes their
/// victims with [`ToSwarm::CloseConnection`], logging each with its reason.
///
/// With a memory watermark ([`Config::with_memory_watermark`]), the process's resident memory is
/// sampled every second (as libp2p-memory-connection-limits reads it); above the watermark an
/// emergency trim runs, at most once per silence period.
pub struct Behaviour {
    handle: Handle,
    events: VecDeque<ToSwarm<Event, THandlerInEvent<Self>>>,
    timer: Timer,
    next_memory_sample: Option<Instant>,
    last_emergency: Option<Instant>,
    /// Connections left out ([`Behaviour::exclude`]): what counting one needs, once it is
    /// established.
    excluded: HashMap<ConnectionId, Option<Excluded>>,
    /// Whether this behaviour checks the hard cap itself; `false` inside Peerage's
    /// behaviour, whose node machine checks it in its admission order.
    admits: bool,
}

/// An established connection left out of the count.
struct Excluded {
    peer: PeerId,
    inbound: bool,
    remote: Multiaddr,
}

impl Behaviour {
    /// A connection manager with `config`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if the configuration is invalid.
    pub fn new(config: Config) -> Result<Self, Error> {
        let now = Instant::now();
        let memory = config.memory_watermark().is_some();
        let core = ConnManager::new(config, now)?;
        Ok(Self {
            handle: Handle {
                state: Arc::new(Mutex::new(State {
                    core,
                    trim_waiters: Vec::new(),
                    force_requested: false,
                    counts: Counts::default(),
                    waker: None,
                    detached: false,
                })),
            },
            events: VecDeque::new(),
            timer: Timer::default(),
            next_memory_sample: memory.then_some(now),
            last_emergency: None,
            excluded: HashMap::new(),
            admits: true,
        })
    }

    /// Leaves the hard-cap check to the caller, which admits connections through the shared
    /// [`Handle`] (as `peerage::Behaviour`'s node machine does); this behaviour then only counts
    /// and trims.
    pub(crate) fn admitted_elsewhere(mut self) -> Self {
        self.admits = false;
        self
    }

    /// The shared handle.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Leaves connection `id` out of the connection manager: it is not checked against the hard
    /// cap, not counted and never trimmed. For a connection that another behaviour admits only
    /// to close it soon: the pool's nacks (refused for lack of room, open a moment so that
    /// their peer learns other points), which the hard cap must not refuse first and which must
    /// not push real peers out in a trim. Call it before the swarm's `handle_established_*`
    /// reaches this behaviour; [`include`](Self::include) counts it after all.
    pub fn exclude(&mut self, id: ConnectionId) {
        self.excluded.insert(id, None);
    }

    /// Counts connection `id`, left out by [`exclude`](Self::exclude), from now on, as if it
    /// had just been established, without the hard-cap check (its caller decided there is
    /// room). Returns `false`, changing nothing, if `id` is not an established connection left
    /// out.
    pub fn include(&mut self, id: ConnectionId) -> bool {
        let Some(Some(c)) = self.excluded.remove(&id) else {
            return false;
        };
        let mut s = self.handle.lock();
        s.core
            .connection_established(c.peer, id, c.inbound, c.remote, Instant::now());
        s.wake();
        true
    }

    fn admit(&self, id: ConnectionId, peer: &PeerId) -> Result<(), ConnectionDenied> {
        if !self.admits || self.excluded.contains_key(&id) {
            return Ok(());
        }
        self.handle.admit(peer).map_err(ConnectionDenied::new)
    }

    fn run(&mut self, s: &mut State, trim: Trim) {
        let i = kind_index(trim.kind);
        s.counts.trims[i] += 1;
        s.counts.pruned[i] += trim.victims.len() as u64;
        s.counts.last_trim = Some(SystemTime::now());
        if trim.victims.is_empty() {
            tracing::debug!(kind = %trim.kind, "trim: nothing to close");
            return;
        }
        for v in &trim.victims {
            tracing::info!(
                peer = %v.peer,
                value = v.value,
                connections = v.connections,
                protected = v.protected,
                reason = %format_args!("connmgr {} trim", trim.kind),
                "closing connections",
            );
            self.events.push_back(ToSwarm::CloseConnection {
                peer_id: v.peer,
                connection: CloseConnection::All,
            });
        }
        self.events
            .push_back(ToSwarm::GenerateEvent(Event::Trimmed(trim)));
    }

    /// Runs what is due at `now`; returns the next deadline. Registers `waker` under the same
    /// lock, so that a handle call made after it wakes the behaviour.
    fn on_tick(&mut self, now: Instant, waker: &Waker) -> Option<Instant> {
        let handle = self.handle.clone();
        let mut s = handle.lock();
        s.waker = Some(waker.clone());
        if let Some(at) = self.next_memory_sample
            && at <= now
        {
            self.next_memory_sample = Some(now + MEMORY_SAMPLE_INTERVAL);
            let silence = s.core.config().silence_period();
            let quiet = self.last_emergency.is_none_or(|t| t + silence <= now);
            if quiet && memory_exceeded(s.core.config().memory_watermark()) {
                s.force_requested = true;
            }
        }
        if std::mem::take(&mut s.force_requested) {
            self.last_emergency = Some(now);
            let trim = s.core.force_trim(now);
            self.run(&mut s, trim);
        }
        if !s.trim_waiters.is_empty() {
            let trim = s.core.trim_open_conns(now);
            self.run(&mut s, trim);
            // Receivers may be gone; nothing to tell them then.
            for w in s.trim_waiters.drain(..) {
                let _ = w.send(());
            }
        }
        if let Some(trim) = s.core.poll(now) {
            self.run(&mut s, trim);
        }
        [s.core.poll_timeout(), self.next_memory_sample]
            .into_iter()
            .flatten()
            .min()
    }
}

impl Drop for Behaviour {
    fn drop(&mut self) {
        let mut s = self.handle.lock();
        s.detached = true;
        // Waiting trims resolve: there is nothing left to trim.
        s.trim_waiters.clear();
    }
}

/// Whether the process's resident memory is above `watermark` bytes.
fn memory_exceeded(watermark: Option<usize>) -> bool {
    let Some(watermark) = watermark else {
        return false;
    };
    match memory_stats::memory_stats() {
        Some(stats) if stats.physical_mem > watermark => {
            tracing::warn!(
                resident = stats.physical_mem,
                watermark,
                "memory above the connection manager's watermark: emergency trim"
            );
            true
        }
        Some(_) => false,
        None => {
            tracing::debug!("cannot read the process's memory");
            false
        }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Event;

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.admit(id, &peer)?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.admit(id, &peer)?;
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                if let Some(slot) = self.excluded.get_mut(&e.connection_id) {
                    *slot = Some(Excluded {
                        peer: e.peer_id,
                        inbound: e.endpoint.is_listener(),
                        remote: e.endpoint.get_remote_address().clone(),
                    });
                    return;
                }
            }
            FromSwarm::ConnectionClosed(e) if self.excluded.remove(&e.connection_id).is_some() => {
                return;
            }
            // Left out, then refused by a sibling behaviour.
            FromSwarm::DialFailure(e) => {
                self.excluded.remove(&e.connection_id);
                return;
            }
            FromSwarm::ListenFailure(e) => {
                self.excluded.remove(&e.connection_id);
                return;
            }
            _ => {}
        }
        let mut s = self.handle.lock();
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                let remote = e.endpoint.get_remote_address().clone();
                s.core.connection_established(
                    e.peer_id,
                    e.connection_id,
                    e.endpoint.is_listener(),
                    remote,
                    Instant::now(),
                );
            }
            FromSwarm::ConnectionClosed(e) => {
                s.core.connection_closed(&e.peer_id, e.connection_id);
            }
            _ => return,
        }
        // A connection may bring the count above the high watermark: trim without waiting for
        // a tick.
        s.wake();
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        libp2p::core::util::unreachable(event)
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Event, THandlerInEvent<Self>>> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Poll::Ready(event);
            }
            let now = Instant::now();
            let deadline = self.on_tick(now, cx.waker());
            if !self.events.is_empty() {
                continue;
            }
            if let Some(deadline) = deadline
                && self.timer.poll(deadline, now, cx)
            {
                continue;
            }
            return Poll::Pending;
        }
    }
}

/// The connection manager's Prometheus metrics.
#[cfg(feature = "metrics")]
mod metrics {
    use std::{
        fmt,
        time::{Instant, UNIX_EPOCH},
    };

    use prometheus_client::{
        collector,
        encoding::{DescriptorEncoder, EncodeMetric},
        metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    };

    use super::{Handle, KINDS};

    /// Encodes the connection manager's metrics at each scrape.
    pub(super) struct Collector(pub(super) Handle);

    impl fmt::Debug for Collector {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("connmgr::metrics::Collector")
        }
    }

    impl collector::Collector for Collector {
        fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
            let (info, counts) = {
                let s = self.0.lock();
                (s.core.info(Instant::now()), s.counts)
            };
            let gauges: [(&str, &str, i64); 8] = [
                (
                    "connections",
                    "Established connections.",
                    info.connections as i64,
                ),
                (
                    "closing_connections",
                    "Connections a trim chose that are still closing.",
                    info.closing as i64,
                ),
                ("peers", "Connected peers.", info.peers as i64),
                (
                    "protected_peers",
                    "Protected peers, connected or not.",
                    info.protected_peers as i64,
                ),
                (
                    "peers_in_grace",
                    "Connected peers still in their grace period.",
                    info.peers_in_grace as i64,
                ),
                (
                    "low_water",
                    "The low watermark, in connections.",
                    info.low_water as i64,
                ),
                (
                    "high_water",
                    "The high watermark, in connections.",
                    info.high_water as i64,
                ),
                (
                    "hard_cap",
                    "Most connections of unprotected peers admitted; -1 without a cap.",
                    info.hard_cap.map_or(-1, |c| c as i64),
                ),
            ];
            for (name, help, value) in gauges {
                let gauge = ConstGauge::new(value);
                gauge.encode(encoder.encode_descriptor(
                    name,
                    help,
                    None,
                    gauge.metric_type(),
                )?)?;
            }
            let last = counts
                .last_trim
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0.0, |d| d.as_secs_f64());
            let gauge = ConstGauge::new(last);
            gauge.encode(encoder.encode_descriptor(
                "last_trim_timestamp_seconds",
                "When the last trim ran, in seconds since the Unix epoch; 0 if none ran.",
                None,
                gauge.metric_type(),
            )?)?;
            for (name, help, values) in [
                ("trims", "Trims run, by kind.", counts.trims),
                (
                    "pruned_peers",
                    "Peers closed by trims, by kind.",
                    counts.pruned,
                ),
            ] {
                let mut family =
                    encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
                for (kind, value) in KINDS.iter().zip(values) {
                    let labels = [("kind", kind.as_str())];
                    ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
                }
            }
            let counter = ConstCounter::new(counts.denied);
            counter.encode(encoder.encode_descriptor(
                "denied_connections",
                "Connections denied at the hard cap.",
                None,
                counter.metric_type(),
            )?)?;
            Ok(())
        }
    }
}

impl peerage_core::node::ConnectionManager for Handle {
    fn close_order(&self, peers: &[PeerId], now: Instant) -> Vec<PeerId> {
        Handle::close_order(self, peers, now)
    }

    fn tag_value(&self, peer: &PeerId) -> i64 {
        Handle::tag_value(self, peer)
    }

    fn admit(&self, peer: &PeerId) -> Result<(), HardCapReached> {
        Handle::admit(self, peer)
    }

    fn is_protected(&self, peer: &PeerId) -> bool {
        Handle::is_protected(self, peer, "")
    }

    fn standing(&self, peers: &[PeerId]) -> Vec<(i64, bool)> {
        self.lock().core.standing(peers)
    }
}
