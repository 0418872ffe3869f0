//! Points: dialable addresses, their state machine and reconnection backoff, as Octez
//! `P2p_point_state`.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use multiaddr::{Multiaddr, Protocol};
use rand::Rng;

use super::{LogEntry, LogKind, push_log};
use crate::PeerId;

/// Why a multiaddr cannot be a point.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PointError {
    /// The address does not start with an IP or DNS component.
    #[error("point {0} is not dialable: it must start with /ip4, /ip6, /dns, /dns4 or /dns6")]
    NoHost(Multiaddr),
    /// The address has no TCP or UDP port after its host.
    #[error("point {0} is not dialable: it has no /tcp or /udp port")]
    NoPort(Multiaddr),
    /// The address names the unspecified IP (`0.0.0.0`, `::`) or port 0.
    #[error("point {0} is not dialable: unspecified IP address or port 0")]
    Unspecified(Multiaddr),
}

/// Whether a peer connected from `remote` may tell us about `point`, by their scopes, as
/// go-libp2p identify's `filterAddrs` (`p2p/protocol/identify/id.go`) does: from a public
/// or relayed address, public points only (and host names and relayed addresses); from a
/// private one
/// (RFC 1918, link-local, CGNAT, IPv6 ULA), any but loopback and unroutable ones (multicast,
/// broadcast, documentation ranges); from a loopback or non-IP address (a devnet, a test), any
/// point. So a node on the internet cannot make us dial into our own machine or our LAN, nor
/// fill our tables with addresses nobody can reach. Scopes are the
/// [address book's groups](crate::addrbook::Group).
pub fn in_scope(point: &Multiaddr, remote: &Multiaddr) -> bool {
    use crate::addrbook::{Group, Grouping};
    let grouping = Grouping::new();
    let from = grouping.group(remote);
    let to = grouping.group(point);
    match from {
        Group::Ipv4(_) | Group::Ipv6(_) | Group::As(_) | Group::Relay | Group::Dns => {
            !matches!(to, Group::Loopback | Group::Private | Group::Unroutable)
        }
        Group::Private => !matches!(to, Group::Loopback | Group::Unroutable),
        Group::Loopback | Group::Unroutable => true,
    }
}

/// Splits `addr` into a point (the address without its `/p2p` suffix) and the peer ID of that
/// suffix, checking that the point is dialable: a host (`/ip4`, `/ip6`, `/dns*`) followed by a
/// non-zero `/tcp` or `/udp` port, and no unspecified IP.
///
/// # Errors
///
/// A [`PointError`] naming the address and what is missing.
pub fn split(addr: &Multiaddr) -> Result<(Multiaddr, Option<PeerId>), PointError> {
    let mut point = addr.clone();
    let mut peer = None;
    if let Some(Protocol::P2p(id)) = point.iter().last() {
        peer = Some(id);
        point.pop();
    }
    let mut iter = point.iter();
    match iter.next() {
        Some(Protocol::Ip4(ip)) if ip.is_unspecified() => {
            return Err(PointError::Unspecified(addr.clone()));
        }
        Some(Protocol::Ip6(ip)) if ip.is_unspecified() => {
            return Err(PointError::Unspecified(addr.clone()));
        }
        Some(
            Protocol::Ip4(_)
            | Protocol::Ip6(_)
            | Protocol::Dns(_)
            | Protocol::Dns4(_)
            | Protocol::Dns6(_),
        ) => {}
        _ => return Err(PointError::NoHost(addr.clone())),
    }
    match iter.next() {
        Some(Protocol::Tcp(0) | Protocol::Udp(0)) => Err(PointError::Unspecified(addr.clone())),
        Some(Protocol::Tcp(_) | Protocol::Udp(_)) => Ok((point, peer)),
        _ => Err(PointError::NoPort(addr.clone())),
    }
}

