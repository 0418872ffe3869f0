use std::time::Duration;

use rand::{SeedableRng, rngs::StdRng};

use super::*;
use crate::pool::Medium;
use multiaddr::Protocol;

fn point(i: u32) -> Multiaddr {
    format!("/ip4/10.0.{}.{}/tcp/9732", i / 256, i % 256)
        .parse()
        .unwrap()
}

fn pool(config: Config) -> Pool {
    Pool::new(PeerId::random(), config)
}

fn remote() -> Multiaddr {
    "/ip4/192.0.2.1/tcp/40000".parse().unwrap()
}

/// Registers `addr` as announced by its own peer (its `/p2p` suffix, else a fresh peer), as an
/// advertisable point.
fn announce(pool: &mut Pool, addr: &Multiaddr, now: Instant) -> usize {
    let (point, peer) = split_point(addr).unwrap();
    pool.set_announced_points(peer.unwrap_or_else(PeerId::random), &[point], true, now)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn failed_dial_returns_point_to_disconnected_with_backoff() {
    let mut rng = StdRng::seed_from_u64(0);
    let mut pool = pool(Config::new().with_backoff(Backoff::new().with_jitter(0.0)));
    let t0 = Instant::now();
    let p = pool.add_trusted_point(&point(1), t0).unwrap();
    assert_eq!(pool.set_requested(&p, t0), Ok(None));
    assert_eq!(pool.requested(), 1);
    assert!(matches!(
        pool.set_requested(&p, t0),
        Err(Error::NotDisconnected {
            state: "requested",
            ..
        })
    ));
    pool.dial_failed(&p, t0, &mut rng);
    assert_eq!(pool.point(&p).unwrap().state(), point::State::Disconnected);
    assert_eq!(pool.requested(), 0);
    // In its 1 s backoff (inclusive), then a candidate again in a later round.
    assert!(
        pool.candidates(t0 + secs(1), t0 + secs(1), 10, usize::MAX, 0, |_| false)
            .is_empty()
    );
    let later = t0 + secs(2);
    assert_eq!(
        pool.candidates(later, later, 10, usize::MAX, 0, |_| false),
        vec![p.clone()]
    );
    // A failure during the current round keeps it out of that round.
    assert!(
        pool.candidates(later, t0 - secs(1), 10, usize::MAX, 0, |_| false)
            .is_empty()
    );
    // Wrong peer: the hint goes, the backoff grows.
    pool.set_requested(&p, t0).unwrap();
    pool.dial_wrong_peer(&p, later, &mut rng);
    let info = pool.point(&p).unwrap();
    assert_eq!(info.state(), point::State::Disconnected);
    assert_eq!(
        info.reconnection().unwrap().end,
        later + Duration::from_secs_f64(1.2)
    );
}

#[test]
fn dial_aborted_is_not_a_failure() {
    let mut pool = pool(Config::new());
    let t0 = Instant::now();
    let p = pool.add_trusted_point(&point(1), t0).unwrap();
    pool.set_requested(&p, t0).unwrap();
    pool.dial_aborted(&p);
    let info = pool.point(&p).unwrap();
    assert_eq!(info.state(), point::State::Disconnected);
    assert_eq!(info.last_failed_connection(), None);
    assert_eq!(
        pool.candidates(t0, t0, 10, usize::MAX, 0, |_| false),
        vec![p]
    );
}

#[test]
fn trusted_point_keeps_expected_peer_id() {
    let mut pool = pool(Config::new());
    let peer = PeerId::random();
    let addr: Multiaddr = format!("{}/p2p/{peer}", point(3)).parse().unwrap();
    let t0 = Instant::now();
    let p = pool.add_trusted_point(&addr, t0).unwrap();
    assert_eq!(p, point(3));
    let info = pool.point(&p).unwrap();
    assert!(info.is_trusted());
    assert_eq!(info.expected_peer_id(), Some(peer));
    assert_eq!(pool.set_requested(&p, t0), Ok(Some(peer)));
    let own: Multiaddr = format!("{}/p2p/{}", point(4), pool.local_peer_id())
        .parse()
        .unwrap();
    assert_eq!(
        pool.add_trusted_point(&own, Instant::now()),
        Err(Error::OwnPoint(own))
    );
}

#[test]
fn connections_count_peers_once() {
    let mut rng = StdRng::seed_from_u64(0);
    let mut pool = pool(Config::new());
    let t0 = Instant::now();
    let p = pool.add_trusted_point(&point(1), t0).unwrap();
    let peer = PeerId::random();
    pool.set_requested(&p, t0).unwrap();
    assert!(pool.connection_established(peer, Some(&p), &remote(), t0));
    assert!(!pool.connection_established(peer, None, &remote(), t0));
    assert_eq!(pool.active(), 1);
    assert_eq!(pool.peer(&peer).unwrap().connections(), 2);
    assert_eq!(
        pool.point(&p).unwrap().state(),
        point::State::Running { peer_id: peer }
    );
    assert!(pool.is_trusted_peer(&peer));
    assert!(!pool.connection_closed(peer, None, false, t0 + secs(1), &mut rng));
    assert_eq!(pool.active(), 1);
    assert!(pool.connection_closed(peer, Some(&p), false, t0 + secs(2), &mut rng));
    assert_eq!(pool.active(), 0);
    assert_eq!(pool.peer(&peer).unwrap().state(), peer::State::Disconnected);
    assert_eq!(
        pool.point(&p).unwrap().last_disconnection(),
        Some((peer, t0 + secs(2)))
    );
    // Closing an unknown peer changes nothing.
    assert!(!pool.connection_closed(PeerId::random(), None, false, t0, &mut rng));
    assert_eq!(pool.active(), 0);
}

#[test]
fn own_points_are_never_registered() {
    let mut pool = pool(Config::new());
    let t0 = Instant::now();
    pool.register_list_of_new_points(None, Medium::Advertise, [&point(1)], t0);
    pool.add_own_point(&point(1));
    assert_eq!(pool.known_points(), 0);
    let own_id: Multiaddr = format!("{}/p2p/{}", point(2), pool.local_peer_id())
        .parse()
        .unwrap();
    assert_eq!(
        pool.register_list_of_new_points(None, Medium::Advertise, [&point(1), &own_id], t0),
        0
    );
    assert_eq!(pool.known_points(), 0);
    assert!(matches!(
        pool.add_trusted_point(&point(1), t0),
        Err(Error::OwnPoint(_))
    ));
}

#[test]
fn new_points_skip_undialable_and_keep_hints() {
    let mut pool = pool(Config::new());
    let t0 = Instant::now();
    let peer = PeerId::random();
    let hinted: Multiaddr = format!("{}/p2p/{peer}", point(5)).parse().unwrap();
    let bad: Multiaddr = "/ip4/0.0.0.0/tcp/1".parse().unwrap();
    assert_eq!(
        pool.register_list_of_new_points(None, Medium::Advertise, [&hinted, &bad, &point(6)], t0),
        2
    );
    assert_eq!(pool.point(&point(5)).unwrap().last_peer_id(), Some(peer));
    assert!(!pool.point(&point(5)).unwrap().is_known_public());
    // Re-registering is not new, but a peer announcing it makes it known-public.
    assert_eq!(announce(&mut pool, &hinted, t0), 0);
    assert!(pool.point(&point(5)).unwrap().is_known_public());
}

#[test]
fn points_with_their_peer_apart_keep_it_and_a_contradicting_suffix_is_skipped() {
    let mut pool = pool(Config::new());
    let t0 = Instant::now();
    let (a, b) = (PeerId::random(), PeerId::random());
    let suffixed: Multiaddr = format!("{}/p2p/{a}", point(8)).parse().unwrap();
    let new = pool.register_points(
        None,
        Medium::Advertise,
        [
            (&point(7), Some(a)),
            // The same peer twice is fine; another one is a contradiction.
            (&suffixed, Some(a)),
            (&suffixed.clone(), Some(b)),
            (&point(9), None),
        ],
        t0,
    );
    assert_eq!(new, 3);
    assert_eq!(pool.point(&point(7)).unwrap().last_peer_id(), Some(a));
    assert_eq!(pool.point(&point(8)).unwrap().last_peer_id(), Some(a));
    assert_eq!(pool.point(&point(9)).unwrap().last_peer_id(), None);
    let mut only_b = Pool::new(PeerId::random(), Config::new());
    assert_eq!(
        only_b.register_points(None, Medium::Advertise, [(&suffixed, Some(b))], t0),
        0
    );
}

/// The table never holds more than `high` (Octez can hold `high + 1`, #3175), the GC removes
/// down to `low`, oldest miss first, never-missed last, and never trusted or connected points.
#[test]
fn point_table_never_exceeds_high() {
    let mut rng = StdRng::seed_from_u64(0);
    let mut pool = pool(Config::new().with_max_known_points(Some((10, 6))));
    let t0 = Instant::now();
    let trusted = pool.add_trusted_point(&point(0), t0).unwrap();
    let running = point(1);
    pool.register_list_of_new_points(None, Medium::Advertise, [&running], t0);
    pool.set_requested(&running, t0).unwrap();
    pool.connection_established(PeerId::random(), Some(&running), &remote(), t0);
    // Points 2..=9 miss at increasing times, so point 2 has the oldest miss.
    for i in 2..10 {
        let p = point(i);
        pool.register_list_of_new_points(None, Medium::Advertise, [&p], t0);
        pool.set_requested(&p, t0).unwrap();
        pool.dial_failed(&p, t0 + secs(u64::from(i)), &mut rng);
    }
    assert_eq!(pool.known_points(), 10);
    pool.register_list_of_new_points(None, Medium::Advertise, [&point(100)], t0 + secs(20));
    // 10 -> GC to 6 (removes 4: points 2..=5) -> insert: 7.
    assert_eq!(pool.known_points(), 7);
    for i in 2..6 {
        assert!(pool.point(&point(i)).is_none(), "point {i} collected");
    }
    for i in 6..10 {
        assert!(pool.point(&point(i)).is_some(), "point {i} kept");
    }
    assert!(pool.point(&trusted).is_some() && pool.point(&running).is_some());
    for i in 200..300 {
        pool.register_list_of_new_points(None, Medium::Advertise, [&point(i)], t0 + secs(30));
        assert!(pool.known_points() <= 10);
    }
}

/// A table full of points that cannot be collected refuses untrusted points, not trusted ones
/// (which are never collected either).
#[test]
fn full_table_of_uncollectable_points_refuses_untrusted_points() {
    let mut pool = pool(Config::new().with_max_known_points(Some((3, 2))));
    let t0 = Instant::now();
    for i in 0..3 {
        pool.add_trusted_point(&point(i), t0).unwrap();
    }
    assert_eq!(
        pool.register_point(&point(9), None, None, t0),
        Err(Error::PointTableFull { high: 3 })
    );
    assert_eq!(
        pool.register_list_of_new_points(None, Medium::Advertise, [&point(10)], t0),
        0
    );
    assert_eq!(pool.known_points(), 3);
    assert_eq!(pool.add_trusted_point(&point(9), t0), Ok(point(9)));
    assert_eq!(pool.known_points(), 4);
}

#[test]
fn peer_gc_removes_newest_disconnected_first() {
    let mut rng = StdRng::seed_from_u64(0);
    let mut pool = pool(Config::new().with_max_known_peers(Some((4, 2))));
    let t0 = Instant::now();
    let peers: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
    for (i, p) in peers.iter().enumerate() {
        let t = t0 + secs(i as u64);
        pool.connection_established(*p, None, &remote(), t);
        if i > 0 {
            pool.connection_closed(*p, None, false, t, &mut rng);
        }
    }
    let newcomer = PeerId::random();
    pool.connection_established(newcomer, None, &remote(), t0 + secs(10));
    // 4 known -> GC to 2 removes the two newest disconnected (peers 3 and 2); the running
    // peer 0 and the oldest disconnected peer 1 stay.
    assert_eq!(pool.known_peers(), 3);
    assert!(pool.peer(&peers[0]).is_some());
    assert!(pool.peer(&peers[1]).is_some());
    assert!(pool.peer(&peers[2]).is_none());
    assert!(pool.peer(&peers[3]).is_none());
}

#[test]
fn candidates_prefer_never_missed_then_oldest_miss() {
    let mut rng = StdRng::seed_from_u64(0);
    let mut pool = pool(Config::new().with_backoff(Backoff::new().with_jitter(0.0)));
    let t0 = Instant::now();
    for i in 0..5 {
        pool.register_list_of_new_points(None, Medium::Advertise, [&point(i)], t0);
    }
    // Points 0 and 1 failed, point 1 earlier than point 0.
    for (i, at) in [(0, 5), (1, 3)] {
        pool.set_requested(&point(i), t0).unwrap();
        pool.dial_failed(&point(i), t0 + secs(at), &mut rng);
    }
    // Point 2 is being dialed; point 3's peer is already running through another connection.
    pool.set_requested(&point(2), t0).unwrap();
    let peer3 = PeerId::random();
    let hinted: Multiaddr = format!("{}/p2p/{peer3}", point(3)).parse().unwrap();
    pool.register_list_of_new_points(None, Medium::Advertise, [&hinted], t0);
    pool.connection_established(peer3, None, &remote(), t0);
    let now = t0 + secs(100);
    assert_eq!(
        pool.candidates(now, now, 10, usize::MAX, 0, |_| false),
        vec![point(4), point(1), point(0)]
    );
    assert_eq!(
        pool.candidates(now, now, 2, usize::MAX, 0, |_| false),
        vec![point(4), point(1)]
    );
}

#[test]
fn list_known_points_takes_30_best_and_20_random() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut pool = pool(Config::new());
    let t0 = Instant::now();
    // 100 known-public disconnected points, point i last seen at t0 + i s.
    for i in 0..100 {
        let p = point(i);
        pool.register_list_of_new_points(None, Medium::Advertise, [&p], t0);
        pool.set_requested(&p, t0).unwrap();
        let peer = PeerId::random();
        pool.connection_established(peer, Some(&p), &remote(), t0 + secs(u64::from(i)));
        pool.set_announced_points(peer, std::slice::from_ref(&p), true, t0);
        pool.connection_closed(peer, Some(&p), false, t0 + secs(u64::from(i)), &mut rng);
    }
    // Unverified points are never advertised.
    pool.register_list_of_new_points(None, Medium::Advertise, [&point(500)], t0);
    let list = pool.list_known_points(50, None, t0, &mut rng);
    assert_eq!(list.len(), 50);
    let points: Vec<Multiaddr> = list.iter().map(|a| split_point(a).unwrap().0).collect();
    // The 30 best: most recently seen first (99, 98, ..., 70).
    let best: Vec<Multiaddr> = (70..100).rev().map(point).collect();
    assert_eq!(points[..30], best[..]);
    let rest: HashSet<&Multiaddr> = points[30..].iter().collect();
    assert_eq!(rest.len(), 20, "no duplicates");
    assert!(rest.iter().all(|p| !best.contains(p)));
    assert!(!points.contains(&point(500)));
    assert!(list.iter().all(|a| split_point(a).unwrap().1.is_some()));
    // Small tables are returned whole.
    let mut small = super::tests::pool(Config::new());
    announce(&mut small, &point(1), t0);
    assert_eq!(small.list_known_points(50, None, t0, &mut rng).len(), 1);
}

