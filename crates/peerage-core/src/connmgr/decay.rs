//! Decaying tags, as go-libp2p's decayer (`p2p/net/connmgr/decay.go`).
//!
//! A decaying tag has a name, an interval, a [`DecayFn`] applied to each peer's value once per
//! interval, and a [`BumpFn`] that folds a bump into the value. The decayer ticks every
//! *resolution* (1 min by default) from the connection manager's creation; a tag is visited on
//! the first tick at or after its due time, then is due again one interval later, as go. An
//! interval shorter than the resolution is raised to it.
//!
//! Differences from go, on purpose:
//!
//! - **Missed ticks are caught up.** The core is driven by `now`: when it is next called, every
//!   tick that fell due since is applied in order, each at its own scheduled time (as Substrate's
//!   reputation decay does). A node whose task was delayed does not keep stale values; a value
//!   decays as many times as intervals passed, not once per call. At most
//!   [`MAX_CATCH_UP`] visits are applied per call; older ones are skipped.
//! - [`DecayFn::expire_when_inactive`] removes a value once `now - last_bump >= after`. go's
//!   compares a negative duration, so it never expires, and zeroes the value at the first tick.
//! - Bumps, removals and closes apply at once: there is no queue to fill (go's channels of 128
//!   fail with "queue full").
//! - Removing a value of an unknown peer does nothing (go creates an empty temporary entry).

use std::{
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::PeerId;

/// Most visits of one tag applied by a single call; visits due before those are skipped.
pub const MAX_CATCH_UP: u64 = 1024;

/// One peer's value under a decaying tag, as decay and bump functions see it (go
/// `DecayingValue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecayingValue {
    /// The peer.
    pub peer: PeerId,
    /// When the value was created (its first bump).
    pub added: Instant,
    /// When the decayer last visited it, or `added`.
    pub last_visit: Instant,
    /// When it was last bumped.
    pub last_bump: Instant,
    /// The current value.
    pub value: i64,
}

type DecayFnInner = dyn Fn(&DecayingValue, Instant) -> Option<i64> + Send + Sync;
type BumpFnInner = dyn Fn(&DecayingValue, i64) -> i64 + Send + Sync;

/// How a decaying value changes at each visit: the new value, or `None` to remove it. Called
/// with the value and the visit's scheduled time.
#[derive(Clone)]
pub struct DecayFn(Arc<DecayFnInner>);

impl DecayFn {
    /// A custom decay function: `f(value, visit_time)` returns the new value, or `None` to
    /// remove the value from the peer.
    pub fn custom(
        f: impl Fn(&DecayingValue, Instant) -> Option<i64> + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(f))
    }
    /// No decay (go `DecayNone`).
    pub fn none() -> Self {
        Self::custom(|v, _| Some(v.value))
    }
    /// Subtracts `minuend` at each visit; removes the value once it is 0 or less (go
    /// `DecayFixed`).
    pub fn fixed(minuend: i64) -> Self {
        Self::custom(move |v, _| Some(v.value.saturating_sub(minuend)).filter(|v| *v > 0))
    }
    /// Multiplies by `coef` and rounds down at each visit; removes the value once it is 0 or
    /// less (go `DecayLinear`).
    pub fn linear(coef: f64) -> Self {
        // `as` saturates on overflow and maps NaN to 0 (removal).
        Self::custom(move |v, _| Some((v.value as f64 * coef).floor() as i64).filter(|v| *v > 0))
    }
    /// Keeps the value while the peer is bumped; removes it at the first visit at least `after`
    /// past its last bump. go's `DecayExpireWhenInactive` never expires and zeroes the value
    /// instead (go-libp2p `core/connmgr/presets.go`).
    pub fn expire_when_inactive(after: Duration) -> Self {
        Self::custom(move |v, now| {
            (now.saturating_duration_since(v.last_bump) < after).then_some(v.value)
        })
    }
    pub(crate) fn apply(&self, value: &DecayingValue, now: Instant) -> Option<i64> {
        (self.0)(value, now)
    }
}

impl fmt::Debug for DecayFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DecayFn")
    }
}

/// How a bump changes a decaying value: `f(value, delta)` returns the new value.
#[derive(Clone)]
pub struct BumpFn(Arc<BumpFnInner>);

