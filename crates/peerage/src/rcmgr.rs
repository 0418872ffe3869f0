//! The resource manager on a swarm: admission of connections ([`Behaviour`]), stream limits in
//! the muxer ([`Muxer`]), a transport with both ([`transport`]), limits scaled to the machine
//! ([`auto_scale`]) and go's Prometheus metrics (`register_metrics`, with the `metrics` feature).
//! With the `rcmgr` feature.
//!
//! The accounting itself is [`peerage_core::rcmgr`], re-exported here.
//!
//! ## Wiring
//!
//! - **Connections**: [`Behaviour`] opens a connection scope in
//!   `handle_pending_inbound_connection` (rate limit, per-IP limit, transient, FD) and attaches it
//!   to the peer in `handle_established_*_connection` (peer scope); outbound connections are
//!   opened and attached when established. It keeps the scopes in a [`Connections`], through
//!   which `peerage::Behaviour`'s node machine admits connections too (in its own order, with
//!   the pool's and the connection manager's checks). Refusals deny the connection with a
//!   [`rcmgr::Error`](Error) that `ConnectionDenied::downcast` gives back. The scope is released
//!   when the connection closes or fails.
//! - **Streams**: [`Muxer`] wraps a connection's muxer. Each stream opens a scope in the peer and
//!   system scopes and reserves its receive window (256 KiB, go-yamux's `initialStreamWindow`)
//!   in the peer scope at priority [`Priority::ALWAYS`] (go-yamux takes a span of the peer
//!   scope); an inbound stream beyond the limits is reset, an outbound one fails with the error.
//!   The connection and the other streams are untouched (go-yamux tears down the whole session
//!   when a window reservation fails).
//! - **Protocols and services of streams**: the muxer reads each stream's multistream-select
//!   negotiation as its bytes go by ([`multistream::Sniffer`]; nothing is changed, buffered or
//!   delayed) and, once it names the protocol, moves the stream into the protocol and
//!   protocol-peer scopes and, if [`Config::with_service`] names one, the service and
//!   service-peer scopes ([`StreamScope::sniffed`]; go calls `SetProtocol` after negotiating and
//!   each service calls `SetService`). A stream we propose lazily (rust-libp2p's `V1Lazy`) is
//!   charged when proposed and released if the remote answers `na`; an inbound stream is
//!   charged when we accept it, so a remote never names a scope. A refusal resets that stream
//!   only, and is counted in `libp2p_rcmgr_blocked_resources` with its protocol. A negotiation
//!   past go-multistream's bounds (names over 1,024 bytes, more than 8 proposals) leaves the
//!   stream in its peer scope, counted in [`Stat::unattributed_streams`].
//! - **Stream counts**: each connection's open streams are counted
//!   ([`ResourceManager::stream_counter`]) and `peerage::Behaviour` hands them to the node
//!   machine, which passes them to the connection manager: trims close peers without streams
//!   first among equals, as go's.
//! - **Services and protocols** also reserve memory through [`ResourceManager::view_service`],
//!   [`ResourceManager::view_protocol`] and spans.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use futures::{AsyncRead, AsyncWrite, ready};
use libp2p::{
    Multiaddr, PeerId, Transport,
    core::{
        ConnectedPoint, Endpoint,
        muxing::{StreamMuxer, StreamMuxerBox, StreamMuxerEvent, StreamMuxerExt, SubstreamBox},
        transport::{Boxed, PortUse},
        upgrade,
    },
    identity::Keypair,
    noise,
    swarm::{
        ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
        THandlerOutEvent, ToSwarm, dummy,
    },
    tcp, yamux,
};
#[cfg(feature = "metrics")]
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet},
    metrics::{MetricType, gauge::ConstGauge},
    registry::Registry,
};

pub use peerage_core::rcmgr::*;

mod guard;
mod port_reuse;

use self::guard::Guarded;
pub use self::guard::{HandshakeGuard, HandshakeStat};

