use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use proptest::prelude::*;
use rand::{SeedableRng, rngs::StdRng};

use super::*;
use crate::Multiaddr;

fn addr(a: u8, b: u8, c: u8, d: u8) -> Multiaddr {
    format!("/ip4/{a}.{b}.{c}.{d}/tcp/4001").parse().unwrap()
}

fn book() -> (AddrBook, Instant, StdRng) {
    let now = Instant::now();
    (
        AddrBook::new(Config::new(), Grouping::new(), [1, 2], now),
        now,
        StdRng::seed_from_u64(7),
    )
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Distinct new buckets that hold something.
fn new_buckets(b: &AddrBook) -> BTreeSet<u32> {
    b.new.iter().map(|(bucket, _, _)| bucket).collect()
}

#[test]
fn one_source_group_reaches_at_most_64_new_buckets() {
    let (mut b, now, mut rng) = book();
    let source = addr(9, 9, 9, 9);
    // 20,000 addresses from 5,000 groups, all from one source.
    for i in 0..20_000u32 {
        let [_, x, y, z] = i.to_be_bytes();
        b.add(
            [(&addr(1 + y % 200, x ^ z, y, z), None)],
            &source,
            now,
            &mut rng,
        );
    }
    b.check();
    assert!(new_buckets(&b).len() <= 64, "{}", new_buckets(&b).len());
    assert!(b.new_len() <= 64 * 64);
    // 16 source groups reach at most 16 × 64.
    let (mut b, now, mut rng) = book();
    for s in 0..16u8 {
        let source = addr(20 + s, 1, 1, 1);
        for i in 0..4000u32 {
            let [_, x, y, z] = i.to_be_bytes();
            b.add([(&addr(30 + s, x ^ y, y, z), None)], &source, now, &mut rng);
        }
    }
    b.check();
    // Each source group on its own reaches at most 64 buckets (16 × 64 is every bucket, so
    // the bound that matters is per source).
    for s in 0..16u8 {
        let source = Group::Ipv4([20 + s, 1]);
        let reached: BTreeSet<u32> = b
            .entries
            .values()
            .filter(|e| e.source == source)
            .flat_map(|e| e.new_buckets.iter().copied())
            .collect();
        assert!(
            !reached.is_empty() && reached.len() <= 64,
            "{source}: {}",
            reached.len()
        );
    }
}

#[test]
fn one_group_reaches_at_most_8_tried_buckets() {
    let (mut b, now, mut rng) = book();
    let mut tried = 0;
    for i in 0..3000u32 {
        let [_, _, y, z] = i.to_be_bytes();
        let a = addr(1, 2, y, z);
        let source = addr(50 + (i % 100) as u8, 1, 1, 1);
        b.add([(&a, None)], &source, now, &mut rng);
        tried += usize::from(b.good(&a, now));
    }
    b.check();
    let buckets: BTreeSet<u32> = b.tried.iter().map(|(bucket, _, _)| bucket).collect();
    assert!(buckets.len() <= 8, "{}", buckets.len());
    assert!(tried <= 8 * 64 && b.tried_len() == tried);
    // The rest wait for a test, at most 10.
    assert_eq!(b.stats().collisions, 10);
}

#[test]
fn each_copy_of_an_address_is_harder_to_add_and_at_most_8() {
    let (mut b, mut now, mut rng) = book();
    let a = addr(1, 2, 3, 4);
    for hour in 0..2000 {
        now += secs(3601);
        let source = addr(10 + (hour % 200) as u8, (hour / 200) as u8, 1, 1);
        b.add([(&a, None)], &source, now, &mut rng);
    }
    b.check();
    let copies = b.entries.values().next().unwrap().new_buckets.len();
    assert!((2..=8).contains(&copies), "{copies}");
    // Told again within the hour: no new information, no new copy.
    let (mut b, now, mut rng) = book();
    for s in 0..100u8 {
        b.add([(&a, None)], &addr(10 + s, 0, 0, 1), now, &mut rng);
    }
    assert_eq!(b.entries.values().next().unwrap().new_buckets.len(), 1);
}

#[test]
fn unroutable_and_mismatched_addresses_are_refused() {
    let (mut b, now, mut rng) = book();
    let src = addr(9, 9, 9, 9);
    let g = |b: &AddrBook, s: &str| b.group(&s.parse().unwrap());
    assert_eq!(g(&b, "/ip4/0.0.0.0/tcp/1"), Group::Unroutable);
    for bad in ["/ip4/0.0.0.0/tcp/1", "/ip4/224.0.0.1/tcp/1", "/memory/5"] {
        assert_eq!(
            b.add_one(
                &bad.parse().unwrap(),
                None,
                Group::Ipv4([9, 9]),
                now,
                &mut rng
            ),
            Added::Unroutable
        );
    }
    let id = crate::PeerId::random();
    let other = crate::PeerId::random();
    let with_id: Multiaddr = format!("/ip4/1.2.3.4/tcp/1/p2p/{id}").parse().unwrap();
    assert_eq!(
        b.add_one(&with_id, Some(other), Group::Ipv4([9, 9]), now, &mut rng),
        Added::Unroutable
    );
    assert_eq!(b.add([(&with_id, None)], &src, now, &mut rng), 1);
    // Stored without /p2p, the ID kept as a hint.
    let plain: Multiaddr = "/ip4/1.2.3.4/tcp/1".parse().unwrap();
    assert_eq!(b.place(&plain), Some(Place::New));
    assert_eq!(b.select(false, now, &mut rng).unwrap().peer, Some(id));
    assert_eq!(b.len(), 1);
}

#[test]
fn three_failures_and_no_success_make_an_address_terrible() {
    let (mut b, t0, mut rng) = book();
    let a = addr(1, 2, 3, 4);
    b.add([(&a, None)], &addr(9, 9, 9, 9), t0, &mut rng);
    // Failures count once per success of any address: three goods, three failures.
    let other = addr(5, 5, 5, 5);
    b.add([(&other, None)], &addr(9, 9, 9, 9), t0, &mut rng);
    let mut now = t0;
    for _ in 0..3 {
        now += secs(10);
        b.good(&other, now);
        now += secs(10);
        b.attempt(&a, true, now);
        b.attempt(&a, true, now);
    }
    assert_eq!(b.entries[&b.by_addr[&a]].attempts, 3);
    let e = &b.entries[&b.by_addr[&a]];
    // Tried in the last minute: kept.
    assert!(!b.is_terrible(e, b.stamp(now)));
    assert!(b.is_terrible(e, b.stamp(now + secs(61))));
    // Not advertised once terrible.
    let ads = b.advertise(1000, 100, now + secs(61), &mut rng);
    assert_eq!(
        ads.iter().map(|(a, _)| a.clone()).collect::<Vec<_>>(),
        vec![other.clone()]
    );
    // 30 days unheard: terrible too.
    let e = &b.entries[&b.by_addr[&other]];
    assert!(!b.is_terrible(e, b.stamp(t0 + secs(29 * 86_400))));
    assert!(b.is_terrible(e, b.stamp(t0 + secs(31 * 86_400))));
}

#[test]
fn failures_without_a_good_in_between_count_once() {
    let (mut b, now, mut rng) = book();
    let a = addr(1, 2, 3, 4);
    b.add([(&a, None)], &addr(9, 9, 9, 9), now, &mut rng);
    b.good(&addr(7, 7, 7, 7), now);
    for i in 0..10 {
        b.attempt(&a, true, now + secs(i + 1));
    }
    assert_eq!(b.entries[&b.by_addr[&a]].attempts, 1);
    // A dial that is not counted only records the try.
    b.attempt(&a, false, now + secs(100));
    assert_eq!(b.entries[&b.by_addr[&a]].last_try, Some(100_000));
}

#[test]
fn selection_shuns_recent_tries_and_repeated_failures() {
    let (mut b, now, mut rng) = book();
    let (fresh, recent) = (addr(1, 1, 1, 1), addr(2, 2, 2, 2));
    b.add(
        [(&fresh, None), (&recent, None)],
        &addr(9, 9, 9, 9),
        now,
        &mut rng,
    );
    b.attempt(&recent, false, now);
    let mut picks = [0; 2];
    for _ in 0..2000 {
        let c = b.select(false, now + secs(60), &mut rng).unwrap();
        picks[usize::from(c.addr == recent)] += 1;
    }
    // Chance 1 vs 0.01: with the ×1.2 raise, the recent one still comes up, but rarely.
    assert!(picks[1] * 20 < picks[0], "{picks:?}");
    // select_outbound skips recent tries for its first 29 draws: with one other choice, never.
    for _ in 0..200 {
        let c = b
            .select_outbound(now + secs(60), &mut rng, |_| false)
            .unwrap();
        assert_eq!(c.addr, fresh);
    }
    // And the group filter: with `fresh`'s group excluded, only `recent` is left, after 30.
    let c = b.select_outbound(now + secs(60), &mut rng, |c| c.group == Group::Ipv4([1, 1]));
    assert_eq!(c.map(|c| c.addr), Some(recent));
}

#[test]
fn an_entry_unheard_of_for_a_day_is_stale_and_yields_its_new_slot() {
    // One new slot: every address collides with the one already there.
    let config = Config::new().with_new_buckets(1).with_bucket_size(1);
    let t0 = Instant::now();
    let mut b = AddrBook::new(config, Grouping::new(), [5, 6], t0);
    let mut rng = StdRng::seed_from_u64(3);
    let src = addr(9, 9, 9, 9);
    let (first, second, third) = (addr(1, 1, 1, 1), addr(2, 2, 2, 2), addr(3, 3, 3, 3));
    let hour = 3600;
    assert_eq!(b.add([(&first, None)], &src, t0, &mut rng), 1);
    // Within the day, the incumbent keeps its slot, as Bitcoin Core keeps it for 30 days.
    assert_eq!(
        b.add([(&second, None)], &src, t0 + secs(23 * hour), &mut rng),
        0
    );
    assert_eq!(b.place(&first), Some(Place::New));
    // Heard of again at 23 h: fresh for another day.
    b.add([(&first, None)], &src, t0 + secs(23 * hour), &mut rng);
    assert_eq!(
        b.add([(&second, None)], &src, t0 + secs(25 * hour), &mut rng),
        0
    );
    assert_eq!(b.place(&first), Some(Place::New));
    // A stale incumbent being dialed (tried in the last minute) keeps its slot.
    b.attempt(&first, false, t0 + secs(47 * hour + 1));
    assert_eq!(
        b.add([(&second, None)], &src, t0 + secs(47 * hour + 61), &mut rng),
        0
    );
    assert_eq!(b.place(&first), Some(Place::New));
    // Unheard of for a day and a minute after that try: the newcomer takes the slot, the
    // incumbent is gone.
    let later = t0 + secs(47 * hour + 62);
    assert_eq!(b.add([(&third, None)], &src, later, &mut rng), 1);
    assert_eq!(b.place(&first), None);
    assert_eq!(b.place(&third), Some(Place::New));
    b.check();
    // A longer setting keeps it.
    let config = Config::new()
        .with_new_buckets(1)
        .with_bucket_size(1)
        .with_stale_after(secs(30 * 86_400));
    let mut b = AddrBook::new(config, Grouping::new(), [5, 6], t0);
    b.add([(&first, None)], &src, t0, &mut rng);
    assert_eq!(b.add([(&third, None)], &src, later, &mut rng), 0);
    assert_eq!(b.place(&first), Some(Place::New));
    // And `Duration::MAX` turns the rule off (no wrap to a negative time).
    let config = Config::new()
        .with_new_buckets(1)
        .with_bucket_size(1)
        .with_stale_after(Duration::MAX)
        .with_horizon(Duration::MAX);
    let mut b = AddrBook::new(config, Grouping::new(), [5, 6], t0);
    b.add([(&first, None)], &src, t0, &mut rng);
    assert_eq!(
        b.add([(&third, None)], &src, t0 + secs(365 * 86_400), &mut rng),
        0
    );
    assert_eq!(b.place(&first), Some(Place::New));
}

#[test]
fn stale_entries_are_drawn_a_hundredth_as_often() {
    let (mut b, t0, mut rng) = book();
    let (stale, fresh) = (addr(1, 1, 1, 1), addr(2, 2, 2, 2));
    b.add([(&stale, None)], &addr(9, 9, 9, 9), t0, &mut rng);
    let now = t0 + secs(25 * 3600);
    b.add([(&fresh, None)], &addr(8, 8, 8, 8), now, &mut rng);
    let mut picks = [0; 2];
    for _ in 0..2000 {
        let c = b.select(false, now, &mut rng).unwrap();
        picks[usize::from(c.addr == stale)] += 1;
    }
    // Chance 1 vs 0.01: with the ×1.2 raise the stale one comes up about 1.2 % of the draws.
    assert!(picks[1] > 0 && picks[1] < 60, "{picks:?}");
    // And it is not advertised.
    let listed = b.advertise(10, 100, now, &mut rng);
    assert_eq!(listed, vec![(fresh.clone(), None)]);
    // A day later both are stale: a draw still ends, with even odds again.
    let much_later = now + secs(25 * 3600);
    let mut picks = [0; 2];
    for _ in 0..2000 {
        let c = b.select(false, much_later, &mut rng).unwrap();
        picks[usize::from(c.addr == stale)] += 1;
    }
    assert!(picks.iter().all(|&n| (800..1200).contains(&n)), "{picks:?}");
    // A connection refreshes an address: `stale` connected to at 49 h is fresh again.
    let t = much_later - secs(1);
    b.attempt(&stale, false, t - secs(700));
    assert!(b.good(&stale, t));
    let e = &b.entries[&b.by_addr[&stale]];
    assert!(!b.is_stale(e, b.stamp(much_later)));
    assert!(b.is_stale(e, b.stamp(t + secs(86_400 + 1))));
}

#[test]
fn tried_and_new_are_drawn_with_even_odds() {
    let (mut b, now, mut rng) = book();
    let src = addr(9, 9, 9, 9);
    for i in 0..100u8 {
        b.add([(&addr(10 + i, 1, 1, 1), None)], &src, now, &mut rng);
    }
    b.good(&addr(10, 1, 1, 1), now);
    let later = now + secs(3600);
    let tried = (0..4000)
        .filter(|_| b.select(false, later, &mut rng).unwrap().tried)
        .count();
    assert!((1800..2200).contains(&tried), "{tried}");
    assert!((0..100).all(|_| !b.select(true, later, &mut rng).unwrap().tried));
}

#[test]
fn test_before_evict_keeps_a_live_incumbent_and_replaces_a_dead_one() {
    let config = Config::new().with_tried_buckets(1).with_bucket_size(1);
    let t0 = Instant::now();
    let mut b = AddrBook::new(config, Grouping::new(), [3, 4], t0);
    let mut rng = StdRng::seed_from_u64(1);
    let (old, new) = (addr(1, 1, 1, 1), addr(2, 2, 2, 2));
    b.add(
        [(&old, None), (&new, None)],
        &addr(9, 9, 9, 9),
        t0,
        &mut rng,
    );
    assert!(b.good(&old, t0));
    // One tried slot: the newcomer waits for a test of the incumbent.
    assert!(!b.good(&new, t0 + secs(10)));
    assert_eq!((b.place(&new), b.stats().collisions), (Some(Place::New), 1));
    let (incumbent, waiting) = b.tried_collision(&mut rng).unwrap();
    assert_eq!((incumbent.addr, waiting), (old.clone(), new.clone()));
    // The incumbent answered less than 4 h ago: it stays, and the collision is dropped.
    b.resolve_collisions(t0 + secs(20));
    assert_eq!(
        (b.place(&old), b.stats().collisions),
        (Some(Place::Tried), 0)
    );
    // 5 h later the newcomer connects again; the feeler to the incumbent fails.
    let t1 = t0 + secs(5 * 3600);
    assert!(!b.good(&new, t1));
    b.attempt(&old, true, t1 + secs(1));
    // Less than 60 s after the attempt: still waiting.
    b.resolve_collisions(t1 + secs(30));
    assert_eq!(b.place(&new), Some(Place::New));
    b.resolve_collisions(t1 + secs(62));
    assert_eq!(
        (b.place(&new), b.place(&old)),
        (Some(Place::Tried), Some(Place::New))
    );
    b.check();
}

#[test]
fn an_untested_collision_is_settled_after_40_minutes() {
    let config = Config::new().with_tried_buckets(1).with_bucket_size(1);
    let t0 = Instant::now();
    let mut b = AddrBook::new(config, Grouping::new(), [3, 4], t0);
    let mut rng = StdRng::seed_from_u64(1);
    let (old, new) = (addr(1, 1, 1, 1), addr(2, 2, 2, 2));
    b.add(
        [(&old, None), (&new, None)],
        &addr(9, 9, 9, 9),
        t0,
        &mut rng,
    );
    b.good(&old, t0);
    let t1 = t0 + secs(5 * 3600);
    b.good(&new, t1);
    b.resolve_collisions(t1 + secs(39 * 60));
    assert_eq!(b.place(&new), Some(Place::New));
    b.resolve_collisions(t1 + secs(41 * 60));
    assert_eq!(b.place(&new), Some(Place::Tried));
    b.check();
}

#[test]
fn without_test_before_evict_the_incumbent_goes_back_to_new_at_once() {
    let config = Config::new()
        .with_tried_buckets(1)
        .with_bucket_size(1)
        .with_test_before_evict(false);
    let t0 = Instant::now();
    let mut b = AddrBook::new(config, Grouping::new(), [3, 4], t0);
    let mut rng = StdRng::seed_from_u64(1);
    let (old, new) = (addr(1, 1, 1, 1), addr(2, 2, 2, 2));
    b.add(
        [(&old, None), (&new, None)],
        &addr(9, 9, 9, 9),
        t0,
        &mut rng,
    );
    b.good(&old, t0);
    assert!(b.good(&new, t0));
    assert_eq!(
        (b.place(&new), b.place(&old)),
        (Some(Place::Tried), Some(Place::New))
    );
    b.check();
}

#[test]
fn remove_forgets_from_either_table() {
    let (mut b, now, mut rng) = book();
    let (x, y) = (addr(1, 1, 1, 1), addr(2, 2, 2, 2));
    b.add([(&x, None), (&y, None)], &addr(9, 9, 9, 9), now, &mut rng);
    b.good(&x, now);
    assert!(b.remove(&x) && b.remove(&y) && !b.remove(&y));
    assert!(b.is_empty());
    assert_eq!((b.new.slots(), b.tried.slots()), (0, 0));
    b.check();
}

#[test]
fn advertise_gives_a_share_of_the_book() {
    let (mut b, now, mut rng) = book();
    for i in 0..200u8 {
        b.add(
            [(&addr(10, i, 1, 1), None)],
            &addr(i, 9, 9, 9),
            now,
            &mut rng,
        );
    }
    let n = b.len();
    assert_eq!(b.advertise(1000, 23, now, &mut rng).len(), n * 23 / 100);
    assert_eq!(b.advertise(10, 23, now, &mut rng).len(), 10);
}

#[test]
fn a_snapshot_restores_every_position_and_recomputes_after_a_change() {
    let (mut b, now, mut rng) = book();
    for i in 0..3000u32 {
        let [_, x, y, z] = i.to_be_bytes();
        let a = addr(1 + y % 50, x ^ z, y, z);
        b.add(
            [(&a, None)],
            &addr(100 + (i % 30) as u8, 1, 1, 1),
            now,
            &mut rng,
        );
        if i % 7 == 0 {
            b.good(&a, now);
        }
    }
    let snap = b.snapshot(now + secs(10));
    let json = serde_json::to_string(&snap).unwrap();
    let back: Snapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back, snap);
    // A reboot later: a new epoch.
    let later = Instant::now() + secs(3600);
    let (r, dropped) = AddrBook::restore(back.clone(), Config::new(), Grouping::new(), later);
    r.check();
    assert_eq!(
        (dropped, r.len(), r.tried_len()),
        (0, b.len(), b.tried_len())
    );
    let slots = |b: &AddrBook| {
        let mut v: Vec<_> = b
            .new
            .iter()
            .map(|(bk, p, id)| (bk, p, b.entries[&id].addr.clone()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(slots(&r), slots(&b));
    // Ages carried over: heard 10 s before the snapshot.
    let e = &r.entries[&r.by_addr[&b.entries.values().next().unwrap().addr]];
    assert_eq!(r.stamp(later) - e.heard, 10_000);
    // Another geometry: placed anew, one copy each, nothing lost to a bad position.
    let (r, dropped) = AddrBook::restore(
        back,
        Config::new().with_new_buckets(512),
        Grouping::new(),
        later,
    );
    r.check();
    assert_eq!(r.len() + dropped, b.len());
    assert!(r.new.iter().all(|(bk, _, _)| bk < 512));
}

#[test]
fn a_hostile_snapshot_loses_nothing_valid() {
    let (mut b, now, mut rng) = book();
    let good = addr(1, 2, 3, 4);
    b.add([(&good, None)], &addr(9, 9, 9, 9), now, &mut rng);
    let mut snap = b.snapshot(now);
    let mut bad = snap.entries[0].clone();
    // A duplicate, an unroutable one, one with /p2p, one with buckets out of range.
    snap.entries.push(bad.clone());
    bad.addr = "/ip4/0.0.0.0/tcp/1".parse().unwrap();
    snap.entries.push(bad.clone());
    bad.addr = format!("/ip4/5.5.5.5/tcp/1/p2p/{}", crate::PeerId::random())
        .parse()
        .unwrap();
    snap.entries.push(bad.clone());
    bad.addr = addr(6, 6, 6, 6);
    bad.new_buckets = vec![u32::MAX, 99_999];
    bad.heard_ago = u64::MAX;
    snap.entries.push(bad);
    let (r, dropped) = AddrBook::restore(snap, Config::new(), Grouping::new(), now);
    r.check();
    assert_eq!(dropped, 3);
    assert_eq!(r.place(&good), Some(Place::New));
    assert_eq!(r.place(&addr(6, 6, 6, 6)), Some(Place::New));
}

#[derive(Debug, Clone)]
enum Op {
    Add(u16, u8),
    Good(u16),
    Attempt(u16, bool),
    Remove(u16),
    Resolve,
    Step(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..400u16, 0..40u8).prop_map(|(a, s)| Op::Add(a, s)),
        2 => (0..400u16).prop_map(Op::Good),
        1 => (0..400u16, any::<bool>()).prop_map(|(a, c)| Op::Attempt(a, c)),
        1 => (0..400u16).prop_map(Op::Remove),
        1 => Just(Op::Resolve),
        1 => (0..7200u16).prop_map(Op::Step),
    ]
}

proptest! {
    /// Against a model (the set of addresses told and not removed, the set ever made good),
    /// on a small book so that collisions are common: the tables stay consistent, the book
    /// holds only addresses it was told, tried holds only addresses that connected, and
    /// nothing draws an address the book does not hold.
    #[test]
    fn the_tables_stay_consistent(ops in proptest::collection::vec(op(), 1..300)) {
        let config = Config::new()
            .with_new_buckets(16)
            .with_tried_buckets(4)
            .with_bucket_size(4)
            .with_new_buckets_per_source_group(4)
            .with_tried_buckets_per_group(2);
        let mut now = Instant::now();
        let mut b = AddrBook::new(config, Grouping::new(), [5, 6], now);
        let mut rng = StdRng::seed_from_u64(3);
        let a = |i: u16| addr(1 + (i % 13) as u8, (i / 13) as u8, 0, 1);
        let mut told = BTreeSet::new();
        let mut good = BTreeSet::new();
        for op in ops {
            match op {
                Op::Add(i, s) => {
                    b.add([(&a(i), None)], &addr(100 + s, 0, 0, 1), now, &mut rng);
                    told.insert(i);
                }
                Op::Good(i) => {
                    if b.place(&a(i)).is_some() {
                        good.insert(i);
                    }
                    b.good(&a(i), now);
                }
                Op::Attempt(i, c) => b.attempt(&a(i), c, now),
                Op::Remove(i) => {
                    b.remove(&a(i));
                    told.remove(&i);
                    good.remove(&i);
                }
                Op::Resolve => b.resolve_collisions(now),
                Op::Step(s) => now += secs(u64::from(s)),
            }
            b.check();
            for i in 0..400u16 {
                match b.place(&a(i)) {
                    Some(Place::Tried) => prop_assert!(good.contains(&i)),
                    Some(Place::New) => prop_assert!(told.contains(&i)),
                    None => {}
                }
            }
            if let Some(c) = b.select(false, now, &mut rng) {
                prop_assert!(b.place(&c.addr).is_some());
            }
            prop_assert_eq!(b.select(false, now, &mut rng).is_none(), b.is_empty());
        }
    }
}
