//! Peer exchange: Octez's `Bootstrap`/`Advertise` messages as a libp2p request-response
//! protocol (Octez `p2p_message.ml`, `p2p_socket.ml`).
//!
//! A node asks a connected peer for points with a [`Request`] on [`PROTOCOL`]; the peer answers
//! with a [`Response`] of at most [`MAX_POINTS_SENT`] points (Octez `list_known_points`: the 30
//! best and 20 random known-public points), each a multiaddr ending in `/p2p/<id>` when the peer
//! at the point is known. Messages are CBOR, and bounded: a request of at most
//! [`MAX_REQUEST_BYTES`], a response of at most [`MAX_RESPONSE_BYTES`] and
//! [`MAX_POINTS_ACCEPTED`] points (Octez's `Advertise` wire limit); a longer list is refused
//! whole, as Octez fails to decode it. A list over the limit, a message over its size limit or
//! one that does not decode greylists its sender, as Octez's decoding errors do ([`Codec`]),
//! requests as well as answers ([`WireRequest`]). A peer is answered at most once per
//! [`ANSWER_COOLDOWN`]: an earlier request waits for the cooldown, as Octez delays rather than
//! drops, and a further one while one waits is dropped (its asker sees the request fail).
//!
//! Points out of the answerer's scope are dropped, as go-libp2p identify's `filterAddrs`
//! drops listen addresses ([`pool::point::in_scope`](peerage_core::pool::point::in_scope)): a
//! peer connected from a public address names public points only (no loopback, private or
//! unroutable ones), one connected from a private address no loopback ones. The same rule
//! applies to the listen addresses a peer announces in identify. Only answers to the node's
//! own requests are read (request-response has no unsolicited answers: one sent on a stream
//! the peer opens is read as a request, of at most [`MAX_REQUEST_BYTES`]), at most one request
//! per peer is in flight, and a peer is asked at most once per round (5 s).
//!
//! The answer on a connection the node refused (Octez's `Nack`) says so ([`Response::nack`]),
//! and the asker closes it; a request that says the asker needs connections
//! ([`Request::need`]) gets a refused connection admitted, if the node is still under its
//! `max`.

use std::{collections::HashMap, io};

use futures::{AsyncRead, AsyncReadExt, AsyncWrite};
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
pub type Behaviour = request_response::Behaviour<Codec>;

/// The protocol's codec: libp2p's CBOR codec, with the size limits ([`MAX_REQUEST_BYTES`],
/// [`MAX_RESPONSE_BYTES`]) enforced on the bytes themselves, so that a message over its limit
/// or one that does not decode fails with [`io::ErrorKind::InvalidData`], which greylists its
/// sender. Alone, libp2p's codec reads at most the limit and then fails to decode the cut
/// message with `UnexpectedEof`, and reports what serde refuses as `Other`: a hostile answer
/// looked like a network failure.
#[derive(Clone, Default)]
pub struct Codec {
    inner: request_response::cbor::codec::Codec<Request, Response>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec").finish_non_exhaustive()
    }
}

/// A request as the codec reads it. rust-libp2p's request-response (0.30) reports no failure
/// of a request it could not read: it logs it at debug level and closes the stream
/// (`handler.rs`, `Behaviour::on_connection_handler_event`), so a peer could send garbage or
/// oversized requests for ever. The codec hands such a request on as [`Invalid`](Self::Invalid)
/// instead, with the peer, and its sender is greylisted as for an answer that does not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireRequest {
    /// A request.
    Valid(Request),
    /// Bytes that are not a request: over [`MAX_REQUEST_BYTES`] or undecodable; why. Never
    /// sent: writing one fails with [`io::ErrorKind::InvalidInput`].
    Invalid(String),
}

/// The whole message, or `InvalidData` if it has more than `max` bytes.
async fn read_bounded<T: AsyncRead + Unpin + Send>(io: &mut T, max: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    io.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .await?;
    if bytes.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message over {max} bytes"),
        ));
    }
    Ok(bytes)
}

/// A decoding error of a message read whole: the sender's fault.
fn undecodable(e: io::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = WireRequest;
    type Response = Response;

    /// A request, or [`WireRequest::Invalid`] where an answer would fail with `InvalidData`;
    /// a stream closed before any byte is not a request at all (`UnexpectedEof`, which
    /// request-response drops unreported): a peer may open a stream and give up on it, as
    /// js-libp2p does when it only probes which protocol the node speaks.
    async fn read_request<T>(
        &mut self,
        protocol: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<WireRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = match read_bounded(io, MAX_REQUEST_BYTES).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Ok(WireRequest::Invalid(e.to_string()));
            }
            Err(e) => return Err(e),
        };
        if bytes.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the stream closed before a request",
            ));
        }
        Ok(
            match self
                .inner
                .read_request(protocol, &mut futures::io::Cursor::new(bytes))
                .await
            {
                Ok(request) => WireRequest::Valid(request),
                Err(e) => WireRequest::Invalid(e.to_string()),
            },
        )
    }

    async fn read_response<T>(
        &mut self,
        protocol: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_bounded(io, MAX_RESPONSE_BYTES).await?;
        self.inner
            .read_response(protocol, &mut futures::io::Cursor::new(bytes))
            .await
            .map_err(undecodable)
    }

    async fn write_request<T>(
        &mut self,
        protocol: &StreamProtocol,
        io: &mut T,
        request: WireRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        match request {
            WireRequest::Valid(request) => self.inner.write_request(protocol, io, request).await,
            WireRequest::Invalid(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an invalid request is never sent",
            )),
        }
    }

    async fn write_response<T>(
        &mut self,
        protocol: &StreamProtocol,
        io: &mut T,
        response: Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.inner.write_response(protocol, io, response).await
    }
}

