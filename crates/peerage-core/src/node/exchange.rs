//! The peer exchange's policy: whom the machine asks for points and when, and how it answers
//! and reads answers (see the [module docs](super#peer-exchange)).

use std::{fmt, time::Instant};

use super::{Command, Event, Machine, pex};
use crate::{Multiaddr, PeerId, peerstore::Ttl, pool};
use foldhash::{HashSet, HashSetExt};

/// Entries in `pex_asked` or `pex_answered` past which the stale ones are dropped at the next
/// insertion, not only at the minute's GC: a node that meets hundreds of peers a minute (a
/// bootstrap node) would otherwise keep a table of them all.
const PRUNE_AT: usize = 32;

impl<C: Copy + Ord + std::hash::Hash + fmt::Debug> Machine<C> {
    /// The connected peers that may be asked for points now ([`Machine::may_ask`], not a
    /// first request), in peer ID order (the links are hashed; the order feeds the machine's
    /// random draws, so it must not depend on a hasher's seed).
    pub(super) fn askable(&self, now: Instant) -> Vec<PeerId> {
        let mut peers: Vec<PeerId> = self
            .links
            .keys()
            .filter(|p| self.may_ask(p, false, now))
            .copied()
            .collect();
        peers.sort_unstable();
        peers
    }

    /// Whether `peer` may be asked for points now: it offers the exchange, has a connection
    /// we did not nack, has no request of ours in flight and, unless this is the first request
    /// on a new connection we dialed (`fresh`), was not asked in the last
    /// `time_between_looking_for_peers`.
    pub(super) fn may_ask(&self, peer: &PeerId, fresh: bool, now: Instant) -> bool {
        let round = self.config.maintenance.looking_for_peers();
        !self.pool.config().private_mode()
            && self
                .links
                .get(peer)
                .is_some_and(|l| l.pex == Some(true) && l.connections > l.nacked)
            && !self.pex_in_flight.contains(peer)
            && (fresh || self.pex_asked.get(peer).is_none_or(|t| *t + round <= now))
            && (self.book.is_none() || self.dialed_for_good(peer))
    }

    /// With a book, only peers we dialed are asked for points, as Bitcoin Core sends
    /// `getaddr` only to outbound peers: an attacker that connects to us cannot get its
    /// addresses into the book by being asked. A feeler's peer is not asked either.
    fn dialed_for_good(&self, peer: &PeerId) -> bool {
        self.connections
            .values()
            .any(|c| c.peer == *peer && !c.inbound && !c.nacked && !c.feeler && c.point.is_some())
    }

    pub(super) fn ask(&mut self, peer: PeerId, now: Instant) {
        let dialed_in_need = self
            .links
            .get_mut(&peer)
            .is_some_and(|l| std::mem::take(&mut l.need));
        let need = dialed_in_need || self.maintenance.is_dialing();
        self.credit_first_request(&peer, now);
        self.pex_in_flight.insert(peer);
        if self.pex_asked.len() >= PRUNE_AT {
            let round = self.config.maintenance.looking_for_peers();
            self.pex_asked.retain(|_, t| *t + round > now);
        }
        self.pex_asked.insert(peer, now);
        self.commands.push_back(Command::AskPoints {
            peer,
            request: pex::Request { need },
        });
    }

    /// Asks `peer` now, or queues it for the next free slot: ahead of the others if `fresh`.
    pub(super) fn ask_or_queue(&mut self, peer: PeerId, fresh: bool, now: Instant) {
        if !self.may_ask(&peer, fresh, now) {
            return;
        }
        if self.pex_in_flight.len() < self.config.max_pex_in_flight {
            self.ask(peer, now);
        } else if !self.pex_queue.iter().any(|(p, _)| *p == peer) {
            if self.pex_queue.len() >= self.config.max_pex_in_flight * 4 {
                // Bounded: the newest waiting entry gives way.
                self.pex_queue.pop_back();
            }
            if fresh {
                self.pex_queue.push_front((peer, true));
            } else {
                self.pex_queue.push_back((peer, false));
            }
        }
    }

    /// A request of ours ended: its slot goes to a queued peer.
    pub(super) fn pex_done(&mut self, peer: &PeerId, now: Instant) {
        self.pex_in_flight.remove(peer);
        self.serve_pex_queue(now);
    }

    pub(super) fn serve_pex_queue(&mut self, now: Instant) {
        while self.pex_in_flight.len() < self.config.max_pex_in_flight {
            let Some((peer, fresh)) = self.pex_queue.pop_front() else {
                break;
            };
            if self.may_ask(&peer, fresh, now) {
                self.ask(peer, now);
            }
        }
    }

