//! Handshake floods (issue 16, item 1), CI-sized: a node whose resource manager has its
//! default limits, applied to loopback too (`NodeConfig::loopback_exempt` off), under
//!
//! - 200 sockets from `127.0.0.2` … `127.0.0.201` that connect and send nothing, each reopened
//!   as soon as the node drops it;
//! - [`DRIP`] sockets (100; `PEERAGE_FLOOD_DRIP=200` runs the 200), from `127.0.1.1`
//!   on, that drip a valid multistream header one byte a second, reopened likewise;
//!
//! for [`FLOOD_SECS`] seconds (`PEERAGE_FLOOD_SECS=60` runs the minute), while honest
//! peers dial it one after the other across the flood: 20 Peerage-like peers (TCP, Noise,
//! Yamux, identify, ping) from `127.1.0.1` … `127.1.0.20`, and [`JS`] js-libp2p peers
//! (`interop/js/dial.mjs`, from `127.0.0.1`; `PEERAGE_FLOOD_JS=20` runs the 20). At
//! least 95 % of them must receive the node's identify within 2 s of dialing (the 38
//! of 40). A js peer's time is its own, from its dial to the node's identify (its process
//! start is not counted).
//!
//! Sampled every 100 ms: the node's open file descriptors (the process's, less the attacker's
//! own sockets and what was open before) stay at most the transient scope's inbound limit +
//! its established connections + 64, and the process's resident memory grows by at most
//! 50 MB.
//!
//! With the handshake guard (`peerage::rcmgr::HandshakeGuard`) turned off, the flood holds the
//! transient scope's inbound slots: 1 of 20 honest dialers got in (measured once, 20 s).

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use libp2p::{identify, identity::Keypair, multiaddr::Protocol, swarm::SwarmEvent};
use peerage::maintenance::Bounds;
use peerage_node::node::{Node, NodeConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    eclipse::{PeerEvent, peer, socket_from},
    js_interop::{js_line, run_js},
};

/// How long the flood runs, in seconds, unless `PEERAGE_FLOOD_SECS` says otherwise.
const FLOOD_SECS: u64 = 20;
const SILENT: u8 = 200;
/// Dripping sockets, unless `PEERAGE_FLOOD_DRIP` says otherwise (at most 254).
const DRIP: u8 = 100;
const HONEST: u8 = 20;
/// js-libp2p dialers, unless `PEERAGE_FLOOD_JS` says otherwise.
const JS: usize = 8;

/// A multistream-select header, as a dialer's first bytes: a varint length, then the name.
const MULTISTREAM: &[u8] = b"\x13/multistream/1.0.0\n";

