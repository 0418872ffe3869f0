//! The new and tried tables (Bitcoin Core `AddrManImpl`, `src/addrman.cpp`).

use std::{
    hash::Hasher,
    time::{Duration, Instant},
};

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use multiaddr::Multiaddr;
use rand::Rng;
use siphasher::sip::SipHasher13;

use super::{
    Config, Group, Grouping,
    snapshot::{self, Snapshot},
    table::Table,
};
use crate::PeerId;

/// Milliseconds since the book's epoch (may be negative for times restored from disk).
type Stamp = i64;

/// An address the book knows (Bitcoin Core `AddrInfo`).
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) addr: Multiaddr,
    /// The peer ID it was announced with, if any: a hint for the dial, never used to place it.
    pub(super) peer: Option<PeerId>,
    pub(super) group: Group,
    /// The group of the first source that told us of it (placement in `new`).
    pub(super) source: Group,
    /// When we last heard of it (Bitcoin `nTime`; pex carries no timestamps, so it is ours).
    pub(super) heard: Stamp,
    pub(super) last_try: Option<Stamp>,
    pub(super) last_count_attempt: Option<Stamp>,
    pub(super) last_success: Option<Stamp>,
    pub(super) attempts: u32,
    /// The new buckets holding it (at most `new_buckets_per_address`); empty when tried.
    pub(super) new_buckets: Vec<u32>,
    pub(super) tried: bool,
    /// Where it sits in [`AddrBook::random`].
    random_pos: u32,
}

/// A dial candidate drawn from the book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The address, without `/p2p`.
    pub addr: Multiaddr,
    /// The peer ID it was announced with, if any.
    pub peer: Option<PeerId>,
    /// Its network group.
    pub group: Group,
    /// Whether it came from the tried table.
    pub tried: bool,
}

/// Which table an address sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Heard of, never connected (or evicted from tried).
    New,
    /// Connected to.
    Tried,
}

/// Table sizes and diversity, for `GET /network/addrbook` and the metrics.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    /// Addresses in `new` (unique addresses, not slots: Bitcoin Core PR #36310).
    pub new: usize,
    /// Occupied slots of `new` (an address may fill up to 8).
    pub new_slots: usize,
    /// Addresses in `tried`.
    pub tried: usize,
    /// Network groups with an address in `new`.
    pub new_groups: usize,
    /// Network groups with an address in `tried`.
    pub tried_groups: usize,
    /// The largest group's share of `new`'s addresses, 0 to 1.
    pub new_largest_group_share: f64,
    /// The largest group's share of `tried`'s addresses, 0 to 1.
    pub tried_largest_group_share: f64,
    /// Addresses waiting for a test-before-evict probe.
    pub collisions: usize,
}

/// Why an address was not added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// It went into a new bucket (for the first time, or once more).
    Inserted,
    /// It was known and got no new bucket (already tried, already in as many buckets as an
    /// address may be, lost the stochastic test, or its slot holds a better entry).
    Known,
    /// Its group is unroutable, or it is not an address the book keeps.
    Unroutable,
}

/// The address book: Bitcoin Core's `addrman`, keyed by address (a multiaddr without `/p2p`).
/// See the [module docs](super).
#[derive(Debug, Clone)]
pub struct AddrBook {
    config: Config,
    grouping: Grouping,
    key: [u64; 2],
    /// The instant stamps count from.
    epoch: Instant,
    pub(super) entries: HashMap<u32, Entry>,
    pub(super) by_addr: HashMap<Multiaddr, u32>,
    /// Every entry ID, for uniform draws (Bitcoin `vRandom`).
    random: Vec<u32>,
    next_id: u32,
    pub(super) new: Table,
    pub(super) tried: Table,
    /// Entries in `new`.
    new_count: usize,
    /// Entries waiting to replace a tried entry (Bitcoin `m_tried_collisions`).
    collisions: HashSet<u32>,
    /// When `good` was last called (Bitcoin `nLastGood`): failures count once per good spell.
    last_good: Stamp,
}

