//! Cost of one inbound-eviction decision (`addrbook::evict::select`) over 1,000 inbound
//! candidates from mixed groups: 300 IPv4 /16s (a quarter of the candidates in 4 of them, as an
//! attacker's), a few IPv6 /32s, loopback and relayed; random pings (some unknown), usefulness,
//! tag values, a few protected and prefer-evict candidates. Target: at most 50 µs.
//!
//! Alongside, in the same run, the baseline `sort_by_uptime`: one sort of the same candidates by
//! connection time (what each of Bitcoin Core's steps costs, done with a full sort), timed on a
//! copy made outside the timing; `select` borrows the candidates.
//!
//! `cargo bench -p peerage-core --bench evict`.

#![allow(missing_docs, clippy::disallowed_methods)]

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group};
use peerage_core::addrbook::{
    Group,
    evict::{Candidate, Config, select},
};
use rand::{Rng, SeedableRng, rngs::StdRng};

const N: usize = 1_000;

fn candidates(n: usize, now: Instant) -> Vec<Candidate<u64>> {
    let mut rng = StdRng::seed_from_u64(1);
    (0..n)
        .map(|i| {
            let group = match rng.random_range(0..100) {
                0..25 => Group::Ipv4([200, rng.random_range(0..4)]),
                25..85 => Group::Ipv4([rng.random_range(1..100), rng.random_range(0..3)]),
                85..93 => Group::Ipv6([0x20, 0x01, rng.random(), 0]),
                93..97 => Group::Loopback,
                _ => Group::Relay,
            };
            Candidate {
                id: i as u64,
                group,
                connected: now - Duration::from_secs(rng.random_range(0..86_400)),
                min_ping: rng
                    .random_bool(0.9)
                    .then(|| Duration::from_micros(rng.random_range(500..500_000))),
                last_useful: rng
                    .random_bool(0.5)
                    .then(|| now - Duration::from_secs(rng.random_range(0..3_600))),
                tag_value: rng.random_range(0..100),
                protected: rng.random_bool(0.02),
                prefer_evict: rng.random_bool(0.01),
                disadvantaged: matches!(group, Group::Loopback | Group::Relay),
            }
        })
        .collect()
}

fn evict(c: &mut Criterion) {
    let now = Instant::now();
    let cands = candidates(N, now);
    let config = Config::default();
    let key = 0x5eed_1234_abcd_0042;
    let mut group = c.benchmark_group("evict");
    group.throughput(Throughput::Elements(N as u64));
    group.bench_function(BenchmarkId::new("select", N), |b| {
        b.iter(|| black_box(select(black_box(&cands), black_box(key), &config)));
    });
    group.bench_function(BenchmarkId::new("sort_by_uptime", N), |b| {
        b.iter_batched(
            || cands.clone(),
            |mut v| {
                v.sort_unstable_by(|a, b| b.connected.cmp(&a.connected).then(b.id.cmp(&a.id)));
                black_box(v)
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, evict);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
