//! What the pool reports ([`Event`]) and the kinds that events carry.

use multiaddr::Multiaddr;

#[cfg(doc)]
use super::Pool;
use crate::PeerId;

/// Where a point was learned (Octez's `medium`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Medium {
    /// The node's configuration or its operator (trusted points, `connect`).
    Config,
    /// A peer's answer to a request for points (Octez `Advertise`).
    Advertise,
    /// A peer's answer on a connection it refused (Octez `Nack`).
    Nack,
    /// A connected peer's own listen addresses (identify).
    Identify,
    /// The peers file, at start.
    PeersFile,
}

/// Why the pool asks for a peer to be disconnected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisconnectReason {
    /// The peer, or the IP it connects from, was banned.
    Banned,
    /// The peer, or the IP it connects from, was greylisted.
    Greylisted,
    /// The point's expected peer ID is another peer (Octez `Unexpected_peer_id`).
    UnexpectedPeerId,
}

/// What the pool reports, from [`Pool::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A point was registered (Octez `New_point`).
    NewPoint {
        /// The point.
        point: Multiaddr,
        /// The peer it came from, if any.
        source: Option<PeerId>,
        /// How it was learned.
        medium: Medium,
    },
    /// A peer was registered (Octez `New_peer`).
    NewPeer(PeerId),
    /// Points were collected (Octez `Gc_points`).
    GcPoints(usize),
    /// Peers were collected (Octez `Gc_peer_ids`).
    GcPeers(usize),
    /// The glue must close every connection with `peer`. The ACL change that causes it is
    /// already made, so a reconnection is refused.
    Disconnect {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: DisconnectReason,
    },
}
