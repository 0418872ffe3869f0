//! How many addresses a source may still tell us (Bitcoin Core's address token bucket,
//! `net_processing.cpp`).

use std::time::Instant;

/// A token bucket of addresses: refilled at `rate` per second up to `cap`, and credited
/// beyond the cap by an answer to our own request (Bitcoin Core credits `MAX_ADDR_TO_SEND`,
/// 1,000, after its own `getaddr`). `governor` has no way to credit a bucket, hence this one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    tokens: f64,
    at: Instant,
}

impl Budget {
    /// An empty bucket at `now` (Bitcoin Core starts a peer's bucket at 1, then credits its
    /// own request).
    pub fn new(now: Instant) -> Self {
        Budget {
            tokens: 1.0,
            at: now,
        }
    }

    /// Tokens at `now`, refilled at `rate` per second up to `cap` (a bucket already above the
    /// cap keeps what it has).
    pub fn tokens(&mut self, rate: f64, cap: f64, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = self.at.max(now);
        if self.tokens < cap {
            self.tokens = (self.tokens + elapsed * rate).min(cap);
        }
        self.tokens
    }

    /// Adds `n` tokens, above the cap if need be (an answer to our own request).
    pub fn credit(&mut self, n: f64) {
        self.tokens += n;
    }

    /// Takes up to `n` tokens at `now`; returns how many addresses may be processed.
    pub fn take(&mut self, n: usize, rate: f64, cap: f64, now: Instant) -> usize {
        let allowed = (self.tokens(rate, cap, now).floor().max(0.0) as usize).min(n);
        self.tokens -= allowed as f64;
        allowed
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn refills_at_a_tenth_per_second_up_to_the_cap_and_credits_above_it() {
        let t0 = Instant::now();
        let (rate, cap) = (0.1, 1000.0);
        let mut b = Budget::new(t0);
        assert_eq!(b.take(100, rate, cap, t0), 1);
        assert_eq!(b.take(100, rate, cap, t0), 0);
        // 100 s later: 10 more.
        assert_eq!(b.take(100, rate, cap, t0 + Duration::from_secs(100)), 10);
        // A day later: capped at 1,000.
        let later = t0 + Duration::from_secs(86_400);
        assert_eq!(b.take(5000, rate, cap, later), 1000);
        // 5,000 s later, 500 have come back; our own request credits 1,000 more, above the cap.
        let later = later + Duration::from_secs(5000);
        assert_eq!(b.tokens(rate, cap, later), 500.0);
        b.credit(1000.0);
        assert_eq!(b.take(5000, rate, cap, later), 1500);
    }
}
