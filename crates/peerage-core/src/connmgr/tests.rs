//! go-libp2p's `connmgr_test.go` and `decay_test.go` scenarios (`p2p/net/connmgr`), with
//! their numbers, on a manual clock; then ours.

use std::time::{Duration, Instant};

use super::*;

const MS: Duration = Duration::from_millis(1);

fn addr() -> Multiaddr {
    "/ip4/127.0.0.1/udp/1234".parse().unwrap()
}

fn manager(low: usize, high: usize, grace: Duration, now: Instant) -> ConnManager<u64> {
    let config = Config::new()
        .with_watermarks(low, high)
        .with_grace_period(grace)
        .with_silence_period(Duration::from_secs(3600));
    ConnManager::new(config, now).unwrap()
}

/// A test harness: a manager, a clock, connection IDs, and the set of open connections.
struct Net {
    cm: ConnManager<u64>,
    now: Instant,
    next_id: u64,
    open: Vec<(PeerId, u64)>,
}

impl Net {
    fn new(cm: ConnManager<u64>, now: Instant) -> Self {
        Self {
            cm,
            now,
            next_id: 0,
            open: Vec::new(),
        }
    }
    /// Connects a new peer (one outbound connection, as go's `tconn`).
    fn connect(&mut self) -> PeerId {
        let peer = PeerId::random();
        self.connect_peer(peer);
        peer
    }
    fn connect_peer(&mut self, peer: PeerId) -> u64 {
        self.next_id += 1;
        assert!(
            self.cm
                .connection_established(peer, self.next_id, false, addr(), self.now)
        );
        self.open.push((peer, self.next_id));
        self.next_id
    }
    /// Closes every connection of the trim's victims; returns the victims.
    fn apply(&mut self, trim: Trim) -> Vec<PeerId> {
        let victims: Vec<PeerId> = trim.victims.iter().map(|v| v.peer).collect();
        let cm = &mut self.cm;
        self.open.retain(|(p, id)| {
            if victims.contains(p) {
                assert!(cm.connection_closed(p, *id));
                false
            } else {
                true
            }
        });
        victims
    }
    fn trim(&mut self) -> Vec<PeerId> {
        let trim = self.cm.trim_open_conns(self.now);
        self.apply(trim)
    }
    fn is_open(&self, peer: &PeerId) -> bool {
        self.open.iter().any(|(p, _)| p == peer)
    }
}

// ---- connmgr_test.go ----

#[test]
fn conn_trimming() {
    let now = Instant::now();
    let mut net = Net::new(manager(200, 300, Duration::ZERO, now), now);
    let peers: Vec<PeerId> = (0..300).map(|_| net.connect()).collect();
    for p in &peers[..100] {
        net.cm.tag_peer(*p, "foo", 10, now);
    }
    net.cm.tag_peer(peers[299], "badfoo", -5, now);
    // 300 = high: not exceeded, no background trim.
    assert_eq!(net.cm.poll(now), None);
    assert_eq!(net.open.len(), 300);

    let closed = net.trim();
    assert_eq!(closed.len(), 100);
    assert!(peers[..100].iter().all(|p| net.is_open(p)));
    assert!(!net.is_open(&peers[299]));
    assert_eq!(closed[0], peers[299], "the lowest value goes first");
}

#[test]
fn conns_to_close_when_disabled_or_under_low() {
    let now = Instant::now();
    for (low, high, grace, conns) in [
        (0, 10, Duration::ZERO, 5),          // below hi limit: low 0 disables
        (10, 0, Duration::ZERO, 5),          // below low limit: high 0 disables
        (1, 1, Duration::ZERO, 1),           // below low and hi limit
        (1, 1, Duration::from_secs(600), 1), // within the grace period
        (1, 1, Duration::from_secs(600), 2), // ours: 2 connections, both in grace
    ] {
        let mut net = Net::new(manager(low, high, grace, now), now);
        for _ in 0..conns {
            net.connect();
        }
        assert!(net.trim().is_empty(), "({low},{high}) with {conns} conns");
    }
}

#[test]
fn get_tag_info() {
    let start = Instant::now();
    let mut net = Net::new(manager(1, 1, Duration::from_secs(600), start), start);
    assert_eq!(net.cm.tag_info(&PeerId::random()), None);
    net.now += MS;
    let peer = net.connect();
    let info = net.cm.tag_info(&peer).unwrap();
    assert_eq!(info.first_seen, net.now);
    assert_eq!(info.value, 0);
    assert!(info.tags.is_empty());
    assert_eq!(info.connections.len(), 1);
    assert_eq!(info.connections[0].remote, addr());
    assert_eq!(info.connections[0].since, net.now);

    net.cm.tag_peer(peer, "tag", 5, net.now);
    let info = net.cm.tag_info(&peer).unwrap();
    assert_eq!(info.value, 5);
    assert_eq!(info.tags, BTreeMap::from([("tag".to_owned(), 5)]));
    assert_eq!(info.connections.len(), 1);
}

#[test]
fn tag_peer_non_existent_creates_a_temporary_entry() {
    let now = Instant::now();
    let mut cm = manager(1, 1, Duration::from_secs(600), now);
    let peer = PeerId::random();
    cm.tag_peer(peer, "test", 1, now);
    let info = cm.tag_info(&peer).unwrap();
    assert!(info.connections.is_empty(), "temporary: no connection");
    assert_eq!(info.value, 1);
    assert_eq!(cm.connected_peers().count(), 0);
}

