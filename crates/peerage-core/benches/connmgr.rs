//! Trim cost of the connection manager at 10k, 100k and 1M connections (issue #4): one
//! connection per peer, random tag values, every peer out of grace, low watermark at half, so
//! a trim chooses half the peers (`connmgr_trim`); and the same down to a low watermark of 90 %,
//! a tenth of the peers chosen (`connmgr_trim_to_90pct`, the case of the issue on the cost of
//! the stack). After criterion, the growth per 10x is printed next to what `n log n` predicts.
//!
//! `cargo bench -p peerage-core --bench connmgr`; figures in `benches/README.md`.

#![allow(missing_docs, clippy::disallowed_methods)]

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group};
use peerage_core::{
    Multiaddr, PeerId,
    connmgr::{Config, ConnManager},
};
use rand::{Rng, SeedableRng, rngs::StdRng};

const SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];

fn manager(n: usize, now: Instant) -> ConnManager<u64> {
    manager_to(n, n / 2, now)
}

/// `n` connections, low watermark `low`.
fn manager_to(n: usize, low: usize, now: Instant) -> ConnManager<u64> {
    let config = Config::new()
        .with_watermarks(low, n)
        .with_grace_period(Duration::ZERO);
    let mut cm = ConnManager::new(config, now).unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let addr: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
    for i in 0..n {
        let peer = PeerId::random();
        cm.connection_established(peer, i as u64, i % 2 == 0, addr.clone(), now);
        cm.tag_peer(peer, "app", rng.random_range(0..1000), now);
    }
    cm
}

/// The low watermark for `n` connections.
type LowWater = fn(usize) -> usize;

fn trim(c: &mut Criterion) {
    let now = Instant::now();
    // Down to half the connections, then down to 90 %.
    let cases: [(&str, LowWater); 2] = [
        ("connmgr_trim", |n| n / 2),
        ("connmgr_trim_to_90pct", |n| n * 9 / 10),
    ];
    for (name, low) in cases {
        let mut group = c.benchmark_group(name);
        group.sample_size(10);
        for n in SIZES {
            let cm = manager_to(n, low(n), now);
            group.throughput(Throughput::Elements(n as u64));
            group.bench_function(BenchmarkId::from_parameter(n), |b| {
                // By reference: dropping the copy is not part of a trim.
                b.iter_batched_ref(
                    || cm.clone(),
                    |cm| black_box(cm.trim_open_conns(now)),
                    BatchSize::LargeInput,
                );
            });
        }
        group.finish();
    }
}

/// Median of 5 timed trims, each on a fresh copy (the copy is not timed).
fn median_trim(cm: &ConnManager<u64>, now: Instant) -> Duration {
    let mut times: Vec<Duration> = (0..5)
        .map(|_| {
            let mut copy = cm.clone();
            let start = Instant::now();
            black_box(copy.trim_open_conns(now));
            start.elapsed()
        })
        .collect();
    times.sort();
    times[2]
}

fn growth() {
    let now = Instant::now();
    let times: Vec<(usize, Duration)> = SIZES
        .iter()
        .map(|&n| (n, median_trim(&manager(n, now), now)))
        .collect();
    for pair in times.windows(2) {
        let ((n0, t0), (n1, t1)) = (pair[0], pair[1]);
        let nlogn = |n: usize| n as f64 * (n as f64).log2();
        println!(
            "connmgr_trim {n0} -> {n1}: {t0:.2?} -> {t1:.2?}, x{:.1} (n log n predicts x{:.1})",
            t1.as_secs_f64() / t0.as_secs_f64(),
            nlogn(n1) / nlogn(n0),
        );
    }
}

criterion_group!(benches, trim);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    growth();
}
