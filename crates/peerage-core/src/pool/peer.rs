//! Peers and their state, as Octez `P2p_peer_state`.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use multiaddr::Multiaddr;

use super::{LogEntry, LogKind, push_log};

/// State of a peer (Octez `P2p_peer_state.t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No established connection.
    Disconnected,
    /// A connection was admitted by the pool; the swarm has not yet reported it established.
    Accepted,
    /// At least one established connection that the pool admitted.
    Running,
}

impl State {
    /// The state's name as in Octez's RPCs: `disconnected`, `accepted`, `running`.
    pub fn name(&self) -> &'static str {
        match self {
            State::Disconnected => "disconnected",
            State::Accepted => "accepted",
            State::Running => "running",
        }
    }
}

/// What is kept of a peer across restarts (Octez's `peers.json` entry): the peer's metadata and
/// history. Times are [`Instant`]s; the peers file converts them to wall-clock times.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// When the pool first learned of the peer.
    pub created: Instant,
    /// Whether the peer is trusted.
    pub trusted: bool,
    /// The point (or remote address) and time of the last failed dial.
    pub last_failed_connection: Option<(Multiaddr, Instant)>,
    /// The last connection refused, by either side.
    pub last_rejected_connection: Option<(Multiaddr, Instant)>,
    /// The last established connection.
    pub last_established_connection: Option<(Multiaddr, Instant)>,
    /// The last disconnection.
    pub last_disconnection: Option<(Multiaddr, Instant)>,
    /// The last events, oldest first, at most [`LOG_SIZE`](super::LOG_SIZE).
    pub events: VecDeque<LogEntry<Multiaddr>>,
}

impl Record {
    /// A record of a peer first seen at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            created: now,
            trusted: false,
            last_failed_connection: None,
            last_rejected_connection: None,
            last_established_connection: None,
            last_disconnection: None,
            events: VecDeque::new(),
        }
    }
}

/// What the pool knows of a peer (Octez `P2p_peer_state.Info.t`), plus what the score function
/// is fed.
///
/// Peers have no reconnection delay; only points do (as Octez).
#[derive(Debug, Clone)]
pub struct Info {
    pub(crate) state: State,
    pub(crate) connections: usize,
    /// Admitted connections not yet established.
    pub(crate) accepted: usize,
    pub(crate) record: Record,
    /// The remote address of the current connection, else of the last one.
    pub(crate) remote: Option<Multiaddr>,
    pub(crate) latency: Option<Duration>,
    pub(crate) tag_value: i64,
    /// Time spent running before the current connection.
    pub(crate) uptime: Duration,
    pub(crate) running_since: Option<Instant>,
    /// Dials and connections that failed or were refused since the last established one.
    pub(crate) failures: u32,
}

impl Info {
    pub(crate) fn new(record: Record) -> Self {
        Self {
            state: State::Disconnected,
            connections: 0,
            accepted: 0,
            record,
            remote: None,
            latency: None,
            tag_value: 0,
            uptime: Duration::ZERO,
            running_since: None,
            failures: 0,
        }
    }
    pub(crate) fn log(&mut self, kind: LogKind, point: Option<&Multiaddr>, now: Instant) {
        push_log(&mut self.record.events, kind, point.cloned(), None, now);
    }
    /// The peer's state.
    pub fn state(&self) -> State {
        self.state
    }
    /// Number of established connections with the peer that the pool admitted (libp2p allows
    /// several; the pool counts the peer once).
    pub fn connections(&self) -> usize {
        self.connections
    }
    /// Whether the peer is trusted.
    pub fn is_trusted(&self) -> bool {
        self.record.trusted
    }
    /// What is kept across restarts.
    pub fn record(&self) -> &Record {
        &self.record
    }
    /// When the pool first learned of the peer.
    pub fn created(&self) -> Instant {
        self.record.created
    }
    /// The point and time of the last failed dial of the peer.
    pub fn last_failed_connection(&self) -> Option<&(Multiaddr, Instant)> {
        self.record.last_failed_connection.as_ref()
    }
    /// The address and time of the last connection refused by either side (a nack).
    pub fn last_rejected_connection(&self) -> Option<&(Multiaddr, Instant)> {
        self.record.last_rejected_connection.as_ref()
    }
    /// The address and time of the last established connection.
    pub fn last_established_connection(&self) -> Option<&(Multiaddr, Instant)> {
        self.record.last_established_connection.as_ref()
    }
    /// The address and time of the last disconnection.
    pub fn last_disconnection(&self) -> Option<&(Multiaddr, Instant)> {
        self.record.last_disconnection.as_ref()
    }
    /// The remote address of the current connection, else of the last one.
    pub fn remote(&self) -> Option<&Multiaddr> {
        self.remote.as_ref()
    }
    /// The peer's last events, oldest first (Octez's peer log).
    pub fn events(&self) -> impl ExactSizeIterator<Item = &LogEntry<Multiaddr>> {
        self.record.events.iter()
    }
    /// Most recent of the last rejected, established and closed connections (Octez
    /// `last_seen`).
    pub fn last_seen(&self) -> Option<Instant> {
        let r = &self.record;
        let t = |c: &Option<(Multiaddr, Instant)>| c.as_ref().map(|(_, t)| *t);
        t(&r.last_rejected_connection)
            .max(t(&r.last_established_connection))
            .max(t(&r.last_disconnection))
    }
    /// Most recent of the last failed, rejected and closed connections (Octez `last_miss`).
    pub fn last_miss(&self) -> Option<Instant> {
        let r = &self.record;
        let t = |c: &Option<(Multiaddr, Instant)>| c.as_ref().map(|(_, t)| *t);
        t(&r.last_failed_connection)
            .max(t(&r.last_rejected_connection))
            .max(t(&r.last_disconnection))
    }
    /// Since when the peer has been running, if it is.
    pub fn running_since(&self) -> Option<Instant> {
        self.running_since
    }
    /// Total time the peer has been running, this connection included.
    pub fn uptime(&self, now: Instant) -> Duration {
        self.uptime
            + self
                .running_since
                .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
    }
    /// The peer's latency (ping EWMA), as last fed with
    /// [`Pool::set_latency`](super::Pool::set_latency).
    pub fn latency(&self) -> Option<Duration> {
        self.latency
    }
    /// The total value of the peer's connection-manager tags, as last fed with
    /// [`Pool::set_tag_value`](super::Pool::set_tag_value).
    pub fn tag_value(&self) -> i64 {
        self.tag_value
    }
    /// Dials and connections that failed or were refused since the last established one.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}
