//! The file handling shared by the JSON files of this crate ([`peers_file`](crate::peers_file),
//! [`addrbook_file`](crate::addrbook_file)): a bounded read of a whole file, an atomic and
//! durable save, and the renaming aside of a corrupt file.
//!
//! Each error here is bare (no path): the caller wraps it in its own error type, which names
//! its file.

use std::{
    ffi::OsStr,
    fs::File,
    io::{self, BufWriter, Read, Write},
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

/// Why a bounded read or write failed.
#[derive(Debug)]
pub(crate) enum Error {
    /// Reading, writing, renaming or syncing failed (or the value could not be encoded, with
    /// kind `InvalidData`).
    Io(io::Error),
    /// The file is larger than the bound (on read), or would be (on write): its size, or, on
    /// write, the size reached when writing stopped (a lower bound).
    TooLarge(u64),
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// The directory of `path`: its parent, or `.` for a bare file name.
pub(crate) fn dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// The bytes of the file at `path`, or `None` if it does not exist. A file larger than `max`
/// bytes is refused from its metadata, before any of it is read, and again while reading, in
/// case it grows meanwhile. Never modifies the file.
pub(crate) fn read_bounded(path: &Path, max: u64) -> Result<Option<Vec<u8>>, Error> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::Io(e)),
    };
    let len = file.metadata()?.len();
    if len > max {
        return Err(Error::TooLarge(len));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    (&mut file)
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(Error::TooLarge(bytes.len() as u64));
    }
    Ok(Some(bytes))
}

/// Replaces the file at `path` with `value` as JSON (`pretty` for a file people read, compact
/// for a large one) and a final newline, atomically and
/// durably, creating the parent directory if missing; refuses to write more than `max` bytes.
///
/// The JSON goes to a temporary file `.<name>.<random>.tmp` in the same directory (`name` is
/// the file name of `path`, or `fallback_name` if it has none), which is fsynced and renamed
/// over `path`; then the directory is fsynced (on Unix). Once this returns `Ok`, the new file
/// survives a crash; if it fails or the process dies during it, the old file is still there,
/// whole. A crash may leave the temporary file behind; on an error, it is removed. The new file
/// has the temporary file's mode, `0600` on Unix.
pub(crate) fn write_json<T: Serialize + ?Sized>(
    path: &Path,
    fallback_name: &str,
    value: &T,
    max: u64,
    pretty: bool,
) -> Result<(), Error> {
    write_json_via(path, fallback_name, value, max, pretty, |file| {
        Box::new(file)
    })
}

/// As [`write_json`], with the temporary file written through `through` (a test's writer that
/// fails as a full disk does).
fn write_json_via<T: Serialize + ?Sized>(
    path: &Path,
    fallback_name: &str,
    value: &T,
    max: u64,
    pretty: bool,
    through: impl for<'f> FnOnce(&'f mut File) -> Box<dyn Write + 'f>,
) -> Result<(), Error> {
    let dir = dir(path);
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().unwrap_or(fallback_name.as_ref());
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    // Removed on drop, so on every error below.
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .tempfile_in(dir)?;
    let mut out = BufWriter::new(Bounded {
        inner: through(tmp.as_file_mut()),
        written: 0,
        max,
    });
    let written = if pretty {
        serde_json::to_writer_pretty(&mut out, value)
    } else {
        serde_json::to_writer(&mut out, value)
    };
    let written = written
        .map_err(io::Error::from)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if let Err(e) = written {
        let bytes = out.get_ref().written;
        return Err(if bytes > max {
            Error::TooLarge(bytes)
        } else {
            Error::Io(e)
        });
    }
    drop(out);
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)?;
    Ok(())
}

/// Renames the file at `path` to `<name>.corrupt-<unix seconds of now>` in the same directory,
/// or, if that name is taken, `<name>.corrupt-<secs>-1`, `-2`... (`name` is the file name of
/// `path`, or `fallback_name` if it has none), and fsyncs the directory. Its bytes are kept as
/// they are. Returns the new path.
pub(crate) fn set_aside(path: &Path, fallback_name: &str, now: SystemTime) -> io::Result<PathBuf> {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let name: &OsStr = path.file_name().unwrap_or(fallback_name.as_ref());
    let dir = dir(path);
    let mut n = 0u64;
    let target = loop {
        let mut candidate = name.to_owned();
        candidate.push(format!(".corrupt-{secs}"));
        if n > 0 {
            candidate.push(format!("-{n}"));
        }
        let candidate = dir.join(candidate);
        match std::fs::symlink_metadata(&candidate) {
            Ok(_) => n += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => break candidate,
            Err(e) => return Err(e),
        }
    };
    std::fs::rename(path, &target)?;
    sync_dir(dir)?;
    Ok(target)
}

/// Makes a rename in `dir` durable. Directories cannot be opened as files on Windows, where
/// this does nothing.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// The line, column (from 1) and reason of a JSON error, the reason without serde_json's
/// trailing ` at line L column C`.
pub(crate) fn parse_error_parts(e: &serde_json::Error) -> (usize, usize, String) {
    let (line, column) = (e.line(), e.column());
    let full = e.to_string();
    let suffix = format!(" at line {line} column {column}");
    let reason = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
    (line, column, reason)
}

/// A writer that fails rather than write more than `max` bytes in all; `written` counts what
/// it was asked to write, so it exceeds `max` once it failed for that reason.
struct Bounded<W> {
    inner: W,
    written: u64,
    max: u64,
}

impl<W: Write> Write for Bounded<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written = self.written.saturating_add(buf.len() as u64);
        if self.written > self.max {
            return Err(io::Error::other("the file would be too large"));
        }
        let n = self.inner.write(buf)?;
        // Count what was written, not what was asked for.
        self.written -= (buf.len() - n) as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `left` bytes, then fails as a full disk does.
    struct FullAfter<'f> {
        file: &'f mut File,
        left: usize,
    }

    impl Write for FullAfter<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "no space left"));
            }
            let n = buf.len().min(self.left);
            self.left -= n;
            self.file.write(&buf[..n])
        }
        fn flush(&mut self) -> io::Result<()> {
            self.file.flush()
        }
    }

    #[test]
    fn a_full_disk_during_a_save_keeps_the_previous_file_whole_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.json");
        let old: Vec<u32> = (0..100).collect();
        write_json(&path, "peers.json", &old, 1 << 20, true).unwrap();
        let before = std::fs::read(&path).unwrap();

        let new: Vec<u32> = (0..10_000).collect();
        let err = write_json_via(&path, "peers.json", &new, 1 << 20, true, |file| {
            Box::new(FullAfter { file, left: 4096 })
        })
        .unwrap_err();
        let Error::Io(e) = err else { panic!("{err:?}") };
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "the previous file, whole"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("peers.json")]);

        // Once there is room, the same save replaces it.
        write_json(&path, "peers.json", &new, 1 << 20, true).unwrap();
        let back: Vec<u32> = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back, new);
    }
}
