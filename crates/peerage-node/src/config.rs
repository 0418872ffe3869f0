//! The node's configuration file (`--config FILE`, TOML) and the effective configuration:
//! built-in defaults, then the file, then the flags, each overriding the one before.
//!
//! ```toml
//! data_dir = "/var/lib/peerage"
//! listen = ["/ip4/0.0.0.0/tcp/9732"]
//! bootstrap = ["/dns4/boot.example.org/tcp/9732/p2p/12D3KooW..."]
//! dns_servers = ["9.9.9.9", "127.0.0.1:5353"]   # default: the system's (/etc/resolv.conf)
//! private_mode = false
//! ephemeral = false               # true: the node's state in memory only (`--ephemeral`)
//! peers_file_period = "30s"
//! limits = "limits.json"          # go-libp2p JSON, relative to the config file
//! admin = "127.0.0.1:8732"
//! metrics = "127.0.0.1:9090"      # /metrics alone, without the admin API
//! log = "info"
//! log_format = "text"             # or "json", one object per line (`--log-format`)
//!
//! [connections]                   # Octez's bounds and go's watermarks
//! connections = 50                # or min / expected / max
//! low_water = 40
//! high_water = 75
//! grace_period = "1m"
//!
//! [pool]
//! max_known_points = [400, 300]   # (high, low); Octez's defaults
//! max_known_peers = [400, 300]
//! ip_greylist_size = 16384
//! ip_greylist_cleanup_delay = "1day"
//! peer_greylist_size = 1023
//!
//! [resource_manager]              # Kubo's simple knobs; a limits file (or a `limits set`) wins
//! enabled = true                  # false lifts every limit
//! max_memory = "2GiB"             # scale the limits to this; default: an eighth of the RAM
//! max_file_descriptors = 4096     # and this; default: half the process's limit
//! allowlist = ["/ip4/10.0.0.0/ipcidr/8"]
//! loopback_exempt = true          # 127.0.0.0/8 and ::1 skip the per-IP limits and strikes
//!
//! [addrbook]                      # Bitcoin Core's addrman, against eclipse attacks
//! enabled = true                  # false: Octez's single table of points
//! asmap = "asmap.dat"             # group by AS number (Bitcoin Core's -asmap format)
//! loopback_as_public = false      # count 127.a.b.c by /16 (tests on one machine)
//! outbound_target = 8             # automatic outbound connections kept
//! max_inbound = 59                # inbound slots; default: the high threshold minus the target
//!                                 # (here 67 - 8: `connections = 50` refuses inbound at 67)
//! max_inbound_per_group = 4       # inbound slots of one public group; default: ⌈max_inbound / 16⌉
//! stale_after = "1day"            # unheard of and unconnected this long: yields its slot
//! ```
//!
//! Unknown keys and bad values are errors naming the key and the reason. The checks of Octez's
//! `config_validation.ml` apply: ordered bounds, `low <= high` for the known-point and peer
//! tables, and `max` connections within both tables' low bounds.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};
use libp2p::Multiaddr;
use peerage::{connmgr, maintenance::Bounds, pool};
use serde::{Deserialize, Serialize};

use crate::{
    cli::{ConnectionArgs, LogFormat, RunArgs},
    client::ClientArgs,
};

/// The listen addresses without `--listen` or `listen`.
pub const DEFAULT_LISTEN: [&str; 2] = ["/ip4/0.0.0.0/tcp/9732", "/ip4/0.0.0.0/udp/9732/quic-v1"];

/// `[connections]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionsFile {
    /// Octez's `--connections N`.
    pub connections: Option<usize>,
    /// Lowest healthy count.
    pub min: Option<usize>,
    /// Target count.
    pub expected: Option<usize>,
    /// Soft ceiling.
    pub max: Option<usize>,
    /// The connection manager's low watermark.
    pub low_water: Option<usize>,
    /// The connection manager's high watermark.
    pub high_water: Option<usize>,
    /// Grace period (`"1m"`).
    pub grace_period: Option<String>,
}

