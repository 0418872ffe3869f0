//! The resource manager's cost in a real swarm: connections accepted per second by a listener
//! with the resource manager (admission behaviour and muxer wrapper) and without, side by side
//! in one run. One dialer connects over TCP (Noise, Yamux), waits for the connection, closes it,
//! and again; each iteration is one whole connection.
//!
//! `cargo bench -p peerage --bench rcmgr_swarm`; figures in
//! `crates/peerage-core/benches/README.md`.

#![allow(missing_docs, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use futures::StreamExt;
use libp2p::{
    Multiaddr, Swarm, noise,
    swarm::{NetworkBehaviour, SwarmEvent, dummy},
    tcp, yamux,
};
use peerage::rcmgr;

fn config(c: libp2p::swarm::Config) -> libp2p::swarm::Config {
    c.with_idle_connection_timeout(Duration::from_secs(60))
}

fn plain<B: NetworkBehaviour>(b: B) -> Swarm<B> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| b)
        .unwrap()
        .with_swarm_config(config)
        .build()
}

fn with_rcmgr() -> Swarm<rcmgr::Behaviour> {
    let rm =
        rcmgr::ResourceManager::new(rcmgr::Config::new().with_limits(rcmgr::auto_scale())).unwrap();
    let rm2 = rm.clone();
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(|key| rcmgr::transport(key, rm2, tcp::Config::default()).unwrap())
        .unwrap()
        .with_behaviour(|_| rcmgr::Behaviour::new(rm))
        .unwrap()
        .with_swarm_config(config)
        .build()
}

/// Starts `swarm` listening in the background; returns its address.
async fn serve<B: NetworkBehaviour + Send + 'static>(mut swarm: Swarm<B>) -> Multiaddr
where
    B::ToSwarm: Send,
{
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            break address;
        }
    };
    tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    addr
}

async fn connect_n(dialer: &mut Swarm<dummy::Behaviour>, addr: &Multiaddr, n: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        dialer.dial(addr.clone()).unwrap();
        let peer = loop {
            match dialer.select_next_some().await {
                SwarmEvent::ConnectionEstablished { peer_id, .. } => break peer_id,
                SwarmEvent::OutgoingConnectionError { error, .. } => panic!("{error}"),
                _ => {}
            }
        };
        dialer.disconnect_peer_id(peer).unwrap();
        loop {
            if let SwarmEvent::ConnectionClosed { .. } = dialer.select_next_some().await {
                break;
            }
        }
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (off, on) = rt.block_on(async {
        (
            serve(plain(dummy::Behaviour)).await,
            serve(with_rcmgr()).await,
        )
    });
    let mut dialer = rt.block_on(async { plain(dummy::Behaviour) });
    let mut g = c.benchmark_group("rcmgr_swarm_accept");
    g.sample_size(20);
    g.bench_function("off", |b| {
        b.iter_custom(|n| rt.block_on(connect_n(&mut dialer, &off, n)))
    });
    g.bench_function("on", |b| {
        b.iter_custom(|n| rt.block_on(connect_n(&mut dialer, &on, n)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
