//! Pending inbound handshakes: a bounded table that a flood of silent or dripping sockets
//! cannot fill for good.
//!
//! An inbound connection holds a slot from its accept to the end of its security and muxer
//! handshake. The references bound this in their own ways: Octez refuses connections past
//! `max_incoming_connections` pending ones, Bitcoin Core evicts an established inbound peer
//! when its inbound slots are full, go-libp2p counts pending connections in the transient scope
//! (refusing the new ones when it is full). Refusing the new ones is what a flood wants: 200
//! sockets that connect and send nothing, reopened as soon as they are dropped at the 10 s
//! timeout, keep every honest dialer out. Here the new connection wins instead:
//!
//! - With every slot taken, a new handshake **evicts** a pending one: the oldest that has sent
//!   less than a multistream header ([`Config::with_first_flight`], 20 bytes; an honest dialer
//!   sends the header, its protocol and Noise's first message, about 60 bytes, right behind
//!   the TCP handshake's last packet, so its first read, in the same poll as its accept, finds
//!   them), else the one that has sent the fewest bytes per second of its age among those
//!   older than [`Config::with_grace`] (500 ms). With no candidate, the new one is refused. A
//!   flood's own silent or dripping sockets are the oldest such ones, so they go first
//!   however fast they come, and an honest handshake is evicted only by one that sends faster
//!   than it, after 500 ms.
//! - A handshake that ends **stalled** (evicted or timed out having sent fewer than
//!   [`Config::with_stalled_bytes`], 128 bytes: an honest initiator sends its multistream
//!   header and Noise's first message at once) is a strike against its IP; the third strike
//!   within a minute refuses the IP's handshakes for 10 minutes, and is reported
//!   ([`Handshakes::take_struck`]) so that the node machine greylists the IP as it greylists a
//!   garbage sender: refused then before it takes any resource manager slot.
//!
//! - A QUIC handshake ([`Handshakes::begin_unvalidated`]) holds a slot as a TCP one does, but
//!   its bytes are inside quinn, so it counts as silent and the oldest goes first (an honest
//!   one completes within a round trip or two); and it never strikes: a UDP source address is
//!   not validated before the handshake ends, so strikes would let a spoofer get any IP
//!   refused and greylisted.
//!
//! Sans-IO: the caller (`peerage::rcmgr::transport`) reports accepts, bytes and ends with the
//! time, and aborts what the table evicts.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    time::{Duration, Instant},
};

/// Configuration of [`Handshakes`].
#[derive(Debug, Clone)]
pub struct Config {
    max_pending: usize,
    timeout: Duration,
    first_flight: u64,
    grace: Duration,
    stalled_bytes: u64,
    strikes: u32,
    strike_window: Duration,
    refuse_for: Duration,
    loopback_exempt: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_pending: 64,
            timeout: Duration::from_secs(10),
            first_flight: 20,
            grace: Duration::from_millis(500),
            stalled_bytes: 128,
            strikes: 3,
            strike_window: Duration::from_secs(60),
            refuse_for: Duration::from_secs(600),
            loopback_exempt: false,
        }
    }
}

impl Config {
    /// The defaults: 64 pending handshakes, 10 s timeout, a first flight of 20 bytes, 500 ms
    /// grace, stalled under 128 bytes, 3 strikes in 60 s refuse an IP for 600 s.
    pub fn new() -> Self {
        Self::default()
    }
    /// Most pending inbound handshakes. 64 by default (go-libp2p's transient scope holds 64
    /// connections); keep it under the resource manager's transient inbound limit, so that
    /// the table evicts before the resource manager refuses.
    ///
    /// # Panics
    ///
    /// If `n` is 0.
    pub fn with_max_pending(mut self, n: usize) -> Self {
        assert!(n > 0, "max_pending must be positive");
        self.max_pending = n;
        self
    }
    /// How long a handshake may take. 10 s by default (rust-libp2p's and go-libp2p's
    /// negotiation timeout).
    pub fn with_timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }
    /// Bytes under which a pending handshake is evicted first, whatever its age: 20 by default
    /// (a multistream-select header, `\x13/multistream/1.0.0\n`).
    pub fn with_first_flight(mut self, bytes: u64) -> Self {
        self.first_flight = bytes;
        self
    }
    /// How old a pending handshake that has sent its first flight must be to be evicted.
    /// 500 ms by default.
    pub fn with_grace(mut self, d: Duration) -> Self {
        self.grace = d;
        self
    }
    /// Bytes under which an evicted or timed-out handshake counts as stalled (a strike). 128
    /// by default.
    pub fn with_stalled_bytes(mut self, n: u64) -> Self {
        self.stalled_bytes = n;
        self
    }
    /// Stalled handshakes of one IP within `window` that refuse it for `refuse_for`. 3 in
    /// 60 s, refused for 600 s by default. `strikes` of 0 never refuses.
    pub fn with_strikes(mut self, strikes: u32, window: Duration, refuse_for: Duration) -> Self {
        self.strikes = strikes;
        self.strike_window = window;
        self.refuse_for = refuse_for;
        self
    }
    /// Whether loopback IPs never strike (they are still evicted when the table is full), as
    /// the resource manager exempts them from its per-IP limits by default. `false` by
    /// default.
    pub fn with_loopback_exempt(mut self, on: bool) -> Self {
        self.loopback_exempt = on;
        self
    }
    /// The cap of pending handshakes.
    pub fn max_pending(&self) -> usize {
        self.max_pending
    }
    /// The handshake timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// What [`Handshakes::begin`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begin {
    /// The handshake holds slot `id`; `evicted` must be aborted to make room.
    Admitted {
        /// The new handshake's ID.
        id: u64,
        /// A pending handshake to abort, if the table was full.
        evicted: Option<u64>,
    },
    /// The table is full of handshakes within their grace: refused.
    Full,
    /// The IP is refused for stalled handshakes, until the given instant.
    Refused(Instant),
}

