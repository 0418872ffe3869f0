//! A running node: the swarm with the Peerage behaviour, its event loop, and a handle to it.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime},
};

use anyhow::{Context, bail};
use futures::StreamExt;
use libp2p::{
    Multiaddr, PeerId, Swarm,
    identity::Keypair,
    multiaddr::Protocol,
    swarm::{SwarmEvent, dial_opts::DialOpts},
    tcp,
};
use peerage::{
    connmgr,
    maintenance::{self, Bounds},
    peers_file::PeersFile,
    peerstore::Peerstore,
    pool, rcmgr,
};
use peerage_store::addrbook_file::AddrBookFile;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

/// What a node is started with.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The identity.
    pub keypair: Keypair,
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Bootstrap points (trusted), with or without `/p2p/<id>`.
    pub bootstrap: Vec<Multiaddr>,
    /// Connection bounds.
    pub bounds: Bounds,
    /// The connection manager's configuration (its grace period is also the maintenance's).
    pub connmgr: connmgr::Config,
    /// The peerstore (in memory, or [`peerage_store::RedbStore`] on disk).
    pub peerstore: Peerstore,
    /// The resource manager's limits; `None` for go's defaults scaled to the machine
    /// ([`rcmgr::auto_scale`]).
    pub limits: Option<rcmgr::LimitConfig>,
    /// The pool: table bounds, greylists, private mode (Octez `--private-mode`: only the
    /// bootstrap (trusted) points are dialed and only trusted peers admitted; no peer
    /// exchange).
    pub pool: pool::Config,
    /// The peers file (Octez's `peers.json`): loaded at start, saved every
    /// `peers_file_period` and when the node stops. `None`: none.
    pub peers_file: Option<PathBuf>,
    /// How often the peers file is saved.
    pub peers_file_period: Duration,
    /// Where `PUT /rcmgr/limits` (`peerage limits set`) saves the limits it applies, for the
    /// next start (`peerage run` reads it back unless a limits file is given). `None`: the
    /// limits set at run time are not kept.
    pub limits_file: Option<PathBuf>,
    /// The resource manager's allowlist (go `WithAllowlistedMultiaddrs`). Empty by default.
    pub allowlist: Vec<Multiaddr>,
    /// Whether the resource manager's per-IP connection and rate limits exempt loopback
    /// (`127.0.0.0/8`, `::1`), as go's defaults do. `true` by default; tests that play many
    /// hosts on `127.a.b.c` turn it off, so that those limits apply to them.
    pub loopback_exempt: bool,
    /// The address book (Bitcoin Core's addrman), or `None` for Octez's single table of
    /// points. `None` by default; `peerage run` turns it on.
    pub addrbook: Option<crate::config::AddrbookSettings>,
    /// Where the address book and its anchors are kept across restarts (loaded at start,
    /// saved with the peers file). `None`: not kept.
    pub addrbook_file: Option<PathBuf>,
    /// Name servers (UDP) for `/dns4`, `/dns6`, `/dns` and `/dnsaddr` addresses, instead of the
    /// system's configuration (`/etc/resolv.conf`). Empty by default: the system's.
    pub dns_servers: Vec<SocketAddr>,
}

impl NodeConfig {
    /// A node with this identity, listening on `listen`, within `bounds`; the rest as
    /// `peerage run` without flags: no bootstrap point, go's default connection-manager
    /// configuration, an in-memory peerstore, the machine's scaled limits, the default pool,
    /// no peers file (saved every 30 s once one is set).
    pub fn new(keypair: Keypair, listen: Vec<Multiaddr>, bounds: Bounds) -> Self {
        Self {
            keypair,
            listen,
            bootstrap: Vec::new(),
            bounds,
            connmgr: connmgr::Config::default(),
            peerstore: Peerstore::default(),
            limits: None,
            pool: pool::Config::default(),
            peers_file: None,
            peers_file_period: Duration::from_secs(30),
            limits_file: None,
            allowlist: Vec::new(),
            loopback_exempt: true,
            addrbook: None,
            addrbook_file: None,
            dns_servers: Vec::new(),
        }
    }
}

/// A node's state at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// The node's peer ID.
    pub peer_id: String,
    /// Its listen addresses.
    pub listen: Vec<String>,
    /// Connected peers, as the maintenance counts them.
    pub connections: usize,
    /// Established libp2p connections, as the connection manager counts them.
    pub established: usize,
    /// The connection manager's hard cap on connections of unprotected peers.
    pub hard_cap: Option<usize>,
    /// Trims the connection manager ran.
    pub trims: u64,
    /// Peers the connection manager's trims closed.
    pub pruned_peers: u64,
    /// Known points.
    pub known_points: usize,
    /// Known peers.
    pub known_peers: usize,
    /// Greylisted IPs.
    pub greylisted_ips: usize,
    /// Greylisted peers.
    pub greylisted_peers: usize,
}

/// A closure run on the event loop with the swarm.
type Call = Box<dyn FnOnce(&mut Swarm<peerage::Behaviour>) + Send>;

enum Command {
    Snapshot(oneshot::Sender<Snapshot>),
    Dial(Multiaddr, oneshot::Sender<anyhow::Result<()>>),
    Call(Call),
}

/// A handle to a running node. Dropping every handle stops the node.
#[derive(Clone)]
pub struct Handle {
    peer_id: PeerId,
    listen: Vec<Multiaddr>,
    peerstore: peerage::peerstore::Clocked,
    bandwidth: Arc<prometheus_client::registry::Registry>,
    libp2p: Arc<prometheus_client::registry::Registry>,
    counts: Arc<NetworkCounts>,
    dial_errors: DialErrors,
    limits_file: Option<Arc<PathBuf>>,
    connmgr: Arc<connmgr::Config>,
    events: tokio::sync::broadcast::Sender<Arc<LogLine>>,
    tx: mpsc::Sender<Command>,
}

