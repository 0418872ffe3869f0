//! The logs of points and peers (Octez `P2p_point.Pool_event` and `P2p_peer.Pool_event`).

use std::{collections::VecDeque, time::Instant};

use super::CloseReason;

#[cfg(doc)]
use multiaddr::Multiaddr;

#[cfg(doc)]
use crate::PeerId;

/// Most events kept per point and per peer (Octez `log_size`).
pub const LOG_SIZE: usize = 100;

/// Kinds of events in a point's or a peer's log (Octez `P2p_point.Pool_event` and
/// `P2p_peer.Pool_event`), serialized under Octez's snake-case names
/// (`"connection_established"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogKind {
    /// We dialed the point.
    OutgoingRequest,
    /// A connection from the peer was authenticated.
    IncomingRequest,
    /// We admitted the connection.
    AcceptingRequest,
    /// We refused the connection (banned, private mode, no room).
    RejectingRequest,
    /// The dial failed, or the remote refused the connection.
    RequestRejected,
    /// The connection is running.
    ConnectionEstablished,
    /// We closed the connection.
    Disconnection,
    /// The remote closed the connection.
    ExternalDisconnection,
}

/// One event of a point's log (`T` = [`PeerId`], the peer involved) or a peer's log (`T` =
/// [`Multiaddr`], the address involved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry<T> {
    /// What happened.
    pub kind: LogKind,
    /// When.
    pub at: Instant,
    /// With whom, or through which address.
    pub with: Option<T>,
    /// Why the connection closed, for a [`LogKind::Disconnection`] or
    /// [`LogKind::ExternalDisconnection`] the node machine reported with its reason.
    pub reason: Option<CloseReason>,
}

pub(crate) fn push_log<T>(
    log: &mut VecDeque<LogEntry<T>>,
    kind: LogKind,
    with: Option<T>,
    reason: Option<CloseReason>,
    at: Instant,
) {
    if log.len() >= LOG_SIZE {
        log.pop_front();
    } else if log.len() < 8 {
        // Most points and peers log a handful of events: grow one at a time (a `VecDeque`
        // starts at 4 entries and doubles), then geometrically.
        log.reserve_exact(1);
    }
    log.push_back(LogEntry {
        kind,
        at,
        with,
        reason,
    });
}
