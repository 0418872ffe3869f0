//! The pool: the connection lifecycle state of points and peers, as Octez `P2p_pool`
//! (`spec/tezos_p2p.md` §2, §3, §5).
//!
//! A **point** is a dialable address without `/p2p` (`/ip4/1.2.3.4/tcp/9732`); a **peer** is a
//! [`PeerId`]. The pool keeps the two tables apart, as Octez does: points carry the dial state
//! machine and the reconnection [`Backoff`]; peers carry the connection state. Facts about peers
//! (addresses with TTLs, protocols, latency) live in the [`peerstore`](crate::peerstore), not here.
//!
//! The pool only records what happened; the [`maintenance`](crate::maintenance) decides what to
//! dial and what to close, and the libp2p glue does it.
//!
//! Differences from Octez, on purpose:
//!
//! - Every failure path of a dial returns its point to `Disconnected` with a backoff (Octez can
//!   leave a point stuck in `Requested`, §13).
//! - The tables never exceed their `high` bound: the GC runs before an insertion and, if it
//!   cannot make room, the insertion is refused (Octez briefly holds `high + 1`, #3175).
//! - Backoff waits have jitter (see [`Backoff`]).
//! - [`Pool::list_known_points`] samples without replacement, so it returns exactly `size` points
//!   when it has more (Octez can return fewer through duplicate indices).

pub mod peer;
pub mod point;

use std::{
    collections::{HashMap, HashSet},
    time::Instant,
};

use multiaddr::{Multiaddr, Protocol};
use rand::Rng;

pub use self::point::{Backoff, PointError, split as split_point};
use crate::PeerId;

/// Configuration of the [`Pool`].
#[derive(Debug, Clone)]
pub struct Config {
    max_known_points: Option<(usize, usize)>,
    max_known_peers: Option<(usize, usize)>,
    backoff: Backoff,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_known_points: Some((400, 300)),
            max_known_peers: Some((400, 300)),
            backoff: Backoff::default(),
        }
    }
}

impl Config {
    /// Octez's defaults: known points and peers `(400, 300)`, backoff as [`Backoff::default`].
    pub fn new() -> Self {
        Self::default()
    }
    /// `(high, low)` bounds of the point table: when an insertion finds `high` points, the GC
    /// removes collectable points down to `low`. `None` disables the GC and the cap.
    /// `Some((400, 300))` by default (Octez `max_known_points`).
    ///
    /// # Panics
    ///
    /// If `low > high` or `high == 0`.
    pub fn with_max_known_points(mut self, bounds: Option<(usize, usize)>) -> Self {
        check_gc_bounds(bounds);
        self.max_known_points = bounds;
        self
    }
    /// `(high, low)` bounds of the peer table, as [`Config::with_max_known_points`].
    /// `Some((400, 300))` by default (Octez `max_known_peer_ids`).
    ///
    /// # Panics
    ///
    /// If `low > high` or `high == 0`.
    pub fn with_max_known_peers(mut self, bounds: Option<(usize, usize)>) -> Self {
        check_gc_bounds(bounds);
        self.max_known_peers = bounds;
        self
    }
    /// Reconnection backoff of points. [`Backoff::default`] by default.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }
}

/// The point `point` if it is running with `peer`.
fn running_point<'a>(
    points: &'a mut HashMap<Multiaddr, point::Info>,
    peer: PeerId,
    point: Option<&Multiaddr>,
) -> Option<&'a mut point::Info> {
    points
        .get_mut(point?)
        .filter(|info| info.state == (point::State::Running { peer_id: peer }))
}

fn check_gc_bounds(bounds: Option<(usize, usize)>) {
    if let Some((high, low)) = bounds {
        assert!(
            high > 0 && low <= high,
            "GC bounds need 0 < high and low <= high"
        );
    }
}

/// Errors of the [`Pool`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The address cannot be a point.
    #[error(transparent)]
    Point(#[from] PointError),
    /// The point table is full of points that cannot be collected.
    #[error("point table full ({high} points, none collectable)")]
    PointTableFull {
        /// The table's `high` bound.
        high: usize,
    },
    /// The point is one of our own listen addresses, or names our own peer ID.
    #[error("point {0} is our own")]
    OwnPoint(Multiaddr),
    /// The point is not in the table.
    #[error("unknown point {0}")]
    UnknownPoint(Multiaddr),
    /// The point cannot be dialed in its current state.
    #[error("point {point} is {state}, not disconnected")]
    NotDisconnected {
        /// The point.
        point: Multiaddr,
        /// Its state's name.
        state: &'static str,
    },
}

