//! Two nodes on loopback, over QUIC and over TCP: bootstrap dials, identify and the exchange.

use std::time::{Duration, Instant};

use libp2p::{identity::Keypair, multiaddr::Protocol};
use peerage::maintenance::Bounds;
use peerage_node::node::{Node, NodeConfig};

async fn start(bootstrap: Vec<libp2p::Multiaddr>) -> Node {
    Node::start(NodeConfig {
        bootstrap,
        ..NodeConfig::new(
            Keypair::generate_ed25519(),
            vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()],
            Bounds::new(1, 1, 2).unwrap(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_connect_over_quic() {
    let a = start(Vec::new()).await;
    let a_addr = a.handle.listen_addrs()[0].clone();
    assert!(a_addr.iter().any(|p| p == Protocol::QuicV1), "{a_addr}");
    let b = start(vec![a_addr.with(Protocol::P2p(a.handle.peer_id()))]).await;

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (sa, sb) = (
            a.handle.snapshot().await.unwrap(),
            b.handle.snapshot().await.unwrap(),
        );
        let identified = !a
            .handle
            .peerstore()
            .protocols(&b.handle.peer_id())
            .is_empty();
        if sa.connections == 1 && sb.connections == 1 && identified {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no QUIC connection: {sa:?} {sb:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let protocols = a.handle.peerstore().protocols(&b.handle.peer_id());
    assert!(
        protocols.iter().any(|p| p == "/peerage/pex/1.0.0"),
        "{protocols:?}"
    );
}

/// `--bootstrap` without `/p2p/<id>`: the node dials the address and learns who is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_without_peer_id_over_tcp() {
    let tcp = || vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    let a = Node::start(NodeConfig::new(
        Keypair::generate_ed25519(),
        tcp(),
        Bounds::new(1, 1, 2).unwrap(),
    ))
    .await
    .unwrap();
    let b = Node::start(NodeConfig {
        bootstrap: vec![a.handle.listen_addrs()[0].clone()],
        ..NodeConfig::new(
            Keypair::generate_ed25519(),
            tcp(),
            Bounds::new(1, 1, 2).unwrap(),
        )
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while b.handle.snapshot().await.unwrap().connections != 1 {
        assert!(Instant::now() < deadline, "B never connected to A");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let addrs = b.handle.peerstore().addrs(&a.handle.peer_id());
    assert_eq!(addrs, vec![a.handle.listen_addrs()[0].clone()]);
}
