//! The node's address book (see the [module docs](super#the-address-book)): where answers to
//! requests for points go, where the maintenance's candidates come from, feelers and anchors.

use std::{
    fmt,
    time::{Duration, Instant},
};

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use rand::{Rng, rngs::StdRng};

use super::{Command, Machine};
use crate::{
    Multiaddr, PeerId,
    addrbook::{
        ADDR_BUCKET_CAP, ADDR_RATE_PER_SECOND, AddrBook, Budget, Candidate, Group, Snapshot, Stats,
        evict,
    },
    maintenance::Pick,
    pool::{self, Pool},
};

/// Source groups whose budget is remembered, past which full ones are forgotten.
const MAX_BUDGETS: usize = 4096;

/// Outbound peers saved as anchors (Bitcoin Core `MAX_BLOCK_RELAY_ONLY_ANCHORS`).
pub const MAX_ANCHORS: usize = 2;

/// The address book and what the node keeps around it.
#[derive(Debug)]
pub(super) struct BookState {
    pub(super) book: AddrBook,
    /// The book's own draws, apart from the machine's RNG.
    pub(super) rng: StdRng,
    /// What each source group may still tell us.
    budgets: HashMap<Group, Budget>,
    /// When the next feeler goes.
    pub(super) next_feeler: Option<Instant>,
    /// Points dialed as feelers: closed once connected.
    pub(super) feelers: HashSet<Multiaddr>,
    /// Points the outbound top-up is dialing: several per missing connection, so those that
    /// connect once the target is met are surplus, closed as feelers are.
    topups: HashSet<Multiaddr>,
    /// Anchors from the last run, to dial first.
    anchors: Vec<(Multiaddr, Option<PeerId>)>,
    /// When to look again for outbound connections under the target.
    pub(super) next_outbound: Option<Instant>,
    /// The key of the eviction's keyed group protection.
    evict_key: u64,
}

impl BookState {
    pub(super) fn new(book: AddrBook, mut rng: StdRng) -> Self {
        BookState {
            next_outbound: None,
            evict_key: rng.random(),
            book,
            rng,
            budgets: HashMap::new(),
            next_feeler: None,
            feelers: HashSet::new(),
            topups: HashSet::new(),
            anchors: Vec::new(),
        }
    }
}

/// What [`Machine::automatic_outbound`] finds.
#[derive(Debug, Default)]
struct Outbound {
    groups: HashSet<Group>,
    peers: Vec<(Instant, PeerId)>,
    dialing: usize,
}

/// Whether a group counts against the one-outbound-per-group rule: public ones only (a devnet
/// lives in one loopback group), unless loopback counts by /16.
fn diverse(group: Group) -> bool {
    group.is_public()
}

impl<C: Copy + Ord + std::hash::Hash + fmt::Debug> Machine<C> {
    /// The address book, if the node keeps one.
    pub fn addrbook(&self) -> Option<&AddrBook> {
        self.book.as_ref().map(|b| &b.book)
    }

    /// The address book's sizes and diversity, with the largest group's share of the
    /// outbound and inbound connections; `None` without a book.
    pub fn addrbook_stats(&self) -> Option<(Stats, f64, f64)> {
        let b = self.book.as_ref()?;
        let share = |inbound: bool| {
            let mut groups: HashMap<Group, usize> = HashMap::new();
            let mut total = 0;
            for c in self
                .connections
                .values()
                .filter(|c| c.inbound == inbound && !c.nacked)
            {
                *groups
                    .entry(c.group.unwrap_or_else(|| b.book.group(&c.remote)))
                    .or_default() += 1;
                total += 1;
            }
            groups
                .values()
                .max()
                .map_or(0.0, |&n| n as f64 / total as f64)
        };
        Some((b.book.stats(), share(false), share(true)))
    }

    /// The book as it can be saved, with the anchors: the [`MAX_ANCHORS`] outbound peers we
    /// hold longest (trusted ones aside, as they are dialed anyway). The points of the
    /// outbound connections open now are saved as heard of now, as their end would record
    /// them ([`AddrBook::connected`]): a peer held for days is not restored
    /// [stale](crate::addrbook::Config::with_stale_after).
    pub fn addrbook_snapshot(&self, now: Instant) -> Option<Snapshot> {
        let b = self.book.as_ref()?;
        let mut snap = b.book.snapshot(now);
        let open: HashSet<&Multiaddr> = self
            .outbound_connections()
            .filter(|(_, c)| !c.nacked)
            .filter_map(|(_, c)| c.point.as_ref())
            .collect();
        if !open.is_empty() {
            for e in snap.entries.iter_mut().filter(|e| open.contains(&e.addr)) {
                e.heard_ago = 0;
            }
        }
        snap.anchors = self.anchors();
        Some(snap)
    }

