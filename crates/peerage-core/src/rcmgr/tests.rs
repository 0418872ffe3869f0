//! go-libp2p's resource-manager scenarios (scope_test.go, rcmgr_test.go, conn_limiter_test.go,
//! allowlist_test.go, limit_test.go, limit_config_test.go, x/rate/limiter_test.go), with their
//! numbers.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use libp2p_identity::PeerId;
use multiaddr::Multiaddr;

use super::allowlist::{Allowlist, Entry};
use super::ip::IpLimiter;
use super::rate::ConnRateLimiter;
use super::scope::{Accountant, Kind, ScopeId, ScopeStat};
use super::*;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn ma(s: &str) -> Multiaddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// All counts `n`, memory `mem`.
fn counts(n: u64, mem: u64) -> BaseLimit {
    BaseLimit {
        streams: n,
        streams_inbound: n,
        streams_outbound: n,
        conns: n,
        conns_inbound: n,
        conns_outbound: n,
        fd: n,
        memory: mem,
    }
}

/// An accountant with free-standing test scopes, as go's scope tests build them.
struct Dag {
    a: Accountant,
}

impl Dag {
    fn new() -> Self {
        Dag {
            a: Accountant::new(LimitConfig::unlimited()),
        }
    }

    fn scope(&mut self, name: &str, limit: BaseLimit, edges: &[ScopeId]) -> ScopeId {
        let id = self
            .a
            .create(Kind::Service(name.into()), edges.to_vec(), None);
        self.a.scope_mut(id).limit = limit;
        id
    }

    fn mem(&mut self, id: ScopeId, bytes: u64, prio: Priority) -> bool {
        self.a
            .reserve(id, &ScopeStat::memory(bytes), prio, None)
            .is_ok()
    }

    fn free(&mut self, id: ScopeId, bytes: u64) {
        self.a.release(id, &ScopeStat::memory(bytes));
    }

    fn memory(&self, id: ScopeId) -> u64 {
        self.a.stat_of(id).memory
    }
}

// ---- scope_test.go ----

#[test]
fn check_memory_overflow_and_priority_property() {
    // TestCheckMemory "overflows": limit MaxInt64-1, usage MaxInt64-1, +2 fails; +1 from 1024 passes.
    let mut d = Dag::new();
    let s = d.scope("s", counts(0, i64::MAX as u64 - 1), &[]);
    assert!(d.mem(s, i64::MAX as u64 - 1, Priority::ALWAYS));
    assert!(!d.mem(s, 2, Priority::ALWAYS));
    let mut d = Dag::new();
    let s = d.scope("s", counts(0, u64::MAX - 1), &[]);
    assert!(d.mem(s, u64::MAX - 1, Priority::ALWAYS));
    assert!(!d.mem(s, 2, Priority::ALWAYS), "the sum overflows u64");
    // The quick-check property: at prio 2^k - 1, a reservation fails iff res + mem > limit >> (8 - k).
    for limit in [1024, 4096, 10_000, 1 << 40] {
        for k in 0..=8u32 {
            let prio = Priority(((1u32 << k) - 1) as u8);
            for (mem, res) in [
                (0, 1),
                (0, limit >> (8 - k)),
                (0, (limit >> (8 - k)) + 1),
                (limit / 3, limit / 5),
            ] {
                let mut d = Dag::new();
                let s = d.scope("s", counts(0, limit), &[]);
                if mem > 0 {
                    assert!(d.mem(s, mem, Priority::ALWAYS));
                }
                let ok = d.mem(s, res, prio);
                assert_eq!(
                    ok,
                    res + mem <= limit >> (8 - k),
                    "limit {limit} k {k} mem {mem} res {res}"
                );
            }
        }
    }
}

#[test]
fn resources_thresholds_and_staircase() {
    // TestResources: all limits 1, memory 4096.
    let thresholds = [
        (Priority::LOW, 1632),
        (Priority::MEDIUM, 2448),
        (Priority::HIGH, 3264),
        (Priority::ALWAYS, 4096),
    ];
    for (prio, t) in thresholds {
        let mut d = Dag::new();
        let s = d.scope("s", counts(1, 4096), &[]);
        assert!(d.mem(s, t, prio), "{prio:?} admits {t}");
        let mut d = Dag::new();
        let s = d.scope("s", counts(1, 4096), &[]);
        assert!(!d.mem(s, t + 1, prio), "{prio:?} refuses {}", t + 1);
    }
    let mut d = Dag::new();
    let s = d.scope("s", counts(1, 4096), &[]);
    for (bytes, total) in [(1024, 1024), (1024, 2048), (1024, 3072), (512, 3584)] {
        assert!(d.mem(s, bytes, Priority::ALWAYS));
        assert_eq!(d.memory(s), total);
    }
    assert!(!d.mem(s, 4096, Priority::ALWAYS));
    assert_eq!(d.memory(s), 3584);
    d.free(s, 2560);
    assert_eq!(d.memory(s), 1024);

    // The priority staircase.
    let mut d = Dag::new();
    let s = d.scope("s", counts(1, 4096), &[]);
    let steps = [
        (Priority::LOW, 1024, true, 1024),
        (Priority::LOW, 1024, false, 1024),
        (Priority::MEDIUM, 1024, true, 2048),
        (Priority::MEDIUM, 1024, false, 2048),
        (Priority::HIGH, 1024, true, 3072),
        (Priority::HIGH, 512, false, 3072),
        (Priority::ALWAYS, 512, true, 3584),
    ];
    for (prio, bytes, ok, total) in steps {
        assert_eq!(d.mem(s, bytes, prio), ok, "{prio:?} {bytes}");
        assert_eq!(d.memory(s), total);
    }

    // Streams and connections: limit 1 per direction and 1 in total.
    for first in [Direction::Inbound, Direction::Outbound] {
        let mut d = Dag::new();
        let s = d.scope("s", counts(1, 4096), &[]);
        let add = |d: &mut Dag, st: ScopeStat| d.a.reserve(s, &st, Priority::ALWAYS, None).is_ok();
        assert!(add(&mut d, ScopeStat::stream(first)));
        assert!(!add(&mut d, ScopeStat::stream(Direction::Inbound)));
        assert!(
            !add(&mut d, ScopeStat::stream(Direction::Outbound)),
            "the total is 1"
        );
        assert!(add(&mut d, ScopeStat::conn(first, true)));
        assert!(!add(&mut d, ScopeStat::conn(Direction::Outbound, true)));
        assert!(!add(&mut d, ScopeStat::conn(Direction::Inbound, false)));
    }
}

#[test]
fn span_basic_and_zombie() {
    // TestResourceScopeTxnBasic: a span charges its owner; done releases it; twice is harmless.
    let rm = ResourceManager::new(
        Config::default().with_limits(LimitConfig::unlimited().with_system(counts(1, 4096))),
    )
    .unwrap();
    rm.view_system(|system| {
        let span = system.begin_span().unwrap();
        let r = span.reserve_memory(4096, Priority::ALWAYS).unwrap();
        assert_eq!(system.stat().memory, 4096);
        assert_eq!(span.stat().memory, 4096);
        assert!(span.reserve_memory(1, Priority::ALWAYS).is_err());
        drop(span);
        assert_eq!(
            system.stat().memory,
            0,
            "the span's memory is released with it"
        );
        drop(r); // a release after the span is closed does nothing
        assert_eq!(system.stat().memory, 0);
    });

    // TestResourceScopeTxnZombie: txn1 -> txn2; closing txn1 releases txn2's memory from the
    // owner, and txn2 can no longer reserve.
    rm.view_system(|system| {
        let txn1 = system.begin_span().unwrap();
        let txn2 = txn1.begin_span().unwrap();
        let r = txn2.reserve_memory(4096, Priority::ALWAYS).unwrap();
        assert_eq!(
            (system.stat().memory, txn1.stat().memory, txn2.stat().memory),
            (4096, 4096, 4096)
        );
        drop(txn1);
        assert_eq!(system.stat().memory, 0);
        assert!(txn2.reserve_memory(4096, Priority::ALWAYS).is_err());
        drop(r);
        assert_eq!(txn2.stat().memory, 0);
        let e = txn2.reserve_memory(1, Priority::ALWAYS).unwrap_err();
        assert!(
            matches!(&e, Error::ScopeClosed { scope } if scope.starts_with("system.span-")),
            "{e}"
        );
        drop(txn2);
        assert_eq!(system.stat().memory, 0);
    });
}

#[test]
fn span_tree() {
    // TestResourceScopeTxnTree: root limit 4096; txn1 -> {txn2 -> {txn4, txn5}, txn3}.
    let rm = ResourceManager::new(
        Config::default().with_limits(LimitConfig::unlimited().with_system(counts(1, 4096))),
    )
    .unwrap();
    rm.view_system(|root| {
        let txn1 = root.begin_span().unwrap();
        let txn2 = txn1.begin_span().unwrap();
        let txn3 = txn1.begin_span().unwrap();
        let txn4 = txn2.begin_span().unwrap();
        let txn5 = txn2.begin_span().unwrap();
        let mut held = Vec::new();
        for s in [&txn3, &txn4, &txn5, &txn1] {
            held.push(s.reserve_memory(1024, Priority::ALWAYS).unwrap());
        }
        assert_eq!(root.stat().memory, 4096);
        assert_eq!(txn1.stat().memory, 4096);
        assert_eq!(txn2.stat().memory, 2048);
        for s in [&txn2, &txn3, &txn4, &txn5] {
            assert!(s.reserve_memory(1024, Priority::ALWAYS).is_err());
        }
        drop(txn1);
        assert_eq!(root.stat().memory, 0);
        drop((held, txn2, txn3, txn4, txn5));
    });
}

