//! Flushing off the writer's thread, and a full disk: the store's flusher thread writes past
//! the threshold while writers go on; a failed write (injected through a redb storage backend
//! that reports a full disk) keeps the file as it was, keeps the changes in memory, is logged
//! once, and the store writes again once there is room.

#![allow(clippy::disallowed_methods)]

use std::{
    fs::OpenOptions,
    io,
    ops::Bound,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use libp2p_identity::{Keypair, PeerId};
use multiaddr::Multiaddr;
use peerage_core::peerstore::{Config, Store, Ttl};
use peerage_store::peerstore::{Options, RedbStore};
use redb::{BackendError, StorageBackend, backends::FileBackend};

/// redb's file backend, whose writes fail with `StorageFull` while `full` is set.
#[derive(Debug)]
struct FullDisk {
    file: FileBackend,
    full: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
}

impl FullDisk {
    fn check(&self) -> io::Result<()> {
        if self.full.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left (injected)",
            ))
        } else {
            Ok(())
        }
    }
}

impl StorageBackend for FullDisk {
    fn len(&self) -> io::Result<u64> {
        self.file.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.file.read(offset, out)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        if len > self.file.len()? {
            self.check()?;
        }
        self.file.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.check()?;
        self.file.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.check()?;
        self.file.write(offset, data)
    }
    fn close(&self) -> io::Result<()> {
        self.file.close()
    }
    fn try_lock_range(&self, a: Bound<u64>, b: Bound<u64>) -> Result<bool, BackendError> {
        self.file.try_lock_range(a, b)
    }
    fn try_lock_shared_range(&self, a: Bound<u64>, b: Bound<u64>) -> Result<bool, BackendError> {
        self.file.try_lock_shared_range(a, b)
    }
    fn lock_range(&self, a: Bound<u64>, b: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_range(a, b)
    }
    fn lock_shared_range(&self, a: Bound<u64>, b: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_shared_range(a, b)
    }
    fn unlock_range(&self, a: Bound<u64>, b: Bound<u64>) -> Result<(), BackendError> {
        self.file.unlock_range(a, b)
    }
    fn query_lock_range(&self, a: Bound<u64>, b: Bound<u64>) -> Result<bool, BackendError> {
        self.file.query_lock_range(a, b)
    }
}

struct Disk {
    full: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
}

/// Opens a store at `path` on a [`FullDisk`] backend.
fn open_on_disk(path: &Path, options: Options) -> (RedbStore, Disk) {
    let full = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    let backend = {
        let (path, full, refused) = (path.to_owned(), full.clone(), refused.clone());
        move || {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)?;
            Ok(FullDisk {
                file: FileBackend::new(file).map_err(io::Error::other)?,
                full: full.clone(),
                refused: refused.clone(),
            })
        }
    };
    let store = RedbStore::open_with_backend(
        path,
        Config::new(),
        options,
        Instant::now(),
        SystemTime::now(),
        backend,
    )
    .unwrap();
    (store, Disk { full, refused })
}

fn peer(batch: u8, i: u8) -> PeerId {
    let mut seed = [0u8; 32];
    seed[0] = batch;
    seed[1] = i;
    seed[31] = 9;
    Keypair::ed25519_from_bytes(seed)
        .unwrap()
        .public()
        .to_peer_id()
}

fn addr(batch: u8, i: u8) -> Multiaddr {
    format!("/ip4/10.{batch}.{i}.1/tcp/4001").parse().unwrap()
}

fn write_batch(store: &RedbStore, batch: u8, n: u8) {
    for i in 0..n {
        store.add_addrs(
            &peer(batch, i),
            &[addr(batch, i)],
            Ttl::Permanent,
            Instant::now(),
        );
    }
}

/// The batches whose peers are all in the file at `path`; panics on a batch half there.
fn batches_in_file(path: &Path, batches: &[u8], n: u8) -> Vec<u8> {
    let store = RedbStore::open(path, Config::new(), Options::new()).unwrap();
    let now = Instant::now();
    let mut found = Vec::new();
    for &b in batches {
        let there: Vec<bool> = (0..n)
            .map(|i| store.addrs(&peer(b, i), now) == vec![addr(b, i)])
            .collect();
        assert!(
            there.iter().all(|t| *t) || there.iter().all(|t| !*t),
            "batch {b} is half there"
        );
        if there[0] {
            found.push(b);
        }
    }
    found
}

fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn temp_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peerstore.redb");
    (dir, path)
}

