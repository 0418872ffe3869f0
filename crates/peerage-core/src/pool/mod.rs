//! The pool: the connection lifecycle state of points and peers, as Octez `P2p_pool`
//! (`p2p_pool.ml`, `p2p_point_state.ml`, `p2p_peer_state.ml`), with its access control
//! ([`acl`], Octez `P2p_acl`).
//!
//! A **point** is a dialable address without `/p2p` (`/ip4/1.2.3.4/tcp/9732`); a **peer** is a
//! [`PeerId`]. The pool keeps the two tables apart, as Octez does: points carry the dial state
//! machine (`disconnected -> requested -> accepted -> running`) and the reconnection
//! [`Backoff`]; peers carry the connection state (`disconnected -> accepted -> running`). Facts
//! about peers (addresses with TTLs, protocols, latency) live in the
//! [`peerstore`](crate::peerstore), not here.
//!
//! The pool only records what happened and decides admission; the
//! [`maintenance`](crate::maintenance) decides what to dial and what to close, and the libp2p
//! glue does it. What the glue must act on or may report comes out of [`Pool::poll_event`]:
//! new points and peers, collections, and peers to disconnect (after a ban, a greylisting or a
//! wrong expected peer ID).
//!
//! A connection goes through the pool as follows: [`Pool::set_requested`] (or
//! [`Pool::connect`]) when we dial a point; [`Pool::accept`] when the connection is
//! authenticated (the swarm's `handle_established_*`), which refuses banned IPs and peers, a
//! wrong expected peer ID, untrusted peers in private mode and a full peer table;
//! [`Pool::connection_established`] once the swarm reports it; then
//! [`Pool::connection_closed`] (or [`Pool::connection_nacked`] if the remote refused it). A
//! dial that fails at any step ends in [`Pool::dial_failed`], an admitted connection that
//! another behaviour refused in [`Pool::accept_failed`], and one the node refuses for lack of
//! room in [`Pool::reject`].
//!
//! Differences from Octez, on purpose:
//!
//! - Every failure path of a dial returns its point to `Disconnected` with a backoff (Octez can
//!   leave a point stuck in `Requested`, §13).
//! - Untrusted entries never bring a table above its `high` bound: the GC runs before an
//!   insertion and, if it cannot make room, the insertion is refused (Octez briefly holds
//!   `high + 1`, #3175). Trusted points and peers are never refused nor collected, so with
//!   `(0, 0)` only they are kept (Octez's `Known_Points_GC` scenario).
//! - Backoff waits have jitter (see [`Backoff`]).
//! - [`Pool::greylist_peer`] greylists the peer and its last IP even once it is disconnected,
//!   and greylisting always comes before the disconnection it causes (Octez's reader
//!   disconnects first, which makes its greylisting a no-op, §13).
//! - [`Pool::list_known_points`] samples without replacement, so it returns exactly `size` points
//!   when it has more (Octez can return fewer through duplicate indices).
//! - The peer score is a pluggable function of what the node knows ([`Score`]); Octez's is the
//!   constant 1.0.

pub mod acl;
mod config;
mod error;
mod event;
mod log;
pub mod peer;
pub mod point;
mod score;
mod select;

use std::{
    collections::VecDeque,
    net::IpAddr,
    time::{Duration, Instant},
};

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use multiaddr::{Multiaddr, Protocol};
use rand::Rng;
use smallvec::SmallVec;

pub(crate) use self::log::push_log;
pub use self::{
    acl::Acl,
    config::Config,
    error::{Error, Mismatch},
    event::{CloseReason, DisconnectReason, Event, Medium},
    log::{LOG_SIZE, LogEntry, LogKind},
    point::{Backoff, PointError, in_scope as point_in_scope, split as split_point},
    score::Score,
};
use crate::PeerId;

/// The IP of an address that starts with `/ip4` or `/ip6`.
pub fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    match addr.iter().next()? {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    }
}

/// The point `point` if it is accepted or running with `peer`.
fn point_with<'a>(
    points: &'a mut HashMap<Multiaddr, Box<point::Info>>,
    peer: PeerId,
    point: Option<&Multiaddr>,
) -> Option<&'a mut point::Info> {
    points
        .get_mut(point?)
        .filter(|info| info.state.peer_id() == Some(peer))
        .map(|info| &mut **info)
}

/// The point and peer tables of a node, and its ACL. See the [module docs](self).
#[derive(Debug)]
pub struct Pool {
    config: Config,
    local_peer_id: PeerId,
    /// Boxed: a point's record is about 270 bytes, and a table's capacity (a power of two) is
    /// up to twice its length, so the empty slots would cost more than the pointers.
    points: HashMap<Multiaddr, Box<point::Info>>,
    /// Boxed, as points are: a peer's record is about 240 bytes.
    peers: HashMap<PeerId, Box<peer::Info>>,
    own_points: HashSet<Multiaddr>,
    /// The points whose `trusted` is set: few (the configured ones), so that whether a peer is
    /// trusted does not walk every point.
    trusted_points: HashSet<Multiaddr>,
    /// The points that may name each peer (as their last peer or in their state), so that
    /// [`Pool::set_announced_points`] visits those, not every point: a superset, added to
    /// whenever a point gets a peer and checked when used. Keyed by [`peer_key`] (a 64-bit
    /// hash of the peer ID, seeded at random per pool), not by the 80-byte `PeerId`, with the
    /// usual single point inline: in the simulator's 1,000-node runs a `PeerId` key and a
    /// `Vec` each made this table 46 KB per node. Peers whose keys collide share an entry, and
    /// every point of it is checked on use.
    peer_points: HashMap<u64, SmallVec<[Multiaddr; 1]>>,
    /// The seed of [`peer_key`]; random, so that a remote peer cannot choose an ID whose key
    /// collides with another's.
    peer_keys: foldhash::fast::RandomState,
    /// Entries in `peer_points`; when they outnumber twice the points (plus a margin), the
    /// index is rebuilt, so stale ones cost at most that.
    peer_points_len: usize,
    acl: Acl,
    /// The peers each IP ban banned, and whether it untrusted them, for the unban to undo.
    ip_banned_peers: HashMap<IpAddr, Vec<(PeerId, bool)>>,
    active: usize,
    events: VecDeque<Event>,
}

