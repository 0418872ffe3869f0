//! Peer exchange: Octez's `Bootstrap`/`Advertise` messages as a libp2p request-response
//! protocol (Octez `p2p_message.ml`, `p2p_socket.ml`).
//!
//! A node asks a connected peer for points with a [`Request`] on [`PROTOCOL`]; the peer answers
//! with a [`Response`] of at most [`MAX_POINTS_SENT`] points (Octez `list_known_points`: the 30
//! best and 20 random known-public points), each a multiaddr ending in `/p2p/<id>` when the peer
//! at the point is known. Messages are CBOR, and bounded: a request of at most
//! [`MAX_REQUEST_BYTES`], a response of at most [`MAX_RESPONSE_BYTES`] and
//! [`MAX_POINTS_ACCEPTED`] points (Octez's `Advertise` wire limit); a longer list is refused
//! whole, as Octez fails to decode it. A peer is answered at most once per [`ANSWER_COOLDOWN`]:
//! an earlier request waits for the cooldown, as Octez delays rather than drops, and a further
//! one while one waits is dropped (its asker sees the request fail).
//!
//! The answer on a connection the node refused (Octez's `Nack`) says so ([`Response::nack`]),
//! and the asker closes it; a request that says the asker needs connections
//! ([`Request::need`]) gets a refused connection admitted, if the node is still under its
//! `max`.

use std::collections::HashMap;

use libp2p::{
    StreamProtocol,
    request_response::{self, ProtocolSupport},
    swarm::ConnectionId,
};
use peerage_core::node::Input;
pub use peerage_core::node::pex::{
    ANSWER_COOLDOWN, MAX_POINTS_ACCEPTED, MAX_POINTS_SENT, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES,
    REQUEST_TIMEOUT, Request, Response,
};

/// The protocol name.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new(peerage_core::node::pex::PROTOCOL);

/// The request-response behaviour of the protocol.
#[allow(unreachable_pub)]
pub type Behaviour = request_response::cbor::Behaviour<Request, Response>;

/// The protocol's behaviour; a private node only asks (it never does, in fact) and does not
/// offer the protocol, so identify tells its peers that it is private.
pub(crate) fn behaviour(private: bool) -> Behaviour {
    let support = if private {
        ProtocolSupport::Outbound
    } else {
        ProtocolSupport::Full
    };
    let codec = request_response::cbor::codec::Codec::default()
        .set_request_size_maximum(MAX_REQUEST_BYTES)
        .set_response_size_maximum(MAX_RESPONSE_BYTES);
    let config = request_response::Config::default()
        .with_request_timeout(REQUEST_TIMEOUT)
        .with_max_concurrent_streams(16);
    request_response::Behaviour::with_codec(codec, [(PROTOCOL, support)], config)
}

/// Requests for points that the node machine holds, by the token it was given: their response
/// channels. At most one per request the machine has not yet answered or dropped.
#[derive(Default)]
pub(crate) struct Channels {
    open: HashMap<u64, request_response::ResponseChannel<Response>>,
    next: u64,
}

impl Channels {
    /// The channel of the request with `token`, if it is still open.
    pub(crate) fn take(
        &mut self,
        token: u64,
    ) -> Option<request_response::ResponseChannel<Response>> {
        self.open.remove(&token)
    }

    /// The machine's input for an event of the protocol; a request's channel is kept under
    /// the token the input carries.
    pub(crate) fn input(
        &mut self,
        event: request_response::Event<Request, Response>,
    ) -> Option<Input<ConnectionId>> {
        use request_response::{Event as E, InboundFailure, Message, OutboundFailure};
        let invalid = |e: &std::io::Error| e.kind() == std::io::ErrorKind::InvalidData;
        match event {
            E::Message {
                peer,
                connection_id,
                message:
                    Message::Request {
                        channel, request, ..
                    },
            } => {
                let token = self.next;
                self.next += 1;
                self.open.insert(token, channel);
                Some(Input::PexRequest {
                    peer,
                    id: connection_id,
                    request,
                    token,
                })
            }
            E::Message {
                peer,
                connection_id,
                message: Message::Response { response, .. },
            } => Some(Input::PexAnswer {
                peer,
                id: connection_id,
                response,
            }),
            E::ResponseSent { .. } => None,
            E::OutboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "pex request failed: {error}");
                Some(Input::PexFailed {
                    peer,
                    outbound: true,
                    invalid_data: matches!(&error, OutboundFailure::Io(e) if invalid(e)),
                })
            }
            E::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "pex answer failed: {error}");
                Some(Input::PexFailed {
                    peer,
                    outbound: false,
                    invalid_data: matches!(&error, InboundFailure::Io(e) if invalid(e)),
                })
            }
        }
    }
}