/// The protocol's behaviour; a private node only asks (it never does, in fact) and does not
/// offer the protocol, so identify tells its peers that it is private.
pub(crate) fn behaviour(private: bool) -> Behaviour {
    let support = if private {
        ProtocolSupport::Outbound
    } else {
        ProtocolSupport::Full
    };
    let codec = Codec::default();
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
        event: request_response::Event<WireRequest, Response>,
    ) -> Option<Input<ConnectionId>> {
        use request_response::{Event as E, InboundFailure, Message, OutboundFailure};
        let invalid = |e: &std::io::Error| e.kind() == std::io::ErrorKind::InvalidData;
        match event {
            E::Message {
                peer,
                message:
                    Message::Request {
                        request: WireRequest::Invalid(why),
                        ..
                    },
                ..
            } => {
                // The channel is dropped: the stream closes unanswered.
                tracing::debug!(%peer, "pex request unreadable: {why}");
                Some(Input::PexFailed {
                    peer,
                    outbound: false,
                    invalid_data: true,
                })
            }
            E::Message {
                peer,
                connection_id,
                message:
                    Message::Request {
                        channel,
                        request: WireRequest::Valid(request),
                        ..
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

#[cfg(test)]
mod tests {
    use futures::executor::block_on;
    use request_response::Codec as _;

    use super::*;

    fn read(bytes: Vec<u8>) -> io::Result<Response> {
        block_on(Codec::default().read_response(&PROTOCOL, &mut futures::io::Cursor::new(bytes)))
    }

    fn encoded(response: Response) -> Vec<u8> {
        let mut out = futures::io::Cursor::new(Vec::new());
        block_on(Codec::default().write_response(&PROTOCOL, &mut out, response)).unwrap();
        out.into_inner()
    }

    /// What a hostile answer can be, each an `InvalidData` error (which greylists the sender):
    /// garbage, a cut message, a message over the limit; a well-formed one reads back.
    #[test]
    fn a_hostile_answer_is_invalid_data() {
        let point: libp2p::Multiaddr = "/ip4/1.2.3.4/tcp/4001".parse().unwrap();
        let good = Response {
            points: vec![point.into()],
            ..Response::default()
        };
        assert_eq!(read(encoded(good.clone())).unwrap(), good);
        let mut cut = encoded(good);
        cut.truncate(cut.len() - 3);
        let huge = encoded(Response {
            record: Some(vec![7; MAX_RESPONSE_BYTES as usize]),
            ..Response::default()
        });
        for (what, bytes) in [
            ("garbage", b"\xff\x00 not cbor at all".to_vec()),
            ("cut", cut),
            ("over the limit", huge),
        ] {
            let e = read(bytes).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{what}: {e}");
        }
    }

    /// A request that does not decode, is cut, or is over [`MAX_REQUEST_BYTES`] (an answer sent
    /// unasked, say) reads as [`WireRequest::Invalid`], not as an error, which request-response
    /// would drop unreported; a well-formed one reads back; an invalid one is never written.
    #[test]
    fn a_hostile_request_reads_as_invalid() {
        let read = |bytes: Vec<u8>| {
            block_on(Codec::default().read_request(&PROTOCOL, &mut futures::io::Cursor::new(bytes)))
                .unwrap()
        };
        let write = |request: WireRequest| {
            let mut out = futures::io::Cursor::new(Vec::new());
            block_on(Codec::default().write_request(&PROTOCOL, &mut out, request))
                .map(|()| out.into_inner())
        };
        let good = WireRequest::Valid(Request { need: true });
        assert_eq!(read(write(good.clone()).unwrap()), good);
        let answer = encoded(Response {
            points: (0..100)
                .map(|k| {
                    format!("/ip4/8.8.{k}.1/tcp/4001")
                        .parse::<libp2p::Multiaddr>()
                        .unwrap()
                        .into()
                })
                .collect(),
            ..Response::default()
        });
        assert!(answer.len() as u64 > MAX_REQUEST_BYTES);
        let mut cut = write(good).unwrap();
        cut.truncate(cut.len() - 1);
        for (what, bytes) in [
            ("garbage", b"\xff\x00 not cbor at all".to_vec()),
            ("cut", cut),
            ("an answer over the limit", answer),
        ] {
            assert!(
                matches!(read(bytes), WireRequest::Invalid(_)),
                "{what} read as a request"
            );
        }
        let e = write(WireRequest::Invalid("x".into())).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        // No byte at all: a stream given up on, not a request, and not invalid.
        let e = block_on(
            Codec::default().read_request(&PROTOCOL, &mut futures::io::Cursor::new(Vec::new())),
        )
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }
}
