//! Octez's pool and ACL integration scenarios (`tezt/tests/p2p.ml`)
//! on real swarms over TCP, each node on its own loopback address (127.0.0.N) so that IP
//! greylisting tells them apart.

// Nodes are indexed by their place in the ring or clique, with their addresses and IDs.
#![allow(clippy::needless_range_loop)]

use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::{Multiaddr, PeerId, Swarm, multiaddr::Protocol, swarm::SwarmEvent};
use peerage::{Event, maintenance::Bounds, pool};
use support::{listen_on_host as listen, node};
use tokio::io::AsyncWriteExt;

mod support;

type Node = Swarm<peerage::Behaviour>;

/// Polls every swarm until `done` holds; panics after 20 s. Returns the behaviour events.
async fn drive(
    swarms: &mut [Node],
    done: impl Fn(&[Node]) -> bool,
) -> Vec<(PeerId, SwarmEvent<Event>)> {
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(swarms) {
        assert!(
            Instant::now() < deadline,
            "condition not reached within 20 s"
        );
        poll_once(swarms, &mut events).await;
    }
    events
}

/// Polls every swarm for `d`, asserting `always` after each event. Returns the events.
async fn hold(
    swarms: &mut [Node],
    d: Duration,
    always: impl Fn(&[Node]),
) -> Vec<(PeerId, SwarmEvent<Event>)> {
    let mut events = Vec::new();
    let end = Instant::now() + d;
    while Instant::now() < end {
        poll_once(swarms, &mut events).await;
        always(swarms);
    }
    events
}

async fn poll_once(swarms: &mut [Node], events: &mut Vec<(PeerId, SwarmEvent<Event>)>) {
    let next = futures::future::select_all(
        swarms
            .iter_mut()
            .map(|s| Box::pin(async { (*s.local_peer_id(), s.select_next_some().await) })),
    );
    tokio::select! {
        ((peer, event), _, _) = next => events.push((peer, event)),
        () = tokio::time::sleep(Duration::from_millis(50)) => {}
    }
}

fn running(s: &Node) -> Vec<PeerId> {
    let mut peers: Vec<PeerId> = s.behaviour().pool().running_peers().collect();
    peers.sort();
    peers
}

fn sorted(mut peers: Vec<PeerId>) -> Vec<PeerId> {
    peers.sort();
    peers
}

fn point_of(addr: &Multiaddr) -> Multiaddr {
    pool::split_point(addr).unwrap().0
}

