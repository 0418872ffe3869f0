//! Property test: random address-book operations on the memory backend against a naive model
//! of go's rules (a map of address -> (TTL, expiry), no caps).
//!
//! Checked after every step: the unexpired addresses of every peer, the count of unconnected
//! addresses (every finite TTL, expired or not until collected), and the next expiry.

#![allow(clippy::disallowed_methods)]

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use peerage_core::{
    Multiaddr, PeerId,
    peerstore::{Config, Peerstore, Ttl},
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Add(usize, Vec<usize>, Ttl),
    Set(usize, Vec<usize>, Ttl),
    Update(usize, Ttl, Ttl),
    Clear(usize),
    Gc,
    Advance(u64),
}

fn ttl() -> impl Strategy<Value = Ttl> {
    prop_oneof![
        Just(Ttl::ZERO),
        (1u64..20).prop_map(|s| Ttl::Finite(Duration::from_secs(s))),
        Just(Ttl::Connected),
        Just(Ttl::Permanent),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let addrs = proptest::collection::vec(0usize..6, 0..4);
    prop_oneof![
        (0usize..3, addrs.clone(), ttl()).prop_map(|(p, a, t)| Op::Add(p, a, t)),
        (0usize..3, addrs, ttl()).prop_map(|(p, a, t)| Op::Set(p, a, t)),
        (0usize..3, ttl(), ttl()).prop_map(|(p, o, n)| Op::Update(p, o, n)),
        (0usize..3).prop_map(Op::Clear),
        Just(Op::Gc),
        (0u64..8).prop_map(Op::Advance),
    ]
}

type Model = HashMap<usize, HashMap<usize, (Ttl, Option<Instant>)>>;

fn later(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        _ => None,
    }
}

fn apply(model: &mut Model, op: &Op, now: Instant) {
    match op {
        Op::Add(p, addrs, ttl) if *ttl != Ttl::ZERO => {
            let book = model.entry(*p).or_default();
            for a in addrs {
                let new = (*ttl, ttl.expiry(now));
                let e = book.entry(*a).or_insert(new);
                *e = (e.0.max(new.0), later(e.1, new.1));
            }
        }
        Op::Add(..) => {}
        Op::Set(p, addrs, ttl) => {
            let book = model.entry(*p).or_default();
            for a in addrs {
                if *ttl == Ttl::ZERO {
                    book.remove(a);
                } else {
                    book.insert(*a, (*ttl, ttl.expiry(now)));
                }
            }
        }
        Op::Update(p, old, new) => {
            if let Some(book) = model.get_mut(p) {
                book.retain(|_, e| !(e.0 == *old && *new == Ttl::ZERO));
                for e in book.values_mut() {
                    if e.0 == *old {
                        *e = (*new, new.expiry(now));
                    }
                }
            }
        }
        Op::Clear(p) => {
            model.remove(p);
        }
        Op::Gc => {
            for book in model.values_mut() {
                book.retain(|_, e| e.1.is_none_or(|x| now < x));
            }
        }
        Op::Advance(_) => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn memory_store_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        let ps = Peerstore::memory(Config::new().with_max_addrs_per_peer(0));
        let peers: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        let addrs: Vec<Multiaddr> =
            (0..6).map(|i| format!("/ip4/10.0.0.{i}/tcp/1").parse().unwrap()).collect();
        let mut model = Model::new();
        let mut now = Instant::now();
        for op in &ops {
            match op {
                Op::Add(p, a, t) => {
                    let a: Vec<Multiaddr> = a.iter().map(|i| addrs[*i].clone()).collect();
                    ps.add_addrs(&peers[*p], &a, *t, now);
                }
                Op::Set(p, a, t) => {
                    let a: Vec<Multiaddr> = a.iter().map(|i| addrs[*i].clone()).collect();
                    ps.set_addrs(&peers[*p], &a, *t, now);
                }
                Op::Update(p, o, n) => ps.update_addrs(&peers[*p], *o, *n, now),
                Op::Clear(p) => ps.clear_addrs(&peers[*p]),
                Op::Gc => { ps.gc(now); }
                Op::Advance(s) => now += Duration::from_secs(*s),
            }
            apply(&mut model, op, now);
            for (i, peer) in peers.iter().enumerate() {
                let mut want: Vec<Multiaddr> = model.get(&i).map(|b| {
                    b.iter().filter(|(_, e)| e.1.is_none_or(|x| now < x)).map(|(a, _)| addrs[*a].clone()).collect()
                }).unwrap_or_default();
                want.sort();
                let mut got = ps.addrs(peer, now);
                got.sort();
                prop_assert_eq!(got, want, "peer {} after {:?}", i, op);
            }
            let unconnected = model.values().flat_map(|b| b.values()).filter(|e| !e.0.is_connected()).count();
            prop_assert_eq!(ps.unconnected_addrs(), unconnected, "after {:?}", op);
            let next = model.values().flat_map(|b| b.values()).filter_map(|e| e.1).min();
            prop_assert_eq!(ps.next_expiry(), next, "after {:?}", op);
        }
    }
}