#[test]
fn untag_peer() {
    let now = Instant::now();
    let mut net = Net::new(manager(1, 1, Duration::from_secs(600), now), now);
    let peer = net.connect();
    net.cm.tag_peer(peer, "tag", 5, now);
    net.cm.tag_peer(peer, "tag two", 5, now);
    net.cm.untag_peer(&PeerId::random(), "tag");
    net.cm.untag_peer(&peer, "test");
    assert_eq!(net.cm.tag_info(&peer).unwrap().tags.len(), 2);
    net.cm.untag_peer(&peer, "tag");
    let info = net.cm.tag_info(&peer).unwrap();
    assert_eq!(info.tags.len(), 1);
    assert_eq!(info.value, 5);
}

#[test]
fn get_info() {
    let now = Instant::now();
    let mut net = Net::new(manager(1, 5, Duration::from_secs(600), now), now);
    net.connect();
    net.now += MS;
    net.trim();
    let info = net.cm.info(net.now);
    assert_eq!(info.high_water, 5);
    assert_eq!(info.low_water, 1);
    assert_eq!(info.last_trim, Some(net.now));
    assert_eq!(info.grace_period, Duration::from_secs(600));
    assert_eq!(info.connections, 1);
    assert_eq!(info.peers_in_grace, 1);
}

#[test]
fn double_connection() {
    let now = Instant::now();
    let mut net = Net::new(manager(1, 5, Duration::from_secs(600), now), now);
    let peer = PeerId::random();
    let id = net.connect_peer(peer);
    net.cm.tag_peer(peer, "foo", 10, now);
    assert!(!net.cm.connection_established(peer, id, false, addr(), now));
    assert_eq!(net.cm.connections(), 1);
    assert_eq!(net.cm.tag_info(&peer).unwrap().value, 10);
}

#[test]
fn disconnected() {
    let now = Instant::now();
    let mut net = Net::new(manager(1, 5, Duration::from_secs(600), now), now);
    let peer = PeerId::random();
    let id = net.connect_peer(peer);
    net.cm.tag_peer(peer, "foo", 10, now);
    assert!(!net.cm.connection_closed(&PeerId::random(), id));
    assert_eq!(
        (net.cm.connections(), net.cm.tag_info(&peer).unwrap().value),
        (1, 10)
    );
    assert!(!net.cm.connection_closed(&peer, id + 100));
    assert_eq!(
        (net.cm.connections(), net.cm.tag_info(&peer).unwrap().value),
        (1, 10)
    );
    assert!(net.cm.connection_closed(&peer, id));
    assert_eq!(net.cm.connections(), 0);
    assert_eq!(
        net.cm.tag_info(&peer),
        None,
        "tags go with the last connection"
    );
}

#[test]
fn grace_period() {
    let start = Instant::now();
    let mut net = Net::new(manager(10, 20, 100 * MS, start), start);
    net.connect();
    net.now += 200 * MS;
    for _ in 0..30 {
        net.connect();
    }
    assert_eq!(net.trim().len(), 0, "1 candidate < low 10");
    net.now += 200 * MS;
    assert_eq!(net.trim().len(), 21, "31 - 10");
    assert_eq!(net.cm.connections(), 10);
}

#[test]
fn quick_burst_respects_silence_period() {
    let now = Instant::now();
    let config = Config::new()
        .with_watermarks(10, 20)
        .with_grace_period(Duration::ZERO);
    let mut net = Net::new(ConnManager::new(config, now).unwrap(), now);
    let mut closed = 0;
    let mut trims = 0;
    // 30 connections over 3 s, each followed by a poll, as the glue does.
    for _ in 0..30 {
        net.now += 100 * MS;
        net.connect();
        if let Some(trim) = net.cm.poll(net.now) {
            trims += 1;
            closed += net.apply(trim).len();
        }
    }
    assert_eq!(trims, 1, "one trim within the 10 s silence period");
    assert!(closed <= 20);
    assert_eq!(closed + net.cm.connections(), 30);
    // Above high again: the next trim waits for the end of the silence period.
    for _ in 0..5 {
        net.connect();
    }
    assert_eq!(net.cm.connections(), 24);
    assert_eq!(net.cm.poll(net.now), None);
    let due = net.cm.info(net.now).last_trim.unwrap() + Duration::from_secs(10);
    assert_eq!(net.cm.poll_timeout(), Some(due));
    let trim = net.cm.poll(due).unwrap();
    assert_eq!(trim.victims.len(), 14);
}

/// go's protection tests' set-up: (19, 20), grace 0; 20 peers tagged `test`=20, of which the
/// first 5 are protected under `tags` and retagged -100.
fn protection_setup(tags: &[&str]) -> (Net, Vec<PeerId>) {
    let now = Instant::now();
    let mut net = Net::new(manager(19, 20, Duration::ZERO, now), now);
    let peers: Vec<PeerId> = (0..20).map(|_| net.connect()).collect();
    for p in &peers {
        net.cm.tag_peer(*p, "test", 20, now);
    }
    for p in &peers[..5] {
        for tag in tags {
            net.cm.protect(*p, tag);
        }
        net.cm.tag_peer(*p, "test", -100, now);
    }
    (net, peers)
}

