//! Choosing points: those to dial ([`Pool::candidates`]) and those to advertise
//! ([`Pool::list_known_points`]).

use std::{hash::BuildHasher, time::Instant};

use multiaddr::{Multiaddr, Protocol};
use rand::Rng;

use super::{Pool, peer, point};
use crate::PeerId;

impl Pool {
    /// Points the maintenance may dial in a round that started at `round_start` (Octez
    /// `connectable`), at most `max`, leaving out those `skip` names: disconnected points, not
    /// missed since `round_start`, out of their backoff, not banned, trusted in private mode,
    /// whose peer (if known) is neither running nor banned. Points that never missed come
    /// first, then the oldest `last_miss` (Octez's `Bounded_heap`).
    ///
    /// At most `max_trusted` of them are trusted points (the best of those), so that a node
    /// that knows only its bootstrap points does not dial them all.
    ///
    /// Ties (most points never missed) go by a hash of the address keyed with `salt`: a
    /// different order for each node and round, as Octez's hash-table order is in effect. An
    /// order by address would send every joining node that learned the same points to the
    /// same lowest addresses (in the simulator, 150 times the average inbound dial rate on a
    /// few nodes), and would let an attacker be dialed first by listening on low addresses.
    pub fn candidates(
        &self,
        now: Instant,
        round_start: Instant,
        max: usize,
        max_trusted: usize,
        salt: u64,
        skip: impl Fn(&Multiaddr) -> bool,
    ) -> Vec<Multiaddr> {
        // The checks on the point itself first: they are the cheapest and rule out most.
        let hasher = foldhash::fast::FixedState::with_seed(salt);
        let mut candidates: Vec<Entry<'_>> = self
            .points
            .iter()
            .filter(|(a, p)| {
                p.last_miss().is_none_or(|t| t <= round_start)
                    && self.point_dialable(a, p, now)
                    && !skip(a)
            })
            .map(|(a, p)| (p.last_miss(), hasher.hash_one(a.as_ref()), a, p.trusted))
            .collect();
        // `None < Some(_)`: never-missed points first, then the oldest miss; then the keyed
        // hash, and the address if hashes collide, so that the order is total and the choice
        // deterministic whatever the map's order.
        let order =
            |a: &Entry<'_>, b: &Entry<'_>| (a.0, a.1, a.2.as_ref()).cmp(&(b.0, b.1, b.2.as_ref()));
        if candidates.iter().filter(|c| c.3).count() > max_trusted {
            let (mut trusted, mut others): (Vec<_>, Vec<_>) =
                candidates.into_iter().partition(|c| c.3);
            if max_trusted > 0 {
                trusted.select_nth_unstable_by(max_trusted - 1, order);
            }
            trusted.truncate(max_trusted);
            others.append(&mut trusted);
            candidates = others;
        }
        if candidates.len() > max && max > 0 {
            candidates.select_nth_unstable_by(max - 1, order);
        }
        candidates.truncate(max);
        candidates.sort_unstable_by(order);
        candidates
            .into_iter()
            .map(|(_, _, a, _)| a.clone())
            .collect()
    }

    /// Whether `addr` may be dialed now: unknown to the pool, or a known point that
    /// [`Pool::candidates`] would offer (disconnected, out of its backoff, not banned, trusted
    /// in private mode, its peer neither us, connected nor banned), with `peer` (a hint, if
    /// any) neither us, connected nor banned either. Unknown points may be dialed only
    /// outside private mode.
    pub fn dialable(&self, addr: &Multiaddr, peer: Option<PeerId>, now: Instant) -> bool {
        let peer_ok = |id: PeerId| {
            id != self.local_peer_id && !self.is_connected(&id) && !self.is_peer_banned(&id)
        };
        if !peer.is_none_or(peer_ok) {
            return false;
        }
        match self.points.get(addr) {
            Some(p) => self.point_dialable(addr, p, now),
            None => {
                !self.config.private_mode
                    && !self.is_point_banned(addr, now)
                    && !self.own_points.contains(addr)
            }
        }
    }

    fn point_dialable(&self, addr: &Multiaddr, p: &point::Info, now: Instant) -> bool {
        p.state == point::State::Disconnected
            && !p.cannot_reconnect_yet(now)
            && (p.trusted || !self.config.private_mode)
            && !self.is_point_banned(addr, now)
            && !p.dial_peer_id().is_some_and(|id| {
                id == self.local_peer_id || self.is_connected(&id) || self.is_peer_banned(&id)
            })
    }

