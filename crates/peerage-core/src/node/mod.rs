//! The node machine: one sans-IO state machine that owns a node's pool, maintenance and
//! peer-exchange policy, and holds its peerstore and a view of its connection manager
//! (quinn-proto's `Endpoint` is the model).
//!
//! Its driver (the libp2p glue, or the simulator) feeds it [`Input`]s with the time, asks it
//! at the two admission points libp2p offers, and carries out the [`Command`]s it returns;
//! [`Machine::poll_timeout`] says when to call [`Machine::handle_timeout`]. It never reads the
//! clock and draws every random choice from the RNG it is given, so the same inputs give the
//! same outputs.
//!
//! # Admission, in order
//!
//! Each rule is evaluated once, and each refusal is a typed [`Refusal`]:
//!
//! 1. pending inbound ([`Machine::admit_pending_inbound`]): the remote IP is banned or
//!    greylisted ([`pool::Error::IpBanned`]); then the resource manager's rate, per-IP and
//!    transient limits ([`Machine::set_resources`], [`Refusal::Resources`]);
//! 2. pending outbound ([`Machine::admit_pending_outbound`]): the peer is banned, or every
//!    address's IP is;
//! 3. established ([`Machine::admit_established`]): the peer is banned or greylisted, the
//!    dialed point expects another peer ID, private mode, room in the peer table (the pool's
//!    [`Pool::accept`] in Octez's order; an inbound IP checked at step 1 is not checked
//!    again); then the nack: an inbound connection that finds `max_threshold` connections,
//!    from a peer neither connected nor trusted, is admitted only to be nacked, or refused
//!    with [`TooManyConnections`] when `max_nacked` nacked connections are open; then the
//!    connection manager's hard cap ([`ConnectionManager::admit`]; trusted peers and nacked
//!    connections are exempt, [`Refusal::HardCap`]); then the resource manager's peer scope
//!    (for an outbound connection, its whole connection scope first, as go-libp2p opens it
//!    only once the dial succeeded; [`Refusal::Resources`]).
//!
//! # Peer exchange
//!
//! Octez's `Bootstrap`/`Advertise` ([`pex`]). The machine asks for points:
//!
//! - a peer it dialed, once its identify arrives: the first request on a new connection, which
//!   is also how a full peer's nack reaches us (Octez sends its points with the `Nack`), goes
//!   ahead of the queue and is not held to the round below;
//! - when the maintenance runs out of candidates, some of its connected peers, each at most
//!   once per `time_between_looking_for_peers` (5 s), those asked longest ago first.
//!
//! It asks only peers whose identify lists [`pex::PROTOCOL`] (before identify, nobody), never
//! a peer whose only connections we nacked, and never more than
//! [`Config::with_max_pex_in_flight`] (8) at once. This differs from Octez, which sends
//! `Bootstrap` to every active connection: a node below its minimum that asked everyone on
//! every cycle sent hundreds of requests in a second, to peers that could not answer (a
//! js-libp2p peer drops a connection that opens unknown protocols early). A request that
//! arrives before identify is still answered; each peer is answered at most once per
//! [`pex::ANSWER_COOLDOWN`] (an earlier request waits; a third is dropped).
//!
//! # The address book
//!
//! With [`Config::with_addrbook`], the machine keeps an eclipse-resistant
//! [`AddrBook`](crate::addrbook::AddrBook) (Bitcoin Core's addrman) and the rules around it,
//! from Bitcoin Core's `net.cpp` and `net_processing.cpp`:
//!
//! - **What goes in**: answers to our requests and the listen addresses a peer *we dialed*
//!   gives for itself, placed by the group of the connection they came over. Each peer's
//!   answers draw on a [`Budget`](crate::addrbook::Budget) (0.1 address a second, at most
//!   1,000; the first request on a connection credited 1,000), and all the answers of one
//!   public network group on another that is never credited. Inbound peers' addresses stay
//!   out (Bitcoin Core PR #8594), and only peers we dialed are asked for points (Bitcoin Core
//!   sends `getaddr` to outbound peers only): an attacker cannot fill the book by connecting
//!   to us. At each feeler tick the outbound peer asked longest ago is asked again, so the
//!   book hears of newcomers.
//! - **What comes out**: the maintenance's candidates are trusted points (outside the book,
//!   at most 4 a round as before), then the anchors, then the book's draws, at most one
//!   automatic outbound connection per public network group. Besides Octez's bounds, the node
//!   keeps an outbound target (8 by default, [`Config::with_outbound_target`]) whatever its
//!   inbound count: it dials from the book ([`TOPUP_DIALS_PER_MISSING`] dials in flight per
//!   missing connection, at most [`MAX_TOPUP_DIALS`]) as soon as an outbound connection ends
//!   or a dial fails, closes at once those that connect once the target is met (surplus,
//!   their addresses marked good as a feeler's), and a trim never closes those outbound peers
//!   while they are at most the target. A round adds automatic
//!   outbound connections beyond the target only as far as `min_target` needs when inbound
//!   peers are lacking.
//! - **Feelers**: about every 2 minutes (exponentially distributed), once the node holds
//!   `min_target` connections, one short connection to the tried entry a newcomer would
//!   replace, or to an address of `new`; it is closed once established and moves the address
//!   to `tried`.
//! - **Inbound**: at most `max_inbound` inbound connections (default `max_threshold` minus
//!   the outbound target) and at most ⌈max_inbound / 16⌉ from one public group. A newcomer
//!   that finds the inbound slots full, or the node at `max_threshold`, evicts an inbound peer
//!   chosen by [`addrbook::evict`](crate::addrbook::evict) (Bitcoin Core's
//!   `SelectNodeToEvict`; trusted and connection-manager-protected peers are never chosen)
//!   before it is counted ([`Event::Evicted`]); if every candidate is protected, or its group
//!   holds its share, it is nacked as before.
//! - **Anchors**: [`Machine::anchors`], the 2 automatic outbound peers held longest, go with
//!   [`Machine::addrbook_snapshot`]; [`Machine::restore_addrbook`] dials them first.