/// The reconnection backoff of points, as Octez `point_reconnection_config.ml`, plus jitter.
///
/// After a failed dial the point waits for the current delay, then the delay is multiplied by
/// `factor` up to `increase_cap`. After a disconnection from a running connection the delay is
/// reset to `initial_delay` and the point waits `disconnection_delay`.
///
/// > **Note**: Octez has no jitter, so nodes that lost the same peer at the same time redial it
/// > in lockstep. Each wait here is scaled by a random factor in `1 ± jitter`; the stored delay
/// > (and so the growth sequence 1, 1.2, 1.44 … s) is Octez's.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    factor: f64,
    initial_delay: Duration,
    disconnection_delay: Duration,
    increase_cap: Duration,
    jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            factor: 1.2,
            initial_delay: Duration::from_secs(1),
            disconnection_delay: Duration::from_secs(60),
            increase_cap: Duration::from_secs(2 * 24 * 3600),
            jitter: 0.1,
        }
    }
}

impl Backoff {
    /// Octez's defaults plus a 10% jitter; see the setters.
    pub fn new() -> Self {
        Self::default()
    }
    /// Growth factor of the delay after each failed dial. `1.2` by default.
    ///
    /// # Panics
    ///
    /// If `factor` is below 1 or not finite.
    pub fn with_factor(mut self, factor: f64) -> Self {
        assert!(
            factor.is_finite() && factor >= 1.0,
            "backoff factor must be >= 1"
        );
        self.factor = factor;
        self
    }
    /// Delay after the first failed dial. 1 s by default.
    pub fn with_initial_delay(mut self, d: Duration) -> Self {
        self.initial_delay = d;
        self
    }
    /// Wait after a running connection to the point ends. 60 s by default.
    pub fn with_disconnection_delay(mut self, d: Duration) -> Self {
        self.disconnection_delay = d;
        self
    }
    /// Cap of the growing delay. 2 days (172 800 s) by default.
    pub fn with_increase_cap(mut self, d: Duration) -> Self {
        self.increase_cap = d;
        self
    }
    /// Relative jitter of each wait, in `0.0..1.0`: a wait `d` becomes a uniform draw in
    /// `d * (1 - jitter) ..= d * (1 + jitter)`. `0.1` by default; `0.0` gives Octez's exact waits.
    ///
    /// # Panics
    ///
    /// If `jitter` is not in `0.0..1.0`.
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        assert!((0.0..1.0).contains(&jitter), "jitter must be in 0.0..1.0");
        self.jitter = jitter;
        self
    }

    fn jittered(&self, d: Duration, rng: &mut impl Rng) -> Duration {
        if self.jitter == 0.0 {
            return d;
        }
        d.mul_f64(rng.random_range(1.0 - self.jitter..=1.0 + self.jitter))
    }
}

/// Reconnection state of a point (Octez `reconnection_info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconnection {
    /// The delay the next failure will wait (before jitter).
    pub delay: Duration,
    /// The point must not be dialed by the maintenance until this instant (inclusive).
    pub end: Instant,
}

/// State of a point (Octez `P2p_point_state.t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No connection and no dial in progress. The initial state.
    Disconnected,
    /// We are dialing the point.
    Requested,
    /// The dial reached this peer and the pool admitted it; the swarm has not yet reported
    /// the connection established (other behaviours may still refuse it).
    Accepted {
        /// The peer at the point.
        peer_id: PeerId,
    },
    /// A connection to the point is established with this peer.
    Running {
        /// The peer at the point.
        peer_id: PeerId,
    },
}

impl State {
    /// The state's name as in Octez's RPCs: `disconnected`, `requested`, `accepted`,
    /// `running`.
    pub fn name(&self) -> &'static str {
        match self {
            State::Disconnected => "disconnected",
            State::Requested => "requested",
            State::Accepted { .. } => "accepted",
            State::Running { .. } => "running",
        }
    }
    /// The peer at the point, when accepted or running.
    pub fn peer_id(&self) -> Option<PeerId> {
        match self {
            State::Accepted { peer_id } | State::Running { peer_id } => Some(*peer_id),
            State::Disconnected | State::Requested => None,
        }
    }
}

