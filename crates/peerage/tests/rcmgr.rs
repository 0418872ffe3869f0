//! The resource manager on real swarms over TCP: streams past the per-peer limit are reset
//! while the connection and other peers stay healthy; per-IP limits, rate limits and the
//! allowlist apply to dialers from distinct loopback addresses.

#![allow(clippy::disallowed_methods)]

use std::{
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use futures::{FutureExt, StreamExt, future::BoxFuture};
use libp2p::{
    Multiaddr, StreamProtocol, Swarm, Transport,
    core::{
        muxing::StreamMuxerBox,
        transport::{DialOpts, ListenerId, TransportError, TransportEvent},
        upgrade,
    },
    multiaddr::Protocol,
    noise, request_response,
    swarm::{NetworkBehaviour, SwarmEvent},
    tcp, yamux,
};
use peerage::rcmgr::{
    self, BaseLimit, Direction, IpLimits, LimitConfig, RateLimits, ResourceManager,
};

mod support;

#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct Node {
    rcmgr: rcmgr::Behaviour,
    rr: request_response::cbor::Behaviour<u32, u32>,
}

fn node(rm: ResourceManager) -> Node {
    let rr = request_response::cbor::Behaviour::new(
        [(
            StreamProtocol::new("/test/hold/1"),
            request_response::ProtocolSupport::Full,
        )],
        request_response::Config::default().with_request_timeout(Duration::from_secs(30)),
    );
    Node {
        rcmgr: rcmgr::Behaviour::new(rm),
        rr,
    }
}

