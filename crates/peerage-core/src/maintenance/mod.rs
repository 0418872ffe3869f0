//! The maintenance: keeps the number of connections between its bounds, as Octez
//! `P2p_maintenance` (`p2p_maintenance.ml`).
//!
//! The [`Maintenance`] is a sans-IO planner. The caller feeds it what happened (`on_*`), then
//! calls [`Maintenance::step`], which returns a [`Plan`]: points to dial, peers to disconnect,
//! whether to ask connected peers for more points. It wakes, as Octez's worker does, on:
//!
//! - activation (the first step always runs);
//! - the idle timer (`idle_time`, 120 s by default);
//! - the *too few* trigger, a disconnection that leaves fewer than `min` connections;
//! - the *too many* trigger, a connection that brings the count to `max` or more;
//! - an external [`Maintenance::trigger`];
//! - while dialing: the end of a dial; while waiting for points: new points or the end of the
//!   wait (`looking_for_peers`, 5 s as Octez's "empirical value"; with no connection at all, a
//!   random 1/5 to all of it, below).
//!
//! When woken with `n` active connections and `n < min_threshold`, a dialing round starts: it
//! dials candidates (never-failed points first, then the oldest miss) until `min_target` is
//! reached, with at most `max_target - n` dials in flight, and no point dialed twice in a round.
//! When no candidate is left, it asks connected peers for points (not in private mode, as
//! Octez's `Private_answerer`) and waits. When woken with `n > max_threshold`, it closes
//! `n - max_target` peers, never trusted ones, in the order the caller gives
//! ([`Maintenance::step_with`]: the node passes the connection manager's trim order, which
//! spares protected peers and, as long as it can, those in their grace period); without one,
//! random peers out of the grace period first, then the longest-standing of the others (Octez
//! picks at random among all, and may close the connection that a peer below its minimum just
//! made).
//!
//! The maintenance is inactive until [`Maintenance::activate`] (Octez's `activate`, which runs a
//! check at once) and after [`Maintenance::shutdown`]. Each [`Maintenance::maintain`] returns a
//! ticket; [`Maintenance::is_done`] tells when a cycle that started after it has ended (Octez's
//! `maintain` returns after a cycle): the count is within the thresholds, or the round has no
//! candidate left and waits for points.
//!
//! Differences from Octez, on purpose:
//!
//! - dials in flight are also capped by `max_pending_dials` (Octez has no cap, #6140);
//! - the dialing loop is event-driven rather than a blocking loop over parallel dials;
//! - a round dials at most `max_trusted_dials` trusted (bootstrap) points, 4 by default, outside
//!   private mode: a joining node does not dial every bootstrap point at once;
//! - a node with no connection at all waits a random time between a fifth of
//!   `looking_for_peers` and all of it (1 to 5 s by default), not all of it: nobody can send it
//!   points, and the nodes a full bootstrap node refused at the same moment would otherwise
//!   all come back at the same moment, to be refused again. In a 400-node devnet (every node
//!   bootstrapping from one node, which keeps 20 nacked connections open at most and refuses
//!   the others outright) the nodes reached their bounds in 5 s steps of about 50 nodes, in
//!   34.5–39.4 s (the devnet's `elapsed_ms`, its 3 s stability window included); with the
//!   random wait and two fixes of the devnet itself, in 12.7–13.3 s over five runs
//!   (`crates/peerage-core/benches/README.md`);
//! - never-missed candidates are drawn in a per-round order ([`Pool::candidates`]'s `salt`), not
//!   by address, so joining nodes that learned the same points spread their dials;
//! - where Octez runs its swap protocol, a node may rotate one connection at an interval
//!   ([`Config::with_rotation_interval`], off by default).
//!
//! In the simulator (10,000 nodes joining over 5 minutes, then an hour of churn) the trusted
//! cap and the per-round order cut the dials per node-hour from 84 to 32 and the wall time
//! from 93 s to 36–44 s. Without rotation a partition that heals while nothing churns stays
//! split: nothing within its bounds dials.

mod bounds;

use std::time::{Duration, Instant};

