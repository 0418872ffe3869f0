//! The node's identity key file.
//!
//! The file holds the keypair in libp2p's protobuf encoding (`Keypair::to_protobuf_encoding`,
//! the same bytes as go-libp2p's `crypto.MarshalPrivateKey`), readable by its owner only.

use std::{
    io::{self, Write},
    path::{Path, PathBuf},
};

use libp2p_identity::Keypair;

/// The file name of the identity key in a data directory.
pub const FILE_NAME: &str = "identity.key";

/// Errors loading or creating an identity key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key file exists but could not be read.
    #[error("cannot read identity key {}", path.display())]
    Read {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The key file exists but does not hold a valid key. It is left as it is.
    #[error("corrupt identity key {}: {reason}", path.display())]
    Corrupt {
        /// The key file.
        path: PathBuf,
        /// Why the content is invalid.
        reason: String,
    },
    /// The key file could not be written (or its directory created).
    #[error("cannot write identity key {}", path.display())]
    Write {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

/// Whether [`load_or_create`] found a key or made one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The key was read from the file.
    Loaded,
    /// No file existed; a new Ed25519 key was generated and written.
    Created,
}

/// Loads the keypair in `path`, or, if there is no file there, generates an Ed25519 keypair and
/// writes it (creating the parent directories, mode `0600` on Unix).
///
/// # Errors
///
/// [`Error::Read`] if the file exists but cannot be read, [`Error::Corrupt`] if it does not hold a
/// key (the file is not touched), [`Error::Write`] if a new key cannot be written.
pub fn load_or_create(path: &Path) -> Result<(Keypair, Origin), Error> {
    match std::fs::read(path) {
        Ok(bytes) => decode(path, &bytes).map(|k| (k, Origin::Loaded)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let keypair = Keypair::generate_ed25519();
            match write_new(path, &keypair) {
                Ok(()) => Ok((keypair, Origin::Created)),
                // Another process created it first: use theirs.
                Err(Error::Write { source, .. })
                    if source.kind() == io::ErrorKind::AlreadyExists =>
                {
                    load(path).map(|k| (k, Origin::Loaded))
                }
                Err(e) => Err(e),
            }
        }
        Err(source) => Err(Error::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Loads the keypair in `path`.
///
/// # Errors
///
/// [`Error::Read`] if the file cannot be read, [`Error::Corrupt`] if it does not hold a key.
pub fn load(path: &Path) -> Result<Keypair, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    decode(path, &bytes)
}

fn decode(path: &Path, bytes: &[u8]) -> Result<Keypair, Error> {
    Keypair::from_protobuf_encoding(bytes).map_err(|e| Error::Corrupt {
        path: path.to_owned(),
        reason: if bytes.is_empty() {
            "the file is empty".to_owned()
        } else {
            e.to_string()
        },
    })
}

/// Writes `keypair` to `path` atomically; fails with `AlreadyExists` rather than replace a file.
fn write_new(path: &Path, keypair: &Keypair) -> Result<(), Error> {
    let err = |source| Error::Write {
        path: path.to_owned(),
        source,
    };
    let bytes = keypair
        .to_protobuf_encoding()
        .map_err(|e| err(io::Error::other(e)))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    // `NamedTempFile` is created with mode 0600 on Unix.
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
    tmp.write_all(&bytes).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist_noclobber(path).map_err(|e| err(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir").join(FILE_NAME);
        let (k1, o1) = load_or_create(&path).unwrap();
        assert_eq!(o1, Origin::Created);
        let (k2, o2) = load_or_create(&path).unwrap();
        assert_eq!(o2, Origin::Loaded);
        assert_eq!(k1.public().to_peer_id(), k2.public().to_peer_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn corrupt_key_is_reported_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        for content in [&b""[..], b"not a key at all"] {
            std::fs::write(&path, content).unwrap();
            let err = load_or_create(&path).unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "{err}");
            assert!(
                err.to_string().starts_with("corrupt identity key "),
                "{err}"
            );
            assert!(err.to_string().contains(&path.display().to_string()));
            assert_eq!(std::fs::read(&path).unwrap(), content);
        }
    }

    #[test]
    fn unwritable_location_is_a_write_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        // A regular file where a directory should be: not writable, even as root.
        let path = file.join("sub").join(FILE_NAME);
        let err = load_or_create(&path).unwrap_err();
        // Reading fails first, with "Not a directory".
        assert!(matches!(err, Error::Read { .. }), "{err}");
        assert!(err.to_string().contains(&path.display().to_string()));
        assert_eq!(std::fs::read(&file).unwrap(), b"x");
        // Writing where the parent is a file fails too.
        let keypair = Keypair::generate_ed25519();
        let err = write_new(&path, &keypair).unwrap_err();
        assert!(matches!(err, Error::Write { .. }), "{err}");
    }

    #[test]
    fn unreadable_path_is_a_read_error() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the key file should be.
        let path = dir.path().join(FILE_NAME);
        std::fs::create_dir(&path).unwrap();
        let err = load_or_create(&path).unwrap_err();
        assert!(matches!(err, Error::Read { .. }), "{err}");
    }
}
