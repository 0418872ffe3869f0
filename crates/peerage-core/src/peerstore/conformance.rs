//! The peerstore conformance suite: go-libp2p's shared suites (`p2p/host/peerstore/test`:
//! `addr_book_suite.go`, `keybook_suite.go`, `peerstore_suite.go`) with their numbers and clock
//! steps, go's implementation tests worth copying (`pstoremem`), and one test per go bug that we
//! fix. Time is a manual clock: `now` is stepped, never read.
//!
//! A backend runs the whole suite with [`peerstore_conformance!`](crate::peerstore_conformance):
//!
//! ```text
//! peerage_core::peerstore_conformance!(|config| Peerstore::memory(config));
//! ```
//!
//! Each scenario is a function taking a factory that builds an empty store from a [`Config`].

#![allow(missing_docs, clippy::disallowed_methods)]

use std::{
    collections::HashSet,
    pin::Pin,
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use futures_core::Stream;
use libp2p_core::SignedEnvelope;
use libp2p_identity::{Keypair, PeerId};
use multiaddr::Multiaddr;

use super::{AddrStream, Config, Error, Peerstore, Ttl};

/// Builds an empty store.
pub type Factory<'a> = &'a dyn Fn(Config) -> Peerstore;

/// Runs every scenario as its own `#[test]`, with `$factory: Fn(Config) -> Peerstore`.
#[macro_export]
macro_rules! peerstore_conformance {
    ($factory:expr) => {
        $crate::peerstore_conformance!(@tests $factory;
            add_address, clear, set_zero_ttl_clears, update_ttls, nil_like_inputs_dont_break,
            addresses_expire, clear_with_iter, peers_with_addresses, certified_addresses,
            key_book, proto_book, proto_book_limits, basic_peerstore, metadata, addr_stream,
            addr_stream_before_peer_added, addr_stream_duplicates, latency_ewma,
            global_unconnected_cap, per_peer_cap_evicts_nearest_expiry,
            per_peer_cap_on_set_addrs, per_peer_cap_spares_connected,
            newer_record_replaces_stale_addrs, max_addresses_option,
            downgraded_connected_addr_is_collected, gc_drops_record_with_last_addr,
            bad_peer_records_change_nothing, verified_records_are_taken_as_envelopes_are,
            key_mismatch_changes_nothing, remove_peer_keeps_addresses);
    };
    (@tests $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::peerstore::conformance::$name(&$factory);
            }
        )*
    };
}

