//! The Peerage `NetworkBehaviour`: the sans-IO core driven by swarm events.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    future::Future,
    sync::Arc,
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use futures::{FutureExt, channel::oneshot};

use libp2p::{
    Multiaddr, PeerId,
    core::{Endpoint, transport::PortUse},
    core::{PeerRecord, SignedEnvelope},
    identify,
    identity::Keypair,
    metrics::Recorder,
    ping, request_response,
    swarm::{
        CloseConnection, ConnectionClosed, ConnectionDenied, ConnectionId, DialError, DialFailure,
        FromSwarm, ListenError, ListenFailure, NetworkBehaviour, THandler, THandlerInEvent,
        THandlerOutEvent, ToSwarm,
        behaviour::toggle::Toggle,
        dial_opts::{DialOpts, PeerCondition},
    },
};
use peerage_core::{
    maintenance::{self, Bounds, Maintenance, Plan},
    peerstore::{self, Peerstore, Ttl},
    pool::{self, Pool},
};
use rand::{SeedableRng, rngs::StdRng};

use crate::{connmgr, keep_alive, pex, rcmgr, timer::Timer};

/// Most addresses taken from one identify message (go `connectedPeerMaxAddrs`).
const MAX_IDENTIFY_ADDRS: usize = 500;
/// Most addresses kept, recently connected, after the last disconnection (go
/// `recentlyConnectedPeerMaxAddrs`).
const MAX_RECENTLY_CONNECTED_ADDRS: usize = 20;
/// How often expired peerstore addresses are collected (go `pstoremem`: every minute). Reads
/// hide expired addresses at once; this only frees them.
const PEERSTORE_GC_INTERVAL: Duration = Duration::from_secs(60);
/// A connection we dialed that the peer closes within this time counts as refused.
const REFUSAL_WINDOW: Duration = Duration::from_secs(10);
/// Peerstore metadata key of a peer's identify agent version (as go).
pub const AGENT_VERSION: &str = "AgentVersion";
/// Peerstore metadata key of a peer's identify protocol version (as go).
pub const PROTOCOL_VERSION: &str = "ProtocolVersion";
/// The connection manager's protection tag of trusted peers (connected through a trusted point,
/// or trusted themselves).
pub const TRUSTED_TAG: &str = "peerage-trusted";

/// Configuration of the Peerage [`Behaviour`].
#[derive(Debug, Clone)]
pub struct Config {
    maintenance: maintenance::Config,
    pool: pool::Config,
    peerstore: Option<Peerstore>,
    connmgr: Option<connmgr::Config>,
    rcmgr: Option<rcmgr::ResourceManager>,
    agent_version: String,
    ping_interval: Duration,
    nack_linger: Duration,
    max_nacked: usize,
    rng_seed: Option<u64>,
    maintenance_enabled: bool,
    metrics: Option<ProtocolMetrics>,
}

/// libp2p-metrics' recorder, shared with whoever records the swarm's events.
#[derive(Clone)]
struct ProtocolMetrics(Arc<libp2p::metrics::Metrics>);

impl std::fmt::Debug for ProtocolMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("libp2p::metrics::Metrics")
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            maintenance: maintenance::Config::default(),
            pool: pool::Config::default(),
            peerstore: None,
            connmgr: None,
            rcmgr: None,
            agent_version: format!("peerage/{}", env!("CARGO_PKG_VERSION")),
            ping_interval: Duration::from_secs(15),
            nack_linger: Duration::from_secs(2),
            max_nacked: 20,
            rng_seed: None,
            maintenance_enabled: true,
            metrics: None,
        }
    }
}

impl Config {
    /// Defaults: Octez's maintenance and pool defaults (bounds 10/50/100), a new in-memory
    /// peerstore, agent version `peerage/<version>`, a ping every 15 s, nacked connections closed
    /// after 2 s, an RNG seeded from the OS.
    pub fn new() -> Self {
        Self::default()
    }
    /// The connection bounds. `10/50/100` by default (Octez).
    pub fn with_bounds(mut self, bounds: Bounds) -> Self {
        self.maintenance = self.maintenance.with_bounds(bounds);
        self
    }
    /// The whole maintenance configuration. [`maintenance::Config::default`] by default.
    pub fn with_maintenance(mut self, config: maintenance::Config) -> Self {
        self.maintenance = config;
        self
    }
    /// The pool configuration. [`pool::Config::default`] by default.
    pub fn with_pool(mut self, config: pool::Config) -> Self {
        self.pool = config;
        self
    }
    /// Private mode (Octez `--private-mode`): only trusted points are dialed and only trusted
    /// peers admitted; the node neither asks for points nor answers requests for them (it does
    /// not offer the peer-exchange protocol, so its peers do not advertise it). `false` by
    /// default. Sets the pool configuration's flag.
    pub fn with_private_mode(mut self, private: bool) -> Self {
        self.pool = self.pool.with_private_mode(private);
        self
    }
    /// Whether the maintenance runs (Octez `--disable-p2p-maintenance` turns it off). `true` by
    /// default; [`Behaviour::activate`] starts it later.
    pub fn with_maintenance_enabled(mut self, enabled: bool) -> Self {
        self.maintenance_enabled = enabled;
        self
    }
    /// A peerstore shared with the application. A new empty one by default.
    pub fn with_peerstore(mut self, peerstore: Peerstore) -> Self {
        self.peerstore = Some(peerstore);
        self
    }
    /// The connection manager's configuration. By default, derived from the bounds as
    /// DESIGN.md maps them: low watermark = `expected`, high watermark = `max`, the
    /// maintenance's grace period, and go's other defaults (hard cap at `max` + 10 %).
    ///
    /// # Errors
    ///
    /// [`connmgr::Error::Config`] if `config` is invalid ([`connmgr::Config::validate`]).
    pub fn with_connmgr(mut self, config: connmgr::Config) -> Result<Self, connmgr::Error> {
        config.validate()?;
        self.connmgr = Some(config);
        Ok(self)
    }
    /// The connection manager's configuration derived from these bounds (see
    /// [`with_connmgr`](Self::with_connmgr)).
    pub fn default_connmgr(&self) -> connmgr::Config {
        let bounds = self.maintenance.bounds();
        connmgr::Config::new()
            .with_watermarks(bounds.expected(), bounds.max())
            .with_grace_period(self.maintenance.grace_period())
    }
    /// A resource manager admitting every connection ([`rcmgr::Behaviour`]). None by default.
    /// For stream limits, wrap the transport's muxer with the same manager
    /// ([`rcmgr::transport`]). A high watermark above its system connection limit is logged as
    /// a warning (go-libp2p GH#1640); check it with [`connmgr::Config::check_limit`].
    pub fn with_resource_manager(mut self, rcmgr: rcmgr::ResourceManager) -> Self {
        self.rcmgr = Some(rcmgr);
        self
    }
    /// The agent version identify announces. `peerage/<crate version>` by default.
    pub fn with_agent_version(mut self, agent: impl Into<String>) -> Self {
        self.agent_version = agent.into();
        self
    }
    /// Interval between pings on a connection. 15 s by default (libp2p ping).
    pub fn with_ping_interval(mut self, d: Duration) -> Self {
        self.ping_interval = d;
        self
    }
    /// How long a refused (nacked) inbound connection stays open so that its peer can ask for
    /// points, if it does not ask sooner. 2 s by default.
    pub fn with_nack_linger(mut self, d: Duration) -> Self {
        self.nack_linger = d;
        self
    }
    /// How many nacked connections may be open at once; above it, an inbound connection that
    /// would be nacked is refused outright ([`TooManyConnections`]), without points. 20 by
    /// default, as Octez's `max_incoming_connections`, its bound on incoming connections still
    /// being handled. Nacked connections are left out of the connection manager (see
    /// [`connmgr::Behaviour::exclude`]): this is their bound.
    pub fn with_max_nacked(mut self, n: usize) -> Self {
        self.max_nacked = n;
        self
    }
    /// Records the identify and ping events, which stay inside this behaviour, in libp2p-metrics'
    /// `metrics` (`libp2p_identify_*`, `libp2p_ping_*`: round-trip times and failures). Record
    /// the swarm's events (`libp2p_swarm_*`) with the same `metrics`. None by default.
    pub fn with_metrics(mut self, metrics: Arc<libp2p::metrics::Metrics>) -> Self {
        self.metrics = Some(ProtocolMetrics(metrics));
        self
    }
    /// Seed of the RNG behind random choices (victims, sampled points, jitter), for
    /// reproducible runs. Seeded from the OS by default.
    pub fn with_rng_seed(mut self, seed: u64) -> Self {
        self.rng_seed = Some(seed);
        self
    }
}

