//! The connection manager and the resource manager alone, without the pool and its maintenance:
//! what a rust-libp2p application that dials its own peers (a DHT node, say) would take.
//!
//! `peerage::connmgr::Behaviour` is go-libp2p's `BasicConnMgr`: tags, protection, watermarks,
//! trims. `peerage::rcmgr::Behaviour` with `peerage::rcmgr::transport` is go's resource manager:
//! connections and streams counted against limits in go's JSON format, refused past them.
//!
//! ```sh
//! cargo run -p peerage --example managers
//! # or, with only the feature it needs:
//! cargo run -p peerage --no-default-features --features rcmgr --example managers
//! ```
//!
//! A hub with watermarks 2/4 is dialed by 8 peers: each time it goes over its high water it
//! trims down to its low water (as go's `BasicConnMgr`), sparing the peer it protects, and ends
//! at or under its high water. It prints the trims, what stayed and the resource manager's
//! count of connections. It runs as a test too.

use std::time::Duration;

use futures::StreamExt;
use libp2p::{Multiaddr, PeerId, Swarm, noise, ping, swarm::NetworkBehaviour, tcp, yamux};
use peerage::{connmgr, rcmgr};

/// The application's behaviour: the two managers, then the application's own protocols (ping
/// here).
#[derive(NetworkBehaviour)]
struct Hub {
    rcmgr: rcmgr::Behaviour,
    connmgr: connmgr::Behaviour,
    ping: ping::Behaviour,
}

/// A hub with watermarks 2/4 (no grace period, so that the demo trims at once), and its
/// resource manager with go's defaults scaled to this machine.
fn hub() -> Result<(Swarm<Hub>, rcmgr::ResourceManager), Box<dyn std::error::Error>> {
    let rm = rcmgr::ResourceManager::new(rcmgr::Config::new().with_limits(rcmgr::auto_scale()))?;
    let swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(|key| rcmgr::transport(key, rm.clone(), tcp::Config::default()))?
        .with_behaviour(|_| {
            let config = connmgr::Config::new()
                .with_watermarks(2, 4)
                .with_grace_period(Duration::ZERO)
                .with_silence_period(Duration::from_millis(100));
            Ok(Hub {
                rcmgr: rcmgr::Behaviour::new(rm.clone()),
                connmgr: connmgr::Behaviour::new(config)?,
                ping: ping::Behaviour::default(),
            })
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    Ok((swarm, rm))
}

/// A plain peer that dials the hub and keeps the connection (ping only).
fn peer() -> Result<Swarm<ping::Behaviour>, Box<dyn std::error::Error>> {
    Ok(libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|_| ping::Behaviour::default())?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build())
}

/// Runs the demo; returns the peers the hub kept and the protected one.
async fn demo() -> Result<(Vec<PeerId>, PeerId), Box<dyn std::error::Error>> {
    let (mut hub, rm) = hub()?;
    hub.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
    let addr: Multiaddr = loop {
        if let libp2p::swarm::SwarmEvent::NewListenAddr { address, .. } =
            hub.select_next_some().await
        {
            break address;
        }
    };
    let mut peers: Vec<Swarm<ping::Behaviour>> =
        (0..8).map(|_| peer()).collect::<Result<_, _>>()?;
    // The first peer matters to the application: protected, it is never trimmed.
    let protected = *peers[0].local_peer_id();
    hub.behaviour().connmgr.handle().protect(&protected, "app");
    for p in &mut peers {
        p.dial(addr.clone())?;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut trimmed = false;
    // Settled: trimmed, at or under the high water, and nothing new for a second.
    let mut quiet_since = tokio::time::Instant::now();
    let mut last = 0;
    while tokio::time::Instant::now() < deadline {
        tokio::select! {
            event = hub.select_next_some() => {
                if let libp2p::swarm::SwarmEvent::Behaviour(HubEvent::Connmgr(connmgr::Event::Trimmed(trim))) = event {
                    println!("trimmed: {trim:?}");
                    trimmed = true;
                }
            }
            _ = futures::future::select_all(peers.iter_mut().map(|p| Box::pin(p.select_next_some()))) => {}
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        let now = hub.connected_peers().count();
        if now != last {
            (last, quiet_since) = (now, tokio::time::Instant::now());
        }
        if trimmed && now <= 4 && quiet_since.elapsed() >= Duration::from_secs(1) {
            break;
        }
    }
    let kept: Vec<PeerId> = hub.connected_peers().copied().collect();
    println!("kept {} peers: {kept:?}", kept.len());
    println!(
        "the resource manager counts {} inbound connections in the system scope",
        rm.stat().system.usage.conns_inbound
    );
    Ok((kept, protected))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    demo().await.map(|_| ())
}

#[cfg(test)]
mod tests {
    /// Eight peers dial a hub with watermarks 2/4: it trims, ends at or under its high water,
    /// and keeps the protected peer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_hub_trims_under_its_high_water_and_keeps_the_protected_peer() {
        let (kept, protected) = super::demo().await.unwrap();
        assert!((1..=4).contains(&kept.len()), "{kept:?}");
        assert!(kept.contains(&protected), "{kept:?}");
    }
}