fn t0() -> Instant {
    Instant::now()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

fn peer() -> PeerId {
    Keypair::generate_ed25519().public().to_peer_id()
}

/// go `GenerateAddrs(n)`: `/ip4/1.1.1.i/tcp/1111`.
fn generate_addrs(n: usize) -> Vec<Multiaddr> {
    assert!(n <= 256);
    (0..n)
        .map(|i| format!("/ip4/1.1.1.{i}/tcp/1111").parse().unwrap())
        .collect()
}

/// go `AssertAddressesEqual`: same length, every expected address present, in any order.
#[track_caller]
fn assert_addrs(ps: &Peerstore, peer: &PeerId, now: Instant, expected: &[Multiaddr]) {
    let mut got = ps.addrs(peer, now);
    got.sort();
    let mut want: Vec<Multiaddr> = expected.to_vec();
    want.sort();
    assert_eq!(got, want);
}

/// A peer-record envelope with a chosen sequence number (libp2p's `PeerRecord::new_interop`
/// takes the time in seconds, which cannot order two records made in one second).
pub fn signed_record(key: &Keypair, seq: u64, addrs: &[Multiaddr]) -> SignedEnvelope {
    signed_record_for(key, key.public().to_peer_id(), seq, addrs)
}

/// Appends `v` to `out` as a protobuf varint (also libp2p's length prefix).
pub fn protobuf_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a length-delimited protobuf field to `out`; `tag` is its key byte (field number
/// << 3 | 2, for numbers up to 15).
pub fn protobuf_bytes(tag: u8, bytes: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    protobuf_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// As [`signed_record`], but naming `peer` in the record whatever the signing key.
pub fn signed_record_for(
    key: &Keypair,
    peer: PeerId,
    seq: u64,
    addrs: &[Multiaddr],
) -> SignedEnvelope {
    // message PeerRecord { bytes peer_id = 1; uint64 seq = 2; repeated AddressInfo addresses = 3; }
    // message AddressInfo { bytes multiaddr = 1; }
    let mut payload = Vec::new();
    protobuf_bytes(0x0a, &peer.to_bytes(), &mut payload);
    payload.push(0x10);
    protobuf_varint(seq, &mut payload);
    for addr in addrs {
        let mut info = Vec::new();
        protobuf_bytes(0x0a, &addr.to_vec(), &mut info);
        protobuf_bytes(0x1a, &info, &mut payload);
    }
    SignedEnvelope::new(
        key,
        "libp2p-peer-record".to_owned(),
        vec![0x03, 0x01],
        payload,
    )
    .expect("ed25519 signing")
}

/// Every address the stream has ready now, without waiting.
fn drain(stream: &mut AddrStream) -> Vec<Multiaddr> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    while let Poll::Ready(Some(addr)) = Pin::new(&mut *stream).poll_next(&mut cx) {
        out.push(addr);
    }
    out
}

fn no_per_peer_cap() -> Config {
    Config::new().with_max_addrs_per_peer(0)
}

// --- addr_book_suite.go -------------------------------------------------------------------

pub fn add_address(new: Factory<'_>) {
    let ps = new(no_per_peer_cap());
    let mut now = t0();
    let addrs = generate_addrs(5);

    // add a single address; idempotent add single address.
    let id = peer();
    ps.add_addrs(&id, &addrs[..1], Ttl::ADDRESS, now);
    assert_addrs(&ps, &id, now, &addrs[..1]);
    ps.add_addrs(&id, &addrs[..1], Ttl::ADDRESS, now);
    assert_addrs(&ps, &id, now, &addrs[..1]);

    // add multiple addresses; idempotent.
    let id = peer();
    ps.add_addrs(&id, &addrs[..3], Ttl::ADDRESS, now);
    ps.add_addrs(&id, &addrs[..3], Ttl::ADDRESS, now);
    assert_addrs(&ps, &id, now, &addrs[..3]);

    // adding an existing address with a later expiration extends its ttl.
    let id = peer();
    ps.add_addrs(&id, &addrs[..3], Ttl::Finite(secs(1)), now);
    ps.add_addrs(&id, &addrs[2..3], Ttl::ADDRESS, now);
    now += ms(1200);
    assert_addrs(&ps, &id, now, &addrs[2..3]);
    // The TTL field itself became 1 h.
    ps.update_addrs(&id, Ttl::ADDRESS, Ttl::ZERO, now);
    assert_addrs(&ps, &id, now, &[]);

    // adding an existing address with an earlier expiration never reduces the expiration.
    let id = peer();
    ps.add_addrs(&id, &addrs[..3], Ttl::ADDRESS, now);
    ps.add_addrs(&id, &addrs[2..3], Ttl::Finite(secs(1)), now);
    now += ms(2100);
    assert_addrs(&ps, &id, now, &addrs[..3]);

    // adding an existing address with an earlier expiration never reduces the TTL.
    let id = peer();
    ps.add_addrs(&id, &addrs[..1], Ttl::Finite(secs(4)), now);
    now += secs(2);
    // New expiry now+3 s is later than the old now+2 s: the expiry extends, the TTL stays 4 s.
    ps.add_addrs(&id, &addrs[..1], Ttl::Finite(secs(3)), now);
    now += secs(1);
    assert_addrs(&ps, &id, now, &addrs[..1]);
    ps.update_addrs(&id, Ttl::Finite(secs(4)), Ttl::ZERO, now);
    assert_addrs(&ps, &id, now, &[]);

    // add a /p2p address with a valid peer ID: the suffix is stripped.
    let id = peer();
    let with_p2p: Multiaddr = format!("{}/p2p/{id}", addrs[4]).parse().unwrap();
    ps.add_addrs(&id, std::slice::from_ref(&with_p2p), Ttl::ADDRESS, now);
    assert_addrs(&ps, &id, now, &addrs[4..5]);

    // add a /p2p address of another peer: skipped.
    let other = peer();
    ps.add_addrs(&other, &[with_p2p], Ttl::ADDRESS, now);
    assert_addrs(&ps, &other, now, &[]);
}

pub fn clear(new: Factory<'_>) {
    let ps = new(no_per_peer_cap());
    let now = t0();
    let (p0, p1) = (peer(), peer());
    let addrs = generate_addrs(5);
    ps.add_addrs(&p0, &addrs[..3], Ttl::ADDRESS, now);
    ps.add_addrs(&p1, &addrs[3..], Ttl::ADDRESS, now);
    ps.clear_addrs(&p0);
    assert_addrs(&ps, &p0, now, &[]);
    assert_addrs(&ps, &p1, now, &addrs[3..]);
    ps.clear_addrs(&p1);
    assert_addrs(&ps, &p1, now, &[]);
}

/// go `SetNegativeTTLClears`; Rust durations are never negative, so the zero TTL plays -1.
pub fn set_zero_ttl_clears(new: Factory<'_>) {
    let ps = new(no_per_peer_cap());
    let now = t0();
    let id = peer();
    let addrs = generate_addrs(100);
    ps.set_addrs(&id, &addrs, Ttl::ADDRESS, now);
    assert_eq!(ps.addrs(&id, now).len(), 100);
    ps.set_addrs(&id, &addrs[50..51], Ttl::ZERO, now);
    ps.set_addrs(&id, &addrs[75..76], Ttl::ZERO, now);
    let survivors: Vec<Multiaddr> = addrs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 50 && *i != 75)
        .map(|(_, a)| a.clone())
        .collect();
    assert_addrs(&ps, &id, now, &survivors);
    ps.set_addrs(&id, &survivors, Ttl::ZERO, now);
    assert_addrs(&ps, &id, now, &[]);
    ps.set_addrs(&id, &addrs[..50], Ttl::ADDRESS, now);
    ps.set_addrs(&id, &addrs, Ttl::ZERO, now);
    assert_addrs(&ps, &id, now, &[]);
    ps.set_addrs(&id, &addrs[..5], Ttl::ADDRESS, now);
    let repeated = vec![addrs[0].clone(); 10];
    ps.set_addrs(&id, &repeated, Ttl::ZERO, now);
    assert_addrs(&ps, &id, now, &addrs[1..5]);
}

pub fn update_ttls(new: Factory<'_>) {
    let ps = new(no_per_peer_cap());
    let mut now = t0();
    // update ttl of peer with no addrs: no panic.
    ps.update_addrs(&peer(), Ttl::ADDRESS, Ttl::Finite(secs(60)), now);

    // update to 0 clears addrs.
    let id = peer();
    let addrs = generate_addrs(2);
    ps.set_addrs(&id, &addrs[..1], Ttl::ADDRESS, now);
    ps.update_addrs(&id, Ttl::ADDRESS, Ttl::ZERO, now);
    assert_addrs(&ps, &id, now, &[]);

    // update ttls successfully.
    let (p0, p1) = (peer(), peer());
    let a = generate_addrs(2);
    let b: Vec<Multiaddr> = (0..2)
        .map(|i| format!("/ip4/1.1.2.{i}/tcp/1111").parse().unwrap())
        .collect();
    let minute = Ttl::Finite(secs(60));
    ps.set_addrs(&p0, &a[..1], Ttl::ADDRESS, now);
    ps.set_addrs(&p0, &a[1..], minute, now);
    ps.set_addrs(&p1, &b[..1], Ttl::ADDRESS, now);
    ps.set_addrs(&p1, &b[1..], minute, now);
    ps.update_addrs(&p0, Ttl::ADDRESS, Ttl::Finite(secs(1)), now);
    assert_addrs(&ps, &p0, now, &a);
    now += secs(2);
    assert_addrs(&ps, &p0, now, &a[1..]);
    assert_addrs(&ps, &p1, now, &b);
    ps.update_addrs(&p1, Ttl::ADDRESS, Ttl::Finite(secs(1)), now);
    assert_addrs(&ps, &p1, now, &b);
    now += secs(2);
    assert_addrs(&ps, &p0, now, &a[1..]);
    assert_addrs(&ps, &p1, now, &b[1..]);
}

/// go `NilAddrsDontBreak`: there is no nil multiaddr in Rust; empty inputs play it.
pub fn nil_like_inputs_dont_break(new: Factory<'_>) {
    let ps = new(Config::new());
    let now = t0();
    let id = peer();
    ps.set_addrs(&id, &[], Ttl::ADDRESS, now);
    ps.add_addrs(&id, &[], Ttl::ADDRESS, now);
    ps.add_addrs(&id, &[Multiaddr::empty()], Ttl::ADDRESS, now);
    assert_eq!(ps.addrs(&id, now), vec![Multiaddr::empty()]);
}

pub fn addresses_expire(new: Factory<'_>) {
    let ps = new(no_per_peer_cap());
    let mut now = t0();
    let (p0, p1) = (peer(), peer());
    let a = generate_addrs(5);
    let (a0, b0) = (&a[..3], &a[3..]);
    ps.add_addrs(&p0, a0, Ttl::ADDRESS, now);
    ps.add_addrs(&p1, b0, Ttl::ADDRESS, now);
    ps.add_addrs(&p0, a0, Ttl::Finite(secs(7200)), now);
    ps.add_addrs(&p1, b0, Ttl::Finite(secs(7200)), now);
    assert_addrs(&ps, &p0, now, a0);
    assert_addrs(&ps, &p1, now, b0);
    let tiny = Ttl::Finite(Duration::from_micros(100));
    ps.set_addrs(&p0, &a0[..1], tiny, now);
    now += ms(100);
    assert_addrs(&ps, &p0, now, &a0[1..]);
    ps.set_addrs(&p0, &a0[2..3], tiny, now);
    now += ms(100);
    assert_addrs(&ps, &p0, now, &a0[1..2]);
    ps.set_addrs(&p1, &b0[..1], tiny, now);
    now += ms(100);
    assert_addrs(&ps, &p1, now, &b0[1..]);
    ps.set_addrs(&p1, &b0[1..], tiny, now);
    now += ms(100);
    assert_addrs(&ps, &p1, now, &[]);
    ps.set_addrs(&p0, &a0[1..2], tiny, now);
    now += ms(100);
    assert_addrs(&ps, &p0, now, &[]);
}

pub fn clear_with_iter(new: Factory<'_>) {
    let ps = new(no_per_peer_cap());
    let now = t0();
    let (p0, p1) = (peer(), peer());
    let addrs = generate_addrs(100);
    ps.add_addrs(&p0, &addrs[..50], Ttl::Permanent, now);
    ps.add_addrs(&p1, &addrs[50..], Ttl::Permanent, now);
    let total = |ps: &Peerstore| ps.addrs(&p0, now).len() + ps.addrs(&p1, now).len();
    assert_eq!(total(&ps), 100);
    ps.clear_addrs(&p0);
    assert_eq!(total(&ps), 50);
    ps.clear_addrs(&p1);
    assert_eq!(total(&ps), 0);
}

pub fn peers_with_addresses(new: Factory<'_>) {
    let ps = new(Config::new());
    let now = t0();
    assert!(ps.peers_with_addrs(now).is_empty());
    let addrs = generate_addrs(10);
    let (p0, p1) = (peer(), peer());
    ps.add_addrs(&p0, &addrs[..5], Ttl::Permanent, now);
    ps.add_addrs(&p1, &addrs[5..], Ttl::Permanent, now);
    assert_eq!(ps.peers_with_addrs(now).len(), 2);
}

pub fn certified_addresses(new: Factory<'_>) {
    let ps = new(Config::new());
    let mut now = t0();
    let key = Keypair::generate_ed25519();
    let id = key.public().to_peer_id();
    let all = generate_addrs(10);
    let (certified, uncertified) = (&all[..5], &all[5..]);
    let rec1 = signed_record(&key, 1, certified);
    let rec2 = signed_record(&key, 2, certified);

    ps.add_addrs(&id, uncertified, Ttl::ADDRESS, now);
    assert_addrs(&ps, &id, now, uncertified);
    assert_eq!(ps.consume_peer_record(&rec2, Ttl::ADDRESS, now), Ok(true));
    assert_addrs(&ps, &id, now, &all);
    assert_eq!(ps.peers_with_addrs(now).len(), 1);
    // An older record is ignored, without error.
    assert_eq!(ps.consume_peer_record(&rec1, Ttl::ADDRESS, now), Ok(false));
    ps.add_addrs(&id, uncertified, Ttl::ADDRESS, now);
    assert_addrs(&ps, &id, now, &all);
    assert_eq!(ps.peer_record(&id, now), Some(rec2));

    // A newer record with fewer addresses evicts the two it dropped (go GH#3487).
    let rec4 = signed_record(&key, 4, &certified[..3]);
    assert_eq!(ps.consume_peer_record(&rec4, Ttl::ADDRESS, now), Ok(true));
    let mut expected = certified[..3].to_vec();
    expected.extend_from_slice(uncertified);
    assert_addrs(&ps, &id, now, &expected);

    // Deleting every address deletes the record.
    ps.set_addrs(&id, &all, Ttl::ZERO, now);
    assert_addrs(&ps, &id, now, &[]);
    assert_eq!(ps.peer_record(&id, now), None);

    // So the same record is accepted again; with a 1 s TTL it is gone 2 s later.
    assert_eq!(
        ps.consume_peer_record(&rec4, Ttl::Finite(secs(1)), now),
        Ok(true)
    );
    assert_addrs(&ps, &id, now, &certified[..3]);
    now += secs(2);
    assert_eq!(ps.peer_record(&id, now), None);

    // Sealed with another key: refused with an error.
    let other = Keypair::generate_ed25519();
    let forged = signed_record_for(&other, id, 5, &certified[..3]);
    assert!(matches!(
        ps.consume_peer_record(&forged, Ttl::ADDRESS, now),
        Err(Error::InvalidPeerRecord(_))
    ));
}

// --- keybook_suite.go ---------------------------------------------------------------------

pub fn key_book(new: Factory<'_>) {
    let ps = new(Config::new());
    // AddGetPrivKey.
    assert!(ps.peers_with_keys().is_empty());
    let key = Keypair::generate_ed25519();
    let id = key.public().to_peer_id();
    assert!(ps.priv_key(&id).is_none());
    ps.add_priv_key(&id, &key).unwrap();
    assert_eq!(
        ps.priv_key(&id).map(|k| k.public()),
        Some(key.public()),
        "private key round-trips"
    );
    assert_eq!(ps.peers_with_keys(), vec![id]);

    // AddGetPubKey, on a fresh store.
    let ps = new(Config::new());
    let key = Keypair::generate_ed25519().public();
    let id = key.to_peer_id();
    ps.add_pub_key(&id, &key).unwrap();
    assert_eq!(ps.pub_key(&id), Some(key));
    assert_eq!(ps.peers_with_keys(), vec![id]);

    // PeersWithKeys: 10 public-only and 10 private-only peers.
    let ps = new(Config::new());
    let mut want = Vec::new();
    for _ in 0..10 {
        let public = Keypair::generate_ed25519().public();
        let private = Keypair::generate_ed25519();
        ps.add_pub_key(&public.to_peer_id(), &public).unwrap();
        ps.add_priv_key(&private.public().to_peer_id(), &private)
            .unwrap();
        want.push(public.to_peer_id());
        want.push(private.public().to_peer_id());
    }
    want.sort();
    assert_eq!(ps.peers_with_keys(), want);

    // PubKeyAddedOnRetrieve (skipped in go): an Ed25519 ID inlines its key. A derived key is
    // not stored, so a read does not grow `peers_with_keys`.
    let ps = new(Config::new());
    let key = Keypair::generate_ed25519().public();
    assert_eq!(ps.pub_key(&key.to_peer_id()), Some(key));
    assert!(ps.peers_with_keys().is_empty());
}

pub fn key_mismatch_changes_nothing(new: Factory<'_>) {
    let ps = new(Config::new());
    let id = peer();
    let other = Keypair::generate_ed25519();
    assert_eq!(
        ps.add_pub_key(&id, &other.public()),
        Err(Error::KeyMismatch { peer: id })
    );
    assert!(matches!(
        ps.add_priv_key(&id, &other),
        Err(Error::KeyMismatch { .. })
    ));
    assert!(ps.peers_with_keys().is_empty());
    assert!(ps.priv_key(&id).is_none());
}

// --- peerstore_suite.go -------------------------------------------------------------------

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| (*s).to_owned()).collect()
}

