//! The pool's peers in the peers file ([`peerage_store::peers_file`], Octez's `peers.json`):
//! conversion between the pool's records, timed by [`Instant`]s, and the file's entries, timed
//! by wall-clock [`SystemTime`]s.
//!
//! Both directions take the same pair of readings of the two clocks (`now`, `wall`), so that a
//! time `t` becomes `wall - (now - t)` and back.

use std::{
    collections::BTreeMap,
    time::{Instant, SystemTime},
};

use libp2p::{Multiaddr, PeerId};
use peerage_core::{
    peerstore::Peerstore,
    pool::{LogEntry, Pool, peer},
};
pub use peerage_store::peers_file::{Entry, Error, Event, EventKind, FILE_NAME, Loaded, PeersFile};

/// Peerstore metadata saved with each peer, under `peer_metadata`.
const SAVED_METADATA: [&str; 2] = [crate::AGENT_VERSION, crate::PROTOCOL_VERSION];

fn to_wall(t: Instant, now: Instant, wall: SystemTime) -> SystemTime {
    match now.checked_duration_since(t) {
        Some(ago) => wall.checked_sub(ago).unwrap_or(SystemTime::UNIX_EPOCH),
        None => wall + t.duration_since(now),
    }
}

fn to_instant(t: SystemTime, now: Instant, wall: SystemTime) -> Instant {
    match wall.duration_since(t) {
        // In the past; a time before the monotonic clock's origin becomes that origin's
        // nearest representable instant, `now` at worst.
        Ok(ago) => now.checked_sub(ago).unwrap_or(now),
        // Saved "in the future" (the wall clock went back): now.
        Err(_) => now,
    }
}

/// Every known peer of `pool` as a peers-file entry, with its score and its identify metadata
/// from `peerstore`.
pub fn export(pool: &Pool, peerstore: &Peerstore, now: Instant, wall: SystemTime) -> Vec<Entry> {
    let conv = |c: &Option<(Multiaddr, Instant)>| {
        c.as_ref().map(|(a, t)| (a.clone(), to_wall(*t, now, wall)))
    };
    pool.peers()
        .map(|(id, info)| {
            let r = info.record();
            let mut entry = Entry::new(*id, to_wall(r.created, now, wall));
            entry.trusted = r.trusted;
            entry.score = pool.score(id, now);
            entry.peer_metadata = SAVED_METADATA
                .iter()
                .filter_map(|k| Some(((*k).to_owned(), peerstore.get_value(id, k).ok()?)))
                .collect::<BTreeMap<_, _>>();
            entry.events = r
                .events
                .iter()
                .map(|e| Event {
                    kind: e.kind,
                    timestamp: to_wall(e.at, now, wall),
                    point: e.with.clone(),
                    reason: e.reason,
                })
                .collect();
            entry.last_failed_connection = conv(&r.last_failed_connection);
            entry.last_rejected_connection = conv(&r.last_rejected_connection);
            entry.last_established_connection = conv(&r.last_established_connection);
            entry.last_disconnection = conv(&r.last_disconnection);
            entry
        })
        .collect()
}

/// Restores the entries into `pool` ([`Pool::restore_peer`]: disconnected, bypassing the GC,
/// each with the point of its last connection) and their metadata into `peerstore`.
pub fn import(
    pool: &mut Pool,
    peerstore: &Peerstore,
    entries: Vec<Entry>,
    now: Instant,
    wall: SystemTime,
) {
    let conv = |c: Option<(Multiaddr, SystemTime)>| c.map(|(a, t)| (a, to_instant(t, now, wall)));
    for entry in entries {
        let peer: PeerId = entry.peer_id;
        for (k, v) in entry.peer_metadata {
            if SAVED_METADATA.contains(&k.as_str()) {
                peerstore.put_value(&peer, &k, v);
            }
        }
        let mut record = peer::Record::new(to_instant(entry.created, now, wall));
        record.trusted = entry.trusted;
        record.events = entry
            .events
            .into_iter()
            .map(|e| LogEntry {
                kind: e.kind,
                at: to_instant(e.timestamp, now, wall),
                with: e.point,
                reason: e.reason,
            })
            .collect();
        record.last_failed_connection = conv(entry.last_failed_connection);
        record.last_rejected_connection = conv(entry.last_rejected_connection);
        record.last_established_connection = conv(entry.last_established_connection);
        record.last_disconnection = conv(entry.last_disconnection);
        pool.restore_peer(peer, record, now);
    }
}