fn swarm_with(rm: ResourceManager) -> Swarm<Node> {
    let rm2 = rm.clone();
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(|key| rcmgr::transport(key, rm2, tcp::Config::default()).unwrap())
        .unwrap()
        .with_behaviour(|_| node(rm))
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

fn manager(limits: LimitConfig) -> ResourceManager {
    let config = rcmgr::Config::new()
        .with_limits(limits)
        .with_ip_limits(IpLimits::disabled())
        .with_rate_limits(RateLimits::disabled());
    ResourceManager::new(config).unwrap()
}

/// Runs `swarm` in the background, answering nothing (the test drives the hub itself).
fn spawn_idle(mut swarm: Swarm<Node>) {
    tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
}

#[tokio::test]
async fn streams_past_the_peer_limit_are_reset_and_the_rest_stays_healthy() {
    // The hub admits 4 inbound streams per peer.
    let limits = LimitConfig::default().with_peer_default(BaseLimit {
        streams_inbound: 4,
        ..*LimitConfig::default().peer_default()
    });
    let hub_rm = manager(limits);
    let mut hub = swarm_with(hub_rm.clone());
    let hub_addr = support::listen(&mut hub).await;
    let hub_id = *hub.local_peer_id();

    let mut a = swarm_with(manager(LimitConfig::unlimited()));
    let mut b = swarm_with(manager(LimitConfig::unlimited()));
    a.dial(hub_addr.clone()).unwrap();
    b.dial(hub_addr.clone()).unwrap();
    let a_id = *a.local_peer_id();

    // A sends 8 requests at once; the hub holds each request open (never answers yet).
    let mut held = Vec::new();
    let (mut a_failed, mut a_ok, mut b_ok) = (0, 0, 0);
    let mut sent = false;
    let mut b_sent = false;
    let deadline = tokio::time::sleep(Duration::from_secs(20));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => panic!("timeout: held {}, A failed {a_failed}, A ok {a_ok}, B ok {b_ok}", held.len()),
            e = hub.select_next_some() => {
                if let SwarmEvent::Behaviour(NodeEvent::Rr(request_response::Event::Message {
                    peer, message: request_response::Message::Request { channel, request, .. }, ..
                })) = e {
                    held.push((peer, channel, request));
                }
            }
            e = a.select_next_some() => match e {
                SwarmEvent::ConnectionEstablished { .. } if !sent => {
                    sent = true;
                    for i in 0..8 {
                        a.behaviour_mut().rr.send_request(&hub_id, i);
                    }
                }
                SwarmEvent::Behaviour(NodeEvent::Rr(request_response::Event::OutboundFailure { .. })) => a_failed += 1,
                SwarmEvent::Behaviour(NodeEvent::Rr(request_response::Event::Message { .. })) => a_ok += 1,
                _ => {}
            },
            e = b.select_next_some() => match e {
                SwarmEvent::ConnectionEstablished { .. } if !b_sent => {
                    b_sent = true;
                    for i in 100..104 {
                        b.behaviour_mut().rr.send_request(&hub_id, i);
                    }
                }
                SwarmEvent::Behaviour(NodeEvent::Rr(request_response::Event::Message { .. })) => b_ok += 1,
                _ => {}
            },
        }
        let from_a = held.iter().filter(|(p, ..)| *p == a_id).count();
        if a_failed == 4 && from_a == 4 && held.len() == 8 {
            break;
        }
    }
    // The hub counted exactly 4 of A's streams and refused the rest.
    let stat = hub_rm.stat();
    assert_eq!(stat.peers[&a_id.to_base58()].usage.streams_inbound, 4);
    assert_eq!(
        stat.peers[&a_id.to_base58()].usage.memory,
        4 * rcmgr::STREAM_WINDOW
    );
    let refused: u64 = stat
        .blocked
        .iter()
        .filter(|b| b.scope == "peer" && b.direction == Some(Direction::Inbound))
        .map(|b| b.count)
        .sum();
    assert_eq!(refused, 4);
    assert!(
        hub.is_connected(&a_id),
        "A's connection survives its refused streams"
    );

    // The hub answers every held request: A and B get their 4 answers each.
    for (_, channel, request) in held.drain(..) {
        hub.behaviour_mut()
            .rr
            .send_response(channel, request + 1)
            .unwrap();
    }
    let deadline = tokio::time::sleep(Duration::from_secs(20));
    tokio::pin!(deadline);
    let mut resent = false;
    while a_ok < 5 || b_ok < 4 {
        tokio::select! {
            _ = &mut deadline => panic!("timeout: A ok {a_ok}, B ok {b_ok}"),
            e = hub.select_next_some() => {
                if let SwarmEvent::Behaviour(NodeEvent::Rr(request_response::Event::Message {
                    message: request_response::Message::Request { channel, request, .. }, ..
                })) = e {
                    hub.behaviour_mut().rr.send_response(channel, request + 1).unwrap();
                }
            }
            e = a.select_next_some() => {
                if let SwarmEvent::Behaviour(NodeEvent::Rr(request_response::Event::Message { .. })) = e {
                    a_ok += 1;
                    // Once A's streams are released, a new request passes on the same connection.
                    if a_ok == 4 && !resent {
                        resent = true;
                        a.behaviour_mut().rr.send_request(&hub_id, 42);
                    }
                }
            }
            e = b.select_next_some() => {
                if let SwarmEvent::Behaviour(NodeEvent::Rr(request_response::Event::Message { .. })) = e {
                    b_ok += 1;
                }
            }
        }
    }
    assert!(hub.is_connected(&a_id));
    drop((a, b));
    spawn_idle(hub);
}

#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct Protocols {
    ping: request_response::cbor::Behaviour<u32, u32>,
    other: request_response::cbor::Behaviour<u32, u32>,
}

/// Two request-response protocols whose requests the hub may hold open: one on ping's protocol
/// name (the limit is by name), one on another.
fn protocols() -> Protocols {
    let rr = |name| {
        request_response::cbor::Behaviour::new(
            [(
                StreamProtocol::new(name),
                request_response::ProtocolSupport::Full,
            )],
            request_response::Config::default().with_request_timeout(Duration::from_secs(30)),
        )
    };
    Protocols {
        ping: rr("/ipfs/ping/1.0.0"),
        other: rr("/test/other/1"),
    }
}

fn protocols_swarm(rm: ResourceManager) -> Swarm<Protocols> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(|key| rcmgr::transport(key, rm, tcp::Config::default()).unwrap())
        .unwrap()
        .with_behaviour(|_| protocols())
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

