use std::time::Duration;

use rand::{SeedableRng, rngs::StdRng};

use super::*;

fn point(i: u32) -> Multiaddr {
    format!("/ip4/10.0.{}.{}/tcp/9732", i / 256, i % 256)
        .parse()
        .unwrap()
}

fn pool(config: Config) -> Pool {
    Pool::new(PeerId::random(), config)
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
    assert_eq!(pool.set_requested(&p), Ok(None));
    assert_eq!(pool.requested(), 1);
    assert!(matches!(
        pool.set_requested(&p),
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
        pool.candidates(t0 + secs(1), t0 + secs(1), 10, |_| false)
            .is_empty()
    );
    let later = t0 + secs(2);
    assert_eq!(
        pool.candidates(later, later, 10, |_| false),
        vec![p.clone()]
    );
    // A failure during the current round keeps it out of that round.
    assert!(
        pool.candidates(later, t0 - secs(1), 10, |_| false)
            .is_empty()
    );
    // Wrong peer: the hint goes, the backoff grows.
    pool.set_requested(&p).unwrap();
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
    pool.set_requested(&p).unwrap();
    pool.dial_aborted(&p);
    let info = pool.point(&p).unwrap();
    assert_eq!(info.state(), point::State::Disconnected);
    assert_eq!(info.last_failed_connection(), None);
    assert_eq!(pool.candidates(t0, t0, 10, |_| false), vec![p]);
}

#[test]
fn trusted_point_keeps_expected_peer_id() {
    let mut pool = pool(Config::new());
    let peer = PeerId::random();
    let addr: Multiaddr = format!("{}/p2p/{peer}", point(3)).parse().unwrap();
    let p = pool.add_trusted_point(&addr, Instant::now()).unwrap();
    assert_eq!(p, point(3));
    let info = pool.point(&p).unwrap();
    assert!(info.is_trusted());
    assert_eq!(info.expected_peer_id(), Some(peer));
    assert_eq!(pool.set_requested(&p), Ok(Some(peer)));
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
    pool.set_requested(&p).unwrap();
    assert!(pool.connection_established(peer, Some(&p), t0));
    assert!(!pool.connection_established(peer, None, t0));
    assert_eq!(pool.active(), 1);
    assert_eq!(pool.peer(&peer).unwrap().connections(), 2);
    assert_eq!(
        pool.point(&p).unwrap().state(),
        point::State::Running { peer_id: peer }
    );
    assert!(pool.is_trusted_peer(&peer));
    assert!(!pool.connection_closed(peer, None, t0 + secs(1), &mut rng));
    assert_eq!(pool.active(), 1);
    assert!(pool.connection_closed(peer, Some(&p), t0 + secs(2), &mut rng));
    assert_eq!(pool.active(), 0);
    assert_eq!(pool.peer(&peer).unwrap().state(), peer::State::Disconnected);
    assert_eq!(
        pool.point(&p).unwrap().last_disconnection(),
        Some((peer, t0 + secs(2)))
    );
    // Closing an unknown peer changes nothing.
    assert!(!pool.connection_closed(PeerId::random(), None, t0, &mut rng));
    assert_eq!(pool.active(), 0);
}

#[test]
fn own_points_are_never_registered() {
    let mut pool = pool(Config::new());
    let t0 = Instant::now();
    pool.register_new_points([&point(1)], false, t0);
    pool.add_own_point(&point(1));
    assert_eq!(pool.known_points(), 0);
    let own_id: Multiaddr = format!("{}/p2p/{}", point(2), pool.local_peer_id())
        .parse()
        .unwrap();
    assert_eq!(pool.register_new_points([&point(1), &own_id], false, t0), 0);
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
        pool.register_new_points([&hinted, &bad, &point(6)], false, t0),
        2
    );
    assert_eq!(pool.point(&point(5)).unwrap().last_peer_id(), Some(peer));
    assert!(!pool.point(&point(5)).unwrap().is_known_public());
    // Re-registering is not new, but a peer announcing it makes it known-public.
    assert_eq!(pool.register_new_points([&hinted], true, t0), 0);
    assert!(pool.point(&point(5)).unwrap().is_known_public());
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
    pool.register_new_points([&running], false, t0);
    pool.set_requested(&running).unwrap();
    pool.connection_established(PeerId::random(), Some(&running), t0);
    // Points 2..=9 miss at increasing times, so point 2 has the oldest miss.
    for i in 2..10 {
        let p = point(i);
        pool.register_new_points([&p], false, t0);
        pool.set_requested(&p).unwrap();
        pool.dial_failed(&p, t0 + secs(u64::from(i)), &mut rng);
    }
    assert_eq!(pool.known_points(), 10);
    pool.register_new_points([&point(100)], false, t0 + secs(20));
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
        pool.register_new_points([&point(i)], false, t0 + secs(30));
        assert!(pool.known_points() <= 10);
    }
}

