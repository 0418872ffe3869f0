//! The address book: eclipse-resistant tables of the addresses a node may dial (Bitcoin Core
//! `addrman`, `src/addrman_impl.h`), network groups, and the choice of an inbound connection
//! to evict.
//!
//! An eclipse attack fills a node's view of the network with the attacker's addresses until
//! every connection it makes goes to the attacker (Heilman et al., "Eclipse Attacks on
//! Bitcoin's Peer-to-Peer Network", USENIX Security 2015: about 4,600 IPs, or 32 /16 groups,
//! eclipsed 2015 Bitcoin; two IPs sufficed against geth before 1.8, Marcus et al. 2018). A
//! single table that accepts whatever any peer says, as Octez's point table and Peerage's
//! pool before this module, is the weakness those papers exploit.
//!
//! # The tables
//!
//! [`AddrBook`] keeps two tables of buckets, with Bitcoin Core's shapes as defaults
//! ([`Config`]):
//!
//! - **new** (1,024 buckets × 64): addresses heard of. An address's bucket is a keyed hash of
//!   its [`Group`] and of its *source's* group, such that one source group reaches at most 64
//!   buckets: an attacker who speaks from few network groups fills few buckets, however many
//!   addresses it sends. An address may sit in up to 8 new buckets, each copy twice as hard
//!   to add as the last.
//! - **tried** (256 × 64): addresses we connected to. Its bucket depends on the address's
//!   group, and one group reaches at most 8 buckets.
//!
//! The key is a per-node secret ([`AddrBook::new`]), so an attacker cannot aim at a slot.
//! Buckets are stored sparsely: memory follows entries, not slots.
//!
//! # The rules
//!
//! - "Terrible" addresses give way to newcomers and are not advertised (Bitcoin
//!   `IsTerrible`): not heard of for 30 days, 3 failures and never a success, or 10 failures
//!   in 7 days; never one tried in the last minute.
//! - "Stale" addresses (ours, [`Config::with_stale_after`]): neither heard of nor connected
//!   to for 24 hours, they give way to newcomers in `new` and are not advertised, as
//!   terrible ones; never one tried in the last minute.
//! - Selection ([`AddrBook::select`]) picks tried or new with even odds, then a random slot,
//!   kept with a chance of ×0.01 if tried in the last 10 minutes, ×0.01 if stale and ×0.66
//!   per failed attempt (up to 8), raised ×1.2 on each redraw. Among addresses heard of or
//!   connected to in the last day there is no bias toward fresh ones (Heilman's
//!   countermeasure 2, Bitcoin Core PR #5941).
//! - **Test-before-evict** (Bitcoin Core PR #9037): an address that would take a tried slot
//!   already held waits in a buffer of 10 until a feeler ([`AddrBook::tried_collision`])
//!   tests the incumbent; an incumbent that answered in the last 4 hours stays, and the
//!   newcomer takes the slot only if the incumbent failed, or after 40 minutes untested
//!   ([`AddrBook::resolve_collisions`]).
//! - Failed dials count at most once between two successes of any address
//!   ([`AddrBook::attempt`]), so a node that lost its network does not condemn its book.
//! - Addresses are keyed by address (a multiaddr without `/p2p`), never by peer ID; the peer
//!   ID they were announced with is kept only as a hint for the dial.
//!
//! What the node adds around the book (per-source [`Budget`]s, one outbound connection per
//! group, feelers, eviction and anchors) is documented on the node machine.
//!
//! # Differences from Bitcoin Core
//!
//! - Peer exchange carries no timestamps, so an address's "last heard" is when we heard it.
//!   Bitcoin Core's rule against timestamps in the future only applies to restored files.
//! - The stale rule. Bitcoin Core keeps an unheard address for 30 days (`ADDRMAN_HORIZON`),
//!   which suits nodes that keep an address for weeks. Where nodes come and go within hours
//!   at new addresses, a 30-day book is mostly the gone: in `peerage sim --scenario eclipse`
//!   (10 % of 10,000 nodes replaced an hour) 259 of the 64,249 entries of `new` answered a
//!   dial after 30 days, and a node short of an outbound connection dialed for about half a
//!   minute (21 short minutes in a day of about 35 lost connections). With the rule, 2,300
//!   to 2,600 of about 60,500 did. Its price is a coarse bias toward fresh addresses, the
//!   bias Heilman et al. exploited with addresses sent unasked and stamped fresh: here
//!   addresses come only in answers to our requests and from peers we dialed, for
//!   themselves, budgeted per source and per source group, and a live address is named
//!   again by honest answers (in that model about every 6 hours: 23,500 answers of 50
//!   points in 31 days, over 10,000 live nodes). A network so large that a live address
//!   goes unnamed for a day wants a longer setting.
//! - The hash is SipHash-1-3 keyed with 128 bits, not double SHA-256 keyed with 256.
//! - Addresses are multiaddrs; DNS, relayed and loopback addresses each form one group
//!   ([`Group`]).

