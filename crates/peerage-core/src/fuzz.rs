//! Fuzz targets: plain functions over bytes from outside, each checking what must hold of any
//! input (no panic, and the invariant named). The cargo-fuzz project in `fuzz/` calls them; the
//! tests replay the committed corpora (`fuzz/corpus/<target>/`) through them, so CI needs no
//! fuzzer.

use std::time::{Duration, Instant};

use libp2p_identity::Keypair;
use multiaddr::Multiaddr;

use crate::{
    node::{Records, Signed},
    peerstore::{self, Peerstore, Ttl},
    pool, rcmgr,
};

/// A multiaddr from a peer (its bytes, as identify and the peer exchange carry them) or from
/// an operator (its text): parsing and splitting it into a point never panics, and a point
/// that splits re-encodes to bytes that parse to the same address.
pub fn multiaddr(data: &[u8]) {
    let parsed = Multiaddr::try_from(data.to_vec())
        .ok()
        .into_iter()
        .chain(std::str::from_utf8(data).ok().and_then(|s| s.parse().ok()));
    for addr in parsed {
        if let Ok((point, _)) = pool::split_point(&addr) {
            let again = Multiaddr::try_from(point.to_vec()).expect("a point re-encodes");
            assert_eq!(again, point);
        }
    }
}

/// A signed peer record from a peer (pex answers and identify carry them), at `now` (the core
/// reads no clock): opening it never panics; opening it again gives the same record without a
/// second verification; one that opens is taken by the peerstore, which then holds a record of
/// the peer (an envelope of another type or domain never opens), as it is when the peerstore
/// verifies the envelope itself.
pub fn peer_record(data: &[u8], now: Instant) {
    let mut records = Signed::new(Keypair::ed25519_from_bytes([7; 32]).expect("a key"));
    let Ok(record) = records.open(data) else {
        return;
    };
    let again = records.open(data).expect("opened before");
    assert_eq!((again.peer, &again.addrs), (record.peer, &record.addrs));
    assert_eq!(records.verified(), 1);
    let Some(verified) = record.verified else {
        return;
    };
    let ttl = Ttl::Finite(Duration::from_secs(60));
    let store = Peerstore::memory(peerstore::Config::default());
    let taken = store.consume_verified_record(&verified, ttl, now);
    let checked = Peerstore::memory(peerstore::Config::default());
    let taken_checked = checked.consume_peer_record(&verified.envelope(), ttl, now);
    assert_eq!(taken.is_ok(), taken_checked.is_ok());
    match taken {
        Ok(true) if !record.addrs.is_empty() => {
            assert!(store.peer_record(&record.peer, now).is_some());
            assert_eq!(
                store.addrs(&record.peer, now),
                checked.addrs(&record.peer, now)
            );
        }
        Ok(_) | Err(_) => {}
    }
}

/// A limits file (go's JSON format): reading it never panics, and a config it gives writes
/// back to JSON that reads to the same config, whatever the defaults.
pub fn limits_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let defaults = rcmgr::LimitConfig::default();
    let Ok(config) = rcmgr::LimitConfig::from_json(text, &defaults) else {
        return;
    };
    let other = rcmgr::ScalingLimitConfig::default().scale(1 << 30, 1024);
    let again = rcmgr::LimitConfig::from_json(&config.to_json(), &other)
        .expect("what to_json writes reads back");
    assert_eq!(again, config);
}

/// The committed corpus of `target`: `fuzz/corpus/<target>` in the repository.
pub fn corpus(target: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

/// Replays every file of `fuzz/corpus/<target>` through `f`; the number of inputs.
///
/// # Panics
///
/// If the corpus directory cannot be read, or `f` panics on an input.
pub fn replay(corpus: &std::path::Path, mut f: impl FnMut(&[u8])) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(corpus)
        .unwrap_or_else(|e| panic!("reading the corpus {}: {e}", corpus.display()))
    {
        let path = entry.expect("a corpus entry").path();
        let data = std::fs::read(&path).expect("a corpus file");
        f(&data);
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_multiaddr_corpus_replays() {
        assert!(replay(&corpus("multiaddr"), multiaddr) > 0);
    }

    #[test]
    fn the_peer_record_corpus_replays() {
        let now = Instant::now();
        assert!(replay(&corpus("peer_record"), |d| peer_record(d, now)) > 0);
    }

    #[test]
    fn the_limits_json_corpus_replays() {
        assert!(replay(&corpus("limits_json"), limits_json) > 0);
    }
}