    /// The [`MAX_ANCHORS`] automatic outbound connections held longest, each as its point with
    /// `/p2p` (Bitcoin Core `anchors.dat`).
    pub fn anchors(&self) -> Vec<Multiaddr> {
        let mut outbound: Vec<_> = self
            .connections
            .values()
            .filter(|c| !c.inbound && !c.nacked && !c.feeler)
            .filter_map(|c| Some((c.since, c.point.as_ref()?, c.peer)))
            .filter(|(_, p, _)| !self.pool.point(p).is_some_and(|i| i.is_trusted()))
            .collect();
        outbound.sort_by(|a, b| (a.0, a.1.as_ref()).cmp(&(b.0, b.1.as_ref())));
        let mut seen = HashSet::new();
        outbound
            .into_iter()
            .filter(|(_, _, peer)| seen.insert(*peer))
            .take(MAX_ANCHORS)
            .map(|(_, point, peer)| point.clone().with(multiaddr::Protocol::P2p(peer)))
            .collect()
    }

    /// Replaces the book with a saved one (its key and positions kept, [`AddrBook::restore`])
    /// and queues its anchors to be dialed first. Returns the entries dropped as invalid.
    /// Does nothing (and returns 0) if the node keeps no book.
    pub fn restore_addrbook(&mut self, snapshot: Snapshot, now: Instant) -> usize {
        let Some(b) = &mut self.book else {
            return 0;
        };
        let anchors: Vec<_> = snapshot
            .anchors
            .iter()
            .take(MAX_ANCHORS)
            .filter_map(|a| pool::split_point(a).ok())
            .collect();
        let (book, dropped) = AddrBook::restore(
            snapshot,
            b.book.config().clone(),
            b.book.grouping().clone(),
            now,
        );
        b.book = book;
        for (point, peer) in &anchors {
            self.pool
                .register_points(None, pool::Medium::PeersFile, [(point, *peer)], now);
        }
        self.book.as_mut().expect("checked").anchors = anchors;
        self.maintenance.on_new_points();
        dropped
    }

    /// The node's automatic outbound connections and dials (to points that are not
    /// trusted), in one pass: the groups they hold (public ones; feelers included, as a
    /// feeler's group is held while it lasts), at most one each (Bitcoin Core
    /// `ThreadOpenConnections`); the peers of the established ones that are not feelers, oldest
    /// first, one entry per peer; and the dials in flight that are not feelers.
    fn automatic_outbound(&self) -> Outbound {
        let mut out = Outbound::default();
        let Some(b) = &self.book else {
            return out;
        };
        let trusted = |p: &Multiaddr| self.pool.point(p).is_some_and(|i| i.is_trusted());
        let mut hold = |p: &Multiaddr| {
            let group = b.book.group(p);
            if diverse(group) {
                out.groups.insert(group);
            }
        };
        for (_, c) in self.outbound_connections().filter(|(_, c)| !c.nacked) {
            let Some(point) = c.point.as_ref().filter(|p| !trusted(p)) else {
                continue;
            };
            hold(point);
            if !c.feeler {
                out.peers.push((c.since, c.peer));
            }
        }
        for point in self.dials.values().filter(|p| !trusted(p)) {
            hold(point);
            if !b.feelers.contains(point) {
                out.dialing += 1;
            }
        }
        out.peers.sort();
        let mut seen = HashSet::new();
        out.peers.retain(|(_, p)| seen.insert(*p));
        out
    }