mod book;
mod config;
mod exchange;
mod io;
pub mod pex;

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    fmt,
    time::{Duration, Instant},
};

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};

pub use self::{
    book::MAX_ANCHORS,
    config::Config,
    io::{
        Admission, Command, ConnectionManager, DialError, Event, Identify, Input, Record, Records,
        Refusal, Resources, Signed, TooManyConnections, Unsigned,
    },
};
use crate::{
    Multiaddr, PeerId,
    maintenance::{Bounds, Maintenance, Plan},
    peerstore::{Peerstore, Ttl},
    pool::{self, CloseReason, Pool},
};

/// With an address book, the dials the outbound top-up keeps in flight per automatic outbound
/// connection missing from the target. Under churn most addresses a book holds may be gone
/// and a failed dial takes its timeout: one dial at a time (Bitcoin Core's) leaves the node
/// short for minutes after each loss. Those that connect once the target is met are closed at
/// once, their addresses marked good ([`CloseReason::Surplus`]).
pub const TOPUP_DIALS_PER_MISSING: usize = 16;
/// The most dials the outbound top-up keeps in flight, whatever is missing (at start, 8
/// missing would make 128).
pub const MAX_TOPUP_DIALS: usize = 64;

/// Most addresses taken from one identify message (go `connectedPeerMaxAddrs`).
pub const MAX_IDENTIFY_ADDRS: usize = 500;
/// Most addresses kept, recently connected, after the last disconnection (go
/// `recentlyConnectedPeerMaxAddrs`).
pub const MAX_RECENTLY_CONNECTED_ADDRS: usize = 20;
/// How often expired peerstore addresses are collected (go `pstoremem`: every minute). Reads
/// hide expired addresses at once; this only frees them.
pub const PEERSTORE_GC_INTERVAL: Duration = Duration::from_secs(60);
/// A connection we dialed that the peer closes within this time counts as refused.
pub const REFUSAL_WINDOW: Duration = Duration::from_secs(10);
/// Peerstore metadata key of a peer's identify agent version (as go).
pub const AGENT_VERSION: &str = "AgentVersion";
/// Peerstore metadata key of a peer's identify protocol version (as go).
pub const PROTOCOL_VERSION: &str = "ProtocolVersion";

/// An established connection.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The peer.
    pub peer: PeerId,
    /// The point the node dialed for it, if it did.
    pub point: Option<Multiaddr>,
    /// Refused for lack of room (nacked): open only until its peer has the answer to its
    /// request for points.
    pub nacked: bool,
    /// The peer told us it refused this connection (a `nack` answer).
    nacked_by_remote: bool,
    /// When it was established.
    pub since: Instant,
    /// The remote address.
    pub remote: Multiaddr,
    /// Whether the remote dialed it.
    pub inbound: bool,
    /// Evicted for a newcomer: closing, no longer counted as an inbound slot.
    pub evicted: bool,
    /// The remote address's network group, with an address book.
    pub group: Option<crate::addrbook::Group>,
    /// A feeler (dialed to test an address of the book) or a surplus of the outbound top-up
    /// (connected once the target was met): closed once established; never asked for points,
    /// never an anchor.
    pub feeler: bool,
    /// Why the machine asked to close it, if it did: the reason the peer's log and
    /// [`Event::Disconnected`] give once it is closed.
    pub closing: Option<CloseReason>,
}

impl Connection {
    /// Whether the peer refused this connection: it said so, or it closed a connection we
    /// dialed within [`REFUSAL_WINDOW`] (a full peer trimming its connections does that). Its
    /// point then backs off as from a refusal (Octez `Accepted -> Disconnected`, 1 s growing),
    /// not for the 60 s disconnection delay.
    fn refused(&self, closed_by_remote: bool, now: Instant) -> bool {
        self.nacked_by_remote
            || (self.point.is_some()
                && closed_by_remote
                && now.saturating_duration_since(self.since) < REFUSAL_WINDOW)
    }
}

/// What the machine knows of a connected peer.
#[derive(Debug, Clone, Default)]
struct Link {
    /// Open connections, nacked ones included.
    connections: u32,
    /// Of which we nacked.
    nacked: u32,
    /// Of which we dialed.
    outbound: u32,
    /// Whether its identify lists the peer exchange; `None` before identify.
    pex: Option<bool>,
    /// The maintenance was dialing when we dialed it: the first request for points says the
    /// node needs this connection.
    need: bool,
    /// How many addresses it may still tell us (with an address book).
    budget: Option<crate::addrbook::Budget>,
    /// Whether our first request to it was credited to `budget`.
    credited: bool,
    /// When it last answered a request of ours with an address new to us: an inbound
    /// eviction protects the 4 most recently useful peers.
    last_useful: Option<Instant>,
    /// The lowest round trip measured since it connected: an inbound eviction protects the 8
    /// lowest (Bitcoin Core's `m_min_ping_time`, kept per connection there). Not the
    /// peerstore's EWMA, which outlives the connection and which a peer can drag down.
    min_ping: Option<Duration>,
    /// The peerstore's latency of the peer is this link's first ping alone, which the second
    /// replaces: see [`Input::Ping`].
    provisional_ping: bool,
    /// Pings measured since it connected.
    pings: u32,
}

