//! The book as saved to disk: its key, its geometry, and each entry with its place, so that a
//! restart keeps every position (Bitcoin Core `peers.dat`).

use multiaddr::Multiaddr;
use serde::{Deserialize, Serialize};

use super::Group;
use crate::PeerId;

/// The snapshot format's version.
pub const VERSION: u32 = 1;

/// A saved address book. Times are ages, in seconds, at the moment it was taken, so that it
/// means the same after a reboot (a monotonic clock restarts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Format version ([`VERSION`]).
    pub version: u32,
    /// The secret bucketing key.
    pub key: [u64; 2],
    /// Bucket counts and size the positions were computed with.
    pub new_buckets: u32,
    /// Tried bucket count.
    pub tried_buckets: u32,
    /// Slots per bucket.
    pub bucket_size: u32,
    /// The asmap's checksum, if one grouped the addresses.
    pub asmap: Option<u64>,
    /// Whether `127.a.b.c` counted by /16.
    pub loopback_as_public: bool,
    /// The addresses.
    pub entries: Vec<Entry>,
    /// The outbound peers held longest when it was taken, to redial first at start (Bitcoin
    /// Core `anchors.dat`); each a point with `/p2p`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anchors: Vec<Multiaddr>,
}

/// One saved address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The address, without `/p2p`.
    pub addr: Multiaddr,
    /// The peer ID it was announced with.
    #[serde(default, with = "peer_opt", skip_serializing_if = "Option::is_none")]
    pub peer: Option<PeerId>,
    /// The group of the source that told us of it.
    pub source: Group,
    /// Seconds since we last heard of it.
    pub heard_ago: u64,
    /// Seconds since we last dialed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_try_ago: Option<u64>,
    /// Seconds since we last connected to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_ago: Option<u64>,
    /// Failed dials since the last success.
    #[serde(default)]
    pub attempts: u32,
    /// Its new buckets (empty when tried).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub new_buckets: Vec<u32>,
    /// Whether it is in `tried`.
    #[serde(default)]
    pub tried: bool,
}

mod peer_opt {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use crate::PeerId;

    pub(super) fn serialize<S: Serializer>(p: &Option<PeerId>, s: S) -> Result<S::Ok, S::Error> {
        match p {
            Some(p) => s.serialize_str(&p.to_base58()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PeerId>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| s.parse().map_err(D::Error::custom))
            .transpose()
    }
}