#[test]
fn dag_diamond_is_not_double_counted() {
    // TestResourceScopeDAG: s1 (4096, 4 each); s2, s3 (2048, 2 each) -> s1;
    // s4 [s2, s3, s1]; s5 [s2, s1]; s6 [s3, s1].
    let ops: [(&str, ScopeStat); 5] = [
        ("memory", ScopeStat::memory(1024)),
        ("inbound streams", ScopeStat::stream(Direction::Inbound)),
        ("outbound streams", ScopeStat::stream(Direction::Outbound)),
        ("conns", ScopeStat::conn(Direction::Inbound, false)),
        ("conns with fd", ScopeStat::conn(Direction::Outbound, true)),
    ];
    for (what, unit) in ops {
        let mut d = Dag::new();
        let s1 = d.scope("s1", counts(4, 4096), &[]);
        let s2 = d.scope("s2", counts(2, 2048), &[s1]);
        let s3 = d.scope("s3", counts(2, 2048), &[s1]);
        let s4 = d.scope("s4", counts(4, 4096), &[s2, s3, s1]);
        let s5 = d.scope("s5", counts(4, 4096), &[s2, s1]);
        let s6 = d.scope("s6", counts(4, 4096), &[s3, s1]);
        let scalar = |st: ScopeStat| st.memory / 1024 + st.streams() + st.conns();
        let get = |d: &Dag, id| scalar(d.a.stat_of(id));
        for s in [s4, s5, s6] {
            assert!(
                d.a.reserve(s, &unit, Priority::ALWAYS, None).is_ok(),
                "{what}"
            );
        }
        assert_eq!((get(&d, s1), get(&d, s2), get(&d, s3)), (3, 2, 2), "{what}");
        for s in [s4, s5, s6] {
            assert!(
                d.a.reserve(s, &unit, Priority::ALWAYS, None).is_err(),
                "{what}"
            );
        }
        assert_eq!(
            (get(&d, s1), get(&d, s2), get(&d, s3)),
            (3, 2, 2),
            "{what}: nothing partial"
        );
        d.a.release(s4, &unit);
        assert_eq!((get(&d, s1), get(&d, s2), get(&d, s3)), (2, 1, 1), "{what}");
        d.a.release(s5, &unit);
        d.a.release(s6, &unit);
        for s in [s1, s2, s3, s4, s5, s6] {
            assert_eq!(get(&d, s), 0, "{what}");
        }
    }
}

#[test]
fn dag_with_spans() {
    // TestResourceScopeDAGTxn: s1 8192; s2, s3 6144; s4-s6 5120.
    let mut d = Dag::new();
    let s1 = d.scope("s1", counts(4, 8192), &[]);
    let s2 = d.scope("s2", counts(4, 6144), &[s1]);
    let s3 = d.scope("s3", counts(4, 6144), &[s1]);
    let s4 = d.scope("s4", counts(4, 5120), &[s2, s3, s1]);
    let s5 = d.scope("s5", counts(4, 5120), &[s2, s1]);
    let s6 = d.scope("s6", counts(4, 5120), &[s3, s1]);
    let t4 = d.a.new_span(s4).unwrap();
    let t5 = d.a.new_span(s5).unwrap();
    let t6 = d.a.new_span(s6).unwrap();
    for t in [t4, t5, t6] {
        assert!(d.mem(t, 1024, Priority::ALWAYS));
    }
    assert!(d.mem(t4, 4096, Priority::ALWAYS));
    assert_eq!(d.memory(s1), 7168);
    for t in [t4, t5, t6] {
        assert!(!d.mem(t, 1024, Priority::ALWAYS));
    }
    d.a.done(t4);
    assert_eq!(d.memory(s1), 2048);
    assert!(d.mem(t5, 1024, Priority::ALWAYS));
    assert!(d.mem(t6, 1024, Priority::ALWAYS));
    assert_eq!(d.memory(s1), 4096);
    d.a.done(t5);
    d.a.done(t6);
    for s in [s1, s2, s3, s4, s5, s6] {
        assert_eq!(d.memory(s), 0);
    }
}

// ---- rcmgr_test.go ----

fn streams(i: u64, o: u64, t: u64) -> BaseLimit {
    BaseLimit {
        streams_inbound: i,
        streams_outbound: o,
        streams: t,
        ..BaseLimit::UNLIMITED
    }
}

fn scenario_limits(peer_a: PeerId) -> LimitConfig {
    let lim = |mem, s: [u64; 3], c: [u64; 3], fd| BaseLimit {
        memory: mem,
        streams_inbound: s[0],
        streams_outbound: s[1],
        streams: s[2],
        conns_inbound: c[0],
        conns_outbound: c[1],
        conns: c[2],
        fd,
    };
    LimitConfig::unlimited()
        .with_system(lim(16384, [3, 3, 6], [3, 3, 6], 2))
        .with_transient(lim(4096, [1, 1, 2], [1, 1, 2], 1))
        .with_peer_default(lim(4096, [1, 1, 2], [1, 1, 2], 1))
        .with_peer(peer_a, lim(8192, [2, 2, 4], [2, 2, 4], 1))
        .with_protocol_default(streams(1, 1, 2))
        .with_protocol("/A", streams(2, 2, 2))
        .with_protocol("/B", streams(2, 2, 2))
        .with_protocol_peer("/B", streams(1, 1, 2))
        .with_service("A", streams(2, 2, 4))
        .with_service("B", streams(2, 2, 4))
        .with_service_peer("B", streams(1, 1, 2))
        .with_conn(lim(UNLIMITED, [1, 1, 1], [1, 1, 1], 1))
        .with_stream(lim(UNLIMITED, [1, 1, 1], [1, 1, 1], 0))
}

fn manager(limits: LimitConfig) -> ResourceManager {
    let config = Config::default()
        .with_limits(limits)
        .with_ip_limits(IpLimits::disabled())
        .with_rate_limits(RateLimits::disabled());
    ResourceManager::new(config).unwrap()
}

#[test]
fn resource_manager_scenario() {
    // TestResourceManager, step by step.
    let (peer_a, peer_b) = (PeerId::random(), PeerId::random());
    let rm = manager(scenario_limits(peer_a));
    let now = Instant::now();
    let addr = ma("/ip4/1.2.3.4/tcp/4001");
    let fixed_scopes = rm.with_acct(|a| a.len());
    let system_refs = rm.with_acct(|a| a.refs_of(a.system));
    let open = |fd| rm.open_connection(Direction::Inbound, fd, &addr, now);
    let sys = |rm: &ResourceManager| rm.stat().system.usage;
    let tr = |rm: &ResourceManager| rm.stat().transient.usage;

    // 1. An inbound connection with an FD; a second is refused by transient.
    let c1 = open(true).unwrap();
    assert_eq!(
        (
            sys(&rm).conns_inbound,
            sys(&rm).fd,
            tr(&rm).conns_inbound,
            tr(&rm).fd
        ),
        (1, 1, 1, 1)
    );
    let e = open(true).unwrap_err();
    assert!(
        e.to_string()
            .ends_with(": transient: cannot reserve inbound connection: resource limit exceeded"),
        "{e}"
    );
    assert!(open(false).is_err());
    // 2. Closing it reclaims everything.
    drop(c1);
    assert!(sys(&rm).is_zero() && tr(&rm).is_zero());
    // 3. set_peer moves the usage from transient to the peer.
    let mut c1 = open(true).unwrap();
    c1.set_peer(peer_a).unwrap();
    assert!(tr(&rm).is_zero());
    let peer_usage = |rm: &ResourceManager, p: PeerId| rm.stat().peers[&p.to_base58()].usage;
    assert_eq!(peer_usage(&rm, peer_a).conns_inbound, 1);
    assert_eq!(sys(&rm).conns_inbound, 1);
    // 4. A second connection with an FD: the peer's FD limit (1) refuses it.
    let mut c2 = open(true).unwrap();
    let e = c2.set_peer(peer_a).unwrap_err();
    let Error::LimitExceeded(l) = &e else {
        panic!("{e}")
    };
    assert_eq!(
        (l.resource(), l.current(), l.limit()),
        (Resource::FileDescriptor, 1, 1)
    );
    assert!(l.scopes()[1].starts_with("peer:"), "{e}");
    drop(c2);
    // 5. Without an FD it attaches.
    let mut c2 = open(false).unwrap();
    c2.set_peer(peer_a).unwrap();
    assert_eq!(peer_usage(&rm, peer_a).conns_inbound, 2);

    // 6. A stream of peer A; a second is refused by transient (1 inbound stream).
    let mut s1 = rm.open_stream(peer_a, Direction::Inbound).unwrap();
    let e = rm.open_stream(peer_a, Direction::Inbound).unwrap_err();
    assert!(
        e.to_string()
            .contains(": transient: cannot reserve inbound stream"),
        "{e}"
    );
    // 7. set_protocol leaves transient; the next stream gets in.
    s1.set_protocol("/A").unwrap();
    assert_eq!(tr(&rm).streams_inbound, 0);
    let mut s2 = rm.open_stream(peer_a, Direction::Inbound).unwrap();
    s2.set_protocol("/A").unwrap();
    // 8. /A is full (2 inbound); peer B's stream goes to /B instead.
    let mut s3 = rm.open_stream(peer_b, Direction::Inbound).unwrap();
    let e = s3.set_protocol("/A").unwrap_err();
    assert!(
        e.to_string()
            .contains("protocol:/A: cannot reserve inbound stream"),
        "{e}"
    );
    s3.set_protocol("/B").unwrap();
    // 9. Service A takes two streams and refuses the third.
    s1.set_service("A").unwrap();
    s2.set_service("A").unwrap();
    let e = s3.set_service("A").unwrap_err();
    assert!(
        e.to_string()
            .contains("service:A: cannot reserve inbound stream"),
        "{e}"
    );
    assert_eq!(rm.stat().services["A"].usage.streams_inbound, 2);
    assert_eq!(rm.stat().protocols["/A"].usage.streams_inbound, 2);
    // 10. Everything closed: the peer and protocol scopes are collected, service A stays.
    drop((s1, s2, s3, c1, c2));
    assert!(sys(&rm).is_zero());
    let st = rm.stat();
    assert!(st.peers.is_empty() && st.protocols.is_empty(), "{st:?}");
    assert_eq!(st.services.len(), 1);
    assert_eq!(rm.with_acct(|a| a.len()), fixed_scopes + 1);
    assert_eq!(
        rm.with_acct(|a| a.refs_of(a.system)),
        system_refs + 1,
        "system holds service A only"
    );

    // 11. Protocol-peer: peer A's second inbound stream on /B is refused (1 per peer).
    let mut c = open(false).unwrap();
    c.set_peer(peer_a).unwrap();
    let mut s4 = rm.open_stream(peer_a, Direction::Inbound).unwrap();
    s4.set_protocol("/B").unwrap();
    let mut s5 = rm.open_stream(peer_a, Direction::Inbound).unwrap();
    let e = s5.set_protocol("/B").unwrap_err();
    assert!(
        e.to_string().contains(&format!(
            "protocol:/B.peer:{peer_a}: cannot reserve inbound stream"
        )),
        "{e}"
    );
    // 12. Service-peer: service B takes one stream per peer.
    s4.set_service("B").unwrap();
    s5.set_protocol("/A").unwrap();
    let e = s5.set_service("B").unwrap_err();
    assert!(
        e.to_string().contains(&format!("service:B.peer:{peer_a}")),
        "{e}"
    );
    drop((s4, s5, c));
    assert!(sys(&rm).is_zero());
    assert_eq!(
        rm.with_acct(|a| a.len()),
        fixed_scopes + 2,
        "services A and B stay, nothing else"
    );
}