/// What the pool knows of a point (Octez `P2p_point_state.Info.t`).
///
/// Most known points are only heard of (advertised, never dialed), so what only a dialed or
/// configured point has (its expected peer, its connection history, backoff and log) is kept
/// apart, allocated on first use: a point heard of takes 192 bytes instead of about 650 (on 64-bit
/// targets).
#[derive(Debug, Clone)]
pub struct Info {
    pub(crate) state: State,
    pub(crate) trusted: bool,
    pub(crate) known_public: bool,
    pub(crate) last_peer_id: Option<PeerId>,
    history: Option<Box<History>>,
}

/// What only a dialed or configured point has.
#[derive(Debug, Clone, Default)]
struct History {
    expected_peer_id: Option<PeerId>,
    last_failed_connection: Option<Instant>,
    last_rejected_connection: Option<(PeerId, Instant)>,
    last_established_connection: Option<(PeerId, Instant)>,
    last_disconnection: Option<(PeerId, Instant)>,
    reconnection: Option<Reconnection>,
    log: VecDeque<LogEntry<PeerId>>,
}

impl Info {
    pub(crate) fn new() -> Self {
        Self {
            state: State::Disconnected,
            trusted: false,
            known_public: false,
            last_peer_id: None,
            history: None,
        }
    }

    fn history(&mut self) -> &mut History {
        self.history.get_or_insert_with(Default::default)
    }

    fn recorded<T>(&self, f: impl FnOnce(&History) -> Option<T>) -> Option<T> {
        self.history.as_deref().and_then(f)
    }

    /// Sets (or clears) the peer ID the point must have.
    pub(crate) fn set_expected_peer_id(&mut self, peer: Option<PeerId>) {
        if peer.is_some() || self.history.is_some() {
            self.history().expected_peer_id = peer;
        }
    }

    pub(crate) fn log(&mut self, kind: LogKind, peer: Option<PeerId>, now: Instant) {
        push_log(&mut self.history().log, kind, peer, None, now);
    }

    /// The point's last events, oldest first, at most [`LOG_SIZE`](super::LOG_SIZE) (Octez's
    /// point log).
    pub fn events(&self) -> impl ExactSizeIterator<Item = &LogEntry<PeerId>> {
        const NONE: &VecDeque<LogEntry<PeerId>> = &VecDeque::new();
        self.history.as_deref().map_or(NONE, |h| &h.log).iter()
    }