#[test]
fn list_known_points_puts_connected_first_and_skips_requester() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut pool = pool(Config::new());
    let t0 = Instant::now();
    let requester = PeerId::random();
    let req_addr: Multiaddr = format!("{}/p2p/{requester}", point(9)).parse().unwrap();
    announce(&mut pool, &req_addr, t0);
    pool.connection_established(requester, None, &remote(), t0);
    let old = PeerId::random();
    let young = PeerId::random();
    for (i, peer, at) in [(1, old, 1), (2, young, 5)] {
        let a: Multiaddr = format!("{}/p2p/{peer}", point(i)).parse().unwrap();
        announce(&mut pool, &a, t0);
        pool.connection_established(peer, None, &remote(), t0 + secs(at));
    }
    let gone = PeerId::random();
    let a: Multiaddr = format!("{}/p2p/{gone}", point(3)).parse().unwrap();
    announce(&mut pool, &a, t0);
    let list = pool.list_known_points(50, Some(requester), t0, &mut rng);
    let points: Vec<Multiaddr> = list.iter().map(|a| split_point(a).unwrap().0).collect();
    assert_eq!(points, vec![point(1), point(2), point(3)]);
}

#[test]
fn nacked_connection_backs_off_as_a_failure() {
    let mut rng = StdRng::seed_from_u64(0);
    let mut pool = pool(Config::new().with_backoff(Backoff::new().with_jitter(0.0)));
    let t0 = Instant::now();
    let p = pool.add_trusted_point(&point(1), t0).unwrap();
    let peer = PeerId::random();
    pool.set_requested(&p, t0).unwrap();
    pool.connection_established(peer, Some(&p), &remote(), t0);
    assert!(pool.connection_nacked(peer, Some(&p), t0, &mut rng));
    assert_eq!(pool.active(), 0);
    let info = pool.point(&p).unwrap();
    assert_eq!(info.last_rejected_connection(), Some((peer, t0)));
    assert_eq!(info.reconnection().unwrap().end, t0 + secs(1));
    assert_eq!(
        pool.peer(&peer).unwrap().last_rejected_connection(),
        Some(&(remote(), t0))
    );
    assert_eq!(pool.peer(&peer).unwrap().last_disconnection(), None);
    let later = t0 + secs(2);
    assert_eq!(
        pool.candidates(later, later, 10, usize::MAX, 0, |_| false),
        vec![p]
    );
}

