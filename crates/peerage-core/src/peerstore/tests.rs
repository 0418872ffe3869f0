//! The in-memory backend against the conformance suite, plus what is particular to it.

use super::*;

/// go's shared suites, its implementation tests and our bug tests, on [`MemoryStore`].
mod memory_conformance {
    use super::{Config, Peerstore};

    crate::peerstore_conformance!(|config: Config| Peerstore::memory(config));
}

#[test]
fn ttl_order_and_expiry() {
    assert!(Ttl::Finite(Duration::from_secs(u64::MAX)) < Ttl::Connected);
    assert!(Ttl::Connected < Ttl::Permanent);
    assert!(Ttl::Connected.is_connected() && Ttl::Permanent.is_connected());
    assert!(!Ttl::ADDRESS.is_connected());
    let now = Instant::now();
    assert_eq!(Ttl::TEMP.expiry(now), Some(now + Duration::from_secs(120)));
    assert_eq!(Ttl::Permanent.expiry(now), None);
    // Too long to represent: never expires, and does not panic.
    assert_eq!(Ttl::Finite(Duration::MAX).expiry(now), None);
}

#[test]
fn handle_is_shared_across_clones_and_threads() {
    let ps = Peerstore::default();
    let peer = PeerId::random();
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let ps = ps.clone();
            std::thread::spawn(move || ps.add_protocols(&peer, &[format!("/p/{i}")]).unwrap())
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(ps.protocols(&peer).len(), 4);
}

/// go's heap property test, at N = 10,000: expiries pop in order, also after deleting and
/// updating every third address.
#[test]
fn gc_pops_in_expiry_order_at_10k() {
    let ps = Peerstore::default();
    let t0 = Instant::now();
    let peers: Vec<PeerId> = (0..10_000).map(|_| PeerId::random()).collect();
    for (i, p) in peers.iter().enumerate() {
        let a: Multiaddr = format!("/ip4/1.2.3.4/udp/{}/quic-v1", i % 65535)
            .parse()
            .unwrap();
        // Expiry i s from t0 (written at t0 + i s - 10 s with a 10 s TTL).
        let written = t0 + Duration::from_secs(i as u64);
        ps.add_addrs(
            p,
            std::slice::from_ref(&a),
            Ttl::Finite(Duration::from_secs(10)),
            written,
        );
        if i % 3 == 0 {
            ps.clear_addrs(p);
        } else if i % 3 == 1 {
            ps.set_addrs(
                p,
                &[a],
                Ttl::Finite(Duration::from_secs(1_000_000)),
                written,
            );
        }
    }
    let live = 10_000 - 10_000usize.div_ceil(3);
    assert_eq!(ps.unconnected_addrs(), live);
    let mut now = t0;
    let mut collected = 0;
    while let Some(next) = ps.next_expiry() {
        assert!(next >= now, "expiries come in order");
        now = next;
        collected += ps.gc(now);
    }
    assert_eq!(collected, live);
    assert!(ps.peers_with_addrs(now).is_empty());
}

#[test]
fn own_addr_strips_only_our_p2p_suffix() {
    let peer = PeerId::random();
    let other = PeerId::random();
    // 165.3 is 0xa5 0x03, the varint of the /p2p code: the fast path must not be fooled.
    let tricky: Multiaddr = "/ip4/165.3.0.1/tcp/1".parse().unwrap();
    assert_eq!(own_addr(&peer, &tricky), Some(tricky.clone()));
    let ours: Multiaddr = format!("{tricky}/p2p/{peer}").parse().unwrap();
    assert_eq!(own_addr(&peer, &ours), Some(tricky.clone()));
    let theirs: Multiaddr = format!("{tricky}/p2p/{other}").parse().unwrap();
    assert_eq!(own_addr(&peer, &theirs), None);
}