/// The last dial errors, by address (at most [`DIAL_ERRORS`]), for `peerage connect` to say why
/// a dial failed: the pool keeps that a dial failed, not libp2p's reason.
type DialErrors = Arc<std::sync::Mutex<std::collections::VecDeque<(Multiaddr, String)>>>;

/// How many dial errors [`Handle::last_dial_error`] remembers.
const DIAL_ERRORS: usize = 64;

/// One line of the node's live event log (`GET /network/log`): what happened, to which peer
/// and point, when.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    /// Seconds since the Unix epoch.
    pub time: f64,
    /// What happened: `connection_established`, `connection_closed`, `dial_failed`,
    /// `identified`, `points_received`, `points_refused`, `nacked`, `trimmed`, `evicted`,
    /// `disconnected` (with its reason), `new_point`, `new_peer`, `disconnect`, `gc_points`,
    /// `gc_peers`, `maintenance`.
    pub event: &'static str,
    /// The peer involved, if one is.
    pub peer: Option<String>,
    /// The point involved, if one is.
    pub point: Option<String>,
    /// The rest, in words.
    pub detail: String,
}

/// How many lines a slow reader of the live log may fall behind before it skips some.
const LOG_BUFFER: usize = 1024;

impl Handle {
    /// Subscribes to the node's live event log.
    pub fn subscribe_log(&self) -> tokio::sync::broadcast::Receiver<Arc<LogLine>> {
        self.events.subscribe()
    }

    /// Where limits set at run time are saved ([`NodeConfig::limits_file`]).
    pub fn limits_file(&self) -> Option<&Path> {
        self.limits_file.as_deref().map(PathBuf::as_path)
    }

    /// Checks that `limits` fit the node as startup checks them: the connection manager's
    /// high water must not be above the system's connection limit, or trims would never start
    /// (go-libp2p GH#1640).
    ///
    /// # Errors
    ///
    /// The connection manager's error naming `high_water` and the limit.
    pub fn check_limits(&self, limits: &rcmgr::LimitConfig) -> anyhow::Result<()> {
        limits_fit(&self.connmgr, limits)
    }

    /// Why the last failed dial of `point` (a multiaddr without `/p2p`) failed, if it is among
    /// the last 64 failures: libp2p's error, as `peerage connect` prints it.
    pub fn last_dial_error(&self, point: &Multiaddr) -> Option<String> {
        let errors = self.dial_errors.lock().unwrap_or_else(|e| e.into_inner());
        errors
            .iter()
            .rev()
            .find(|(addr, _)| addr == point)
            .map(|(_, e)| e.clone())
    }

    /// The node's peer ID.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The addresses the node listens on (with their actual ports), without `/p2p`.
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.listen
    }

    /// The node's peerstore, on the system clock (the `now`-taking forms are on
    /// [`Clocked::store`](peerage::peerstore::Clocked::store)).
    pub fn peerstore(&self) -> &peerage::peerstore::Clocked {
        &self.peerstore
    }

    /// The registry of libp2p-metrics' `libp2p_bandwidth_bytes_total{protocols, direction}`
    /// alone, apart from [`Node::registry`], so that reading the byte totals encodes a few
    /// lines instead of every metric (`/metrics` serves both).
    pub fn bandwidth_registry(&self) -> &prometheus_client::registry::Registry {
        &self.bandwidth
    }

    /// The connection counts, bounds and table sizes as of the event loop's latest turn, read
    /// without waiting for its next one (`GET /network/stat`).
    pub fn counts(&self) -> Counts {
        self.counts.read()
    }

    /// The registry libp2p-metrics was given (`libp2p_swarm_*`, `libp2p_ping_*`), apart from
    /// [`Node::registry`]: its `libp2p_identify_*` families stay at zero, as identify's events
    /// go to [`peerage::metrics::Identify`] in [`Node::registry`] instead;
    /// [`encode_without_identify`](crate::metrics::encode_without_identify) leaves them out.
    pub fn libp2p_registry(&self) -> &prometheus_client::registry::Registry {
        &self.libp2p
    }

    /// The node's current state.
    ///
    /// # Errors
    ///
    /// If the node has stopped.
    pub async fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Snapshot(tx))
            .await
            .map_err(|_| anyhow::anyhow!("node stopped"))?;
        rx.await.context("node stopped")
    }

    /// Runs `f` on the node's event loop with its swarm, through the bounded command channel
    /// (the admin API's only way in: no lock is shared with the event loop), and returns what
    /// it returns.
    ///
    /// # Errors
    ///
    /// If the node has stopped.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Swarm<peerage::Behaviour>) -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let (tx, rx) = oneshot::channel();
        let call: Call = Box::new(move |swarm| {
            let _ = tx.send(f(swarm));
        });
        self.tx
            .send(Command::Call(call))
            .await
            .map_err(|_| anyhow::anyhow!("node stopped"))?;
        rx.await.context("node stopped")
    }

    /// Dials `addr` directly.
    ///
    /// # Errors
    ///
    /// If the node has stopped or the dial cannot start.
    pub async fn dial(&self, addr: Multiaddr) -> anyhow::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Dial(addr, tx))
            .await
            .map_err(|_| anyhow::anyhow!("node stopped"))?;
        rx.await.context("node stopped")?
    }
}