/// Events of the Peerage [`Behaviour`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A peer identified itself; its addresses and protocols are in the peerstore.
    Identified {
        /// The peer.
        peer_id: PeerId,
        /// Its agent version.
        agent_version: String,
        /// Its protocols.
        protocols: Vec<String>,
    },
    /// A peer answered our request for points.
    PointsReceived {
        /// The peer.
        peer_id: PeerId,
        /// Points in the answer.
        received: usize,
        /// Points that were new to the pool.
        new: usize,
    },
    /// A peer's answer was refused for breaking the protocol's bounds.
    PointsRefused {
        /// The peer.
        peer_id: PeerId,
        /// Points in the answer.
        received: usize,
    },
    /// An inbound connection was refused because the node has `max_threshold` connections
    /// (Octez's `Nack`): it is answered one request for points, then closed.
    Nacked {
        /// The peer.
        peer_id: PeerId,
    },
    /// The connection manager chose peers to disconnect (see [`connmgr`]).
    Trimmed {
        /// Why.
        kind: connmgr::TrimKind,
        /// The peers being disconnected.
        peers: Vec<PeerId>,
    },
    /// The pool reported something: a new point or peer, a collection, a peer disconnected
    /// after a ban, a greylisting or a wrong expected peer ID.
    Pool(pool::Event),
    /// The maintenance acted.
    Maintenance {
        /// Connections before acting.
        active: usize,
        /// Points dialed.
        dialed: Vec<Multiaddr>,
        /// Peers disconnected.
        closed: Vec<PeerId>,
        /// Number of peers asked for points.
        asked: usize,
    },
}

/// The protocols inside [`Behaviour`]. Public only because its handler type is
/// `Behaviour::ConnectionHandler`.
#[doc(hidden)]
#[allow(unreachable_pub, missing_docs)]
#[derive(libp2p::swarm::NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
pub struct Inner {
    // First: the derived hooks call the fields in order and stop at the first denial. A
    // connection the connection manager refuses must not reach request-response, which records
    // it in `handle_established_*` and never forgets it (its `ConnectionClosed` then asserts).
    connmgr: connmgr::Behaviour,
    rcmgr: Toggle<rcmgr::Behaviour>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    pex: pex::Behaviour,
    keep_alive: keep_alive::Behaviour,
}

/// An inbound connection refused outright, without points: the node has `max_threshold`
/// connections and already holds [`Config::with_max_nacked`] nacked connections open.
#[derive(Debug, Clone, thiserror::Error)]
#[error("too many connections: {active} active, and {nacked} nacked connections still open")]
pub struct TooManyConnections {
    /// Connections the pool counts.
    pub active: usize,
    /// Nacked connections open (the bound).
    pub nacked: usize,
}

/// An established connection, as [`Behaviour::connections`] lists it.
#[derive(Debug, Clone)]
pub struct ConnectionView {
    /// The connection's ID.
    pub id: ConnectionId,
    /// The peer.
    pub peer_id: PeerId,
    /// The remote address.
    pub remote: Multiaddr,
    /// The point the node dialed for it, if it did.
    pub point: Option<Multiaddr>,
    /// Whether the remote dialed it.
    pub inbound: bool,
    /// Refused for lack of room (nacked): open only until its peer has the answer to its
    /// request for points.
    pub nacked: bool,
    /// When it was established.
    pub since: Instant,
}

/// A connection the behaviour knows.
#[derive(Debug)]
struct Connection {
    peer_id: PeerId,
    /// The point the maintenance dialed for it.
    point: Option<Multiaddr>,
    /// Refused for lack of room: not counted; its peer closes it once it has our nack answer,
    /// or we close it after `nack_linger`.
    nacked: bool,
    /// The peer told us it refused this connection (a `nack` answer).
    nacked_by_remote: bool,
    /// When it was established.
    since: Instant,
    /// The remote address.
    remote: Multiaddr,
    /// Whether the remote dialed it.
    inbound: bool,
}

impl Connection {
    fn new(
        peer_id: PeerId,
        point: Option<Multiaddr>,
        nacked: bool,
        since: Instant,
        remote: Multiaddr,
        inbound: bool,
    ) -> Self {
        Self {
            peer_id,
            point,
            nacked,
            nacked_by_remote: false,
            since,
            remote,
            inbound,
        }
    }

    /// Whether the peer refused this connection: it said so, or it closed a connection we
    /// dialed within [`REFUSAL_WINDOW`] (a full peer trimming its connections does that). Its
    /// point then backs off as from a refusal (Octez `Accepted -> Disconnected`, 1 s growing),
    /// not for the 60 s disconnection delay: a node whose only point is its bootstrap point
    /// would otherwise sit alone for a minute.
    fn refused(&self, closed_by_remote: bool, now: Instant) -> bool {
        self.nacked_by_remote
            || (self.point.is_some()
                && closed_by_remote
                && now.saturating_duration_since(self.since) < REFUSAL_WINDOW)
    }
}

