//! The resource manager, as go-libp2p's (`p2p/host/resource-manager`): an accountant that
//! components ask before they allocate, with limits per scope.
//!
//! ## Scopes
//!
//! `system` holds everything; `transient` holds connections before their peer is known and
//! streams before their protocol is; each `peer`, `protocol` and `service` has its own scope,
//! and so do `protocol:<p>.peer:<id>` and `service:<s>.peer:<id>`. Each connection and stream
//! is a leaf scope with go's edges (its linearized ancestors): a reservation on a leaf is
//! checked against the leaf and each ancestor once, and applied everywhere or nowhere.
//!
//! | leaf | edges |
//! |---|---|
//! | connection, opened | transient, system (or the allowlisted pair, see below) |
//! | connection, after [`ConnectionScope::set_peer`] | peer, system |
//! | stream, opened ([`ResourceManager::open_stream`]) | peer, transient, system |
//! | stream, after [`StreamScope::set_protocol`] | peer, protocol, protocol-peer, system |
//! | stream, after [`StreamScope::set_service`] | the same plus service, service-peer |
//! | stream of a muxer ([`ResourceManager::open_muxer_stream`], [`StreamCounter::open_stream`]) | peer, system |
//! | stream of a muxer, after [`StreamScope::attach`] (its negotiation read: [`multistream`]) | as after `set_protocol` (and `set_service`) |
//!
//! Moving a leaf (`set_peer`, `set_protocol`, `set_service`) charges its whole usage to the
//! scopes it gains (memory at priority [`Priority::ALWAYS`]) and releases it from those it
//! loses, as go `ReserveForChild`/`ReleaseForChild`.
//!
//! Every reservation is a `#[must_use]` guard released on drop: [`ConnectionScope`],
//! [`StreamScope`], [`Span`] and [`Reservation`]. No counter can go negative, and a parent's
//! usage is the sum of what its children hold. Peer and protocol scopes nothing holds are
//! collected at once (go sweeps every minute); service scopes live forever, as in go.
//!
//! ## Admission of connections
//!
//! [`ResourceManager::open_connection`] checks, in go's order: the rate limit of the source
//! address ([`RateLimits`]), its concurrent connections per IP and subnet ([`IpLimits`]),
//! then the connection scope and its edges. When the normal scopes refuse and the address is
//! on the allowlist, the connection is charged to the allowlisted scopes instead; if it then
//! attaches to a peer the allowlist entry does not name, it moves back to the normal scopes
//! (go `transferAllowedToStandard`).
//!
//! ## Differences from go
//!
//! - One lock for the whole manager, so a [`Stat`] snapshot adds up (go's may not).
//! - Per-IP limits and rate limits can be disabled (go GH#3431), share the error type, and are
//!   counted in the blocked metrics. An allowlisted connection stays counted per IP.
//! - A [`Reservation`] holds its scope, so memory reserved on a protocol scope is never lost
//!   to the collection of the scope (go's GC ignores memory).
//! - Endpoints without an IP address (`/dns`, relayed without an IP) skip the per-IP and rate
//!   limits; go puts them all in one shared bucket.
//! - Limits can be replaced at run time ([`ResourceManager::set_limits`]); live scopes take
//!   the new values at once.

mod allowlist;
mod connections;
mod counts;
mod distribution;
mod guard;
pub mod handshakes;
mod ip;
mod json;
mod limit;
pub mod multistream;
mod rate;
mod scope;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::sync::{
    Arc, Mutex, MutexGuard,
    atomic::{AtomicBool, Ordering},
};
use std::time::Instant;

use ipnet::IpNet;
use libp2p_identity::PeerId;
use multiaddr::Multiaddr;

pub use self::allowlist::AllowlistError;
pub use self::connections::{Connections, uses_fd};
pub use self::counts::{CounterId, StreamCounter};
pub use self::distribution::{
    Distribution, PEER_COUNT_BUCKETS, PEER_MEMORY_BUCKETS, PeerDistributions,
};
pub use self::guard::{ConnectionScope, Reservation, ResourceScope, ScopeView, Span, StreamScope};
pub use self::ip::{IpLimits, PrefixLimit, SubnetLimit};
pub use self::json::LimitsError;
pub use self::limit::{
    BaseLimit, LimitConfig, LimitIncrease, Limits, ScaledLimit, ScalingLimitConfig, UNLIMITED,
};
pub use self::rate::{Rate, RateLimits, SubnetRate};
pub use self::scope::ScopeStat;

