//! Handshake floods (issue 16, item 1), CI-sized: a node whose resource manager has its
//! default limits, applied to loopback too (`NodeConfig::loopback_exempt` off), under
//!
//! - 200 sockets from `127.0.0.2` … `127.0.0.201` that connect and send nothing, each reopened
//!   as soon as the node drops it;
//! - 100 sockets from `127.0.1.1` … `127.0.1.100` that drip a valid multistream header one
//!   byte a second, reopened likewise;
//!
//! for [`FLOOD_SECS`] seconds (`PEERAGE_FLOOD_SECS=60` runs the minute), while 20
//! honest Peerage-like peers (TCP, Noise, Yamux, identify, ping), from `127.1.0.1` …
//! `127.1.0.20`, dial it one after the other across the flood. At least 19 of the 20 must
//! receive the node's identify within 2 s of dialing (the 38 of 40).
//!
//! Before the handshake guard (`peerage::rcmgr::HandshakeGuard`), the silent sockets held the
//! transient scope's every inbound slot, and no honest dialer got in.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use libp2p::{identify, identity::Keypair, multiaddr::Protocol, swarm::SwarmEvent};
use peerage::maintenance::Bounds;
use peerage_node::node::{Node, NodeConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::eclipse::{PeerEvent, peer};

/// How long the flood runs, in seconds, unless `PEERAGE_FLOOD_SECS` says otherwise.
const FLOOD_SECS: u64 = 20;
const SILENT: u8 = 200;
const DRIP: u8 = 100;
const HONEST: u8 = 20;

/// A multistream-select header, as a dialer's first bytes: a varint length, then the name.
const MULTISTREAM: &[u8] = b"\x13/multistream/1.0.0\n";

async fn socket_from(
    source: Ipv4Addr,
    target: SocketAddr,
) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source.into(), 0))?;
    socket.connect(target).await
}

/// Connects from `source` again and again until `until`: silent if `drip` is false, else
/// sending [`MULTISTREAM`] a byte a second. Counts its connections in `made`.
async fn attacker(
    source: Ipv4Addr,
    target: SocketAddr,
    drip: bool,
    until: tokio::time::Instant,
    made: Arc<AtomicU64>,
) {
    while tokio::time::Instant::now() < until {
        let Ok(mut stream) = socket_from(source, target).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        made.fetch_add(1, Ordering::Relaxed);
        let held = async {
            let mut buf = [0u8; 256];
            if drip {
                for byte in MULTISTREAM.iter().cycle() {
                    if stream.write_all(&[*byte]).await.is_err() {
                        return;
                    }
                    // The node's answer, or its close.
                    let answer =
                        tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await;
                    if let Ok(Ok(0) | Err(_)) = answer {
                        return;
                    }
                }
            } else {
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                }
            }
        };
        let _ = tokio::time::timeout_at(until, held).await;
        // Reopened at once (a little later than at once, so as not to spin on a refusal).
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Dials the node from `source` and waits for its identify: the time it took, or why not
/// within 5 s.
async fn honest(
    source: Ipv4Addr,
    target: libp2p::Multiaddr,
    node: libp2p::PeerId,
) -> Result<Duration, String> {
    let mut swarm = peer(source);
    let start = Instant::now();
    swarm.dial(target).map_err(|e| e.to_string())?;
    let deadline = tokio::time::sleep(Duration::from_secs(5));
    tokio::pin!(deadline);
    let mut failures = Vec::new();
    loop {
        tokio::select! {
            () = &mut deadline => return Err(format!("no identify within 5 s: {failures:?}")),
            event = swarm.select_next_some() => match event {
                SwarmEvent::Behaviour(PeerEvent::Identify(identify::Event::Received {
                    peer_id, ..
                })) if peer_id == node => return Ok(start.elapsed()),
                SwarmEvent::OutgoingConnectionError { error, .. } => {
                    failures.push(error.to_string());
                }
                SwarmEvent::ConnectionClosed { cause, .. } => {
                    failures.push(format!("closed: {cause:?}"));
                }
                _ => {}
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_dialers_get_in_through_silent_and_dripping_floods() {
    let secs = std::env::var("PEERAGE_FLOOD_SECS").map_or(FLOOD_SECS, |v| v.parse().unwrap());
    let node = Node::start(NodeConfig {
        loopback_exempt: false,
        ..NodeConfig::new(
            Keypair::generate_ed25519(),
            vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            Bounds::new(2, 40, 60).unwrap(),
        )
    })
    .await
    .unwrap();
    let node_id = node.handle.peer_id();
    let listen = node.handle.listen_addrs()[0].clone();
    let port = match listen.iter().nth(1) {
        Some(Protocol::Tcp(port)) => port,
        _ => panic!("{listen}"),
    };
    let target = SocketAddr::from(([127, 0, 0, 1], port));
    let dial = listen.with(Protocol::P2p(node_id));

    let until = tokio::time::Instant::now() + Duration::from_secs(secs);
    let made = Arc::new(AtomicU64::new(0));
    let mut flood = Vec::new();
    for i in 0..SILENT {
        let source = Ipv4Addr::new(127, 0, 0, 2 + i);
        flood.push(tokio::spawn(attacker(
            source,
            target,
            false,
            until,
            made.clone(),
        )));
    }
    for i in 0..DRIP {
        let source = Ipv4Addr::new(127, 0, 1, 1 + i);
        flood.push(tokio::spawn(attacker(
            source,
            target,
            true,
            until,
            made.clone(),
        )));
    }
    // The flood fills the table first; then the honest dialers, one every (secs - 2) / 20 s.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spacing = Duration::from_secs(secs.saturating_sub(4).max(1)) / u32::from(HONEST);
    let mut honest_tasks = Vec::new();
    for i in 0..HONEST {
        let source = Ipv4Addr::new(127, 1, 0, 1 + i);
        honest_tasks.push(tokio::spawn(honest(source, dial.clone(), node_id)));
        tokio::time::sleep(spacing).await;
    }
    let mut times = Vec::new();
    for task in honest_tasks {
        times.push(task.await.unwrap());
    }
    for task in flood {
        task.await.unwrap();
    }
    let within = times
        .iter()
        .filter(|t| t.as_ref().is_ok_and(|t| *t <= Duration::from_secs(2)))
        .count();
    eprintln!(
        "{} flood connections in {secs} s; honest dialers identified within 2 s: {within} of {HONEST}; times: {times:?}",
        made.load(Ordering::Relaxed)
    );
    assert!(
        within >= usize::from(HONEST) - 1,
        "{within} of {HONEST} honest dialers identified within 2 s: {times:?}"
    );
    drop(node);
}