    /// Runs the maintenance with the book as its source of candidates; then, with a book,
    /// dials more from it until the node holds its outbound target, whatever its inbound
    /// count, and keeps a trim off those outbound peers.
    pub(super) fn step_maintenance(&mut self, now: Instant) -> crate::maintenance::Plan {
        let Outbound {
            groups: mut held,
            peers: outbound,
            dialing,
        } = self.automatic_outbound();
        let target = self.config.outbound_target();
        // Automatic outbound connections the round may add: up to the target, or beyond it
        // as far as the bounds' min_target needs when inbound peers are lacking (a node behind
        // a NAT gets none).
        let others = self.pool.active().saturating_sub(outbound.len());
        let wanted = target.max(self.bounds().min_target().saturating_sub(others));
        let automatic = wanted.saturating_sub(outbound.len() + dialing);
        // A trim spares the `target` oldest automatic outbound peers.
        let keep: HashSet<PeerId> = if self.book.is_some() {
            outbound.iter().take(target).map(|(_, p)| *p).collect()
        } else {
            HashSet::new()
        };
        let connmgr = &self.connmgr;
        let order = |peers: Vec<PeerId>, _: &mut StdRng| {
            let mut order = connmgr.close_order(&peers, now);
            order.retain(|p| !keep.contains(p));
            order
        };
        let Some(b) = &mut self.book else {
            return self.maintenance.step_with(
                now,
                &mut self.pool,
                &mut self.rng,
                order,
                &mut crate::maintenance::from_pool,
            );
        };
        let book = &mut b.book;
        let rng = &mut b.rng;
        let anchors = &mut b.anchors;
        let mut source = |pool: &mut Pool, pick: Pick, skip: &dyn Fn(&Multiaddr) -> bool| {
            pick_points(pool, book, rng, anchors, &mut held, pick, skip, automatic)
        };
        let mut plan =
            self.maintenance
                .step_with(now, &mut self.pool, &mut self.rng, order, &mut source);
        let planned = plan.dial.len();
        // Several dials in flight per missing connection: under churn most addresses in a book
        // may be gone, and a failed dial takes its timeout; those that connect beyond the
        // target are closed as surplus.
        let missing = target
            .saturating_sub(outbound.len())
            .saturating_mul(super::TOPUP_DIALS_PER_MISSING)
            .min(super::MAX_TOPUP_DIALS)
            .saturating_sub(dialing + planned);
        // The driver may call `handle_timeout` on every poll: the top-up runs when due only,
        // or a short book would ask and report at every call.
        let due = b.next_outbound.is_none_or(|t| t <= now);
        if !due {
            return plan;
        }
        if missing > 0 && !self.pool.config().private_mode() {
            let pick = Pick {
                now,
                round_start: now,
                max: missing,
                max_trusted: 0,
                salt: 0,
            };
            let dialed: Vec<Multiaddr> = plan.dial.iter().map(|(p, _)| p.clone()).collect();
            let skip = |p: &Multiaddr| dialed.contains(p);
            let chosen = pick_points(
                &mut self.pool,
                book,
                rng,
                anchors,
                &mut held,
                pick,
                &skip,
                missing,
            );
            let short = chosen.len() < missing;
            for point in chosen {
                if let Ok(peer) = self.pool.set_requested(&point, now) {
                    b.topups.insert(point.clone());
                    plan.dial.push((point, peer));
                }
            }
            // The book has too little to offer: ask our outbound peers for points (each at
            // most once per round, `may_ask`), as the maintenance does when it runs dry.
            plan.ask_for_points |= short;
            // Not there yet: look again in a second.
            b.next_outbound = Some(now + Duration::from_secs(1));
        } else {
            b.next_outbound = None;
        }
        plan
    }

