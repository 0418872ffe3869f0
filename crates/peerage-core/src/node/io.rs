//! What goes into the node machine and what comes out of it.

use std::time::{Duration, Instant};

use libp2p_core::{PeerRecord, SignedEnvelope};
use libp2p_identity::Keypair;

use super::pex;
use crate::{Multiaddr, PeerId, connmgr, peerstore, pool, rcmgr};

/// An event fed to the machine ([`Machine::handle`](super::Machine::handle)). `C` is the
/// caller's connection ID (libp2p's `ConnectionId` in the glue, a number in the simulator).
#[derive(Debug, Clone)]
pub enum Input<C> {
    /// A connection the machine admitted is established (libp2p
    /// `FromSwarm::ConnectionEstablished`).
    ConnectionEstablished {
        /// The connection.
        id: C,
        /// The peer.
        peer: PeerId,
        /// The remote address.
        remote: Multiaddr,
        /// Whether the remote dialed it.
        inbound: bool,
    },
    /// A connection closed (libp2p `FromSwarm::ConnectionClosed`).
    ConnectionClosed {
        /// The connection.
        id: C,
        /// The peer.
        peer: PeerId,
        /// Whether the remote closed it (libp2p reports a cause), rather than we.
        by_remote: bool,
        /// Connections still open with the peer.
        remaining: usize,
    },
    /// A dial failed (libp2p `FromSwarm::DialFailure`), before or after the machine's admission.
    DialFailed {
        /// The connection the dial would have been.
        id: C,
        /// How it failed.
        error: DialError,
    },
    /// An inbound connection failed before it was established (libp2p
    /// `FromSwarm::ListenFailure`).
    ListenFailed {
        /// The connection it would have been.
        id: C,
        /// The remote address.
        remote: Multiaddr,
        /// Its handshake broke the protocol (bytes that do not decode), rather than timing out
        /// or being cut: the IP is greylisted, as Octez greylists on decoding errors.
        violation: bool,
    },
    /// An IP's inbound handshakes stalled (sent next to nothing until evicted or timed out)
    /// too often: the handshake guard refuses it
    /// ([`rcmgr::handshakes`](crate::rcmgr::handshakes)), and the machine greylists it, as it
    /// greylists a garbage sender.
    HandshakesStalled {
        /// The IP.
        ip: std::net::IpAddr,
    },
    /// A connection the machine admitted was refused by another part of the node (another
    /// behaviour's `handle_established_*`).
    AdmissionFailed {
        /// The connection.
        id: C,
    },
    /// A new listen address of ours.
    NewListenAddr(Multiaddr),
    /// A listen address of ours expired.
    ExpiredListenAddr(Multiaddr),
    /// The peer's identify message.
    Identified {
        /// The peer.
        peer: PeerId,
        /// What it says.
        info: Identify,
    },
    /// A ping round trip: into the peerstore's latency EWMA (go-libp2p's, a tenth per sample)
    /// and the link's lowest ping. A connected peer's first ping, when the peerstore has no
    /// latency for it, is provisional: its second ping replaces it rather than being averaged
    /// with it, since the first is taken while the remote may still be starting.
    Ping {
        /// The peer.
        peer: PeerId,
        /// The round-trip time.
        rtt: Duration,
    },
    /// The number of open streams on a connection changed (the muxer counts them:
    /// `rcmgr::StreamCounter`). Passed on to the connection manager
    /// ([`Command::SetStreams`]), whose trimming closes peers with fewer streams first among
    /// equals, as go's `connmgr`.
    Streams {
        /// The connection.
        id: C,
        /// The peer.
        peer: PeerId,
        /// Its open streams now.
        streams: u32,
    },
    /// A peer asks for points. Answer with [`Command::AnswerPoints`] carrying `token`, or
    /// drop it ([`Command::DropRequest`]).
    PexRequest {
        /// The peer.
        peer: PeerId,
        /// The connection it came on.
        id: C,
        /// The request.
        request: pex::Request,
        /// The caller's handle on the request (its response channel).
        token: u64,
    },
    /// A peer answered our request for points.
    PexAnswer {
        /// The peer.
        peer: PeerId,
        /// The connection it came on.
        id: C,
        /// The answer.
        response: pex::Response,
    },
    /// A request for points failed, ours (`outbound`) or theirs.
    PexFailed {
        /// The peer.
        peer: PeerId,
        /// Our request (else our answer to theirs).
        outbound: bool,
        /// The message did not decode or broke the size limit: the sender is greylisted, as
        /// Octez greylists on decoding errors.
        invalid_data: bool,
    },
}

