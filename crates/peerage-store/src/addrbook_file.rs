//! The address book file: the saved [`AddrBook`](peerage_core::addrbook::AddrBook), Bitcoin
//! Core's `peers.dat` and `anchors.dat` in one file.
//!
//! It holds a [`Snapshot`]: the book's secret bucketing key, the geometry and grouping its
//! positions were computed with, every address with its place (new buckets or tried), its peer
//! ID hint, its source's group and its ages, and the anchors, the outbound peers held longest,
//! to redial first at start. Times are ages in seconds at the moment the snapshot was taken, so
//! the file means the same after a reboot. [`AddrBook::restore`] rebuilds the book from it,
//! keeping the positions when the geometry and grouping still match and placing every address
//! anew otherwise.
//!
//! The file is the snapshot as one JSON object, with [`Snapshot`]'s field names; a multiaddr is
//! written as its string and a peer ID in base58:
//!
//! ```json
//! { "version": 1,
//!   "key": [1, 2],
//!   "new_buckets": 1024, "tried_buckets": 256, "bucket_size": 64,
//!   "asmap": null, "loopback_as_public": false,
//!   "entries": [ { "addr": "/ip4/1.2.3.4/tcp/4001", "source": { "Ipv4": [5, 6] },
//!                  "heard_ago": 10, "attempts": 0, "new_buckets": [417], "tried": false } ],
//!   "anchors": [ "/ip4/7.8.9.10/tcp/4001/p2p/12D3KooW..." ] }
//! ```
//!
//! - **Versioned**: `version` must be [`snapshot::VERSION`]; a file of another version is
//!   refused with [`Error::Version`] (read before the rest, so a later format's other changes do
//!   not hide it behind a parse error). Unknown fields are ignored.
//! - **Atomic saves**: [`AddrBookFile::save`] writes a temporary file in the same directory,
//!   fsyncs it, renames it over the file and fsyncs the directory. After a crash the file is the
//!   old one or the new one, whole, never a mix (Bitcoin Core's `DumpPeerAddresses` writes a
//!   temporary `peers.<random>` and renames it the same way). When to save is the caller's
//!   choice; this module only loads and saves.
//! - **A corrupt file is set aside**, not overwritten: [`AddrBookFile::load_or_set_aside`]
//!   renames a file that is not valid JSON of the right shape, too large, or of another version
//!   to `addrbook.json.corrupt-<unix seconds>` (bytes kept) and returns no snapshot, so that the
//!   caller starts with an empty book and its next save does not destroy the file. Bitcoin Core
//!   renames a `peers.dat` of an incompatible version to `peers.dat.bak` likewise, but refuses
//!   to start on a corrupt one until the user moves it away. [`AddrBookFile::load`] never
//!   modifies the file.
//! - **Bounds**: at most [`MAX_FILE_BYTES`] bytes, checked before reading. The benchmark's full
//!   book (77,371 addresses of random IPv4 space, no peer IDs) is 9.9 MiB as written here;
//!   peer IDs add about 60 bytes an address. The entries and anchors themselves are checked by
//!   [`AddrBook::restore`] and the node, not here: restore drops what does not fit.
//!
//! [`AddrBook::restore`]: peerage_core::addrbook::AddrBook::restore

use std::{
    io,
    path::{Path, PathBuf},
    time::SystemTime,
};

use peerage_core::addrbook::{Snapshot, snapshot};
use serde::Deserialize;

use crate::atomic;

/// The file name of the address book file in a data directory.
pub const FILE_NAME: &str = "addrbook.json";

