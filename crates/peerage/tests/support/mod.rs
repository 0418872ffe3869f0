//! Helpers shared by the swarm-level tests.

// Each test crate uses part of them.
#![allow(dead_code)]

use futures::StreamExt;
use libp2p::{
    Multiaddr, PeerId, Swarm,
    core::{Endpoint, transport::PortUse},
    multiaddr::Protocol,
    swarm::{
        ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, SwarmEvent, THandler,
        THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
    },
};

/// A node over TCP (Noise, Yamux) with these bounds and pool configuration. It asks for points
/// again after 500 ms instead of Octez's 5 s, to keep tests short, and its RNG is seeded.
pub(crate) fn node(
    bounds: peerage::maintenance::Bounds,
    pool: peerage::pool::Config,
) -> Swarm<peerage::Behaviour> {
    node_with(bounds, pool, peerage::Config::new())
}

/// [`node`], from `config` (its maintenance, pool and RNG seed are replaced).
pub(crate) fn node_with(
    bounds: peerage::maintenance::Bounds,
    pool: peerage::pool::Config,
    config: peerage::Config,
) -> Swarm<peerage::Behaviour> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default().nodelay(true),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|key| {
            let maintenance = peerage::maintenance::Config::new()
                .with_bounds(bounds)
                .with_looking_for_peers(std::time::Duration::from_millis(500));
            peerage::Behaviour::new(
                key,
                config
                    .with_maintenance(maintenance)
                    .with_pool(pool)
                    .with_rng_seed(7),
            )
        })
        .unwrap()
        .build()
}

/// A swarm over TCP (Noise, Yamux) with `behaviour`. Nothing keeps its connections busy; they
/// stay open for 5 minutes unless a behaviour under test closes them.
pub(crate) fn tcp_swarm<B: NetworkBehaviour>(behaviour: impl FnOnce() -> B) -> Swarm<B> {
    tcp_swarm_with_key(|_| behaviour())
}

/// [`tcp_swarm`], for a behaviour that needs the swarm's key (identify's, say).
pub(crate) fn tcp_swarm_with_key<B: NetworkBehaviour>(
    behaviour: impl FnOnce(&libp2p::identity::Keypair) -> B,
) -> Swarm<B> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default().nodelay(true),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(behaviour)
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(std::time::Duration::from_secs(300)))
        .build()
}

/// Spawns a bare libp2p node (no peerage behaviour, nothing to ask) that dials `addr` and
/// holds the connection for as long as the other side keeps it. Returns its peer ID.
pub(crate) fn spawn_bare_dialer(addr: Multiaddr) -> PeerId {
    let mut swarm = tcp_swarm(|| dummy::Behaviour);
    let peer = *swarm.local_peer_id();
    swarm.dial(addr).unwrap();
    tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    peer
}

/// Starts listening on 127.0.0.1 and returns the address with `/p2p`.
pub(crate) async fn listen<B: NetworkBehaviour>(swarm: &mut Swarm<B>) -> Multiaddr {
    listen_on_host(swarm, 1).await
}

/// Starts listening on `127.0.0.<host>` (so that each node has its own IP) and returns the
/// address with `/p2p`.
pub(crate) async fn listen_on_host<B: NetworkBehaviour>(
    swarm: &mut Swarm<B>,
    host: u8,
) -> Multiaddr {
    swarm
        .listen_on(format!("/ip4/127.0.0.{host}/tcp/0").parse().unwrap())
        .unwrap();
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            return address.with(Protocol::P2p(*swarm.local_peer_id()));
        }
    }
}

/// Denies every inbound connection once it is established, with [`Denied`]: the sibling of
/// libp2p-connection-limits' "other behaviour denying" test.
#[derive(Default)]
pub(crate) struct Denier;

/// The error [`Denier`] denies with.
#[derive(Debug, thiserror::Error)]
#[error("denied by a sibling")]
pub(crate) struct Denied;

impl NetworkBehaviour for Denier {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = std::convert::Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Err(ConnectionDenied::new(Denied))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, _: FromSwarm<'_>) {}

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        std::task::Poll::Pending
    }
}
