//! Identify (`/ipfs/id/1.0.0` and `/ipfs/id/push/1.0.0`) as go-libp2p and js-libp2p speak it,
//! with their signed peer records.
//!
//! The wire format is libp2p's identify message (go-libp2p `p2p/protocol/identify/pb`): a
//! length-prefixed protobuf with the public key, listen addresses, protocols, observed address,
//! protocol and agent versions, and `signedPeerRecord`. What differs from rust-libp2p's
//! `libp2p-identify` 0.48, and why Peerage has its own:
//!
//! - **Signed peer records under the standard domain.** Ours are sealed, and the remote's are
//!   read, with the domain `libp2p-peer-record` and payload type `0x0301`
//!   (`libp2p_core::PeerRecord::new_interop`), as go-libp2p (`core/peer/record.go`) and
//!   js-libp2p make them. `libp2p-identify` 0.48 signs under `libp2p-routing-state` and drops the
//!   standard records, so go and js peers could not certify our addresses, nor we theirs. The
//!   record's bytes reach the node machine, whose peerstore verifies them
//!   ([`Store::consume_peer_record`](crate::peerstore::Store::consume_peer_record)) as
//!   it verifies those of the peer exchange; identify itself only checks the public key.
//! - **Messages up to 8 KiB** ([`MAX_MESSAGE_SIZE`], go's `signedIDSize`), where
//!   `libp2p-identify` refuses anything over 4 KiB: a go peer with many addresses and a record
//!   sends more. We send at most [`MAX_OWN_ADDRS`] addresses, which keeps ours far below.
//! - **Configurable** protocol version, agent version and interval ([`Config`]).
//!
//! Each connection asks the remote once when it opens and then every
//! [`Config::with_interval`] (rust-libp2p's habit; go and js ask once and rely on pushes), and
//! answers the remote's requests. When our listen addresses or protocols change, each connection
//! pushes the new message (`/ipfs/id/push/1.0.0`, go's `identify push`). A push received updates
//! what the connection last heard. A connection runs at most [`MAX_STREAMS`] identify streams at
//! once (more are reset), each bounded by [`STREAM_TIMEOUT`], and reads at most
//! [`MAX_PUSHES`] pushes per [`PUSH_WINDOW`]: further ones are reset unread, since each may
//! carry a signed record to verify (neither go-libp2p nor rust-libp2p bounds pushes).

use std::{
    collections::{HashSet, VecDeque},
    io,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use asynchronous_codec::{FramedRead, FramedWrite};
use futures::{
    FutureExt, SinkExt, StreamExt,
    future::{self, BoxFuture},
};
use futures_timer::Delay;
use libp2p::{
    Multiaddr, PeerId, StreamProtocol,
    core::{
        Endpoint, PeerRecord,
        transport::PortUse,
        upgrade::{ReadyUpgrade, SelectUpgrade},
    },
    identity::{Keypair, PublicKey},
    swarm::{
        ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
        NetworkBehaviour, NotifyHandler, Stream, StreamUpgradeError, SubstreamProtocol,
        SupportedProtocols, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
        handler::{
            ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound,
            ProtocolSupport,
        },
    },
};
use peerage_core::node;
use prost::Message as _;

/// The identify protocol.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/id/1.0.0");

/// The identify push protocol.
pub const PUSH_PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/id/push/1.0.0");

/// Largest identify message read, in bytes: 8 KiB, go-libp2p's `signedIDSize`
/// (`p2p/protocol/identify/id.go`). A longer one is an error, and nothing of it is used.
pub const MAX_MESSAGE_SIZE: usize = 8 * 1024;

/// Most of our own addresses a message carries (in its listen addresses and in its signed
/// record). Fewer go if they would take the message without its protocols over
/// [`OWN_ADDRS_BUDGET`].
pub const MAX_OWN_ADDRS: usize = 30;

/// Bytes our message may take without its protocols and observed address: 3 KiB, so that with
/// them it stays under go-libp2p's 4 KiB `maxOwnIdentifyMsgSize`; addresses past it are left
/// out, the last first (go trims its own message the same way).
pub const OWN_ADDRS_BUDGET: usize = 3 * 1024;

/// Most identify streams a connection runs at once; more are reset (rust-libp2p's
/// `MAX_CONCURRENT_STREAMS_PER_CONNECTION`).
pub const MAX_STREAMS: usize = 10;

/// Longest an identify stream may take, read or write, before it is dropped: 30 s.
pub const STREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// Most pushes a connection reads per [`PUSH_WINDOW`]: 4 (a peer pushes when its addresses or
/// protocols change, a few times at start at most).
pub const MAX_PUSHES: usize = 4;

/// The window of [`MAX_PUSHES`]: 10 s.
pub const PUSH_WINDOW: Duration = Duration::from_secs(10);

/// Identify's wire message (go-libp2p `p2p/protocol/identify/pb/identify.proto`).
#[derive(Clone, PartialEq, prost::Message)]
struct Message {
    #[prost(string, optional, tag = "5")]
    protocol_version: Option<String>,
    #[prost(string, optional, tag = "6")]
    agent_version: Option<String>,
    #[prost(bytes = "vec", optional, tag = "1")]
    public_key: Option<Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "2")]
    listen_addrs: Vec<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "4")]
    observed_addr: Option<Vec<u8>>,
    #[prost(string, repeated, tag = "3")]
    protocols: Vec<String>,
    #[prost(bytes = "vec", optional, tag = "8")]
    signed_peer_record: Option<Vec<u8>>,
}

