//! Property test: the connection manager against a simple model, over random sequences of
//! connections, closes, tags, protection, time steps and trims. After every step the counts
//! and values agree with the model; every trim respects protection, grace, the ranking by value
//! and its target; admission follows the hard cap.

#![allow(clippy::disallowed_methods)]

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use peerage_core::{
    Multiaddr, PeerId,
    connmgr::{Config, ConnManager, Trim, TrimKind},
};
use proptest::prelude::*;

const PEERS: usize = 10;
const LOW: usize = 4;
const HIGH: usize = 8;
const GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
enum Op {
    Connect(usize),
    Close(usize),
    Tag(usize, i64),
    Protect(usize),
    Unprotect(usize),
    Advance(u64),
    Poll,
    Trim,
    ForceTrim,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..PEERS).prop_map(Op::Connect),
        2 => (0..PEERS).prop_map(Op::Close),
        2 => (0..PEERS, -50i64..50).prop_map(|(p, v)| Op::Tag(p, v)),
        1 => (0..PEERS).prop_map(Op::Protect),
        1 => (0..PEERS).prop_map(Op::Unprotect),
        2 => (0u64..1500).prop_map(Op::Advance),
        1 => Just(Op::Poll),
        1 => Just(Op::Trim),
        1 => Just(Op::ForceTrim),
    ]
}

#[derive(Default)]
struct Model {
    /// Connection IDs per connected peer, and when the peer connected first.
    conns: HashMap<usize, (Vec<u64>, Instant)>,
    /// Tags of connected or early-tagged peers.
    tags: HashMap<usize, i64>,
    /// When early-tagged (not connected) peers were first tagged.
    early: HashMap<usize, Instant>,
    protected: HashSet<usize>,
}