/// The node machine. See the [module docs](self). `C` is the driver's connection ID.
pub struct Machine<C> {
    config: Config,
    pool: Pool,
    maintenance: Maintenance,
    peerstore: Peerstore,
    connmgr: Box<dyn ConnectionManager>,
    /// The resource manager's connection scopes, if one is set.
    resources: Option<Box<dyn Resources<C>>>,
    records: Box<dyn Records>,
    rng: StdRng,
    connections: BTreeMap<C, Connection>,
    /// The IDs of the outbound ones among `connections`, so that what looks at the outbound
    /// connections walks those alone (a node may hold thousands of inbound ones).
    outbound: BTreeSet<C>,
    /// Per connected peer. Hashed (looked up once per inbound peer at each eviction); walked
    /// only by [`Machine::askable`], which sorts.
    links: HashMap<PeerId, Link>,
    /// Dials in flight, by connection ID.
    dials: HashMap<C, Multiaddr>,
    /// Connections admitted, not yet established.
    accepted: HashMap<C, PeerId>,
    /// With a book, inbound connections admitted and not yet established, with their group:
    /// they hold their inbound slot already.
    pending_inbound: HashMap<C, crate::addrbook::Group>,
    /// Inbound connections admitted only to be nacked, not yet established.
    nacking: HashSet<C>,
    /// Established nacked connections.
    nacked_open: usize,
    /// Nacked connections and when to close them, in deadline order.
    nack_deadlines: VecDeque<(Instant, PeerId, C)>,
    /// When each peer was last answered a request for points.
    pex_answered: HashMap<PeerId, Instant>,
    /// Requests waiting for their peer's cooldown, in arrival order (each has its own
    /// deadline); one per peer.
    pex_delayed: Vec<(Instant, PeerId, u64)>,
    /// When each peer was last asked for points.
    pex_asked: HashMap<PeerId, Instant>,
    /// Peers with a request of ours in flight.
    pex_in_flight: HashSet<PeerId>,
    /// Peers waiting for a free request slot; `true` for the first request on a new connection
    /// we dialed, which is not held to the round.
    pex_queue: VecDeque<(PeerId, bool)>,
    /// Pending inbound connections whose IP was checked, with the ACL's IP generation then.
    ip_checked: HashMap<C, u64>,
    commands: VecDeque<Command<C>>,
    events: VecDeque<Event>,
    next_gc: Instant,
    /// Peers whose last connection closed, by when: their peerstore entries go once the
    /// grace period has passed, unless they are connected then (go-libp2p `pstoremanager`,
    /// which also looks only at the connectedness then). A peer that left, came back and left
    /// again is forgotten a grace period after its first departure.
    departed: VecDeque<(Instant, PeerId)>,
    /// When `departed` is next looked at: at most every half grace period.
    next_forget: Option<Instant>,
    listen_addrs: Vec<Multiaddr>,
    own_record: Option<Vec<u8>>,
    /// The address book, if the node keeps one.
    book: Option<book::BookState>,
    /// The latest time the machine was given.
    now: Instant,
}

impl<C> fmt::Debug for Machine<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Machine")
            .field("local_peer_id", &self.pool.local_peer_id())
            .field("active", &self.pool.active())
            .field("connections", &self.connections.len())
            .finish_non_exhaustive()
    }
}

