//! Inbound eviction: when the inbound slots are full and a new inbound connection arrives, the
//! choice of an inbound connection to close for it (Bitcoin Core `SelectNodeToEvict`,
//! `src/node/eviction.cpp`).
//!
//! [`select`] is a pure function of the candidates, a per-node secret key and a [`Config`].
//! Each protection step sorts the remaining candidates by one signal and removes the best few
//! from the candidates: they are safe for this decision. A candidate survives to the end only if
//! no step protected it; among the survivors the victim is the youngest connection of the most
//! represented network group. The steps, in Bitcoin's order (the default counts are Bitcoin's):
//!
//! 1. Candidates with [`Candidate::protected`] set (protected, trusted or allowlisted peers;
//!    Bitcoin's `noban` permission) are removed first: **a protected candidate is never
//!    evicted**. (Bitcoin also removes outbound connections here; only inbound connections are
//!    passed in.)
//! 2. **Keyed network group** (4): the candidates are sorted by a hash of their [`Group`] keyed
//!    by the node's secret, and the last 4 are protected (Bitcoin `CompareNetGroupKeyed`). This
//!    protects 4 *connections*, not 4 groups: with one connection per group (the honest case)
//!    that is 4 groups, but a group whose hash sorts last and holds several connections takes
//!    several of the 4 slots (for its longest-connected members). Because the key is secret,
//!    an attacker cannot pick addresses whose group will be protected.
//! 3. **Lowest ping** (8): the 8 candidates with the lowest minimum ping, an unknown ping
//!    counting as the worst (Bitcoin `ReverseCompareNodeMinPingTime`). An attacker cannot
//!    lower it without moving closer.
//! 4. **Most recently useful** (4): in place of Bitcoin's "most recently sent a novel
//!    transaction" (`CompareNodeTXTime`), the 4 candidates most recently useful to the node
//!    ([`Candidate::last_useful`]: the node machine sets it when the peer answered a request
//!    for points with an address new to the node; never useful sorts first), ties by the
//!    higher tag value. With an address book, only peers the node also dialed are asked, so
//!    among inbound peers this step mostly falls back to the tag values.
//! 5. **Highest tag value** (4): in place of Bitcoin's "most recently sent a novel block"
//!    (`CompareNodeBlockTime`), the 4 candidates the connection manager values most
//!    ([`Candidate::tag_value`]), ties by the more recently useful. Bitcoin's step before
//!    this one (up to 8 block-relay-only peers that sent novel blocks) has no libp2p analogue
//!    and is left out, so the fixed steps protect at most 20 candidates, where Bitcoin's protect
//!    at most 28.
//! 6. **Uptime** (half of the rest; Bitcoin `ProtectEvictionCandidatesByRatio`): half of the
//!    remaining candidates (rounded down), the longest connected. Up to half of those slots (a
//!    quarter of the remaining candidates) go first to the longest-connected
//!    [`Candidate::disadvantaged`] candidates (loopback, relayed: Peerage's one class for
//!    Bitcoin's localhost, onion, I2P and CJDNS peers, which the other criteria, latency above
//!    all, tend to disfavour), however their uptime compares with the others'; the slots they
//!    leave unused go to uptime. Bitcoin shares its reserved slots between its four networks,
//!    the networks with fewer candidates first; with one class that sharing reduces to "the
//!    oldest disadvantaged candidates".
//! 7. **Prefer evict**: if any survivor has [`Candidate::prefer_evict`] set (misbehaving
//!    peers), only those remain. This comes after the protections, as in Bitcoin: a peer that
//!    is the best by another criterion is kept however it behaves.
//! 8. **Most represented group**: the group with the most survivors (ties: the group whose
//!    youngest survivor is the youngest) loses its youngest survivor.
//!
//! If nothing survives the protections, there is no victim ([`select`] returns `None`) and the
//! caller refuses the new inbound connection instead (as Bitcoin's `AttemptToEvictConnection`).
//!
//! # Determinism
//!
//! Bitcoin sorts with `std::sort`, so candidates that tie on a step's criteria are protected in
//! an unspecified order. Here every step breaks ties the same way, so that the victim does not
//! depend on the order of the candidates: the longest-connected candidate is protected first
//! (the last tie-break of Bitcoin's own `CompareNodeTXTime` and `CompareNodeBlockTime`), and
//! between equal connection times the one with the smaller `id` (connection ids grow, so the
//! smaller id is taken as the older connection). The keyed-group step breaks a hash collision by
//! the [`Group`]'s order before that. "Youngest" in step 8 uses the same order: the latest
//! [`Candidate::connected`], then the larger `id`. Ids are assumed distinct; with duplicate ids
//! the choice between the duplicates may depend on their order.
//!
//! The keyed hash is foldhash's, seeded with the key. It is not a cryptographic hash as
//! Bitcoin's SipHash is: it keeps the order of the groups unknown to an attacker who does not
//! know the key, which is what the step needs, without SipHash's guarantees against one who
//! can probe it at will; at stake are 4 of the inbound slots.
//!
//! # Cost
//!
//! Each step is a linear selection (`select_nth_unstable`) over indices, not a sort as in
//! Bitcoin. The cost of one decision over 1,000 inbound candidates (target: at most 50 µs) is
//! measured by `cargo bench -p peerage-core --bench evict`, beside one sort of the same
//! candidates, the cost of each step of a port with full sorts; the figures, with their date
//! and commit, are in the benchmarks' README.