/// Memory each stream reserves for its receive window, in bytes: 256 KiB, go-yamux's
/// `initialStreamWindow` and rust-yamux's `DEFAULT_CREDIT`.
pub const STREAM_WINDOW: u64 = 256 * 1024;

/// go-libp2p's default limits with the default service limits
/// ([`ScalingLimitConfig::with_default_service_limits`]: identify, ping, peer exchange) scaled
/// to this machine, as go-libp2p's default resource manager (`SetDefaultServiceLimits`, then
/// `AutoScale`): an eighth of the total memory and half of the file-descriptor limit (the soft
/// `RLIMIT_NOFILE`; 1024 where it cannot be read).
pub fn auto_scale() -> LimitConfig {
    scale_to(None, None)
}

/// [`auto_scale`] with the memory (bytes) and file descriptors to scale to, where given (Kubo's
/// `Swarm.ResourceMgr.MaxMemory` and `MaxFileDescriptors`); what is not given is the machine's
/// share, as [`auto_scale`] takes it.
pub fn scale_to(memory: Option<u64>, fds: Option<u64>) -> LimitConfig {
    let (total, limit) = machine();
    ScalingLimitConfig::default()
        .with_default_service_limits()
        .scale(memory.unwrap_or(total / 8), fds.unwrap_or(limit / 2))
}

/// Total memory in bytes and the file-descriptor limit.
fn machine() -> (u64, u64) {
    use sysinfo::{MemoryRefreshKind, RefreshKind, System};
    let system = System::new_with_specifics(
        RefreshKind::nothing().with_memory(MemoryRefreshKind::nothing().with_ram()),
    );
    let fds = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
    (system.total_memory(), fds)
}

/// A `NetworkBehaviour` that admits connections through a [`ResourceManager`] and releases them
/// when they close. Put it before behaviours that record connections in their
/// `handle_established_*` hooks (request-response), so that its refusals reach none of them.
pub struct Behaviour {
    connections: Connections<ConnectionId>,
}

impl Behaviour {
    /// A behaviour admitting connections through `rcmgr`.
    pub fn new(rcmgr: ResourceManager) -> Self {
        Behaviour {
            connections: Connections::new(rcmgr),
        }
    }