    /// The points to advertise to `requester` (Octez `list_known_points ~ignore_private:true`):
    /// known-public points that are not banned, at most `size`, the best `size - 2*size/5` by
    /// Octez's order and the rest drawn at random from the others. Each point carries
    /// `/p2p/<id>` when its peer is known. Points of `requester` itself are left out. Empty in
    /// private mode.
    ///
    /// Octez's order: connected points first, longest-standing first; then disconnected points,
    /// most recently seen first; never-seen points last.
    pub fn list_known_points(
        &self,
        size: usize,
        requester: Option<PeerId>,
        now: Instant,
        rng: &mut impl Rng,
    ) -> Vec<Multiaddr> {
        self.advertised(size, requester, now, rng)
            .into_iter()
            .map(|(addr, peer)| match peer {
                Some(id) => addr.clone().with(Protocol::P2p(id)),
                None => addr.clone(),
            })
            .collect()
    }

    /// [`Pool::list_known_points`] without the `/p2p` suffixes: each point with its peer if
    /// known, by reference. The choice does not depend on the map's iteration order: the best
    /// are chosen by a total order, the others by a hash of their address seeded from `rng`.
    pub(crate) fn advertised(
        &self,
        size: usize,
        requester: Option<PeerId>,
        now: Instant,
        rng: &mut impl Rng,
    ) -> Vec<(&Multiaddr, Option<PeerId>)> {
        if self.config.private_mode || size == 0 {
            return Vec::new();
        }
        // A walk of the whole point table: an index of the public points (about 40 % of the
        // table in the simulator's churn runs) cost more, as each had to be looked up again
        // by its address. The order of the walk reaches no decision: the selection below is by
        // a total order. Sized once, for the table, rather than grown as it fills.
        let mut known: Vec<Known<'_>> = Vec::with_capacity(self.points.len());
        known.extend(
            self.points
                .iter()
                .filter(|(_, p)| p.known_public)
                .filter_map(|(a, p)| {
                    let id = p.dial_peer_id_ref();
                    if (requester.is_some() && id == requester.as_ref())
                        || self.is_point_banned(a, now)
                        || id.is_some_and(|id| self.is_peer_banned(id))
                    {
                        return None;
                    }
                    let peer = id.and_then(|id| self.peers.get(id));
                    let peer_running = peer.is_some_and(|i| i.state == peer::State::Running);
                    let connected = p.state != point::State::Disconnected || peer_running;
                    let peer_seen = peer
                        .and_then(|i| i.record.last_established_connection.as_ref())
                        .map(|(_, t)| *t);
                    Some(Known {
                        connected,
                        seen: p.last_seen().max(peer_seen),
                        addr: a,
                        peer: id,
                    })
                }),
        );
        let other = size * 2 / 5;
        let best = size - other;
        if known.len() > size {
            known.select_nth_unstable_by(best - 1, Known::octez_order);
            let seed: u64 = rng.random();
            let hasher = foldhash::fast::FixedState::with_seed(seed);
            let mut rest: Vec<(u64, Known<'_>)> = known
                .drain(best..)
                .map(|k| (hasher.hash_one(k.addr.as_ref()), k))
                .collect();
            let draw = |a: &(u64, Known<'_>), b: &(u64, Known<'_>)| {
                (a.0, a.1.addr.as_ref()).cmp(&(b.0, b.1.addr.as_ref()))
            };
            if other > 0 {
                rest.select_nth_unstable_by(other - 1, draw);
            }
            rest.truncate(other);
            rest.sort_unstable_by(draw);
            known.sort_unstable_by(Known::octez_order);
            known.extend(rest.into_iter().map(|(_, k)| k));
        } else {
            known.sort_unstable_by(Known::octez_order);
        }
        known
            .into_iter()
            .map(|k| (k.addr, k.peer.copied()))
            .collect()
    }
}

/// A candidate for a dial: its last miss, its keyed hash, the point and whether it is trusted.
type Entry<'a> = (Option<Instant>, u64, &'a Multiaddr, bool);

/// A point that may be advertised, with what Octez's order needs.
struct Known<'a> {
    connected: bool,
    seen: Option<Instant>,
    addr: &'a Multiaddr,
    /// By reference: the candidates are moved about by the selection, and a `PeerId` is 80
    /// bytes.
    peer: Option<&'a PeerId>,
}

impl Known<'_> {
    /// Octez's order: connected points first, longest-standing (oldest `last_seen`) first; then
    /// disconnected points, most recently seen first, never seen last; the address breaks ties.
    fn octez_order(a: &Self, b: &Self) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        match (a.connected, b.connected) {
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (true, true) => (a.seen, a.addr.as_ref()).cmp(&(b.seen, b.addr.as_ref())),
            (false, false) => (b.seen, a.addr.as_ref()).cmp(&(a.seen, b.addr.as_ref())),
        }
    }
}