pub fn proto_book(new: Factory<'_>) {
    let ps = new(Config::new());
    // adding and removing protocols.
    let p = peer();
    ps.add_protocols(&p, &strings(&["a", "b", "c", "d"]))
        .unwrap();
    assert_eq!(ps.protocols(&p), strings(&["a", "b", "c", "d"]));
    assert_eq!(
        ps.supports_protocols(&p, &["q", "w", "a", "y", "b"]),
        strings(&["a", "b"])
    );
    assert_eq!(
        ps.first_supported_protocol(&p, &["q", "w", "a", "y", "b"]),
        Some("a".to_owned())
    );
    assert_eq!(ps.first_supported_protocol(&p, &["q", "x", "z"]), None);
    assert_eq!(
        ps.first_supported_protocol(&p, &["a"]),
        Some("a".to_owned())
    );
    ps.set_protocols(&p, &strings(&["other", "yet another", "one more"]))
        .unwrap();
    assert!(
        ps.supports_protocols(&p, &["q", "w", "a", "y", "b"])
            .is_empty()
    );
    let protos = ps.protocols(&p);
    assert_eq!(protos, strings(&["one more", "other", "yet another"]));
    ps.remove_protocols(&p, &protos[..2]);
    assert_eq!(ps.protocols(&p), strings(&["yet another"]));

    // removing peer.
    let p = peer();
    ps.set_protocols(&p, &strings(&["a", "b"])).unwrap();
    assert_eq!(ps.protocols(&p).len(), 2);
    ps.remove_peer(&p);
    assert!(ps.protocols(&p).is_empty());
}