pub mod asmap;
mod book;
mod budget;
pub mod evict;
mod group;
pub mod snapshot;
mod table;

use std::time::Duration;

pub use self::{
    asmap::Asmap,
    book::{Added, AddrBook, Candidate, Place, Stats},
    budget::Budget,
    group::{Group, Grouping},
    snapshot::Snapshot,
};

/// Addresses a source may send per second (Bitcoin Core `MAX_ADDR_RATE_PER_SECOND`).
pub const ADDR_RATE_PER_SECOND: f64 = 0.1;
/// Most addresses a source's bucket holds (Bitcoin Core `MAX_ADDR_PROCESSING_TOKEN_BUCKET`),
/// and the credit an answer to our own request gets.
pub const ADDR_BUCKET_CAP: f64 = 1000.0;

/// The address book's shapes and rules. Defaults are Bitcoin Core's (`src/addrman_impl.h`),
/// but for the stale rule, which is ours ([`Config::with_stale_after`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub(crate) new_buckets: u32,
    pub(crate) tried_buckets: u32,
    pub(crate) bucket_size: u32,
    pub(crate) new_buckets_per_source_group: u32,
    pub(crate) tried_buckets_per_group: u32,
    pub(crate) new_buckets_per_address: u32,
    pub(crate) horizon: Duration,
    pub(crate) stale_after: Duration,
    pub(crate) retries: u32,
    pub(crate) max_failures: u32,
    pub(crate) min_fail: Duration,
    pub(crate) replacement: Duration,
    pub(crate) test_window: Duration,
    pub(crate) max_collisions: usize,
    pub(crate) test_before_evict: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            new_buckets: 1024,
            tried_buckets: 256,
            bucket_size: 64,
            new_buckets_per_source_group: 64,
            tried_buckets_per_group: 8,
            new_buckets_per_address: 8,
            horizon: Duration::from_secs(30 * 86_400),
            stale_after: Duration::from_secs(86_400),
            retries: 3,
            max_failures: 10,
            min_fail: Duration::from_secs(7 * 86_400),
            replacement: Duration::from_secs(4 * 3600),
            test_window: Duration::from_secs(40 * 60),
            max_collisions: 10,
            test_before_evict: true,
        }
    }
}

impl Config {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Buckets of the new table. Default: 1,024 (`ADDRMAN_NEW_BUCKET_COUNT`).
    ///
    /// # Panics
    ///
    /// If `n` is 0 or above 65,536.
    pub fn with_new_buckets(mut self, n: u32) -> Self {
        assert!((1..=65_536).contains(&n), "new buckets must be 1 to 65,536");
        self.new_buckets = n;
        self
    }

    /// Buckets of the tried table. Default: 256 (`ADDRMAN_TRIED_BUCKET_COUNT`).
    ///
    /// # Panics
    ///
    /// If `n` is 0 or above 65,536.
    pub fn with_tried_buckets(mut self, n: u32) -> Self {
        assert!(
            (1..=65_536).contains(&n),
            "tried buckets must be 1 to 65,536"
        );
        self.tried_buckets = n;
        self
    }

    /// Slots per bucket. Default: 64 (`ADDRMAN_BUCKET_SIZE`).
    ///
    /// # Panics
    ///
    /// If `n` is 0 or above 256.
    pub fn with_bucket_size(mut self, n: u32) -> Self {
        assert!((1..=256).contains(&n), "bucket size must be 1 to 256");
        self.bucket_size = n;
        self
    }

    /// New buckets one source group can reach. Default: 64
    /// (`ADDRMAN_NEW_BUCKETS_PER_SOURCE_GROUP`).
    ///
    /// # Panics
    ///
    /// If `n` is 0.
    pub fn with_new_buckets_per_source_group(mut self, n: u32) -> Self {
        assert!(n > 0, "new buckets per source group must be positive");
        self.new_buckets_per_source_group = n;
        self
    }