fn with_id(i: u32, peer: PeerId) -> Multiaddr {
    point(i).with(Protocol::P2p(peer))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn drain(pool: &mut Pool) -> Vec<Event> {
    std::iter::from_fn(|| pool.poll_event()).collect()
}

/// Octez §2: `Requested -> Accepted -> Running -> Disconnected`, with each step's record and log.
#[test]
fn point_and_peer_go_through_octez_states() {
    let mut rng = StdRng::seed_from_u64(0);
    let mut pool = pool(Config::new().with_backoff(Backoff::new().with_jitter(0.0)));
    let t0 = Instant::now();
    let peer = PeerId::random();
    let p = pool.register_point(&point(1), None, None, t0).unwrap();
    assert_eq!(
        drain(&mut pool),
        [Event::NewPoint {
            point: p.clone(),
            source: None,
            medium: Medium::Config
        }]
    );
    pool.set_requested(&p, t0).unwrap();
    pool.accept(peer, &p, Some(&p), t0, &mut rng).unwrap();
    assert_eq!(
        pool.point(&p).unwrap().state(),
        point::State::Accepted { peer_id: peer }
    );
    assert_eq!(pool.peer(&peer).unwrap().state(), peer::State::Accepted);
    assert_eq!(pool.active(), 0, "accepted is not counted");
    assert_eq!(drain(&mut pool), [Event::NewPeer(peer)]);
    assert!(pool.connection_established(peer, Some(&p), &p, t0 + secs(1)));
    assert_eq!(pool.peer(&peer).unwrap().state(), peer::State::Running);
    assert_eq!(
        pool.peer(&peer).unwrap().last_established_connection(),
        Some(&(p.clone(), t0 + secs(1)))
    );
    assert!(pool.connection_closed(peer, Some(&p), true, t0 + secs(11), &mut rng));
    let info = pool.point(&p).unwrap();
    assert_eq!(info.state(), point::State::Disconnected);
    assert_eq!(info.last_disconnection(), Some((peer, t0 + secs(11))));
    let kinds: Vec<LogKind> = info.events().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            LogKind::OutgoingRequest,
            LogKind::ConnectionEstablished,
            LogKind::ExternalDisconnection
        ]
    );
    let peer_info = pool.peer(&peer).unwrap();
    let kinds: Vec<LogKind> = peer_info.events().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            LogKind::AcceptingRequest,
            LogKind::ConnectionEstablished,
            LogKind::ExternalDisconnection
        ]
    );
    assert_eq!(peer_info.uptime(t0 + secs(100)), secs(10));
}

