//! A js-libp2p node (npm `libp2p` 3.x; `interop/js`) dials a running Peerage node, identifies
//! and pings it; the node's peerstore must hold the js peer's protocols and a latency.

use std::{
    path::PathBuf,
    process::{Command, Output},
    time::Duration,
};

use libp2p::{Multiaddr, PeerId, identity::Keypair, multiaddr::Protocol};
use peerage::maintenance::Bounds;
use peerage::rcmgr::LimitConfig;
use peerage_node::node::{Node, NodeConfig};

fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop/js")
}

/// Fails the test at once, with what to do, if js-libp2p is not installed.
fn assert_js_installed() {
    assert!(
        js_dir().join("node_modules/libp2p").is_dir(),
        "js-libp2p is not installed: run `npm ci --prefix interop/js` (.ci/run does)"
    );
}

/// Runs `interop/js/<script>` with Node.js against `target`, with `env`, to its end.
pub(crate) async fn run_js(
    script: &'static str,
    target: Multiaddr,
    env: Vec<(&'static str, String)>,
) -> Output {
    let js = js_dir();
    tokio::task::spawn_blocking(move || {
        Command::new("node")
            .current_dir(&js)
            .args(["--import", "./polyfill.mjs", script, &target.to_string()])
            .envs(env)
            .output()
            .expect("run node (Node.js)")
    })
    .await
    .unwrap()
}

/// A node listening on `listen` (TCP or QUIC on 127.0.0.1) with the bounds of 6 connections
/// and `limits` (the machine's scaled defaults if `None`), and its address with `/p2p`.
async fn start_node(listen: &str, limits: Option<LimitConfig>) -> (Node, Multiaddr) {
    let mut config = NodeConfig::new(
        Keypair::generate_ed25519(),
        vec![listen.parse().unwrap()],
        Bounds::from_connections(6),
    );
    config.limits = limits;
    let node = Node::start(config).await.unwrap();
    let target = node.handle.listen_addrs()[0]
        .clone()
        .with(Protocol::P2p(node.handle.peer_id()));
    (node, target)
}

const TCP: &str = "/ip4/127.0.0.1/tcp/0";

/// The stdout of a js run, once it succeeded.
fn succeeded(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "js peer failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Runs `interop/js/<script>` against `target` with `env`; its stdout, once it succeeded.
async fn run_js_ok(
    script: &'static str,
    target: Multiaddr,
    env: Vec<(&'static str, String)>,
) -> String {
    succeeded(&run_js(script, target, env).await)
}

/// Waits up to 5 s for the node's identify of `peer` (its protocols) and ping of it (a
/// latency) to land in `store`; the caller checks what landed.
async fn wait_identified_and_pinged(store: &peerage::peerstore::Clocked, peer: &PeerId) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while (store.protocols(peer).is_empty() || store.latency_ewma(peer).is_none())
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The rest of the first line of `stdout` that starts with `prefix`.
pub(crate) fn js_line(stdout: &str, prefix: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in {stdout}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_libp2p_peer_identifies_and_pings_a_peerage_node() {
    assert_js_installed();
    let (node, target) = start_node(TCP, None).await;

    let stdout = run_js_ok("dial.mjs", target, vec![("SECS", "30".into())]).await;
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
    let store = node.handle.peerstore();
    wait_identified_and_pinged(store, &js_peer).await;
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

/// A js-libp2p peer over QUIC (`@chainsafe/libp2p-quic` 2.1.1, on Node 20 with the interop
/// polyfill) dials a node that listens on QUIC only: both identify, js pings 3 times, and the
/// node's peerstore holds the js peer's protocols and a latency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_js_peer_over_quic_identifies_and_pings_a_peerage_node() {
    assert_js_installed();
    let (node, target) = start_node("/ip4/127.0.0.1/udp/0/quic-v1", None).await;
    assert!(target.to_string().contains("/quic-v1/"), "{target}");
    let stdout = run_js_ok(
        "dial.mjs",
        target.clone(),
        vec![("SECS", "30".into()), ("TRANSPORT", "quic".into())],
    )
    .await;
    assert_eq!(js_line(&stdout, "JS CONN "), target.to_string());
    assert!(js_line(&stdout, "JS IDENTIFY ").starts_with("peerage/"));
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("JS PING ")).count(),
        3
    );
    let js_peer: PeerId = js_line(&stdout, "JS PEER ").parse().unwrap();
    let store = node.handle.peerstore();
    wait_identified_and_pinged(store, &js_peer).await;
    assert!(
        store.latency_ewma(&js_peer).is_some(),
        "no ping of the js peer over QUIC"
    );
    assert!(
        store
            .protocols(&js_peer)
            .iter()
            .any(|p| p == "/ipfs/ping/1.0.0")
    );
    let agent: String = store.get(&js_peer, peerage::AGENT_VERSION).unwrap();
    assert!(agent.starts_with("js-libp2p/"), "{agent}");
}

/// Certified addresses both ways (go-libp2p and js-libp2p's signed peer records, domain
/// `libp2p-peer-record`): the js peer's identify sends its record, which must certify its
/// address in `GET /network/peers/{id}`; ours must certify our address in js's peer store.
/// rust-libp2p's identify 0.48 signs under another domain, which js refuses, and drops js's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_js_peer_and_the_node_certify_each_others_addresses() {
    use axum::http::Method;
    use serde_json::Value;

    assert_js_installed();
    let (node, target) = start_node(TCP, None).await;
    let ours = node.handle.listen_addrs()[0].clone();
    let router = peerage_node::admin::router(node.handle.clone(), node.registry.clone(), None);
    // The js peer lingers 6 s after its pings, connected, while we look.
    let js = tokio::spawn(run_js(
        "dial.mjs",
        target,
        vec![
            ("SECS", "30".into()),
            ("PINGS", "1".into()),
            ("LINGER_MS", "6000".into()),
        ],
    ));

    // Our side: the js peer's address, certified, in the admin API.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (js_peer, addrs) = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no certified address of the js peer"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let connected = node
            .handle
            .call(|swarm| swarm.connected_peers().next().copied())
            .await
            .unwrap();
        let Some(peer) = connected else {
            continue;
        };
        let (_, v) = crate::admin::call(
            &router,
            Method::GET,
            &format!("/network/peers/{peer}"),
            None,
            None,
        )
        .await;
        let addrs: Vec<Value> = v["addrs"].as_array().cloned().unwrap_or_default();
        if addrs.iter().any(|a| a["certified"] == Value::Bool(true)) {
            break (peer, addrs);
        }
    };
    // Every address it announced is in its record: all are certified, on 127.0.0.1.
    assert!(
        addrs.iter().all(|a| a["certified"] == Value::Bool(true)
            && a["addr"]
                .as_str()
                .unwrap()
                .starts_with("/ip4/127.0.0.1/tcp/")),
        "{addrs:?}"
    );

    // The js side: our address, certified, in its peer store.
    let stdout = succeeded(&js.await.unwrap());
    assert_eq!(js_line(&stdout, "JS PEER "), js_peer.to_string());
    let seen: Vec<Value> = serde_json::from_str(&js_line(&stdout, "JS ADDRS ")).unwrap();
    assert!(
        seen.iter()
            .any(|a| a["addr"] == Value::String(ours.to_string())
                && a["certified"] == Value::Bool(true)),
        "our {ours} is not certified in js's peer store: {seen:?}"
    );
    assert!(
        seen.iter().all(|a| a["certified"] == Value::Bool(true)),
        "{seen:?}"
    );
}