/// Octez "check ip greylisting": garbage sent to a node greylists exactly the sender's IP; a
/// connection to another node on that IP is then refused as banned, and other IPs are not
/// affected.
#[tokio::test]
async fn garbage_from_a_peer_greylists_exactly_its_ip() {
    let bounds = Bounds::new(1, 2, 4).unwrap();
    let mut nodes = vec![
        node(bounds, pool::Config::new()),
        node(bounds, pool::Config::new()),
    ];
    let a_addr = listen(&mut nodes[0], 1).await;
    // B lives on 127.0.0.3, the IP the garbage comes from.
    let b_addr = listen(&mut nodes[1], 3).await;
    nodes[0].behaviour_mut().shutdown();
    nodes[1].behaviour_mut().shutdown();

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.3:0".parse().unwrap()).unwrap();
    let (ip, port) = match point_of(&a_addr).iter().take(2).collect::<Vec<_>>()[..] {
        [Protocol::Ip4(ip), Protocol::Tcp(port)] => (ip, port),
        _ => unreachable!(),
    };
    let mut stream = socket.connect((ip, port).into()).await.unwrap();
    stream
        .write_all(b"\x00\x0aHello, world. This is garbage, not a multistream header.\n")
        .await
        .unwrap();
    drive(&mut nodes, |n| {
        n[0].behaviour()
            .pool()
            .acl()
            .greylisted_ips(Instant::now())
            .count()
            > 0
    })
    .await;
    drop(stream);
    let greylisted: Vec<_> = nodes[0]
        .behaviour()
        .pool()
        .acl()
        .greylisted_ips(Instant::now())
        .collect();
    assert_eq!(
        greylisted,
        ["127.0.0.3".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(
        nodes[0].behaviour_mut().connect(&b_addr),
        Err(pool::Error::IpBanned("127.0.0.3".parse().unwrap())),
        "a node on the greylisted IP is banned"
    );
    // A well-behaved node on another IP connects.
    let mut c = node(bounds, pool::Config::new());
    listen(&mut c, 4).await;
    c.behaviour_mut().connect(&a_addr).unwrap();
    let c_id = *c.local_peer_id();
    nodes.push(c);
    drive(&mut nodes, |n| n[0].behaviour().pool().is_running(&c_id)).await;
}

/// Octez "p2p-maintenance-init-expected_connections": a node with `--connections 6` (bounds
/// 3/6/9: thresholds 4/5/7/8) joins a clique of 9 nodes with `--connections 8` through one of
/// them; once its maintenance rests with at least `min_target` (5) connections, it has at
/// most `max_target` (7), and stays so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_connections_6_settles_at_7_or_fewer() {
    let clique_bounds = Bounds::from_connections(8);
    let mut nodes: Vec<Node> = Vec::new();
    let mut addrs = Vec::new();
    for i in 0..9u8 {
        let mut n = node(clique_bounds, pool::Config::new());
        addrs.push(listen(&mut n, 20 + i).await);
        nodes.push(n);
    }
    for (i, n) in nodes.iter_mut().enumerate() {
        for a in &addrs[i + 1..] {
            n.behaviour_mut().connect(a).unwrap();
        }
    }
    drive(&mut nodes, |n| {
        n.iter().all(|s| s.behaviour().active_connections() == 8)
    })
    .await;
    let mut target = node(Bounds::from_connections(6), pool::Config::new());
    listen(&mut target, 40).await;
    target.behaviour_mut().add_trusted_point(&addrs[0]).unwrap();
    nodes.push(target);
    drive(&mut nodes, |n| {
        let t = &n[9];
        t.behaviour().active_connections() >= 5 && !t.behaviour().is_maintaining()
    })
    .await;
    hold(&mut nodes, Duration::from_secs(2), |n| {
        let active = n[9].behaviour().active_connections();
        assert!((5..=7).contains(&active), "{active} connections");
    })
    .await;
}

/// Octez "Known_Points_GC" with `max_known_points = (0, 0)`: a node that trusts 3 points of a
/// 6-node network keeps those 3 and no other, although its peers advertise the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_zero_point_table_only_trusted_points_survive() {
    let bounds = Bounds::new(1, 3, 6).unwrap();
    let mut nodes: Vec<Node> = Vec::new();
    let mut addrs = Vec::new();
    for i in 0..5u8 {
        let mut n = node(bounds, pool::Config::new());
        addrs.push(listen(&mut n, 50 + i).await);
        nodes.push(n);
    }
    for (i, n) in nodes.iter_mut().enumerate().skip(1) {
        n.behaviour_mut().add_trusted_point(&addrs[i - 1]).unwrap();
    }
    let mut t = node(
        Bounds::new(1, 3, 6).unwrap(),
        pool::Config::new().with_max_known_points(Some((0, 0))),
    );
    listen(&mut t, 60).await;
    for a in &addrs[..3] {
        t.behaviour_mut().add_trusted_point(a).unwrap();
    }
    nodes.push(t);
    let trusted: Vec<Multiaddr> = addrs[..3].iter().map(point_of).collect();
    let events = drive(&mut nodes, |n| {
        let t = n[5].behaviour();
        addrs[..3].iter().all(|a| {
            t.pool()
                .is_running(&pool::split_point(a).unwrap().1.unwrap())
        })
    })
    .await;
    // The exchange ran and offered more points than the trusted ones.
    hold(&mut nodes, Duration::from_secs(1), |_| {}).await;
    let _ = events;
    let t = nodes[5].behaviour().pool();
    let mut known: Vec<Multiaddr> = t.points().map(|(a, _)| a.clone()).collect();
    known.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
    let mut expected = trusted.clone();
    expected.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
    assert_eq!(known, expected);
    assert!(t.points().all(|(_, p)| p.is_trusted()));
}

/// Octez "trusted ring" in private mode: 5 private nodes, each trusting its two neighbours,
/// keep exactly those links, learn no other point, and refuse an untrusted newcomer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_trusted_ring_keeps_exactly_its_links() {
    let bounds = Bounds::new(1, 3, 6).unwrap();
    let private = || pool::Config::new().with_private_mode(true);
    let mut nodes: Vec<Node> = (0..5).map(|_| node(bounds, private())).collect();
    let mut addrs = Vec::new();
    for (i, n) in nodes.iter_mut().enumerate() {
        addrs.push(listen(n, 70 + i as u8).await);
    }
    let ids: Vec<PeerId> = nodes.iter().map(|n| *n.local_peer_id()).collect();
    for i in 0..5 {
        for j in [(i + 1) % 5, (i + 4) % 5] {
            nodes[i]
                .behaviour_mut()
                .add_trusted_point(&addrs[j])
                .unwrap();
        }
    }
    let neighbours = |i: usize| sorted(vec![ids[(i + 1) % 5], ids[(i + 4) % 5]]);
    drive(&mut nodes, |n| {
        (0..5).all(|i| running(&n[i]) == neighbours(i))
    })
    .await;
    // An untrusted node that knows node 0 is refused, and learns nothing.
    let mut stranger = node(bounds, pool::Config::new());
    listen(&mut stranger, 80).await;
    stranger.behaviour_mut().connect(&addrs[0]).unwrap();
    let stranger_id = *stranger.local_peer_id();
    nodes.push(stranger);
    hold(&mut nodes, Duration::from_secs(2), |n| {
        for i in 0..5 {
            assert_eq!(running(&n[i]), neighbours(i), "node {i}");
            assert_eq!(n[i].behaviour().pool().known_points(), 2, "node {i}");
        }
        assert!(!n[0].behaviour().pool().is_running(&stranger_id));
    })
    .await;
    assert_eq!(
        nodes[5].behaviour().pool().known_points(),
        1,
        "nothing advertised"
    );
}