/// The Peerage behaviour: peerstore, pool and maintenance on a libp2p swarm, with identify,
/// ping and the peer-exchange protocol ([`pex`]) inside.
///
/// - identify feeds the peerstore (listen addresses with [`Ttl::Connected`], protocols) and
///   registers the listen addresses as points;
/// - ping feeds the latency EWMA;
/// - the maintenance dials points and closes connections to keep the count within its
///   [`Bounds`], and asks peers for points when it has none to dial;
/// - an inbound connection that finds `max_threshold` connections is nacked, as Octez: it is not
///   counted, neither by the pool nor by the connection manager (whose hard cap does not refuse
///   it), its request for points is answered, then it is closed; at most
///   [`Config::with_max_nacked`] are open at once.
///
/// Connections are counted on [`FromSwarm::ConnectionEstablished`] and uncounted on
/// [`FromSwarm::ConnectionClosed`]; several connections to one peer count once. Connections are
/// kept alive until the maintenance, the remote or the application closes them.
pub struct Behaviour {
    inner: Inner,
    peerstore: Peerstore,
    pool: Pool,
    maintenance: Maintenance,
    rng: StdRng,
    nack_linger: Duration,
    max_nacked: usize,
    metrics: Option<ProtocolMetrics>,
    /// Inbound connections admitted only to be nacked, not yet reported established.
    nacking: HashSet<ConnectionId>,
    connections: HashMap<ConnectionId, Connection>,
    /// Maintenance dials in flight, by the connection ID the swarm will use.
    dials: HashMap<ConnectionId, Multiaddr>,
    /// Connections the pool admitted that the swarm has not yet reported established.
    accepted: HashMap<ConnectionId, PeerId>,
    /// Callers of `maintain` waiting for the end of a cycle.
    maintain_waiters: Vec<(u64, oneshot::Sender<()>)>,
    /// Nacked connections and when to close them, in deadline order.
    nack_deadlines: VecDeque<(Instant, PeerId, ConnectionId)>,
    /// When each peer was last answered a request for points.
    pex_answered: HashMap<PeerId, Instant>,
    /// Requests for points waiting for their peer's cooldown, in deadline order; one per peer.
    pex_delayed: VecDeque<(
        Instant,
        PeerId,
        request_response::ResponseChannel<pex::Response>,
    )>,
    events: VecDeque<ToSwarm<Event, THandlerInEvent<Self>>>,
    timer: Timer,
    waker: Option<Waker>,
    /// When the peerstore is next collected.
    next_gc: Instant,
    /// Signs our peer record.
    keypair: Keypair,
    /// Our dialable listen addresses.
    listen_addrs: Vec<Multiaddr>,
    /// Our signed peer record for `listen_addrs`, in libp2p's protobuf encoding; `None` until
    /// it is first needed after they change.
    own_record: Option<Vec<u8>>,
}

impl Behaviour {
    /// A behaviour for the node whose identity is `local_key` (it signs the node's peer
    /// record, which answers to requests for points carry).
    pub fn new(local_key: &Keypair, config: Config) -> Self {
        let connmgr_config = config
            .connmgr
            .clone()
            .unwrap_or_else(|| config.default_connmgr());
        // Validated by `with_connmgr`; the derived one is valid for any bounds.
        if let Some(rm) = &config.rcmgr {
            let limit = rm.limits().system().conns;
            if let Err(e) = connmgr_config.check_limit(usize::try_from(limit).unwrap_or(usize::MAX))
            {
                tracing::warn!("{e} (the resource manager's system connection limit)");
            }
        }
        let connmgr = connmgr::Behaviour::new(connmgr_config).expect("valid connmgr config");
        let local_peer_id = local_key.public().to_peer_id();
        let identify = identify::Behaviour::new(
            identify::Config::new("ipfs/0.1.0".to_owned(), local_key.public())
                .with_agent_version(config.agent_version.clone()),
        );
        let ping = ping::Behaviour::new(ping::Config::new().with_interval(config.ping_interval));
        let private_mode = config.pool.private_mode();
        let mut maintenance = Maintenance::new(config.maintenance);
        if config.maintenance_enabled {
            maintenance.activate();
        }
        let rng = match config.rng_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Self {
            inner: Inner {
                connmgr,
                rcmgr: Toggle::from(config.rcmgr.map(rcmgr::Behaviour::new)),
                identify,
                ping,
                pex: pex::behaviour(private_mode),
                keep_alive: keep_alive::Behaviour,
            },
            peerstore: config
                .peerstore
                .unwrap_or_else(|| Peerstore::memory(peerstore::Config::default())),
            pool: Pool::new(local_peer_id, config.pool),
            maintenance,
            rng,
            nack_linger: config.nack_linger,
            max_nacked: config.max_nacked,
            metrics: config.metrics,
            nacking: HashSet::new(),
            connections: HashMap::new(),
            dials: HashMap::new(),
            accepted: HashMap::new(),
            maintain_waiters: Vec::new(),
            nack_deadlines: VecDeque::new(),
            pex_answered: HashMap::new(),
            pex_delayed: VecDeque::new(),
            events: VecDeque::new(),
            timer: Timer::default(),
            waker: None,
            next_gc: Instant::now() + PEERSTORE_GC_INTERVAL,
            keypair: local_key.clone(),
            listen_addrs: Vec::new(),
            own_record: None,
        }
    }

    /// The connection manager's shared handle: tag and protect peers, trim, read its state.
    pub fn connmgr(&self) -> connmgr::Handle {
        self.inner.connmgr.handle()
    }

    /// The resource manager, if the configuration has one
    /// ([`Config::with_resource_manager`]).
    pub fn resource_manager(&self) -> Option<&rcmgr::ResourceManager> {
        self.inner.rcmgr.as_ref().map(|b| b.resource_manager())
    }

    /// Protects a peer that is trusted, or whose connection comes from a trusted point, so
    /// that the connection manager neither trims it nor refuses it at its hard cap.
    fn protect_if_trusted(&self, peer: &PeerId, connection_id: ConnectionId) {
        let via_trusted_point = self
            .dials
            .get(&connection_id)
            .and_then(|point| self.pool.point(point))
            .is_some_and(|p| p.is_trusted());
        if via_trusted_point || self.pool.is_trusted_peer(peer) {
            self.inner.connmgr.handle().protect(*peer, TRUSTED_TAG);
        }
    }