    /// The point's state.
    pub fn state(&self) -> State {
        self.state
    }
    /// Whether the point is trusted (never collected; dialed in private mode).
    pub fn is_trusted(&self) -> bool {
        self.trusted
    }
    /// The peer ID the point must have, if one was set (bootstrap `/p2p/<id>`).
    pub fn expected_peer_id(&self) -> Option<PeerId> {
        self.recorded(|h| h.expected_peer_id)
    }
    /// The peer last seen at, or advertised for, this point.
    pub fn last_peer_id(&self) -> Option<PeerId> {
        self.last_peer_id
    }
    /// The peer ID to dial the point with: the expected one, else the last one seen.
    pub fn dial_peer_id(&self) -> Option<PeerId> {
        self.dial_peer_id_ref().copied()
    }
    /// [`Info::dial_peer_id`] by reference: a `PeerId` is 80 bytes.
    pub(crate) fn dial_peer_id_ref(&self) -> Option<&PeerId> {
        self.history
            .as_deref()
            .and_then(|h| h.expected_peer_id.as_ref())
            .or(self.last_peer_id.as_ref())
    }
    /// Whether the point may be advertised to others: its peer, over a live connection,
    /// announced it as a listen address and speaks the peer exchange (it is not a private
    /// node) (Octez `known_public`, set from the remote's `private_node` after each handshake).
    pub fn is_known_public(&self) -> bool {
        self.known_public
    }
    /// When a dial of the point last failed.
    pub fn last_failed_connection(&self) -> Option<Instant> {
        self.recorded(|h| h.last_failed_connection)
    }
    /// The peer and time of the last connection the peer refused (nacked).
    pub fn last_rejected_connection(&self) -> Option<(PeerId, Instant)> {
        self.recorded(|h| h.last_rejected_connection)
    }
    /// The peer and time of the last established connection.
    pub fn last_established_connection(&self) -> Option<(PeerId, Instant)> {
        self.recorded(|h| h.last_established_connection)
    }
    /// The peer and time of the last disconnection.
    pub fn last_disconnection(&self) -> Option<(PeerId, Instant)> {
        self.recorded(|h| h.last_disconnection)
    }
    /// The reconnection backoff, if any.
    pub fn reconnection(&self) -> Option<Reconnection> {
        self.recorded(|h| h.reconnection)
    }
    /// Most recent of the last rejected connection, the last established connection and the
    /// last disconnection (Octez `last_seen`).
    pub fn last_seen(&self) -> Option<Instant> {
        self.recorded(|h| {
            let rej = h.last_rejected_connection.map(|(_, t)| t);
            let est = h.last_established_connection.map(|(_, t)| t);
            let dis = h.last_disconnection.map(|(_, t)| t);
            rej.max(est).max(dis)
        })
    }
    /// Most recent of the last failed dial, the last rejected connection and the last
    /// disconnection (Octez `last_miss`).
    pub fn last_miss(&self) -> Option<Instant> {
        self.recorded(|h| {
            let rej = h.last_rejected_connection.map(|(_, t)| t);
            let dis = h.last_disconnection.map(|(_, t)| t);
            h.last_failed_connection.max(rej).max(dis)
        })
    }
    /// Whether the backoff still forbids the maintenance to dial (Octez: `now <= end_time`).
    pub fn cannot_reconnect_yet(&self, now: Instant) -> bool {
        self.history
            .as_deref()
            .and_then(|h| h.reconnection)
            .is_some_and(|r| now <= r.end)
    }

    /// `Disconnected -> Requested`. Returns whether the transition happened.
    pub(crate) fn set_requested(&mut self) -> bool {
        if self.state != State::Disconnected {
            return false;
        }
        self.state = State::Requested;
        true
    }

    /// `Requested | Disconnected -> Accepted`.
    pub(crate) fn set_accepted(&mut self, peer_id: PeerId) {
        if matches!(self.state, State::Requested | State::Disconnected) {
            self.state = State::Accepted { peer_id };
        }
    }

    /// `Disconnected | Requested | Accepted -> Running`.
    pub(crate) fn set_running(&mut self, peer_id: PeerId, now: Instant) {
        self.state = State::Running { peer_id };
        self.last_peer_id = Some(peer_id);
        self.history().last_established_connection = Some((peer_id, now));
        self.log(LogKind::ConnectionEstablished, Some(peer_id), now);
    }

    /// `Requested | Accepted -> Disconnected` after a failed or refused dial: records the
    /// failure and grows the backoff. Every failure path of a dial ends here (Octez's
    /// stuck-in-`Requested` bug, §13).
    pub(crate) fn set_failed(&mut self, backoff: &Backoff, now: Instant, rng: &mut impl Rng) {
        let peer = self.state.peer_id();
        if let Some(peer_id) = peer {
            self.history().last_rejected_connection = Some((peer_id, now));
        }
        self.state = State::Disconnected;
        self.history().last_failed_connection = Some(now);
        self.log(LogKind::RequestRejected, peer, now);
        self.grow_backoff(backoff, now, rng);
    }

    /// `Running -> Disconnected` after the peer refused the connection (nacked it): records the
    /// rejection and grows the backoff, as Octez's `Accepted -> Disconnected`.
    pub(crate) fn set_rejected(&mut self, backoff: &Backoff, now: Instant, rng: &mut impl Rng) {
        let peer = self.state.peer_id();
        if let Some(peer_id) = peer {
            self.history().last_rejected_connection = Some((peer_id, now));
        }
        self.state = State::Disconnected;
        self.log(LogKind::RequestRejected, peer, now);
        self.grow_backoff(backoff, now, rng);
    }

