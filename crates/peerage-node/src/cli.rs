//! Command-line arguments.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};
use libp2p::Multiaddr;
use peerage::{
    connmgr,
    maintenance::{Bounds, BoundsError},
};

/// Peerage: a libp2p node with peer and connection management.
#[derive(Debug, Parser)]
#[command(name = "peerage", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// The admin API (`run` serves it, the client commands reach it) and the output format.
    #[command(flatten)]
    pub client: crate::client::ClientArgs,
    /// How logs on stderr are written: `text` (coloured only when stderr is a terminal) or
    /// `json` (one object per line, for log collectors). Default: `text`, or for `run` the
    /// config file's `log_format`.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
}

/// `--log-format`, and `log_format` in the config file.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node on the network.
    Run(RunArgs),
    /// Run a local network of nodes on 127.0.0.1 and report whether it converges.
    Devnet(DevnetArgs),
    /// Simulate a network of node machines on a modelled network and a virtual clock.
    Sim(SimArgs),
    /// Print the effective configuration, or check a configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish or powershell) on stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) on stdout: `peerage man > peerage.1`.
    Man,
    /// Drive a running node through its admin API.
    #[command(flatten)]
    Client(crate::client::ClientCommand),
}

/// `peerage config`.
#[derive(Debug, Clone, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration of `peerage run` with these flags (and `--config`),
    /// as TOML.
    Show(Box<RunArgs>),
    /// Check a configuration file; print the error naming the key, or `ok`.
    Check {
        /// The file.
        file: PathBuf,
    },
    /// Write a configuration file with every setting at its default (what `config show`
    /// prints without flags), to edit; an existing file is left alone.
    Init {
        /// The file to create.
        file: PathBuf,
    },
}

/// Connection bounds, as Octez's flags.
#[derive(Debug, Clone, Args)]
pub struct ConnectionArgs {
    /// Target number of connections N, with Octez's meaning: min N/2 (1 if N = 1), expected N,
    /// max 3N/2.
    #[arg(long, value_name = "N")]
    pub connections: Option<usize>,
    /// Lowest healthy connection count (overrides --connections).
    #[arg(long, value_name = "N")]
    pub min_connections: Option<usize>,
    /// Target connection count (overrides --connections).
    #[arg(long, value_name = "N")]
    pub expected_connections: Option<usize>,
    /// Soft ceiling of connections (overrides --connections).
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Connection manager's low watermark: a trim closes the lowest-valued peers until the
    /// connections of unprotected peers out of their grace period are down to it.
    /// Default: the expected connections, or --high-water if lower.
    #[arg(long, value_name = "N")]
    pub low_water: Option<usize>,
    /// Connection manager's high watermark: above it, a trim runs (at most every 10 s), and
    /// connections of unprotected peers are capped at it plus 10 %. Default: the max
    /// connections.
    #[arg(long, value_name = "N")]
    pub high_water: Option<usize>,
    /// How long a newly connected peer is spared from trims and from the maintenance's closes
    /// (`30s`, `1m`). Default: 1m.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub grace_period: Option<Duration>,
}

impl ConnectionArgs {
    /// The bounds: from `--connections` as Octez derives them, or `default` without it, then
    /// each explicit flag.
    ///
    /// # Errors
    ///
    /// If the result is not ordered `min <= expected <= max`.
    pub fn bounds(&self, default: Bounds) -> Result<Bounds, BoundsError> {
        let base = self.connections.map_or(default, Bounds::from_connections);
        Bounds::new(
            self.min_connections.unwrap_or(base.min()),
            self.expected_connections.unwrap_or(base.expected()),
            self.max_connections.unwrap_or(base.max()),
        )
    }

    /// The connection manager's configuration for `bounds`: watermarks from `--low-water` and
    /// `--high-water`, defaulting to `expected` and `max` (Octez's bounds as go's watermarks),
    /// and the grace period.
    ///
    /// # Errors
    ///
    /// If the watermarks are not ordered, or the high water is 0 (every connection would be
    /// trimmed), naming the flags.
    pub fn connmgr(&self, bounds: Bounds) -> anyhow::Result<connmgr::Config> {
        let high = self.high_water.unwrap_or(bounds.max());
        if high == 0 {
            anyhow::bail!(
                "invalid --high-water 0: the connection manager would close every connection (at least 1)"
            );
        }
        let low = self.low_water.unwrap_or(bounds.expected().min(high));
        let mut config = connmgr::Config::new().with_watermarks(low, high);
        if let Some(grace) = self.grace_period {
            config = config.with_grace_period(grace);
        }
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid --low-water {low} / --high-water {high}: {e}"))?;
        Ok(config)
    }
}