/// The bug report's set-up: `peerage run --low-water 5 --high-water 10` (bounds 10/50/100, so
/// the node stays below its `min_threshold` of 23 and keeps looking for points) and 40 js-libp2p peers dialing
/// it at once and holding their connections for 8 s (`interop/js/flood.mjs`). The node used to
/// ask every connected peer for points on `/peerage/pex/1.0.0`, js peers included, which do not
/// speak it; js-libp2p dropped those connections and 0–7 of the 40 were left. The node must ask
/// only peers whose identify lists the protocol: none here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_js_peers_stay_connected_and_are_never_asked_for_points() {
    use clap::Parser;
    use peerage_node::cli::{Cli, Command as Sub};

    const PEERS: usize = 40;
    const LOW_WATER: usize = 5;
    assert_js_installed();
    // The configuration `peerage run` resolves from these flags (no file); the identity, the
    // in-memory peerstore and the absence of a peers file are the test's.
    let data_dir = tempfile::tempdir().unwrap();
    let cli = Cli::try_parse_from([
        "peerage",
        "run",
        "--data-dir",
        data_dir.path().to_str().unwrap(),
        "--ephemeral",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--low-water",
        "5",
        "--high-water",
        "10",
    ])
    .unwrap();
    let Sub::Run(args) = cli.command else {
        panic!("run")
    };
    let effective = peerage_node::config::resolve(&args, &cli.client, cli.log_format).unwrap();
    assert_eq!(
        (
            effective.connmgr.low_water(),
            effective.connmgr.high_water()
        ),
        (LOW_WATER, 10)
    );
    // The hard cap (high water + 10 %) keeps the node below the count where its maintenance
    // stops dialing (`min_threshold`): it keeps looking for points the whole time.
    let hard_cap = effective.connmgr.hard_cap().unwrap();
    assert!(
        hard_cap < effective.bounds.min_threshold(),
        "hard cap {hard_cap}, bounds {}, min_threshold {}",
        effective.bounds,
        effective.bounds.min_threshold()
    );
    let mut config = NodeConfig::new(
        Keypair::generate_ed25519(),
        effective.listen,
        effective.bounds,
    );
    config.connmgr = effective.connmgr;
    config.pool = effective.pool;
    let node = Node::start(config).await.unwrap();
    let (handle, registry) = (node.handle, node.registry);
    let target = handle.listen_addrs()[0]
        .clone()
        .with(Protocol::P2p(handle.peer_id()));

    let output = run_js(
        "flood.mjs",
        target,
        vec![
            ("PEERS", PEERS.to_string()),
            ("HOLD_MS", "8000".into()),
            ("SECS", "25".into()),
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.starts_with("JS PEER "))
        .collect();
    let report = report.join("\n");
    // The numbers, for whoever runs the test with --nocapture.
    println!("{report}");
    assert!(
        output.status.success(),
        "js peers failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = |prefix: &str| -> String {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in\n{stdout}"))
            .to_owned()
    };
    let connected: usize = line("JS CONNECTED ").parse().unwrap();

    // Rust side: every peer of the node is a js peer, so any request for points went to one.
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let metric = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .parse()
            .unwrap()
    };
    let cycles = metric("peerage_maintenance_cycles_total");
    let asked = metric("peerage_maintenance_asked_for_points_total");
    println!("NODE maintenance cycles {cycles}, peers asked for points {asked}");
    // The maintenance did run below the minimum (and would have asked, had anyone qualified)…
    assert!(cycles > 0, "the maintenance never ran\n{report}");
    // …and asked no js peer.
    assert_eq!(asked, 0, "the node asked js peers for points\n{report}");
    // The js peers it kept identified without the protocol: that is why they were not asked.
    let kept: Vec<PeerId> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("JS PEER ")?.strip_suffix(" connected"))
        .map(|id| id.parse().unwrap())
        .collect();
    assert_eq!(kept.len(), connected, "{stdout}");
    for peer in &kept {
        let protocols = handle.peerstore().protocols(peer);
        assert!(
            protocols.iter().any(|p| p == "/ipfs/id/1.0.0")
                && !protocols
                    .iter()
                    .any(|p| p == peerage::pex::PROTOCOL.as_ref()),
            "{peer}: {protocols:?}"
        );
    }

    // js side: no connection was dropped for streams it could not take, and at least the low
    // watermark's worth of peers are still connected after the hold (the hard cap, high water
    // + 10 %, refuses the rest; the grace period spares the kept ones from trims).
    for prefix in ["JS CLOSE ERRORS ", "JS MUXER ERRORS ", "JS STREAM ERRORS "] {
        let errors = line(prefix);
        assert!(
            !errors.contains("MaxEarlyStreamsError"),
            "{prefix}{errors}\n{report}"
        );
    }
    assert!(
        connected >= LOW_WATER,
        "only {connected} of {PEERS} js peers still connected\n{report}"
    );
}

