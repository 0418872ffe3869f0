//! Peers and their state, as Octez `P2p_peer_state` (`spec/tezos_p2p.md` §3).

use std::time::Instant;

/// State of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No established connection.
    Disconnected,
    /// At least one established connection that the pool admitted.
    Running,
}

impl State {
    /// The state's name as in Octez's RPCs: `disconnected`, `running`.
    pub fn name(&self) -> &'static str {
        match self {
            State::Disconnected => "disconnected",
            State::Running => "running",
        }
    }
}

/// What the pool knows of a peer (Octez `P2p_peer_state.Info.t`).
///
/// Peers have no reconnection delay; only points do (as Octez).
#[derive(Debug, Clone)]
pub struct Info {
    pub(crate) state: State,
    pub(crate) connections: usize,
    pub(crate) trusted: bool,
    pub(crate) created: Instant,
    pub(crate) last_established_connection: Option<Instant>,
    pub(crate) last_rejected_connection: Option<Instant>,
    pub(crate) last_disconnection: Option<Instant>,
}

impl Info {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            state: State::Disconnected,
            connections: 0,
            trusted: false,
            created: now,
            last_established_connection: None,
            last_rejected_connection: None,
            last_disconnection: None,
        }
    }
    /// The peer's state.
    pub fn state(&self) -> State {
        self.state
    }
    /// Number of admitted connections with the peer (libp2p allows several; the pool counts the
    /// peer once).
    pub fn connections(&self) -> usize {
        self.connections
    }
    /// Whether the peer is trusted.
    pub fn is_trusted(&self) -> bool {
        self.trusted
    }
    /// When the pool first learned of the peer.
    pub fn created(&self) -> Instant {
        self.created
    }
    /// When a connection with the peer was last established.
    pub fn last_established_connection(&self) -> Option<Instant> {
        self.last_established_connection
    }
    /// When a connection from the peer was last refused because the node was full (nacked).
    pub fn last_rejected_connection(&self) -> Option<Instant> {
        self.last_rejected_connection
    }
    /// When the peer's last connection closed.
    pub fn last_disconnection(&self) -> Option<Instant> {
        self.last_disconnection
    }
    /// Most recent of the last established connection and the last disconnection.
    pub fn last_seen(&self) -> Option<Instant> {
        self.last_established_connection
            .max(self.last_disconnection)
            .max(self.last_rejected_connection)
    }
}
