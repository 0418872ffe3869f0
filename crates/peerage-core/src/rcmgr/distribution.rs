//! The live peer scopes by their connections, streams and memory, kept as each peer scope's
//! usage changes, so that a metrics scrape reads a few buckets instead of walking every peer
//! (go-libp2p `p2p/host/resource-manager/obs/stats.go` records `libp2p_rcmgr_peer_*` the same
//! way, as its scopes change, in these buckets).

use super::ScopeStat;

/// Upper bounds of the buckets of connections and of streams per peer, as go's.
pub const PEER_COUNT_BUCKETS: [u64; 15] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 16, 32, 64, 128, 256];

/// Upper bounds of the buckets of memory per peer, in bytes, as go's: 1 KiB, 4 KiB, 32 KiB,
/// 1 MiB, 32 MiB, 256 MiB, 512 MiB, 1 GiB, 2 GiB, 4 GiB.
pub const PEER_MEMORY_BUCKETS: [u64; 10] = [
    1 << 10,
    4 << 10,
    32 << 10,
    1 << 20,
    32 << 20,
    256 << 20,
    512 << 20,
    1 << 30,
    2 << 30,
    4 << 30,
];

/// How many live peer scopes hold each amount of one resource, by bucket (a histogram of
/// the present, not of the past: a peer scope counts once, in the bucket of what it holds
/// now, from its creation to its collection).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Distribution {
    bounds: &'static [u64],
    /// Peer scopes per bucket: `counts[i]` holds those at most `bounds[i]` and above
    /// `bounds[i - 1]`; the last, those above every bound.
    counts: Vec<u64>,
    sum: u128,
}

impl Distribution {
    fn new(bounds: &'static [u64]) -> Self {
        Distribution {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0,
        }
    }

    /// The buckets in order: each upper bound (`None` above the last) with the number of peer
    /// scopes in it (not cumulative).
    pub fn buckets(&self) -> impl Iterator<Item = (Option<u64>, u64)> + '_ {
        self.bounds
            .iter()
            .map(|b| Some(*b))
            .chain([None])
            .zip(self.counts.iter().copied())
    }

    /// Live peer scopes.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// What they hold together.
    pub fn sum(&self) -> u128 {
        self.sum
    }

    /// The bucket of `v`: a linear scan, not a binary search, as most values are in the first
    /// buckets (a few streams, a few KiB) and a scan's branches are predicted where a binary
    /// search's dependent steps are not (`benches/rcmgr.rs`).
    fn bucket(&self, v: u64) -> usize {
        self.bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len())
    }

    fn add(&mut self, v: u64) {
        let i = self.bucket(v);
        self.counts[i] += 1;
        self.sum += u128::from(v);
    }

    fn remove(&mut self, v: u64) {
        let i = self.bucket(v);
        debug_assert!(
            self.counts[i] > 0,
            "a peer scope counted before it was removed"
        );
        self.counts[i] = self.counts[i].saturating_sub(1);
        self.sum = self.sum.saturating_sub(u128::from(v));
    }

    fn moved(&mut self, from: u64, to: u64) {
        if from == to {
            return;
        }
        // Most moves stay in their bucket (a reservation of a few KiB on a peer's memory):
        // that is checked against the bucket's two bounds, without a second search.
        let i = self.bucket(from);
        let above_lower = i == 0 || to > self.bounds[i - 1];
        let within_upper = i == self.bounds.len() || to <= self.bounds[i];
        if above_lower && within_upper {
            self.sum = self.sum.saturating_sub(u128::from(from)) + u128::from(to);
        } else {
            self.remove(from);
            self.add(to);
        }
    }
}

/// The live peer scopes by connections, streams and memory (go `libp2p_rcmgr_peer_conns`,
/// `_peer_streams`, `_peer_memory`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PeerDistributions {
    /// By connections, inbound and outbound, in [`PEER_COUNT_BUCKETS`].
    pub connections: Distribution,
    /// By streams, inbound and outbound, in [`PEER_COUNT_BUCKETS`].
    pub streams: Distribution,
    /// By memory reserved, in bytes, in [`PEER_MEMORY_BUCKETS`].
    pub memory: Distribution,
}

impl Default for PeerDistributions {
    fn default() -> Self {
        PeerDistributions {
            connections: Distribution::new(&PEER_COUNT_BUCKETS),
            streams: Distribution::new(&PEER_COUNT_BUCKETS),
            memory: Distribution::new(&PEER_MEMORY_BUCKETS),
        }
    }
}

impl PeerDistributions {
    /// A peer scope appeared holding `s`.
    pub(crate) fn add(&mut self, s: &ScopeStat) {
        self.connections.add(s.conns());
        self.streams.add(s.streams());
        self.memory.add(s.memory);
    }

    /// A peer scope holding `s` was collected.
    pub(crate) fn remove(&mut self, s: &ScopeStat) {
        self.connections.remove(s.conns());
        self.streams.remove(s.streams());
        self.memory.remove(s.memory);
    }

    /// A peer scope's memory went from `from` to `to` bytes, and nothing else changed.
    pub(crate) fn memory_moved(&mut self, from: u64, to: u64) {
        self.memory.moved(from, to);
    }

    /// A peer scope's usage went from `from` to `to`.
    pub(crate) fn moved(&mut self, from: &ScopeStat, to: &ScopeStat) {
        self.connections.moved(from.conns(), to.conns());
        self.streams.moved(from.streams(), to.streams());
        self.memory.moved(from.memory, to.memory);
    }
}