impl Model {
    fn total(&self) -> usize {
        self.conns.values().map(|(c, _)| c.len()).sum()
    }
    fn unprotected(&self) -> usize {
        self.conns
            .iter()
            .filter(|(p, _)| !self.protected.contains(p))
            .map(|(_, (c, _))| c.len())
            .sum()
    }
    fn candidate(&self, p: usize, now: Instant) -> bool {
        !self.protected.contains(&p)
            && self
                .conns
                .get(&p)
                .is_some_and(|(_, first)| now.duration_since(*first) >= GRACE)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn connmgr_matches_the_model(ops in prop::collection::vec(op(), 1..120)) {
        let mut now = Instant::now();
        let config = Config::new()
            .with_watermarks(LOW, HIGH)
            .with_grace_period(GRACE)
            .with_silence_period(Duration::from_secs(1))
            .with_early_tag_ttl(Duration::from_secs(3600));
        let cap = config.hard_cap().unwrap();
        let mut cm = ConnManager::<u64>::new(config, now).unwrap();
        let ids: Vec<PeerId> = (0..PEERS).map(|_| PeerId::random()).collect();
        let index: HashMap<PeerId, usize> = ids.iter().enumerate().map(|(i, p)| (*p, i)).collect();
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        let mut model = Model::default();
        let mut next_id = 0;

        for op in ops {
            let mut trim: Option<Trim> = None;
            match op {
                Op::Connect(p) => {
                    let admitted = cm.admit(&ids[p]).is_ok();
                    let expected = model.protected.contains(&p) || model.unprotected() < cap;
                    prop_assert_eq!(admitted, expected, "admission of {}", p);
                    if admitted {
                        next_id += 1;
                        prop_assert!(cm.connection_established(ids[p], next_id, p % 2 == 0, addr.clone(), now));
                        model.conns.entry(p).or_insert_with(|| (Vec::new(), now)).0.push(next_id);
                        model.early.remove(&p);
                    }
                }
                Op::Close(p) => {
                    if let Some((conns, _)) = model.conns.get_mut(&p) {
                        let id = conns.pop().unwrap();
                        prop_assert!(cm.connection_closed(&ids[p], id));
                        if conns.is_empty() {
                            model.conns.remove(&p);
                            model.tags.remove(&p);
                        }
                    }
                }
                Op::Tag(p, v) => {
                    cm.tag_peer(ids[p], "t", v, now);
                    model.tags.insert(p, v);
                    if !model.conns.contains_key(&p) {
                        model.early.entry(p).or_insert(now);
                    }
                }
                Op::Protect(p) => {
                    cm.protect(ids[p], "k");
                    model.protected.insert(p);
                }
                Op::Unprotect(p) => {
                    prop_assert!(!cm.unprotect(&ids[p], "k"));
                    model.protected.remove(&p);
                }
                Op::Advance(ms) => now += Duration::from_millis(ms),
                Op::Poll => trim = cm.poll(now),
                Op::Trim => trim = Some(cm.trim_open_conns(now)),
                Op::ForceTrim => trim = Some(cm.force_trim(now)),
            }

            if let Some(trim) = trim {
                let victims: Vec<usize> = trim.victims.iter().map(|v| index[&v.peer]).collect();
                let unique: HashSet<usize> = victims.iter().copied().collect();
                prop_assert_eq!(unique.len(), victims.len(), "a peer chosen twice");
                let total = model.total();
                let chosen: usize = victims.iter().map(|p| model.conns[p].0.len()).sum();
                match trim.kind {
                    TrimKind::Background | TrimKind::Manual => {
                        if trim.kind == TrimKind::Background {
                            prop_assert!(total > HIGH);
                        }
                        let candidates: Vec<usize> =
                            (0..PEERS).filter(|p| model.candidate(*p, now)).collect();
                        let n: usize = candidates.iter().map(|p| model.conns[p].0.len()).sum();
                        for v in &victims {
                            prop_assert!(candidates.contains(v), "{} is protected or in grace", v);
                        }
                        if total <= LOW || n <= LOW {
                            prop_assert!(victims.is_empty());
                        } else {
                            // Early tags out of grace, unprotected, are dropped first.
                            let dropped: Vec<usize> = model
                                .early
                                .iter()
                                .filter(|(p, t)| !model.protected.contains(p) && now.duration_since(**t) >= GRACE)
                                .map(|(p, _)| *p)
                                .collect();
                            for p in dropped {
                                model.early.remove(&p);
                                model.tags.remove(&p);
                            }
                            // Whole peers until n - LOW connections are chosen, no more.
                            prop_assert!(chosen >= n - LOW);
                            let last = model.conns[victims.last().unwrap()].0.len();
                            prop_assert!(chosen - last < n - LOW);
                            // Ranked by value: no spared candidate is worth less than a victim.
                            let value = |p: &usize| model.tags.get(p).copied().unwrap_or(0);
                            let worst = victims.iter().map(value).max().unwrap();
                            for c in candidates.iter().filter(|c| !unique.contains(c)) {
                                prop_assert!(value(c) >= worst);
                            }
                        }
                    }
                    TrimKind::Emergency => {
                        let target = total.saturating_sub(LOW);
                        prop_assert!(chosen >= target.min(total));
                        let any_protected = victims.iter().any(|v| model.protected.contains(v));
                        if any_protected {
                            // Protected peers only once every unprotected one is chosen.
                            for p in model.conns.keys().filter(|p| !model.protected.contains(p)) {
                                prop_assert!(unique.contains(p));
                            }
                        }
                    }
                }
                // The glue closes the victims' connections.
                for v in victims {
                    let (conns, _) = model.conns.remove(&v).unwrap();
                    for id in conns {
                        prop_assert!(cm.connection_closed(&ids[v], id));
                    }
                    model.tags.remove(&v);
                }
            }

            prop_assert_eq!(cm.connections(), model.total());
            prop_assert_eq!(cm.info(now).peers, model.conns.len());
            for (p, id) in ids.iter().enumerate() {
                let info = cm.tag_info(id);
                let expected = model.tags.get(&p).copied();
                prop_assert_eq!(info.as_ref().and_then(|i| i.tags.get("t").copied()), expected, "tags of {}", p);
                if let Some(info) = info {
                    prop_assert_eq!(info.value, expected.unwrap_or(0));
                    prop_assert_eq!(info.connections.len(), model.conns.get(&p).map_or(0, |c| c.0.len()));
                }
            }
        }
    }
}