#[test]
fn a_full_disk_keeps_the_file_and_the_changes_and_the_store_writes_again_once_there_is_room() {
    let (_dir, path) = temp_path();
    {
        let (store, disk) = open_on_disk(&path, Options::new().with_flush_threshold(usize::MAX));
        write_batch(&store, 1, 10);
        store.flush().unwrap();

        disk.full.store(true, Ordering::SeqCst);
        write_batch(&store, 2, 10);
        let err = store.flush().unwrap_err().to_string();
        assert!(
            err.contains("cannot write") && err.contains(&path.display().to_string()),
            "{err}"
        );
        assert_eq!(
            store.pending_changes(),
            10,
            "the failed flush's peers stay dirty"
        );
        // Still full: a second try fails too, and the store keeps serving reads.
        assert!(store.flush().is_err());
        assert_eq!(store.addrs(&peer(2, 3), Instant::now()), vec![addr(2, 3)]);
        assert!(disk.refused.load(Ordering::SeqCst) >= 2);

        // Room again: the next flush writes batch 2 (redb needed the database opened again).
        disk.full.store(false, Ordering::SeqCst);
        store.flush().unwrap();
        assert_eq!(store.pending_changes(), 0);

        // Full again when the store is dropped: its last flush fails, and is logged.
        write_batch(&store, 3, 10);
        disk.full.store(true, Ordering::SeqCst);
    }
    assert_eq!(batches_in_file(&path, &[1, 2, 3], 10), vec![1, 2]);
}

#[test]
fn a_full_disk_during_the_first_flush_leaves_a_store_that_opens() {
    let (_dir, path) = temp_path();
    {
        let (store, disk) = open_on_disk(&path, Options::new().with_flush_threshold(usize::MAX));
        disk.full.store(true, Ordering::SeqCst);
        write_batch(&store, 1, 20);
        assert!(store.flush().is_err());
    }
    assert_eq!(batches_in_file(&path, &[1], 20), Vec::<u8>::new());
}

#[test]
fn the_flusher_thread_flushes_past_the_threshold_without_a_flush_call() {
    let (_dir, path) = temp_path();
    {
        let (store, _disk) = open_on_disk(&path, Options::new().with_flush_threshold(8));
        // The 8th write reaches the threshold and wakes the flusher; no write comes after it
        // (with more, the last ones would wait for the next time the threshold is reached).
        write_batch(&store, 1, 8);
        // The flusher thread has taken every change...
        until("the flusher thread", || store.pending_changes() == 0);
        // ...and a flush call, which waits for the running flush (flushes are serialized),
        // finds nothing left to write.
        store.flush().unwrap();
        assert_eq!(store.pending_changes(), 0);
        // Leaked, so that drop's flush cannot be what wrote the file.
        std::mem::forget(store);
    }
    // The leaked store still holds the file's lock: read a copy.
    let copy = path.with_extension("copy");
    std::fs::copy(&path, &copy).unwrap();
    assert_eq!(batches_in_file(&copy, &[1], 8), vec![1]);
}

/// A writer that keeps what is logged.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_flusher_thread_logs_a_full_disk_once_retries_and_logs_the_recovery() {
    let logs = Logs::default();
    let writer = logs.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish(),
    )
    .unwrap();
    let (_dir, path) = temp_path();
    let (store, disk) = open_on_disk(
        &path,
        Options::new()
            .with_flush_threshold(8)
            .with_flush_retry(Duration::from_millis(20)),
    );
    disk.full.store(true, Ordering::SeqCst);
    // Writes go on while the disk is full: each wakes the flusher, which fails, waits, and
    // fails again.
    let mut batch = 1;
    until("five refused flushes", || {
        write_batch(&store, batch, 10);
        batch += 1;
        disk.refused.load(Ordering::SeqCst) >= 5
    });
    disk.full.store(false, Ordering::SeqCst);
    write_batch(&store, batch, 10);
    // The flusher thread (the only one flushing until the store is dropped) logs its first
    // flush that succeeds.
    let recovered = || {
        String::from_utf8_lossy(&logs.0.lock().unwrap()).contains("flushed again after a failure")
    };
    until("a flush after the disk has room", recovered);
    // Dropped, its last flush writes what came after the flusher's (nothing logged: the
    // store is not failing any more).
    drop(store);
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let warns: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warns.len(), 1, "{text}");
    assert!(warns[0].contains("no space left (injected)"), "{text}");
    assert_eq!(
        text.matches("flushed again after a failure").count(),
        1,
        "{text}"
    );
    let all: Vec<u8> = (1..=batch).collect();
    assert_eq!(batches_in_file(&path, &all, 10), all);
}
