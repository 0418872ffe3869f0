//! The address book's costs, on a book filled as Bitcoin Core's `src/bench/addrman.cpp` fills
//! it (64 sources × 256 random IPv4 addresses, 16,384 in all):
//!
//! - `addrbook_select`: one dial candidate (Bitcoin Core's `AddrManSelect`: 0.227 µs, PR
//!   #18722), beside `addrbook_select/baseline`, a uniform draw from a `Vec` of the same
//!   addresses: the floor any table could reach;
//! - `addrbook_select_outbound`: the same with the outbound-group filter (8 groups held);
//! - `addrbook_add`: adding the 16,384 addresses to an empty book, per address (Bitcoin
//!   Core's `AddrManAdd`: about 10.5 µs);
//! - `addrbook_load`: a full book (new and tried filled as far as random addresses fill them)
//!   read from a file and restored, page cache warm.
//!
//! `cargo bench -p peerage-core --bench addrbook`; figures in `benches/README.md`.

#![allow(missing_docs, clippy::disallowed_methods)]

use std::{hint::black_box, net::Ipv4Addr, time::Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use peerage_core::{
    Multiaddr,
    addrbook::{AddrBook, Config, Grouping, Snapshot},
};
use rand::{Rng, SeedableRng, rngs::StdRng};

const SOURCES: usize = 64;
const PER_SOURCE: usize = 256;

fn random_addr(rng: &mut StdRng) -> Multiaddr {
    // Public unicast space, as Bitcoin Core's bench draws its addresses.
    let ip = Ipv4Addr::new(
        rng.random_range(1..224),
        rng.random(),
        rng.random(),
        rng.random(),
    );
    format!("/ip4/{ip}/tcp/4001").parse().unwrap()
}

/// Bitcoin Core's `CreateAddresses`: 64 sources, 256 addresses each.
fn addresses(rng: &mut StdRng) -> Vec<(Multiaddr, Vec<Multiaddr>)> {
    (0..SOURCES)
        .map(|_| {
            (
                random_addr(rng),
                (0..PER_SOURCE).map(|_| random_addr(rng)).collect(),
            )
        })
        .collect()
}

fn fill(
    book: &mut AddrBook,
    addrs: &[(Multiaddr, Vec<Multiaddr>)],
    now: Instant,
    rng: &mut StdRng,
) {
    for (source, batch) in addrs {
        book.add(batch.iter().map(|a| (a, None)), source, now, rng);
    }
}

fn select(c: &mut Criterion) {
    let now = Instant::now();
    let mut rng = StdRng::seed_from_u64(1);
    let addrs = addresses(&mut rng);
    let mut book = AddrBook::new(Config::new(), Grouping::new(), [1, 2], now);
    fill(&mut book, &addrs, now, &mut rng);
    // A quarter connected once, so that both tables draw.
    for (_, batch) in addrs.iter().take(SOURCES / 4) {
        for a in batch {
            book.good(a, now);
        }
    }
    println!("book: {} new, {} tried", book.new_len(), book.tried_len());
    // An hour on, so that no draw is held back as "tried in the last 10 minutes".
    let now = now + std::time::Duration::from_secs(3600);
    let flat: Vec<Multiaddr> = addrs.iter().flat_map(|(_, b)| b.iter().cloned()).collect();
    let held: Vec<_> = flat.iter().take(8).map(|a| book.group(a)).collect();
    let mut group = c.benchmark_group("addrbook_select");
    group.bench_function("baseline", |b| {
        b.iter(|| black_box(flat[rng.random_range(0..flat.len())].clone()))
    });
    group.bench_function("select", |b| {
        b.iter(|| black_box(book.select(false, now, &mut rng)))
    });
    group.bench_function("select_outbound", |b| {
        b.iter(|| black_box(book.select_outbound(now, &mut rng, |c| held.contains(&c.group))))
    });
    group.finish();
}

fn add(c: &mut Criterion) {
    let now = Instant::now();
    let mut rng = StdRng::seed_from_u64(2);
    let addrs = addresses(&mut rng);
    let mut group = c.benchmark_group("addrbook_add");
    group.sample_size(20);
    group.throughput(Throughput::Elements((SOURCES * PER_SOURCE) as u64));
    group.bench_function("16384", |b| {
        b.iter_batched(
            || AddrBook::new(Config::new(), Grouping::new(), [1, 2], now),
            |mut book| {
                fill(&mut book, &addrs, now, &mut rng);
                book
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn load(c: &mut Criterion) {
    let now = Instant::now();
    let mut rng = StdRng::seed_from_u64(3);
    let mut book = AddrBook::new(Config::new(), Grouping::new(), [1, 2], now);
    // Fill until both tables are as full as random addresses make them.
    for _ in 0..40 {
        let addrs = addresses(&mut rng);
        fill(&mut book, &addrs, now, &mut rng);
        for (_, batch) in addrs.iter().take(SOURCES / 4) {
            for a in batch {
                book.good(a, now);
            }
        }
        book.resolve_collisions(now + std::time::Duration::from_secs(3 * 3600));
    }
    let path = std::env::temp_dir().join(format!(
        "peerage-addrbook-bench-{}.json",
        std::process::id()
    ));
    std::fs::write(&path, serde_json::to_vec(&book.snapshot(now)).unwrap()).unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    println!(
        "full book: {} new, {} tried, {} entries, {:.1} MiB on disk",
        book.new_len(),
        book.tried_len(),
        book.len(),
        size as f64 / (1 << 20) as f64
    );
    let mut group = c.benchmark_group("addrbook_load");
    group.sample_size(10);
    group.bench_function("parse_only", |b| {
        b.iter_with_large_drop(|| {
            let bytes = std::fs::read(&path).unwrap();
            let snap: Snapshot = serde_json::from_slice(&bytes).unwrap();
            snap
        })
    });
    // The restored book is dropped outside the timing: dropping is not loading.
    group.bench_function("full", |b| {
        b.iter_with_large_drop(|| {
            let bytes = std::fs::read(&path).unwrap();
            let snap: Snapshot = serde_json::from_slice(&bytes).unwrap();
            AddrBook::restore(snap, Config::new(), Grouping::new(), now)
        })
    });
    group.finish();
    let _ = std::fs::remove_file(&path);
}

criterion_group!(benches, select, add, load);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
