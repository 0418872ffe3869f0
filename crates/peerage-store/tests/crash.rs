//! Crash safety: a child process writes and flushes batches of peers, and is killed with
//! SIGKILL while it writes. Every batch whose flush it acknowledged must be there, whole, when
//! the store is reopened; a batch is never half there.
//!
//! The child is this same test binary, run with `PEERAGE_CRASH_CHILD_DB` set.

#![allow(clippy::disallowed_methods)]

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use libp2p_identity::{Keypair, PeerId};
use multiaddr::Multiaddr;
use peerage_core::peerstore::{Config, Store, Ttl};
use peerage_store::peerstore::{Options, RedbStore};

const CHILD_ENV: &str = "PEERAGE_CRASH_CHILD_DB";
const PEERS_PER_BATCH: u32 = 50;

fn peer(batch: u32, i: u32) -> PeerId {
    let mut seed = [0u8; 32];
    seed[..4].copy_from_slice(&batch.to_be_bytes());
    seed[4..8].copy_from_slice(&i.to_be_bytes());
    seed[31] = 1;
    Keypair::ed25519_from_bytes(seed)
        .unwrap()
        .public()
        .to_peer_id()
}

fn addrs(batch: u32, i: u32) -> Vec<Multiaddr> {
    (0..2)
        .map(|k| {
            format!("/ip4/10.{}.{}.{k}/tcp/{}", batch % 256, i, 4000 + batch)
                .parse()
                .unwrap()
        })
        .collect()
}

/// Writes batches forever, flushing after each and printing `flushed N` once it returned.
fn child(path: &Path) -> ! {
    let store = RedbStore::open(
        path,
        Config::new(),
        Options::new().with_flush_threshold(usize::MAX),
    )
    .unwrap();
    let now = Instant::now();
    for batch in 0.. {
        for i in 0..PEERS_PER_BATCH {
            let p = peer(batch, i);
            store.add_addrs(&p, &addrs(batch, i), Ttl::Permanent, now);
            store
                .set_protocols(&p, &[format!("/batch/{batch}")])
                .unwrap();
        }
        store.flush().unwrap();
        println!("flushed {batch}");
    }
    unreachable!()
}

fn crash_after(flushes: u32) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peerstore.redb");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "kill_9_mid_write_keeps_every_flushed_batch",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut acknowledged = None;
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("flushed ") {
            let n: u32 = n.parse().unwrap();
            acknowledged = Some(n);
            if n + 1 >= flushes {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the child wrote too slowly");
    }
    // SIGKILL while the child goes on writing the next batch.
    child.kill().unwrap();
    child.wait().unwrap();
    let acknowledged = acknowledged.expect("the child flushed");

    let store = RedbStore::open(&path, Config::new(), Options::new()).unwrap();
    let now = Instant::now();
    let present = |batch: u32| {
        (0..PEERS_PER_BATCH)
            .filter(|i| {
                let p = peer(batch, *i);
                let mut want = addrs(batch, *i);
                want.sort();
                let have: Vec<Multiaddr> = store
                    .addrs_with_ttl(&p, now)
                    .into_iter()
                    .map(|e| e.addr)
                    .collect();
                have == want && store.protocols(&p) == vec![format!("/batch/{batch}")]
            })
            .count() as u32
    };
    for batch in 0..=acknowledged {
        assert_eq!(
            present(batch),
            PEERS_PER_BATCH,
            "acknowledged batch {batch} lost"
        );
    }
    let next = present(acknowledged + 1);
    assert!(
        next == 0 || next == PEERS_PER_BATCH,
        "batch {} is half there: {next} peers",
        acknowledged + 1
    );
    assert!(store.loaded_peers() as u32 >= (acknowledged + 1) * PEERS_PER_BATCH);
}

#[test]
fn kill_9_mid_write_keeps_every_flushed_batch() {
    if let Some(path) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&path));
    }
    for flushes in [1, 7, 20] {
        crash_after(flushes);
    }
}
