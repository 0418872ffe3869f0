//! The configuration of the Peerage [`Behaviour`](crate::Behaviour).

use std::time::Duration;

use peerage_core::{
    addrbook,
    maintenance::{self, Bounds},
    node,
    peerstore::Peerstore,
    pool,
};

#[cfg(feature = "rcmgr")]
use crate::rcmgr;
use crate::{connmgr, identify};

/// Configuration of the Peerage [`Behaviour`](crate::Behaviour).
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) node: node::Config,
    pub(crate) peerstore: Option<Peerstore>,
    pub(crate) connmgr: Option<connmgr::Config>,
    #[cfg(feature = "rcmgr")]
    pub(crate) rcmgr: Option<rcmgr::ResourceManager>,
    #[cfg(feature = "rcmgr")]
    pub(crate) handshakes: Option<rcmgr::HandshakeGuard>,
    /// Peerage's identify, `None` when the application runs its own.
    pub(crate) identify: Option<identify::Config>,
    /// Ping's interval, `None` when the application runs its own ping.
    pub(crate) ping_interval: Option<Duration>,
    pub(crate) rng_seed: Option<u64>,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Option<ProtocolMetrics>,
    #[cfg(feature = "metrics")]
    pub(crate) identify_metrics: Option<crate::metrics::Identify>,
}

/// libp2p-metrics' recorder, shared with whoever records the swarm's events.
#[cfg(feature = "metrics")]
#[derive(Clone)]
pub(crate) struct ProtocolMetrics(pub(crate) std::sync::Arc<libp2p::metrics::Metrics>);