/// The point and peer tables of a node. See the [module docs](self).
#[derive(Debug)]
pub struct Pool {
    config: Config,
    local_peer_id: PeerId,
    points: HashMap<Multiaddr, point::Info>,
    peers: HashMap<PeerId, peer::Info>,
    own_points: HashSet<Multiaddr>,
    active: usize,
}

impl Pool {
    /// An empty pool for the node `local_peer_id`.
    pub fn new(local_peer_id: PeerId, config: Config) -> Self {
        Self {
            config,
            local_peer_id,
            points: HashMap::new(),
            peers: HashMap::new(),
            own_points: HashSet::new(),
            active: 0,
        }
    }

    /// Our own peer ID.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// Number of running peers: the node's active connections as the maintenance counts them
    /// (Octez `active_connections`). Several libp2p connections to one peer count once.
    pub fn active(&self) -> usize {
        self.active
    }

    /// Number of points being dialed.
    pub fn requested(&self) -> usize {
        self.points
            .values()
            .filter(|p| p.state == point::State::Requested)
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
        self.points.get(point)
    }

    /// What the pool knows of `peer`.
    pub fn peer(&self, peer: &PeerId) -> Option<&peer::Info> {
        self.peers.get(peer)
    }

    /// All known points.
    pub fn points(&self) -> impl Iterator<Item = (&Multiaddr, &point::Info)> {
        self.points.iter()
    }

    /// All known peers.
    pub fn peers(&self) -> impl Iterator<Item = (&PeerId, &peer::Info)> {
        self.peers.iter()
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

    /// Whether `peer` is trusted, or connected through a trusted point. The maintenance never
    /// closes such a peer.
    pub fn is_trusted_peer(&self, peer: &PeerId) -> bool {
        self.peers.get(peer).is_some_and(|p| p.trusted)
            || self.points.values().any(|p| {
                p.trusted
                    && matches!(p.state, point::State::Running { peer_id } if peer_id == *peer)
            })
    }

    /// Records our own listen addresses: they are never registered as points (Octez
    /// `my_id_points`), and any already registered are removed.
    pub fn add_own_point(&mut self, addr: &Multiaddr) {
        if let Ok((point, _)) = point::split(addr) {
            self.points.remove(&point);
            self.own_points.insert(point);
        }
    }

    /// Registers a trusted point, with the expected peer ID of its `/p2p` suffix if it has one
    /// (Octez `register_point ~trusted:true ?expected_peer_id`). Returns the point.
    ///
    /// # Errors
    ///
    /// [`Error::Point`] if `addr` is not dialable, [`Error::OwnPoint`] for our own addresses,
    /// [`Error::PointTableFull`] if no point can be collected to make room.
    pub fn add_trusted_point(
        &mut self,
        addr: &Multiaddr,
        now: Instant,
    ) -> Result<Multiaddr, Error> {
        let (point, peer) = point::split(addr)?;
        if peer == Some(self.local_peer_id) {
            return Err(Error::OwnPoint(addr.clone()));
        }
        let info = self.register_point(&point, now)?;
        info.trusted = true;
        if peer.is_some() {
            info.expected_peer_id = peer;
        }
        Ok(point)
    }

    /// Registers points learned from elsewhere (Octez `register_list_of_new_points`): entries of
    /// a peer exchange, or the listen addresses a connected peer announced (`known_public`).
    /// Each entry may end in `/p2p/<id>`, which is kept as the point's peer hint. Entries that are
    /// not dialable, are our own, or do not fit in the table are skipped.
    ///
    /// Returns the number of points that were new.
    pub fn register_new_points<'a>(
        &mut self,
        addrs: impl IntoIterator<Item = &'a Multiaddr>,
        known_public: bool,
        now: Instant,
    ) -> usize {
        let mut new = 0;
        for addr in addrs {
            let Ok((point, peer)) = point::split(addr) else {
                continue;
            };
            if peer == Some(self.local_peer_id) || self.own_points.contains(&point) {
                continue;
            }
            let was_known = self.points.contains_key(&point);
            let Ok(info) = self.register_point(&point, now) else {
                break;
            };
            if info.last_peer_id.is_none() {
                info.last_peer_id = peer;
            }
            // A peer announcing its own listen address vouches for it; a third party does not.
            info.known_public |= known_public;
            new += usize::from(!was_known);
        }
        new
    }