/// Octez §13: a dial refused after the handshake (banned peer, wrong peer ID, private mode)
/// left the point in `Requested` forever. Here every failure path returns it to
/// `Disconnected` with a backoff, and it is a candidate again once the backoff is over.
#[test]
fn no_failure_path_leaves_a_point_requested() {
    let mut rng = StdRng::seed_from_u64(0);
    let t0 = Instant::now();
    let banned = PeerId::random();
    let expected = PeerId::random();
    type Setup = Box<dyn Fn(&mut Pool, &Multiaddr)>;
    let cases: Vec<(&str, Config, Setup, PeerId)> = vec![
        (
            "peer banned",
            Config::new(),
            Box::new(move |pool: &mut Pool, _: &Multiaddr| pool.ban_peer(banned)),
            banned,
        ),
        (
            "wrong peer ID",
            Config::new(),
            Box::new(move |pool: &mut Pool, p: &Multiaddr| {
                pool.set_expected_peer_id(p, expected, t0).unwrap();
            }),
            PeerId::random(),
        ),
        (
            "private mode",
            Config::new().with_private_mode(true),
            Box::new(|_: &mut Pool, _: &Multiaddr| {}),
            PeerId::random(),
        ),
    ];
    for (name, config, setup, remote_peer) in cases {
        let mut pool = pool(config.with_backoff(Backoff::new().with_jitter(0.0)));
        let p = pool.register_point(&point(1), None, None, t0).unwrap();
        setup(&mut pool, &p);
        pool.set_requested(&p, t0).unwrap();
        assert!(
            pool.accept(remote_peer, &p, Some(&p), t0, &mut rng)
                .is_err(),
            "{name}"
        );
        let info = pool.point(&p).unwrap();
        assert_eq!(info.state(), point::State::Disconnected, "{name}");
        assert_eq!(info.last_failed_connection(), Some(t0), "{name}");
        assert_eq!(info.reconnection().unwrap().end, t0 + secs(1), "{name}");
        assert_eq!(pool.requested(), 0, "{name}");
        // Another behaviour refusing after us, then the swarm's failure report: idempotent.
        pool.dial_failed(&p, t0, &mut rng);
        assert_eq!(
            pool.point(&p).unwrap().reconnection().unwrap().end,
            t0 + secs(1)
        );
    }
    // Refused by another part of the node after our admission.
    let mut pool = pool(Config::new().with_backoff(Backoff::new().with_jitter(0.0)));
    let p = pool.register_point(&point(2), None, None, t0).unwrap();
    let peer = PeerId::random();
    pool.set_requested(&p, t0).unwrap();
    pool.accept(peer, &p, Some(&p), t0, &mut rng).unwrap();
    pool.accept_failed(peer, Some(&p), t0, &mut rng);
    assert_eq!(pool.point(&p).unwrap().state(), point::State::Disconnected);
    assert_eq!(pool.peer(&peer).unwrap().state(), peer::State::Disconnected);
    assert_eq!(pool.peer(&peer).unwrap().failures(), 1);
}

#[test]
fn events_keep_the_last_100() {
    let mut rng = StdRng::seed_from_u64(0);
    let mut pool = pool(Config::new());
    let t0 = Instant::now();
    let p = pool.register_point(&point(1), None, None, t0).unwrap();
    for i in 0..60 {
        pool.set_requested(&p, t0 + secs(i)).unwrap();
        pool.dial_failed(&p, t0 + secs(i), &mut rng);
    }
    let info = pool.point(&p).unwrap();
    assert_eq!(info.events().len(), LOG_SIZE);
    assert_eq!(
        info.events().next().unwrap().at,
        t0 + secs(10),
        "the oldest went"
    );
    assert_eq!(info.events().last().unwrap().at, t0 + secs(59));
}

