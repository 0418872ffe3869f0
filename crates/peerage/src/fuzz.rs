//! Fuzz targets of the glue's decoders: plain functions over bytes from outside, called by the
//! cargo-fuzz project in `fuzz/` and, over the committed corpora (`fuzz/corpus/<target>/`), by
//! this crate's tests.

use std::io;

use futures::executor::block_on;
use libp2p::request_response::Codec as _;

use crate::pex;

/// The committed corpus of a target, and its replay (for the crates above this one).
pub use peerage_core::fuzz::{corpus, replay};

/// A peer-exchange answer as it comes off the wire: decoding never panics, and every failure is
/// `InvalidData`, the kind that greylists its sender (anything else would read as a network
/// failure, and a hostile peer would be asked again).
pub fn pex_response(data: &[u8]) {
    let result = block_on(
        pex::Codec::default().read_response(&pex::PROTOCOL, &mut futures::io::Cursor::new(data)),
    );
    if let Err(e) = result {
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    }
}

/// A peer-exchange request: bytes always read, as a request or as
/// [`pex::WireRequest::Invalid`] (which greylists its sender), never as an error (which
/// rust-libp2p's request-response would not report); only a stream without a byte is one.
pub fn pex_request(data: &[u8]) {
    let result = block_on(
        pex::Codec::default().read_request(&pex::PROTOCOL, &mut futures::io::Cursor::new(data)),
    );
    if let Err(e) = result {
        assert!(data.is_empty(), "a request read as an error: {e}");
    }
}

/// An identify message (length-prefixed protobuf): decoding never panics, and what a message
/// of up to 8 KiB gives the node machine stays within its caps.
pub fn identify_message(data: &[u8]) {
    crate::identify::fuzz_message(data);
}

/// The peers file: reading it never panics, and what it holds imports into a pool and exports
/// again without growing.
#[cfg(feature = "store")]
pub fn peers_file(data: &[u8]) {
    use std::time::{Instant, SystemTime};

    use peerage_core::{peerstore::Peerstore, pool};

    let file = crate::peers_file::PeersFile::new("peers.json");
    let Ok(entries) = file.decode(data) else {
        return;
    };
    let decoded = entries.len();
    let (now, wall) = (Instant::now(), SystemTime::now());
    let mut pool = pool::Pool::new(
        libp2p::identity::Keypair::ed25519_from_bytes([9; 32])
            .expect("a key")
            .public()
            .to_peer_id(),
        pool::Config::default(),
    );
    let store = Peerstore::default();
    crate::peers_file::import(&mut pool, &store, entries, now, wall);
    let exported = crate::peers_file::export(&pool, &store, now, wall);
    assert!(exported.len() <= decoded, "{} > {decoded}", exported.len());
}

#[cfg(test)]
mod tests {
    use peerage_core::fuzz::{corpus, replay};

    use super::*;

    #[test]
    fn the_pex_corpora_replay() {
        assert!(replay(&corpus("pex_response"), pex_response) > 0);
        assert!(replay(&corpus("pex_request"), pex_request) > 0);
    }

    #[test]
    fn the_identify_message_corpus_replays() {
        assert!(replay(&corpus("identify_message"), identify_message) > 0);
    }

    #[cfg(feature = "store")]
    #[test]
    fn the_peers_file_corpus_replays() {
        assert!(replay(&corpus("peers_file"), peers_file) > 0);
    }
}