    /// Admission of an inbound connection with a book (after the pool's checks): its group
    /// has fewer than `max_inbound_per_group` inbound connections (public groups only), and
    /// there is an inbound slot, or one is made by evicting an inbound peer
    /// ([`addrbook::evict`](crate::addrbook::evict), Bitcoin Core `SelectNodeToEvict`): the
    /// victim's close is queued before the newcomer is counted. `false` if neither: the
    /// newcomer is then nacked.
    pub(super) fn inbound_room(&mut self, peer: PeerId, remote: &Multiaddr, full: bool) -> bool {
        let Some(b) = &self.book else {
            return !full;
        };
        let group = b.book.group(remote);
        let inbound: Vec<(&C, &super::Connection)> = self
            .connections
            .iter()
            .filter(|(_, c)| c.inbound && !c.nacked && !c.evicted)
            .collect();
        let pending = self.pending_inbound.len();
        // Peers the connection manager protects, and the resource manager's allowlisted ones,
        // are exempt from their group's share (the allowlist, behind the resource manager's
        // lock, asked last).
        if diverse(group)
            && !self.connmgr.is_protected(&peer)
            && !self
                .resources
                .as_ref()
                .is_some_and(|r| r.is_allowlisted(&peer, remote))
        {
            let same = inbound
                .iter()
                .filter(|(_, c)| c.group == Some(group))
                .count()
                + self
                    .pending_inbound
                    .values()
                    .filter(|g| **g == group)
                    .count();
            if same >= self.config.max_inbound_per_group() {
                tracing::debug!(%peer, %group, same, "inbound: group full");
                return false;
            }
        }
        if inbound.len() + pending < self.config.max_inbound() && !full {
            return true;
        }
        let peers: Vec<PeerId> = inbound.iter().map(|(_, c)| c.peer).collect();
        let mut standing = self.connmgr.standing(&peers);
        if standing.len() != peers.len() {
            // A connection manager that breaks the contract: ask peer by peer rather than
            // leave some inbound peers out of the decision.
            tracing::warn!(
                peers = peers.len(),
                entries = standing.len(),
                "ConnectionManager::standing gave a wrong number of entries"
            );
            standing = peers
                .iter()
                .map(|p| (self.connmgr.tag_value(p), self.connmgr.is_protected(p)))
                .collect();
        }
        let mut candidates: Vec<evict::Candidate<C>> = inbound
            .iter()
            .zip(standing)
            .map(|((id, c), (tag_value, protected))| {
                let group = c.group.unwrap_or_else(|| b.book.group(&c.remote));
                let link = self.links.get(&c.peer);
                evict::Candidate {
                    id: **id,
                    group,
                    connected: c.since,
                    min_ping: link.and_then(|l| l.min_ping),
                    last_useful: link.and_then(|l| l.last_useful),
                    tag_value,
                    protected,
                    prefer_evict: false,
                    disadvantaged: matches!(group, Group::Loopback | Group::Relay),
                }
            })
            .collect();
        let key = b.evict_key;
        // Trusted peers are protected too; `is_trusted_peer` walks the trusted points, so it is
        // asked of the chosen victim only, and the choice made again without it if it is
        // trusted (rare: trusted peers are few, and mostly dialed by us).
        let victim = loop {
            let Some(victim) = evict::select(&candidates, key, &self.config.eviction) else {
                tracing::debug!(%peer, "inbound: full, every inbound peer protected");
                return false;
            };
            let chosen = candidates
                .iter_mut()
                .find(|c| c.id == victim.id)
                .expect("the victim is a candidate");
            match self.connections.get(&victim.id) {
                Some(c) if self.pool.is_trusted_peer(&c.peer) => chosen.protected = true,
                _ => break victim,
            }
        };
        let Some(gone) = self.connections.get(&victim.id).map(|c| c.peer) else {
            return false;
        };
        tracing::debug!(
            peer = %gone,
            newcomer = %peer,
            group = %victim.group,
            group_size = victim.group_size,
            reason = victim.reason.as_str(),
            "inbound: evicted"
        );
        self.close(
            gone,
            Some(victim.id),
            pool::CloseReason::eviction(victim.reason),
        );
        self.events.push_back(super::Event::Evicted {
            peer_id: gone,
            group: victim.group,
            group_size: victim.group_size,
            reason: victim.reason,
        });
        // No longer counted as an inbound slot (the newcomer, pending, holds it now), so that
        // a second newcomer in the same instant evicts another; the driver's close confirms
        // it.
        if let Some(c) = self.connections.get_mut(&victim.id) {
            c.evicted = true;
        }
        true
    }

    /// Addresses `peer` (over a connection from `remote`) told us, bounded by its budget and
    /// its group's; returns how many went into the book, or `None` without a book.
    pub(super) fn learn(
        &mut self,
        peer: PeerId,
        remote: Option<&Multiaddr>,
        points: &[(Multiaddr, Option<PeerId>)],
        now: Instant,
    ) -> Option<usize> {
        let b = self.book.as_mut()?;
        let Some(remote) = remote else {
            return Some(0);
        };
        let group = b.book.group(remote);
        let link = self.links.get_mut(&peer)?;
        let budget = link.budget.get_or_insert_with(|| Budget::new(now));
        let by_peer = budget.take(points.len(), ADDR_RATE_PER_SECOND, ADDR_BUCKET_CAP, now);
        // A group's budget starts full and is never credited: however many connections a
        // group opens, it tells us at most 1,000 addresses and then 0.1 a second. Loopback
        // and private sources (a devnet, a LAN) share no group budget: they are one group for
        // the whole local network. Relayed and DNS sources share one each.
        if b.budgets.len() >= MAX_BUDGETS {
            // A full bucket is the same as none: bounded by the groups that spent recently.
            b.budgets.retain(|_, g| {
                g.tokens(ADDR_RATE_PER_SECOND, ADDR_BUCKET_CAP, now) < ADDR_BUCKET_CAP
            });
        }
        let allowed = if !matches!(group, Group::Loopback | Group::Private) {
            let group_budget = b.budgets.entry(group).or_insert_with(|| {
                let mut full = Budget::new(now);
                full.credit(ADDR_BUCKET_CAP - 1.0);
                full
            });
            let allowed = group_budget.take(by_peer, ADDR_RATE_PER_SECOND, ADDR_BUCKET_CAP, now);
            // Tokens the group refused go back to the peer's bucket.
            budget.credit((by_peer - allowed) as f64);
            allowed
        } else {
            by_peer
        };
        if allowed < points.len() {
            tracing::debug!(%peer, %group, received = points.len(), allowed, "pex: over the address budget");
        }
        let local = self.pool.local_peer_id();
        let added = b.book.add(
            points
                .iter()
                .take(allowed)
                .filter(|(_, p)| *p != Some(local))
                .map(|(a, p)| (a, *p)),
            remote,
            now,
            &mut b.rng,
        );
        Some(added)
    }

