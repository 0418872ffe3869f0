//! What the redb peerstore keeps across a close and a reopen, and what it refuses to open.

#![allow(clippy::disallowed_methods)]

use std::{
    path::Path,
    time::{Duration, Instant, SystemTime},
};

use libp2p_identity::Keypair;
use multiaddr::Multiaddr;
use peerage_core::peerstore::{Config, Error, Peerstore, Store, Ttl, conformance::signed_record};
use peerage_store::peerstore::{Options, RedbStore};

fn addr(i: u8) -> Multiaddr {
    format!("/ip4/10.0.0.{i}/tcp/4001").parse().unwrap()
}

/// Writes a raw row into the peers table, as a corrupt or foreign writer would.
fn write_raw(path: &Path, key: &[u8], value: &[u8]) {
    let db = redb::Database::open(path).unwrap();
    let write = db.begin_write().unwrap();
    {
        let table: redb::TableDefinition<'_, &[u8], &[u8]> =
            redb::TableDefinition::new("peerage_peers");
        write.open_table(table).unwrap().insert(key, value).unwrap();
    }
    write.commit().unwrap();
}

fn open(path: &Path, now: Instant, wall: SystemTime, options: Options) -> RedbStore {
    RedbStore::open_at(path, Config::new(), options, now, wall).unwrap()
}

#[test]
fn a_reopened_store_remembers_what_was_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peerstore.redb");
    let (now, wall) = (Instant::now(), SystemTime::now());
    let key = Keypair::generate_ed25519();
    let peer = key.public().to_peer_id();
    let other = Keypair::generate_ed25519().public().to_peer_id();
    {
        let store = open(&path, now, wall, Options::new());
        store.add_addrs(&peer, &[addr(1)], Ttl::ADDRESS, now);
        store.add_addrs(&peer, &[addr(2)], Ttl::Permanent, now);
        store.add_addrs(&peer, &[addr(3)], Ttl::Connected, now);
        store.add_addrs(&peer, &[addr(4)], Ttl::Finite(Duration::from_secs(60)), now);
        let record = signed_record(&key, 7, &[addr(5)]);
        assert_eq!(
            store.consume_peer_record(&record, Ttl::ADDRESS, now),
            Ok(true)
        );
        store.add_pub_key(&peer, &key.public()).unwrap();
        store.add_priv_key(&peer, &key).unwrap();
        store
            .set_protocols(
                &peer,
                &["/ipfs/id/1.0.0".to_owned(), "/ipfs/ping/1.0.0".to_owned()],
            )
            .unwrap();
        store.record_latency(&peer, Duration::from_millis(12));
        let ps = Peerstore::new(
            RedbStore::open_at(
                &dir.path().join("other.redb"),
                Config::new(),
                Options::new(),
                now,
                wall,
            )
            .unwrap(),
        );
        ps.put(&peer, "unused", &1).unwrap();
        store.put_value(&peer, "AgentVersion", serde_json::json!("js-libp2p/3.3.11"));
        store.add_protocols(&other, &["/x".to_owned()]).unwrap();
        store.flush().unwrap();
    }
    // Reopened 2 minutes later: the 60 s address expired, the connected one is demoted.
    let later = now + Duration::from_secs(120);
    let store = open(
        &path,
        later,
        wall + Duration::from_secs(120),
        Options::new(),
    );
    assert_eq!(store.loaded_peers(), 2);
    let entries = store.addrs_with_ttl(&peer, later);
    let ttls: Vec<(Multiaddr, Ttl)> = entries.iter().map(|e| (e.addr.clone(), e.ttl)).collect();
    assert_eq!(
        ttls,
        vec![
            (addr(1), Ttl::ADDRESS),
            (addr(2), Ttl::Permanent),
            (addr(3), Ttl::RECENTLY_CONNECTED),
            (addr(5), Ttl::ADDRESS),
        ]
    );
    // Wall-clock expiry: the 1 h address has 58 min left (to the millisecond).
    let left = entries[0].expiry.unwrap() - later;
    assert!(
        left.abs_diff(Duration::from_secs(58 * 60)) <= Duration::from_millis(1),
        "{left:?}"
    );
    assert_eq!(
        store.peer_record(&peer, later),
        Some(signed_record(&key, 7, &[addr(5)]))
    );
    assert_eq!(store.pub_key(&peer), Some(key.public()));
    assert!(
        store.priv_key(&peer).is_none(),
        "private keys are not written by default"
    );
    assert_eq!(store.protocols(&peer).len(), 2);
    assert_eq!(store.latency_ewma(&peer), Some(Duration::from_millis(12)));
    assert_eq!(
        store.get_value(&peer, "AgentVersion").unwrap(),
        serde_json::json!("js-libp2p/3.3.11")
    );
    assert_eq!(store.protocols(&other), vec!["/x".to_owned()]);
    // The record still refuses older sequence numbers after the reopen.
    assert_eq!(
        store.consume_peer_record(&signed_record(&key, 6, &[addr(6)]), Ttl::ADDRESS, later),
        Ok(false)
    );
}

