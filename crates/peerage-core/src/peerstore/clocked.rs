//! A peerstore handle with a clock: the reads and writes that depend on time take it from the
//! clock instead of an argument.
//!
//! The core never reads the system clock: [`Store`] takes `now` everywhere, so tests and the
//! simulator step it. An application wants `store.addrs(&peer)`, not
//! `store.addrs(&peer, Instant::now())`; [`Clocked`] gives it that, with the clock it is handed
//! (`peerage` hands the system's).

use std::{fmt, ops::Deref, sync::Arc, time::Instant};

use libp2p_core::SignedEnvelope;
use multiaddr::Multiaddr;

#[cfg(doc)]
use super::Store;
use super::{AddrEntry, Error, PeerInfo, Peerstore, Ttl};
use crate::PeerId;

/// Where a [`Clocked`] peerstore takes the time from.
pub trait Clock: Send + Sync {
    /// The time now.
    fn now(&self) -> Instant;
}

/// A [`Peerstore`] with a [`Clock`]. The methods of [`Store`] that take `now` take it from the
/// clock here, under the same names; everything else is the peerstore's, through `Deref`. The
/// `now`-taking forms stay on [`Clocked::store`].
#[derive(Clone)]
pub struct Clocked {
    store: Peerstore,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Clocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clocked")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Deref for Clocked {
    type Target = Peerstore;

    fn deref(&self) -> &Peerstore {
        &self.store
    }
}

impl Peerstore {
    /// This peerstore (the same store, shared) reading the time from `clock`.
    pub fn with_clock(&self, clock: Arc<dyn Clock>) -> Clocked {
        Clocked {
            store: self.clone(),
            clock,
        }
    }
}

impl Clocked {
    /// The peerstore, whose methods take `now`.
    pub fn store(&self) -> &Peerstore {
        &self.store
    }

    /// The clock's time.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// [`Store::add_addrs`] now.
    pub fn add_addrs(&self, peer: &PeerId, addrs: &[Multiaddr], ttl: Ttl) {
        self.store.add_addrs(peer, addrs, ttl, self.now());
    }

    /// [`Store::set_addrs`] now.
    pub fn set_addrs(&self, peer: &PeerId, addrs: &[Multiaddr], ttl: Ttl) {
        self.store.set_addrs(peer, addrs, ttl, self.now());
    }

    /// [`Store::update_addrs`] now.
    pub fn update_addrs(&self, peer: &PeerId, old: Ttl, new: Ttl) {
        self.store.update_addrs(peer, old, new, self.now());
    }

    /// [`Store::addrs_with_ttl`] now.
    pub fn addrs_with_ttl(&self, peer: &PeerId) -> Vec<AddrEntry> {
        self.store.addrs_with_ttl(peer, self.now())
    }

    /// [`Store::addrs`] now.
    pub fn addrs(&self, peer: &PeerId) -> Vec<Multiaddr> {
        self.store.addrs(peer, self.now())
    }

    /// [`Store::peers_with_addrs`] now.
    pub fn peers_with_addrs(&self) -> Vec<PeerId> {
        self.store.peers_with_addrs(self.now())
    }

    /// [`Store::gc`] now.
    pub fn gc(&self) -> usize {
        self.store.gc(self.now())
    }

    /// [`Store::consume_peer_record`] now.
    ///
    /// # Errors
    ///
    /// As [`Store::consume_peer_record`].
    pub fn consume_peer_record(&self, envelope: &SignedEnvelope, ttl: Ttl) -> Result<bool, Error> {
        self.store.consume_peer_record(envelope, ttl, self.now())
    }

    /// [`Store::consume_verified_record`] now.
    ///
    /// # Errors
    ///
    /// As [`Store::consume_peer_record`].
    pub fn consume_verified_record(
        &self,
        record: &super::VerifiedRecord,
        ttl: Ttl,
    ) -> Result<bool, Error> {
        self.store.consume_verified_record(record, ttl, self.now())
    }

    /// [`Store::peer_record`] now.
    pub fn peer_record(&self, peer: &PeerId) -> Option<SignedEnvelope> {
        self.store.peer_record(peer, self.now())
    }

    /// [`Store::peers`] now.
    pub fn peers(&self) -> Vec<PeerId> {
        self.store.peers(self.now())
    }

    /// [`Peerstore::peer_info`] now.
    pub fn peer_info(&self, peer: &PeerId) -> PeerInfo {
        self.store.peer_info(peer, self.now())
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Mutex, time::Duration};

    use super::*;
    use crate::peerstore::Config;

    /// A clock the test steps.
    struct Manual(Mutex<Instant>);

    impl Clock for Manual {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }

    #[test]
    fn reads_and_writes_take_the_time_from_the_clock() {
        let start = Instant::now();
        let clock = Arc::new(Manual(Mutex::new(start)));
        let store = Peerstore::memory(Config::default());
        let clocked = store.with_clock(clock.clone());
        let peer = PeerId::random();
        let a: Multiaddr = "/ip4/192.0.2.1/tcp/4001".parse().unwrap();
        clocked.add_addrs(
            &peer,
            std::slice::from_ref(&a),
            Ttl::Finite(Duration::from_secs(10)),
        );
        assert_eq!(clocked.addrs(&peer), vec![a.clone()]);
        // The same store: the now-taking form sees the write, at the clock's time.
        assert_eq!(store.addrs(&peer, start), vec![a.clone()]);
        assert_eq!(clocked.peers_with_addrs(), vec![peer]);

        *clock.0.lock().unwrap() = start + Duration::from_secs(9);
        assert_eq!(clocked.addrs(&peer), vec![a.clone()]);
        *clock.0.lock().unwrap() = start + Duration::from_secs(11);
        assert!(
            clocked.addrs(&peer).is_empty(),
            "expired by the clock's time"
        );
        assert_eq!(clocked.gc(), 1);
        // Time-free reads pass through.
        assert!(clocked.protocols(&peer).is_empty());
    }
}
