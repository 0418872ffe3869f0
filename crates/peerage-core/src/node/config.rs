//! The node machine's configuration.

use std::time::Duration;

use crate::{
    addrbook::{self, Grouping},
    maintenance::{self, Bounds},
    pool,
};

/// Configuration of the node [`Machine`](super::Machine).
#[derive(Debug, Clone)]
pub struct Config {
    pub(super) maintenance: maintenance::Config,
    pub(super) pool: pool::Config,
    pub(super) nack_linger: Duration,
    pub(super) max_nacked: usize,
    pub(super) max_pex_in_flight: usize,
    pub(super) maintenance_enabled: bool,
    pub(super) peerstore_grace: Duration,
    pub(super) addrbook: Option<addrbook::Config>,
    pub(super) grouping: Grouping,
    pub(super) feeler_interval: Option<Duration>,
    pub(super) outbound_target: usize,
    pub(super) max_inbound: Option<usize>,
    pub(super) max_inbound_per_group: Option<usize>,
    pub(super) eviction: addrbook::evict::Config,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            maintenance: maintenance::Config::default(),
            pool: pool::Config::default(),
            nack_linger: Duration::from_secs(2),
            max_nacked: 20,
            max_pex_in_flight: 8,
            maintenance_enabled: true,
            peerstore_grace: Duration::from_secs(60),
            addrbook: None,
            grouping: Grouping::new(),
            feeler_interval: Some(Duration::from_secs(120)),
            outbound_target: 8,
            max_inbound: None,
            max_inbound_per_group: None,
            eviction: addrbook::evict::Config::default(),
        }
    }
}

impl Config {
    /// Defaults: Octez's maintenance and pool defaults (bounds 10/50/100), nacked connections
    /// closed after 2 s, at most 20 of them open, at most 8 requests for points in flight, the
    /// maintenance running, a disconnected peer's peerstore entries kept for 1 min.
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
    /// Private mode (Octez `--private-mode`): sets the pool configuration's flag. `false` by
    /// default.
    pub fn with_private_mode(mut self, private: bool) -> Self {
        self.pool = self.pool.with_private_mode(private);
        self
    }
    /// Whether the maintenance runs from the start (Octez `--disable-p2p-maintenance` turns it
    /// off). `true` by default.
    pub fn with_maintenance_enabled(mut self, enabled: bool) -> Self {
        self.maintenance_enabled = enabled;
        self
    }
    /// How long a refused (nacked) inbound connection stays open so that its peer can ask for
    /// points, if it does not ask sooner. 2 s by default.
    pub fn with_nack_linger(mut self, d: Duration) -> Self {
        self.nack_linger = d;
        self
    }
    /// How many nacked connections may be open at once; above it, an inbound connection that
    /// would be nacked is refused outright ([`TooManyConnections`](super::TooManyConnections)),
    /// without points. 20 by default, as Octez's `max_incoming_connections`.
    pub fn with_max_nacked(mut self, n: usize) -> Self {
        self.max_nacked = n;
        self
    }
    /// Most requests for points in flight at once. 8 by default. Octez asks every active
    /// connection at once when it runs out of points; we ask at most this many, each peer at
    /// most once per `time_between_looking_for_peers` (5 s).
    pub fn with_max_pex_in_flight(mut self, n: usize) -> Self {
        self.max_pex_in_flight = n;
        self
    }
    /// How long a peer's keys, protocols, metadata and latency stay in the peerstore after its
    /// last connection closed; then the machine removes them
    /// ([`Store::remove_peer`](crate::peerstore::Store::remove_peer)), leaving its addresses and
    /// signed record to their TTLs. 1 min by default, as go-libp2p's `pstoremanager`
    /// (`gracePeriod`), which checks every `gracePeriod / 2`, as the machine does. Without it
    /// those tables only grow (go-libp2p #715, kubo #9712).
    pub fn with_peerstore_grace(mut self, d: Duration) -> Self {
        self.peerstore_grace = d;
        self
    }

