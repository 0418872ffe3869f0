//! Peer exchange: Octez's `Bootstrap`/`Advertise` messages as a libp2p request-response
//! protocol (`spec/tezos_p2p.md` §8).
//!
//! A node asks a connected peer for points with a [`Request`] on [`PROTOCOL`]; the peer answers
//! with a [`Response`] of at most [`MAX_POINTS_SENT`] points (Octez `list_known_points`: the 30
//! best and 20 random known-public points), each a multiaddr ending in `/p2p/<id>` when the peer
//! at the point is known. Messages are CBOR, and bounded: a request of at most
//! [`MAX_REQUEST_BYTES`], a response of at most [`MAX_RESPONSE_BYTES`] and
//! [`MAX_POINTS_ACCEPTED`] points (Octez's `Advertise` wire limit); a longer list is refused
//! whole, as Octez fails to decode it. A peer is answered at most once per [`ANSWER_COOLDOWN`];
//! an earlier request waits for the cooldown, as Octez delays rather than drops.
//!
//! The answer on a connection the node refused (Octez's `Nack`) says so ([`Response::nack`]),
//! and the asker closes it; a request that says the asker needs connections
//! ([`Request::need`]) gets a refused connection admitted, if the node is still under its
//! `max`.

use std::time::Duration;

use libp2p::{
    StreamProtocol,
    request_response::{self, ProtocolSupport},
};
use serde::{Deserialize, Serialize};

/// The protocol name.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/peerage/pex/1.0.0");
/// Most points sent in a response (Octez `list_known_points ~size:50`).
pub const MAX_POINTS_SENT: usize = 50;
/// Most points accepted in a response (Octez `Advertise`: `Variable.list ~max_length:100`).
pub const MAX_POINTS_ACCEPTED: usize = 100;
/// Largest request accepted, in bytes.
pub const MAX_REQUEST_BYTES: u64 = 1024;
/// Largest response accepted, in bytes.
pub const MAX_RESPONSE_BYTES: u64 = 256 * 1024;
/// Least time between two answers to one peer (Octez's per-connection throttle of 100 ms).
pub const ANSWER_COOLDOWN: Duration = Duration::from_millis(100);
/// How long a request may wait for its response.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A request for points (Octez `Bootstrap`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The asker is below its minimum of connections and wants this one kept: a node that
    /// nacked the connection for being at its `max_threshold` admits it after all while under
    /// its `max` (its maintenance then makes room). Octez's `Bootstrap` has no such field.
    #[serde(default)]
    pub need: bool,
}

/// The points a peer knows (Octez `Advertise`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// Multiaddrs of points, each ending in `/p2p/<id>` when the peer at the point is known.
    pub points: Vec<String>,
    /// The answering node is full and is about to close this connection (Octez's `Nack`): the
    /// asker should back off from it as from a refused connection and try the points instead.
    #[serde(default)]
    pub nack: bool,
    /// The answering node's own signed peer record (a libp2p signed envelope, domain
    /// `libp2p-peer-record`, protobuf-encoded), so that its addresses are certified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<Vec<u8>>,
    /// Advertised peers that have a signed peer record, as those records (same encoding):
    /// their addresses are certified at the asker. They count with `points` toward
    /// [`MAX_POINTS_ACCEPTED`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<Vec<u8>>,
}

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