/// `peerage run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Configuration file (TOML); the flags override it. See `peerage config show`.
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    /// Directory of the node's identity key (created on first start, reused after).
    /// Default: the platform's data directory (`~/.local/share/peerage` on Linux).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on (repeatable). Default: `/ip4/0.0.0.0/tcp/9732` and
    /// `/ip4/0.0.0.0/udp/9732/quic-v1`.
    #[arg(long, value_name = "MULTIADDR")]
    pub listen: Vec<Multiaddr>,
    /// Keep the node's state in memory only: the peerstore (`peerstore.redb`), the peers file
    /// (`peers.json`), the address book and its anchors (`addrbook.json`) and limits set at
    /// run time are neither read from nor written to the data directory. The identity key
    /// and the lock file stay there.
    #[arg(long)]
    pub ephemeral: bool,
    /// Bootstrap point, trusted, with or without /p2p/PEER_ID (repeatable).
    #[arg(long, value_name = "MULTIADDR")]
    pub bootstrap: Vec<Multiaddr>,
    /// Name server for host names in addresses (`/dns4`, `/dns6`, `/dns`, `/dnsaddr`), over
    /// UDP: `IP`, or `IP:PORT` (repeatable). Default: the system's (`/etc/resolv.conf`).
    #[arg(long, value_name = "IP[:PORT]", value_parser = crate::config::name_server)]
    pub dns_server: Vec<std::net::SocketAddr>,
    /// Connection bounds (default: Octez's configuration defaults, 10/50/100, as the library's).
    #[command(flatten)]
    pub connections: ConnectionArgs,
    /// Resource manager limits in go-libp2p's JSON format (a Kubo or go-libp2p limits file
    /// loads unchanged); what it leaves out comes from go's defaults scaled to this machine.
    /// Default: those scaled defaults.
    #[arg(long, value_name = "FILE.json")]
    pub limits: Option<PathBuf>,
    /// Serve `/metrics` (Prometheus text) alone on this address too, without a token, for a
    /// scraper that should not reach the admin API. Default: only on `--admin`.
    #[arg(long, value_name = "IP:PORT")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Private mode (Octez `--private-mode`): dial only the bootstrap points, admit only
    /// trusted peers, no peer exchange.
    #[arg(long)]
    pub private_mode: bool,
    /// Whether the node keeps an address book against eclipse attacks (Bitcoin Core's
    /// addrman; `off`: Octez's single table of points). Default: on (`[addrbook] enabled`).
    #[arg(long, value_name = "on|off", value_enum, hide_possible_values = true)]
    pub addrbook: Option<Toggle>,
    /// How often `peers.json` in the data directory is saved (it is also saved at shutdown;
    /// never with `--ephemeral`). Default: 30s.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub peers_file_period: Option<std::time::Duration>,
}

/// `peerage devnet`.
#[derive(Debug, Clone, Args)]
pub struct DevnetArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(2..=512))]
    pub nodes: u16,
    /// How long to run at most (`30s`, `2m`); it stops earlier once converged and stable.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// How long every node must stay within bounds to count as converged.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub stable: Duration,
    /// Connection bounds of every node (default: --connections 6, i.e. 3/6/9).
    #[command(flatten)]
    pub connections: ConnectionArgs,
    /// Node 0 only (everyone's bootstrap point, so the most dialed): the connection manager's
    /// low watermark, to watch it trim under demand. Default: as the other nodes.
    #[arg(long, value_name = "N")]
    pub hub_low_water: Option<usize>,
    /// Node 0 only: the connection manager's high watermark. Default: as the other nodes.
    #[arg(long, value_name = "N")]
    pub hub_high_water: Option<usize>,
    /// Once converged, stop this many nodes (the last ones started) and watch the others
    /// recover to their bounds, within `--duration` again. Default: 0, no recovery phase.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub stop: u16,
}

/// `peerage sim`.
#[derive(Debug, Clone, Args)]
pub struct SimArgs {
    /// Nodes at the start (default: the scenario's; `churn`: 1000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub nodes: Option<u32>,
    /// Simulated time (`10m`, `1h`; default: the scenario's, `churn`: 1h).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// The RNG seed: the same seed and scenario give the same run, byte for byte.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// A built-in scenario (churn, static, devnet, devnet-stop), a scenario file (TOML or
    /// JSON), or `eclipse`: one victim under an eclipse attack, with or without the address
    /// book (its own flags below; exit code 1 if a seed is eclipsed with the book on).
    #[arg(long, default_value = "churn", value_name = "NAME|FILE")]
    pub scenario: String,
    /// Worker threads; the outcome does not depend on them. Default: 1; `eclipse`: one per
    /// core, each running seeds.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: Option<u16>,
    /// Write the event log (every input and output of every node machine) to this file.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Write an HTML report with plots (report.html) and the JSON report into this directory.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// `eclipse`: the attack's options.
    #[command(flatten)]
    pub eclipse: EclipseArgs,
}

