//! Reserve-and-release of stream memory through the whole chain: a stream attached to a
//! protocol and a service charges stream, peer, protocol, protocol-peer, service, service-peer
//! and system (go's edges; a stream not yet attached charges transient instead of the
//! protocol scopes). Single-threaded, then with 2 and 8 threads each on its own stream of its
//! own peer (all meet at the system scope and the manager's lock), side by side with the same
//! work on a plain `Mutex<u64>` counter per level as a baseline.
//!
//! `cargo bench -p peerage-core --bench rcmgr`; figures in `benches/README.md`.

#![allow(missing_docs, clippy::disallowed_methods)]

use std::{
    hint::black_box,
    sync::{Arc, Barrier, Mutex},
    thread,
    time::{Duration, Instant},
};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use peerage_core::{
    PeerId,
    rcmgr::{
        Config, Direction, IpLimits, LimitConfig, Priority, RateLimits, ResourceManager,
        ResourceScope, StreamScope,
    },
};

fn manager() -> ResourceManager {
    let config = Config::new()
        .with_limits(LimitConfig::unlimited())
        .with_ip_limits(IpLimits::disabled())
        .with_rate_limits(RateLimits::disabled());
    ResourceManager::new(config).unwrap()
}

fn stream(rm: &ResourceManager, attached: bool) -> StreamScope {
    let mut s = rm
        .open_stream(PeerId::random(), Direction::Inbound)
        .unwrap();
    if attached {
        s.set_protocol("/bench/1").unwrap();
        s.set_service("bench").unwrap();
    }
    s
}

/// The baseline: the same number of levels, each a plain mutex-guarded counter.
struct Plain(Vec<Mutex<u64>>);

impl Plain {
    fn reserve_release(&self, n: u64) {
        for l in &self.0 {
            *l.lock().unwrap() += n;
        }
        for l in &self.0 {
            *l.lock().unwrap() -= n;
        }
    }
}

fn contended(threads: usize, iters: u64, op: impl Fn(usize) + Send + Sync + 'static) -> Duration {
    let op = Arc::new(op);
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (op, barrier) = (op.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                for _ in 0..iters {
                    op(t);
                }
            })
        })
        .collect();
    let start = Instant::now();
    barrier.wait();
    for h in handles {
        h.join().unwrap();
    }
    // Per operation of one thread, as go's benchmarks report.
    start.elapsed() / threads as u32
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("rcmgr_reserve_release");
    for attached in [false, true] {
        let rm = manager();
        let s = stream(&rm, attached);
        let name = if attached {
            "stream_protocol_service_chain"
        } else {
            "stream_transient_chain"
        };
        g.bench_function(BenchmarkId::new("rcmgr", name), |b| {
            b.iter(|| {
                drop(black_box(
                    s.reserve_memory(black_box(4096), Priority::ALWAYS).unwrap(),
                ))
            })
        });
    }
    let plain = Plain((0..7).map(|_| Mutex::new(0)).collect());
    g.bench_function(BenchmarkId::new("plain_mutex_counters", "7_levels"), |b| {
        b.iter(|| plain.reserve_release(black_box(4096)))
    });
    for threads in [2usize, 8] {
        let rm = manager();
        let streams: Arc<Vec<StreamScope>> =
            Arc::new((0..threads).map(|_| stream(&rm, true)).collect());
        g.bench_function(BenchmarkId::new("rcmgr_contended", threads), |b| {
            b.iter_custom(|iters| {
                let streams = streams.clone();
                contended(threads, iters, move |t| {
                    drop(black_box(
                        streams[t].reserve_memory(4096, Priority::ALWAYS).unwrap(),
                    ));
                })
            })
        });
        let plain = Arc::new(Plain((0..7).map(|_| Mutex::new(0)).collect()));
        g.bench_function(BenchmarkId::new("plain_contended", threads), |b| {
            b.iter_custom(|iters| {
                let plain = plain.clone();
                contended(threads, iters, move |_| plain.reserve_release(4096))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