/// `[pool]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolFile {
    /// `[high, low]` of the point table.
    pub max_known_points: Option<(usize, usize)>,
    /// `[high, low]` of the peer table.
    pub max_known_peers: Option<(usize, usize)>,
    /// IPs in the greylist.
    pub ip_greylist_size: Option<usize>,
    /// How long an IP stays greylisted (`"1day"`).
    pub ip_greylist_cleanup_delay: Option<String>,
    /// Peers in the greylist.
    pub peer_greylist_size: Option<usize>,
}

/// The configuration file, every key optional. Also the effective configuration, with every
/// key set, as `peerage config show` prints it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The data directory.
    pub data_dir: Option<PathBuf>,
    /// Listen addresses.
    pub listen: Option<Vec<String>>,
    /// Bootstrap (trusted) points.
    pub bootstrap: Option<Vec<String>>,
    /// Name servers (`IP` or `IP:PORT`) for host names in addresses; the system's if empty.
    pub dns_servers: Option<Vec<String>>,
    /// Keep the node's state in memory: no peerstore, peers file, address book or run-time
    /// limits in the data directory (`--ephemeral`).
    pub ephemeral: Option<bool>,
    /// Private mode.
    pub private_mode: Option<bool>,
    /// How often the peers file is saved (`"30s"`).
    pub peers_file_period: Option<String>,
    /// The limits file (go-libp2p JSON).
    pub limits: Option<PathBuf>,
    /// The admin API's address.
    pub admin: Option<SocketAddr>,
    /// An address serving `/metrics` alone.
    pub metrics: Option<SocketAddr>,
    /// The admin API's bearer token.
    pub admin_token: Option<String>,
    /// The log filter (`info`, `peerage=debug`).
    pub log: Option<String>,
    /// How logs are written: `"text"` or `"json"` (`--log-format`).
    pub log_format: Option<LogFormat>,
    /// Connection bounds and watermarks.
    pub connections: Option<ConnectionsFile>,
    /// Pool tables and greylists.
    pub pool: Option<PoolFile>,
    /// The resource manager's simple knobs (Kubo's `Swarm.ResourceMgr`).
    pub resource_manager: Option<ResourceManagerFile>,
    /// The address book.
    pub addrbook: Option<AddrbookFile>,
}

/// `[addrbook]`: the eclipse-resistant address book.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddrbookFile {
    /// `false` keeps Octez's single table of points. `true` by default.
    pub enabled: Option<bool>,
    /// An asmap file (Bitcoin Core's `-asmap` format): addresses are grouped by the AS that
    /// announces them rather than by /16.
    pub asmap: Option<PathBuf>,
    /// Count `127.a.b.c` by its /16, as public space. `false` by default.
    pub loopback_as_public: Option<bool>,
    /// Automatic outbound connections kept. 8 by default (Bitcoin Core).
    pub outbound_target: Option<usize>,
    /// Inbound slots, beyond which a newcomer evicts an inbound peer. By default the bounds'
    /// high threshold minus the outbound target.
    pub max_inbound: Option<usize>,
    /// Inbound slots one public network group may hold. By default ⌈max_inbound / 16⌉.
    pub max_inbound_per_group: Option<usize>,
    /// An address neither heard of nor connected to for this long is stale: it yields its
    /// slot to a newcomer, is not advertised and is drawn a hundredth as often
    /// (`addrbook::Config::with_stale_after`). `"1day"` by default.
    pub stale_after: Option<String>,
}

/// The address book's settings from `[addrbook]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AddrbookSettings {
    /// Whether the node keeps one.
    pub enabled: bool,
    /// The asmap file.
    pub asmap: Option<PathBuf>,
    /// Whether `127.a.b.c` counts by /16.
    pub loopback_as_public: bool,
    /// Automatic outbound connections kept.
    pub outbound_target: usize,
    /// Inbound slots; `None` for the bounds' high threshold minus the outbound target
    /// (`peerage::node::Config::with_max_inbound`).
    pub max_inbound: Option<usize>,
    /// Inbound slots of one public network group; `None` for ⌈max inbound / 16⌉
    /// (`peerage::node::Config::with_max_inbound_per_group`).
    pub max_inbound_per_group: Option<usize>,
    /// When an address turns stale (`peerage::addrbook::Config::with_stale_after`).
    pub stale_after: Duration,
}

