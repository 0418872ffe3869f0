//! Identify with a foreign peer on the wire, which answers the node's request with a message
//! of the test's making: hundreds of addresses and protocols. A message of up to 8 KiB
//! (go-libp2p's `signedIDSize`; rust-libp2p's identify refuses anything over 4 KiB) is read
//! whole and kept up to the peerstore's caps; a longer one is refused and nothing of it is
//! stored.

use std::{
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures::{AsyncWriteExt, FutureExt, StreamExt, future::BoxFuture, stream::FuturesUnordered};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm,
    core::{Endpoint, transport::PortUse, upgrade::DeniedUpgrade, upgrade::ReadyUpgrade},
    identity::PublicKey,
    swarm::{
        ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
        NetworkBehaviour, SubstreamProtocol, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
        handler::{ConnectionEvent, FullyNegotiatedInbound},
    },
};
use peerage::{Event, identify, maintenance::Bounds, pool};
use peerage_core::peerstore::conformance::{protobuf_bytes, protobuf_varint};
use support::{listen, node, tcp_swarm_with_key};

mod support;

/// Answers every `/ipfs/id/1.0.0` request with the same bytes.
struct Answer(Arc<Vec<u8>>);

struct AnswerHandler {
    bytes: Arc<Vec<u8>>,
    writes: FuturesUnordered<BoxFuture<'static, ()>>,
}

impl NetworkBehaviour for Answer {
    type ConnectionHandler = AnswerHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(AnswerHandler {
            bytes: self.0.clone(),
            writes: FuturesUnordered::new(),
        })
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(AnswerHandler {
            bytes: self.0.clone(),
            writes: FuturesUnordered::new(),
        })
    }

    fn on_swarm_event(&mut self, _: FromSwarm<'_>) {}

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        e: THandlerOutEvent<Self>,
    ) {
        match e {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Infallible, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

impl ConnectionHandler for AnswerHandler {
    type FromBehaviour = Infallible;
    type ToBehaviour = Infallible;
    type InboundProtocol = ReadyUpgrade<StreamProtocol>;
    type OutboundProtocol = DeniedUpgrade;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol> {
        SubstreamProtocol::new(ReadyUpgrade::new(identify::PROTOCOL), ())
    }

    fn on_behaviour_event(&mut self, e: Infallible) {
        match e {}
    }

    fn connection_keep_alive(&self) -> bool {
        true
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<DeniedUpgrade, (), Infallible>> {
        while let Poll::Ready(Some(())) = self.writes.poll_next_unpin(cx) {}
        Poll::Pending
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<'_, Self::InboundProtocol, Self::OutboundProtocol>,
    ) {
        if let ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
            protocol: mut stream,
            ..
        }) = event
        {
            let bytes = self.bytes.clone();
            self.writes.push(
                async move {
                    let _ = stream.write_all(&bytes).await;
                    let _ = stream.close().await;
                }
                .boxed(),
            );
        }
    }
}

fn announced(i: u32) -> Multiaddr {
    format!("/ip4/10.{}.{}.1/tcp/9732", i / 256, i % 256)
        .parse()
        .unwrap()
}

/// An identify message (go-libp2p's `identify.proto`) of `key`, with `addrs` addresses
/// (10.x.y.1, 10 bytes each) and `protocols` protocols (`/j/NNN`, 8 bytes each); its length
/// without the prefix, and the framed bytes.
fn message(key: &PublicKey, addrs: u32, protocols: usize) -> (usize, Vec<u8>) {
    let mut m = Vec::new();
    protobuf_bytes(0x0a, &key.encode_protobuf(), &mut m);
    for i in 0..addrs {
        protobuf_bytes(0x12, &announced(i).to_vec(), &mut m);
    }
    for i in 0..protocols {
        protobuf_bytes(0x1a, format!("/j/{i:03}").as_bytes(), &mut m);
    }
    protobuf_bytes(0x2a, b"ipfs/0.1.0", &mut m);
    protobuf_bytes(0x32, b"foreign/1.0", &mut m);
    let mut framed = Vec::new();
    protobuf_varint(m.len() as u64, &mut framed);
    framed.extend_from_slice(&m);
    (m.len(), framed)
}

/// The node, listening, and a foreign peer that dials it and answers its identify request
/// with `addrs` addresses and `protocols` protocols, whose message length must be in `len`.
/// Runs both until the node identified the peer, or for 3 s. The peer, the node and its
/// `Identified` event, if any.
async fn exchange(
    addrs: u32,
    protocols: usize,
    len: std::ops::Range<usize>,
) -> (PeerId, Swarm<peerage::Behaviour>, Option<Event>) {
    let mut f = tcp_swarm_with_key(|key| {
        let (n, bytes) = message(&key.public(), addrs, protocols);
        assert!(len.contains(&n), "a message of {n} bytes");
        Answer(Arc::new(bytes))
    });
    let peer = *f.local_peer_id();
    let mut a = node(Bounds::new(1, 2, 4).unwrap(), pool::Config::new());
    f.dial(listen(&mut a).await).unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        tokio::select! {
            e = a.select_next_some() => {
                if let libp2p::swarm::SwarmEvent::Behaviour(e @ Event::Identified { .. }) = e {
                    return (peer, a, Some(e));
                }
            }
            _ = f.select_next_some() => {}
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    (peer, a, None)
}

/// 650 addresses and 150 protocols: 7,763 bytes, past rust-libp2p's 4 KiB and under go's
/// 8 KiB. The node reads it and keeps the first 500 addresses (go's `connectedPeerMaxAddrs`)
/// and the first 128 protocols (the peerstore's cap, go `pstoremem`'s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_of_up_to_8_kib_is_read_and_kept_up_to_the_caps() {
    let (peer, a, event) = exchange(650, 150, 7763..7764).await;
    let Some(Event::Identified {
        peer_id, protocols, ..
    }) = event
    else {
        panic!("the node did not identify the peer");
    };
    assert_eq!(peer_id, peer);
    assert_eq!(protocols.len(), 150, "the event carries the whole message");
    let store = a.behaviour().peerstore();
    let mut stored = store.addrs(&peer);
    stored.sort();
    let mut first: Vec<Multiaddr> = (0..500).map(announced).collect();
    first.sort();
    assert_eq!(stored, first);
    let kept = store.protocols(&peer);
    assert_eq!(kept.len(), 128);
    assert!(kept.contains(&"/j/127".to_owned()) && !kept.contains(&"/j/128".to_owned()));
    assert!(a.is_connected(&peer));
}

/// 900 addresses: 9,063 bytes, past go's 8 KiB. The node refuses the message: nothing of it is
/// stored, and the connection stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_8_kib_is_refused_and_nothing_of_it_is_stored() {
    let (peer, a, event) = exchange(900, 0, 9063..9064).await;
    assert!(event.is_none(), "{event:?}");
    let store = a.behaviour().peerstore();
    assert!(store.protocols(&peer).is_empty());
    assert!(store.addrs(&peer).is_empty());
    assert!(a.is_connected(&peer));
}