    fn grow_backoff(&mut self, backoff: &Backoff, now: Instant, rng: &mut impl Rng) {
        let delay = self
            .reconnection()
            .map_or(backoff.initial_delay, |r| r.delay);
        let next = delay.mul_f64(backoff.factor).min(backoff.increase_cap);
        self.history().reconnection = Some(Reconnection {
            delay: next,
            end: now + backoff.jittered(delay, rng),
        });
    }

    /// `Requested | Accepted -> Disconnected` without a failure: the dial was not attempted.
    pub(crate) fn set_aborted(&mut self) {
        if matches!(self.state, State::Requested | State::Accepted { .. }) {
            self.state = State::Disconnected;
        }
    }

    /// `Running -> Disconnected`: records the disconnection (by the remote if
    /// `by_remote`) and resets the backoff.
    pub(crate) fn set_disconnected(
        &mut self,
        backoff: &Backoff,
        by_remote: bool,
        now: Instant,
        rng: &mut impl Rng,
    ) {
        let peer = self.state.peer_id();
        if let Some(peer_id) = peer {
            self.history().last_disconnection = Some((peer_id, now));
        }
        let kind = if by_remote {
            LogKind::ExternalDisconnection
        } else {
            LogKind::Disconnection
        };
        self.log(kind, peer, now);
        self.state = State::Disconnected;
        self.history().reconnection = Some(Reconnection {
            delay: backoff.initial_delay,
            end: now + backoff.jittered(backoff.disconnection_delay, rng),
        });
    }
}

#[cfg(test)]
mod tests {
    use rand::{SeedableRng, rngs::StdRng};

    use super::*;

    fn ma(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    /// A point heard of stays small: 10,000 simulated nodes hold about 350 points each.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_point_heard_of_is_compact() {
        assert!(
            std::mem::size_of::<Info>() <= 192,
            "{}",
            std::mem::size_of::<Info>()
        );
        let mut info = Info::new();
        assert!(info.history.is_none());
        info.set_expected_peer_id(None);
        assert!(info.history.is_none(), "clearing allocates nothing");
        let peer = PeerId::random();
        info.set_expected_peer_id(Some(peer));
        assert_eq!(info.expected_peer_id(), Some(peer));
        assert_eq!(info.dial_peer_id(), Some(peer));
    }

