//! Victim selection (go-libp2p `p2p/net/connmgr/connmgr.go`: `getConnsToClose`,
//! `getConnsToCloseEmergency`).
//!
//! A trim walks the dense array of what it reads of each peer (`Hot`, 48 bytes a peer), ranks
//! candidate peers by a compact key, then chooses the lowest-ranked until the target is met.
//! Only as many peers as the target can need (each has at least one connection) are ordered: a
//! linear-time selection (`select_nth_unstable`) isolates them, and only those are sorted. A
//! normal trim of a large table first estimates, from a sample, a rank above which no victim
//! lies, and keeps only the candidates below it (see [`cutoff`]). Candidates name their peer by its index and break ties by a number derived from its peer ID,
//! so selection moves small values and reads no peer ID; a trim allocates its candidate list and
//! its list of victims. Cost: `O(n + t log t)` for `n` candidates and a target of `t`
//! connections.

use std::{
    fmt,
    hash::Hash,
    time::{Duration, Instant},
};

use super::{ConnManager, Hot, Live, Peer, Trim, TrimKind, Victim};
use crate::PeerId;

/// A candidate's rank; lower is closed first. Packed into three integers (24 bytes), so that
/// selection compares and moves little; derived order is field order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    /// The total tag value, its sign bit flipped so that unsigned order is signed order.
    value: u64,
    /// From the high bit: whether the peer has open streams (peers with none first), whether
    /// it has only outbound connections (peers with an inbound one first), then its stream
    /// count (fewer first; negated in an emergency, more first), biased by 2^61.
    streams: u64,
    /// `u64::MAX` minus the nanoseconds from the manager's start to the peer's first
    /// connection: the newest peer first.
    newest: u64,
}

impl Key {
    const SIGN: u64 = 1 << 63;
    const HAS_STREAMS: u64 = 1 << 63;
    const OUTBOUND_ONLY: u64 = 1 << 62;
    const STREAMS_BIAS: i64 = 1 << 61;

    /// The tag value the key was built from.
    fn value(&self) -> i64 {
        (self.value ^ Self::SIGN) as i64
    }
}

/// A candidate names its peer by its index in the peer table rather than by its peer ID (80
/// bytes), so that the selection moves 40-byte candidates.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    key: Key,
    /// The peer's [`Hot::tie`].
    tie: u64,
    index: u32,
    connections: u32,
}

impl Candidate {
    fn new(index: usize, key: Key, hot: &Hot, connections: u32) -> Self {
        let index = u32::try_from(index).expect("fewer than 2^32 peers");
        Self {
            key,
            tie: hot.tie,
            index,
            connections,
        }
    }

    /// The candidate's place in the order: rank, then tie-break, then (for equal tie-breaks,
    /// which two random peer IDs almost never have) the peer ID itself.
    fn order<'a, C>(&self, peers: &'a [Peer<C>]) -> (Key, u64, &'a PeerId) {
        (self.key, self.tie, &peers[self.index as usize].id)
    }
}