/// Octez "expected_peer_id": in a 5-node clique, the right expected peer ID keeps every link;
/// a wrong one on each node's next neighbour makes every node lose 2 connections (the one it
/// drops and the one its previous neighbour drops), keeping 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_expected_peer_id_drops_those_links() {
    let bounds = Bounds::new(1, 3, 8).unwrap();
    let mut nodes: Vec<Node> = (0..5).map(|_| node(bounds, pool::Config::new())).collect();
    let mut addrs = Vec::new();
    for (i, n) in nodes.iter_mut().enumerate() {
        addrs.push(listen(n, 90 + i as u8).await);
    }
    let ids: Vec<PeerId> = nodes.iter().map(|n| *n.local_peer_id()).collect();
    for i in 0..5 {
        for a in &addrs[i + 1..] {
            nodes[i].behaviour_mut().connect(a).unwrap();
        }
    }
    drive(&mut nodes, |n| {
        n.iter().all(|s| s.behaviour().active_connections() == 4)
    })
    .await;
    // The right ID: nothing changes.
    for i in 0..5 {
        let next = (i + 1) % 5;
        nodes[i]
            .behaviour_mut()
            .update_pool(|p, now| p.set_expected_peer_id(&point_of(&addrs[next]), ids[next], now))
            .unwrap();
    }
    hold(&mut nodes, Duration::from_millis(500), |n| {
        assert!(n.iter().all(|s| s.behaviour().active_connections() == 4));
    })
    .await;
    // A wrong one on each node's next neighbour.
    for i in 0..5 {
        let next = (i + 1) % 5;
        nodes[i]
            .behaviour_mut()
            .update_pool(|p, now| {
                p.set_expected_peer_id(&point_of(&addrs[next]), PeerId::random(), now)
            })
            .unwrap();
    }
    let kept = |i: usize| sorted(vec![ids[(i + 2) % 5], ids[(i + 3) % 5]]);
    drive(&mut nodes, |n| (0..5).all(|i| running(&n[i]) == kept(i))).await;
    hold(&mut nodes, Duration::from_secs(2), |n| {
        for i in 0..5 {
            assert_eq!(running(&n[i]), kept(i), "node {i}");
        }
    })
    .await;
}

/// The ACL as methods of the behaviour, on real swarms: banning a peer disconnects it and keeps
/// it out; unbanning lets it back; banning its IP with its peers reports the peer disconnected
/// and banned, and unbanning the IP reports it unbanned and lets it connect again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_methods_ban_and_unban_peers_and_ips_symmetrically() {
    let bounds = Bounds::new(1, 2, 4).unwrap();
    let mut nodes = vec![
        node(bounds, pool::Config::new()),
        node(bounds, pool::Config::new()),
    ];
    let _ = listen(&mut nodes[0], 11).await;
    // A dials B, so that A sees B at its listen address, on its own IP.
    let b_addr = listen(&mut nodes[1], 12).await;
    let b_id = *nodes[1].local_peer_id();
    let b_ip: std::net::IpAddr = "127.0.0.12".parse().unwrap();
    let connected = |n: &[Node]| n[0].behaviour().pool().is_running(&b_id);
    nodes[0].behaviour_mut().connect(&b_addr).unwrap();
    drive(&mut nodes, connected).await;

    nodes[0].behaviour_mut().ban_peer(&b_id);
    assert!(nodes[0].behaviour().pool().acl().is_peer_banned(&b_id));
    drive(&mut nodes, |n| !connected(n)).await;
    hold(&mut nodes, Duration::from_secs(1), |n| {
        assert!(!connected(n))
    })
    .await;

    nodes[0].behaviour_mut().unban_peer(&b_id);
    assert!(!nodes[0].behaviour().pool().acl().is_peer_banned(&b_id));
    nodes[0].behaviour_mut().connect(&b_addr).ok();
    drive(&mut nodes, connected).await;

    let ban = nodes[0].behaviour_mut().ban_ip(b_ip, true);
    assert_eq!((ban.disconnected, ban.banned), (vec![b_id], vec![b_id]));
    drive(&mut nodes, |n| !connected(n)).await;
    assert_eq!(
        nodes[0].behaviour_mut().connect(&b_addr),
        Err(pool::Error::IpBanned(b_ip))
    );
    let unban = nodes[0].behaviour_mut().unban_ip(b_ip);
    assert_eq!(unban.unbanned, vec![b_id]);
    assert!(!nodes[0].behaviour().pool().acl().is_peer_banned(&b_id));
    nodes[0].behaviour_mut().connect(&b_addr).ok();
    drive(&mut nodes, connected).await;
}
