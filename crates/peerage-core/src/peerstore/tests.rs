use super::*;

fn ma(s: &str) -> Multiaddr {
    s.parse().unwrap()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn add_addrs_never_shortens_ttl_or_expiry() {
    let ps = Peerstore::default();
    let peer = PeerId::random();
    let a = ma("/ip4/1.2.3.4/tcp/1");
    let t0 = Instant::now();
    ps.add_addrs(peer, [&a], Ttl::ADDRESS, t0);
    // A shorter TTL later does not shorten the 1 h expiry.
    ps.add_addrs(peer, [&a], Ttl::TEMP, t0 + secs(10));
    assert_eq!(ps.addrs_with_ttl(peer, t0), vec![(a.clone(), Ttl::ADDRESS)]);
    assert_eq!(ps.addrs(peer, t0 + secs(3599)), vec![a.clone()]);
    // Expired means now >= expiry.
    assert!(ps.addrs(peer, t0 + secs(3600)).is_empty());
    // A connected address stays connected when re-added with a finite TTL.
    ps.add_addrs(peer, [&a], Ttl::Connected, t0);
    ps.add_addrs(peer, [&a], Ttl::TEMP, t0);
    assert_eq!(
        ps.addrs_with_ttl(peer, t0 + secs(99_999)),
        vec![(a, Ttl::Connected)]
    );
}

#[test]
fn expiry_and_ttl_are_raised_independently() {
    let ps = Peerstore::default();
    let peer = PeerId::random();
    let a = ma("/ip4/1.2.3.4/tcp/1");
    let t0 = Instant::now();
    ps.add_addrs(peer, [&a], Ttl::TEMP, t0);
    // 100 s later, TEMP again: expiry moves to t0 + 220 s.
    ps.add_addrs(peer, [&a], Ttl::TEMP, t0 + secs(100));
    assert_eq!(ps.addrs(peer, t0 + secs(219)).len(), 1);
    assert!(ps.addrs(peer, t0 + secs(220)).is_empty());
}

#[test]
fn set_addrs_overrides_and_zero_deletes() {
    let ps = Peerstore::default();
    let peer = PeerId::random();
    let a = ma(&format!("/ip4/1.2.3.4/tcp/1/p2p/{peer}"));
    let bare = ma("/ip4/1.2.3.4/tcp/1");
    let t0 = Instant::now();
    ps.add_addrs(peer, [&a], Ttl::Permanent, t0);
    assert_eq!(
        ps.addrs(peer, t0),
        vec![bare.clone()],
        "stored without /p2p"
    );
    ps.set_addrs(peer, [&a], Ttl::TEMP, t0);
    assert!(
        ps.addrs(peer, t0 + secs(120)).is_empty(),
        "shortened by set"
    );
    ps.set_addrs(peer, [&a], Ttl::ADDRESS, t0);
    ps.set_addrs(peer, [&a], Ttl::ZERO, t0);
    assert!(ps.addrs(peer, t0).is_empty());
    ps.add_addrs(peer, [&a], Ttl::ZERO, t0);
    assert!(ps.addrs(peer, t0).is_empty(), "zero add is a no-op");
}

#[test]
fn update_addrs_moves_exact_ttl_only() {
    let ps = Peerstore::default();
    let peer = PeerId::random();
    let (a, b) = (ma("/ip4/1.2.3.4/tcp/1"), ma("/ip4/1.2.3.4/tcp/2"));
    let t0 = Instant::now();
    ps.add_addrs(peer, [&a], Ttl::Connected, t0);
    ps.add_addrs(peer, [&b], Ttl::ADDRESS, t0);
    ps.update_addrs(peer, Ttl::Connected, Ttl::RECENTLY_CONNECTED, t0);
    assert_eq!(
        ps.addrs_with_ttl(peer, t0),
        vec![
            (a.clone(), Ttl::RECENTLY_CONNECTED),
            (b.clone(), Ttl::ADDRESS)
        ]
    );
    assert_eq!(ps.addrs(peer, t0 + secs(900)), vec![b.clone()]);
    ps.update_addrs(peer, Ttl::ADDRESS, Ttl::ZERO, t0);
    assert_eq!(ps.addrs(peer, t0), vec![a]);
    ps.clear_addrs(peer);
    assert!(ps.addrs(peer, t0).is_empty());
    assert!(ps.peers_with_addrs(t0).is_empty());
}

#[test]
fn protocols_are_capped_without_partial_writes() {
    let ps = Peerstore::new(Config::new().with_max_protocols_per_peer(3));
    let peer = PeerId::random();
    ps.add_protocols(peer, ["/a", "/b"]).unwrap();
    assert_eq!(
        ps.add_protocols(peer, ["/c", "/d"]),
        Err(Error::TooManyProtocols { peer, limit: 3 })
    );
    assert_eq!(ps.protocols(peer), vec!["/a", "/b"]);
    assert_eq!(
        ps.supports_protocols(peer, &["/x", "/b", "/a"]),
        vec!["/b", "/a"]
    );
    ps.set_protocols(peer, ["/z"]).unwrap();
    assert_eq!(ps.protocols(peer), vec!["/z"]);
    assert!(ps.set_protocols(peer, ["1", "2", "3", "4"]).is_err());
    assert_eq!(ps.protocols(peer), vec!["/z"]);
    assert_eq!(
        Error::TooManyProtocols { peer, limit: 3 }.to_string(),
        format!("too many protocols for peer {peer} (limit 3)")
    );
}

/// go `TestLatencyEWMA`-style: the first sample as is, then 0.1 smoothing.
#[test]
fn latency_ewma_smooths_with_0_1() {
    let ps = Peerstore::default();
    let peer = PeerId::random();
    assert_eq!(ps.latency_ewma(peer), None);
    ps.record_latency(peer, Duration::from_millis(100));
    assert_eq!(ps.latency_ewma(peer), Some(Duration::from_millis(100)));
    ps.record_latency(peer, Duration::from_millis(200));
    assert_eq!(ps.latency_ewma(peer), Some(Duration::from_millis(110)));
    for _ in 0..200 {
        ps.record_latency(peer, Duration::from_millis(200));
    }
    let ewma = ps.latency_ewma(peer).unwrap().as_secs_f64();
    assert!((ewma - 0.2).abs() < 1e-6, "converges to the sample: {ewma}");
}

#[test]
fn remove_peer_keeps_addresses_and_gc_drops_empty_peers() {
    let ps = Peerstore::default();
    let peer = PeerId::random();
    let a = ma("/ip4/1.2.3.4/tcp/1");
    let t0 = Instant::now();
    ps.add_addrs(peer, [&a], Ttl::TEMP, t0);
    ps.add_protocols(peer, ["/a"]).unwrap();
    ps.record_latency(peer, secs(1));
    ps.remove_peer(peer);
    assert!(ps.protocols(peer).is_empty());
    assert_eq!(ps.latency_ewma(peer), None);
    assert_eq!(ps.addrs(peer, t0), vec![a]);
    ps.gc(t0 + secs(120));
    assert!(ps.peers().is_empty());
}

#[test]
fn handle_is_shared_across_clones_and_threads() {
    let ps = Peerstore::default();
    let peer = PeerId::random();
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let ps = ps.clone();
            std::thread::spawn(move || ps.add_protocols(peer, [format!("/p/{i}")]).unwrap())
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(ps.protocols(peer).len(), 4);
}