/// What `GET /network/stat` reports of the node, as of the event loop's latest turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Running peers, as the maintenance counts them.
    pub active: usize,
    /// Established connections the remote dialed (nacked ones included).
    pub incoming: usize,
    /// Established connections the node dialed.
    pub outgoing: usize,
    /// The connection bounds: min, expected, max.
    pub bounds: [usize; 3],
    /// Known points.
    pub known_points: usize,
    /// Known peers.
    pub known_peers: usize,
}

/// [`Counts`], published by the event loop at each turn (a few stores; every figure is kept by
/// the behaviour, none is counted by a walk) and read without a lock, so that a reader waits
/// for no turn of a loop that, at 10,000 connections, is busy. The figures may be a turn apart.
#[derive(Debug, Default)]
struct NetworkCounts([AtomicUsize; 8]);

impl NetworkCounts {
    fn publish(&self, b: &peerage::Behaviour) {
        let (incoming, outgoing) = b.connection_counts();
        let bounds = b.bounds();
        let pool = b.pool();
        let values = [
            b.active_connections(),
            incoming,
            outgoing,
            bounds.min(),
            bounds.expected(),
            bounds.max(),
            pool.known_points(),
            pool.known_peers(),
        ];
        for (cell, v) in self.0.iter().zip(values) {
            cell.store(v, Ordering::Relaxed);
        }
    }

    fn read(&self) -> Counts {
        let [
            active,
            incoming,
            outgoing,
            min,
            expected,
            max,
            known_points,
            known_peers,
        ] = self.0.each_ref().map(|c| c.load(Ordering::Relaxed));
        Counts {
            active,
            incoming,
            outgoing,
            bounds: [min, expected, max],
            known_points,
            known_peers,
        }
    }
}

/// A started node: its handle, its metrics and its event-loop task.
pub struct Node {
    /// The handle.
    pub handle: Handle,
    /// Its Prometheus registry (identify, connection manager, resource manager, pool,
    /// maintenance, process); libp2p-metrics' swarm and ping families are in
    /// [`Handle::libp2p_registry`], the bandwidth counters in [`Handle::bandwidth_registry`].
    pub registry: Arc<prometheus_client::registry::Registry>,
    /// The event loop; it ends when every [`Handle`] is dropped.
    pub task: tokio::task::JoinHandle<()>,
}

/// What the swarm is built from: the parts of a [`NodeConfig`] it takes, and the resolver's
/// configuration.
struct SwarmParts<'a> {
    keypair: Keypair,
    bounds: Bounds,
    connmgr: connmgr::Config,
    peerstore: Peerstore,
    limits: rcmgr::LimitConfig,
    allowlist: Vec<Multiaddr>,
    loopback_exempt: bool,
    pool: pool::Config,
    addrbook: Option<&'a crate::config::AddrbookSettings>,
    dns: (libp2p::dns::ResolverConfig, libp2p::dns::ResolverOpts),
}

fn build_swarm(
    parts: SwarmParts<'_>,
    registry: &mut prometheus_client::registry::Registry,
) -> anyhow::Result<(
    Swarm<peerage::Behaviour>,
    Arc<libp2p::metrics::Metrics>,
    prometheus_client::registry::Registry,
    prometheus_client::registry::Registry,
)> {
    let SwarmParts {
        keypair,
        bounds,
        connmgr,
        peerstore,
        limits,
        allowlist,
        loopback_exempt,
        pool,
        addrbook,
        dns: (dns, dns_options),
    } = parts;
    // The bandwidth counters in a registry of their own (`Handle::bandwidth_registry`).
    let mut bandwidth = prometheus_client::registry::Registry::default();
    limits_fit(&connmgr, &limits)?;
    let rm = rcmgr::ResourceManager::new(
        rcmgr::Config::new()
            .with_limits(limits)
            .with_allowlist(allowlist)
            .with_ip_limits(rcmgr::IpLimits::default().with_localhost_unlimited(loopback_exempt))
            .with_rate_limits(
                rcmgr::RateLimits::default().with_localhost_unlimited(loopback_exempt),
            ),
    )?;
    // Loopback stalls no more than it meets the per-IP limits, as the resource manager's.
    let guard = rcmgr::HandshakeGuard::new(
        rcmgr::handshake_config_for(&rm).with_loopback_exempt(loopback_exempt),
    );
    guard.register_metrics(registry);
    // libp2p-metrics: the swarm's `libp2p_swarm_*` and ping's, which the behaviour records, in
    // a registry of their own (`Handle::libp2p_registry`); identify's, kept as its events
    // arrive, in the node's.
    let mut libp2p_registry = prometheus_client::registry::Registry::default();
    let metrics = Arc::new(libp2p::metrics::Metrics::new(&mut libp2p_registry));
    let identify_metrics = peerage::metrics::Identify::new();
    identify_metrics.register(registry);
    let maintenance = maintenance::Config::new()
        .with_bounds(bounds)
        .with_grace_period(connmgr.grace_period());
    let config = peerage::Config::new()
        .with_maintenance(maintenance)
        .with_pool(pool)
        .with_peerstore(peerstore)
        .with_connmgr(connmgr)?
        .with_resource_manager(rm.clone())
        .with_handshake_guard(guard.clone())
        .with_metrics(metrics.clone())
        .with_identify_metrics(identify_metrics);
    let config = match addrbook {
        Some(settings) => {
            let mut grouping = peerage::addrbook::Grouping::new()
                .with_loopback_as_public(settings.loopback_as_public);
            if let Some(path) = &settings.asmap {
                let bytes = std::fs::read(path)
                    .with_context(|| format!("reading the asmap {}", path.display()))?;
                let asmap = peerage::addrbook::Asmap::from_bytes(&bytes)
                    .with_context(|| format!("the asmap {}", path.display()))?;
                grouping = grouping.with_asmap(asmap);
            }
            config
                .with_addrbook(Some(
                    peerage::addrbook::Config::new().with_stale_after(settings.stale_after),
                ))
                .with_grouping(grouping)
                .with_outbound_target(settings.outbound_target)
                .with_max_inbound(settings.max_inbound)
                .with_max_inbound_per_group(settings.max_inbound_per_group)
        }
        None => config,
    };
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        // TCP (Noise, Yamux) and QUIC, each connection's muxer counting its streams in `rm`,
        // inbound handshakes of both guarded (the IPs it refuses for stalled TCP handshakes
        // greylisted by the behaviour).
        .with_other_transport(|key| {
            rcmgr::transport_guarded(key, rm, tcp::Config::default().nodelay(true), guard)
        })?
        // `/dns4`, `/dns6`, `/dns` and `/dnsaddr` addresses, resolved with the system's
        // configuration (`/etc/resolv.conf`, `/etc/hosts`), or with the name servers given.
        .with_dns_config(dns, dns_options)
        // libp2p-metrics: `libp2p_bandwidth_bytes_total{protocols, direction}`.
        .with_bandwidth_metrics(&mut bandwidth)
        .with_behaviour(|key| peerage::Behaviour::new(key, config))?
        // The behaviour keeps connections alive itself; this only bounds connections that no
        // handler wants, which do not occur.
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    Ok((swarm, metrics, bandwidth, libp2p_registry))
}