    /// The first request on a connection is credited with the budget's cap, as Bitcoin Core
    /// credits its own `getaddr`; later ones draw on what has refilled.
    pub(super) fn credit_first_request(&mut self, peer: &PeerId, now: Instant) {
        if self.book.is_none() {
            return;
        }
        if let Some(link) = self.links.get_mut(peer)
            && !link.credited
        {
            link.credited = true;
            link.budget
                .get_or_insert_with(|| Budget::new(now))
                .credit(ADDR_BUCKET_CAP);
        }
    }

    /// A feeler, when one is due: a short connection that tests a tried incumbent a newcomer
    /// would replace, or else an address of `new`, and moves it to `tried` if it answers
    /// (Bitcoin Core PR #8282, one every 2 minutes on average). Only once the node holds its
    /// minimum of connections, as Bitcoin Core's feelers wait for full outbound slots.
    pub(super) fn feel(&mut self, now: Instant) {
        let Some(interval) = self.config.feeler_interval else {
            return;
        };
        let enough = self.pool.active() >= self.bounds().min_target();
        let Some(b) = &mut self.book else {
            return;
        };
        let due = *b
            .next_feeler
            .get_or_insert_with(|| now + exponential(&mut b.rng, interval));
        if now < due {
            return;
        }
        b.next_feeler = Some(now + exponential(&mut b.rng, interval));
        b.book.resolve_collisions(now);
        self.refresh(now);
        let Some(b) = &mut self.book else {
            return;
        };
        if !enough || !b.feelers.is_empty() {
            return;
        }
        let pool = &self.pool;
        let dialable = |c: &Candidate| pool.dialable(&c.addr, c.peer, now);
        let chosen = match b.book.tried_collision(&mut b.rng) {
            Some((incumbent, _)) if dialable(&incumbent) => Some(incumbent),
            _ => (0..10)
                .filter_map(|_| b.book.select(true, now, &mut b.rng))
                .find(|c| dialable(c)),
        };
        let Some(c) = chosen else {
            return;
        };
        self.pool
            .register_points(None, pool::Medium::Advertise, [(&c.addr, c.peer)], now);
        if let Ok(peer) = self.pool.set_requested(&c.addr, now) {
            b.book.attempt(&c.addr, false, now);
            b.feelers.insert(c.addr.clone());
            tracing::debug!(point = %c.addr, "feeler");
            self.commands.push_back(Command::Dial {
                point: c.addr,
                peer,
            });
        }
    }

    /// Keeps the book fresh: at each feeler tick, the outbound peer asked longest ago (or
    /// never) is asked for points. Without address gossip, a request is how a node hears of
    /// the peers that joined since; what it is told still draws on that peer's budget (0.1
    /// address a second once its first answer is spent), so an outbound peer cannot flood the
    /// book this way either.
    fn refresh(&mut self, now: Instant) {
        let mut eligible = self.askable(now);
        eligible.sort_by_key(|p| (self.pex_asked.get(p).copied(), *p));
        if let Some(peer) = eligible.first().copied()
            && self.pex_in_flight.len() < self.config.max_pex_in_flight
        {
            self.ask(peer, now);
        }
    }

    /// The next instant the book has work.
    pub(super) fn book_timeout(&self) -> Option<Instant> {
        let b = self.book.as_ref()?;
        let feeler = self.config.feeler_interval.and(b.next_feeler);
        [feeler, b.next_outbound].into_iter().flatten().min()
    }