/// Configuration of Peerage's identify.
#[derive(Debug, Clone)]
pub struct Config {
    protocol_version: String,
    agent_version: String,
    interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            protocol_version: "ipfs/0.1.0".to_owned(),
            agent_version: format!("peerage/{}", env!("CARGO_PKG_VERSION")),
            interval: Duration::from_secs(5 * 60),
        }
    }
}

impl Config {
    /// Defaults: protocol version `ipfs/0.1.0` (go-libp2p's and js-libp2p's), agent version
    /// `peerage/<crate version>`, a new request every 5 min (rust-libp2p's).
    pub fn new() -> Self {
        Self::default()
    }
    /// The protocol version we announce (`ipfs/0.1.0` by default); an application names its
    /// network here (`/tezos/1.0.0`, say).
    pub fn with_protocol_version(mut self, version: impl Into<String>) -> Self {
        self.protocol_version = version.into();
        self
    }
    /// The agent version we announce. `peerage/<crate version>` by default.
    pub fn with_agent_version(mut self, agent: impl Into<String>) -> Self {
        self.agent_version = agent.into();
        self
    }
    /// How often each connection asks its remote again. 5 min by default.
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }
    /// The agent version announced.
    pub fn agent_version(&self) -> &str {
        &self.agent_version
    }
}

/// What a remote said of itself. Its signed peer record is carried as received: the
/// peerstore verifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// Its public key, whose peer ID is the connection's.
    pub public_key: PublicKey,
    /// Its protocol version (`ipfs/0.1.0`, say).
    pub protocol_version: String,
    /// Its agent version (`go-libp2p/0.43.0`, say).
    pub agent_version: String,
    /// The addresses it listens on; those that do not decode are left out.
    pub listen_addrs: Vec<Multiaddr>,
    /// Its protocols; names that are not valid protocol names are left out.
    pub protocols: Vec<StreamProtocol>,
    /// Our address as it sees it, if it sent one that decodes.
    pub observed_addr: Option<Multiaddr>,
    /// Its signed peer record (a protobuf `SignedEnvelope`), unverified.
    pub signed_peer_record: Option<Vec<u8>>,
}

impl Info {
    /// The node machine's view: listen addresses, protocol names, versions and the record.
    pub fn into_machine(self) -> node::Identify {
        node::Identify {
            listen_addrs: self.listen_addrs,
            protocols: self.protocols.iter().map(ToString::to_string).collect(),
            agent_version: self.agent_version,
            protocol_version: self.protocol_version,
            signed_peer_record: self.signed_peer_record,
        }
    }