impl BumpFn {
    /// A custom bump function.
    pub fn custom(f: impl Fn(&DecayingValue, i64) -> i64 + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }
    /// Adds the delta, saturating at the `i64` range (go `BumpSumUnbounded`).
    pub fn sum_unbounded() -> Self {
        Self::custom(|v, delta| v.value.saturating_add(delta))
    }
    /// Adds the delta and clamps the sum to `min..=max` (go `BumpSumBounded`: a small bump can
    /// raise a value up to `min`).
    pub fn sum_bounded(min: i64, max: i64) -> Self {
        Self::custom(move |v, delta| v.value.saturating_add(delta).clamp(min, max.max(min)))
    }
    /// Replaces the value by the delta (go `BumpOverwrite`).
    pub fn overwrite() -> Self {
        Self::custom(|_, delta| delta)
    }
    pub(crate) fn apply(&self, value: &DecayingValue, delta: i64) -> i64 {
        (self.0)(value, delta)
    }
}

impl fmt::Debug for BumpFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BumpFn")
    }
}

/// A registered decaying tag: a name and an identity to pass to
/// [`ConnManager::bump`](super::ConnManager::bump) and its siblings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DecayingTag {
    pub(crate) id: u64,
    pub(crate) name: Arc<str>,
    pub(crate) interval: Duration,
}

impl DecayingTag {
    /// The tag's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The effective interval: the one asked for, raised to the decay resolution if shorter.
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

/// The decayer's state of one tag.
#[derive(Debug, Clone)]
pub(crate) struct TagState {
    pub(crate) name: Arc<str>,
    pub(crate) interval: Duration,
    /// When the tag is next due, as an offset from the decayer's epoch.
    pub(crate) next_due: Duration,
    pub(crate) decay: DecayFn,
    pub(crate) bump: BumpFn,
    /// Peers holding a value under this tag.
    pub(crate) peers: foldhash::HashSet<PeerId>,
}

/// The decayer's clock arithmetic: ticks every `resolution` from `epoch`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticks {
    pub(crate) epoch: Instant,
    pub(crate) resolution: Duration,
}

impl Ticks {
    fn nanos(d: Duration) -> u128 {
        d.as_nanos()
    }
    fn from_nanos(n: u128) -> Duration {
        Duration::from_nanos(u64::try_from(n).unwrap_or(u64::MAX))
    }
    /// The last tick at or before `offset`.
    pub(crate) fn floor(&self, offset: Duration) -> Duration {
        let r = Self::nanos(self.resolution);
        Self::from_nanos(Self::nanos(offset) / r * r)
    }
    /// The first tick at or after `offset`.
    pub(crate) fn ceil(&self, offset: Duration) -> Duration {
        let r = Self::nanos(self.resolution);
        Self::from_nanos(Self::nanos(offset).div_ceil(r) * r)
    }
    pub(crate) fn offset(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.epoch)
    }
    pub(crate) fn at(&self, offset: Duration) -> Instant {
        self.epoch + offset
    }
}

impl TagState {
    /// The scheduled times of the visits due at `now`, oldest first, at most [`MAX_CATCH_UP`];
    /// advances the tag past them. A visit happens on the first tick at or after it is due, so
    /// a visit is due at `now` when its due time is at or before the last tick at `now`.
    pub(crate) fn take_visits(&mut self, ticks: &Ticks, now: Instant) -> Vec<Instant> {
        let last_tick = ticks.floor(ticks.offset(now));
        if self.next_due > last_tick {
            return Vec::new();
        }
        let interval = self.interval.as_nanos().max(1);
        let due = (last_tick - self.next_due).as_nanos() / interval + 1;
        if self.peers.is_empty() {
            self.next_due += Ticks::from_nanos(due * interval);
            return Vec::new();
        }
        let skipped = due.saturating_sub(u128::from(MAX_CATCH_UP));
        self.next_due += Ticks::from_nanos(skipped * interval);
        let mut visits = Vec::with_capacity(usize::try_from(due - skipped).unwrap_or(0));
        for _ in skipped..due {
            visits.push(ticks.at(ticks.ceil(self.next_due)));
            self.next_due += self.interval;
        }
        visits
    }
    /// When the tag next has work: its next visit, if it holds values.
    pub(crate) fn next_visit(&self, ticks: &Ticks) -> Option<Instant> {
        (!self.peers.is_empty()).then(|| ticks.at(ticks.ceil(self.next_due)))
    }
}