    fn register_point(
        &mut self,
        point: &Multiaddr,
        now: Instant,
    ) -> Result<&mut point::Info, Error> {
        if self.own_points.contains(point) {
            return Err(Error::OwnPoint(point.clone()));
        }
        if !self.points.contains_key(point)
            && let Some((high, low)) = self.config.max_known_points
            && self.points.len() >= high
        {
            self.gc_points(low, now);
            if self.points.len() >= high {
                return Err(Error::PointTableFull { high });
            }
        }
        Ok(self
            .points
            .entry(point.clone())
            .or_insert_with(point::Info::new))
    }

    /// Octez `gc_points`: removes disconnected, untrusted points, oldest `last_miss` first (a
    /// point that never missed counts as `now`, so goes last), until `target` remain or no
    /// candidate is left.
    fn gc_points(&mut self, target: usize, now: Instant) {
        let to_remove = self.points.len().saturating_sub(target);
        let mut candidates: Vec<(Instant, Multiaddr)> = self
            .points
            .iter()
            .filter(|(_, p)| p.state == point::State::Disconnected && !p.trusted)
            .map(|(a, p)| (p.last_miss().unwrap_or(now), a.clone()))
            .collect();
        candidates.sort();
        for (_, addr) in candidates.into_iter().take(to_remove) {
            self.points.remove(&addr);
        }
    }

