//! A QUIC handshake flood, CI-sized: 100 addresses (`127.0.2.1` … `127.0.2.100`) each send a
//! fresh QUIC Initial packet (a real ClientHello, from quinn-proto, whose endpoint is sans-IO:
//! the test sends the datagram and never reads an answer) every 200 ms, 500 a second in all,
//! for 20 s. Each holds a pending inbound connection, and a transient slot, until libp2p-quic's
//! handshake timeout (5 s). Meanwhile 20 honest peers dial the node over QUIC one after
//! another, each from its own address (`127.1.1.x`); at least 19 must receive the node's
//! identify within 2 s. The loopback exemption is off.
//!
//! Without the guard around QUIC's upgrades (`rcmgr::transport_guarded` before it had one),
//! 0 of 20 got in, at 500 and at 2,000 Initials a second. With it, a new handshake evicts the
//! oldest pending one; QUIC's bytes are inside quinn, so an honest handshake is evicted too if
//! it takes longer than the table's size over the flood's rate (39 slots here: 78 ms at 500 a
//! second). Address validation (QUIC Retry) would end that race, but libp2p-quic 0.14 accepts
//! every incoming connection itself.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use libp2p::{identify, identity::Keypair, swarm::SwarmEvent};

const SPRAYERS: u8 = 100;
/// How often each sprayer sends an Initial: 500 a second in all.
const SPRAY_EVERY: Duration = Duration::from_millis(200);
const HONEST: u8 = 20;
const SECS: u64 = 20;

/// Sends a fresh QUIC Initial from `source` to `target` every [`SPRAY_EVERY`] until `until`.
async fn spray(
    source: Ipv4Addr,
    target: SocketAddr,
    until: tokio::time::Instant,
    sent: Arc<AtomicU64>,
) {
    let socket = tokio::net::UdpSocket::bind(SocketAddr::new(source.into(), 0))
        .await
        .unwrap();
    let key = Keypair::generate_ed25519();
    let tls = libp2p_tls::make_client_config(&key, None).unwrap();
    let crypto = Arc::new(quinn_proto::crypto::rustls::QuicClientConfig::try_from(tls).unwrap());
    let mut endpoint = quinn_proto::Endpoint::new(
        Arc::new(quinn_proto::EndpointConfig::default()),
        None,
        false,
        None,
    );
    let mut buf = Vec::new();
    while tokio::time::Instant::now() < until {
        let config = quinn_proto::ClientConfig::new(crypto.clone());
        let (_, mut conn) = endpoint
            .connect(Instant::now(), config, target, "l")
            .unwrap();
        buf.clear();
        if let Some(t) = conn.poll_transmit(Instant::now(), 1, &mut buf) {
            let _ = socket.send_to(&buf[..t.size], target).await;
            sent.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(SPRAY_EVERY).await;
    }
}

#[derive(libp2p::swarm::NetworkBehaviour)]
struct Honest {
    identify: identify::Behaviour,
}

/// Dials `target` over QUIC from `source` and waits for the node's identify.
async fn honest(
    source: Ipv4Addr,
    target: libp2p::Multiaddr,
    node: libp2p::PeerId,
) -> Result<Duration, String> {
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_quic()
        .with_behaviour(|key| Honest {
            identify: identify::Behaviour::new(identify::Config::new(
                "ipfs/0.1.0".into(),
                key.public(),
            )),
        })
        .unwrap()
        .build();
    // Listening first makes the dial leave from the listener's socket, so from `source`.
    swarm
        .listen_on(format!("/ip4/{source}/udp/0/quic-v1").parse().unwrap())
        .unwrap();
    loop {
        if let SwarmEvent::NewListenAddr { .. } = swarm.select_next_some().await {
            break;
        }
    }
    let start = Instant::now();
    swarm.dial(target).map_err(|e| e.to_string())?;
    let deadline = tokio::time::sleep(Duration::from_secs(5));
    tokio::pin!(deadline);
    let mut failures = Vec::new();
    loop {
        tokio::select! {
            () = &mut deadline => return Err(format!("no identify within 5 s: {failures:?}")),
            event = swarm.select_next_some() => match event {
                SwarmEvent::Behaviour(HonestEvent::Identify(identify::Event::Received { peer_id, .. }))
                    if peer_id == node => return Ok(start.elapsed()),
                SwarmEvent::OutgoingConnectionError { error, .. } => failures.push(error.to_string()),
                SwarmEvent::ConnectionClosed { cause, .. } => failures.push(format!("closed: {cause:?}")),
                _ => {}
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_quic_dialers_get_in_through_an_initial_flood() {
    let (node, target, dial) = crate::flood::flooded_node("/ip4/127.0.0.1/udp/0/quic-v1").await;
    let node_id = node.handle.peer_id();
    let until = tokio::time::Instant::now() + Duration::from_secs(SECS);
    let sent = Arc::new(AtomicU64::new(0));
    let flood: Vec<_> = (0..SPRAYERS)
        .map(|i| {
            tokio::spawn(spray(
                Ipv4Addr::new(127, 0, 2, 1 + i),
                target,
                until,
                sent.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spacing = Duration::from_secs(SECS - 4) / u32::from(HONEST);
    let mut times = Vec::new();
    for i in 0..HONEST {
        let source = Ipv4Addr::new(127, 1, 1, 1 + i);
        times.push(tokio::spawn(honest(source, dial.clone(), node_id)));
        tokio::time::sleep(spacing).await;
    }
    let mut results = Vec::new();
    for t in times {
        results.push(t.await.unwrap());
    }
    for t in flood {
        t.await.unwrap();
    }
    let within = results
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|t| *t <= Duration::from_secs(2)))
        .count();
    eprintln!(
        "{} Initials in {SECS} s; honest QUIC dialers identified within 2 s: {within} of {HONEST}: {results:?}",
        sent.load(Ordering::Relaxed)
    );
    assert!(
        within * 20 >= usize::from(HONEST) * 19,
        "{within} of {HONEST}: {results:?}"
    );
    drop(node);
}