    /// Tried buckets one group can reach. Default: 8 (`ADDRMAN_TRIED_BUCKETS_PER_GROUP`).
    ///
    /// # Panics
    ///
    /// If `n` is 0.
    pub fn with_tried_buckets_per_group(mut self, n: u32) -> Self {
        assert!(n > 0, "tried buckets per group must be positive");
        self.tried_buckets_per_group = n;
        self
    }

    /// New buckets one address may sit in. Default: 8 (`ADDRMAN_NEW_BUCKETS_PER_ADDRESS`).
    ///
    /// # Panics
    ///
    /// If `n` is 0.
    pub fn with_new_buckets_per_address(mut self, n: u32) -> Self {
        assert!(n > 0, "new buckets per address must be positive");
        self.new_buckets_per_address = n;
        self
    }

    /// An address not heard of for this long is terrible. Default: 30 days
    /// (`ADDRMAN_HORIZON`).
    pub fn with_horizon(mut self, d: Duration) -> Self {
        self.horizon = d;
        self
    }

    /// An address neither heard of nor connected to for this long is stale: it gives up its
    /// new slot to a newcomer and is left out of answers as a terrible one is, and a draw
    /// keeps it a hundredth as often (as one tried in the last 10 minutes). One tried in the
    /// last minute is never stale (its dial may be in flight). Default: 24 hours;
    /// `Duration::MAX` turns the rule off.
    ///
    /// Bitcoin Core has no such rule: its 30-day horizon suits nodes that keep an address for
    /// weeks. Where nodes come and go within hours, at new addresses, a book of 65,536 new
    /// slots fills with the gone: in `peerage sim --scenario eclipse` (10 % of 10,000 nodes
    /// replaced an hour) after 30 days 259 of the 64,249 entries of `new` answered a dial,
    /// and a lost outbound connection took about half a minute to replace with 16 dials in
    /// flight. A live address is heard of again (every answer names live nodes) and an
    /// outbound peer's address is refreshed when its connection ends or the book is saved
    /// with it open, so they stay fresh; a stale address keeps its place until a newcomer
    /// needs it. Time offline does not count: a saved book keeps ages, not dates
    /// ([`Snapshot`]). The price: where an attacker's addresses reach the book (in answers to
    /// our requests, or for themselves when we dialed them; placed by their source's group),
    /// an entry nobody named for a day yields to them, where Bitcoin Core holds it for 30
    /// days.
    pub fn with_stale_after(mut self, d: Duration) -> Self {
        self.stale_after = d;
        self
    }

    /// Failures, with no success ever, that make an address terrible. Default: 3
    /// (`ADDRMAN_RETRIES`).
    pub fn with_retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// Failures within [`Config::with_min_fail`] of no success that make an address terrible.
    /// Default: 10 (`ADDRMAN_MAX_FAILURES`).
    pub fn with_max_failures(mut self, n: u32) -> Self {
        self.max_failures = n;
        self
    }

    /// See [`Config::with_max_failures`]. Default: 7 days (`ADDRMAN_MIN_FAIL`).
    pub fn with_min_fail(mut self, d: Duration) -> Self {
        self.min_fail = d;
        self
    }

    /// A tried incumbent that succeeded this recently is not replaced. Default: 4 hours
    /// (`ADDRMAN_REPLACEMENT`).
    pub fn with_replacement(mut self, d: Duration) -> Self {
        self.replacement = d;
        self
    }

    /// A collision left untested this long is settled for the newcomer. Default: 40 minutes
    /// (`ADDRMAN_TEST_WINDOW`).
    pub fn with_test_window(mut self, d: Duration) -> Self {
        self.test_window = d;
        self
    }

    /// Size of the collision buffer. Default: 10 (`ADDRMAN_SET_TRIED_COLLISION_SIZE`).
    pub fn with_max_collisions(mut self, n: usize) -> Self {
        self.max_collisions = n;
        self
    }

    /// Whether a tried collision waits for a test of the incumbent; if not, the incumbent goes
    /// back to new at once (Bitcoin Core before PR #9037). Default: on.
    pub fn with_test_before_evict(mut self, on: bool) -> Self {
        self.test_before_evict = on;
        self
    }
}

#[cfg(test)]
mod tests;
