//! The redb backend against the peerstore conformance suite (go's shared suites, go's
//! implementation tests, one test per go bug).

use std::{
    path::PathBuf,
    sync::atomic::{AtomicUsize, Ordering},
};

use peerage_core::peerstore::{Config, Peerstore};
use peerage_store::peerstore::{Options, RedbStore};

fn fresh_path() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("conformance");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!(
        "{}-{}.redb",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&path);
    path
}

fn redb(config: Config) -> Peerstore {
    // A small flush threshold, so that the suite's writes also go through to disk.
    let options = Options::new().with_flush_threshold(8);
    Peerstore::new(RedbStore::open(&fresh_path(), config, options).unwrap())
}

peerage_core::peerstore_conformance!(redb);
