//! A full disk under a running node (issue 16, item 5), without privileges: the test lowers
//! the node's file size limit (`RLIMIT_FSIZE`, with util-linux's `prlimit`) to 0, so that every
//! write to a file fails with `EFBIG` as it would with `ENOSPC`, then lifts it. The node ignores
//! `SIGXFSZ` (set before `exec`, as a service manager would), so the failed writes are errors,
//! not a signal.

use std::{
    collections::BTreeSet,
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use peerage::{
    peers_file::PeersFile,
    peerstore::{self, Store},
};
use peerage_store::{RedbStore, peerstore::Options};

use crate::support::{LOOPBACK, Running, wait_for};

/// The peers of the peers file.
fn peers_in(file: &PeersFile) -> BTreeSet<String> {
    file.load()
        .expect("the peers file loads")
        .into_iter()
        .map(|e| e.peer_id.to_string())
        .collect()
}

/// Sets the soft file size limit of process `pid` (`unlimited` or bytes).
fn fsize(pid: u32, limit: &str) {
    let status = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--fsize={limit}:")])
        .status()
        .expect("prlimit (util-linux)");
    assert!(status.success(), "prlimit --fsize={limit}");
}

/// The stderr lines received so far that contain `what`.
fn count(log: &mpsc::Receiver<String>, seen: &mut Vec<String>, what: &str) -> usize {
    seen.extend(log.try_iter());
    seen.iter().filter(|l| l.contains(what)).count()
}

/// With every file write failing, the node keeps running and admitting peers, keeps the
/// previous peers file whole, and logs each failure once (the peers file's, the address book's
/// and the peerstore's) however many saves fail; once there is room again it logs each
/// recovery and writes what it learnt meanwhile, and the peerstore on disk holds it after a
/// restart.
#[test]
fn a_full_disk_keeps_the_previous_files_logs_once_and_the_node_runs_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let file = PeersFile::new(dir.path().join("peers.json"));
    let hub_dir = tempfile::tempdir().unwrap();
    let hub = Running::start_in(hub_dir.path(), &[]);
    let hub_id = hub.line("peer id: ");
    let hub_addr = hub.line("listening on ");

    let mut command = Command::new("sh");
    command
        .args(["-c", "trap '' XFSZ; exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_peerage"))
        .args(["run", "--data-dir", data, "--listen", LOOPBACK])
        .args(["--bootstrap", &hub_addr, "--peers-file-period", "100ms"])
        .args(["--admin", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped());
    let mut node = Running::spawn(command);
    let pid = node.pid();
    let log = node.stderr_lines();
    let addr = node.line("listening on ");
    let admin = node.line("admin API: http://");
    wait_for("the hub in the peers file", || {
        file.path().exists() && peers_in(&file).contains(&hub_id)
    });
    // Past a peerstore flush (every second) with the hub in it.
    std::thread::sleep(Duration::from_millis(1500));

    // The disk is full. A save under way as the limit fell may still land (its temporary file
    // written, not yet renamed; on a loaded machine `prlimit` itself takes longer than a save
    // period): the file as it stands once two reads 300 ms apart agree is the one to keep.
    fsize(pid, "0");
    let mut before = std::fs::read(file.path()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = std::fs::read(file.path()).unwrap();
        if now == before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the peers file kept changing on a full disk"
        );
        before = now;
    }
    // What it settled to is the previous file, whole: not emptied by a failed write.
    assert!(
        peers_in(&file).contains(&hub_id),
        "the peers file lost the hub"
    );
    let late_dir = tempfile::tempdir().unwrap();
    let late = Running::start_in(late_dir.path(), &["--bootstrap", &addr]);
    let late_id = late.line("peer id: ");
    let peers = |admin: &str| -> String {
        ureq::get(&format!("http://{admin}/network/peers"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap()
    };
    wait_for("the late peer admitted", || {
        peers(&admin).contains(&late_id)
    });
    // Twenty save periods and three flushes, all failing.
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        assert_eq!(
            std::fs::read(file.path()).unwrap(),
            before,
            "the peers file changed on a full disk"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!peers_in(&file).contains(&late_id));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".tmp") || n.starts_with(".peers"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    // One warning for each file: the peers file, the address book and the peerstore.
    for file in ["peers.json: ", "addrbook.json: ", "peerstore.redb: "] {
        assert_eq!(count(&log, &mut seen, file), 1, "{file}: {seen:#?}");
    }
    assert!(node.is_running(), "the node exited");

    // Room again.
    fsize(pid, "unlimited");
    wait_for("the late peer saved", || peers_in(&file).contains(&late_id));
    wait_for("the three recoveries logged", || {
        [
            "peers file saved again after a failure",
            "address book saved again after a failure",
            "peerstore: flushed again after a failure",
        ]
        .iter()
        .all(|what| count(&log, &mut seen, what) == 1)
    });
    assert!(node.terminate().success());
    let store = RedbStore::open(
        &dir.path().join(peerage_store::peerstore::FILE_NAME),
        peerstore::Config::default(),
        Options::default(),
    )
    .expect("the peerstore opens");
    let late_peer = late_id.parse().unwrap();
    assert!(
        !store.addrs(&late_peer, Instant::now()).is_empty(),
        "the peer met on a full disk is not in the peerstore"
    );
    drop((late, hub));
}
