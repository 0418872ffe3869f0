//! Disk storage for Peerage.
//!
//! - [`identity`]: the node's Ed25519 identity key, created on first start and reused after.
//! - [`peerstore`]: the persistent peerstore, [`RedbStore`], on redb.
//!
//! Every write is atomic (a temporary file in the same directory, then a rename), and a file that
//! fails to load is reported with its path and left untouched.

#![warn(missing_docs)]

pub mod identity;
pub mod peerstore;

pub use self::peerstore::RedbStore;