    /// Keep an address book with this configuration (see the
    /// [module docs](super#the-address-book)): answers to requests for points go into it,
    /// and the maintenance dials from it, one automatic outbound connection per network group.
    /// Default: none (the pool's table of known points, as Octez).
    pub fn with_addrbook(mut self, config: Option<addrbook::Config>) -> Self {
        self.addrbook = config;
        self
    }

    /// How addresses are grouped, for the address book and the diversity rules. Default:
    /// IPv4 /16, IPv6 /32, loopback one group ([`Grouping::new`]).
    pub fn with_grouping(mut self, grouping: Grouping) -> Self {
        self.grouping = grouping;
        self
    }

    /// The mean time between feelers (exponentially distributed), or `None` for none.
    /// Default: 2 minutes (Bitcoin Core `FEELER_INTERVAL`). Only with an address book.
    pub fn with_feeler_interval(mut self, mean: Option<Duration>) -> Self {
        self.feeler_interval = mean;
        self
    }

    /// With an address book, the automatic outbound connections the node keeps, dialing from
    /// the book whatever its inbound count, and which a trim does not close (Bitcoin Core's 8
    /// full-relay outbound slots, `MAX_OUTBOUND_FULL_RELAY_CONNECTIONS`). Default: 8, and never
    /// more than the bounds' `min_target` (a small devnet's bounds keep room for inbound).
    pub fn with_outbound_target(mut self, n: usize) -> Self {
        self.outbound_target = n;
        self
    }

    /// With an address book, the most inbound connections: beyond, a newcomer evicts one
    /// ([`addrbook::evict`]). Default: `max_threshold` minus the outbound target, so that the
    /// outbound slots stay free, as Bitcoin Core reserves them.
    pub fn with_max_inbound(mut self, n: Option<usize>) -> Self {
        self.max_inbound = n;
        self
    }

    /// With an address book, the most inbound connections from one public network group
    /// (trusted, protected, allowlisted and already connected peers aside: allowlisted by the
    /// resource manager given to [`Machine::set_resources`](super::Machine::set_resources), an
    /// entry naming the peer or none); a newcomer beyond is nacked. Default: ⌈max inbound / 16⌉, so that 4
    /// groups hold about a quarter of the slots (exactly, when `max_inbound` is a multiple of
    /// 16; with 100 slots, 4 groups hold 28).
    pub fn with_max_inbound_per_group(mut self, n: Option<usize>) -> Self {
        self.max_inbound_per_group = n;
        self
    }

    /// How inbound eviction protects peers. Default: Bitcoin Core's counts
    /// ([`addrbook::evict::Config`]).
    pub fn with_eviction(mut self, config: addrbook::evict::Config) -> Self {
        self.eviction = config;
        self
    }

    /// The outbound target in effect (see [`Config::with_outbound_target`]).
    pub fn outbound_target(&self) -> usize {
        self.outbound_target.min(self.bounds().min_target())
    }

    /// The most inbound connections (see [`Config::with_max_inbound`]).
    pub fn max_inbound(&self) -> usize {
        self.max_inbound.unwrap_or_else(|| {
            self.bounds()
                .max_threshold()
                .saturating_sub(self.outbound_target())
                .max(1)
        })
    }

    /// The most inbound connections per group (see [`Config::with_max_inbound_per_group`]).
    pub fn max_inbound_per_group(&self) -> usize {
        self.max_inbound_per_group
            .unwrap_or_else(|| self.max_inbound().div_ceil(16))
    }

    /// The connection bounds.
    pub fn bounds(&self) -> Bounds {
        self.maintenance.bounds()
    }
    /// The maintenance configuration.
    pub fn maintenance(&self) -> &maintenance::Config {
        &self.maintenance
    }
    /// The pool configuration.
    pub fn pool(&self) -> &pool::Config {
        &self.pool
    }
}
