//! The connection manager on real swarms over TCP on 127.0.0.1: a trim closes the
//! lowest-valued peers and spares protected ones; an inbound flood never pushes the established
//! count past the hard cap; a sibling's denial is not counted.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use futures::StreamExt;
use libp2p::{
    Multiaddr, PeerId, Swarm,
    swarm::{DialError, ListenError, NetworkBehaviour, SwarmEvent, dummy},
};
use peerage::connmgr::{self, HardCapReached};
use prometheus_client::registry::Registry;
use support::{Denied, Denier, listen, tcp_swarm as swarm};

mod support;

fn hub(config: connmgr::Config) -> Swarm<connmgr::Behaviour> {
    swarm(|| connmgr::Behaviour::new(config).unwrap())
}

/// A peer that dials `addr` and keeps polling its swarm in the background.
fn spawn_dialer(addr: Multiaddr) -> PeerId {
    let mut s = swarm(|| dummy::Behaviour);
    let id = *s.local_peer_id();
    s.dial(addr).unwrap();
    tokio::spawn(async move {
        loop {
            s.select_next_some().await;
        }
    });
    id
}

/// Polls the hub until `done` holds, checking `each` after every event; panics after 20 s.
async fn drive(
    hub: &mut Swarm<connmgr::Behaviour>,
    mut each: impl FnMut(&Swarm<connmgr::Behaviour>, &SwarmEvent<connmgr::Event>),
    done: impl Fn(&Swarm<connmgr::Behaviour>) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(hub) {
        assert!(
            Instant::now() < deadline,
            "condition not reached within 20 s"
        );
        tokio::select! {
            event = hub.select_next_some() => each(hub, &event),
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
}

#[tokio::test]
async fn a_trim_closes_the_lowest_valued_peers_and_spares_protected_ones() {
    // Low 3, high 20: no background trim; grace 0: every peer is a candidate.
    let mut hub = hub(connmgr::Config::new()
        .with_watermarks(3, 20)
        .with_grace_period(Duration::ZERO));
    let addr = listen(&mut hub).await;
    let handle = hub.behaviour().handle();
    let peers: Vec<PeerId> = (0..8).map(|_| spawn_dialer(addr.clone())).collect();
    drive(
        &mut hub,
        |_, _| {},
        |h| peers.iter().all(|p| h.is_connected(p)),
    )
    .await;
    for (value, peer) in peers.iter().enumerate() {
        handle.tag_peer(peer, "app", value as i64 * 10);
    }
    // The lowest-valued peer is protected: it must survive.
    handle.protect(&peers[0], "keep");

    let trim = handle.trim_open_conns();
    let mut trimmed = None;
    drive(
        &mut hub,
        |_, e| {
            if let SwarmEvent::Behaviour(connmgr::Event::Trimmed(t)) = e {
                trimmed = Some(t.clone());
            }
        },
        |h| h.connected_peers().count() == 4,
    )
    .await;
    trim.await;
    let trimmed = trimmed.expect("a trim event");
    assert_eq!(trimmed.kind, connmgr::TrimKind::Manual);
    // 7 unprotected candidates - low 3 = 4 closed: values 10, 20, 30, 40.
    let closed: Vec<PeerId> = trimmed.victims.iter().map(|v| v.peer).collect();
    assert_eq!(closed, peers[1..5]);
    assert!(hub.is_connected(&peers[0]), "protected");
    assert!(peers[5..].iter().all(|p| hub.is_connected(p)));
    assert_eq!(handle.info().connections, 4);
}

#[tokio::test]
async fn an_inbound_flood_never_passes_the_hard_cap() {
    // High 8: hard cap 9. The default 1 min grace spares every newcomer, so nothing is trimmed
    // and only admission holds the count.
    let mut hub = hub(connmgr::Config::new().with_watermarks(4, 8));
    assert_eq!(hub.behaviour().handle().config().hard_cap(), Some(9));
    let addr = listen(&mut hub).await;
    let handle = hub.behaviour().handle();
    let mut registry = Registry::default();
    handle.register_metrics(registry.sub_registry_with_prefix("libp2p_connmgr"));

    let friends: Vec<PeerId> = (0..2).map(|_| spawn_dialer(addr.clone())).collect();
    for f in &friends {
        handle.protect(f, "trusted");
    }
    drive(
        &mut hub,
        |_, _| {},
        |h| friends.iter().all(|p| h.is_connected(p)),
    )
    .await;

    let flood: Vec<PeerId> = (0..40).map(|_| spawn_dialer(addr.clone())).collect();
    let mut max_seen = 0;
    let mut denied = HashSet::new();
    let settled = std::cell::Cell::new(0);
    drive(
        &mut hub,
        |h, e| {
            let established = h.network_info().connection_counters().num_established() as usize;
            max_seen = max_seen.max(established);
            assert!(
                established <= 9 + 2,
                "{established} established, cap 9 + 2 protected"
            );
            match e {
                SwarmEvent::IncomingConnectionError {
                    error: ListenError::Denied { cause },
                    ..
                } => {
                    let cap = cause.downcast_ref::<HardCapReached>().expect("hard cap");
                    assert_eq!(cap.limit, 9);
                    denied.insert(cap.connections);
                    settled.set(settled.get() + 1);
                }
                SwarmEvent::ConnectionEstablished { peer_id, .. } if flood.contains(peer_id) => {
                    settled.set(settled.get() + 1);
                }
                _ => {}
            }
        },
        |_| settled.get() >= flood.len(),
    )
    .await;
    assert_eq!(max_seen, 11, "the cap was reached");
    assert_eq!(denied, HashSet::from([9]));
    let flood_connected = flood.iter().filter(|p| hub.is_connected(p)).count();
    assert_eq!(flood_connected, 9);
    assert!(friends.iter().all(|p| hub.is_connected(p)));

    // A protected peer is still admitted at the cap.
    let late = swarm(|| dummy::Behaviour);
    let late_id = *late.local_peer_id();
    handle.protect(&late_id, "trusted");
    let mut late = late;
    late.dial(addr.clone()).unwrap();
    tokio::spawn(async move {
        loop {
            late.select_next_some().await;
        }
    });
    drive(&mut hub, |_, _| {}, |h| h.is_connected(&late_id)).await;

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for line in [
        "libp2p_connmgr_connections 12",
        "libp2p_connmgr_protected_peers 3",
        "libp2p_connmgr_hard_cap 9",
        "libp2p_connmgr_denied_connections_total 31",
    ] {
        assert!(text.contains(line), "{line} missing in\n{text}");
    }
}

#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct WithDenier {
    connmgr: connmgr::Behaviour,
    denier: Denier,
}

/// libp2p-connection-limits' sibling test: a connection the connection manager admitted in
/// `handle_established_*` but a sibling denied is never counted, so it never uses up the cap.
#[tokio::test]
async fn a_connection_denied_by_a_sibling_is_not_counted() {
    let config = connmgr::Config::new().with_watermarks(1, 1);
    let mut a = swarm(|| WithDenier {
        connmgr: connmgr::Behaviour::new(config).unwrap(),
        denier: Denier,
    });
    let handle = a.behaviour().connmgr.handle();
    let addr = listen(&mut a).await;
    // Three attempts: with a cap of 2 (1 + 10 %, rounded up), a leak would show in the count
    // or as a hard-cap denial.
    let mut denials = 0;
    for _ in 0..3 {
        let mut b = swarm(|| dummy::Behaviour);
        b.dial(addr.clone()).unwrap();
        loop {
            tokio::select! {
                event = a.select_next_some() => {
                    if let SwarmEvent::IncomingConnectionError { error: ListenError::Denied { cause }, .. } = event {
                        assert!(cause.downcast_ref::<Denied>().is_some(), "denied by the sibling, not the cap");
                        denials += 1;
                        break;
                    }
                }
                event = b.select_next_some() => {
                    if let SwarmEvent::OutgoingConnectionError { error: DialError::Denied { .. }, .. } = event {
                        unreachable!("b denies nothing");
                    }
                }
            }
        }
        assert_eq!(handle.info().connections, 0);
    }
    assert_eq!(denials, 3);
}

/// go's TestTrimJoin and TestTrimClosed: calls made while a trim waits to run join it (one trim
/// serves them all), and a trim asked of a connection manager whose behaviour is gone returns.
#[test]
fn trims_are_single_flight_and_return_after_close() {
    use std::task::Context;

    use futures::{FutureExt, task::noop_waker};

    let mut behaviour = connmgr::Behaviour::new(connmgr::Config::new()).unwrap();
    let handle = behaviour.handle();
    let mut calls: Vec<_> = (0..3).map(|_| handle.trim_open_conns().boxed()).collect();
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    for call in &mut calls {
        assert!(call.poll_unpin(&mut cx).is_pending(), "no trim ran yet");
    }
    // One poll of the behaviour runs one trim for the three callers.
    while NetworkBehaviour::poll(&mut behaviour, &mut cx).is_ready() {}
    for call in &mut calls {
        assert!(call.poll_unpin(&mut cx).is_ready());
    }
    assert_eq!(handle.stats().trims, 1);

    let mut late = handle.trim_open_conns().boxed();
    drop(behaviour);
    assert!(
        late.poll_unpin(&mut cx).is_ready(),
        "returns once the behaviour is gone"
    );
    assert!(handle.trim_open_conns().now_or_never().is_some());
}
