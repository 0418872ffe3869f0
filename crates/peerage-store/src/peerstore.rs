//! The persistent peerstore on redb.
//!
//! [`RedbStore`] serves every read from a [`MemoryStore`] (same semantics, same speed) and
//! writes changes through to a redb database:
//!
//! - **One record per peer** (addresses, signed record, keys, protocols, latency, metadata), so a
//!   peer's multi-field writes land together. The table is keyed by peer ID: it is the peer index.
//! - **Group commit**: writes mark their peer dirty; [`Store::flush`] writes every dirty peer in
//!   one transaction with immediate durability. Once `flush` returns `Ok`, those writes survive a
//!   crash; writes not yet flushed do not. A write that leaves more than
//!   [`Options::with_flush_threshold`] dirty peers wakes the store's flusher thread, which
//!   flushes while the writer goes on: a write never waits on the disk. Dropping the store
//!   flushes.
//! - **Short locks**: a flush takes the set of dirty peers in O(1) and then reads each peer
//!   alone, so a reader or writer on another thread (an event loop) waits for one peer's copy at
//!   most, never for the disk.
//! - **Failed writes** (a full disk): the file keeps its last committed state, the peers of the
//!   failed flush are marked dirty again, and the database is opened again (redb refuses every
//!   write after a failed one). The flusher thread waits [`Options::with_flush_retry`] before
//!   it tries again, and logs a failure once, until a flush succeeds.
//! - **Wall-clock expiries** (Unix milliseconds) on disk; on open, expired addresses are dropped
//!   and connected addresses (go `ConnectedAddrTTL`, which only means something while connected)
//!   are demoted to [`Ttl::RECENTLY_CONNECTED`]. Permanent addresses stay permanent.
//! - **Private keys** are not written unless [`Options::with_private_keys`] asks for it.
//! - A file that is not a redb database, or a redb database that is not a Peerage peerstore, is
//!   refused with [`Error::Storage`] and left untouched.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use libp2p_core::SignedEnvelope;
use libp2p_identity::{Keypair, PeerId, PublicKey};
use multiaddr::Multiaddr;
use peerage_core::peerstore::{
    AddrEntry, AddrStream, Config, Error, MemoryStore, PeerState, Store, Ttl, VerifiedRecord,
};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

const META: TableDefinition<'_, &str, &str> = TableDefinition::new("peerage_meta");
const PEERS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("peerage_peers");
const FORMAT_KEY: &str = "format";
const FORMAT: &str = "peerage-peerstore/1";

/// The file name of the peerstore in a data directory.
pub const FILE_NAME: &str = "peerstore.redb";

/// Options of a [`RedbStore`] beyond the peerstore [`Config`].
#[derive(Debug, Clone)]
pub struct Options {
    private_keys: bool,
    flush_threshold: usize,
    flush_retry: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            private_keys: false,
            flush_threshold: 4096,
            flush_retry: Duration::from_secs(1),
        }
    }
}

impl Options {
    /// Defaults: private keys not written, flush past 4096 dirty peers, retry a failed flush
    /// after 1 s.
    pub fn new() -> Self {
        Self::default()
    }
    /// Whether private keys are written to disk (unencrypted). `false` by default.
    pub fn with_private_keys(mut self, yes: bool) -> Self {
        self.private_keys = yes;
        self
    }
    /// Dirty peers past which a write wakes the flusher thread (the write itself does not
    /// wait). 4096 by default; `usize::MAX` leaves flushing to [`Store::flush`] and drop.
    pub fn with_flush_threshold(mut self, n: usize) -> Self {
        self.flush_threshold = n.max(1);
        self
    }
    /// How long the flusher thread waits after a failed flush before it tries again, so that a
    /// full disk is not retried on every write. 1 second by default.
    pub fn with_flush_retry(mut self, wait: Duration) -> Self {
        self.flush_retry = wait;
        self
    }
}

/// A persistent peerstore on redb. See the [module docs](self).
#[derive(Debug)]
pub struct RedbStore {
    shared: Arc<Shared>,
    /// Wakes the flusher thread; a queue of one, so a wake-up while one is pending is a no-op.
    wake: Option<mpsc::SyncSender<()>>,
    flusher: Option<thread::JoinHandle<()>>,
    loaded: usize,
}

