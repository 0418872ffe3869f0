//! A hostile peer on the wire of `/peerage/pex/1.0.0`: a swarm of its own that answers the
//! node's requests for points with what an attacker would send. Each answer is bounded, refused
//! or greylisted as `peerage::pex` documents, and nothing past the caps is stored.

use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::{
    Multiaddr, PeerId, Swarm, identify,
    request_response::{self, ProtocolSupport},
    swarm::{NetworkBehaviour, SwarmEvent},
};
use peerage::{
    Event,
    maintenance::Bounds,
    pex::{self, Response},
    pool,
};
use support::{listen_on_host as listen, node, tcp_swarm_with_key};

mod support;

#[derive(NetworkBehaviour)]
struct Hostile {
    identify: identify::Behaviour,
    /// libp2p's CBOR codec with its own limits (10 MiB answers), not the node's.
    pex: request_response::cbor::Behaviour<pex::Request, Response>,
}

/// A swarm that offers the peer exchange and answers its `k`-th request with `answers[k]`
/// (the last one again after the list ends).
fn hostile() -> Swarm<Hostile> {
    tcp_swarm_with_key(|key| Hostile {
        identify: identify::Behaviour::new(identify::Config::new(
            "ipfs/0.1.0".into(),
            key.public(),
        )),
        pex: request_response::cbor::Behaviour::new(
            [(pex::PROTOCOL, ProtocolSupport::Full)],
            request_response::Config::default(),
        ),
    })
}

/// The hostile peer listening on `127.0.0.{host}`, and its address.
async fn hostile_on(host: u8) -> (Swarm<Hostile>, Multiaddr) {
    let mut h = hostile();
    let addr = listen(&mut h, host).await;
    (h, addr)
}

/// Runs the node and the hostile peer, which answers its requests from `answers` in order,
/// until `done` holds of the node's events so far; panics after 20 s.
async fn run(
    node: &mut Swarm<peerage::Behaviour>,
    h: &mut Swarm<Hostile>,
    answers: &mut Vec<Response>,
    events: &mut Vec<Event>,
    done: impl Fn(&Swarm<peerage::Behaviour>, &[Event]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(node, events) {
        assert!(
            Instant::now() < deadline,
            "not reached within 20 s: {events:?}"
        );
        tokio::select! {
            e = node.select_next_some() => {
                if let SwarmEvent::Behaviour(e) = e {
                    events.push(e);
                }
            }
            e = h.select_next_some() => {
                if let SwarmEvent::Behaviour(HostileEvent::Pex(request_response::Event::Message {
                    message: request_response::Message::Request { channel, .. },
                    ..
                })) = e
                {
                    let answer = if answers.len() > 1 { answers.remove(0) } else { answers[0].clone() };
                    let _ = h.behaviour_mut().pex.send_response(channel, answer);
                }
            }
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

/// The node under attack, listening on `127.0.0.{host}`: below its minimum of connections, it
/// keeps asking the one peer it has.
async fn asker(host: u8) -> Swarm<peerage::Behaviour> {
    let mut a = node(Bounds::new(4, 6, 8).unwrap(), pool::Config::new());
    let _ = listen(&mut a, host).await;
    a
}

/// Whether the node's pool holds the point `p`.
fn known(a: &Swarm<peerage::Behaviour>, p: &str) -> bool {
    a.behaviour().pool().point(&p.parse().unwrap()).is_some()
}

fn point(addr: &str) -> peerage::node::pex::Point {
    addr.parse::<Multiaddr>().unwrap().into()
}

fn received_from(events: &[Event], from: PeerId) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::PointsReceived { peer_id, .. } if *peer_id == from))
        .count()
}

fn refused_from(events: &[Event], from: PeerId) -> bool {
    events
        .iter()
        .any(|e| matches!(e, Event::PointsRefused { peer_id, .. } if *peer_id == from))
}

/// Duplicates, undialable points and our own peer ID are stored once or not at all; an answer
/// over the count limit is refused whole and greylists its sender, which is disconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_answers_are_bounded_refused_or_greylisted() {
    let mut a = asker(21).await;
    let a_id = *a.local_peer_id();
    let (mut h, h_addr) = hostile_on(22).await;
    let h_id = *h.local_peer_id();
    let dup = "/ip4/1.2.3.4/tcp/4001";
    let mut first = Response {
        points: vec![point(dup); 90],
        ..Response::default()
    };
    first.points.extend([
        point("/ip4/0.0.0.0/tcp/4001"),
        point("/ip6/::/tcp/4001"),
        point("/ip4/5.6.7.8/tcp/0"),
        point(&format!("/ip4/9.9.9.9/tcp/4001/p2p/{a_id}")),
    ]);
    let over = Response {
        points: (0..=pex::MAX_POINTS_ACCEPTED as u32)
            .map(|i| point(&format!("/ip4/10.{}.{}.1/tcp/4001", i / 256, i % 256)))
            .collect(),
        ..Response::default()
    };
    let mut answers = vec![first, over];
    let mut events = Vec::new();
    a.behaviour_mut().connect(&h_addr).unwrap();

    run(&mut a, &mut h, &mut answers, &mut events, |_, e| {
        received_from(e, h_id) >= 1
    })
    .await;
    assert!(known(&a, dup), "the duplicated point is kept once");
    for undialable in [
        "/ip4/0.0.0.0/tcp/4001",
        "/ip6/::/tcp/4001",
        "/ip4/5.6.7.8/tcp/0",
    ] {
        assert!(!known(&a, undialable), "{undialable} stored");
    }
    assert!(
        !known(&a, "/ip4/9.9.9.9/tcp/4001"),
        "a point of ours stored"
    );
    assert!(!a.behaviour().pool().acl().is_peer_banned(&h_id));

    // The next answer has one point too many: refused whole, its sender greylisted and gone.
    run(&mut a, &mut h, &mut answers, &mut events, |a, e| {
        refused_from(e, h_id) && !a.behaviour().pool().is_running(&h_id)
    })
    .await;
    assert!(a.behaviour().pool().acl().is_peer_banned(&h_id));
    assert!(
        !known(&a, "/ip4/10.0.0.1/tcp/4001"),
        "a point of the refused answer stored"
    );
}

