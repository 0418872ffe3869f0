//! The peers file, Octez's `peers.json`: the known peers, with their last connection points.
//!
//! The file is a JSON **list** of peer objects with Octez's field names
//! (`P2p_peer_state.Info.encoding`, spec `tezos_p2p.md` §10), except that a point is written as a
//! multiaddr string rather than Octez's `{"addr", "port"}` object, and a peer ID as its libp2p
//! base58 form. Times are RFC 3339 in UTC with millisecond precision:
//!
//! ```json
//! [ { "peer_id": "12D3KooW...",
//!     "created": "2026-11-21T10:00:00.000Z",
//!     "trusted": false,
//!     "score": 1.0,
//!     "peer_metadata": { "responses": 12 },
//!     "events": [ { "kind": "connection_established",
//!                   "timestamp": "2026-11-21T10:00:01.250Z",
//!                   "point": "/ip4/127.0.0.1/tcp/4001" } ],
//!     "last_failed_connection": [ "/ip4/127.0.0.1/tcp/4001", "2026-11-21T09:59:00.000Z" ],
//!     "last_established_connection": [ "/ip4/127.0.0.1/tcp/4001", "2026-11-21T10:00:01.250Z" ] } ]
//! ```
//!
//! `score`, an event's `point` and the four `last_*` pairs are absent when unknown; `trusted`
//! (default `false`), `peer_metadata` (default `{}`) and `events` (default `[]`) may be absent
//! on load. Unknown fields are ignored, for files written by a later version.
//!
//! - **Atomic saves**: [`PeersFile::save`] writes a temporary file in the same directory, fsyncs
//!   it, renames it over the peers file and fsyncs the directory. After a crash the file is the
//!   old one or the new one, whole, never a mix. This is Octez's write-then-rename
//!   (`P2p_pool.save_peers` writes `peers.json.tmp`, spec §10) with the fsyncs made explicit.
//! - **When to save is the caller's choice**. Octez saves only at shutdown (`P2p_pool.destroy`),
//!   so a crash loses every peer learnt since the start (tezos-k8s#561); Peerage saves
//!   periodically and at shutdown. This module only loads and saves.
//! - **A corrupt file is set aside**, not overwritten: [`PeersFile::load_or_set_aside`] renames it
//!   to `peers.json.corrupt-<unix seconds>` (bytes kept) and starts empty. Octez logs a
//!   `parse_error`, starts with an empty pool and overwrites the file at shutdown, losing it.
//! - **Bounds**: at most [`MAX_FILE_BYTES`] bytes, [`MAX_PEERS`] peers, and [`MAX_EVENTS`]
//!   events per peer (Octez's `log_size`). A file beyond them is refused on load; a save
//!   truncates the events and refuses the rest.

use std::{
    borrow::Cow,
    collections::BTreeMap,
    io,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use libp2p_identity::PeerId;
use multiaddr::Multiaddr;
use serde::{Deserialize, Serialize};

use crate::atomic;

/// The file name of the peers file in a data directory, as Octez
/// (`Data_version.default_peers_file_name`).
pub const FILE_NAME: &str = "peers.json";

/// The most events kept per peer, as Octez's `log_size` (a ring of the last 100 events).
pub const MAX_EVENTS: usize = 100;

/// The largest peers file loaded or saved, in bytes (64 MiB).
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The most peers in a peers file.
pub const MAX_PEERS: usize = 100_000;

/// A peer, as saved in the peers file (Octez's `P2p_peer_state.Info`, without the live state).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The peer, written in base58 (`12D3KooW...`).
    #[serde(with = "peer_id_str")]
    pub peer_id: PeerId,
    /// When the peer was first known.
    #[serde(with = "rfc3339")]
    pub created: SystemTime,
    /// Whether the peer is trusted (Octez: loaded peers are trusted only if this says so).
    #[serde(default)]
    pub trusted: bool,
    /// The peer's score, if any (not in Octez's file). NaN and infinities are written as `null`
    /// and so load as `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// Application metadata, a free JSON object (Octez's node keeps message counters here).
    #[serde(default)]
    pub peer_metadata: BTreeMap<String, serde_json::Value>,
    /// The last events of the peer, oldest first; at most [`MAX_EVENTS`].
    #[serde(default)]
    pub events: Vec<Event>,
    /// The point and time of the last failed dial.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_point_time"
    )]
    pub last_failed_connection: Option<(Multiaddr, SystemTime)>,
    /// The point and time of the last connection rejected (by either side).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_point_time"
    )]
    pub last_rejected_connection: Option<(Multiaddr, SystemTime)>,
    /// The point and time of the last connection established.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_point_time"
    )]
    pub last_established_connection: Option<(Multiaddr, SystemTime)>,
    /// The point and time of the last disconnection.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_point_time"
    )]
    pub last_disconnection: Option<(Multiaddr, SystemTime)>,
}