use std::{
    cmp::Ordering,
    collections::HashMap,
    fmt,
    hash::BuildHasher,
    time::{Duration, Instant},
};

use foldhash::fast::FixedState;

use super::Group;

/// One inbound connection that might be evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<K> {
    /// The connection (or peer) key, opaque to the selection; returned in [`Victim::id`] and
    /// used as the last tie-break (see the [module docs](self)). Distinct per candidate.
    pub id: K,
    /// The network group of the remote address.
    pub group: Group,
    /// When the connection was established.
    pub connected: Instant,
    /// The lowest ping seen on the connection; `None` (unknown) sorts as the worst.
    pub min_ping: Option<Duration>,
    /// The last time the peer was useful (an answer to a request for points that brought an
    /// address new to the node); `None`: never.
    pub last_useful: Option<Instant>,
    /// The connection manager's tag value for the peer: higher is more valuable.
    pub tag_value: i64,
    /// Protected, trusted or allowlisted: never evicted (Bitcoin's `noban`).
    pub protected: bool,
    /// Misbehaving: preferred as the victim among the candidates no step protects (Bitcoin's
    /// `prefer_evict`).
    pub prefer_evict: bool,
    /// On a network the other criteria disfavour (loopback, relayed): eligible for the
    /// reserved share of the uptime protection (Bitcoin's localhost, onion, I2P and CJDNS).
    pub disadvantaged: bool,
}

/// The step that chose the victim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The youngest connection of the most represented group among the unprotected
    /// candidates.
    MostRepresentedGroup,
    /// As [`MostRepresentedGroup`](Reason::MostRepresentedGroup), among only the unprotected
    /// candidates marked [`prefer_evict`](Candidate::prefer_evict).
    PreferEvict,
}

impl Reason {
    /// A short name, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MostRepresentedGroup => "most represented group",
            Reason::PreferEvict => "prefer evict",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The connection to evict, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Victim<K> {
    /// The chosen candidate's [`id`](Candidate::id).
    pub id: K,
    /// The step that chose it.
    pub reason: Reason,
    /// Its network group.
    pub group: Group,
    /// How many candidates of that group were left when it was chosen (after the protections,
    /// and after the prefer-evict filter if that applied), itself included.
    pub group_size: usize,
}

/// How many candidates each protection step of [`select`] protects.
///
/// Default: Bitcoin Core's constants (4 by keyed group, 8 by ping, 4 by usefulness, 4 by tag
/// value, half of the rest by uptime with half of that reserved for disadvantaged candidates).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    by_group: usize,
    by_ping: usize,
    by_useful: usize,
    by_tag: usize,
    uptime_ratio: f64,
    disadvantaged_share: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            by_group: 4,
            by_ping: 8,
            by_useful: 4,
            by_tag: 4,
            uptime_ratio: 0.5,
            disadvantaged_share: 0.5,
        }
    }
}

impl Config {
    /// Bitcoin Core's counts; see the setters.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many candidates are protected by keyed network group. 4 by default (Bitcoin:
    /// `EraseLastKElements(vEvictionCandidates, CompareNetGroupKeyed, 4)`).
    pub fn with_protect_by_group(mut self, n: usize) -> Self {
        self.by_group = n;
        self
    }

    /// How many candidates with the lowest ping are protected. 8 by default (Bitcoin:
    /// `EraseLastKElements(vEvictionCandidates, ReverseCompareNodeMinPingTime, 8)`).
    pub fn with_protect_by_ping(mut self, n: usize) -> Self {
        self.by_ping = n;
        self
    }

    /// How many of the most recently useful candidates are protected. 4 by default (Bitcoin's
    /// novel-transaction step: `EraseLastKElements(vEvictionCandidates, CompareNodeTXTime, 4)`).
    pub fn with_protect_by_useful(mut self, n: usize) -> Self {
        self.by_useful = n;
        self
    }

    /// How many candidates with the highest tag value are protected. 4 by default (Bitcoin's
    /// novel-block step: `EraseLastKElements(vEvictionCandidates, CompareNodeBlockTime, 4)`).
    pub fn with_protect_by_tag(mut self, n: usize) -> Self {
        self.by_tag = n;
        self
    }

    /// The share of the candidates left after the fixed steps that is protected by uptime,
    /// rounded down. `0.5` by default (Bitcoin `ProtectEvictionCandidatesByRatio`:
    /// `total_protect_size{initial_size / 2}`).
    ///
    /// # Panics
    ///
    /// If `ratio` is not in `0.0..=1.0`.
    pub fn with_protect_by_uptime(mut self, ratio: f64) -> Self {
        assert!(
            (0.0..=1.0).contains(&ratio),
            "uptime ratio must be in 0.0..=1.0"
        );
        self.uptime_ratio = ratio;
        self
    }

    /// The share of the uptime-protected slots reserved for disadvantaged candidates, rounded
    /// down. `0.5` by default, a quarter of the candidates at the default uptime ratio (Bitcoin
    /// `ProtectEvictionCandidatesByRatio`: `max_protect_by_network{total_protect_size / 2}`).
    /// `0.0` protects by uptime alone.
    ///
    /// # Panics
    ///
    /// If `share` is not in `0.0..=1.0`.
    pub fn with_disadvantaged_share(mut self, share: f64) -> Self {
        assert!(
            (0.0..=1.0).contains(&share),
            "disadvantaged share must be in 0.0..=1.0"
        );
        self.disadvantaged_share = share;
        self
    }