#[test]
fn service_needs_protocol_and_attach_once() {
    let rm = manager(LimitConfig::unlimited());
    let peer = PeerId::random();
    let mut s = rm.open_stream(peer, Direction::Outbound).unwrap();
    assert!(matches!(
        s.set_service("svc"),
        Err(Error::NoProtocol { .. })
    ));
    s.set_protocol("/p").unwrap();
    assert!(matches!(
        s.set_protocol("/q"),
        Err(Error::AlreadyAttached {
            what: "protocol",
            ..
        })
    ));
    let mut c = rm
        .open_connection(
            Direction::Outbound,
            false,
            &ma("/ip4/1.1.1.1/udp/1/quic-v1"),
            Instant::now(),
        )
        .unwrap();
    c.set_peer(peer).unwrap();
    assert!(matches!(
        c.set_peer(peer),
        Err(Error::AlreadyAttached { what: "peer", .. })
    ));
    assert_eq!(c.stat().fd, 0, "QUIC takes no file descriptor");
}

#[test]
fn resource_manager_with_allowlist() {
    // TestResourceManagerWithAllowlist.
    let peer_a = PeerId::random();
    let no_conns = BaseLimit {
        conns: 0,
        ..BaseLimit::UNLIMITED
    };
    let limits = LimitConfig::unlimited()
        .with_system(no_conns)
        .with_transient(no_conns)
        .with_allowlisted_system(BaseLimit {
            conns: 2,
            conns_inbound: 2,
            conns_outbound: 1,
            ..BaseLimit::UNLIMITED
        })
        .with_allowlisted_transient(BaseLimit {
            conns: 1,
            conns_inbound: 1,
            conns_outbound: 1,
            ..BaseLimit::UNLIMITED
        });
    let config = Config::default()
        .with_limits(limits)
        .with_allowlist([
            ma("/ip4/1.2.3.4"),
            ma(&format!("/ip4/4.3.2.1/p2p/{peer_a}")),
        ])
        .with_rate_limits(RateLimits::disabled());
    let rm = ResourceManager::new(config).unwrap();
    let now = Instant::now();
    let open = |a: &str| rm.open_connection(Direction::Inbound, false, &ma(a), now);

    assert!(open("/ip4/1.2.3.5/tcp/1").is_err(), "not allowlisted");
    let mut c = open("/ip4/1.2.3.4/tcp/1").unwrap();
    assert!(c.is_allowlisted());
    c.set_peer(PeerId::random()).unwrap();
    assert_eq!(rm.stat().allowlisted_system.usage.conns_inbound, 1);

    let mut c2 = open("/ip4/4.3.2.1/tcp/1").unwrap();
    let e = c2.set_peer(PeerId::random()).unwrap_err();
    assert!(
        e.to_string().contains("system: cannot reserve connection")
            || e.to_string()
                .contains("transient: cannot reserve connection"),
        "{e}"
    );
    drop(c2);
    let mut c3 = open("/ip4/4.3.2.1/tcp/1").unwrap();
    c3.set_peer(peer_a).unwrap();
    assert!(c3.is_allowlisted());
    assert_eq!(rm.stat().allowlisted_system.usage.conns_inbound, 2);
    drop((c, c3));
    assert!(rm.stat().allowlisted_system.usage.is_zero());
    assert!(rm.stat().allowlisted_transient.usage.is_zero());
}

#[test]
fn allowlist_and_ip_limits_play_nice() {
    // TestAllowlistAndConnLimiterPlayNice: allowlisted networks get a per-IP entry with the
    // allowlisted system's connection limit, unless one is configured for them.
    let mut l = IpLimiter::new(IpLimits::default().with_prefix("1.2.3.0/24".parse().unwrap(), 1));
    let nets = ["1.2.3.0/24".parse().unwrap(), "1:2:3::/58".parse().unwrap()];
    l.set_allowlisted(nets.into_iter(), 8);
    let p = l.prefixes();
    let find = |n: &str| {
        p.iter()
            .filter(|x| x.network == n.parse::<ipnet::IpNet>().unwrap())
            .map(|x| x.conns)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        find("1.2.3.0/24"),
        vec![1],
        "the configured limit is kept, not duplicated"
    );
    assert_eq!(find("1:2:3::/58"), vec![8]);
    // An allowlisted network passes the per-IP limit of 8 up to its own limit.
    let rm = ResourceManager::new(
        Config::default()
            .with_allowlist([ma("/ip4/5.5.5.0/ipcidr/24")])
            .with_limits(LimitConfig::unlimited().with_allowlisted_system(BaseLimit {
                conns: 10,
                ..BaseLimit::UNLIMITED
            })),
    )
    .unwrap();
    let now = Instant::now();
    let held: Vec<_> = (0..10)
        .map(|_| {
            rm.open_connection(Direction::Inbound, false, &ma("/ip4/5.5.5.5/tcp/1"), now)
                .unwrap()
        })
        .collect();
    let e = rm
        .open_connection(Direction::Inbound, false, &ma("/ip4/5.5.5.5/tcp/1"), now)
        .unwrap_err();
    assert!(matches!(e, Error::IpLimit { limit: 10, .. }), "{e}");
    drop(held);
}

#[test]
fn rate_limiting_refuses_after_the_burst() {
    // TestResourceManagerRateLimiting: GlobalLimit{RPS 0.00001, Burst 2}.
    let config = Config::default()
        .with_limits(LimitConfig::unlimited())
        .with_rate_limits(RateLimits::default().with_global(Rate {
            per_second: 0.00001,
            burst: 2,
        }));
    let rm = ResourceManager::new(config).unwrap();
    let now = Instant::now();
    let open = |a: &str| rm.open_connection(Direction::Inbound, false, &ma(a), now);
    let _a = open("/ip4/1.2.3.4/tcp/1").unwrap();
    let _b = open("/ip4/4.3.2.1/tcp/1").unwrap();
    let e = open("/ip4/1.2.3.5/tcp/1").unwrap_err();
    assert!(
        e.to_string().starts_with("rate limit exceeded for 1.2.3.5"),
        "{e}"
    );
    assert!(e.is_temporary());
    let blocked = rm.stat().blocked;
    assert_eq!(
        blocked
            .iter()
            .find(|b| b.scope == "rate-limit")
            .map(|b| b.count),
        Some(1)
    );
}

// ---- conn_limiter_test.go ----

#[test]
fn ip_limits() {
    // TestItLimits.
    let v4 = |n| {
        IpLimits::default().with_ipv4(vec![SubnetLimit {
            prefix_len: 32,
            conns: n,
        }])
    };
    let mut l = IpLimiter::new(v4(1));
    let a = l.add(ip("1.2.3.4")).unwrap();
    assert!(l.add(ip("1.2.3.4")).is_err());
    assert!(l.add(ip("1.2.3.5")).is_ok());
    l.remove(&a);
    assert!(l.add(ip("1.2.3.4")).is_ok(), "ok again after removal");

    let mut l = IpLimiter::new(IpLimits::default().with_ipv6(vec![SubnetLimit {
        prefix_len: 56,
        conns: 1,
    }]));
    assert!(l.add(ip("1:2:3:4::1")).is_ok());
    assert!(l.add(ip("1:2:3:4::2")).is_err(), "same /56");
    assert!(l.add(ip("2:2:3:4::2")).is_ok());

    // "Multiple limits": 8 per /56 and 64 per /48 (the defaults).
    let mut l = IpLimiter::new(IpLimits::default());
    for i in 0..8 {
        assert!(l.add(ip(&format!("1:2:3:4::{}", i + 1))).is_ok());
    }
    assert!(l.add(ip("1:2:3:4::9")).is_err(), "the 9th in one /56");
    assert!(l.add(ip("1:2:3:100::1")).is_ok(), "another /56");
    let mut l = IpLimiter::new(IpLimits::default());
    for i in 0..64u32 {
        assert!(
            l.add(ip(&format!("1:2:3:{:x}00::1", i))).is_ok(),
            "/56 number {i}"
        );
    }
    assert!(
        l.add(ip("1:2:3:4000::1")).is_err(),
        "the 65th /56 in one /48"
    );

    // "Localhost": /0 with 1 allows one connection in all of IPv4; loopback is exempt.
    let mut l = IpLimiter::new(IpLimits::default().with_ipv4(vec![SubnetLimit {
        prefix_len: 0,
        conns: 1,
    }]));
    assert!(l.add(ip("1.2.3.4")).is_ok());
    assert!(l.add(ip("4.3.2.1")).is_err());
    assert!(l.add(ip("127.0.0.1")).is_ok());
    assert!(l.add(ip("127.0.0.1")).is_ok());
    // Loopback can be limited too.
    let mut l = IpLimiter::new(v4(1).with_localhost_unlimited(false));
    assert!(l.add(ip("127.0.0.2")).is_ok());
    assert!(l.add(ip("127.0.0.2")).is_err());
    // And the whole limiter can be off (go GH#3431).
    let mut l = IpLimiter::new(IpLimits::disabled().with_ipv4(vec![SubnetLimit {
        prefix_len: 32,
        conns: 0,
    }]));
    assert!(l.add(ip("1.2.3.4")).is_ok());
}