    pub(super) fn on_pex_request(
        &mut self,
        peer: PeerId,
        id: C,
        request: pex::Request,
        token: u64,
        now: Instant,
    ) {
        if request.need {
            self.admit_needy(peer, id, now);
        }
        let due = self
            .pex_answered
            .get(&peer)
            .map(|t| *t + pex::ANSWER_COOLDOWN)
            .filter(|due| *due > now);
        let nack = self.connections.get(&id).is_some_and(|c| c.nacked);
        match due {
            // A nacked connection is answered at once: it is about to close.
            _ if nack => self.answer_pex(peer, token, true, now),
            None => self.answer_pex(peer, token, false, now),
            // One waiting request per peer; further early ones are dropped (the remote sees
            // its request fail).
            Some(_) if self.pex_delayed.iter().any(|(_, p, _)| *p == peer) => {
                self.commands.push_back(Command::DropRequest { token });
            }
            Some(due) => self.pex_delayed.push((due, peer, token)),
        }
    }

    pub(super) fn on_pex_answer(
        &mut self,
        peer: PeerId,
        id: C,
        response: pex::Response,
        now: Instant,
    ) {
        self.pex_done(&peer, now);
        if response.nack
            && let Some(conn) = self.connections.get_mut(&id)
        {
            // Refused: close it ourselves, now that we have the points (if the refusing side
            // closed first, the answer could be lost in flight).
            conn.nacked_by_remote = true;
            self.close(peer, Some(id), pool::CloseReason::Refused);
        }
        if self.pool.config().private_mode() {
            // Octez's private answerer only logs what it is sent.
            return;
        }
        let received = response.points.len() + response.records.len();
        if received > pex::MAX_POINTS_ACCEPTED {
            // Octez: a list over the wire limit fails to decode and greylists its sender;
            // greylisting comes before the disconnection it causes.
            tracing::debug!(%peer, received, "pex: too many points, refused");
            self.pool.greylist_peer(peer, now);
            self.drain_pool_events();
            self.events.push_back(Event::PointsRefused {
                peer_id: peer,
                received,
            });
            return;
        }
        if let Some(bytes) = &response.record {
            self.consume_record(peer, Some(peer), bytes, Ttl::Connected, now);
        }
        let mut points = response.points;
        // Advertised peers' own signed records: their addresses are certified.
        for bytes in &response.records {
            if let Some((id, addrs)) = self.consume_record(peer, None, bytes, Ttl::ADDRESS, now) {
                points.extend(addrs.into_iter().map(|addr| pex::Point {
                    addr,
                    peer: Some(id),
                }));
            }
        }
        let medium = if response.nack {
            pool::Medium::Nack
        } else {
            pool::Medium::Advertise
        };
        let remote = self.connections.get(&id).map(|c| c.remote.clone());
        // Out of the answerer's scope (a public node naming loopback or LAN points): dropped.
        if let Some(remote) = &remote {
            let before = points.len();
            points.retain(|p| pool::point_in_scope(&p.addr, remote));
            if points.len() < before {
                tracing::debug!(%peer, dropped = before - points.len(), "pex: points out of the sender's scope");
            }
        }
        let new = if self.addrbook().is_some() {
            let points: Vec<_> = points.into_iter().map(|p| (p.addr, p.peer)).collect();
            let added = self.learn(peer, remote.as_ref(), &points, now).unwrap_or(0);
            if added > 0 {
                self.maintenance.on_new_points();
            }
            added
        } else {
            self.pool.register_points(
                Some(peer),
                medium,
                points.iter().map(|p| (&p.addr, p.peer)),
                now,
            )
        };
        self.drain_pool_events();
        if new > 0
            && let Some(link) = self.links.get_mut(&peer)
        {
            link.last_useful = Some(now);
        }
        self.events.push_back(Event::PointsReceived {
            peer_id: peer,
            received,
            new,
        });
    }

    /// Our signed peer record for our current listen addresses, signed again when they changed,
    /// and kept in our own peerstore as go's host does.
    pub(super) fn own_record(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.own_record.is_none()
            && !self.listen_addrs.is_empty()
            && let Some((bytes, envelope)) = self.records.seal(&self.listen_addrs)
        {
            if let Some(envelope) = envelope
                && let Err(e) = self
                    .peerstore
                    .consume_peer_record(&envelope, Ttl::Permanent, now)
            {
                tracing::debug!("own peer record: {e}");
            }
            self.own_record = Some(bytes);
        }
        self.own_record.clone()
    }