#[derive(NetworkBehaviour)]
struct App {
    peerage: peerage::Behaviour,
    identify: libp2p::identify::Behaviour,
    ping: libp2p::ping::Behaviour,
}

/// An application that runs rust-libp2p's identify and ping turns Peerage's off and hands
/// their results to `identified` and `pinged`: the machine learns the peer's protocols (it
/// offers the exchange, and is asked for points) and its latency, and the remote hears one
/// identify only, the application's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applications_own_identify_and_ping_feed_the_behaviour() {
    let mut b = node(Bounds::new(1, 2, 4).unwrap(), pool::Config::new());
    let b_addr = listen(&mut b).await;
    let b_id = *b.local_peer_id();
    let mut a = tcp_swarm_with_key(|key| App {
        peerage: peerage::Behaviour::new(
            key,
            peerage::Config::new()
                .without_identify()
                .without_ping()
                .with_bounds(Bounds::new(1, 2, 4).unwrap()),
        ),
        identify: libp2p::identify::Behaviour::new(libp2p::identify::Config::new(
            "ipfs/0.1.0".into(),
            key.public(),
        )),
        ping: libp2p::ping::Behaviour::new(
            libp2p::ping::Config::new().with_interval(Duration::from_millis(200)),
        ),
    });
    let a_id = *a.local_peer_id();
    a.behaviour_mut()
        .peerage
        .add_trusted_point(&b_addr)
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut asked, mut b_heard) = (false, None);
    loop {
        let store = a.behaviour().peerage.peerstore();
        let offers = store
            .protocols(&b_id)
            .contains(&peerage::pex::PROTOCOL.to_string());
        if offers && store.latency_ewma(&b_id).is_some() && asked && b_heard.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "offers {offers}, asked {asked}, B heard {b_heard:?}"
        );
        tokio::select! {
            e = a.select_next_some() => match e {
                libp2p::swarm::SwarmEvent::Behaviour(AppEvent::Identify(
                    libp2p::identify::Event::Received { peer_id, info, .. },
                )) => a.behaviour_mut().peerage.identified(
                    peer_id,
                    peerage::node::Identify {
                        listen_addrs: info.listen_addrs,
                        protocols: info.protocols.iter().map(ToString::to_string).collect(),
                        agent_version: info.agent_version,
                        protocol_version: info.protocol_version,
                        signed_peer_record: None,
                    },
                ),
                libp2p::swarm::SwarmEvent::Behaviour(AppEvent::Ping(libp2p::ping::Event {
                    peer,
                    result: Ok(rtt),
                    ..
                })) => a.behaviour_mut().peerage.pinged(peer, rtt),
                libp2p::swarm::SwarmEvent::Behaviour(AppEvent::Peerage(
                    Event::PointsReceived { peer_id, .. },
                )) if peer_id == b_id => asked = true,
                _ => {}
            },
            e = b.select_next_some() => {
                if let libp2p::swarm::SwarmEvent::Behaviour(Event::Identified {
                    peer_id,
                    agent_version,
                    ..
                }) = e
                    && peer_id == a_id
                {
                    b_heard = Some(agent_version);
                }
            }
        }
    }
    // B heard A's one identify: rust-libp2p's, not Peerage's.
    let heard = b_heard.unwrap();
    assert!(heard.starts_with("rust-libp2p/"), "{heard}");
}
