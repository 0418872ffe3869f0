//! The peers file (Octez's `peers.json`) of `peerage run`: saved periodically, so that a
//! `kill -9` loses at most one period (Octez saves only at shutdown, tezos-k8s#561); loaded at
//! start; a corrupt one set aside, never overwritten.

use std::time::Duration;

use peerage::peers_file::PeersFile;

use crate::support::{Running, wait_for};

#[test]
fn the_peers_file_survives_kill_9_and_loads_at_restart() {
    let hub_dir = tempfile::tempdir().unwrap();
    let hub = Running::start_in(hub_dir.path(), &[]);
    let hub_id = hub.line("peer id: ");
    let hub_addr = hub.line("listening on ");

    let dir = tempfile::tempdir().unwrap();
    let args = ["--bootstrap", &hub_addr, "--peers-file-period", "200ms"];
    let node = Running::start_in(dir.path(), &args);
    let file = PeersFile::new(dir.path().join("peers.json"));
    // A periodic save records the hub, connected.
    wait_for("a save with the hub connected", || {
        file.load().is_ok_and(|entries| {
            entries
                .iter()
                .any(|e| e.peer_id.to_string() == hub_id && e.last_established_connection.is_some())
        })
    });
    // Let a few more saves happen, then kill -9 mid-run: no shutdown save.
    std::thread::sleep(Duration::from_millis(700));
    node.kill9();
    let entries = file.load().expect("the last periodic save is intact");
    let hub_entry = entries
        .iter()
        .find(|e| e.peer_id.to_string() == hub_id)
        .expect("the hub is in the file");
    let (point, _) = hub_entry.last_established_connection.clone().unwrap();
    assert!(
        hub_addr.starts_with(&point.to_string()),
        "{point} vs {hub_addr}"
    );

    // Restarted on the same data dir, the node loads it.
    let node = Running::start_in(dir.path(), &args);
    assert_eq!(
        node.line("peers file: "),
        format!("{} (1 peers)", file.path().display())
    );
    assert!(node.terminate().success());
    drop(hub);
}

#[test]
fn a_corrupt_peers_file_is_set_aside_and_a_new_one_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peers.json");
    let garbage = b"[{\"peer_id\": \"12D3KooW";
    std::fs::write(&path, garbage).unwrap();
    let node = Running::start_in(dir.path(), &[]);
    assert_eq!(
        node.line("peers file: "),
        format!("{} (0 peers)", path.display())
    );
    assert!(node.terminate().success());
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("peers.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(&aside[0]).unwrap(), garbage, "kept as it was");
    assert_eq!(
        PeersFile::new(&path).load().unwrap(),
        vec![],
        "a new, valid file"
    );
}
