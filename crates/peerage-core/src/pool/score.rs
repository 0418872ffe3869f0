//! The peer score ([`Score`]).

use std::{fmt, sync::Arc, time::Instant};

use super::peer;

/// A peer's score, from what the node knows of it; higher is better. Peers are collected
/// lowest score first. See [`Score::standard`] for the default.
#[derive(Clone)]
pub struct Score(Arc<ScoreFn>);

type ScoreFn = dyn Fn(&peer::Info, Instant) -> f64 + Send + Sync;

impl fmt::Debug for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Score(..)")
    }
}

impl Default for Score {
    fn default() -> Self {
        Self::standard()
    }
}

impl Score {
    /// A score computed by `f` from a peer's info at an instant.
    pub fn new(f: impl Fn(&peer::Info, Instant) -> f64 + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }
    /// Octez's score: the constant 1.0 (`peer_metadata.ml`), which makes the peer GC "newest
    /// first".
    pub fn constant() -> Self {
        Self::new(|_, _| 1.0)
    }
    /// The default score, in `-2.0..=3.0`:
    ///
    /// ```text
    /// 1.0
    /// + min(uptime, 24 h) / 24 h                  up to +1 for a peer that stays
    /// + clamp(tag_value / 100, -1, 1)             the connection manager's tags
    /// - min(failures, 10) / 10                    up to -1 for a peer that keeps failing
    /// - min(latency, 1 s) / 1 s                   up to -1 for a slow peer
    /// ```
    pub fn standard() -> Self {
        Self::new(|info, now| {
            let day = 86_400.0;
            let uptime = info.uptime(now).as_secs_f64().min(day) / day;
            let tags = (info.tag_value() as f64 / 100.0).clamp(-1.0, 1.0);
            let failures = f64::from(info.failures().min(10)) / 10.0;
            let latency = info.latency().map_or(0.0, |l| l.as_secs_f64().min(1.0));
            1.0 + uptime + tags - failures - latency
        })
    }
    /// The score of `info` at `now`.
    pub fn score(&self, info: &peer::Info, now: Instant) -> f64 {
        (self.0)(info, now)
    }
}