use foldhash::{HashMap, HashSet, HashSetExt};
use multiaddr::Multiaddr;
use rand::{Rng, seq::SliceRandom};

pub use self::bounds::{Bounds, BoundsError};
use crate::{PeerId, pool::Pool};

/// Configuration of the [`Maintenance`].
#[derive(Debug, Clone)]
pub struct Config {
    bounds: Bounds,
    idle_time: Duration,
    looking_for_peers: Duration,
    max_pending_dials: usize,
    max_trusted_dials: usize,
    rotation_interval: Option<Duration>,
    grace_period: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bounds: Bounds::new(10, 50, 100).expect("ordered"),
            idle_time: Duration::from_secs(120),
            looking_for_peers: Duration::from_secs(5),
            max_pending_dials: 16,
            max_trusted_dials: 4,
            rotation_interval: None,
            grace_period: Duration::from_secs(60),
        }
    }
}

impl Config {
    /// Octez's defaults: bounds 10/50/100, idle time 120 s, 5 s between requests for points;
    /// at most 16 dials in flight, at most 4 trusted points dialed per round, no rotation, and
    /// go's 1 min grace period.
    pub fn new() -> Self {
        Self::default()
    }
    /// Connection bounds. `10/50/100` by default (Octez `min/expected/max_connections`).
    pub fn with_bounds(mut self, bounds: Bounds) -> Self {
        self.bounds = bounds;
        self
    }
    /// Period of the idle timer. 120 s by default (Octez `maintenance_idle_time`).
    pub fn with_idle_time(mut self, d: Duration) -> Self {
        self.idle_time = d;
        self
    }
    /// How long to wait for new points after asking peers for some, before a new dialing round.
    /// 5 s by default (Octez `time_between_looking_for_peers`). A node with no connection
    /// waits a random time between a fifth of it and all of it (see the module docs).
    pub fn with_looking_for_peers(mut self, d: Duration) -> Self {
        self.looking_for_peers = d;
        self
    }
    /// Cap of dials in flight. 16 by default.
    ///
    /// # Panics
    ///
    /// If `n` is 0.
    pub fn with_max_pending_dials(mut self, n: usize) -> Self {
        assert!(n > 0, "max_pending_dials must be positive");
        self.max_pending_dials = n;
        self
    }
    /// At most this many trusted points (bootstrap points) dialed in a round, outside private
    /// mode. 4 by default; Octez has no such cap.
    ///
    /// A joining node knows only its bootstrap points: without the cap it dials them all at
    /// once (up to `max_target`), and every bootstrap node takes every joining node's
    /// connection only to nack or trim it. A few of them answer with enough points (50 each)
    /// to dial the rest; the others stay candidates for the next round, as Bitcoin Core
    /// queries only a few seeds.
    pub fn with_max_trusted_dials(mut self, n: usize) -> Self {
        self.max_trusted_dials = n;
        self
    }
    /// How often a node within its bounds replaces one connection; `None` turns it off. Off by
    /// default.
    ///
    /// At the first idle tick once the interval has passed it dials one candidate (never a
    /// trusted point); if that adds a connection, it closes one peer, the first in the order
    /// of victims (so one out of its grace period), and its count is unchanged. This is what
    /// Octez's swap (`Swap_request`/`Swap_ack`, `p2p_maintenance.ml`) is for: without it a
    /// network that stops churning keeps its topology for good, and a partition that heals
    /// stays two components (the simulator's `a_healed_partition_leaves_one_component`).
    /// Unlike Octez's swap it takes no point from a peer (a peer cannot steer it) and needs no
    /// protocol message.
    ///
    /// Off by default because of what it costs. Octez swaps at about every idle tick (120 s):
    /// in the simulator that rate made a 10,000-node network dial 250 times per node-hour
    /// instead of 32. Every 10 min still made it 59, and rising through the hour: a closed
    /// peer at its `min_threshold` starts a round of up to `max_target - n` dials, and a
    /// rotated-to node above its `max_threshold` trims several peers. Turn it on for a
    /// network that may stop churning.
    pub fn with_rotation_interval(mut self, interval: Option<Duration>) -> Self {
        self.rotation_interval = interval;
        self
    }
    /// How long a new connection is spared when closing extras (unless there are not enough
    /// older ones). 60 s by default (go connmgr `GracePeriod`).
    pub fn with_grace_period(mut self, d: Duration) -> Self {
        self.grace_period = d;
        self
    }
    /// The connection bounds.
    pub fn bounds(&self) -> Bounds {
        self.bounds
    }
    /// The grace period.
    pub fn grace_period(&self) -> Duration {
        self.grace_period
    }
    /// The time between two requests for points (Octez `time_between_looking_for_peers`).
    pub fn looking_for_peers(&self) -> Duration {
        self.looking_for_peers
    }
}