/// What a peer's identify message says.
#[derive(Debug, Clone, Default)]
pub struct Identify {
    /// Its listen addresses.
    pub listen_addrs: Vec<Multiaddr>,
    /// Its protocols.
    pub protocols: Vec<String>,
    /// Its agent version.
    pub agent_version: String,
    /// Its protocol version.
    pub protocol_version: String,
    /// Its signed peer record (a protobuf `SignedEnvelope` of a `libp2p-peer-record`), as
    /// received: the machine verifies it. When it verifies and names the peer, its addresses
    /// replace the listen addresses and are certified in the peerstore (go-libp2p identify
    /// `consumeSignedPeerRecord`); otherwise the listen addresses count, uncertified.
    pub signed_peer_record: Option<Vec<u8>>,
}

/// How a dial failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialError {
    /// Not attempted: the peer was connected or being dialed, or the dial was aborted.
    Aborted,
    /// The point answered with another peer ID than the one dialed.
    WrongPeer,
    /// The point is ourselves.
    LocalPeer,
    /// Anything else: the transport failed, the remote refused, a behaviour denied it.
    Other,
}

/// What the machine asks its driver to do ([`Machine::poll_command`](super::Machine::poll_command)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<C> {
    /// Dial `point` (already `Requested` in the pool), with its peer ID if known; then tell
    /// the machine the connection ID with [`Machine::dial_started`](super::Machine::dial_started).
    Dial {
        /// The point.
        point: Multiaddr,
        /// Its peer, if known.
        peer: Option<PeerId>,
    },
    /// Close one connection, or every connection with the peer.
    Close {
        /// The peer.
        peer: PeerId,
        /// One connection, or all if `None`.
        id: Option<C>,
    },
    /// Ask a peer for points.
    AskPoints {
        /// The peer.
        peer: PeerId,
        /// The request.
        request: pex::Request,
    },
    /// Answer a request for points.
    AnswerPoints {
        /// The request's token ([`Input::PexRequest`]).
        token: u64,
        /// The answer.
        response: pex::Response,
    },
    /// Drop a request for points unanswered (one is already waiting for the peer's cooldown).
    DropRequest {
        /// The request's token.
        token: u64,
    },
    /// Protect the peer in the connection manager under the trusted tag.
    Protect(PeerId),
    /// Remove the trusted protection tag.
    Unprotect(PeerId),
    /// Leave the connection out of the connection manager (a nacked connection; before the
    /// connection manager's own admission runs).
    Exclude(C),
    /// Count the connection in the connection manager after all (a nacked connection admitted).
    Include(C),
    /// Tell the connection manager a connection's open streams
    /// (`connmgr::ConnManager::set_streams`).
    SetStreams {
        /// The peer.
        peer: PeerId,
        /// The connection.
        id: C,
        /// Its open streams.
        streams: u32,
    },
}

/// What the machine reports ([`Machine::poll_event`](super::Machine::poll_event)).
#[derive(Debug, Clone)]
pub enum Event {
    /// A peer identified itself; its addresses and protocols are in the peerstore.
    Identified {
        /// The peer.
        peer_id: PeerId,
        /// Its agent version.
        agent_version: String,
        /// Its protocols.
        protocols: Vec<String>,
    },
    /// A peer answered our request for points.
    PointsReceived {
        /// The peer.
        peer_id: PeerId,
        /// Points in the answer.
        received: usize,
        /// Points that were new to the pool.
        new: usize,
    },
    /// A peer's answer was refused for breaking the protocol's bounds.
    PointsRefused {
        /// The peer.
        peer_id: PeerId,
        /// Points in the answer.
        received: usize,
    },
    /// An inbound connection was refused because the node has `max_threshold` connections
    /// (Octez's `Nack`): it is answered one request for points, then closed.
    Nacked {
        /// The peer.
        peer_id: PeerId,
    },
    /// An inbound peer was evicted to make room for a newcomer (with an address book).
    Evicted {
        /// The evicted peer.
        peer_id: PeerId,
        /// Its network group.
        group: crate::addrbook::Group,
        /// Inbound connections of that group left when it was chosen.
        group_size: usize,
        /// The rule that chose it.
        reason: crate::addrbook::evict::Reason,
    },
    /// A connection closed, and why: the reason the machine closed it for, else
    /// [`CloseReason::Remote`](pool::CloseReason::Remote) if the remote closed it, else
    /// [`CloseReason::Local`](pool::CloseReason::Local). The peer's log records it too.
    Disconnected {
        /// The peer.
        peer_id: PeerId,
        /// Whether the remote had dialed it.
        inbound: bool,
        /// Why it closed.
        reason: pool::CloseReason,
    },
    /// The pool reported something.
    Pool(pool::Event),
    /// The maintenance acted.
    Maintenance {
        /// Connections before acting.
        active: usize,
        /// Points dialed.
        dialed: Vec<Multiaddr>,
        /// Peers disconnected.
        closed: Vec<PeerId>,
        /// Number of peers asked for points.
        asked: usize,
    },
}

