//! Victim selection (go-libp2p `p2p/net/connmgr/connmgr.go`: `getConnsToClose`,
//! `getConnsToCloseEmergency`).
//!
//! A trim ranks candidate peers by a compact key, then chooses the lowest-ranked until the
//! target is met. Only as many peers as the target can need (each has at least one connection)
//! are ordered: a linear-time selection (`select_nth_unstable`) isolates them, and only those
//! are sorted. Candidates refer to their peer IDs instead of copying them, so selection moves
//! small values; a trim allocates its candidate list and its list of victims. Cost:
//! `O(n + t log t)` for `n` candidates and a target of `t` connections.

use std::{cmp::Reverse, fmt, hash::Hash, time::Instant};

use super::{ConnManager, Live, Peer, Trim, TrimKind, Victim};
use crate::PeerId;

/// A candidate's rank; lower is closed first. Compact (no peer ID inside), so that selection
/// and sorting move little memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    value: i64,
    /// Peers with no open stream first.
    has_streams: bool,
    /// Peers with an inbound connection first.
    outbound_only: bool,
    /// Fewer streams first; negated in an emergency (more streams first).
    streams: i64,
    /// The newest peer first.
    first_seen: Reverse<Instant>,
}

/// A candidate refers to its peer ID (80 bytes) rather than copying it, so that the selection
/// moves 48-byte candidates.
#[derive(Debug, Clone, Copy)]
struct Candidate<'a> {
    key: Key,
    peer: &'a PeerId,
    connections: u32,
    protected: bool,
}

/// Builds the rank of a peer from its live (not closing) connections, with their number.
fn rank<C>(p: &Peer<C>, emergency: bool) -> (Key, u32) {
    let Live {
        connections,
        inbound,
        streams,
    } = p.live;
    let key = Key {
        value: p.value,
        has_streams: streams > 0,
        outbound_only: inbound == 0,
        streams: if emergency { -streams } else { streams },
        first_seen: Reverse(p.first_seen),
    };
    (key, connections)
}

impl<C: Copy + Eq + Hash + fmt::Debug> ConnManager<C> {
    pub(super) fn run_trim(&mut self, kind: TrimKind, now: Instant) -> Trim {
        self.last_trim = Some(now);
        let mut victims = Vec::new();
        if self.config.trimming() {
            match kind {
                TrimKind::Background | TrimKind::Manual => self.select_normal(now, &mut victims),
                TrimKind::Emergency => self.select_emergency(&mut victims),
            }
        }
        let silence_end = now + self.config.silence_period;
        self.next_background = Some(if victims.is_empty() {
            self.grace_end(now)
                .map_or(silence_end, |t| t.min(silence_end))
        } else {
            silence_end
        });
        for v in &victims {
            if let Some(p) = self.peers.get_mut(&v.peer) {
                for c in p.connections.iter_mut().filter(|c| !c.closing) {
                    c.closing = true;
                    self.closing += 1;
                }
                p.live = Live::default();
            }
        }
        Trim { kind, victims }
    }

    /// go `getConnsToClose`: candidates are unprotected peers out of grace; the target is their
    /// connections minus the low watermark.
    fn select_normal(&mut self, now: Instant, victims: &mut Vec<Victim>) {
        let low = self.config.low_water;
        if self.connections - self.closing <= low {
            return;
        }
        let mut scratch = Vec::with_capacity(self.peers.len());
        let mut temp = Vec::new();
        let mut candidates = 0;
        for (id, p) in &self.peers {
            if p.protected || self.in_grace(p, now) {
                continue;
            }
            if p.is_temp() {
                temp.push(*id);
                continue;
            }
            let (key, live) = rank(p, false);
            if live > 0 {
                candidates += live as usize;
                scratch.push(Candidate {
                    key,
                    peer: id,
                    connections: live,
                    protected: false,
                });
            }
        }
        if candidates > low {
            take_lowest(&mut scratch, candidates - low, victims);
            // Temporary entries rank first in go and are dropped, not closed.
            for id in &temp {
                self.remove_entry(id, true);
            }
        }
    }

