use std::time::{Duration, Instant};

use libp2p_identity::Keypair;
use rand::{SeedableRng, rngs::StdRng};

use super::*;
use crate::{connmgr, peerstore};

/// Closes peers in the order given; no tags.
struct Plain;

impl ConnectionManager for Plain {
    fn close_order(&self, peers: &[PeerId], _: Instant) -> Vec<PeerId> {
        peers.to_vec()
    }
    fn tag_value(&self, _: &PeerId) -> i64 {
        0
    }
}

fn peer(i: u8) -> PeerId {
    Keypair::ed25519_from_bytes([i; 32])
        .unwrap()
        .public()
        .to_peer_id()
}

fn addr(i: u8) -> Multiaddr {
    format!("/ip4/10.0.0.{i}/tcp/9732").parse().unwrap()
}

fn machine(config: Config, now: Instant) -> Machine<u64> {
    let local = peer(0);
    Machine::new(
        local,
        config,
        Peerstore::memory(peerstore::Config::default()),
        Box::new(Plain),
        Box::new(Unsigned::new(local)),
        StdRng::seed_from_u64(1),
        now,
    )
}

fn drain(m: &mut Machine<u64>) -> Vec<Command<u64>> {
    std::iter::from_fn(|| m.poll_command()).collect()
}

fn identify(pex: bool, i: u8) -> Identify {
    let mut protocols = vec!["/ipfs/ping/1.0.0".to_owned()];
    if pex {
        protocols.push(pex::PROTOCOL.to_owned());
    }
    Identify {
        listen_addrs: vec![addr(i)],
        protocols,
        agent_version: "test".into(),
        protocol_version: "ipfs/0.1.0".into(),
        signed_peer_record: None,
    }
}

/// Dials `remote` as peer `i` (connection `id`) and establishes it.
fn dial_and_establish(m: &mut Machine<u64>, id: u64, i: u8, remote: &Multiaddr, now: Instant) {
    establish_from(m, id, i, remote, false, now);
}

/// Establishes connection `id` with peer `i` at its usual address, inbound or dialed by us.
fn establish(m: &mut Machine<u64>, id: u64, i: u8, inbound: bool, now: Instant) -> Admission {
    establish_from(m, id, i, &addr(i), inbound, now)
}

/// Establishes connection `id` with peer `i` at `remote`, inbound or dialed by us.
fn establish_from(
    m: &mut Machine<u64>,
    id: u64,
    i: u8,
    remote: &Multiaddr,
    inbound: bool,
    now: Instant,
) -> Admission {
    if !inbound {
        m.dial_started(id, remote.clone());
    }
    let admission = m
        .admit_established(id, peer(i), remote, inbound, now)
        .expect("admitted");
    m.handle(
        now,
        Input::ConnectionEstablished {
            id,
            peer: peer(i),
            remote: remote.clone(),
            inbound,
        },
    );
    admission
}

/// Peer `i` answers request `id` with `points` (no peer named at them).
fn answer(m: &mut Machine<u64>, id: u64, i: u8, points: Vec<Multiaddr>, now: Instant) {
    let points = points
        .into_iter()
        .map(|addr| pex::Point { addr, peer: None })
        .collect();
    m.handle(
        now,
        Input::PexAnswer {
            peer: peer(i),
            id,
            response: pex::Response {
                points,
                ..Default::default()
            },
        },
    );
}

fn asks(commands: &[Command<u64>]) -> Vec<PeerId> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::AskPoints { peer, .. } => Some(*peer),
            _ => None,
        })
        .collect()
}

#[test]
fn a_dialed_peer_is_asked_once_identified_and_only_if_it_offers_the_exchange() {
    let now = Instant::now();
    let mut m = machine(Config::new().with_maintenance_enabled(false), now);
    establish(&mut m, 1, 1, false, now);
    establish(&mut m, 2, 2, false, now);
    // Before identify, nobody is asked.
    assert!(asks(&drain(&mut m)).is_empty());
    m.handle(
        now,
        Input::Identified {
            peer: peer(1),
            info: identify(true, 1),
        },
    );
    m.handle(
        now,
        Input::Identified {
            peer: peer(2),
            info: identify(false, 2),
        },
    );
    assert_eq!(asks(&drain(&mut m)), vec![peer(1)]);
    // A second identify (a push) does not ask again.
    m.handle(
        now,
        Input::Identified {
            peer: peer(1),
            info: identify(true, 1),
        },
    );
    assert!(asks(&drain(&mut m)).is_empty());
}

#[test]
fn a_node_out_of_points_asks_at_most_max_in_flight_and_each_peer_once_per_round() {
    let t0 = Instant::now();
    // Bounds 20/40/60: 12 inbound peers is below min_threshold (26), and there is nothing to
    // dial.
    let bounds = crate::maintenance::Bounds::from_connections(40);
    let mut m = machine(Config::new().with_bounds(bounds), t0);
    for i in 1..=12 {
        establish(&mut m, u64::from(i), i, true, t0);
        m.handle(
            t0,
            Input::Identified {
                peer: peer(i),
                info: identify(true, i),
            },
        );
    }
    drain(&mut m);
    m.handle_timeout(t0);
    let first = asks(&drain(&mut m));
    assert_eq!(first.len(), 8, "the cap of requests in flight");
    assert_eq!(m.pex_in_flight(), 8);
    // Answers come back; the next round is 5 s later: only peers not asked in the last 5 s,
    // and those asked before are asked again once their round has passed.
    for p in &first {
        m.handle(
            t0,
            Input::PexAnswer {
                peer: *p,
                id: 0,
                response: pex::Response::default(),
            },
        );
    }
    let t1 = t0 + Duration::from_secs(5);
    m.handle_timeout(t1);
    let second = asks(&drain(&mut m));
    assert_eq!(second.len(), 8);
    let not_asked: Vec<PeerId> = (1..=12).map(peer).filter(|p| !first.contains(p)).collect();
    for p in &not_asked {
        assert!(
            second.contains(p),
            "the 4 not asked in the first round come first"
        );
    }
    // Nobody is asked twice within a round.
    m.handle_timeout(t1 + Duration::from_millis(10));
    assert!(asks(&drain(&mut m)).is_empty());
}

#[test]
fn a_request_before_identify_is_answered_and_a_third_early_one_dropped() {
    let now = Instant::now();
    let mut m = machine(Config::new().with_maintenance_enabled(false), now);
    establish(&mut m, 1, 1, true, now);
    drain(&mut m);
    let request = |token| Input::PexRequest {
        peer: peer(1),
        id: 1,
        request: pex::Request::default(),
        token,
    };
    m.handle(now, request(1));
    m.handle(now, request(2));
    m.handle(now, request(3));
    let commands = drain(&mut m);
    assert!(matches!(
        commands[0],
        Command::AnswerPoints { token: 1, .. }
    ));
    assert_eq!(commands[1], Command::DropRequest { token: 3 });
    assert_eq!(m.poll_timeout(), Some(now + pex::ANSWER_COOLDOWN));
    m.handle_timeout(now + pex::ANSWER_COOLDOWN);
    assert!(matches!(
        drain(&mut m)[..],
        [Command::AnswerPoints { token: 2, .. }]
    ));
}

#[test]
fn a_full_node_nacks_with_points_then_closes_after_the_linger() {
    let now = Instant::now();
    // 1/2/3: max_threshold is 3.
    let bounds = crate::maintenance::Bounds::new(1, 2, 3).unwrap();
    let mut m = machine(
        Config::new()
            .with_bounds(bounds)
            .with_maintenance_enabled(false)
            .with_max_nacked(1),
        now,
    );
    for i in 1..=3 {
        assert_eq!(
            establish(&mut m, u64::from(i), i, true, now),
            Admission::Accepted
        );
    }
    drain(&mut m);
    assert_eq!(establish(&mut m, 4, 4, true, now), Admission::Nacked);
    assert_eq!(drain(&mut m), vec![Command::Exclude(4)]);
    assert_eq!(m.pool().active(), 3, "a nacked connection is not counted");
    // A second newcomer finds the one nacked slot taken.
    m.dial_started(99, addr(9));
    let refused = m.admit_established(5, peer(5), &addr(5), true, now);
    assert!(matches!(
        refused,
        Err(Refusal::TooManyConnections(TooManyConnections {
            nacked: 1,
            ..
        }))
    ));
    // The nacked peer asks for points: answered at once, with the nack.
    m.handle(
        now,
        Input::PexRequest {
            peer: peer(4),
            id: 4,
            request: pex::Request::default(),
            token: 7,
        },
    );
    assert!(matches!(
        &drain(&mut m)[..],
        [Command::AnswerPoints { token: 7, response }] if response.nack
    ));
    m.handle_timeout(now + Duration::from_millis(1999));
    assert!(drain(&mut m).is_empty());
    m.handle_timeout(now + Duration::from_secs(2));
    assert_eq!(
        drain(&mut m),
        vec![Command::Close {
            peer: peer(4),
            id: Some(4)
        }]
    );
}