/// Why the machine refused a connection at admission.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refusal {
    /// The pool's ACL, private mode, expected peer ID or peer table refused it.
    #[error(transparent)]
    Pool(#[from] pool::Error),
    /// The node has `max_threshold` connections and already holds `max_nacked` nacked
    /// connections open: refused outright, without points.
    #[error(transparent)]
    TooManyConnections(#[from] TooManyConnections),
    /// The connection manager's hard cap: it holds `hard_cap` connections of unprotected peers
    /// (trusted peers and nacked connections are exempt).
    #[error(transparent)]
    HardCap(#[from] connmgr::HardCapReached),
    /// The resource manager: at pending inbound, its rate, per-IP or transient limits; once
    /// established, its peer scope (or, for an outbound connection, all of them).
    #[error(transparent)]
    Resources(#[from] rcmgr::Error),
}

/// An inbound connection refused outright, without points: the node has `max_threshold`
/// connections and already holds the most nacked connections it keeps open.
#[derive(Debug, Clone, thiserror::Error)]
#[error("too many connections: {active} active, and {nacked} nacked connections still open")]
pub struct TooManyConnections {
    /// Connections the pool counts.
    pub active: usize,
    /// Nacked connections open (the bound).
    pub nacked: usize,
}

/// How an admitted connection goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Admitted and counted.
    Accepted,
    /// Admitted only to be nacked: answered one request for points, then closed.
    Nacked,
}

/// The connection manager as the machine reads it: the order in which it would close peers
/// and their tag values. Changes go out as [`Command`]s.
pub trait ConnectionManager: Send {
    /// `peers` in the order a trim closes them, protected peers left out.
    fn close_order(&self, peers: &[PeerId], now: Instant) -> Vec<PeerId>;
    /// The total value of a peer's tags, 0 if unknown.
    fn tag_value(&self, peer: &PeerId) -> i64;
    /// Whether one more connection of `peer` fits under the hard cap
    /// ([`connmgr::ConnManager::admit`]: protected peers are exempt). Admits everything by
    /// default, for a connection manager without a hard cap.
    ///
    /// # Errors
    ///
    /// [`connmgr::HardCapReached`] when the cap is reached.
    fn admit(&self, peer: &PeerId) -> Result<(), connmgr::HardCapReached> {
        let _ = peer;
        Ok(())
    }
    /// Whether `peer` is protected (never trimmed nor evicted). `false` by default.
    fn is_protected(&self, peer: &PeerId) -> bool {
        let _ = peer;
        false
    }
    /// Each of `peers`' tag value and whether it is protected, exactly one entry per peer, in
    /// order (a wrong count is warned of, and the machine asks peer by peer): what an inbound
    /// eviction weighs, asked in one call per decision, so that an implementation behind a
    /// lock takes it once rather than twice per inbound peer. By default,
    /// [`ConnectionManager::tag_value`] and [`ConnectionManager::is_protected`] of each.
    fn standing(&self, peers: &[PeerId]) -> Vec<(i64, bool)> {
        peers
            .iter()
            .map(|p| (self.tag_value(p), self.is_protected(p)))
            .collect()
    }
}

/// The resource manager as the machine consults it, by connection ID: a connection's scope is
/// opened at its first admission point (pending inbound; established, for an outbound one),
/// attached to its peer once established, and released when the connection ends or a later
/// check refuses it. [`rcmgr::Connections`] is the real one.
pub trait Resources<C>: Send {
    /// Opens connection `id`'s scope (transient: rate, per-IP and system limits).
    ///
    /// # Errors
    ///
    /// The resource manager's refusal.
    fn open(
        &mut self,
        id: C,
        inbound: bool,
        remote: &Multiaddr,
        now: Instant,
    ) -> Result<(), rcmgr::Error>;
    /// Moves connection `id` into `peer`'s scope; a connection not opened is left alone.
    ///
    /// # Errors
    ///
    /// The resource manager's refusal; the scope is released then.
    fn attach(&mut self, id: C, peer: PeerId) -> Result<(), rcmgr::Error>;
    /// Releases connection `id`'s scope, if it holds one.
    fn release(&mut self, id: C);
    /// Whether `peer` at `remote` is on the resource manager's allowlist (go
    /// `AllowedPeerAndMultiaddr`): such a peer is exempt from its network group's share of the
    /// inbound slots, as Bitcoin Core's `noban` permission exempts a peer. `false` by default.
    fn is_allowlisted(&self, peer: &PeerId, remote: &Multiaddr) -> bool {
        let _ = (peer, remote);
        false
    }
}

impl<C: Eq + std::hash::Hash + Send> Resources<C> for rcmgr::Connections<C> {
    fn open(
        &mut self,
        id: C,
        inbound: bool,
        remote: &Multiaddr,
        now: Instant,
    ) -> Result<(), rcmgr::Error> {
        let dir = if inbound {
            rcmgr::Direction::Inbound
        } else {
            rcmgr::Direction::Outbound
        };
        rcmgr::Connections::open(self, id, dir, remote, now)
    }
    fn attach(&mut self, id: C, peer: PeerId) -> Result<(), rcmgr::Error> {
        rcmgr::Connections::attach(self, id, peer)
    }
    fn release(&mut self, id: C) {
        rcmgr::Connections::release(self, &id);
    }
    fn is_allowlisted(&self, peer: &PeerId, remote: &Multiaddr) -> bool {
        self.resource_manager().is_allowlisted_peer(peer, remote)
    }
}

/// A peer record, opened and verified.
#[derive(Debug, Clone)]
pub struct Record {
    /// The peer that signed it.
    pub peer: PeerId,
    /// Its addresses.
    pub addrs: Vec<Multiaddr>,
    /// The verified record, for the peerstore's certified address book (which takes it
    /// without verifying it again); `None` from a stand-in that does not sign.
    pub verified: Option<peerstore::VerifiedRecord>,
}

/// Signs our peer record and verifies others'. [`Signed`] is the real one; a simulator may
/// use a counted stand-in.
pub trait Records: Send {
    /// Opens and verifies a signed peer record.
    ///
    /// # Errors
    ///
    /// A description of why the bytes are not a valid record.
    fn open(&mut self, bytes: &[u8]) -> Result<Record, String>;
    /// Our record for `addrs`, encoded; `None` if it cannot be signed.
    fn seal(&mut self, addrs: &[Multiaddr]) -> Option<(Vec<u8>, Option<SignedEnvelope>)>;
}

/// Signed peer records as go-libp2p and js-libp2p make them (domain `libp2p-peer-record`,
/// payload type `0x0301`), signed with the node's key.
///
/// A record is passed on by many peers (every pex answer and identify carries records), so
/// up to [`Signed::CACHED_RECORDS`] records that verified are kept by their bytes: the same
/// bytes again are not verified again. Anything else (a record that differs by a byte) is
/// verified in full.
pub struct Signed {
    keypair: Keypair,
    opened: std::collections::HashMap<Vec<u8>, Record, foldhash::fast::RandomState>,
    verified: u64,
}

impl std::fmt::Debug for Signed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signed").finish_non_exhaustive()
    }
}