/// The resolver's configuration: the system's, or `servers` (UDP) with the default options.
///
/// # Errors
///
/// If the system's configuration cannot be read (`/etc/resolv.conf`).
fn dns_config(
    servers: &[SocketAddr],
) -> anyhow::Result<(libp2p::dns::ResolverConfig, libp2p::dns::ResolverOpts)> {
    if servers.is_empty() {
        return hickory_resolver::system_conf::read_system_conf()
            .context("reading the system's DNS configuration");
    }
    let servers = servers
        .iter()
        .map(|s| {
            let mut server = hickory_resolver::config::NameServerConfig::udp(s.ip());
            for c in &mut server.connections {
                c.port = s.port();
            }
            server
        })
        .collect();
    Ok((
        libp2p::dns::ResolverConfig::from_name_servers(servers),
        libp2p::dns::ResolverOpts::default(),
    ))
}

/// Whether `limits` leave room for the connection manager: its high water must not be above
/// the system's connection limit, or trims would never start (go-libp2p GH#1640). Startup and
/// `PUT /rcmgr/limits` both check it.
fn limits_fit(connmgr: &connmgr::Config, limits: &rcmgr::LimitConfig) -> anyhow::Result<()> {
    connmgr
        .check_limit(usize::try_from(limits.system().conns).unwrap_or(usize::MAX))
        .context("the connection manager does not fit the resource manager's limits")
}

/// The socket address of a `/ip4|ip6/…/tcp|udp/PORT` multiaddr, with whether it is UDP.
fn socket_addr(addr: &Multiaddr) -> Option<(SocketAddr, bool)> {
    let mut iter = addr.iter();
    let ip = match iter.next()? {
        Protocol::Ip4(ip) => std::net::IpAddr::V4(ip),
        Protocol::Ip6(ip) => std::net::IpAddr::V6(ip),
        _ => return None,
    };
    match iter.next()? {
        Protocol::Tcp(port) => Some((SocketAddr::new(ip, port), false)),
        Protocol::Udp(port) => Some((SocketAddr::new(ip, port), true)),
        _ => None,
    }
}

/// Fails if a fixed port is already taken. libp2p's listeners set `SO_REUSEPORT`, so a second
/// node on the same port would bind silently and share the incoming connections; a plain bind
/// first catches that.
fn check_port_free(addr: &Multiaddr) -> anyhow::Result<()> {
    let Some((sock, udp)) = socket_addr(addr) else {
        return Ok(());
    };
    if sock.port() == 0 {
        return Ok(());
    }
    let result = if udp {
        std::net::UdpSocket::bind(sock).map(drop)
    } else {
        std::net::TcpListener::bind(sock).map(drop)
    };
    result.with_context(|| format!("cannot listen on {addr}"))
}

