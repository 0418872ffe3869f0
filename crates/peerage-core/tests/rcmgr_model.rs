//! Property test of the resource manager against a simple model: over random sequences of
//! opens, attachments, reservations and drops, every scope's usage equals the sum of what its
//! children hold, no usage passes its limit, a refused operation changes nothing, and dropping
//! everything brings every counter back to zero.

#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::time::Instant;

use peerage_core::PeerId;
use peerage_core::rcmgr::{
    BaseLimit, Config, ConnectionScope, Direction, IpLimits, LimitConfig, Priority, RateLimits,
    Reservation, ResourceManager, ResourceScope, ScopeStat, StreamScope,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    OpenConn {
        inbound: bool,
        fd: bool,
    },
    SetPeer {
        conn: usize,
        peer: usize,
    },
    OpenStream {
        peer: usize,
        inbound: bool,
        muxer: bool,
    },
    SetProtocol {
        stream: usize,
        protocol: usize,
    },
    ReservePeer {
        peer: usize,
        bytes: u64,
        prio: u8,
    },
    ReserveProtocol {
        protocol: usize,
        bytes: u64,
    },
    ReserveStream {
        stream: usize,
        bytes: u64,
    },
    Drop {
        index: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (any::<bool>(), any::<bool>()).prop_map(|(inbound, fd)| Op::OpenConn { inbound, fd }),
        (0..8usize, 0..3usize).prop_map(|(conn, peer)| Op::SetPeer { conn, peer }),
        (0..3usize, any::<bool>(), any::<bool>()).prop_map(|(peer, inbound, muxer)| {
            Op::OpenStream {
                peer,
                inbound,
                muxer,
            }
        }),
        (0..8usize, 0..2usize).prop_map(|(stream, protocol)| Op::SetProtocol { stream, protocol }),
        (0..3usize, 1..3000u64, any::<u8>()).prop_map(|(peer, bytes, prio)| Op::ReservePeer {
            peer,
            bytes,
            prio
        }),
        (0..2usize, 1..3000u64)
            .prop_map(|(protocol, bytes)| Op::ReserveProtocol { protocol, bytes }),
        (0..8usize, 1..3000u64).prop_map(|(stream, bytes)| Op::ReserveStream { stream, bytes }),
        (0..16usize).prop_map(|index| Op::Drop { index }),
    ]
}

fn limit(n: u64, memory: u64) -> BaseLimit {
    BaseLimit {
        streams: n,
        streams_inbound: n,
        streams_outbound: n,
        conns: n,
        conns_inbound: n,
        conns_outbound: n,
        fd: n,
        memory,
    }
}

/// Small limits, so that refusals happen at every level.
fn limits() -> LimitConfig {
    LimitConfig::unlimited()
        .with_system(limit(6, 12_000))
        .with_transient(limit(3, 5_000))
        .with_peer_default(limit(3, 6_000))
        .with_protocol_default(limit(3, 5_000))
        .with_protocol_peer_default(limit(2, 4_000))
        .with_conn(limit(1, 3_000))
        .with_stream(limit(1, 3_000))
}

/// What the model knows of each guard it holds.
enum Held {
    Conn {
        scope: ConnectionScope,
        stat: ScopeStat,
        peer: Option<usize>,
    },
    Stream {
        scope: StreamScope,
        stat: ScopeStat,
        peer: usize,
        muxer: bool,
        protocol: Option<usize>,
    },
    /// Memory on a peer (`Some(peer)`), a protocol, or a stream (`stream` = its held index is
    /// not tracked: the stream's own stat carries it).
    Mem {
        _r: Reservation,
        bytes: u64,
        peer: Option<usize>,
        protocol: Option<usize>,
    },
}

fn add(a: &mut ScopeStat, b: &ScopeStat) {
    a.memory += b.memory;
    a.streams_inbound += b.streams_inbound;
    a.streams_outbound += b.streams_outbound;
    a.conns_inbound += b.conns_inbound;
    a.conns_outbound += b.conns_outbound;
    a.fd += b.fd;
}

fn within(usage: &ScopeStat, l: &BaseLimit) -> bool {
    usage.memory <= l.memory
        && usage.streams_inbound <= l.streams_inbound
        && usage.streams_outbound <= l.streams_outbound
        && usage.streams() <= l.streams
        && usage.conns_inbound <= l.conns_inbound
        && usage.conns_outbound <= l.conns_outbound
        && usage.conns() <= l.conns
        && usage.fd <= l.fd
}

