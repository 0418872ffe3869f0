//! A node restarted on its data dir remembers the peers it knew: their addresses, protocols,
//! latency and agent version, from the redb peerstore.

use std::time::{Duration, Instant};

use libp2p::{identity::Keypair, multiaddr::Protocol};
use peerage::{
    maintenance::Bounds,
    peerstore::{self, Peerstore, Ttl},
};
use peerage_node::node::{Node, NodeConfig};
use peerage_store::{RedbStore, peerstore::Options};

fn node_config(
    keypair: Keypair,
    bootstrap: Vec<libp2p::Multiaddr>,
    peerstore: Peerstore,
) -> NodeConfig {
    NodeConfig {
        bootstrap,
        peerstore,
        ..NodeConfig::new(
            keypair,
            vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            Bounds::new(1, 1, 2).unwrap(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_remembers_the_peers_it_knew() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(peerage_store::peerstore::FILE_NAME);
    let open = || {
        let store =
            RedbStore::open(&path, peerstore::Config::default(), Options::default()).unwrap();
        let loaded = store.loaded_peers();
        (Peerstore::new(store), loaded)
    };

    let a = Node::start(node_config(
        Keypair::generate_ed25519(),
        Vec::new(),
        Peerstore::default(),
    ))
    .await
    .unwrap();
    let a_id = a.handle.peer_id();
    let a_addr = a.handle.listen_addrs()[0].clone();
    let b_key = Keypair::generate_ed25519();
    let (store, loaded) = open();
    assert_eq!(loaded, 0);
    let b = Node::start(node_config(
        b_key.clone(),
        vec![a_addr.clone().with(Protocol::P2p(a_id))],
        store,
    ))
    .await
    .unwrap();

    // B connects, identifies A and pings it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let ps = b.handle.peerstore().clone();
    while ps.protocols(&a_id).is_empty() || ps.latency_ewma(&a_id).is_none() {
        assert!(Instant::now() < deadline, "B never identified and pinged A");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let protocols = ps.protocols(&a_id);
    drop(ps);
    drop(b.handle);
    b.task.await.unwrap();

    // Restarted on the same data dir, with no bootstrap point and A still up.
    let (store, loaded) = open();
    assert_eq!(loaded, 1, "one peer known");
    let b = Node::start(node_config(b_key, Vec::new(), store))
        .await
        .unwrap();
    let ps = b.handle.peerstore();
    assert_eq!(ps.peers(), vec![a_id]);
    let addrs = ps.addrs_with_ttl(&a_id);
    assert_eq!(addrs.len(), 1);
    assert_eq!(addrs[0].addr, a_addr);
    assert_eq!(
        addrs[0].ttl,
        Ttl::RECENTLY_CONNECTED,
        "connected addresses are demoted"
    );
    assert_eq!(ps.protocols(&a_id), protocols);
    assert!(ps.latency_ewma(&a_id).is_some());
    let agent: String = ps.get(&a_id, peerage::AGENT_VERSION).unwrap();
    assert!(agent.starts_with("peerage/"), "{agent}");
}
