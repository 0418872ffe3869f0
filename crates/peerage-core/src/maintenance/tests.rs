use std::collections::HashSet;

use rand::{SeedableRng, rngs::StdRng};

use super::*;
use crate::pool::{self, Backoff};

fn point(i: u32) -> Multiaddr {
    format!("/ip4/10.1.{}.{}/tcp/9732", i / 256, i % 256)
        .parse()
        .unwrap()
}

fn remote() -> Multiaddr {
    "/ip4/192.0.2.1/tcp/40000".parse().unwrap()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

struct Fixture {
    pool: Pool,
    m: Maintenance,
    rng: StdRng,
    now: Instant,
}

impl Fixture {
    /// Bounds 3/6/9: thresholds 4, 5, 7, 8.
    fn new() -> Self {
        let config = Config::new().with_bounds(Bounds::from_connections(6));
        Self::with_config(config)
    }

    fn with_config(config: Config) -> Self {
        let pool_config = pool::Config::new().with_backoff(Backoff::new().with_jitter(0.0));
        Self {
            pool: Pool::new(PeerId::random(), pool_config),
            m: {
                let mut m = Maintenance::new(config);
                m.activate();
                m
            },
            rng: StdRng::seed_from_u64(42),
            now: Instant::now(),
        }
    }

    fn learn(&mut self, points: impl IntoIterator<Item = u32>) {
        let points: Vec<Multiaddr> = points.into_iter().map(point).collect();
        if self
            .pool
            .register_list_of_new_points(None, pool::Medium::Advertise, &points, self.now)
            > 0
        {
            self.m.on_new_points();
        }
    }

    fn step(&mut self) -> Plan {
        self.m.step(self.now, &mut self.pool, &mut self.rng)
    }

    /// The dial of `point` succeeds with a fresh peer.
    fn connect(&mut self, point: &Multiaddr) -> PeerId {
        let peer = PeerId::random();
        self.pool
            .accept(peer, &remote(), Some(point), self.now, &mut self.rng)
            .unwrap();
        self.pool
            .connection_established(peer, Some(point), &remote(), self.now);
        self.m.on_connection_established(self.pool.active());
        self.m.on_dial_finished();
        peer
    }

    fn fail(&mut self, point: &Multiaddr) {
        self.pool.dial_failed(point, self.now, &mut self.rng);
        self.m.on_dial_finished();
    }

    /// An inbound connection from a fresh peer.
    fn inbound(&mut self) -> PeerId {
        let peer = PeerId::random();
        self.pool
            .connection_established(peer, None, &remote(), self.now);
        self.m.on_connection_established(self.pool.active());
        peer
    }

    fn close(&mut self, peer: PeerId) {
        self.pool
            .connection_closed(peer, None, false, self.now, &mut self.rng);
        self.m.on_connection_closed(self.pool.active());
    }
}

fn dialed(plan: &Plan) -> Vec<Multiaddr> {
    plan.dial.iter().map(|(p, _)| p.clone()).collect()
}

#[test]
fn activation_dials_up_to_max_target_in_flight_and_stops_at_min_target() {
    let mut f = Fixture::new();
    f.learn(0..20);
    let plan = f.step();
    // n = 0 < min_threshold 4: up to max_target - n = 7 dials in flight.
    assert_eq!(plan.dial.len(), 7);
    assert!(!plan.ask_for_points);
    assert_eq!(f.pool.requested(), 7);
    // Nothing more while they are in flight.
    assert!(f.step().is_empty());
    let dials = dialed(&plan);
    for p in &dials[..4] {
        f.connect(p);
    }
    // n = 4, 3 in flight: budget 7 - 4 - 3 = 0.
    assert!(f.step().dial.is_empty());
    f.connect(&dials[4]);
    // n = 5 = min_target: the round ends, even with dials in flight.
    assert!(f.step().is_empty());
    assert!(!f.m.is_dialing());
    f.fail(&dials[5]);
    f.fail(&dials[6]);
    assert!(f.step().is_empty());
}

#[test]
fn no_candidate_asks_for_points_and_waits_for_them() {
    let mut f = Fixture::new();
    // One peer to ask (with none, the wait is shorter: see below).
    f.inbound();
    let plan = f.step();
    assert!(plan.dial.is_empty());
    assert!(plan.ask_for_points);
    assert_eq!(f.m.poll_timeout(), Some(f.now + secs(5)));
    f.now += secs(1);
    assert!(f.step().is_empty(), "still waiting");
    // New points end the wait at once.
    f.learn([1, 2]);
    let mut dials = dialed(&f.step());
    dials.sort();
    assert_eq!(dials, vec![point(1), point(2)]);
}

/// A node that knows only its bootstrap (trusted) points dials 4 of them in a round, then the
/// points they answer with; a new round may dial 4 more.
#[test]
fn a_round_dials_at_most_four_trusted_points() {
    let mut f = Fixture::with_config(Config::new().with_bounds(Bounds::from_connections(16)));
    let trusted: Vec<Multiaddr> = (0..20)
        .map(|i| f.pool.add_trusted_point(&point(i), f.now).unwrap())
        .collect();
    let first = dialed(&f.step());
    assert_eq!(
        first.len(),
        4,
        "4 of 20 trusted points, not max_target (20)"
    );
    assert!(first.iter().all(|p| trusted.contains(p)));
    for p in &first {
        f.connect(p);
    }
    // Their answers: the round goes on with those points, not with more trusted ones.
    f.learn(100..116);
    let second = dialed(&f.step());
    assert_eq!(second.len(), 20 - 4, "max_target - n");
    assert!(second.iter().all(|p| !trusted.contains(p)));
    // Nothing left but trusted points, and the round's 4 are spent: it asks and waits.
    for p in &second {
        f.fail(p);
    }
    let plan = f.step();
    assert!(plan.dial.is_empty());
    assert!(plan.ask_for_points);
    // The next round may dial 4 more trusted points (beside the failed points, whose
    // backoff has passed).
    f.now += secs(5);
    let third: Vec<Multiaddr> = dialed(&f.step())
        .into_iter()
        .filter(|p| trusted.contains(p))
        .collect();
    assert_eq!(third.len(), 4);
    assert!(third.iter().all(|p| !first.contains(p)));
}

/// In private mode only trusted points may be dialed: the cap does not apply.
#[test]
fn private_mode_dials_trusted_points_uncapped() {
    let config = Config::new().with_bounds(Bounds::from_connections(16));
    let mut f = Fixture::with_config(config);
    f.pool = Pool::new(
        PeerId::random(),
        pool::Config::new().with_private_mode(true),
    );
    for i in 0..20 {
        f.pool.add_trusted_point(&point(i), f.now).unwrap();
    }
    assert_eq!(
        f.step().dial.len(),
        16,
        "max_target 20, capped by 16 in flight"
    );
}

/// Nodes that learned the same points do not all dial the same ones first: the order of
/// never-missed points is drawn per round, not by address.
#[test]
fn nodes_that_know_the_same_points_dial_different_ones() {
    let mut firsts = HashSet::new();
    for seed in 0..8 {
        let mut f = Fixture::new();
        f.rng = StdRng::seed_from_u64(seed);
        f.learn(0..100);
        let mut dials = dialed(&f.step());
        assert_eq!(dials.len(), 7);
        dials.sort();
        firsts.insert(dials);
    }
    assert_eq!(firsts.len(), 8, "eight nodes, eight different choices");
}

#[test]
fn wait_ends_after_looking_for_peers_and_asks_again() {
    let mut f = Fixture::new();
    f.inbound();
    assert!(f.step().ask_for_points);
    f.now += secs(5);
    let plan = f.step();
    assert!(plan.ask_for_points, "asks again after 5 s");
    assert_eq!(f.m.poll_timeout(), Some(f.now + secs(5)));
}

#[test]
fn a_point_that_failed_waits_for_a_new_round_and_its_backoff() {
    let mut f = Fixture::new();
    f.learn([1]);
    let plan = f.step();
    assert_eq!(dialed(&plan), vec![point(1)]);
    f.now += secs(10);
    f.fail(&point(1));
    // Failed in this round: not retried; nothing else to dial, so ask and wait.
    let plan = f.step();
    assert!(plan.dial.is_empty() && plan.ask_for_points);
    // After the wait, a new round; the 1 s backoff is over, so it is dialed again.
    f.now += secs(5);
    assert_eq!(dialed(&f.step()), vec![point(1)]);
}

#[test]
fn too_many_closes_random_untrusted_peers_down_to_max_target() {
    let mut f = Fixture::new();
    let trusted = f.pool.add_trusted_point(&point(0), f.now).unwrap();
    assert_eq!(dialed(&f.step()), vec![trusted.clone()]);
    let trusted_peer = f.connect(&trusted);
    for _ in 0..11 {
        f.inbound();
    }
    assert_eq!(f.pool.active(), 12);
    let plan = f.step();
    // 12 > max_threshold 8: close 12 - max_target 7 = 5.
    assert_eq!(plan.close.len(), 5);
    assert!(!plan.close.contains(&trusted_peer));
    assert_eq!(plan.close.iter().collect::<HashSet<_>>().len(), 5);
    for p in plan.close {
        f.close(p);
    }
    assert!(f.step().is_empty());
}

#[test]
fn too_many_trigger_fires_at_max_not_between_thresholds() {
    let config = Config::new().with_bounds(Bounds::new(10, 50, 100).unwrap());
    let mut f = Fixture::with_config(config);
    for _ in 0..40 {
        f.inbound();
    }
    assert!(f.step().is_empty());
    // 90 connections: above max_threshold 84, below max 100. No trigger: only the idle timer
    // notices (Octez).
    for _ in 0..50 {
        f.inbound();
    }
    assert!(f.step().is_empty());
    f.now += secs(120);
    assert_eq!(f.step().close.len(), 90 - 68);
}

#[test]
fn too_few_trigger_fires_below_min() {
    let mut f = Fixture::new();
    let peers: Vec<PeerId> = (0..5).map(|_| f.inbound()).collect();
    assert!(f.step().is_empty());
    f.learn(10..20);
    // 5 -> 3: not below min 3, no trigger, and between thresholds anyway.
    f.close(peers[0]);
    f.close(peers[1]);
    assert!(f.step().is_empty());
    // 3 -> 2 < min: trigger; 2 < min_threshold 4: dial up to max_target - 2 = 5.
    f.close(peers[2]);
    assert_eq!(f.step().dial.len(), 5);
}

/// Octez #7357: the idle timer had no test. A node at 3 connections (at min, below
/// min_threshold 4) gets no trigger and recovers only at the next 120 s tick.
#[test]
fn idle_timer_catches_what_triggers_miss() {
    let mut f = Fixture::new();
    let peers: Vec<PeerId> = (0..4).map(|_| f.inbound()).collect();
    assert!(f.step().is_empty());
    assert_eq!(f.m.poll_timeout(), Some(f.now + secs(120)));
    f.learn(10..20);
    f.close(peers[0]);
    f.now += secs(119);
    assert!(f.step().is_empty());
    f.now += secs(1);
    let plan = f.step();
    assert_eq!(plan.dial.len(), 7 - 3);
    assert_eq!(f.m.poll_timeout(), Some(f.now + secs(120)));
}

#[test]
fn pending_dials_are_capped() {
    let config = Config::new()
        .with_bounds(Bounds::new(10, 50, 100).unwrap())
        .with_max_pending_dials(4);
    let mut f = Fixture::with_config(config);
    f.learn(0..100);
    let plan = f.step();
    assert_eq!(plan.dial.len(), 4);
    f.connect(&plan.dial[0].0);
    let plan = f.step();
    assert_eq!(plan.dial.len(), 1, "one slot freed");
}

#[test]
fn external_trigger_runs_a_check() {
    let mut f = Fixture::new();
    for _ in 0..5 {
        f.inbound();
    }
    assert!(f.step().is_empty());
    f.learn(0..3);
    f.m.trigger();
    // Within thresholds: a check that does nothing.
    assert!(f.step().is_empty());
    assert!(!f.m.is_dialing());
}

/// A dial that ends at once without a failure (the peer is already connected through a
/// connection the pool does not count) must not be planned again in the same round: that loop
/// would spin.
#[test]
fn aborted_dial_is_not_retried_in_the_same_round() {
    let mut f = Fixture::new();
    f.learn([1]);
    assert_eq!(dialed(&f.step()), vec![point(1)]);
    f.pool.dial_aborted(&point(1));
    f.m.on_dial_finished();
    let plan = f.step();
    assert!(plan.dial.is_empty(), "not dialed twice in a round");
    assert!(plan.ask_for_points);
    // The next round may try it again.
    f.now += secs(5);
    assert_eq!(dialed(&f.step()), vec![point(1)]);
}

/// go connmgr's grace period: peers connected for less than it are closed last, the
/// longest-standing first; older peers go first, at random.
#[test]
fn too_many_spares_new_connections() {
    let mut f = Fixture::new();
    // Six peers an hour ago, then six more at one-second steps just now.
    let old: Vec<PeerId> = (0..6).map(|_| f.inbound()).collect();
    f.now += secs(3600);
    let mut young = Vec::new();
    for _ in 0..6 {
        f.now += secs(1);
        young.push(f.inbound());
    }
    assert_eq!(f.pool.active(), 12);
    let plan = f.step();
    // 12 > max_threshold 8: close 5, all among the six old ones.
    assert_eq!(plan.close.len(), 5);
    assert!(plan.close.iter().all(|p| old.contains(p)));
    for p in plan.close {
        f.close(p);
    }
    // Two more newcomers: 9 > 8, close 2: the last old one, then the oldest young one.
    f.now += secs(1);
    let last = f.inbound();
    f.now += secs(1);
    f.inbound();
    f.close(last);
    f.inbound();
    assert_eq!(f.pool.active(), 9);
    let plan = f.step();
    let remaining_old: Vec<PeerId> = old
        .iter()
        .copied()
        .filter(|p| f.pool.is_running(p))
        .collect();
    assert_eq!(remaining_old.len(), 1);
    assert_eq!(plan.close, vec![remaining_old[0], young[0]]);
}

#[test]
fn inactive_until_activated_and_after_shutdown() {
    let mut f = Fixture::new();
    f.m.shutdown();
    f.learn(0..10);
    assert!(f.step().is_empty(), "shut down");
    assert_eq!(f.m.poll_timeout(), None);
    let mut m = Maintenance::new(Config::new().with_bounds(Bounds::from_connections(6)));
    assert!(!m.is_active());
    assert!(
        m.step(f.now, &mut f.pool, &mut f.rng).is_empty(),
        "not activated"
    );
    m.activate();
    assert_eq!(
        m.step(f.now, &mut f.pool, &mut f.rng).dial.len(),
        7,
        "activation runs at once"
    );
}

/// Octez's `maintain` returns after a cycle: the ticket is done once the maintenance rests,
/// within its thresholds or waiting for points.
#[test]
fn maintain_ticket_is_done_after_a_cycle() {
    let mut f = Fixture::new();
    assert!(f.step().ask_for_points);
    let ticket = f.m.maintain();
    assert!(!f.m.is_done(ticket));
    f.learn(0..5);
    let plan = f.step();
    assert_eq!(plan.dial.len(), 5);
    assert!(!f.m.is_done(ticket), "dialing");
    for p in dialed(&plan) {
        f.connect(&p);
    }
    assert!(f.step().is_empty());
    assert!(f.m.is_done(ticket), "5 = min_target: within bounds");
    let next = f.m.maintain();
    assert!(!f.m.is_done(next));
    assert!(f.step().is_empty());
    assert!(f.m.is_done(next), "a check within bounds is a cycle");
    let last = f.m.maintain();
    f.m.shutdown();
    assert!(f.m.is_done(last), "shutdown releases waiters");
}

/// Octez's private node sends no Bootstrap when it has no candidate; it just waits.
#[test]
fn private_node_does_not_ask_for_points() {
    let config = Config::new().with_bounds(Bounds::from_connections(6));
    let mut f = Fixture::with_config(config);
    f.pool = Pool::new(
        PeerId::random(),
        pool::Config::new().with_private_mode(true),
    );
    f.learn(0..3);
    f.inbound();
    let plan = f.step();
    assert!(plan.dial.is_empty(), "untrusted points are not dialed");
    assert!(!plan.ask_for_points);
    assert_eq!(f.m.poll_timeout(), Some(f.now + secs(5)));
}

/// A node with no connection has nobody to wait on for points: it waits a random 1 to 5 s
/// (a fifth of `looking_for_peers` to all of it), so that nodes refused at the same moment
/// by the same full node do not all come back at the same moment.
#[test]
fn with_no_connection_the_wait_is_a_random_one_to_five_seconds() {
    let mut waits = Vec::new();
    for seed in 0..200 {
        let mut f = Fixture::new();
        f.rng = StdRng::seed_from_u64(seed);
        let plan = f.step();
        assert!(plan.dial.is_empty() && plan.ask_for_points);
        let wait = f.m.poll_timeout().expect("waiting") - f.now;
        assert!((secs(1)..=secs(5)).contains(&wait), "seed {seed}: {wait:?}");
        // Nothing before the wait is over; a new round (asking again) once it is.
        f.now += wait - Duration::from_millis(1);
        assert!(f.step().is_empty(), "seed {seed}: still waiting");
        f.now += Duration::from_millis(1);
        assert!(f.step().ask_for_points, "seed {seed}: a new round");
        waits.push(wait);
    }
    waits.sort();
    // Spread over the range, not bunched at one end.
    assert!(
        waits[20] < secs(2) && waits[180] > secs(4),
        "{:?}",
        (waits[20], waits[180])
    );
    // With one connection, the whole 5 s.
    let mut f = Fixture::new();
    f.inbound();
    assert!(f.step().ask_for_points);
    assert_eq!(f.m.poll_timeout(), Some(f.now + secs(5)));
}

/// A node whose last connection closes while it waits (a full node that took its dial only to
/// refuse it) waits no longer than a node that had none: the rest of its wait is cut to a
/// random 1 to 5 s from the close, if that is sooner.
#[test]
fn losing_the_last_connection_while_waiting_shortens_the_wait() {
    let mut shortened = 0;
    for seed in 0..100 {
        let mut f = Fixture::new();
        f.rng = StdRng::seed_from_u64(seed);
        let peer = f.inbound();
        assert!(f.step().ask_for_points);
        let until = f.now + secs(5);
        assert_eq!(f.m.poll_timeout(), Some(until));
        f.now += Duration::from_millis(200);
        f.close(peer);
        assert!(f.step().is_empty(), "seed {seed}: still waiting");
        let t = f.m.poll_timeout().expect("waiting");
        assert!(t <= until, "seed {seed}: never longer");
        assert!(t >= f.now + secs(1), "seed {seed}: at least a fifth");
        shortened += usize::from(t < until);
        // Drawn once: another step does not draw again.
        assert!(f.step().is_empty());
        assert_eq!(f.m.poll_timeout(), Some(t), "seed {seed}");
    }
    // 1 to 5 s from the close, 4.8 s left of the wait: shorter in about 95 of 100.
    assert!(shortened > 80, "{shortened}");
}

/// Victims come in the caller's order (the connection manager's), never trusted peers, and
/// only those the order returns (it drops protected ones).
#[test]
fn victims_follow_the_given_order_and_spare_trusted_peers() {
    let mut f = Fixture::new();
    let trusted = f.pool.add_trusted_point(&point(0), f.now).unwrap();
    let _ = f.step();
    let trusted_peer = f.connect(&trusted);
    let peers: Vec<PeerId> = (0..9).map(|_| f.inbound()).collect();
    assert_eq!(f.pool.active(), 10);
    let protected = peers[0];
    let mut offered = Vec::new();
    let plan = f.m.step_with(
        f.now,
        &mut f.pool,
        &mut f.rng,
        |candidates, _| {
            offered = candidates.clone();
            // Reverse order, dropping one "protected" peer.
            candidates
                .into_iter()
                .rev()
                .filter(|p| *p != protected)
                .collect()
        },
        &mut super::from_pool,
    );
    assert!(
        !offered.contains(&trusted_peer),
        "trusted peers are never offered"
    );
    assert_eq!(offered.len(), 9);
    let mut expected: Vec<PeerId> = offered
        .iter()
        .rev()
        .copied()
        .filter(|p| *p != protected)
        .collect();
    expected.truncate(10 - 7);
    assert_eq!(
        plan.close, expected,
        "n - max_target = 3, in the given order"
    );
}

/// Octez `test_p2p_maintenance.ml`, `triggers.too-few-connections`: min 18, expected 36, max
/// 41 (bounds 24/30/39/40). Once the maintenance has ended within its bounds, disconnecting
/// `active - min + 1` connections fires *too few* and starts a maintenance that dials.
#[test]
fn octez_too_few_connections_trigger_scenario() {
    let bounds = Bounds::new(18, 36, 41).unwrap();
    assert_eq!(
        (
            bounds.min_threshold(),
            bounds.min_target(),
            bounds.max_target(),
            bounds.max_threshold()
        ),
        (24, 30, 39, 40)
    );
    let config = Config::new()
        .with_bounds(bounds)
        .with_idle_time(secs(36_000))
        .with_max_pending_dials(64);
    let mut f = Fixture::with_config(config);
    f.learn(0..42);
    let plan = f.step();
    assert_eq!(plan.dial.len(), 39, "up to max_target in flight");
    let dials = dialed(&plan);
    let peers: Vec<PeerId> = dials[..30].iter().map(|p| f.connect(p)).collect();
    for p in &dials[30..] {
        f.fail(p);
    }
    assert!(f.step().is_empty(), "30 = min_target: maintenance ended");
    assert!(!f.m.is_dialing());
    let active = f.pool.active();
    for peer in &peers[..active - 18 + 1] {
        f.close(*peer);
    }
    assert_eq!(f.pool.active(), 17);
    f.now += secs(100);
    let plan = f.step();
    assert!(!plan.dial.is_empty(), "too few: a maintenance started");
    assert!(f.m.is_dialing());
}

/// Octez `triggers.too-many-connections`: min 0, expected 24, max 36 (bounds 8/16/28/32),
/// 24 trusted points; connections brought to max fire *too many*, which closes down to
/// max_target 28, never a trusted peer.
#[test]
fn octez_too_many_connections_trigger_scenario() {
    let bounds = Bounds::new(0, 24, 36).unwrap();
    assert_eq!(
        (
            bounds.min_threshold(),
            bounds.min_target(),
            bounds.max_target(),
            bounds.max_threshold()
        ),
        (8, 16, 28, 32)
    );
    // Octez dials every trusted point: no cap on them per round here.
    let config = Config::new()
        .with_bounds(bounds)
        .with_idle_time(secs(36_000))
        .with_max_trusted_dials(usize::MAX);
    let mut f = Fixture::with_config(config);
    let trusted: Vec<Multiaddr> = (0..24)
        .map(|i| f.pool.add_trusted_point(&point(i), f.now).unwrap())
        .collect();
    let plan = f.step();
    assert!(dialed(&plan).iter().all(|p| trusted.contains(p)));
    let mut trusted_peers = Vec::new();
    for p in dialed(&plan) {
        trusted_peers.push(f.connect(&p));
    }
    assert_eq!(
        f.pool.active(),
        16,
        "0 < min_threshold: dialed up to the cap of 16 in flight"
    );
    assert!(f.step().is_empty(), "16 = min_target");
    // "Overconnect" peers dial in until the count reaches max.
    let extra: Vec<PeerId> = (0..20).map(|_| f.inbound()).collect();
    assert_eq!(f.pool.active(), 36);
    let plan = f.step();
    assert_eq!(plan.close.len(), 36 - 28, "too many: down to max_target");
    assert!(plan.close.iter().all(|p| extra.contains(p)));
    assert!(plan.close.iter().all(|p| !trusted_peers.contains(p)));
}

/// Within its bounds a node with rotation every 10 min replaces one connection (Octez's swap,
/// done locally): at the first idle tick past the interval it dials one candidate, never a trusted
/// point, and once that connects it closes one peer out of its grace period, so its count
/// stays the same. A failed dial closes nothing.
#[test]
fn within_bounds_a_node_rotates_one_connection_every_ten_minutes() {
    let config = Config::new()
        .with_bounds(Bounds::from_connections(6))
        .with_rotation_interval(Some(secs(600)));
    let mut f = Fixture::with_config(config);
    let old: Vec<PeerId> = (0..5).map(|_| f.inbound()).collect();
    f.pool.add_trusted_point(&point(99), f.now).unwrap();
    assert!(
        f.step().is_empty(),
        "5 connections: within 4..=8, nothing to do"
    );
    f.learn(10..12);
    // The first idle tick sets the interval going; ticks before it has passed do nothing.
    for _ in 0..5 {
        f.now += secs(120);
        assert!(f.step().is_empty(), "not before 10 min");
    }
    f.now += secs(120);
    let dials = dialed(&f.step());
    assert_eq!(dials.len(), 1);
    assert_ne!(dials[0], point(99), "a trusted point is not a rotation's");
    assert!(f.step().is_empty(), "nothing while the dial is in flight");
    let new = f.connect(&dials[0]);
    let plan = f.step();
    assert_eq!(plan.close.len(), 1);
    assert!(
        old.contains(&plan.close[0]),
        "an old peer goes, not the new one: {new}"
    );
    f.close(plan.close[0]);
    assert_eq!(f.pool.active(), 5);
    // The next rotation's dial fails: nothing is closed.
    for _ in 0..4 {
        f.now += secs(120);
        assert!(f.step().is_empty());
    }
    f.now += secs(120);
    let dials = dialed(&f.step());
    assert_eq!(dials.len(), 1);
    f.fail(&dials[0]);
    assert!(f.step().is_empty());
    assert_eq!(f.pool.active(), 5);
}

#[test]
fn rotation_is_off_by_default_and_private_mode_never_rotates() {
    let config = Config::new().with_bounds(Bounds::from_connections(6));
    let mut f = Fixture::with_config(config);
    for _ in 0..5 {
        f.inbound();
    }
    f.learn(10..12);
    for _ in 0..12 {
        assert!(f.step().is_empty());
        f.now += secs(120);
    }

    let config = Config::new()
        .with_bounds(Bounds::from_connections(6))
        .with_rotation_interval(Some(secs(600)));
    let mut f = Fixture::with_config(config);
    f.pool = Pool::new(
        PeerId::random(),
        pool::Config::new().with_private_mode(true),
    );
    for _ in 0..5 {
        f.inbound();
    }
    f.pool.add_trusted_point(&point(1), f.now).unwrap();
    for _ in 0..12 {
        assert!(f.step().is_empty());
        f.now += secs(120);
    }
}