#[test]
fn admission_refusals_are_typed_and_the_pending_ip_check_is_not_repeated() {
    let now = Instant::now();
    let mut m = machine(Config::new().with_maintenance_enabled(false), now);
    m.update_pool(now, |pool, now| {
        pool.greylist_ip("10.0.0.1".parse().unwrap(), now)
    });
    assert!(matches!(
        m.admit_pending_inbound(1, &addr(1), now),
        Err(Refusal::Pool(pool::Error::IpBanned(_)))
    ));
    assert!(m.admit_pending_inbound(2, &addr(2), now).is_ok());
    m.update_pool(now, |pool, _| pool.ban_peer(peer(2)));
    assert!(matches!(
        m.admit_established(2, peer(2), &addr(2), true, now),
        Err(Refusal::Pool(pool::Error::PeerBanned(_)))
    ));
    assert!(matches!(
        m.admit_pending_outbound(Some(peer(2)), &[addr(2)], now),
        Err(Refusal::Pool(pool::Error::PeerBanned(_)))
    ));
    // Outbound: the remote IP is checked here.
    m.dial_started(4, addr(1));
    assert!(matches!(
        m.admit_established(4, peer(4), &addr(1), false, now),
        Err(Refusal::Pool(pool::Error::IpBanned(_)))
    ));
    // Inbound: the IP checked at pending inbound is not checked again, unless an IP was banned
    // or greylisted meanwhile. Two handshakes from 10.0.0.5 pass the pending check; the first
    // sends garbage and greylists the IP; the second is then refused when established.
    assert!(m.admit_pending_inbound(5, &addr(5), now).is_ok());
    assert!(m.admit_established(5, peer(5), &addr(5), true, now).is_ok());
    assert!(m.admit_pending_inbound(6, &addr(5), now).is_ok());
    assert!(m.admit_pending_inbound(7, &addr(5), now).is_ok());
    m.handle(
        now,
        Input::ListenFailed {
            id: 6,
            remote: addr(5),
            violation: true,
        },
    );
    assert!(matches!(
        m.admit_established(7, peer(7), &addr(5), true, now),
        Err(Refusal::Pool(pool::Error::IpBanned(_)))
    ));
}

#[test]
fn the_same_inputs_and_seed_give_the_same_commands() {
    let run = || {
        let t0 = Instant::now();
        let bounds = crate::maintenance::Bounds::from_connections(80);
        let mut m = machine(Config::new().with_bounds(bounds), t0);
        let mut out = Vec::new();
        for i in 1..=30 {
            establish(&mut m, u64::from(i), i, true, t0);
            m.handle(
                t0,
                Input::Identified {
                    peer: peer(i),
                    info: identify(true, i),
                },
            );
        }
        for step in 0..20 {
            let now = t0 + Duration::from_secs(step * 3);
            m.handle_timeout(now);
            out.extend(drain(&mut m).into_iter().map(|c| format!("{c:?}")));
        }
        out
    };
    let a = run();
    assert!(!a.is_empty());
    assert_eq!(a, run());
}

#[test]
fn a_nacked_peer_in_need_is_admitted_while_under_max() {
    let now = Instant::now();
    // 1/1/4: step_max 1, so max_threshold 3; max 4.
    let bounds = crate::maintenance::Bounds::new(1, 1, 4).unwrap();
    let mut m = machine(
        Config::new()
            .with_bounds(bounds)
            .with_maintenance_enabled(false),
        now,
    );
    for i in 1..=3 {
        establish(&mut m, u64::from(i), i, true, now);
    }
    assert_eq!(establish(&mut m, 4, 4, true, now), Admission::Nacked);
    drain(&mut m);
    m.handle(
        now,
        Input::PexRequest {
            peer: peer(4),
            id: 4,
            request: pex::Request { need: true },
            token: 1,
        },
    );
    let commands = drain(&mut m);
    assert_eq!(commands[0], Command::Include(4));
    assert!(
        matches!(&commands[1], Command::AnswerPoints { token: 1, response } if !response.nack),
        "admitted: answered as a peer, not nacked"
    );
    assert_eq!(m.pool().active(), 4);
    // At max, the next one in need stays nacked.
    assert_eq!(establish(&mut m, 5, 5, true, now), Admission::Nacked);
    drain(&mut m);
    m.handle(
        now,
        Input::PexRequest {
            peer: peer(5),
            id: 5,
            request: pex::Request { need: true },
            token: 2,
        },
    );
    assert!(matches!(
        &drain(&mut m)[..],
        [Command::AnswerPoints { token: 2, response }] if response.nack
    ));
    // Its lingering connection closes after 2 s.
    m.handle_timeout(now + Duration::from_secs(2));
    assert_eq!(
        drain(&mut m),
        vec![Command::Close {
            peer: peer(5),
            id: Some(5)
        }]
    );
}

#[test]
fn the_outbound_connections_and_the_counts_follow_the_connections_without_a_walk() {
    let now = Instant::now();
    // 1/1/4: an inbound connection beyond 4 is nacked.
    let bounds = crate::maintenance::Bounds::new(1, 1, 4).unwrap();
    let mut m = machine(
        Config::new()
            .with_bounds(bounds)
            .with_maintenance_enabled(false),
        now,
    );
    let check = |m: &Machine<u64>| {
        let walked: Vec<u64> = m
            .connections()
            .filter(|(_, c)| !c.inbound)
            .map(|(id, _)| *id)
            .collect();
        let indexed: Vec<u64> = m.outbound_connections().map(|(id, _)| *id).collect();
        assert_eq!(indexed, walked);
        let total = m.connections().count();
        assert_eq!(m.connection_counts(), (total - walked.len(), walked.len()));
    };
    for i in 1..=6u8 {
        establish(&mut m, u64::from(i), i, i % 2 == 0, now);
        check(&m);
    }
    assert_eq!(
        m.connection_counts(),
        (3, 3),
        "1, 3 and 5 dialed; 2, 4 and 6 inbound"
    );
    for (id, i) in [(3, 3u8), (2, 2), (5, 5), (1, 1)] {
        m.handle(
            now,
            Input::ConnectionClosed {
                id,
                peer: peer(i),
                by_remote: true,
                remaining: 0,
            },
        );
        check(&m);
    }
    assert_eq!(m.connection_counts(), (2, 0));
}

#[test]
fn an_answer_over_the_limit_greylists_its_sender_before_closing() {
    let now = Instant::now();
    let mut m = machine(Config::new().with_maintenance_enabled(false), now);
    establish(&mut m, 1, 1, false, now);
    m.handle(
        now,
        Input::Identified {
            peer: peer(1),
            info: identify(true, 1),
        },
    );
    assert_eq!(asks(&drain(&mut m)), vec![peer(1)]);
    let points = (0..=pex::MAX_POINTS_ACCEPTED)
        .map(|i| {
            format!("/ip4/10.1.{}.{}/tcp/1", i / 250, i % 250)
                .parse::<Multiaddr>()
                .unwrap()
                .into()
        })
        .collect();
    m.handle(
        now,
        Input::PexAnswer {
            peer: peer(1),
            id: 1,
            response: pex::Response {
                points,
                ..Default::default()
            },
        },
    );
    assert!(m.pool().acl().is_peer_greylisted(&peer(1)));
    assert_eq!(
        drain(&mut m),
        vec![Command::Close {
            peer: peer(1),
            id: None
        }]
    );
    assert_eq!(m.pool().known_points(), 1, "nothing of the answer is kept");
    assert!(
        std::iter::from_fn(|| m.poll_event())
            .any(|e| matches!(e, Event::PointsRefused { received: 101, .. }))
    );
}

#[test]
fn a_new_connection_asks_again_within_the_round_but_the_maintenance_does_not() {
    let now = Instant::now();
    let mut m = machine(Config::new().with_maintenance_enabled(false), now);
    establish(&mut m, 1, 1, false, now);
    m.handle(
        now,
        Input::Identified {
            peer: peer(1),
            info: identify(true, 1),
        },
    );
    assert_eq!(asks(&drain(&mut m)), vec![peer(1)]);
    m.handle(
        now,
        Input::PexAnswer {
            peer: peer(1),
            id: 1,
            response: pex::Response::default(),
        },
    );
    m.handle(
        now,
        Input::ConnectionClosed {
            id: 1,
            peer: peer(1),
            by_remote: true,
            remaining: 0,
        },
    );
    drain(&mut m);
    // Redialed 1 s later (the peer trimmed us, or nacked us): the first request on the new
    // connection goes out, although the peer was asked within the round; it is how its nack
    // answer reaches us.
    let t1 = now + Duration::from_secs(1);
    establish(&mut m, 2, 1, false, t1);
    m.handle(
        t1,
        Input::Identified {
            peer: peer(1),
            info: identify(true, 1),
        },
    );
    assert_eq!(asks(&drain(&mut m)), vec![peer(1)]);
}

