//! Peerage beside gossipsub: a pub/sub chat whose connections the Peerage stack manages.
//!
//! `peerage::Behaviour` keeps the node's connections between its bounds, exchanges points with
//! its peers and bans, greylists and trims; gossipsub only publishes and relays on the
//! connections it finds. Compose them in one `NetworkBehaviour`:
//!
//! ```sh
//! cargo run -p peerage --example chat -- --listen /ip4/127.0.0.1/tcp/4001
//! cargo run -p peerage --example chat -- --bootstrap /ip4/127.0.0.1/tcp/4001   # in another terminal
//! ```
//!
//! Each line typed is published on the `peerage-chat` topic; each message received is printed.
//! `--demo` runs two nodes in one process, sends one message and exits 0 once it arrived (the
//! test the repository runs).
//!
//! It needs none of the crate's features: `cargo run -p peerage --no-default-features --example
//! chat -- --demo` builds it without QUIC, redb, sysinfo or Prometheus.

use std::time::Duration;

use futures::StreamExt;
use libp2p::{
    Multiaddr, Swarm, gossipsub, noise,
    swarm::{NetworkBehaviour, SwarmEvent},
    tcp, yamux,
};
use peerage::maintenance::Bounds;

/// The application's behaviour: Peerage's stack, then gossipsub.
#[derive(NetworkBehaviour)]
struct Chat {
    peerage: peerage::Behaviour,
    gossipsub: gossipsub::Behaviour,
}

fn node() -> Result<Swarm<Chat>, Box<dyn std::error::Error>> {
    Ok(libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|key| {
            // Octez's `--connections 6`: min 3, expected 6, max 9.
            let config = peerage::Config::new().with_bounds(Bounds::from_connections(6));
            let gossipsub = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossipsub::ConfigBuilder::default()
                    .heartbeat_interval(Duration::from_millis(200))
                    .build()?,
            )?;
            Ok(Chat {
                peerage: peerage::Behaviour::new(key, config),
                gossipsub,
            })
        })?
        .build())
}

/// Runs `swarm` until it listens, and returns the address.
async fn listen(
    swarm: &mut Swarm<Chat>,
    on: Multiaddr,
) -> Result<Multiaddr, Box<dyn std::error::Error>> {
    swarm.listen_on(on)?;
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            return Ok(address);
        }
    }
}

async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    let topic = gossipsub::IdentTopic::new("peerage-chat");
    let (mut a, mut b) = (node()?, node()?);
    let addr = listen(&mut a, "/ip4/127.0.0.1/tcp/0".parse()?).await?;
    listen(&mut b, "/ip4/127.0.0.1/tcp/0".parse()?).await?;
    a.behaviour_mut().gossipsub.subscribe(&topic)?;
    b.behaviour_mut().gossipsub.subscribe(&topic)?;
    // B learns A as a bootstrap point; Peerage's maintenance dials it.
    b.behaviour_mut().peerage.add_trusted_point(&addr)?;
    let deadline = tokio::time::sleep(Duration::from_secs(30));
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    loop {
        tokio::select! {
            _ = &mut deadline => return Err("no message within 30 s".into()),
            _ = tick.tick() => {
                // Until the mesh forms, publishing finds no peer: try again.
                let _ = b.behaviour_mut().gossipsub.publish(topic.clone(), b"hello from B".to_vec());
            }
            event = a.select_next_some() => {
                if let SwarmEvent::Behaviour(ChatEvent::Gossipsub(gossipsub::Event::Message { message, .. })) = event {
                    println!("A received: {}", String::from_utf8_lossy(&message.data));
                    return Ok(());
                }
            }
            _ = b.select_next_some() => {}
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--demo") {
        return demo().await;
    }
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let topic = gossipsub::IdentTopic::new("peerage-chat");
    let mut swarm = node()?;
    let on = flag("--listen").unwrap_or_else(|| "/ip4/0.0.0.0/tcp/0".to_owned());
    println!("listening on {}", listen(&mut swarm, on.parse()?).await?);
    swarm.behaviour_mut().gossipsub.subscribe(&topic)?;
    if let Some(b) = flag("--bootstrap") {
        swarm
            .behaviour_mut()
            .peerage
            .add_trusted_point(&b.parse()?)?;
    }
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(tokio::io::stdin()));
    loop {
        tokio::select! {
            line = lines.next_line() => match line? {
                Some(line) => {
                    if let Err(e) = swarm.behaviour_mut().gossipsub.publish(topic.clone(), line.into_bytes()) {
                        println!("not sent: {e}");
                    }
                }
                None => return Ok(()),
            },
            event = swarm.select_next_some() => match event {
                SwarmEvent::Behaviour(ChatEvent::Gossipsub(gossipsub::Event::Message { message, .. })) => {
                    println!("{}: {}", message.source.map_or_else(|| "?".to_owned(), |p| p.to_string()), String::from_utf8_lossy(&message.data));
                }
                SwarmEvent::Behaviour(ChatEvent::Peerage(event)) => println!("peerage: {event:?}"),
                _ => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    /// Two nodes, B bootstrapped on A: Peerage connects them, gossipsub delivers B's message.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_demo_delivers_a_message() {
        super::demo().await.unwrap();
    }
}