impl Node {
    /// Starts a node: binds every listen address (waiting until each is up), adds the bootstrap
    /// points, and spawns the event loop on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// If a listen address cannot be bound (in use, not supported) or a bootstrap address is not
    /// a dialable point; each error names the address.
    pub async fn start(config: NodeConfig) -> anyhow::Result<Node> {
        let peer_id = config.keypair.public().to_peer_id();
        let mut registry = prometheus_client::registry::Registry::default();
        let connmgr_config = Arc::new(config.connmgr.clone());
        let dns = dns_config(&config.dns_servers)?;
        // `/dnsaddr` points have no port: no pool point, resolved once the node runs.
        let (dnsaddr_points, bootstrap): (Vec<Multiaddr>, Vec<Multiaddr>) = config
            .bootstrap
            .iter()
            .cloned()
            .partition(crate::dnsaddr::is_dnsaddr);
        for point in &dnsaddr_points {
            crate::dnsaddr::split(point).with_context(|| format!("invalid --bootstrap {point}"))?;
        }
        let (mut swarm, swarm_metrics, bandwidth, libp2p_registry) = build_swarm(
            SwarmParts {
                keypair: config.keypair,
                bounds: config.bounds,
                connmgr: config.connmgr,
                peerstore: config.peerstore,
                limits: config.limits.unwrap_or_else(rcmgr::auto_scale),
                allowlist: config.allowlist,
                loopback_exempt: config.loopback_exempt,
                pool: config.pool,
                addrbook: config.addrbook.as_ref(),
                dns: dns.clone(),
            },
            &mut registry,
        )?;
        let peers_file = config.peers_file.map(PeersFile::new);
        if let Some(file) = &peers_file {
            let file = file.clone();
            let loaded =
                tokio::task::spawn_blocking(move || file.load_or_set_aside(SystemTime::now()))
                    .await
                    .context("loading the peers file")??;
            if let Some((error, aside)) = &loaded.set_aside {
                report_set_aside(error, aside, "no saved peers");
            }
            tracing::info!(peers = loaded.entries.len(), "peers file loaded");
            swarm.behaviour_mut().import_peers(loaded.entries);
        }
        let addrbook_file = config
            .addrbook_file
            .filter(|_| config.addrbook.is_some())
            .map(AddrBookFile::new);
        if let Some(file) = &addrbook_file {
            let file = file.clone();
            let loaded =
                tokio::task::spawn_blocking(move || file.load_or_set_aside(SystemTime::now()))
                    .await
                    .context("loading the address book")??;
            if let Some((error, aside)) = &loaded.set_aside {
                report_set_aside(error, aside, "an empty address book");
            }
            if let Some(snapshot) = loaded.snapshot {
                let (entries, anchors) = (snapshot.entries.len(), snapshot.anchors.len());
                let dropped = swarm.behaviour_mut().import_addrbook(snapshot);
                tracing::info!(entries, anchors, dropped, "address book loaded");
            }
        }
        for addr in &bootstrap {
            swarm
                .behaviour_mut()
                .add_trusted_point(addr)
                .with_context(|| format!("invalid --bootstrap {addr}"))?;
        }
        let mut pending = Vec::new();
        for addr in &config.listen {
            check_port_free(addr)?;
            let id = swarm
                .listen_on(addr.clone())
                .with_context(|| format!("cannot listen on {addr}"))?;
            pending.push((id, addr.clone()));
        }
        let mut listen = Vec::new();
        let deadline = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(deadline);
        while !pending.is_empty() {
            tokio::select! {
                _ = &mut deadline => bail!("timed out waiting for listeners on {:?}", pending.iter().map(|(_, a)| a.to_string()).collect::<Vec<_>>()),
                event = swarm.select_next_some() => match event {
                    SwarmEvent::NewListenAddr { listener_id, address } => {
                        listen.push(address);
                        pending.retain(|(id, _)| *id != listener_id);
                    }
                    SwarmEvent::ListenerClosed { listener_id, reason: Err(e), .. }
                    | SwarmEvent::ListenerError { listener_id, error: e } => {
                        if let Some((_, addr)) = pending.iter().find(|(id, _)| *id == listener_id) {
                            bail!("cannot listen on {addr}: {e}");
                        }
                    }
                    other => tracing::trace!(?other, "event during start-up"),
                },
            }
        }
        let peerstore = swarm.behaviour().peerstore().clone();
        swarm
            .behaviour()
            .connmgr()
            .register_metrics(registry.sub_registry_with_prefix("libp2p_connmgr"));
        if let Some(rm) = swarm.behaviour().resource_manager() {
            rcmgr::register_metrics(rm, &mut registry);
        }
        let metrics = crate::metrics::PoolMetrics::default();
        metrics.register(&mut registry);
        crate::metrics::ProcessCollector::register(&mut registry);
        let (tx, rx) = mpsc::channel(16);
        let counts = Arc::new(NetworkCounts::default());
        counts.publish(swarm.behaviour());
        let dial_errors = DialErrors::default();
        let (events, _) = tokio::sync::broadcast::channel(LOG_BUFFER);
        let span = tracing::info_span!("node", peer = %short(&peer_id));
        let task = tokio::spawn(tracing::Instrument::instrument(
            event_loop(
                swarm,
                rx,
                (peers_file, addrbook_file, config.peers_file_period),
                (metrics, swarm_metrics, counts.clone()),
                (dial_errors.clone(), events.clone()),
            ),
            span,
        ));
        if !dnsaddr_points.is_empty() {
            let resolver = crate::dnsaddr::resolver(dns)?;
            tokio::spawn(resolve_bootstrap(resolver, dnsaddr_points, tx.downgrade()));
        }
        Ok(Node {
            handle: Handle {
                peer_id,
                listen,
                peerstore,
                bandwidth: Arc::new(bandwidth),
                libp2p: Arc::new(libp2p_registry),
                counts,
                dial_errors,
                limits_file: config.limits_file.map(Arc::new),
                connmgr: connmgr_config,
                events,
                tx,
            },
            registry: Arc::new(registry),
            task,
        })
    }
}

