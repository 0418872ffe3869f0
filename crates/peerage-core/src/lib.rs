//! The sans-IO core of Peerage: the peer and connection management logic, with no sockets, no
//! async runtime, no clock reads and no OS randomness.
//!
//! Every time-dependent function takes `now: Instant`; every state machine with a deadline exposes
//! it as `poll_timeout()`; every random choice draws from an RNG the caller injects. The libp2p
//! glue (the `peerage` crate) feeds swarm events in and carries the decisions out, so every rule
//! here is testable by stepping time.
//!
//! The parts:
//!
//! - [`peerstore`]: facts about peers (addresses with TTLs, protocols, latency), as go-libp2p
//!   `core/peerstore`.
//! - [`connmgr`]: tags, protection, decaying tags, watermarks and trimming, as go-libp2p
//!   `BasicConnMgr`, with a hard cap at admission.
//! - [`rcmgr`]: scopes, reservations with priorities, limits in go's JSON format, allowlist and
//!   per-IP and rate limits, as go-libp2p's resource manager.
//! - [`pool`]: connection lifecycle state of points and peers, with Octez's state machines and
//!   reconnection backoff (`P2p_pool`, `P2p_point_state`, `P2p_peer_state`).
//! - [`maintenance`]: the planner that keeps the connection count between its bounds, as Octez
//!   `P2p_maintenance`.
//! - [`node`]: the node machine, which owns a node's pool, maintenance and peer-exchange policy
//!   and decides admission; the libp2p glue and the simulator both drive it.

#![warn(missing_docs)]
// Tests need a starting instant; the library itself never reads the clock (see clippy.toml).
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod addrbook;
pub mod connmgr;
#[doc(hidden)]
pub mod fuzz;
pub mod maintenance;
pub mod node;
pub mod peerstore;
pub mod pool;
pub mod rcmgr;

pub use libp2p_identity::PeerId;
pub use multiaddr::Multiaddr;
