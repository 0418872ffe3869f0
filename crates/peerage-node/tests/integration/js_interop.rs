//! A js-libp2p node (npm `libp2p` 3.x; `interop/js`) dials a running Peerage node, identifies
//! and pings it; the node's peerstore must hold the js peer's protocols and a latency.

use std::{path::PathBuf, process::Command, time::Duration};

use libp2p::{PeerId, identity::Keypair, multiaddr::Protocol};
use peerage::maintenance::Bounds;
use peerage_node::node::{Node, NodeConfig};

fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop/js")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_libp2p_peer_identifies_and_pings_a_peerage_node() {
    let js = js_dir();
    assert!(
        js.join("node_modules/libp2p").is_dir(),
        "js-libp2p is not installed: run `npm ci --prefix interop/js` (.ci/run does)"
    );
    let node = Node::start(NodeConfig::new(
        Keypair::generate_ed25519(),
        vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        Bounds::from_connections(6),
    ))
    .await
    .unwrap();
    let handle = node.handle;
    let target = handle.listen_addrs()[0]
        .clone()
        .with(Protocol::P2p(handle.peer_id()));

    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .current_dir(&js)
            .args([
                "--import",
                "./polyfill.mjs",
                "dial.mjs",
                &target.to_string(),
            ])
            .env("SECS", "30")
            .output()
            .expect("run node (Node.js)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "js peer failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let js_peer: PeerId = stdout
        .lines()
        .find_map(|l| l.strip_prefix("JS PEER "))
        .expect("JS PEER line")
        .parse()
        .unwrap();
    // The js side identified us, with our protocols.
    let identify = stdout
        .lines()
        .find_map(|l| l.strip_prefix("JS IDENTIFY "))
        .expect("JS IDENTIFY line");
    assert!(identify.starts_with("peerage/"), "{identify}");
    assert!(identify.contains("/peerage/pex/1.0.0"), "{identify}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("JS PING ")).count(),
        3
    );

    // Our side: identify fed the protocols, ping fed the latency. Both happen on connection,
    // and the js node lingered 1.5 s; allow a little more for the events to land.
    let store = handle.peerstore();
    let mut waited = Duration::ZERO;
    while (store.protocols(&js_peer).is_empty() || store.latency_ewma(&js_peer).is_none())
        && waited < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    }
    let protocols = store.protocols(&js_peer);
    for p in ["/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"] {
        assert!(
            protocols.iter().any(|q| q == p),
            "{p} missing from {protocols:?}"
        );
    }
    let agent: String = store.get(&js_peer, peerage::AGENT_VERSION).unwrap();
    assert!(agent.starts_with("js-libp2p/"), "{agent}");
    let latency = store.latency_ewma(&js_peer).expect("a latency sample");
    assert!(
        latency > Duration::ZERO && latency < Duration::from_secs(5),
        "{latency:?}"
    );
}
