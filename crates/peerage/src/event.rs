//! The events of the Peerage [`Behaviour`](crate::Behaviour).

use libp2p::{Multiaddr, PeerId};
use peerage_core::{node, pool};

use crate::connmgr;

/// Events of the Peerage [`Behaviour`](crate::Behaviour).
#[derive(Debug, Clone)]
#[non_exhaustive]
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
    /// An inbound peer was evicted to make room for a newcomer (with an address book, Bitcoin
    /// Core's `SelectNodeToEvict`).
    Evicted {
        /// The evicted peer.
        peer_id: PeerId,
        /// Its network group.
        group: peerage_core::addrbook::Group,
        /// Inbound connections of that group when it was chosen.
        group_size: usize,
        /// The rule that chose it.
        reason: peerage_core::addrbook::evict::Reason,
    },
    /// The connection manager chose peers to disconnect (see [`connmgr`]).
    Trimmed {
        /// Why.
        kind: connmgr::TrimKind,
        /// The peers being disconnected.
        peers: Vec<PeerId>,
    },
    /// A connection closed, and why: the reason Peerage closed it for (maintenance, trim,
    /// eviction and its criterion, ban, greylist, nack, feeler...), else
    /// [`CloseReason::Remote`](pool::CloseReason::Remote) if the remote closed it or the link
    /// failed, else [`CloseReason::Local`](pool::CloseReason::Local) (the application or the
    /// swarm). The peer's log in the pool records it too.
    Disconnected {
        /// The peer.
        peer_id: PeerId,
        /// Whether the remote had dialed it.
        inbound: bool,
        /// Why it closed.
        reason: pool::CloseReason,
    },
    /// The pool reported something: a new point or peer, a collection, a peer disconnected
    /// after a ban, a greylisting or a wrong expected peer ID.
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

impl From<node::Event> for Event {
    fn from(event: node::Event) -> Self {
        match event {
            node::Event::Identified {
                peer_id,
                agent_version,
                protocols,
            } => Self::Identified {
                peer_id,
                agent_version,
                protocols,
            },
            node::Event::PointsReceived {
                peer_id,
                received,
                new,
            } => Self::PointsReceived {
                peer_id,
                received,
                new,
            },
            node::Event::PointsRefused { peer_id, received } => {
                Self::PointsRefused { peer_id, received }
            }
            node::Event::Nacked { peer_id } => Self::Nacked { peer_id },
            node::Event::Evicted {
                peer_id,
                group,
                group_size,
                reason,
            } => Self::Evicted {
                peer_id,
                group,
                group_size,
                reason,
            },
            node::Event::Disconnected {
                peer_id,
                inbound,
                reason,
            } => Self::Disconnected {
                peer_id,
                inbound,
                reason,
            },
            node::Event::Pool(e) => Self::Pool(e),
            node::Event::Maintenance {
                active,
                dialed,
                closed,
                asked,
            } => Self::Maintenance {
                active,
                dialed,
                closed,
                asked,
            },
        }
    }
}