    /// Octez `gc_peer_ids`: removes disconnected, untrusted peers, most recently created first
    /// (the score is constant for now, as in the Octez node), until `target` remain.
    fn gc_peers(&mut self, target: usize) {
        let to_remove = self.peers.len().saturating_sub(target);
        let mut candidates: Vec<(Instant, PeerId)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.state == peer::State::Disconnected && !p.trusted)
            .map(|(id, p)| (p.created, *id))
            .collect();
        candidates.sort_by(|a, b| b.cmp(a));
        for (_, id) in candidates.into_iter().take(to_remove) {
            self.peers.remove(&id);
        }
    }

    fn register_peer(&mut self, peer: PeerId, now: Instant) -> &mut peer::Info {
        if !self.peers.contains_key(&peer)
            && let Some((high, low)) = self.config.max_known_peers
            && self.peers.len() >= high
        {
            self.gc_peers(low);
        }
        // An established connection is always recorded, even if the GC found no room: the
        // table then exceeds `high` by the running peers, which admission bounds.
        self.peers
            .entry(peer)
            .or_insert_with(|| peer::Info::new(now))
    }

    /// `Disconnected -> Requested` for a dial of `point`. Returns the peer ID to dial it with.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownPoint`], or [`Error::NotDisconnected`] if the point is already being
    /// dialed or connected.
    pub fn set_requested(&mut self, point: &Multiaddr) -> Result<Option<PeerId>, Error> {
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
        Ok(info.dial_peer_id())
    }

    /// A dial of `point` failed: it goes back to `Disconnected` and its backoff grows.
    pub fn dial_failed(&mut self, point: &Multiaddr, now: Instant, rng: &mut impl Rng) {
        if let Some(info) = self.points.get_mut(point)
            && info.state == point::State::Requested
        {
            info.set_failed(&self.config.backoff, now, rng);
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

    /// A connection with `peer` was established and admitted; `point` is the point we dialed,
    /// if we dialed one. Returns `true` if the peer became running.
    pub fn connection_established(
        &mut self,
        peer: PeerId,
        point: Option<&Multiaddr>,
        now: Instant,
    ) -> bool {
        if let Some(point) = point
            && let Some(info) = self.points.get_mut(point)
        {
            info.set_running(peer, now);
        }
        let info = self.register_peer(peer, now);
        info.connections += 1;
        info.last_established_connection = Some(now);
        if info.state == peer::State::Running {
            return false;
        }
        info.state = peer::State::Running;
        self.active += 1;
        true
    }

    /// A connection from `peer` was refused because the node is full (Octez's `Nack`).
    pub fn connection_rejected(&mut self, peer: PeerId, now: Instant) {
        self.register_peer(peer, now).last_rejected_connection = Some(now);
    }

    /// An admitted connection with `peer` closed; `point` is the point we had dialed for it, if
    /// any. Returns `true` if the peer stopped running (it was its last connection).
    pub fn connection_closed(
        &mut self,
        peer: PeerId,
        point: Option<&Multiaddr>,
        now: Instant,
        rng: &mut impl Rng,
    ) -> bool {
        if let Some(info) = running_point(&mut self.points, peer, point) {
            info.set_disconnected(&self.config.backoff, now, rng);
        }
        self.peer_closed(peer, now, false)
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
        if let Some(info) = running_point(&mut self.points, peer, point) {
            info.set_rejected(&self.config.backoff, now, rng);
        }
        self.peer_closed(peer, now, true)
    }

    fn peer_closed(&mut self, peer: PeerId, now: Instant, rejected: bool) -> bool {
        let Some(info) = self.peers.get_mut(&peer) else {
            return false;
        };
        info.connections = info.connections.saturating_sub(1);
        if info.connections > 0 || info.state != peer::State::Running {
            return false;
        }
        info.state = peer::State::Disconnected;
        if rejected {
            info.last_rejected_connection = Some(now);
        } else {
            info.last_disconnection = Some(now);
        }
        self.active -= 1;
        true
    }

    /// Points the maintenance may dial in a round that started at `round_start` (Octez
    /// `connectable`), at most `max`, leaving out those `skip` names: disconnected points, not
    /// missed since `round_start`, out of their backoff, whose peer (if known) is not already
    /// running. Points that never missed come first, then the oldest `last_miss`.
    pub fn candidates(
        &self,
        now: Instant,
        round_start: Instant,
        max: usize,
        skip: impl Fn(&Multiaddr) -> bool,
    ) -> Vec<Multiaddr> {
        let mut candidates: Vec<(Option<Instant>, &Multiaddr)> = self
            .points
            .iter()
            .filter(|(a, p)| {
                !skip(a)
                    && p.state == point::State::Disconnected
                    && p.last_miss().is_none_or(|t| t <= round_start)
                    && !p.cannot_reconnect_yet(now)
                    && !p
                        .dial_peer_id()
                        .is_some_and(|id| id == self.local_peer_id || self.is_running(&id))
            })
            .map(|(a, p)| (p.last_miss(), a))
            .collect();
        // `None < Some(_)`: never-missed points first, then the oldest miss; the address breaks
        // ties so that the choice is deterministic.
        candidates.sort_by(|a, b| (a.0, a.1.as_ref()).cmp(&(b.0, b.1.as_ref())));
        candidates
            .into_iter()
            .take(max)
            .map(|(_, a)| a.clone())
            .collect()
    }

    /// The points to advertise to `requester` (Octez `list_known_points ~ignore_private:true`):
    /// known-public points, at most `size`, the best `size - 2*size/5` by Octez's order and the
    /// rest drawn at random from the others. Each point carries `/p2p/<id>` when its peer is
    /// known. Points of `requester` itself are left out.
    ///
    /// Octez's order: connected points first, longest-standing first; then disconnected points,
    /// most recently seen first; never-seen points last.
    pub fn list_known_points(
        &self,
        size: usize,
        requester: Option<PeerId>,
        rng: &mut impl Rng,
    ) -> Vec<Multiaddr> {
        let mut known: Vec<(bool, Option<Instant>, &Multiaddr, &point::Info)> = self
            .points
            .iter()
            .filter(|(_, p)| p.known_public)
            .filter(|(_, p)| requester.is_none() || p.dial_peer_id() != requester)
            .map(|(a, p)| {
                let peer_running = p.dial_peer_id().is_some_and(|id| self.is_running(&id));
                let connected = p.state != point::State::Disconnected || peer_running;
                let peer_seen = p
                    .dial_peer_id()
                    .and_then(|id| self.peers.get(&id))
                    .and_then(|i| i.last_established_connection);
                (connected, p.last_seen().max(peer_seen), a, p)
            })
            .collect();
        known.sort_by(|a, b| {
            use std::cmp::Ordering;
            match (a.0, b.0) {
                (true, false) => Ordering::Less,
                (false, true) => Ordering::Greater,
                // Connected: oldest `last_seen` first.
                (true, true) => (a.1, a.2.as_ref()).cmp(&(b.1, b.2.as_ref())),
                // Disconnected: newest `last_seen` first, never seen (`None`) last.
                (false, false) => (b.1, a.2.as_ref()).cmp(&(a.1, b.2.as_ref())),
            }
        });
        let other = size * 2 / 5;
        let best = size - other;
        let picked: Vec<usize> = if known.len() <= size {
            (0..known.len()).collect()
        } else {
            let mut rest: Vec<usize> = rand::seq::index::sample(rng, known.len() - best, other)
                .into_iter()
                .map(|i| i + best)
                .collect();
            rest.sort_unstable();
            (0..best).chain(rest).collect()
        };
        picked
            .into_iter()
            .map(|i| {
                let (_, _, addr, info) = known[i];
                match info.dial_peer_id() {
                    Some(id) => addr.clone().with(Protocol::P2p(id)),
                    None => addr.clone(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