/// What [`Pool::ban_ip`] did, besides blacklisting the IP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpBan {
    /// Peers connected from the IP, now being disconnected.
    pub disconnected: Vec<PeerId>,
    /// Of those, the peers it blacklisted (those not already blacklisted).
    pub banned: Vec<PeerId>,
    /// Of those, the peers that were trusted and no longer are.
    pub untrusted: Vec<PeerId>,
}

/// What [`Pool::unban_ip`] did, besides unbanning the IP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpUnban {
    /// Peers unbanned: those the IP's ban banned, and those connected from it.
    pub unbanned: Vec<PeerId>,
    /// Peers trusted again: those the IP's ban untrusted.
    pub trusted: Vec<PeerId>,
}

impl Pool {
    /// An empty pool for the node `local_peer_id`.
    pub fn new(local_peer_id: PeerId, config: Config) -> Self {
        Self {
            acl: Acl::new(config.acl),
            ip_banned_peers: HashMap::new(),
            config,
            local_peer_id,
            points: HashMap::new(),
            peers: HashMap::new(),
            own_points: HashSet::new(),
            trusted_points: HashSet::new(),
            peer_points: HashMap::new(),
            peer_keys: foldhash::fast::RandomState::default(),
            peer_points_len: 0,
            active: 0,
            events: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Our own peer ID.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// The next event, if any. The glue drains them after each call that changes the pool.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Number of running peers: the node's active connections as the maintenance counts them
    /// (Octez `active_connections`). Several libp2p connections to one peer count once.
    pub fn active(&self) -> usize {
        self.active
    }

    /// Number of points being dialed (requested or accepted).
    pub fn requested(&self) -> usize {
        self.points
            .values()
            .filter(|p| {
                matches!(
                    p.state,
                    point::State::Requested | point::State::Accepted { .. }
                )
            })
            .count()
    }

    /// Number of known points.
    pub fn known_points(&self) -> usize {
        self.points.len()
    }

    /// Number of known peers.
    pub fn known_peers(&self) -> usize {
        self.peers.len()
    }

    /// What the pool knows of `point` (without `/p2p`).
    pub fn point(&self, point: &Multiaddr) -> Option<&point::Info> {
        self.points.get(point).map(|info| &**info)
    }

    /// What the pool knows of `peer`.
    pub fn peer(&self, peer: &PeerId) -> Option<&peer::Info> {
        self.peers.get(peer).map(|info| &**info)
    }

    /// All known points.
    pub fn points(&self) -> impl Iterator<Item = (&Multiaddr, &point::Info)> {
        self.points.iter().map(|(a, info)| (a, &**info))
    }

    /// All known peers.
    pub fn peers(&self) -> impl Iterator<Item = (&PeerId, &peer::Info)> {
        self.peers.iter().map(|(id, info)| (id, &**info))
    }

    /// The running peers.
    pub fn running_peers(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.peers
            .iter()
            .filter(|(_, p)| p.state == peer::State::Running)
            .map(|(id, _)| *id)
    }

    /// Whether `peer` is running.
    pub fn is_running(&self, peer: &PeerId) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|p| p.state == peer::State::Running)
    }

    /// The access control lists.
    pub fn acl(&self) -> &Acl {
        &self.acl
    }

    /// The score of `peer` at `now`, if it is known.
    pub fn score(&self, peer: &PeerId, now: Instant) -> Option<f64> {
        self.peers
            .get(peer)
            .map(|info| self.config.score.score(info, now))
    }

    /// Whether `peer` is trusted, or connected through (or expected at) a trusted point. The
    /// maintenance never closes such a peer, and private mode admits it.
    pub fn is_trusted_peer(&self, peer: &PeerId) -> bool {
        self.peers.get(peer).is_some_and(|p| p.record.trusted)
            || self.trusted_points.iter().any(|a| {
                self.points.get(a).is_some_and(|p| {
                    p.trusted
                        && (p.state.peer_id() == Some(*peer) || p.dial_peer_id() == Some(*peer))
                })
            })
    }

    /// Whether `ip` is banned (blacklisted or greylisted) at `now`.
    pub fn is_ip_banned(&self, ip: IpAddr, now: Instant) -> bool {
        self.acl.is_ip_banned(ip, now)
    }

    /// Whether `peer` is banned (blacklisted or greylisted). A trusted peer is not (Octez's
    /// `/banned` RPC).
    pub fn is_peer_banned(&self, peer: &PeerId) -> bool {
        self.acl.is_peer_banned(peer) && !self.peers.get(peer).is_some_and(|p| p.record.trusted)
    }

    /// Whether the point's IP is banned (a DNS point never is).
    pub fn is_point_banned(&self, point: &Multiaddr, now: Instant) -> bool {
        self.acl.has_ip_entries() && ip_of(point).is_some_and(|ip| self.acl.is_ip_banned(ip, now))
    }

    /// Records our own listen addresses: they are never registered as points (Octez
    /// `my_id_points`), and any already registered are removed.
    pub fn add_own_point(&mut self, addr: &Multiaddr) {
        if let Ok((point, _)) = point::split(addr) {
            self.points.remove(&point);
            self.trusted_points.remove(&point);
            self.own_points.insert(point);
        }
    }

