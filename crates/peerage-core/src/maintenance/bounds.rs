//! Connection bounds and their derived thresholds, as Octez `make_maintenance_bounds`
//! (`p2p_connect_handler.ml`).

use std::fmt;

/// The connection bounds of a node and the thresholds and targets derived from them.
///
/// Given `min <= expected <= max`, Octez derives (integer division):
///
/// ```text
/// step_min = (expected - min) / 3      step_max = (max - expected) / 3
/// min_threshold = min + step_min       min_target = min + 2 * step_min
/// max_target    = max - 2 * step_max   max_threshold = max - step_max
/// ```
///
/// Below `min_threshold` the maintenance dials until at least `min_target`; above
/// `max_threshold` it closes connections down to `max_target`. Incoming connections are refused
/// (nacked) once there are `max_threshold` of them, as Octez since 2026, except from a peer
/// that says it needs connections, which is admitted up to `max` (the node's hard ceiling).
/// Without that exception a network can lock: every node a starving peer can reach sits at
/// `max_threshold`, full yet never above it, so nobody trims and the peer stays below `min`.
///
/// ```
/// # use peerage_core::maintenance::Bounds;
/// let b = Bounds::from_connections(6);
/// assert_eq!((b.min(), b.expected(), b.max()), (3, 6, 9));
/// assert_eq!((b.min_threshold(), b.min_target(), b.max_target(), b.max_threshold()), (4, 5, 7, 8));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    min: usize,
    expected: usize,
    max: usize,
    min_threshold: usize,
    min_target: usize,
    max_target: usize,
    max_threshold: usize,
}

/// The bounds given to [`Bounds::new`] are not ordered `min <= expected <= max`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid connection bounds: min {min}, expected {expected}, max {max} (need min <= expected <= max)"
)]
pub struct BoundsError {
    /// The minimum given.
    pub min: usize,
    /// The expected count given.
    pub expected: usize,
    /// The maximum given.
    pub max: usize,
}

impl Bounds {
    /// Bounds from explicit `min`, `expected` and `max` connection counts.
    ///
    /// # Errors
    ///
    /// [`BoundsError`] unless `min <= expected <= max`.
    pub fn new(min: usize, expected: usize, max: usize) -> Result<Self, BoundsError> {
        if min > expected || expected > max {
            return Err(BoundsError { min, expected, max });
        }
        let step_min = (expected - min) / 3;
        let step_max = (max - expected) / 3;
        Ok(Self {
            min,
            expected,
            max,
            min_threshold: min + step_min,
            min_target: min + 2 * step_min,
            max_target: max - 2 * step_max,
            max_threshold: max - step_max,
        })
    }

    /// Bounds from Octez's `--connections N`: `min = N / 2` (but 1 when `N = 1`),
    /// `expected = N`, `max = 3N / 2` (`shared_arg.ml`).
    ///
    /// `N = 0` gives all-zero bounds: a node that neither dials nor accepts for the maintenance.
    pub fn from_connections(n: usize) -> Self {
        let min = if n == 1 { 1 } else { n / 2 };
        // Saturating: for absurd N the max is clamped rather than overflowing.
        let max = n.saturating_mul(3) / 2;
        Self::new(min, n, max.max(n)).expect("N/2 <= N <= 3N/2")
    }

    /// Lowest healthy connection count (Octez `min_connections`).
    pub fn min(&self) -> usize {
        self.min
    }
    /// Target connection count (Octez `expected_connections`, go low water).
    pub fn expected(&self) -> usize {
        self.expected
    }
    /// Soft ceiling (Octez `max_connections`, go high water).
    pub fn max(&self) -> usize {
        self.max
    }
    /// Below this count the maintenance starts dialing.
    pub fn min_threshold(&self) -> usize {
        self.min_threshold
    }
    /// When dialing, the maintenance aims for at least this many connections.
    pub fn min_target(&self) -> usize {
        self.min_target
    }
    /// When closing, the maintenance closes down to this many connections.
    pub fn max_target(&self) -> usize {
        self.max_target
    }
    /// Above this count the maintenance closes connections; at it, incoming connections are
    /// refused unless their peer needs connections (Octez's `connections_threshold` while the
    /// maintenance is active).
    pub fn max_threshold(&self) -> usize {
        self.max_threshold
    }
    /// Whether `n` lies within `min..=max`.
    pub fn contains(&self, n: usize) -> bool {
        (self.min..=self.max).contains(&n)
    }
}

impl fmt::Display for Bounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.min, self.expected, self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden values of Octez's `make_maintenance_bounds`.
    #[test]
    fn golden_thresholds_match_octez() {
        let golden = [
            ((10, 50, 100), (23, 36, 68, 84)),
            ((25, 50, 75), (33, 41, 59, 67)),
            ((5, 10, 15), (6, 7, 13, 14)),
            ((3, 6, 9), (4, 5, 7, 8)),
            ((1, 1, 1), (1, 1, 1, 1)),
            ((1, 2, 3), (1, 1, 3, 3)),
        ];
        for ((min, exp, max), want) in golden {
            let b = Bounds::new(min, exp, max).unwrap();
            let got = (
                b.min_threshold(),
                b.min_target(),
                b.max_target(),
                b.max_threshold(),
            );
            assert_eq!(got, want, "bounds {min}/{exp}/{max}");
        }
    }

    #[test]
    fn connections_flag_matches_octez() {
        let cases = [
            (50, (25, 50, 75)),
            (10, (5, 10, 15)),
            (6, (3, 6, 9)),
            (2, (1, 2, 3)),
            (1, (1, 1, 1)),
            (100, (50, 100, 150)),
            (7, (3, 7, 10)),
        ];
        for (n, want) in cases {
            let b = Bounds::from_connections(n);
            assert_eq!((b.min(), b.expected(), b.max()), want, "--connections {n}");
        }
    }

    #[test]
    fn unordered_bounds_are_refused() {
        assert_eq!(
            Bounds::new(5, 4, 10),
            Err(BoundsError {
                min: 5,
                expected: 4,
                max: 10
            })
        );
        assert!(Bounds::new(1, 11, 10).is_err());
        assert!(Bounds::new(0, 0, 0).is_ok());
    }

    #[test]
    fn thresholds_are_ordered_for_all_small_bounds() {
        for min in 0..20 {
            for exp in min..30 {
                for max in exp..45 {
                    let b = Bounds::new(min, exp, max).unwrap();
                    assert!(b.min() <= b.min_threshold());
                    assert!(b.min_threshold() <= b.min_target());
                    assert!(b.min_target() <= b.expected());
                    assert!(b.expected() <= b.max_target());
                    assert!(b.max_target() <= b.max_threshold());
                    assert!(b.max_threshold() <= b.max());
                }
            }
        }
    }
}