/// The largest address book file loaded or saved, in bytes (64 MiB).
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Errors loading, saving or setting aside an address book file. Each names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading, writing, renaming or syncing failed (or the snapshot could not be encoded, with
    /// kind `InvalidData`).
    #[error("address book file {}", path.display())]
    Io {
        /// The address book file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file is not a valid address book file: not JSON, or a field missing or of the wrong
    /// type or value.
    #[error(
        "address book file {} is corrupt at line {line}, column {column}: {reason}",
        path.display()
    )]
    Parse {
        /// The address book file.
        path: PathBuf,
        /// The line of the error, from 1.
        line: usize,
        /// The column of the error, from 1 (0 at the very start of a line).
        column: usize,
        /// What is wrong.
        reason: String,
    },
    /// The file is larger than [`MAX_FILE_BYTES`] (on load), or would be (on save).
    #[error(
        "address book file {} is too large: {bytes} bytes, at most {max}",
        path.display()
    )]
    TooLarge {
        /// The address book file.
        path: PathBuf,
        /// Its size in bytes; on save, the size reached when writing stopped (a lower bound).
        bytes: u64,
        /// [`MAX_FILE_BYTES`].
        max: u64,
    },
    /// The file (on load), or the snapshot (on save), has a version other than
    /// [`snapshot::VERSION`].
    #[error(
        "address book file {} has version {found}, but this build reads version {expected}",
        path.display()
    )]
    Version {
        /// The address book file.
        path: PathBuf,
        /// The version found.
        found: u32,
        /// [`snapshot::VERSION`].
        expected: u32,
    },
}

/// What [`AddrBookFile::load_or_set_aside`] found.
#[derive(Debug)]
pub struct Loaded {
    /// The snapshot loaded; `None` if the file was missing or set aside.
    pub snapshot: Option<Snapshot>,
    /// If the file was corrupt: why ([`Error::Parse`], [`Error::TooLarge`] or
    /// [`Error::Version`]), and where it was moved.
    pub set_aside: Option<(Error, PathBuf)>,
}

/// An address book file at a path. It holds no open file and no lock: saves are atomic, but the
/// caller saves from one place at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrBookFile {
    path: PathBuf,
}

impl AddrBookFile {
    /// The address book file at `path` (usually `<data-dir>/`[`FILE_NAME`]). Touches nothing on
    /// disk.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the snapshot in the file; `None` if the file does not exist. Never modifies the
    /// file.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the file exists but cannot be read, [`Error::TooLarge`] if it is larger
    /// than [`MAX_FILE_BYTES`] (checked before reading it), [`Error::Version`] if its `version`
    /// is not [`snapshot::VERSION`], [`Error::Parse`] if it is not a valid address book file.
    pub fn load(&self) -> Result<Option<Snapshot>, Error> {
        let Some(bytes) =
            atomic::read_bounded(&self.path, MAX_FILE_BYTES).map_err(|e| self.atomic(e))?
        else {
            return Ok(None);
        };
        // The version first, skipping the rest, so that a file of another version is reported
        // as such even if the rest of its format changed too.
        #[derive(Deserialize)]
        struct Versioned {
            version: u32,
        }
        let Versioned { version } = serde_json::from_slice(&bytes).map_err(|e| self.parse(&e))?;
        self.check_version(version)?;
        let snapshot: Snapshot = serde_json::from_slice(&bytes).map_err(|e| self.parse(&e))?;
        Ok(Some(snapshot))
    }