/// What the maintenance wants done, from one [`Maintenance::step`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct Plan {
    /// Points to dial, each with the peer ID to dial it with if known. The pool already has
    /// them in `Requested`; the caller must report each dial's end to the pool.
    pub dial: Vec<(Multiaddr, Option<PeerId>)>,
    /// Peers to disconnect (all their connections).
    pub close: Vec<PeerId>,
    /// Whether to ask every connected peer for points (Octez's `Bootstrap` message).
    pub ask_for_points: bool,
}

impl Plan {
    /// Whether the plan asks for nothing.
    pub fn is_empty(&self) -> bool {
        self.dial.is_empty() && self.close.is_empty() && !self.ask_for_points
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    /// Dialing until `min_target`; points that missed after `round_start` wait for a new round.
    Dialing {
        round_start: Instant,
    },
    /// No candidate left: waiting for new points until `until`; `alone` if the wait was drawn
    /// for a node with no connection ([`Maintenance::alone_wait`]).
    Waiting {
        until: Instant,
        alone: bool,
    },
}

/// The maintenance planner. See the [module docs](self).
#[derive(Debug)]
pub struct Maintenance {
    config: Config,
    active: bool,
    /// Tickets handed out by `maintain`, and the last one whose cycle ended.
    tickets: u64,
    done: u64,
    phase: Phase,
    run_requested: bool,
    new_points: bool,
    next_tick: Option<Instant>,
    /// Points dialed in the current round, whatever came of the dial (Octez's `seen`): none is
    /// dialed twice in a round, so a dial that is aborted at once cannot spin.
    seen: HashSet<Multiaddr>,
    /// Trusted points dialed in the current round (capped by `max_trusted_dials`).
    trusted_dialed: usize,
    /// The rotation's dial in flight, with the active count when it was planned.
    rotation: Option<(Multiaddr, usize)>,
    /// When the next rotation is due (set at the first idle tick within the bounds).
    next_rotation: Option<Instant>,
}

impl Maintenance {
    /// An inactive maintenance: [`activate`](Maintenance::activate) starts it.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            active: false,
            tickets: 0,
            done: 0,
            phase: Phase::Idle,
            run_requested: true,
            new_points: false,
            next_tick: None,
            seen: HashSet::new(),
            trusted_dialed: 0,
            rotation: None,
            next_rotation: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The connection bounds.
    pub fn bounds(&self) -> Bounds {
        self.config.bounds
    }

    /// A connection was admitted; `active` is the new count. Fires the *too many* trigger when
    /// `active >= max` (Octez `p2p_connect_handler.ml`).
    pub fn on_connection_established(&mut self, active: usize) {
        if active >= self.config.bounds.max() {
            self.run_requested = true;
        }
    }

    /// A connection closed; `active` is the new count. Fires the *too few* trigger when
    /// `active < min`.
    pub fn on_connection_closed(&mut self, active: usize) {
        if active < self.config.bounds.min() {
            self.run_requested = true;
        }
    }

    /// A dial planned by the maintenance ended, in success or failure.
    pub fn on_dial_finished(&mut self) {
        if matches!(self.phase, Phase::Dialing { .. }) || self.rotation.is_some() {
            self.run_requested = true;
        }
    }

    /// New points were registered in the pool. Ends a wait for points.
    pub fn on_new_points(&mut self) {
        if matches!(self.phase, Phase::Waiting { .. }) {
            self.new_points = true;
            self.run_requested = true;
        }
    }