impl crate::Behaviour {
    /// The pool's known peers as peers-file entries ([`export`]).
    pub fn export_peers(&self) -> Vec<Entry> {
        let machine = self.machine();
        export(
            machine.pool(),
            machine.peerstore(),
            Instant::now(),
            SystemTime::now(),
        )
    }

    /// Restores peers saved in a peers file ([`import`]); their last points become candidates
    /// for the maintenance.
    pub fn import_peers(&mut self, entries: Vec<Entry>) {
        let peerstore = self.peerstore().clone();
        self.update_pool(|pool, now| {
            import(pool, &peerstore, entries, now, SystemTime::now());
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)]

    use std::time::Duration;

    use peerage_core::pool;
    use rand::{SeedableRng, rngs::StdRng};

    use super::*;

    /// A pool's peers survive export, a save and a load, and import into a new pool with the
    /// same history (to the millisecond the file keeps).
    #[test]
    fn peers_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = PeersFile::new(dir.path().join("peers.json"));
        let mut rng = StdRng::seed_from_u64(0);
        let (now, wall) = (Instant::now(), SystemTime::now());
        let t0 = now - Duration::from_secs(3600);
        let mut pool = Pool::new(PeerId::random(), pool::Config::new());
        let peerstore = Peerstore::default();
        let peer = PeerId::random();
        let point: Multiaddr = "/ip4/10.0.0.1/tcp/4001".parse().unwrap();
        pool.register_point(&point, None, None, t0).unwrap();
        pool.set_requested(&point, t0).unwrap();
        pool.accept(peer, &point, Some(&point), t0, &mut rng)
            .unwrap();
        pool.connection_established(peer, Some(&point), &point, t0);
        pool.connection_closed(
            peer,
            Some(&point),
            true,
            t0 + Duration::from_secs(60),
            &mut rng,
        );
        pool.trust_peer(peer, t0);
        peerstore.put_value(&peer, crate::AGENT_VERSION, "peerage/test".into());
        file.save(&export(&pool, &peerstore, now, wall)).unwrap();

        let mut restored = Pool::new(PeerId::random(), pool::Config::new());
        let store2 = Peerstore::default();
        import(&mut restored, &store2, file.load().unwrap(), now, wall);
        let (a, b) = (pool.peer(&peer).unwrap(), restored.peer(&peer).unwrap());
        assert!(b.is_trusted());
        assert_eq!(b.state(), peer::State::Disconnected);
        let close = |x: Option<&(Multiaddr, Instant)>, y: Option<&(Multiaddr, Instant)>| {
            let (x, y) = (x.unwrap(), y.unwrap());
            x.0 == y.0 && x.1.max(y.1) - x.1.min(y.1) < Duration::from_millis(2)
        };
        assert!(close(
            a.last_established_connection(),
            b.last_established_connection()
        ));
        assert!(close(a.last_disconnection(), b.last_disconnection()));
        assert_eq!(
            a.events().map(|e| e.kind).collect::<Vec<_>>(),
            b.events().map(|e| e.kind).collect::<Vec<_>>()
        );
        assert_eq!(
            store2.get_value(&peer, crate::AGENT_VERSION).unwrap(),
            serde_json::json!("peerage/test")
        );
        assert_eq!(restored.point(&point).unwrap().last_peer_id(), Some(peer));
    }
}