/// Resolves `/dnsaddr` bootstrap points and adds what they name as trusted points; a point
/// that resolves to nothing is tried again every [`crate::dnsaddr::RETRY_INTERVAL`]. Ends when
/// every point resolved, or with the node.
async fn resolve_bootstrap(
    resolver: hickory_resolver::TokioResolver,
    mut points: Vec<Multiaddr>,
    tx: mpsc::WeakSender<Command>,
) {
    loop {
        let mut left = Vec::new();
        for point in points {
            match crate::dnsaddr::resolve(&resolver, &point).await {
                Ok(addrs) if !addrs.is_empty() => {
                    tracing::info!(%point, resolved = ?addrs, "bootstrap point resolved");
                    let Some(tx) = tx.upgrade() else { return };
                    let call: Call = Box::new(move |swarm| {
                        for addr in &addrs {
                            if let Err(e) = swarm.behaviour_mut().add_trusted_point(addr) {
                                tracing::warn!(%point, "bootstrap: {e}");
                            }
                        }
                    });
                    if tx.send(Command::Call(call)).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {
                    tracing::warn!(%point, "bootstrap point resolved to no address");
                    left.push(point);
                }
                Err(e) => {
                    tracing::warn!(%point, "bootstrap point: {e:#}");
                    left.push(point);
                }
            }
        }
        if left.is_empty() {
            return;
        }
        points = left;
        tokio::time::sleep(crate::dnsaddr::RETRY_INTERVAL).await;
        if tx.upgrade().is_none() {
            return;
        }
    }
}

/// How often the peerstore's writes are made durable (a no-op for the memory backend).
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

async fn flush(peerstore: Peerstore) {
    let result = tokio::task::spawn_blocking(move || peerstore.flush()).await;
    match result {
        Ok(Ok(())) => {}
        // The redb store logs a failure itself, once until a flush succeeds.
        Ok(Err(e)) => tracing::debug!("{e}"),
        Err(e) => tracing::warn!("peerstore flush task: {e}"),
    }
}

/// Whether a periodic write to disk is failing, so that a failure (a full disk) is logged once
/// and not at every period, and the recovery is logged too.
#[derive(Debug, Default)]
struct Failing(std::sync::atomic::AtomicBool);

impl Failing {
    /// Logs `result` of a write of `what`: a failure if the last write did not fail, a success
    /// if it did. Returns whether it logged.
    fn report<E>(&self, what: &str, result: Result<(), E>) -> bool
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        use std::sync::atomic::Ordering;
        match result {
            Ok(()) => {
                let recovered = self.0.swap(false, Ordering::Relaxed);
                if recovered {
                    tracing::info!("{what} saved again after a failure");
                }
                recovered
            }
            Err(e) => {
                let first = !self.0.swap(true, Ordering::Relaxed);
                if first {
                    tracing::warn!(
                        "{:#} (logged once until a save succeeds; the previous file is kept)",
                        anyhow::Error::from(e)
                    );
                }
                first
            }
        }
    }
}

/// The failure state of each file the loop saves.
#[derive(Debug, Default)]
struct SaveFailures {
    peers_file: Failing,
    addrbook: Failing,
}

/// Saves the pool's peers (Octez saves only at shutdown, tezos-k8s#561; this runs
/// periodically too, so a crash loses at most one period). Written off the event loop.
async fn save_peers(
    file: Option<&PeersFile>,
    entries: Vec<peerage::peers_file::Entry>,
    failing: &Failing,
) {
    let Some(file) = file.cloned() else {
        return;
    };
    let count = entries.len();
    save_off_loop("peers file", count, failing, move || file.save(&entries)).await;
}

/// Saves the address book with its anchors (Bitcoin Core writes `anchors.dat` at shutdown;
/// this runs with each peers-file save too). Written off the event loop.
async fn save_addrbook(
    (file, snapshot): (Option<AddrBookFile>, Option<peerage::addrbook::Snapshot>),
    failing: &Failing,
) {
    let (Some(file), Some(snapshot)) = (file, snapshot) else {
        return;
    };
    let count = snapshot.entries.len();
    save_off_loop("address book", count, failing, move || file.save(&snapshot)).await;
}

/// Runs `save` (of `count` entries of `what`) on the blocking pool, and logs the outcome: the
/// error with its source (the OS's reason) once, until a save succeeds again.
async fn save_off_loop<E>(
    what: &'static str,
    count: usize,
    failing: &Failing,
    save: impl FnOnce() -> Result<(), E> + Send + 'static,
) where
    E: std::error::Error + Send + Sync + 'static,
{
    match tokio::task::spawn_blocking(save).await {
        Ok(result) => {
            let ok = result.is_ok();
            if !failing.report(what, result) && ok {
                tracing::debug!(count, "{what} saved");
            }
        }
        Err(e) => tracing::warn!("{what} task: {e}"),
    }
}

/// A corrupt file was set aside at start: kept for inspection (a new file is written at the
/// next save), reported in the log and on standard error; the node starts with `instead`.
fn report_set_aside(error: &dyn std::fmt::Display, aside: &std::path::Path, instead: &str) {
    tracing::error!(
        "{error}; kept as {}, starting with {instead}",
        aside.display()
    );
    eprintln!("warning: {error}; kept as {}", aside.display());
}