impl Signed {
    /// Records kept, by their bytes: 256. A record with 4 addresses is kept as its bytes, the
    /// record opened and the peer record with its envelope: about 1.1 KB by the sizes of its
    /// parts (an estimate, not a measurement), so about 280 KB at most. Past it, a new record
    /// evicts an arbitrary one (the map's seed is random, so a remote peer cannot choose
    /// which).
    pub const CACHED_RECORDS: usize = 256;

    /// Records signed with `keypair`.
    pub fn new(keypair: Keypair) -> Self {
        Self {
            keypair,
            opened: std::collections::HashMap::default(),
            verified: 0,
        }
    }

    /// How many records it verified (signature checks; a record found in the cache is not
    /// counted).
    pub fn verified(&self) -> u64 {
        self.verified
    }
}

impl Records for Signed {
    fn open(&mut self, bytes: &[u8]) -> Result<Record, String> {
        if let Some(record) = self.opened.get(bytes) {
            return Ok(record.clone());
        }
        let envelope = SignedEnvelope::from_protobuf_encoding(bytes).map_err(|e| e.to_string())?;
        self.verified += 1;
        let verified = peerstore::VerifiedRecord::open(envelope).map_err(|e| e.to_string())?;
        let record = Record {
            peer: verified.peer(),
            addrs: verified.addrs().to_vec(),
            verified: Some(verified),
        };
        if self.opened.len() >= Self::CACHED_RECORDS
            && let Some(evicted) = self.opened.keys().next().cloned()
        {
            self.opened.remove(&evicted);
        }
        self.opened.insert(bytes.to_vec(), record.clone());
        Ok(record)
    }

