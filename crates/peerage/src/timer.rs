//! The one timer a behaviour needs: armed for its next deadline, re-armed when that changes.

use std::{task::Context, time::Instant};

use futures::FutureExt;
use futures_timer::Delay;

/// A timer for a behaviour's next deadline (quinn's `drive_timer` pattern).
#[derive(Default)]
pub(crate) struct Timer(Option<(Instant, Delay)>);

impl Timer {
    /// Polls the timer for `deadline`, re-arming it if the deadline changed. Returns `true`,
    /// and disarms, once the deadline has passed; otherwise `cx` is woken when it does.
    pub(crate) fn poll(&mut self, deadline: Instant, now: Instant, cx: &mut Context<'_>) -> bool {
        let delay = match &mut self.0 {
            Some((at, delay)) if *at == deadline => delay,
            slot => {
                let delay = Delay::new(deadline.saturating_duration_since(now));
                &mut slot.insert((deadline, delay)).1
            }
        };
        if delay.poll_unpin(cx).is_ready() {
            self.0 = None;
            return true;
        }
        false
    }
}