    /// Asks for a check at the next step.
    pub fn trigger(&mut self) {
        self.run_requested = true;
    }

    /// Starts the maintenance; its next step runs a check (Octez `activate`).
    pub fn activate(&mut self) {
        if !self.active {
            self.active = true;
            self.run_requested = true;
            self.next_tick = None;
        }
    }

    /// Stops the maintenance: steps plan nothing until it is activated again (Octez
    /// `shutdown`). Dials in flight are left to finish.
    pub fn shutdown(&mut self) {
        self.active = false;
        self.phase = Phase::Idle;
        self.next_tick = None;
        self.done = self.tickets;
    }

    /// Whether the maintenance is active.
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// Asks for a check at the next step (Octez `maintain`) and returns a ticket for
    /// [`is_done`](Maintenance::is_done).
    pub fn maintain(&mut self) -> u64 {
        self.run_requested = true;
        self.tickets += 1;
        self.tickets
    }

    /// Whether a cycle that started after `ticket` was handed out has ended (or the maintenance
    /// was shut down).
    pub fn is_done(&self, ticket: u64) -> bool {
        self.done >= ticket
    }

    /// Whether a check was asked for (a trigger fired) and waits for the next step: the driver
    /// should step now.
    pub fn is_run_requested(&self) -> bool {
        self.active && self.run_requested
    }

    /// Whether a dialing round is under way or waiting for points.
    pub fn is_dialing(&self) -> bool {
        !matches!(self.phase, Phase::Idle)
    }