use self::allowlist::Allowlist;
use self::guard::Handle;
use self::ip::IpLimiter;
use self::rate::ConnRateLimiter;
use self::scope::{Accountant, ScopeId};

/// The direction of a connection or stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Opened by the remote.
    Inbound,
    /// Opened by us.
    Outbound,
}

impl Direction {
    /// `"inbound"` or `"outbound"`, as go's metric labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// The priority of a memory reservation (go `ReservationPriority*`): a reservation at priority
/// `p` succeeds while usage stays at or below `(1 + p) * limit / 256` of each scope it charges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Priority(pub u8);

impl Priority {
    /// Up to 102/256 (about 40 %) of the limit.
    pub const LOW: Priority = Priority(101);
    /// Up to 153/256 (about 60 %) of the limit.
    pub const MEDIUM: Priority = Priority(152);
    /// Up to 204/256 (about 80 %) of the limit.
    pub const HIGH: Priority = Priority(203);
    /// Up to the whole limit.
    pub const ALWAYS: Priority = Priority(255);
}

/// A resource a scope counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    /// Memory, in bytes.
    Memory,
    /// Inbound streams.
    InboundStream,
    /// Outbound streams.
    OutboundStream,
    /// Streams in both directions.
    Stream,
    /// Inbound connections.
    InboundConnection,
    /// Outbound connections.
    OutboundConnection,
    /// Connections in both directions.
    Connection,
    /// File descriptors.
    FileDescriptor,
}

impl Resource {
    /// The metric label: `memory`, `stream`, `connection` or `fd` (go's).
    pub fn label(&self) -> &'static str {
        match self {
            Resource::Memory => "memory",
            Resource::InboundStream | Resource::OutboundStream | Resource::Stream => "stream",
            Resource::InboundConnection | Resource::OutboundConnection | Resource::Connection => {
                "connection"
            }
            Resource::FileDescriptor => "fd",
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Resource::Memory => "memory",
            Resource::InboundStream => "inbound stream",
            Resource::OutboundStream => "outbound stream",
            Resource::Stream => "stream",
            Resource::InboundConnection => "inbound connection",
            Resource::OutboundConnection => "outbound connection",
            Resource::Connection => "connection",
            Resource::FileDescriptor => "file descriptor",
        })
    }
}

/// A scope refused a reservation (go `ErrStreamOrConnLimitExceeded`/`ErrMemoryLimitExceeded`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitExceeded {
    path: Vec<String>,
    resource: Resource,
    current: u64,
    attempted: u64,
    limit: u64,
    priority: Option<Priority>,
}

impl LimitExceeded {
    /// The scope asked, then the scope that refused if it is another (`["stream-12",
    /// "transient"]`).
    pub fn scopes(&self) -> &[String] {
        &self.path
    }
    /// The resource refused.
    pub fn resource(&self) -> Resource {
        self.resource
    }
    /// Usage of the refusing scope before the attempt.
    pub fn current(&self) -> u64 {
        self.current
    }
    /// The amount asked.
    pub fn attempted(&self) -> u64 {
        self.attempted
    }
    /// The refusing scope's limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }
    /// The priority, for memory.
    pub fn priority(&self) -> Option<Priority> {
        self.priority
    }
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.path {
            write!(f, "{s}: ")?;
        }
        write!(
            f,
            "cannot reserve {}: resource limit exceeded",
            self.resource
        )
    }
}

impl std::error::Error for LimitExceeded {}