/// How a handshake ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// It completed: the connection is established.
    Completed,
    /// It failed for another reason (a bad handshake, the remote closed).
    Failed,
    /// It passed its deadline.
    TimedOut,
}

#[derive(Debug, Clone)]
struct Pending {
    ip: IpAddr,
    started: Instant,
    bytes: u64,
    /// Whether `ip` is known to be the sender's (TCP); a stall strikes only then.
    validated: bool,
}

/// The table of pending inbound handshakes. See the [module docs](self).
#[derive(Debug, Default)]
pub struct Handshakes {
    config: Config,
    pending: BTreeMap<u64, Pending>,
    next: u64,
    /// Strikes of each IP: how many, since when.
    strikes: HashMap<IpAddr, (u32, Instant)>,
    refused: HashMap<IpAddr, Instant>,
    /// IPs refused since the last [`Handshakes::take_struck`], at most [`MAX_STRUCK`].
    struck: Vec<IpAddr>,
    evicted: u64,
    /// When [`Handshakes::gc`] last ran (from [`Handshakes::begin`], once a second at most).
    last_gc: Option<Instant>,
}

/// How often [`Handshakes::begin`] drops old strikes and refusals: once a second.
const GC_INTERVAL: Duration = Duration::from_secs(1);

/// Most IPs [`Handshakes::take_struck`] holds between two calls; more are not reported (they
/// are refused all the same).
pub const MAX_STRUCK: usize = 1024;

impl Handshakes {
    /// An empty table.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Handshakes pending now.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Handshakes evicted so far.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// IPs refused at `now`.
    pub fn refused_ips(&self, now: Instant) -> usize {
        self.refused.values().filter(|until| **until > now).count()
    }

    /// An inbound connection from `ip` was accepted at `now`: admitted (evicting the worst
    /// pending handshake if the table is full) or refused.
    pub fn begin(&mut self, ip: IpAddr, now: Instant) -> Begin {
        self.begin_from(ip, true, now)
    }

    /// As [`begin`](Self::begin), for a handshake whose source address is not validated (QUIC,
    /// over UDP): refused where its IP is, but it never strikes.
    pub fn begin_unvalidated(&mut self, ip: IpAddr, now: Instant) -> Begin {
        self.begin_from(ip, false, now)
    }

    fn begin_from(&mut self, ip: IpAddr, validated: bool, now: Instant) -> Begin {
        if self
            .last_gc
            .is_none_or(|t| now.saturating_duration_since(t) >= GC_INTERVAL)
        {
            self.gc(now);
        }
        if let Some(until) = self.refused.get(&ip).copied() {
            if until > now {
                return Begin::Refused(until);
            }
            self.refused.remove(&ip);
        }
        let mut evicted = None;
        if self.pending.len() >= self.config.max_pending {
            let Some(victim) = self.victim(now) else {
                return Begin::Full;
            };
            self.end(victim, End::TimedOut, now);
            self.evicted += 1;
            evicted = Some(victim);
        }
        let id = self.next;
        self.next += 1;
        self.pending.insert(
            id,
            Pending {
                ip,
                started: now,
                bytes: 0,
                validated,
            },
        );
        Begin::Admitted { id, evicted }
    }