fn check(rm: &ResourceManager, held: &[Held], peers: &[PeerId], protocols: &[&str]) {
    let (mut system, mut transient) = (ScopeStat::default(), ScopeStat::default());
    let mut per_peer: BTreeMap<String, ScopeStat> = BTreeMap::new();
    let mut per_protocol: BTreeMap<String, ScopeStat> = BTreeMap::new();
    for h in held {
        match h {
            Held::Conn { stat, peer, .. } => {
                add(&mut system, stat);
                match peer {
                    Some(p) => add(per_peer.entry(peers[*p].to_base58()).or_default(), stat),
                    None => add(&mut transient, stat),
                }
            }
            Held::Stream {
                scope,
                stat,
                peer,
                muxer,
                protocol,
            } => {
                // The stream's own stat includes memory reserved on it.
                let stat = ScopeStat {
                    memory: scope.stat().memory,
                    ..*stat
                };
                add(&mut system, &stat);
                add(per_peer.entry(peers[*peer].to_base58()).or_default(), &stat);
                match protocol {
                    Some(q) => add(
                        per_protocol.entry(protocols[*q].to_owned()).or_default(),
                        &stat,
                    ),
                    None if !muxer => add(&mut transient, &stat),
                    None => {}
                }
            }
            Held::Mem {
                bytes,
                peer,
                protocol,
                ..
            } => {
                let stat = ScopeStat {
                    memory: *bytes,
                    ..ScopeStat::default()
                };
                add(&mut system, &stat);
                if let Some(p) = peer {
                    add(per_peer.entry(peers[*p].to_base58()).or_default(), &stat);
                }
                if let Some(q) = protocol {
                    add(
                        per_protocol.entry(protocols[*q].to_owned()).or_default(),
                        &stat,
                    );
                }
            }
        }
    }
    let st = rm.stat();
    assert_eq!(st.system.usage, system, "system = sum of everything held");
    assert_eq!(
        st.transient.usage, transient,
        "transient = unattached conns and streams"
    );
    per_peer.retain(|_, s| !s.is_zero());
    per_protocol.retain(|_, s| !s.is_zero());
    let live_peers: BTreeMap<String, ScopeStat> =
        st.peers.iter().map(|(k, v)| (k.clone(), v.usage)).collect();
    assert_eq!(
        live_peers, per_peer,
        "each peer = sum of its conns, streams and memory"
    );
    let live_protocols: BTreeMap<String, ScopeStat> = st
        .protocols
        .iter()
        .map(|(k, v)| (k.clone(), v.usage))
        .collect();
    assert_eq!(
        live_protocols, per_protocol,
        "each protocol = sum of its streams and memory"
    );
    for s in [&st.system, &st.transient]
        .into_iter()
        .chain(st.peers.values())
        .chain(st.protocols.values())
    {
        assert!(within(&s.usage, &s.limit), "{s:?} passes its limit");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn usage_is_the_sum_of_children(ops in proptest::collection::vec(op(), 1..80)) {
        let config = Config::default()
            .with_limits(limits())
            .with_ip_limits(IpLimits::disabled())
            .with_rate_limits(RateLimits::disabled());
        let rm = ResourceManager::new(config).unwrap();
        let peers: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        let protocols = ["/a", "/b"];
        let addr = "/ip4/1.2.3.4/tcp/1".parse().unwrap();
        let now = Instant::now();
        let mut held: Vec<Held> = Vec::new();
        for op in ops {
            let before = rm.stat();
            let changed = match op {
                Op::OpenConn { inbound, fd } => {
                    let dir = if inbound { Direction::Inbound } else { Direction::Outbound };
                    rm.open_connection(dir, fd, &addr, now).map(|scope| {
                        let stat = scope.stat();
                        held.push(Held::Conn { scope, stat, peer: None });
                    }).is_ok()
                }
                Op::SetPeer { conn, peer } => {
                    let n = held.len();
                    match held.get_mut(conn % n.max(1)) {
                        Some(Held::Conn { scope, peer: p @ None, .. }) => {
                            let ok = scope.set_peer(peers[peer]).is_ok();
                            if ok { *p = Some(peer); }
                            ok
                        }
                        _ => false,
                    }
                }
                Op::OpenStream { peer, inbound, muxer } => {
                    let dir = if inbound { Direction::Inbound } else { Direction::Outbound };
                    let r = if muxer { rm.open_muxer_stream(peers[peer], dir) } else { rm.open_stream(peers[peer], dir) };
                    r.map(|scope| {
                        let stat = scope.stat();
                        held.push(Held::Stream { scope, stat, peer, muxer, protocol: None });
                    }).is_ok()
                }
                Op::SetProtocol { stream, protocol } => {
                    let n = held.len();
                    match held.get_mut(stream % n.max(1)) {
                        Some(Held::Stream { scope, protocol: p @ None, .. }) => {
                            let ok = scope.set_protocol(protocols[protocol]).is_ok();
                            if ok { *p = Some(protocol); }
                            ok
                        }
                        _ => false,
                    }
                }
                Op::ReservePeer { peer, bytes, prio } => {
                    rm.view_peer(peers[peer], |s| s.reserve_memory(bytes, Priority(prio))).map(|r| {
                        held.push(Held::Mem { _r: r, bytes, peer: Some(peer), protocol: None });
                    }).is_ok()
                }
                Op::ReserveProtocol { protocol, bytes } => {
                    rm.view_protocol(protocols[protocol], |s| s.reserve_memory(bytes, Priority::ALWAYS)).map(|r| {
                        held.push(Held::Mem { _r: r, bytes, peer: None, protocol: Some(protocol) });
                    }).is_ok()
                }
                Op::ReserveStream { stream, bytes } => {
                    let n = held.len();
                    match held.get(stream % n.max(1)) {
                        Some(Held::Stream { scope, .. }) => match scope.reserve_memory(bytes, Priority::ALWAYS) {
                            // Held in the stream's own stat; tracked through it.
                            Ok(r) => { held.push(Held::Mem { _r: r, bytes: 0, peer: None, protocol: None }); true }
                            Err(_) => false,
                        },
                        _ => false,
                    }
                }
                Op::Drop { index } => {
                    if held.is_empty() { false } else {
                        held.remove(index % held.len());
                        true
                    }
                }
            };
            if !changed {
                let after = rm.stat();
                prop_assert_eq!(&before.system, &after.system, "a refused operation changes nothing");
                prop_assert_eq!(&before.peers, &after.peers);
            }
            check(&rm, &held, &peers, &protocols);
        }
        held.clear();
        let st = rm.stat();
        prop_assert!(st.system.usage.is_zero() && st.transient.usage.is_zero());
        prop_assert!(st.peers.is_empty() && st.protocols.is_empty(), "unused scopes are collected");
    }
}