    fn seal(&mut self, addrs: &[Multiaddr]) -> Option<(Vec<u8>, Option<SignedEnvelope>)> {
        match PeerRecord::new_interop(&self.keypair, addrs.to_vec()) {
            Ok(record) => {
                let envelope = record.into_signed_envelope();
                Some((envelope.clone().into_protobuf_encoding(), Some(envelope)))
            }
            Err(e) => {
                tracing::warn!("cannot sign our peer record: {e}");
                None
            }
        }
    }
}

/// A stand-in for [`Signed`] that does not sign: a "record" is the peer ID and the addresses,
/// in the clear, and opening one checks only its shape. For simulations, where thousands of
/// nodes would spend their time in ed25519; it counts the records it opened. Never use it on a
/// real network: anyone can forge such a record.
#[derive(Debug)]
pub struct Unsigned {
    local: PeerId,
    opened: u64,
}

impl Unsigned {
    /// Records of the node `local`.
    pub fn new(local: PeerId) -> Self {
        Self { local, opened: 0 }
    }

    /// How many records it opened.
    pub fn opened(&self) -> u64 {
        self.opened
    }
}

impl Records for Unsigned {
    fn open(&mut self, bytes: &[u8]) -> Result<Record, String> {
        self.opened += 1;
        let (&len, rest) = bytes.split_first().ok_or("empty record")?;
        let len = usize::from(len);
        if rest.len() < len {
            return Err("truncated peer ID".into());
        }
        let peer = PeerId::from_bytes(&rest[..len]).map_err(|e| e.to_string())?;
        let mut addrs = Vec::new();
        let mut rest = &rest[len..];
        while let Some((&len, tail)) = rest.split_first() {
            let len = usize::from(len);
            if tail.len() < len {
                return Err("truncated address".into());
            }
            addrs.push(Multiaddr::try_from(tail[..len].to_vec()).map_err(|e| e.to_string())?);
            rest = &tail[len..];
        }
        Ok(Record {
            peer,
            addrs,
            verified: None,
        })
    }

    fn seal(&mut self, addrs: &[Multiaddr]) -> Option<(Vec<u8>, Option<SignedEnvelope>)> {
        let id = self.local.to_bytes();
        let mut bytes = vec![u8::try_from(id.len()).ok()?];
        bytes.extend_from_slice(&id);
        for a in addrs {
            let a = a.to_vec();
            bytes.push(u8::try_from(a.len()).ok()?);
            bytes.extend_from_slice(&a);
        }
        Some((bytes, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peerstore::conformance::signed_record;

    #[test]
    fn a_record_seen_again_is_not_verified_again_and_a_changed_byte_is() {
        let mut records = Signed::new(Keypair::generate_ed25519());
        let key = Keypair::generate_ed25519();
        let addrs: Vec<Multiaddr> = vec!["/ip4/10.0.0.1/tcp/4001".parse().unwrap()];
        let bytes = signed_record(&key, 1, &addrs).into_protobuf_encoding();
        for _ in 0..5 {
            let record = records.open(&bytes).unwrap();
            assert_eq!(
                (record.peer, &record.addrs),
                (key.public().to_peer_id(), &addrs)
            );
            assert!(record.verified.is_some());
        }
        assert_eq!(records.verified(), 1);

        // The cached record's bytes with the signature's last byte flipped: verified, refused.
        let mut tampered = bytes.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 0xff;
        assert!(records.open(&tampered).is_err());
        assert!(records.open(&tampered).is_err(), "a refusal is not cached");
        assert_eq!(records.verified(), 3);

        // The cache is bounded: past it, records are evicted and verified again.
        let many: Vec<Vec<u8>> = (0..Signed::CACHED_RECORDS as u64 + 10)
            .map(|seq| signed_record(&key, seq + 2, &addrs).into_protobuf_encoding())
            .collect();
        for b in &many {
            records.open(b).unwrap();
        }
        assert!(records.opened.len() <= Signed::CACHED_RECORDS);
        let before = records.verified();
        for b in &many {
            records.open(b).unwrap();
        }
        assert!(
            records.verified() > before,
            "evicted records are verified again"
        );
    }
}