#[test]
fn ip_limits_count_back_to_zero() {
    // FuzzConnLimiter: after adding and removing every accepted address, nothing is tracked.
    let mut l = IpLimiter::new(IpLimits::default().with_localhost_unlimited(false));
    let mut held = Vec::new();
    for i in 0..500u32 {
        let a = if i % 3 == 0 {
            ip(&format!("2001:db8:{:x}::{:x}", i % 7, i))
        } else {
            ip(&format!("10.0.{}.{}", i % 5, i % 11))
        };
        if let Ok(nets) = l.add(a) {
            held.push(nets);
        }
    }
    assert!(l.tracked() > 0);
    for nets in held {
        l.remove(&nets);
    }
    assert_eq!(l.tracked(), 0);
}

// ---- x/rate/limiter_test.go ----

fn rate(per_second: f64, burst: u32) -> Rate {
    Rate { per_second, burst }
}

#[test]
fn rate_limiter_global_burst_then_refill() {
    // TestLimiterGlobal, with time stepped instead of slept.
    for (rps, burst) in [(0.8, 1), (10.0, 20), (100.0, 200), (1000.0, 2000)] {
        let cfg = RateLimits::default()
            .with_ipv4(vec![])
            .with_global(rate(rps, burst));
        let mut l = ConnRateLimiter::new(&cfg);
        let t0 = Instant::now();
        for i in 0..burst {
            assert!(
                l.allow(ip(&format!("1.1.{}.{}", i / 250, i % 250)), t0)
                    .is_ok(),
                "{rps}/{burst}: {i}"
            );
        }
        assert_eq!(
            l.allow(ip("2.2.2.2"), t0),
            Err(None),
            "{rps}/{burst}: past the burst"
        );
        // After one second, about `rps` more.
        let t1 = t0 + Duration::from_secs(1);
        let allowed = (0..(rps as u32 * 2 + 2))
            .filter(|_| l.allow(ip("3.3.3.3"), t1).is_ok())
            .count();
        let expected = (rps as usize).max(1);
        assert!(
            allowed.abs_diff(expected) <= expected / 20 + 1,
            "{rps}/{burst}: {allowed} in one second"
        );
    }
    // A rate of 0 is unlimited.
    let mut l = ConnRateLimiter::new(
        &RateLimits::default()
            .with_ipv4(vec![])
            .with_global(rate(0.0, 1)),
    );
    let t0 = Instant::now();
    assert!((0..1000).all(|_| l.allow(ip("1.1.1.1"), t0).is_ok()));
}

#[test]
fn rate_limiter_network_prefixes() {
    // TestLimiterNetworkPrefix: 127.0.0.0/24 unlimited; a public address gets Global 10/10.
    let cfg = RateLimits::default()
        .with_ipv4(vec![])
        .with_global(rate(10.0, 10))
        .with_prefix("127.0.0.0/24".parse().unwrap(), rate(0.0, 0));
    let mut l = ConnRateLimiter::new(&cfg);
    let t = Instant::now();
    assert!((0..100).all(|_| l.allow(ip("127.0.0.1"), t).is_ok()));
    assert_eq!(
        (0..20)
            .filter(|_| l.allow(ip("1.1.1.1"), t).is_ok())
            .count(),
        10
    );

    // TestLimiterNetworkPrefixWidth: /16 burst 20 and /24 burst 10 are both charged for
    // 1.1.1.1, so 1.1.0.1 has only 10 left.
    let cfg = RateLimits::default()
        .with_prefix("1.1.0.0/16".parse().unwrap(), rate(1.0, 20))
        .with_prefix("1.1.1.0/24".parse().unwrap(), rate(1.0, 10));
    let mut l = ConnRateLimiter::new(&cfg);
    assert_eq!(
        (0..30)
            .filter(|_| l.allow(ip("1.1.1.1"), t).is_ok())
            .count(),
        10
    );
    assert_eq!(
        (0..30)
            .filter(|_| l.allow(ip("1.1.0.1"), t).is_ok())
            .count(),
        10
    );
}

#[test]
fn rate_limiter_subnets() {
    // TestSubnetLimiter "Simple": v4 /24 burst 10 inside /16 burst 19; the second /24 gets 9.
    // v6 /64 burst 10 inside /48 burst 17.
    let cfg = RateLimits::default()
        .with_ipv4(vec![
            SubnetRate {
                prefix_len: 24,
                rate: rate(1.0, 10),
            },
            SubnetRate {
                prefix_len: 16,
                rate: rate(1.0, 19),
            },
        ])
        .with_ipv6(vec![
            SubnetRate {
                prefix_len: 64,
                rate: rate(1.0, 10),
            },
            SubnetRate {
                prefix_len: 48,
                rate: rate(1.0, 17),
            },
        ]);
    let mut l = ConnRateLimiter::new(&cfg);
    let t = Instant::now();
    let count =
        |l: &mut ConnRateLimiter, a: &str| (0..30).filter(|_| l.allow(ip(a), t).is_ok()).count();
    assert_eq!(count(&mut l, "1.1.1.1"), 10);
    assert_eq!(count(&mut l, "1.1.2.1"), 9);
    assert_eq!(count(&mut l, "1:2:3:4::1"), 10);
    assert_eq!(count(&mut l, "1:2:3:5::1"), 7);
    // "Complex": four nested levels 10/20/30/40.
    let levels = [(32, 10), (24, 20), (16, 30), (8, 40)];
    let cfg = RateLimits::default().with_ipv4(
        levels
            .iter()
            .map(|&(p, b)| SubnetRate {
                prefix_len: p,
                rate: rate(1.0, b),
            })
            .collect(),
    );
    let mut l = ConnRateLimiter::new(&cfg);
    assert_eq!(count(&mut l, "1.1.1.1"), 10);
    assert_eq!(count(&mut l, "1.1.1.2"), 10, "the /24 has 10 left");
    assert_eq!(count(&mut l, "1.1.2.1"), 10, "the /16 has 10 left");
    assert_eq!(count(&mut l, "1.2.1.1"), 10, "the /8 has 10 left");
    assert_eq!(count(&mut l, "1.3.1.1"), 0);
    // "Zero": no limits at all.
    let mut l = ConnRateLimiter::new(&RateLimits::default().with_ipv4(vec![]));
    assert_eq!(count(&mut l, "1.1.1.1"), 30);
}

#[test]
fn rate_limiter_forgets_full_buckets() {
    // TestSubnetLimiterCleanup: a bucket that has refilled is dropped.
    let mut l = ConnRateLimiter::new(&RateLimits::default());
    let t0 = Instant::now();
    for i in 0..50 {
        assert!(l.allow(ip(&format!("1.1.1.{i}")), t0).is_ok());
    }
    assert_eq!(l.tracked(), 50);
    // Default IPv4 bucket: burst 16 at 0.2/s refills one token in 5 s; governor forgets a
    // bucket one refill period after it is full.
    l.force_cleanup(t0 + Duration::from_secs(9));
    assert_eq!(l.tracked(), 50);
    l.force_cleanup(t0 + Duration::from_secs(10));
    assert_eq!(l.tracked(), 0);
}

#[test]
fn default_rate_limits_per_address() {
    // Defaults: burst 16, then one every 5 s per IPv4 address; loopback is exempt.
    let mut l = ConnRateLimiter::new(&RateLimits::default());
    let t0 = Instant::now();
    assert_eq!(
        (0..20)
            .filter(|_| l.allow(ip("8.8.8.8"), t0).is_ok())
            .count(),
        16
    );
    assert_eq!(
        l.allow(ip("8.8.8.8"), t0 + Duration::from_millis(4900)),
        Err(Some("8.8.8.8/32".parse().unwrap()))
    );
    assert!(l.allow(ip("8.8.8.8"), t0 + Duration::from_secs(10)).is_ok());
    assert!((0..100).all(|_| l.allow(ip("127.0.0.1"), t0).is_ok()));
}

// ---- allowlist_test.go ----

#[test]
fn allowlist_with_peers() {
    // TestAllowedWithPeer: (allowed(ip), allowed_peer(peer, ip)).
    let (p1, p2) = (PeerId::random(), PeerId::random());
    let cases: Vec<(String, &str, PeerId, (bool, bool))> = vec![
        ("/ip4/1.2.3.4".into(), "1.2.3.4", p1, (true, true)),
        (
            format!("/ip4/1.2.3.4/p2p/{p1}"),
            "1.2.3.4",
            p1,
            (true, true),
        ),
        (
            format!("/ip4/1.2.3.4/p2p/{p1}"),
            "1.2.3.4",
            p2,
            (true, false),
        ),
        ("/ip4/1.2.3.0/ipcidr/24".into(), "1.2.3.9", p2, (true, true)),
        (
            format!("/ip4/1.2.3.0/ipcidr/24/p2p/{p1}"),
            "1.2.3.9",
            p2,
            (true, false),
        ),
        (
            format!("/ip4/1.2.3.0/ipcidr/24/p2p/{p1}"),
            "1.2.3.9",
            p1,
            (true, true),
        ),
        ("/ip4/0.0.0.0/ipcidr/0".into(), "9.9.9.9", p1, (true, true)),
        ("/ip4/1.2.3.4".into(), "1.2.3.5", p1, (false, false)),
        (
            "/ip6/1:2:3::/ipcidr/48".into(),
            "1:2:3:4::1",
            p1,
            (true, true),
        ),
    ];
    for (entry, addr, peer, want) in cases {
        let mut a = Allowlist::default();
        a.add(&ma(&entry)).unwrap();
        assert_eq!(
            (a.allowed(ip(addr)), a.allowed_peer(peer, ip(addr))),
            want,
            "{entry} vs {addr}"
        );
    }
    // The same peer at two addresses is allowed at both.
    let mut a = Allowlist::default();
    a.add(&ma(&format!("/ip4/1.1.1.1/p2p/{p1}"))).unwrap();
    a.add(&ma(&format!("/ip4/2.2.2.2/p2p/{p1}"))).unwrap();
    assert!(a.allowed_peer(p1, ip("1.1.1.1")) && a.allowed_peer(p1, ip("2.2.2.2")));
    // A bare peer is refused: "missing ip address".
    let e = Entry::parse(&ma(&format!("/p2p/{p1}"))).unwrap_err();
    assert!(e.to_string().contains("missing ip address"), "{e}");
}