#[test]
fn peer_protection_single_tag() {
    let (mut net, peers) = protection_setup(&["global"]);
    let protected = &peers[..5];
    net.connect(); // 21 conns, 16 unprotected
    assert_eq!(net.trim().len(), 0, "16 unprotected < low 19");
    for _ in 0..5 {
        net.connect(); // 26 conns, 21 unprotected
    }
    let closed = net.trim();
    assert_eq!(closed.len(), 2, "21 unprotected - 19");
    assert!(protected.iter().all(|p| net.is_open(p)));

    net.cm.unprotect(&protected[0], "global");
    for _ in 0..2 {
        net.connect(); // 26 conns, 22 unprotected
    }
    let closed = net.trim();
    assert!(closed.contains(&protected[0]), "value -100 goes first");
    assert!(protected[1..].iter().all(|p| net.is_open(p)));
}

#[test]
fn peer_protection_multiple_tags() {
    let (mut net, peers) = protection_setup(&["tag1", "tag2"]);
    let protected = &peers[..5];
    let now = net.now;
    net.connect();
    net.trim();
    assert!(protected.iter().all(|p| net.is_open(p)));
    for p in protected {
        assert!(net.cm.unprotect(p, "tag1"), "still protected by tag2");
    }
    for _ in 0..2 {
        let p = net.connect();
        net.cm.tag_peer(p, "test", 20, now);
    }
    net.trim();
    assert!(protected.iter().all(|p| net.is_open(p)));

    assert!(!net.cm.unprotect(&protected[0], "tag2"));
    for _ in 0..2 {
        net.connect();
    }
    net.trim();
    assert!(!net.is_open(&protected[0]));
    assert!(protected[1..].iter().all(|p| net.is_open(p)));
}

#[test]
fn peer_protection_idempotent() {
    let now = Instant::now();
    let mut cm = manager(10, 20, Duration::ZERO, now);
    let id = PeerId::random();
    for _ in 0..4 {
        cm.protect(id, "global");
    }
    assert_eq!(cm.protected_peers().next().unwrap().1.len(), 1);
    assert!(cm.unprotect(&id, "unused"));
    assert!(cm.unprotect(&id, "unused2"));
    assert!(!cm.unprotect(&id, "global"));
    assert_eq!(cm.protected_peers().count(), 0);
    assert!(!cm.is_protected(&id, ""));
}

#[test]
fn upsert_tag() {
    let now = Instant::now();
    let mut net = Net::new(manager(1, 1, Duration::from_secs(600), now), now);
    let peer = PeerId::random();
    net.cm.upsert_tag(peer, "tag", |v| v + 1, now);
    let info = net.cm.tag_info(&peer).unwrap();
    assert_eq!((info.tags.len(), info.value), (1, 1));
    net.connect_peer(peer);
    net.cm.upsert_tag(peer, "tag", |v| v + 1, now);
    assert_eq!(net.cm.tag_info(&peer).unwrap().value, 2);
    net.cm.upsert_tag(peer, "tag", |v| v - 1, now);
    assert_eq!(net.cm.tag_info(&peer).unwrap().value, 1);
}

#[test]
fn temporary_entries_cleared_first() {
    let now = Instant::now();
    let mut net = Net::new(manager(1, 1, Duration::ZERO, now), now);
    let id = PeerId::random();
    net.cm.tag_peer(id, "test", 20, now);
    net.connect();
    net.connect();
    assert_eq!(net.cm.tag_info(&id).unwrap().value, 20);
    net.trim();
    assert_eq!(net.cm.tag_info(&id), None);
}

#[test]
fn a_trims_victims_stay_right_through_moved_entries_and_reconnects() {
    // Temporary entries made first sit before the connected peers in the peer table; dropping
    // them moves connected peers to new places while the trim is choosing. The connections
    // marked closing must still be the victims' own.
    let now = Instant::now();
    let mut net = Net::new(manager(2, 2, Duration::ZERO, now), now);
    let temp: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
    for id in &temp {
        net.cm.tag_peer(*id, "early", 20, now);
    }
    let peers: Vec<PeerId> = (1..=6)
        .map(|value| {
            let peer = net.connect();
            net.cm.tag_peer(peer, "app", value, now);
            peer
        })
        .collect();
    let trim = net.cm.trim_open_conns(now);
    let mut victims: Vec<PeerId> = trim.victims.iter().map(|v| v.peer).collect();
    victims.sort_by_key(|p| net.cm.tag_value(p));
    assert_eq!(victims, peers[..4]);
    for id in &temp {
        assert_eq!(net.cm.tag_info(id), None);
    }
    assert_eq!(net.cm.info(now).closing, 4);
    // A stream count reported on a chosen connection does not count for its peer's rank; a
    // victim connecting again before its chosen connection closes: the new one is not closing.
    let (_, first) = net.open[0];
    net.cm.set_streams(&victims[0], first, 3);
    let again = [net.connect_peer(victims[0]), net.connect_peer(victims[1])];
    assert_eq!(net.cm.info(now).closing, 4);
    assert_eq!(net.cm.connections(), 8);
    let live = net.cm.hot[net.cm.index[&victims[0]]].live;
    assert_eq!((live.connections, live.streams), (1, 0));
    // Closing a survivor's connection, or the victim's new one, leaves the count of closing
    // ones; a chosen one lowers it.
    for (peer, id) in net.open.clone() {
        let closing = net.cm.info(now).closing;
        assert!(net.cm.connection_closed(&peer, id));
        let expected = closing - usize::from(victims.contains(&peer) && !again.contains(&id));
        assert_eq!(net.cm.info(now).closing, expected, "{peer}");
    }
    assert_eq!(net.cm.info(now).closing, 0);
}