/// Errors of the resource manager. Every refusal of a connection or a stream is one of these,
/// so it can be downcast from libp2p's `ConnectionDenied`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A scope's limit refused the reservation
    /// (`stream-12: transient: cannot reserve inbound stream: resource limit exceeded`).
    #[error(transparent)]
    LimitExceeded(Box<LimitExceeded>),
    /// The scope was closed (go `ErrResourceScopeClosed`).
    #[error("{scope}: resource scope closed")]
    ScopeClosed {
        /// The closed scope.
        scope: String,
    },
    /// Too many concurrent connections from one IP address or subnet.
    #[error("connections per IP limit exceeded for {ip}: at most {limit} from {network}")]
    IpLimit {
        /// The remote address.
        ip: IpAddr,
        /// The full network.
        network: IpNet,
        /// Its limit.
        limit: u64,
    },
    /// Too many new connections from one IP address or subnet lately.
    #[error("rate limit exceeded for {ip} ({})", network.map_or("global".to_owned(), |n| n.to_string()))]
    RateLimited {
        /// The remote address.
        ip: IpAddr,
        /// The network whose bucket is empty; `None` for the global bucket.
        network: Option<IpNet>,
    },
    /// The scope is already attached (to a peer, a protocol or a service).
    #[error("{scope}: already attached to a {what}")]
    AlreadyAttached {
        /// The scope.
        scope: String,
        /// `peer`, `protocol` or `service`.
        what: &'static str,
    },
    /// A service was set on a stream with no protocol (go: "stream scope not attached to a
    /// protocol").
    #[error("{scope}: not attached to a protocol")]
    NoProtocol {
        /// The stream's scope.
        scope: String,
    },
    /// The remote proposed more protocols on one stream than the muxer reads
    /// ([`multistream::MAX_PROPOSALS`]); the stream is reset.
    #[error(
        "{scope}: the remote proposed more than {} protocols",
        multistream::MAX_PROPOSALS
    )]
    TooManyProposals {
        /// The stream's scope.
        scope: String,
    },
    /// A configuration value is invalid.
    #[error("invalid resource manager setting `{field}`: {reason}")]
    Config {
        /// The setting.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    /// True for refusals that may succeed later (go's `Temporary()`): limits, per-IP limits
    /// and rate limits.
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            Error::LimitExceeded(_) | Error::IpLimit { .. } | Error::RateLimited { .. }
        )
    }
}

/// The service of identify's protocols (go-libp2p `identify.ServiceName`).
pub const IDENTIFY_SERVICE: &str = "libp2p.identify";
/// The service of ping's protocol (go-libp2p `ping.ServiceName`).
pub const PING_SERVICE: &str = "libp2p.ping";
/// The service of Peerage's peer exchange.
pub const PEX_SERVICE: &str = "peerage.pex";

/// identify's protocols: `/ipfs/id/1.0.0` and `/ipfs/id/push/1.0.0`.
pub const IDENTIFY_PROTOCOLS: [&str; 2] = ["/ipfs/id/1.0.0", "/ipfs/id/push/1.0.0"];
/// ping's protocol.
pub const PING_PROTOCOL: &str = "/ipfs/ping/1.0.0";
/// Peerage's peer-exchange protocol.
pub const PEX_PROTOCOL: &str = "/peerage/pex/1.0.0";

/// Settings of a [`ResourceManager`].
#[derive(Debug, Clone)]
pub struct Config {
    limits: LimitConfig,
    allowlist: Vec<Multiaddr>,
    ip_limits: IpLimits,
    rate_limits: RateLimits,
    services: BTreeMap<String, String>,
}

impl Default for Config {
    fn default() -> Self {
        let services = IDENTIFY_PROTOCOLS
            .iter()
            .map(|p| (*p, IDENTIFY_SERVICE))
            .chain([(PING_PROTOCOL, PING_SERVICE), (PEX_PROTOCOL, PEX_SERVICE)])
            .map(|(p, s)| (p.to_owned(), s.to_owned()))
            .collect();
        Config {
            limits: LimitConfig::default(),
            allowlist: Vec::new(),
            ip_limits: IpLimits::default(),
            rate_limits: RateLimits::default(),
            services,
        }
    }
}