    /// How many of `n` candidates the uptime step protects.
    fn uptime_count(&self, n: usize) -> usize {
        // Exact for 0.5 (`n / 2`); the product is at most `n`.
        (n as f64 * self.uptime_ratio) as usize
    }

    /// How many of the `total` uptime slots are reserved for disadvantaged candidates.
    fn disadvantaged_count(&self, total: usize) -> usize {
        (total as f64 * self.disadvantaged_share) as usize
    }
}

/// The inbound connection to evict among `candidates` (Bitcoin Core `SelectNodeToEvict`; the
/// steps are in the [module docs](self)), or `None` if the protections leave none.
///
/// `key` is the node's secret for the keyed-group step: draw it once from a secure random
/// source and keep it for the life of the node (Bitcoin derives `nKeyedNetGroup` from a
/// per-node randomizer). Protected candidates are never chosen. The result does not depend on
/// the order of `candidates` (ids distinct).
pub fn select<K: Copy + Ord>(
    candidates: &[Candidate<K>],
    key: u64,
    config: &Config,
) -> Option<Victim<K>> {
    let c = candidates;
    let mut work = survivors(c, key, config);
    if work.is_empty() {
        return None;
    }

    // 7. If any survivor is preferred for eviction, consider only those.
    let reason = if work.iter().any(|&i| c[i].prefer_evict) {
        work.retain(|&i| c[i].prefer_evict);
        Reason::PreferEvict
    } else {
        Reason::MostRepresentedGroup
    };

    // 8. The group with the most survivors and the youngest member loses its youngest.
    // Per group: (count, index of its youngest member).
    let mut groups: HashMap<Group, (usize, usize), FixedState> =
        HashMap::with_capacity_and_hasher(work.len(), FixedState::with_seed(key));
    for &i in &work {
        let entry = groups.entry(c[i].group).or_insert((0, i));
        entry.0 += 1;
        if younger(&c[i], &c[entry.1]) == Ordering::Greater {
            entry.1 = i;
        }
    }
    let (group, (group_size, victim)) = groups
        .into_iter()
        .max_by(|(_, a), (_, b)| a.0.cmp(&b.0).then_with(|| younger(&c[a.1], &c[b.1])))?;
    Some(Victim {
        id: c[victim].id,
        reason,
        group,
        group_size,
    })
}

/// Steps 1 to 6: the indices of the candidates that no step protects, in no particular order.
fn survivors<K: Copy + Ord>(c: &[Candidate<K>], key: u64, config: &Config) -> Vec<usize> {
    // 1. Protected candidates are never evicted.
    let mut work: Vec<usize> = (0..c.len()).filter(|&i| !c[i].protected).collect();

    // 2. Keyed network group: the last by a secret order of groups.
    let hashes: Vec<u64> = c.iter().map(|x| keyed(key, x.group)).collect();
    erase_last_k(&mut work, config.by_group, |a, b| {
        hashes[a]
            .cmp(&hashes[b])
            .then_with(|| c[a].group.cmp(&c[b].group))
            .then_with(|| by_age(&c[a], &c[b]))
    });
    // 3. Lowest ping.
    erase_last_k(&mut work, config.by_ping, |a, b| by_ping(&c[a], &c[b]));
    // 4. Most recently useful.
    erase_last_k(&mut work, config.by_useful, |a, b| by_useful(&c[a], &c[b]));
    // 5. Highest tag value.
    erase_last_k(&mut work, config.by_tag, |a, b| by_tag(&c[a], &c[b]));
    // 6. Uptime, with a share reserved for disadvantaged candidates.
    protect_by_ratio(c, &mut work, config);
    work
}

/// Bitcoin `ProtectEvictionCandidatesByRatio` with one disadvantaged class.
fn protect_by_ratio<K: Copy + Ord>(c: &[Candidate<K>], work: &mut Vec<usize>, config: &Config) {
    let n = work.len();
    let total = config.uptime_count(n);
    let reserved = config.disadvantaged_count(total);
    // Bitcoin's loop over its networks, for one network: it protects the `min(reserved,
    // count)` longest-connected members of the network.
    let mut split = 0;
    for j in 0..n {
        if !c[work[j]].disadvantaged {
            work.swap(split, j);
            split += 1;
        }
    }
    let tail = &mut work[split..];
    let protected = reserved.min(tail.len());
    if protected > 0 && protected < tail.len() {
        let cut = tail.len() - protected;
        tail.select_nth_unstable_by(cut, |&a, &b| by_age(&c[a], &c[b]));
    }
    work.truncate(n - protected);
    // The rest of the slots by uptime alone.
    erase_last_k(work, total - protected, |a, b| by_age(&c[a], &c[b]));
}

/// Remove from `work` the `k` indices that sort last by `cmp` (Bitcoin `EraseLastKElements`).
/// `cmp` is a total order, so the removed set is the same as after a full sort.
fn erase_last_k(work: &mut Vec<usize>, k: usize, mut cmp: impl FnMut(usize, usize) -> Ordering) {
    if k == 0 {
        return;
    }
    let Some(cut) = work.len().checked_sub(k).filter(|&cut| cut > 0) else {
        work.clear();
        return;
    };
    work.select_nth_unstable_by(cut, |&a, &b| cmp(a, b));
    work.truncate(cut);
}