    /// The oldest pending handshake that has sent less than its first flight; else the one
    /// that has sent the fewest bytes per second of its age, among those past the grace, the
    /// oldest among equals.
    fn victim(&self, now: Instant) -> Option<u64> {
        let age = |p: &Pending| now.saturating_duration_since(p.started);
        // IDs grow with time: the first one found is the oldest.
        let first_flight = self.config.first_flight;
        if let Some((id, _)) = self.pending.iter().find(|(_, p)| p.bytes < first_flight) {
            return Some(*id);
        }
        self.pending
            .iter()
            .filter(|(_, p)| age(p) >= self.config.grace)
            .min_by(|(ia, a), (ib, b)| {
                // a.bytes / a.age < b.bytes / b.age, without division.
                let (ra, rb) = (
                    u128::from(a.bytes) * age(b).as_micros(),
                    u128::from(b.bytes) * age(a).as_micros(),
                );
                ra.cmp(&rb).then(ia.cmp(ib))
            })
            .map(|(id, _)| *id)
    }

    /// Handshake `id` received `bytes` more bytes.
    pub fn progress(&mut self, id: u64, bytes: u64) {
        if let Some(p) = self.pending.get_mut(&id) {
            p.bytes = p.bytes.saturating_add(bytes);
        }
    }

    /// When handshake `id` times out, if it is pending.
    pub fn deadline(&self, id: u64) -> Option<Instant> {
        self.pending
            .get(&id)
            .map(|p| p.started + self.config.timeout)
    }

    /// Handshake `id` ended at `now`. A stalled end (timed out, or evicted, under
    /// [`Config::with_stalled_bytes`]) is a strike against its IP. Returns whether its IP is
    /// refused from now on.
    pub fn end(&mut self, id: u64, end: End, now: Instant) -> bool {
        let Some(p) = self.pending.remove(&id) else {
            return false;
        };
        if end != End::TimedOut
            || !p.validated
            || p.bytes >= self.config.stalled_bytes
            || self.config.strikes == 0
            || (self.config.loopback_exempt && p.ip.is_loopback())
        {
            return false;
        }
        let window = self.config.strike_window;
        let entry = self.strikes.entry(p.ip).or_insert((0, now));
        if now.saturating_duration_since(entry.1) > window {
            *entry = (0, now);
        }
        entry.0 += 1;
        if entry.0 < self.config.strikes {
            return false;
        }
        self.strikes.remove(&p.ip);
        self.refused.insert(p.ip, now + self.config.refuse_for);
        if self.struck.len() < MAX_STRUCK {
            self.struck.push(p.ip);
        }
        true
    }

    /// The IPs refused for stalled handshakes since the last call.
    pub fn take_struck(&mut self) -> Vec<IpAddr> {
        std::mem::take(&mut self.struck)
    }

    /// Drops strikes older than their window and refusals past their time, so that the tables
    /// hold only the IPs seen within a window. [`Handshakes::begin`] calls it once a second.
    pub fn gc(&mut self, now: Instant) {
        self.last_gc = Some(now);
        let window = self.config.strike_window;
        self.strikes
            .retain(|_, (_, since)| now.saturating_duration_since(*since) <= window);
        self.refused.retain(|_, until| *until > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(i: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, i])
    }