    /// Reads a message. A push may leave out fields (go sends whole messages; the spec allows
    /// partial ones): what it leaves out is taken from `last`.
    fn from_message(message: Message, last: Option<&Info>) -> Result<Self, Error> {
        let public_key = match message.public_key {
            Some(bytes) => PublicKey::try_decode_protobuf(&bytes).map_err(|_| Error::PublicKey)?,
            None => last.map(|l| l.public_key.clone()).ok_or(Error::PublicKey)?,
        };
        let listen_addrs: Vec<Multiaddr> = message
            .listen_addrs
            .into_iter()
            .filter_map(|bytes| Multiaddr::try_from(bytes).ok())
            .collect();
        let protocols: Vec<StreamProtocol> = message
            .protocols
            .into_iter()
            .filter_map(|p| StreamProtocol::try_from_owned(p).ok())
            .collect();
        let or_last = |field: Option<String>, get: fn(&Info) -> &String| {
            field
                .or_else(|| last.map(|l| get(l).clone()))
                .unwrap_or_default()
        };
        Ok(Info {
            protocol_version: or_last(message.protocol_version, |l| &l.protocol_version),
            agent_version: or_last(message.agent_version, |l| &l.agent_version),
            listen_addrs: match (listen_addrs.is_empty(), last) {
                (true, Some(l)) => l.listen_addrs.clone(),
                _ => listen_addrs,
            },
            protocols: match (protocols.is_empty(), last) {
                (true, Some(l)) => l.protocols.clone(),
                _ => protocols,
            },
            observed_addr: message
                .observed_addr
                .and_then(|b| Multiaddr::try_from(b).ok())
                .or_else(|| last.and_then(|l| l.observed_addr.clone())),
            signed_peer_record: message
                .signed_peer_record
                .or_else(|| last.and_then(|l| l.signed_peer_record.clone())),
            public_key,
        })
    }
}

/// Why an identify exchange failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The stream failed, or the message did not decode or was longer than
    /// [`MAX_MESSAGE_SIZE`].
    #[error("identify stream: {0}")]
    Io(#[from] io::Error),
    /// The remote closed the stream without a message.
    #[error("the remote closed the identify stream without a message")]
    Closed,
    /// The message carried no public key, one that does not decode, or another peer's.
    #[error("the identify message's public key is missing, undecodable or not the remote's")]
    PublicKey,
    /// The exchange took longer than [`STREAM_TIMEOUT`].
    #[error("identify timed out")]
    Timeout,
    /// The remote does not speak identify.
    #[error("the remote does not speak identify")]
    Unsupported,
    /// The connection runs [`MAX_STREAMS`] identify streams already.
    #[error("too many identify streams on the connection")]
    TooManyStreams,
    /// The remote pushed more than [`MAX_PUSHES`] times in [`PUSH_WINDOW`].
    #[error("too many identify pushes on the connection")]
    TooManyPushes,
}

/// Events of identify.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// The remote answered our request, or pushed.
    Received {
        /// The remote.
        peer: PeerId,
        /// The connection.
        connection: ConnectionId,
        /// What it said, with what a partial push left out taken from before.
        info: Box<Info>,
    },
    /// We answered a request of the remote.
    Sent {
        /// The remote.
        peer: PeerId,
        /// The connection.
        connection: ConnectionId,
    },
    /// We pushed our message to the remote.
    Pushed {
        /// The remote.
        peer: PeerId,
        /// The connection.
        connection: ConnectionId,
    },
    /// An exchange failed.
    Error {
        /// The remote.
        peer: PeerId,
        /// The connection.
        connection: ConnectionId,
        /// Why.
        error: Error,
    },
}

/// What every connection sends of us, shared by the handlers and rebuilt when our addresses
/// change.
#[derive(Debug)]
struct Own {
    public_key: Vec<u8>,
    protocol_version: String,
    agent_version: String,
    addrs: Vec<Multiaddr>,
    record: Option<Vec<u8>>,
}

impl Own {
    /// Our message for `addrs`, less the last ones while it is over [`OWN_ADDRS_BUDGET`].
    fn new(key: &Keypair, config: &Config, mut addrs: Vec<Multiaddr>) -> Self {
        addrs.truncate(MAX_OWN_ADDRS);
        loop {
            let record = match PeerRecord::new_interop(key, addrs.clone()) {
                Ok(record) => Some(record.into_signed_envelope().into_protobuf_encoding()),
                Err(e) => {
                    tracing::warn!("cannot sign our peer record: {e}");
                    None
                }
            };
            let own = Own {
                public_key: key.public().encode_protobuf(),
                protocol_version: config.protocol_version.clone(),
                agent_version: config.agent_version.clone(),
                addrs,
                record,
            };
            let len = own
                .message(&SupportedProtocols::default(), &Multiaddr::empty())
                .encoded_len();
            if len <= OWN_ADDRS_BUDGET || own.addrs.is_empty() {
                return own;
            }
            addrs = own.addrs;
            addrs.pop();
        }
    }