    /// The resource manager.
    pub fn resource_manager(&self) -> &ResourceManager {
        self.connections.resource_manager()
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = std::convert::Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        _: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.connections
            .open(id, Direction::Inbound, remote, Instant::now())
            .map_err(ConnectionDenied::new)
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.connections
            .attach(id, peer)
            .map_err(ConnectionDenied::new)?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.connections
            .open(id, Direction::Outbound, addr, Instant::now())
            .and_then(|()| self.connections.attach(id, peer))
            .map_err(ConnectionDenied::new)?;
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        let id = match event {
            FromSwarm::ConnectionClosed(e) => e.connection_id,
            FromSwarm::DialFailure(e) => e.connection_id,
            FromSwarm::ListenFailure(e) => e.connection_id,
            _ => return,
        };
        self.connections.release(&id);
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

/// A muxer that charges every stream to the [`ResourceManager`]: opened in the peer and system
/// scopes with its receive window ([`STREAM_WINDOW`]) reserved in the peer scope, then moved into
/// its protocol's scopes (and its service's) once the multistream-select negotiation read on
/// the stream names it ([`multistream::Sniffer`]), and counted for the connection manager
/// ([`StreamCounter`]). A stream beyond the limits when it opens is reset (inbound) or fails
/// with the refusal (outbound, an `io::Error` wrapping the [`Error`]); a stream refused by its
/// protocol's or service's scopes is reset there and then. The connection and its other
/// streams are untouched either way (go-yamux tears down the whole session when a window
/// reservation fails).
pub struct Muxer {
    inner: StreamMuxerBox,
    counter: StreamCounter,
    /// Reserved for the outbound stream being opened.
    pending: Option<(StreamScope, Reservation)>,
}

impl Muxer {
    /// Wraps the muxer of a connection with `peer`, whose remote address is `remote` (libp2p's
    /// `ConnectedPoint::get_remote_address`, by which the node finds the connection's stream
    /// counts: [`ResourceManager::claim_stream_counter`]).
    pub fn new(
        inner: StreamMuxerBox,
        rcmgr: &ResourceManager,
        peer: PeerId,
        remote: Multiaddr,
    ) -> Self {
        Muxer {
            inner,
            counter: rcmgr.stream_counter(peer, remote),
            pending: None,
        }
    }

    fn open(&self, dir: Direction, stream: SubstreamBox) -> Substream {
        match self.counter.open_stream(dir, STREAM_WINDOW) {
            Ok((scope, window)) => Substream::open(stream, dir, scope, window),
            Err(e) => Substream::Refused(e),
        }
    }
}

impl StreamMuxer for Muxer {
    type Substream = Substream;
    type Error = io::Error;

    fn poll_inbound(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Substream, io::Error>> {
        loop {
            let stream = match self.inner.poll_inbound_unpin(cx) {
                Poll::Ready(Ok(s)) => s,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            match self.open(Direction::Inbound, stream) {
                // Dropping an open yamux stream (inside the refusal) resets it.
                Substream::Refused(e) => {
                    tracing::debug!(target: "rcmgr", error = %e, "inbound stream reset");
                }
                open => return Poll::Ready(Ok(open)),
            }
        }
    }

    fn poll_outbound(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Substream, io::Error>> {
        if self.pending.is_none() {
            match self.counter.open_stream(Direction::Outbound, STREAM_WINDOW) {
                Ok(reserved) => self.pending = Some(reserved),
                Err(e) => {
                    tracing::debug!(target: "rcmgr", error = %e, "outbound stream refused");
                    return Poll::Ready(Ok(Substream::Refused(e)));
                }
            }
        }
        let stream = match self.inner.poll_outbound_unpin(cx) {
            Poll::Ready(Ok(s)) => s,
            Poll::Ready(Err(e)) => {
                self.pending = None;
                return Poll::Ready(Err(e));
            }
            Poll::Pending => return Poll::Pending,
        };
        let (scope, window) = self.pending.take().expect("reserved above");
        Poll::Ready(Ok(Substream::open(
            stream,
            Direction::Outbound,
            scope,
            window,
        )))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        self.inner.poll_close_unpin(cx)
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, io::Error>> {
        self.inner.poll_unpin(cx)
    }
}

/// A stream of a [`Muxer`]: open, holding its scope and window until dropped, or refused.
pub enum Substream {
    /// An open stream.
    Open {
        /// The muxer's stream.
        inner: SubstreamBox,
        /// Its negotiation, read until it names the protocol.
        sniffer: Option<multistream::Sniffer>,
        /// Its receive window, reserved in the peer scope.
        _window: Reservation,
        /// Its scope.
        scope: StreamScope,
    },
    /// Refused by the resource manager: every read and write fails with the refusal.
    Refused(Error),
}

impl Substream {
    fn open(inner: SubstreamBox, dir: Direction, scope: StreamScope, window: Reservation) -> Self {
        let role = match dir {
            Direction::Inbound => multistream::Role::Listener,
            Direction::Outbound => multistream::Role::Dialer,
        };
        Substream::Open {
            inner,
            sniffer: Some(multistream::Sniffer::new(role)),
            _window: window,
            scope,
        }
    }

    fn refused(e: &Error) -> io::Error {
        io::Error::other(e.clone())
    }

    /// Feeds bytes that went by to the sniffer; on a refusal the stream is reset (its muxer
    /// stream dropped) and every later call fails.
    fn sniff(&mut self, wrote: bool, bytes: &[u8]) -> io::Result<()> {
        let Substream::Open {
            sniffer: sniffer @ Some(_),
            scope,
            ..
        } = self
        else {
            return Ok(());
        };
        let s = sniffer.as_mut().expect("matched Some");
        let mut result = Ok(());
        let apply = |event: multistream::Sniffed<'_>| {
            if result.is_ok() {
                result = scope.sniffed(event);
            }
        };
        if wrote {
            s.wrote(bytes, apply);
        } else {
            s.read(bytes, apply);
        }
        if s.is_done() {
            *sniffer = None;
        }
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::debug!(target: "rcmgr", error = %e, "stream reset: its protocol is full");
                let err = Substream::refused(&e);
                *self = Substream::Refused(e);
                Err(err)
            }
        }
    }
}

impl AsyncRead for Substream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = match this {
            Substream::Open { inner, .. } => ready!(Pin::new(inner).poll_read(cx, buf))?,
            Substream::Refused(e) => return Poll::Ready(Err(Substream::refused(e))),
        };
        this.sniff(false, &buf[..n])?;
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for Substream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = match this {
            Substream::Open { inner, .. } => ready!(Pin::new(inner).poll_write(cx, buf))?,
            Substream::Refused(e) => return Poll::Ready(Err(Substream::refused(e))),
        };
        this.sniff(true, &buf[..n])?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Substream::Open { inner, .. } => Pin::new(inner).poll_flush(cx),
            Substream::Refused(e) => Poll::Ready(Err(Substream::refused(e))),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Substream::Open { inner, .. } => Pin::new(inner).poll_close(cx),
            Substream::Refused(_) => Poll::Ready(Ok(())),
        }
    }
}

