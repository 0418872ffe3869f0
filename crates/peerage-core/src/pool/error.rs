//! Errors of the pool ([`Error`]).

use std::net::IpAddr;

use multiaddr::Multiaddr;

use super::PointError;
#[cfg(doc)]
use super::Pool;
use crate::PeerId;

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
    /// The peer table is full of peers that cannot be collected.
    #[error("peer table full ({high} peers, none collectable)")]
    PeerTableFull {
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
    /// The IP is banned (blacklisted or greylisted) (Octez `Point_banned`).
    #[error("{0} is banned")]
    IpBanned(IpAddr),
    /// The peer is banned (blacklisted or greylisted) (Octez `Peer_banned`).
    #[error("peer {0} is banned")]
    PeerBanned(PeerId),
    /// The point's expected peer ID is another peer (Octez `Identity_check_failure`).
    #[error("point {} must be peer {}, not {}", .0.point, .0.expected, .0.actual)]
    UnexpectedPeerId(Box<Mismatch>),
    /// Private mode: the point or peer is not trusted (Octez `Private_mode`).
    #[error("private mode: {0} is not trusted")]
    PrivateMode(String),
}

/// A point reached another peer than the one expected ([`Error::UnexpectedPeerId`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The point.
    pub point: Multiaddr,
    /// The peer it must be.
    pub expected: PeerId,
    /// The peer it is.
    pub actual: PeerId,
}