impl Config {
    /// The default settings; see each setter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the limits. Default: [`LimitConfig::default`] (go's defaults at their base values;
    /// a node should scale them to its machine).
    pub fn with_limits(mut self, limits: LimitConfig) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the allowlist: `/ip4/..`, `/ip6/..`, optionally `/ipcidr/<len>`, optionally
    /// `/p2p/<id>` (go `WithAllowlistedMultiaddrs`). Default: empty.
    pub fn with_allowlist(mut self, addrs: impl IntoIterator<Item = Multiaddr>) -> Self {
        self.allowlist = addrs.into_iter().collect();
        self
    }

    /// Sets the concurrent connection limits per IP and subnet. Default: [`IpLimits::default`].
    pub fn with_ip_limits(mut self, limits: IpLimits) -> Self {
        self.ip_limits = limits;
        self
    }

    /// Sets the connection rate limits. Default: [`RateLimits::default`].
    pub fn with_rate_limits(mut self, limits: RateLimits) -> Self {
        self.rate_limits = limits;
        self
    }

    /// Names the service of `protocol`: a stream attached to the protocol
    /// ([`StreamScope::attach`], as the muxer does once multistream-select has negotiated it)
    /// is attached to the service too, so that the `Service`, `ServiceDefault`, `ServicePeer`
    /// and `ServicePeerDefault` limits apply (go-libp2p's services call `SetService`
    /// themselves). Default: identify's two protocols in [`IDENTIFY_SERVICE`], ping's in
    /// [`PING_SERVICE`] and peer exchange's in [`PEX_SERVICE`]. An empty `service` removes the
    /// protocol's entry.
    pub fn with_service(mut self, protocol: &str, service: &str) -> Self {
        if service.is_empty() {
            self.services.remove(protocol);
        } else {
            self.services
                .insert(protocol.to_owned(), service.to_owned());
        }
        self
    }

    /// The limits.
    pub fn limits(&self) -> &LimitConfig {
        &self.limits
    }

    /// The service of each protocol that has one.
    pub fn services(&self) -> &BTreeMap<String, String> {
        &self.services
    }
}

struct State {
    acct: Accountant,
    allowlist: Allowlist,
    ip: IpLimiter,
    rate: ConnRateLimiter,
    /// The service of each protocol that has one.
    services: HashMap<String, String>,
    counts: counts::Counts,
    /// Streams whose protocol the muxer could not learn.
    unattributed_streams: u64,
}

impl State {
    fn count_blocked(&mut self, class: &'static str, dir: Direction) {
        *self
            .acct
            .blocked
            .entry((class, Some(dir), Resource::Connection, None))
            .or_default() += 1;
    }
}

/// The resource manager: cheap to clone, shared by the swarm's admission hooks, the muxer and
/// the application.
#[derive(Clone)]
pub struct ResourceManager {
    /// One allocation, so that a clone (every reservation holds one) is one reference count.
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Set when a claimed counter's count changed: the node reads the counts on each poll of
    /// its behaviour, and takes the lock only then.
    counts_changed: Arc<AtomicBool>,
}

impl fmt::Debug for ResourceManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceManager").finish_non_exhaustive()
    }
}