impl Entry {
    /// An untrusted peer created at `created`, with no score, metadata, events or connections.
    pub fn new(peer_id: PeerId, created: SystemTime) -> Self {
        Self {
            peer_id,
            created,
            trusted: false,
            score: None,
            peer_metadata: BTreeMap::new(),
            events: Vec::new(),
            last_failed_connection: None,
            last_rejected_connection: None,
            last_established_connection: None,
            last_disconnection: None,
        }
    }
}

/// One event in a peer's history (Octez's `P2p_peer.Pool_event`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// When it happened.
    #[serde(with = "rfc3339")]
    pub timestamp: SystemTime,
    /// The point involved, if known.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_multiaddr"
    )]
    pub point: Option<Multiaddr>,
    /// Why the connection closed, for a disconnection (`"trim"`, `"remote"`...; see
    /// [`CloseReason`](peerage_core::pool::CloseReason)). Absent in Octez's files and in ours
    /// before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<peerage_core::pool::CloseReason>,
}

/// The kind of an [`Event`]: the pool's [`LogKind`](peerage_core::pool::LogKind), Octez's
/// `Pool_event.kind`, written in snake case (`"connection_established"`).
///
/// Octez's *point* events write `"rejecting_request"` for `Connection_established`,
/// `Disconnection` and `External_disconnection` (a copy-paste bug in `lib_base/p2p_point.ml`,
/// spec §11); its peer events, and this type, write each kind under its own name.
pub use peerage_core::pool::LogKind as EventKind;

/// Errors loading, saving or setting aside a peers file. Each names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading, writing, renaming or syncing failed (or an entry could not be encoded: a time
    /// before 1970 or after 9999, with kind `InvalidData`).
    #[error("peers file {}", path.display())]
    Io {
        /// The peers file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file is not a valid peers file: not JSON, or a field of the wrong type or value.
    #[error(
        "peers file {} is corrupt at line {line}, column {column}: {reason}",
        path.display()
    )]
    Parse {
        /// The peers file.
        path: PathBuf,
        /// The line of the error, from 1.
        line: usize,
        /// The column of the error, from 1 (0 at the very start of a line).
        column: usize,
        /// What is wrong.
        reason: String,
    },
    /// The file is larger than [`MAX_FILE_BYTES`] (on load), or would be (on save).
    #[error("peers file {} is too large: {bytes} bytes, at most {max}", path.display())]
    TooLarge {
        /// The peers file.
        path: PathBuf,
        /// Its size in bytes; on save, the size reached when writing stopped (a lower bound).
        bytes: u64,
        /// [`MAX_FILE_BYTES`].
        max: u64,
    },
    /// The file has more than [`MAX_PEERS`] peers, or a peer has more than [`MAX_EVENTS`] events.
    #[error("peers file {} has too many {what}: {count}, at most {max}", path.display())]
    TooMany {
        /// The peers file.
        path: PathBuf,
        /// What there are too many of: `peers`, or `events of peer 12D3KooW...`.
        what: String,
        /// How many there are.
        count: usize,
        /// The bound.
        max: usize,
    },
}