impl Default for AddrbookSettings {
    fn default() -> Self {
        AddrbookSettings {
            enabled: true,
            asmap: None,
            loopback_as_public: false,
            outbound_target: 8,
            max_inbound: None,
            max_inbound_per_group: None,
            stale_after: Duration::from_secs(86_400),
        }
    }
}

/// `[resource_manager]`: Kubo's simple knobs, for those who do not write go's limits JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceManagerFile {
    /// `false` lifts every limit (go's `InfiniteLimits`). `true` by default.
    pub enabled: Option<bool>,
    /// The memory the limits are scaled to (`"2GiB"`, `"512MiB"`, bytes). By default an
    /// eighth of the machine's memory (go's `AutoScale`).
    pub max_memory: Option<String>,
    /// The file descriptors the limits are scaled to. By default half the process's limit.
    pub max_file_descriptors: Option<u64>,
    /// Multiaddrs (`/ip4/10.0.0.0/ipcidr/8`, optionally `/p2p/<id>`) whose connections go to
    /// the allowlisted scopes (go's `WithAllowlistedMultiaddrs`).
    pub allowlist: Option<Vec<String>>,
    /// Whether loopback sources (127.0.0.0/8, `::1`) skip the per-IP connection and rate
    /// limits and never strike out for stalled handshakes. `true` by default, as go-libp2p's
    /// connection limiter exempts localhost; `false` to test the limits on one machine.
    pub loopback_exempt: Option<bool>,
}

/// The resource manager's settings from `[resource_manager]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceManagerSettings {
    /// Whether limits apply.
    pub enabled: bool,
    /// The memory the limits are scaled to, in bytes; `None` for go's auto-scaling.
    pub max_memory: Option<u64>,
    /// The file descriptors the limits are scaled to; `None` for go's auto-scaling.
    pub max_file_descriptors: Option<u64>,
    /// The allowlist.
    pub allowlist: Vec<Multiaddr>,
    /// Whether loopback sources skip the per-IP limits and the handshake strikes.
    pub loopback_exempt: bool,
}

/// Bytes as `123`, `4KiB`, `512MiB`, `2GiB`, `1TiB` (or `kB`, `MB`, `GB`, `TB` in powers of 10).
fn bytes(key: &str, s: &str) -> anyhow::Result<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| anyhow::anyhow!("{key}: {s:?} is not a size (like \"2GiB\")"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => bail!("{key}: {s:?} has an unknown unit (B, KiB, MiB, GiB, TiB, kB, MB, GB, TB)"),
    };
    n.checked_mul(scale)
        .ok_or_else(|| anyhow::anyhow!("{key}: {s:?} is too large"))
}

impl FileConfig {
    /// Reads and parses a configuration file; relative paths in it are taken from the file's
    /// directory.
    ///
    /// # Errors
    ///
    /// An unreadable file, a TOML syntax error, an unknown key or a value of the wrong type,
    /// each naming the file, the key and the line.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the config file {}", path.display()))?;
        Self::parse(&text, path.parent().unwrap_or(Path::new(".")))
            .with_context(|| format!("in the config file {}", path.display()))
    }

    /// Parses the text of a configuration file; relative paths in it are taken from `base`.
    ///
    /// # Errors
    ///
    /// A TOML syntax error, an unknown key or a value of the wrong type, each naming the key and
    /// the line.
    pub fn parse(text: &str, base: &Path) -> anyhow::Result<Self> {
        let mut config: Self =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
        let asmap = config.addrbook.as_mut().and_then(|a| a.asmap.as_mut());
        for p in [config.data_dir.as_mut(), config.limits.as_mut(), asmap]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(config)
    }
}

/// The effective configuration of `peerage run`.
#[derive(Debug, Clone)]
pub struct Effective {
    /// As written back by `config show`.
    pub file: FileConfig,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Listen addresses.
    pub listen: Vec<Multiaddr>,
    /// Bootstrap points.
    pub bootstrap: Vec<Multiaddr>,
    /// The node's state in memory only (`--ephemeral`): peerstore, peers file, address book,
    /// run-time limits.
    pub ephemeral: bool,
    /// The connection bounds.
    pub bounds: Bounds,
    /// The connection manager's configuration.
    pub connmgr: connmgr::Config,
    /// The pool's configuration.
    pub pool: pool::Config,
    /// Peers file period.
    pub peers_file_period: Duration,
    /// Limits file.
    pub limits: Option<PathBuf>,
    /// Admin API address and token.
    pub admin: ClientArgs,
    /// The address serving `/metrics` alone.
    pub metrics: Option<SocketAddr>,
    /// The resource manager's knobs.
    pub resource_manager: ResourceManagerSettings,
    /// The address book's settings.
    pub addrbook: AddrbookSettings,
    /// Name servers for host names in addresses; the system's if empty.
    pub dns_servers: Vec<SocketAddr>,
    /// Log filter.
    pub log: String,
    /// How logs are written.
    pub log_format: LogFormat,
}

