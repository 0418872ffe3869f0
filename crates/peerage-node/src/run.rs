//! `peerage run`: one node on the network until SIGINT or SIGTERM.

use std::path::{Path, PathBuf};

use anyhow::Context;
use libp2p::multiaddr::Protocol;
use peerage::{
    peerstore::{self, Peerstore},
    rcmgr,
};
use peerage_store::{RedbStore, identity};

use crate::{
    client::ClientArgs,
    config::Effective,
    node::{Node, NodeConfig},
};

/// The lock file in the data directory, held by the running node.
pub const LOCK_FILE: &str = "lock";

/// The limits last set at run time (`peerage limits set`), in the data directory, in go's JSON
/// format: read at start unless a limits file is given.
pub const LIMITS_FILE: &str = "limits.json";

/// The default data directory: the platform's data directory for `peerage`.
pub fn default_data_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "peerage").map(|d| d.data_dir().to_owned())
}

/// Reads a limits file in go-libp2p's JSON format on top of the machine's scaled defaults.
///
/// # Errors
///
/// If the file cannot be read, or a field is unknown, negative or of the wrong type; the error
/// names the file and the field.
pub fn load_limits(path: &Path) -> anyhow::Result<rcmgr::LimitConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the limits file {}", path.display()))?;
    rcmgr::LimitConfig::from_json(&text, &rcmgr::auto_scale())
        .with_context(|| format!("in the limits file {}", path.display()))
}

/// The checks `run` makes of a configuration before it opens anything, which `peerage config
/// check` makes too: an admin API on a non-loopback address needs a token; the limits file
/// must be readable and valid. Returns the limits.
///
/// # Errors
///
/// The first check that fails, naming the setting.
pub fn check(config: &Effective) -> anyhow::Result<Option<rcmgr::LimitConfig>> {
    check_admin(&config.admin)?;
    config.limits.as_deref().map(load_limits).transpose()
}

/// An admin API on an address that is not loopback needs a token (`run` and `devnet`).
///
/// # Errors
///
/// Naming the address, if it has none.
pub fn check_admin(admin: &ClientArgs) -> anyhow::Result<()> {
    if let Some(addr) = admin.admin
        && !addr.ip().is_loopback()
        && admin.admin_token.is_none()
    {
        anyhow::bail!("--admin {addr} is not a loopback address: it needs --admin-token");
    }
    Ok(())
}