#[test]
fn temporary_entry_converted_on_connection() {
    let start = Instant::now();
    let mut net = Net::new(manager(1, 1, Duration::ZERO, start), start);
    let id = PeerId::random();
    net.cm.tag_peer(id, "test", 20, start);
    net.now += MS;
    net.connect_peer(id);
    let info = net.cm.tag_info(&id).unwrap();
    assert_eq!(info.value, 20);
    assert_eq!(info.connections.len(), 1, "no longer temporary");
    assert_eq!(
        info.first_seen, net.now,
        "grace starts at the first connection"
    );
}

#[test]
fn concurrent_cleanup_and_tagging() {
    // go's race test, sequential here: tagging many new peers between trims keeps the state
    // consistent (the shared handle serializes calls).
    let mut now = Instant::now();
    let mut net = Net::new(manager(1, 1, Duration::ZERO, now), now);
    for i in 0..1000 {
        net.cm.tag_peer(PeerId::random(), "test", 20, now);
        if i % 10 == 0 {
            net.connect();
            net.trim();
        }
        now += MS;
    }
    assert!(net.cm.temp_count <= net.cm.config.max_early_tags);
    assert_eq!(net.cm.connections(), net.open.len());
}

fn conn(
    cm: &mut ConnManager<u64>,
    peer: PeerId,
    id: u64,
    inbound: bool,
    streams: u32,
    now: Instant,
) {
    cm.connection_established(peer, id, inbound, addr(), now);
    cm.set_streams(&peer, id, streams);
}

#[test]
fn peer_info_sorting() {
    let now = Instant::now();
    let new = || manager(1, 1, Duration::ZERO, now);

    // Starts with temporary entries.
    let mut cm = new();
    let (p1, p2) = (PeerId::random(), PeerId::random());
    conn(&mut cm, p1, 1, false, 1, now);
    cm.tag_peer(p2, "t", 0, now);
    assert_eq!(trim::ranking(&cm, false), [p2, p1]);

    // Starts with low-value connections.
    let mut cm = new();
    conn(&mut cm, p1, 1, false, 1, now);
    conn(&mut cm, p2, 2, false, 1, now);
    cm.tag_peer(p1, "t", 40, now);
    cm.tag_peer(p2, "t", 20, now);
    assert_eq!(trim::ranking(&cm, false), [p2, p1]);

    // Prefers peers with no streams.
    let mut cm = new();
    conn(&mut cm, p1, 1, false, 0, now);
    conn(&mut cm, p2, 2, false, 1, now);
    assert_eq!(trim::ranking(&cm, false), [p1, p2]);

    // In a memory emergency: no streams first, then inbound, then more streams.
    let (p3, p4) = (PeerId::random(), PeerId::random());
    let mut cm = new();
    conn(&mut cm, p1, 1, false, 1, now);
    conn(&mut cm, p2, 2, false, 1, now);
    conn(&mut cm, p2, 3, true, 0, now);
    conn(&mut cm, p3, 4, false, 0, now);
    conn(&mut cm, p3, 5, true, 0, now);
    conn(&mut cm, p4, 6, false, 2, now);
    conn(&mut cm, p4, 7, true, 0, now);
    assert_eq!(trim::ranking(&cm, true), [p3, p4, p2, p1]);

    // In a memory emergency, many streams first.
    let mut cm = new();
    conn(&mut cm, p1, 1, false, 100, now);
    conn(&mut cm, p2, 2, false, 80, now);
    conn(&mut cm, p2, 3, false, 40, now);
    assert_eq!(trim::ranking(&cm, true), [p2, p1]);
}

#[test]
fn check_limit() {
    let config = Config::new().with_watermarks(1, 2);
    assert!(config.check_limit(3).is_ok());
    assert!(config.check_limit(2).is_ok());
    let err = config.check_limit(1).unwrap_err();
    assert!(err.to_string().contains("high_water"), "{err}");
}

// ---- decay_test.go: (10, 10), grace 1 s, resolution 50 ms ----

fn decay_tracker(now: Instant) -> ConnManager<u64> {
    let config = Config::new()
        .with_watermarks(10, 10)
        .with_grace_period(Duration::from_secs(1))
        .with_decay_resolution(50 * MS);
    ConnManager::new(config, now).unwrap()
}

/// The peer's total value, from [`ConnManager::tag_info`] and from [`ConnManager::tag_value`],
/// which must agree.
fn value(cm: &ConnManager<u64>, peer: &PeerId) -> i64 {
    let value = cm.tag_info(peer).map_or(0, |i| i.value);
    assert_eq!(cm.tag_value(peer), value);
    value
}

fn tag_value(cm: &ConnManager<u64>, peer: &PeerId, tag: &str) -> Option<i64> {
    cm.tag_info(peer)?.tags.get(tag).copied()
}