/// An answer over the size limit does not decode: its sender is greylisted and disconnected,
/// and nothing of it is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_over_the_size_limit_greylists_its_sender() {
    let mut a = asker(23).await;
    let (mut h, h_addr) = hostile_on(24).await;
    let h_id = *h.local_peer_id();
    let huge = Response {
        points: vec![point("/ip4/1.2.3.4/tcp/4001")],
        record: Some(vec![7; pex::MAX_RESPONSE_BYTES as usize + 1024]),
        ..Response::default()
    };
    let mut answers = vec![huge];
    let mut events = Vec::new();
    a.behaviour_mut().connect(&h_addr).unwrap();
    run(&mut a, &mut h, &mut answers, &mut events, |a, _| {
        a.behaviour().pool().acl().is_peer_banned(&h_id)
    })
    .await;
    run(&mut a, &mut h, &mut answers, &mut events, |a, _| {
        !a.behaviour().pool().is_running(&h_id)
    })
    .await;
    assert_eq!(received_from(&events, h_id), 0);
    assert!(!known(&a, "/ip4/1.2.3.4/tcp/4001"));
}

/// Signed records that do not hold are refused, and nothing of them is stored: one naming
/// another peer than its signer's, and one older than the record already held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_stale_signed_records_are_refused() {
    use libp2p::identity::Keypair;
    use peerage_core::peerstore::conformance::{signed_record, signed_record_for};

    let mut a = asker(25).await;
    let (mut h, h_addr) = hostile_on(26).await;
    let h_id = *h.local_peer_id();
    let (x, y, z) = (
        Keypair::generate_ed25519(),
        Keypair::generate_ed25519(),
        Keypair::generate_ed25519(),
    );
    let (x_id, z_id) = (x.public().to_peer_id(), z.public().to_peer_id());
    let addr = |s: &str| s.parse::<Multiaddr>().unwrap();
    let encoded = |e: libp2p::core::SignedEnvelope| e.into_protobuf_encoding();
    let held = signed_record(&z, 10, &[addr("/ip4/4.4.4.4/tcp/4001")]);
    let mut answers = vec![
        Response {
            records: vec![
                // X's addresses, signed by Y.
                encoded(signed_record_for(
                    &y,
                    x_id,
                    5,
                    &[addr("/ip4/3.3.3.3/tcp/4001")],
                )),
                encoded(held.clone()),
            ],
            ..Response::default()
        },
        Response {
            // Z's, older than the one held.
            records: vec![encoded(signed_record(
                &z,
                5,
                &[addr("/ip4/5.5.5.5/tcp/4001")],
            ))],
            ..Response::default()
        },
    ];
    let mut events = Vec::new();
    a.behaviour_mut().connect(&h_addr).unwrap();
    run(&mut a, &mut h, &mut answers, &mut events, |_, e| {
        received_from(e, h_id) >= 1
    })
    .await;
    let record =
        |a: &Swarm<peerage::Behaviour>, peer: &PeerId| a.behaviour().peerstore().peer_record(peer);
    assert!(record(&a, &x_id).is_none(), "a forged record stored");
    assert!(
        !known(&a, "/ip4/3.3.3.3/tcp/4001"),
        "a forged record's address stored"
    );
    assert_eq!(record(&a, &z_id), Some(held.clone()));
    assert!(known(&a, "/ip4/4.4.4.4/tcp/4001"));
    run(&mut a, &mut h, &mut answers, &mut events, |_, e| {
        received_from(e, h_id) >= 2
    })
    .await;
    assert_eq!(
        record(&a, &z_id),
        Some(held),
        "an older record replaced the held one"
    );
    assert!(
        !known(&a, "/ip4/5.5.5.5/tcp/4001"),
        "an older record's address stored"
    );
}