    /// go `getConnsToCloseEmergency`: unprotected peers, grace ignored, more streams first;
    /// then protected peers if that fell short.
    fn select_emergency(&mut self, victims: &mut Vec<Victim>) {
        let Some(mut target) = (self.connections - self.closing).checked_sub(self.config.low_water)
        else {
            return;
        };
        let mut scratch = Vec::with_capacity(self.peers.len());
        for protected in [false, true] {
            if target == 0 {
                break;
            }
            scratch.clear();
            for (id, p) in &self.peers {
                if p.protected != protected {
                    continue;
                }
                let (key, live) = rank(p, true);
                if live > 0 {
                    scratch.push(Candidate {
                        key,
                        peer: id,
                        connections: live,
                        protected,
                    });
                }
            }
            target = take_lowest(&mut scratch, target, victims);
        }
    }

    /// `peers` in the order a trim closes them, for a caller that decides how many to close
    /// (the maintenance): protected peers are left out; peers out of their grace period come
    /// first, by rank (lowest tag value first, as go's `getConnsToClose`); then those in it,
    /// lowest tag value first and, on a tie, the longest-standing first, so that the newest
    /// connections are the last to go. Peers the manager does not know come first: nothing
    /// argues for keeping them.
    pub fn close_order(&self, peers: &[PeerId], now: Instant) -> Vec<PeerId> {
        type Order = (bool, bool, Option<(i64, Instant)>, Option<Key>, PeerId);
        let mut ranked: Vec<Order> = peers
            .iter()
            .filter_map(|id| match self.peers.get(id) {
                None => Some((false, false, None, None, *id)),
                Some(p) if p.protected => None,
                Some(p) if self.in_grace(p, now) => {
                    Some((true, true, Some((p.value, p.first_seen)), None, *id))
                }
                Some(p) => Some((true, false, None, Some(rank(p, false).0), *id)),
            })
            .collect();
        ranked.sort_unstable();
        ranked.into_iter().map(|(.., id)| id).collect()
    }

    /// When the first unprotected connected peer in its grace period at `now` leaves it.
    fn grace_end(&self, now: Instant) -> Option<Instant> {
        self.peers
            .iter()
            .filter(|(_, p)| !p.is_temp() && !p.protected && self.in_grace(p, now))
            .map(|(_, p)| p.first_seen + self.config.grace_period)
            .min()
    }
}

/// Chooses the lowest-ranked candidates, whole peers, until `target` connections are chosen;
/// returns what is left of the target.
fn take_lowest(
    candidates: &mut [Candidate<'_>],
    mut target: usize,
    victims: &mut Vec<Victim>,
) -> usize {
    // Each candidate has a connection at least, so `target` of them are enough.
    let needed = target.min(candidates.len());
    if needed == 0 {
        return target;
    }
    // Ties (same rank) are broken by peer ID, so that the same state gives the same victims
    // whatever the map's (randomly seeded) iteration order: a simulation replays exactly.
    if needed < candidates.len() {
        candidates.select_nth_unstable_by_key(needed - 1, |c| (c.key, c.peer));
    }
    let lowest = &mut candidates[..needed];
    lowest.sort_unstable_by_key(|c| (c.key, c.peer));
    for c in lowest.iter() {
        if target == 0 {
            break;
        }
        target = target.saturating_sub(c.connections as usize);
        victims.push(Victim {
            peer: *c.peer,
            connections: c.connections as usize,
            value: c.key.value,
            protected: c.protected,
        });
    }
    target
}

/// Every peer in trim order, for tests of go's `TestPeerInfoSorting`: temporary entries first
/// (a trim drops them before choosing victims), then connected peers by rank.
#[cfg(test)]
pub(super) fn ranking<C: Copy + Eq + Hash + fmt::Debug>(
    cm: &ConnManager<C>,
    emergency: bool,
) -> Vec<PeerId> {
    let temp = cm
        .peers
        .iter()
        .filter(|(_, p)| p.is_temp())
        .map(|(id, _)| *id);
    let mut connected: Vec<(Key, PeerId)> = cm
        .peers
        .iter()
        .filter(|(_, p)| !p.is_temp())
        .map(|(id, p)| (rank(p, emergency).0, *id))
        .collect();
    connected.sort_unstable_by_key(|c| c.0);
    temp.chain(connected.into_iter().map(|c| c.1)).collect()
}