#[test]
fn decay_expire_when_inactive() {
    let mut now = Instant::now();
    let mut cm = decay_tracker(now);
    let pop = cm
        .register_decaying_tag(
            "pop",
            250 * MS,
            DecayFn::expire_when_inactive(Duration::from_secs(1)),
            BumpFn::sum_unbounded(),
            now,
        )
        .unwrap();
    let id = PeerId::random();
    cm.bump(&pop, id, 10, now).unwrap();
    assert_eq!(value(&cm, &id), 10);
    // go zeroes it at the first visit; ours keeps it until 1 s without a bump.
    now += 750 * MS;
    cm.poll(now);
    assert_eq!(value(&cm, &id), 10);
    now += 250 * MS;
    cm.poll(now);
    assert_eq!(
        tag_value(&cm, &id, "pop"),
        None,
        "expired 1 s after the last bump"
    );

    // A bump keeps it alive.
    cm.bump(&pop, id, 10, now).unwrap();
    for _ in 0..3 {
        now += 500 * MS;
        cm.poll(now);
        cm.bump(&pop, id, 1, now).unwrap();
    }
    assert_eq!(tag_value(&cm, &id, "pop"), Some(13));
}

#[test]
fn multiple_bumps() {
    let now = Instant::now();
    let mut cm = decay_tracker(now);
    let tag = cm
        .register_decaying_tag(
            "pop",
            250 * MS,
            DecayFn::expire_when_inactive(Duration::from_secs(1)),
            BumpFn::sum_bounded(10, 20),
            now,
        )
        .unwrap();
    let id = PeerId::random();
    cm.bump(&tag, id, 5, now).unwrap();
    assert_eq!(value(&cm, &id), 10, "raised to the minimum");
    cm.bump(&tag, id, 100, now).unwrap();
    assert_eq!(value(&cm, &id), 20, "clamped to the maximum");
}

#[test]
fn multiple_tags_no_decay() {
    let mut now = Instant::now();
    let mut cm = decay_tracker(now);
    let id = PeerId::random();
    let tags: Vec<DecayingTag> = ["beep", "bop", "foo"]
        .into_iter()
        .map(|n| {
            cm.register_decaying_tag(
                n,
                250 * MS,
                DecayFn::none(),
                BumpFn::sum_bounded(0, 100),
                now,
            )
            .unwrap()
        })
        .collect();
    for t in &tags {
        cm.bump(t, id, 100, now).unwrap();
        cm.bump(t, id, 100, now).unwrap();
    }
    now += Duration::from_secs(1);
    cm.poll(now);
    assert_eq!(value(&cm, &id), 300);
    for n in ["beep", "bop", "foo"] {
        assert_eq!(tag_value(&cm, &id, n), Some(100));
    }
}

fn three_tags(cm: &mut ConnManager<u64>, now: Instant) -> [DecayingTag; 3] {
    let mut reg = |name, interval, minuend| {
        cm.register_decaying_tag(
            name,
            interval,
            DecayFn::fixed(minuend),
            BumpFn::sum_unbounded(),
            now,
        )
        .unwrap()
    };
    [
        reg("beep", 250 * MS, 10),
        reg("bop", 100 * MS, 5),
        reg("foo", 50 * MS, 1),
    ]
}

#[test]
fn custom_functions() {
    let mut now = Instant::now();
    let mut cm = decay_tracker(now);
    let tags = three_tags(&mut cm, now);
    let id = PeerId::random();
    for t in &tags {
        cm.bump(t, id, 1000, now).unwrap();
    }
    assert_eq!(value(&cm, &id), 3000);
    for (step, expected) in [(50, 2999), (150, 2986), (50, 2975)] {
        now += step * MS;
        cm.poll(now);
        assert_eq!(value(&cm, &id), expected, "after +{step} ms");
    }
}

#[test]
fn multiple_peers() {
    // Stepping 3 s at once and in 60 ticks of 50 ms gives go's numbers both ways: missed
    // ticks are caught up.
    for steps in [1, 60] {
        let mut now = Instant::now();
        let mut cm = decay_tracker(now);
        let tags = three_tags(&mut cm, now);
        let ids = [PeerId::random(), PeerId::random(), PeerId::random()];
        for (id, v) in ids.iter().zip([1000, 500, 100]) {
            for t in &tags {
                cm.bump(t, *id, v, now).unwrap();
            }
        }
        for _ in 0..steps {
            now += Duration::from_secs(3) / steps;
            cm.poll(now);
        }
        assert_eq!(value(&cm, &ids[0]), 2670, "{steps} steps");
        assert_eq!(value(&cm, &ids[1]), 1170, "{steps} steps");
        assert_eq!(value(&cm, &ids[2]), 40, "{steps} steps");
        assert_eq!(tag_value(&cm, &ids[2], "beep"), None, "removed at 0");
    }
}

#[test]
fn linear_decay_overwrite() {
    let mut now = Instant::now();
    let mut cm = decay_tracker(now);
    let beep = cm
        .register_decaying_tag(
            "beep",
            250 * MS,
            DecayFn::linear(0.5),
            BumpFn::overwrite(),
            now,
        )
        .unwrap();
    let id = PeerId::random();
    cm.bump(&beep, id, 1000, now).unwrap();
    for expected in [500, 250] {
        now += 250 * MS;
        cm.poll(now);
        assert_eq!(value(&cm, &id), expected);
    }
    cm.bump(&beep, id, 1000, now).unwrap();
    assert_eq!(value(&cm, &id), 1000);
}

