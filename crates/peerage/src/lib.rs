//! Peer and connection management for rust-libp2p.
//!
//! Peerage brings to rust-libp2p the parts go-libp2p and Octez have: a peerstore, a pool of
//! points and peers with Octez's state machines and backoff, and a maintenance that keeps the
//! connection count between its bounds by dialing candidates, closing extras and asking peers for
//! points. The logic lives in the sans-IO [`peerage_core`] (re-exported here); this crate drives
//! it from swarm events.
//!
//! ## Usage
//!
//! Add [`Behaviour`] to a swarm. It brings its own identify ([`identify`]), ping and
//! peer-exchange ([`pex`]) protocols, and keeps connections alive until its maintenance (or the
//! application) closes them. An application that runs its own identify or ping turns Peerage's
//! off ([`Config::without_identify`], [`Config::without_ping`]) and hands their results to
//! [`Behaviour::identified`] and [`Behaviour::pinged`]: two identify behaviours in one swarm
//! would both answer `/ipfs/id/1.0.0`, and which one a remote hears would depend on the order
//! of the struct's fields.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use libp2p::{noise, tcp, yamux};
//! use peerage::maintenance::Bounds;
//!
//! let mut swarm = libp2p::SwarmBuilder::with_new_identity()
//!     .with_tokio()
//!     .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)?
//!     .with_behaviour(|key| {
//!         let config = peerage::Config::new().with_bounds(Bounds::from_connections(6));
//!         peerage::Behaviour::new(key, config)
//!     })?
//!     .build();
//! swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
//! swarm
//!     .behaviour_mut()
//!     .add_trusted_point(&"/ip4/127.0.0.1/tcp/9732".parse()?)?;
//! // Drive the swarm; the behaviour dials, closes and exchanges points by itself.
//! # Ok(()) }
//! ```
//!
//! ## Cargo features
//!
//! All on by default (the `peerage` node uses them all); a library that wants less turns the
//! defaults off and names what it uses:
//!
//! | feature | what it adds | what it pulls in |
//! |---|---|---|
//! | `store` | `peers_file`: the pool's peers on disk, Octez's `peers.json` | `peerage-store` (redb) |
//! | `rcmgr` | `rcmgr`: the resource manager on the swarm (admission, stream limits in the muxer, a TCP transport with both, limits scaled to the machine) and `Config::with_resource_manager` | sysinfo, rlimit; libp2p's `tcp`, `yamux`, `tokio` |
//! | `metrics` | `register_metrics` of the connection and resource managers, `Config::with_metrics` | prometheus-client, libp2p-metrics (and libp2p-identify, for its event type) |
//! | `quic` | QUIC beside TCP in `rcmgr::transport` (turns `rcmgr` on) | libp2p's `quic` (quinn, rustls) |
//!
//! Without any, the crate is the behaviour (pool, maintenance, peer exchange, connection
//! manager, peerstore in memory, identify) over libp2p's `ping` and `request-response`, and
//! `cargo tree -p peerage --no-default-features` names neither quinn nor redb nor sysinfo.
//!
//! ## Discrepancies with the references
//!
//! - Octez's `Nack` becomes a connection that is accepted, answered one request for points, and
//!   closed: libp2p has no handshake-level refusal that can carry a list of points.
//! - Octez advertises `(ip, port)` points; [`pex`] advertises multiaddrs, with `/p2p/<id>` when
//!   the peer is known, so dials can check who answers, and the answering node's signed peer
//!   record, so that its addresses are certified.
//! - Identify is Peerage's own ([`identify`]), not libp2p-identify 0.48, which signs and reads
//!   peer records only in its legacy `libp2p-routing-state` domain and refuses messages over
//!   4 KiB. Ours speaks the standard `libp2p-peer-record` records go and js peers send and
//!   verify, so their addresses are certified in the peerstore, and ours in theirs. Unlike go,
//!   which verifies the record and keeps only its addresses (go-libp2p GH#2325), the peerstore
//!   keeps the record, as [`pex`] answers carry it.

#![warn(missing_docs)]

mod acl;
mod behaviour;
mod config;
mod connections;
pub mod connmgr;
mod event;
#[doc(hidden)]
pub mod fuzz;
pub mod identify;
mod inner;
mod keep_alive;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "store")]
pub mod peers_file;
pub mod pex;
#[cfg(feature = "rcmgr")]
pub mod rcmgr;
#[cfg(feature = "rcmgr")]
mod streams;
mod timer;

pub use peerage_core::{
    PeerId, addrbook, maintenance,
    node::{self, AGENT_VERSION, PROTOCOL_VERSION, TooManyConnections},
    peerstore, pool,
};

pub use self::{
    behaviour::{Behaviour, SystemClock, TRUSTED_TAG},
    config::Config,
    connections::ConnectionView,
    event::Event,
};

/// The README's example, compiled as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