/// A log filter (`RUST_LOG`'s syntax: `info,peerage=debug`).
///
/// # Errors
///
/// If `directives` is not one, or has a character outside ASCII: tracing-subscriber 0.3.23
/// panics on some of those (it slices a directive by bytes, `filter/env/directive.rs`; found
/// by the `config_toml` fuzz target with `log = "i  , [ķ{"`), and targets and levels are ASCII.
pub fn log_filter(directives: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    if !directives.is_ascii() {
        return Err("only ASCII characters are accepted in a log filter".to_owned());
    }
    tracing_subscriber::EnvFilter::try_new(directives).map_err(|e| e.to_string())
}

fn duration(key: &str, value: &str) -> anyhow::Result<Duration> {
    humantime::parse_duration(value).with_context(|| format!("{key}: {value:?} is not a duration"))
}

/// A name server: `IP:PORT`, or `IP` for port 53.
///
/// # Errors
///
/// If `value` is neither.
pub fn name_server(value: &str) -> Result<SocketAddr, String> {
    value
        .parse::<SocketAddr>()
        .or_else(|_| {
            value
                .parse::<std::net::IpAddr>()
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .map_err(|_| format!("{value:?} is neither IP nor IP:PORT"))
}

fn addrs(key: &str, values: &[String]) -> anyhow::Result<Vec<Multiaddr>> {
    values
        .iter()
        .map(|v| {
            v.parse::<Multiaddr>()
                .with_context(|| format!("{key}: {v:?} is not a multiaddr"))
        })
        .collect()
}

/// Merges the file (if `--config`), then the flags (`log_format`: the global `--log-format`),
/// over the defaults, and checks the result.
///
/// # Errors
///
/// A bad file (see [`FileConfig::load`]) or a bad value, naming the key or flag and the reason.
pub fn resolve(
    args: &RunArgs,
    admin: &ClientArgs,
    log_format: Option<LogFormat>,
) -> anyhow::Result<Effective> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    resolve_file(file, args, admin, log_format)
}

/// As [`resolve`], with the file already read (`args.config` is not read). Reads no file: the
/// paths it names are only kept.
///
/// # Errors
///
/// A bad value, naming the key or flag and the reason.
pub fn resolve_file(
    file: FileConfig,
    args: &RunArgs,
    admin: &ClientArgs,
    log_format: Option<LogFormat>,
) -> anyhow::Result<Effective> {
    let c = file.connections.clone().unwrap_or_default();
    let p = file.pool.clone().unwrap_or_default();
    let flags = &args.connections;
    let connections = ConnectionArgs {
        connections: flags.connections.or(c.connections),
        min_connections: flags.min_connections.or(c.min),
        expected_connections: flags.expected_connections.or(c.expected),
        max_connections: flags.max_connections.or(c.max),
        low_water: flags.low_water.or(c.low_water),
        high_water: flags.high_water.or(c.high_water),
        grace_period: match (flags.grace_period, &c.grace_period) {
            (Some(d), _) => Some(d),
            (None, Some(s)) => Some(duration("connections.grace_period", s)?),
            (None, None) => None,
        },
    };
    // Octez's configuration defaults, 10/50/100, as the library's (`maintenance::Config`).
    let bounds = connections.bounds(peerage::maintenance::Config::default().bounds())?;
    if bounds.max() == 0 {
        bail!(
            "invalid connection bounds: {bounds}: a node with max 0 would neither dial nor accept (--connections must be at least 1)"
        );
    }
    let connmgr = connections.connmgr(bounds)?;

    let mut acl = pool::acl::Config::new();
    if let Some(n) = p.ip_greylist_size {
        if n == 0 {
            bail!("pool.ip_greylist_size: must be positive");
        }
        acl = acl.with_ip_greylist_size(n);
    }
    if let Some(s) = &p.ip_greylist_cleanup_delay {
        acl = acl.with_ip_greylist_cleanup_delay(duration("pool.ip_greylist_cleanup_delay", s)?);
    }
    if let Some(n) = p.peer_greylist_size {
        if n == 0 {
            bail!("pool.peer_greylist_size: must be positive");
        }
        acl = acl.with_peer_greylist_size(n);
    }
    let defaults = pool::Config::new();
    let points = p.max_known_points.or(defaults.max_known_points());
    let peers = p.max_known_peers.or(defaults.max_known_peers());
    // Octez `config_validation.ml`.
    for (key, bound) in [
        ("pool.max_known_points", points),
        ("pool.max_known_peers", peers),
    ] {
        if let Some((high, low)) = bound {
            if low > high {
                bail!("{key}: the low bound {low} is above the high bound {high}");
            }
            if bounds.max() > low {
                bail!(
                    "{key}: the low bound {low} is below the max connections {} (Octez's config validation)",
                    bounds.max()
                );
            }
        }
    }
    let private_mode = args.private_mode || file.private_mode.unwrap_or(false);
    let pool = pool::Config::new()
        .with_max_known_points(points)
        .with_max_known_peers(peers)
        .with_acl(acl)
        .with_private_mode(private_mode);

    let listen = if !args.listen.is_empty() {
        args.listen.clone()
    } else if let Some(l) = &file.listen {
        addrs("listen", l)?
    } else {
        DEFAULT_LISTEN
            .iter()
            .map(|a| a.parse().expect("valid"))
            .collect()
    };
    let mut bootstrap = match &file.bootstrap {
        Some(b) => addrs("bootstrap", b)?,
        None => Vec::new(),
    };
    bootstrap.extend(args.bootstrap.iter().cloned());
    let peers_file_period = match (args.peers_file_period, &file.peers_file_period) {
        (Some(d), _) => d,
        (None, Some(s)) => duration("peers_file_period", s)?,
        (None, None) => Duration::from_secs(30),
    };
    if peers_file_period.is_zero() {
        bail!("peers_file_period: must be positive");
    }
    let data_dir = match args.data_dir.clone().or(file.data_dir.clone()) {
        Some(d) => d,
        None => {
            crate::run::default_data_dir().context("no platform data directory; pass --data-dir")?
        }
    };
    let admin = ClientArgs {
        admin: admin.admin.or(file.admin),
        admin_token: admin.admin_token.clone().or(file.admin_token.clone()),
        json: admin.json,
    };
    let log = file.log.clone().unwrap_or_else(|| "info".to_owned());
    if let Err(e) = log_filter(&log) {
        bail!("log: {log:?}: {e}");
    }
    let log_format = log_format.or(file.log_format).unwrap_or_default();
    let limits = args.limits.clone().or(file.limits.clone());
    let metrics = args.metrics.or(file.metrics);
    // The flags replace the file's servers, as `--listen` replaces its addresses.
    let dns_servers = if !args.dns_server.is_empty() {
        args.dns_server.clone()
    } else {
        file.dns_servers
            .iter()
            .flatten()
            .map(|v| name_server(v).map_err(|e| anyhow::anyhow!("dns_servers: {e}")))
            .collect::<anyhow::Result<_>>()?
    };
    let ephemeral = args.ephemeral || file.ephemeral.unwrap_or(false);
    let rm = file.resource_manager.clone().unwrap_or_default();
    let resource_manager = ResourceManagerSettings {
        enabled: rm.enabled.unwrap_or(true),
        max_memory: rm
            .max_memory
            .as_deref()
            .map(|m| bytes("resource_manager.max_memory", m))
            .transpose()?,
        max_file_descriptors: match rm.max_file_descriptors {
            Some(0) => bail!("resource_manager.max_file_descriptors: must be positive"),
            n => n,
        },
        allowlist: match &rm.allowlist {
            Some(a) => addrs("resource_manager.allowlist", a)?,
            None => Vec::new(),
        },
        loopback_exempt: rm.loopback_exempt.unwrap_or(true),
    };
    if resource_manager.max_memory == Some(0) {
        bail!("resource_manager.max_memory: must be positive");
    }
    let ab = file.addrbook.clone().unwrap_or_default();
    let defaults = AddrbookSettings::default();
    let addrbook = AddrbookSettings {
        enabled: match args.addrbook {
            Some(toggle) => toggle == crate::cli::Toggle::On,
            None => ab.enabled.unwrap_or(defaults.enabled),
        },
        asmap: ab.asmap.clone(),
        loopback_as_public: ab.loopback_as_public.unwrap_or(defaults.loopback_as_public),
        outbound_target: ab.outbound_target.unwrap_or(defaults.outbound_target),
        max_inbound: ab.max_inbound.or(defaults.max_inbound),
        max_inbound_per_group: ab.max_inbound_per_group.or(defaults.max_inbound_per_group),
        stale_after: match &ab.stale_after {
            Some(value) => duration("addrbook.stale_after", value)?,
            None => defaults.stale_after,
        },
    };
    if addrbook.stale_after.is_zero() {
        bail!("addrbook.stale_after: must be positive");
    }
    for (key, n) in [
        ("addrbook.max_inbound", addrbook.max_inbound),
        (
            "addrbook.max_inbound_per_group",
            addrbook.max_inbound_per_group,
        ),
    ] {
        if n == Some(0) {
            bail!("{key}: must be positive");
        }
    }
    let shown = FileConfig {
        data_dir: Some(data_dir.clone()),
        listen: Some(listen.iter().map(ToString::to_string).collect()),
        bootstrap: Some(bootstrap.iter().map(ToString::to_string).collect()),
        dns_servers: Some(dns_servers.iter().map(ToString::to_string).collect()),
        ephemeral: Some(ephemeral),
        private_mode: Some(private_mode),
        peers_file_period: Some(humantime::format_duration(peers_file_period).to_string()),
        limits: limits.clone(),
        admin: admin.admin,
        metrics,
        admin_token: admin.admin_token.as_ref().map(|_| "(set)".to_owned()),
        log: Some(log.clone()),
        log_format: Some(log_format),
        connections: Some(ConnectionsFile {
            connections: None,
            min: Some(bounds.min()),
            expected: Some(bounds.expected()),
            max: Some(bounds.max()),
            low_water: Some(connmgr.low_water()),
            high_water: Some(connmgr.high_water()),
            grace_period: Some(humantime::format_duration(connmgr.grace_period()).to_string()),
        }),
        pool: Some(PoolFile {
            max_known_points: points,
            max_known_peers: peers,
            ip_greylist_size: Some(acl.ip_greylist_size()),
            ip_greylist_cleanup_delay: Some(
                humantime::format_duration(acl.ip_greylist_cleanup_delay()).to_string(),
            ),
            peer_greylist_size: Some(acl.peer_greylist_size()),
        }),
        resource_manager: Some(ResourceManagerFile {
            enabled: Some(resource_manager.enabled),
            max_memory: rm.max_memory.clone(),
            max_file_descriptors: resource_manager.max_file_descriptors,
            allowlist: Some(
                resource_manager
                    .allowlist
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            ),
            loopback_exempt: Some(resource_manager.loopback_exempt),
        }),
        addrbook: Some(AddrbookFile {
            enabled: Some(addrbook.enabled),
            asmap: addrbook.asmap.clone(),
            loopback_as_public: Some(addrbook.loopback_as_public),
            outbound_target: Some(addrbook.outbound_target),
            max_inbound: addrbook.max_inbound,
            max_inbound_per_group: addrbook.max_inbound_per_group,
            stale_after: Some(humantime::format_duration(addrbook.stale_after).to_string()),
        }),
    };
    Ok(Effective {
        file: shown,
        data_dir,
        listen,
        bootstrap,
        ephemeral,
        bounds,
        connmgr,
        pool,
        peers_file_period,
        limits,
        admin,
        metrics,
        resource_manager,
        addrbook,
        dns_servers,
        log,
        log_format,
    })
}

/// The effective configuration as TOML (the admin token hidden).
pub fn show(effective: &Effective) -> String {
    toml::to_string(&effective.file).expect("the configuration serializes")
}