#[test]
fn private_keys_are_written_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peerstore.redb");
    let (now, wall) = (Instant::now(), SystemTime::now());
    let key = Keypair::generate_ed25519();
    let peer = key.public().to_peer_id();
    {
        let store = open(&path, now, wall, Options::new().with_private_keys(true));
        store.add_priv_key(&peer, &key).unwrap();
    }
    let store = open(&path, now, wall, Options::new());
    assert_eq!(
        store.priv_key(&peer).map(|k| k.public()),
        Some(key.public())
    );
}

#[test]
fn removals_are_written_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peerstore.redb");
    let (now, wall) = (Instant::now(), SystemTime::now());
    let peer = Keypair::generate_ed25519().public().to_peer_id();
    {
        let store = open(&path, now, wall, Options::new());
        store.add_addrs(&peer, &[addr(1)], Ttl::Permanent, now);
        store.flush().unwrap();
        store.clear_addrs(&peer);
    }
    let store = open(&path, now, wall, Options::new());
    assert_eq!(store.loaded_peers(), 0);
    assert!(store.peers(now).is_empty());
}

#[test]
fn a_file_that_is_not_a_database_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peerstore.redb");
    let garbage = b"this is not a redb database, just some bytes".repeat(100);
    std::fs::write(&path, &garbage).unwrap();
    let err = RedbStore::open(&path, Config::new(), Options::new()).unwrap_err();
    assert!(matches!(err, Error::Storage(_)), "{err}");
    assert!(
        err.to_string().contains("not a peerstore database"),
        "{err}"
    );
    assert!(std::fs::read(&path).unwrap() == garbage, "the file changed");
    // An empty file too.
    std::fs::write(&path, b"").unwrap();
    assert!(RedbStore::open(&path, Config::new(), Options::new()).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), b"");
}

#[test]
fn a_foreign_redb_database_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other-app.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let write = db.begin_write().unwrap();
        {
            let table: redb::TableDefinition<'_, u64, u64> = redb::TableDefinition::new("counters");
            write.open_table(table).unwrap().insert(1, 2).unwrap();
        }
        write.commit().unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = RedbStore::open(&path, Config::new(), Options::new()).unwrap_err();
    assert!(err.to_string().contains("not a peerage peerstore"), "{err}");
    assert!(std::fs::read(&path).unwrap() == before, "the file changed");
}

#[test]
fn a_corrupt_record_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peerstore.redb");
    let peer = Keypair::generate_ed25519().public().to_peer_id();
    {
        let store = RedbStore::open(&path, Config::new(), Options::new()).unwrap();
        store.add_addrs(&peer, &[addr(1)], Ttl::Permanent, Instant::now());
    }
    write_raw(&path, peer.to_bytes().as_slice(), b"{not json".as_slice());
    let before = std::fs::read(&path).unwrap();
    let err = RedbStore::open(&path, Config::new(), Options::new()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("corrupt record") && msg.contains(&peer.to_string()),
        "{msg}"
    );
    assert!(std::fs::read(&path).unwrap() == before, "the file changed");
}

#[test]
fn a_store_open_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peerstore.redb");
    let _first = RedbStore::open(&path, Config::new(), Options::new()).unwrap();
    let err = RedbStore::open(&path, Config::new(), Options::new()).unwrap_err();
    assert!(err.to_string().contains("already open"), "{err}");
}

/// An empty (or otherwise invalid) peer ID key in the database is refused by name, and the file
/// is left untouched.
#[test]
fn an_empty_peer_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peerstore.redb");
    drop(RedbStore::open(&path, Config::new(), Options::new()).unwrap());
    write_raw(&path, b"".as_slice(), b"{}".as_slice());
    let before = std::fs::read(&path).unwrap();
    let err = RedbStore::open(&path, Config::new(), Options::new()).unwrap_err();
    assert!(matches!(err, Error::Storage(_)));
    assert!(err.to_string().contains("corrupt peer ID"), "{err}");
    assert!(std::fs::read(&path).unwrap() == before, "the file changed");
}

/// A stored address that is not a multiaddr is refused by name, and the file is left untouched.
#[test]
fn a_malformed_stored_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peerstore.redb");
    let peer = Keypair::generate_ed25519().public().to_peer_id();
    drop(RedbStore::open(&path, Config::new(), Options::new()).unwrap());
    let record = br#"{"addrs":[{"addr":"/ip4/not-an-ip/tcp/1","ttl":"permanent"}]}"#;
    write_raw(&path, peer.to_bytes().as_slice(), record.as_slice());
    let before = std::fs::read(&path).unwrap();
    let err = RedbStore::open(&path, Config::new(), Options::new()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Storage(_)));
    assert!(
        msg.contains("corrupt record") && msg.contains("/ip4/not-an-ip/tcp/1"),
        "{msg}"
    );
    assert!(std::fs::read(&path).unwrap() == before, "the file changed");
}