/// The group's position in the node's secret order of groups.
fn keyed(key: u64, group: Group) -> u64 {
    FixedState::with_seed(key).hash_one(group.key())
}

/// Orders the younger connection greater: the later `connected`, then the larger id.
fn younger<K: Ord>(a: &Candidate<K>, b: &Candidate<K>) -> Ordering {
    a.connected.cmp(&b.connected).then_with(|| a.id.cmp(&b.id))
}

/// Orders the older connection greater (protected first): the reverse of [`younger`]. Bitcoin
/// `ReverseCompareNodeTimeConnected`, and every step's last tie-break.
fn by_age<K: Ord>(a: &Candidate<K>, b: &Candidate<K>) -> Ordering {
    younger(b, a)
}

/// Orders the lower ping greater, an unknown ping lowest (Bitcoin
/// `ReverseCompareNodeMinPingTime`).
fn by_ping<K: Ord>(a: &Candidate<K>, b: &Candidate<K>) -> Ordering {
    let rank = |x: &Candidate<K>| (x.min_ping.is_some(), std::cmp::Reverse(x.min_ping));
    rank(a).cmp(&rank(b)).then_with(|| by_age(a, b))
}

/// Orders the more recently useful greater, then the higher tag value (in place of Bitcoin
/// `CompareNodeTXTime`).
fn by_useful<K: Ord>(a: &Candidate<K>, b: &Candidate<K>) -> Ordering {
    a.last_useful
        .cmp(&b.last_useful)
        .then_with(|| a.tag_value.cmp(&b.tag_value))
        .then_with(|| by_age(a, b))
}