    /// Stores a signed peer record that `from` sent (its own if `signer` is `Some(from)`, else
    /// an advertised peer's), with `ttl`; returns its peer and addresses. Our own record,
    /// records that do not verify and records older than the one held are refused.
    pub(super) fn consume_record(
        &mut self,
        from: PeerId,
        signer: Option<PeerId>,
        bytes: &[u8],
        ttl: Ttl,
        now: Instant,
    ) -> Option<(PeerId, Vec<Multiaddr>)> {
        let local = self.pool.local_peer_id();
        let result = self.records.open(bytes).and_then(|record| {
            let id = record.peer;
            if signer.is_some_and(|s| s != id) || id == local {
                return Err(format!("a record of {id}"));
            }
            let addrs: Vec<Multiaddr> = record
                .addrs
                .into_iter()
                .take(pex::MAX_POINTS_ACCEPTED)
                .collect();
            match &record.verified {
                Some(verified) => {
                    // An older record than the one held is ignored whole, its addresses too,
                    // as go-libp2p ignores it: a replayed record must not send us dialing
                    // addresses its peer has left.
                    let held_newer = !self
                        .peerstore
                        .consume_verified_record(verified, ttl, now)
                        .map_err(|e| e.to_string())?;
                    if held_newer {
                        return Err(format!("a record of {id} older than the one held"));
                    }
                }
                None => self.peerstore.add_addrs(&id, &addrs, ttl, now),
            }
            Ok((id, addrs))
        });
        result
            .inspect_err(|e| tracing::debug!(%from, "peer record refused: {e}"))
            .ok()
    }

    /// Admits a nacked connection whose peer needs connections, if the node is under `max`.
    pub(super) fn admit_needy(&mut self, peer: PeerId, id: C, now: Instant) {
        let under_max = self.pool.active() < self.bounds().max();
        let running = self.pool.is_running(&peer);
        let Some(conn) = self.connections.get_mut(&id) else {
            return;
        };
        if !conn.nacked || !under_max || running {
            return;
        }
        conn.nacked = false;
        self.nacked_open = self.nacked_open.saturating_sub(1);
        if let Some(link) = self.links.get_mut(&peer) {
            link.nacked = link.nacked.saturating_sub(1);
        }
        self.commands.push_back(Command::Include(id));
        tracing::debug!(%peer, active = self.pool.active(), "admitted: the peer needs connections");
        let remote = conn.remote.clone();
        if self.pool.connection_established(peer, None, &remote, now) {
            self.maintenance
                .on_connection_established(self.pool.active());
        }
        self.drain_pool_events();
    }

    pub(super) fn answer_pex(&mut self, peer: PeerId, token: u64, nack: bool, now: Instant) {
        let mut listed: Vec<(Multiaddr, Option<PeerId>)> = self
            .pool
            .advertised(pex::MAX_POINTS_SENT, Some(peer), now, &mut self.rng)
            .into_iter()
            .map(|(a, p)| (a.clone(), p))
            .collect();
        // With a book, the pool knows little beyond our connections: a random share of the
        // book fills the answer (Bitcoin Core `GetAddr`: at most 23 % of it).
        if let Some(b) = &mut self.book
            && listed.len() < pex::MAX_POINTS_SENT
            && !self.pool.config().private_mode()
        {
            let room = pex::MAX_POINTS_SENT - listed.len();
            for (addr, id) in b.book.advertise(room * 2, 23, now, &mut b.rng) {
                if listed.len() >= pex::MAX_POINTS_SENT {
                    break;
                }
                if id != Some(peer) && !listed.iter().any(|(a, _)| *a == addr) {
                    listed.push((addr, id));
                }
            }
        }
        // A listed peer with a signed record goes as that record (its addresses are then
        // certified at the asker); the others as plain points.
        let mut points = Vec::new();
        let mut records = Vec::new();
        let mut sent: HashSet<PeerId> = HashSet::new();
        for (addr, id) in listed {
            match id.and_then(|id| Some((id, self.peerstore.peer_record(&id, now)?))) {
                Some((id, envelope)) => {
                    if sent.insert(id) {
                        records.push(envelope.into_protobuf_encoding());
                    }
                }
                None => points.push(pex::Point { addr, peer: id }),
            }
        }
        if self.pex_answered.len() >= PRUNE_AT {
            self.pex_answered
                .retain(|_, t| *t + pex::ANSWER_COOLDOWN > now);
        }
        self.pex_answered.insert(peer, now);
        let record = self.own_record(now);
        self.commands.push_back(Command::AnswerPoints {
            token,
            response: pex::Response {
                points,
                nack,
                record,
                records,
            },
        });
    }
}
