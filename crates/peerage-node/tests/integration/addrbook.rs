//! The address book on real sockets: a node learns points into it, dials them, saves its book
//! and anchors at shutdown, and after a restart with no bootstrap point dials an anchor first.

use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId, identity::Keypair, multiaddr::Protocol};
use peerage::maintenance::Bounds;
use peerage_node::{
    config::AddrbookSettings,
    node::{Node, NodeConfig},
};
use peerage_store::addrbook_file::{AddrBookFile, FILE_NAME};

fn config(
    keypair: Keypair,
    bootstrap: Vec<Multiaddr>,
    book: Option<std::path::PathBuf>,
) -> NodeConfig {
    NodeConfig {
        bootstrap,
        addrbook: Some(AddrbookSettings::default()),
        addrbook_file: book,
        ..NodeConfig::new(
            keypair,
            vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            Bounds::new(2, 4, 8).unwrap(),
        )
    }
}

async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Peer IDs of the node's outbound connections.
async fn outbound(node: &Node) -> Vec<PeerId> {
    node.handle
        .call(|swarm| {
            swarm
                .behaviour()
                .machine()
                .connections()
                .filter(|(_, c)| !c.inbound)
                .map(|(_, c)| c.peer)
                .collect()
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_book_and_dials_an_anchor_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    // A seed, and three nodes that know it.
    let seed = Node::start(config(Keypair::generate_ed25519(), Vec::new(), None))
        .await
        .unwrap();
    let seed_addr = seed.handle.listen_addrs()[0]
        .clone()
        .with(Protocol::P2p(seed.handle.peer_id()));
    // The others keep no book and are content with one connection (Octez bounds 1/1/8):
    // once they hold the seed they dial no one, so they cannot reach the node under test
    // first and leave it holding them inbound, with no outbound connection to make.
    let mut others = Vec::new();
    for _ in 0..3 {
        let n = Node::start(NodeConfig {
            addrbook: None,
            bounds: Bounds::new(1, 1, 8).unwrap(),
            ..config(Keypair::generate_ed25519(), vec![seed_addr.clone()], None)
        })
        .await
        .unwrap();
        others.push(n);
    }
    let ids: Vec<PeerId> = others.iter().map(|n| n.handle.peer_id()).collect();
    // The node under test bootstraps from the seed, learns the others into its book and dials
    // them (its outbound target, min_target of 2/4/8, asks for more than the seed).
    let key = Keypair::generate_ed25519();
    let b = Node::start(config(
        key.clone(),
        vec![seed_addr.clone()],
        Some(path.clone()),
    ))
    .await
    .unwrap();
    until("two outbound peers besides the seed", async || {
        outbound(&b)
            .await
            .iter()
            .filter(|p| ids.contains(p))
            .count()
            >= 2
    })
    .await;
    let info: serde_json::Value = b
        .handle
        .call(|swarm| {
            let m = swarm.behaviour().machine();
            let (stats, ..) = m.addrbook_stats().unwrap();
            serde_json::json!({
                "tried": stats.tried,
                "collisions": stats.collisions,
                "anchors": m.anchors().len(),
            })
        })
        .await
        .unwrap();
    // Each outbound peer's address is good: in `tried`, or waiting for its tried slot (Bitcoin
    // Core's test-before-evict) when another address holds it. On 127.0.0.1, one network
    // group, two of them drew the same slot in 1 of 200 runs.
    let good = info["tried"].as_u64().unwrap() + info["collisions"].as_u64().unwrap();
    assert!(good >= 2, "{info}");
    assert_eq!(info["anchors"], 2);
    drop(b.handle);
    b.task.await.unwrap();

    // Saved at shutdown: the addresses and two anchors, both of the others (not the seed, a
    // trusted point).
    let saved = AddrBookFile::new(&path).load().unwrap().expect("saved");
    assert!(saved.entries.len() >= 3, "{}", saved.entries.len());
    let saved_tried = saved.entries.iter().filter(|e| e.tried).count();
    assert!(saved_tried >= 1, "{saved_tried}");
    assert_eq!(saved.anchors.len(), 2);
    let anchor_ids: Vec<PeerId> = saved
        .anchors
        .iter()
        .filter_map(|a| match a.iter().last() {
            Some(Protocol::P2p(id)) => Some(id),
            _ => None,
        })
        .collect();
    assert!(
        anchor_ids.iter().all(|id| ids.contains(id)),
        "{anchor_ids:?}"
    );

    // Restarted with no bootstrap point: the book is back, and an anchor is dialed.
    let b = Node::start(config(key, Vec::new(), Some(path.clone())))
        .await
        .unwrap();
    let tried = b
        .handle
        .call(|swarm| swarm.behaviour().machine().addrbook().unwrap().tried_len())
        .await
        .unwrap();
    assert!(tried >= saved_tried, "{tried} < {saved_tried}");
    until("an anchor connected", async || {
        outbound(&b).await.iter().any(|p| anchor_ids.contains(p))
    })
    .await;
}
