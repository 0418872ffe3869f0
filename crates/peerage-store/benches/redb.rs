//! Benchmarks of the redb peerstore (issue #3): go's suite shape (10,000 peers at 1, 10 and
//! 100 addresses: `add_addrs` + `flush`, `set_addrs` + `flush`, `addrs`, GC sweep + `flush`),
//! sustained peer-record writes with group commit, and open-and-load of 100,000 peers with 10
//! addresses each.
//!
//! `cargo bench -p peerage-store --bench redb`; figures in `crates/peerage-core/benches/README.md`.

#![allow(missing_docs, clippy::disallowed_methods)]

use std::{
    hint::black_box,
    path::Path,
    time::{Duration, Instant},
};

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use libp2p_identity::{Keypair, PeerId};
use multiaddr::Multiaddr;
use peerage_core::peerstore::{Config, Store, Ttl};
use peerage_store::peerstore::{Options, RedbStore};

fn peers(n: usize) -> Vec<PeerId> {
    (0..n)
        .map(|_| Keypair::generate_ed25519().public().to_peer_id())
        .collect()
}

fn addrs(i: usize, per_peer: usize) -> Vec<Multiaddr> {
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
}

fn open(path: &Path) -> RedbStore {
    let config = Config::new().with_max_addrs_per_peer(0);
    RedbStore::open(
        path,
        config,
        Options::new().with_flush_threshold(usize::MAX),
    )
    .unwrap()
}

fn suite(c: &mut Criterion) {
    const PEERS: usize = 10_000;
    let mut group = c.benchmark_group("redb");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    let ids = peers(PEERS);
    for per_peer in [1, 10, 100] {
        let input: Vec<Vec<Multiaddr>> = (0..PEERS).map(|i| addrs(i, per_peer)).collect();
        let now = Instant::now();
        group.throughput(Throughput::Elements((PEERS * per_peer) as u64));
        let fresh = || {
            let dir = tempfile::tempdir().unwrap();
            let store = open(&dir.path().join("p.redb"));
            (dir, store)
        };
        let filled = || {
            let (dir, store) = fresh();
            for (p, a) in ids.iter().zip(&input) {
                store.add_addrs(p, a, Ttl::ADDRESS, now);
            }
            store.flush().unwrap();
            (dir, store)
        };
        group.bench_function(BenchmarkId::new("add_addrs+flush", per_peer), |b| {
            b.iter_batched(
                fresh,
                |(dir, store)| {
                    for (p, a) in ids.iter().zip(&input) {
                        store.add_addrs(p, a, Ttl::ADDRESS, now);
                    }
                    store.flush().unwrap();
                    (dir, store)
                },
                BatchSize::PerIteration,
            )
        });
        group.bench_function(BenchmarkId::new("set_addrs+flush", per_peer), |b| {
            b.iter_batched(
                filled,
                |(dir, store)| {
                    for (p, a) in ids.iter().zip(&input) {
                        store.set_addrs(p, a, Ttl::TEMP, now);
                    }
                    store.flush().unwrap();
                    (dir, store)
                },
                BatchSize::PerIteration,
            )
        });
        let (_dir, store) = filled();
        group.bench_function(BenchmarkId::new("addrs", per_peer), |b| {
            b.iter(|| {
                for p in &ids {
                    black_box(store.addrs(p, now));
                }
            })
        });
        drop(store);
        group.bench_function(BenchmarkId::new("gc+flush", per_peer), |b| {
            b.iter_batched(
                filled,
                |(dir, store)| {
                    assert_eq!(store.gc(now + Duration::from_secs(7200)), PEERS * per_peer);
                    store.flush().unwrap();
                    (dir, store)
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// Sustained writes: batches of 1,000 peers (10 addresses, protocols, latency), each batch one
/// durable flush.
fn sustained_writes(c: &mut Criterion) {
    const BATCH: usize = 1_000;
    let mut group = c.benchmark_group("redb_sustained");
    group
        .sample_size(20)
        .throughput(Throughput::Elements(BATCH as u64));
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("p.redb"));
    let now = Instant::now();
    let protocols = vec!["/ipfs/id/1.0.0".to_owned(), "/ipfs/ping/1.0.0".to_owned()];
    let mut n = 0usize;
    group.bench_function("peer_records_per_flush_1000", |b| {
        b.iter(|| {
            for p in peers(BATCH) {
                store.add_addrs(&p, &addrs(n, 10), Ttl::ADDRESS, now);
                store.set_protocols(&p, &protocols).unwrap();
                store.record_latency(&p, Duration::from_millis(n as u64 % 100));
                n += 1;
            }
            store.flush().unwrap();
        })
    });
    group.finish();
}

/// Open and load 100,000 peers with 10 addresses each (target: under 2 s).
fn open_and_load(c: &mut Criterion) {
    const PEERS: usize = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.redb");
    {
        let store = open(&path);
        let now = Instant::now();
        let protocols = vec!["/ipfs/id/1.0.0".to_owned(), "/ipfs/ping/1.0.0".to_owned()];
        for (i, p) in peers(PEERS).iter().enumerate() {
            store.add_addrs(p, &addrs(i, 10), Ttl::Permanent, now);
            store.set_protocols(p, &protocols).unwrap();
        }
        store.flush().unwrap();
    }
    let mut group = c.benchmark_group("redb_open");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("open_and_load_100k_x10", |b| {
        b.iter(|| {
            let store = open(&path);
            assert_eq!(store.loaded_peers(), PEERS);
            store
        })
    });
    group.finish();
}

criterion_group!(benches, suite, sustained_writes, open_and_load);
criterion_main!(benches);
