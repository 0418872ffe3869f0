//! The `kill -9` campaign (issue 16, item 5): `peerage run` is killed with SIGKILL at random
//! moments while peers come and go, its peers file is saved every 100 ms and its peerstore
//! flushed every second. After each kill:
//!
//! - the peers file loads (never half written), and holds every peer of a save that had
//!   completed before the kill (read from the file 1.2 s or more before it);
//! - the peerstore opens, and holds an address of each of those peers that the node had
//!   connected to (flushed every second, so on disk by the kill);
//! - the node starts again with the same peer ID and knows at least the file's peers.
//!
//! `a_few_kills_lose_nothing` runs 4 kills in CI; `kill_9_campaign` (ignored) runs
//! `PEERAGE_KILLS` kills, 100 by default: `scripts/kill9-campaign.sh`.

use std::{
    collections::BTreeSet,
    path::Path,
    time::{Duration, Instant},
};

use peerage::{
    peers_file::PeersFile,
    peerstore::{self, Store},
};
use peerage_store::{RedbStore, peerstore::Options};

use crate::support::Running;

/// splitmix64: the campaign's kill times, from a seed (printed, to replay a failure).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

/// A node on a fresh data dir, bootstrapped from `hub`: a peer that comes and goes.
fn churner(hub: &str) -> (tempfile::TempDir, Running) {
    let dir = tempfile::tempdir().unwrap();
    let node = Running::start_in(dir.path(), &["--bootstrap", hub]);
    (dir, node)
}

/// The peers of the file that the node had connected to, or none if there is no file yet.
fn connected_peers(file: &PeersFile) -> BTreeSet<String> {
    file.load()
        .expect("the peers file loads")
        .into_iter()
        .filter(|e| e.last_established_connection.is_some())
        .map(|e| e.peer_id.to_string())
        .collect()
}

fn campaign(kills: u64, seed: u64) {
    eprintln!("kill -9 campaign: {kills} kills, seed {seed}");
    let mut rng = Rng(seed);
    let hub_dir = tempfile::tempdir().unwrap();
    let hub = Running::start_in(hub_dir.path(), &[]);
    let hub_addr = hub.line("listening on ");
    let mut churners: Vec<_> = (0..3).map(|_| churner(&hub_addr)).collect();

    let dir = tempfile::tempdir().unwrap();
    let args = ["--bootstrap", &hub_addr, "--peers-file-period", "100ms"];
    let file = PeersFile::new(dir.path().join("peers.json"));
    let mut node = Running::start_in(dir.path(), &args);
    let id = node.line("peer id: ");
    let mut checked = 0;
    for kill in 0..kills {
        // Churn: one peer goes, a new one comes.
        let i = usize::try_from(kill).unwrap() % churners.len();
        churners[i] = churner(&hub_addr);
        std::thread::sleep(Duration::from_millis(300 + rng.below(700)));
        let acknowledged = connected_peers(&file);
        // Past the peerstore's next flush (every second), then a kill at a random moment of
        // the saves' 100 ms period.
        std::thread::sleep(Duration::from_millis(1200 + rng.below(300)));
        node.kill9();

        let after = connected_peers(&file);
        let lost: Vec<_> = acknowledged.difference(&after).collect();
        assert!(lost.is_empty(), "kill {kill}: the peers file lost {lost:?}");
        let in_store = peerstore_peers_with_addrs(&dir.path().join("peerstore.redb"));
        let missing: Vec<_> = acknowledged.difference(&in_store).collect();
        assert!(
            missing.is_empty(),
            "kill {kill}: the peerstore lost {missing:?}"
        );
        checked += acknowledged.len();

        let in_file = file.load().unwrap().len();
        node = Running::start_in(dir.path(), &args);
        assert_eq!(node.line("peer id: "), id, "kill {kill}: the same peer ID");
        // The count is the pool's once started: the file's peers, and any the node met since.
        let loaded = node.line("peers file: ");
        let known: usize = loaded
            .rsplit_once('(')
            .and_then(|(_, n)| n.strip_suffix(" peers)"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("kill {kill}: {loaded}"));
        assert!(
            known >= in_file,
            "kill {kill}: {loaded}, {in_file} in the file"
        );
    }
    assert!(node.terminate().success());
    // The campaign checked something: the churners were known and connected.
    assert!(
        checked >= usize::try_from(kills).unwrap(),
        "{checked} peers checked"
    );
    eprintln!("{kills} kills, {checked} acknowledged peers checked, none lost");
    drop(hub);
}

/// The peers with an address in the peerstore at `path` (the node is dead: the file is free).
fn peerstore_peers_with_addrs(path: &Path) -> BTreeSet<String> {
    let store = RedbStore::open(path, peerstore::Config::default(), Options::default())
        .expect("the peerstore opens");
    store
        .peers_with_addrs(Instant::now())
        .into_iter()
        .map(|p| p.to_string())
        .collect()
}

#[test]
fn a_few_kills_lose_nothing() {
    campaign(4, 1);
}

#[test]
#[ignore = "about 3 minutes: scripts/kill9-campaign.sh"]
fn kill_9_campaign() {
    let kills = std::env::var("PEERAGE_KILLS").map_or(100, |v| v.parse().expect("a number"));
    let seed = std::env::var("PEERAGE_SEED").map_or_else(
        |_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        },
        |v| v.parse().expect("a number"),
    );
    campaign(kills, seed);
}