/// What [`PeersFile::load_or_set_aside`] found.
#[derive(Debug)]
pub struct Loaded {
    /// The peers loaded; empty if the file was missing or set aside.
    pub entries: Vec<Entry>,
    /// If the file was corrupt: why ([`Error::Parse`], [`Error::TooLarge`] or
    /// [`Error::TooMany`]), and where it was moved.
    pub set_aside: Option<(Error, PathBuf)>,
}

/// A peers file at a path. It holds no open file and no lock: saves are atomic, but the caller
/// saves from one place at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeersFile {
    path: PathBuf,
}

impl PeersFile {
    /// The peers file at `path` (usually `<data-dir>/`[`FILE_NAME`]). Touches nothing on disk.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the peers in the file; a missing file is an empty list. Duplicate peer IDs are
    /// returned as they are. Never modifies the file.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the file exists but cannot be read, [`Error::TooLarge`] if it is larger
    /// than [`MAX_FILE_BYTES`] (checked before reading it), [`Error::Parse`] if it is not a valid
    /// peers file, [`Error::TooMany`] if it has more than [`MAX_PEERS`] peers or a peer has more
    /// than [`MAX_EVENTS`] events.
    pub fn load(&self) -> Result<Vec<Entry>, Error> {
        let Some(bytes) =
            atomic::read_bounded(&self.path, MAX_FILE_BYTES).map_err(|e| self.atomic(e))?
        else {
            return Ok(Vec::new());
        };
        self.decode(&bytes)
    }