/// A Kubo-style limits file gives the peer-exchange protocol 2 inbound streams per peer; a
/// js-libp2p peer opens 3 and holds them. The node learns each stream's protocol from its
/// multistream-select negotiation: the third is reset, the first two stay open, and the
/// connection survives (a ping still passes on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_js_peers_third_stream_past_its_protocol_limit_is_reset() {
    assert_js_installed();
    let file = r#"{"ProtocolPeer": {"/peerage/pex/1.0.0": {"StreamsInbound": 2}}}"#;
    let limits = LimitConfig::from_json(file, &peerage::rcmgr::auto_scale()).unwrap();
    let (_node, target) = start_node(TCP, Some(limits)).await;
    let stdout = run_js_ok(
        "streams.mjs",
        target,
        vec![
            ("SECS", "30".into()),
            ("STREAMS", "3".into()),
            ("HOLD_MS", "1500".into()),
        ],
    )
    .await;
    let line = |prefix: &str| js_line(&stdout, prefix);
    assert_eq!(line("JS STREAM 1 "), "open", "{stdout}");
    assert_eq!(line("JS STREAM 2 "), "open", "{stdout}");
    let third = line("JS STREAM 3 ");
    assert!(
        third == "reset" || third.starts_with("error "),
        "the third stream must be reset: {stdout}"
    );
    assert!(
        !line("JS PING ").starts_with("failed"),
        "the connection must survive: {stdout}"
    );
    assert_eq!(line("JS CONNECTIONS "), "1", "{stdout}");
}

/// A js-libp2p peer proposes eight protocols the node does not speak and then one it does, on
/// one stream: past the sniffer's bound of 8 proposals, the stream is refused rather than left
/// outside its protocol's limits; the connection lives on. Seven refusals are fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_js_peer_proposing_past_the_bound_is_refused_the_stream() {
    assert_js_installed();
    let (_node, target) = start_node(TCP, None).await;
    for (unknown, want_open) in [(7, true), (8, false)] {
        let mut list: Vec<String> = (0..unknown).map(|i| format!("/unknown/{i}")).collect();
        list.push("/peerage/pex/1.0.0".into());
        let stdout = run_js_ok(
            "streams.mjs",
            target.clone(),
            vec![
                ("SECS", "30".into()),
                ("STREAMS", "1".into()),
                ("PROTOCOL", list.join(",")),
            ],
        )
        .await;
        let line = |prefix: &str| js_line(&stdout, prefix);
        let stream = line("JS STREAM 1 ");
        assert_eq!(
            stream == "open",
            want_open,
            "{unknown} unknown first: {stdout}"
        );
        assert!(!line("JS PING ").starts_with("failed"), "{stdout}");
        assert_eq!(line("JS CONNECTIONS "), "1", "{stdout}");
    }
}