    /// Adds a trusted point, such as a bootstrap address (with or without `/p2p/<id>`; with it,
    /// the point must be that peer), unbanning its IP (Octez `Points.trust`). The maintenance
    /// dials it when it needs connections.
    ///
    /// # Errors
    ///
    /// A [`pool::Error`] if the address is not a dialable point or is our own.
    pub fn add_trusted_point(&mut self, addr: &Multiaddr) -> Result<Multiaddr, pool::Error> {
        let point = self.update_pool(|pool, now| pool.trust_point(addr, now))?;
        self.maintenance.trigger();
        Ok(point)
    }

    /// Changes the pool (ACL, trust, expected peer IDs, points...) through `f`, then carries
    /// out what the change asks: disconnections of banned or greylisted peers (after the ACL
    /// change, so they cannot come back), new points for the maintenance, and the connection
    /// manager's protection of trusted peers.
    ///
    /// ```no_run
    /// # fn f(b: &mut peerage::Behaviour, peer: libp2p::PeerId) {
    /// b.update_pool(|pool, now| pool.greylist_peer(peer, now));
    /// # }
    /// ```
    pub fn update_pool<R>(&mut self, f: impl FnOnce(&mut Pool, Instant) -> R) -> R {
        let result = f(&mut self.pool, Instant::now());
        self.drain_pool_events();
        let connmgr = self.inner.connmgr.handle();
        let running: Vec<PeerId> = self.pool.running_peers().collect();
        for peer in running {
            if self.pool.is_trusted_peer(&peer) {
                connmgr.protect(peer, TRUSTED_TAG);
            } else {
                connmgr.unprotect(&peer, TRUSTED_TAG);
            }
        }
        self.wake();
        result
    }

    /// The pool's known peers as peers-file entries ([`crate::peers_file::export`]).
    pub fn export_peers(&self) -> Vec<crate::peers_file::Entry> {
        crate::peers_file::export(
            &self.pool,
            &self.peerstore,
            Instant::now(),
            std::time::SystemTime::now(),
        )
    }

    /// Restores peers saved in a peers file ([`crate::peers_file::import`]); their last points
    /// become candidates for the maintenance.
    pub fn import_peers(&mut self, entries: Vec<crate::peers_file::Entry>) {
        let peerstore = self.peerstore.clone();
        self.update_pool(|pool, now| {
            crate::peers_file::import(pool, &peerstore, entries, now, std::time::SystemTime::now());
        });
    }

    /// Dials a point now, whatever its backoff (Octez `connect`, RPC `PUT /network/points`):
    /// registers it if unknown; with `/p2p/<id>` the point must be that peer.
    ///
    /// # Errors
    ///
    /// [`pool::Error::IpBanned`] if its IP is banned, [`pool::Error::PrivateMode`] in private
    /// mode if it is not trusted, [`pool::Error::NotDisconnected`] if it is being dialed or
    /// connected, and [`pool::Pool::register_point`]'s errors.
    pub fn connect(&mut self, addr: &Multiaddr) -> Result<Multiaddr, pool::Error> {
        let (point, expected) = pool::split_point(addr)?;
        let peer = self.update_pool(|pool, now| {
            if let Some(id) = expected {
                pool.register_point(addr, None, Some(id), now)?;
            }
            pool.connect(&point, now)
        })?;
        self.dial(point.clone(), peer);
        self.wake();
        Ok(point)
    }