#[test]
fn a_peer_we_nacked_is_not_asked_by_the_maintenance() {
    let now = Instant::now();
    // 20/40/60, max_threshold 54: fill to it, so that the next inbound is nacked, then lose
    // every peer but one, so that the maintenance, out of points, asks.
    let bounds = crate::maintenance::Bounds::from_connections(40);
    let mut m = machine(Config::new().with_bounds(bounds), now);
    let full = u8::try_from(bounds.max_threshold()).unwrap();
    // No listen addresses: nothing to dial, so the maintenance asks for points.
    let silent = |pex| Identify {
        listen_addrs: Vec::new(),
        ..identify(pex, 0)
    };
    for i in 1..=full {
        establish(&mut m, u64::from(i), i, true, now);
        m.handle(
            now,
            Input::Identified {
                peer: peer(i),
                info: silent(true),
            },
        );
    }
    let nacked = full + 1;
    assert_eq!(establish(&mut m, 200, nacked, true, now), Admission::Nacked);
    m.handle(
        now,
        Input::Identified {
            peer: peer(nacked),
            info: silent(true),
        },
    );
    for i in 2..=full {
        m.handle(
            now,
            Input::ConnectionClosed {
                id: u64::from(i),
                peer: peer(i),
                by_remote: true,
                remaining: 0,
            },
        );
    }
    drain(&mut m);
    m.handle_timeout(now);
    assert_eq!(
        asks(&drain(&mut m)),
        vec![peer(1)],
        "peer 1, not the one we nacked"
    );
}

#[test]
fn a_departed_peer_is_forgotten_by_the_peerstore_after_the_grace_period_but_not_its_addrs() {
    let t0 = Instant::now();
    let config = Config::new()
        .with_maintenance_enabled(false)
        .with_peerstore_grace(Duration::from_secs(60));
    let mut m = machine(config, t0);
    for (i, id) in [(1, 1), (2, 2)] {
        establish(&mut m, id, i, true, t0);
        m.handle(
            t0,
            Input::Identified {
                peer: peer(i),
                info: identify(true, i),
            },
        );
        m.handle(
            t0,
            Input::Ping {
                peer: peer(i),
                rtt: Duration::from_millis(20),
            },
        );
    }
    let close = |m: &mut Machine<u64>, id: u64, i: u8, now: Instant| {
        m.handle(
            now,
            Input::ConnectionClosed {
                id,
                peer: peer(i),
                by_remote: true,
                remaining: 0,
            },
        );
    };
    close(&mut m, 1, 1, t0);
    close(&mut m, 2, 2, t0 + Duration::from_secs(10));
    // Peer 2 comes back within its grace period.
    establish(&mut m, 3, 2, true, t0 + Duration::from_secs(20));
    let store = m.peerstore().clone();
    assert!(!store.protocols(&peer(1)).is_empty());
    assert!(store.latency_ewma(&peer(1)).is_some());
    // Checked every half grace period: not yet at 59 s, done by 90 s.
    let t = t0 + Duration::from_secs(59);
    assert!(
        m.poll_timeout()
            .is_some_and(|d| d <= t0 + Duration::from_secs(60))
    );
    m.handle_timeout(t);
    assert!(!store.protocols(&peer(1)).is_empty());
    let t = m.poll_timeout().unwrap();
    assert!(t <= t0 + Duration::from_secs(90), "{:?}", t - t0);
    m.handle_timeout(t);
    assert!(store.protocols(&peer(1)).is_empty(), "forgotten");
    assert!(store.latency_ewma(&peer(1)).is_none());
    assert!(
        !store.addrs(&peer(1), t).is_empty(),
        "addresses stay, to their TTLs"
    );
    // Peer 2 is connected: kept, even past its first departure's grace.
    m.handle_timeout(t0 + Duration::from_secs(200));
    assert!(!store.protocols(&peer(2)).is_empty());
    assert!(m.departed.is_empty());
}

/// A connection manager with a hard cap of `cap` connections, counting what it is told.
struct Capped {
    cap: usize,
    counted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl ConnectionManager for Capped {
    fn close_order(&self, peers: &[PeerId], _: Instant) -> Vec<PeerId> {
        peers.to_vec()
    }
    fn tag_value(&self, _: &PeerId) -> i64 {
        0
    }
    fn admit(&self, _: &PeerId) -> Result<(), connmgr::HardCapReached> {
        let connections = self.counted.load(std::sync::atomic::Ordering::SeqCst);
        if connections >= self.cap {
            return Err(connmgr::HardCapReached {
                limit: self.cap,
                connections,
            });
        }
        Ok(())
    }
}

fn capped_machine(bounds: crate::maintenance::Bounds, cap: usize, now: Instant) -> Machine<u64> {
    let local = peer(0);
    let counted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    Machine::new(
        local,
        Config::new()
            .with_maintenance_enabled(false)
            .with_bounds(bounds),
        Peerstore::memory(peerstore::Config::default()),
        Box::new(Capped { cap, counted }),
        Box::new(Unsigned::new(local)),
        StdRng::seed_from_u64(1),
        now,
    )
}

#[test]
fn the_hard_cap_is_the_last_check_and_spares_trusted_peers_and_nacks() {
    let now = Instant::now();
    // Bounds 2/4/6: max_threshold 6, so the third connection is admitted, not nacked; the
    // connection manager holds 2 connections (what the glue counted), its cap.
    let mut m = capped_machine(crate::maintenance::Bounds::new(2, 4, 6).unwrap(), 0, now);
    let refused = m.admit_established(3, peer(3), &addr(3), true, now);
    assert!(
        matches!(refused, Err(Refusal::HardCap(ref e)) if e.limit == 0),
        "{refused:?}"
    );
    // The refusal left no trace in the pool: the peer was not kept accepted.
    assert!(
        m.pool()
            .peer(&peer(3))
            .is_none_or(|p| p.state() == pool::peer::State::Disconnected)
    );
    assert_eq!(m.pool().active(), 0);
    // A trusted peer is exempt, and protected first.
    m.update_pool(now, |pool, now| pool.add_trusted_point(&addr(4), now))
        .unwrap();
    m.dial_started(4, addr(4));
    assert_eq!(
        m.admit_established(4, peer(4), &addr(4), false, now)
            .unwrap(),
        Admission::Accepted
    );
    assert!(drain(&mut m).contains(&Command::Protect(peer(4))));

    // Bounds 1/2/2: at max_threshold (2), an inbound connection is nacked, which the hard cap
    // does not refuse (the nack is left out of the connection manager).
    let mut m = capped_machine(crate::maintenance::Bounds::new(1, 2, 2).unwrap(), 0, now);
    for i in 1..=2 {
        m.update_pool(now, |pool, now| pool.add_trusted_point(&addr(i), now))
            .unwrap();
        m.dial_started(u64::from(i), addr(i));
        establish(&mut m, u64::from(i), i, false, now);
    }
    assert_eq!(m.pool().active(), 2);
    assert_eq!(
        m.admit_established(3, peer(3), &addr(3), true, now)
            .unwrap(),
        Admission::Nacked
    );
}

/// A resource manager stand-in: logs its calls, refuses what it is told to.
struct FakeResources {
    calls: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    refuse_open: bool,
    refuse_attach: bool,
}

impl Resources<u64> for FakeResources {
    fn open(
        &mut self,
        id: u64,
        inbound: bool,
        _: &Multiaddr,
        _: Instant,
    ) -> Result<(), crate::rcmgr::Error> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("open {id} {inbound}"));
        if self.refuse_open {
            return Err(crate::rcmgr::Error::ScopeClosed {
                scope: "transient".into(),
            });
        }
        Ok(())
    }
    fn attach(&mut self, id: u64, _: PeerId) -> Result<(), crate::rcmgr::Error> {
        self.calls.lock().unwrap().push(format!("attach {id}"));
        if self.refuse_attach {
            return Err(crate::rcmgr::Error::ScopeClosed {
                scope: "peer".into(),
            });
        }
        Ok(())
    }
    fn release(&mut self, id: u64) {
        self.calls.lock().unwrap().push(format!("release {id}"));
    }
}