    fn message(&self, protocols: &SupportedProtocols, observed: &Multiaddr) -> Message {
        Message {
            protocol_version: Some(self.protocol_version.clone()),
            agent_version: Some(self.agent_version.clone()),
            public_key: Some(self.public_key.clone()),
            listen_addrs: self.addrs.iter().map(Multiaddr::to_vec).collect(),
            observed_addr: Some(observed.to_vec()),
            protocols: protocols.iter().map(ToString::to_string).collect(),
            signed_peer_record: self.record.clone(),
        }
    }
}

/// Peerage's identify, as a `NetworkBehaviour` of its own. [`crate::Behaviour`] runs one
/// inside; an application that runs [`crate::Behaviour`] without it
/// ([`crate::Config::without_identify`]) may run this one, or its own.
pub struct Behaviour {
    key: Keypair,
    config: Config,
    listen_addrs: Vec<Multiaddr>,
    external_addrs: Vec<Multiaddr>,
    /// Our addresses when `own` was built (`own` may carry fewer).
    addrs_announced: Vec<Multiaddr>,
    own: Arc<Own>,
    connections: HashSet<(PeerId, ConnectionId)>,
    events: VecDeque<ToSwarm<Event, InEvent>>,
}

impl Behaviour {
    /// Identify for the node whose identity is `key` (it signs our peer record).
    pub fn new(key: Keypair, config: Config) -> Self {
        let own = Arc::new(Own::new(&key, &config, Vec::new()));
        Behaviour {
            key,
            config,
            listen_addrs: Vec::new(),
            external_addrs: Vec::new(),
            addrs_announced: Vec::new(),
            own,
            connections: HashSet::new(),
            events: VecDeque::new(),
        }
    }

    /// Our addresses as we announce them: external ones first, then listen ones.
    fn addrs(&self) -> Vec<Multiaddr> {
        let mut addrs: Vec<Multiaddr> = Vec::new();
        for a in self.external_addrs.iter().chain(&self.listen_addrs) {
            if !addrs.contains(a) {
                addrs.push(a.clone());
            }
        }
        addrs
    }

    /// Rebuilds our message and pushes it on every connection, if our addresses changed.
    fn addrs_changed(&mut self) {
        let addrs = self.addrs();
        if addrs == self.addrs_announced {
            return;
        }
        self.addrs_announced = addrs.clone();
        self.own = Arc::new(Own::new(&self.key, &self.config, addrs));
        for &(peer, connection) in &self.connections {
            self.events.push_back(ToSwarm::NotifyHandler {
                peer_id: peer,
                handler: NotifyHandler::One(connection),
                event: InEvent(self.own.clone()),
            });
        }
    }

    fn handler(&self, peer: PeerId, observed: &Multiaddr) -> Handler {
        Handler::new(
            peer,
            observed.clone(),
            self.own.clone(),
            self.config.interval,
        )
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = Event;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer, remote))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer, addr))
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                self.connections.insert((e.peer_id, e.connection_id));
            }
            FromSwarm::ConnectionClosed(e) => {
                self.connections.remove(&(e.peer_id, e.connection_id));
            }
            FromSwarm::NewListenAddr(e) if !self.listen_addrs.contains(e.addr) => {
                self.listen_addrs.push(e.addr.clone());
                self.addrs_changed();
            }
            FromSwarm::ExpiredListenAddr(e) => {
                self.listen_addrs.retain(|a| a != e.addr);
                self.addrs_changed();
            }
            FromSwarm::ExternalAddrConfirmed(e) if !self.external_addrs.contains(e.addr) => {
                self.external_addrs.push(e.addr.clone());
                self.addrs_changed();
            }
            FromSwarm::ExternalAddrExpired(e) => {
                self.external_addrs.retain(|a| a != e.addr);
                self.addrs_changed();
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        let event = match event {
            HandlerEvent::Received(info) => Event::Received {
                peer,
                connection,
                info,
            },
            HandlerEvent::Sent => Event::Sent { peer, connection },
            HandlerEvent::Pushed => Event::Pushed { peer, connection },
            HandlerEvent::Failed(error) => {
                tracing::debug!(%peer, "identify: {error}");
                Event::Error {
                    peer,
                    connection,
                    error,
                }
            }
        };
        self.events.push_back(ToSwarm::GenerateEvent(event));
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Event, THandlerInEvent<Self>>> {
        match self.events.pop_front() {
            Some(event) => Poll::Ready(event),
            None => Poll::Pending,
        }
    }
}