#[test]
fn allowlist_remove() {
    // TestRemoved: ip, ip+peer, net, net+peer.
    let p = PeerId::random();
    for (entry, addr) in [
        ("/ip4/1.2.3.4".to_owned(), "1.2.3.4"),
        (format!("/ip4/1.2.3.4/p2p/{p}"), "1.2.3.4"),
        ("/ip4/1.2.3.0/ipcidr/24".to_owned(), "1.2.3.7"),
        (format!("/ip4/1.2.3.0/ipcidr/24/p2p/{p}"), "1.2.3.7"),
    ] {
        let rm = ResourceManager::new(Config::default()).unwrap();
        rm.allow(&ma(&entry)).unwrap();
        assert!(
            rm.is_allowlisted(&ma(&format!("/ip4/{addr}/tcp/1"))),
            "{entry}"
        );
        assert!(rm.disallow(&ma(&entry)).unwrap());
        assert!(
            !rm.is_allowlisted(&ma(&format!("/ip4/{addr}/tcp/1"))),
            "{entry}"
        );
    }
}

// ---- limit_test.go ----

#[test]
fn scaling() {
    // TestScaling.
    let base = BaseLimit {
        streams: 100,
        streams_inbound: 200,
        streams_outbound: 300,
        conns: 400,
        conns_inbound: 500,
        conns_outbound: 600,
        fd: 1,
        memory: 700,
    };
    let no_inc = ScaledLimit {
        base,
        increase: LimitIncrease::default(),
    };
    assert_eq!(no_inc.scale(8 * GIB, 100), base, "no increase, no scaling");
    let inc = LimitIncrease {
        streams: 1,
        streams_inbound: 2,
        streams_outbound: 3,
        conns: 4,
        conns_inbound: 5,
        conns_outbound: 6,
        memory: 7,
        fd_fraction: 0.5,
    };
    let scaled = ScaledLimit {
        base,
        increase: inc,
    }
    .scale(128 * MIB + 4 * GIB, 1000);
    assert_eq!(
        scaled,
        BaseLimit {
            streams: 104,
            streams_inbound: 208,
            streams_outbound: 312,
            conns: 416,
            conns_inbound: 520,
            conns_outbound: 624,
            fd: 500,
            memory: 728
        }
    );
    assert_eq!(
        ScaledLimit {
            base,
            increase: inc
        }
        .scale(1, 1),
        base,
        "at 128 MiB or less, the base; FD floor 1"
    );

    // Per-key scaling: service A without an increase stays at its base; B grows.
    let cfg = ScalingLimitConfig::default()
        .with_service(
            "A",
            ScaledLimit {
                base: BaseLimit {
                    streams: 20,
                    memory: 200,
                    fd: 400,
                    ..BaseLimit::BLOCK_ALL
                },
                increase: LimitIncrease::default(),
            },
        )
        .with_service(
            "B",
            ScaledLimit {
                base: BaseLimit {
                    streams: 20,
                    memory: 200,
                    fd: 400,
                    ..BaseLimit::BLOCK_ALL
                },
                increase: LimitIncrease {
                    streams: 2,
                    memory: 3,
                    fd_fraction: 0.4,
                    ..LimitIncrease::default()
                },
            },
        );
    let s = cfg.scale(4 * GIB + 128 * MIB, 1000);
    assert_eq!((s.service("A").streams, s.service("A").memory), (20, 200));
    assert_eq!(
        (
            s.service("B").streams,
            s.service("B").memory,
            s.service("B").fd
        ),
        (28, 212, 400)
    );

    // TestReadmeExample: system conns 128 + 64 per GiB, all the FDs; Scale(4 GiB, 1000) gives
    // 128 + 4 x 64 = 384 connections and 1000 FDs.
    let system = ScaledLimit {
        base: BaseLimit {
            conns: 128,
            fd: 64,
            ..BaseLimit::BLOCK_ALL
        },
        increase: LimitIncrease {
            conns: 64,
            fd_fraction: 1.0,
            ..LimitIncrease::default()
        },
    };
    let s = ScalingLimitConfig::default()
        .with_system(system)
        .scale(4 * GIB, 1000);
    assert_eq!((s.system().conns, s.system().fd), (384, 1000));
}

#[test]
fn default_limits_match_gos_golden_table() {
    // TestDefaultsDontChange: DefaultLimits.Scale(8 GiB, 16384), spec §4.4.
    let s = ScalingLimitConfig::default().scale(8 * GIB, 16 * 1024);
    let sys = s.system();
    assert_eq!(
        (sys.conns_inbound, sys.conns_outbound, sys.conns),
        (576, 1152, 1152)
    );
    assert_eq!((sys.streams_inbound, sys.streams_outbound), (9216, 18432));
    assert_eq!((sys.memory, sys.fd), (8_724_152_320, 16384));
    assert_eq!(s.allowlisted_system(), sys);
    let tr = s.transient();
    assert_eq!((tr.conns_inbound, tr.memory), (160, 1_107_296_256));
    let peer = s.peer_default();
    assert_eq!(
        (
            peer.streams_inbound,
            peer.streams_outbound,
            peer.memory,
            peer.fd
        ),
        (1280, 2560, 1_140_850_688, 256)
    );
    assert_eq!(
        *s.conn(),
        BaseLimit {
            conns: 1,
            conns_inbound: 1,
            conns_outbound: 1,
            fd: 1,
            memory: 32 * MIB,
            ..BaseLimit::BLOCK_ALL
        }
    );
    // go's golden value is 16 MiB + 32 B (an increase of 4 bytes per GiB); ours is 4 MiB per GiB.
    assert_eq!(s.protocol_peer_default().memory, 16 * MIB + 8 * 4 * MIB);
    // The other rows of spec §4.4.
    let s = ScalingLimitConfig::default().scale(GIB, 512);
    assert_eq!(
        (s.system().conns, s.system().memory, s.system().fd),
        (256, 1152 * MIB, 512)
    );
    assert_eq!(
        (s.transient().conns_inbound, s.transient().memory),
        (48, 160 * MIB)
    );
    assert_eq!(
        (
            s.peer_default().streams_inbound,
            s.peer_default().memory,
            s.peer_default().fd
        ),
        (384, 192 * MIB, 8)
    );
    let s = ScalingLimitConfig::default().scale(4 * GIB, 32768);
    assert_eq!(
        (
            s.system().conns_inbound,
            s.system().streams_outbound,
            s.system().memory
        ),
        (320, 10240, 4224 * MIB)
    );
    assert_eq!(
        (
            s.transient().conns_inbound,
            s.transient().memory,
            s.peer_default().fd
        ),
        (96, 544 * MIB, 512)
    );
    let base = LimitConfig::default();
    assert_eq!(
        (
            base.system().conns_inbound,
            base.system().memory,
            base.system().fd
        ),
        (64, 128 * MIB, 256)
    );
}

// ---- limit_config_test.go ----