#[test]
fn the_resource_manager_is_asked_at_its_places_in_the_order_and_released_once_done() {
    let now = Instant::now();
    let with = |refuse_open, refuse_attach| {
        let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut m = machine(Config::new().with_maintenance_enabled(false), now);
        m.set_resources(Box::new(FakeResources {
            calls: calls.clone(),
            refuse_open,
            refuse_attach,
        }));
        (m, calls)
    };
    let taken = |calls: &std::sync::Arc<std::sync::Mutex<Vec<String>>>| {
        std::mem::take(&mut *calls.lock().unwrap())
    };

    // Inbound: opened at pending inbound, attached once established, released when closed.
    let (mut m, calls) = with(false, false);
    m.admit_pending_inbound(1, &addr(1), now).unwrap();
    establish(&mut m, 1, 1, true, now);
    m.handle(
        now,
        Input::ConnectionClosed {
            id: 1,
            peer: peer(1),
            by_remote: true,
            remaining: 0,
        },
    );
    assert_eq!(taken(&calls), ["open 1 true", "attach 1", "release 1"]);
    // Outbound: opened and attached once established (go opens it after the dial).
    establish(&mut m, 2, 2, false, now);
    assert_eq!(taken(&calls), ["open 2 false", "attach 2"]);

    // A peer the pool refuses once established gives its scope back.
    m.update_pool(now, |pool, _| pool.ban_peer(peer(5)));
    m.admit_pending_inbound(5, &addr(5), now).unwrap();
    assert!(matches!(
        m.admit_established(5, peer(5), &addr(5), true, now),
        Err(Refusal::Pool(_))
    ));
    assert_eq!(taken(&calls), ["open 5 true", "release 5"]);

    // A banned IP is refused before the resource manager is asked.
    m.update_pool(now, |pool, _| {
        pool.ban_ip("10.0.0.3".parse().unwrap(), false)
    });
    assert!(matches!(
        m.admit_pending_inbound(3, &addr(3), now),
        Err(Refusal::Pool(pool::Error::IpBanned(_)))
    ));
    assert!(taken(&calls).is_empty());

    // Refused at pending inbound: nothing held.
    let (mut m, calls) = with(true, false);
    assert!(matches!(
        m.admit_pending_inbound(1, &addr(1), now),
        Err(Refusal::Resources(_))
    ));
    assert_eq!(taken(&calls), ["open 1 true"]);

    // Refused by the peer scope: the pool's admission is undone and the scope released.
    let (mut m, calls) = with(false, true);
    m.admit_pending_inbound(1, &addr(1), now).unwrap();
    let refused = m.admit_established(1, peer(1), &addr(1), true, now);
    assert!(matches!(refused, Err(Refusal::Resources(_))), "{refused:?}");
    assert_eq!(taken(&calls), ["open 1 true", "attach 1", "release 1"]);
    assert!(
        m.pool()
            .peer(&peer(1))
            .is_none_or(|p| p.state() == pool::peer::State::Disconnected)
    );
}

#[test]
fn stream_counts_go_to_the_connection_manager_for_counted_connections_only() {
    let now = Instant::now();
    // 1/2/3: max_threshold is 3.
    let bounds = crate::maintenance::Bounds::new(1, 2, 3).unwrap();
    let mut m = machine(
        Config::new()
            .with_bounds(bounds)
            .with_maintenance_enabled(false),
        now,
    );
    for i in 1..=3 {
        assert_eq!(
            establish(&mut m, u64::from(i), i, true, now),
            Admission::Accepted
        );
    }
    drain(&mut m);
    let streams = |id, i, streams| Input::Streams {
        id,
        peer: peer(i),
        streams,
    };
    m.handle(now, streams(1, 1, 3));
    assert_eq!(
        drain(&mut m),
        vec![Command::SetStreams {
            peer: peer(1),
            id: 1,
            streams: 3
        }]
    );
    // A nacked connection is left out of the connection manager, and so are its streams; so
    // is a connection the machine does not know.
    assert_eq!(establish(&mut m, 4, 4, true, now), Admission::Nacked);
    drain(&mut m);
    m.handle(now, streams(4, 4, 5));
    m.handle(now, streams(9, 9, 1));
    assert!(drain(&mut m).is_empty());
}

/// A connection's first ping, when the peerstore has no latency for the peer, is replaced by
/// its second (it is taken while the remote may still be starting); then go's EWMA, a tenth
/// per sample. A peer whose latency is known from before keeps averaging from its first ping.
#[test]
fn the_first_ping_of_an_unknown_peer_is_replaced_by_the_second() {
    let t0 = Instant::now();
    let mut m = machine(Config::new().with_maintenance_enabled(false), t0);
    establish(&mut m, 1, 1, true, t0);
    let ping = |m: &mut Machine<u64>, ms: u64| {
        let rtt = Duration::from_millis(ms);
        m.handle(t0, Input::Ping { peer: peer(1), rtt });
        m.peerstore().latency_ewma(&peer(1)).unwrap().as_secs_f64() * 1000.0
    };
    assert_eq!(ping(&mut m, 40), 40.0, "the first ping, as is");
    assert_eq!(ping(&mut m, 5), 5.0, "the second replaces it");
    assert!(
        (ping(&mut m, 15) - 6.0).abs() < 1e-6,
        "then a tenth per sample"
    );
    // Reconnected, with its latency known: the first ping is averaged in.
    m.handle(
        t0,
        Input::ConnectionClosed {
            id: 1,
            peer: peer(1),
            by_remote: true,
            remaining: 0,
        },
    );
    establish(&mut m, 2, 1, true, t0);
    assert!((ping(&mut m, 46) - 10.0).abs() < 1e-6);
    assert!((ping(&mut m, 10) - 10.0).abs() < 1e-6);
}

mod book {
    use super::*;
    use crate::addrbook::{self, Group, Place};

    fn public(a: u8, b: u8, c: u8) -> Multiaddr {
        format!("/ip4/{a}.{b}.{c}.1/tcp/4001").parse().unwrap()
    }

    fn with_book(bounds: crate::maintenance::Bounds, now: Instant) -> Machine<u64> {
        machine(
            Config::new()
                .with_bounds(bounds)
                .with_addrbook(Some(addrbook::Config::new())),
            now,
        )
    }

    /// Dials `remote` as peer `i` and establishes it; identify says it offers the exchange.
    fn dial_peer(m: &mut Machine<u64>, id: u64, i: u8, remote: &Multiaddr, now: Instant) {
        dial_and_establish(m, id, i, remote, now);
        let mut info = identify(true, i);
        info.listen_addrs = vec![remote.clone()];
        m.handle(
            now,
            Input::Identified {
                peer: peer(i),
                info,
            },
        );
    }

