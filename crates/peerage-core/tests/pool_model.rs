//! Property test: random sequences of pool operations against a simple model of what must hold.
//!
//! - untrusted points never bring the point table over its `high` bound (Octez can hold
//!   `high + 1`, #3175);
//! - `active()` is the number of peers with at least one connection;
//! - a point is `Requested` exactly when a dial of it started and has not ended (no point is
//!   ever stuck in `Requested`, Octez §13);
//! - a running point's peer is running;
//! - a banned peer is refused and, once the glue has carried out the pool's disconnections,
//!   never running; no peer is left `accepted`.

#![allow(clippy::disallowed_methods)]

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use peerage_core::{
    Multiaddr, PeerId,
    pool::{Config, Event, Medium, Pool, peer, point::State},
};
use proptest::prelude::*;
use rand::{SeedableRng, rngs::StdRng};

const HIGH: usize = 12;
const LOW: usize = 8;

#[derive(Debug, Clone)]
enum Op {
    Learn(u8),
    Trust(u8),
    Dial(u8),
    DialFailed(u8),
    DialAborted(u8),
    /// A connection with peer `.0`, through the point `.1` if we were dialing it.
    Established(u8, u8),
    Inbound(u8),
    Closed(u8),
    Nacked(u8),
    Ban(u8),
    Unban(u8),
    Tick(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..30).prop_map(Op::Learn),
        (0u8..30).prop_map(Op::Trust),
        (0u8..30).prop_map(Op::Dial),
        (0u8..30).prop_map(Op::DialFailed),
        (0u8..30).prop_map(Op::DialAborted),
        ((0u8..8), (0u8..30)).prop_map(|(p, a)| Op::Established(p, a)),
        (0u8..8).prop_map(Op::Inbound),
        (0u8..8).prop_map(Op::Closed),
        (0u8..8).prop_map(Op::Nacked),
        (0u8..8).prop_map(Op::Ban),
        (0u8..8).prop_map(Op::Unban),
        (0u16..5000).prop_map(Op::Tick),
    ]
}

fn remote() -> Multiaddr {
    "/ip4/192.0.2.1/tcp/40000".parse().unwrap()
}

fn point(i: u8) -> Multiaddr {
    format!("/ip4/10.9.0.{i}/tcp/9732").parse().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn pool_invariants_hold(ops in proptest::collection::vec(op(), 1..200)) {
        let peers: Vec<PeerId> = (0..8).map(|_| PeerId::random()).collect();
        let mut pool = Pool::new(PeerId::random(), Config::new().with_max_known_points(Some((HIGH, LOW))));
        let mut rng = StdRng::seed_from_u64(0);
        let mut now = Instant::now();
        // Model: open connections per peer, each with the point dialed for it (if any).
        let mut conns: HashMap<usize, Vec<Option<Multiaddr>>> = HashMap::new();
        let mut dialing: HashSet<Multiaddr> = HashSet::new();
        for op in ops {
            let before = pool.known_points();
            match op.clone() {
                Op::Learn(i) => { pool.register_list_of_new_points(None, Medium::Advertise, [&point(i)], now); }
                Op::Trust(i) => { let _ = pool.add_trusted_point(&point(i), now); }
                Op::Dial(i) => {
                    if pool.set_requested(&point(i), now).is_ok() {
                        prop_assert!(dialing.insert(point(i)), "requested twice");
                    }
                }
                Op::DialFailed(i) => {
                    pool.dial_failed(&point(i), now, &mut rng);
                    dialing.remove(&point(i));
                }
                Op::DialAborted(i) => {
                    pool.dial_aborted(&point(i));
                    dialing.remove(&point(i));
                }
                Op::Established(p, i) => {
                    let a = point(i);
                    let through = dialing.remove(&a).then_some(a);
                    let peer = peers[p as usize];
                    let admitted = pool.accept(peer, &remote(), through.as_ref(), now, &mut rng);
                    prop_assert_eq!(admitted.is_ok(), !pool.is_peer_banned(&peer));
                    if admitted.is_ok() {
                        pool.connection_established(peer, through.as_ref(), &remote(), now);
                        conns.entry(p as usize).or_default().push(through);
                    }
                }
                Op::Inbound(p) => {
                    let peer = peers[p as usize];
                    if pool.accept(peer, &remote(), None, now, &mut rng).is_ok() {
                        pool.connection_established(peer, None, &remote(), now);
                        conns.entry(p as usize).or_default().push(None);
                    }
                }
                Op::Ban(p) => {
                    pool.ban_peer(peers[p as usize]);
                    // The glue closes every connection of a peer the pool asks to disconnect.
                    while let Some(event) = pool.poll_event() {
                        if let Event::Disconnect { peer, .. } = event {
                            let i = peers.iter().position(|x| *x == peer).unwrap();
                            for through in conns.remove(&i).unwrap_or_default() {
                                pool.connection_closed(peer, through.as_ref(), false, now, &mut rng);
                            }
                        }
                    }
                }
                Op::Unban(p) => pool.unban_peer(&peers[p as usize]),
                Op::Closed(p) | Op::Nacked(p) => {
                    if let Some(through) = conns.get_mut(&(p as usize)).and_then(Vec::pop) {
                        if matches!(op, Op::Nacked(_)) {
                            pool.connection_nacked(peers[p as usize], through.as_ref(), now, &mut rng);
                        } else {
                            pool.connection_closed(peers[p as usize], through.as_ref(), false, now, &mut rng);
                        }
                    }
                }
                Op::Tick(ms) => now += Duration::from_millis(u64::from(ms)),
            }
            // Untrusted points never bring the table over `high`; trusted ones are never refused.
            let untrusted = pool.points().filter(|(_, p)| !p.is_trusted()).count();
            prop_assert!(untrusted <= HIGH, "{} untrusted points", untrusted);
            if matches!(op, Op::Learn(_)) {
                prop_assert!(pool.known_points() <= HIGH.max(before), "table over high: {}", pool.known_points());
            }
            let running = conns.values().filter(|c| !c.is_empty()).count();
            prop_assert_eq!(pool.active(), running);
            for (p, c) in &conns {
                prop_assert_eq!(pool.is_running(&peers[*p]), !c.is_empty());
            }
            for peer in &peers {
                if pool.is_peer_banned(peer) {
                    prop_assert!(!pool.is_running(peer), "a banned peer runs");
                }
                if let Some(info) = pool.peer(peer) {
                    prop_assert!(info.state() != peer::State::Accepted, "left accepted");
                }
            }
            for (addr, info) in pool.points() {
                prop_assert_eq!(info.state() == State::Requested, dialing.contains(addr), "{}", addr);
                if let State::Running { peer_id } = info.state() {
                    prop_assert!(pool.is_running(&peer_id));
                }
            }
        }
    }
}