#[test]
fn register_and_unregister_points() {
    let mut pool = pool(Config::new());
    let t0 = Instant::now();
    let expected = PeerId::random();
    let p = pool
        .register_point(&point(1), Some(true), Some(expected), t0)
        .unwrap();
    assert!(pool.point(&p).unwrap().is_trusted());
    assert_eq!(pool.point(&p).unwrap().expected_peer_id(), Some(expected));
    // Registering again without flags changes nothing; with `Some(false)` it untrusts.
    pool.register_point(&point(1), None, None, t0).unwrap();
    assert!(pool.point(&p).unwrap().is_trusted());
    pool.register_point(&point(1), Some(false), None, t0)
        .unwrap();
    assert!(!pool.point(&p).unwrap().is_trusted());
    let source = PeerId::random();
    assert!(pool.register_new_point(&point(2), Some(source), Medium::Nack, t0));
    assert!(!pool.register_new_point(&point(2), Some(source), Medium::Nack, t0));
    assert!(drain(&mut pool).contains(&Event::NewPoint {
        point: point(2),
        source: Some(source),
        medium: Medium::Nack
    }));
    assert!(pool.unregister_point(&point(2)));
    assert!(pool.point(&point(2)).is_none());
    assert!(!pool.unregister_point(&point(2)));
    assert!(matches!(
        pool.register_point(&"/ip4/1.2.3.4".parse().unwrap(), None, None, t0),
        Err(Error::Point(PointError::NoPort(_)))
    ));
}

/// Octez `set_expected_peer_id` on a live mismatch: the IP is greylisted *then* the peer is
/// disconnected, and the point is refused from then on.
#[test]
fn wrong_expected_peer_id_greylists_then_disconnects() {
    let mut rng = StdRng::seed_from_u64(0);
    let mut pool = pool(Config::new());
    let t0 = Instant::now();
    let actual = PeerId::random();
    let p = pool.register_point(&point(7), None, None, t0).unwrap();
    pool.set_requested(&p, t0).unwrap();
    pool.accept(actual, &p, Some(&p), t0, &mut rng).unwrap();
    pool.connection_established(actual, Some(&p), &p, t0);
    drain(&mut pool);
    // The right one changes nothing.
    pool.set_expected_peer_id(&p, actual, t0).unwrap();
    assert!(drain(&mut pool).is_empty());
    assert!(!pool.is_point_banned(&p, t0));
    let wrong = PeerId::random();
    pool.set_expected_peer_id(&p, wrong, t0).unwrap();
    assert!(pool.is_point_banned(&p, t0), "greylisted");
    assert_eq!(
        drain(&mut pool),
        [Event::Disconnect {
            peer: actual,
            reason: DisconnectReason::UnexpectedPeerId
        }]
    );
    pool.connection_closed(actual, Some(&p), false, t0, &mut rng);
    assert!(
        pool.candidates(t0 + secs(100), t0 + secs(100), 10, usize::MAX, 0, |_| false)
            .is_empty()
    );
    assert_eq!(
        pool.connect(&p, t0),
        Err(Error::IpBanned(ip_of(&p).unwrap()))
    );
    // A peer announced at the point through identify (an inbound connection) counts too.
    let mut pool = super::tests::pool(Config::new());
    let inbound = PeerId::random();
    let remote: Multiaddr = "/ip4/10.0.0.8/tcp/50123".parse().unwrap();
    pool.accept(inbound, &remote, None, t0, &mut rng).unwrap();
    pool.connection_established(inbound, None, &remote, t0);
    pool.set_announced_points(inbound, &[point(8)], true, t0);
    drain(&mut pool);
    pool.set_expected_peer_id(&point(8), PeerId::random(), t0)
        .unwrap();
    assert_eq!(
        drain(&mut pool),
        [Event::Disconnect {
            peer: inbound,
            reason: DisconnectReason::UnexpectedPeerId
        }]
    );
}

#[test]
fn admission_refuses_banned_ips_and_peers_in_octez_order() {
    let mut rng = StdRng::seed_from_u64(0);
    let mut pool = pool(Config::new());
    let t0 = Instant::now();
    let peer = PeerId::random();
    let from: Multiaddr = "/ip4/10.0.0.9/tcp/40000".parse().unwrap();
    pool.greylist_ip(ip("10.0.0.9"), t0);
    pool.ban_peer(peer);
    assert_eq!(
        pool.accept(peer, &from, None, t0, &mut rng),
        Err(Error::IpBanned(ip("10.0.0.9"))),
        "the IP is checked first"
    );
    pool.clear_greylist();
    assert_eq!(
        pool.accept(peer, &from, None, t0, &mut rng),
        Err(Error::PeerBanned(peer))
    );
    pool.unban_peer(&peer);
    assert_eq!(pool.accept(peer, &from, None, t0, &mut rng), Ok(()));
    // The greylist expires after its cleanup delay (1 day by default).
    let other = PeerId::random();
    pool.greylist_ip(ip("10.0.0.9"), t0);
    assert!(
        pool.accept(other, &from, None, t0 + secs(86_399), &mut rng)
            .is_err()
    );
    assert!(
        pool.accept(other, &from, None, t0 + secs(86_400), &mut rng)
            .is_ok()
    );
}