    fn dials(commands: &[Command<u64>]) -> Vec<Multiaddr> {
        commands
            .iter()
            .filter_map(|c| match c {
                Command::Dial { point, .. } => Some(point.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn answers_go_to_the_book_and_dials_take_one_address_per_group() {
        let t0 = Instant::now();
        let mut m = with_book(crate::maintenance::Bounds::from_connections(40), t0);
        let source = public(1, 1, 1);
        dial_peer(&mut m, 1, 1, &source, t0);
        assert_eq!(asks(&drain(&mut m)), vec![peer(1)]);
        // 60 points in one /16 and 40 in 40 others.
        let mut points: Vec<Multiaddr> = (0..60).map(|c| public(20, 20, c)).collect();
        points.extend((0..40).map(|b| public(30, b, 1)));
        answer(&mut m, 1, 1, points, t0);
        let book = m.addrbook().unwrap();
        assert_eq!(
            m.pool().known_points(),
            1,
            "the pool holds only the peer we dialed"
        );
        // The 60 of one /16 told by one source share one bucket of 64 slots (a group and a
        // source group name one bucket): about 39 of them find a slot; the 40 others go in.
        assert!((70..=90).contains(&book.new_len()), "{}", book.new_len());
        m.handle_timeout(t0 + Duration::from_secs(1));
        let dialed = dials(&drain(&mut m));
        assert!(!dialed.is_empty());
        let groups: Vec<Group> = dialed.iter().map(|a| book_group(&m, a)).collect();
        let mut unique = groups.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), groups.len(), "one dial per group: {dialed:?}");
        assert!(
            !groups.contains(&Group::Ipv4([1, 1])),
            "the peer's own group is held"
        );
    }

    fn book_group(m: &Machine<u64>, a: &Multiaddr) -> Group {
        m.addrbook().unwrap().group(a)
    }

    #[test]
    fn a_source_tells_us_at_most_its_budget() {
        let t0 = Instant::now();
        let mut m = with_book(crate::maintenance::Bounds::from_connections(40), t0);
        m.handle(t0, Input::NewListenAddr(public(2, 2, 2)));
        dial_peer(&mut m, 1, 1, &public(1, 1, 1), t0);
        drain(&mut m);
        // The first request was credited 1,000 (and the bucket held 1): 1,001 addresses, in
        // answers of 100, then nothing until the bucket refills at 0.1 a second.
        let mut told = 0u32;
        for round in 0..12u8 {
            let points = (0..100).map(|c| public(40 + round, c, 7)).collect();
            answer(&mut m, 1, 1, points, t0);
            told += 100;
        }
        let held = |m: &Machine<u64>| m.addrbook().unwrap().len();
        let before = held(&m);
        assert!(before <= 1001 + 1, "{before} of {told}");
        // 100 s later: 10 more tokens.
        let later = t0 + Duration::from_secs(100);
        answer(
            &mut m,
            1,
            1,
            (0..100).map(|c| public(99, c, 9)).collect(),
            later,
        );
        assert!(held(&m) <= before + 10, "{} after {before}", held(&m));
    }

    #[test]
    fn inbound_peers_addresses_stay_out_of_the_book() {
        let t0 = Instant::now();
        let mut m = with_book(crate::maintenance::Bounds::from_connections(40), t0);
        let remote = public(5, 5, 5);
        m.admit_established(1, peer(1), &remote, true, t0).unwrap();
        m.handle(
            t0,
            Input::ConnectionEstablished {
                id: 1,
                peer: peer(1),
                remote: remote.clone(),
                inbound: true,
            },
        );
        let mut info = identify(true, 1);
        info.listen_addrs = vec![public(6, 6, 6)];
        m.handle(
            t0,
            Input::Identified {
                peer: peer(1),
                info,
            },
        );
        assert!(m.addrbook().unwrap().is_empty());
        // A peer we dialed speaks for itself.
        dial_peer(&mut m, 2, 2, &public(7, 7, 7), t0);
        assert_eq!(
            m.addrbook().unwrap().place(&public(7, 7, 7)),
            Some(Place::New)
        );
    }

    #[test]
    fn a_dialed_address_that_answers_moves_to_tried_and_a_feeler_closes_at_once() {
        let t0 = Instant::now();
        let bounds = crate::maintenance::Bounds::from_connections(40);
        // No outbound target: the only dials once the minimum is held are feelers.
        let config = Config::new()
            .with_bounds(bounds)
            .with_addrbook(Some(addrbook::Config::new()))
            .with_outbound_target(0);
        let mut m = machine(config, t0);
        dial_peer(&mut m, 1, 1, &public(1, 1, 1), t0);
        drain(&mut m);
        answer(
            &mut m,
            1,
            1,
            (0..30).map(|b| public(30, b, 1)).collect(),
            t0,
        );
        let t1 = t0 + Duration::from_secs(1);
        m.handle_timeout(t1);
        let dialed = dials(&drain(&mut m));
        let first = dialed[0].clone();
        dial_peer(&mut m, 100, 100, &first, t1);
        assert_eq!(m.addrbook().unwrap().place(&first), Some(Place::Tried));
        // Feelers wait for the minimum of connections: fill it with inbound peers.
        for i in 0..bounds.min_target() as u8 {
            establish(&mut m, 200 + u64::from(i), 150 + i, true, t1);
        }
        drain(&mut m);
        // Within 20 mean intervals a feeler goes out, to an address of `new`.
        let mut t = t1;
        let feeler = loop {
            t += Duration::from_secs(10);
            assert!(t < t1 + Duration::from_secs(2400), "no feeler");
            m.handle_timeout(t);
            if let Some(d) = dials(&drain(&mut m)).pop() {
                break d;
            }
        };
        assert_eq!(m.addrbook().unwrap().place(&feeler), Some(Place::New));
        m.dial_started(300, feeler.clone());
        m.admit_established(300, peer(250), &feeler, false, t)
            .unwrap();
        m.handle(
            t,
            Input::ConnectionEstablished {
                id: 300,
                peer: peer(250),
                remote: feeler.clone(),
                inbound: false,
            },
        );
        assert!(drain(&mut m).contains(&Command::Close {
            peer: peer(250),
            id: Some(300)
        }));
        assert_eq!(m.addrbook().unwrap().place(&feeler), Some(Place::Tried));
        // Its identify, arriving before the close: the feeler's peer is not asked for points
        // and does not speak for itself in the book.
        let mut info = identify(true, 250);
        info.listen_addrs = vec![public(77, 7, 7)];
        m.handle(
            t,
            Input::Identified {
                peer: peer(250),
                info,
            },
        );
        assert!(asks(&drain(&mut m)).is_empty());
        assert_eq!(m.addrbook().unwrap().place(&public(77, 7, 7)), None);
        assert!(
            m.anchors()
                .iter()
                .all(|a| !a.to_string().contains(&peer(250).to_string()))
        );
    }

    #[test]
    fn anchors_are_the_two_oldest_outbound_peers_and_are_dialed_first_after_a_restart() {
        let t0 = Instant::now();
        let bounds = crate::maintenance::Bounds::from_connections(40);
        let mut m = with_book(bounds, t0);
        for (k, i) in [(0u64, 3u8), (10, 1), (20, 2)] {
            dial_peer(
                &mut m,
                u64::from(i),
                i,
                &public(i, i, i),
                t0 + Duration::from_secs(k),
            );
        }
        let snap = m.addrbook_snapshot(t0 + Duration::from_secs(60)).unwrap();
        let expected: Vec<Multiaddr> = [3u8, 1]
            .iter()
            .map(|&i| public(i, i, i).with(multiaddr::Protocol::P2p(peer(i))))
            .collect();
        assert_eq!(snap.anchors, expected);
        // Held for three days: the open connections' points are saved as heard of now (as
        // their end would record them), so that they are not restored stale.
        let held = m
            .addrbook_snapshot(t0 + Duration::from_secs(3 * 86_400))
            .unwrap();
        assert_eq!(held.entries.len(), 3);
        assert!(held.entries.iter().all(|e| e.heard_ago == 0), "{held:?}");
        // Restart: a new machine, the book restored; the first round dials the anchors first.
        let t1 = t0 + Duration::from_secs(3600);
        let mut m = with_book(bounds, t1);
        assert_eq!(m.restore_addrbook(snap.clone(), t1), 0);
        assert_eq!(m.addrbook().unwrap().len(), 3);
        m.handle_timeout(t1);
        let dialed = dials(&drain(&mut m));
        assert_eq!(dialed[..2], [public(3, 3, 3), public(1, 1, 1)]);
    }

    /// Establishes an inbound connection `id` from peer `i` at `remote`.
    fn inbound(
        m: &mut Machine<u64>,
        id: u64,
        i: u8,
        remote: &Multiaddr,
        now: Instant,
    ) -> Admission {
        m.admit_pending_inbound(id, remote, now).unwrap();
        let admission = m.admit_established(id, peer(i), remote, true, now).unwrap();
        m.handle(
            now,
            Input::ConnectionEstablished {
                id,
                peer: peer(i),
                remote: remote.clone(),
                inbound: true,
            },
        );
        admission
    }

    fn closed(commands: &[Command<u64>]) -> Vec<u64> {
        commands
            .iter()
            .filter_map(|c| match c {
                Command::Close { id: Some(id), .. } => Some(*id),
                _ => None,
            })
            .collect()
    }

    /// A machine whose 40 inbound slots (no per-group share) hold 24 honest peers from 24
    /// groups (connection and peer `i` in 1..=24, connected at `t0 + i` s), then 16 of an
    /// attacker's from one group, younger (connection and peer 100..=115, at `t0 + 100..=115`
    /// s); nothing closed.
    fn crowded_inbound(t0: Instant) -> Machine<u64> {
        crowded_inbound_with(Box::new(Plain), t0)
    }

    /// [`crowded_inbound`] beside the connection manager `cm`.
    fn crowded_inbound_with(cm: Box<dyn ConnectionManager>, t0: Instant) -> Machine<u64> {
        let config = Config::new()
            .with_addrbook(Some(addrbook::Config::new()))
            .with_maintenance_enabled(false)
            .with_max_inbound(Some(40))
            .with_max_inbound_per_group(Some(40));
        let local = peer(0);
        let mut m = Machine::new(
            local,
            config,
            Peerstore::memory(peerstore::Config::default()),
            cm,
            Box::new(Unsigned::new(local)),
            StdRng::seed_from_u64(1),
            t0,
        );
        for i in 1..=24u8 {
            let t = t0 + Duration::from_secs(u64::from(i));
            let a = inbound(&mut m, u64::from(i), i, &public(50 + i, 1, 1), t);
            assert_eq!(a, Admission::Accepted);
        }
        for i in 0..16u8 {
            let t = t0 + Duration::from_secs(100 + u64::from(i));
            inbound(&mut m, 100 + u64::from(i), 100 + i, &public(200, 1, i), t);
        }
        assert!(closed(&drain(&mut m)).is_empty());
        m
    }

    #[test]
    fn a_full_inbound_table_evicts_from_the_most_represented_group() {
        let t0 = Instant::now();
        let mut m = crowded_inbound(t0);
        // Full: the next newcomer is admitted, and the youngest attacker connection goes.
        let t = t0 + Duration::from_secs(200);
        assert_eq!(
            inbound(&mut m, 500, 200, &public(90, 1, 1), t),
            Admission::Accepted
        );
        assert_eq!(closed(&drain(&mut m)), vec![115]);
        let evicted = std::iter::from_fn(|| m.poll_event()).find_map(|e| match e {
            Event::Evicted { peer_id, group, .. } => Some((peer_id, group)),
            _ => None,
        });
        assert_eq!(evicted, Some((peer(115), Group::Ipv4([200, 1]))));
        // Another in the same instant evicts another, not the same one again.
        inbound(&mut m, 501, 201, &public(91, 1, 1), t);
        assert_eq!(closed(&drain(&mut m)), vec![114]);
    }

    /// Protects the peers it holds, and answers `standing` with nothing, as a faulty
    /// implementation might.
    struct ShortStanding(Vec<PeerId>);

    impl ConnectionManager for ShortStanding {
        fn close_order(&self, peers: &[PeerId], _: Instant) -> Vec<PeerId> {
            peers.to_vec()
        }
        fn tag_value(&self, _: &PeerId) -> i64 {
            0
        }
        fn is_protected(&self, peer: &PeerId) -> bool {
            self.0.contains(peer)
        }
        fn standing(&self, _: &[PeerId]) -> Vec<(i64, bool)> {
            Vec::new()
        }
    }

    /// The connection manager's protection reaches the eviction through `standing`: the
    /// youngest attacker connection is protected, the next youngest goes; an implementation
    /// whose `standing` leaves peers out is asked peer by peer, with the same outcome.
    #[test]
    fn eviction_spares_the_peers_the_connection_manager_protects() {
        let t0 = Instant::now();
        let t = t0 + Duration::from_secs(200);
        let mut m = crowded_inbound_with(Box::new(Protecting(vec![peer(115)])), t0);
        inbound(&mut m, 500, 200, &public(90, 1, 1), t);
        assert_eq!(closed(&drain(&mut m)), vec![114]);
        let mut m = crowded_inbound_with(Box::new(ShortStanding(vec![peer(115)])), t0);
        inbound(&mut m, 500, 200, &public(90, 1, 1), t);
        assert_eq!(closed(&drain(&mut m)), vec![114]);
    }

    #[test]
    fn one_group_holds_at_most_its_share_of_inbound_slots() {
        let t0 = Instant::now();
        let config = Config::new()
            .with_addrbook(Some(addrbook::Config::new()))
            .with_maintenance_enabled(false)
            .with_max_inbound(Some(64));
        let mut m = machine(config, t0);
        assert_eq!(m.config().max_inbound_per_group(), 4);
        let admissions: Vec<Admission> = (0..6u8)
            .map(|i| inbound(&mut m, u64::from(i), i + 1, &public(7, 7, i), t0))
            .collect();
        assert_eq!(admissions[..4], [Admission::Accepted; 4]);
        assert_eq!(admissions[4..], [Admission::Nacked; 2]);
        // Loopback is one exempt group.
        let local: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        for i in 10..20u8 {
            assert_eq!(
                inbound(&mut m, u64::from(i), i, &local, t0),
                Admission::Accepted
            );
        }
    }

    #[test]
    fn the_node_dials_its_outbound_target_whatever_its_inbound_count_and_a_trim_spares_them() {
        let t0 = Instant::now();
        let bounds = crate::maintenance::Bounds::from_connections(20);
        let mut m = with_book(bounds, t0);
        dial_peer(&mut m, 1, 1, &public(1, 1, 1), t0);
        drain(&mut m);
        answer(
            &mut m,
            1,
            1,
            (0..40).map(|b| public(30, b, 1)).collect(),
            t0,
        );
        // Inbound peers up to the maximum: the maintenance has nothing to do.
        for i in 0..bounds.max_target() as u8 {
            inbound(
                &mut m,
                100 + u64::from(i),
                100 + i,
                &public(60 + i, 2, 2),
                t0,
            );
        }
        drain(&mut m);
        let t1 = t0 + Duration::from_secs(1);
        m.handle_timeout(t1);
        let dialed = dials(&drain(&mut m));
        // One outbound held (peer 1): 7 more to the target of 8, 16 dials in flight for each
        // (under churn most addresses in a book may be gone) up to 64, each in a group of its
        // own: nearly all the 40 the book holds (a selection gives up after 100 draws, which
        // may miss the last free groups), far more than 4 per missing connection (28).
        assert!((33..=40).contains(&dialed.len()), "{dialed:?}");
        let groups: HashSet<Group> = dialed
            .iter()
            .map(|p| m.addrbook().unwrap().group(p))
            .collect();
        assert_eq!(groups.len(), dialed.len());
        for (k, point) in dialed.iter().take(7).enumerate() {
            dial_peer(&mut m, 1000 + k as u64, 30 + k as u8, point, t1);
        }
        assert!(closed(&drain(&mut m)).is_empty());
        // The target met, the next to connect is a surplus: closed at once, its address good.
        dial_peer(&mut m, 1007, 37, &dialed[7], t1);
        assert_eq!(closed(&drain(&mut m)), vec![1007]);
        assert!(m.connections().any(|(id, c)| *id == 1007 && c.feeler));
        m.handle(
            t1,
            Input::ConnectionClosed {
                id: 1007,
                peer: peer(37),
                by_remote: false,
                remaining: 0,
            },
        );
        let reasons: Vec<pool::CloseReason> = std::iter::from_fn(|| m.poll_event())
            .filter_map(|e| match e {
                Event::Disconnected { reason, .. } => Some(reason),
                _ => None,
            })
            .collect();
        assert_eq!(reasons, vec![pool::CloseReason::Surplus]);
        // Now above max_threshold: the trim closes inbound peers only.
        let t2 = t1 + Duration::from_secs(120);
        m.handle_timeout(t2);
        let closed_peers: Vec<PeerId> = drain(&mut m)
            .iter()
            .filter_map(|c| match c {
                Command::Close { peer, .. } => Some(*peer),
                _ => None,
            })
            .collect();
        assert!(!closed_peers.is_empty());
        let outbound: Vec<PeerId> = (0..7).map(|k| peer(30 + k)).chain([peer(1)]).collect();
        assert!(
            closed_peers.iter().all(|p| !outbound.contains(p)),
            "{closed_peers:?}"
        );
        // An outbound peer leaves: the node looks for a replacement at once, not at its next
        // maintenance tick.
        m.handle(
            t2,
            Input::ConnectionClosed {
                id: 1000,
                peer: peer(30),
                by_remote: true,
                remaining: 0,
            },
        );
        assert!(m.poll_timeout().is_some_and(|t| t <= t2));
        m.handle_timeout(t2);
        assert!(!dials(&drain(&mut m)).is_empty());
    }

    #[test]
    fn every_close_reports_its_reason_in_an_event_and_the_peers_log() {
        let t0 = Instant::now();
        // A newcomer evicts one of the crowded group.
        let mut m = crowded_inbound(t0);
        let t = t0 + Duration::from_secs(200);
        inbound(&mut m, 250, 250, &public(90, 1, 1), t);
        let victim = closed(&drain(&mut m))[0];
        assert_eq!(victim, 115);
        let close = |m: &mut Machine<u64>, id: u64, by_remote: bool| {
            let peer = peer(u8::try_from(id).unwrap());
            m.handle(
                t,
                Input::ConnectionClosed {
                    id,
                    peer,
                    by_remote,
                    remaining: 0,
                },
            );
            let reasons: Vec<pool::CloseReason> = std::iter::from_fn(|| m.poll_event())
                .filter_map(|e| match e {
                    Event::Disconnected {
                        peer_id, reason, ..
                    } if peer_id == peer => Some(reason),
                    _ => None,
                })
                .collect();
            let logged = m
                .pool()
                .peer(&peer)
                .unwrap()
                .record()
                .events
                .back()
                .unwrap()
                .clone();
            (reasons, logged.kind, logged.reason)
        };
        // What a close should report: the event, the log's kind and the log's reason.
        let seen = |reason, kind| (vec![reason], kind, Some(reason));
        // Ours, even if the remote's close arrives first.
        let evicted = pool::CloseReason::EvictionMostRepresentedGroup;
        assert_eq!(
            close(&mut m, victim, true),
            seen(evicted, pool::LogKind::Disconnection)
        );
        // The remote's.
        assert_eq!(
            close(&mut m, 1, true),
            seen(
                pool::CloseReason::Remote,
                pool::LogKind::ExternalDisconnection
            )
        );
        // A trim of the connection manager beside the machine, which the driver reports.
        m.closing(peer(2), pool::CloseReason::Trim);
        assert_eq!(
            close(&mut m, 2, false),
            seen(pool::CloseReason::Trim, pool::LogKind::Disconnection)
        );
        // Closed on our side by someone else: local.
        assert_eq!(close(&mut m, 3, false).0, vec![pool::CloseReason::Local]);
    }

    #[test]
    fn a_peer_whose_answer_brought_new_addresses_is_spared_by_eviction() {
        let t0 = Instant::now();
        let config = Config::new()
            .with_addrbook(Some(addrbook::Config::new()))
            .with_maintenance_enabled(false)
            .with_max_inbound(Some(30));
        let mut m = machine(config, t0);
        // 30 inbound peers in 30 groups, peer 30 the youngest.
        for i in 1..=30u8 {
            let t = t0 + Duration::from_secs(u64::from(i));
            inbound(&mut m, u64::from(i), i, &public(i, 1, 1), t);
        }
        let t = t0 + Duration::from_secs(100);
        // Without an answer, the youngest goes (every group holds one peer).
        let mut probe = m_clone_config(&m, t0);
        for i in 1..=30u8 {
            let ti = t0 + Duration::from_secs(u64::from(i));
            inbound(&mut probe, u64::from(i), i, &public(i, 1, 1), ti);
        }
        inbound(&mut probe, 99, 99, &public(99, 1, 1), t);
        assert_eq!(closed(&drain(&mut probe)), vec![30]);
        // Peer 30, which we also dialed (with a book, only peers we dialed are asked), answered
        // with an address new to us: its inbound connection is spared, the next youngest goes.
        dial_peer(&mut m, 130, 30, &public(30, 2, 2), t);
        answer(&mut m, 130, 30, vec![public(150, 1, 1)], t);
        drain(&mut m);
        inbound(&mut m, 99, 99, &public(99, 1, 1), t);
        assert_eq!(closed(&drain(&mut m)), vec![29]);
    }

    #[test]
    fn eviction_spares_the_lowest_pings_seen_on_the_connection_not_an_average() {
        let t0 = Instant::now();
        let config = Config::new()
            .with_addrbook(Some(addrbook::Config::new()))
            .with_maintenance_enabled(false)
            .with_max_inbound(Some(30));
        // 30 inbound peers in 30 groups, peer 30 the youngest; peer i pings 10 + i ms, so
        // peers 1 to 8 hold the 8 lowest; peer 30 pings 300 ms, then once `last` ms.
        let run = |last: u64| {
            let mut m = machine(config.clone(), t0);
            for i in 1..=30u8 {
                let t = t0 + Duration::from_secs(u64::from(i));
                inbound(&mut m, u64::from(i), i, &public(i, 1, 1), t);
            }
            let t = t0 + Duration::from_secs(60);
            let ping = |m: &mut Machine<u64>, i: u8, ms: u64| {
                let rtt = Duration::from_millis(ms);
                m.handle(t, Input::Ping { peer: peer(i), rtt });
            };
            for i in 1..=29u8 {
                ping(&mut m, i, 10 + u64::from(i));
            }
            for _ in 0..5 {
                ping(&mut m, 30, 300);
            }
            ping(&mut m, 30, last);
            drain(&mut m);
            inbound(&mut m, 99, 99, &public(99, 1, 1), t);
            closed(&drain(&mut m))
        };
        // Without a fast ping, the youngest goes.
        assert_eq!(run(300), vec![30]);
        // One 1 ms ping makes peer 30's lowest the lowest of all: it is spared (its EWMA,
        // about 270 ms, would have been the worst), and the next youngest goes.
        assert_eq!(run(1), vec![29]);
    }

    /// A fresh machine with `m`'s configuration.
    fn m_clone_config(m: &Machine<u64>, now: Instant) -> Machine<u64> {
        machine(m.config().clone(), now)
    }

    #[test]
    fn with_a_book_only_peers_we_dialed_are_asked_for_points() {
        let t0 = Instant::now();
        let mut m = with_book(crate::maintenance::Bounds::from_connections(40), t0);
        // An inbound peer that offers the exchange, and nothing to dial.
        inbound(&mut m, 1, 1, &public(1, 1, 1), t0);
        let mut info = identify(true, 1);
        info.listen_addrs = vec![public(1, 1, 1)];
        m.handle(
            t0,
            Input::Identified {
                peer: peer(1),
                info,
            },
        );
        for k in 1..20 {
            m.handle_timeout(t0 + Duration::from_secs(k));
        }
        assert!(asks(&drain(&mut m)).is_empty(), "an inbound peer was asked");
        // A peer we dial is asked (at identify), and again once the book runs dry.
        dial_peer(&mut m, 2, 2, &public(2, 2, 2), t0 + Duration::from_secs(20));
        assert_eq!(asks(&drain(&mut m)), vec![peer(2)]);
        answer(&mut m, 2, 2, Vec::new(), t0 + Duration::from_secs(20));
        let mut later = Vec::new();
        for k in 21..40 {
            m.handle_timeout(t0 + Duration::from_secs(k));
            later.extend(asks(&drain(&mut m)));
        }
        assert!(
            !later.is_empty() && later.iter().all(|p| *p == peer(2)),
            "{later:?}"
        );
    }

    #[test]
    fn at_the_threshold_an_eviction_comes_before_a_nack() {
        let t0 = Instant::now();
        // Bounds 10/20/26 (max_threshold 24) and room for 40 inbound: the threshold binds
        // first.
        let config = Config::new()
            .with_bounds(crate::maintenance::Bounds::new(10, 20, 26).unwrap())
            .with_addrbook(Some(addrbook::Config::new()))
            .with_maintenance_enabled(false)
            .with_max_inbound(Some(40));
        let mut m = machine(config, t0);
        assert_eq!(m.bounds().max_threshold(), 24);
        // 21 peers in 21 groups, then 3 in one group, the youngest.
        for i in 1..=24u8 {
            let t = t0 + Duration::from_secs(u64::from(i));
            let remote = if i <= 21 {
                public(i, 1, 1)
            } else {
                public(200, 1, i)
            };
            inbound(&mut m, u64::from(i), i, &remote, t);
        }
        assert!(closed(&drain(&mut m)).is_empty());
        let t = t0 + Duration::from_secs(30);
        assert_eq!(
            inbound(&mut m, 99, 99, &public(9, 9, 9), t),
            Admission::Accepted
        );
        assert_eq!(closed(&drain(&mut m)), vec![24]);
    }

    /// The glue calls `handle_timeout` on every poll: a node short of its outbound target with
    /// nothing to dial must not report (and so wake itself) at every call.
    #[test]
    fn a_short_book_acts_once_per_second_however_often_it_is_polled() {
        let t0 = Instant::now();
        let mut m = with_book(crate::maintenance::Bounds::from_connections(40), t0);
        std::iter::from_fn(|| m.poll_event()).for_each(drop);
        for _ in 0..100 {
            m.handle_timeout(t0);
        }
        let reports = std::iter::from_fn(|| m.poll_event())
            .filter(|e| matches!(e, Event::Maintenance { .. }))
            .count();
        assert!(reports <= 1, "{reports} maintenance reports at one instant");
        assert!(m.poll_timeout().is_some_and(|t| t > t0));
    }

    /// Inbound connections admitted but not yet established hold their slot: two admitted in
    /// the same instant do not both pass a limit of one.
    #[test]
    fn admitted_inbound_connections_hold_their_slot_before_they_are_established() {
        let t0 = Instant::now();
        let config = Config::new()
            .with_addrbook(Some(addrbook::Config::new()))
            .with_maintenance_enabled(false)
            .with_max_inbound(Some(1));
        let mut m = machine(config, t0);
        let (a, b) = (public(1, 1, 1), public(2, 2, 2));
        m.admit_pending_inbound(1, &a, t0).unwrap();
        m.admit_pending_inbound(2, &b, t0).unwrap();
        let first = m.admit_established(1, peer(1), &a, true, t0).unwrap();
        let second = m.admit_established(2, peer(2), &b, true, t0).unwrap();
        assert_eq!((first, second), (Admission::Accepted, Admission::Nacked));
    }

    /// Protects the peers it holds; no tags.
    struct Protecting(Vec<PeerId>);

    impl ConnectionManager for Protecting {
        fn close_order(&self, peers: &[PeerId], _: Instant) -> Vec<PeerId> {
            peers
                .iter()
                .filter(|p| !self.0.contains(p))
                .copied()
                .collect()
        }
        fn tag_value(&self, _: &PeerId) -> i64 {
            0
        }
        fn is_protected(&self, peer: &PeerId) -> bool {
            self.0.contains(peer)
        }
    }

    /// A book with 2 inbound slots per public group, no maintenance.
    fn two_per_group() -> Config {
        Config::new()
            .with_addrbook(Some(addrbook::Config::new()))
            .with_maintenance_enabled(false)
            .with_max_inbound_per_group(Some(2))
    }

    /// Peers 1 and 2 from the group 7.7.0.0/16 fill its 2 slots; peer 3 from it is nacked.
    fn fill_group_7_7(m: &mut Machine<u64>, t0: Instant) {
        for i in 1..=2u8 {
            assert_eq!(
                inbound(m, u64::from(i), i, &public(7, 7, i), t0),
                Admission::Accepted
            );
        }
        assert_eq!(inbound(m, 3, 3, &public(7, 7, 3), t0), Admission::Nacked);
    }

    #[test]
    fn a_protected_peer_is_exempt_from_its_groups_share() {
        let t0 = Instant::now();
        let local = peer(0);
        let mut m = Machine::new(
            local,
            two_per_group(),
            Peerstore::memory(peerstore::Config::default()),
            Box::new(Protecting(vec![peer(9)])),
            Box::new(Unsigned::new(local)),
            StdRng::seed_from_u64(1),
            t0,
        );
        fill_group_7_7(&mut m, t0);
        assert_eq!(
            inbound(&mut m, 9, 9, &public(7, 7, 9), t0),
            Admission::Accepted
        );
    }

    /// Issue 14: the resource manager's allowlisted peers are exempt from their group's share,
    /// as protected ones are: an entry without a peer exempts every peer at its addresses, one
    /// with `/p2p/<id>` that peer only.
    #[test]
    fn an_allowlisted_peer_is_exempt_from_its_groups_share() {
        let t0 = Instant::now();
        let mut m = machine(two_per_group(), t0);
        let allowlist: Vec<Multiaddr> = vec![
            "/ip4/7.7.9.0/ipcidr/24".parse().unwrap(),
            format!("/ip4/7.7.8.8/p2p/{}", peer(8)).parse().unwrap(),
        ];
        let rm = crate::rcmgr::ResourceManager::new(
            crate::rcmgr::Config::new().with_allowlist(allowlist),
        )
        .unwrap();
        m.set_resources(Box::new(crate::rcmgr::Connections::new(rm)));
        fill_group_7_7(&mut m, t0);
        // Any peer in the allowlisted network; the named peer at its address, not another.
        assert_eq!(
            inbound(&mut m, 4, 4, &"/ip4/7.7.4.4/tcp/4001".parse().unwrap(), t0),
            Admission::Nacked,
            "7.7.4.4 is not in 7.7.9.0/24"
        );
        assert_eq!(
            inbound(
                &mut m,
                10,
                10,
                &"/ip4/7.7.9.10/tcp/4001".parse().unwrap(),
                t0
            ),
            Admission::Accepted
        );
        assert_eq!(
            inbound(&mut m, 8, 8, &"/ip4/7.7.8.8/tcp/4001".parse().unwrap(), t0),
            Admission::Accepted
        );
        assert_eq!(
            inbound(
                &mut m,
                11,
                11,
                &"/ip4/7.7.8.8/tcp/4002".parse().unwrap(),
                t0
            ),
            Admission::Nacked,
            "the entry names peer 8 alone"
        );
    }
}

/// go identify (`consumeSignedPeerRecord`): a valid record of the peer replaces its listen
/// addresses and certifies its own; one signed by another key, or older than the one held, is
/// refused whole and the listen addresses count, uncertified.
#[test]
fn identify_certifies_the_addresses_of_the_peers_own_signed_record_only() {
    use crate::peerstore::conformance::{signed_record, signed_record_for};

    let now = Instant::now();
    let mut m = Machine::new(
        peer(0),
        Config::new(),
        Peerstore::memory(peerstore::Config::default()),
        Box::new(Plain),
        Box::new(Signed::new(Keypair::ed25519_from_bytes([0; 32]).unwrap())),
        StdRng::seed_from_u64(1),
        now,
    );
    let key = |i: u8| Keypair::ed25519_from_bytes([i; 32]).unwrap();
    let identified = |m: &mut Machine<u64>, i: u8, record: libp2p_core::SignedEnvelope| {
        m.handle(
            now,
            Input::Identified {
                peer: peer(i),
                info: Identify {
                    listen_addrs: vec![addr(200)],
                    signed_peer_record: Some(record.into_protobuf_encoding()),
                    ..identify(true, i)
                },
            },
        );
    };
    let certified = |m: &Machine<u64>, i: u8| -> Vec<Multiaddr> {
        m.peerstore()
            .peer_record(&peer(i), now)
            .map(|e| {
                libp2p_core::PeerRecord::from_signed_envelope_interop(e)
                    .unwrap()
                    .addresses()
                    .to_vec()
            })
            .unwrap_or_default()
    };
    let sorted = |mut v: Vec<Multiaddr>| {
        v.sort();
        v
    };

    establish(&mut m, 1, 1, false, now);
    identified(&mut m, 1, signed_record(&key(1), 5, &[addr(1), addr(101)]));
    assert_eq!(certified(&m, 1), vec![addr(1), addr(101)]);
    assert_eq!(
        sorted(m.peerstore().addrs(&peer(1), now)),
        sorted(vec![addr(1), addr(101)]),
        "the record's addresses, not the listen address"
    );
    // An older record, replayed: refused whole; the listen addresses count, and the record
    // held stays.
    identified(&mut m, 1, signed_record(&key(1), 4, &[addr(102)]));
    assert_eq!(certified(&m, 1), vec![addr(1), addr(101)]);
    assert!(!m.peerstore().addrs(&peer(1), now).contains(&addr(102)));

    // Peer 2 sends a record naming it but signed by peer 3's key.
    establish(&mut m, 2, 2, false, now);
    identified(
        &mut m,
        2,
        signed_record_for(&key(3), peer(2), 9, &[addr(103)]),
    );
    assert!(certified(&m, 2).is_empty());
    assert_eq!(m.peerstore().addrs(&peer(2), now), vec![addr(200)]);
    // And peer 2 passing on peer 3's valid record certifies nothing of peer 3's through it.
    identified(&mut m, 2, signed_record(&key(3), 9, &[addr(103)]));
    assert!(certified(&m, 3).is_empty());
    assert_eq!(m.peerstore().addrs(&peer(2), now), vec![addr(200)]);
}

/// Issue "identify of any size": a large message keeps what fits, never fails whole: the first
/// 500 addresses (go's `connectedPeerMaxAddrs`) and the first 128 protocols (go `pstoremem`'s
/// cap); the peer exchange, listed last, still counts.
#[test]
fn a_large_identify_keeps_the_first_addresses_and_protocols_up_to_the_caps() {
    let now = Instant::now();
    let mut m = machine(Config::new(), now);
    establish(&mut m, 1, 1, false, now);
    let addrs: Vec<Multiaddr> = (0..800u32)
        .map(|i| {
            format!("/ip4/10.{}.{}.1/tcp/9732", i / 256, i % 256)
                .parse()
                .unwrap()
        })
        .collect();
    let mut protocols: Vec<String> = (0..199).map(|i| format!("/junk/{i}/1.0.0")).collect();
    protocols.push(pex::PROTOCOL.to_owned());
    m.handle(
        now,
        Input::Identified {
            peer: peer(1),
            info: Identify {
                listen_addrs: addrs.clone(),
                protocols: protocols.clone(),
                ..identify(true, 1)
            },
        },
    );
    let mut stored = m.peerstore().addrs(&peer(1), now);
    stored.sort();
    let mut want = addrs[..MAX_IDENTIFY_ADDRS].to_vec();
    want.sort();
    assert_eq!(stored, want);
    assert_eq!(m.peerstore().protocols(&peer(1)).len(), 128);
    assert!(
        m.peerstore()
            .protocols(&peer(1))
            .contains(&"/junk/0/1.0.0".to_owned())
    );
    assert!(
        !m.peerstore()
            .protocols(&peer(1))
            .contains(&"/junk/128/1.0.0".to_owned())
    );
    // Offers the exchange: asked for points, as a dialed peer that lists it.
    assert_eq!(asks(&drain(&mut m)), vec![peer(1)]);
}

/// go identify's `filterAddrs`, for identify and the peer exchange alike: a peer connected from
/// a public address may name public points only; from a private one, no loopback point; from
/// loopback (a devnet), any.
#[test]
fn points_out_of_the_senders_scope_are_dropped() {
    let now = Instant::now();
    let mut m = machine(Config::new().with_maintenance_enabled(false), now);
    let a = |s: &str| s.parse::<Multiaddr>().unwrap();
    let scopes = |tag: u8| {
        [
            a(&format!("/ip4/127.0.0.{tag}/tcp/4001")),
            a(&format!("/ip4/192.168.1.{tag}/tcp/4001")),
            a(&format!("/ip4/224.0.0.{tag}/tcp/4001")),
            a(&format!("/ip4/8.8.8.{tag}/tcp/4001")),
            a(&format!("/dns4/n{tag}.example.org/tcp/4001")),
        ]
    };
    let kept = |m: &Machine<u64>, tag: u8| -> Vec<bool> {
        scopes(tag)
            .iter()
            .map(|p| m.pool().point(p).is_some())
            .collect()
    };
    for (id, i, remote) in [
        (1, 1, a("/ip4/1.2.3.4/tcp/4001")),
        (2, 2, a("/ip4/10.0.0.2/tcp/4001")),
        (3, 3, a("/ip4/127.0.0.3/tcp/4001")),
    ] {
        dial_and_establish(&mut m, id, i, &remote, now);
        m.handle(
            now,
            Input::Identified {
                peer: peer(i),
                info: Identify {
                    listen_addrs: scopes(i).to_vec(),
                    ..identify(true, i)
                },
            },
        );
        answer(&mut m, id, i, scopes(100 + i).to_vec(), now);
    }
    // Loopback, private, multicast, public, host name.
    for (i, expected) in [
        (1, [false, false, false, true, true]),
        (2, [false, true, false, true, true]),
        (3, [true, true, true, true, true]),
    ] {
        assert_eq!(kept(&m, i), expected, "identify of peer {i}");
        assert_eq!(kept(&m, 100 + i), expected, "pex answer of peer {i}");
    }
}

/// The handshake guard's struck-out IPs are greylisted in the pool, so that the next
/// connection from one is refused at its first admission point.
#[test]
fn an_ip_whose_handshakes_stalled_is_greylisted() {
    let now = Instant::now();
    let mut m = machine(Config::new().with_maintenance_enabled(false), now);
    let ip: std::net::IpAddr = "10.9.9.9".parse().unwrap();
    let from = |ip: &str| format!("/ip4/{ip}/tcp/5000").parse::<Multiaddr>().unwrap();
    m.handle(now, Input::HandshakesStalled { ip });
    assert!(m.pool().acl().is_ip_greylisted(ip, now));
    assert!(matches!(
        m.admit_pending_inbound(7, &from("10.9.9.9"), now),
        Err(Refusal::Pool(pool::Error::IpBanned(banned))) if banned == ip
    ));
    m.admit_pending_inbound(8, &from("10.9.9.10"), now)
        .expect("another IP is admitted");
}