/// What the store and its flusher thread share.
#[derive(Debug)]
struct Shared {
    memory: MemoryStore,
    /// The database, `None` after a failed write until it is opened again. The lock serializes
    /// flushes, so that an older export never lands after a newer one.
    db: Mutex<Option<redb::Database>>,
    /// Opens the database read-write (again, after a failed write).
    opener: Opener,
    path: PathBuf,
    options: Options,
    /// An instant and the wall-clock time it stands for, to convert expiries.
    anchor: (Instant, SystemTime),
    /// Whether the last flush failed: a failure is logged once, until a flush succeeds.
    failing: AtomicBool,
}

/// Opens the database read-write: redb's own file handling, or a caller's storage backend.
struct Opener(Box<dyn Fn() -> Result<redb::Database, redb::DatabaseError> + Send + Sync>);

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Opener")
    }
}

fn storage(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::Storage(format!("{}: {what}: {e}", path.display()))
}

fn open_error(path: &Path, e: redb::DatabaseError) -> Error {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => storage(
            path,
            "cannot open",
            "already open (another node on this data dir?)",
        ),
        e => storage(path, "not a peerstore database", e),
    }
}

impl RedbStore {
    /// Opens the peerstore at `path`, creating it if there is no file, and loads it.
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] if the file cannot be opened or created, is not a redb database, is a
    /// redb database of something else, is already open, or holds a record that does not
    /// decode. The file is not modified in any of these cases.
    pub fn open(path: &Path, config: Config, options: Options) -> Result<Self, Error> {
        Self::open_at(path, config, options, Instant::now(), SystemTime::now())
    }

    /// As [`RedbStore::open`], with the instant and wall-clock time of opening given (tests
    /// step time across a reopen with these).
    ///
    /// # Errors
    ///
    /// As [`RedbStore::open`].
    pub fn open_at(
        path: &Path,
        config: Config,
        options: Options,
        now: Instant,
        wall: SystemTime,
    ) -> Result<Self, Error> {
        let file = path.to_owned();
        let opener = Opener(Box::new(move || {
            if file.exists() {
                redb::Database::open(&file)
            } else {
                redb::Database::create(&file)
            }
        }));
        Self::open_with(path, config, options, now, wall, opener)
    }

    /// As [`RedbStore::open_at`], with the database's storage given by `backend`, called each
    /// time the database is opened read-write: once here, and again after a failed write
    /// (redb refuses every later write of a database whose write failed, until it is opened
    /// again). A test injects faults (a full disk) with a wrapper of redb's
    /// [`FileBackend`](redb::backends::FileBackend). An existing file at `path` is still
    /// checked through redb's own read-only handling first.
    ///
    /// # Errors
    ///
    /// As [`RedbStore::open`]; also if `backend` fails.
    pub fn open_with_backend<B: redb::StorageBackend>(
        path: &Path,
        config: Config,
        options: Options,
        now: Instant,
        wall: SystemTime,
        backend: impl Fn() -> std::io::Result<B> + Send + Sync + 'static,
    ) -> Result<Self, Error> {
        let opener = Opener(Box::new(move || {
            redb::Builder::new().create_with_backend(backend().map_err(redb::StorageError::from)?)
        }));
        Self::open_with(path, config, options, now, wall, opener)
    }

    fn open_with(
        path: &Path,
        config: Config,
        options: Options,
        now: Instant,
        wall: SystemTime,
        opener: Opener,
    ) -> Result<Self, Error> {
        let memory = MemoryStore::tracking_changes(config);
        let anchor = (now, wall);
        let exists = path.exists();
        // An existing file is checked and loaded read-only first, so that a file that is not
        // ours is never written. Only a database of ours that needs recovery after a crash is
        // opened read-write before it is checked (redb repairs it then).
        let mut loaded = None;
        if exists {
            match redb::ReadOnlyDatabase::open(path) {
                Ok(db) => loaded = Some(load(&db, path, &memory, now, anchor)?),
                Err(redb::DatabaseError::RepairAborted) => {}
                Err(e) => return Err(open_error(path, e)),
            }
        }
        let db = (opener.0)().map_err(|e| {
            if exists {
                open_error(path, e)
            } else {
                storage(path, "cannot create", e)
            }
        })?;
        let loaded = match loaded {
            Some(n) => n,
            None if exists => load(&db, path, &memory, now, anchor)?,
            None => {
                init(&db, path)?;
                0
            }
        };
        let shared = Arc::new(Shared {
            memory,
            db: Mutex::new(Some(db)),
            opener,
            path: path.to_owned(),
            options,
            anchor,
            failing: AtomicBool::new(false),
        });
        let (wake, woken) = mpsc::sync_channel(1);
        let flusher = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("peerstore-flush".into())
                .spawn(move || {
                    while woken.recv().is_ok() {
                        if shared.flush_and_report().is_err() {
                            thread::sleep(shared.options.flush_retry);
                        }
                    }
                })
                .map_err(|e| storage(path, "cannot start the flusher thread", e))?
        };
        Ok(Self {
            shared,
            wake: Some(wake),
            flusher: Some(flusher),
            loaded,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Number of peers loaded when the store was opened.
    pub fn loaded_peers(&self) -> usize {
        self.loaded
    }

    /// Number of peers changed since the last flush began: what a flush now would write.
    pub fn pending_changes(&self) -> usize {
        self.shared.memory.pending_changes()
    }

    /// After a write: past the threshold, wakes the flusher thread (a no-op if it is already
    /// awake or woken).
    fn after_write(&self) {
        if self.shared.memory.pending_changes() >= self.shared.options.flush_threshold
            && let Some(wake) = &self.wake
        {
            let _ = wake.try_send(());
        }
    }
}

impl Shared {
    /// Writes every dirty peer in one transaction. The dirty set is taken whole (O(1) under the
    /// memory store's lock), and each peer is copied under the lock alone, so the lock is never
    /// held across the encoding or the disk.
    fn flush(&self) -> Result<(), Error> {
        let mut db = self
            .db
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let peers = self.memory.take_changes();
        if peers.is_empty() {
            return Ok(());
        }
        if db.is_none() {
            match (self.opener.0)() {
                Ok(open) => *db = Some(open),
                Err(e) => {
                    self.memory.restore_changes(peers);
                    return Err(storage(&self.path, "cannot open again to write", e));
                }
            }
        }
        let open = db.as_ref().expect("opened above");
        let result = self.write_out(open, &peers);
        if result.is_err() {
            self.memory.restore_changes(peers);
            // redb refuses every write after a failed one: the next flush opens it again.
            *db = None;
        }
        result
    }

    /// As [`Shared::flush`], logging a failure once (until a flush succeeds again) and the
    /// recovery.
    fn flush_and_report(&self) -> Result<(), Error> {
        let result = self.flush();
        match &result {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("peerstore: flushed again after a failure");
                }
            }
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!("{e} (the changes stay in memory; retried)");
                }
            }
        }
        result
    }

    fn write_out<'a>(
        &self,
        db: &redb::Database,
        peers: impl IntoIterator<Item = &'a PeerId>,
    ) -> Result<(), Error> {
        let err = |e: String| storage(&self.path, "cannot write", e);
        let write = db.begin_write().map_err(|e| err(e.to_string()))?;
        {
            let mut table = write.open_table(PEERS).map_err(|e| err(e.to_string()))?;
            for peer in peers {
                let key = peer.to_bytes();
                match self.memory.export_peer(peer) {
                    Some(state) => {
                        let stored =
                            StoredPeer::from_state(&state, self.options.private_keys, |i| {
                                wall_ms(self.anchor, i)
                            });
                        let bytes = serde_json::to_vec(&stored).map_err(|e| err(e.to_string()))?;
                        table
                            .insert(key.as_slice(), bytes.as_slice())
                            .map_err(|e| err(e.to_string()))?;
                    }
                    None => {
                        table
                            .remove(key.as_slice())
                            .map_err(|e| err(e.to_string()))?;
                    }
                }
            }
        }
        write.commit().map_err(|e| err(e.to_string()))
    }
}

