//! The behaviour on real swarms over TCP on 127.0.0.1: peer exchange, and Octez's nack.

use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::{PeerId, Swarm, noise, swarm::SwarmEvent, tcp, yamux};
use peerage::{Event, maintenance::Bounds, peerstore::Ttl};
use support::{Denier, listen, spawn_bare_dialer};

mod support;

fn swarm(bounds: Bounds) -> Swarm<peerage::Behaviour> {
    support::node(bounds, peerage::pool::Config::new())
}

/// Polls every swarm until `done` holds, collecting behaviour events; panics after 20 s.
async fn drive(
    swarms: &mut [&mut Swarm<peerage::Behaviour>],
    events: &mut Vec<(PeerId, Event)>,
    done: impl Fn(&[&mut Swarm<peerage::Behaviour>]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(swarms) {
        assert!(
            Instant::now() < deadline,
            "condition not reached within 20 s"
        );
        let next = futures::future::select_all(
            swarms
                .iter_mut()
                .map(|s| Box::pin(async { (*s.local_peer_id(), s.select_next_some().await) })),
        );
        tokio::select! {
            ((peer, event), _, _) = next => {
                if let SwarmEvent::Behaviour(e) = event {
                    events.push((peer, e));
                }
            }
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

fn active(s: &Swarm<peerage::Behaviour>) -> usize {
    s.behaviour().active_connections()
}

/// B and C know only A. Each wants two connections, so each must learn the other's point from
/// A through the exchange and dial it.
#[tokio::test]
async fn peers_learn_each_other_through_exchange() {
    let bounds = Bounds::new(2, 2, 4).unwrap();
    let (mut a, mut b, mut c) = (swarm(bounds), swarm(bounds), swarm(bounds));
    let a_addr = listen(&mut a).await;
    listen(&mut b).await;
    listen(&mut c).await;
    b.behaviour_mut().add_trusted_point(&a_addr).unwrap();
    c.behaviour_mut().add_trusted_point(&a_addr).unwrap();
    let (b_id, c_id) = (*b.local_peer_id(), *c.local_peer_id());

    let mut events = Vec::new();
    drive(&mut [&mut a, &mut b, &mut c], &mut events, |s| {
        s.iter().all(|s| active(s) == 2)
    })
    .await;

    assert!(b.behaviour().pool().is_running(&c_id));
    assert!(c.behaviour().pool().is_running(&b_id));
    assert!(
        events
            .iter()
            .any(|(p, e)| *p == b_id && matches!(e, Event::PointsReceived { new, .. } if *new > 0)),
        "B learned points by exchange"
    );
    // A's answer carried its signed peer record: B holds A's certified address.
    let a_id = *a.local_peer_id();
    let envelope = b
        .behaviour()
        .peerstore()
        .peer_record(&a_id)
        .expect("A's signed record");
    let record = libp2p::core::PeerRecord::from_signed_envelope_interop(envelope).unwrap();
    assert_eq!(record.peer_id(), a_id);
    let a_listen = peerage::pool::split_point(&a_addr).unwrap().0;
    assert_eq!(record.addresses(), [a_listen]);
    // A holds its own record too (as go's host does).
    assert!(a.behaviour().peerstore().peer_record(&a_id).is_some());
    // Identify fed A's peerstore.
    let protocols = a.behaviour().peerstore().protocols(&b_id);
    assert!(
        protocols.iter().any(|p| p == "/peerage/pex/1.0.0"),
        "{protocols:?}"
    );
    assert!(!a.behaviour().peerstore().addrs(&b_id).is_empty());
}

/// A holds at most one connection (max 1). B takes it; C is nacked: A answers C's
/// request for points with B's point, C closes, backs off from A as from a refusal, and dials B.
#[tokio::test]
async fn a_full_node_nacks_with_points() {
    let mut a = swarm(Bounds::new(1, 1, 1).unwrap());
    let mut b = swarm(Bounds::new(1, 1, 2).unwrap());
    let mut c = swarm(Bounds::new(1, 1, 2).unwrap());
    let a_addr = listen(&mut a).await;
    listen(&mut b).await;
    listen(&mut c).await;
    let (a_id, b_id, c_id) = (*a.local_peer_id(), *b.local_peer_id(), *c.local_peer_id());
    b.behaviour_mut().add_trusted_point(&a_addr).unwrap();

    let mut events = Vec::new();
    drive(&mut [&mut a, &mut b, &mut c], &mut events, |s| {
        s[0].behaviour().pool().is_running(&b_id)
            && !s[0].behaviour().peerstore().protocols(&b_id).is_empty()
    })
    .await;

    c.behaviour_mut().add_trusted_point(&a_addr).unwrap();
    drive(&mut [&mut a, &mut b, &mut c], &mut events, |s| {
        s[2].behaviour().pool().is_running(&b_id)
    })
    .await;

    assert!(
        events
            .iter()
            .any(|(p, e)| *p == a_id && matches!(e, Event::Nacked { peer_id } if *peer_id == c_id))
    );
    assert_eq!(active(&a), 1, "the nacked connection was never counted");
    // C asks for points only once A's identify has arrived, so C identified A on the nacked
    // connection; once it closed, A's addresses were demoted to recently connected.
    let a_addrs = c.behaviour().peerstore().addrs_with_ttl(&a_id);
    assert!(!a_addrs.is_empty());
    assert!(
        a_addrs.iter().all(|e| e.ttl == Ttl::RECENTLY_CONNECTED),
        "{a_addrs:?}"
    );
    // Whether A read C's identify before C closed is a race (separate streams); if it did, C's
    // addresses were demoted too.
    let c_addrs = a.behaviour().peerstore().addrs_with_ttl(&c_id);
    assert!(
        c_addrs.iter().all(|e| e.ttl == Ttl::RECENTLY_CONNECTED),
        "{c_addrs:?}"
    );
    // B is still connected to A: its addresses are connected.
    let b_addrs = a.behaviour().peerstore().addrs_with_ttl(&b_id);
    assert!(!b_addrs.is_empty());
    assert!(
        b_addrs.iter().all(|e| e.ttl == Ttl::Connected),
        "{b_addrs:?}"
    );
    assert_eq!(
        a.behaviour()
            .peerstore()
            .get::<String>(&b_id, peerage::AGENT_VERSION)
            .unwrap(),
        format!("peerage/{}", env!("CARGO_PKG_VERSION"))
    );
    assert!(!c.behaviour().pool().is_running(&a_id));
    let a_point = peerage::pool::split_point(&a_addr).unwrap().0;
    let info = c.behaviour().pool().point(&a_point).unwrap();
    assert_eq!(info.last_rejected_connection().map(|(p, _)| p), Some(a_id));
    let wait = info.reconnection().unwrap().end - info.last_rejected_connection().unwrap().1;
    assert!(
        wait < Duration::from_secs(2),
        "refusal backoff, not the 60 s disconnection delay"
    );
}

#[derive(libp2p::swarm::NetworkBehaviour)]
struct WithDenier {
    peerage: peerage::Behaviour,
    denier: Denier,
}

/// Count only what happened (rust-libp2p `connection-limits`' sibling test): a connection that
/// another behaviour denies after ours admitted it in `handle_established_*` is never counted.
#[tokio::test]
async fn a_connection_denied_by_a_sibling_is_not_counted() {
    let mut a = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|key| WithDenier {
            peerage: peerage::Behaviour::new(key, peerage::Config::new()),
            denier: Denier,
        })
        .unwrap()
        .build();
    let a_addr = listen(&mut a).await;
    let mut b = swarm(Bounds::new(1, 1, 2).unwrap());
    b.behaviour_mut().add_trusted_point(&a_addr).unwrap();

    // Drive both until A has denied a connection, then half a second more.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut denied_at = None;
    while denied_at.is_none_or(|t: Instant| t.elapsed() < Duration::from_millis(500)) {
        assert!(Instant::now() < deadline, "A saw no denied connection");
        tokio::select! {
            event = a.select_next_some() => {
                if let SwarmEvent::IncomingConnectionError { .. } = event {
                    denied_at.get_or_insert_with(Instant::now);
                }
            }
            _ = b.select_next_some() => {}
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        assert_eq!(a.behaviour().peerage.active_connections(), 0);
        // Known (Octez registers the peer at authentication), but back to disconnected.
        let b_id = *b.local_peer_id();
        if denied_at.is_some() {
            let state = a.behaviour().peerage.pool().peer(&b_id).map(|p| p.state());
            assert_eq!(state, Some(peerage::pool::peer::State::Disconnected));
        }
        assert_eq!(a.behaviour().peerage.connmgr().info().connections, 0);
    }
}

/// A peer that closes a connection we dialed right away has refused it: our point for it backs
/// off for 1 s (growing), as from a nack, not for the 60 s disconnection delay.
#[tokio::test]
async fn a_connection_closed_at_once_by_the_remote_counts_as_refused() {
    let mut a = swarm(Bounds::new(1, 1, 4).unwrap());
    let mut b = swarm(Bounds::new(1, 1, 4).unwrap());
    let a_addr = listen(&mut a).await;
    let (a_id, b_id) = (*a.local_peer_id(), *b.local_peer_id());
    b.behaviour_mut().add_trusted_point(&a_addr).unwrap();
    let a_point = peerage::pool::split_point(&a_addr).unwrap().0;

    let mut events = Vec::new();
    drive(&mut [&mut a, &mut b], &mut events, |s| {
        s[0].is_connected(&b_id)
    })
    .await;
    a.disconnect_peer_id(b_id).unwrap();
    drive(&mut [&mut a, &mut b], &mut events, |s| {
        s[1].behaviour()
            .pool()
            .point(&a_point)
            .is_some_and(|p| p.last_rejected_connection().is_some())
    })
    .await;
    let info = b.behaviour().pool().point(&a_point).unwrap();
    assert_eq!(info.last_rejected_connection().map(|(p, _)| p), Some(a_id));
    assert_eq!(info.last_disconnection(), None);
    let (_, at) = info.last_rejected_connection().unwrap();
    assert!(info.reconnection().unwrap().end - at <= Duration::from_millis(1100));
}

/// Polls `a` and `b` until `a` has reported `n` inbound connections nacked or refused; returns
/// the nacked peers and the refusals' errors. Panics after 20 s.
async fn nacks_and_refusals(
    a: &mut Swarm<peerage::Behaviour>,
    b: &mut Swarm<peerage::Behaviour>,
    n: usize,
) -> (Vec<PeerId>, Vec<libp2p::swarm::ConnectionDenied>) {
    let (mut nacked, mut refused) = (Vec::new(), Vec::new());
    let deadline = tokio::time::sleep(Duration::from_secs(20));
    tokio::pin!(deadline);
    while nacked.len() + refused.len() < n {
        tokio::select! {
            event = a.select_next_some() => match event {
                SwarmEvent::Behaviour(Event::Nacked { peer_id }) => nacked.push(peer_id),
                SwarmEvent::IncomingConnectionError {
                    error: libp2p::swarm::ListenError::Denied { cause },
                    ..
                } => refused.push(cause),
                _ => {}
            },
            _ = b.select_next_some() => {}
            () = &mut deadline => panic!("{} nacked and {} refused within 20 s", nacked.len(), refused.len()),
        }
    }
    (nacked, refused)
}

/// A full node A (bounds 1/1/1, built from `config`) and B, connected to it; A's address.
async fn full_node(
    config: peerage::Config,
) -> (
    Swarm<peerage::Behaviour>,
    Swarm<peerage::Behaviour>,
    libp2p::Multiaddr,
) {
    let mut a = support::node_with(
        Bounds::new(1, 1, 1).unwrap(),
        peerage::pool::Config::new(),
        config,
    );
    let mut b = swarm(Bounds::new(1, 1, 2).unwrap());
    let a_addr = listen(&mut a).await;
    let b_id = *b.local_peer_id();
    b.behaviour_mut().add_trusted_point(&a_addr).unwrap();
    drive(&mut [&mut a, &mut b], &mut Vec::new(), |s| {
        s[0].behaviour().pool().is_running(&b_id)
    })
    .await;
    (a, b, a_addr)
}

/// A full node (max 1, B connected) nacks three newcomers that arrive at once and hold their
/// connections. Its connection manager's hard cap (high watermark 1 + 10 % = 2) would have
/// refused the second one before it learned any point: nacked connections are left out of the
/// connection manager, which still counts B alone.
#[tokio::test]
async fn nacked_connections_are_left_out_of_the_hard_cap() {
    let (mut a, mut b, a_addr) = full_node(peerage::Config::new()).await;
    assert_eq!(a.behaviour().connmgr().config().hard_cap(), Some(2));

    let newcomers: Vec<PeerId> = (0..3).map(|_| spawn_bare_dialer(a_addr.clone())).collect();
    let (mut nacked, refused) = nacks_and_refusals(&mut a, &mut b, 3).await;
    let refused: Vec<String> = refused.iter().map(ToString::to_string).collect();
    assert!(refused.is_empty(), "refused: {refused:?}");
    nacked.sort();
    let mut expected = newcomers;
    expected.sort();
    assert_eq!(nacked, expected);
    // All three are still open (2 s linger), none of them counted anywhere.
    assert_eq!(a.behaviour().connections().filter(|c| c.nacked).count(), 3);
    assert_eq!(active(&a), 1);
    let connmgr = a.behaviour().connmgr();
    assert_eq!(connmgr.info().connections, 1);
    assert_eq!(connmgr.stats().denied_connections, 0);
}

/// Nacked connections are bounded: with `with_max_nacked(2)`, the third newcomer to a full node
/// is refused outright, with `TooManyConnections`.
#[tokio::test]
async fn nacked_connections_are_bounded() {
    let (mut a, mut b, a_addr) = full_node(peerage::Config::new().with_max_nacked(2)).await;
    for _ in 0..3 {
        spawn_bare_dialer(a_addr.clone());
    }
    let (nacked, refused) = nacks_and_refusals(&mut a, &mut b, 3).await;
    assert_eq!(nacked.len(), 2);
    assert_eq!(refused.len(), 1);
    let e = refused[0]
        .downcast_ref::<peerage::TooManyConnections>()
        .expect("refused with TooManyConnections");
    assert_eq!((e.active, e.nacked), (1, 2));
    assert_eq!(a.behaviour().connections().filter(|c| c.nacked).count(), 2);
    assert_eq!(a.behaviour().connmgr().info().connections, 1);
}

/// A node at `max_threshold` nacks, but admits a peer that says it needs connections while it
/// is under `max`, then trims its oldest connections, not the newcomer (grace period).
#[tokio::test]
async fn a_full_node_admits_a_peer_in_need_and_trims_others() {
    // max 4, max_threshold 3, max_target 2.
    let mut a = swarm(Bounds::new(1, 1, 4).unwrap());
    let a_addr = listen(&mut a).await;
    let mut early: Vec<Swarm<peerage::Behaviour>> = (0..3)
        .map(|_| swarm(Bounds::new(1, 1, 4).unwrap()))
        .collect();
    for s in &mut early {
        listen(s).await;
        s.behaviour_mut().add_trusted_point(&a_addr).unwrap();
    }
    let mut events = Vec::new();
    {
        let mut all: Vec<&mut Swarm<peerage::Behaviour>> = vec![&mut a];
        all.extend(early.iter_mut());
        drive(&mut all, &mut events, |s| active(s[0]) == 3).await;
    }
    let mut c = swarm(Bounds::new(1, 1, 4).unwrap());
    listen(&mut c).await;
    let c_id = *c.local_peer_id();
    c.behaviour_mut().add_trusted_point(&a_addr).unwrap();
    let early_ids: Vec<PeerId> = early.iter().map(|s| *s.local_peer_id()).collect();
    {
        let mut all: Vec<&mut Swarm<peerage::Behaviour>> = vec![&mut a, &mut c];
        all.extend(early.iter_mut());
        drive(&mut all, &mut events, |s| {
            s[0].behaviour().pool().is_running(&c_id) && active(s[0]) <= 2
        })
        .await;
    }
    // C got in although A was at its max_threshold, and A trimmed two of the early peers.
    assert!(a.behaviour().pool().is_running(&c_id));
    let closed: Vec<&PeerId> = early_ids
        .iter()
        .filter(|p| !a.behaviour().pool().is_running(p))
        .collect();
    assert_eq!(closed.len(), 2, "two of the early peers were trimmed");
    // C's connection, left out of the connection manager while it was nacked, is counted there
    // since its admission.
    let connmgr = a.behaviour().connmgr();
    assert_eq!(connmgr.info().connections, active(&a));
    assert!(connmgr.tag_info(&c_id).is_some());
    // A's first closing spared C: the newest, in its grace period, and known to the connection
    // manager since its admission (an unknown peer would be closed first).
    let a_id = *a.local_peer_id();
    let first_closed = events
        .iter()
        .find_map(|(p, e)| match e {
            Event::Maintenance { closed, .. } if *p == a_id && !closed.is_empty() => Some(closed),
            _ => None,
        })
        .expect("A closed connections");
    assert_eq!(first_closed.len(), 2);
    assert!(!first_closed.contains(&c_id));
}

/// A peer reached through a trusted point is protected in the connection manager under
/// `peerage::TRUSTED_TAG`: no trim closes it and the hard cap does not refuse it. The other side,
/// which trusts nothing, protects nobody.
#[tokio::test]
async fn a_trusted_peer_is_protected_in_the_connection_manager() {
    let mut a = swarm(Bounds::new(1, 1, 4).unwrap());
    let mut b = swarm(Bounds::new(1, 1, 4).unwrap());
    let a_addr = listen(&mut a).await;
    let (a_id, b_id) = (*a.local_peer_id(), *b.local_peer_id());
    b.behaviour_mut().add_trusted_point(&a_addr).unwrap();
    let mut events = Vec::new();
    drive(&mut [&mut a, &mut b], &mut events, |s| {
        s[0].is_connected(&b_id)
    })
    .await;
    assert!(
        b.behaviour()
            .connmgr()
            .is_protected(&a_id, peerage::TRUSTED_TAG)
    );
    assert!(!a.behaviour().connmgr().is_protected(&b_id, ""));
    assert_eq!(a.behaviour().connmgr().info().connections, 1);
}

/// An idle node's task sleeps: polling it wakes nothing. It used to wake itself on every poll
/// (the behaviour woke its task whenever it carried out the machine's commands, `poll`
/// included), so that an idle `peerage run` spun more than a core.
#[tokio::test]
async fn an_idle_node_does_not_wake_itself() {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        task::{Context, Poll, Wake, Waker},
    };

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    let mut a = swarm(Bounds::new(1, 1, 4).unwrap());
    listen(&mut a).await;
    // Let start-up settle: the listener, the first maintenance cycle.
    let settle = tokio::time::sleep(Duration::from_millis(300));
    tokio::pin!(settle);
    loop {
        tokio::select! {
            () = &mut settle => break,
            _ = a.select_next_some() => {}
        }
    }
    let count = Arc::new(Count(AtomicUsize::new(0)));
    let waker = Waker::from(count.clone());
    let mut cx = Context::from_waker(&waker);
    for _ in 0..5 {
        assert!(matches!(a.poll_next_unpin(&mut cx), Poll::Pending));
    }
    assert_eq!(count.0.load(Ordering::SeqCst), 0, "polling woke the task");
}