/// Builds the rank of a peer from its live (not closing) connections, with their number.
fn rank(hot: &Hot, emergency: bool) -> (Key, u32) {
    let Live {
        connections,
        inbound,
        streams,
    } = hot.live;
    let bias = Key::STREAMS_BIAS;
    let count = if emergency { -streams } else { streams }.clamp(-bias, bias - 1) + bias;
    let key = Key {
        value: hot.value as u64 ^ Key::SIGN,
        streams: if streams > 0 { Key::HAS_STREAMS } else { 0 }
            | if inbound == 0 { Key::OUTBOUND_ONLY } else { 0 }
            | count as u64,
        newest: u64::MAX - hot.first_seen,
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
        Trim { kind, victims }
    }

    /// go `getConnsToClose`: candidates are unprotected peers out of grace; the target is their
    /// connections minus the low watermark.
    fn select_normal(&mut self, now: Instant, victims: &mut Vec<Victim>) {
        let low = self.config.low_water;
        let Some(bound) = (self.connections - self.closing).checked_sub(low) else {
            return;
        };
        let nanos = self.nanos(now);
        let is_candidate = |hot: &Hot| {
            !hot.protected && !hot.temp && hot.live.connections > 0 && !self.in_grace(hot, nanos)
        };
        // Each candidate has a connection at least, so at most `bound` peers are chosen.
        let cutoff = cutoff(&self.hot, bound, is_candidate);
        let mut scratch = Vec::new();
        let mut temp = Vec::new();
        let (mut candidates, mut peers) = (0, 0);
        for (index, hot) in self.hot.iter().enumerate() {
            if hot.protected || self.in_grace(hot, nanos) {
                continue;
            }
            if hot.temp {
                temp.push(index);
                continue;
            }
            let (key, live) = rank(hot, false);
            if live > 0 {
                candidates += live as usize;
                peers += 1;
                if cutoff.is_none_or(|cutoff| key <= cutoff) {
                    scratch.push(Candidate::new(index, key, hot, live));
                }
            }
        }
        if candidates <= low {
            return;
        }
        let target = candidates - low;
        if scratch.len() < target.min(peers) {
            // The cutoff kept fewer candidates than the trim may need: rank them all.
            scratch.clear();
            for (index, hot) in self.hot.iter().enumerate() {
                if is_candidate(hot) {
                    let (key, live) = rank(hot, false);
                    scratch.push(Candidate::new(index, key, hot, live));
                }
            }
        }
        self.take_lowest(&mut scratch, target, false, victims);
        // Temporary entries rank first in go and are dropped, not closed. Dropping one moves
        // the last entry into its index, so they go by peer ID.
        let temp: Vec<PeerId> = temp.iter().map(|&i| self.peers[i].id).collect();
        for id in &temp {
            self.remove_entry(id, true);
        }
    }

    /// go `getConnsToCloseEmergency`: unprotected peers, grace ignored, more streams first;
    /// then protected peers if that fell short.
    fn select_emergency(&mut self, victims: &mut Vec<Victim>) {
        let Some(mut target) = (self.connections - self.closing).checked_sub(self.config.low_water)
        else {
            return;
        };
        let mut scratch = Vec::with_capacity(self.hot.len());
        for protected in [false, true] {
            if target == 0 {
                break;
            }
            scratch.clear();
            for (index, hot) in self.hot.iter().enumerate() {
                if hot.protected != protected {
                    continue;
                }
                let (key, live) = rank(hot, true);
                if live > 0 {
                    scratch.push(Candidate::new(index, key, hot, live));
                }
            }
            target = self.take_lowest(&mut scratch, target, protected, victims);
        }
    }

    /// `peers` in the order a trim closes them, for a caller that decides how many to close
    /// (the maintenance): protected peers are left out; peers out of their grace period come
    /// first, by rank (lowest tag value first, as go's `getConnsToClose`); then those in it,
    /// lowest tag value first and, on a tie, the longest-standing first, so that the newest
    /// connections are the last to go. Peers the manager does not know come first: nothing
    /// argues for keeping them.
    pub fn close_order(&self, peers: &[PeerId], now: Instant) -> Vec<PeerId> {
        type Order = (bool, bool, Option<(i64, u64)>, Option<Key>, PeerId);
        let now = self.nanos(now);
        let mut ranked: Vec<Order> = peers
            .iter()
            .filter_map(|id| match self.index.get(id).map(|&i| &self.hot[i]) {
                None => Some((false, false, None, None, *id)),
                Some(h) if h.protected => None,
                Some(h) if self.in_grace(h, now) => {
                    Some((true, true, Some((h.value, h.first_seen)), None, *id))
                }
                Some(h) => Some((true, false, None, Some(rank(h, false).0), *id)),
            })
            .collect();
        ranked.sort_unstable();
        ranked.into_iter().map(|(.., id)| id).collect()
    }

    /// When the first unprotected connected peer in its grace period at `now` leaves it.
    fn grace_end(&self, now: Instant) -> Option<Instant> {
        let now = self.nanos(now);
        let first = self
            .hot
            .iter()
            .filter(|h| !h.temp && !h.protected && self.in_grace(h, now))
            .map(|h| h.first_seen)
            .min()?;
        Some(self.ticks.epoch + Duration::from_nanos(first) + self.config.grace_period)
    }

    /// Chooses the lowest-ranked candidates, whole peers, until `target` connections are
    /// chosen, and marks them chosen; returns what is left of the target. The victims'
    /// connections are marked closing when next read ([`settle`](super::settle)), so that a
    /// trim touches only the victims' `Hot`.
    fn take_lowest(
        &mut self,
        candidates: &mut [Candidate],
        mut target: usize,
        protected: bool,
        victims: &mut Vec<Victim>,
    ) -> usize {
        // Each candidate has a connection at least, so `target` of them are enough.
        let needed = target.min(candidates.len());
        if needed == 0 {
            return target;
        }
        // Ties (same rank) are broken by peer ID, so that the same state gives the same victims
        // whatever the order of the peer table: a simulation replays exactly.
        let peers = &self.peers;
        if needed < candidates.len() {
            candidates
                .select_nth_unstable_by(needed - 1, |a, b| a.order(peers).cmp(&b.order(peers)));
        }
        let lowest = &mut candidates[..needed];
        lowest.sort_unstable_by(|a, b| a.order(peers).cmp(&b.order(peers)));
        for c in lowest.iter() {
            if target == 0 {
                break;
            }
            target = target.saturating_sub(c.connections as usize);
            let index = c.index as usize;
            victims.push(Victim {
                peer: self.peers[index].id,
                connections: c.connections as usize,
                value: c.key.value(),
                protected,
            });
            let hot = &mut self.hot[index];
            hot.live = Live::default();
            hot.chosen = true;
            self.closing += c.connections as usize;
        }
        target
    }
}