async fn event_loop(
    mut swarm: Swarm<peerage::Behaviour>,
    mut rx: mpsc::Receiver<Command>,
    (peers_file, addrbook_file, peers_file_period): (
        Option<PeersFile>,
        Option<AddrBookFile>,
        Duration,
    ),
    (metrics, swarm_metrics, counts): (
        crate::metrics::PoolMetrics,
        Arc<libp2p::metrics::Metrics>,
        Arc<NetworkCounts>,
    ),
    (dial_errors, events): (DialErrors, tokio::sync::broadcast::Sender<Arc<LogLine>>),
) {
    let peerstore = swarm.behaviour().peerstore().store().clone();
    let mut flush_tick = tokio::time::interval(FLUSH_INTERVAL);
    flush_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut save_tick = tokio::time::interval_at(
        tokio::time::Instant::now() + peers_file_period,
        peers_file_period,
    );
    save_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The disk is written off the loop, so that the swarm is polled while it is: at most one
    // flush and one save in flight, a tick that finds one still running skips its turn.
    let mut flushing: Option<tokio::task::JoinHandle<()>> = None;
    let mut saving: Option<tokio::task::JoinHandle<()>> = None;
    let failures = Arc::new(SaveFailures::default());
    let idle =
        |task: &Option<tokio::task::JoinHandle<()>>| task.as_ref().is_none_or(|t| t.is_finished());
    loop {
        counts.publish(swarm.behaviour());
        tokio::select! {
            _ = flush_tick.tick() => {
                metrics.update(swarm.behaviour());
                if idle(&flushing) {
                    flushing = Some(tokio::spawn(flush(peerstore.clone())));
                }
            }
            // Nothing to save without files (`--ephemeral`): the state is not even exported.
            _ = save_tick.tick(), if peers_file.is_some() || addrbook_file.is_some() => {
                if idle(&saving) {
                    let (file, entries) = (peers_file.clone(), swarm.behaviour().export_peers());
                    let book = (addrbook_file.clone(), swarm.behaviour().export_addrbook());
                    let failures = Arc::clone(&failures);
                    saving = Some(tokio::spawn(async move {
                        save_peers(file.as_ref(), entries, &failures.peers_file).await;
                        save_addrbook(book, &failures.addrbook).await;
                    }));
                }
            }
            command = rx.recv() => match command {
                None => break,
                Some(Command::Snapshot(reply)) => {
                    let _ = reply.send(snapshot(&swarm));
                }
                Some(Command::Call(f)) => f(&mut swarm),
                Some(Command::Dial(addr, reply)) => {
                    let result = swarm
                        .dial(DialOpts::unknown_peer_id().address(addr).build())
                        .map_err(anyhow::Error::from);
                    let _ = reply.send(result);
                }
            },
            event = swarm.select_next_some() => {
                libp2p::metrics::Recorder::record(&*swarm_metrics, &event);
                // Only when someone reads the live log.
                if events.receiver_count() > 0
                    && let Some(line) = log_line(&event)
                {
                    let _ = events.send(Arc::new(line));
                }
                match &event {
                    SwarmEvent::Behaviour(peerage::Event::Maintenance { dialed, closed, asked, .. }) => {
                        metrics.maintenance(dialed.len(), closed.len(), *asked);
                    }
                    SwarmEvent::Behaviour(peerage::Event::Disconnected { reason, .. }) => {
                        metrics.disconnected(*reason);
                    }
                    SwarmEvent::OutgoingConnectionError { error, .. } => {
                        metrics.dial_failed();
                        record_dial_error(&dial_errors, error);
                    }
                    _ => {}
                }
                log_event(event);
            }
        }
    }
    // The last save and flush come after any still in flight, so they are the last written.
    for task in [flushing, saving].into_iter().flatten() {
        let _ = task.await;
    }
    save_peers(
        peers_file.as_ref(),
        swarm.behaviour().export_peers(),
        &failures.peers_file,
    )
    .await;
    save_addrbook(
        (addrbook_file, swarm.behaviour().export_addrbook()),
        &failures.addrbook,
    )
    .await;
    tracing::debug!(peer_id = %swarm.local_peer_id(), "node stopped");
    drop(swarm);
    flush(peerstore).await;
}

/// The live log's line for a swarm event, if it is one the log shows.
fn log_line(event: &SwarmEvent<peerage::Event>) -> Option<LogLine> {
    use peerage::{Event as E, pool::Event as P};
    let id = |p: &PeerId| Some(p.to_string());
    let (event, peer, point, detail): (&'static str, _, _, String) = match event {
        SwarmEvent::ConnectionEstablished {
            peer_id, endpoint, ..
        } => (
            "connection_established",
            id(peer_id),
            Some(endpoint.get_remote_address().to_string()),
            if endpoint.is_dialer() {
                "outbound"
            } else {
                "inbound"
            }
            .to_owned(),
        ),
        SwarmEvent::ConnectionClosed {
            peer_id,
            cause,
            num_established,
            ..
        } => (
            "connection_closed",
            id(peer_id),
            None,
            format!(
                "{} left{}",
                num_established,
                cause
                    .as_ref()
                    .map_or_else(String::new, |c| format!(", {c}"))
            ),
        ),
        SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => (
            "dial_failed",
            peer_id.as_ref().and_then(id),
            None,
            error.to_string(),
        ),
        SwarmEvent::Behaviour(e) => match e {
            E::Identified {
                peer_id,
                agent_version,
                protocols,
            } => (
                "identified",
                id(peer_id),
                None,
                format!("{agent_version}, {} protocols", protocols.len()),
            ),
            E::PointsReceived {
                peer_id,
                received,
                new,
            } => (
                "points_received",
                id(peer_id),
                None,
                format!("{received} points, {new} new"),
            ),
            E::PointsRefused { peer_id, received } => (
                "points_refused",
                id(peer_id),
                None,
                format!("{received} points, over the bound"),
            ),
            E::Nacked { peer_id } => ("nacked", id(peer_id), None, String::new()),
            E::Evicted {
                peer_id,
                group,
                group_size,
                reason,
            } => (
                "evicted",
                id(peer_id),
                None,
                format!("{reason} in {group} ({group_size} inbound)"),
            ),
            E::Trimmed { kind, peers } => (
                "trimmed",
                None,
                None,
                format!("{kind:?}: {} peers", peers.len()),
            ),
            E::Pool(P::NewPoint {
                point,
                source,
                medium,
            }) => (
                "new_point",
                source.as_ref().and_then(id),
                Some(point.to_string()),
                format!("{medium:?}"),
            ),
            E::Pool(P::NewPeer(peer)) => ("new_peer", id(peer), None, String::new()),
            E::Pool(P::Disconnect { peer, reason }) => {
                ("disconnect", id(peer), None, format!("{reason:?}"))
            }
            E::Disconnected {
                peer_id,
                inbound,
                reason,
            } => (
                "disconnected",
                id(peer_id),
                None,
                format!(
                    "{}, {reason}",
                    if *inbound { "inbound" } else { "outbound" }
                ),
            ),
            E::Pool(P::GcPoints(n)) => ("gc_points", None, None, format!("{n} collected")),
            E::Pool(P::GcPeers(n)) => ("gc_peers", None, None, format!("{n} collected")),
            E::Maintenance {
                active,
                dialed,
                closed,
                asked,
            } => (
                "maintenance",
                None,
                None,
                format!(
                    "{active} active, {} dialed, {} closed, {asked} asked",
                    dialed.len(),
                    closed.len()
                ),
            ),
            _ => return None,
        },
        _ => return None,
    };
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    Some(LogLine {
        time,
        event,
        peer,
        point,
        detail,
    })
}