/// Connects from `source` again and again until `until`: silent if `drip` is false, else
/// sending [`MULTISTREAM`] a byte a second. Counts its connections in `made`.
async fn attacker(
    source: Ipv4Addr,
    target: SocketAddr,
    drip: bool,
    until: tokio::time::Instant,
    (made, open): (Arc<AtomicU64>, Arc<AtomicI64>),
) {
    while tokio::time::Instant::now() < until {
        // Counted open from before the socket is made to after it is dropped, so that the
        // count never falls short of the sockets open.
        open.fetch_add(1, Ordering::SeqCst);
        let Ok(mut stream) = socket_from(source, target).await else {
            open.fetch_sub(1, Ordering::SeqCst);
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
        drop(stream);
        open.fetch_sub(1, Ordering::SeqCst);
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

/// Open file descriptors of this process.
fn open_fds() -> i64 {
    i64::try_from(std::fs::read_dir("/proc/self/fd").unwrap().count()).unwrap()
}

/// Resident memory of this process, in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// Runs a js-libp2p peer that dials the node: the time from its dial to the node's identify,
/// as it measured it.
async fn js_honest(target: libp2p::Multiaddr) -> Result<Duration, String> {
    let env = vec![
        ("PINGS", "1".to_owned()),
        ("LINGER_MS", "0".to_owned()),
        ("SECS", "10".to_owned()),
    ];
    let out = run_js("dial.mjs", target, env).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !stdout.contains("JS IDENTIFIED_MS ") {
        return Err(format!(
            "js: {}; {}",
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let ms: u64 = js_line(&stdout, "JS IDENTIFIED_MS ")
        .trim()
        .parse()
        .unwrap();
    Ok(Duration::from_millis(ms))
}

/// The node a flood aims at: listening on `listen` (`127.0.0.1`, TCP or UDP, port 0), its
/// resource manager's default (auto-scaled) limits applied to loopback too, bounds 2/40/60;
/// with the socket address the flood aims at and the address honest peers dial.
pub(crate) async fn flooded_node(listen: &str) -> (Node, SocketAddr, libp2p::Multiaddr) {
    let node = Node::start(NodeConfig {
        limits: Some(peerage::rcmgr::auto_scale()),
        loopback_exempt: false,
        ..NodeConfig::new(
            Keypair::generate_ed25519(),
            vec![listen.parse().unwrap()],
            Bounds::new(2, 40, 60).unwrap(),
        )
    })
    .await
    .unwrap();
    let listen = node.handle.listen_addrs()[0].clone();
    let port = match listen.iter().nth(1) {
        Some(Protocol::Tcp(port) | Protocol::Udp(port)) => port,
        _ => panic!("{listen}"),
    };
    let dial = listen.with(Protocol::P2p(node.handle.peer_id()));
    (node, SocketAddr::from(([127, 0, 0, 1], port)), dial)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_dialers_get_in_through_silent_and_dripping_floods() {
    let secs = std::env::var("PEERAGE_FLOOD_SECS").map_or(FLOOD_SECS, |v| v.parse().unwrap());
    let (node, target, dial) = flooded_node("/ip4/127.0.0.1/tcp/0").await;
    let node_id = node.handle.peer_id();
    let transient_inbound =
        i64::try_from(peerage::rcmgr::auto_scale().transient().conns_inbound).unwrap();

    let until = tokio::time::Instant::now() + Duration::from_secs(secs);
    let made = Arc::new(AtomicU64::new(0));
    let open = Arc::new(AtomicI64::new(0));
    let (fds_before, rss_before) = (open_fds(), rss_bytes());
    let sampler = {
        let (open, handle) = (open.clone(), node.handle.clone());
        tokio::spawn(async move {
            let (mut node_fds, mut allowed, mut rss) = (0i64, i64::MAX, 0u64);
            while tokio::time::Instant::now() < until {
                let established = handle.snapshot().await.map_or(0, |s| s.connections);
                // The attacker's count never falls short of its sockets (it counts up before
                // one opens and down after it closed); the larger of a count before and one
                // after the reading covers every attacker socket open at the reading.
                let before = open.load(Ordering::SeqCst);
                let fds = open_fds();
                let attacker = before.max(open.load(Ordering::SeqCst));
                let fds = fds - fds_before - attacker;
                if fds > node_fds {
                    node_fds = fds;
                    allowed = transient_inbound + i64::try_from(established).unwrap() + 64;
                }
                rss = rss.max(rss_bytes());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (node_fds, allowed, rss)
        })
    };
    let mut flood = Vec::new();
    for i in 0..SILENT {
        let source = Ipv4Addr::new(127, 0, 0, 2 + i);
        let counts = (made.clone(), open.clone());
        flood.push(tokio::spawn(attacker(source, target, false, until, counts)));
    }
    let drip = std::env::var("PEERAGE_FLOOD_DRIP").map_or(DRIP, |v| v.parse().unwrap());
    for i in 0..drip {
        let source = Ipv4Addr::new(127, 0, 1, 1 + i);
        let counts = (made.clone(), open.clone());
        flood.push(tokio::spawn(attacker(source, target, true, until, counts)));
    }
    // The flood fills the table first; then the honest dialers, spread over the rest but the
    // last 2 s, the js ones among the others.
    let js = std::env::var("PEERAGE_FLOOD_JS").map_or(JS, |v| v.parse().unwrap());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let total = usize::from(HONEST) + js;
    let spacing =
        Duration::from_secs(secs.saturating_sub(4).max(1)) / u32::try_from(total).unwrap();
    let mut honest_tasks = Vec::new();
    let mut peerage_dialers = 0u8;
    for i in 0..total {
        // The js dialers spread evenly among the others.
        let is_js = (i + 1) * js / total != i * js / total;
        let task = if is_js {
            tokio::spawn(js_honest(dial.clone()))
        } else {
            let source = Ipv4Addr::new(127, 1, 0, 1 + peerage_dialers);
            peerage_dialers += 1;
            tokio::spawn(honest(source, dial.clone(), node_id))
        };
        honest_tasks.push((is_js, task));
        tokio::time::sleep(spacing).await;
    }
    let mut times = Vec::new();
    for (is_js, task) in honest_tasks {
        times.push((if is_js { "js" } else { "rust" }, task.await.unwrap()));
    }
    for task in flood {
        task.await.unwrap();
    }
    let (node_fds, allowed, rss) = sampler.await.unwrap();
    let grown = rss.saturating_sub(rss_before);
    let within = times
        .iter()
        .filter(|(_, t)| t.as_ref().is_ok_and(|t| *t <= Duration::from_secs(2)))
        .count();
    eprintln!(
        "{} flood connections in {secs} s; honest dialers identified within 2 s: {within} of {total}; \
         node's file descriptors at most {node_fds} (allowed {allowed}); resident memory grew {} MB; \
         times: {times:?}",
        made.load(Ordering::Relaxed),
        grown / 1_000_000,
    );
    assert!(
        node_fds <= allowed,
        "{node_fds} file descriptors, {allowed} allowed"
    );
    assert!(grown <= 50_000_000, "resident memory grew by {grown} bytes");
    // At least 95 %, rounded up.
    assert!(
        within * 20 >= total * 19,
        "{within} of {total} honest dialers identified within 2 s: {times:?}"
    );
    // The guard's work shows in the node's metrics.
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &node.registry).unwrap();
    let evicted: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("peerage_handshakes_evicted_total "))
        .unwrap_or_else(|| panic!("no peerage_handshakes_evicted_total in {text}"))
        .parse()
        .unwrap();
    assert!(evicted > 0, "the flood evicted no handshake");
    assert!(text.contains("peerage_handshakes_pending "), "{text}");
    assert!(text.contains("peerage_handshakes_refused_ips "), "{text}");
    drop(node);
}
