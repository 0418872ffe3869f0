//! How long an event loop waits on the peerstore while a flush of 100,000 changed peers runs
//! (issue 16, item 6).
//!
//! The loop is a thread that does, every millisecond, what the node's behaviour does to the
//! peerstore on an identify: one write (`add_addrs` + `set_protocols` of a known peer) and one
//! read (`addrs` of another). It is timed in three runs, side by side:
//!
//! 1. **idle**: no flush, the baseline;
//! 2. **flush off the loop**: 100,000 peers changed, and another thread flushes them while the
//!    loop runs (as `peerage run` flushes on its blocking pool, and the store's flusher thread
//!    does past its threshold);
//! 3. **flush on the loop**: the same flush called on the loop thread, which is what a write
//!    past the threshold did before the flusher thread.
//!
//! For each: the loop's iterations, the longest and the 99th-percentile time one iteration
//! spent in the peerstore, and the longest gap between two iterations (the 1 ms sleep
//! included).
//!
//! `cargo run --release -p peerage-store --example flush_gap [PEERS]`; figures in
//! `crates/peerage-core/benches/README.md`.

#![allow(clippy::disallowed_methods, clippy::print_stdout)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use libp2p_identity::{Keypair, PeerId};
use multiaddr::Multiaddr;
use peerage_core::peerstore::{Config, Store, Ttl};
use peerage_store::peerstore::{Options, RedbStore};

const TICK: Duration = Duration::from_millis(1);

fn peer(i: u32) -> PeerId {
    let mut seed = [0u8; 32];
    seed[..4].copy_from_slice(&i.to_be_bytes());
    seed[31] = 7;
    Keypair::ed25519_from_bytes(seed)
        .expect("32 bytes")
        .public()
        .to_peer_id()
}

fn addrs(i: u32) -> Vec<Multiaddr> {
    (0..4u32)
        .map(|k| {
            format!(
                "/ip4/10.{}.{}.{k}/tcp/{}",
                i / 256 % 256,
                i % 256,
                4000 + i % 1000
            )
            .parse()
            .expect("valid")
        })
        .collect()
}

fn protocols(i: u32) -> Vec<String> {
    vec![
        "/ipfs/id/1.0.0".into(),
        "/ipfs/ping/1.0.0".into(),
        format!("/app/{}", i % 10),
    ]
}

/// Changes every peer (what a flush will write), without flushing.
fn change_all(store: &RedbStore, ids: &[PeerId], round: u32, now: Instant) {
    for (i, p) in (0u32..).zip(ids) {
        store.add_addrs(p, &addrs(i.wrapping_add(round)), Ttl::ADDRESS, now);
        store.set_protocols(p, &protocols(i)).expect("under caps");
        store.record_latency(p, Duration::from_millis(u64::from(i % 200)));
    }
}

struct Report {
    iterations: usize,
    max_in_store: Duration,
    p99_in_store: Duration,
    max_gap: Duration,
}

/// Runs the loop on this thread until `done` is set (and at least `min` long).
fn run_loop(store: &RedbStore, ids: &[PeerId], done: &AtomicBool, min: Duration) -> Report {
    let started = Instant::now();
    let mut in_store = Vec::new();
    let mut max_gap = Duration::ZERO;
    let mut last = Instant::now();
    let mut i = 0u32;
    while !done.load(Ordering::Acquire) || started.elapsed() < min {
        let t = Instant::now();
        max_gap = max_gap.max(t - last);
        last = t;
        let n = u32::try_from(ids.len()).expect("fits");
        let (w, r) = (i % n, (i * 7 + 3) % n);
        store.add_addrs(&ids[w as usize], &addrs(w), Ttl::ADDRESS, t);
        store
            .set_protocols(&ids[w as usize], &protocols(w))
            .expect("under caps");
        std::hint::black_box(store.addrs(&ids[r as usize], t));
        in_store.push(t.elapsed());
        i = i.wrapping_add(1);
        thread::sleep(TICK);
    }
    in_store.sort();
    Report {
        iterations: in_store.len(),
        max_in_store: in_store.last().copied().unwrap_or_default(),
        p99_in_store: in_store[in_store.len() * 99 / 100],
        max_gap,
    }
}

fn print(name: &str, r: &Report, flush: Option<Duration>) {
    println!(
        "{name:<20} iterations {:>6}  in store: max {:>9.3} ms, p99 {:>7.3} ms  longest gap {:>9.3} ms{}",
        r.iterations,
        r.max_in_store.as_secs_f64() * 1e3,
        r.p99_in_store.as_secs_f64() * 1e3,
        r.max_gap.as_secs_f64() * 1e3,
        flush.map_or(String::new(), |f| format!(
            "  flush {:.0} ms",
            f.as_secs_f64() * 1e3
        )),
    );
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .map_or(100_000, |a| a.parse().expect("PEERS is a number"));
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(
        RedbStore::open(
            &dir.path().join("peerstore.redb"),
            Config::new(),
            // Flushed here only, so that each run flushes exactly the peers changed before it.
            Options::new().with_flush_threshold(usize::MAX),
        )
        .expect("open"),
    );
    let ids: Vec<PeerId> = (0..n).map(peer).collect();
    let now = Instant::now();
    change_all(&store, &ids, 0, now);
    store.flush().expect("first flush");
    println!("{n} peers, 4 addresses and 3 protocols each; loop tick {TICK:?}");

    // 1. Idle.
    let done = AtomicBool::new(true);
    let idle = run_loop(&store, &ids, &done, Duration::from_secs(2));
    print("idle", &idle, None);

    // 2. Another thread writes every peer while the loop runs.
    change_all(&store, &ids, 1, now);
    assert_eq!(store.pending_changes(), ids.len());
    let done = Arc::new(AtomicBool::new(false));
    let flusher = {
        let (store, done) = (Arc::clone(&store), Arc::clone(&done));
        thread::spawn(move || {
            let t = Instant::now();
            store.flush().expect("flush");
            done.store(true, Ordering::Release);
            t.elapsed()
        })
    };
    let off = run_loop(&store, &ids, &done, Duration::ZERO);
    let flush = flusher.join().expect("flusher");
    print("flush off the loop", &off, Some(flush));

    // 3. The same flush on the loop thread.
    change_all(&store, &ids, 2, now);
    let t = Instant::now();
    store.flush().expect("flush");
    println!(
        "{:<20} the loop waits for the whole flush: longest gap {:>9.3} ms",
        "flush on the loop",
        t.elapsed().as_secs_f64() * 1e3
    );
}