    /// Replaces the file with `snapshot`, atomically and durably, creating the parent directory
    /// if missing.
    ///
    /// The snapshot is written as compact JSON (the benchmark's full book is 9.9 MiB) to a
    /// temporary file `.addrbook.json.<random>.tmp` in the same directory, which is
    /// fsynced and renamed over the file; then the directory is
    /// fsynced (on Unix). Once this returns `Ok`, the new file survives a crash; if it fails or
    /// the process dies during it, the old file is still there, whole. A crash may leave the
    /// temporary file behind. The new file has the temporary file's mode, `0600` on Unix (it
    /// holds the book's secret key).
    ///
    /// # Errors
    ///
    /// [`Error::Version`] if `snapshot.version` is not [`snapshot::VERSION`] and
    /// [`Error::TooLarge`] if the JSON would be larger than [`MAX_FILE_BYTES`] (files that
    /// [`load`](Self::load) would refuse), [`Error::Io`] if writing fails. In every case the
    /// old file is unchanged.
    pub fn save(&self, snapshot: &Snapshot) -> Result<(), Error> {
        self.check_version(snapshot.version)?;
        atomic::write_json(&self.path, FILE_NAME, snapshot, MAX_FILE_BYTES, false)
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

    /// Loads the file as [`load`](Self::load); if it is corrupt, too large or of another
    /// version, sets it aside as [`set_aside`](Self::set_aside) and returns no snapshot, the
    /// error and the new path, so that the caller can report it, start with an empty book, and
    /// later saves do not overwrite it. (A file of another version, written by a later build, is
    /// kept that way for that build: renamed back, it loads there.)
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the file cannot be read or set aside: the caller should not start with an
    /// empty book then, as its next save would replace addresses it could not read.
    pub fn load_or_set_aside(&self, now: SystemTime) -> Result<Loaded, Error> {
        match self.load() {
            Ok(snapshot) => Ok(Loaded {
                snapshot,
                set_aside: None,
            }),
            Err(e @ (Error::Parse { .. } | Error::TooLarge { .. } | Error::Version { .. })) => {
                let moved = self.set_aside(now)?;
                Ok(Loaded {
                    snapshot: None,
                    set_aside: Some((e, moved)),
                })
            }
            Err(e) => Err(e),
        }
    }

    fn check_version(&self, found: u32) -> Result<(), Error> {
        if found == snapshot::VERSION {
            Ok(())
        } else {
            Err(Error::Version {
                path: self.path.clone(),
                found,
                expected: snapshot::VERSION,
            })
        }
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
            atomic::Error::TooLarge(bytes) => Error::TooLarge {
                path: self.path.clone(),
                bytes,
                max: MAX_FILE_BYTES,
            },
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
}

#[cfg(test)]
mod tests {
    use std::{
        fs::File,
        time::{Duration, Instant, UNIX_EPOCH},
    };

    use peerage_core::{
        Multiaddr, PeerId,
        addrbook::{AddrBook, Config, Grouping},
    };
    use rand::{SeedableRng, rngs::StdRng};

    use super::*;

    fn addr(a: u8, b: u8, c: u8, d: u8) -> Multiaddr {
        format!("/ip4/{a}.{b}.{c}.{d}/tcp/4001").parse().unwrap()
    }

    /// A snapshot of a book of a few addresses, some tried, one with a peer ID, and two anchors.
    fn sample() -> Snapshot {
        let now = Instant::now();
        let mut rng = StdRng::seed_from_u64(7);
        let mut book = AddrBook::new(Config::new(), Grouping::new(), [1, 2], now);
        let source = addr(9, 9, 9, 9);
        for i in 0..20u8 {
            let a = addr(1 + i % 5, i, 3, 4);
            let peer = (i == 0).then(PeerId::random);
            assert_eq!(book.add([(&a, peer)], &source, now, &mut rng), 1);
            if i % 4 == 0 {
                assert!(book.good(&a, now + Duration::from_secs(1)));
            }
        }
        book.attempt(&addr(2, 1, 3, 4), true, now + Duration::from_secs(2));
        let mut snap = book.snapshot(now + Duration::from_secs(30));
        for i in 0..2u8 {
            let anchor = format!("{}/p2p/{}", addr(7, 8, 9, i), PeerId::random());
            snap.anchors.push(anchor.parse().unwrap());
        }
        snap
    }

    fn file_in(dir: &Path) -> AddrBookFile {
        AddrBookFile::new(dir.join(FILE_NAME))
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_snapshot_round_trips_with_its_anchors() {
        let dir = tempfile::tempdir().unwrap();
        let file = file_in(&dir.path().join("data"));
        assert_eq!(file.path(), dir.path().join("data").join(FILE_NAME));
        let snap = sample();
        assert_eq!(snap.version, snapshot::VERSION);
        assert_eq!(snap.key, [1, 2]);
        assert_eq!(snap.entries.len(), 20);
        assert!(snap.entries.iter().any(|e| e.tried));
        assert!(snap.entries.iter().any(|e| !e.tried));
        assert!(snap.entries.iter().any(|e| e.peer.is_some()));
        assert!(snap.entries.iter().any(|e| e.attempts > 0));
        assert_eq!(snap.anchors.len(), 2);

        file.save(&snap).unwrap();
        assert_eq!(listing(&dir.path().join("data")), [FILE_NAME]);
        assert_eq!(file.load().unwrap(), Some(snap.clone()));

        // A second save replaces the first, leaving nothing else behind.
        let mut other = snap.clone();
        other.entries.truncate(3);
        other.anchors.clear();
        file.save(&other).unwrap();
        assert_eq!(listing(&dir.path().join("data")), [FILE_NAME]);
        let loaded = file.load_or_set_aside(SystemTime::now()).unwrap();
        assert!(loaded.set_aside.is_none());
        assert_eq!(loaded.snapshot, Some(other));

        // And it restores into a book of the same addresses.
        let (book, dropped) = AddrBook::restore(
            file.load().unwrap().unwrap(),
            Config::new(),
            Grouping::new(),
            Instant::now(),
        );
        assert_eq!((dropped, book.len()), (0, 3));
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = file_in(dir.path());
        file.save(&sample()).unwrap();
        let mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_missing_file_is_none_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        let file = file_in(&nested);
        assert_eq!(file.load().unwrap(), None);
        let loaded = file.load_or_set_aside(SystemTime::now()).unwrap();
        assert!(loaded.snapshot.is_none() && loaded.set_aside.is_none());
        assert!(!nested.exists(), "load created something");
    }

    #[test]
    fn a_truncated_file_is_reported_kept_by_load_and_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let file = file_in(dir.path());
        let snap = sample();
        file.save(&snap).unwrap();
        let full = std::fs::read(file.path()).unwrap();
        let bytes = full[..full.len() / 2].to_vec();
        std::fs::write(file.path(), &bytes).unwrap();

        let err = file.load().unwrap_err();
        let text = err.to_string();
        match &err {
            Error::Parse { path, reason, .. } => {
                assert_eq!(path, file.path());
                assert!(reason.contains("EOF"), "{text}");
                assert!(!reason.contains("at line"), "{text}");
            }
            _ => panic!("{text}"),
        }
        assert!(
            text.starts_with(&format!(
                "address book file {} is corrupt at line ",
                file.path().display()
            )),
            "{text}"
        );
        // `load` left it as it was.
        assert_eq!(std::fs::read(file.path()).unwrap(), bytes);
        assert_eq!(listing(dir.path()), [FILE_NAME]);

        let now = UNIX_EPOCH + Duration::from_secs(1_795_255_200);
        let loaded = file.load_or_set_aside(now).unwrap();
        assert!(loaded.snapshot.is_none());
        let (err, moved) = loaded.set_aside.expect("set aside");
        assert!(matches!(err, Error::Parse { .. }), "{err}");
        assert_eq!(moved, dir.path().join("addrbook.json.corrupt-1795255200"));
        assert_eq!(std::fs::read(&moved).unwrap(), bytes);
        assert!(!file.path().exists());
        assert_eq!(file.load().unwrap(), None);

        // A save after it works, and keeps the corrupt file.
        file.save(&snap).unwrap();
        assert_eq!(file.load().unwrap(), Some(snap));
        assert_eq!(
            listing(dir.path()),
            [FILE_NAME, "addrbook.json.corrupt-1795255200"]
        );

        // Corrupt again at the same second: a new name, the first one kept.
        std::fs::write(file.path(), "{").unwrap();
        let (_, moved2) = file.load_or_set_aside(now).unwrap().set_aside.unwrap();
        assert_eq!(
            moved2,
            dir.path().join("addrbook.json.corrupt-1795255200-1")
        );
        assert_eq!(std::fs::read(&moved).unwrap(), bytes);
    }

    #[test]
    fn a_wrong_field_is_a_parse_error_at_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = file_in(dir.path());
        file.save(&sample()).unwrap();
        let text = std::fs::read_to_string(file.path()).unwrap();
        // Compact JSON: one line; put the bad field on a line of its own.
        let text = text.replacen("\"tried\":true", "\n\"tried\": \"yes\"", 1);
        std::fs::write(file.path(), &text).unwrap();
        match file.load().unwrap_err() {
            Error::Parse { line, reason, .. } => {
                let want = text.lines().position(|l| l.contains("\"yes\"")).unwrap() + 1;
                assert_eq!(line, want);
                assert!(reason.contains("expected a boolean"), "{reason}");
            }
            e => panic!("{e}"),
        }
        // Without a version at all.
        std::fs::write(file.path(), "{\"key\": [1, 2]}").unwrap();
        match file.load().unwrap_err() {
            Error::Parse { reason, .. } => assert!(reason.contains("`version`"), "{reason}"),
            e => panic!("{e}"),
        }
    }

    #[test]
    fn another_version_is_refused_on_load_and_save() {
        let dir = tempfile::tempdir().unwrap();
        let file = file_in(dir.path());
        let mut snap = sample();
        snap.version = snapshot::VERSION + 1;
        let err = file.save(&snap).unwrap_err();
        assert!(
            matches!(&err, Error::Version { path, found, expected }
                if path == file.path() && *found == snapshot::VERSION + 1
                    && *expected == snapshot::VERSION),
            "{err}"
        );
        assert!(!file.path().exists());

        // A later version's file, whose format also changed: still a version error.
        let later = format!(
            "{{\"version\": {}, \"key\": \"a new shape\", \"entries\": {{}}}}",
            snapshot::VERSION + 1
        );
        std::fs::write(file.path(), &later).unwrap();
        let err = file.load().unwrap_err();
        assert!(
            matches!(&err, Error::Version { path, found, expected }
                if path == file.path() && *found == snapshot::VERSION + 1
                    && *expected == snapshot::VERSION),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "address book file {} has version {}, but this build reads version {}",
                file.path().display(),
                snapshot::VERSION + 1,
                snapshot::VERSION
            )
        );
        assert_eq!(std::fs::read_to_string(file.path()).unwrap(), later);

        let loaded = file.load_or_set_aside(UNIX_EPOCH).unwrap();
        assert!(loaded.snapshot.is_none());
        let (err, moved) = loaded.set_aside.unwrap();
        assert!(matches!(err, Error::Version { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(moved).unwrap(), later);
    }

    #[test]
    fn an_oversized_file_is_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let file = file_in(dir.path());
        // Sparse (no data blocks), and four times the bound: had it been read, reading would
        // have stopped at `MAX_FILE_BYTES + 1` bytes and reported that size. The whole size
        // in the error shows that it came from the metadata, before any reading.
        let size = 4 * MAX_FILE_BYTES;
        File::create(file.path()).unwrap().set_len(size).unwrap();
        let err = file.load().unwrap_err();
        match &err {
            Error::TooLarge { path, bytes, max } => {
                assert_eq!(path, file.path());
                assert_eq!((*bytes, *max), (size, MAX_FILE_BYTES));
            }
            _ => panic!("{err}"),
        }
        assert_eq!(
            err.to_string(),
            format!(
                "address book file {} is too large: {size} bytes, at most {MAX_FILE_BYTES}",
                file.path().display()
            )
        );
        assert_eq!(std::fs::metadata(file.path()).unwrap().len(), size);
        let loaded = file.load_or_set_aside(UNIX_EPOCH).unwrap();
        assert!(loaded.snapshot.is_none());
        let (err, moved) = loaded.set_aside.unwrap();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
        assert_eq!(std::fs::metadata(moved).unwrap().len(), size);
        // And a snapshot whose JSON would exceed the bound is refused on save, nothing written.
        let mut big = sample();
        let entry = big.entries[0].clone();
        big.entries = vec![entry; 400_000];
        let err = file.save(&big).unwrap_err();
        assert!(
            matches!(err, Error::TooLarge { bytes, .. } if bytes > MAX_FILE_BYTES),
            "{err}"
        );
        assert!(!file.path().exists());
        assert_eq!(listing(dir.path()).len(), 1, "only the file set aside");
    }

    #[test]
    fn io_errors_are_not_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let file = file_in(dir.path());
        // A directory where the file should be: not readable, and not corrupt data.
        std::fs::create_dir(file.path()).unwrap();
        let err = file.load_or_set_aside(SystemTime::now()).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
        assert!(err.to_string().contains(&file.path().display().to_string()));
        assert!(file.path().is_dir());
        let err = file.save(&sample()).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
        assert_eq!(listing(dir.path()), [FILE_NAME]);
    }
}