#[test]
fn full_table_of_uncollectable_points_refuses() {
    let mut pool = pool(Config::new().with_max_known_points(Some((3, 2))));
    let t0 = Instant::now();
    for i in 0..3 {
        pool.add_trusted_point(&point(i), t0).unwrap();
    }
    assert_eq!(
        pool.add_trusted_point(&point(9), t0),
        Err(Error::PointTableFull { high: 3 })
    );
    assert_eq!(pool.register_new_points([&point(10)], false, t0), 0);
    assert_eq!(pool.known_points(), 3);
}

#[test]
fn peer_gc_removes_newest_disconnected_first() {
    let mut rng = StdRng::seed_from_u64(0);
    let mut pool = pool(Config::new().with_max_known_peers(Some((4, 2))));
    let t0 = Instant::now();
    let peers: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
    for (i, p) in peers.iter().enumerate() {
        let t = t0 + secs(i as u64);
        pool.connection_established(*p, None, t);
        if i > 0 {
            pool.connection_closed(*p, None, t, &mut rng);
        }
    }
    let newcomer = PeerId::random();
    pool.connection_established(newcomer, None, t0 + secs(10));
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
        pool.register_new_points([&point(i)], false, t0);
    }
    // Points 0 and 1 failed, point 1 earlier than point 0.
    for (i, at) in [(0, 5), (1, 3)] {
        pool.set_requested(&point(i)).unwrap();
        pool.dial_failed(&point(i), t0 + secs(at), &mut rng);
    }
    // Point 2 is being dialed; point 3's peer is already running through another connection.
    pool.set_requested(&point(2)).unwrap();
    let peer3 = PeerId::random();
    let hinted: Multiaddr = format!("{}/p2p/{peer3}", point(3)).parse().unwrap();
    pool.register_new_points([&hinted], false, t0);
    pool.connection_established(peer3, None, t0);
    let now = t0 + secs(100);
    assert_eq!(
        pool.candidates(now, now, 10, |_| false),
        vec![point(4), point(1), point(0)]
    );
    assert_eq!(
        pool.candidates(now, now, 2, |_| false),
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
        pool.register_new_points([&p], false, t0);
        pool.set_requested(&p).unwrap();
        let peer = PeerId::random();
        pool.connection_established(peer, Some(&p), t0 + secs(u64::from(i)));
        pool.connection_closed(peer, Some(&p), t0 + secs(u64::from(i)), &mut rng);
    }
    // Unverified points are never advertised.
    pool.register_new_points([&point(500)], false, t0);
    let list = pool.list_known_points(50, None, &mut rng);
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
    small.register_new_points([&point(1)], true, t0);
    assert_eq!(small.list_known_points(50, None, &mut rng).len(), 1);
}

#[test]
fn list_known_points_puts_connected_first_and_skips_requester() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut pool = pool(Config::new());
    let t0 = Instant::now();
    let requester = PeerId::random();
    let req_addr: Multiaddr = format!("{}/p2p/{requester}", point(9)).parse().unwrap();
    pool.register_new_points([&req_addr], true, t0);
    pool.connection_established(requester, None, t0);
    let old = PeerId::random();
    let young = PeerId::random();
    for (i, peer, at) in [(1, old, 1), (2, young, 5)] {
        let a: Multiaddr = format!("{}/p2p/{peer}", point(i)).parse().unwrap();
        pool.register_new_points([&a], true, t0);
        pool.connection_established(peer, None, t0 + secs(at));
    }
    let gone = PeerId::random();
    let a: Multiaddr = format!("{}/p2p/{gone}", point(3)).parse().unwrap();
    pool.register_new_points([&a], true, t0);
    let list = pool.list_known_points(50, Some(requester), &mut rng);
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
    pool.set_requested(&p).unwrap();
    pool.connection_established(peer, Some(&p), t0);
    assert!(pool.connection_nacked(peer, Some(&p), t0, &mut rng));
    assert_eq!(pool.active(), 0);
    let info = pool.point(&p).unwrap();
    assert_eq!(info.last_rejected_connection(), Some((peer, t0)));
    assert_eq!(info.reconnection().unwrap().end, t0 + secs(1));
    assert_eq!(
        pool.peer(&peer).unwrap().last_rejected_connection(),
        Some(t0)
    );
    assert_eq!(pool.peer(&peer).unwrap().last_disconnection(), None);
    let later = t0 + secs(2);
    assert_eq!(pool.candidates(later, later, 10, |_| false), vec![p]);
}
