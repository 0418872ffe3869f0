//! Disk storage for Peerage.
//!
//! - [`identity`]: the node's Ed25519 identity key, created on first start and reused after.
//! - [`peerstore`]: the persistent peerstore, [`RedbStore`], on redb.
//! - [`peers_file`]: the peers file, Octez's `peers.json`, loaded at start and saved by the caller.
//! - [`addrbook_file`]: the address book file, Bitcoin Core's `peers.dat` and `anchors.dat` in
//!   one, [`AddrBookFile`], loaded at start and saved by the caller.
//!
//! Every write is atomic (a temporary file in the same directory, then a rename), and a file that
//! fails to load is reported with its path and left untouched (a corrupt peers or address book
//! file is renamed aside, its bytes kept).

#![warn(missing_docs)]

pub mod addrbook_file;
mod atomic;
pub mod identity;
pub mod peers_file;
pub mod peerstore;

pub use self::{addrbook_file::AddrBookFile, peerstore::RedbStore};