    /// The next instant at which [`step`](Maintenance::step) has work even if nothing is fed in:
    /// the idle timer or the end of a wait for points. `None` before the first step and while
    /// inactive.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.active {
            return None;
        }
        match self.phase {
            Phase::Waiting { until, .. } => Some(self.next_tick.map_or(until, |t| t.min(until))),
            _ => self.next_tick,
        }
    }

    /// [`step_with`](Maintenance::step_with) with the built-in order of victims: random peers
    /// out of the grace period, then the longest-standing of the others.
    pub fn step(&mut self, now: Instant, pool: &mut Pool, rng: &mut impl Rng) -> Plan {
        let grace = self.config.grace_period;
        let since: HashMap<PeerId, Instant> = pool
            .running_peers()
            .filter_map(|p| Some((p, pool.peer(&p)?.running_since()?)))
            .collect();
        self.step_with(
            now,
            pool,
            rng,
            |peers, rng| default_order(peers, &since, now, grace, rng),
            &mut from_pool,
        )
    }

    /// Runs the maintenance if it is due, and returns what to do. Call it after feeding events
    /// and whenever [`poll_timeout`](Maintenance::poll_timeout) has passed; it returns an empty
    /// plan when nothing is due or the maintenance is inactive. Dials in the plan are already
    /// marked `Requested` in `pool`.
    ///
    /// `order` receives the running, untrusted peers and returns those that may be closed,
    /// first to close first (the node passes the connection manager's trim order). `source`
    /// chooses the points to dial ([`from_pool`] is the pool's own choice; the node passes
    /// its address book's when it has one).
    pub fn step_with<R: Rng>(
        &mut self,
        now: Instant,
        pool: &mut Pool,
        rng: &mut R,
        order: impl FnOnce(Vec<PeerId>, &mut R) -> Vec<PeerId>,
        source: Source<'_>,
    ) -> Plan {
        if !self.active {
            return Plan::default();
        }
        let plan = self.plan(now, pool, rng, order, source);
        if matches!(self.phase, Phase::Idle | Phase::Waiting { .. }) && !self.run_requested {
            self.done = self.tickets;
        }
        plan
    }

    fn plan<R: Rng>(
        &mut self,
        now: Instant,
        pool: &mut Pool,
        rng: &mut R,
        order: impl FnOnce(Vec<PeerId>, &mut R) -> Vec<PeerId>,
        source: Source<'_>,
    ) -> Plan {
        let tick_due = self.next_tick.is_none_or(|t| now >= t);
        // The idle timer itself, not the first step after activation.
        let idle_tick = self.next_tick.is_some_and(|t| now >= t);
        let wait_over = matches!(self.phase, Phase::Waiting { until, .. } if now >= until);
        if !(self.run_requested || tick_due || wait_over) {
            return Plan::default();
        }
        self.run_requested = false;
        if tick_due {
            self.next_tick = Some(now + self.config.idle_time);
        }
        let bounds = self.config.bounds;
        let n = pool.active();

        if n > bounds.max_threshold() {
            self.phase = Phase::Idle;
            let close = victims(pool, rng, order, n - bounds.max_target());
            return Plan {
                close,
                ..Plan::default()
            };
        }

        let round_start = match self.phase {
            Phase::Dialing { round_start } => round_start,
            Phase::Idle if n >= bounds.min_threshold() => {
                return self.rotate(now, pool, rng, order, idle_tick, source);
            }
            Phase::Waiting { until, alone } if now < until && !self.new_points => {
                if n == 0 && !alone {
                    // The last connection closed while we waited (a full node that took our
                    // dial only to refuse it, say): nobody can send us points now.
                    let until = until.min(now + self.alone_wait(rng));
                    self.phase = Phase::Waiting { until, alone: true };
                }
                return Plan::default();
            }
            // A new round: points seen or missed in the last one may be tried again.
            Phase::Idle | Phase::Waiting { .. } => {
                self.seen.clear();
                self.trusted_dialed = 0;
                now
            }
        };
        self.new_points = false;
        if n >= bounds.min_target() {
            self.phase = Phase::Idle;
            return Plan::default();
        }
        self.phase = Phase::Dialing { round_start };
        let pending = pool.requested();
        let budget = (bounds.max_target() - n)
            .saturating_sub(pending)
            .min(self.config.max_pending_dials.saturating_sub(pending));
        let mut plan = Plan::default();
        if budget == 0 && pending > 0 {
            // Every slot is taken by a dial in flight: nothing to choose (and no table to walk).
            return plan;
        }
        let salt: u64 = rng.random();
        // Private mode dials only trusted points: no cap there.
        let max_trusted = if pool.config().private_mode() {
            usize::MAX
        } else {
            self.config
                .max_trusted_dials
                .saturating_sub(self.trusted_dialed)
        };
        let skip = |p: &Multiaddr| self.seen.contains(p);
        let pick = Pick {
            now,
            round_start,
            max: budget,
            max_trusted,
            salt,
        };
        for point in source(pool, pick, &skip) {
            let trusted = pool.point(&point).is_some_and(|p| p.is_trusted());
            if let Ok(peer) = pool.set_requested(&point, now) {
                self.trusted_dialed += usize::from(trusted);
                self.seen.insert(point.clone());
                plan.dial.push((point, peer));
            }
        }
        if plan.dial.is_empty() && pending == 0 {
            let alone = n == 0;
            let wait = if alone {
                self.alone_wait(rng)
            } else {
                self.config.looking_for_peers
            };
            self.phase = Phase::Waiting {
                until: now + wait,
                alone,
            };
            // A private node asks nobody (Octez: it just sleeps).
            plan.ask_for_points = !pool.config().private_mode();
        }
        plan
    }
}

impl Maintenance {
    /// The wait for points of a node with no connection: nobody can send it any, and what may
    /// help next is a point that refused it (a full bootstrap node, say) having room again.
    /// A random 1/5 to all of `looking_for_peers` spreads the retries of the nodes a full
    /// node refused at the same moment.
    fn alone_wait<R: Rng>(&self, rng: &mut R) -> Duration {
        let full = self.config.looking_for_peers;
        rng.random_range(full / 5..=full)
    }