/// An IP ban bans and untrusts the peers connected from it; the unban undoes both, after
/// those peers are gone (Octez's `unban` leaves them banned: a node whose peers all came from
/// the IP stayed without them).
#[test]
fn unbanning_an_ip_undoes_what_its_ban_did_to_peers() {
    let mut rng = StdRng::seed_from_u64(0);
    let mut pool = pool(Config::new());
    let t0 = Instant::now();
    let [a, b, c] = std::array::from_fn(|_| PeerId::random());
    let remote: Multiaddr = "/ip4/10.0.0.1/tcp/40000".parse().unwrap();
    for peer in [a, b] {
        pool.accept(peer, &remote, None, t0, &mut rng).unwrap();
        pool.connection_established(peer, None, &remote, t0);
    }
    pool.trust_peer(a, t0);
    // Already banned on its own: the IP's unban must not unban it.
    pool.accept(c, &remote, None, t0, &mut rng).unwrap();
    pool.connection_established(c, None, &remote, t0);
    pool.ban_peer(c);
    drain(&mut pool);
    let ban = pool.ban_ip(ip("10.0.0.1"), true);
    let mut disconnected = ban.disconnected.clone();
    disconnected.sort();
    let mut all = vec![a, b, c];
    all.sort();
    assert_eq!(disconnected, all);
    let mut banned = ban.banned.clone();
    banned.sort();
    let mut ab = vec![a, b];
    ab.sort();
    assert_eq!(banned, ab, "c was banned already");
    assert_eq!(ban.untrusted, vec![a]);
    assert!(!pool.is_trusted_peer(&a));
    // The disconnections happen: nobody is connected from the IP any more.
    for peer in [a, b, c] {
        pool.connection_closed(peer, None, false, t0, &mut rng);
    }
    let unban = pool.unban_ip(ip("10.0.0.1"));
    let mut unbanned = unban.unbanned.clone();
    unbanned.sort();
    assert_eq!(unbanned, ab);
    assert_eq!(unban.trusted, vec![a]);
    assert!(!pool.is_peer_banned(&a) && !pool.is_peer_banned(&b));
    assert!(pool.is_trusted_peer(&a));
    assert!(pool.is_peer_banned(&c), "banned on its own, not by the IP");
    assert!(!pool.is_ip_banned(ip("10.0.0.1"), t0));
    // Undone once: a second unban changes nothing.
    assert_eq!(pool.unban_ip(ip("10.0.0.1")), IpUnban::default());
}

/// Octez `Points.ban`: the IP is blacklisted, its running peers disconnected and banned;
/// `unban` lifts both.
#[test]
fn banning_an_ip_disconnects_and_bans_its_peers() {
    let mut rng = StdRng::seed_from_u64(0);
    let mut pool = pool(Config::new());
    let t0 = Instant::now();
    let [a, b, c] = std::array::from_fn(|_| PeerId::random());
    for (peer, from) in [(a, "10.0.0.1"), (b, "10.0.0.1"), (c, "10.0.0.2")] {
        let remote: Multiaddr = format!("/ip4/{from}/tcp/40000").parse().unwrap();
        pool.accept(peer, &remote, None, t0, &mut rng).unwrap();
        pool.connection_established(peer, None, &remote, t0);
    }
    drain(&mut pool);
    pool.ban_ip(ip("10.0.0.1"), true);
    let mut disconnected: Vec<PeerId> = drain(&mut pool)
        .into_iter()
        .map(|e| match e {
            Event::Disconnect {
                peer,
                reason: DisconnectReason::Banned,
            } => peer,
            other => panic!("{other:?}"),
        })
        .collect();
    disconnected.sort();
    let mut expected = vec![a, b];
    expected.sort();
    assert_eq!(disconnected, expected);
    assert!(pool.is_peer_banned(&a) && pool.is_peer_banned(&b));
    assert!(!pool.is_peer_banned(&c));
    assert!(pool.acl().is_ip_blacklisted(ip("10.0.0.1")));
    pool.unban_ip(ip("10.0.0.1"));
    assert!(
        !pool.is_peer_banned(&a),
        "peers connected from it are unbanned"
    );
    assert!(!pool.is_ip_banned(ip("10.0.0.1"), t0));
    // Trust unbans; ban untrusts.
    pool.ban_peer(c);
    assert_eq!(
        drain(&mut pool),
        [Event::Disconnect {
            peer: c,
            reason: DisconnectReason::Banned
        }]
    );
    pool.trust_peer(c, t0);
    assert!(!pool.is_peer_banned(&c) && pool.peer(&c).unwrap().is_trusted());
    pool.ban_peer(c);
    assert!(pool.is_peer_banned(&c) && !pool.peer(&c).unwrap().is_trusted());
}

/// Octez's `greylist_peer` found the IP through the running connection only, and its reader
/// disconnected first, so nothing was greylisted (§13). Here the IP of the last connection is
/// used, and the disconnection comes after.
#[test]
fn greylisting_a_gone_peer_still_greylists_it_and_its_ip() {
    let mut rng = StdRng::seed_from_u64(0);
    let mut pool = pool(Config::new());
    let t0 = Instant::now();
    let peer = PeerId::random();
    let remote: Multiaddr = "/ip4/10.0.0.5/tcp/40000".parse().unwrap();
    pool.accept(peer, &remote, None, t0, &mut rng).unwrap();
    pool.connection_established(peer, None, &remote, t0);
    pool.connection_closed(peer, None, true, t0, &mut rng);
    drain(&mut pool);
    pool.greylist_peer(peer, t0);
    assert!(pool.is_peer_banned(&peer));
    assert!(pool.is_ip_banned(ip("10.0.0.5"), t0));
    assert!(drain(&mut pool).is_empty(), "nothing to disconnect");
    // A running one is disconnected, after being greylisted.
    let other = PeerId::random();
    let remote: Multiaddr = "/ip4/10.0.0.6/tcp/40000".parse().unwrap();
    pool.accept(other, &remote, None, t0, &mut rng).unwrap();
    pool.connection_established(other, None, &remote, t0);
    drain(&mut pool);
    pool.greylist_peer(other, t0);
    assert!(pool.is_peer_banned(&other) && pool.is_ip_banned(ip("10.0.0.6"), t0));
    assert_eq!(
        drain(&mut pool),
        [Event::Disconnect {
            peer: other,
            reason: DisconnectReason::Greylisted
        }]
    );
    pool.acl_clear();
    assert!(!pool.is_peer_banned(&other) && !pool.is_ip_banned(ip("10.0.0.6"), t0));
}