    /// Registers a point (Octez `register_point ?trusted ?expected_peer_id`): `addr` may end in
    /// `/p2p/<id>`, which becomes the expected peer ID, as does `expected`. `trusted` sets or
    /// clears the trust if given. Returns the point.
    ///
    /// # Errors
    ///
    /// [`Error::Point`] if `addr` is not dialable, [`Error::OwnPoint`] for our own addresses,
    /// [`Error::PointTableFull`] if no point can be collected to make room for an untrusted one.
    pub fn register_point(
        &mut self,
        addr: &Multiaddr,
        trusted: Option<bool>,
        expected: Option<PeerId>,
        now: Instant,
    ) -> Result<Multiaddr, Error> {
        let (point, peer) = point::split(addr)?;
        if peer == Some(self.local_peer_id) || expected == Some(self.local_peer_id) {
            return Err(Error::OwnPoint(addr.clone()));
        }
        let (info, _) =
            self.insert_point(&point, trusted == Some(true), None, Medium::Config, now)?;
        if let Some(trusted) = trusted {
            info.trusted = trusted;
        }
        if let Some(id) = expected.or(peer) {
            info.set_expected_peer_id(Some(id));
        }
        match trusted {
            Some(true) => {
                self.trusted_points.insert(point.clone());
            }
            Some(false) => {
                self.trusted_points.remove(&point);
            }
            None => {}
        }
        Ok(point)
    }

    /// Registers a trusted point, with the expected peer ID of its `/p2p` suffix if it has one.
    /// Shorthand for [`Pool::register_point`] with `trusted`.
    ///
    /// # Errors
    ///
    /// As [`Pool::register_point`].
    pub fn add_trusted_point(
        &mut self,
        addr: &Multiaddr,
        now: Instant,
    ) -> Result<Multiaddr, Error> {
        self.register_point(addr, Some(true), None, now)
    }

    /// Forgets a point (Octez `unregister_point`). A connection through it stays open.
    pub fn unregister_point(&mut self, point: &Multiaddr) -> bool {
        self.trusted_points.remove(point);
        self.points.remove(point).is_some()
    }

    /// Registers a point learned from elsewhere (Octez `register_new_point`): our own points
    /// are skipped. Returns whether it was new.
    pub fn register_new_point(
        &mut self,
        addr: &Multiaddr,
        source: Option<PeerId>,
        medium: Medium,
        now: Instant,
    ) -> bool {
        self.register_list_of_new_points(source, medium, [addr], now) == 1
    }