/// Unix milliseconds of `instant`, given that `anchor.0` is `anchor.1`.
fn wall_ms(anchor: (Instant, SystemTime), instant: Instant) -> u64 {
    let (at, wall) = anchor;
    let t = if instant >= at {
        wall + (instant - at)
    } else {
        wall - (at - instant)
    };
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The instant of Unix milliseconds `ms`, given that `now` is `now_ms`.
fn instant_of(ms: u64, now: Instant, now_ms: u64) -> Instant {
    if ms >= now_ms {
        now.checked_add(Duration::from_millis(ms - now_ms))
            .unwrap_or(now)
    } else {
        now.checked_sub(Duration::from_millis(now_ms - ms))
            .unwrap_or(now)
    }
}

/// Marks a new, empty database as a peerstore.
fn init(db: &redb::Database, path: &Path) -> Result<(), Error> {
    let err = |e: String| storage(path, "cannot write", e);
    let write = db.begin_write().map_err(|e| err(e.to_string()))?;
    {
        let mut meta = write.open_table(META).map_err(|e| err(e.to_string()))?;
        meta.insert(FORMAT_KEY, FORMAT)
            .map_err(|e| err(e.to_string()))?;
        write.open_table(PEERS).map_err(|e| err(e.to_string()))?;
    }
    write.commit().map_err(|e| err(e.to_string()))
}

/// Checks that `db` is a peerstore and loads it into `memory`; returns the number of peers.
fn load(
    db: &impl ReadableDatabase,
    path: &Path,
    memory: &MemoryStore,
    now: Instant,
    anchor: (Instant, SystemTime),
) -> Result<usize, Error> {
    let err = |what, e: String| storage(path, what, e);
    let read = db
        .begin_read()
        .map_err(|e| err("cannot read", e.to_string()))?;
    let format = match read.open_table(META) {
        Ok(table) => table
            .get(FORMAT_KEY)
            .map_err(|e| err("cannot read", e.to_string()))?
            .map(|v| v.value().to_owned()),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(err("cannot read", e.to_string())),
    };
    if format.as_deref() != Some(FORMAT) {
        return Err(err(
            "not a peerage peerstore",
            format!("format {format:?}, expected {FORMAT:?}"),
        ));
    }
    let table = read
        .open_table(PEERS)
        .map_err(|e| err("cannot read", e.to_string()))?;
    let now_ms = wall_ms(anchor, now);
    let mut loaded = 0;
    for row in table
        .iter()
        .map_err(|e| err("cannot read", e.to_string()))?
    {
        let (key, value) = row.map_err(|e| err("cannot read", e.to_string()))?;
        let peer =
            PeerId::from_bytes(key.value()).map_err(|e| err("corrupt peer ID", e.to_string()))?;
        let stored: StoredPeer = serde_json::from_slice(value.value())
            .map_err(|e| err("corrupt record", format!("peer {peer}: {e}")))?;
        let state = stored
            .into_state(|ms| instant_of(ms, now, now_ms), now_ms)
            .map_err(|e| err("corrupt record", format!("peer {peer}: {e}")))?;
        if !state.is_empty() {
            memory.import_peer(&peer, state);
            loaded += 1;
        }
    }
    Ok(loaded)
}

impl Drop for RedbStore {
    /// Stops the flusher thread and flushes what is left; a failure is logged (unless it was
    /// already), since nothing can be returned from here.
    fn drop(&mut self) {
        drop(self.wake.take());
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
        let _ = self.shared.flush_and_report();
    }
}

/// A delegating write: runs on the memory store, then maybe flushes.
macro_rules! write_through {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {{
        let result = $self.shared.memory.$method($($arg),*);
        $self.after_write();
        result
    }};
}

impl Store for RedbStore {
    fn add_addrs(&self, peer: &PeerId, addrs: &[Multiaddr], ttl: Ttl, now: Instant) {
        write_through!(self.add_addrs(peer, addrs, ttl, now))
    }
    fn set_addrs(&self, peer: &PeerId, addrs: &[Multiaddr], ttl: Ttl, now: Instant) {
        write_through!(self.set_addrs(peer, addrs, ttl, now))
    }
    fn update_addrs(&self, peer: &PeerId, old: Ttl, new: Ttl, now: Instant) {
        write_through!(self.update_addrs(peer, old, new, now))
    }
    fn clear_addrs(&self, peer: &PeerId) {
        write_through!(self.clear_addrs(peer))
    }
    fn addrs_with_ttl(&self, peer: &PeerId, now: Instant) -> Vec<AddrEntry> {
        self.shared.memory.addrs_with_ttl(peer, now)
    }
    fn addrs(&self, peer: &PeerId, now: Instant) -> Vec<Multiaddr> {
        self.shared.memory.addrs(peer, now)
    }
    fn peers_with_addrs(&self, now: Instant) -> Vec<PeerId> {
        self.shared.memory.peers_with_addrs(now)
    }
    fn gc(&self, now: Instant) -> usize {
        write_through!(self.gc(now))
    }
    fn next_expiry(&self) -> Option<Instant> {
        self.shared.memory.next_expiry()
    }
    fn unconnected_addrs(&self) -> usize {
        self.shared.memory.unconnected_addrs()
    }
    fn addr_stream(&self, peer: &PeerId) -> AddrStream {
        self.shared.memory.addr_stream(peer)
    }
    fn consume_peer_record(
        &self,
        envelope: &SignedEnvelope,
        ttl: Ttl,
        now: Instant,
    ) -> Result<bool, Error> {
        write_through!(self.consume_peer_record(envelope, ttl, now))
    }
    fn consume_verified_record(
        &self,
        record: &VerifiedRecord,
        ttl: Ttl,
        now: Instant,
    ) -> Result<bool, Error> {
        write_through!(self.consume_verified_record(record, ttl, now))
    }
    fn peer_record(&self, peer: &PeerId, now: Instant) -> Option<SignedEnvelope> {
        self.shared.memory.peer_record(peer, now)
    }
    fn pub_key(&self, peer: &PeerId) -> Option<PublicKey> {
        self.shared.memory.pub_key(peer)
    }
    fn add_pub_key(&self, peer: &PeerId, key: &PublicKey) -> Result<(), Error> {
        write_through!(self.add_pub_key(peer, key))
    }
    fn priv_key(&self, peer: &PeerId) -> Option<Keypair> {
        self.shared.memory.priv_key(peer)
    }
    fn add_priv_key(&self, peer: &PeerId, key: &Keypair) -> Result<(), Error> {
        write_through!(self.add_priv_key(peer, key))
    }
    fn peers_with_keys(&self) -> Vec<PeerId> {
        self.shared.memory.peers_with_keys()
    }
    fn protocols(&self, peer: &PeerId) -> Vec<String> {
        self.shared.memory.protocols(peer)
    }
    fn add_protocols(&self, peer: &PeerId, protocols: &[String]) -> Result<(), Error> {
        write_through!(self.add_protocols(peer, protocols))
    }
    fn set_protocols(&self, peer: &PeerId, protocols: &[String]) -> Result<(), Error> {
        write_through!(self.set_protocols(peer, protocols))
    }
    fn remove_protocols(&self, peer: &PeerId, protocols: &[String]) {
        write_through!(self.remove_protocols(peer, protocols))
    }
    fn supports_protocols(&self, peer: &PeerId, protocols: &[&str]) -> Vec<String> {
        self.shared.memory.supports_protocols(peer, protocols)
    }
    fn first_supported_protocol(&self, peer: &PeerId, protocols: &[&str]) -> Option<String> {
        self.shared.memory.first_supported_protocol(peer, protocols)
    }
    fn record_latency(&self, peer: &PeerId, rtt: Duration) {
        write_through!(self.record_latency(peer, rtt))
    }
    fn latency_ewma(&self, peer: &PeerId) -> Option<Duration> {
        self.shared.memory.latency_ewma(peer)
    }
    fn reset_latency(&self, peer: &PeerId) {
        write_through!(self.reset_latency(peer))
    }
    fn put_value(&self, peer: &PeerId, key: &str, value: serde_json::Value) {
        write_through!(self.put_value(peer, key, value))
    }
    fn get_value(&self, peer: &PeerId, key: &str) -> Result<serde_json::Value, Error> {
        self.shared.memory.get_value(peer, key)
    }
    fn peers(&self, now: Instant) -> Vec<PeerId> {
        self.shared.memory.peers(now)
    }
    fn remove_peer(&self, peer: &PeerId) {
        write_through!(self.remove_peer(peer))
    }

    /// Writes every dirty peer in one transaction (see the [module docs](self)). A failure is
    /// logged once, until a flush succeeds again, whether this call or the flusher thread
    /// flushed.
    fn flush(&self) -> Result<(), Error> {
        self.shared.flush_and_report()
    }
}

/// A TTL on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StoredTtl {
    Finite { ms: u64 },
    Connected,
    Permanent,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredAddr {
    addr: String,
    ttl: StoredTtl,
    /// Unix milliseconds; absent for connected and permanent addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expiry_ms: Option<u64>,
}

/// One peer on disk. Keys and records are in libp2p's protobuf encodings.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredPeer {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    addrs: Vec<StoredAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    record: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    public_key: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    private_key: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    protocols: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    latency_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    metadata: BTreeMap<String, serde_json::Value>,
}