/// Entries sampled to estimate a trim's cutoff.
const SAMPLE: usize = 1024;

/// A rank at or below which a normal trim keeps its candidates, so that it orders about as
/// many as it may choose instead of every one: estimated from every `len / SAMPLE`-th entry, at
/// the quantile of `bound` chosen peers plus a quarter and 16 samples of margin. `None` (keep
/// every candidate) for a small table or when the trim may choose most candidates.
///
/// Exact whatever the estimate: if at least as many candidates as the trim chooses rank at or
/// below the cutoff, its victims are the lowest of those, because every candidate left out
/// ranks above every one kept; if fewer do, the caller ranks them all.
fn cutoff(hot: &[Hot], bound: usize, is_candidate: impl Fn(&Hot) -> bool) -> Option<Key> {
    if hot.len() < 4 * SAMPLE {
        return None;
    }
    let stride = hot.len() / SAMPLE;
    let mut keys: Vec<Key> = hot
        .iter()
        .step_by(stride)
        .filter(|h| is_candidate(h))
        .map(|h| rank(h, false).0)
        .collect();
    // Of the sampled candidates, those standing for `bound` peers, with the margin.
    let q = (bound / stride).saturating_mul(5) / 4 + 16;
    if q >= keys.len() / 2 {
        return None;
    }
    Some(*keys.select_nth_unstable(q).1)
}

/// Every peer in trim order, for tests of go's `TestPeerInfoSorting`: temporary entries first
/// (a trim drops them before choosing victims), then connected peers by rank.
#[cfg(test)]
pub(super) fn ranking<C: Copy + Eq + Hash + fmt::Debug>(
    cm: &ConnManager<C>,
    emergency: bool,
) -> Vec<PeerId> {
    let entries = || cm.hot.iter().zip(&cm.peers);
    let temp = entries().filter(|(h, _)| h.temp).map(|(_, p)| p.id);
    let mut connected: Vec<(Key, PeerId)> = entries()
        .filter(|(h, _)| !h.temp)
        .map(|(h, p)| (rank(h, emergency).0, p.id))
        .collect();
    connected.sort_unstable_by_key(|c| c.0);
    temp.chain(connected.into_iter().map(|c| c.1)).collect()
}

#[cfg(test)]
mod tests {
    use std::{cmp::Reverse, time::Duration};

    use proptest::prelude::*;

    use super::*;

    /// The ranking as its rules read (go `SortByValueAndStreams`, then the newest peer first),
    /// unpacked.
    type Plain = (i64, bool, bool, i64, Reverse<u64>);

    fn plain(hot: &Hot, emergency: bool) -> Plain {
        let streams = hot.live.streams;
        (
            hot.value,
            streams > 0,
            hot.live.inbound == 0,
            if emergency { -streams } else { streams },
            Reverse(hot.first_seen),
        )
    }

    fn hot() -> impl Strategy<Value = (i64, u32, i64, u64)> {
        (
            prop_oneof![any::<i64>(), -3i64..3],
            0u32..3,
            prop_oneof![0i64..3, 0i64..(1 << 40)],
            prop_oneof![0u64..3, 0u64..(1 << 50)],
        )
    }