    /// Reads the peers in `bytes`, the contents of this file, as [`load`](Self::load) does
    /// once it has read them (errors name this file's path).
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`], [`Error::Parse`] and [`Error::TooMany`], as [`load`](Self::load).
    pub fn decode(&self, bytes: &[u8]) -> Result<Vec<Entry>, Error> {
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(self.too_large(bytes.len() as u64));
        }
        let entries: Vec<Entry> = serde_json::from_slice(bytes).map_err(|e| self.parse(&e))?;
        self.check_bounds(&entries)?;
        Ok(entries)
    }

    /// Replaces the file with `entries`, atomically and durably, creating the parent directory
    /// if missing. Of a peer's events, only the last [`MAX_EVENTS`] are written.
    ///
    /// The entries are written as pretty JSON to a temporary file `.peers.json.<random>.tmp` in
    /// the same directory, which is fsynced and renamed over the file; then the directory is
    /// fsynced (on Unix). Once this returns `Ok`, the new file survives a crash; if it fails or
    /// the process dies during it, the old file is still there, whole. A crash may leave the
    /// temporary file behind. The new file has the temporary file's mode, `0600` on Unix.
    ///
    /// # Errors
    ///
    /// [`Error::TooMany`] if there are more than [`MAX_PEERS`] entries and [`Error::TooLarge`]
    /// if the JSON would be larger than [`MAX_FILE_BYTES`] (a file that [`load`](Self::load)
    /// would refuse), [`Error::Io`] if writing fails. In every case the old file is unchanged.
    pub fn save(&self, entries: &[Entry]) -> Result<(), Error> {
        if entries.len() > MAX_PEERS {
            return Err(self.too_many("peers".to_owned(), entries.len(), MAX_PEERS));
        }
        let entries: Vec<Cow<'_, Entry>> = entries
            .iter()
            .map(|e| {
                if e.events.len() > MAX_EVENTS {
                    let mut e = e.clone();
                    e.events.drain(..e.events.len() - MAX_EVENTS);
                    Cow::Owned(e)
                } else {
                    Cow::Borrowed(e)
                }
            })
            .collect();
        atomic::write_json(&self.path, FILE_NAME, &entries, MAX_FILE_BYTES, true)
            .map_err(|e| self.atomic(e))
    }

    /// Renames the file to `<name>.corrupt-<unix seconds of now>` in the same directory, or, if
    /// that name is taken, `<name>.corrupt-<secs>-1`, `-2`... Its bytes are kept as they are.
    /// Returns the new path.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the file cannot be renamed (for example, it does not exist).
    pub fn set_aside(&self, now: SystemTime) -> Result<PathBuf, Error> {
        atomic::set_aside(&self.path, FILE_NAME, now).map_err(|e| self.io(e))
    }

    /// Loads the file as [`load`](Self::load); if it is corrupt, sets it aside as
    /// [`set_aside`](Self::set_aside) and returns no entries, the error and the new path, so that
    /// the caller can report it and later saves do not overwrite it.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the file cannot be read or set aside: the caller should not start with an
    /// empty list then, as its next save would replace peers it could not read.
    pub fn load_or_set_aside(&self, now: SystemTime) -> Result<Loaded, Error> {
        match self.load() {
            Ok(entries) => Ok(Loaded {
                entries,
                set_aside: None,
            }),
            Err(e @ (Error::Parse { .. } | Error::TooLarge { .. } | Error::TooMany { .. })) => {
                let moved = self.set_aside(now)?;
                Ok(Loaded {
                    entries: Vec::new(),
                    set_aside: Some((e, moved)),
                })
            }
            Err(e) => Err(e),
        }
    }

    fn check_bounds(&self, entries: &[Entry]) -> Result<(), Error> {
        if entries.len() > MAX_PEERS {
            return Err(self.too_many("peers".to_owned(), entries.len(), MAX_PEERS));
        }
        if let Some(e) = entries.iter().find(|e| e.events.len() > MAX_EVENTS) {
            return Err(self.too_many(
                format!("events of peer {}", e.peer_id),
                e.events.len(),
                MAX_EVENTS,
            ));
        }
        Ok(())
    }

    fn io(&self, source: io::Error) -> Error {
        Error::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn atomic(&self, e: atomic::Error) -> Error {
        match e {
            atomic::Error::Io(e) => self.io(e),
            atomic::Error::TooLarge(bytes) => self.too_large(bytes),
        }
    }

    fn parse(&self, e: &serde_json::Error) -> Error {
        let (line, column, reason) = atomic::parse_error_parts(e);
        Error::Parse {
            path: self.path.clone(),
            line,
            column,
            reason,
        }
    }

    fn too_large(&self, bytes: u64) -> Error {
        Error::TooLarge {
            path: self.path.clone(),
            bytes,
            max: MAX_FILE_BYTES,
        }
    }

    fn too_many(&self, what: String, count: usize, max: usize) -> Error {
        Error::TooMany {
            path: self.path.clone(),
            what,
            count,
            max,
        }
    }
}

/// The first second after the last one RFC 3339 (four-digit years) can write.
const RFC3339_END: Duration = Duration::from_secs(253_402_300_800);

/// A `SystemTime` as an RFC 3339 UTC string with milliseconds (`2026-11-21T10:00:00.000Z`).
mod rfc3339 {
    use std::time::{SystemTime, UNIX_EPOCH};

    use serde::{Deserialize, Deserializer, Serializer, de::Error as _, ser::Error as _};

    pub(super) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        // `humantime` panics before 1970 and fails after 9999.
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) if d < super::RFC3339_END => s.collect_str(&humantime::format_rfc3339_millis(*t)),
            _ => Err(S::Error::custom(format_args!(
                "time {t:?} is not between 1970 and 9999"
            ))),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_rfc3339_weak(&s)
            .map_err(|e| D::Error::custom(format_args!("invalid time {s:?}: {e}")))
    }

    /// A borrowed time, serialized as above.
    pub(super) struct Ref<'a>(pub(super) &'a SystemTime);

    impl serde::Serialize for Ref<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            serialize(self.0, s)
        }
    }
}

/// A `PeerId` as its base58 string.
mod peer_id_str {
    use libp2p_identity::PeerId;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(super) fn serialize<S: Serializer>(p: &PeerId, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(p)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PeerId, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|e| D::Error::custom(format_args!("invalid peer id {s:?}: {e}")))
    }
}

/// A `Multiaddr` as its string form (`/ip4/127.0.0.1/tcp/4001`).
mod multiaddr_str {
    use multiaddr::Multiaddr;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(super) fn serialize<S: Serializer>(a: &Multiaddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(a)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Multiaddr, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|e| D::Error::custom(format_args!("invalid multiaddr {s:?}: {e}")))
    }

    /// A borrowed multiaddr, serialized as above.
    pub(super) struct Ref<'a>(pub(super) &'a Multiaddr);

    impl serde::Serialize for Ref<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            serialize(self.0, s)
        }
    }
}

/// An optional `Multiaddr` as its string form, or `null`.
mod opt_multiaddr {
    use multiaddr::Multiaddr;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(a: &Option<Multiaddr>, s: S) -> Result<S::Ok, S::Error> {
        match a {
            Some(a) => s.serialize_some(&super::multiaddr_str::Ref(a)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Multiaddr>, D::Error> {
        #[derive(Deserialize)]
        #[serde(transparent)]
        struct Addr(#[serde(with = "super::multiaddr_str")] Multiaddr);
        Ok(Option::<Addr>::deserialize(d)?.map(|Addr(a)| a))
    }
}

/// An optional point and time as a two-element array `["<multiaddr>", "<time>"]`, or `null`.
mod opt_point_time {
    use std::time::SystemTime;

    use multiaddr::Multiaddr;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(
        v: &Option<(Multiaddr, SystemTime)>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some((a, t)) => (super::multiaddr_str::Ref(a), super::rfc3339::Ref(t)).serialize(s),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<(Multiaddr, SystemTime)>, D::Error> {
        #[derive(Deserialize)]
        struct Pair(
            #[serde(with = "super::multiaddr_str")] Multiaddr,
            #[serde(with = "super::rfc3339")] SystemTime,
        );
        Ok(Option::<Pair>::deserialize(d)?.map(|Pair(a, t)| (a, t)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    #[test]
    fn times_outside_rfc3339_are_an_encoding_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let file = PeersFile::new(dir.path().join(FILE_NAME));
        let peer = PeerId::random();
        for t in [
            UNIX_EPOCH - Duration::from_secs(1),
            UNIX_EPOCH + RFC3339_END,
        ] {
            let err = file.save(&[Entry::new(peer, t)]).unwrap_err();
            match &err {
                Error::Io { source, .. } => {
                    assert_eq!(source.kind(), io::ErrorKind::InvalidData, "{err}")
                }
                _ => panic!("{err}"),
            }
            assert!(!file.path().exists());
        }
        let last = UNIX_EPOCH + RFC3339_END - Duration::from_millis(1);
        file.save(&[Entry::new(peer, last)]).unwrap();
        assert_eq!(file.load().unwrap(), vec![Entry::new(peer, last)]);
    }

    #[test]
    fn parse_reason_has_no_duplicated_position() {
        let dir = tempfile::tempdir().unwrap();
        let file = PeersFile::new(dir.path().join(FILE_NAME));
        std::fs::write(file.path(), "[\n  {\"peer_id\": 3}\n]").unwrap();
        match file.load().unwrap_err() {
            Error::Parse {
                line,
                column,
                reason,
                ..
            } => {
                assert_eq!(line, 2);
                assert!(column > 0);
                assert!(!reason.contains("at line"), "{reason}");
                assert!(reason.contains("invalid type"), "{reason}");
            }
            e => panic!("{e}"),
        }
    }
}