#[test]
fn json_values_as_go_writes_them() {
    // TestJSONMarshalling: counts as numbers or keywords, memory as a string.
    let defaults = LimitConfig::unlimited();
    let text = r#"{"System":{"StreamsInbound":10,"StreamsOutbound":"blockAll","Conns":10,"ConnsOutbound":"unlimited","Memory":"unlimited"}}"#;
    let l = LimitConfig::from_json(text, &LimitConfig::block_all()).unwrap();
    let s = l.system();
    assert_eq!(
        (
            s.streams_inbound,
            s.streams_outbound,
            s.conns,
            s.conns_outbound,
            s.memory
        ),
        (10, 0, 10, UNLIMITED, UNLIMITED)
    );
    assert_eq!(s.streams, 0, "absent fields come from the defaults");
    let out: serde_json::Value = serde_json::from_str(&l.to_json()).unwrap();
    assert_eq!(out["System"]["StreamsInbound"], 10);
    assert_eq!(out["System"]["StreamsOutbound"], "blockAll");
    assert_eq!(out["System"]["ConnsOutbound"], "unlimited");
    assert_eq!(out["System"]["Memory"], "unlimited");
    assert_eq!(out["Transient"]["Memory"], "blockAll");
    // TestJSONRoundTripInt64.
    let l = LimitConfig::from_json(r#"{"System":{"Memory":"9223372036854775807"}}"#, &defaults)
        .unwrap();
    assert_eq!(l.system().memory, i64::MAX as u64);
    let out: serde_json::Value = serde_json::from_str(&l.to_json()).unwrap();
    assert_eq!(out["System"]["Memory"], "9223372036854775807");
    // TestWhatIsZeroInResourceLimits: an explicit 0 is block-all, as a number or a string.
    for text in [
        r#"{"System":{"Streams":0,"Memory":0}}"#,
        r#"{"System":{"Streams":0,"Memory":"0"}}"#,
    ] {
        let l = LimitConfig::from_json(text, &defaults).unwrap();
        assert_eq!((l.system().streams, l.system().memory), (0, 0), "{text}");
    }
    // TestReadmeLimitConfigSerialization.
    let p: PeerId = "QmVvtzcZgCkMnSFf2dnrBPXrWuNFWNM9J3MpZQCvWPuVZf"
        .parse()
        .unwrap();
    let text = r#"{"Peer":{"QmVvtzcZgCkMnSFf2dnrBPXrWuNFWNM9J3MpZQCvWPuVZf":{"StreamsInbound":"blockAll","StreamsOutbound":"unlimited","ConnsInbound":"blockAll"}},"System":{"StreamsOutbound":"unlimited"}}"#;
    let l = LimitConfig::from_json(text, &LimitConfig::default()).unwrap();
    assert_eq!(
        (
            l.peer(&p).streams_inbound,
            l.peer(&p).streams_outbound,
            l.peer(&p).conns_inbound
        ),
        (0, UNLIMITED, 0)
    );
    assert_eq!(
        l.peer(&p).memory,
        LimitConfig::default().peer_default().memory
    );
    assert_eq!(l.system().streams_outbound, UNLIMITED);
}

#[test]
fn json_partial_config_fills_from_defaults() {
    // TestLimitConfigParser.
    let peer = PeerId::random();
    let defaults = ScalingLimitConfig::default()
        .with_service(
            "C",
            ScaledLimit {
                base: BaseLimit {
                    memory: 1234,
                    ..BaseLimit::BLOCK_ALL
                },
                increase: LimitIncrease::default(),
            },
        )
        .scale(8 * GIB, 1024);
    let text = format!(
        r#"{{"System":{{"Memory":65536,"Conns":16,"ConnsInbound":8,"ConnsOutbound":16,"FD":16}},
            "ServiceDefault":{{"Memory":8765}},
            "Service":{{"A":{{"Memory":8192}},"B":{{}}}},
            "PeerDefault":{{"Memory":4096}},
            "Peer":{{"{peer}":{{"Memory":4097}}}}}}"#
    );
    let l = LimitConfig::from_json(&text, &defaults).unwrap();
    let s = l.system();
    assert_eq!(
        (s.memory, s.conns, s.conns_inbound, s.conns_outbound, s.fd),
        (65536, 16, 8, 16, 16)
    );
    assert_eq!(
        s.streams,
        defaults.system().streams,
        "system streams keep their defaults"
    );
    assert_eq!(
        *l.service("A"),
        BaseLimit {
            memory: 8192,
            ..*l.service_default()
        }
    );
    assert_eq!(*l.service("B"), *l.service_default());
    assert_eq!(l.service_default().memory, 8765);
    assert_eq!(l.service("C").memory, 1234, "C keeps its scaled default");
    assert_eq!(
        (l.peer_default().memory, l.peer(&peer).memory),
        (4096, 4097)
    );
    // The round trip is stable.
    let again = LimitConfig::from_json(&l.to_json(), &LimitConfig::block_all()).unwrap();
    assert_eq!(again, l);
}

#[test]
fn json_round_trip_leaks_no_defaults() {
    // TestLimitConfigRoundTrip: concrete -> JSON -> built on infinite limits gives it back.
    let l = ScalingLimitConfig::default()
        .with_peer(PeerId::random(), ScaledLimit::default())
        .with_protocol("/x", ScaledLimit::default())
        .scale(2 * GIB, 4096);
    assert_eq!(
        LimitConfig::from_json(&l.to_json(), &LimitConfig::unlimited()).unwrap(),
        l
    );
    assert_eq!(
        LimitConfig::from_json(&l.to_json(), &LimitConfig::block_all()).unwrap(),
        l
    );
    let u = LimitConfig::unlimited();
    assert_eq!(
        LimitConfig::from_json(&u.to_json(), &LimitConfig::block_all()).unwrap(),
        u
    );
}

#[test]
fn kubo_style_limits_file_loads() {
    // A Kubo `libp2p-resource-manager-limits.json` as users write it: "bigEnough" numbers,
    // memory as plain integers, keywords.
    let text = r#"{
      "System": {"Memory": 2147483648, "FD": 4096, "Conns": 4611686018427387903,
                 "ConnsInbound": 512, "ConnsOutbound": 4611686018427387903,
                 "Streams": "unlimited", "StreamsInbound": 4096, "StreamsOutbound": "unlimited"},
      "Transient": {"Memory": "268435456", "FD": 1024, "ConnsInbound": 256, "StreamsInbound": 512},
      "PeerDefault": {"StreamsInbound": 512, "ConnsInbound": 8, "Memory": "default"},
      "ProtocolPeerDefault": {"StreamsInbound": "default"}
    }"#;
    let l = LimitConfig::from_json(text, &LimitConfig::default()).unwrap();
    assert_eq!(
        (
            l.system().memory,
            l.system().conns_inbound,
            l.system().conns
        ),
        (2 * GIB, 512, 4_611_686_018_427_387_903)
    );
    assert_eq!(l.system().streams, UNLIMITED);
    assert_eq!((l.transient().memory, l.transient().fd), (256 * MIB, 1024));
    assert_eq!(
        l.peer_default().memory,
        LimitConfig::default().peer_default().memory
    );
    assert_eq!(
        LimitConfig::from_json(&l.to_json(), &LimitConfig::block_all()).unwrap(),
        l
    );
}