/// A peer that sends answers nobody asked for: request-response reads only answers to the
/// node's own requests, so an answer sent on a stream the peer opens is read as a request (its
/// unknown fields ignored). None of its points is ever stored; a flood of them is answered at
/// most once per [`pex::ANSWER_COOLDOWN`], the rest dropped; one over the request size limit
/// (1 KiB) does not decode and greylists its sender.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsolicited_answers_are_never_stored_and_a_flood_of_them_is_throttled() {
    #[derive(NetworkBehaviour)]
    struct Pusher {
        /// Sends `Response`s as its requests.
        pex: request_response::cbor::Behaviour<Response, Response>,
    }
    let mut a = node(Bounds::new(4, 6, 8).unwrap(), pool::Config::new());
    let a_addr = listen(&mut a, 27).await;
    let a_id = *a.local_peer_id();
    let mut h = tcp_swarm_with_key(|_| Pusher {
        pex: request_response::cbor::Behaviour::new(
            [(pex::PROTOCOL, ProtocolSupport::Full)],
            request_response::Config::default().with_max_concurrent_streams(10_000),
        ),
    });
    let _ = listen(&mut h, 28).await;
    let h_id = *h.local_peer_id();
    let unsolicited = |i: u32| Response {
        points: (0..8)
            .map(|k| point(&format!("/ip4/7.{}.{}.{k}/tcp/4001", i / 256, i % 256)))
            .collect(),
        ..Response::default()
    };
    h.dial(a_addr).unwrap();
    let (mut sent, mut answered, mut failed) = (0u32, 0u32, 0u32);
    let start = Instant::now();
    let mut flooding_until = None;
    let mut events = Vec::new();
    // 2,000 unsolicited answers, sent as fast as the connection takes them, in about 2 s.
    while answered + failed < 2_000 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{sent} sent, {answered} answered, {failed} failed"
        );
        tokio::select! {
            e = a.select_next_some() => {
                if let SwarmEvent::Behaviour(e) = e {
                    events.push(e);
                }
            }
            e = h.select_next_some() => match e {
                SwarmEvent::ConnectionEstablished { .. } => {
                    flooding_until.get_or_insert_with(Instant::now);
                    for _ in 0..2_000 {
                        h.behaviour_mut().pex.send_request(&a_id, unsolicited(sent));
                        sent += 1;
                    }
                }
                SwarmEvent::Behaviour(PusherEvent::Pex(request_response::Event::Message {
                    message: request_response::Message::Response { response, .. },
                    ..
                })) => {
                    assert!(!response.nack, "the node had room");
                    answered += 1;
                }
                SwarmEvent::Behaviour(PusherEvent::Pex(
                    request_response::Event::OutboundFailure { .. },
                )) => failed += 1,
                _ => {}
            },
        }
    }
    let flood = flooding_until.unwrap().elapsed();
    eprintln!("{sent} sent, {answered} answered, {failed} failed in {flood:?}");
    // At most one answer per cooldown over the flood, and one more at its start.
    let allowed = u32::try_from(flood.as_millis() / pex::ANSWER_COOLDOWN.as_millis()).unwrap() + 2;
    assert!(
        (1..=allowed).contains(&answered),
        "{answered} of {sent} answered in {flood:?} (at most {allowed})"
    );
    assert_eq!(
        received_from(&events, h_id),
        0,
        "an unsolicited answer read as one"
    );
    for i in 0..sent {
        for k in 0..8 {
            let p = format!("/ip4/7.{}.{}.{k}/tcp/4001", i / 256, i % 256);
            assert!(!known(&a, &p), "{p} stored");
        }
    }
    assert!(!a.behaviour().pool().acl().is_peer_banned(&h_id));

    // An answer over the request size limit: undecodable, its sender greylisted.
    let big = Response {
        points: (0..100)
            .map(|k| point(&format!("/ip4/8.8.{k}.1/tcp/4001")))
            .collect(),
        ..Response::default()
    };
    h.behaviour_mut().pex.send_request(&a_id, big);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !a.behaviour().pool().acl().is_peer_banned(&h_id) {
        assert!(Instant::now() < deadline, "not greylisted within 20 s");
        tokio::select! {
            e = a.select_next_some() => eprintln!("A {e:?}"),
            e = h.select_next_some() => eprintln!("H {e:?}"),
        }
    }
    assert!(!known(&a, "/ip4/8.8.0.1/tcp/4001"));
}