#[test]
fn resolution_misaligned() {
    let mut now = Instant::now();
    let mut cm = decay_tracker(now);
    let mut reg = |name, ms| {
        cm.register_decaying_tag(
            name,
            ms * MS,
            DecayFn::fixed(1),
            BumpFn::sum_unbounded(),
            now,
        )
        .unwrap()
    };
    let (beep, bop) = (reg("beep", 70), reg("bop", 120));
    let id = PeerId::random();
    cm.bump(&beep, id, 1000, now).unwrap();
    cm.bump(&bop, id, 1000, now).unwrap();
    for (beep_v, bop_v) in [(1000, 1000), (999, 1000), (998, 999)] {
        now += 50 * MS;
        cm.poll(now);
        assert_eq!(tag_value(&cm, &id, "beep"), Some(beep_v));
        assert_eq!(tag_value(&cm, &id, "bop"), Some(bop_v));
    }
    assert_eq!(value(&cm, &id), 1997);
    assert_eq!(beep.interval(), 70 * MS);
}

#[test]
fn interval_below_resolution_is_raised() {
    let now = Instant::now();
    let mut cm = decay_tracker(now);
    let tag = cm
        .register_decaying_tag("t", 10 * MS, DecayFn::none(), BumpFn::overwrite(), now)
        .unwrap();
    assert_eq!(tag.interval(), 50 * MS);
}

#[test]
fn tag_removal() {
    let mut now = Instant::now();
    let mut cm = decay_tracker(now);
    let mut reg = |name| {
        cm.register_decaying_tag(name, 50 * MS, DecayFn::fixed(1), BumpFn::overwrite(), now)
            .unwrap()
    };
    let (beep, bop) = (reg("beep"), reg("bop"));
    let (id1, id2) = (PeerId::random(), PeerId::random());
    cm.bump(&beep, id1, 1000, now).unwrap();
    cm.bump(&bop, id1, 1000, now).unwrap();
    cm.bump(&beep, id2, 1000, now).unwrap();
    now += 50 * MS;
    cm.poll(now);
    assert_eq!((value(&cm, &id1), value(&cm, &id2)), (1998, 999));

    cm.remove_decaying(&beep, &id1, now).unwrap();
    now += 50 * MS;
    cm.poll(now);
    assert_eq!(tag_value(&cm, &id1, "beep"), None);
    assert_eq!(tag_value(&cm, &id1, "bop"), Some(998));
    assert_eq!(tag_value(&cm, &id2, "beep"), Some(998));
    assert_eq!((value(&cm, &id1), value(&cm, &id2)), (998, 998));
    assert_eq!(
        cm.remove_decaying(&beep, &id1, now),
        Ok(()),
        "a second removal is fine"
    );
}

#[test]
fn tag_closure() {
    let mut now = Instant::now();
    let mut cm = decay_tracker(now);
    let mut reg = |name| {
        cm.register_decaying_tag(name, 50 * MS, DecayFn::fixed(1), BumpFn::overwrite(), now)
            .unwrap()
    };
    let (beep, bop) = (reg("beep"), reg("bop"));
    let id = PeerId::random();
    cm.bump(&beep, id, 1000, now).unwrap();
    cm.bump(&bop, id, 1000, now).unwrap();
    for expected in [1998, 1996] {
        now += 50 * MS;
        cm.poll(now);
        assert_eq!(value(&cm, &id), expected);
    }
    cm.close_decaying_tag(&beep, now);
    assert_eq!(value(&cm, &id), 998);
    cm.close_decaying_tag(&beep, now); // a second close does nothing
    assert_eq!(
        cm.bump(&beep, id, 5, now),
        Err(Error::TagClosed("beep".into()))
    );
    // The name is free again.
    assert!(
        cm.register_decaying_tag("beep", 50 * MS, DecayFn::none(), BumpFn::overwrite(), now)
            .is_ok()
    );
    assert_eq!(
        cm.register_decaying_tag("bop", 50 * MS, DecayFn::none(), BumpFn::overwrite(), now),
        Err(Error::DuplicateTag("bop".into()))
    );
}

// ---- ours ----

#[test]
fn catch_up_is_capped() {
    let mut now = Instant::now();
    let mut cm = decay_tracker(now);
    let tag = cm
        .register_decaying_tag("t", 50 * MS, DecayFn::fixed(1), BumpFn::overwrite(), now)
        .unwrap();
    let id = PeerId::random();
    cm.connection_established(id, 1, false, addr(), now);
    cm.bump(&tag, id, 1_000_000, now).unwrap();
    // 1 h later: 72,000 visits are due; the most recent MAX_CATCH_UP are applied.
    now += Duration::from_secs(3600);
    cm.poll(now);
    assert_eq!(value(&cm, &id), 1_000_000 - MAX_CATCH_UP as i64);
    // Back on schedule: the next tick applies one visit.
    now += 50 * MS;
    cm.poll(now);
    assert_eq!(value(&cm, &id), 1_000_000 - MAX_CATCH_UP as i64 - 1);
}