#[tokio::test]
async fn a_protocol_peer_limit_resets_the_stream_past_it_and_nothing_else() {
    // A Kubo-style limits file: one inbound stream per peer on ping's protocol.
    let file = r#"{"ProtocolPeer": {"/ipfs/ping/1.0.0": {"StreamsInbound": 1}}}"#;
    let limits = LimitConfig::from_json(file, &LimitConfig::default()).unwrap();
    let hub_rm = manager(limits);
    let mut hub = protocols_swarm(hub_rm.clone());
    let hub_addr = support::listen(&mut hub).await;
    let hub_id = *hub.local_peer_id();
    let mut a = protocols_swarm(manager(LimitConfig::unlimited()));
    a.dial(hub_addr).unwrap();
    let a_id = *a.local_peer_id();

    // A opens two ping streams at once, then one of another protocol; the hub holds them.
    let mut held = Vec::new();
    let mut failed = Vec::new();
    let mut sent = false;
    let deadline = tokio::time::sleep(Duration::from_secs(20));
    tokio::pin!(deadline);
    while !(held.len() == 2 && failed.len() == 1) {
        tokio::select! {
            _ = &mut deadline => panic!("timeout: held {held:?}, failed {failed:?}"),
            e = hub.select_next_some() => match e {
                SwarmEvent::Behaviour(ProtocolsEvent::Ping(request_response::Event::Message {
                    message: request_response::Message::Request { channel, request, .. }, ..
                })) => held.push((request, Some(channel), None)),
                SwarmEvent::Behaviour(ProtocolsEvent::Other(request_response::Event::Message {
                    message: request_response::Message::Request { channel, request, .. }, ..
                })) => held.push((request, None, Some(channel))),
                _ => {}
            },
            e = a.select_next_some() => match e {
                SwarmEvent::ConnectionEstablished { .. } if !sent => {
                    sent = true;
                    a.behaviour_mut().ping.send_request(&hub_id, 1);
                    a.behaviour_mut().ping.send_request(&hub_id, 2);
                    a.behaviour_mut().other.send_request(&hub_id, 3);
                }
                SwarmEvent::Behaviour(ProtocolsEvent::Ping(
                    request_response::Event::OutboundFailure { error, .. },
                )) => failed.push(error.to_string()),
                _ => {}
            },
        }
    }
    // The hub sees one ping stream and the other protocol's, per protocol, and the refusal
    // named with its protocol.
    let stat = hub_rm.stat();
    assert_eq!(stat.protocols["/ipfs/ping/1.0.0"].usage.streams_inbound, 1);
    assert_eq!(stat.protocols["/test/other/1"].usage.streams_inbound, 1);
    assert_eq!(stat.peers[&a_id.to_base58()].usage.streams_inbound, 2);
    let blocked: Vec<_> = stat
        .blocked
        .iter()
        .map(|b| (b.scope, b.direction, b.protocol.as_deref(), b.count))
        .collect();
    assert_eq!(
        blocked,
        [(
            "protocol-peer",
            Some(Direction::Inbound),
            Some("/ipfs/ping/1.0.0"),
            1
        )]
    );
    let mut registry = prometheus_client::registry::Registry::default();
    rcmgr::register_metrics(&hub_rm, &mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains(r#"libp2p_rcmgr_blocked_resources{dir="inbound",scope="protocol-peer",resource="stream",protocol="/ipfs/ping/1.0.0"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"libp2p_rcmgr_streams{dir="inbound",scope="protocol",protocol="/ipfs/ping/1.0.0"} 1"#
        ),
        "{text}"
    );
    // The per-peer histograms, kept as the scopes change, agree with a walk of the peers.
    let peers = hub_rm.stat().peers;
    let conns: u64 = peers.values().map(|p| p.usage.conns()).sum();
    for line in [
        format!("libp2p_rcmgr_peer_connections_count {}", peers.len()),
        format!("libp2p_rcmgr_peer_connections_sum {conns}.0"),
        format!(
            r#"libp2p_rcmgr_peer_connections_bucket{{le="+Inf"}} {}"#,
            peers.len()
        ),
    ] {
        assert!(text.contains(&line), "{line} in {text}");
    }
    assert!(hub.is_connected(&a_id), "the connection survives");

    // Both held streams still work: their answers arrive; and a new ping stream passes once
    // the first is released.
    // Either ping request may have been the one refused: they race.
    let held_ping = held.iter().find(|(_, p, _)| p.is_some()).unwrap().0;
    for (request, ping, other) in held.drain(..) {
        if let Some(channel) = ping {
            hub.behaviour_mut()
                .ping
                .send_response(channel, request + 10)
                .unwrap();
        }
        if let Some(channel) = other {
            hub.behaviour_mut()
                .other
                .send_response(channel, request + 10)
                .unwrap();
        }
    }
    let mut answers = Vec::new();
    let mut resent = false;
    let deadline = tokio::time::sleep(Duration::from_secs(20));
    tokio::pin!(deadline);
    while answers.len() < 3 {
        tokio::select! {
            _ = &mut deadline => panic!("timeout: answers {answers:?}"),
            e = hub.select_next_some() => {
                if let SwarmEvent::Behaviour(ProtocolsEvent::Ping(request_response::Event::Message {
                    message: request_response::Message::Request { channel, request, .. }, ..
                })) = e {
                    hub.behaviour_mut().ping.send_response(channel, request + 10).unwrap();
                }
            }
            e = a.select_next_some() => match e {
                SwarmEvent::Behaviour(ProtocolsEvent::Ping(request_response::Event::Message {
                    message: request_response::Message::Response { response, .. }, ..
                }))
                | SwarmEvent::Behaviour(ProtocolsEvent::Other(request_response::Event::Message {
                    message: request_response::Message::Response { response, .. }, ..
                })) => {
                    answers.push(response);
                    if !resent && answers.len() == 2 {
                        resent = true;
                        a.behaviour_mut().ping.send_request(&hub_id, 4);
                    }
                }
                _ => {}
            },
        }
    }
    answers.sort_unstable();
    assert_eq!(answers, [held_ping + 10, 13, 14]);
    assert!(hub.is_connected(&a_id));
}