/// What the behaviour tells a connection's handler: our message changed; send it from now on,
/// and push it.
#[doc(hidden)]
#[derive(Debug)]
pub struct InEvent(Arc<Own>);

/// What a connection's handler tells the behaviour.
#[doc(hidden)]
#[derive(Debug)]
pub enum HandlerEvent {
    Received(Box<Info>),
    Sent,
    Pushed,
    Failed(Error),
}

/// The outcome of one identify stream.
enum Done {
    Received(Message),
    ReceivedPush(Message),
    Sent,
    Pushed,
}

/// Whether a push arriving at `now` may be read, given when the last ones read arrived
/// (`pushes`, updated): at most [`MAX_PUSHES`] in [`PUSH_WINDOW`].
fn push_allowed(pushes: &mut VecDeque<Instant>, now: Instant) -> bool {
    while pushes
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= PUSH_WINDOW)
    {
        pushes.pop_front();
    }
    if pushes.len() >= MAX_PUSHES {
        return false;
    }
    pushes.push_back(now);
    true
}

/// Identify on one connection.
#[doc(hidden)]
pub struct Handler {
    remote: PeerId,
    observed: Multiaddr,
    own: Arc<Own>,
    interval: Duration,
    next_request: Delay,
    /// Whether the remote has heard our message once (asked or pushed); only then do changes
    /// of our protocols push.
    told: bool,
    local_protocols: SupportedProtocols,
    remote_protocols: HashSet<StreamProtocol>,
    last: Option<Info>,
    streams: futures_bounded::FuturesSet<Result<Done, Error>>,
    /// When the last pushes read arrived, at most [`MAX_PUSHES`].
    pushes: VecDeque<Instant>,
    events: VecDeque<ConnectionHandlerEvent<OutboundProtocol, (), HandlerEvent>>,
}

type OutboundProtocol = either::Either<ReadyUpgrade<StreamProtocol>, ReadyUpgrade<StreamProtocol>>;

