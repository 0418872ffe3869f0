//! `peerage run`: one node on the network until SIGINT or SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use libp2p::multiaddr::Protocol;
use peerage_store::identity;

use crate::{
    cli::RunArgs,
    node::{Node, NodeConfig},
};

/// The default data directory: the platform's data directory for `peerage`.
pub fn default_data_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "peerage").map(|d| d.data_dir().to_owned())
}

/// Runs a node until SIGINT or SIGTERM.
///
/// # Errors
///
/// Bad bounds, an unreadable, corrupt or unwritable identity key, a listen address that cannot
/// be bound, a bootstrap address that is not a point.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let bounds = args.connections.bounds(50)?;
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => default_data_dir().context("no platform data directory; pass --data-dir")?,
    };
    let (keypair, origin) = identity::load_or_create(&data_dir.join(identity::FILE_NAME))?;
    let node = Node::start(NodeConfig {
        keypair,
        listen: args.listen,
        bootstrap: args.bootstrap,
        bounds,
    })
    .await?;
    let handle = node.handle;
    let peer_id = handle.peer_id();
    tracing::info!(%peer_id, ?origin, data_dir = %data_dir.display(), %bounds, "node started");
    println!("peer id: {peer_id}");
    for addr in handle.listen_addrs() {
        println!("listening on {}", addr.clone().with(Protocol::P2p(peer_id)));
    }
    shutdown_signal().await?;
    tracing::info!("shutting down");
    drop(handle);
    node.task.await.context("node task")?;
    Ok(())
}

async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}