impl StoredPeer {
    fn from_state(state: &PeerState, private_keys: bool, wall_ms: impl Fn(Instant) -> u64) -> Self {
        Self {
            addrs: state
                .addrs
                .iter()
                .map(|e| StoredAddr {
                    addr: e.addr.to_string(),
                    ttl: match e.ttl {
                        Ttl::Finite(d) => StoredTtl::Finite {
                            ms: u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
                        },
                        Ttl::Connected => StoredTtl::Connected,
                        Ttl::Permanent => StoredTtl::Permanent,
                    },
                    expiry_ms: e.expiry.map(&wall_ms),
                })
                .collect(),
            record: state
                .record
                .clone()
                .map(SignedEnvelope::into_protobuf_encoding),
            public_key: state.public_key.as_ref().map(PublicKey::encode_protobuf),
            private_key: state
                .private_key
                .as_ref()
                .filter(|_| private_keys)
                .and_then(|k| k.to_protobuf_encoding().ok()),
            protocols: state.protocols.clone(),
            latency_ns: state
                .latency
                .map(|l| u64::try_from(l.as_nanos()).unwrap_or(u64::MAX)),
            metadata: state.metadata.clone(),
        }
    }

    /// The state to import at `now_ms`: expired addresses dropped, connected ones demoted.
    fn into_state(
        self,
        instant_of: impl Fn(u64) -> Instant,
        now_ms: u64,
    ) -> Result<PeerState, String> {
        let recently = Ttl::RECENTLY_CONNECTED;
        let mut addrs = Vec::with_capacity(self.addrs.len());
        for a in self.addrs {
            let addr: Multiaddr = a
                .addr
                .parse()
                .map_err(|e| format!("address {:?}: {e}", a.addr))?;
            let (ttl, expiry) = match (a.ttl, a.expiry_ms) {
                (StoredTtl::Connected, _) => {
                    let Ttl::Finite(d) = recently else {
                        unreachable!("finite")
                    };
                    let ms = now_ms.saturating_add(u64::try_from(d.as_millis()).unwrap_or(0));
                    (recently, Some(instant_of(ms)))
                }
                (StoredTtl::Permanent, _) => (Ttl::Permanent, None),
                (StoredTtl::Finite { ms }, Some(expiry)) => {
                    if expiry <= now_ms {
                        continue;
                    }
                    (
                        Ttl::Finite(Duration::from_millis(ms)),
                        Some(instant_of(expiry)),
                    )
                }
                (StoredTtl::Finite { ms }, None) => (Ttl::Finite(Duration::from_millis(ms)), None),
            };
            addrs.push(AddrEntry { addr, ttl, expiry });
        }
        let record = self
            .record
            .map(|b| SignedEnvelope::from_protobuf_encoding(&b))
            .transpose()
            .map_err(|e| format!("signed record: {e}"))?;
        let public_key = self
            .public_key
            .map(|b| PublicKey::try_decode_protobuf(&b))
            .transpose()
            .map_err(|e| format!("public key: {e}"))?;
        let private_key = self
            .private_key
            .map(|b| Keypair::from_protobuf_encoding(&b))
            .transpose()
            .map_err(|e| format!("private key: {e}"))?;
        Ok(PeerState {
            addrs,
            record,
            public_key,
            private_key,
            protocols: self.protocols,
            latency: self.latency_ns.map(Duration::from_nanos),
            metadata: self.metadata,
        })
    }
}
