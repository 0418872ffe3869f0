//! Configuration of the pool ([`Config`]).

#[cfg(doc)]
use super::Pool;
use super::{Backoff, Score, acl};

/// Configuration of the [`Pool`].
#[derive(Debug, Clone)]
pub struct Config {
    pub(super) max_known_points: Option<(usize, usize)>,
    pub(super) max_known_peers: Option<(usize, usize)>,
    pub(super) backoff: Backoff,
    pub(super) acl: acl::Config,
    pub(super) private_mode: bool,
    pub(super) score: Score,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_known_points: Some((400, 300)),
            max_known_peers: Some((400, 300)),
            backoff: Backoff::default(),
            acl: acl::Config::default(),
            private_mode: false,
            score: Score::default(),
        }
    }
}

impl Config {
    /// Octez's defaults: known points and peers `(400, 300)`, backoff as [`Backoff::default`],
    /// ACL as [`acl::Config::default`], not private, [`Score::standard`].
    pub fn new() -> Self {
        Self::default()
    }
    /// `(high, low)` bounds of the point table: when an insertion finds `high` points, the GC
    /// removes collectable points down to `low`. `None` disables the GC and the cap.
    /// `Some((400, 300))` by default (Octez `max_known_points`). `(0, 0)` keeps trusted points
    /// only.
    ///
    /// # Panics
    ///
    /// If `low > high`.
    pub fn with_max_known_points(mut self, bounds: Option<(usize, usize)>) -> Self {
        check_gc_bounds(bounds);
        self.max_known_points = bounds;
        self
    }
    /// `(high, low)` bounds of the peer table, as [`Config::with_max_known_points`].
    /// `Some((400, 300))` by default (Octez `max_known_peer_ids`).
    ///
    /// # Panics
    ///
    /// If `low > high`.
    pub fn with_max_known_peers(mut self, bounds: Option<(usize, usize)>) -> Self {
        check_gc_bounds(bounds);
        self.max_known_peers = bounds;
        self
    }
    /// Reconnection backoff of points. [`Backoff::default`] by default.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }
    /// Greylist sizes and delays. [`acl::Config::default`] by default.
    pub fn with_acl(mut self, acl: acl::Config) -> Self {
        self.acl = acl;
        self
    }
    /// Private mode (Octez `private_mode`): only trusted points are dialed, only trusted peers
    /// (or peers at a trusted point) are admitted, and no point is advertised. `false` by
    /// default.
    pub fn with_private_mode(mut self, private: bool) -> Self {
        self.private_mode = private;
        self
    }
    /// The peer score. [`Score::standard`] by default.
    pub fn with_score(mut self, score: Score) -> Self {
        self.score = score;
        self
    }
    /// Whether private mode is on.
    pub fn private_mode(&self) -> bool {
        self.private_mode
    }
    /// The point table's bounds.
    pub fn max_known_points(&self) -> Option<(usize, usize)> {
        self.max_known_points
    }
    /// The peer table's bounds.
    pub fn max_known_peers(&self) -> Option<(usize, usize)> {
        self.max_known_peers
    }
    /// The ACL configuration.
    pub fn acl(&self) -> &acl::Config {
        &self.acl
    }
}

fn check_gc_bounds(bounds: Option<(usize, usize)>) {
    if let Some((high, low)) = bounds {
        assert!(low <= high, "GC bounds need low <= high");
    }
}