impl Handler {
    fn new(remote: PeerId, observed: Multiaddr, own: Arc<Own>, interval: Duration) -> Self {
        Handler {
            remote,
            observed,
            own,
            interval,
            next_request: Delay::new(Duration::ZERO),
            told: false,
            local_protocols: SupportedProtocols::default(),
            remote_protocols: HashSet::new(),
            last: None,
            streams: futures_bounded::FuturesSet::new(
                || futures_bounded::Delay::futures_timer(STREAM_TIMEOUT),
                MAX_STREAMS,
            ),
            pushes: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    fn run(&mut self, stream: BoxFuture<'static, Result<Done, Error>>) {
        if self.streams.try_push(stream).is_err() {
            tracing::debug!(peer = %self.remote, "identify: too many streams, one dropped");
            self.events
                .push_back(ConnectionHandlerEvent::NotifyBehaviour(
                    HandlerEvent::Failed(Error::TooManyStreams),
                ));
        }
    }

    fn request_push(&mut self) {
        self.events
            .push_back(ConnectionHandlerEvent::OutboundSubstreamRequest {
                protocol: SubstreamProtocol::new(
                    either::Either::Right(ReadyUpgrade::new(PUSH_PROTOCOL)),
                    (),
                ),
            });
    }

    /// A message read: the remote's info, if its key is the remote's.
    fn received(&mut self, message: Message) -> HandlerEvent {
        let info = match Info::from_message(message, self.last.as_ref()) {
            Ok(info) if info.public_key.to_peer_id() == self.remote => info,
            Ok(_) => return HandlerEvent::Failed(Error::PublicKey),
            Err(e) => return HandlerEvent::Failed(e),
        };
        let protocols: HashSet<StreamProtocol> = info.protocols.iter().cloned().collect();
        let added: HashSet<_> = protocols
            .difference(&self.remote_protocols)
            .cloned()
            .collect();
        let removed: HashSet<_> = self
            .remote_protocols
            .difference(&protocols)
            .cloned()
            .collect();
        // Other behaviours on the connection learn the remote's protocols, as from
        // rust-libp2p's identify.
        if !added.is_empty() {
            self.events
                .push_back(ConnectionHandlerEvent::ReportRemoteProtocols(
                    ProtocolSupport::Added(added),
                ));
        }
        if !removed.is_empty() {
            self.events
                .push_back(ConnectionHandlerEvent::ReportRemoteProtocols(
                    ProtocolSupport::Removed(removed),
                ));
        }
        self.remote_protocols = protocols;
        self.last = Some(info.clone());
        HandlerEvent::Received(Box::new(info))
    }
}

/// Reads one identify message of at most [`MAX_MESSAGE_SIZE`] bytes.
async fn read(stream: Stream) -> Result<Message, Error> {
    // The stream is not closed for writing: some transports wait for the remote's
    // acknowledgement, and the remote may be gone already (rust-libp2p's identify does the same).
    FramedRead::new(stream, prost_codec::Codec::<Message>::new(MAX_MESSAGE_SIZE))
        .next()
        .await
        .ok_or(Error::Closed)?
        .map_err(|e| Error::Io(e.into()))
}

/// Writes one identify message and closes the stream.
async fn write(stream: Stream, message: Message) -> Result<(), Error> {
    let mut framed = FramedWrite::new(stream, prost_codec::Codec::<Message>::new(MAX_MESSAGE_SIZE));
    framed
        .send(message)
        .await
        .map_err(|e| Error::Io(e.into()))?;
    framed.close().await.map_err(|e| Error::Io(e.into()))
}

impl ConnectionHandler for Handler {
    type FromBehaviour = InEvent;
    type ToBehaviour = HandlerEvent;
    type InboundProtocol =
        SelectUpgrade<ReadyUpgrade<StreamProtocol>, ReadyUpgrade<StreamProtocol>>;
    type OutboundProtocol = OutboundProtocol;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol> {
        SubstreamProtocol::new(
            SelectUpgrade::new(
                ReadyUpgrade::new(PROTOCOL),
                ReadyUpgrade::new(PUSH_PROTOCOL),
            ),
            (),
        )
    }

    fn on_behaviour_event(&mut self, InEvent(own): InEvent) {
        self.own = own;
        if self.told {
            self.request_push();
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<OutboundProtocol, (), HandlerEvent>> {
        if let Some(event) = self.events.pop_front() {
            return Poll::Ready(event);
        }
        if self.next_request.poll_unpin(cx).is_ready() {
            self.next_request.reset(self.interval);
            return Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                protocol: SubstreamProtocol::new(
                    either::Either::Left(ReadyUpgrade::new(PROTOCOL)),
                    (),
                ),
            });
        }
        while let Poll::Ready(done) = self.streams.poll_unpin(cx) {
            let event = match done {
                Ok(Ok(Done::Received(m) | Done::ReceivedPush(m))) => self.received(m),
                Ok(Ok(Done::Sent)) => HandlerEvent::Sent,
                Ok(Ok(Done::Pushed)) => HandlerEvent::Pushed,
                Ok(Err(e)) => HandlerEvent::Failed(e),
                Err(futures_bounded::Timeout { .. }) => HandlerEvent::Failed(Error::Timeout),
            };
            self.events
                .push_back(ConnectionHandlerEvent::NotifyBehaviour(event));
        }
        match self.events.pop_front() {
            Some(event) => Poll::Ready(event),
            None => Poll::Pending,
        }
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<'_, Self::InboundProtocol, Self::OutboundProtocol>,
    ) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol, ..
            }) => match protocol {
                future::Either::Left(stream) => {
                    self.told = true;
                    let message = self.own.message(&self.local_protocols, &self.observed);
                    self.run(
                        write(stream, message)
                            .map(|r| r.map(|()| Done::Sent))
                            .boxed(),
                    );
                }
                future::Either::Right(stream) => {
                    if push_allowed(&mut self.pushes, Instant::now()) {
                        self.run(read(stream).map(|r| r.map(Done::ReceivedPush)).boxed());
                    } else {
                        // Dropped unread: the remote sees its stream reset.
                        tracing::debug!(peer = %self.remote, "identify: too many pushes, one dropped");
                        drop(stream);
                        self.events
                            .push_back(ConnectionHandlerEvent::NotifyBehaviour(
                                HandlerEvent::Failed(Error::TooManyPushes),
                            ));
                    }
                }
            },
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol, ..
            }) => match protocol {
                future::Either::Left(stream) => {
                    self.run(read(stream).map(|r| r.map(Done::Received)).boxed());
                }
                future::Either::Right(stream) => {
                    self.told = true;
                    let message = self.own.message(&self.local_protocols, &self.observed);
                    self.run(
                        write(stream, message)
                            .map(|r| r.map(|()| Done::Pushed))
                            .boxed(),
                    );
                }
            },
            ConnectionEvent::DialUpgradeError(DialUpgradeError { error, .. }) => {
                let error = match error {
                    StreamUpgradeError::NegotiationFailed => Error::Unsupported,
                    StreamUpgradeError::Timeout => Error::Timeout,
                    StreamUpgradeError::Io(e) => Error::Io(e),
                    StreamUpgradeError::Apply(never) => match never {},
                };
                self.events
                    .push_back(ConnectionHandlerEvent::NotifyBehaviour(
                        HandlerEvent::Failed(error),
                    ));
            }
            ConnectionEvent::LocalProtocolsChange(change) => {
                let changed = self.local_protocols.on_protocols_change(change);
                if changed && self.told {
                    self.request_push();
                }
            }
            _ => {}
        }
    }
}