    /// A dial of a point in the book succeeded: it is good (to `tried`); a feeler's connection
    /// is closed at once.
    pub(super) fn book_established(
        &mut self,
        id: C,
        peer: PeerId,
        point: &Multiaddr,
        surplus: bool,
        now: Instant,
    ) {
        let Some(b) = &mut self.book else {
            return;
        };
        b.book.good(point, now);
        let topup = b.topups.remove(point);
        if b.feelers.remove(point) || (topup && surplus) {
            self.commands
                .push_back(Command::Close { peer, id: Some(id) });
        }
    }

    /// Whether an outbound connection to `point`, being established, is a surplus of the
    /// outbound top-up: it dials several candidates per missing connection, and those that
    /// connect once the target is met are closed at once, their addresses marked good as a
    /// feeler's (they would take honest nodes' inbound slots for nothing).
    pub(super) fn surplus(&self, point: &Multiaddr) -> bool {
        self.book
            .as_ref()
            .is_some_and(|b| b.topups.contains(point) && !b.feelers.contains(point))
            // Not counted among the connections yet.
            && self.automatic_outbound().peers.len() >= self.config.outbound_target()
    }

    /// A dial of a point failed: one more attempt, counted.
    pub(super) fn book_dial_failed(&mut self, point: &Multiaddr, counted: bool, now: Instant) {
        if let Some(b) = &mut self.book {
            b.feelers.remove(point);
            b.topups.remove(point);
            if counted {
                b.book.attempt(point, true, now);
            }
            // The outbound target may be short now: look again at once.
            b.next_outbound = Some(now);
        }
    }

    /// A connection we dialed ended: its point was alive.
    pub(super) fn book_closed(&mut self, point: &Multiaddr, now: Instant) {
        if let Some(b) = &mut self.book {
            b.book.connected(point, now);
            // An outbound connection ended: the target may be short; look again at once.
            b.next_outbound = Some(now);
        }
    }
}

/// An exponential delay of mean `mean` (Bitcoin Core `GetExponentialRand`), capped at 10×.
fn exponential(rng: &mut StdRng, mean: Duration) -> Duration {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    mean.mul_f64((-u.ln()).min(10.0))
}

/// The book as the maintenance's source: trusted points first (the pool's choice, at most
/// `max_trusted`), then anchors, then draws from the book, each in a group no other automatic
/// outbound connection holds, each registered in the pool.
#[allow(clippy::too_many_arguments)]
fn pick_points(
    pool: &mut Pool,
    book: &mut AddrBook,
    rng: &mut StdRng,
    anchors: &mut Vec<(Multiaddr, Option<PeerId>)>,
    held: &mut HashSet<Group>,
    pick: Pick,
    skip: &dyn Fn(&Multiaddr) -> bool,
    automatic: usize,
) -> Vec<Multiaddr> {
    let now = pick.now;
    let not_trusted = |a: &Multiaddr| skip(a) || !pool.point(a).is_some_and(|p| p.is_trusted());
    let mut out = pool.candidates(
        now,
        pick.round_start,
        pick.max.min(pick.max_trusted),
        pick.max_trusted,
        pick.salt,
        not_trusted,
    );
    // At most `automatic` of the rest: the outbound target, or what the bounds need.
    let max = pick.max.min(out.len() + automatic);
    // Anchors: once each, before anything from the book; those the round has no room for
    // wait for the next one (those that cannot be dialed now are dropped).
    for (point, peer) in std::mem::take(anchors) {
        if skip(&point) || !pool.dialable(&point, peer, now) {
            continue;
        }
        if out.len() < max {
            held.insert(book.group(&point));
            out.push(point);
        } else {
            anchors.push((point, peer));
        }
    }
    while out.len() < max {
        let c = book.select_outbound(now, rng, |c| {
            (diverse(c.group) && held.contains(&c.group))
                || skip(&c.addr)
                || out.contains(&c.addr)
                || !pool.dialable(&c.addr, c.peer, now)
        });
        let Some(c) = c else {
            break;
        };
        pool.register_points(None, pool::Medium::Advertise, [(&c.addr, c.peer)], now);
        if pool.point(&c.addr).is_none() {
            // The pool's table is full of points it cannot collect.
            break;
        }
        book.attempt(&c.addr, false, now);
        if diverse(c.group) {
            held.insert(c.group);
        }
        out.push(c.addr);
    }
    out
}
