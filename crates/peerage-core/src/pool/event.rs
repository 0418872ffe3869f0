//! What the pool reports ([`Event`]) and the kinds that events carry.

use multiaddr::Multiaddr;

#[cfg(doc)]
use super::{LogEntry, Pool};
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

/// Why a connection closed, as the peer's log records it ([`LogEntry::reason`]) and the
/// node counts it (`peerage_disconnections_total{reason}`), written in snake case
/// (`"eviction_most_represented_group"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The maintenance closed it: the node had more than its bounds' `max_target` (Octez
    /// `P2p_maintenance`).
    Maintenance,
    /// The connection manager trimmed it above its high watermark (go-libp2p `TrimOpenConns`).
    Trim,
    /// An inbound peer evicted for a newcomer: the youngest of the most represented network
    /// group among those no protection kept (Bitcoin Core `SelectNodeToEvict`).
    EvictionMostRepresentedGroup,
    /// As [`CloseReason::EvictionMostRepresentedGroup`], among only the candidates marked
    /// to be preferred for eviction.
    EvictionPreferEvict,
    /// The peer, or its IP, was banned.
    Ban,
    /// The peer, or its IP, was greylisted.
    Greylist,
    /// The peer is not the one the point expected (Octez `Unexpected_peer_id`).
    UnexpectedPeerId,
    /// We refused it for lack of room (a nack) and closed it once it had its answer.
    Nack,
    /// The remote refused it (a nack answer) and we closed it once we had its points.
    Refused,
    /// A feeler: a short probe of an address of the book, closed once established.
    Feeler,
    /// A surplus of the outbound top-up, which dials several candidates per missing
    /// connection: it connected once the target was met, and was closed as a feeler is.
    Surplus,
    /// The remote closed it, or the link failed.
    Remote,
    /// Closed on our side for none of the reasons above: by the application, the operator or
    /// the swarm.
    Local,
}

impl CloseReason {
    /// Every reason, in declaration order.
    pub const ALL: [CloseReason; 13] = [
        CloseReason::Maintenance,
        CloseReason::Trim,
        CloseReason::EvictionMostRepresentedGroup,
        CloseReason::EvictionPreferEvict,
        CloseReason::Ban,
        CloseReason::Greylist,
        CloseReason::UnexpectedPeerId,
        CloseReason::Nack,
        CloseReason::Refused,
        CloseReason::Feeler,
        CloseReason::Surplus,
        CloseReason::Remote,
        CloseReason::Local,
    ];

    /// The reason's name in snake case, as serialized (`"trim"`).
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Maintenance => "maintenance",
            CloseReason::Trim => "trim",
            CloseReason::EvictionMostRepresentedGroup => "eviction_most_represented_group",
            CloseReason::EvictionPreferEvict => "eviction_prefer_evict",
            CloseReason::Ban => "ban",
            CloseReason::Greylist => "greylist",
            CloseReason::UnexpectedPeerId => "unexpected_peer_id",
            CloseReason::Nack => "nack",
            CloseReason::Refused => "refused",
            CloseReason::Feeler => "feeler",
            CloseReason::Surplus => "surplus",
            CloseReason::Remote => "remote",
            CloseReason::Local => "local",
        }
    }

    /// The eviction of an inbound peer chosen by `criterion`.
    pub fn eviction(criterion: crate::addrbook::evict::Reason) -> Self {
        match criterion {
            crate::addrbook::evict::Reason::MostRepresentedGroup => {
                CloseReason::EvictionMostRepresentedGroup
            }
            crate::addrbook::evict::Reason::PreferEvict => CloseReason::EvictionPreferEvict,
        }
    }
}

impl From<DisconnectReason> for CloseReason {
    fn from(reason: DisconnectReason) -> Self {
        match reason {
            DisconnectReason::Banned => CloseReason::Ban,
            DisconnectReason::Greylisted => CloseReason::Greylist,
            DisconnectReason::UnexpectedPeerId => CloseReason::UnexpectedPeerId,
        }
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