    #[test]
    fn split_strips_p2p_and_checks_dialability() {
        let peer = PeerId::random();
        let (point, id) = split(&ma(&format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}"))).unwrap();
        assert_eq!(point, ma("/ip4/127.0.0.1/tcp/4001"));
        assert_eq!(id, Some(peer));
        assert!(split(&ma("/ip4/1.2.3.4/udp/9/quic-v1")).is_ok());
        assert!(split(&ma("/dns4/example.org/tcp/1")).is_ok());
        assert_eq!(
            split(&ma("/ip4/0.0.0.0/tcp/4001")),
            Err(PointError::Unspecified(ma("/ip4/0.0.0.0/tcp/4001")))
        );
        assert!(matches!(
            split(&ma("/ip4/1.2.3.4/tcp/0")),
            Err(PointError::Unspecified(_))
        ));
        assert!(matches!(
            split(&ma("/ip4/1.2.3.4")),
            Err(PointError::NoPort(_))
        ));
        assert!(matches!(
            split(&ma("/memory/5")),
            Err(PointError::NoHost(_))
        ));
        assert!(matches!(split(&ma("")), Err(PointError::NoHost(_))));
    }

    /// Octez: "the waits run 1, 1.2, 1.44, … s" and the cap of 2 days is reached after 67
    /// consecutive failures (§2).
    #[test]
    fn backoff_grows_as_octez_without_jitter() {
        let backoff = Backoff::new().with_jitter(0.0);
        let mut rng = StdRng::seed_from_u64(1);
        let mut now = Instant::now();
        let mut info = Info::new();
        let mut waits = Vec::new();
        for _ in 0..70 {
            assert!(info.set_requested());
            info.set_failed(&backoff, now, &mut rng);
            assert_eq!(info.state(), State::Disconnected);
            let end = info.reconnection().unwrap().end;
            waits.push(end - now);
            assert!(info.cannot_reconnect_yet(end), "now <= end forbids");
            assert!(!info.cannot_reconnect_yet(end + Duration::from_nanos(1)));
            now = end + Duration::from_millis(1);
        }
        assert_eq!(waits[0], Duration::from_secs(1));
        assert_eq!(waits[1], Duration::from_secs_f64(1.2));
        assert!((waits[2].as_secs_f64() - 1.44).abs() < 1e-9);
        let cap = Duration::from_secs(172_800);
        let first_capped = waits.iter().position(|w| *w == cap).unwrap();
        assert_eq!(first_capped, 67, "cap reached after 67 failures");
        // "about 11.7 days in total" of waiting before the first capped wait.
        let total: Duration = waits[..first_capped].iter().sum();
        let days = total.as_secs_f64() / 86_400.0;
        assert!((11.6..11.8).contains(&days), "total {days} days");
    }

    #[test]
    fn disconnection_resets_delay_and_waits_disconnection_delay() {
        let backoff = Backoff::new().with_jitter(0.0);
        let mut rng = StdRng::seed_from_u64(1);
        let now = Instant::now();
        let peer = PeerId::random();
        let mut info = Info::new();
        for _ in 0..5 {
            info.set_requested();
            info.set_failed(&backoff, now, &mut rng);
        }
        info.set_requested();
        info.set_running(peer, now);
        assert_eq!(info.state(), State::Running { peer_id: peer });
        info.set_disconnected(&backoff, false, now, &mut rng);
        let r = info.reconnection().unwrap();
        assert_eq!(r.delay, Duration::from_secs(1));
        assert_eq!(r.end, now + Duration::from_secs(60));
        assert_eq!(info.last_disconnection(), Some((peer, now)));
        assert_eq!(info.last_miss(), Some(now));
    }

    #[test]
    fn rejection_grows_backoff_like_a_failure() {
        let backoff = Backoff::new().with_jitter(0.0);
        let mut rng = StdRng::seed_from_u64(1);
        let now = Instant::now();
        let peer = PeerId::random();
        let mut info = Info::new();
        info.set_requested();
        info.set_running(peer, now);
        info.set_rejected(&backoff, now, &mut rng);
        assert_eq!(info.state(), State::Disconnected);
        assert_eq!(info.last_rejected_connection(), Some((peer, now)));
        assert_eq!(info.last_miss(), Some(now));
        let r = info.reconnection().unwrap();
        assert_eq!(
            r.end,
            now + Duration::from_secs(1),
            "1 s, not the 60 s of a disconnection"
        );
        assert_eq!(r.delay, Duration::from_secs_f64(1.2));
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let backoff = Backoff::new().with_jitter(0.1);
        let mut rng = StdRng::seed_from_u64(7);
        let now = Instant::now();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let mut info = Info::new();
            info.set_requested();
            info.set_failed(&backoff, now, &mut rng);
            let wait = info.reconnection().unwrap().end - now;
            assert!(wait >= Duration::from_millis(900) && wait <= Duration::from_millis(1100));
            seen.insert(wait);
        }
        assert!(seen.len() > 100, "waits are spread, not constant");
    }

    #[test]
    fn requested_only_from_disconnected() {
        let mut info = Info::new();
        assert!(info.set_requested());
        assert!(!info.set_requested());
        info.set_aborted();
        assert_eq!(info.state(), State::Disconnected);
        assert_eq!(info.last_failed_connection(), None);
    }
}