    /// Within the bounds: ends the rotation whose dial has finished (closing one peer if the
    /// dial added a connection), or starts one at the idle tick. See
    /// [`Config::with_rotation_interval`].
    fn rotate<R: Rng>(
        &mut self,
        now: Instant,
        pool: &mut Pool,
        rng: &mut R,
        order: impl FnOnce(Vec<PeerId>, &mut R) -> Vec<PeerId>,
        idle_tick: bool,
        source: Source<'_>,
    ) -> Plan {
        let mut plan = Plan::default();
        if let Some((point, before)) = &self.rotation {
            use crate::pool::point::State;
            let in_flight = pool
                .point(point)
                .is_some_and(|p| matches!(p.state(), State::Requested | State::Accepted { .. }));
            if in_flight {
                return plan;
            }
            if pool.active() > *before {
                plan.close = victims(pool, rng, order, 1);
            }
            self.rotation = None;
            return plan;
        }
        let Some(interval) = self.config.rotation_interval else {
            return plan;
        };
        if !idle_tick || pool.config().private_mode() {
            return plan;
        }
        match self.next_rotation {
            Some(due) if now >= due => {}
            Some(_) => return plan,
            None => {
                self.next_rotation = Some(now + interval);
                return plan;
            }
        }
        self.next_rotation = Some(now + interval);
        let salt: u64 = rng.random();
        let pick = Pick {
            now,
            round_start: now,
            max: 1,
            max_trusted: 0,
            salt,
        };
        let chosen = source(pool, pick, &|_| false);
        if let Some(point) = chosen.into_iter().next()
            && let Ok(peer) = pool.set_requested(&point, now)
        {
            self.rotation = Some((point.clone(), pool.active()));
            plan.dial.push((point, peer));
        }
        plan
    }
}

/// What a round asks of its candidate source: at most `max` points to dial, of which at most
/// `max_trusted` trusted, for a round that started at `round_start` (see
/// [`Pool::candidates`], whose arguments these are).
#[derive(Debug, Clone, Copy)]
pub struct Pick {
    /// The time of the step.
    pub now: Instant,
    /// When the dialing round started.
    pub round_start: Instant,
    /// Most points to return.
    pub max: usize,
    /// Most trusted points among them.
    pub max_trusted: usize,
    /// A per-round salt for the order of ties.
    pub salt: u64,
}

/// Chooses the points a round dials, leaving out those the given filter names (already tried
/// this round). Each returned point must be known to the pool (registered) and dialable.
pub type Source<'a> =
    &'a mut dyn FnMut(&mut Pool, Pick, &dyn Fn(&Multiaddr) -> bool) -> Vec<Multiaddr>;

/// The pool's own choice of candidates ([`Pool::candidates`]): Octez's.
pub fn from_pool(pool: &mut Pool, pick: Pick, skip: &dyn Fn(&Multiaddr) -> bool) -> Vec<Multiaddr> {
    pool.candidates(
        pick.now,
        pick.round_start,
        pick.max,
        pick.max_trusted,
        pick.salt,
        skip,
    )
}

/// The first `count` running, untrusted peers in `order`: those to close.
fn victims<R: Rng>(
    pool: &Pool,
    rng: &mut R,
    order: impl FnOnce(Vec<PeerId>, &mut R) -> Vec<PeerId>,
    count: usize,
) -> Vec<PeerId> {
    let mut candidates: Vec<PeerId> = pool
        .running_peers()
        .filter(|p| !pool.is_trusted_peer(p))
        .collect();
    // Sorted first so that a seeded RNG gives the same choice whatever the table's order.
    candidates.sort();
    let mut close = order(candidates, rng);
    close.truncate(count);
    close
}

/// The built-in order of victims: peers running for longer than the grace period at random,
/// then the others, longest-standing first.
fn default_order(
    peers: Vec<PeerId>,
    since: &HashMap<PeerId, Instant>,
    now: Instant,
    grace: Duration,
    rng: &mut impl Rng,
) -> Vec<PeerId> {
    let mut old = Vec::new();
    let mut young = Vec::new();
    for peer in peers {
        match since.get(&peer) {
            Some(t) if now.saturating_duration_since(*t) < grace => young.push((*t, peer)),
            _ => old.push(peer),
        }
    }
    old.shuffle(rng);
    young.sort();
    old.into_iter()
        .chain(young.into_iter().map(|(_, p)| p))
        .collect()
}

#[cfg(test)]
mod tests;