    fn admitted(b: Begin) -> (u64, Option<u64>) {
        match b {
            Begin::Admitted { id, evicted } => (id, evicted),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_full_table_evicts_the_oldest_silent_then_the_slowest_and_spares_the_young() {
        let t0 = Instant::now();
        let mut h = Handshakes::new(Config::new().with_max_pending(3));
        let (silent, _) = admitted(h.begin(ip(1), t0));
        let (drip, _) = admitted(h.begin(ip(2), t0));
        let (honest, _) = admitted(h.begin(ip(3), t0 + Duration::from_millis(900)));
        // A header sent at once, then a byte a second.
        h.progress(drip, 21);
        h.progress(honest, 300);
        // At 1 s the silent one goes first, though the dripping one is as old.
        let t1 = t0 + Duration::from_secs(1);
        let (new, evicted) = admitted(h.begin(ip(4), t1));
        assert_eq!(evicted, Some(silent));
        assert_eq!(h.pending(), 3);
        // The new one is silent: it goes next, young as it is, before the dripping one.
        let t2 = t1 + Duration::from_millis(50);
        let (newer, evicted) = admitted(h.begin(ip(5), t2));
        assert_eq!(evicted, Some(new));
        // Once it sends, the one that sent 21 bytes in 1.1 s goes; the honest one (300 bytes
        // in 0.2 s) stays.
        h.progress(newer, 60);
        let t3 = t2 + Duration::from_millis(50);
        let (_, evicted) = admitted(h.begin(ip(6), t3));
        assert_eq!(evicted, Some(drip));
        assert!(h.deadline(newer).is_some() && h.deadline(honest).is_some());
        assert_eq!(h.evicted(), 3);
        // A dripping one under its first flight goes first, however young.
        let mut drips = Handshakes::new(Config::new().with_max_pending(2));
        let (old, _) = admitted(drips.begin(ip(1), t0));
        drips.progress(old, 60);
        let (dripping, _) = admitted(drips.begin(ip(2), t0 + Duration::from_millis(10)));
        drips.progress(dripping, 19);
        let (_, evicted) = admitted(drips.begin(ip(3), t0 + Duration::from_millis(20)));
        assert_eq!(evicted, Some(dripping));
        // Everyone past the first flight, within the grace: refused.
        let mut young = Handshakes::new(Config::new().with_max_pending(2));
        for i in 1..=2 {
            let (sending, _) = admitted(young.begin(ip(i), t0));
            young.progress(sending, 20);
        }
        assert_eq!(
            young.begin(ip(3), t0 + Duration::from_millis(499)),
            Begin::Full
        );
    }

    #[test]
    fn three_stalled_handshakes_within_a_minute_refuse_the_ip_for_ten_minutes() {
        let t0 = Instant::now();
        let mut h = Handshakes::new(Config::new());
        let mut now = t0;
        for strike in 1..=3 {
            let (id, _) = admitted(h.begin(ip(9), now));
            h.progress(id, 127);
            now += Duration::from_secs(10);
            assert_eq!(h.deadline(id), Some(now));
            assert_eq!(h.end(id, End::TimedOut, now), strike == 3);
        }
        assert_eq!(
            h.begin(ip(9), now),
            Begin::Refused(now + Duration::from_secs(600))
        );
        assert_eq!(h.refused_ips(now), 1);
        assert_eq!(h.take_struck(), vec![ip(9)]);
        assert!(h.take_struck().is_empty());
        // Others are not.
        admitted(h.begin(ip(10), now));
        // Past the ten minutes, admitted again.
        let later = now + Duration::from_secs(600);
        admitted(h.begin(ip(9), later));
        assert_eq!(h.refused_ips(later), 0);
    }

    #[test]
    fn unvalidated_handshakes_take_slots_and_are_evicted_but_never_strike() {
        let t0 = Instant::now();
        let mut h = Handshakes::new(Config::new().with_max_pending(2));
        let (quic, _) = admitted(h.begin_unvalidated(ip(1), t0));
        let (tcp, _) = admitted(h.begin(ip(2), t0 + Duration::from_millis(1)));
        h.progress(tcp, 60);
        // Full: the QUIC one, silent as far as the table knows, is evicted first.
        let (_, evicted) = admitted(h.begin_unvalidated(ip(3), t0 + Duration::from_millis(2)));
        assert_eq!(evicted, Some(quic));
        // Evicted or timed out any number of times: never a strike.
        let mut spoofed = Handshakes::new(Config::new());
        for k in 0..10 {
            let now = t0 + Duration::from_secs(k);
            let (id, _) = admitted(spoofed.begin_unvalidated(ip(9), now));
            assert!(!spoofed.end(id, End::TimedOut, now));
        }
        assert!(spoofed.take_struck().is_empty());
        // An IP refused for its TCP stalls is refused over QUIC too.
        let mut now = t0;
        for _ in 0..3 {
            let (id, _) = admitted(spoofed.begin(ip(8), now));
            now += Duration::from_secs(10);
            spoofed.end(id, End::TimedOut, now);
        }
        assert!(matches!(
            spoofed.begin_unvalidated(ip(8), now),
            Begin::Refused(_)
        ));
    }

    #[test]
    fn only_stalled_ends_strike_and_strikes_age_out() {
        let t0 = Instant::now();
        let mut h = Handshakes::new(Config::new());
        let mut now = t0;
        // Completed, failed, or timed out with 128 bytes or more: no strike.
        for (end, bytes) in [
            (End::Completed, 0),
            (End::Failed, 0),
            (End::TimedOut, 128),
            (End::Completed, 0),
        ] {
            let (id, _) = admitted(h.begin(ip(7), now));
            h.progress(id, bytes);
            assert!(!h.end(id, end, now));
        }
        // Two strikes, then one more 61 s later: the window restarted, not refused.
        for _ in 0..2 {
            let (id, _) = admitted(h.begin(ip(7), now));
            assert!(!h.end(id, End::TimedOut, now));
        }
        now += Duration::from_secs(61);
        let (id, _) = admitted(h.begin(ip(7), now));
        assert!(!h.end(id, End::TimedOut, now));
        admitted(h.begin(ip(7), now));
        h.gc(now + Duration::from_secs(61));
        assert!(h.strikes.is_empty());
        // Exempt loopback never strikes; other IPs still do.
        let mut exempt = Handshakes::new(Config::new().with_loopback_exempt(true));
        for _ in 0..3 {
            let (id, _) = admitted(exempt.begin(ip(7), now));
            assert!(!exempt.end(id, End::TimedOut, now));
        }
        let other = IpAddr::from([10, 0, 0, 7]);
        let refused: Vec<bool> = (0..3)
            .map(|_| {
                let (id, _) = admitted(exempt.begin(other, now));
                exempt.end(id, End::TimedOut, now)
            })
            .collect();
        assert_eq!(refused, [false, false, true]);
    }
}