/// Remembers why the dial of each address in `error` failed.
fn record_dial_error(errors: &DialErrors, error: &libp2p::swarm::DialError) {
    use libp2p::swarm::DialError;
    let failed: Vec<(Multiaddr, String)> = match error {
        DialError::Transport(errs) => errs
            .iter()
            .map(|(addr, e)| (addr.clone(), error_chain(e)))
            .collect(),
        DialError::WrongPeerId { obtained, address } => vec![(
            address.clone(),
            format!("the peer at the address is {obtained}, not the one expected"),
        )],
        // Denied by a behaviour, our own peer ID...: no address to key a reason by.
        _ => Vec::new(),
    };
    let mut errors = errors.lock().unwrap_or_else(|e| e.into_inner());
    for (addr, e) in failed {
        let addr = peerage::pool::split_point(&addr).map_or(addr, |(p, _)| p);
        if errors.len() == DIAL_ERRORS {
            errors.pop_front();
        }
        errors.push_back((addr, e));
    }
}

/// An error and its sources, `: `-separated.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(e) = next {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// The last 6 characters of a peer ID, to tell nodes apart in logs.
fn short(peer_id: &PeerId) -> String {
    let s = peer_id.to_string();
    s[s.len().saturating_sub(6)..].to_owned()
}

fn snapshot(swarm: &Swarm<peerage::Behaviour>) -> Snapshot {
    let behaviour = swarm.behaviour();
    let connmgr = behaviour.connmgr();
    let (info, stats) = (connmgr.info(), connmgr.stats());
    Snapshot {
        peer_id: swarm.local_peer_id().to_string(),
        listen: swarm.listeners().map(ToString::to_string).collect(),
        connections: behaviour.active_connections(),
        established: info.connections,
        hard_cap: info.hard_cap,
        trims: stats.trims,
        pruned_peers: stats.pruned_peers,
        known_points: behaviour.pool().known_points(),
        known_peers: behaviour.pool().known_peers(),
        greylisted_ips: behaviour
            .pool()
            .acl()
            .greylisted_ips(std::time::Instant::now())
            .count(),
        greylisted_peers: behaviour.pool().acl().greylisted_peers().count(),
    }
}

fn log_event(event: SwarmEvent<peerage::Event>) {
    match event {
        SwarmEvent::ConnectionEstablished {
            peer_id, endpoint, ..
        } => {
            tracing::debug!(%peer_id, address = %endpoint.get_remote_address(), dialer = endpoint.is_dialer(), "connection established");
        }
        SwarmEvent::ConnectionClosed { peer_id, cause, .. } => {
            tracing::debug!(%peer_id, ?cause, "connection closed");
        }
        SwarmEvent::NewListenAddr { address, .. } => tracing::info!(%address, "listening"),
        SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
            tracing::debug!(?peer_id, %error, "dial failed");
        }
        SwarmEvent::IncomingConnectionError { error, .. } => {
            tracing::debug!(%error, "incoming connection failed");
        }
        SwarmEvent::Behaviour(peerage::Event::Identified {
            peer_id,
            agent_version,
            protocols,
        }) => tracing::info!(%peer_id, %agent_version, protocols = protocols.len(), "identified"),
        SwarmEvent::Behaviour(peerage::Event::Maintenance {
            active,
            dialed,
            closed,
            asked,
        }) => {
            if dialed.is_empty() && closed.is_empty() {
                tracing::debug!(active, asked, "maintenance: asked for points");
            } else {
                tracing::info!(
                    active,
                    dialed = dialed.len(),
                    closed = closed.len(),
                    "maintenance"
                );
            }
        }
        SwarmEvent::Behaviour(peerage::Event::Trimmed { kind, peers }) => {
            tracing::info!(%kind, closed = peers.len(), "connection manager trim");
        }
        SwarmEvent::Behaviour(event) => tracing::debug!(?event),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addr_reads_tcp_and_udp() {
        let tcp: Multiaddr = "/ip4/127.0.0.1/tcp/5".parse().unwrap();
        assert_eq!(
            socket_addr(&tcp),
            Some(("127.0.0.1:5".parse().unwrap(), false))
        );
        let quic: Multiaddr = "/ip6/::1/udp/7/quic-v1".parse().unwrap();
        assert_eq!(socket_addr(&quic), Some(("[::1]:7".parse().unwrap(), true)));
        let dns: Multiaddr = "/dns4/x.org/tcp/5".parse().unwrap();
        assert_eq!(socket_addr(&dns), None);
    }

    #[test]
    fn a_taken_port_is_refused_by_name() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
        let err = check_port_free(&addr).unwrap_err();
        assert_eq!(err.to_string(), format!("cannot listen on {addr}"));
        drop(held);
        check_port_free(&addr).unwrap();
    }

    #[test]
    fn a_failing_save_is_logged_once_until_it_succeeds_again() {
        let failing = Failing::default();
        let full = || Err(std::io::Error::from(std::io::ErrorKind::StorageFull));
        let logged: Vec<bool> = [full(), full(), full(), Ok(()), Ok(()), full()]
            .into_iter()
            .map(|result| failing.report("peers file", result))
            .collect();
        // The first failure, the recovery, and the first failure after it.
        assert_eq!(logged, [true, false, false, true, false, true]);
    }
}