    /// The victims of a normal trim by brute force: every candidate ranked, the lowest taken
    /// until the target.
    fn brute_force(cm: &ConnManager<u64>, now: Instant) -> Vec<PeerId> {
        let nanos = cm.nanos(now);
        let mut all: Vec<(Key, u64, PeerId, u32)> = cm
            .hot
            .iter()
            .zip(&cm.peers)
            .filter(|(h, _)| {
                !h.protected && !h.temp && h.live.connections > 0 && !cm.in_grace(h, nanos)
            })
            .map(|(h, p)| (rank(h, false).0, h.tie, p.id, h.live.connections))
            .collect();
        all.sort();
        let total: usize = all.iter().map(|c| c.3 as usize).sum();
        let mut target = total - cm.config.low_water;
        let mut victims = Vec::new();
        for (_, _, peer, live) in all {
            if target == 0 {
                break;
            }
            target = target.saturating_sub(live as usize);
            victims.push(peer);
        }
        victims
    }

    /// 20,000 peers, values from `value(i)` for the `i`-th, every seventh with two
    /// connections, every eleventh protected, every thirteenth in grace: 19,180 candidate
    /// connections, and a low watermark of 18,000.
    fn large(value: impl Fn(usize) -> i64) -> (ConnManager<u64>, Instant) {
        let start = Instant::now();
        let now = start + Duration::from_secs(120);
        let config = super::super::Config::new()
            .with_watermarks(18_000, 23_000)
            .with_hard_cap(None);
        let mut cm = ConnManager::new(config, start).unwrap();
        let addr: multiaddr::Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        let mut id = 0;
        for i in 0..20_000 {
            let peer = PeerId::random();
            let at = if i % 13 == 0 { now } else { start };
            for _ in 0..1 + usize::from(i % 7 == 0) {
                id += 1;
                cm.connection_established(peer, id, i % 2 == 0, addr.clone(), at);
            }
            cm.tag_peer(peer, "app", value(i), at);
            if i % 11 == 0 {
                cm.protect(peer, "keep");
            }
        }
        (cm, now)
    }

    #[test]
    fn a_trim_with_a_cutoff_chooses_what_ranking_every_candidate_chooses() {
        // Values in a narrow range, so that ties are many.
        let (mut cm, now) = large(|i| (i * 7919 % 50) as i64);
        let nanos = cm.nanos(now);
        let bound = cm.connections() - cm.config.low_water;
        let is_candidate = |h: &Hot| !h.protected && !h.temp && !cm.in_grace(h, nanos);
        assert!(
            cutoff(&cm.hot, bound, is_candidate).is_some(),
            "the cutoff applies"
        );
        let expected = brute_force(&cm, now);
        let trim = cm.trim_open_conns(now);
        let chosen: Vec<PeerId> = trim.victims.iter().map(|v| v.peer).collect();
        assert_eq!(chosen, expected);
    }

    #[test]
    fn a_cutoff_that_keeps_too_few_falls_back_to_every_candidate() {
        // The sampled entries (every 19th of 20,000) are worth the least, so the estimate
        // keeps about them alone, fewer than the trim chooses.
        let (mut cm, now) = large(|i| if i % 19 == 0 { 0 } else { 100 + (i % 3) as i64 });
        let nanos = cm.nanos(now);
        let bound = cm.connections() - cm.config.low_water;
        let is_candidate = |h: &Hot| !h.protected && !h.temp && !cm.in_grace(h, nanos);
        let cut = cutoff(&cm.hot, bound, is_candidate).expect("the cutoff applies");
        let kept = cm
            .hot
            .iter()
            .filter(|h| is_candidate(h) && rank(h, false).0 <= cut)
            .count();
        let expected = brute_force(&cm, now);
        assert!(
            kept < expected.len(),
            "{kept} kept, {} chosen",
            expected.len()
        );
        let trim = cm.trim_open_conns(now);
        let chosen: Vec<PeerId> = trim.victims.iter().map(|v| v.peer).collect();
        assert_eq!(chosen, expected);
    }

    proptest! {
        #[test]
        fn the_packed_key_orders_as_the_rules(
            a in hot(),
            b in hot(),
            emergency in any::<bool>(),
        ) {
            let build = |(value, inbound, streams, nanos): (i64, u32, i64, u64)| Hot {
                first_seen: nanos,
                value,
                live: Live { connections: 1, inbound, streams },
                tie: 0,
                temp: false,
                protected: false,
                chosen: false,
            };
            let (a, b) = (build(a), build(b));
            let (ka, kb) = (rank(&a, emergency).0, rank(&b, emergency).0);
            prop_assert_eq!(ka.cmp(&kb), plain(&a, emergency).cmp(&plain(&b, emergency)));
            prop_assert_eq!(ka.value(), a.value);
        }
    }
}