    /// Asks the maintenance for a check (Octez `maintain`); the future resolves once a cycle
    /// that started after the call has ended (the count is within the thresholds, or the
    /// maintenance waits for points), or the maintenance was shut down. The check runs even if
    /// the future is dropped.
    pub fn maintain(&mut self) -> impl Future<Output = ()> + Send + 'static {
        let ticket = self.maintenance.maintain();
        let (tx, rx) = oneshot::channel();
        self.maintain_waiters.push((ticket, tx));
        self.wake();
        rx.map(|_| ())
    }

    /// Starts the maintenance (Octez `activate`): it runs a check at once, then on its
    /// triggers. Started by [`Behaviour::new`] unless
    /// [`Config::with_maintenance_enabled`] said otherwise.
    pub fn activate(&mut self) {
        self.maintenance.activate();
        self.wake();
    }

    /// Stops the maintenance (Octez `shutdown`): no more dials nor closes of its own; dials in
    /// flight finish, connections stay. Waiting [`maintain`](Behaviour::maintain) calls resolve.
    pub fn shutdown(&mut self) {
        self.maintenance.shutdown();
        self.wake();
    }

    /// Carries out the pool's events: disconnections, new points for the maintenance; and
    /// reports them.
    fn drain_pool_events(&mut self) {
        while let Some(event) = self.pool.poll_event() {
            match &event {
                pool::Event::Disconnect { peer, reason } => {
                    tracing::debug!(%peer, ?reason, "pool: disconnect");
                    self.events.push_back(ToSwarm::CloseConnection {
                        peer_id: *peer,
                        connection: CloseConnection::All,
                    });
                }
                // Octez's maintenance waits for `new_point` or `new_peer`.
                pool::Event::NewPoint { .. } | pool::Event::NewPeer(_) => {
                    self.maintenance.on_new_points();
                }
                _ => {}
            }
            self.events
                .push_back(ToSwarm::GenerateEvent(Event::Pool(event)));
        }
    }

    /// The peerstore.
    pub fn peerstore(&self) -> &Peerstore {
        &self.peerstore
    }

    /// The pool of points and peers.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The connection bounds.
    pub fn bounds(&self) -> Bounds {
        self.maintenance.bounds()
    }

    /// The established connections.
    pub fn connections(&self) -> impl Iterator<Item = ConnectionView> + '_ {
        self.connections.iter().map(|(id, c)| ConnectionView {
            id: *id,
            peer_id: c.peer_id,
            remote: c.remote.clone(),
            point: c.point.clone(),
            inbound: c.inbound,
            nacked: c.nacked,
            since: c.since,
        })
    }

    /// Whether the maintenance is in a dialing round (dialing, or waiting for points).
    pub fn is_maintaining(&self) -> bool {
        self.maintenance.is_dialing()
    }

    /// Number of connected (running) peers, as the maintenance counts them.
    pub fn active_connections(&self) -> usize {
        self.pool.active()
    }

    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    fn on_connection_established(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        endpoint: &libp2p::core::ConnectedPoint,
    ) {
        let now = Instant::now();
        let point = self.dials.remove(&connection_id);
        self.accepted.remove(&connection_id);
        let remote = endpoint.get_remote_address().clone();
        if self.nacking.remove(&connection_id) {
            tracing::debug!(%peer_id, active = self.pool.active(), "nack: too many connections");
            self.pool.reject(peer_id, now);
            self.nack_deadlines
                .push_back((now + self.nack_linger, peer_id, connection_id));
            self.connections.insert(
                connection_id,
                Connection::new(peer_id, point, true, now, remote, true),
            );
            self.events
                .push_back(ToSwarm::GenerateEvent(Event::Nacked { peer_id }));
            return;
        }
        if point.is_some() {
            self.maintenance.on_dial_finished();
        }
        if self
            .pool
            .connection_established(peer_id, point.as_ref(), &remote, now)
        {
            self.maintenance
                .on_connection_established(self.pool.active());
        }
        self.drain_pool_events();
        if let libp2p::core::ConnectedPoint::Dialer { address, .. } = endpoint {
            self.peerstore
                .add_addrs(&peer_id, std::slice::from_ref(address), Ttl::Connected, now);
            // Ask whoever we dial for points (Octez sends `Bootstrap` when it needs points; a new
            // outbound connection is the cheapest moment to learn them). A private node asks
            // nobody.
            if !self.pool.config().private_mode() {
                let need = self.maintenance.is_dialing();
                self.inner.pex.send_request(&peer_id, pex::Request { need });
            }
        }
        self.connections.insert(
            connection_id,
            Connection::new(peer_id, point, false, now, remote, endpoint.is_listener()),
        );
    }

    fn on_connection_closed(&mut self, closed: &ConnectionClosed<'_>) {
        let now = Instant::now();
        let peer_id = closed.peer_id;
        if closed.remaining_established == 0 {
            self.demote_addrs(&peer_id, now);
        }
        let Some(conn) = self.connections.remove(&closed.connection_id) else {
            return;
        };
        if conn.nacked {
            return;
        }
        let point = conn.point.as_ref();
        // libp2p reports no cause when we closed the connection ourselves.
        let by_remote = closed.cause.is_some();
        let stopped = if conn.refused(by_remote, now) {
            self.pool
                .connection_nacked(peer_id, point, now, &mut self.rng)
        } else {
            self.pool
                .connection_closed(peer_id, point, by_remote, now, &mut self.rng)
        };
        if stopped {
            self.maintenance.on_connection_closed(self.pool.active());
        }
    }

    fn on_dial_failure(&mut self, failure: &DialFailure<'_>) {
        let now = Instant::now();
        self.admission_failed(failure.connection_id);
        let Some(point) = self.dials.remove(&failure.connection_id) else {
            return;
        };
        match failure.error {
            DialError::DialPeerConditionFalse(_) | DialError::Aborted => {
                self.pool.dial_aborted(&point);
            }
            DialError::WrongPeerId { .. } => {
                self.pool.dial_wrong_peer(&point, now, &mut self.rng);
            }
            DialError::LocalPeerId { .. } => {
                self.pool.dial_aborted(&point);
                self.pool.add_own_point(&point);
            }
            _ => self.pool.dial_failed(&point, now, &mut self.rng),
        }
        tracing::debug!(%point, error = %failure.error, "dial failed");
        self.maintenance.on_dial_finished();
    }

    /// An inbound connection failed: an admitted one goes back to disconnected; one whose
    /// handshake broke the protocol (garbage, a bad Noise message) greylists its IP, as Octez
    /// greylists on handshake decoding errors (not on timeouts or closed sockets).
    fn on_listen_failure(&mut self, failure: &ListenFailure<'_>) {
        let now = Instant::now();
        self.admission_failed(failure.connection_id);
        if let ListenError::Transport(e) = failure.error
            && is_protocol_violation(e)
            && let Some(ip) = pool::ip_of(failure.send_back_addr)
        {
            tracing::debug!(%ip, error = %e, "handshake garbage: greylisted");
            self.pool.greylist_ip(ip, now);
        }
    }

    /// go identify's "TTL dance" on an identify message: the addresses it lists replace the
    /// peer's connected and recently connected ones (`id.go`): both are moved to the temporary
    /// TTL, the listed ones are added with the connected TTL, and what was not re-confirmed goes.
    fn replace_addrs(&self, peer: &PeerId, addrs: &[Multiaddr], now: Instant) {
        let store = &self.peerstore;
        store.update_addrs(peer, Ttl::RECENTLY_CONNECTED, Ttl::TEMP, now);
        store.update_addrs(peer, Ttl::Connected, Ttl::TEMP, now);
        store.add_addrs(peer, addrs, Ttl::Connected, now);
        store.update_addrs(peer, Ttl::TEMP, Ttl::ZERO, now);
    }

    /// go identify on the last disconnection: at most 20 of the peer's addresses stay, with the
    /// recently connected TTL; the rest of its connected ones go.
    fn demote_addrs(&self, peer: &PeerId, now: Instant) {
        let store = &self.peerstore;
        let kept: Vec<Multiaddr> = self
            .peerstore
            .addrs(peer, now)
            .into_iter()
            .take(MAX_RECENTLY_CONNECTED_ADDRS)
            .collect();
        store.update_addrs(peer, Ttl::Connected, Ttl::TEMP, now);
        store.add_addrs(peer, &kept, Ttl::RECENTLY_CONNECTED, now);
        store.update_addrs(peer, Ttl::TEMP, Ttl::ZERO, now);
    }

    fn on_inner_event(&mut self, event: InnerEvent, now: Instant) {
        if let Some(ProtocolMetrics(metrics)) = &self.metrics {
            match &event {
                InnerEvent::Identify(e) => metrics.record(e),
                InnerEvent::Ping(e) => metrics.record(e),
                _ => {}
            }
        }
        match event {
            InnerEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                let addrs: Vec<Multiaddr> = info
                    .listen_addrs
                    .iter()
                    .filter(|a| pool::split_point(a).is_ok())
                    .take(MAX_IDENTIFY_ADDRS)
                    .cloned()
                    .collect();
                self.replace_addrs(&peer_id, &addrs, now);
                let protocols: Vec<String> =
                    info.protocols.iter().map(ToString::to_string).collect();
                if let Err(e) = self.peerstore.set_protocols(&peer_id, &protocols) {
                    tracing::debug!(%peer_id, "identify: {e}");
                }
                if let Err(e) = self
                    .peerstore
                    .put(&peer_id, AGENT_VERSION, &info.agent_version)
                    .and_then(|()| {
                        self.peerstore
                            .put(&peer_id, PROTOCOL_VERSION, &info.protocol_version)
                    })
                {
                    tracing::debug!(%peer_id, "identify: {e}");
                }
                // A peer that does not offer the exchange is private (or not a pool node): its
                // points are not advertised (Octez `known_public = not private_node`).
                let public = info.protocols.contains(&pex::PROTOCOL);
                self.pool.set_announced_points(peer_id, &addrs, public, now);
                self.drain_pool_events();
                self.events
                    .push_back(ToSwarm::GenerateEvent(Event::Identified {
                        peer_id,
                        agent_version: info.agent_version,
                        protocols,
                    }));
            }
            InnerEvent::Identify(_) => {}
            InnerEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            }) => {
                self.peerstore.record_latency(&peer, rtt);
                // Feed the score.
                if let Some(ewma) = self.peerstore.latency_ewma(&peer) {
                    self.pool.set_latency(&peer, ewma);
                }
                let value = self.inner.connmgr.handle().tag_value(&peer);
                self.pool.set_tag_value(&peer, value);
            }
            InnerEvent::Ping(ping::Event {
                peer,
                result: Err(e),
                ..
            }) => tracing::debug!(%peer, "ping failed: {e}"),
            InnerEvent::Pex(event) => self.on_pex_event(event, now),
            InnerEvent::Connmgr(connmgr::Event::Trimmed(trim)) => {
                self.events
                    .push_back(ToSwarm::GenerateEvent(Event::Trimmed {
                        kind: trim.kind,
                        peers: trim.victims.iter().map(|v| v.peer).collect(),
                    }));
            }
            InnerEvent::KeepAlive(never) => match never {},
        }
    }

    fn on_pex_event(
        &mut self,
        event: request_response::Event<pex::Request, pex::Response>,
        now: Instant,
    ) {
        use request_response::{Event as E, Message};
        match event {
            E::Message {
                peer,
                connection_id,
                message:
                    Message::Request {
                        channel, request, ..
                    },
            } => {
                if request.need {
                    self.admit_needy(peer, connection_id, now);
                }
                let due = self
                    .pex_answered
                    .get(&peer)
                    .map(|t| *t + pex::ANSWER_COOLDOWN)
                    .filter(|due| *due > now);
                let nack = self
                    .connections
                    .get(&connection_id)
                    .is_some_and(|c| c.nacked);
                match due {
                    // A nacked connection is answered at once: it is about to close.
                    _ if nack => self.answer_pex(peer, channel, true, now),
                    None => self.answer_pex(peer, channel, false, now),
                    // One waiting request per peer; further early ones are dropped (the remote
                    // sees its request fail).
                    Some(_) if self.pex_delayed.iter().any(|(_, p, _)| *p == peer) => {}
                    Some(due) => self.pex_delayed.push_back((due, peer, channel)),
                }
            }
            E::Message {
                peer,
                connection_id,
                message: Message::Response { response, .. },
            } => {
                if response.nack
                    && let Some(conn) = self.connections.get_mut(&connection_id)
                {
                    // Refused: close it ourselves, now that we have the points (if the refusing
                    // side closed first, the answer could be lost in flight).
                    conn.nacked_by_remote = true;
                    self.events.push_back(ToSwarm::CloseConnection {
                        peer_id: peer,
                        connection: CloseConnection::One(connection_id),
                    });
                }
                if self.pool.config().private_mode() {
                    // Octez's private answerer only logs what it is sent.
                    return;
                }
                let received = response.points.len() + response.records.len();
                if received > pex::MAX_POINTS_ACCEPTED {
                    // Octez: a list over the wire limit fails to decode and greylists its
                    // sender; greylisting comes before the disconnection it causes.
                    tracing::debug!(%peer, received, "pex: too many points, refused");
                    self.pool.greylist_peer(peer, now);
                    self.drain_pool_events();
                    self.events
                        .push_back(ToSwarm::GenerateEvent(Event::PointsRefused {
                            peer_id: peer,
                            received,
                        }));
                    return;
                }
                if let Some(bytes) = &response.record {
                    self.consume_record(peer, Some(peer), bytes, Ttl::Connected, now);
                }
                let mut points: Vec<Multiaddr> = response
                    .points
                    .iter()
                    .filter_map(|s| s.parse().ok())
                    .collect();
                // Advertised peers' own signed records: their addresses are certified.
                for bytes in &response.records {
                    if let Some(addrs) = self.consume_record(peer, None, bytes, Ttl::ADDRESS, now) {
                        points.extend(addrs);
                    }
                }
                let medium = if response.nack {
                    pool::Medium::Nack
                } else {
                    pool::Medium::Advertise
                };
                let new = self
                    .pool
                    .register_list_of_new_points(Some(peer), medium, &points, now);
                self.drain_pool_events();
                self.events
                    .push_back(ToSwarm::GenerateEvent(Event::PointsReceived {
                        peer_id: peer,
                        received,
                        new,
                    }));
            }
            E::ResponseSent { .. } => {}
            E::OutboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "pex request failed: {error}");
                // An answer that does not decode (or is over the size limit) greylists its
                // sender, as Octez's decoding errors do.
                if let request_response::OutboundFailure::Io(e) = &error
                    && e.kind() == std::io::ErrorKind::InvalidData
                {
                    self.pool.greylist_peer(peer, now);
                    self.drain_pool_events();
                }
            }
            E::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "pex answer failed: {error}");
                if let request_response::InboundFailure::Io(e) = &error
                    && e.kind() == std::io::ErrorKind::InvalidData
                {
                    self.pool.greylist_peer(peer, now);
                    self.drain_pool_events();
                }
            }
        }
    }

    /// Our signed peer record (domain `libp2p-peer-record`) for our current listen addresses,
    /// signed again when they changed, and kept in our own peerstore as go's host does.
    fn own_record(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.own_record.is_none() && !self.listen_addrs.is_empty() {
            match PeerRecord::new_interop(&self.keypair, self.listen_addrs.clone()) {
                Ok(record) => {
                    let envelope = record.into_signed_envelope();
                    if let Err(e) =
                        self.peerstore
                            .consume_peer_record(&envelope, Ttl::Permanent, now)
                    {
                        tracing::debug!("own peer record: {e}");
                    }
                    self.own_record = Some(envelope.into_protobuf_encoding());
                }
                Err(e) => tracing::warn!("cannot sign our peer record: {e}"),
            }
        }
        self.own_record.clone()
    }

    /// Stores a signed peer record that `from` sent (its own if `signer` is `Some(from)`, else
    /// an advertised peer's), with `ttl`; returns its addresses as points of its peer. Our own
    /// record and records that do not verify are refused.
    fn consume_record(
        &self,
        from: PeerId,
        signer: Option<PeerId>,
        bytes: &[u8],
        ttl: Ttl,
        now: Instant,
    ) -> Option<Vec<Multiaddr>> {
        let result = SignedEnvelope::from_protobuf_encoding(bytes)
            .map_err(|e| e.to_string())
            .and_then(|envelope| {
                let record = PeerRecord::from_signed_envelope_interop(envelope.clone())
                    .map_err(|e| e.to_string())?;
                let id = record.peer_id();
                if signer.is_some_and(|s| s != id) || id == self.pool.local_peer_id() {
                    return Err(format!("a record of {id}"));
                }
                self.peerstore
                    .consume_peer_record(&envelope, ttl, now)
                    .map_err(|e| e.to_string())?;
                Ok(record
                    .addresses()
                    .iter()
                    .take(pex::MAX_POINTS_ACCEPTED)
                    .map(|a| a.clone().with_p2p(id).unwrap_or_else(|a| a))
                    .collect())
            });
        result
            .inspect_err(|e| tracing::debug!(%from, "peer record refused: {e}"))
            .ok()
    }

    /// Admits a nacked connection whose peer needs connections, if the node is under `max`.
    fn admit_needy(&mut self, peer: PeerId, connection_id: ConnectionId, now: Instant) {
        let under_max = self.pool.active() < self.maintenance.bounds().max();
        let Some(conn) = self.connections.get_mut(&connection_id) else {
            return;
        };
        if !conn.nacked || !under_max || self.pool.is_running(&peer) {
            return;
        }
        conn.nacked = false;
        self.inner.connmgr.include(connection_id);
        tracing::debug!(%peer, active = self.pool.active(), "admitted: the peer needs connections");
        let remote = conn.remote.clone();
        if self.pool.connection_established(peer, None, &remote, now) {
            self.maintenance
                .on_connection_established(self.pool.active());
        }
        self.drain_pool_events();
    }

    fn answer_pex(
        &mut self,
        peer: PeerId,
        channel: request_response::ResponseChannel<pex::Response>,
        nack: bool,
        now: Instant,
    ) {
        let listed =
            self.pool
                .list_known_points(pex::MAX_POINTS_SENT, Some(peer), now, &mut self.rng);
        // A listed peer with a signed record goes as that record (its addresses are then
        // certified at the asker); the others as plain points.
        let mut points = Vec::new();
        let mut records = Vec::new();
        let mut sent: HashSet<PeerId> = HashSet::new();
        for addr in listed {
            let id = match addr.iter().last() {
                Some(libp2p::multiaddr::Protocol::P2p(id)) => Some(id),
                _ => None,
            };
            match id.and_then(|id| Some((id, self.peerstore.peer_record(&id, now)?))) {
                Some((id, envelope)) => {
                    if sent.insert(id) {
                        records.push(envelope.into_protobuf_encoding());
                    }
                }
                None => points.push(addr.to_string()),
            }
        }
        self.pex_answered.insert(peer, now);
        let record = self.own_record(now);
        // Fails only if the connection is gone; nothing to do then.
        let _ = self.inner.pex.send_response(
            channel,
            pex::Response {
                points,
                nack,
                record,
                records,
            },
        );
    }

    /// The pool's admission of an authenticated connection (banned IP or peer, expected peer
    /// ID, private mode, room in the peer table).
    fn admit(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let point = self.dials.get(&connection_id);
        let result = self
            .pool
            .accept(peer, remote, point, Instant::now(), &mut self.rng);
        self.drain_pool_events();
        match result {
            Ok(()) => {
                self.accepted.insert(connection_id, peer);
                Ok(())
            }
            Err(e) => {
                tracing::debug!(%peer, %remote, "refused: {e}");
                Err(ConnectionDenied::new(e))
            }
        }
    }

    /// Decides, at admission, whether an inbound connection the pool admitted is nacked: the
    /// node has `max_threshold` connections and the peer is neither connected nor trusted. A
    /// peer that needs connections may still be admitted, up to `max`, when it asks for points
    /// (see `Bounds`). A nacked connection is left out of the connection manager, whose hard
    /// cap would otherwise refuse it before its peer learns other points, and whose trims would
    /// count it against real peers.
    ///
    /// # Errors
    ///
    /// [`TooManyConnections`] when `max_nacked` nacked connections are already open.
    fn nack_if_full(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
    ) -> Result<(), ConnectionDenied> {
        let full = self.pool.active() >= self.maintenance.bounds().max_threshold();
        if !full
            || self.pool.is_running(&peer)
            || self.pool.is_trusted_peer(&peer)
            || self.connections.values().any(|c| c.peer_id == peer)
        {
            return Ok(());
        }
        let nacked = self.nacking.len() + self.connections.values().filter(|c| c.nacked).count();
        if nacked >= self.max_nacked {
            self.admission_failed(connection_id);
            let e = TooManyConnections {
                active: self.pool.active(),
                nacked,
            };
            tracing::debug!(%peer, "refused: {e}");
            return Err(ConnectionDenied::new(e));
        }
        self.nacking.insert(connection_id);
        self.inner.connmgr.exclude(connection_id);
        Ok(())
    }

    /// A connection the pool had admitted failed before it was established (a behaviour after
    /// the pool refused it, or the swarm reported a dial or listen failure): its peer and dialed
    /// point go back to disconnected. Nothing happens for a connection the pool did not admit.
    fn admission_failed(&mut self, connection_id: ConnectionId) {
        self.nacking.remove(&connection_id);
        if let Some(peer) = self.accepted.remove(&connection_id) {
            let point = self.dials.get(&connection_id);
            self.pool
                .accept_failed(peer, point, Instant::now(), &mut self.rng);
        }
    }

    /// Runs what is due at `now`: closes lingering nacked connections, answers delayed requests
    /// for points, and runs the maintenance.
    fn on_tick(&mut self, now: Instant) {
        while let Some((due, peer_id, connection_id)) = self.nack_deadlines.front().copied() {
            if due > now {
                break;
            }
            self.nack_deadlines.pop_front();
            if self
                .connections
                .get(&connection_id)
                .is_some_and(|c| c.nacked)
            {
                self.events.push_back(ToSwarm::CloseConnection {
                    peer_id,
                    connection: CloseConnection::One(connection_id),
                });
            }
        }
        while self
            .pex_delayed
            .front()
            .is_some_and(|(due, ..)| *due <= now)
        {
            let (_, peer, channel) = self.pex_delayed.pop_front().expect("front exists");
            self.answer_pex(peer, channel, false, now);
        }
        self.pex_answered
            .retain(|_, t| *t + pex::ANSWER_COOLDOWN > now);
        if now >= self.next_gc {
            self.next_gc = now + PEERSTORE_GC_INTERVAL;
            let collected = self.peerstore.gc(now);
            let greylisted = self.pool.gc_greylist(now);
            tracing::trace!(collected, greylisted, "peerstore and greylist gc");
        }

        let active = self.pool.active();
        let connmgr = self.inner.connmgr.handle();
        let plan = self
            .maintenance
            .step_with(now, &mut self.pool, &mut self.rng, |peers, _| {
                connmgr.close_order(&peers, now)
            });
        if !plan.is_empty() {
            self.execute(plan, active);
        }
        self.drain_pool_events();
        // A waiter whose cycle ended is resolved by dropping its sender (the future maps any
        // outcome to `()`).
        let maintenance = &self.maintenance;
        self.maintain_waiters
            .retain(|(ticket, tx)| !maintenance.is_done(*ticket) && !tx.is_canceled());
    }

    /// Dials `point` (already `Requested` in the pool), with its peer ID if known.
    fn dial(&mut self, point: Multiaddr, peer: Option<PeerId>) {
        let opts = match peer {
            Some(peer) => DialOpts::peer_id(peer)
                .addresses(vec![point.clone()])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build(),
            None => DialOpts::unknown_peer_id().address(point.clone()).build(),
        };
        self.dials.insert(opts.connection_id(), point);
        self.events.push_back(ToSwarm::Dial { opts });
    }

    fn execute(&mut self, plan: Plan, active: usize) {
        let mut dialed = Vec::with_capacity(plan.dial.len());
        for (point, peer) in plan.dial {
            self.dial(point.clone(), peer);
            dialed.push(point);
        }
        for peer_id in &plan.close {
            self.events.push_back(ToSwarm::CloseConnection {
                peer_id: *peer_id,
                connection: CloseConnection::All,
            });
        }
        let mut asked = 0;
        if plan.ask_for_points {
            // Not those that do not offer the exchange (private nodes, other software), as
            // Octez sends no Bootstrap to private connections.
            let peers: HashSet<PeerId> = self
                .connections
                .values()
                .filter(|c| !c.nacked)
                .map(|c| c.peer_id)
                .filter(|p| {
                    self.peerstore.protocols(p).is_empty()
                        || !self
                            .peerstore
                            .supports_protocols(p, &[pex::PROTOCOL.as_ref()])
                            .is_empty()
                })
                .collect();
            for peer in peers {
                self.inner
                    .pex
                    .send_request(&peer, pex::Request { need: true });
                asked += 1;
            }
        }
        tracing::debug!(
            active,
            dialed = dialed.len(),
            closed = plan.close.len(),
            asked,
            "maintenance"
        );
        self.events
            .push_back(ToSwarm::GenerateEvent(Event::Maintenance {
                active,
                dialed,
                closed: plan.close,
                asked,
            }));
    }

    /// The earliest instant at which [`Behaviour::on_tick`] has work.
    fn next_deadline(&self) -> Option<Instant> {
        [
            self.maintenance.poll_timeout(),
            self.nack_deadlines.front().map(|d| d.0),
            self.pex_delayed.front().map(|d| d.0),
            Some(self.next_gc),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = THandler<Inner>;
    type ToSwarm = Event;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        // Banned addresses are refused before they cost anything (Octez `accept`).
        if let Some(ip) = pool::ip_of(remote_addr)
            && self.pool.is_ip_banned(ip, Instant::now())
        {
            return Err(ConnectionDenied::new(pool::Error::IpBanned(ip)));
        }
        self.inner
            .handle_pending_inbound_connection(connection_id, local_addr, remote_addr)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.admit(connection_id, peer, remote_addr)?;
        self.nack_if_full(connection_id, peer)?;
        self.protect_if_trusted(&peer, connection_id);
        self.inner
            .handle_established_inbound_connection(connection_id, peer, local_addr, remote_addr)
            .inspect_err(|_| self.admission_failed(connection_id))
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        // Banned peers and points are never dialed (Octez `connect`: `Point_banned`).
        let now = Instant::now();
        if let Some(peer) = maybe_peer
            && self.pool.is_peer_banned(&peer)
        {
            return Err(ConnectionDenied::new(pool::Error::PeerBanned(peer)));
        }
        if let Some(ip) = addresses
            .iter()
            .map(pool::ip_of)
            .collect::<Option<Vec<_>>>()
            .filter(|ips| !ips.is_empty() && ips.iter().all(|ip| self.pool.is_ip_banned(*ip, now)))
            .and_then(|ips| ips.first().copied())
        {
            return Err(ConnectionDenied::new(pool::Error::IpBanned(ip)));
        }
        self.inner.handle_pending_outbound_connection(
            connection_id,
            maybe_peer,
            addresses,
            effective_role,
        )
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.admit(connection_id, peer, addr)?;
        self.protect_if_trusted(&peer, connection_id);
        self.inner
            .handle_established_outbound_connection(
                connection_id,
                peer,
                addr,
                role_override,
                port_use,
            )
            .inspect_err(|_| self.admission_failed(connection_id))
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        match &event {
            FromSwarm::ConnectionEstablished(e) => {
                self.on_connection_established(e.peer_id, e.connection_id, e.endpoint)
            }
            FromSwarm::ConnectionClosed(e) => self.on_connection_closed(e),
            FromSwarm::DialFailure(e) => self.on_dial_failure(e),
            FromSwarm::ListenFailure(e) => self.on_listen_failure(e),
            // Our own addresses are never points (Octez `my_id_points`), even once expired.
            FromSwarm::NewListenAddr(e) => {
                self.pool.add_own_point(e.addr);
                if pool::split_point(e.addr).is_ok() && !self.listen_addrs.contains(e.addr) {
                    self.listen_addrs.push(e.addr.clone());
                    self.own_record = None;
                }
            }
            FromSwarm::ExpiredListenAddr(e) => {
                self.listen_addrs.retain(|a| a != e.addr);
                self.own_record = None;
            }
            _ => {}
        }
        self.inner.on_swarm_event(event);
        self.wake();
    }

    fn on_connection_handler_event(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.inner
            .on_connection_handler_event(peer_id, connection_id, event);
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        loop {
            // Local work first: queued events, then what is due, then the inner behaviours.
            if let Some(event) = self.events.pop_front() {
                return Poll::Ready(event);
            }
            let now = Instant::now();
            self.on_tick(now);
            if !self.events.is_empty() {
                continue;
            }
            match self.inner.poll(cx) {
                Poll::Ready(ToSwarm::GenerateEvent(event)) => {
                    self.on_inner_event(event, now);
                    continue;
                }
                Poll::Ready(other) => {
                    return Poll::Ready(
                        other.map_out(|_: InnerEvent| {
                            unreachable!("GenerateEvent is matched above")
                        }),
                    );
                }
                Poll::Pending => {}
            }
            if let Some(deadline) = self.next_deadline()
                && self.timer.poll(deadline, now, cx)
            {
                continue;
            }
            self.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
    }
}

/// Whether a failed inbound upgrade broke the protocol (bytes that multistream-select or Noise
/// cannot decode: an `InvalidData` I/O error or a Noise error other than I/O), rather than timing
/// out or being cut: Octez greylists the former (`Decipher_error`, `Decoding_error`, ...), not
/// the latter (`Canceled`).
fn is_protocol_violation(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::InvalidData => return true,
                std::io::ErrorKind::TimedOut
                | std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe => return false,
                _ => {}
            }
        }
        // A Noise handshake message that does not decode or verify.
        if e.downcast_ref::<libp2p::noise::Error>()
            .is_some_and(|n| !matches!(n, libp2p::noise::Error::Io(_)))
        {
            return true;
        }
        source = e.source();
    }
    false
}