impl<C: Copy + Ord + std::hash::Hash + fmt::Debug> Machine<C> {
    /// A machine for the node `local_peer_id`, starting at `now`, holding `peerstore`, reading
    /// `connmgr`, signing and verifying peer records with `records`, drawing from `rng`.
    pub fn new(
        local_peer_id: PeerId,
        config: Config,
        peerstore: Peerstore,
        connmgr: Box<dyn ConnectionManager>,
        records: Box<dyn Records>,
        rng: StdRng,
        now: Instant,
    ) -> Self {
        let mut rng = rng;
        let book = config.addrbook.clone().map(|c| {
            let key = [rng.random(), rng.random()];
            let book = crate::addrbook::AddrBook::new(c, config.grouping.clone(), key, now);
            book::BookState::new(book, StdRng::seed_from_u64(rng.random()))
        });
        let mut maintenance = Maintenance::new(config.maintenance.clone());
        if config.maintenance_enabled {
            maintenance.activate();
        }
        Self {
            pool: Pool::new(local_peer_id, config.pool.clone()),
            maintenance,
            config,
            peerstore,
            connmgr,
            resources: None,
            records,
            rng,
            connections: BTreeMap::new(),
            outbound: BTreeSet::new(),
            links: HashMap::new(),
            dials: HashMap::new(),
            accepted: HashMap::new(),
            pending_inbound: HashMap::new(),
            nacking: HashSet::new(),
            nacked_open: 0,
            nack_deadlines: VecDeque::new(),
            pex_answered: HashMap::new(),
            pex_delayed: Vec::new(),
            pex_asked: HashMap::new(),
            pex_in_flight: HashSet::new(),
            pex_queue: VecDeque::new(),
            ip_checked: HashMap::new(),
            commands: VecDeque::new(),
            events: VecDeque::new(),
            next_gc: now + PEERSTORE_GC_INTERVAL,
            departed: VecDeque::new(),
            next_forget: None,
            listen_addrs: Vec::new(),
            own_record: None,
            book,
            now,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The pool of points and peers.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The peerstore.
    pub fn peerstore(&self) -> &Peerstore {
        &self.peerstore
    }

    /// The maintenance.
    pub fn maintenance(&self) -> &Maintenance {
        &self.maintenance
    }

    /// The connection bounds.
    pub fn bounds(&self) -> Bounds {
        self.maintenance.bounds()
    }

    /// The established connections.
    pub fn connections(&self) -> impl Iterator<Item = (&C, &Connection)> {
        self.connections.iter()
    }

    /// The established outbound connections (the node dialed them), nacked ones aside.
    pub fn outbound_connections(&self) -> impl Iterator<Item = (&C, &Connection)> {
        self.outbound
            .iter()
            .filter_map(|id| self.connections.get_key_value(id))
    }

    /// How many connections are established: `(inbound, outbound)`, nacked ones counted
    /// inbound, without walking them.
    pub fn connection_counts(&self) -> (usize, usize) {
        let outbound = self.outbound.len();
        (self.connections.len() - outbound, outbound)
    }

    /// The latest time the machine was given.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Requests for points of ours in flight.
    pub fn pex_in_flight(&self) -> usize {
        self.pex_in_flight.len()
    }

    /// The next command to carry out.
    pub fn poll_command(&mut self) -> Option<Command<C>> {
        self.commands.pop_front()
    }

    /// The next event to report.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Changes the pool through `f` (ACL, trust, expected peer IDs, points...), then carries
    /// out what the change asks: disconnections of banned or greylisted peers (after the ACL
    /// change, so they cannot come back), new points for the maintenance, and protection of
    /// trusted peers.
    pub fn update_pool<R>(&mut self, now: Instant, f: impl FnOnce(&mut Pool, Instant) -> R) -> R {
        self.now = self.now.max(now);
        let result = f(&mut self.pool, now);
        self.drain_pool_events();
        let mut running: Vec<PeerId> = self.pool.running_peers().collect();
        // Sorted, so that the commands come in the same order whatever the table's.
        running.sort_unstable();
        for peer in running {
            self.commands
                .push_back(if self.pool.is_trusted_peer(&peer) {
                    Command::Protect(peer)
                } else {
                    Command::Unprotect(peer)
                });
        }
        result
    }

    /// Adds a trusted point, such as a bootstrap address (with or without `/p2p/<id>`),
    /// unbanning its IP (Octez `Points.trust`), and wakes the maintenance.
    ///
    /// # Errors
    ///
    /// A [`pool::Error`] if the address is not a dialable point or is our own.
    pub fn add_trusted_point(
        &mut self,
        addr: &Multiaddr,
        now: Instant,
    ) -> Result<Multiaddr, pool::Error> {
        let point = self.update_pool(now, |pool, now| pool.trust_point(addr, now))?;
        self.maintenance.trigger();
        Ok(point)
    }

    /// Dials a point now, whatever its backoff (Octez `connect`): registers it if unknown; with
    /// `/p2p/<id>` the point must be that peer.
    ///
    /// # Errors
    ///
    /// [`pool::Error::IpBanned`], [`pool::Error::PrivateMode`],
    /// [`pool::Error::NotDisconnected`] and [`Pool::register_point`]'s errors.
    pub fn connect(&mut self, addr: &Multiaddr, now: Instant) -> Result<Multiaddr, pool::Error> {
        let (point, expected) = pool::split_point(addr)?;
        let peer = self.update_pool(now, |pool, now| {
            if let Some(id) = expected {
                pool.register_point(addr, None, Some(id), now)?;
            }
            pool.connect(&point, now)
        })?;
        self.commands.push_back(Command::Dial {
            point: point.clone(),
            peer,
        });
        Ok(point)
    }

    /// The driver started the dial of a [`Command::Dial`] as connection `id`.
    pub fn dial_started(&mut self, id: C, point: Multiaddr) {
        self.dials.insert(id, point);
    }

    /// Admits connections through a resource manager too, at the places its
    /// [order](self#admission-in-order) gives it. None by default.
    pub fn set_resources(&mut self, resources: Box<dyn Resources<C>>) {
        self.resources = Some(resources);
    }

    /// Asks the maintenance for a check (Octez `maintain`); returns a ticket for
    /// [`Maintenance::is_done`].
    pub fn maintain(&mut self) -> u64 {
        self.maintenance.maintain()
    }

    /// Starts the maintenance (Octez `activate`).
    pub fn activate(&mut self) {
        self.maintenance.activate();
    }

    /// Stops the maintenance (Octez `shutdown`).
    pub fn shutdown(&mut self) {
        self.maintenance.shutdown();
    }

    /// Admission at pending inbound of connection `id` (step 1 of the
    /// [order](self#admission-in-order)). The check is remembered: step 3 does not repeat it
    /// unless an IP was banned or greylisted meanwhile (say, by another handshake's garbage).
    ///
    /// # Errors
    ///
    /// [`pool::Error::IpBanned`] if the remote IP is banned or greylisted, or
    /// [`Refusal::Resources`] if the resource manager refuses a connection scope.
    pub fn admit_pending_inbound(
        &mut self,
        id: C,
        remote: &Multiaddr,
        now: Instant,
    ) -> Result<(), Refusal> {
        if let Some(ip) = pool::ip_of(remote)
            && self.pool.is_ip_banned(ip, now)
        {
            return Err(pool::Error::IpBanned(ip).into());
        }
        if let Some(r) = &mut self.resources {
            r.open(id, true, remote, now)?;
        }
        self.ip_checked.insert(id, self.pool.acl().ip_generation());
        Ok(())
    }

    /// Admission at pending outbound (step 2): banned peers and points are never dialed (Octez
    /// `connect`: `Point_banned`).
    ///
    /// # Errors
    ///
    /// [`pool::Error::PeerBanned`], or [`pool::Error::IpBanned`] if every address's IP is
    /// banned.
    pub fn admit_pending_outbound(
        &self,
        peer: Option<PeerId>,
        addrs: &[Multiaddr],
        now: Instant,
    ) -> Result<(), Refusal> {
        if let Some(peer) = peer
            && self.pool.is_peer_banned(&peer)
        {
            return Err(pool::Error::PeerBanned(peer).into());
        }
        let ips: Option<Vec<_>> = addrs.iter().map(pool::ip_of).collect();
        if let Some(ips) = ips
            && let Some(first) = ips.first()
            && ips.iter().all(|ip| self.pool.is_ip_banned(*ip, now))
        {
            return Err(pool::Error::IpBanned(*first).into());
        }
        Ok(())
    }

    /// Admission of an authenticated connection (step 3). On success, the commands it queued
    /// ([`Command::Protect`] for a trusted peer, [`Command::Exclude`] for a nacked connection)
    /// must be carried out before the connection manager counts the connection.
    ///
    /// # Errors
    ///
    /// [`Refusal::Pool`] with the pool's reason, [`Refusal::TooManyConnections`],
    /// [`Refusal::HardCap`] or [`Refusal::Resources`].
    pub fn admit_established(
        &mut self,
        id: C,
        peer: PeerId,
        remote: &Multiaddr,
        inbound: bool,
        now: Instant,
    ) -> Result<Admission, Refusal> {
        self.now = self.now.max(now);
        let ip_checked = self
            .ip_checked
            .remove(&id)
            .is_some_and(|generation| generation == self.pool.acl().ip_generation());
        let point = self.dials.get(&id);
        let result = self
            .pool
            .accept_checked(peer, remote, point, ip_checked, now, &mut self.rng);
        self.drain_pool_events();
        if let Err(e) = result {
            tracing::debug!(%peer, %remote, "refused: {e}");
            if let Some(r) = &mut self.resources {
                r.release(id);
            }
            return Err(e.into());
        }
        self.accepted.insert(id, peer);
        let via_trusted_point = self
            .dials
            .get(&id)
            .and_then(|point| self.pool.point(point))
            .is_some_and(|p| p.is_trusted());
        let trusted = via_trusted_point || self.pool.is_trusted_peer(&peer);
        // At max_threshold (or, with a book, at max_inbound) a newcomer is nacked; with a book,
        // an eviction makes room first if it can.
        let at_threshold = self.pool.active() >= self.bounds().max_threshold();
        let full = if inbound && !trusted && !self.links.contains_key(&peer) {
            !self.inbound_room(peer, remote, at_threshold)
        } else {
            at_threshold
        };
        if !inbound || !full || trusted || self.links.contains_key(&peer) {
            if !trusted && let Err(e) = self.connmgr.admit(&peer) {
                self.admission_failed(id, now);
                tracing::debug!(%peer, "refused: {e}");
                return Err(e.into());
            }
            self.reserve(id, peer, remote, inbound, now)?;
            if inbound && let Some(b) = &self.book {
                self.pending_inbound.insert(id, b.book.group(remote));
            }
            if trusted {
                // Protected before the connection manager counts it: exempt from the hard cap.
                self.commands.push_back(Command::Protect(peer));
            }
            return Ok(Admission::Accepted);
        }
        let nacked = self.nacking.len() + self.nacked_open;
        if nacked >= self.config.max_nacked {
            self.admission_failed(id, now);
            let e = TooManyConnections {
                active: self.pool.active(),
                nacked,
            };
            tracing::debug!(%peer, "refused: {e}");
            return Err(e.into());
        }
        self.reserve(id, peer, remote, inbound, now)?;
        self.nacking.insert(id);
        self.commands.push_back(Command::Exclude(id));
        Ok(Admission::Nacked)
    }

    /// The resource manager's part of step 3, last: an outbound connection's scope is opened,
    /// then any connection's is attached to its peer. A refusal undoes the admission.
    fn reserve(
        &mut self,
        id: C,
        peer: PeerId,
        remote: &Multiaddr,
        inbound: bool,
        now: Instant,
    ) -> Result<(), Refusal> {
        let Some(r) = &mut self.resources else {
            return Ok(());
        };
        let result = if inbound {
            Ok(())
        } else {
            r.open(id, false, remote, now)
        }
        .and_then(|()| r.attach(id, peer));
        if let Err(e) = result {
            self.admission_failed(id, now);
            tracing::debug!(%peer, "refused: {e}");
            return Err(e.into());
        }
        Ok(())
    }

    /// Feeds an event.
    pub fn handle(&mut self, now: Instant, input: Input<C>) {
        self.now = self.now.max(now);
        match input {
            Input::ConnectionEstablished {
                id,
                peer,
                remote,
                inbound,
            } => self.on_established(id, peer, remote, inbound, now),
            Input::ConnectionClosed {
                id,
                peer,
                by_remote,
                remaining,
            } => self.on_closed(id, peer, by_remote, remaining, now),
            Input::DialFailed { id, error } => self.on_dial_failed(id, error, now),
            Input::ListenFailed {
                id,
                remote,
                violation,
            } => {
                self.admission_failed(id, now);
                if violation && let Some(ip) = pool::ip_of(&remote) {
                    tracing::debug!(%ip, "handshake garbage: greylisted");
                    self.pool.greylist_ip(ip, now);
                    self.drain_pool_events();
                }
            }
            Input::HandshakesStalled { ip } => {
                tracing::debug!(%ip, "handshakes stalled: greylisted");
                self.pool.greylist_ip(ip, now);
                self.drain_pool_events();
            }
            Input::AdmissionFailed { id } => self.admission_failed(id, now),
            Input::NewListenAddr(addr) => {
                // Our own addresses are never points (Octez `my_id_points`).
                self.pool.add_own_point(&addr);
                if pool::split_point(&addr).is_ok() && !self.listen_addrs.contains(&addr) {
                    self.listen_addrs.push(addr);
                    self.own_record = None;
                }
            }
            Input::ExpiredListenAddr(addr) => {
                self.listen_addrs.retain(|a| *a != addr);
                self.own_record = None;
            }
            Input::Identified { peer, info } => self.on_identified(peer, info, now),
            Input::Streams { id, peer, streams } => {
                // Only connections the connection manager counts: not nacked ones (excluded)
                // nor those of the last instant before closing.
                if self.connections.get(&id).is_some_and(|c| !c.nacked) {
                    self.commands
                        .push_back(Command::SetStreams { peer, id, streams });
                }
            }
            Input::Ping { peer, rtt } => {
                if let Some(link) = self.links.get_mut(&peer) {
                    link.min_ping = Some(link.min_ping.map_or(rtt, |m| m.min(rtt)));
                    link.pings = link.pings.saturating_add(1);
                    // A connection's first ping is taken while the remote may still be
                    // starting (js-libp2p's measured 22–43 ms where js saw 0–9): when it is
                    // all the peerstore knows, the second replaces it instead of being
                    // averaged with it at a tenth.
                    if link.pings == 1 {
                        link.provisional_ping = self.peerstore.latency_ewma(&peer).is_none();
                    } else if std::mem::take(&mut link.provisional_ping) {
                        self.peerstore.reset_latency(&peer);
                    }
                }
                self.peerstore.record_latency(&peer, rtt);
                if let Some(ewma) = self.peerstore.latency_ewma(&peer) {
                    self.pool.set_latency(&peer, ewma);
                }
                let value = self.connmgr.tag_value(&peer);
                self.pool.set_tag_value(&peer, value);
            }
            Input::PexRequest {
                peer,
                id,
                request,
                token,
            } => self.on_pex_request(peer, id, request, token, now),
            Input::PexAnswer { peer, id, response } => self.on_pex_answer(peer, id, response, now),
            Input::PexFailed {
                peer,
                outbound,
                invalid_data,
            } => {
                if outbound {
                    self.pex_done(&peer, now);
                }
                if invalid_data {
                    // An answer that does not decode (or is over the size limit) greylists its
                    // sender, as Octez's decoding errors do.
                    self.pool.greylist_peer(peer, now);
                    self.drain_pool_events();
                }
            }
        }
    }

    /// The earliest instant at which [`handle_timeout`](Self::handle_timeout) has work: the
    /// latest time the machine was given if an event triggered the maintenance.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.maintenance.is_run_requested().then_some(self.now),
            self.maintenance.poll_timeout(),
            self.nack_deadlines.front().map(|d| d.0),
            self.pex_delayed.iter().map(|d| d.0).min(),
            Some(self.next_gc),
            self.next_forget,
            self.book_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs what is due at `now`: closes lingering nacked connections, answers delayed requests
    /// for points, collects the peerstore and the greylist, and runs the maintenance. Cheap
    /// when nothing is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        while let Some((due, peer, id)) = self.nack_deadlines.front().copied() {
            if due > now {
                break;
            }
            self.nack_deadlines.pop_front();
            if self.connections.get(&id).is_some_and(|c| c.nacked) {
                self.close(peer, Some(id), CloseReason::Nack);
            }
        }
        if self.pex_delayed.iter().any(|(due, ..)| *due <= now) {
            let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pex_delayed)
                .into_iter()
                .partition(|(due, ..)| *due <= now);
            self.pex_delayed = waiting;
            for (_, peer, token) in due {
                self.answer_pex(peer, token, false, now);
            }
        }
        if self.next_forget.is_some_and(|t| t <= now) {
            self.forget_departed(now);
        }
        if now >= self.next_gc {
            self.next_gc = now + PEERSTORE_GC_INTERVAL;
            let collected = self.peerstore.gc(now);
            let greylisted = self.pool.gc_greylist(now);
            let round = self.config.maintenance.looking_for_peers();
            self.pex_answered
                .retain(|_, t| *t + pex::ANSWER_COOLDOWN > now);
            self.pex_asked.retain(|_, t| *t + round > now);
            tracing::trace!(collected, greylisted, "peerstore and greylist gc");
        }
        self.feel(now);
        let active = self.pool.active();
        let plan = self.step_maintenance(now);
        if !plan.is_empty() {
            self.execute(plan, active, now);
        }
        self.drain_pool_events();
    }

    /// Removes from the peerstore what it holds of the peers gone for the grace period.
    fn forget_departed(&mut self, now: Instant) {
        let grace = self.config.peerstore_grace;
        while let Some(&(since, peer)) = self.departed.front() {
            if since + grace > now {
                break;
            }
            self.departed.pop_front();
            if !self.links.contains_key(&peer) {
                self.peerstore.remove_peer(&peer);
            }
        }
        self.next_forget = self
            .departed
            .front()
            .map(|(since, _)| (*since + grace).max(now + grace / 2));
    }

    fn drain_pool_events(&mut self) {
        while let Some(event) = self.pool.poll_event() {
            match &event {
                pool::Event::Disconnect { peer, reason } => {
                    tracing::debug!(%peer, ?reason, "pool: disconnect");
                    self.close(*peer, None, (*reason).into());
                }
                // Octez's maintenance waits for `new_point` or `new_peer`.
                pool::Event::NewPoint { .. } | pool::Event::NewPeer(_) => {
                    self.maintenance.on_new_points();
                }
                _ => {}
            }
            self.events.push_back(Event::Pool(event));
        }
    }

    fn on_established(
        &mut self,
        id: C,
        peer: PeerId,
        remote: Multiaddr,
        inbound: bool,
        now: Instant,
    ) {
        let point = self.dials.remove(&id);
        let group = self.book.as_ref().map(|b| b.book.group(&remote));
        let feeler = !inbound
            && point
                .as_ref()
                .is_some_and(|p| self.book.as_ref().is_some_and(|b| b.feelers.contains(p)));
        let surplus = !inbound && point.as_ref().is_some_and(|p| self.surplus(p));
        self.pending_inbound.remove(&id);
        self.accepted.remove(&id);
        self.ip_checked.remove(&id);
        let dialing = self.maintenance.is_dialing();
        let link = self.links.entry(peer).or_default();
        link.connections += 1;
        if !inbound {
            link.outbound += 1;
            link.need |= dialing;
        }
        if self.nacking.remove(&id) {
            if let Some(link) = self.links.get_mut(&peer) {
                link.nacked += 1;
            }
            tracing::debug!(%peer, active = self.pool.active(), "nack: too many connections");
            self.pool.reject(peer, now);
            self.nack_deadlines
                .push_back((now + self.config.nack_linger, peer, id));
            self.nacked_open += 1;
            self.connections.insert(
                id,
                Connection {
                    peer,
                    point,
                    nacked: true,
                    nacked_by_remote: false,
                    since: now,
                    remote,
                    inbound: true,
                    evicted: false,
                    group,
                    feeler: false,
                    closing: None,
                },
            );
            self.events.push_back(Event::Nacked { peer_id: peer });
            return;
        }
        if let Some(point) = &point {
            self.maintenance.on_dial_finished();
            self.book_established(id, peer, point, surplus, now);
        }
        if self
            .pool
            .connection_established(peer, point.as_ref(), &remote, now)
        {
            self.maintenance
                .on_connection_established(self.pool.active());
        }
        self.drain_pool_events();
        if !inbound {
            self.peerstore
                .add_addrs(&peer, std::slice::from_ref(&remote), Ttl::Connected, now);
            // Identified already on another connection: ask now (the request goes on any
            // connection, so this is rare).
            if self.links.get(&peer).and_then(|l| l.pex) == Some(true) {
                self.ask_or_queue(peer, true, now);
            }
        }
        if !inbound {
            self.outbound.insert(id);
        }
        self.connections.insert(
            id,
            Connection {
                peer,
                point,
                nacked: false,
                nacked_by_remote: false,
                since: now,
                remote,
                inbound,
                evicted: false,
                group,
                // A surplus is one from then on: closed, never asked, never an anchor.
                feeler: feeler || surplus,
                // `book_established` asked to close those already.
                closing: if surplus {
                    Some(CloseReason::Surplus)
                } else {
                    feeler.then_some(CloseReason::Feeler)
                },
            },
        );
    }

    /// The driver is closing every connection of `peer` for `reason` (a trim of the
    /// connection manager beside the machine, [`CloseReason::Trim`]): once reported closed,
    /// they carry it in [`Event::Disconnected`] and the peer's log, unless the machine had
    /// asked to close them for another reason first.
    pub fn closing(&mut self, peer: PeerId, reason: CloseReason) {
        for c in self.connections.values_mut().filter(|c| c.peer == peer) {
            c.closing.get_or_insert(reason);
        }
    }

    /// Closes connection `id`, or every connection of `peer`, recording `reason` for when the
    /// close is reported (the first reason given stands).
    pub(super) fn close(&mut self, peer: PeerId, id: Option<C>, reason: CloseReason) {
        match id {
            Some(id) => {
                if let Some(c) = self.connections.get_mut(&id) {
                    c.closing.get_or_insert(reason);
                }
            }
            None => {
                for c in self.connections.values_mut().filter(|c| c.peer == peer) {
                    c.closing.get_or_insert(reason);
                }
            }
        }
        self.commands.push_back(Command::Close { peer, id });
    }

    fn on_closed(&mut self, id: C, peer: PeerId, by_remote: bool, remaining: usize, now: Instant) {
        if let Some(r) = &mut self.resources {
            r.release(id);
        }
        if remaining == 0 {
            self.demote_addrs(&peer, now);
        }
        let Some(conn) = self.connections.remove(&id) else {
            return;
        };
        self.outbound.remove(&id);
        // Ours if we asked first, whoever's close arrived first.
        let reason = conn.closing.unwrap_or(if by_remote {
            CloseReason::Remote
        } else {
            CloseReason::Local
        });
        self.events.push_back(Event::Disconnected {
            peer_id: peer,
            inbound: conn.inbound,
            reason,
        });
        if let Some(link) = self.links.get_mut(&peer) {
            link.connections = link.connections.saturating_sub(1);
            if !conn.inbound {
                link.outbound = link.outbound.saturating_sub(1);
            }
            if conn.nacked {
                link.nacked = link.nacked.saturating_sub(1);
            }
            if link.connections == 0 {
                self.links.remove(&peer);
                self.pex_in_flight.remove(&peer);
                self.departed.push_back((now, peer));
                if self.next_forget.is_none() {
                    self.next_forget = Some(now + self.config.peerstore_grace);
                }
            }
        }
        if conn.nacked {
            self.nacked_open = self.nacked_open.saturating_sub(1);
            self.serve_pex_queue(now);
            return;
        }
        let point = conn.point.as_ref();
        if let Some(point) = point {
            self.book_closed(point, now);
        }
        let stopped = if conn.refused(by_remote, now) {
            self.pool.connection_nacked(peer, point, now, &mut self.rng)
        } else {
            self.pool
                .connection_closed_for(peer, point, reason, now, &mut self.rng)
        };
        if stopped {
            self.maintenance.on_connection_closed(self.pool.active());
        }
        self.serve_pex_queue(now);
    }

    fn on_dial_failed(&mut self, id: C, error: DialError, now: Instant) {
        self.admission_failed(id, now);
        let Some(point) = self.dials.remove(&id) else {
            return;
        };
        match error {
            DialError::Aborted => self.pool.dial_aborted(&point),
            DialError::WrongPeer => self.pool.dial_wrong_peer(&point, now, &mut self.rng),
            DialError::LocalPeer => {
                self.pool.dial_aborted(&point);
                self.pool.add_own_point(&point);
            }
            DialError::Other => self.pool.dial_failed(&point, now, &mut self.rng),
        }
        self.book_dial_failed(&point, error != DialError::Aborted, now);
        tracing::debug!(%point, ?error, "dial failed");
        self.maintenance.on_dial_finished();
    }

    /// A connection the pool had admitted failed before it was established: its peer and
    /// dialed point go back to disconnected. Nothing happens for one the pool did not admit.
    fn admission_failed(&mut self, id: C, now: Instant) {
        if let Some(r) = &mut self.resources {
            r.release(id);
        }
        self.nacking.remove(&id);
        self.ip_checked.remove(&id);
        self.pending_inbound.remove(&id);
        if let Some(peer) = self.accepted.remove(&id) {
            let point = self.dials.get(&id);
            self.pool.accept_failed(peer, point, now, &mut self.rng);
        }
    }

    /// go identify's "TTL dance": the addresses a message lists replace the peer's connected
    /// and recently connected ones (`id.go`).
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
        let kept: Vec<Multiaddr> = store
            .addrs(peer, now)
            .into_iter()
            .take(MAX_RECENTLY_CONNECTED_ADDRS)
            .collect();
        store.update_addrs(peer, Ttl::Connected, Ttl::TEMP, now);
        store.add_addrs(peer, &kept, Ttl::RECENTLY_CONNECTED, now);
        store.update_addrs(peer, Ttl::TEMP, Ttl::ZERO, now);
    }

    fn on_identified(&mut self, peer: PeerId, info: Identify, now: Instant) {
        // go identify: the addresses of a valid signed record, certified, else the listen
        // addresses. A record of another peer, a forged or an older one is refused whole
        // (`consume_record`), and the listen addresses count.
        let certified = info
            .signed_peer_record
            .as_deref()
            .and_then(|bytes| self.consume_record(peer, Some(peer), bytes, Ttl::Connected, now))
            .map(|(_, addrs)| addrs);
        let announced = certified.as_ref().unwrap_or(&info.listen_addrs);
        // go identify's `filterAddrs`: only addresses in the scope of the connection's.
        let remote = self
            .connections
            .values()
            .find(|c| c.peer == peer)
            .map(|c| c.remote.clone());
        let dialable: Vec<&Multiaddr> = announced
            .iter()
            .filter(|a| pool::split_point(a).is_ok())
            .filter(|a| remote.as_ref().is_none_or(|r| pool::point_in_scope(a, r)))
            .collect();
        // A large message keeps what fits: the first addresses up to go's
        // `connectedPeerMaxAddrs`, the first protocols up to the peerstore's cap; the rest
        // goes, with one warning for the message.
        let addrs: Vec<Multiaddr> = dialable
            .iter()
            .take(MAX_IDENTIFY_ADDRS)
            .map(|a| (*a).clone())
            .collect();
        self.replace_addrs(&peer, &addrs, now);
        let mut protocols_kept = info.protocols.len();
        match self.peerstore.set_protocols(&peer, &info.protocols) {
            Err(crate::peerstore::Error::TooManyProtocols { limit, .. })
                if limit < protocols_kept =>
            {
                protocols_kept = limit;
                if let Err(e) = self
                    .peerstore
                    .set_protocols(&peer, &info.protocols[..limit])
                {
                    tracing::debug!(%peer, "identify: {e}");
                }
            }
            Err(e) => tracing::debug!(%peer, "identify: {e}"),
            Ok(()) => {}
        }
        if addrs.len() < dialable.len() || protocols_kept < info.protocols.len() {
            tracing::warn!(
                %peer,
                "identify: kept {} of {} addresses and {protocols_kept} of {} protocols",
                addrs.len(),
                dialable.len(),
                info.protocols.len(),
            );
        }
        if let Err(e) = self
            .peerstore
            .put(&peer, AGENT_VERSION, &info.agent_version)
            .and_then(|()| {
                self.peerstore
                    .put(&peer, PROTOCOL_VERSION, &info.protocol_version)
            })
        {
            tracing::debug!(%peer, "identify: {e}");
        }
        // A peer that does not offer the exchange is private (or not a pool node): its points
        // are not advertised (Octez `known_public = not private_node`), and it is never asked.
        let public = info.protocols.iter().any(|p| p == pex::PROTOCOL);
        self.pool.set_announced_points(peer, &addrs, public, now);
        self.drain_pool_events();
        // A peer we dialed speaks for itself; inbound peers' addresses stay out of the book
        // (Bitcoin Core PR #8594: an attacker would fill it by connecting).
        let dialed = self
            .connections
            .values()
            .find(|c| c.peer == peer && !c.inbound && !c.nacked && !c.feeler)
            .map(|c| c.remote.clone());
        if public && let Some(remote) = dialed {
            // The first request's credit comes now, so that a peer's own addresses are not
            // cut to the single token a new budget holds.
            self.credit_first_request(&peer, now);
            let own: Vec<_> = addrs.iter().map(|a| (a.clone(), Some(peer))).collect();
            self.learn(peer, Some(&remote), &own, now);
        }
        let first = match self.links.get_mut(&peer) {
            Some(link) => {
                let first = link.pex.is_none();
                link.pex = Some(public);
                first && link.outbound > 0
            }
            None => false,
        };
        // Ask whoever we dial for points, once it has said it can answer (Octez sends
        // `Bootstrap` when it needs points; a new outbound connection is the cheapest moment).
        if first && public {
            self.ask_or_queue(peer, true, now);
        }
        self.events.push_back(Event::Identified {
            peer_id: peer,
            agent_version: info.agent_version,
            protocols: info.protocols,
        });
    }

    fn execute(&mut self, plan: Plan, active: usize, now: Instant) {
        let mut dialed = Vec::with_capacity(plan.dial.len());
        for (point, peer) in plan.dial {
            self.commands.push_back(Command::Dial {
                point: point.clone(),
                peer,
            });
            dialed.push(point);
        }
        for peer in &plan.close {
            self.close(*peer, None, CloseReason::Maintenance);
        }
        let mut asked = 0;
        if plan.ask_for_points {
            let slots = self
                .config
                .max_pex_in_flight
                .saturating_sub(self.pex_in_flight.len());
            // Peers that offer the exchange, those asked longest ago (or never) first, in a
            // random order among equals (drawn from a sorted list, so a seeded RNG gives the
            // same choice whatever happened before).
            let mut eligible = self.askable(now);
            if eligible.len() > slots {
                eligible.shuffle(&mut self.rng);
                eligible.sort_by_key(|p| self.pex_asked.get(p).copied());
                eligible.truncate(slots);
            }
            for peer in eligible {
                self.ask(peer, now);
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
        self.events.push_back(Event::Maintenance {
            active,
            dialed,
            closed: plan.close,
            asked,
        });
    }
}

#[cfg(test)]
mod tests;