#[test]
fn bad_limits_files_name_the_field() {
    let d = LimitConfig::default();
    let cases = [
        (r#"{"Sytem":{}}"#, "Sytem", "unknown field `Sytem`"),
        (
            r#"{"System":{"Conns":-5}}"#,
            "System.Conns",
            "negative value -5",
        ),
        (
            r#"{"System":{"Memory":"-1"}}"#,
            "System.Memory",
            "negative value -1",
        ),
        (
            r#"{"System":{"Conns":1.5}}"#,
            "System.Conns",
            "floating point",
        ),
        (r#"{"System":{"Conns":true}}"#, "System.Conns", "boolean"),
        (r#"{"System":{"Conns":"lots"}}"#, "System.Conns", "\"lots\""),
        (r#"{"System":{"Con":1}}"#, "System", "unknown field `Con`"),
        (
            r#"{"Peer":{"not-a-peer":{}}}"#,
            "Peer.not-a-peer",
            "invalid peer ID",
        ),
        (r#"{"System":"#, "System", "EOF"),
    ];
    for (text, path, reason) in cases {
        let e = LimitConfig::from_json(text, &d).unwrap_err();
        assert!(
            e.path().starts_with(path) || (path == "." && e.path() == "."),
            "{text}: path {}",
            e.path()
        );
        assert!(e.reason().contains(reason), "{text}: {e}");
    }
}

// ---- the manager as a whole ----

#[test]
fn set_limits_applies_to_live_scopes() {
    let rm = manager(LimitConfig::unlimited());
    let peer = PeerId::random();
    let s1 = rm.open_stream(peer, Direction::Inbound).unwrap();
    rm.set_limits(LimitConfig::unlimited().with_peer_default(streams(1, 1, 1)));
    let e = rm.open_stream(peer, Direction::Inbound).unwrap_err();
    assert!(
        e.to_string()
            .contains(&format!("peer:{peer}: cannot reserve inbound stream")),
        "{e}"
    );
    drop(s1);
    assert!(rm.open_stream(peer, Direction::Inbound).is_ok());
}

#[test]
fn muxer_streams_skip_transient() {
    let rm = manager(
        LimitConfig::unlimited()
            .with_transient(streams(0, 0, 0))
            .with_peer_default(streams(2, 2, 2)),
    );
    let peer = PeerId::random();
    assert!(
        rm.open_stream(peer, Direction::Inbound).is_err(),
        "transient blocks go's streams"
    );
    let a = rm.open_muxer_stream(peer, Direction::Inbound).unwrap();
    let _b = rm.open_muxer_stream(peer, Direction::Inbound).unwrap();
    let e = rm.open_muxer_stream(peer, Direction::Inbound).unwrap_err();
    let Error::LimitExceeded(l) = &e else {
        panic!("{e}")
    };
    assert_eq!(
        (
            l.scopes()[1].as_str(),
            l.current(),
            l.attempted(),
            l.limit()
        ),
        (format!("peer:{peer}").as_str(), 2, 1, 2)
    );
    assert!(l.scopes()[0].starts_with("stream-"));
    assert_eq!(rm.stat().system.usage.streams_inbound, 2);
    let blocked = rm.stat().blocked;
    assert_eq!(
        blocked
            .iter()
            .find(|b| b.scope == "peer")
            .map(|b| (b.direction, b.resource, b.count)),
        Some((Some(Direction::Inbound), Resource::InboundStream, 1))
    );
    // The window reservation of a stream charges the peer scope.
    let w = a.reserve_memory(256 * KIB, Priority::ALWAYS).unwrap();
    assert_eq!(rm.stat().peers[&peer.to_base58()].usage.memory, 256 * KIB);
    drop(a);
    assert_eq!(
        rm.stat().system.usage.memory,
        0,
        "closing the stream releases its window"
    );
    drop(w);
    assert_eq!(rm.stat().system.usage.streams_inbound, 1);
}

#[test]
fn reservations_hold_their_scope() {
    let rm = manager(LimitConfig::unlimited());
    let r = rm
        .view_protocol("/p", |p| p.reserve_memory(1000, Priority::LOW))
        .unwrap();
    assert_eq!(
        rm.stat().protocols["/p"].usage.memory,
        1000,
        "not collected while memory is held"
    );
    drop(r);
    assert!(rm.stat().protocols.is_empty());
    assert_eq!(rm.stat().system.usage.memory, 0);
}

#[test]
fn bad_config_is_refused() {
    let e = ResourceManager::new(Config::default().with_allowlist([ma("/dns4/example.com")]))
        .unwrap_err();
    assert!(
        e.to_string().contains("`allowlist`") && e.to_string().contains("missing ip address"),
        "{e}"
    );
    let e = ResourceManager::new(
        Config::default().with_rate_limits(RateLimits::default().with_global(rate(-1.0, 1))),
    )
    .unwrap_err();
    assert!(e.to_string().contains("`rate_limits`"), "{e}");
    let e = ResourceManager::new(
        Config::default().with_rate_limits(RateLimits::default().with_global(rate(1.0, 0))),
    )
    .unwrap_err();
    assert!(e.to_string().contains("burst"), "{e}");
}

/// A muxer's stream, opened through a connection's counter.
fn counted(rm: &ResourceManager, peer: PeerId) -> StreamCounter {
    rm.stream_counter(peer, "/ip4/1.2.3.4/tcp/1".parse().unwrap())
}

#[test]
fn muxer_window_is_charged_to_the_peer_not_to_the_protocol() {
    let rm = manager(LimitConfig::unlimited());
    let peer = PeerId::random();
    let counter = counted(&rm, peer);
    let (mut s, window) = counter.open_stream(Direction::Inbound, 1000).unwrap();
    assert_eq!(window.bytes(), 1000);
    s.attach(PING_PROTOCOL).unwrap();
    let st = rm.stat();
    assert_eq!(st.peers[&peer.to_base58()].usage.memory, 1000);
    assert_eq!(st.protocols[PING_PROTOCOL].usage.memory, 0);
    assert_eq!(st.protocols[PING_PROTOCOL].usage.streams_inbound, 1);
    assert_eq!(st.services[PING_SERVICE].usage.streams_inbound, 1);
    drop((s, window));
    let st = rm.stat();
    assert_eq!(st.system.usage, ScopeStat::default());
    assert!(st.protocols.is_empty());
}

#[test]
fn protocol_peer_limit_refuses_with_the_protocol_named() {
    // A Kubo-style file: one inbound ping stream per peer.
    let rm = manager(LimitConfig::unlimited().with_protocol_peer(PING_PROTOCOL, streams(1, 8, 8)));
    let peer = PeerId::random();
    let counter = counted(&rm, peer);
    let (mut a, _wa) = counter.open_stream(Direction::Inbound, 0).unwrap();
    let (mut b, _wb) = counter.open_stream(Direction::Inbound, 0).unwrap();
    let (mut c, _wc) = counter.open_stream(Direction::Inbound, 0).unwrap();
    a.attach(PING_PROTOCOL).unwrap();
    let e = b.attach(PING_PROTOCOL).unwrap_err();
    assert!(
        e.to_string().contains("protocol:/ipfs/ping/1.0.0.peer:"),
        "{e}"
    );
    // Another protocol of the same peer is unaffected.
    c.attach("/other/1").unwrap();
    let st = rm.stat();
    let blocked: Vec<_> = st
        .blocked
        .iter()
        .map(|b| (b.scope, b.protocol.as_deref(), b.count))
        .collect();
    assert_eq!(blocked, [("protocol-peer", Some(PING_PROTOCOL), 1)]);
    assert_eq!(st.protocols[PING_PROTOCOL].usage.streams_inbound, 1);
    assert_eq!(st.protocols["/other/1"].usage.streams_inbound, 1);
}

#[test]
fn service_limits_apply_through_the_configured_map() {
    let limits = LimitConfig::unlimited().with_service_peer(PING_SERVICE, streams(8, 1, 8));
    let rm = manager(limits);
    let peer = PeerId::random();
    let counter = counted(&rm, peer);
    let (mut a, _wa) = counter.open_stream(Direction::Outbound, 0).unwrap();
    let (mut b, _wb) = counter.open_stream(Direction::Outbound, 0).unwrap();
    a.attach(PING_PROTOCOL).unwrap();
    let e = b.attach(PING_PROTOCOL).unwrap_err();
    assert!(e.to_string().contains("service:libp2p.ping.peer:"), "{e}");
    assert_eq!(
        rm.stat().blocked[0].protocol.as_deref(),
        Some(PING_PROTOCOL),
        "a service refusal names the protocol too"
    );
    // Without the map entry, no service scope is involved.
    let config = Config::default()
        .with_limits(LimitConfig::unlimited().with_service_peer(PING_SERVICE, streams(8, 0, 8)))
        .with_service(PING_PROTOCOL, "");
    let rm = ResourceManager::new(config).unwrap();
    let counter = counted(&rm, peer);
    let (mut s, _w) = counter.open_stream(Direction::Outbound, 0).unwrap();
    s.attach(PING_PROTOCOL).unwrap();
    assert!(rm.stat().services.is_empty());
}

#[test]
fn a_refused_proposal_is_released_and_the_next_one_charged() {
    use super::multistream::Sniffed;
    let rm = manager(LimitConfig::unlimited());
    let peer = PeerId::random();
    let counter = counted(&rm, peer);
    let (mut s, _w) = counter.open_stream(Direction::Outbound, 0).unwrap();
    s.sniffed(Sniffed::Proposed("/a/1")).unwrap();
    assert_eq!(rm.stat().protocols["/a/1"].usage.streams_outbound, 1);
    s.sniffed(Sniffed::Refused).unwrap();
    let st = rm.stat();
    assert!(st.protocols.is_empty(), "{:?}", st.protocols);
    assert_eq!(st.peers[&peer.to_base58()].usage.streams_outbound, 1);
    s.sniffed(Sniffed::Proposed(PING_PROTOCOL)).unwrap();
    s.sniffed(Sniffed::Confirmed).unwrap();
    assert_eq!(s.protocol().as_deref(), Some(PING_PROTOCOL));
    assert_eq!(rm.stat().services[PING_SERVICE].usage.streams_outbound, 1);
    // Giving up leaves the stream in its peer scope and counts it.
    let (mut t, _w) = counter.open_stream(Direction::Inbound, 0).unwrap();
    t.sniffed(Sniffed::GaveUp).unwrap();
    let st = rm.stat();
    assert_eq!(st.unattributed_streams, 1);
    assert_eq!(st.peers[&peer.to_base58()].usage.streams_inbound, 1);
}

#[test]
fn stream_counts_reach_whoever_claimed_the_connection() {
    let rm = manager(LimitConfig::unlimited());
    let peer = PeerId::random();
    let remote: Multiaddr = "/ip4/1.2.3.4/tcp/1".parse().unwrap();
    let counter = rm.stream_counter(peer, remote.clone());
    let mut out = Vec::new();
    let a = counter.open_stream(Direction::Inbound, 0).unwrap();
    rm.take_stream_counts(&mut out);
    assert!(out.is_empty(), "not reported before the claim");
    let id = rm.claim_stream_counter(peer, &remote).unwrap();
    assert_eq!(id, counter.id());
    assert_eq!(rm.claim_stream_counter(peer, &remote), None, "claimed once");
    let b = counter.open_stream(Direction::Outbound, 0).unwrap();
    let c = counter.open_stream(Direction::Outbound, 0).unwrap();
    drop(c);
    rm.take_stream_counts(&mut out);
    assert_eq!(out, [(id, 2)], "one report per change, with the count now");
    out.clear();
    drop((a, b));
    rm.take_stream_counts(&mut out);
    assert_eq!(out, [(id, 0)]);
    // A counter dropped unclaimed leaves nothing behind.
    let other = rm.stream_counter(peer, remote.clone());
    drop(other);
    assert_eq!(rm.claim_stream_counter(peer, &remote), None);
}

#[test]
fn default_service_limits_are_gos() {
    let l = ScalingLimitConfig::default()
        .with_default_service_limits()
        .scale(128 << 20, 256);
    let counts = |b: &BaseLimit| (b.streams_inbound, b.streams_outbound, b.streams, b.memory);
    assert_eq!(counts(l.service(IDENTIFY_SERVICE)), (64, 64, 128, 4 << 20));
    assert_eq!(
        counts(l.service_peer(IDENTIFY_SERVICE)),
        (16, 16, 32, 1 << 20)
    );
    assert_eq!(
        counts(l.protocol("/ipfs/id/push/1.0.0")),
        (64, 64, 128, 4 << 20)
    );
    assert_eq!(counts(l.service(PING_SERVICE)), (64, 64, 64, 4 << 20));
    assert_eq!(
        counts(l.protocol_peer(PING_PROTOCOL)),
        (2, 3, 4, 32 * ((256 << 20) + (16 << 10)))
    );
    assert_eq!(counts(l.protocol_peer(PEX_PROTOCOL)), (4, 4, 8, 1 << 20));
    // Scaled to 1 GiB: above 128 MiB, go adds the increase per GiB of the whole memory.
    let l = ScalingLimitConfig::default()
        .with_default_service_limits()
        .scale(1 << 30, 256);
    assert_eq!(l.service(IDENTIFY_SERVICE).streams, 128 + 128);
    assert_eq!(l.service_peer(IDENTIFY_SERVICE).streams, 32);
}

/// What a walk of every peer scope finds, as the metrics computed it before the distributions
/// were kept.
fn walked_distributions(rm: &ResourceManager) -> PeerDistributions {
    let mut d = PeerDistributions::default();
    for snap in rm.stat().peers.values() {
        d.add(&snap.usage);
    }
    d
}

#[derive(Debug, Clone)]
enum Op {
    /// An inbound or outbound connection, attached to peer `n` unless `None`.
    Connect(Option<u8>, bool),
    /// A stream with peer `n`.
    Stream(u8, bool),
    /// Memory on the `i`-th open connection (modulo), in bytes.
    ConnMemory(usize, u64),
    /// Memory on the `i`-th open stream.
    StreamMemory(usize, u64),
    /// Closes the `i`-th connection, stream or reservation.
    CloseConn(usize),
    CloseStream(usize),
    Release(usize),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    // Amounts on both sides of go's bucket bounds (1 KiB, 4 KiB, 32 KiB, 1 MiB, ...).
    let bytes = prop_oneof![
        Just(0u64),
        Just(1024),
        Just(1025),
        Just(4096),
        Just(40_000),
        Just(2 << 20),
        1u64..(64 << 20)
    ];
    prop_oneof![
        (proptest::option::of(0u8..4), any::<bool>()).prop_map(|(p, i)| Op::Connect(p, i)),
        (0u8..4, any::<bool>()).prop_map(|(p, i)| Op::Stream(p, i)),
        (any::<usize>(), bytes.clone()).prop_map(|(i, b)| Op::ConnMemory(i, b)),
        (any::<usize>(), bytes).prop_map(|(i, b)| Op::StreamMemory(i, b)),
        any::<usize>().prop_map(Op::CloseConn),
        any::<usize>().prop_map(Op::CloseStream),
        any::<usize>().prop_map(Op::Release),
    ]
}

proptest::proptest! {
    /// The peer distributions kept as scopes change equal a walk of every peer scope after
    /// every step: connections and streams opened, attached, given memory and closed, peer
    /// scopes created and collected.
    #[test]
    fn the_peer_distributions_kept_equal_a_walk_of_the_peers(
        ops in proptest::collection::vec(op(), 1..80)
    ) {
        let rm = manager(LimitConfig::unlimited());
        let peers: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
        let now = Instant::now();
        let addr = ma("/ip4/1.2.3.4/tcp/4001");
        let (mut conns, mut streams, mut held) = (Vec::new(), Vec::new(), Vec::new());
        for op in ops {
            match op {
                Op::Connect(peer, inbound) => {
                    let dir = if inbound { Direction::Inbound } else { Direction::Outbound };
                    let mut c = rm.open_connection(dir, true, &addr, now).unwrap();
                    if let Some(p) = peer {
                        c.set_peer(peers[usize::from(p)]).unwrap();
                    }
                    conns.push(c);
                }
                Op::Stream(p, inbound) => {
                    let dir = if inbound { Direction::Inbound } else { Direction::Outbound };
                    streams.push(rm.open_stream(peers[usize::from(p)], dir).unwrap());
                }
                Op::ConnMemory(i, bytes) if !conns.is_empty() => {
                    let c = &conns[i % conns.len()];
                    held.push(c.reserve_memory(bytes, Priority::ALWAYS).unwrap());
                }
                Op::StreamMemory(i, bytes) if !streams.is_empty() => {
                    let s = &streams[i % streams.len()];
                    held.push(s.reserve_memory(bytes, Priority::ALWAYS).unwrap());
                }
                Op::CloseConn(i) if !conns.is_empty() => {
                    let n = conns.len();
                    drop(conns.swap_remove(i % n));
                }
                Op::CloseStream(i) if !streams.is_empty() => {
                    let n = streams.len();
                    drop(streams.swap_remove(i % n));
                }
                Op::Release(i) if !held.is_empty() => {
                    let n = held.len();
                    drop(held.swap_remove(i % n));
                }
                _ => {}
            }
            let kept = rm.summary().peers;
            proptest::prop_assert_eq!(&kept, &walked_distributions(&rm));
        }
        // Everything closed: no peer scope is left, and none is counted.
        drop((held, streams, conns));
        let kept = rm.summary().peers;
        proptest::prop_assert_eq!(kept.connections.count(), 0);
        proptest::prop_assert_eq!(kept.memory.sum(), 0);
        proptest::prop_assert_eq!(&kept, &walked_distributions(&rm));
    }
}

#[test]
fn a_peer_scope_counts_in_the_bucket_of_what_it_holds_now() {
    let rm = manager(LimitConfig::unlimited());
    let peer = PeerId::random();
    let now = Instant::now();
    let mut c = rm
        .open_connection(Direction::Inbound, true, &ma("/ip4/1.2.3.4/tcp/1"), now)
        .unwrap();
    c.set_peer(peer).unwrap();
    let s1 = rm.open_stream(peer, Direction::Inbound).unwrap();
    let _s2 = rm.open_stream(peer, Direction::Outbound).unwrap();
    // 4 KiB + 1 byte: above go's 4 KiB bound, in the 32 KiB bucket.
    let r = s1.reserve_memory(4097, Priority::ALWAYS).unwrap();
    let d = rm.summary().peers;
    let nonzero = |d: &Distribution| -> Vec<(Option<u64>, u64)> {
        d.buckets().filter(|(_, n)| *n > 0).collect()
    };
    assert_eq!(nonzero(&d.connections), vec![(Some(1), 1)]);
    assert_eq!(nonzero(&d.streams), vec![(Some(2), 1)]);
    assert_eq!(nonzero(&d.memory), vec![(Some(32 << 10), 1)]);
    assert_eq!(d.memory.sum(), 4097);
    drop(r);
    let d = rm.summary().peers;
    assert_eq!(
        nonzero(&d.memory),
        vec![(Some(1024), 1)],
        "0 bytes: the first bucket"
    );
    assert_eq!(d.memory.sum(), 0);
}

/// One step of [`the_memory_fast_path_equals_the_generic_reserve_and_release`].
#[derive(Debug, Clone)]
enum MemOp {
    /// Memory on the `i`-th leaf (modulo), at a priority.
    Reserve(usize, u64, u8),
    /// Drops the `i`-th reservation held.
    Release(usize),
    /// A span on the `i`-th leaf.
    Span(usize),
    /// Closes the `i`-th leaf (reservations on it stay held).
    Done(usize),
}

fn mem_op() -> impl proptest::strategy::Strategy<Value = MemOp> {
    use proptest::prelude::*;
    let bytes = prop_oneof![Just(0u64), Just(1024), Just(4096), 1u64..(96 << 10)];
    prop_oneof![
        3 => (any::<usize>(), bytes, any::<u8>()).prop_map(|(i, b, p)| MemOp::Reserve(i, b, p)),
        2 => any::<usize>().prop_map(MemOp::Release),
        1 => any::<usize>().prop_map(MemOp::Span),
        1 => any::<usize>().prop_map(MemOp::Done),
    ]
}

/// A stream-like leaf charging its peer, protocol, protocol-peer and system scopes and a
/// connection-like leaf charging its peer, transient and system, with memory limits low
/// enough that reservations are refused at every level.
fn memory_dag(a: &mut Accountant, peer: PeerId) -> Vec<ScopeId> {
    let p = a.peer_scope(peer);
    let proto = a.protocol_scope("/p");
    let pp = a.protocol_peer_scope("/p", peer);
    let (system, transient) = (a.system, a.transient);
    for (id, memory) in [
        (system, 256 << 10),
        (p, 128 << 10),
        (proto, 160 << 10),
        (pp, 96 << 10),
    ] {
        a.scope_mut(id).limit.memory = memory;
    }
    let kind = a.next_stream_kind();
    let stream = a.create(kind, vec![p, pp, proto, system], None);
    let kind = a.next_conn_kind();
    let conn = a.create(kind, vec![p, transient, system], None);
    for leaf in [stream, conn] {
        a.scope_mut(leaf).limit.memory = 64 << 10;
    }
    vec![stream, conn, p, proto, pp, system, transient]
}

proptest::proptest! {
    /// `reserve_memory` and `release_memory` (the hot path of every reservation) leave every
    /// scope, its references, the peer distributions and the blocked counts as the generic
    /// `reserve` + `incref` and `release` + `decref` do, through refusals, spans (whose owner
    /// is charged) and closed scopes (which ignore a release).
    #[test]
    fn the_memory_fast_path_equals_the_generic_reserve_and_release(
        ops in proptest::collection::vec(mem_op(), 1..120)
    ) {
        let peer = PeerId::random();
        let (mut fast, mut generic) = (
            Accountant::new(LimitConfig::unlimited()),
            Accountant::new(LimitConfig::unlimited()),
        );
        let mut ids = memory_dag(&mut fast, peer);
        proptest::prop_assert_eq!(&ids, &memory_dag(&mut generic, peer));
        let mut leaves = vec![ids[0], ids[1]];
        let mut held: Vec<(ScopeId, u64)> = Vec::new();
        for op in ops {
            match op {
                MemOp::Reserve(i, bytes, prio) => {
                    let leaf = leaves[i % leaves.len()];
                    let prio = Priority(prio);
                    let f = fast.reserve_memory(leaf, bytes, prio);
                    let g = generic.reserve(leaf, &ScopeStat::memory(bytes), prio, None);
                    if g.is_ok() {
                        generic.incref(leaf);
                        held.push((leaf, bytes));
                    }
                    proptest::prop_assert_eq!(
                        f.map_err(|e| e.to_string()),
                        g.map_err(|e| e.to_string())
                    );
                }
                MemOp::Release(i) if !held.is_empty() => {
                    let n = held.len();
                    let (leaf, bytes) = held.swap_remove(i % n);
                    fast.release_memory(leaf, bytes);
                    generic.release(leaf, &ScopeStat::memory(bytes));
                    generic.decref(leaf);
                }
                MemOp::Span(i) => {
                    let leaf = leaves[i % leaves.len()];
                    let f = fast.new_span(leaf);
                    let g = generic.new_span(leaf);
                    proptest::prop_assert_eq!(f.is_ok(), g.is_ok());
                    if let (Ok(f), Ok(g)) = (f, g) {
                        proptest::prop_assert_eq!(f, g);
                        leaves.push(f);
                        ids.push(f);
                    }
                }
                MemOp::Done(i) => {
                    let leaf = leaves[i % leaves.len()];
                    fast.done(leaf);
                    generic.done(leaf);
                }
                _ => {}
            }
            for &id in &ids {
                proptest::prop_assert_eq!(fast.scope(id).is_some(), generic.scope(id).is_some());
                proptest::prop_assert_eq!(fast.stat_of(id), generic.stat_of(id));
                proptest::prop_assert_eq!(fast.refs_of(id), generic.refs_of(id));
            }
            proptest::prop_assert_eq!(&fast.peer_distributions, &generic.peer_distributions);
            proptest::prop_assert_eq!(&fast.blocked, &generic.blocked);
        }
    }
}