    /// Registers points learned from `source` through `medium` (Octez
    /// `register_list_of_new_points`): entries of a peer exchange, or the listen addresses a
    /// connected peer announced. Each entry may end in `/p2p/<id>`, kept as the point's peer
    /// hint. Entries that are not dialable, are our own, or do not fit in the table are
    /// skipped. Returns the number of points that were new.
    pub fn register_list_of_new_points<'a>(
        &mut self,
        source: Option<PeerId>,
        medium: Medium,
        addrs: impl IntoIterator<Item = &'a Multiaddr>,
        now: Instant,
    ) -> usize {
        self.register_points(source, medium, addrs.into_iter().map(|a| (a, None)), now)
    }

    /// [`Pool::register_list_of_new_points`] for entries whose peer comes apart from the
    /// address (a peer exchange's [`Point`](crate::node::pex::Point)s). An address that ends
    /// in `/p2p/<id>` anyway must name the same peer, or the entry is skipped.
    pub fn register_points<'a>(
        &mut self,
        source: Option<PeerId>,
        medium: Medium,
        points: impl IntoIterator<Item = (&'a Multiaddr, Option<PeerId>)>,
        now: Instant,
    ) -> usize {
        let mut new = 0;
        for (addr, given) in points {
            let Ok((point, suffix)) = point::split(addr) else {
                continue;
            };
            let peer = match (given, suffix) {
                (Some(a), Some(b)) if a != b => continue,
                (a, b) => a.or(b),
            };
            if peer == Some(self.local_peer_id) {
                continue;
            }
            let (info, was_new) = match self.insert_point(&point, false, source, medium, now) {
                Ok(inserted) => inserted,
                Err(Error::PointTableFull { .. }) => break,
                // Our own point.
                Err(_) => continue,
            };
            // A peer announcing its own address is authoritative; a third party only hints.
            let named = peer.filter(|_| info.last_peer_id.is_none() || peer == source);
            if named.is_some() {
                info.last_peer_id = named;
            }
            new += usize::from(was_new);
            if let Some(peer) = named {
                self.note_peer_point(peer, &point);
            }
        }
        new
    }

    /// The listen addresses `peer` announced over a live connection (identify): registered as
    /// points of that peer, advertisable if `public` (the peer speaks the peer exchange, so it
    /// is not a private node). Every point of the peer gets the same `known_public`, as Octez
    /// sets it after each handshake. Returns the number of new points.
    pub fn set_announced_points(
        &mut self,
        peer: PeerId,
        addrs: &[Multiaddr],
        public: bool,
        now: Instant,
    ) -> usize {
        let with_id: Vec<Multiaddr> = addrs
            .iter()
            .filter_map(|a| point::split(a).ok())
            .map(|(p, _)| p.with(Protocol::P2p(peer)))
            .collect();
        let new = self.register_list_of_new_points(Some(peer), Medium::Identify, &with_id, now);
        let keys = self.peer_keys.clone();
        let key = peer_key(&keys, &peer);
        let mut named = self.peer_points.remove(&key).unwrap_or_default();
        self.peer_points_len -= named.len();
        named.retain(|addr| {
            let Some(info) = self.points.get_mut(addr) else {
                return false;
            };
            if info.last_peer_id != Some(peer) && info.state.peer_id() != Some(peer) {
                // Kept for another peer with the same key; dropped if stale.
                let same_key = |p: Option<PeerId>| p.is_some_and(|p| peer_key(&keys, &p) == key);
                return same_key(info.last_peer_id) || same_key(info.state.peer_id());
            }
            info.known_public = public;
            true
        });
        if !named.is_empty() {
            self.peer_points_len += named.len();
            self.peer_points.insert(key, named);
        }
        new
    }

    /// Records that `point` names `peer` (as its last peer or in its state), for
    /// [`Pool::set_announced_points`]; rebuilds the index from the points when stale entries
    /// make it more than twice their number.
    fn note_peer_point(&mut self, peer: PeerId, point: &Multiaddr) {
        let keys = self.peer_keys.clone();
        let named = self.peer_points.entry(peer_key(&keys, &peer)).or_default();
        if named.contains(point) {
            return;
        }
        named.push(point.clone());
        self.peer_points_len += 1;
        if self.peer_points_len > 2 * self.points.len() + 64 {
            self.peer_points.clear();
            self.peer_points_len = 0;
            for (addr, info) in &self.points {
                let state = info.state.peer_id().map(|p| peer_key(&keys, &p));
                // Once per key: two peers of one point may share a key.
                let last = info
                    .last_peer_id
                    .map(|p| peer_key(&keys, &p))
                    .filter(|k| Some(*k) != state);
                for key in state.into_iter().chain(last) {
                    self.peer_points.entry(key).or_default().push(addr.clone());
                    self.peer_points_len += 1;
                }
            }
        }
    }

    /// The point's record, created if new (with whether it was), collecting the table first
    /// if it is full.
    ///
    /// # Errors
    ///
    /// [`Error::OwnPoint`] for our own points; [`Error::PointTableFull`] if no point can be
    /// collected to make room for an untrusted one.
    fn insert_point(
        &mut self,
        point: &Multiaddr,
        trusted: bool,
        source: Option<PeerId>,
        medium: Medium,
        now: Instant,
    ) -> Result<(&mut point::Info, bool), Error> {
        if self.own_points.contains(point) {
            return Err(Error::OwnPoint(point.clone()));
        }
        if !self.points.contains_key(point) {
            if let Some((high, low)) = self.config.max_known_points
                && self.points.len() >= high
            {
                self.gc_points(low, now);
                if self.points.len() >= high && !trusted {
                    return Err(Error::PointTableFull { high });
                }
            }
            self.events.push_back(Event::NewPoint {
                point: point.clone(),
                source,
                medium,
            });
            // A key of its own size: `point` may share the buffer of a longer address whose
            // `/p2p` suffix was popped.
            let key = Multiaddr::try_from(point.to_vec()).unwrap_or_else(|_| point.clone());
            let info = self
                .points
                .entry(key)
                .or_insert_with(|| Box::new(point::Info::new()));
            return Ok((info, true));
        }
        Ok((self.points.get_mut(point).expect("a known point"), false))
    }

    /// Octez `gc_points`: removes disconnected, untrusted points, oldest `last_miss` first (a
    /// point that never missed counts as `now`, so goes last), until `target` remain or no
    /// candidate is left.
    fn gc_points(&mut self, target: usize, now: Instant) {
        let to_remove = self.points.len().saturating_sub(target);
        if to_remove == 0 {
            return;
        }
        let mut candidates: Vec<(Instant, &Multiaddr)> = self
            .points
            .iter()
            .filter(|(_, p)| p.state == point::State::Disconnected && !p.trusted)
            .map(|(a, p)| (p.last_miss().unwrap_or(now), a))
            .collect();
        // The first `to_remove` in (last miss, address) order, a total order: which points go
        // does not depend on the table's order, and needs no full sort.
        if candidates.len() > to_remove {
            candidates.select_nth_unstable(to_remove - 1);
            candidates.truncate(to_remove);
        }
        let doomed: Vec<Multiaddr> = candidates.into_iter().map(|(_, a)| a.clone()).collect();
        let removed = doomed.len();
        for addr in doomed {
            self.points.remove(&addr);
        }
        if removed > 0 {
            self.events.push_back(Event::GcPoints(removed));
        }
    }

    /// Octez `gc_peer_ids`: removes disconnected, untrusted peers, lowest score first and, on
    /// equal scores, most recently created first (under a flood, the new low-score IDs are the
    /// attackers), until `target` remain.
    fn gc_peers(&mut self, target: usize, now: Instant) {
        let to_remove = self.peers.len().saturating_sub(target);
        let mut candidates: Vec<(f64, Instant, PeerId)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.state == peer::State::Disconnected && !p.record.trusted)
            .map(|(id, p)| (self.config.score.score(p, now), p.record.created, *id))
            .collect();
        candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
        let mut removed = 0;
        for (_, _, id) in candidates.into_iter().take(to_remove) {
            self.peers.remove(&id);
            removed += 1;
        }
        if removed > 0 {
            self.events.push_back(Event::GcPeers(removed));
        }
    }

    /// Registers a peer (Octez `register_peer`), collecting peers first if the table is full.
    ///
    /// # Errors
    ///
    /// [`Error::PeerTableFull`] if no peer can be collected to make room for an untrusted one.
    pub fn register_peer(&mut self, peer: PeerId, now: Instant) -> Result<&mut peer::Info, Error> {
        self.insert_peer(peer, false, now)
    }

    fn insert_peer(
        &mut self,
        peer: PeerId,
        trusted: bool,
        now: Instant,
    ) -> Result<&mut peer::Info, Error> {
        if !self.peers.contains_key(&peer) {
            if let Some((high, low)) = self.config.max_known_peers
                && self.peers.len() >= high
            {
                self.gc_peers(low, now);
                if self.peers.len() >= high && !trusted {
                    return Err(Error::PeerTableFull { high });
                }
            }
            self.events.push_back(Event::NewPeer(peer));
        }
        Ok(self
            .peers
            .entry(peer)
            .or_insert_with(|| Box::new(peer::Info::new(peer::Record::new(now)))))
    }

    /// Restores a peer saved in the peers file (Octez `create` loading `peers.json`): its record
    /// as saved, disconnected, bypassing the GC; the point of its last established connection
    /// (or failed one) is registered as a point of that peer. An already known peer is left as
    /// it is.
    pub fn restore_peer(&mut self, peer: PeerId, record: peer::Record, now: Instant) {
        if peer == self.local_peer_id || self.peers.contains_key(&peer) {
            return;
        }
        let last = record
            .last_established_connection
            .as_ref()
            .or(record.last_failed_connection.as_ref())
            .map(|(a, _)| a.clone().with(Protocol::P2p(peer)));
        self.peers.insert(peer, Box::new(peer::Info::new(record)));
        if let Some(addr) = last {
            self.register_list_of_new_points(None, Medium::PeersFile, [&addr], now);
        }
    }

    /// Sets the expected peer ID of a point (Octez `set_expected_peer_id`), registering the
    /// point if it is unknown. If the point is connected (or being accepted) with another peer,
    /// its IP is greylisted and, if running, that peer is disconnected
    /// ([`Event::Disconnect`] with [`DisconnectReason::UnexpectedPeerId`]); greylisting comes
    /// first.
    ///
    /// # Errors
    ///
    /// As [`Pool::register_point`].
    pub fn set_expected_peer_id(
        &mut self,
        addr: &Multiaddr,
        expected: PeerId,
        now: Instant,
    ) -> Result<Multiaddr, Error> {
        let point = self.register_point(addr, None, Some(expected), now)?;
        let info = &self.points[&point];
        let live = info
            .state
            .peer_id()
            .or_else(|| info.last_peer_id.filter(|p| self.is_running(p)));
        if let Some(actual) = live.filter(|p| *p != expected) {
            if let Some(ip) = ip_of(&point) {
                self.acl.greylist_ip(ip, now);
            }
            if let Some(info) = self.points.get_mut(&point) {
                info.last_peer_id = None;
            }
            if self.is_running(&actual) {
                self.events.push_back(Event::Disconnect {
                    peer: actual,
                    reason: DisconnectReason::UnexpectedPeerId,
                });
            }
        }
        Ok(point)
    }

    /// Blacklists `ip` (Octez `Points.ban`); every running peer connected from it is
    /// disconnected and, if `ban_peers`, blacklisted and untrusted too. Returns what changed;
    /// the pool remembers the peers it banned, for [`Pool::unban_ip`].
    pub fn ban_ip(&mut self, ip: IpAddr, ban_peers: bool) -> IpBan {
        self.acl.ban_ip(ip);
        let mut ban = IpBan::default();
        for peer in self.running_from(ip) {
            if ban_peers && !self.acl.is_peer_blacklisted(&peer) {
                self.acl.ban_peer(peer);
                let trusted = self
                    .peers
                    .get_mut(&peer)
                    .is_some_and(|info| std::mem::take(&mut info.record.trusted));
                if trusted {
                    ban.untrusted.push(peer);
                }
                ban.banned.push(peer);
                self.ip_banned_peers
                    .entry(acl::canonical(ip))
                    .or_default()
                    .push((peer, trusted));
            }
            ban.disconnected.push(peer);
            self.events.push_back(Event::Disconnect {
                peer,
                reason: DisconnectReason::Banned,
            });
        }
        ban
    }

    /// Removes `ip` from the blacklist and greylist, unbans the peers connected from it, and
    /// undoes what [`Pool::ban_ip`] did to peers: the peers it banned are unbanned, and those it
    /// untrusted are trusted again, connected or not. Octez's `Points.unban` unbans only the
    /// IP, so a node whose peers were all banned with it stays without them until each is
    /// opened. Returns what changed.
    pub fn unban_ip(&mut self, ip: IpAddr) -> IpUnban {
        self.acl.unban_ip(ip);
        let mut unban = IpUnban::default();
        let recorded = self
            .ip_banned_peers
            .remove(&acl::canonical(ip))
            .unwrap_or_default();
        let running = self.running_from(ip).into_iter().map(|p| (p, false));
        for (peer, trusted) in recorded.into_iter().chain(running) {
            if self.acl.is_peer_blacklisted(&peer) {
                self.acl.unban_peer(&peer);
                unban.unbanned.push(peer);
            }
            if trusted && let Some(info) = self.peers.get_mut(&peer) {
                info.record.trusted = true;
                unban.trusted.push(peer);
            }
        }
        unban
    }

    /// Blacklists `peer`, which is no longer trusted, and disconnects it (Octez `Peers.ban`).
    pub fn ban_peer(&mut self, peer: PeerId) {
        self.acl.ban_peer(peer);
        if let Some(info) = self.peers.get_mut(&peer) {
            info.record.trusted = false;
        }
        if self.is_connected(&peer) {
            self.events.push_back(Event::Disconnect {
                peer,
                reason: DisconnectReason::Banned,
            });
        }
    }

    /// Removes `peer` from the blacklist and greylist.
    pub fn unban_peer(&mut self, peer: &PeerId) {
        self.acl.unban_peer(peer);
    }

    /// Trusts a point (Octez `Points.trust`): unbans its IP, then registers it trusted.
    ///
    /// # Errors
    ///
    /// As [`Pool::register_point`].
    pub fn trust_point(&mut self, addr: &Multiaddr, now: Instant) -> Result<Multiaddr, Error> {
        if let Some(ip) = ip_of(addr) {
            self.acl.unban_ip(ip);
        }
        self.register_point(addr, Some(true), None, now)
    }

    /// Stops trusting a point; returns whether it was known.
    pub fn untrust_point(&mut self, point: &Multiaddr) -> bool {
        self.trusted_points.remove(point);
        self.points
            .get_mut(point)
            .map(|info| info.trusted = false)
            .is_some()
    }

    /// Trusts a peer (Octez `Peers.trust`): unbans it, then registers it trusted.
    pub fn trust_peer(&mut self, peer: PeerId, now: Instant) {
        self.acl.unban_peer(&peer);
        if let Ok(info) = self.insert_peer(peer, true, now) {
            info.record.trusted = true;
        }
    }

    /// Stops trusting a peer; returns whether it was known.
    pub fn untrust_peer(&mut self, peer: &PeerId) -> bool {
        self.peers
            .get_mut(peer)
            .map(|info| info.record.trusted = false)
            .is_some()
    }

    /// Greylists `ip` (a handshake with it failed in a way only a broken or hostile peer
    /// causes). Connections already running from it stay.
    pub fn greylist_ip(&mut self, ip: IpAddr, now: Instant) {
        tracing::info!(%ip, "greylisted");
        self.acl.greylist_ip(ip, now);
    }

    /// Greylists `peer` and the IP of its current or last connection (Octez `greylist_peer`),
    /// then disconnects it if it is connected. Unlike Octez this works after the peer is gone.
    pub fn greylist_peer(&mut self, peer: PeerId, now: Instant) {
        self.acl.greylist_peer(peer);
        let ip = self
            .peers
            .get(&peer)
            .and_then(|p| p.remote.as_ref())
            .and_then(ip_of);
        match ip {
            Some(ip) => {
                tracing::info!(%peer, %ip, "greylisted, with its IP");
                self.acl.greylist_ip(ip, now);
            }
            None => tracing::info!(%peer, "greylisted"),
        }
        if self.is_connected(&peer) {
            self.events.push_back(Event::Disconnect {
                peer,
                reason: DisconnectReason::Greylisted,
            });
        }
    }

    /// Empties both greylists.
    pub fn clear_greylist(&mut self) {
        self.acl.clear_greylist();
    }

    /// Drops expired IP greylist entries; returns how many went.
    pub fn gc_greylist(&mut self, now: Instant) -> usize {
        self.acl.gc(now)
    }

    /// Empties the four ACLs, bans included (Octez `acl.clear`, `DELETE /network/greylist`).
    pub fn acl_clear(&mut self) {
        self.acl.clear();
        self.ip_banned_peers.clear();
    }

    fn is_connected(&self, peer: &PeerId) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|p| p.state != peer::State::Disconnected)
    }

    /// Running peers whose current connection comes from `ip`.
    fn running_from(&self, ip: IpAddr) -> Vec<PeerId> {
        let ip = acl::canonical(ip);
        let mut peers: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.state != peer::State::Disconnected)
            .filter(|(_, p)| p.remote.as_ref().and_then(ip_of).map(acl::canonical) == Some(ip))
            .map(|(id, _)| *id)
            .collect();
        // Sorted: the order reaches the disconnections, which a replay must see the same.
        peers.sort_unstable();
        peers
    }

    /// A dial of `point` asked by the operator or the application (Octez `connect`): registers
    /// the point if unknown, then `Disconnected -> Requested`, ignoring the backoff (as Octez's
    /// `PUT /network/points`). Returns the peer ID to dial it with.
    ///
    /// # Errors
    ///
    /// [`Error::IpBanned`] if the point's IP is banned, [`Error::PrivateMode`] in private mode
    /// for an untrusted point, [`Error::NotDisconnected`] if it is being dialed or connected,
    /// and [`Pool::register_point`]'s errors.
    pub fn connect(&mut self, addr: &Multiaddr, now: Instant) -> Result<Option<PeerId>, Error> {
        let (point, _) = point::split(addr)?;
        if let Some(ip) = ip_of(&point)
            && self.acl.is_ip_banned(ip, now)
        {
            return Err(Error::IpBanned(ip));
        }
        let point = self.register_point(addr, None, None, now)?;
        if self.config.private_mode && !self.points[&point].trusted {
            return Err(Error::PrivateMode(point.to_string()));
        }
        self.set_requested(&point, now)
    }

    /// `Disconnected -> Requested` for a dial of `point`. Returns the peer ID to dial it with.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownPoint`], or [`Error::NotDisconnected`] if the point is already being
    /// dialed or connected.
    pub fn set_requested(
        &mut self,
        point: &Multiaddr,
        now: Instant,
    ) -> Result<Option<PeerId>, Error> {
        let info = self
            .points
            .get_mut(point)
            .ok_or_else(|| Error::UnknownPoint(point.clone()))?;
        if !info.set_requested() {
            return Err(Error::NotDisconnected {
                point: point.clone(),
                state: info.state.name(),
            });
        }
        info.log(LogKind::OutgoingRequest, None, now);
        Ok(info.dial_peer_id())
    }

    /// Admission of an authenticated connection with `peer` from or to `remote` (the swarm's
    /// `handle_established_*`); `point` is the point we dialed, if we dialed one. In Octez's
    /// order: a banned IP or peer, a wrong expected peer ID, private mode, then room in the
    /// peer table. On success the point and the peer become `Accepted`; on refusal a dialed
    /// point goes back to `Disconnected` with a backoff.
    ///
    /// # Errors
    ///
    /// [`Error::IpBanned`], [`Error::PeerBanned`], [`Error::UnexpectedPeerId`],
    /// [`Error::PrivateMode`], [`Error::PeerTableFull`].
    pub fn accept(
        &mut self,
        peer: PeerId,
        remote: &Multiaddr,
        point: Option<&Multiaddr>,
        now: Instant,
        rng: &mut impl Rng,
    ) -> Result<(), Error> {
        self.accept_checked(peer, remote, point, false, now, rng)
    }

    /// [`accept`](Self::accept), leaving out the remote IP's ban and greylist if `ip_checked`
    /// (the node checked it at pending inbound, and evaluates each rule once).
    ///
    /// # Errors
    ///
    /// As [`accept`](Self::accept).
    pub fn accept_checked(
        &mut self,
        peer: PeerId,
        remote: &Multiaddr,
        point: Option<&Multiaddr>,
        ip_checked: bool,
        now: Instant,
        rng: &mut impl Rng,
    ) -> Result<(), Error> {
        let result = self.check_admission(peer, remote, point, ip_checked, now);
        let incoming = point.is_none();
        match result {
            Ok(()) => {
                let info = self.insert_peer(peer, false, now).expect("checked room");
                if incoming {
                    info.log(LogKind::IncomingRequest, Some(remote), now);
                }
                info.log(LogKind::AcceptingRequest, Some(remote), now);
                info.accepted += 1;
                if info.state == peer::State::Disconnected {
                    info.state = peer::State::Accepted;
                }
                info.remote = Some(remote.clone());
                if let Some(point) = point
                    && let Some(p) = self.points.get_mut(point)
                {
                    p.set_accepted(peer);
                    self.note_peer_point(peer, point);
                }
                Ok(())
            }
            Err(e) => {
                if let Some(info) = self.peers.get_mut(&peer) {
                    info.log(LogKind::RejectingRequest, Some(remote), now);
                }
                if let Some(point) = point {
                    if matches!(e, Error::UnexpectedPeerId(_))
                        && let Some(info) = self.points.get_mut(point)
                    {
                        info.last_peer_id = None;
                    }
                    self.dial_failed(point, now, rng);
                }
                Err(e)
            }
        }
    }

    fn check_admission(
        &self,
        peer: PeerId,
        remote: &Multiaddr,
        point: Option<&Multiaddr>,
        ip_checked: bool,
        now: Instant,
    ) -> Result<(), Error> {
        if !ip_checked
            && let Some(ip) = ip_of(remote)
            && self.acl.is_ip_banned(ip, now)
        {
            return Err(Error::IpBanned(ip));
        }
        if self.is_peer_banned(&peer) {
            return Err(Error::PeerBanned(peer));
        }
        if let Some(point) = point
            && let Some(expected) = self.points.get(point).and_then(|p| p.expected_peer_id())
            && expected != peer
        {
            return Err(Error::UnexpectedPeerId(Box::new(Mismatch {
                point: point.clone(),
                expected,
                actual: peer,
            })));
        }
        if self.config.private_mode
            && !self.is_trusted_peer(&peer)
            && !point
                .and_then(|p| self.points.get(p))
                .is_some_and(|p| p.trusted)
        {
            return Err(Error::PrivateMode(peer.to_string()));
        }
        if !self.peers.contains_key(&peer)
            && let Some((high, _)) = self.config.max_known_peers
            && self.peers.len() >= high
            && !self
                .peers
                .values()
                .any(|p| p.state == peer::State::Disconnected && !p.record.trusted)
        {
            return Err(Error::PeerTableFull { high });
        }
        Ok(())
    }

    /// An admitted connection was refused after all by another part of the node (another
    /// behaviour, a failed upgrade): the peer and the dialed point go back to `Disconnected`.
    pub fn accept_failed(
        &mut self,
        peer: PeerId,
        point: Option<&Multiaddr>,
        now: Instant,
        rng: &mut impl Rng,
    ) {
        if let Some(point) = point {
            self.dial_failed(point, now, rng);
        }
        if let Some(info) = self.peers.get_mut(&peer) {
            info.accepted = info.accepted.saturating_sub(1);
            if info.state == peer::State::Accepted && info.accepted == 0 {
                info.state = peer::State::Disconnected;
                if let Some(remote) = info.remote.clone() {
                    info.record.last_rejected_connection = Some((remote, now));
                }
                info.failures += 1;
            }
        }
    }

    /// A dial of `point` failed, at any step: it goes back to `Disconnected` (from `Requested`
    /// or `Accepted`) and its backoff grows; its peer, if known, records the failure.
    pub fn dial_failed(&mut self, point: &Multiaddr, now: Instant, rng: &mut impl Rng) {
        let Some(info) = self.points.get_mut(point) else {
            return;
        };
        if !matches!(
            info.state,
            point::State::Requested | point::State::Accepted { .. }
        ) {
            return;
        }
        info.set_failed(&self.config.backoff, now, rng);
        if let Some(peer) = info.dial_peer_id()
            && let Some(p) = self.peers.get_mut(&peer)
        {
            p.record.last_failed_connection = Some((point.clone(), now));
            p.failures += 1;
        }
    }

    /// A dial of `point` reached a peer other than the one expected or hinted: the hint is
    /// dropped, and the dial counts as failed.
    pub fn dial_wrong_peer(&mut self, point: &Multiaddr, now: Instant, rng: &mut impl Rng) {
        if let Some(info) = self.points.get_mut(point) {
            info.last_peer_id = None;
        }
        self.dial_failed(point, now, rng);
    }

    /// A dial of `point` was not attempted (say, the peer was already connected): the point goes
    /// back to `Disconnected` without a failure.
    pub fn dial_aborted(&mut self, point: &Multiaddr) {
        if let Some(info) = self.points.get_mut(point) {
            info.set_aborted();
        }
    }

    /// A connection with `peer` was established (the swarm's `ConnectionEstablished`) after
    /// [`Pool::accept`]; `point` is the point we dialed, if we dialed one, and `remote` the
    /// remote address. Returns `true` if the peer became running.
    pub fn connection_established(
        &mut self,
        peer: PeerId,
        point: Option<&Multiaddr>,
        remote: &Multiaddr,
        now: Instant,
    ) -> bool {
        if let Some(point) = point
            && let Some(info) = self.points.get_mut(point)
        {
            info.set_running(peer, now);
            self.note_peer_point(peer, point);
        }
        let Ok(info) = self.insert_peer(peer, false, now) else {
            return false;
        };
        info.accepted = info.accepted.saturating_sub(1);
        info.connections += 1;
        info.remote = Some(remote.clone());
        info.record.last_established_connection = Some((point.unwrap_or(remote).clone(), now));
        info.log(LogKind::ConnectionEstablished, Some(remote), now);
        info.failures = 0;
        if info.state == peer::State::Running {
            return false;
        }
        info.state = peer::State::Running;
        info.running_since = Some(now);
        self.active += 1;
        true
    }

    /// We refused (nacked) an established connection from `peer` for lack of room: the peer
    /// leaves `Accepted` (Octez `Rejecting_request`). It is not counted.
    pub fn reject(&mut self, peer: PeerId, now: Instant) {
        if let Some(info) = self.peers.get_mut(&peer) {
            info.accepted = info.accepted.saturating_sub(1);
            if info.state == peer::State::Accepted && info.accepted == 0 {
                info.state = peer::State::Disconnected;
            }
            let remote = info.remote.clone();
            if let Some(remote) = &remote {
                info.record.last_rejected_connection = Some((remote.clone(), now));
            }
            info.log(LogKind::RejectingRequest, remote.as_ref(), now);
        }
    }

    /// An admitted connection with `peer` closed, by the remote if `by_remote`; `point` is the
    /// point we had dialed for it, if any. Returns `true` if the peer stopped running (it was
    /// its last connection). [`Pool::connection_closed_for`] with [`CloseReason::Remote`] or
    /// [`CloseReason::Local`].
    pub fn connection_closed(
        &mut self,
        peer: PeerId,
        point: Option<&Multiaddr>,
        by_remote: bool,
        now: Instant,
        rng: &mut impl Rng,
    ) -> bool {
        let reason = if by_remote {
            CloseReason::Remote
        } else {
            CloseReason::Local
        };
        self.connection_closed_for(peer, point, reason, now, rng)
    }

    /// An admitted connection with `peer` closed for `reason` (by the remote if
    /// [`CloseReason::Remote`]), which the peer's log records; `point` is the point we had
    /// dialed for it, if any. Returns `true` if the peer stopped running (it was its last
    /// connection).
    pub fn connection_closed_for(
        &mut self,
        peer: PeerId,
        point: Option<&Multiaddr>,
        reason: CloseReason,
        now: Instant,
        rng: &mut impl Rng,
    ) -> bool {
        let by_remote = reason == CloseReason::Remote;
        if let Some(info) = point_with(&mut self.points, peer, point) {
            info.set_disconnected(&self.config.backoff, by_remote, now, rng);
        }
        let kind = if by_remote {
            LogKind::ExternalDisconnection
        } else {
            LogKind::Disconnection
        };
        self.peer_closed(peer, kind, Some(reason), now)
    }

    /// A connection we dialed closed after the peer refused it for lack of room (nacked it):
    /// its point backs off as after a failure (Octez: `Accepted -> Disconnected`), not for the
    /// disconnection delay. Returns `true` if the peer stopped running.
    pub fn connection_nacked(
        &mut self,
        peer: PeerId,
        point: Option<&Multiaddr>,
        now: Instant,
        rng: &mut impl Rng,
    ) -> bool {
        if let Some(info) = point_with(&mut self.points, peer, point) {
            info.set_rejected(&self.config.backoff, now, rng);
        }
        self.peer_closed(
            peer,
            LogKind::RequestRejected,
            Some(CloseReason::Refused),
            now,
        )
    }

    fn peer_closed(
        &mut self,
        peer: PeerId,
        kind: LogKind,
        reason: Option<CloseReason>,
        now: Instant,
    ) -> bool {
        let Some(info) = self.peers.get_mut(&peer) else {
            return false;
        };
        info.connections = info.connections.saturating_sub(1);
        let remote = info.remote.clone();
        push_log(&mut info.record.events, kind, remote.clone(), reason, now);
        if info.connections > 0 || info.state != peer::State::Running {
            return false;
        }
        info.state = if info.accepted > 0 {
            peer::State::Accepted
        } else {
            peer::State::Disconnected
        };
        if let Some(since) = info.running_since.take() {
            info.uptime += now.saturating_duration_since(since);
        }
        if let Some(remote) = remote {
            if kind == LogKind::RequestRejected {
                info.record.last_rejected_connection = Some((remote, now));
                info.failures += 1;
            } else {
                info.record.last_disconnection = Some((remote, now));
            }
        }
        self.active -= 1;
        true
    }

    /// Feeds the score: `peer`'s latency (the peerstore's ping EWMA).
    pub fn set_latency(&mut self, peer: &PeerId, latency: Duration) {
        if let Some(info) = self.peers.get_mut(peer) {
            info.latency = Some(latency);
        }
    }

    /// Feeds the score: the total value of `peer`'s connection-manager tags.
    pub fn set_tag_value(&mut self, peer: &PeerId, value: i64) {
        if let Some(info) = self.peers.get_mut(peer) {
            info.tag_value = value;
        }
    }
}

/// The key of a peer in [`Pool`]'s index of the points that name it: a 64-bit hash of its ID,
/// seeded by `keys`. The index is never walked, only looked up, so the seed reaches no
/// decision (the simulator's runs stay the same).
fn peer_key(keys: &foldhash::fast::RandomState, peer: &PeerId) -> u64 {
    use std::hash::BuildHasher;
    #[cfg(test)]
    if tests::ALL_KEYS_COLLIDE.get() {
        return 0;
    }
    keys.hash_one(peer)
}

#[cfg(test)]
mod tests;