#[test]
fn a_bump_is_not_decayed_for_ticks_before_it() {
    let mut now = Instant::now();
    let mut cm = decay_tracker(now);
    let tag = cm
        .register_decaying_tag("t", 50 * MS, DecayFn::fixed(1), BumpFn::overwrite(), now)
        .unwrap();
    now += Duration::from_secs(10);
    let id = PeerId::random();
    cm.bump(&tag, id, 100, now).unwrap();
    assert_eq!(value(&cm, &id), 100);
    now += 50 * MS;
    cm.poll(now);
    assert_eq!(value(&cm, &id), 99);
}

#[test]
fn decay_timeout_only_while_values_exist() {
    let now = Instant::now();
    let mut cm = decay_tracker(now);
    let tag = cm
        .register_decaying_tag("t", 100 * MS, DecayFn::fixed(1), BumpFn::overwrite(), now)
        .unwrap();
    assert_eq!(cm.poll_timeout(), None);
    cm.bump(&tag, PeerId::random(), 1, now).unwrap();
    assert_eq!(cm.poll_timeout(), Some(now + 100 * MS));
    cm.poll(now + 100 * MS);
    // The value reached 0 and went; the early-tag entry remains, with its expiry.
    assert_eq!(cm.poll_timeout(), Some(now + Duration::from_secs(60)));
}

#[test]
fn background_trim_only_above_high_water() {
    let now = Instant::now();
    let config = Config::new()
        .with_watermarks(2, 4)
        .with_grace_period(Duration::ZERO);
    let mut net = Net::new(ConnManager::new(config, now).unwrap(), now);
    for _ in 0..4 {
        net.connect();
    }
    assert_eq!(net.cm.poll_timeout(), None, "4 = high is not above it");
    assert_eq!(net.cm.poll(now), None);
    net.connect();
    assert_eq!(net.cm.poll_timeout(), Some(now), "due at once");
    let trim = net.cm.poll(now).unwrap();
    assert_eq!(trim.kind, TrimKind::Background);
    assert_eq!(trim.victims.len(), 3, "5 - 2");
    // Chosen connections no longer count while they close: no second trim.
    assert_eq!(net.cm.info(now).closing, 3);
    assert_eq!(net.cm.poll_timeout(), None);
    net.apply(trim);
    assert_eq!(net.cm.connections(), 2);
}

#[test]
fn a_trim_that_closed_nothing_retries_when_grace_ends() {
    let start = Instant::now();
    let config = Config::new()
        .with_watermarks(2, 4)
        .with_grace_period(Duration::from_secs(1));
    let mut net = Net::new(ConnManager::new(config, start).unwrap(), start);
    for _ in 0..5 {
        net.connect();
    }
    let trim = net.cm.poll(start).unwrap();
    assert!(trim.victims.is_empty(), "all in grace");
    // Not 10 s later: when the first peer leaves its grace period.
    assert_eq!(net.cm.poll_timeout(), Some(start + Duration::from_secs(1)));
    net.now = start + Duration::from_secs(1);
    let trim = net.cm.poll(net.now).unwrap();
    assert_eq!(trim.victims.len(), 3);
    net.apply(trim);
    // A trim that closed peers starts a silence period.
    for _ in 0..3 {
        net.connect();
    }
    assert_eq!(
        net.cm.poll_timeout(),
        Some(net.now + Duration::from_secs(10))
    );
}

#[test]
fn hard_cap_refuses_unprotected_peers_only() {
    let now = Instant::now();
    let config = Config::new().with_watermarks(5, 10);
    assert_eq!(config.hard_cap(), Some(11), "10 + 10 %, rounded up");
    assert_eq!(Config::new().with_watermarks(50, 100).hard_cap(), Some(110));
    assert_eq!(Config::new().hard_cap(), Some(212), "192 * 1.1 = 211.2");
    let mut net = Net::new(ConnManager::new(config, now).unwrap(), now);
    let friend = PeerId::random();
    net.cm.protect(friend, "trusted");
    net.connect_peer(friend);
    for _ in 0..11 {
        let peer = PeerId::random();
        net.cm.admit(&peer).unwrap();
        net.connect_peer(peer);
    }
    let err = net.cm.admit(&PeerId::random()).unwrap_err();
    assert_eq!(
        err,
        HardCapReached {
            limit: 11,
            connections: 11
        }
    );
    assert!(err.to_string().contains("at most 11"), "{err}");
    // A protected peer is exempt, and not counted against the cap.
    let other = PeerId::random();
    net.cm.protect(other, "x");
    net.cm.admit(&other).unwrap();
    net.connect_peer(other);
    net.cm.admit(&friend).unwrap();
    assert_eq!(net.cm.connections(), 13);
    // Unprotecting a connected peer counts its connections again.
    net.cm.unprotect(&other, "x");
    assert_eq!(net.cm.admit(&friend), Ok(()));
    assert_eq!(net.cm.admit(&PeerId::random()).unwrap_err().connections, 12);
}

#[test]
fn config_errors_name_the_setting() {
    let now = Instant::now();
    let cases = [
        (Config::new().with_watermarks(10, 5), "low_water"),
        (
            Config::new().with_watermarks(5, 10).with_hard_cap(Some(9)),
            "hard_cap",
        ),
        (
            Config::new().with_silence_period(Duration::ZERO),
            "silence_period",
        ),
        (
            Config::new().with_decay_resolution(Duration::ZERO),
            "decay_resolution",
        ),
    ];
    for (config, field) in cases {
        let err = ConnManager::<u64>::new(config, now).unwrap_err();
        assert!(
            matches!(err, Error::Config { field: f, .. } if f == field),
            "{err}"
        );
    }
    // go's disabled forms are accepted.
    assert!(ConnManager::<u64>::new(Config::new().with_watermarks(10, 0), now).is_ok());
    assert!(ConnManager::<u64>::new(Config::new().with_watermarks(0, 10), now).is_ok());
}

