//! Connections as the behaviour lists them, and how a failed handshake is judged.

use std::time::Instant;

use libp2p::{
    Multiaddr, PeerId,
    swarm::{ConnectionId, DialError, FromSwarm, ListenError},
};
use peerage_core::node::{self, Input};

/// An established connection, as [`Behaviour::connections`](crate::Behaviour::connections)
/// lists it.
#[derive(Debug, Clone)]
pub struct ConnectionView {
    /// The connection's ID.
    pub id: ConnectionId,
    /// The peer.
    pub peer_id: PeerId,
    /// The remote address.
    pub remote: Multiaddr,
    /// The point the node dialed for it, if it did.
    pub point: Option<Multiaddr>,
    /// Whether the remote dialed it.
    pub inbound: bool,
    /// Refused for lack of room (nacked): open only until its peer has the answer to its
    /// request for points.
    pub nacked: bool,
    /// When it was established.
    pub since: Instant,
}

impl ConnectionView {
    pub(crate) fn new(id: ConnectionId, c: &peerage_core::node::Connection) -> Self {
        Self {
            id,
            peer_id: c.peer,
            remote: c.remote.clone(),
            point: c.point.clone(),
            inbound: c.inbound,
            nacked: c.nacked,
            since: c.since,
        }
    }
}

/// Whether a failed inbound upgrade broke the protocol (bytes that multistream-select or Noise
/// cannot decode: an `InvalidData` I/O error or a Noise error other than I/O), rather than timing
/// out or being cut: Octez greylists the former (`Decipher_error`, `Decoding_error`, ...), not
/// the latter (`Canceled`).
pub(crate) fn is_protocol_violation(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::InvalidData => return true,
                std::io::ErrorKind::TimedOut
                | std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe => return false,
                _ => {}
            }
        }
        // A Noise handshake message that does not decode or verify.
        if e.downcast_ref::<libp2p::noise::Error>()
            .is_some_and(|n| !matches!(n, libp2p::noise::Error::Io(_)))
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// The node machine's input for a swarm event, if it has one.
pub(crate) fn input(event: &FromSwarm<'_>) -> Option<Input<ConnectionId>> {
    Some(match event {
        FromSwarm::ConnectionEstablished(e) => Input::ConnectionEstablished {
            id: e.connection_id,
            peer: e.peer_id,
            remote: e.endpoint.get_remote_address().clone(),
            inbound: e.endpoint.is_listener(),
        },
        // libp2p reports no cause when we closed the connection ourselves.
        FromSwarm::ConnectionClosed(e) => Input::ConnectionClosed {
            id: e.connection_id,
            peer: e.peer_id,
            by_remote: e.cause.is_some(),
            remaining: e.remaining_established,
        },
        FromSwarm::DialFailure(e) => {
            tracing::debug!(error = %e.error, "dial failed");
            Input::DialFailed {
                id: e.connection_id,
                error: match e.error {
                    DialError::DialPeerConditionFalse(_) | DialError::Aborted => {
                        node::DialError::Aborted
                    }
                    DialError::WrongPeerId { .. } => node::DialError::WrongPeer,
                    DialError::LocalPeerId { .. } => node::DialError::LocalPeer,
                    _ => node::DialError::Other,
                },
            }
        }
        FromSwarm::ListenFailure(e) => Input::ListenFailed {
            id: e.connection_id,
            remote: e.send_back_addr.clone(),
            violation: matches!(e.error, ListenError::Transport(t) if is_protocol_violation(t)),
        },
        FromSwarm::NewListenAddr(e) => Input::NewListenAddr(e.addr.clone()),
        FromSwarm::ExpiredListenAddr(e) => Input::ExpiredListenAddr(e.addr.clone()),
        _ => return None,
    })
}