/// `peerage sim --scenario eclipse`: the victim, the honest network and the attacker.
#[derive(Debug, Clone, Args)]
pub struct EclipseArgs {
    /// `eclipse`: run seeds SEED to SEED+N-1 (in parallel) and report each and their mean.
    /// Default: 1.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub seeds: Option<u32>,
    /// `eclipse`: whether the victim keeps an address book (`off`: today's pool of known
    /// points, the baseline). Default: on.
    #[arg(long, value_name = "on|off", value_enum, hide_possible_values = true)]
    pub addrbook: Option<Toggle>,
    /// `eclipse`: run the attack with the address book off, then on, and print them side by
    /// side.
    #[arg(long, conflicts_with = "addrbook")]
    pub compare: bool,
    /// `eclipse`: the curve: `--compare` at 16, 32, 64, 128 and 256 attacker /16 groups (its
    /// IPs split evenly), one line each.
    #[arg(long, conflicts_with_all = ["addrbook", "compare", "attacker_groups"])]
    pub curve: bool,
    /// `eclipse --curve`: also write the curve as an SVG plot to PATH.
    #[arg(long, value_name = "PATH", requires = "curve")]
    pub svg: Option<PathBuf>,
    /// `eclipse`: live honest nodes. Default: 10000.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(16..=10_000_000))]
    pub honest: Option<u32>,
    /// `eclipse`: the honest nodes' /16 groups. Default: a fifth of the honest nodes.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=50_000))]
    pub honest_groups: Option<u32>,
    /// `eclipse`: the attacker's IPs. Default: 4096 (Heilman et al. 2015: about 4,600 IPs
    /// eclipsed Bitcoin).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub attacker_ips: Option<u32>,
    /// `eclipse`: the attacker's /16 groups, disjoint from the honest ones. Default: 16.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub attacker_groups: Option<u32>,
    /// `eclipse`: simulated days before the victim restarts (then 24 h of samples). Default:
    /// 30.
    #[arg(long, value_name = "D")]
    pub days: Option<f64>,
    /// `eclipse`: share of the honest nodes replaced each simulated hour. Default: 0.1.
    #[arg(long, value_name = "SHARE")]
    pub churn: Option<f64>,
    /// `eclipse`: time between two inbound attempts of the attacker (`1s`, `10s`). Default:
    /// 1s.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub attack_interval: Option<Duration>,
    /// `eclipse`: whether the attacker answers the victim's requests for points on the
    /// connections it dialed (`off`: with no points; it always answers on those the victim
    /// dialed). Default: on.
    #[arg(long, value_name = "on|off", value_enum, hide_possible_values = true)]
    pub attacker_inbound_answers: Option<Toggle>,
    /// `eclipse`: whether the attacker holds the connections the victim dialed to it for good
    /// (`off`: it closes each after 12 h on average, as honest peers do, a stand-in for a
    /// victim that rotates its outbound connections). Default: on.
    #[arg(long, value_name = "on|off", value_enum, hide_possible_values = true)]
    pub attacker_holds_outbound: Option<Toggle>,
    /// `eclipse`: share of the points in an honest answer that are the attacker's (how far
    /// its addresses spread through the honest network). Default: 0.
    #[arg(long, value_name = "SHARE")]
    pub honest_relay: Option<f64>,
    /// `eclipse`: keep each seed's report in DIR (`seed-N-book-on.json`, `-off` without the
    /// book; `--curve` in `groups-N/`): seeds already there are read, not run, so a long run
    /// resumes where it stopped. A file written with other options is an error; the files do
    /// not record the build, so use one directory per build of the simulator.
    #[arg(long, value_name = "DIR")]
    pub runs_dir: Option<PathBuf>,
}