#[test]
fn force_trim_ignores_grace_and_closes_protected_last() {
    let now = Instant::now();
    let mut net = Net::new(manager(4, 8, Duration::from_secs(600), now), now);
    let protected: Vec<PeerId> = (0..6).map(|_| net.connect()).collect();
    for p in &protected {
        net.cm.protect(*p, "keep");
    }
    let plain: Vec<PeerId> = (0..6).map(|_| net.connect()).collect();
    assert!(net.trim().is_empty(), "all in grace");

    // 12 connections, low 4: 8 to close, 6 unprotected, then 2 protected.
    let trim = net.cm.force_trim(now);
    assert_eq!(trim.kind, TrimKind::Emergency);
    assert_eq!(trim.victims.len(), 8);
    let (first, second) = trim.victims.split_at(6);
    assert!(
        first
            .iter()
            .all(|v| plain.contains(&v.peer) && !v.protected)
    );
    assert!(
        second
            .iter()
            .all(|v| protected.contains(&v.peer) && v.protected)
    );
    let mut unique: Vec<PeerId> = trim.victims.iter().map(|v| v.peer).collect();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 8, "no peer chosen twice (go's pass-2 bug)");
    net.apply(trim);
    assert_eq!(net.cm.connections(), 4);

    // At low water: nothing to do.
    assert!(net.cm.force_trim(now).victims.is_empty());
}

#[test]
fn force_trim_spares_protected_when_unprotected_suffice() {
    let now = Instant::now();
    let mut net = Net::new(manager(4, 8, Duration::from_secs(600), now), now);
    let p = net.connect();
    net.cm.protect(p, "keep");
    for _ in 0..9 {
        net.connect();
    }
    let trim = net.cm.force_trim(now);
    assert_eq!(trim.victims.len(), 6);
    assert!(trim.victims.iter().all(|v| v.peer != p));
}

#[test]
fn tags_go_with_the_last_connection_protection_stays() {
    let now = Instant::now();
    let mut net = Net::new(manager(1, 5, Duration::ZERO, now), now);
    let peer = PeerId::random();
    let a = net.connect_peer(peer);
    let b = net.connect_peer(peer);
    net.cm.tag_peer(peer, "dht", 10, now);
    net.cm.protect(peer, "relay");
    net.cm.connection_closed(&peer, a);
    assert_eq!(value(&net.cm, &peer), 10, "one connection left");
    net.cm.connection_closed(&peer, b);
    assert_eq!(net.cm.tag_info(&peer), None);
    assert!(net.cm.is_protected(&peer, "relay"));
}

#[test]
fn early_tags_expire_and_are_capped() {
    let mut now = Instant::now();
    let config = Config::new()
        .with_early_tag_ttl(Duration::from_secs(5))
        .with_max_early_tags(3);
    let mut cm = ConnManager::<u64>::new(config, now).unwrap();
    let peers: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
    for p in &peers {
        cm.tag_peer(*p, "t", 1, now);
        now += Duration::from_secs(1);
    }
    assert_eq!(cm.tag_info(&peers[0]), None, "the oldest went for the cap");
    assert!(cm.tag_info(&peers[1]).is_some());
    // peers[1] was tagged at +1 s: it expires at +6 s.
    assert_eq!(
        cm.poll_timeout(),
        Some(now - Duration::from_secs(3) + Duration::from_secs(5))
    );
    now += Duration::from_secs(2);
    cm.poll(now);
    assert_eq!(cm.tag_info(&peers[1]), None);
    assert!(cm.tag_info(&peers[3]).is_some());
    // A connection adopts the entry: it no longer expires.
    cm.connection_established(peers[3], 1, true, addr(), now);
    now += Duration::from_secs(60);
    cm.poll(now);
    assert_eq!(value(&cm, &peers[3]), 1);
}

/// The order the maintenance closes peers in: no protected peer, out-of-grace peers first,
/// lowest tag value first within each group, unknown peers before all; among peers in their
/// grace period, the newest last.
#[test]
fn close_order_spares_protected_and_graced_peers() {
    let t0 = Instant::now();
    let mut net = Net::new(manager(1, 10, Duration::from_secs(60), t0), t0);
    let [rich, poor, protected] = std::array::from_fn(|_| net.connect());
    net.now = t0 + Duration::from_secs(61);
    let young = net.connect();
    net.now += Duration::from_secs(1);
    let newest = net.connect();
    net.now += Duration::from_secs(1);
    assert_eq!(
        net.cm.close_order(&[newest, young], net.now),
        [young, newest]
    );
    net.cm.tag_peer(rich, "t", 50, net.now);
    net.cm.tag_peer(poor, "t", 5, net.now);
    net.cm.tag_peer(young, "t", 1, net.now);
    net.cm.protect(protected, "keep");
    let unknown = PeerId::random();
    let order = net
        .cm
        .close_order(&[rich, young, protected, poor, unknown], net.now);
    assert_eq!(order, [unknown, poor, rich, young]);
}