/// Runs a node until SIGINT or SIGTERM.
///
/// # Errors
///
/// An unreadable, corrupt or unwritable identity key, a listen address that cannot be bound, a
/// bootstrap address that is not a point, a bad limits file.
pub async fn run(config: Effective) -> anyhow::Result<()> {
    // Installed before anything is printed: a signal that arrives as soon as the addresses are
    // out must find the handler in place, not the default action.
    let shutdown = ShutdownSignal::install()?;
    let limits = check(&config)?;
    let Effective {
        data_dir,
        listen,
        bootstrap,
        ephemeral,
        bounds,
        connmgr,
        pool,
        peers_file_period,
        admin,
        metrics,
        resource_manager,
        addrbook,
        dns_servers,
        ..
    } = config;
    let token = admin.admin_token.clone();
    let admin = bind(admin.admin, "the admin API").await?;
    let metrics = bind(metrics, "the metrics").await?;
    let (keypair, origin) = identity::load_or_create(&data_dir.join(identity::FILE_NAME))?;
    // One node per data directory: an advisory lock on `DIR/lock`, held until the node stops
    // (the OS releases it if the process dies).
    let lock_path = data_dir.join(LOCK_FILE);
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening the lock file {}", lock_path.display()))?;
    let mut lock = fd_lock::RwLock::new(lock_file);
    let _held = lock.try_write().map_err(|_| {
        anyhow::anyhow!(
            "the data directory {} is in use by another running peerage node (lock file {})",
            data_dir.display(),
            lock_path.display()
        )
    })?;
    // A limits file given (flag or config) wins; then the limits last set at run time
    // (`peerage limits set`, saved in the data directory); then go's defaults, scaled.
    // Then `[resource_manager]`'s knobs; `enabled = false` lifts every limit.
    let persisted = data_dir.join(LIMITS_FILE);
    let limits = match limits {
        _ if !resource_manager.enabled => {
            println!("limits: none (resource_manager.enabled = false)");
            Some(rcmgr::LimitConfig::unlimited())
        }
        Some(limits) => Some(limits),
        None if !ephemeral && persisted.exists() => {
            println!("limits: {} (set at run time)", persisted.display());
            Some(load_limits(&persisted)?)
        }
        None if resource_manager.max_memory.is_some()
            || resource_manager.max_file_descriptors.is_some() =>
        {
            Some(rcmgr::scale_to(
                resource_manager.max_memory,
                resource_manager.max_file_descriptors,
            ))
        }
        None => None,
    };
    let (peerstore, described) = if ephemeral {
        (Peerstore::default(), "in memory".to_owned())
    } else {
        let path = data_dir.join(peerage_store::peerstore::FILE_NAME);
        let store = tokio::task::spawn_blocking(move || {
            RedbStore::open(
                &path,
                peerstore::Config::default(),
                peerage_store::peerstore::Options::default(),
            )
        })
        .await
        .context("opening the peerstore")??;
        let described = format!(
            "{} ({} peers)",
            store.path().display(),
            store.loaded_peers()
        );
        (Peerstore::new(store), described)
    };
    let node = Node::start(NodeConfig {
        keypair,
        listen,
        bootstrap,
        bounds,
        connmgr,
        peerstore,
        limits,
        pool,
        peers_file: (!ephemeral).then(|| data_dir.join(peerage::peers_file::FILE_NAME)),
        peers_file_period,
        limits_file: (!ephemeral).then(|| data_dir.join(LIMITS_FILE)),
        allowlist: resource_manager.allowlist,
        loopback_exempt: resource_manager.loopback_exempt,
        addrbook: addrbook.enabled.then_some(addrbook.clone()),
        addrbook_file: (!ephemeral).then(|| data_dir.join(peerage_store::addrbook_file::FILE_NAME)),
        dns_servers,
    })
    .await?;
    let handle = node.handle;
    let peer_id = handle.peer_id();
    tracing::info!(%peer_id, ?origin, data_dir = %data_dir.display(), %bounds, "node started");
    println!("peer id: {peer_id}");
    println!("peerstore: {described}");
    if ephemeral {
        println!("peers file: none (ephemeral)");
    } else {
        let known = handle.snapshot().await?.known_peers;
        println!(
            "peers file: {} ({known} peers)",
            data_dir.join(peerage::peers_file::FILE_NAME).display()
        );
    }
    for addr in handle.listen_addrs() {
        println!("listening on {}", addr.clone().with(Protocol::P2p(peer_id)));
    }
    let mut served = Vec::new();
    if let Some(listener) = admin {
        println!("admin API: http://{}", listener.local_addr()?);
        let router = crate::admin::router(handle.clone(), node.registry.clone(), token);
        served.push(("admin API", listener.into_std()?, router));
    }
    if let Some(listener) = metrics {
        println!("metrics: http://{}/metrics", listener.local_addr()?);
        let router = crate::admin::metrics_router(handle.clone(), node.registry.clone());
        served.push(("metrics", listener.into_std()?, router));
    }
    let servers = ApartServers::start(served)?;
    shutdown.recv().await;
    tracing::info!("shutting down");
    // The API holds a handle: the node stops once every handle is gone.
    servers.stop().await;
    drop(handle);
    node.task.await.context("node task")?;
    Ok(())
}

/// The admin API and the metrics endpoint, served from a thread of their own with a runtime of
/// their own. On the node's runtime a request waited for a worker busy with the connections:
/// `GET /network/stat` took 0.24 ms at 100 connections and 0.29 ms at 10,000
/// (`benches/hold.rs`); apart, it is answered as soon as the operating system runs its thread.
struct ApartServers {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ApartServers {
    /// Serves each `(what, listener, router)` until [`ApartServers::stop`]; nothing to serve
    /// starts no thread.
    fn start(
        served: Vec<(&'static str, std::net::TcpListener, axum::Router)>,
    ) -> anyhow::Result<Self> {
        if served.is_empty() {
            return Ok(ApartServers {
                stop: None,
                thread: None,
            });
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("the admin API's runtime")?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("peerage-admin".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut set = tokio::task::JoinSet::new();
                    for (what, listener, router) in served {
                        set.spawn(async move {
                            let served = tokio::net::TcpListener::from_std(listener)
                                .map(|l| axum::serve(l, router));
                            let result = match served {
                                Ok(serve) => serve.await,
                                Err(e) => Err(e),
                            };
                            if let Err(e) = result {
                                tracing::error!("{what}: {e}");
                            }
                        });
                    }
                    // Stopping drops the runtime, and with it every request in flight (a
                    // `log --follow` stream never ends by itself).
                    let _ = stopped.await;
                });
            })
            .context("starting the admin API's thread")?;
        Ok(ApartServers {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops serving and waits until the thread, and every handle its requests held, is gone.
    async fn stop(mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// Binds `addr`, if given, for `what`.
async fn bind(
    addr: Option<std::net::SocketAddr>,
    what: &str,
) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot serve {what} on {addr}"))?;
    Ok(Some(listener))
}

/// SIGINT or SIGTERM (Ctrl-C elsewhere).
struct ShutdownSignal {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    fn install() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
                term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn recv(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
