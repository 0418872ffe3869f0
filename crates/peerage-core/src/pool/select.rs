//! Choosing points: those to dial ([`Pool::candidates`]) and those to advertise
//! ([`Pool::list_known_points`]).

use std::time::Instant;

use multiaddr::{Multiaddr, Protocol};
use rand::Rng;

use super::{Pool, peer, point};
use crate::PeerId;

impl Pool {
    /// Points the maintenance may dial in a round that started at `round_start` (Octez
    /// `connectable`), at most `max`, leaving out those `skip` names: disconnected points, not
    /// missed since `round_start`, out of their backoff, not banned, trusted in private mode,
    /// whose peer (if known) is neither running nor banned. Points that never missed come
    /// first, then the oldest `last_miss`.
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
                    && (p.trusted || !self.config.private_mode)
                    && !self.is_point_banned(a, now)
                    && !p.dial_peer_id().is_some_and(|id| {
                        id == self.local_peer_id
                            || self.is_connected(&id)
                            || self.is_peer_banned(&id)
                    })
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
        if self.config.private_mode {
            return Vec::new();
        }
        let mut known: Vec<(bool, Option<Instant>, &Multiaddr, &point::Info)> = self
            .points
            .iter()
            .filter(|(_, p)| p.known_public)
            .filter(|(_, p)| requester.is_none() || p.dial_peer_id() != requester)
            .filter(|(a, p)| {
                !self.is_point_banned(a, now)
                    && !p.dial_peer_id().is_some_and(|id| self.is_peer_banned(&id))
            })
            .map(|(a, p)| {
                let peer = p.dial_peer_id().and_then(|id| self.peers.get(&id));
                let peer_running = peer.is_some_and(|i| i.state == peer::State::Running);
                let connected = p.state != point::State::Disconnected || peer_running;
                let peer_seen = peer
                    .and_then(|i| i.record.last_established_connection.as_ref())
                    .map(|(_, t)| *t);
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