/// Octez private mode: only trusted points are dialed, only trusted peers (or peers at a
/// trusted point) are admitted, nothing is advertised.
#[test]
fn private_mode_admits_and_dials_trusted_only() {
    let mut rng = StdRng::seed_from_u64(0);
    let mut pool = pool(Config::new().with_private_mode(true));
    let t0 = Instant::now();
    let friend = PeerId::random();
    let trusted = pool.add_trusted_point(&with_id(1, friend), t0).unwrap();
    pool.register_list_of_new_points(None, Medium::Advertise, [&point(2)], t0);
    assert_eq!(
        pool.candidates(t0, t0, 10, usize::MAX, 0, |_| false),
        vec![trusted.clone()]
    );
    assert!(matches!(
        pool.connect(&point(2), t0),
        Err(Error::PrivateMode(_))
    ));
    let stranger = PeerId::random();
    let from: Multiaddr = "/ip4/10.0.9.9/tcp/40000".parse().unwrap();
    assert!(matches!(
        pool.accept(stranger, &from, None, t0, &mut rng),
        Err(Error::PrivateMode(_))
    ));
    assert_eq!(
        pool.accept(friend, &from, None, t0, &mut rng),
        Ok(()),
        "expected at a trusted point"
    );
    pool.connection_established(friend, None, &from, t0);
    pool.set_announced_points(friend, &[point(1)], true, t0);
    pool.trust_peer(stranger, t0);
    assert_eq!(pool.accept(stranger, &from, None, t0, &mut rng), Ok(()));
    assert!(pool.list_known_points(50, None, t0, &mut rng).is_empty());
}

/// Octez's `Known_Points_GC` integration scenario with `max_known_points = (0, 0)`: trusted
/// points survive, untrusted ones go.
#[test]
fn zero_point_table_keeps_only_trusted_points() {
    let mut pool = pool(Config::new().with_max_known_points(Some((0, 0))));
    let t0 = Instant::now();
    // Trusted preservation: 6 trusted points are all known, and nothing else.
    for i in 0..6 {
        pool.trust_point(&point(i), t0).unwrap();
    }
    pool.register_list_of_new_points(None, Medium::Advertise, [&point(50), &point(51)], t0);
    assert_eq!(pool.known_points(), 6);
    // Non-trusted removal: trust A and 3 others, untrust the 3, trust B: only A and B remain.
    let mut pool = super::tests::pool(Config::new().with_max_known_points(Some((0, 0))));
    pool.trust_point(&point(100), t0).unwrap();
    for i in 1..=3 {
        pool.trust_point(&point(100 + i), t0).unwrap();
    }
    for i in 1..=3 {
        assert!(pool.untrust_point(&point(100 + i)));
    }
    pool.trust_point(&point(200), t0).unwrap();
    let mut known: Vec<Multiaddr> = pool.points().map(|(a, _)| a.clone()).collect();
    known.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
    let mut expected = vec![point(100), point(200)];
    expected.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
    assert_eq!(known, expected);
    assert!(drain(&mut pool).contains(&Event::GcPoints(3)));
}

/// The peer GC removes the lowest score first, then the newest.
#[test]
fn peer_gc_uses_the_score() {
    let mut rng = StdRng::seed_from_u64(0);
    let score = Score::new(|info, _| info.tag_value() as f64);
    let mut pool = pool(
        Config::new()
            .with_max_known_peers(Some((3, 1)))
            .with_score(score),
    );
    let t0 = Instant::now();
    let peers: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
    for (i, p) in peers.iter().enumerate() {
        pool.connection_established(*p, None, &remote(), t0 + secs(i as u64));
        pool.connection_closed(*p, None, false, t0 + secs(i as u64), &mut rng);
    }
    pool.set_tag_value(&peers[0], 10);
    pool.set_tag_value(&peers[1], -5);
    pool.set_tag_value(&peers[2], 10);
    pool.register_peer(PeerId::random(), t0 + secs(10)).unwrap();
    // 3 -> 1: peer 1 (lowest score), then peer 2 (same score as peer 0, newer).
    assert!(pool.peer(&peers[0]).is_some());
    assert!(pool.peer(&peers[1]).is_none());
    assert!(pool.peer(&peers[2]).is_none());
    assert_eq!(pool.known_peers(), 2);
    assert!(drain(&mut pool).contains(&Event::GcPeers(2)));
}

#[test]
fn standard_score_rewards_uptime_and_tags_and_punishes_failures_and_latency() {
    let mut rng = StdRng::seed_from_u64(0);
    let mut pool = pool(Config::new());
    let t0 = Instant::now();
    let [steady, flaky] = std::array::from_fn(|_| PeerId::random());
    pool.connection_established(steady, None, &remote(), t0);
    pool.set_tag_value(&steady, 50);
    pool.set_latency(&steady, Duration::from_millis(20));
    let p = pool
        .register_point(&with_id(3, flaky), None, None, t0)
        .unwrap();
    pool.register_peer(flaky, t0).unwrap();
    for i in 0..4 {
        pool.set_requested(&p, t0 + secs(i * 100)).unwrap();
        pool.dial_failed(&p, t0 + secs(i * 100), &mut rng);
    }
    let now = t0 + secs(12 * 3600);
    let s = pool.score(&steady, now).unwrap();
    assert!((s - (1.0 + 0.5 + 0.5 - 0.02)).abs() < 1e-9, "{s}");
    let f = pool.score(&flaky, now).unwrap();
    assert!((f - (1.0 - 0.4)).abs() < 1e-9, "{f}");
    assert_eq!(pool.peer(&flaky).unwrap().failures(), 4);
    assert_eq!(
        pool.peer(&flaky).unwrap().last_failed_connection(),
        Some(&(p.clone(), t0 + secs(300)))
    );
}

#[test]
fn banned_points_and_peers_are_neither_dialed_nor_advertised() {
    let mut rng = StdRng::seed_from_u64(0);
    let mut pool = pool(Config::new());
    let t0 = Instant::now();
    let [a, b] = std::array::from_fn(|_| PeerId::random());
    announce(&mut pool, &with_id(1, a), t0);
    announce(&mut pool, &with_id(2, b), t0);
    announce(&mut pool, &point(3), t0);
    pool.ban_peer(a);
    pool.greylist_ip(ip_of(&point(2)).unwrap(), t0);
    assert_eq!(
        pool.candidates(t0, t0, 10, usize::MAX, 0, |_| false),
        vec![point(3)]
    );
    let listed: Vec<Multiaddr> = pool
        .list_known_points(50, None, t0, &mut rng)
        .iter()
        .map(|a| split_point(a).unwrap().0)
        .collect();
    assert_eq!(listed, vec![point(3)]);
}