/// A TCP transport that dials from a chosen source address (libp2p-tcp binds the unspecified
/// address), for dialers at 127.0.0.2, 127.0.0.3, ...
#[derive(Clone)]
struct FromIp(IpAddr);

impl Transport for FromIp {
    type Output = tcp::tokio::TcpStream;
    type Error = io::Error;
    type ListenerUpgrade = futures::future::Pending<Result<Self::Output, io::Error>>;
    type Dial = BoxFuture<'static, Result<Self::Output, io::Error>>;

    fn listen_on(
        &mut self,
        _: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<io::Error>> {
        Err(TransportError::MultiaddrNotSupported(addr))
    }

    fn remove_listener(&mut self, _: ListenerId) -> bool {
        false
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        _: DialOpts,
    ) -> Result<Self::Dial, TransportError<io::Error>> {
        let mut it = addr.iter();
        let (Some(Protocol::Ip4(ip)), Some(Protocol::Tcp(port))) = (it.next(), it.next()) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        let source = self.0;
        Ok(async move {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(source, 0))?;
            let stream = socket.connect(SocketAddr::new(ip.into(), port)).await?;
            Ok(tcp::tokio::TcpStream(stream))
        }
        .boxed())
    }

    fn poll(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, io::Error>> {
        Poll::Pending
    }
}

/// Dials `addr` once from `source` with a fresh identity; returns whether the connection was
/// established (and keeps it open in the background).
async fn dial_from(source: &str, addr: &Multiaddr) -> bool {
    let source: IpAddr = source.parse().unwrap();
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(|key| {
            FromIp(source)
                .upgrade(upgrade::Version::V1Lazy)
                .authenticate(noise::Config::new(key).unwrap())
                .multiplex(yamux::Config::default())
                .map(|(p, m), _| (p, StreamMuxerBox::new(m)))
        })
        .unwrap()
        .with_behaviour(|_| libp2p::swarm::dummy::Behaviour)
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    swarm.dial(addr.clone()).unwrap();
    let established = loop {
        match tokio::time::timeout(Duration::from_secs(10), swarm.select_next_some()).await {
            Ok(SwarmEvent::ConnectionEstablished { .. }) => break true,
            Ok(SwarmEvent::OutgoingConnectionError { .. }) | Err(_) => break false,
            Ok(_) => {}
        }
    };
    if !established {
        return false;
    }
    // The hub may still close it right after the handshake (a denied `set_peer`): wait a moment.
    let closed = tokio::time::timeout(Duration::from_millis(300), async {
        loop {
            if let SwarmEvent::ConnectionClosed { .. } = swarm.select_next_some().await {
                return;
            }
        }
    })
    .await
    .is_ok();
    tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    !closed
}

/// A hub whose swarm runs in the background, with its refusals collected.
async fn hub(config: rcmgr::Config) -> (Multiaddr, ResourceManager) {
    let rm = ResourceManager::new(config).unwrap();
    let mut hub = swarm_with(rm.clone());
    let addr = support::listen(&mut hub).await;
    spawn_idle(hub);
    (addr, rm)
}

#[tokio::test]
async fn per_ip_limit_rate_limit_and_allowlist_with_distinct_source_addresses() {
    // Per-IP: 2 connections per IPv4 address, loopback included; no rate limit.
    let config = rcmgr::Config::new()
        .with_ip_limits(
            IpLimits::default()
                .with_localhost_unlimited(false)
                .with_ipv4(vec![rcmgr::SubnetLimit {
                    prefix_len: 32,
                    conns: 2,
                }]),
        )
        .with_rate_limits(RateLimits::disabled());
    let (addr, rm) = hub(config).await;
    for n in 2..=4 {
        let source = format!("127.0.0.{n}");
        assert!(dial_from(&source, &addr).await, "{source}: first");
        assert!(dial_from(&source, &addr).await, "{source}: second");
        assert!(
            !dial_from(&source, &addr).await,
            "{source}: third is over the per-IP limit"
        );
    }
    let blocked = rm.stat().blocked;
    assert_eq!(
        blocked
            .iter()
            .find(|b| b.scope == "ip-limit")
            .map(|b| b.count),
        Some(3)
    );
    assert_eq!(rm.stat().system.usage.conns_inbound, 6);

    // Rate: a burst of 3 per address, refilled once a minute; other addresses are unaffected.
    let rate = rcmgr::Rate {
        per_second: 1.0 / 60.0,
        burst: 3,
    };
    let config = rcmgr::Config::new()
        .with_ip_limits(IpLimits::disabled())
        .with_rate_limits(
            RateLimits::default()
                .with_localhost_unlimited(false)
                .with_ipv4(vec![rcmgr::SubnetRate {
                    prefix_len: 32,
                    rate,
                }]),
        );
    let (addr, rm) = hub(config).await;
    for _ in 0..3 {
        assert!(dial_from("127.0.0.5", &addr).await);
    }
    assert!(
        !dial_from("127.0.0.5", &addr).await,
        "the 4th within a minute is rate limited"
    );
    assert!(
        dial_from("127.0.0.6", &addr).await,
        "another address has its own bucket"
    );
    assert_eq!(
        rm.stat()
            .blocked
            .iter()
            .find(|b| b.scope == "rate-limit")
            .map(|b| b.count),
        Some(1)
    );

    // Allowlist: the system admits 3 inbound connections; 127.0.0.9 is allowlisted and passes
    // beyond them, charged to the allowlisted scopes.
    let limits = LimitConfig::default().with_system(BaseLimit {
        conns_inbound: 3,
        ..*LimitConfig::default().system()
    });
    let config = rcmgr::Config::new()
        .with_limits(limits)
        .with_allowlist(["/ip4/127.0.0.9".parse().unwrap()])
        .with_ip_limits(IpLimits::disabled())
        .with_rate_limits(RateLimits::disabled());
    let (addr, rm) = hub(config).await;
    for n in 7..=9 {
        assert!(dial_from(&format!("127.0.0.{n}"), &addr).await);
    }
    assert!(!dial_from("127.0.0.8", &addr).await, "the system is full");
    assert!(
        dial_from("127.0.0.9", &addr).await,
        "the allowlisted address passes"
    );
    assert!(dial_from("127.0.0.9", &addr).await);
    let stat = rm.stat();
    assert_eq!(stat.system.usage.conns_inbound, 3);
    assert_eq!(stat.allowlisted_system.usage.conns_inbound, 2);
}

#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct Hub {
    peerage: peerage::Behaviour,
    hold: request_response::cbor::Behaviour<u32, u32>,
}