/// TCP (Noise, Yamux) and, with the `quic` feature, QUIC, as `SwarmBuilder::with_tcp(..)` and
/// `.with_quic()` build them, with every connection's muxer wrapped in a [`Muxer`] on `rcmgr`,
/// and inbound handshakes, TCP's and QUIC's, guarded by a [`HandshakeGuard`] sized to
/// `rcmgr`'s limits ([`handshake_guard_for`]). For `SwarmBuilder::with_other_transport`.
///
/// A TCP dial from the listening port whose `bind` or `connect` fails on the local address
/// (`EADDRINUSE`, `EADDRNOTAVAIL`) is dialed again from a new port, as go-libp2p's
/// `p2p/net/reuseport/dial.go` does; libp2p-tcp alone retries `EADDRNOTAVAIL` only, and a node
/// whose listening port the system chose (`/tcp/0`) was seen failing every dial with
/// `EADDRINUSE` for over 20 s (likely a socket in `TIME_WAIT` on that port).
///
/// The guard refuses the IPs whose TCP handshakes stall; for the pool to greylist them too,
/// build the guard yourself and give it to [`transport_guarded`] and to
/// [`Config::with_handshake_guard`](crate::Config::with_handshake_guard).
///
/// # Errors
///
/// If the Noise configuration cannot be built from `key`.
pub fn transport(
    key: &Keypair,
    rcmgr: ResourceManager,
    tcp_config: tcp::Config,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, Box<dyn std::error::Error + Send + Sync>> {
    let guard = handshake_guard_for(&rcmgr);
    transport_guarded(key, rcmgr, tcp_config, guard)
}

/// A [`HandshakeGuard`] for a transport on `rcmgr`: at most half of its transient inbound
/// connections (and of its transient connections and file descriptors) pending, so that the
/// guard evicts before the resource manager refuses, with room left for the connections it
/// refused or evicted that the swarm has not closed yet; 64 if those are unlimited. The rest
/// is [`handshakes::Config`]'s defaults.
pub fn handshake_guard_for(rcmgr: &ResourceManager) -> HandshakeGuard {
    HandshakeGuard::new(handshake_config_for(rcmgr))
}

/// The configuration [`handshake_guard_for`] uses, to change before building the guard.
pub fn handshake_config_for(rcmgr: &ResourceManager) -> handshakes::Config {
    let transient = *rcmgr.limits().transient();
    let cap = transient
        .conns_inbound
        .min(transient.conns)
        .min(transient.fd);
    let max = if cap == UNLIMITED {
        64
    } else {
        usize::try_from(cap / 2).unwrap_or(usize::MAX).max(1)
    };
    handshakes::Config::new().with_max_pending(max)
}

/// As [`transport`], with the guard of its inbound handshakes given (to read its
/// [`HandshakeGuard::stat`], to configure it, or to hand it to the behaviour).
///
/// # Errors
///
/// If the Noise configuration cannot be built from `key`.
pub fn transport_guarded(
    key: &Keypair,
    rcmgr: ResourceManager,
    tcp_config: tcp::Config,
    guard: HandshakeGuard,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, Box<dyn std::error::Error + Send + Sync>> {
    let accepted = guard.clone();
    #[cfg(feature = "quic")]
    let quic_guard = guard.clone();
    let fresh = {
        let config = tcp_config.clone();
        move || tcp::tokio::Transport::new(config.clone())
    };
    let tcp = port_reuse::PortReuseFallback::new(tcp::tokio::Transport::new(tcp_config), fresh)
        .map(move |stream, endpoint| match &endpoint {
            ConnectedPoint::Listener { send_back_addr, .. } => {
                accepted.accept(stream, send_back_addr)
            }
            ConnectedPoint::Dialer { .. } => Guarded::unguarded(stream),
        })
        .upgrade(upgrade::Version::V1Lazy)
        .authenticate(noise::Config::new(key)?)
        .multiplex(yamux::Config::default())
        .map(move |(peer, muxer), endpoint| {
            if let ConnectedPoint::Listener { send_back_addr, .. } = &endpoint {
                guard.complete(send_back_addr);
            }
            (peer, StreamMuxerBox::new(muxer))
        });
    // QUIC's handshakes hold slots of the same guard, around quinn's upgrade future.
    #[cfg(feature = "quic")]
    let tcp = tcp
        .or_transport(guard::GuardedUpgrades::new(
            libp2p::quic::tokio::Transport::new(libp2p::quic::Config::new(key))
                .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
                .boxed(),
            quic_guard,
        ))
        .map(|either, _| either.into_inner());
    Ok(tcp
        .map(move |(peer, muxer), endpoint| {
            let remote = endpoint.get_remote_address().clone();
            (
                peer,
                StreamMuxerBox::new(Muxer::new(muxer, &rcmgr, peer, remote)),
            )
        })
        .boxed())
}

/// Registers go's `libp2p_rcmgr_*` metrics for `rcmgr` (computed from a [`Stat`] at each
/// scrape). With the `metrics` feature.
#[cfg(feature = "metrics")]
pub fn register_metrics(rcmgr: &ResourceManager, registry: &mut Registry) {
    registry.register_collector(Box::new(Metrics(rcmgr.clone())));
}

#[cfg(feature = "metrics")]
#[derive(Debug)]
struct Metrics(ResourceManager);

#[cfg(feature = "metrics")]
fn gauge_family(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: &[(Vec<(&str, String)>, i64)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in rows {
        ConstGauge::new(*value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

#[cfg(feature = "metrics")]
fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(feature = "metrics")]
impl Collector for Metrics {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let st = self.0.summary();
        let fixed = [("system", &st.system), ("transient", &st.transient)];
        let l = |pairs: &[(&'static str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (*k, v.to_string()))
                .collect::<Vec<_>>()
        };

        let mut conns = Vec::new();
        let mut fds = Vec::new();
        let mut limits = Vec::new();
        for (scope, s) in fixed {
            conns.push((
                l(&[("dir", "inbound"), ("scope", scope)]),
                clamp(s.usage.conns_inbound),
            ));
            conns.push((
                l(&[("dir", "outbound"), ("scope", scope)]),
                clamp(s.usage.conns_outbound),
            ));
            fds.push((l(&[("scope", scope)]), clamp(s.usage.fd)));
            let lim = &s.limit;
            for (resource, v) in [
                ("memory", lim.memory),
                ("fd", lim.fd),
                ("conns", lim.conns),
                ("conns_inbound", lim.conns_inbound),
                ("conns_outbound", lim.conns_outbound),
                ("streams", lim.streams),
                ("streams_inbound", lim.streams_inbound),
                ("streams_outbound", lim.streams_outbound),
            ] {
                limits.push((l(&[("scope", scope), ("resource", resource)]), clamp(v)));
            }
        }
        let mut streams = Vec::new();
        let mut memory = Vec::new();
        let scoped = fixed.iter().map(|(k, s)| (*k, "", *s));
        let protocols = st
            .protocols
            .iter()
            .map(|(p, s)| ("protocol", p.as_str(), s));
        for (scope, protocol, s) in scoped.chain(protocols) {
            for (dir, v) in [
                ("inbound", s.usage.streams_inbound),
                ("outbound", s.usage.streams_outbound),
            ] {
                streams.push((
                    l(&[("dir", dir), ("scope", scope), ("protocol", protocol)]),
                    clamp(v),
                ));
            }
            memory.push((
                l(&[("scope", scope), ("protocol", protocol)]),
                clamp(s.usage.memory),
            ));
        }
        let blocked: Vec<_> = st
            .blocked
            .iter()
            .map(|b| {
                let dir = b.direction.map_or("", |d| d.as_str());
                (
                    l(&[
                        ("dir", dir),
                        ("scope", b.scope),
                        ("resource", b.resource.label()),
                        ("protocol", b.protocol.as_deref().unwrap_or("")),
                    ]),
                    clamp(b.count),
                )
            })
            .collect();

        gauge_family(
            &mut encoder,
            "libp2p_rcmgr_connections",
            "Connections, by direction and scope (system, transient).",
            &conns,
        )?;
        gauge_family(
            &mut encoder,
            "libp2p_rcmgr_streams",
            "Streams, by direction and scope (system, transient, protocol).",
            &streams,
        )?;
        gauge_family(
            &mut encoder,
            "libp2p_rcmgr_memory",
            "Memory reserved, in bytes, by scope (system, transient, protocol).",
            &memory,
        )?;
        gauge_family(
            &mut encoder,
            "libp2p_rcmgr_fds",
            "File descriptors, by scope (system, transient).",
            &fds,
        )?;
        gauge_family(
            &mut encoder,
            "libp2p_rcmgr_blocked_resources",
            "Refusals since start, by direction, refusing scope class, resource and, for a stream refused by its protocol's or service's scopes, the protocol.",
            &blocked,
        )?;
        let unattributed = encoder.encode_descriptor(
            "peerage_rcmgr_unattributed_streams",
            "Streams whose protocol the muxer could not learn from their negotiation.",
            None,
            MetricType::Counter,
        )?;
        prometheus_client::metrics::counter::ConstCounter::new(st.unattributed_streams)
            .encode(unattributed)?;
        gauge_family(
            &mut encoder,
            "libp2p_rcmgr_limit",
            "Limits of the system and transient scopes.",
            &limits,
        )?;

        // The live peer scopes by usage, kept by the manager as they change (go exports these
        // as two histograms to subtract).
        let histograms: [(&str, &str, &Distribution); 3] = [
            (
                "libp2p_rcmgr_peer_connections",
                "Connections per connected peer.",
                &st.peers.connections,
            ),
            (
                "libp2p_rcmgr_peer_streams",
                "Streams per connected peer.",
                &st.peers.streams,
            ),
            (
                "libp2p_rcmgr_peer_memory",
                "Memory reserved per connected peer, in bytes.",
                &st.peers.memory,
            ),
        ];
        for (name, help, d) in histograms {
            // The text encoder writes an infinite bound as `le="+Inf"`, which a histogram
            // must end with (prometheus-client's own `Histogram` ends at `f64::MAX` instead).
            let buckets: Vec<(f64, u64)> = d
                .buckets()
                .map(|(bound, n)| (bound.map_or(f64::INFINITY, |b| b as f64), n))
                .collect();
            encoder
                .encode_descriptor(name, help, None, MetricType::Histogram)?
                .encode_histogram::<NoLabelSet>(d.sum() as f64, d.count(), &buckets, None)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::VecDeque,
        sync::{Arc, Mutex},
    };

    use futures::{AsyncReadExt, AsyncWriteExt, executor::block_on};
    use proptest::prelude::*;

    use super::*;

    /// A muxer stream in memory: what is written is kept, what is read comes from `incoming`,
    /// in pieces of at most `chunk` bytes.
    struct Pipe {
        written: Arc<Mutex<Vec<u8>>>,
        incoming: VecDeque<u8>,
        chunk: usize,
    }

    impl AsyncRead for Pipe {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.chunk).min(self.incoming.len());
            for b in &mut buf[..n] {
                *b = self.incoming.pop_front().expect("counted");
            }
            Poll::Ready(Ok(n))
        }
    }

    impl AsyncWrite for Pipe {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.chunk);
            self.written.lock().unwrap().extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn msg(text: &str) -> Vec<u8> {
        let mut out = vec![u8::try_from(text.len() + 1).unwrap()];
        out.extend_from_slice(text.as_bytes());
        out.push(b'\n');
        out
    }

    proptest! {
        /// Whatever goes through a stream, negotiation or not, reaches the other side
        /// unchanged, in both directions, however the muxer splits it; the stream is refused
        /// only by a negotiation past the bounds, and then only after what was already
        /// passed on.
        #[test]
        fn the_muxer_stream_never_changes_a_byte(
            writes in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8),
            incoming in proptest::collection::vec(any::<u8>(), 0..256),
            negotiate in any::<bool>(),
            inbound in any::<bool>(),
            chunk in 1usize..40,
        ) {
            let rm = ResourceManager::new(Config::new().with_limits(LimitConfig::unlimited())).unwrap();
            let counter = rm.stream_counter(PeerId::random(), "/ip4/1.2.3.4/tcp/1".parse().unwrap());
            let dir = if inbound { Direction::Inbound } else { Direction::Outbound };
            let (scope, window) = counter.open_stream(dir, STREAM_WINDOW).unwrap();
            // A valid negotiation first, or only arbitrary bytes.
            let mut writes = writes;
            let mut incoming = incoming;
            if negotiate {
                let mut ours = msg("/multistream/1.0.0");
                ours.extend(msg("/ipfs/ping/1.0.0"));
                writes.insert(0, ours.clone());
                incoming.splice(0..0, ours);
            }
            let written = Arc::new(Mutex::new(Vec::new()));
            let pipe = Pipe {
                written: written.clone(),
                incoming: incoming.iter().copied().collect(),
                chunk,
            };
            let mut stream = Substream::open(SubstreamBox::new(pipe), dir, scope, window);
            let mut sent = Vec::new();
            let mut refused = false;
            block_on(async {
                for w in &writes {
                    match stream.write_all(w).await {
                        Ok(()) => sent.extend_from_slice(w),
                        Err(_) => { refused = true; break; }
                    }
                }
            });
            let passed = written.lock().unwrap().clone();
            if refused {
                // What was passed on before the refusal is a prefix of what was written.
                let all: Vec<u8> = writes.concat();
                prop_assert!(all.starts_with(&passed));
            } else {
                prop_assert_eq!(&passed, &sent);
            }
            if !refused {
                let mut got = Vec::new();
                let r = block_on(stream.read_to_end(&mut got));
                prop_assert!(incoming.starts_with(&got));
                if r.is_ok() {
                    prop_assert_eq!(&got, &incoming);
                }
            }
            if negotiate && !refused {
                prop_assert_eq!(
                    rm.stat().protocols.get("/ipfs/ping/1.0.0").map(|p| p.usage.streams()),
                    Some(1)
                );
            }
        }
    }
}