/// Reads `data` as identify reads a stream, and hands what it gives to a node machine; what
/// the machine stores stays within its caps. For [`crate::fuzz::identify_message`].
pub(crate) fn fuzz_message(data: &[u8]) {
    use std::time::Instant;

    use peerage_core::{
        node::{Config as NodeConfig, Input, MAX_IDENTIFY_ADDRS, Machine, Unsigned},
        peerstore::{self, Peerstore},
    };
    use rand::SeedableRng;

    let mut framed = FramedRead::new(
        futures::io::Cursor::new(data),
        prost_codec::Codec::<Message>::new(MAX_MESSAGE_SIZE),
    );
    let Some(Ok(message)) = futures::executor::block_on(framed.next()) else {
        return;
    };
    let Ok(info) = Info::from_message(message, None) else {
        return;
    };
    let peer = info.public_key.to_peer_id();
    let local = Keypair::ed25519_from_bytes([9; 32])
        .expect("a key")
        .public()
        .to_peer_id();
    let now = Instant::now();
    let mut machine: Machine<u64> = Machine::new(
        local,
        NodeConfig::default(),
        Peerstore::memory(peerstore::Config::default()),
        Box::new(
            crate::connmgr::Behaviour::new(crate::connmgr::Config::default())
                .expect("the default connmgr config is valid")
                .handle(),
        ),
        Box::new(Unsigned::new(local)),
        rand::rngs::StdRng::seed_from_u64(1),
        now,
    );
    machine.handle(
        now,
        Input::Identified {
            peer,
            info: info.into_machine(),
        },
    );
    let store = machine.peerstore();
    assert!(store.addrs(&peer, now).len() <= MAX_IDENTIFY_ADDRS);
    assert!(store.protocols(&peer).len() <= 128);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(key: &Keypair) -> Message {
        Message {
            protocol_version: Some("ipfs/0.1.0".into()),
            agent_version: Some("go-libp2p/0.43.0".into()),
            public_key: Some(key.public().encode_protobuf()),
            listen_addrs: vec![
                "/ip4/192.0.2.1/tcp/4001"
                    .parse::<Multiaddr>()
                    .unwrap()
                    .to_vec(),
                vec![0xff, 0xff],
            ],
            observed_addr: Some(vec![1, 2, 3]),
            protocols: vec!["/ipfs/id/1.0.0".into(), "no-slash".into()],
            signed_peer_record: Some(vec![7; 16]),
        }
    }

    #[test]
    fn a_message_is_read_leaving_out_what_does_not_decode() {
        let key = Keypair::generate_ed25519();
        let info = Info::from_message(message(&key), None).unwrap();
        assert_eq!(info.public_key, key.public());
        assert_eq!(
            info.listen_addrs,
            vec!["/ip4/192.0.2.1/tcp/4001".parse::<Multiaddr>().unwrap()]
        );
        assert_eq!(info.protocols, vec![PROTOCOL]);
        assert_eq!(info.observed_addr, None);
        assert_eq!(info.signed_peer_record, Some(vec![7; 16]));
        assert_eq!(info.agent_version, "go-libp2p/0.43.0");
    }

    #[test]
    fn a_message_without_a_key_needs_an_earlier_one() {
        let key = Keypair::generate_ed25519();
        let mut m = message(&key);
        m.public_key = None;
        assert!(matches!(
            Info::from_message(m.clone(), None),
            Err(Error::PublicKey)
        ));
        m.public_key = Some(vec![1, 2, 3]);
        assert!(matches!(Info::from_message(m, None), Err(Error::PublicKey)));
    }

    #[test]
    fn a_connection_reads_four_pushes_per_ten_seconds() {
        let t0 = Instant::now();
        let mut pushes = VecDeque::new();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let read: Vec<bool> = [0, 1, 2, 3, 4, 9_999, 10_000, 10_001, 10_002, 10_003]
            .into_iter()
            .map(|ms| push_allowed(&mut pushes, at(ms)))
            .collect();
        // Four at once; the fifth and the one at 9.999 s refused; from 10 s on, one slot frees
        // as each of the first four turns 10 s old.
        assert_eq!(
            read,
            [true, true, true, true, false, false, true, true, true, true]
        );
        assert!(!push_allowed(&mut pushes, at(10_004)));
    }

    #[test]
    fn a_partial_push_keeps_what_it_leaves_out() {
        let key = Keypair::generate_ed25519();
        let first = Info::from_message(message(&key), None).unwrap();
        let push = Message {
            protocols: vec!["/ipfs/ping/1.0.0".into()],
            ..Message::default()
        };
        let merged = Info::from_message(push, Some(&first)).unwrap();
        assert_eq!(
            merged.protocols,
            vec![StreamProtocol::new("/ipfs/ping/1.0.0")]
        );
        assert_eq!(merged.listen_addrs, first.listen_addrs);
        assert_eq!(merged.agent_version, first.agent_version);
        assert_eq!(merged.public_key, first.public_key);
        assert_eq!(merged.signed_peer_record, first.signed_peer_record);
    }

    #[test]
    fn our_record_is_signed_under_the_standard_domain() {
        let key = Keypair::generate_ed25519();
        let addrs: Vec<Multiaddr> = vec!["/ip4/192.0.2.1/tcp/4001".parse().unwrap()];
        let own = Own::new(&key, &Config::default(), addrs.clone());
        let bytes = own.record.clone().expect("a record");
        let envelope = libp2p::core::SignedEnvelope::from_protobuf_encoding(&bytes).unwrap();
        let record = PeerRecord::from_signed_envelope_interop(envelope.clone()).unwrap();
        assert_eq!(record.peer_id(), key.public().to_peer_id());
        assert_eq!(record.addresses(), addrs.as_slice());
        // Not under rust-libp2p's legacy domain.
        assert!(PeerRecord::from_signed_envelope(envelope).is_err());
        let m = own.message(&SupportedProtocols::default(), &addrs[0]);
        assert!(m.encoded_len() < 4096);
    }

    #[test]
    fn long_addresses_are_trimmed_to_the_budget_and_the_record_matches() {
        let key = Keypair::generate_ed25519();
        let peer = key.public().to_peer_id();
        let addrs: Vec<Multiaddr> = (0..40)
            .map(|i| {
                format!("/ip6/2001:db8::{i:x}/udp/4001/quic-v1/p2p/{peer}")
                    .parse()
                    .unwrap()
            })
            .collect();
        let own = Own::new(&key, &Config::default(), addrs.clone());
        let m = own.message(&SupportedProtocols::default(), &Multiaddr::empty());
        assert!(m.encoded_len() <= OWN_ADDRS_BUDGET, "{}", m.encoded_len());
        // About 66 bytes each, twice (listen addresses and record): 20-odd fit, the first ones.
        let kept = own.addrs.len();
        assert!((15..MAX_OWN_ADDRS).contains(&kept), "{kept}");
        assert_eq!(own.addrs, addrs[..kept]);
        let envelope =
            libp2p::core::SignedEnvelope::from_protobuf_encoding(own.record.as_ref().unwrap())
                .unwrap();
        let record = PeerRecord::from_signed_envelope_interop(envelope).unwrap();
        assert_eq!(record.addresses(), &addrs[..kept]);

        // Short addresses: the first 30 all fit.
        let short: Vec<Multiaddr> = (0..40)
            .map(|i| format!("/ip4/192.0.2.{i}/tcp/4001").parse().unwrap())
            .collect();
        let own = Own::new(&key, &Config::default(), short.clone());
        assert_eq!(own.addrs, short[..MAX_OWN_ADDRS]);
    }
}