#[test]
fn restored_peers_bypass_the_gc_and_register_their_last_point() {
    let mut pool = pool(Config::new().with_max_known_peers(Some((1, 1))));
    let t0 = Instant::now();
    let [a, b] = std::array::from_fn(|_| PeerId::random());
    for (peer, i) in [(a, 1), (b, 2)] {
        let mut record = peer::Record::new(t0);
        record.trusted = i == 2;
        record.last_established_connection = Some((point(i), t0));
        pool.restore_peer(peer, record, t0);
    }
    assert_eq!(pool.known_peers(), 2);
    assert!(pool.peer(&b).unwrap().is_trusted());
    assert_eq!(pool.point(&point(1)).unwrap().last_peer_id(), Some(a));
    assert_eq!(pool.peer(&a).unwrap().state(), peer::State::Disconnected);
}

/// Greylisting is logged, once per call, at info: an operator sees it without the metrics.
#[test]
fn greylisting_is_logged() {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let mut rng = StdRng::seed_from_u64(0);
    let mut pool = pool(Config::new());
    let t0 = Instant::now();
    let peer = PeerId::random();
    let remote: Multiaddr = "/ip4/10.0.0.7/tcp/40000".parse().unwrap();
    pool.accept(peer, &remote, None, t0, &mut rng).unwrap();
    pool.connection_established(peer, None, &remote, t0);
    tracing::subscriber::with_default(subscriber, || {
        pool.greylist_peer(peer, t0);
        pool.greylist_ip(ip("10.0.0.8"), t0);
    });
    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = logs.lines().collect();
    assert_eq!(lines.len(), 2, "{logs}");
    assert!(
        lines[0].contains("INFO")
            && lines[0].contains("greylisted, with its IP")
            && lines[0].contains(&peer.to_string())
            && lines[0].contains("10.0.0.7"),
        "{logs}"
    );
    assert!(
        lines[1].contains("greylisted") && lines[1].contains("10.0.0.8"),
        "{logs}"
    );
}

thread_local! {
    /// Makes every peer's key in the pool's point index the same ([`super::peer_key`]), to test
    /// what a collision does.
    pub(super) static ALL_KEYS_COLLIDE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

mod announced {
    //! [`Pool::set_announced_points`] marks every point that names the peer, whatever happened
    //! to the points before: the index it walks (`peer_points`) against a walk of every point.

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        /// A third party tells of point `point` as peer `peer`'s.
        Hear { point: u32, peer: usize },
        /// We dial point `point`, reaching peer `peer`.
        Dial { point: u32, peer: usize },
        /// The connection to point `point` closes.
        Close { point: u32 },
        /// Peer `peer` announces point `point`, public or not.
        Announce {
            point: u32,
            peer: usize,
            public: bool,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        let point = 0..24u32;
        let peer = 0..6usize;
        prop_oneof![
            (point.clone(), peer.clone()).prop_map(|(point, peer)| Op::Hear { point, peer }),
            (point.clone(), peer.clone()).prop_map(|(point, peer)| Op::Dial { point, peer }),
            point.clone().prop_map(|point| Op::Close { point }),
            (point, peer, any::<bool>()).prop_map(|(point, peer, public)| Op::Announce {
                point,
                peer,
                public
            }),
        ]
    }

    proptest! {
        #[test]
        fn every_point_naming_the_peer_gets_its_flag(
            ops in proptest::collection::vec(op(), 1..400),
            collide in any::<bool>(),
        ) {
            // With `collide`, every peer has the same key in the index, as peers whose keys
            // collide do: one entry holds all their points.
            ALL_KEYS_COLLIDE.set(collide);
            // A small table, so that the GC removes points and the index goes stale.
            let mut pool = pool(Config::default().with_max_known_points(Some((16, 12))));
            let peers: Vec<PeerId> = (0..6).map(|_| PeerId::random()).collect();
            let mut rng = StdRng::seed_from_u64(1);
            let mut now = Instant::now();
            for op in ops {
                now += secs(1);
                match op {
                    Op::Hear { point: p, peer } => {
                        let source = Some(PeerId::random());
                        let addr = with_id(p, peers[peer]);
                        pool.register_points(source, Medium::Advertise, [(&addr, None)], now);
                    }
                    Op::Dial { point: p, peer } => {
                        let _ = pool.register_points(None, Medium::Advertise, [(&point(p), None)], now);
                        if pool.set_requested(&point(p), now).is_ok()
                            && pool.accept(peers[peer], &point(p), Some(&point(p)), now, &mut rng).is_ok()
                        {
                            pool.connection_established(peers[peer], Some(&point(p)), &point(p), now);
                        }
                    }
                    Op::Close { point: p } => {
                        if let Some(peer) = pool.point(&point(p)).and_then(|i| i.state().peer_id()) {
                            pool.connection_closed(peer, Some(&point(p)), false, now, &mut rng);
                        }
                    }
                    Op::Announce { point: p, peer, public } => {
                        let peer = peers[peer];
                        pool.set_announced_points(peer, &[point(p)], public, now);
                        for (addr, info) in pool.points() {
                            if info.last_peer_id() == Some(peer) || info.state().peer_id() == Some(peer) {
                                prop_assert_eq!(info.is_known_public(), public, "{}", addr);
                            }
                        }
                    }
                }
                prop_assert!(pool.peer_points_len <= 2 * pool.known_points() + 64);
            }
        }
    }
}

#[test]
fn close_reasons_serialize_under_their_names() {
    let mut names = HashSet::new();
    for reason in CloseReason::ALL {
        let value = serde_json::to_value(reason).unwrap();
        assert_eq!(value, serde_json::json!(reason.as_str()));
        assert_eq!(
            serde_json::from_value::<CloseReason>(value).unwrap(),
            reason
        );
        assert!(names.insert(reason.as_str()), "{reason} twice");
    }
}