/// go `TestPeerstoreProtoStoreLimits` with limit 10.
pub fn proto_book_limits(new: Factory<'_>) {
    let ps = new(Config::new().with_max_protocols_per_peer(10));
    let p = peer();
    let protos: Vec<String> = (0..10).map(|i| format!("/proto/{i}")).collect();
    ps.set_protocols(&p, &protos).unwrap();
    let mut eleven = protos.clone();
    eleven.push("/proto/10".to_owned());
    let err = ps.set_protocols(&p, &eleven).unwrap_err();
    assert_eq!(err, Error::TooManyProtocols { peer: p, limit: 10 });
    assert!(err.to_string().starts_with("too many protocols"));
    assert_eq!(ps.protocols(&p).len(), 10, "the old set stays");

    let p = peer();
    ps.set_protocols(&p, &protos[..5]).unwrap();
    ps.add_protocols(&p, &protos[5..]).unwrap();
    assert!(matches!(
        ps.add_protocols(&p, &strings(&["proto"])),
        Err(Error::TooManyProtocols { .. })
    ));
    assert_eq!(ps.protocols(&p).len(), 10);
}

pub fn basic_peerstore(new: Factory<'_>) {
    let ps = new(Config::new());
    let now = t0();
    let mut peers = Vec::new();
    let mut addrs = Vec::new();
    for i in 0..10 {
        let p = peer();
        let a: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}", 4000 + i).parse().unwrap();
        ps.add_addrs(&p, std::slice::from_ref(&a), Ttl::Permanent, now);
        peers.push(p);
        addrs.push(a);
    }
    assert_eq!(ps.peers(now).len(), 10);
    let info = ps.peer_info(&peers[0], now);
    assert_eq!(info.peer_id, peers[0]);
    assert_eq!(info.addrs[0], addrs[0]);
}