impl EclipseArgs {
    /// The eclipse flags given, by name, to refuse them outside `--scenario eclipse`.
    pub fn given(&self) -> Vec<&'static str> {
        [
            ("--seeds", self.seeds.is_some()),
            ("--addrbook", self.addrbook.is_some()),
            ("--compare", self.compare),
            ("--curve", self.curve),
            ("--svg", self.svg.is_some()),
            ("--honest", self.honest.is_some()),
            ("--honest-groups", self.honest_groups.is_some()),
            ("--attacker-ips", self.attacker_ips.is_some()),
            ("--attacker-groups", self.attacker_groups.is_some()),
            ("--days", self.days.is_some()),
            ("--churn", self.churn.is_some()),
            ("--attack-interval", self.attack_interval.is_some()),
            (
                "--attacker-inbound-answers",
                self.attacker_inbound_answers.is_some(),
            ),
            (
                "--attacker-holds-outbound",
                self.attacker_holds_outbound.is_some(),
            ),
            ("--honest-relay", self.honest_relay.is_some()),
            ("--runs-dir", self.runs_dir.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect()
    }
}

/// `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Toggle {
    /// On.
    On,
    /// Off.
    Off,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("peerage").chain(args.iter().copied()))
    }

    #[test]
    fn connections_flag_and_overrides() {
        let Command::Run(run) = parse(&["run", "--connections", "10"]).unwrap().command else {
            panic!("run");
        };
        let b = run
            .connections
            .bounds(Bounds::new(10, 50, 100).unwrap())
            .unwrap();
        assert_eq!((b.min(), b.expected(), b.max()), (5, 10, 15));
        let Command::Run(run) = parse(&["run", "--connections", "10", "--max-connections", "30"])
            .unwrap()
            .command
        else {
            panic!("run");
        };
        let b = run
            .connections
            .bounds(Bounds::new(10, 50, 100).unwrap())
            .unwrap();
        assert_eq!((b.min(), b.expected(), b.max()), (5, 10, 30));
        let Command::Run(run) = parse(&["run", "--min-connections", "60"]).unwrap().command else {
            panic!("run");
        };
        assert!(
            run.connections
                .bounds(Bounds::new(10, 50, 100).unwrap())
                .is_err(),
            "60 > expected 50"
        );
        // Without a flag: Octez's configuration defaults, as the library's.
        let Command::Run(run) = parse(&["run"]).unwrap().command else {
            panic!("run");
        };
        let b = run
            .connections
            .bounds(peerage::maintenance::Config::default().bounds())
            .unwrap();
        assert_eq!((b.min(), b.expected(), b.max()), (10, 50, 100));
    }

    /// The connection manager's configuration `peerage run ARGS` would use.
    fn run_connmgr(args: &[&str]) -> anyhow::Result<connmgr::Config> {
        let args: Vec<&str> = std::iter::once("run").chain(args.iter().copied()).collect();
        let Command::Run(run) = parse(&args).unwrap().command else {
            panic!("run");
        };
        run.connections.connmgr(
            run.connections
                .bounds(Bounds::new(10, 50, 100).unwrap())
                .unwrap(),
        )
    }

    #[test]
    fn watermarks_default_from_the_bounds() {
        let c = run_connmgr(&["--connections", "10"]).unwrap();
        assert_eq!(
            (c.low_water(), c.high_water(), c.hard_cap()),
            (10, 15, Some(17))
        );
        assert_eq!(c.grace_period(), Duration::from_secs(60));

        let c = run_connmgr(&["--high-water", "4", "--grace-period", "2s"]).unwrap();
        assert_eq!(
            (c.low_water(), c.high_water()),
            (4, 4),
            "low follows a lower high"
        );
        assert_eq!(c.grace_period(), Duration::from_secs(2));

        let err = run_connmgr(&["--low-water", "9", "--high-water", "4"]).unwrap_err();
        assert!(
            err.to_string().contains("--low-water 9 / --high-water 4"),
            "{err}"
        );
    }

    #[test]
    fn devnet_defaults() {
        let Command::Devnet(d) = parse(&["devnet"]).unwrap().command else {
            panic!("devnet");
        };
        assert_eq!(d.nodes, 16);
        assert_eq!(d.duration, Duration::from_secs(30));
        let b = d.connections.bounds(Bounds::from_connections(6)).unwrap();
        assert_eq!((b.min(), b.expected(), b.max()), (3, 6, 9));
        let Command::Devnet(d) = parse(&["devnet", "--duration", "2m"]).unwrap().command else {
            panic!("devnet");
        };
        assert_eq!(d.duration, Duration::from_secs(120));
    }

    #[test]
    fn bad_multiaddr_names_the_flag() {
        let err = parse(&["run", "--listen", "not-an-addr"]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("not-an-addr") && msg.contains("--listen"),
            "{msg}"
        );
        assert!(parse(&["run", "--bootstrap", "/ip4/1.2.3.4/tcp/x"]).is_err());
        assert!(parse(&["devnet", "--duration", "soon"]).is_err());
    }
}
