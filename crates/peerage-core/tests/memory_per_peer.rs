//! Memory per peer: 10,000 peers with 10 addresses each (1 h TTL), measured with a counting
//! allocator. Target (issue #3): at most 2 KiB per peer.

#![allow(clippy::disallowed_methods)]

use std::{alloc::System, time::Instant};

use peerage_core::{
    Multiaddr, PeerId,
    peerstore::{Peerstore, Ttl},
};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn ten_addresses_cost_at_most_2_kib_per_peer() {
    const PEERS: usize = 10_000;
    // Inputs are built first, so that only the store's own memory is counted.
    let peers: Vec<PeerId> = (0..PEERS).map(|_| PeerId::random()).collect();
    let addrs: Vec<Vec<Multiaddr>> = (0..PEERS)
        .map(|i| {
            (0..10)
                .map(|k| {
                    format!("/ip4/10.{}.{}.{k}/tcp/4001", i / 256, i % 256)
                        .parse()
                        .unwrap()
                })
                .collect()
        })
        .collect();
    let now = Instant::now();
    let region = Region::new(GLOBAL);
    let ps = Peerstore::default();
    for (peer, addrs) in peers.iter().zip(&addrs) {
        ps.add_addrs(peer, addrs, Ttl::ADDRESS, now);
    }
    let stats = region.change();
    let live = stats.bytes_allocated as i64 - stats.bytes_deallocated as i64
        + stats.bytes_reallocated as i64;
    let per_peer = live / PEERS as i64;
    println!("memory per peer with 10 addresses: {per_peer} bytes");
    assert!(per_peer <= 2048, "{per_peer} bytes per peer");
    drop(ps);
}