#[cfg(feature = "metrics")]
impl std::fmt::Debug for ProtocolMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("libp2p::metrics::Metrics")
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            node: node::Config::default(),
            peerstore: None,
            connmgr: None,
            #[cfg(feature = "rcmgr")]
            rcmgr: None,
            #[cfg(feature = "rcmgr")]
            handshakes: None,
            identify: Some(identify::Config::default()),
            ping_interval: Some(Duration::from_secs(15)),
            rng_seed: None,
            #[cfg(feature = "metrics")]
            metrics: None,
            #[cfg(feature = "metrics")]
            identify_metrics: None,
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
        self.node = self.node.with_bounds(bounds);
        self
    }
    /// Keep an eclipse-resistant address book (Bitcoin Core's addrman: new and tried tables,
    /// one automatic outbound connection per network group, an outbound target, inbound
    /// eviction, feelers, anchors), [`node::Config::with_addrbook`]. `None` (the pool's
    /// single table of points, as Octez) by default.
    pub fn with_addrbook(mut self, config: Option<addrbook::Config>) -> Self {
        self.node = self.node.with_addrbook(config);
        self
    }
    /// With an address book, the automatic outbound connections kept
    /// ([`node::Config::with_outbound_target`]): 8 by default.
    pub fn with_outbound_target(mut self, n: usize) -> Self {
        self.node = self.node.with_outbound_target(n);
        self
    }
    /// With an address book, the most inbound connections, beyond which a newcomer evicts an
    /// inbound peer ([`node::Config::with_max_inbound`]): by default the bounds' high
    /// threshold minus the outbound target.
    pub fn with_max_inbound(mut self, n: Option<usize>) -> Self {
        self.node = self.node.with_max_inbound(n);
        self
    }
    /// With an address book, the most inbound connections from one public network group
    /// ([`node::Config::with_max_inbound_per_group`]): by default ⌈max inbound / 16⌉.
    pub fn with_max_inbound_per_group(mut self, n: Option<usize>) -> Self {
        self.node = self.node.with_max_inbound_per_group(n);
        self
    }
    /// How addresses are grouped ([`node::Config::with_grouping`]): IPv4 /16, IPv6 /32 by
    /// default.
    pub fn with_grouping(mut self, grouping: addrbook::Grouping) -> Self {
        self.node = self.node.with_grouping(grouping);
        self
    }
    /// The whole maintenance configuration. [`maintenance::Config::default`] by default.
    pub fn with_maintenance(mut self, config: maintenance::Config) -> Self {
        self.node = self.node.with_maintenance(config);
        self
    }
    /// The pool configuration. [`pool::Config::default`] by default.
    pub fn with_pool(mut self, config: pool::Config) -> Self {
        self.node = self.node.with_pool(config);
        self
    }
    /// Private mode (Octez `--private-mode`): only trusted points are dialed and only trusted
    /// peers admitted; the node neither asks for points nor answers requests for them (it does
    /// not offer the peer-exchange protocol, so its peers do not advertise it). `false` by
    /// default. Sets the pool configuration's flag.
    pub fn with_private_mode(mut self, private: bool) -> Self {
        self.node = self.node.with_private_mode(private);
        self
    }
    /// Whether the maintenance runs (Octez `--disable-p2p-maintenance` turns it off). `true` by
    /// default; [`Behaviour::activate`](crate::Behaviour::activate) starts it later.
    pub fn with_maintenance_enabled(mut self, enabled: bool) -> Self {
        self.node = self.node.with_maintenance_enabled(enabled);
        self
    }
    /// A peerstore shared with the application. A new empty one by default.
    pub fn with_peerstore(mut self, peerstore: Peerstore) -> Self {
        self.peerstore = Some(peerstore);
        self
    }
    /// The connection manager's configuration. By default, derived from the bounds as
    /// the node maps them (Octez's `expected` and `max` as go's watermarks): low watermark = `expected`, high watermark = `max`, the
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
        let bounds = self.node.bounds();
        connmgr::Config::new()
            .with_watermarks(bounds.expected(), bounds.max())
            .with_grace_period(self.node.maintenance().grace_period())
    }
    /// The connection manager's configuration in use: the one given, else the derived one; a
    /// high watermark above the resource manager's system connection limit is logged.
    pub(crate) fn connmgr_in_use(&self) -> connmgr::Config {
        let config = self
            .connmgr
            .clone()
            .unwrap_or_else(|| self.default_connmgr());
        #[cfg(feature = "rcmgr")]
        if let Some(rm) = &self.rcmgr {
            let limit = usize::try_from(rm.limits().system().conns).unwrap_or(usize::MAX);
            if let Err(e) = config.check_limit(limit) {
                tracing::warn!("{e} (the resource manager's system connection limit)");
            }
        }
        config
    }
    /// A resource manager admitting every connection, in the node machine's admission order
    /// (the same checks as [`rcmgr::Behaviour`]). None by default. For stream limits, wrap the transport's muxer with the same manager
    /// ([`rcmgr::transport`]). A high watermark above its system connection limit is logged as
    /// a warning (go-libp2p GH#1640); check it with [`connmgr::Config::check_limit`].
    /// With the `rcmgr` feature.
    #[cfg(feature = "rcmgr")]
    pub fn with_resource_manager(mut self, rcmgr: rcmgr::ResourceManager) -> Self {
        self.rcmgr = Some(rcmgr);
        self
    }
    /// The handshake guard of the swarm's transport ([`rcmgr::transport_guarded`]): the IPs it
    /// refuses for stalled handshakes are greylisted in the pool, as garbage senders are, so
    /// that their next connections are refused before they take a resource manager slot.
    /// None by default (the guard refuses them alone, after the slot is taken). With the
    /// `rcmgr` feature.
    #[cfg(feature = "rcmgr")]
    pub fn with_handshake_guard(mut self, guard: rcmgr::HandshakeGuard) -> Self {
        self.handshakes = Some(guard);
        self
    }
    /// The agent version identify announces. `peerage/<crate version>` by default. Turns
    /// Peerage's identify back on after [`without_identify`](Self::without_identify).
    pub fn with_agent_version(mut self, agent: impl Into<String>) -> Self {
        self.identify = Some(self.identify.unwrap_or_default().with_agent_version(agent));
        self
    }
    /// Peerage's identify ([`identify::Config`]: protocol version, agent version, interval).
    /// On by default, with [`identify::Config::default`].
    pub fn with_identify(mut self, config: identify::Config) -> Self {
        self.identify = Some(config);
        self
    }
    /// Runs no identify of Peerage's: for an application that runs its own (rust-libp2p's
    /// `identify::Behaviour`, say), where two would both answer `/ipfs/id/1.0.0`. The
    /// application then hands each message it receives to
    /// [`Behaviour::identified`](crate::Behaviour::identified); without them the machine
    /// never learns a peer's addresses or whether it offers the peer exchange.
    pub fn without_identify(mut self) -> Self {
        self.identify = None;
        self
    }
    /// Interval between pings on a connection. 15 s by default (libp2p ping). Turns Peerage's
    /// ping back on after [`without_ping`](Self::without_ping).
    pub fn with_ping_interval(mut self, d: Duration) -> Self {
        self.ping_interval = Some(d);
        self
    }
    /// Runs no ping of Peerage's: for an application that runs its own. It then hands each
    /// round trip to [`Behaviour::pinged`](crate::Behaviour::pinged), which feeds the
    /// peerstore's latency and eviction's ping protection.
    pub fn without_ping(mut self) -> Self {
        self.ping_interval = None;
        self
    }
    /// How long a refused (nacked) inbound connection stays open so that its peer can ask for
    /// points, if it does not ask sooner. 2 s by default.
    pub fn with_nack_linger(mut self, d: Duration) -> Self {
        self.node = self.node.with_nack_linger(d);
        self
    }
    /// How many nacked connections may be open at once; above it, an inbound connection that
    /// would be nacked is refused outright ([`TooManyConnections`](crate::TooManyConnections)), without points. 20 by
    /// default, as Octez's `max_incoming_connections`, its bound on incoming connections still
    /// being handled. Nacked connections are left out of the connection manager (see
    /// [`connmgr::Behaviour::exclude`]): this is their bound.
    pub fn with_max_nacked(mut self, n: usize) -> Self {
        self.node = self.node.with_max_nacked(n);
        self
    }
    /// Most requests for points in flight at once. 8 by default; see
    /// [`node::Config::with_max_pex_in_flight`].
    pub fn with_max_pex_in_flight(mut self, n: usize) -> Self {
        self.node = self.node.with_max_pex_in_flight(n);
        self
    }
    /// Records the identify and ping events, which stay inside this behaviour, in libp2p-metrics'
    /// `metrics` (`libp2p_identify_*`, `libp2p_ping_*`: round-trip times and failures). Record
    /// the swarm's events (`libp2p_swarm_*`) with the same `metrics`. None by default. With the
    /// `metrics` feature.
    #[cfg(feature = "metrics")]
    pub fn with_metrics(mut self, metrics: std::sync::Arc<libp2p::metrics::Metrics>) -> Self {
        self.metrics = Some(ProtocolMetrics(metrics));
        self
    }
    /// Records identify's events in `metrics`, kept as they arrive, instead of in libp2p-metrics
    /// (see [`metrics::Identify`](crate::metrics::Identify): libp2p-metrics walks every
    /// identified peer at each scrape). None by default: identify's events go to
    /// [`with_metrics`](Self::with_metrics)'s. With the `metrics` feature.
    #[cfg(feature = "metrics")]
    pub fn with_identify_metrics(mut self, metrics: crate::metrics::Identify) -> Self {
        self.identify_metrics = Some(metrics);
        self
    }
    /// Seed of the RNG behind random choices (victims, sampled points, jitter), for
    /// reproducible runs. Seeded from the OS by default.
    pub fn with_rng_seed(mut self, seed: u64) -> Self {
        self.rng_seed = Some(seed);
        self
    }
}