fn hold() -> request_response::cbor::Behaviour<u32, u32> {
    request_response::cbor::Behaviour::new(
        [(
            StreamProtocol::new("/test/hold/1"),
            request_response::ProtocolSupport::Full,
        )],
        request_response::Config::default().with_request_timeout(Duration::from_secs(30)),
    )
}

/// The muxer counts each connection's streams and the node hands the counts to the connection
/// manager: at equal tag values, a trim closes the idle peer and keeps the one holding streams,
/// although the idle one connected first (the newest peer goes first among equals otherwise).
#[tokio::test]
async fn a_trim_closes_an_idle_peer_before_a_stream_heavy_one() {
    let rm = manager(LimitConfig::unlimited());
    let connmgr = peerage::connmgr::Config::new()
        .with_watermarks(1, 4)
        .with_grace_period(Duration::ZERO);
    let config = peerage::Config::new()
        .with_maintenance(
            peerage::maintenance::Config::new()
                .with_bounds(peerage::maintenance::Bounds::new(1, 1, 4).unwrap()),
        )
        .with_connmgr(connmgr)
        .unwrap()
        .with_resource_manager(rm.clone());
    let rm2 = rm.clone();
    let mut hub = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(|key| rcmgr::transport(key, rm2, tcp::Config::default()).unwrap())
        .unwrap()
        .with_behaviour(|key| Hub {
            peerage: peerage::Behaviour::new(key, config),
            hold: hold(),
        })
        .unwrap()
        .build();
    let hub_addr = support::listen(&mut hub).await;
    let hub_id = *hub.local_peer_id();
    let (mut idle, mut heavy) = (support::tcp_swarm(hold), support::tcp_swarm(hold));
    let (idle_id, heavy_id) = (*idle.local_peer_id(), *heavy.local_peer_id());

    idle.dial(hub_addr.clone()).unwrap();
    let mut held = Vec::new();
    let mut heavy_dialed = false;
    let deadline = tokio::time::sleep(Duration::from_secs(20));
    tokio::pin!(deadline);
    // The idle peer connects first; then the heavy one, which opens 3 streams the hub holds.
    while held.len() < 3 || hub.behaviour().peerage.connmgr().info().connections < 2 {
        tokio::select! {
            _ = &mut deadline => panic!("timeout: held {}", held.len()),
            e = hub.select_next_some() => match e {
                SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == idle_id && !heavy_dialed => {
                    heavy_dialed = true;
                    heavy.dial(hub_addr.clone()).unwrap();
                }
                SwarmEvent::Behaviour(HubEvent::Hold(request_response::Event::Message {
                    message: request_response::Message::Request { channel, .. }, ..
                })) => held.push(channel),
                _ => {}
            },
            e = heavy.select_next_some() => {
                if let SwarmEvent::ConnectionEstablished { .. } = e {
                    for i in 0..3 {
                        heavy.behaviour_mut().send_request(&hub_id, i);
                    }
                }
            }
            _ = idle.select_next_some() => {}
        }
    }
    // Let the hub poll once more, so that the counts reach the connection manager.
    let settle = tokio::time::sleep(Duration::from_millis(300));
    tokio::pin!(settle);
    loop {
        tokio::select! {
            _ = &mut settle => break,
            _ = hub.select_next_some() => {}
            _ = heavy.select_next_some() => {}
            _ = idle.select_next_some() => {}
        }
    }
    let cm = hub.behaviour().peerage.connmgr();
    assert_eq!(cm.tag_value(&idle_id), cm.tag_value(&heavy_id));
    assert_eq!(
        cm.close_order(&[heavy_id, idle_id], std::time::Instant::now()),
        [idle_id, heavy_id],
        "the idle peer ranks lowest"
    );
    // A trim to the low watermark of 1 closes the idle peer only.
    let trim = cm.trim_open_conns();
    tokio::pin!(trim);
    let mut trimmed = false;
    let deadline = tokio::time::sleep(Duration::from_secs(20));
    tokio::pin!(deadline);
    while hub.is_connected(&idle_id) {
        tokio::select! {
            _ = &mut deadline => panic!("the idle peer was not trimmed"),
            _ = &mut trim, if !trimmed => trimmed = true,
            _ = hub.select_next_some() => {}
            _ = heavy.select_next_some() => {}
            _ = idle.select_next_some() => {}
        }
    }
    assert!(hub.is_connected(&heavy_id), "the stream-heavy peer stays");
    drop(held);
}