impl ResourceManager {
    /// A manager with `config`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming `allowlist` for an entry that is not an IP address or network
    /// with an optional peer, or `rate_limits` for a negative or infinite rate or an empty
    /// burst.
    pub fn new(config: Config) -> Result<Self, Error> {
        config
            .rate_limits
            .validate()
            .map_err(|reason| Error::Config {
                field: "rate_limits",
                reason,
            })?;
        let mut allowlist = Allowlist::default();
        for a in &config.allowlist {
            allowlist.add(a).map_err(|e| Error::Config {
                field: "allowlist",
                reason: e.to_string(),
            })?;
        }
        let mut ip = IpLimiter::new(config.ip_limits);
        ip.set_allowlisted(
            allowlist.networks(),
            config.limits.allowlisted_system().conns,
        );
        let counts = counts::Counts::default();
        let counts_changed = counts.changed_flag();
        Ok(ResourceManager {
            shared: Arc::new(Shared {
                counts_changed,
                state: Mutex::new(State {
                    acct: Accountant::new(config.limits),
                    allowlist,
                    ip,
                    rate: ConnRateLimiter::new(&config.rate_limits),
                    services: config.services.into_iter().collect(),
                    counts,
                    unattributed_streams: 0,
                }),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic under the lock leaves counters that are still consistent (every update is
        // applied whole), so a poisoned lock is taken over.
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a connection from or to `endpoint` (go `OpenConnection`); `usefd` if it takes a
    /// file descriptor (TCP does, QUIC does not). Checks the rate limit, then the per-IP limit,
    /// then the connection's scopes (transient and system), falling back to the allowlisted
    /// scopes for an allowlisted address.
    ///
    /// # Errors
    ///
    /// [`Error::RateLimited`], [`Error::IpLimit`] or [`Error::LimitExceeded`].
    pub fn open_connection(
        &self,
        dir: Direction,
        usefd: bool,
        endpoint: &Multiaddr,
        now: Instant,
    ) -> Result<ConnectionScope, Error> {
        let ip = allowlist::ip_of(endpoint);
        let mut s = self.lock();
        let mut nets = Vec::new();
        if let Some(ip) = ip {
            if let Err(network) = s.rate.allow(ip, now) {
                s.count_blocked("rate-limit", dir);
                tracing::debug!(target: "rcmgr", %ip, ?network, "blocked connection: rate limit");
                return Err(Error::RateLimited { ip, network });
            }
            nets = s.ip.add(ip).map_err(|(network, limit)| {
                s.count_blocked("ip-limit", dir);
                tracing::debug!(target: "rcmgr", %ip, %network, limit, "blocked connection: per-IP limit");
                Error::IpLimit { ip, network, limit }
            })?;
        }
        let stat = ScopeStat::conn(dir, usefd);
        let kind = s.acct.next_conn_kind();
        let edges = vec![s.acct.transient, s.acct.system];
        let id = s.acct.create(kind.clone(), edges, None);
        if let Err(e) = s.acct.reserve(id, &stat, Priority::ALWAYS, Some(dir)) {
            s.acct.done(id);
            let id = match ip.filter(|ip| s.allowlist.allowed(*ip)) {
                Some(_) => {
                    let edges = vec![s.acct.allowlisted_transient, s.acct.allowlisted_system];
                    let id = s.acct.create(kind, edges, None);
                    match s.acct.reserve(id, &stat, Priority::ALWAYS, Some(dir)) {
                        Ok(()) => Some(id),
                        Err(_) => {
                            s.acct.done(id);
                            None
                        }
                    }
                }
                None => None,
            };
            let Some(id) = id else {
                s.ip.remove(&nets);
                return Err(e);
            };
            s.acct.scope_mut(id).allowlisted = true;
            return Ok(ConnectionScope {
                handle: Handle {
                    mgr: self.clone(),
                    id,
                },
                ip,
                nets,
            });
        }
        Ok(ConnectionScope {
            handle: Handle {
                mgr: self.clone(),
                id,
            },
            ip,
            nets,
        })
    }

    /// Opens a stream with `peer` (go `OpenStream`), in the peer, transient and system scopes
    /// until [`StreamScope::set_protocol`].
    ///
    /// # Errors
    ///
    /// [`Error::LimitExceeded`].
    pub fn open_stream(&self, peer: PeerId, dir: Direction) -> Result<StreamScope, Error> {
        let mut s = self.lock();
        let transient = s.acct.transient;
        self.open_stream_in(&mut s, peer, dir, Some(transient))
    }

    /// Opens a stream for a muxer, which never learns the stream's protocol: the stream is
    /// counted in the peer and system scopes only, never in transient (whose small limits are
    /// meant for streams about to negotiate).
    ///
    /// # Errors
    ///
    /// [`Error::LimitExceeded`].
    pub fn open_muxer_stream(&self, peer: PeerId, dir: Direction) -> Result<StreamScope, Error> {
        let mut s = self.lock();
        self.open_stream_in(&mut s, peer, dir, None)
    }

    /// A counter of the open streams of a new connection with `peer` at `remote` (the muxer's
    /// end of the wiring; see [`StreamCounter::open_stream`]).
    pub fn stream_counter(&self, peer: PeerId, remote: Multiaddr) -> StreamCounter {
        let id = self.lock().counts.register(peer, remote);
        StreamCounter {
            mgr: self.clone(),
            id,
            peer,
        }
    }

    /// Claims the counter of the connection with `peer` at `remote`, once it is established
    /// (the node's end): its counts are reported by [`take_stream_counts`](Self::take_stream_counts)
    /// from now on, starting with the current one if not zero. `None` if no muxer registered one.
    pub fn claim_stream_counter(&self, peer: PeerId, remote: &Multiaddr) -> Option<CounterId> {
        self.lock().counts.claim(peer, remote)
    }

    /// Appends to `out` the claimed counters whose count changed since the last call, with the
    /// count now (each once).
    pub fn take_stream_counts(&self, out: &mut Vec<(CounterId, u32)>) {
        // A change made after the swap is taken now or at the next call, never lost.
        if self.shared.counts_changed.swap(false, Ordering::AcqRel) {
            self.lock().counts.take(out);
        }
    }

    fn open_stream_in(
        &self,
        s: &mut State,
        peer: PeerId,
        dir: Direction,
        transient: Option<ScopeId>,
    ) -> Result<StreamScope, Error> {
        let peer_scope = s.acct.peer_scope(peer);
        let edges = [Some(peer_scope), transient, Some(s.acct.system)]
            .into_iter()
            .flatten()
            .collect();
        let kind = s.acct.next_stream_kind();
        let id = s.acct.create(kind, edges, None);
        s.acct.scope_mut(id).peer = Some(peer);
        if let Err(e) = s
            .acct
            .reserve(id, &ScopeStat::stream(dir), Priority::ALWAYS, Some(dir))
        {
            s.acct.done(id);
            return Err(e);
        }
        Ok(StreamScope {
            handle: Handle {
                mgr: self.clone(),
                id,
            },
        })
    }

    fn view<R>(
        &self,
        get: impl FnOnce(&mut Accountant) -> ScopeId,
        f: impl FnOnce(&ScopeView) -> R,
    ) -> R {
        let id = {
            let mut s = self.lock();
            let id = get(&mut s.acct);
            s.acct.incref(id);
            id
        };
        let view = ScopeView {
            handle: Handle {
                mgr: self.clone(),
                id,
            },
        };
        let r = f(&view);
        self.lock().acct.decref(id);
        r
    }

    /// Runs `f` on the system scope (go `ViewSystem`).
    pub fn view_system<R>(&self, f: impl FnOnce(&ScopeView) -> R) -> R {
        self.view(|a| a.system, f)
    }

    /// Runs `f` on the transient scope (go `ViewTransient`).
    pub fn view_transient<R>(&self, f: impl FnOnce(&ScopeView) -> R) -> R {
        self.view(|a| a.transient, f)
    }

    /// Runs `f` on a service's scope, created if needed (go `ViewService`).
    ///
    /// ```
    /// use peerage_core::rcmgr::{Config, Priority, ResourceManager, ResourceScope};
    ///
    /// let rcmgr = ResourceManager::new(Config::default()).unwrap();
    /// // A service reserves a buffer for as long as it keeps the guard.
    /// let buffer = rcmgr
    ///     .view_service("my-service", |scope| scope.reserve_memory(1 << 20, Priority::HIGH))
    ///     .unwrap();
    /// assert_eq!(rcmgr.stat().system.usage.memory, 1 << 20);
    /// drop(buffer);
    /// assert_eq!(rcmgr.stat().system.usage.memory, 0);
    /// ```
    pub fn view_service<R>(&self, service: &str, f: impl FnOnce(&ScopeView) -> R) -> R {
        self.view(|a| a.service_scope(service), f)
    }

    /// Runs `f` on a protocol's scope, created if needed (go `ViewProtocol`).
    pub fn view_protocol<R>(&self, protocol: &str, f: impl FnOnce(&ScopeView) -> R) -> R {
        self.view(|a| a.protocol_scope(protocol), f)
    }

    /// Runs `f` on a peer's scope, created if needed (go `ViewPeer`).
    pub fn view_peer<R>(&self, peer: PeerId, f: impl FnOnce(&ScopeView) -> R) -> R {
        self.view(|a| a.peer_scope(peer), f)
    }

    /// The current limits.
    pub fn limits(&self) -> LimitConfig {
        self.lock().acct.limits.clone()
    }

    /// Replaces the limits. Live scopes take their new limits at once; usage above a lowered
    /// limit stays until released, and only new reservations are refused.
    pub fn set_limits(&self, limits: LimitConfig) {
        let mut s = self.lock();
        let conns = limits.allowlisted_system().conns;
        let State {
            acct,
            allowlist,
            ip,
            ..
        } = &mut *s;
        ip.set_allowlisted(allowlist.networks(), conns);
        acct.set_limits(limits);
    }

    /// Adds an allowlist entry at run time (go `Allowlist.Add`).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `addr` is not an IP address or network with an optional peer.
    pub fn allow(&self, addr: &Multiaddr) -> Result<(), Error> {
        let mut s = self.lock();
        let State {
            acct,
            allowlist,
            ip,
            ..
        } = &mut *s;
        allowlist.add(addr).map_err(|e| Error::Config {
            field: "allowlist",
            reason: e.to_string(),
        })?;
        ip.set_allowlisted(allowlist.networks(), acct.limits.allowlisted_system().conns);
        Ok(())
    }

    /// Removes an allowlist entry (go `Allowlist.Remove`); returns whether it was there.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `addr` is not an IP address or network with an optional peer.
    pub fn disallow(&self, addr: &Multiaddr) -> Result<bool, Error> {
        let mut s = self.lock();
        let State {
            acct,
            allowlist,
            ip,
            ..
        } = &mut *s;
        let removed = allowlist.remove(addr).map_err(|e| Error::Config {
            field: "allowlist",
            reason: e.to_string(),
        })?;
        ip.set_allowlisted(allowlist.networks(), acct.limits.allowlisted_system().conns);
        Ok(removed)
    }

    /// True if `addr`'s IP address is on the allowlist, whatever the peer (go `Allowed`).
    pub fn is_allowlisted(&self, addr: &Multiaddr) -> bool {
        allowlist::ip_of(addr).is_some_and(|ip| self.lock().allowlist.allowed(ip))
    }

    /// True if `peer` at `addr` is on the allowlist: an entry holds `addr`'s IP with no peer, or
    /// with `peer` (go `AllowedPeerAndMultiaddr`).
    pub fn is_allowlisted_peer(&self, peer: &PeerId, addr: &Multiaddr) -> bool {
        allowlist::ip_of(addr).is_some_and(|ip| self.lock().allowlist.allowed_peer(*peer, ip))
    }

    /// A snapshot of every long-lived scope's usage and limits, with the blocked counts. One
    /// lock, so the numbers add up. It names every peer scope: for metrics, [`summary`]
    /// reads the same without walking them.
    ///
    /// [`summary`]: Self::summary
    pub fn stat(&self) -> Stat {
        let s = self.lock();
        let a = &s.acct;
        let snap = |id: ScopeId| snapshot(a, id);
        Stat {
            system: snap(a.system),
            transient: snap(a.transient),
            allowlisted_system: snap(a.allowlisted_system),
            allowlisted_transient: snap(a.allowlisted_transient),
            services: a
                .services
                .iter()
                .map(|(k, &id)| (k.clone(), snap(id)))
                .collect(),
            protocols: a
                .protocols
                .iter()
                .map(|(k, &id)| (k.clone(), snap(id)))
                .collect(),
            peers: a
                .peers
                .iter()
                .map(|(k, &id)| (k.to_base58(), snap(id)))
                .collect(),
            blocked: blocked_counts(a),
            allowlist_entries: s.allowlist.len(),
            ip_networks: s.ip.tracked(),
            rate_buckets: s.rate.tracked(),
            unattributed_streams: s.unattributed_streams,
        }
    }

    /// What the metrics read at each scrape, in one lock and without walking the peer scopes:
    /// the system, transient and protocol scopes, the blocked counts, and the peer scopes by
    /// usage ([`PeerDistributions`], kept as their usage changes). Its cost grows with the
    /// protocols and the kinds of refusal, not with the peers or the connections.
    pub fn summary(&self) -> Summary {
        let s = self.lock();
        let a = &s.acct;
        Summary {
            system: snapshot(a, a.system),
            transient: snapshot(a, a.transient),
            protocols: a
                .protocols
                .iter()
                .map(|(k, &id)| (k.clone(), snapshot(a, id)))
                .collect(),
            blocked: blocked_counts(a),
            unattributed_streams: s.unattributed_streams,
            peers: a.peer_distributions.clone(),
        }
    }

    #[cfg(test)]
    fn with_acct<R>(&self, f: impl FnOnce(&mut Accountant) -> R) -> R {
        f(&mut self.lock().acct)
    }
}

/// Scope `id`'s usage and limits; it must be live.
fn snapshot(a: &Accountant, id: ScopeId) -> ScopeSnapshot {
    let sc = a.scope(id).expect("live scope");
    ScopeSnapshot {
        usage: sc.stat,
        limit: sc.limit,
    }
}

/// The refusals so far, in order of scope, direction, resource and protocol.
fn blocked_counts(a: &Accountant) -> Vec<BlockedCount> {
    let mut blocked: Vec<BlockedCount> = a
        .blocked
        .iter()
        .map(
            |((scope, direction, resource, protocol), &count)| BlockedCount {
                scope,
                direction: *direction,
                resource: *resource,
                protocol: protocol.clone(),
                count,
            },
        )
        .collect();
    blocked.sort_by(|a, b| {
        (a.scope, a.direction, a.resource, &a.protocol).cmp(&(
            b.scope,
            b.direction,
            b.resource,
            &b.protocol,
        ))
    });
    blocked
}

/// Usage and limits of one scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ScopeSnapshot {
    /// What the scope holds.
    pub usage: ScopeStat,
    /// Its limits.
    pub limit: BaseLimit,
}

/// Refusals counted by the scope class that refused (`system`, `transient`, `peer`,
/// `protocol`, ..., or `ip-limit` and `rate-limit`), direction, resource and, for a stream
/// refused its protocol or service, the protocol.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BlockedCount {
    /// The class of the scope that refused.
    pub scope: &'static str,
    /// The direction, if the resource has one.
    pub direction: Option<Direction>,
    /// The resource.
    pub resource: Resource,
    /// The protocol a stream was being attached to ([`StreamScope::set_protocol`],
    /// [`StreamScope::set_service`], [`StreamScope::attach`]), if that was the refusal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Refusals since start.
    pub count: u64,
}

/// What [`ResourceManager::summary`] reads for the metrics: no peer is named.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// The system scope.
    pub system: ScopeSnapshot,
    /// The transient scope.
    pub transient: ScopeSnapshot,
    /// Live protocol scopes by protocol.
    pub protocols: BTreeMap<String, ScopeSnapshot>,
    /// Refusals so far.
    pub blocked: Vec<BlockedCount>,
    /// As [`Stat::unattributed_streams`].
    pub unattributed_streams: u64,
    /// The live peer scopes by connections, streams and memory.
    pub peers: PeerDistributions,
}

/// A snapshot of the manager (go `ResourceManagerStat`), for the admin API.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stat {
    /// The system scope.
    pub system: ScopeSnapshot,
    /// The transient scope.
    pub transient: ScopeSnapshot,
    /// The allowlisted system scope.
    pub allowlisted_system: ScopeSnapshot,
    /// The allowlisted transient scope.
    pub allowlisted_transient: ScopeSnapshot,
    /// Service scopes by name.
    pub services: BTreeMap<String, ScopeSnapshot>,
    /// Live protocol scopes by protocol.
    pub protocols: BTreeMap<String, ScopeSnapshot>,
    /// Live peer scopes by base58 peer ID.
    pub peers: BTreeMap<String, ScopeSnapshot>,
    /// Refusals so far.
    pub blocked: Vec<BlockedCount>,
    /// Allowlist entries.
    pub allowlist_entries: usize,
    /// IP networks with connections counted by the per-IP limits.
    pub ip_networks: usize,
    /// Rate-limit buckets held (not full).
    pub rate_buckets: usize,
    /// Streams whose protocol the muxer could not learn from their negotiation since start
    /// (see [`multistream`]): they stay in their peer and system scopes only.
    pub unattributed_streams: u64,
}