/// A duration in milliseconds as a [`Stamp`] difference, saturating (`Duration::MAX` for a
/// rule that never fires).
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl AddrBook {
    /// An empty book keyed with `key`, the per-node secret that makes placement unpredictable
    /// to an attacker (Bitcoin `nKey`; draw it from the node's RNG and keep it with the book).
    /// Times count from `now`.
    pub fn new(config: Config, grouping: Grouping, key: [u64; 2], now: Instant) -> Self {
        AddrBook {
            config,
            grouping,
            key,
            epoch: now,
            entries: HashMap::new(),
            by_addr: HashMap::new(),
            random: Vec::new(),
            next_id: 0,
            new: Table::new(),
            tried: Table::new(),
            new_count: 0,
            collisions: HashSet::new(),
            last_good: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// How addresses are grouped.
    pub fn grouping(&self) -> &Grouping {
        &self.grouping
    }

    /// The network group of `addr` under this book's grouping.
    pub fn group(&self, addr: &Multiaddr) -> Group {
        self.grouping.group(addr)
    }

    /// Addresses in the book (new and tried).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the book is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Addresses in `new`.
    pub fn new_len(&self) -> usize {
        self.new_count
    }

    /// Addresses in `tried`.
    pub fn tried_len(&self) -> usize {
        self.entries.len() - self.new_count
    }

    /// Which table holds `addr`, if any.
    pub fn place(&self, addr: &Multiaddr) -> Option<Place> {
        let e = &self.entries[self.by_addr.get(addr)?];
        Some(if e.tried { Place::Tried } else { Place::New })
    }

    pub(super) fn stamp(&self, now: Instant) -> Stamp {
        now.saturating_duration_since(self.epoch).as_millis() as Stamp
    }

    fn hash(&self, parts: &[&[u8]]) -> u64 {
        let mut h = SipHasher13::new_with_keys(self.key[0], self.key[1]);
        for p in parts {
            h.write(p);
            // A separator, so that ("ab", "c") and ("a", "bc") differ.
            h.write_u8(0xff);
        }
        h.finish()
    }

    /// Bitcoin `AddrInfo::GetTriedBucket`: an address's group reaches at most
    /// `tried_buckets_per_group` buckets.
    fn tried_bucket(&self, e: &Entry) -> u32 {
        let h1 =
            self.hash(&[b"T1", e.addr.as_ref()]) % u64::from(self.config.tried_buckets_per_group);
        let h2 = self.hash(&[b"T2", &e.group.key(), &h1.to_le_bytes()]);
        (h2 % u64::from(self.config.tried_buckets)) as u32
    }

    /// Bitcoin `AddrInfo::GetNewBucket`: a source group reaches at most
    /// `new_buckets_per_source_group` buckets.
    fn new_bucket(&self, group: Group, source: Group) -> u32 {
        let h1 = self.hash(&[b"N1", &group.key(), &source.key()])
            % u64::from(self.config.new_buckets_per_source_group);
        let h2 = self.hash(&[b"N2", &source.key(), &h1.to_le_bytes()]);
        (h2 % u64::from(self.config.new_buckets)) as u32
    }

    /// Bitcoin `AddrInfo::GetBucketPosition`.
    fn position(&self, new: bool, bucket: u32, addr: &Multiaddr) -> u8 {
        let tag: &[u8] = if new { b"N" } else { b"K" };
        let h = self.hash(&[tag, &bucket.to_le_bytes(), addr.as_ref()]);
        (h % u64::from(self.config.bucket_size)) as u8
    }

    /// Whether `e` was dialed in the last minute: neither terrible nor stale then, as its dial
    /// may be in flight (Bitcoin `IsTerrible`'s first rule).
    fn tried_in_the_last_minute(e: &Entry, now: Stamp) -> bool {
        e.last_try.is_some_and(|t| now - t <= 60_000)
    }

    /// Bitcoin `AddrInfo::IsTerrible`: not worth keeping or dialing.
    pub(super) fn is_terrible(&self, e: &Entry, now: Stamp) -> bool {
        let c = &self.config;
        let ms = millis;
        if Self::tried_in_the_last_minute(e, now) {
            return false;
        }
        // Heard of in the future (only a restored file can say so).
        if e.heard > now + ms(Duration::from_secs(600)) {
            return true;
        }
        if now - e.heard > ms(c.horizon) {
            return true;
        }
        if e.last_success.is_none() && e.attempts >= c.retries {
            return true;
        }
        if e.last_success.is_none_or(|t| now - t > ms(c.min_fail)) && e.attempts >= c.max_failures {
            return true;
        }
        false
    }

    /// Whether neither heard of nor connected to for
    /// [`stale_after`](super::Config::with_stale_after); never one tried in the last minute
    /// (as [`is_terrible`](Self::is_terrible)), so that a dial in flight keeps its entry.
    pub(super) fn is_stale(&self, e: &Entry, now: Stamp) -> bool {
        if Self::tried_in_the_last_minute(e, now) {
            return false;
        }
        let seen = e.last_success.map_or(e.heard, |t| t.max(e.heard));
        now - seen > millis(self.config.stale_after)
    }

    /// Bitcoin `AddrInfo::GetChance`: ×0.01 if tried in the last 10 minutes, ×0.66 per failed
    /// attempt up to 8; and ours, ×0.01 if [stale](super::Config::with_stale_after).
    fn chance(&self, e: &Entry, now: Stamp) -> f64 {
        let mut chance = 1.0;
        if e.last_try.is_some_and(|t| now - t < 600_000) {
            chance *= 0.01;
        }
        if self.is_stale(e, now) {
            chance *= 0.01;
        }
        chance * 0.66f64.powi(e.attempts.min(8) as i32)
    }

    /// Adds addresses that a source told us of (Bitcoin `AddrMan::Add`). `source` is the
    /// address of the connection they came over (its group places them, so that one source
    /// group reaches at most 64 of the 1,024 new buckets); an address a peer gives for itself
    /// has itself as source. Each is a point (any `/p2p` suffix is stripped and kept as the
    /// hint `peer`). Returns how many went into a new bucket.
    pub fn add<'a>(
        &mut self,
        addrs: impl IntoIterator<Item = (&'a Multiaddr, Option<PeerId>)>,
        source: &Multiaddr,
        now: Instant,
        rng: &mut impl Rng,
    ) -> usize {
        let source = self.grouping.group(source);
        addrs
            .into_iter()
            .filter(|(a, p)| self.add_one(a, *p, source, now, rng) == Added::Inserted)
            .count()
    }

    /// Adds one address heard from a source of group `source` (Bitcoin `AddSingle`).
    pub fn add_one(
        &mut self,
        addr: &Multiaddr,
        peer: Option<PeerId>,
        source: Group,
        now: Instant,
        rng: &mut impl Rng,
    ) -> Added {
        let Ok((addr, suffix)) = crate::pool::split_point(addr) else {
            return Added::Unroutable;
        };
        let peer = match (peer, suffix) {
            (Some(a), Some(b)) if a != b => return Added::Unroutable,
            (a, b) => a.or(b),
        };
        let group = self.grouping.group(&addr);
        if group == Group::Unroutable {
            return Added::Unroutable;
        }
        let now = self.stamp(now);
        let id = match self.by_addr.get(&addr) {
            Some(&id) => {
                let e = self.entries.get_mut(&id).expect("indexed entries exist");
                let fresh = now - e.heard < 24 * 3_600_000;
                let interval = if fresh { 3_600_000 } else { 24 * 3_600_000 };
                let updated = e.heard < now - interval;
                if updated {
                    e.heard = now;
                }
                if e.peer.is_none() {
                    e.peer = peer;
                }
                // No new information, already tried, or in as many buckets as allowed.
                if !updated
                    || e.tried
                    || e.new_buckets.len() >= self.config.new_buckets_per_address as usize
                {
                    return Added::Known;
                }
                // Each copy makes the next twice as hard to add.
                let factor = 1u64 << e.new_buckets.len().min(63);
                if rng.random_range(0..factor) != 0 {
                    return Added::Known;
                }
                id
            }
            None => self.create(addr.clone(), peer, group, source, now),
        };
        let bucket = self.new_bucket(group, source);
        let pos = self.position(true, bucket, &addr);
        let mut insert = true;
        if let Some(existing) = self.new.get(bucket, pos) {
            if existing == id {
                return Added::Known;
            }
            let other = &self.entries[&existing];
            let refs = self.entries[&id].new_buckets.len();
            // Overwrite a terrible or stale entry, or one with other copies when this one has
            // none.
            insert = self.is_terrible(other, now)
                || self.is_stale(other, now)
                || (other.new_buckets.len() > 1 && refs == 0);
        }
        if insert {
            self.clear_new(bucket, pos);
            self.new.set(bucket, pos, id);
            let e = self.entries.get_mut(&id).expect("the entry exists");
            if e.new_buckets.is_empty() {
                self.new_count += 1;
            }
            e.new_buckets.push(bucket);
            Added::Inserted
        } else {
            if self.entries[&id].new_buckets.is_empty() {
                self.delete(id);
            }
            Added::Known
        }
    }

    fn create(
        &mut self,
        addr: Multiaddr,
        peer: Option<PeerId>,
        group: Group,
        source: Group,
        heard: Stamp,
    ) -> u32 {
        // IDs wrap after 2^32 creations: skip those still in use.
        while self.entries.contains_key(&self.next_id) {
            self.next_id = self.next_id.wrapping_add(1);
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.by_addr.insert(addr.clone(), id);
        self.entries.insert(
            id,
            Entry {
                addr,
                peer,
                group,
                source,
                heard,
                last_try: None,
                last_count_attempt: None,
                last_success: None,
                attempts: 0,
                new_buckets: Vec::new(),
                tried: false,
                random_pos: self.random.len() as u32,
            },
        );
        self.random.push(id);
        id
    }

    /// Removes an entry that is in no table.
    fn delete(&mut self, id: u32) {
        let e = self.entries.remove(&id).expect("deleted entries exist");
        debug_assert!(!e.tried && e.new_buckets.is_empty());
        self.by_addr.remove(&e.addr);
        self.collisions.remove(&id);
        let pos = e.random_pos as usize;
        self.random.swap_remove(pos);
        if let Some(&moved) = self.random.get(pos) {
            self.entries
                .get_mut(&moved)
                .expect("listed entries exist")
                .random_pos = pos as u32;
        }
    }

    /// Empties a new slot (Bitcoin `ClearNew`); its entry goes if that was its last copy.
    fn clear_new(&mut self, bucket: u32, pos: u8) {
        let Some(id) = self.new.clear(bucket, pos) else {
            return;
        };
        let e = self.entries.get_mut(&id).expect("slots hold live entries");
        e.new_buckets.retain(|&b| b != bucket);
        if e.new_buckets.is_empty() {
            self.new_count -= 1;
            self.delete(id);
        }
    }

    /// Records a successful outbound connection to `addr` (Bitcoin `AddrMan::Good`): its
    /// failures reset, and it moves to `tried`. If its tried slot is taken, it waits in the
    /// collision buffer (at most `max_collisions`) until a feeler tests the incumbent
    /// (test-before-evict). Returns whether it moved to `tried` now.
    pub fn good(&mut self, addr: &Multiaddr, now: Instant) -> bool {
        let now = self.stamp(now);
        self.last_good = now;
        let Some(&id) = self.by_addr.get(addr) else {
            return false;
        };
        let e = self.entries.get_mut(&id).expect("indexed entries exist");
        e.last_success = Some(now);
        e.last_try = Some(now);
        e.attempts = 0;
        if e.tried {
            return false;
        }
        let bucket = self.tried_bucket(&self.entries[&id]);
        let pos = self.position(false, bucket, addr);
        if self.config.test_before_evict && self.tried.get(bucket, pos).is_some() {
            if self.collisions.len() < self.config.max_collisions {
                self.collisions.insert(id);
            }
            return false;
        }
        self.make_tried(id, bucket, pos);
        true
    }

    /// Bitcoin `MakeTried`: out of every new bucket and into its tried slot; an incumbent goes
    /// back to `new`.
    fn make_tried(&mut self, id: u32, bucket: u32, pos: u8) {
        let addr = self.entries[&id].addr.clone();
        let buckets = std::mem::take(&mut self.entries.get_mut(&id).expect("exists").new_buckets);
        for b in buckets {
            let p = self.position(true, b, &addr);
            self.new.clear(b, p);
        }
        self.new_count -= 1;
        if let Some(old) = self.tried.clear(bucket, pos) {
            let e = &self.entries[&old];
            let (group, source, old_addr) = (e.group, e.source, e.addr.clone());
            self.entries.get_mut(&old).expect("exists").tried = false;
            let b = self.new_bucket(group, source);
            let p = self.position(true, b, &old_addr);
            self.clear_new(b, p);
            self.new.set(b, p, old);
            self.entries.get_mut(&old).expect("exists").new_buckets = vec![b];
            self.new_count += 1;
        }
        self.tried.set(bucket, pos, id);
        self.entries.get_mut(&id).expect("exists").tried = true;
    }

    /// Records a dial of `addr` (Bitcoin `AddrMan::Attempt`); `count_failure` for a failed
    /// automatic dial, counted at most once since the last [`AddrBook::good`] of any address
    /// (so that a node that lost its network does not condemn the whole book).
    pub fn attempt(&mut self, addr: &Multiaddr, count_failure: bool, now: Instant) {
        let now = self.stamp(now);
        let last_good = self.last_good;
        let Some(e) = self
            .by_addr
            .get(addr)
            .and_then(|id| self.entries.get_mut(id))
        else {
            return;
        };
        e.last_try = Some(now);
        if count_failure && e.last_count_attempt.is_none_or(|t| t < last_good) {
            e.last_count_attempt = Some(now);
            e.attempts = e.attempts.saturating_add(1);
        }
    }

    /// Records the end of a connection to `addr` (Bitcoin `AddrMan::Connected`): it was alive,
    /// so it is heard of now (at most every 20 minutes).
    pub fn connected(&mut self, addr: &Multiaddr, now: Instant) {
        let now = self.stamp(now);
        if let Some(e) = self
            .by_addr
            .get(addr)
            .and_then(|id| self.entries.get_mut(id))
            && now - e.heard > 20 * 60_000
        {
            e.heard = now;
        }
    }

    /// Forgets `addr` (a banned point, or one an operator removed). Returns whether it was
    /// known.
    pub fn remove(&mut self, addr: &Multiaddr) -> bool {
        let Some(&id) = self.by_addr.get(addr) else {
            return false;
        };
        let e = self.entries.get_mut(&id).expect("indexed entries exist");
        let addr = e.addr.clone();
        if e.tried {
            e.tried = false;
            let bucket = self.tried_bucket(&self.entries[&id]);
            let pos = self.position(false, bucket, &addr);
            self.tried.clear(bucket, pos);
            self.delete(id);
        } else {
            for b in self.entries[&id].new_buckets.clone() {
                let p = self.position(true, b, &addr);
                self.clear_new(b, p);
            }
        }
        true
    }

    /// Draws a dial candidate (Bitcoin `AddrMan::Select`): `tried` or `new` with even odds
    /// (only `new` if `new_only`, for a feeler), a slot at random, kept with its
    /// chance (Bitcoin `GetChance`, and ×0.01 if stale) or drawn again with the odds raised ×1.2.
    /// `None` if the table is empty.
    pub fn select(&self, new_only: bool, now: Instant, rng: &mut impl Rng) -> Option<Candidate> {
        let now = self.stamp(now);
        let tried_len = self.tried_len();
        let tried = if new_only || tried_len == 0 {
            false
        } else if self.new_count == 0 {
            true
        } else {
            rng.random_bool(0.5)
        };
        if !tried && self.new_count == 0 {
            return None;
        }
        let table = if tried { &self.tried } else { &self.new };
        let mut factor = 1.0;
        loop {
            let id = table.draw(rng, self.config.bucket_size)?;
            let e = &self.entries[&id];
            if rng.random::<f64>() < factor * self.chance(e, now) {
                return Some(Candidate {
                    addr: e.addr.clone(),
                    peer: e.peer,
                    group: e.group,
                    tried,
                });
            }
            factor *= 1.2;
        }
    }

    /// Draws an address for an automatic outbound dial as Bitcoin Core's
    /// `ThreadOpenConnections` does: up to 100 draws, skipping those `skip` refuses (a group
    /// we already hold an outbound connection to, a banned or connected point) and, for the
    /// first 30, those tried in the last 10 minutes.
    pub fn select_outbound(
        &self,
        now: Instant,
        rng: &mut impl Rng,
        mut skip: impl FnMut(&Candidate) -> bool,
    ) -> Option<Candidate> {
        let stamp = self.stamp(now);
        for tries in 1..=100 {
            let c = self.select(false, now, rng)?;
            if skip(&c) {
                continue;
            }
            let e = &self.entries[&self.by_addr[&c.addr]];
            if tries < 30 && e.last_try.is_some_and(|t| stamp - t < 600_000) {
                continue;
            }
            return Some(c);
        }
        None
    }

    /// An incumbent of `tried` that a waiting address would replace, for a feeler to test
    /// (Bitcoin `SelectTriedCollision`). Returns the incumbent and the waiting address.
    pub fn tried_collision(&mut self, rng: &mut impl Rng) -> Option<(Candidate, Multiaddr)> {
        if self.collisions.is_empty() {
            return None;
        }
        // The smallest IDs first would be predictable; draw one.
        let mut ids: Vec<u32> = self.collisions.iter().copied().collect();
        ids.sort_unstable();
        let id = ids[rng.random_range(0..ids.len())];
        let Some(e) = self.entries.get(&id) else {
            self.collisions.remove(&id);
            return None;
        };
        let bucket = self.tried_bucket(e);
        let pos = self.position(false, bucket, &e.addr);
        let waiting = e.addr.clone();
        let old = self.tried.get(bucket, pos)?;
        let o = &self.entries[&old];
        Some((
            Candidate {
                addr: o.addr.clone(),
                peer: o.peer,
                group: o.group,
                tried: true,
            },
            waiting,
        ))
    }

    /// Settles the collision buffer (Bitcoin `ResolveCollisions`): an incumbent that
    /// succeeded in the last `replacement` (4 h) stays; one tried in that time without success
    /// (the feeler failed) and at least 60 s ago gives way; if the newcomer has waited longer
    /// than `test_window` (40 min) without the incumbent being tested, it gives way too.
    pub fn resolve_collisions(&mut self, now: Instant) {
        let now = self.stamp(now);
        let ms = millis;
        let mut ids: Vec<u32> = self.collisions.iter().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let Some(e) = self.entries.get(&id) else {
                self.collisions.remove(&id);
                continue;
            };
            if e.tried {
                self.collisions.remove(&id);
                continue;
            }
            let bucket = self.tried_bucket(e);
            let pos = self.position(false, bucket, &e.addr);
            let erase = match self.tried.get(bucket, pos) {
                None => true,
                Some(old) => {
                    let o = &self.entries[&old];
                    let replacement = ms(self.config.replacement);
                    if o.last_success.is_some_and(|t| now - t < replacement) {
                        self.collisions.remove(&id);
                        continue;
                    }
                    if o.last_try.is_some_and(|t| now - t < replacement) {
                        now - o.last_try.expect("checked") > 60_000
                    } else {
                        e.last_success
                            .is_some_and(|t| now - t > ms(self.config.test_window))
                    }
                }
            };
            if erase {
                self.collisions.remove(&id);
                self.make_tried(id, bucket, pos);
            }
        }
    }

    /// Addresses to advertise (Bitcoin `AddrMan::GetAddr`): a random `max_pct` percent of the
    /// book, at most `max`, leaving out terrible and stale ones; each with `/p2p` when its peer
    /// is known.
    pub fn advertise(
        &self,
        max: usize,
        max_pct: usize,
        now: Instant,
        rng: &mut impl Rng,
    ) -> Vec<(Multiaddr, Option<PeerId>)> {
        let now = self.stamp(now);
        let n = (self.random.len() * max_pct / 100).min(max);
        let mut order = self.random.clone();
        let mut out = Vec::with_capacity(n);
        for i in 0..order.len() {
            if out.len() >= n {
                break;
            }
            let j = rng.random_range(i..order.len());
            order.swap(i, j);
            let e = &self.entries[&order[i]];
            if !self.is_terrible(e, now) && !self.is_stale(e, now) {
                out.push((e.addr.clone(), e.peer));
            }
        }
        out
    }

    /// Table sizes and the diversity of each.
    pub fn stats(&self) -> Stats {
        let mut new: HashMap<Group, usize> = HashMap::new();
        let mut tried: HashMap<Group, usize> = HashMap::new();
        for e in self.entries.values() {
            *(if e.tried { &mut tried } else { &mut new })
                .entry(e.group)
                .or_default() += 1;
        }
        let share = |m: &HashMap<Group, usize>, total: usize| {
            m.values().max().map_or(0.0, |&n| n as f64 / total as f64)
        };
        Stats {
            new: self.new_count,
            new_slots: self.new.slots(),
            tried: self.tried_len(),
            new_groups: new.len(),
            tried_groups: tried.len(),
            new_largest_group_share: share(&new, self.new_count),
            tried_largest_group_share: share(&tried, self.tried_len()),
            collisions: self.collisions.len(),
        }
    }

    /// Checks the invariants (tests and debug builds): every slot holds a live entry in the
    /// right position, counts match, each entry is in exactly its table.
    #[doc(hidden)]
    pub fn check(&self) {
        let mut new_refs: HashMap<u32, usize> = HashMap::new();
        for (b, p, id) in self.new.iter() {
            let e = &self.entries[&id];
            assert!(!e.tried && e.new_buckets.contains(&b));
            assert_eq!(self.position(true, b, &e.addr), p);
            *new_refs.entry(id).or_default() += 1;
        }
        let mut tried = 0;
        for (b, p, id) in self.tried.iter() {
            let e = &self.entries[&id];
            assert!(e.tried && e.new_buckets.is_empty());
            assert_eq!(
                (self.tried_bucket(e), self.position(false, b, &e.addr)),
                (b, p)
            );
            tried += 1;
        }
        assert_eq!(tried, self.tried_len());
        assert_eq!(new_refs.len(), self.new_count);
        for (id, e) in &self.entries {
            assert_eq!(self.by_addr[&e.addr], *id);
            assert_eq!(self.random[e.random_pos as usize], *id);
            assert_eq!(new_refs.get(id).copied().unwrap_or(0), e.new_buckets.len());
            assert!(e.tried || !e.new_buckets.is_empty(), "an entry in no table");
            assert!(e.new_buckets.len() <= self.config.new_buckets_per_address as usize);
        }
        assert_eq!(self.random.len(), self.entries.len());
    }

    /// The book as it can be saved, with times as ages at `now`.
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let now = self.stamp(now);
        let age = |t: Stamp| (now - t).max(0) as u64 / 1000;
        let mut entries: Vec<&Entry> = self.entries.values().collect();
        entries.sort_unstable_by(|a, b| a.addr.as_ref().cmp(b.addr.as_ref()));
        Snapshot {
            version: snapshot::VERSION,
            key: self.key,
            new_buckets: self.config.new_buckets,
            tried_buckets: self.config.tried_buckets,
            bucket_size: self.config.bucket_size,
            asmap: self.grouping.asmap().map(|m| m.checksum()),
            loopback_as_public: self.grouping.loopback_as_public(),
            entries: entries
                .into_iter()
                .map(|e| snapshot::Entry {
                    addr: e.addr.clone(),
                    peer: e.peer,
                    source: e.source,
                    heard_ago: age(e.heard),
                    last_try_ago: e.last_try.map(age),
                    last_success_ago: e.last_success.map(age),
                    attempts: e.attempts,
                    new_buckets: e.new_buckets.clone(),
                    tried: e.tried,
                })
                .collect(),
            anchors: Vec::new(),
        }
    }

    /// A book from a snapshot: its key, and its positions when they still hold (the same
    /// geometry and grouping); otherwise, as Bitcoin Core does after an asmap change, every
    /// address is placed anew from its source. Entries that do not fit (a taken slot, a
    /// duplicate) are dropped and counted in the returned number.
    pub fn restore(
        snapshot: Snapshot,
        config: Config,
        grouping: Grouping,
        now: Instant,
    ) -> (Self, usize) {
        let mut book = AddrBook::new(config, grouping, snapshot.key, now);
        let n = snapshot.entries.len();
        book.entries.reserve(n);
        book.by_addr.reserve(n);
        book.random.reserve(n);
        let same = snapshot.new_buckets == book.config.new_buckets
            && snapshot.tried_buckets == book.config.tried_buckets
            && snapshot.bucket_size == book.config.bucket_size
            && snapshot.asmap == book.grouping.asmap().map(|m| m.checksum())
            && snapshot.loopback_as_public == book.grouping.loopback_as_public();
        let stamp = book.stamp(now);
        let at = |ago: u64| stamp - (ago.min(u64::MAX / 2000) as i64) * 1000;
        let mut dropped = 0;
        let mut tried_later = Vec::new();
        for s in snapshot.entries {
            let group = book.grouping.group(&s.addr);
            if group == Group::Unroutable
                || book.by_addr.contains_key(&s.addr)
                || s.addr
                    .iter()
                    .any(|p| matches!(p, multiaddr::Protocol::P2p(_)))
            {
                dropped += 1;
                continue;
            }
            let addr = s.addr;
            let id = book.create(addr.clone(), s.peer, group, s.source, at(s.heard_ago));
            let e = book.entries.get_mut(&id).expect("just created");
            e.last_try = s.last_try_ago.map(at);
            e.last_success = s.last_success_ago.map(at);
            e.attempts = s.attempts;
            if s.tried {
                tried_later.push(id);
                continue;
            }
            let mut buckets: Vec<u32> = if same {
                s.new_buckets
                    .iter()
                    .copied()
                    .filter(|&b| b < book.config.new_buckets)
                    .take(book.config.new_buckets_per_address as usize)
                    .collect()
            } else {
                Vec::new()
            };
            if buckets.is_empty() {
                buckets.push(book.new_bucket(group, s.source));
            }
            for b in buckets {
                let p = book.position(true, b, &addr);
                if book.new.get(b, p).is_none() {
                    book.new.set(b, p, id);
                    book.entries
                        .get_mut(&id)
                        .expect("exists")
                        .new_buckets
                        .push(b);
                }
            }
            if book.entries[&id].new_buckets.is_empty() {
                book.delete(id);
                dropped += 1;
            } else {
                book.new_count += 1;
            }
        }
        // Tried positions are a function of the address: recomputed, as Bitcoin Core does.
        for id in tried_later {
            let e = &book.entries[&id];
            let bucket = book.tried_bucket(e);
            let pos = book.position(false, bucket, &e.addr);
            if book.tried.get(bucket, pos).is_none() {
                book.tried.set(bucket, pos, id);
                book.entries.get_mut(&id).expect("exists").tried = true;
            } else {
                // Bitcoin Core drops these too ("lost" on load).
                book.delete(id);
                dropped += 1;
            }
        }
        (book, dropped)
    }
}