/// Orders the higher tag value greater, then the more recently useful (in place of Bitcoin
/// `CompareNodeBlockTime`).
fn by_tag<K: Ord>(a: &Candidate<K>, b: &Candidate<K>) -> Ordering {
    a.tag_value
        .cmp(&b.tag_value)
        .then_with(|| a.last_useful.cmp(&b.last_useful))
        .then_with(|| by_age(a, b))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use proptest::prelude::*;
    use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};

    use super::*;

    type C = Candidate<u32>;

    fn base() -> Instant {
        Instant::now()
    }

    fn at(base: Instant, secs: u64) -> Instant {
        base + Duration::from_secs(secs)
    }

    fn v4(a: u8, b: u8) -> Group {
        Group::Ipv4([a, b])
    }

    fn plain(id: u32, group: Group, connected: Instant) -> C {
        Candidate {
            id,
            group,
            connected,
            min_ping: None,
            last_useful: None,
            tag_value: 0,
            protected: false,
            prefer_evict: false,
            disadvantaged: false,
        }
    }

    /// Bitcoin `GetRandomNodeEvictionCandidates`: every signal random in a range of 100, 100
    /// groups, prefer-evict and disadvantaged at random, nothing protected.
    fn random_candidates(n: u32, rng: &mut StdRng, base: Instant) -> Vec<C> {
        (0..n)
            .map(|id| Candidate {
                id,
                group: v4(rng.random_range(0..100), 0),
                connected: at(base, rng.random_range(0..100)),
                min_ping: Some(Duration::from_micros(rng.random_range(0..100))),
                last_useful: Some(at(base, rng.random_range(0..100))),
                tag_value: rng.random_range(0..100),
                protected: false,
                prefer_evict: rng.random(),
                disadvantaged: rng.random(),
            })
            .collect()
    }

    fn select_default(c: Vec<C>, key: u64) -> Option<Victim<u32>> {
        select(&c, key, &Config::default())
    }

    /// Bitcoin `IsEvicted`: shuffle, select, and whether the victim is one of `ids`.
    fn is_evicted(mut c: Vec<C>, ids: &[u32], key: u64, rng: &mut StdRng) -> bool {
        c.shuffle(rng);
        select_default(c, key).is_some_and(|v| ids.contains(&v.id))
    }

    // --- Bitcoin `peer_eviction_test` ---

    #[test]
    fn peer_eviction_test() {
        let mut rng = StdRng::seed_from_u64(1);
        let base = base();
        for n in 0..200u32 {
            let key: u64 = rng.random();
            let top4: Vec<u32> = (0..4).collect();
            let top8: Vec<u32> = (0..8).collect();

            // The four candidates whose groups' keyed hashes are highest are protected.
            // (Bitcoin sets `nKeyedNetGroup = n - id`; here the groups are assigned so that
            // their keyed hashes fall in that order.)
            let mut groups: Vec<Group> = (0..n).map(|i| v4((i / 256) as u8, i as u8)).collect();
            groups.sort_by_key(|&g| std::cmp::Reverse(keyed(key, g)));
            let mut c = random_candidates(n, &mut rng, base);
            for x in &mut c {
                x.group = groups[x.id as usize];
            }
            assert!(!is_evicted(c, &top4, key, &mut rng), "n={n}");

            // The eight with the lowest minimum ping are protected.
            let mut c = random_candidates(n, &mut rng, base);
            for x in &mut c {
                x.min_ping = Some(Duration::from_micros(x.id.into()));
            }
            assert!(!is_evicted(c, &top8, key, &mut rng), "n={n}");

            // The four most recently useful are protected (Bitcoin: novel transactions).
            let mut c = random_candidates(n, &mut rng, base);
            for x in &mut c {
                x.last_useful = Some(at(base, (n - x.id).into()));
            }
            assert!(!is_evicted(c, &top4, key, &mut rng), "n={n}");

            // The four with the highest tag value are protected (Bitcoin: novel blocks).
            let mut c = random_candidates(n, &mut rng, base);
            for x in &mut c {
                x.tag_value = (n - x.id).into();
            }
            assert!(!is_evicted(c, &top4, key, &mut rng), "n={n}");

            // All of the above: 4 + 8 + 4 + 4 protected.
            let mut c = random_candidates(n, &mut rng, base);
            for x in &mut c {
                x.group = groups[x.id as usize];
                x.min_ping = Some(Duration::from_micros(x.id.into()));
                x.last_useful = Some(at(base, (n - x.id).into()));
                x.tag_value = (n - x.id).into();
            }
            let top20: Vec<u32> = (0..20).collect();
            assert!(!is_evicted(c, &top20, key, &mut rng), "n={n}");

            // The fixed steps protect at most 20 (Bitcoin: 28, with its block-relay step), so
            // 21 candidates always give a victim, and 20 or fewer never do.
            let c = random_candidates(n, &mut rng, base);
            assert_eq!(select_default(c, key).is_some(), n > 20, "n={n}");
        }
    }

    // --- Bitcoin `peer_protection_test` (`ProtectEvictionCandidatesByRatio`) ---

    /// Bitcoin `IsProtected`: `n` random candidates set up by `setup`, shuffled, through the
    /// uptime step; true if half of them are protected, all of `protected` among them and none
    /// of `unprotected`.
    fn is_protected(
        n: u32,
        setup: impl Fn(&mut C),
        protected: &[u32],
        unprotected: &[u32],
        rng: &mut StdRng,
    ) -> bool {
        let mut c = random_candidates(n, rng, base());
        for x in &mut c {
            setup(x);
        }
        c.shuffle(rng);
        let mut work: Vec<usize> = (0..c.len()).collect();
        protect_by_ratio(&c, &mut work, &Config::default());
        assert_eq!(work.len(), (n - n / 2) as usize);
        let left: HashSet<u32> = work.iter().map(|&i| c[i].id).collect();
        protected.iter().all(|id| !left.contains(id))
            && unprotected.iter().all(|id| left.contains(id))
    }

    #[test]
    fn peer_protection_test() {
        let mut rng = StdRng::seed_from_u64(2);
        let b = base();
        let n = 12;
        let secs = move |id: u32| at(b, id.into());

        // Half with the longest uptime (the earliest `connected`) protected.
        let uptime = |c: &mut C| {
            c.connected = secs(c.id);
            c.disadvantaged = false;
        };
        assert!(is_protected(
            n,
            uptime,
            &[0, 1, 2, 3, 4, 5],
            &[6, 7, 8, 9, 10, 11],
            &mut rng
        ));
        // The other way round.
        let reverse = |c: &mut C| {
            c.connected = secs(n - c.id);
            c.disadvantaged = false;
        };
        assert!(is_protected(
            n,
            reverse,
            &[6, 7, 8, 9, 10, 11],
            &[0, 1, 2, 3, 4, 5],
            &mut rng
        ));

        // Bitcoin's single-network cases (onion, localhost, I2P; CJDNS repeats I2P's): a
        // quarter of the candidates reserved for the disadvantaged, whatever their uptime.
        for ids in [[3, 8, 9], [1, 9, 11], [2, 7, 10]] {
            let setup = |c: &mut C| c.disadvantaged = ids.contains(&c.id);
            assert!(is_protected(n, setup, &ids, &[], &mut rng), "{ids:?}");
        }
        // A quarter for the disadvantaged and a quarter for the others, by uptime.
        let onion = |c: &mut C| {
            c.connected = secs(c.id);
            c.disadvantaged = c.id == 3 || c.id > 7;
        };
        assert!(is_protected(
            n,
            onion,
            &[0, 1, 2, 3, 8, 9],
            &[4, 5, 6, 7, 10, 11],
            &mut rng
        ));
        let localhost = |c: &mut C| {
            c.connected = secs(c.id);
            c.disadvantaged = c.id > 6;
        };
        assert!(is_protected(
            n,
            localhost,
            &[0, 1, 2, 7, 8, 9],
            &[3, 4, 5, 6, 10, 11],
            &mut rng
        ));
        let i2p = |c: &mut C| {
            c.connected = secs(c.id);
            c.disadvantaged = c.id == 4 || c.id > 8;
        };
        assert!(is_protected(
            n,
            i2p,
            &[0, 1, 2, 4, 9, 10],
            &[3, 5, 6, 7, 8, 11],
            &mut rng
        ));

        // Bitcoin's two-network cases whose expected sets do not depend on the networks being
        // told apart. 5 localhost (11..15) and 1 onion (10) of 16: 4 reserved slots, 4 by
        // uptime.
        let two = |c: &mut C| {
            c.connected = secs(c.id);
            c.disadvantaged = c.id >= 10;
        };
        assert!(is_protected(
            16,
            two,
            &[0, 1, 2, 3, 10, 11, 12, 13],
            &[4, 5, 6, 7, 8, 9, 14, 15],
            &mut rng
        ));
        // 4 localhost (6, 9, 11, 12) and 2 onion (8, 10) of 16.
        let two = |c: &mut C| {
            c.connected = secs(c.id);
            c.disadvantaged = [6, 8, 9, 10, 11, 12].contains(&c.id);
        };
        assert!(is_protected(
            16,
            two,
            &[0, 1, 2, 3, 6, 8, 9, 10],
            &[4, 5, 7, 11, 12, 13, 14, 15],
            &mut rng
        ));
        // Where they do: 1 localhost (15) and 4 onion (7..=10) of 16. Bitcoin gives the
        // localhost peer a slot of its own ({0, 1, 2, 3, 7, 8, 9, 15}); one class gives the
        // reserved slots to the 4 oldest.
        let two = |c: &mut C| {
            c.connected = secs(c.id);
            c.disadvantaged = c.id == 15 || (7..=10).contains(&c.id);
        };
        assert!(is_protected(
            16,
            two,
            &[0, 1, 2, 3, 7, 8, 9, 10],
            &[4, 5, 6, 11, 12, 13, 14, 15],
            &mut rng
        ));

        // With the reserve off, uptime alone.
        let mut c: Vec<C> = (0..12).map(|i| plain(i, v4(1, 1), secs(i))).collect();
        for x in &mut c[8..] {
            x.disadvantaged = true;
        }
        let mut work: Vec<usize> = (0..12).collect();
        protect_by_ratio(&c, &mut work, &Config::new().with_disadvantaged_share(0.0));
        work.sort();
        assert_eq!(work, [6, 7, 8, 9, 10, 11]);
    }

    // --- Peerage's cases ---

    #[test]
    fn protected_candidates_are_never_chosen() {
        let mut rng = StdRng::seed_from_u64(3);
        let b = base();
        for _ in 0..200 {
            let mut c = random_candidates(60, &mut rng, b);
            for x in &mut c {
                x.protected = rng.random_bool(0.5);
            }
            let protected: HashSet<u32> = c.iter().filter(|x| x.protected).map(|x| x.id).collect();
            if let Some(v) = select_default(c, rng.random()) {
                assert!(!protected.contains(&v.id));
            }
        }
    }

    #[test]
    fn all_protected_gives_none() {
        let b = base();
        let c: Vec<C> = (0..100)
            .map(|i| Candidate {
                protected: true,
                prefer_evict: true,
                ..plain(i, v4(i as u8, 0), at(b, i.into()))
            })
            .collect();
        assert_eq!(select_default(c, 7), None);
        assert_eq!(select_default(Vec::new(), 7), None);
        // With every protection off, one unprotected candidate is the victim.
        let none = Config::new()
            .with_protect_by_group(0)
            .with_protect_by_ping(0)
            .with_protect_by_useful(0)
            .with_protect_by_tag(0)
            .with_protect_by_uptime(0.0);
        let c = vec![
            plain(1, v4(1, 1), b),
            Candidate {
                protected: true,
                ..plain(2, v4(1, 1), b)
            },
        ];
        let v = select(&c, 7, &none).unwrap();
        assert_eq!((v.id, v.group_size), (1, 1));
    }

    /// 40 honest peers, one per group, connected first; then an attacker opens 60 connections
    /// from 4 groups, with better pings than any honest peer. The victim is the attacker's.
    #[test]
    fn attacker_from_few_groups_loses_the_victim() {
        let mut rng = StdRng::seed_from_u64(4);
        let b = base();
        for round in 0..200u64 {
            let mut c: Vec<C> = (0..40)
                .map(|i| Candidate {
                    min_ping: Some(Duration::from_millis(rng.random_range(20..300))),
                    last_useful: rng
                        .random_bool(0.5)
                        .then(|| at(b, rng.random_range(0..200))),
                    tag_value: rng.random_range(0..50),
                    disadvantaged: rng.random_bool(0.1),
                    ..plain(i, v4(10 + i as u8, 0), at(b, rng.random_range(0..100)))
                })
                .collect();
            c.extend((40..100).map(|i| Candidate {
                min_ping: Some(Duration::from_millis(rng.random_range(1..10))),
                ..plain(
                    i,
                    v4(200 + (i % 4) as u8, 0),
                    at(b, rng.random_range(100..200)),
                )
            }));
            c.shuffle(&mut rng);
            let key = rng.random();
            let left = survivors(&c, key, &Config::default());
            let v = select_default(c.clone(), key).unwrap();
            assert!(v.id >= 40, "round {round}: honest {} evicted", v.id);
            assert_eq!(v.reason, Reason::MostRepresentedGroup);
            // The most represented group among the survivors, and its youngest.
            let mut count: BTreeMap<Group, usize> = BTreeMap::new();
            for &i in &left {
                *count.entry(c[i].group).or_default() += 1;
            }
            assert_eq!(v.group_size, *count.values().max().unwrap());
            assert_eq!(count[&v.group], v.group_size);
            let youngest = left
                .iter()
                .map(|&i| &c[i])
                .filter(|x| x.group == v.group)
                .max_by(|a, b| younger(a, b))
                .unwrap();
            assert_eq!(youngest.id, v.id);
        }
    }

    #[test]
    fn the_eight_lowest_pings_are_protected() {
        let mut rng = StdRng::seed_from_u64(5);
        let b = base();
        for _ in 0..100 {
            let mut c = random_candidates(80, &mut rng, b);
            for x in &mut c {
                x.min_ping = Some(Duration::from_micros(1000 + u64::from(x.id) * 7 % 1000));
            }
            // One unknown ping, which must not count as low.
            c[0].min_ping = None;
            c.shuffle(&mut rng);
            let mut by_ping: Vec<&C> = c.iter().collect();
            by_ping.sort_by_key(|x| x.min_ping.unwrap_or(Duration::MAX));
            let lowest: Vec<u32> = by_ping[..8].iter().map(|x| x.id).collect();
            let left: HashSet<u32> = survivors(&c, rng.random(), &Config::default())
                .into_iter()
                .map(|i| c[i].id)
                .collect();
            assert!(lowest.iter().all(|id| !left.contains(id)));
            assert!(!is_evicted(c, &lowest, rng.random(), &mut rng));
        }
    }

    #[test]
    fn prefer_evict_narrows_the_choice() {
        let b = base();
        let none = Config::new()
            .with_protect_by_group(0)
            .with_protect_by_ping(0)
            .with_protect_by_useful(0)
            .with_protect_by_tag(0)
            .with_protect_by_uptime(0.0);
        // Group 1 holds 3, group 2 holds 1 that misbehaves.
        let mut c: Vec<C> = (0..3)
            .map(|i| plain(i, v4(1, 1), at(b, i.into())))
            .collect();
        c.push(Candidate {
            prefer_evict: true,
            ..plain(3, v4(2, 2), b)
        });
        let v = select(&c, 1, &none).unwrap();
        assert_eq!(
            v,
            Victim {
                id: 3,
                reason: Reason::PreferEvict,
                group: v4(2, 2),
                group_size: 1
            }
        );
        // Without it, the youngest of group 1.
        c[3].prefer_evict = false;
        let v = select(&c, 1, &none).unwrap();
        assert_eq!(
            v,
            Victim {
                id: 2,
                reason: Reason::MostRepresentedGroup,
                group: v4(1, 1),
                group_size: 3
            }
        );
    }

    #[test]
    fn equal_groups_lose_the_one_with_the_youngest_member() {
        let b = base();
        let none = Config::new()
            .with_protect_by_group(0)
            .with_protect_by_ping(0)
            .with_protect_by_useful(0)
            .with_protect_by_tag(0)
            .with_protect_by_uptime(0.0);
        let c = vec![
            plain(1, v4(1, 1), at(b, 0)),
            plain(2, v4(1, 1), at(b, 5)),
            plain(3, v4(2, 2), at(b, 1)),
            plain(4, v4(2, 2), at(b, 6)),
            plain(5, v4(3, 3), at(b, 9)),
        ];
        assert_eq!(select(&c, 0, &none).unwrap().id, 4);
        // Equal times: the larger id is the younger.
        let c: Vec<C> = c
            .into_iter()
            .map(|x| Candidate { connected: b, ..x })
            .collect();
        assert_eq!(select(&c, 0, &none).unwrap().id, 4);
    }

    #[test]
    fn the_keyed_group_step_depends_on_the_key() {
        let b = base();
        let only_groups = Config::new()
            .with_protect_by_ping(0)
            .with_protect_by_useful(0)
            .with_protect_by_tag(0)
            .with_protect_by_uptime(0.0);
        let c: Vec<C> = (0..20)
            .map(|i| plain(i, v4(i as u8, 0), at(b, i.into())))
            .collect();
        let protected_with = |key: u64| -> Vec<u32> {
            let left: HashSet<usize> = survivors(&c, key, &only_groups).into_iter().collect();
            (0..20).filter(|i| !left.contains(&(*i as usize))).collect()
        };
        let first = protected_with(1);
        assert_eq!(first.len(), 4);
        assert!((2..50).any(|key| protected_with(key) != first));
    }

    #[test]
    #[should_panic(expected = "uptime ratio")]
    fn an_uptime_ratio_above_one_panics() {
        let _ = Config::new().with_protect_by_uptime(1.5);
    }

    // --- Against a literal port of Bitcoin's code ---

    /// `SelectNodeToEvict` as Bitcoin writes it: full sorts, `EraseLastKElements`, the loop
    /// over networks of `ProtectEvictionCandidatesByRatio` (one network here), and the map of
    /// groups; with this module's tie-breaks in the comparators.
    fn reference(mut v: Vec<C>, key: u64, config: &Config) -> Option<(u32, Group, usize)> {
        fn erase_last(
            v: &mut Vec<C>,
            k: usize,
            cmp: impl Fn(&C, &C) -> Ordering,
            keep: impl Fn(&C) -> bool,
        ) -> usize {
            v.sort_by(&cmp);
            let start = v.len() - k.min(v.len());
            let tail: Vec<C> = v.drain(start..).collect();
            let before = tail.len();
            v.extend(tail.into_iter().filter(|x| keep(x)));
            before - (v.len() - start)
        }
        let all = |_: &C| false;
        v.retain(|x| !x.protected);
        let group_cmp = |a: &C, b: &C| {
            keyed(key, a.group)
                .cmp(&keyed(key, b.group))
                .then(a.group.cmp(&b.group))
                .then(by_age(a, b))
        };
        erase_last(&mut v, config.by_group, group_cmp, all);
        erase_last(&mut v, config.by_ping, by_ping, all);
        erase_last(&mut v, config.by_useful, by_useful, all);
        erase_last(&mut v, config.by_tag, by_tag, all);

        // ProtectEvictionCandidatesByRatio.
        let initial = v.len();
        let total = config.uptime_count(initial);
        let max_by_network = config.disadvantaged_count(total);
        let mut count = v.iter().filter(|x| x.disadvantaged).count();
        let mut num_protected = 0;
        while num_protected < max_by_network {
            if count == 0 {
                break;
            }
            let per_network = (max_by_network - num_protected).max(1);
            let network_time =
                |a: &C, b: &C| a.disadvantaged.cmp(&b.disadvantaged).then(by_age(a, b));
            let delta = erase_last(&mut v, per_network, network_time, |x| !x.disadvantaged);
            if delta == 0 {
                break;
            }
            num_protected += delta;
            if num_protected >= max_by_network {
                break;
            }
            count -= delta;
        }
        assert_eq!(num_protected, initial - v.len());
        erase_last(&mut v, total - num_protected, by_age, all);

        if v.is_empty() {
            return None;
        }
        if v.iter().any(|x| x.prefer_evict) {
            v.retain(|x| x.prefer_evict);
        }
        // Sorted youngest first by the last erase; the first to reach the most members wins,
        // unless a later group reaches as many with a younger youngest member.
        let mut groups: BTreeMap<Group, Vec<C>> = BTreeMap::new();
        let mut most = 0;
        let mut most_time: Option<(Instant, u32)> = None;
        let mut most_group = None;
        for x in &v {
            let g = groups.entry(x.group).or_default();
            g.push(*x);
            let time = Some((g[0].connected, g[0].id));
            if g.len() > most || (g.len() == most && time > most_time) {
                most = g.len();
                most_time = time;
                most_group = Some(x.group);
            }
        }
        let g = &groups[&most_group?];
        Some((g[0].id, g[0].group, g.len()))
    }

    #[test]
    fn matches_the_reference_on_bitcoins_random_candidates() {
        let mut rng = StdRng::seed_from_u64(6);
        let b = base();
        for n in 0..300 {
            let mut c = random_candidates(n, &mut rng, b);
            for x in &mut c {
                x.protected = rng.random_bool(0.1);
                x.prefer_evict = rng.random_bool(0.05);
            }
            let key = rng.random();
            let want = reference(c.clone(), key, &Config::default());
            let got = select_default(c, key).map(|v| (v.id, v.group, v.group_size));
            assert_eq!(got, want, "n={n}");
        }
    }

    fn arb_candidates() -> impl Strategy<Value = Vec<C>> {
        let one = (
            0u64..30,
            proptest::option::of(0u64..20),
            proptest::option::of(0u64..30),
            -3i64..3,
            0u8..8,
            proptest::bool::weighted(0.15),
            proptest::bool::weighted(0.1),
            proptest::bool::weighted(0.2),
        );
        proptest::collection::vec(one, 0..90).prop_map(|v| {
            let b = base();
            v.into_iter()
                .enumerate()
                .map(
                    |(id, (conn, ping, useful, tag, g, protected, prefer, dis))| Candidate {
                        id: id as u32,
                        group: match g {
                            6 => Group::Loopback,
                            7 => Group::Relay,
                            g => v4(g, 0),
                        },
                        connected: at(b, conn),
                        min_ping: ping.map(Duration::from_millis),
                        last_useful: useful.map(|s| at(b, s)),
                        tag_value: tag,
                        protected,
                        prefer_evict: prefer,
                        disadvantaged: dis,
                    },
                )
                .collect()
        })
    }

    proptest! {
        #[test]
        fn the_victim_is_unprotected_from_a_largest_group_and_order_free(
            (c, shuffled) in arb_candidates()
                .prop_flat_map(|c| (Just(c.clone()), Just(c).prop_shuffle())),
            key in any::<u64>(),
            small in any::<bool>(),
        ) {
            // Smaller counts too, so that more candidates reach the last steps.
            let config = if small {
                Config::new()
                    .with_protect_by_group(1)
                    .with_protect_by_ping(2)
                    .with_protect_by_useful(1)
                    .with_protect_by_tag(1)
            } else {
                Config::default()
            };
            let victim = select(&c, key, &config);
            prop_assert_eq!(victim, select(&shuffled, key, &config));
            prop_assert_eq!(
                victim.map(|v| (v.id, v.group, v.group_size)),
                reference(c.clone(), key, &config)
            );

            let mut left: Vec<&C> =
                survivors(&c, key, &config).into_iter().map(|i| &c[i]).collect();
            let Some(v) = victim else {
                prop_assert!(left.is_empty());
                return Ok(());
            };
            let chosen = &c[v.id as usize];
            prop_assert!(!chosen.protected);
            prop_assert!(left.iter().any(|x| x.id == v.id));
            if left.iter().any(|x| x.prefer_evict) {
                prop_assert_eq!(v.reason, Reason::PreferEvict);
                left.retain(|x| x.prefer_evict);
            } else {
                prop_assert_eq!(v.reason, Reason::MostRepresentedGroup);
            }
            let mut count: BTreeMap<Group, usize> = BTreeMap::new();
            for x in &left {
                *count.entry(x.group).or_default() += 1;
            }
            prop_assert_eq!(v.group, chosen.group);
            prop_assert_eq!(count[&v.group], v.group_size);
            prop_assert_eq!(v.group_size, *count.values().max().unwrap());
            prop_assert!(left
                .iter()
                .filter(|x| x.group == v.group)
                .all(|x| younger(x, chosen) != Ordering::Greater));
        }
    }
}
