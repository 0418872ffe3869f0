//! Peerstore benchmarks (issue #3): go's suite shape, 10,000 peers at 1, 10 and 100 addresses
//! per peer, for `add_addrs`, `set_addrs`, `addrs` (a read benchmark, which go's suite lacks)
//! and a GC sweep; then one add-then-read workload side by side with `libp2p-peer-store` 0.1's
//! `MemoryStore` (the published crate), in the same run.
//!
//! `cargo bench -p peerage-core --bench peerstore`; figures in `benches/README.md`.

#![allow(missing_docs, clippy::disallowed_methods)]

use std::{
    hint::black_box,
    num::NonZeroUsize,
    time::{Duration, Instant},
};

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group};
use libp2p_peer_store::Store as _;
use peerage_core::{
    Multiaddr, PeerId,
    peerstore::{Config, Peerstore, Ttl},
};

const PEERS: usize = 10_000;

struct Input {
    peers: Vec<PeerId>,
    addrs: Vec<Vec<Multiaddr>>,
}

fn input(per_peer: usize) -> Input {
    let peers: Vec<PeerId> = (0..PEERS).map(|_| PeerId::random()).collect();
    let addrs = (0..PEERS)
        .map(|i| {
            (0..per_peer)
                .map(|k| {
                    format!(
                        "/ip4/10.{}.{}.{}/tcp/{}",
                        i / 256 % 256,
                        i % 256,
                        k % 256,
                        4000 + k
                    )
                    .parse()
                    .unwrap()
                })
                .collect()
        })
        .collect();
    Input { peers, addrs }
}

/// go's addr-book suite runs without the per-peer cap, which 100 addresses would exceed.
fn store() -> Peerstore {
    Peerstore::memory(Config::new().with_max_addrs_per_peer(0))
}

fn filled(input: &Input, now: Instant) -> Peerstore {
    let ps = store();
    for (p, a) in input.peers.iter().zip(&input.addrs) {
        ps.add_addrs(p, a, Ttl::ADDRESS, now);
    }
    ps
}

fn addr_book(c: &mut Criterion) {
    let mut group = c.benchmark_group("memory");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4));
    for per_peer in [1, 10, 100] {
        let input = input(per_peer);
        let now = Instant::now();
        group.throughput(Throughput::Elements((PEERS * per_peer) as u64));
        group.bench_function(BenchmarkId::new("add_addrs", per_peer), |b| {
            b.iter_batched(
                store,
                |ps| {
                    for (p, a) in input.peers.iter().zip(&input.addrs) {
                        ps.add_addrs(p, a, Ttl::ADDRESS, now);
                    }
                    ps
                },
                BatchSize::PerIteration,
            )
        });
        group.bench_function(BenchmarkId::new("set_addrs", per_peer), |b| {
            b.iter_batched(
                || filled(&input, now),
                |ps| {
                    for (p, a) in input.peers.iter().zip(&input.addrs) {
                        ps.set_addrs(p, a, Ttl::TEMP, now);
                    }
                    ps
                },
                BatchSize::PerIteration,
            )
        });
        let ps = filled(&input, now);
        group.bench_function(BenchmarkId::new("addrs", per_peer), |b| {
            b.iter(|| {
                for p in &input.peers {
                    black_box(ps.addrs(p, now));
                }
            })
        });
        group.bench_function(BenchmarkId::new("gc", per_peer), |b| {
            b.iter_batched(
                || filled(&input, now),
                |ps| {
                    assert_eq!(ps.gc(now + Duration::from_secs(7200)), PEERS * per_peer);
                    ps
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// The side-by-side workload on our store: every address added with its own call, then every
/// peer's addresses read back.
fn add_then_read(input: &Input, now: Instant) {
    let ps = store();
    for (p, addrs) in input.peers.iter().zip(&input.addrs) {
        for a in addrs {
            ps.add_addrs(p, std::slice::from_ref(a), Ttl::ADDRESS, now);
        }
    }
    for p in &input.peers {
        black_box(ps.addrs(p, now));
    }
}

/// 10,000 peers: 10 addresses added one call each, then every peer's addresses read back.
fn side_by_side(c: &mut Criterion) {
    const PER_PEER: usize = 10;
    let input = input(PER_PEER);
    let now = Instant::now();
    let mut group = c.benchmark_group("add_then_read_10k_x10");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4));
    // Operations: one per address added, one per peer read.
    group.throughput(Throughput::Elements((PEERS * (PER_PEER + 1)) as u64));
    group.bench_function("peerage", |b| b.iter(|| add_then_read(&input, now)));
    group.bench_function("libp2p-peer-store", |b| {
        b.iter(|| {
            let config = libp2p_peer_store::memory_store::Config::default()
                .set_peer_capacity(NonZeroUsize::new(PEERS).unwrap())
                .set_record_capacity(NonZeroUsize::new(PER_PEER).unwrap());
            let mut store: libp2p_peer_store::memory_store::MemoryStore =
                libp2p_peer_store::memory_store::MemoryStore::new(config);
            for (p, addrs) in input.peers.iter().zip(&input.addrs) {
                for a in addrs {
                    store.add_address(p, a);
                }
            }
            for p in &input.peers {
                black_box(
                    store
                        .addresses_of_peer(p)
                        .map(|i| i.cloned().collect::<Vec<_>>()),
                );
            }
        })
    });
    group.finish();
}

/// The same add-then-read workload on js-libp2p's `@libp2p/peer-store` (in-memory datastore),
/// run by `interop/js/bench-peerstore.mjs`, beside ours timed here: the ratio of operations per
/// second, in the same run. Skipped with a note if Node.js or `interop/js` is not installed.
fn js_comparison() {
    const PER_PEER: usize = 10;
    let js_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop/js");
    if !js_dir.join("node_modules/@libp2p/peer-store").is_dir() {
        println!("js comparison skipped: run `npm ci --prefix interop/js` first");
        return;
    }
    let input = input(PER_PEER);
    let now = Instant::now();
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        add_then_read(&input, now);
        best = best.min(start.elapsed());
    }
    let ops = (PEERS * (PER_PEER + 1)) as f64;
    let ours = ops / best.as_secs_f64();
    let out = std::process::Command::new("node")
        .current_dir(&js_dir)
        .args(["--import", "./polyfill.mjs", "bench-peerstore.mjs"])
        .output();
    let js: Option<f64> = out.ok().and_then(|o| {
        let line = String::from_utf8_lossy(&o.stdout)
            .lines()
            .last()?
            .to_owned();
        let v: serde_json::Value = serde_json::from_str(&line).ok()?;
        v["ops_per_sec"].as_f64()
    });
    match js {
        Some(js) => println!(
            "add_then_read_10k_x10: peerage {ours:.0} ops/s, js @libp2p/peer-store {js:.0} ops/s, ratio {:.0}x",
            ours / js
        ),
        None => println!("js comparison failed: could not run interop/js/bench-peerstore.mjs"),
    }
}

criterion_group!(benches, addr_book, side_by_side);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    js_comparison();
}