pub fn metadata(new: Factory<'_>) {
    let ps = new(Config::new());
    // putting and getting: types are preserved.
    for _ in 0..3 {
        let p = peer();
        ps.put(&p, "AgentVersion", "string").unwrap();
        ps.put(&p, "bar", &1).unwrap();
        assert_eq!(ps.get::<String>(&p, "AgentVersion").unwrap(), "string");
        assert_eq!(ps.get::<i32>(&p, "bar").unwrap(), 1);
        assert!(matches!(
            ps.get::<i32>(&p, "AgentVersion"),
            Err(Error::Metadata { .. })
        ));
    }
    // removing a peer.
    let (p, other) = (peer(), peer());
    ps.put(&other, "AgentVersion", "v1").unwrap();
    ps.put(&p, "AgentVersion", "v1").unwrap();
    ps.put(&p, "bar", &1).unwrap();
    ps.remove_peer(&p);
    assert_eq!(
        ps.get::<String>(&p, "AgentVersion"),
        Err(Error::NotFound {
            peer: p,
            key: "AgentVersion".to_owned()
        })
    );
    assert!(matches!(
        ps.get::<i32>(&p, "bar"),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(ps.get::<String>(&other, "AgentVersion").unwrap(), "v1");
}

fn loopback_addrs(n: u16) -> Vec<Multiaddr> {
    (0..n)
        .map(|i| format!("/ip4/127.0.0.1/tcp/{i}").parse().unwrap())
        .collect()
}

pub fn addr_stream(new: Factory<'_>) {
    let ps = new(no_per_peer_cap());
    let now = t0();
    let p = peer();
    let addrs = loopback_addrs(100);
    ps.add_addrs(&p, &addrs[..10], Ttl::ADDRESS, now);
    let mut s1 = ps.addr_stream(&p);
    for a in &addrs[10..20] {
        ps.add_addrs(&p, std::slice::from_ref(a), Ttl::ADDRESS, now);
    }
    assert_eq!(drain(&mut s1).len(), 20);
    let mut s2 = ps.addr_stream(&p);
    ps.add_addrs(&p, &addrs[20..80], Ttl::ADDRESS, now);
    assert_eq!(drain(&mut s1).len(), 60);
    drop(s1);
    let all: HashSet<Multiaddr> = drain(&mut s2).into_iter().collect();
    assert_eq!(all.len(), 80);
    assert_eq!(all, addrs[..80].iter().cloned().collect());
    drop(s2);
    // With every stream gone, more writes must not block or fail.
    ps.add_addrs(&p, &addrs[80..], Ttl::ADDRESS, now);
    assert_eq!(ps.addrs(&p, now).len(), 100);
}

pub fn addr_stream_before_peer_added(new: Factory<'_>) {
    let ps = new(Config::new());
    let now = t0();
    let p = peer();
    let mut s = ps.addr_stream(&p);
    let addrs = loopback_addrs(10);
    for a in &addrs {
        ps.add_addrs(&p, std::slice::from_ref(a), Ttl::ADDRESS, now);
    }
    let got = drain(&mut s);
    assert_eq!(got.len(), 10);
    assert_eq!(
        got.iter().collect::<HashSet<_>>().len(),
        10,
        "no duplicates"
    );
    assert!(drain(&mut s).is_empty());
}

pub fn addr_stream_duplicates(new: Factory<'_>) {
    let ps = new(Config::new());
    let now = t0();
    let p = peer();
    let mut s = ps.addr_stream(&p);
    let addrs = loopback_addrs(10);
    for i in 0..10 {
        ps.add_addrs(&p, &addrs[i..=i], Ttl::ADDRESS, now);
        // SetAddrs rebroadcasts known addresses; the stream deduplicates.
        ps.set_addrs(&p, &addrs[(i * 7) % 10..=(i * 7) % 10], Ttl::ADDRESS, now);
    }
    let got = drain(&mut s);
    assert_eq!(got.len(), 10);
    assert_eq!(got.into_iter().collect::<HashSet<_>>().len(), 10);
}

/// go `TestLatencyEWMA`: 10 samples in [90, 110) ns give 100 ± 10 ns.
pub fn latency_ewma(new: Factory<'_>) {
    let ps = new(Config::new());
    let p = peer();
    assert_eq!(ps.latency_ewma(&p), None);
    for ns in [95u64, 104, 91, 109, 100, 97, 103, 90, 108, 99] {
        ps.record_latency(&p, Duration::from_nanos(ns));
    }
    let ewma = ps.latency_ewma(&p).unwrap().as_nanos();
    assert!((90..=110).contains(&ewma), "{ewma} ns");
    let q = peer();
    ps.record_latency(&q, ms(100));
    assert_eq!(ps.latency_ewma(&q), Some(ms(100)), "first sample as is");
    ps.record_latency(&q, ms(200));
    assert_eq!(ps.latency_ewma(&q), Some(ms(110)));
    // Reset: forgotten, and the next sample is taken as is; another peer's is untouched.
    ps.reset_latency(&q);
    assert_eq!(ps.latency_ewma(&q), None);
    ps.record_latency(&q, ms(7));
    assert_eq!(ps.latency_ewma(&q), Some(ms(7)));
    ps.reset_latency(&peer());
    assert!(ps.latency_ewma(&p).is_some());
}

// --- pstoremem implementation tests worth copying (spec §3.5) -----------------------------

/// go `TestPeerLimits`: a global cap of 1024 unconnected addresses, 2048 single adds to
/// distinct peers at 10 s, leave exactly 1024.
pub fn global_unconnected_cap(new: Factory<'_>) {
    let ps = new(Config::new().with_max_unconnected_addrs(1024));
    let now = t0();
    for i in 0..2048u32 {
        let a: Multiaddr = format!("/ip4/10.{}.{}.1/tcp/1", i / 256, i % 256)
            .parse()
            .unwrap();
        ps.add_addrs(&peer(), &[a], Ttl::Finite(secs(10)), now);
    }
    assert_eq!(ps.unconnected_addrs(), 1024);
    // Connected addresses are not capped.
    let p = peer();
    ps.add_addrs(&p, &generate_addrs(3), Ttl::Connected, now);
    assert_eq!(ps.addrs(&p, now).len(), 3);
    assert_eq!(ps.unconnected_addrs(), 1024);
}

fn addr(s: &str) -> Multiaddr {
    s.parse().unwrap()
}

/// go `TestMaxAddrsPerPeerEvictsNearestExpiry`, cap 3.
pub fn per_peer_cap_evicts_nearest_expiry(new: Factory<'_>) {
    let ps = new(Config::new().with_max_addrs_per_peer(3));
    let now = t0();
    let p = peer();
    let [a1, a2, a3, a4] = [
        "/ip4/1.0.0.1/tcp/1",
        "/ip4/1.0.0.2/tcp/1",
        "/ip4/1.0.0.3/tcp/1",
        "/ip4/1.0.0.4/tcp/1",
    ]
    .map(addr);
    ps.add_addrs(&p, std::slice::from_ref(&a1), Ttl::ADDRESS, now);
    ps.add_addrs(
        &p,
        std::slice::from_ref(&a2),
        Ttl::Finite(secs(30 * 60)),
        now,
    );
    ps.add_addrs(&p, &[a3], Ttl::Finite(secs(10 * 60)), now);
    ps.add_addrs(
        &p,
        std::slice::from_ref(&a4),
        Ttl::Finite(secs(45 * 60)),
        now,
    );
    assert_addrs(&ps, &p, now, &[a1, a2, a4]);
}

/// go `...EnforcedOnSetAddrs`, cap 2.
pub fn per_peer_cap_on_set_addrs(new: Factory<'_>) {
    let ps = new(Config::new().with_max_addrs_per_peer(2));
    let now = t0();
    let p = peer();
    let [a1, a2, a3] = [
        "/ip4/1.0.0.1/tcp/1",
        "/ip4/1.0.0.2/tcp/1",
        "/ip4/1.0.0.3/tcp/1",
    ]
    .map(addr);
    ps.add_addrs(&p, std::slice::from_ref(&a1), Ttl::ADDRESS, now);
    ps.add_addrs(&p, &[a2], Ttl::Finite(secs(10 * 60)), now);
    ps.set_addrs(
        &p,
        std::slice::from_ref(&a3),
        Ttl::Finite(secs(30 * 60)),
        now,
    );
    assert_addrs(&ps, &p, now, &[a1, a3]);
}

/// go `...DoesNotEvictConnected`, cap 2.
pub fn per_peer_cap_spares_connected(new: Factory<'_>) {
    let ps = new(Config::new().with_max_addrs_per_peer(2));
    let now = t0();
    let p = peer();
    let [live, a1, a2, a3] = [
        "/ip4/1.0.0.9/tcp/1",
        "/ip4/1.0.0.1/tcp/1",
        "/ip4/1.0.0.2/tcp/1",
        "/ip4/1.0.0.3/tcp/1",
    ]
    .map(addr);
    ps.add_addrs(&p, std::slice::from_ref(&live), Ttl::Connected, now);
    ps.add_addrs(&p, &[a1], Ttl::Finite(secs(10 * 60)), now);
    ps.add_addrs(
        &p,
        std::slice::from_ref(&a2),
        Ttl::Finite(secs(20 * 60)),
        now,
    );
    ps.add_addrs(
        &p,
        std::slice::from_ref(&a3),
        Ttl::Finite(secs(30 * 60)),
        now,
    );
    assert_addrs(&ps, &p, now, &[live, a2, a3]);
}

/// go `TestConsumePeerRecordReplacesStaleAddrs`.
pub fn newer_record_replaces_stale_addrs(new: Factory<'_>) {
    let ps = new(Config::new());
    let now = t0();
    let key = Keypair::generate_ed25519();
    let id = key.public().to_peer_id();
    let [keep, drop, connected, unsigned] = [
        "/ip4/1.0.0.1/tcp/1",
        "/ip4/1.0.0.2/tcp/1",
        "/ip4/1.0.0.3/tcp/1",
        "/ip4/1.0.0.4/tcp/1",
    ]
    .map(addr);
    let rec1 = signed_record(&key, 1, &[keep.clone(), drop, connected.clone()]);
    assert_eq!(ps.consume_peer_record(&rec1, Ttl::ADDRESS, now), Ok(true));
    ps.add_addrs(&id, std::slice::from_ref(&connected), Ttl::Connected, now);
    ps.add_addrs(&id, std::slice::from_ref(&unsigned), Ttl::ADDRESS, now);
    let rec2 = signed_record(&key, 2, std::slice::from_ref(&keep));
    assert_eq!(ps.consume_peer_record(&rec2, Ttl::ADDRESS, now), Ok(true));
    assert_addrs(&ps, &id, now, &[keep, connected, unsigned]);
    // An equal sequence number refreshes.
    assert_eq!(ps.consume_peer_record(&rec2, Ttl::ADDRESS, now), Ok(true));
}

/// go `TestPeerStoreAddrBookOpts`: `WithMaxAddresses(1)`.
pub fn max_addresses_option(new: Factory<'_>) {
    let ps = new(Config::new().with_max_unconnected_addrs(1));
    let now = t0();
    let (p1, p2) = (peer(), peer());
    ps.add_addrs(&p1, &generate_addrs(1), Ttl::TEMP, now);
    assert!(!ps.addrs(&p1, now).is_empty());
    ps.add_addrs(&p2, &generate_addrs(2)[1..], Ttl::TEMP, now);
    assert!(ps.addrs(&p2, now).is_empty());
}

// --- go bugs that must not exist here -----------------------------------------------------

/// go's downgrade hole (spec §2.2): a connected address moved to a finite TTL by
/// `update_addrs` or `set_addrs` must be counted, collected, and gone from `peers_with_addrs`.
pub fn downgraded_connected_addr_is_collected(new: Factory<'_>) {
    let ps = new(Config::new());
    let mut now = t0();
    let (p, q) = (peer(), peer());
    let addrs = generate_addrs(4);
    ps.add_addrs(&p, &addrs[..2], Ttl::Connected, now);
    ps.add_addrs(&q, &addrs[2..], Ttl::Permanent, now);
    assert_eq!(ps.unconnected_addrs(), 0);
    // identify's disconnect path: connected -> temp; and a set_addrs downgrade.
    ps.update_addrs(&p, Ttl::Connected, Ttl::TEMP, now);
    ps.set_addrs(&q, &addrs[2..], Ttl::TEMP, now);
    assert_eq!(ps.unconnected_addrs(), 4);
    assert_eq!(ps.next_expiry(), Some(now + secs(120)));
    now += secs(120);
    assert!(ps.peers_with_addrs(now).is_empty());
    assert_eq!(ps.gc(now), 4);
    assert_eq!(ps.unconnected_addrs(), 0);
    assert_eq!(ps.next_expiry(), None);
    // And back up: an address raised to connected leaves the expiry index.
    ps.add_addrs(&p, &addrs[..1], Ttl::TEMP, now);
    ps.add_addrs(&p, &addrs[..1], Ttl::Connected, now);
    assert_eq!(ps.unconnected_addrs(), 0);
    assert_eq!(ps.next_expiry(), None);
    assert_eq!(ps.gc(now + secs(3600)), 0);
    assert_addrs(&ps, &p, now + secs(3600), &addrs[..1]);
}

pub fn gc_drops_record_with_last_addr(new: Factory<'_>) {
    let ps = new(Config::new().with_max_peer_records(1));
    let mut now = t0();
    let key = Keypair::generate_ed25519();
    let id = key.public().to_peer_id();
    let rec = signed_record(&key, 1, &generate_addrs(2));
    assert_eq!(
        ps.consume_peer_record(&rec, Ttl::Finite(secs(10)), now),
        Ok(true)
    );
    // The cap of one record is reached.
    let other = Keypair::generate_ed25519();
    assert_eq!(
        ps.consume_peer_record(
            &signed_record(&other, 1, &generate_addrs(1)),
            Ttl::ADDRESS,
            now
        ),
        Err(Error::TooManyPeerRecords { limit: 1 })
    );
    now += secs(10);
    assert_eq!(ps.peer_record(&id, now), None, "hidden once expired");
    assert_eq!(ps.gc(now), 2);
    // Collected with its addresses: room for another record.
    assert_eq!(
        ps.consume_peer_record(
            &signed_record(&other, 1, &generate_addrs(1)),
            Ttl::ADDRESS,
            now
        ),
        Ok(true)
    );
}

/// Bad envelopes (tampered signature, another signer, wrong domain) and stale sequence numbers:
/// a typed error or `false`, and the store unchanged.
pub fn bad_peer_records_change_nothing(new: Factory<'_>) {
    let ps = new(Config::new());
    let now = t0();
    let key = Keypair::generate_ed25519();
    let id = key.public().to_peer_id();
    let good = signed_record(&key, 10, &generate_addrs(2));
    assert_eq!(ps.consume_peer_record(&good, Ttl::ADDRESS, now), Ok(true));
    let before = (ps.addrs(&id, now), ps.peer_record(&id, now));

    // Tampered: flip a byte of the signature in the protobuf encoding.
    let mut bytes = signed_record(&key, 11, &generate_addrs(1)).into_protobuf_encoding();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    let tampered = SignedEnvelope::from_protobuf_encoding(&bytes).unwrap();
    assert!(matches!(
        ps.consume_peer_record(&tampered, Ttl::ADDRESS, now),
        Err(Error::InvalidPeerRecord(_))
    ));
    // Signed by another key for this peer.
    let forged = signed_record_for(&Keypair::generate_ed25519(), id, 12, &generate_addrs(1));
    assert!(matches!(
        ps.consume_peer_record(&forged, Ttl::ADDRESS, now),
        Err(Error::InvalidPeerRecord(_))
    ));
    // Another domain.
    let foreign =
        SignedEnvelope::new(&key, "other-domain".to_owned(), vec![0x03, 0x01], vec![]).unwrap();
    assert!(matches!(
        ps.consume_peer_record(&foreign, Ttl::ADDRESS, now),
        Err(Error::InvalidPeerRecord(_))
    ));
    // Stale.
    let stale = signed_record(&key, 9, &generate_addrs(1));
    assert_eq!(ps.consume_peer_record(&stale, Ttl::ADDRESS, now), Ok(false));

    assert_eq!((ps.addrs(&id, now), ps.peer_record(&id, now)), before);
}

/// A [`VerifiedRecord`](super::VerifiedRecord) (verified once, on its way in) is taken as its
/// envelope is: newer replaces, older is ignored, the store's record cap holds; a forged or
/// tampered envelope never becomes one.
pub fn verified_records_are_taken_as_envelopes_are(new: Factory<'_>) {
    use super::VerifiedRecord;
    let (ps, by_envelope) = (new(Config::new()), new(Config::new()));
    let now = t0();
    let key = Keypair::generate_ed25519();
    let id = key.public().to_peer_id();
    let all = generate_addrs(6);
    for (seq, addrs) in [
        (2, &all[..4]),
        (1, &all[..]),
        (3, &all[2..5]),
        (3, &all[2..5]),
    ] {
        let envelope = signed_record(&key, seq, addrs);
        let verified = VerifiedRecord::open(envelope.clone()).unwrap();
        assert_eq!((verified.peer(), verified.seq()), (id, seq));
        assert_eq!(
            ps.consume_verified_record(&verified, Ttl::ADDRESS, now),
            by_envelope.consume_peer_record(&envelope, Ttl::ADDRESS, now),
            "seq {seq}"
        );
        let sorted = |store: &Peerstore| {
            let mut addrs = store.addrs(&id, now);
            addrs.sort();
            addrs
        };
        assert_eq!(sorted(&ps), sorted(&by_envelope), "seq {seq}");
        assert_eq!(ps.peer_record(&id, now), by_envelope.peer_record(&id, now));
    }
    assert_addrs(&ps, &id, now, &all[2..5]);

    let forged = signed_record_for(&Keypair::generate_ed25519(), id, 5, &all[..1]);
    assert!(matches!(
        VerifiedRecord::open(forged),
        Err(Error::InvalidPeerRecord(_))
    ));
    let mut bytes = signed_record(&key, 6, &all[..1]).into_protobuf_encoding();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    let tampered = SignedEnvelope::from_protobuf_encoding(&bytes).unwrap();
    assert!(matches!(
        VerifiedRecord::open(tampered),
        Err(Error::InvalidPeerRecord(_))
    ));

    // The record cap holds for verified records too.
    let capped = new(Config::new().with_max_peer_records(1));
    let first = VerifiedRecord::open(signed_record(&key, 1, &all[..1])).unwrap();
    assert_eq!(
        capped.consume_verified_record(&first, Ttl::ADDRESS, now),
        Ok(true)
    );
    let other = Keypair::generate_ed25519();
    let second = VerifiedRecord::open(signed_record(&other, 1, &all[1..2])).unwrap();
    assert!(matches!(
        capped.consume_verified_record(&second, Ttl::ADDRESS, now),
        Err(Error::TooManyPeerRecords { limit: 1 })
    ));
}

/// go `RemovePeer`: everything but the addresses.
pub fn remove_peer_keeps_addresses(new: Factory<'_>) {
    let ps = new(Config::new());
    let now = t0();
    let key = Keypair::generate_ed25519();
    let id = key.public().to_peer_id();
    let addrs = generate_addrs(2);
    ps.add_addrs(&id, &addrs, Ttl::ADDRESS, now);
    ps.add_priv_key(&id, &key).unwrap();
    ps.add_protocols(&id, &strings(&["/a"])).unwrap();
    ps.record_latency(&id, ms(5));
    ps.put(&id, "k", "v").unwrap();
    ps.remove_peer(&id);
    assert!(ps.priv_key(&id).is_none());
    assert!(ps.protocols(&id).is_empty());
    assert_eq!(ps.latency_ewma(&id), None);
    assert!(matches!(
        ps.get::<String>(&id, "k"),
        Err(Error::NotFound { .. })
    ));
    assert_addrs(&ps, &id, now, &addrs);
    assert_eq!(ps.peers(now), vec![id]);
}
