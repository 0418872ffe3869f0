//! The eclipse attack on one victim: how much of a node's automatic outbound connections an
//! attacker with a few thousand IPs captures, with the address book
//! ([`node::Config::with_addrbook`], Bitcoin Core's `addrman`) and without it (the pool's
//! single table of known points, Octez's).
//!
//! # Sources
//!
//! - Heilman, Kendler, Zohar, Goldberg, "Eclipse Attacks on Bitcoin's Peer-to-Peer Network",
//!   USENIX Security 2015: an attacker with about 4,600 IPs, or 32 /16 groups, eclipsed a
//!   2015 Bitcoin node by filling its tables with its addresses while holding its inbound
//!   slots, then waiting for a restart. The attack here is theirs, at their scale (4,096 IPs
//!   in 16 /16s by default).
//! - Bitcoin Core's `addrman` (`src/addrman_impl.h`) and its countermeasures (PR #5941, #8282,
//!   #9037, #8594), which the node machine's address book implements
//!   ([`peerage_core::addrbook`]); 8 automatic outbound connections
//!   (`MAX_OUTBOUND_FULL_RELAY_CONNECTIONS`) and 125 connections in all (`-maxconnections`).
//!
//! # The model
//!
//! One victim is a real [`Machine`], driven as the multi-node simulator drives its nodes
//! (admission at pending inbound and established, inputs, commands, timers from
//! [`Machine::poll_timeout`], a connection manager beside it, unsigned records). Everything
//! around it is modelled, on a virtual clock, from one seed:
//!
//! - **Honest nodes**: [`EclipseOptions::honest`] of them (10,000 by default) in
//!   [`EclipseOptions::honest_groups`] IPv4 /16 groups (a fifth as many as nodes by default),
//!   each with a peer ID and an address `/ip4/a.b.c.d/tcp/4001` in its group, reachable with
//!   probability 0.7 ([`REACHABLE`]). They leave one at a time, 10 % of them an hour
//!   ([`EclipseOptions::churn_per_hour`]; a Poisson process, one departure every 3.6 s on
//!   average), and a new one joins at a new address for each: old addresses go dead. A
//!   dial to a live, reachable honest node succeeds after a round trip of 100 ms ([`LATENCY`] each way); any
//!   other dial fails after [`DIAL_TIMEOUT`] (5 s). An honest peer sends identify (its listen
//!   address, the peer exchange among its protocols) and answers each request for points
//!   with 50 points ([`HONEST_ANSWER`]) drawn uniformly from the live honest nodes, with
//!   their peer IDs. It closes an outbound connection of the victim after an exponential time
//!   of mean 12 h ([`HONEST_OUTBOUND_LIFETIME`]). Honest nodes also dial the victim, one every
//!   2 minutes on average ([`HONEST_INBOUND_INTERVAL`]), and hold the connection for an
//!   exponential time of mean 1 h ([`HONEST_INBOUND_HOLD`]).
//! - **The victim's bootstrap**: 8 honest nodes ([`TRUSTED`]) are its trusted points
//!   ([`Machine::add_trusted_point`]); they are always reachable and never leave (well-known
//!   bootstrap nodes).
//! - **The victim**: bounds `8/8/125` ([`MAX_CONNECTIONS`]); with the book on, 8 automatic
//!   outbound connections ([`node::Config::with_outbound_target`], [`OUTBOUND_TARGET`]) and
//!   the book's inbound limits at their defaults; with it off, today's pool, whose
//!   maintenance counts inbound and outbound connections together.
//! - **The attacker**: [`EclipseOptions::attacker_ips`] IPs (4,096 by default) in
//!   [`EclipseOptions::attacker_groups`] /16 groups (16), disjoint from the honest ones, each
//!   with its own peer ID, all reachable, never leaving. From the start it (1) opens one
//!   inbound connection per second ([`EclipseOptions::attack_interval`]) from an IP of its
//!   that holds none, and holds whatever the victim admits; (2) answers every request for
//!   points with 100 of its own points ([`ATTACKER_ANSWER`], the most an answer may carry),
//!   with their peer IDs (on its inbound connections only if
//!   [`EclipseOptions::attacker_answers_inbound`]);
//!   (3) sends identify with its address and the peer exchange; (4) accepts every dial of
//!   the victim to one of its IPs (any port: it owns the host) and holds the connection for
//!   good (unless [`EclipseOptions::attacker_holds_outbound`] is off). It can do nothing
//!   else: the victim's admission decides what it holds.
//! - **The run**: [`EclipseOptions::days`] (30) of simulated time, then the victim
//!   **restarts**: a new machine, with the address book saved and restored
//!   ([`Machine::addrbook_snapshot`], [`Machine::restore_addrbook`]) when it keeps one, the
//!   pool's known peers restored as the peers file does (`Pool::restore_peer`, both ways), and
//!   its trusted points again. Every connection is gone; the attacker reconnects at once (as
//!   many connections as it held, one per millisecond) and keeps flooding; honest inbound
//!   peers come back at their usual rate.
//! - **The measure**: for 24 h after the restart, once per simulated minute, the victim's
//!   *automatic outbound* connections (established, not inbound, not nacked, dialed to a
//!   point that is not trusted): how many, how many go to the attacker, and the most in one
//!   /16 group.
//!
//! # The figures
//!
//! Per seed ([`SeedReport`]): the attacker's share of the automatic outbound connections,
//! the mean over the samples that have at least one; whether the seed is **eclipsed**: in some
//! sample taken at least 1 h after the restart ([`SETTLE`]), the victim has at least one
//! automatic outbound connection and every one of them goes to the attacker; the share of
//! samples with at least 8; the most automatic outbound connections in one group in any
//! sample. Over seeds ([`EclipseReport`]): the mean share, the eclipsed seeds, the mean share
//! of samples with 8, the largest per-group count.
//!
//! A seed at full size costs one to three minutes of CPU (the attacker's 2.7 million inbound
//! attempts, most of them an eviction decision), so the 1,000 seeds the goal was set with take
//! a day or more on two cores: [`EclipseOptions::runs_dir`] keeps each seed's report as it ends,
//! and a run over the same directory reads them back and runs only the rest.
//!
//! # Modelled, not real
//!
//! The honest network is not simulated: honest nodes answer from the live population (with
//! [`EclipseOptions::honest_relay`] of the attacker's points mixed in, none by default),
//! never ask the victim for points, and their connections
//! are not subject to their own limits. Nobody sends addresses unasked: the victim learns
//! only from the answers to its own requests (Bitcoin Core's peers also relay addresses
//! unasked, and answer `getaddr` with up to 1,000). Latency is one constant ([`LATENCY`]); round-trip
//! times for pings are drawn uniformly from 20 to 300 ms for everyone, so ping protection
//! favours neither side. Handshakes are folded into the dial. The attacker has no IPv6, no
//! asmap tricks and no honest-looking behaviour beyond answering; it never closes a
//! connection, so eviction protections based on usefulness see no difference. Peer IDs are
//! random SHA-256 multihashes, not keys, and records are not signed
//! ([`node::Unsigned`]).
//!
//! ```
//! use peerage_sim::eclipse::{self, EclipseOptions};
//!
//! let options = EclipseOptions {
//!     honest: 500,
//!     attacker_ips: 256,
//!     days: 0.1,
//!     ..EclipseOptions::new()
//! };
//! let report = eclipse::run(&options).unwrap();
//! assert_eq!(report.runs.len(), 1);
//! ```

use std::{
    cmp::Ordering,
    collections::{BTreeMap, BinaryHeap, HashMap},
    fmt::Write as _,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{self, AtomicBool, AtomicUsize},
    },
    time::{Duration, Instant},
};

use libp2p_identity::PeerId;
use multiaddr::{Multiaddr, Protocol};
use peerage_core::{
    addrbook::{self, Group, Grouping},
    connmgr::{self, ConnManager},
    maintenance::Bounds,
    node::{self, Command, DialError, Identify, Input, Machine},
    peerstore::{self, Peerstore},
    pool,
};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};
use serde::{Deserialize, Serialize};

use crate::{node::Shared, world::mix};

/// Automatic outbound connections the victim keeps (Bitcoin Core
/// `MAX_OUTBOUND_FULL_RELAY_CONNECTIONS`).
pub const OUTBOUND_TARGET: usize = 8;
/// The victim's most connections (Bitcoin Core's default `-maxconnections`).
pub const MAX_CONNECTIONS: usize = 125;
/// The victim's trusted (bootstrap) points.
pub const TRUSTED: usize = 8;
/// One-way delay of every message.
pub const LATENCY: Duration = Duration::from_millis(50);
/// How long a dial to a dead, unreachable or unknown address takes to fail.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Probability that an honest node is reachable (not behind NAT).
pub const REACHABLE: f64 = 0.7;
/// Share of the live honest nodes replaced each simulated hour.
pub const CHURN_PER_HOUR: f64 = 0.1;
/// Mean time between two honest inbound connections to the victim.
pub const HONEST_INBOUND_INTERVAL: Duration = Duration::from_secs(120);
/// Mean time an honest node holds its inbound connection to the victim.
pub const HONEST_INBOUND_HOLD: Duration = Duration::from_secs(3600);
/// Mean time before an honest peer closes an outbound connection of the victim.
pub const HONEST_OUTBOUND_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Points in an honest answer (the most a node sends, [`node::pex::MAX_POINTS_SENT`]).
pub const HONEST_ANSWER: usize = node::pex::MAX_POINTS_SENT;
/// Points in the attacker's answer (the most a node accepts,
/// [`node::pex::MAX_POINTS_ACCEPTED`]).
pub const ATTACKER_ANSWER: usize = node::pex::MAX_POINTS_ACCEPTED;
/// Time between two inbound attempts of the attacker.
pub const ATTACKER_INTERVAL: Duration = Duration::from_secs(1);
/// Time between two samples.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(60);
/// How long the victim is watched after its restart.
pub const OBSERVATION: Duration = Duration::from_secs(24 * 3600);
/// Samples earlier than this after the restart do not count toward "eclipsed".
pub const SETTLE: Duration = Duration::from_secs(3600);
/// The port every honest node listens on.
pub const PORT: u16 = 4001;

/// Simulated time: nanoseconds since the start.
type Nanos = u64;

fn nanos(d: Duration) -> Nanos {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What to simulate. See the [module docs](self) for the model.
#[derive(Debug, Clone, PartialEq)]
pub struct EclipseOptions {
    /// The first seed. Default: 1.
    pub seed: u64,
    /// How many seeds: `seed..seed + seeds`. Default: 1.
    pub seeds: u32,
    /// Whether the victim keeps an address book. Default: on.
    pub addrbook: bool,
    /// Live honest nodes. Default: 10,000.
    pub honest: usize,
    /// The honest nodes' /16 groups; `None` for a fifth of `honest` (at least 1). Default:
    /// `None`.
    pub honest_groups: Option<usize>,
    /// The attacker's IPs. Default: 4,096.
    pub attacker_ips: usize,
    /// The attacker's /16 groups. Default: 16.
    pub attacker_groups: usize,
    /// Simulated days before the restart. Default: 30.
    pub days: f64,
    /// Share of the live honest nodes replaced each simulated hour. Default: 0.1
    /// ([`CHURN_PER_HOUR`]).
    pub churn_per_hour: f64,
    /// Time between two inbound attempts of the attacker. Default: 1 s
    /// ([`ATTACKER_INTERVAL`]).
    pub attack_interval: Duration,
    /// Whether the attacker answers the victim's requests for points on the connections it
    /// dialed (inbound to the victim) with its points; if not, with none. On connections the
    /// victim dialed it always answers. Default: true. Off, it shows how much of the attack
    /// goes through the victim's requests to inbound peers.
    pub attacker_answers_inbound: bool,
    /// Whether the attacker holds the connections the victim dialed to it for good (`true`),
    /// or closes each after an exponential time of mean 12 h ([`HONEST_OUTBOUND_LIFETIME`])
    /// as honest peers do (`false`): a stand-in for a victim that rotates its outbound
    /// connections at the honest peers' pace, whoever they go to. Default: true.
    pub attacker_holds_outbound: bool,
    /// Share of the points in an honest answer that are the attacker's (drawn uniformly from
    /// its IPs): how far its addresses have spread through the honest network, which relays
    /// what it was told. 0 keeps them out of honest answers entirely; the attacker's share of
    /// all addresses (4,096 of 14,096 by default, 0.29) is the most an attacker that told
    /// every honest node about itself can reach. Default: 0.
    pub honest_relay: f64,
    /// Threads running seeds in parallel; `None` for one per core. Results do not depend on
    /// it. Default: `None`.
    pub threads: Option<usize>,
    /// A directory that keeps each seed's report, so that a long run (1,000 seeds at full
    /// size take a day or more on two cores) survives an interruption and grows by parts: a
    /// seed whose file is there is read instead of run, and each seed run is written there as
    /// soon as it ends (to a temporary file of the process, synced, then renamed; a failed
    /// write stops the run). The file of seed `N` is
    /// `seed-N-book-on.json` (`-off` without the book): a one-seed [`EclipseReport`], the
    /// JSON that `peerage sim --scenario eclipse --seed N --json` prints. A file written with
    /// other options is an error, not a result; the file does not record the simulator's
    /// code, so a directory belongs to one build. [`curve`] keeps each group count in its own
    /// subdirectory, `groups-N`. Default: `None`.
    pub runs_dir: Option<PathBuf>,
}

impl Default for EclipseOptions {
    fn default() -> Self {
        Self {
            seed: 1,
            seeds: 1,
            addrbook: true,
            honest: 10_000,
            honest_groups: None,
            attacker_ips: 4096,
            attacker_groups: 16,
            days: 30.0,
            churn_per_hour: CHURN_PER_HOUR,
            attack_interval: ATTACKER_INTERVAL,
            attacker_answers_inbound: true,
            attacker_holds_outbound: true,
            honest_relay: 0.0,
            threads: None,
            runs_dir: None,
        }
    }
}

/// The options do not describe a run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid eclipse options: {0}")]
pub struct InvalidOptions(pub String);

/// A run could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The options do not describe a run.
    #[error(transparent)]
    Options(#[from] InvalidOptions),
    /// A seed's file in [`EclipseOptions::runs_dir`] could not be read or written, or holds
    /// something else than that seed's report under these options.
    #[error("{}: {reason}", path.display())]
    RunsDir {
        /// The file, or the directory.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

impl Error {
    fn runs_dir(path: &Path, reason: impl std::fmt::Display) -> Self {
        Self::RunsDir {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}

impl EclipseOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The honest nodes' groups: [`EclipseOptions::honest_groups`] or a fifth of the nodes.
    pub fn honest_groups(&self) -> usize {
        self.honest_groups.unwrap_or(self.honest / 5).max(1)
    }

    /// Checks that the options describe a run.
    ///
    /// # Errors
    ///
    /// [`InvalidOptions`], naming what is wrong.
    pub fn validate(&self) -> Result<(), InvalidOptions> {
        let bad = |s: String| Err(InvalidOptions(s));
        if self.seeds == 0 {
            return bad("at least one seed".into());
        }
        if self.honest < 2 * TRUSTED {
            return bad(format!("at least {} honest nodes", 2 * TRUSTED));
        }
        let groups = self.honest_groups();
        if self.attacker_ips > 0 && self.attacker_groups == 0 {
            return bad("the attacker's IPs need at least one group".into());
        }
        let prefixes = public_prefixes().len();
        if groups + self.attacker_groups > prefixes {
            return bad(format!(
                "{groups} honest and {} attacker groups: more than the {prefixes} public /16s",
                self.attacker_groups
            ));
        }
        if groups * 30_000 < self.honest {
            return bad(format!(
                "{} honest nodes in {groups} groups: at most 30,000 per /16",
                self.honest
            ));
        }
        if self.attacker_groups * 60_000 < self.attacker_ips {
            return bad(format!(
                "{} attacker IPs in {} groups: at most 60,000 per /16",
                self.attacker_ips, self.attacker_groups
            ));
        }
        if !(self.days.is_finite() && self.days > 0.0 && self.days <= 3650.0) {
            return bad(format!("days must be in (0, 3650], not {}", self.days));
        }
        if !(0.0..=1.0).contains(&self.churn_per_hour) {
            return bad(format!(
                "churn per hour must be in [0, 1], not {}",
                self.churn_per_hour
            ));
        }
        if !(0.0..=1.0).contains(&self.honest_relay) {
            return bad(format!(
                "the share of the attacker's points in honest answers must be in [0, 1], not {}",
                self.honest_relay
            ));
        }
        if self.honest_relay > 0.0 && self.attacker_ips == 0 {
            return bad("honest nodes cannot relay the points of an attacker without IPs".into());
        }
        if self.attack_interval < Duration::from_millis(1) {
            return bad("the attack interval must be at least 1 ms".into());
        }
        if !self
            .attack_interval
            .subsec_nanos()
            .is_multiple_of(1_000_000)
        {
            // The report, and a runs directory's check of its files, count it in milliseconds.
            return bad(format!(
                "the attack interval must be whole milliseconds, not {:?}",
                self.attack_interval
            ));
        }
        Ok(())
    }
}

/// One seed's outcome.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SeedReport {
    /// The seed.
    pub seed: u64,
    /// The attacker's share of the automatic outbound connections after the restart: the
    /// mean over the samples with at least one.
    pub attacker_share: f64,
    /// In some sample at least [`SETTLE`] after the restart, every automatic outbound
    /// connection (at least one) went to the attacker.
    pub eclipsed: bool,
    /// Share of the samples after the restart with at least [`OUTBOUND_TARGET`] automatic
    /// outbound connections.
    pub samples_with_8_outbound: f64,
    /// The most automatic outbound connections in one /16 group, in any sample after the
    /// restart.
    pub max_outbound_per_group: usize,
    /// Mean automatic outbound connections after the restart.
    pub mean_outbound: f64,
    /// Share of the samples after the restart with no automatic outbound connection.
    pub samples_without_outbound: f64,
    /// Mean inbound connections (not nacked) after the restart.
    pub mean_inbound: f64,
    /// Mean connections the maintenance counts (the pool's active peers) after the restart;
    /// at its `max_threshold` (86 with bounds `8/8/125`) every newcomer is nacked.
    pub mean_active: f64,
    /// The attacker's share of those inbound connections (mean over samples with one).
    pub attacker_inbound_share: f64,
    /// The attacker's share of the automatic outbound connections over the last 24 h before
    /// the restart (mean over samples with at least one).
    pub attacker_share_before_restart: f64,
    /// Mean automatic outbound connections over the last 24 h before the restart.
    pub mean_outbound_before_restart: f64,
    /// At the restart, the attacker's share of the addresses the victim knows: the book's
    /// entries with it on, the pool's known points without.
    pub known_attacker_share: f64,
    /// How many addresses that is.
    pub known_addresses: usize,
    /// Of the book's tried entries, the attacker's share (`None` without a book).
    pub tried_attacker_share: Option<f64>,
    /// Inbound attempts of the attacker, and how many the victim admitted (nacked ones
    /// included).
    pub attacker_attempts: u64,
    /// See [`SeedReport::attacker_attempts`].
    pub attacker_admitted: u64,
    /// Dials of the victim.
    pub dials: u64,
    /// Dials of the victim to the attacker's IPs.
    pub dials_to_attacker: u64,
    /// Honest inbound attempts, and how many the victim admitted without nacking them.
    pub honest_inbound_attempts: u64,
    /// See [`SeedReport::honest_inbound_attempts`].
    pub honest_inbound_accepted: u64,
    /// Attacker inbound attempts the victim admitted without nacking them.
    pub attacker_accepted: u64,
    /// Inbound peers the victim evicted to make room for a newcomer (with the book).
    pub evictions: u64,
    /// Inbound connections the victim nacked (admitted only to answer one request and
    /// close).
    pub nacked: u64,
    /// Answers to the victim's requests for points, from honest peers.
    pub answers_from_honest: u64,
    /// Answers from the attacker on connections the victim dialed.
    pub answers_from_attacker_outbound: u64,
    /// Answers from the attacker on connections it dialed (inbound to the victim).
    pub answers_from_attacker_inbound: u64,
}

fn yes() -> bool {
    true
}

/// The outcome over seeds. See the [module docs](self) for the definitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EclipseReport {
    /// Whether the victim kept an address book.
    pub addrbook: bool,
    /// Live honest nodes.
    pub honest: usize,
    /// Their /16 groups.
    pub honest_groups: usize,
    /// The attacker's IPs.
    pub attacker_ips: usize,
    /// Its /16 groups.
    pub attacker_groups: usize,
    /// Simulated days before the restart.
    pub days: f64,
    /// Share of the honest nodes replaced each hour.
    pub churn_per_hour: f64,
    /// Time between two inbound attempts of the attacker, in milliseconds.
    pub attack_interval_ms: u64,
    /// Whether the attacker answered requests on the connections it dialed.
    pub attacker_answers_inbound: bool,
    /// Whether the attacker held the connections the victim dialed for good (true in the
    /// files of runs before the option).
    #[serde(default = "yes")]
    pub attacker_holds_outbound: bool,
    /// Share of the points in an honest answer that were the attacker's.
    pub honest_relay: f64,
    /// The first seed.
    pub seed: u64,
    /// How many seeds.
    pub seeds: u32,
    /// The mean over seeds of [`SeedReport::attacker_share`].
    pub attacker_outbound_share: f64,
    /// Seeds eclipsed ([`SeedReport::eclipsed`]).
    pub eclipsed_seeds: u32,
    /// The mean over seeds of [`SeedReport::samples_with_8_outbound`].
    pub samples_with_8_outbound: f64,
    /// The largest [`SeedReport::max_outbound_per_group`].
    pub max_outbound_per_group: usize,
    /// The mean over seeds of [`SeedReport::mean_outbound`].
    pub mean_outbound: f64,
    /// The mean over seeds of [`SeedReport::attacker_share_before_restart`].
    pub attacker_share_before_restart: f64,
    /// The mean over seeds of [`SeedReport::known_attacker_share`].
    pub known_attacker_share: f64,
    /// Wall time of the whole run, all seeds (those read from
    /// [`EclipseOptions::runs_dir`] cost nothing).
    pub wall_ms: u64,
    /// Each seed, in seed order.
    pub runs: Vec<SeedReport>,
}

impl EclipseReport {
    /// A small table: the figures, then one line per seed.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{}", self.setup());
        let _ = writeln!(
            s,
            "address book {}: attacker's share of automatic outbound {:.3}, eclipsed seeds {}/{}, samples with 8 outbound {:.3}, most outbound in one /16 {}, wall time {:.1} s",
            if self.addrbook { "on" } else { "off" },
            self.attacker_outbound_share,
            self.eclipsed_seeds,
            self.seeds,
            self.samples_with_8_outbound,
            self.max_outbound_per_group,
            self.wall_ms as f64 / 1000.0
        );
        seed_lines(&mut s, &self.runs);
        s
    }

    fn setup(&self) -> String {
        let seeds = match self.seeds {
            1 => format!("seed {}", self.seed),
            n => format!(
                "seeds {} to {}",
                self.seed,
                self.seed.wrapping_add(u64::from(n) - 1)
            ),
        };
        let relay = if self.honest_relay > 0.0 {
            format!(
                ", {:.1} % of honest answers' points the attacker's",
                self.honest_relay * 100.0
            )
        } else {
            String::new()
        };
        let held = if self.attacker_holds_outbound {
            ""
        } else {
            ", the attacker closing outbound connections as honest peers do"
        };
        format!(
            "eclipse: {} honest nodes in {} /16s, attacker {} IPs in {} /16s{relay}{held}, {} days then a restart and 24 h of samples, {seeds}",
            self.honest, self.honest_groups, self.attacker_ips, self.attacker_groups, self.days,
        )
    }
}

fn seed_lines(s: &mut String, runs: &[SeedReport]) {
    let _ = writeln!(
        s,
        "{:>6} {:>8} {:>8} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "seed",
        "share",
        "eclipsed",
        "8 out",
        "group",
        "outbound",
        "inbound",
        "before",
        "known",
        "to att."
    );
    for r in runs {
        let _ = writeln!(
            s,
            "{:>6} {:>8.3} {:>8} {:>6.3} {:>6} {:>8.2} {:>8.1} {:>8.3} {:>8.3} {:>9}",
            r.seed,
            r.attacker_share,
            if r.eclipsed { "yes" } else { "no" },
            r.samples_with_8_outbound,
            r.max_outbound_per_group,
            r.mean_outbound,
            r.mean_inbound,
            r.attacker_share_before_restart,
            r.known_attacker_share,
            format!("{}/{}", r.dials_to_attacker, r.dials)
        );
    }
}

/// The same attack with the address book off (today's pool) and on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Without the book.
    pub off: EclipseReport,
    /// With it.
    pub on: EclipseReport,
}

impl Comparison {
    /// The two side by side, then each seed.
    pub fn table(&self) -> String {
        let (off, on) = (&self.off, &self.on);
        let mut s = String::new();
        let _ = writeln!(s, "{}", on.setup());
        let _ = writeln!(s, "{:<40} {:>10} {:>10}", "", "book off", "book on");
        let mut row = |name: &str, a: String, b: String| {
            let _ = writeln!(s, "{name:<40} {a:>10} {b:>10}");
        };
        row(
            "attacker's share of automatic outbound",
            format!("{:.3}", off.attacker_outbound_share),
            format!("{:.3}", on.attacker_outbound_share),
        );
        row(
            "eclipsed seeds",
            format!("{}/{}", off.eclipsed_seeds, off.seeds),
            format!("{}/{}", on.eclipsed_seeds, on.seeds),
        );
        row(
            "samples with 8 automatic outbound",
            format!("{:.3}", off.samples_with_8_outbound),
            format!("{:.3}", on.samples_with_8_outbound),
        );
        row(
            "mean automatic outbound",
            format!("{:.2}", off.mean_outbound),
            format!("{:.2}", on.mean_outbound),
        );
        row(
            "most automatic outbound in one /16",
            off.max_outbound_per_group.to_string(),
            on.max_outbound_per_group.to_string(),
        );
        row(
            "attacker's share, day before restart",
            format!("{:.3}", off.attacker_share_before_restart),
            format!("{:.3}", on.attacker_share_before_restart),
        );
        row(
            "attacker's share of known addresses",
            format!("{:.3}", off.known_attacker_share),
            format!("{:.3}", on.known_attacker_share),
        );
        row(
            "wall time",
            format!("{:.1} s", off.wall_ms as f64 / 1000.0),
            format!("{:.1} s", on.wall_ms as f64 / 1000.0),
        );
        let _ = writeln!(s, "book off:");
        seed_lines(&mut s, &off.runs);
        let _ = writeln!(s, "book on:");
        seed_lines(&mut s, &on.runs);
        s
    }
}

/// Runs every seed of `options`, in parallel over threads, and gathers the figures; with
/// [`EclipseOptions::runs_dir`], reads the seeds already there and writes the others.
///
/// # Errors
///
/// [`Error::Options`] if the options do not describe a run; [`Error::RunsDir`] if a seed's
/// file cannot be read or holds another run (nothing is run then), or cannot be written
/// (the run stops: the seeds written are kept, the seeds running are lost).
pub fn run(options: &EclipseOptions) -> Result<EclipseReport, Error> {
    options.validate()?;
    let started = Instant::now();
    let seeds: Vec<u64> = (0..options.seeds)
        .map(|i| options.seed.wrapping_add(u64::from(i)))
        .collect();
    let mut done: Vec<Option<SeedReport>> = vec![None; seeds.len()];
    if let Some(dir) = &options.runs_dir {
        std::fs::create_dir_all(dir).map_err(|e| Error::runs_dir(dir, e))?;
        for (slot, &seed) in done.iter_mut().zip(&seeds) {
            *slot = read_seed(options, dir, seed)?;
        }
    }
    let todo: Vec<usize> = (0..seeds.len()).filter(|&i| done[i].is_none()).collect();
    let threads = options
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, todo.len().max(1));
    let next = AtomicUsize::new(0);
    let results = Mutex::new(done);
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    let failed = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                // A failed write stops the run: what was written stays, the rest would be lost.
                while !failed.load(atomic::Ordering::Relaxed) {
                    let k = next.fetch_add(1, atomic::Ordering::Relaxed);
                    let Some(&i) = todo.get(k) else { break };
                    let began = Instant::now();
                    let report = Sim::new(options, seeds[i]).run();
                    if let Some(dir) = &options.runs_dir
                        && let Err(e) = write_seed(options, dir, &report, began)
                    {
                        failed.store(true, atomic::Ordering::Relaxed);
                        failure
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get_or_insert(e);
                    }
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(report);
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    let runs: Vec<SeedReport> = results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|r| r.expect("every seed ran"))
        .collect();
    Ok(summarize(options, options.seed, runs, started))
}

/// The report of `runs`, the seeds from `seed` on, run under `options` since `started`.
fn summarize(
    options: &EclipseOptions,
    seed: u64,
    runs: Vec<SeedReport>,
    started: Instant,
) -> EclipseReport {
    let n = runs.len().max(1) as f64;
    let mean = |f: fn(&SeedReport) -> f64| runs.iter().map(f).sum::<f64>() / n;
    EclipseReport {
        addrbook: options.addrbook,
        honest: options.honest,
        honest_groups: options.honest_groups(),
        attacker_ips: options.attacker_ips,
        attacker_groups: options.attacker_groups,
        days: options.days,
        churn_per_hour: options.churn_per_hour,
        attack_interval_ms: u64::try_from(options.attack_interval.as_millis()).unwrap_or(u64::MAX),
        attacker_answers_inbound: options.attacker_answers_inbound,
        attacker_holds_outbound: options.attacker_holds_outbound,
        honest_relay: options.honest_relay,
        seed,
        seeds: u32::try_from(runs.len()).expect("fewer than 2^32 seeds"),
        attacker_outbound_share: mean(|r| r.attacker_share),
        eclipsed_seeds: runs.iter().filter(|r| r.eclipsed).count() as u32,
        samples_with_8_outbound: mean(|r| r.samples_with_8_outbound),
        max_outbound_per_group: runs
            .iter()
            .map(|r| r.max_outbound_per_group)
            .max()
            .unwrap_or(0),
        mean_outbound: mean(|r| r.mean_outbound),
        attacker_share_before_restart: mean(|r| r.attacker_share_before_restart),
        known_attacker_share: mean(|r| r.known_attacker_share),
        wall_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        runs,
    }
}

impl EclipseReport {
    /// The first option in which `self` and `other` differ, by its JSON name (seeds, results
    /// and wall time aside).
    fn other_setup(&self, other: &EclipseReport) -> Option<&'static str> {
        [
            ("addrbook", self.addrbook == other.addrbook),
            ("honest", self.honest == other.honest),
            ("honest_groups", self.honest_groups == other.honest_groups),
            ("attacker_ips", self.attacker_ips == other.attacker_ips),
            (
                "attacker_groups",
                self.attacker_groups == other.attacker_groups,
            ),
            ("days", self.days == other.days),
            (
                "churn_per_hour",
                self.churn_per_hour == other.churn_per_hour,
            ),
            (
                "attack_interval_ms",
                self.attack_interval_ms == other.attack_interval_ms,
            ),
            (
                "attacker_answers_inbound",
                self.attacker_answers_inbound == other.attacker_answers_inbound,
            ),
            (
                "attacker_holds_outbound",
                self.attacker_holds_outbound == other.attacker_holds_outbound,
            ),
            ("honest_relay", self.honest_relay == other.honest_relay),
        ]
        .into_iter()
        .find(|(_, same)| !same)
        .map(|(name, _)| name)
    }
}

/// Seed `seed`'s file in `dir`.
fn seed_path(options: &EclipseOptions, dir: &Path, seed: u64) -> PathBuf {
    let book = if options.addrbook { "on" } else { "off" };
    dir.join(format!("seed-{seed}-book-{book}.json"))
}

/// Seed `seed`'s report from `dir`, `None` if it has no file.
fn read_seed(options: &EclipseOptions, dir: &Path, seed: u64) -> Result<Option<SeedReport>, Error> {
    let path = seed_path(options, dir, seed);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::runs_dir(&path, e)),
    };
    let file: EclipseReport = serde_json::from_slice(&bytes)
        .map_err(|e| Error::runs_dir(&path, format_args!("not a seed's report: {e}")))?;
    let expected = summarize(options, seed, Vec::new(), Instant::now());
    if let Some(name) = expected.other_setup(&file) {
        return Err(Error::runs_dir(
            &path,
            format_args!("written with another {name}: use another directory"),
        ));
    }
    match file.runs.as_slice() {
        [run] if file.seed == seed && run.seed == seed => Ok(Some(run.clone())),
        _ => Err(Error::runs_dir(
            &path,
            format_args!(
                "holds {} run(s) from seed {}, not seed {seed}'s",
                file.runs.len(),
                file.seed
            ),
        )),
    }
}

/// Writes `report` into its file in `dir`, atomically: to a temporary file of this process,
/// synced, then renamed over the seed's file.
fn write_seed(
    options: &EclipseOptions,
    dir: &Path,
    report: &SeedReport,
    started: Instant,
) -> Result<(), Error> {
    use std::io::Write as _;
    let path = seed_path(options, dir, report.seed);
    let file = summarize(options, report.seed, vec![report.clone()], started);
    let mut bytes = serde_json::to_vec(&file).expect("a report serializes");
    bytes.push(b'\n');
    let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
    std::fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(&bytes)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::runs_dir(&path, e)
        })
}

/// Runs `options` with the book off, then on.
///
/// # Errors
///
/// As [`run`].
pub fn compare(options: &EclipseOptions) -> Result<Comparison, Error> {
    let off = run(&EclipseOptions {
        addrbook: false,
        ..options.clone()
    })?;
    let on = run(&EclipseOptions {
        addrbook: true,
        ..options.clone()
    })?;
    Ok(Comparison { off, on })
}

/// The attacker's group counts of [`curve`]: its IPs split evenly over 16 to 256 /16s.
pub const CURVE_GROUPS: [usize; 5] = [16, 32, 64, 128, 256];

/// The attack at each of [`CURVE_GROUPS`], with the book off and on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Curve {
    /// One comparison per group count, in [`CURVE_GROUPS`] order.
    pub points: Vec<Comparison>,
}

/// Runs [`compare`] at each of [`CURVE_GROUPS`] (`options.attacker_groups` is ignored), each
/// in its own subdirectory `groups-N` of [`EclipseOptions::runs_dir`].
///
/// # Errors
///
/// As [`run`], at some group count.
pub fn curve(options: &EclipseOptions) -> Result<Curve, Error> {
    let options: Vec<EclipseOptions> = CURVE_GROUPS
        .iter()
        .map(|&attacker_groups| EclipseOptions {
            attacker_groups,
            runs_dir: options
                .runs_dir
                .as_ref()
                .map(|d| d.join(format!("groups-{attacker_groups}"))),
            ..options.clone()
        })
        .collect();
    for o in &options {
        o.validate()?;
    }
    let points = options.iter().map(compare).collect::<Result<_, _>>()?;
    Ok(Curve { points })
}

impl Curve {
    /// One line per group count: the attacker's mean share of the automatic outbound
    /// connections and the eclipsed seeds, book off and on.
    pub fn table(&self) -> String {
        let mut s = String::new();
        if let Some(first) = self.points.first() {
            let on = &first.on;
            let _ = writeln!(
                s,
                "eclipse curve: {} honest nodes in {} /16s, attacker {} IPs, {} days then a restart and 24 h of samples, {} seed(s) from {}",
                on.honest, on.honest_groups, on.attacker_ips, on.days, on.seeds, on.seed
            );
        }
        let _ = writeln!(
            s,
            "{:>16} {:>14} {:>14} {:>14} {:>14}",
            "attacker groups", "share, off", "eclipsed, off", "share, on", "eclipsed, on"
        );
        for c in &self.points {
            let _ = writeln!(
                s,
                "{:>16} {:>14.3} {:>14} {:>14.3} {:>14}",
                c.on.attacker_groups,
                c.off.attacker_outbound_share,
                format!("{}/{}", c.off.eclipsed_seeds, c.off.seeds),
                c.on.attacker_outbound_share,
                format!("{}/{}", c.on.eclipsed_seeds, c.on.seeds),
            );
        }
        s
    }

    /// The curve as an SVG plot: against the attacker's groups (log scale), its mean share of
    /// the victim's automatic outbound connections and the share of seeds eclipsed, with the
    /// book off and on.
    pub fn svg(&self) -> String {
        use plotters::prelude::*;
        let mut out = String::new();
        // One evenly spaced position per group count (they double), labelled with it.
        let series = |f: fn(&EclipseReport) -> f64, on: bool| -> Vec<(f64, f64)> {
            self.points
                .iter()
                .enumerate()
                .map(|(i, c)| (i as f64, f(if on { &c.on } else { &c.off })))
                .collect()
        };
        let groups: Vec<usize> = self.points.iter().map(|c| c.on.attacker_groups).collect();
        let share = |r: &EclipseReport| r.attacker_outbound_share;
        let eclipsed = |r: &EclipseReport| f64::from(r.eclipsed_seeds) / f64::from(r.seeds);
        let caption = self.points.first().map_or_else(String::new, |c| {
            format!(
                "Eclipse: {} attacker IPs, {} honest nodes, {} seed(s)",
                c.on.attacker_ips, c.on.honest, c.on.seeds
            )
        });
        let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
            let root = SVGBackend::with_string(&mut out, (760, 420)).into_drawing_area();
            root.fill(&WHITE)?;
            let last = groups.len().saturating_sub(1) as f64;
            let mut chart = ChartBuilder::on(&root)
                .caption(caption, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(44)
                .y_label_area_size(56)
                .build_cartesian_2d(-0.25f64..last + 0.25, -0.03f64..1.05f64)?;
            chart
                .configure_mesh()
                .x_labels(groups.len())
                .x_label_formatter(&|x| {
                    let i = x.round();
                    match groups.get(i as usize) {
                        Some(g) if (x - i).abs() < 1e-6 && i >= 0.0 => g.to_string(),
                        _ => String::new(),
                    }
                })
                .disable_x_mesh()
                .x_desc("attacker /16 groups (its IPs split evenly)")
                .y_desc("share of outbound connections / of seeds")
                .draw()?;
            // Label, points, colour, thin (eclipsed seeds) or thick (shares).
            type Line<'a> = (&'a str, Vec<(f64, f64)>, RGBColor, bool);
            let lines: [Line<'_>; 4] = [
                (
                    "book off: attacker's share of outbound",
                    series(share, false),
                    RED,
                    false,
                ),
                (
                    "book off: seeds eclipsed",
                    series(eclipsed, false),
                    RED,
                    true,
                ),
                (
                    "book on: attacker's share of outbound",
                    series(share, true),
                    BLUE,
                    false,
                ),
                (
                    "book on: seeds eclipsed",
                    series(eclipsed, true),
                    BLUE,
                    true,
                ),
            ];
            // Shares: thick lines and dots; eclipsed seeds: thin lines and crosses.
            for (label, points, color, thin) in lines {
                let style = color.stroke_width(if thin { 1 } else { 3 });
                chart
                    .draw_series(LineSeries::new(points.clone(), style))?
                    .label(label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
                if thin {
                    chart.draw_series(points.into_iter().map(|p| Cross::new(p, 7, style)))?;
                } else {
                    chart.draw_series(
                        points
                            .into_iter()
                            .map(|p| Circle::new(p, 5, color.filled())),
                    )?;
                }
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::MiddleRight)
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .draw()?;
            root.present()?;
            Ok(())
        })();
        drawn.expect("drawing to a string does not fail");
        out
    }
}

/// Every public IPv4 /16, as its two bytes: what the address book counts as a public group,
/// leaving out the /16s that hold special ranges (documentation, benchmarking).
fn public_prefixes() -> Vec<[u8; 2]> {
    let grouping = Grouping::new();
    let special = [[192, 0], [198, 18], [198, 19], [198, 51], [203, 0]];
    (1..=223u8)
        .flat_map(|a| (0..=255u8).map(move |b| [a, b]))
        .filter(|p| !special.contains(p))
        .filter(|&[a, b]| {
            grouping.group_ip(Ipv4Addr::new(a, b, 1, 1).into()) == Group::Ipv4([a, b])
                && grouping.group_ip(Ipv4Addr::new(a, b, 254, 254).into()) == Group::Ipv4([a, b])
        })
        .collect()
}

/// A random peer ID: a SHA-256 multihash of random bytes (as a hashed key's; no key behind
/// it, records are unsigned).
fn random_peer(rng: &mut StdRng) -> PeerId {
    let mut bytes = [0u8; 34];
    bytes[0] = 0x12;
    bytes[1] = 32;
    rng.fill(&mut bytes[2..]);
    PeerId::from_bytes(&bytes).expect("a SHA-256 multihash")
}

fn listen_addr(ip: u32) -> Multiaddr {
    Multiaddr::empty()
        .with(Protocol::Ip4(Ipv4Addr::from(ip)))
        .with(Protocol::Tcp(PORT))
}

/// An inbound connection's remote address: the dialer's IP, an ephemeral port.
fn ephemeral_addr(ip: u32, conn: u64) -> Multiaddr {
    let port = 32768 + u16::try_from(conn % 28_000).expect("below 28000");
    Multiaddr::empty()
        .with(Protocol::Ip4(Ipv4Addr::from(ip)))
        .with(Protocol::Tcp(port))
}

/// The IPv4 address and TCP port of a point, if it is one.
fn ip_port(addr: &Multiaddr) -> Option<(u32, u16)> {
    let mut it = addr.iter();
    let ip = match it.next()? {
        Protocol::Ip4(ip) => u32::from(ip),
        _ => return None,
    };
    match it.next()? {
        Protocol::Tcp(port) => Some((ip, port)),
        _ => None,
    }
}

/// An exponential delay of mean `mean`.
fn exponential(rng: &mut StdRng, mean: Duration) -> Nanos {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    nanos(mean.mul_f64(-u.ln()))
}

fn identify(addr: &Multiaddr) -> Identify {
    Identify {
        listen_addrs: vec![addr.clone()],
        protocols: vec![
            "/ipfs/id/1.0.0".into(),
            "/ipfs/ping/1.0.0".into(),
            node::pex::PROTOCOL.into(),
        ],
        agent_version: "peerage-sim".into(),
        protocol_version: "ipfs/0.1.0".into(),
        signed_peer_record: None,
    }
}

#[derive(Debug, Clone)]
struct Honest {
    peer: PeerId,
    addr: Multiaddr,
    ip: u32,
    reachable: bool,
    /// A trusted point of the victim: never leaves.
    stable: bool,
}

#[derive(Debug, Clone)]
struct Attacker {
    peer: PeerId,
    addr: Multiaddr,
    /// Connections it holds to the victim, in either direction.
    held: u32,
}

/// Who is at the other end of a connection or a dial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Honest,
    /// The attacker, by its IP's index.
    Attacker(u32),
}

#[derive(Debug, Clone, Copy)]
struct Target {
    side: Side,
    peer: PeerId,
    ip: u32,
}

/// The modelled world: honest nodes (live ones only) and the attacker's IPs.
struct Net {
    honest: Vec<Honest>,
    honest_by_ip: HashMap<u32, u32>,
    honest_groups: Vec<[u8; 2]>,
    attackers: Vec<Attacker>,
    attacker_by_ip: HashMap<u32, u32>,
    /// The next attacker IP to flood from.
    cursor: usize,
}

impl Net {
    fn new(options: &EclipseOptions, rng: &mut StdRng) -> Self {
        let mut prefixes = public_prefixes();
        prefixes.shuffle(rng);
        let honest_groups: Vec<[u8; 2]> = prefixes[..options.honest_groups()].to_vec();
        let attacker_groups =
            &prefixes[honest_groups.len()..honest_groups.len() + options.attacker_groups];
        let mut net = Net {
            honest: Vec::with_capacity(options.honest),
            honest_by_ip: HashMap::with_capacity(options.honest),
            honest_groups,
            attackers: Vec::with_capacity(options.attacker_ips),
            attacker_by_ip: HashMap::with_capacity(options.attacker_ips),
            cursor: 0,
        };
        for i in 0..options.honest {
            net.join(rng, i < TRUSTED);
        }
        for i in 0..options.attacker_ips {
            let [a, b] = attacker_groups[i % attacker_groups.len()];
            let ip = loop {
                let ip = u32::from(Ipv4Addr::new(a, b, rng.random(), rng.random_range(1..255)));
                if !net.attacker_by_ip.contains_key(&ip) {
                    break ip;
                }
            };
            let index = u32::try_from(net.attackers.len()).expect("fewer than 2^32 IPs");
            net.attacker_by_ip.insert(ip, index);
            net.attackers.push(Attacker {
                peer: random_peer(rng),
                addr: listen_addr(ip),
                held: 0,
            });
        }
        net
    }

    /// A new honest node at a new address in a random honest group.
    fn join(&mut self, rng: &mut StdRng, stable: bool) {
        let ip = loop {
            let [a, b] = self.honest_groups[rng.random_range(0..self.honest_groups.len())];
            let ip = u32::from(Ipv4Addr::new(a, b, rng.random(), rng.random_range(1..255)));
            if !self.honest_by_ip.contains_key(&ip) {
                break ip;
            }
        };
        let index = u32::try_from(self.honest.len()).expect("fewer than 2^32 nodes");
        self.honest_by_ip.insert(ip, index);
        self.honest.push(Honest {
            peer: random_peer(rng),
            addr: listen_addr(ip),
            ip,
            reachable: stable || rng.random_bool(REACHABLE),
            stable,
        });
    }

    /// Removes live honest node `index`; returns it.
    fn leave(&mut self, index: usize) -> Honest {
        let node = self.honest.swap_remove(index);
        self.honest_by_ip.remove(&node.ip);
        if let Some(moved) = self.honest.get(index) {
            self.honest_by_ip.insert(
                moved.ip,
                u32::try_from(index).expect("fewer than 2^32 nodes"),
            );
        }
        node
    }

    /// Who answers a dial to `point`, if anyone does.
    fn resolve(&self, point: &Multiaddr) -> Option<Target> {
        let (ip, port) = ip_port(point)?;
        if let Some(&i) = self.attacker_by_ip.get(&ip) {
            return Some(Target {
                side: Side::Attacker(i),
                peer: self.attackers[i as usize].peer,
                ip,
            });
        }
        let &i = self.honest_by_ip.get(&ip)?;
        let node = &self.honest[i as usize];
        (port == PORT && node.reachable).then_some(Target {
            side: Side::Honest,
            peer: node.peer,
            ip,
        })
    }

    fn is_attacker_addr(&self, addr: &Multiaddr) -> bool {
        ip_port(addr).is_some_and(|(ip, _)| self.attacker_by_ip.contains_key(&ip))
    }

    /// `n` distinct live honest nodes, drawn uniformly, as points.
    fn honest_points(&self, rng: &mut StdRng, n: usize) -> Vec<node::pex::Point> {
        rand::seq::index::sample(rng, self.honest.len(), n.min(self.honest.len()))
            .into_iter()
            .map(|i| {
                let h = &self.honest[i];
                node::pex::Point {
                    addr: h.addr.clone(),
                    peer: Some(h.peer),
                }
            })
            .collect()
    }

    /// `n` distinct attacker IPs, drawn uniformly, as points.
    fn attacker_points(&self, rng: &mut StdRng, n: usize) -> Vec<node::pex::Point> {
        rand::seq::index::sample(rng, self.attackers.len(), n.min(self.attackers.len()))
            .into_iter()
            .map(|i| {
                let a = &self.attackers[i];
                node::pex::Point {
                    addr: a.addr.clone(),
                    peer: Some(a.peer),
                }
            })
            .collect()
    }
}

/// How a dial ends.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Connected(Target),
    WrongPeer,
    Failed,
}

#[derive(Debug, Clone)]
enum Ev {
    /// The machine's or the connection manager's timer.
    Timer,
    DialDone {
        conn: u64,
        outcome: Outcome,
    },
    /// The remote's identify arrives.
    Identify {
        conn: u64,
    },
    /// The remote answers our request `seq`.
    PexAnswer {
        conn: u64,
        peer: PeerId,
        seq: u64,
    },
    /// The remote closes the connection.
    RemoteClose {
        conn: u64,
    },
    HonestInbound,
    /// The attacker's next inbound attempt; `burst` ones (its reconnection at the restart)
    /// do not schedule the next.
    AttackerInbound {
        burst: bool,
    },
    Churn,
    Sample,
    Restart,
}

struct Item {
    t: Nanos,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Item {
    fn eq(&self, other: &Self) -> bool {
        (self.t, self.seq) == (other.t, other.seq)
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Item {
    /// Earliest first (the heap is a max-heap), then in the order pushed.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.t, other.seq).cmp(&(self.t, self.seq))
    }
}

/// The protection tag of trusted peers, as the glue's.
const TRUSTED_TAG: &str = "peerage-trusted";

#[derive(Debug, Clone)]
struct Conn {
    peer: PeerId,
    side: Side,
    /// The remote's listen address, for its identify.
    listen: Multiaddr,
    /// The connection's remote address.
    remote: Multiaddr,
    inbound: bool,
    established: bool,
    /// Left out of the connection manager (nacked).
    excluded: bool,
}

/// Sums over samples.
#[derive(Debug, Clone, Default)]
struct Tally {
    samples: u64,
    /// Samples with at least one automatic outbound connection, and the sum of the attacker's
    /// shares over them.
    with_outbound: u64,
    share_sum: f64,
    outbound_sum: u64,
    full: u64,
    max_per_group: usize,
    eclipsed: bool,
    inbound_sum: u64,
    active_sum: u64,
    with_inbound: u64,
    inbound_share_sum: f64,
}

impl Tally {
    fn share(&self) -> f64 {
        if self.with_outbound == 0 {
            0.0
        } else {
            self.share_sum / self.with_outbound as f64
        }
    }
    fn per_sample(&self, x: u64) -> f64 {
        if self.samples == 0 {
            0.0
        } else {
            x as f64 / self.samples as f64
        }
    }
}

/// One seed's run.
struct Sim {
    addrbook: bool,
    churn_per_hour: f64,
    attack_interval: Nanos,
    attacker_answers_inbound: bool,
    attacker_holds_outbound: bool,
    honest_relay: f64,
    base: Instant,
    /// The population and its churn: the same for the book on and off.
    world_rng: StdRng,
    /// Everything else.
    rng: StdRng,
    queue: BinaryHeap<Item>,
    seq: u64,
    net: Net,
    victim: PeerId,
    victim_addr: Multiaddr,
    machine: Machine<u64>,
    cm: Shared,
    conns: BTreeMap<u64, Conn>,
    /// Dials in flight: their point.
    dialing: BTreeMap<u64, Multiaddr>,
    /// Our requests waiting for an answer: the peer, and the request's number.
    asking: BTreeMap<PeerId, u64>,
    next_conn: u64,
    next_ask: u64,
    timer_at: Option<Nanos>,
    restart_at: Nanos,
    end_at: Nanos,
    grouping: Grouping,
    before: Tally,
    after: Tally,
    report: SeedReport,
}

impl Sim {
    fn new(options: &EclipseOptions, seed: u64) -> Self {
        let mut world_rng = StdRng::seed_from_u64(mix(seed));
        let mut rng = StdRng::seed_from_u64(mix(seed ^ 0xec11_95e0));
        let net = Net::new(options, &mut world_rng);
        let victim = random_peer(&mut rng);
        let victim_addr = loop {
            let [a, b] = net.honest_groups[0];
            let ip = u32::from(Ipv4Addr::new(a, b, rng.random(), rng.random_range(1..255)));
            if !net.honest_by_ip.contains_key(&ip) {
                break listen_addr(ip);
            }
        };
        let base = Instant::now();
        let (machine, cm) = new_machine(options.addrbook, victim, &mut rng, base);
        let restart_at = nanos(Duration::from_secs_f64(options.days * 86_400.0));
        let mut sim = Sim {
            addrbook: options.addrbook,
            churn_per_hour: options.churn_per_hour,
            attack_interval: nanos(options.attack_interval),
            attacker_answers_inbound: options.attacker_answers_inbound,
            attacker_holds_outbound: options.attacker_holds_outbound,
            honest_relay: options.honest_relay,
            base,
            world_rng,
            rng,
            queue: BinaryHeap::new(),
            seq: 0,
            net,
            victim,
            victim_addr,
            machine,
            cm,
            conns: BTreeMap::new(),
            dialing: BTreeMap::new(),
            asking: BTreeMap::new(),
            next_conn: 0,
            next_ask: 0,
            timer_at: None,
            restart_at,
            end_at: restart_at + nanos(OBSERVATION),
            grouping: Grouping::new(),
            before: Tally::default(),
            after: Tally::default(),
            report: SeedReport {
                seed,
                ..SeedReport::default()
            },
        };
        sim.boot(0);
        if !sim.net.attackers.is_empty() {
            sim.push(0, Ev::AttackerInbound { burst: false });
        }
        let first = exponential(&mut sim.rng, HONEST_INBOUND_INTERVAL);
        sim.push(first, Ev::HonestInbound);
        if let Some(at) = sim.next_churn() {
            sim.push(at, Ev::Churn);
        }
        sim.push(nanos(SAMPLE_INTERVAL), Ev::Sample);
        sim.push(restart_at, Ev::Restart);
        sim
    }

    fn instant(&self, t: Nanos) -> Instant {
        self.base + Duration::from_nanos(t)
    }

    fn push(&mut self, t: Nanos, ev: Ev) {
        self.seq += 1;
        self.queue.push(Item {
            t,
            seq: self.seq,
            ev,
        });
    }

    fn new_conn(&mut self) -> u64 {
        self.next_conn += 1;
        self.next_conn
    }

    /// Gives the (new) machine its listen address and trusted points, and runs it.
    fn boot(&mut self, t: Nanos) {
        let now = self.instant(t);
        self.machine
            .handle(now, Input::NewListenAddr(self.victim_addr.clone()));
        let trusted: Vec<Multiaddr> = self.net.honest[..]
            .iter()
            .filter(|h| h.stable)
            .map(|h| h.addr.clone().with(Protocol::P2p(h.peer)))
            .collect();
        for addr in &trusted {
            // An honest node's address is a valid point, never ours.
            let _ = self.machine.add_trusted_point(addr, now);
        }
        self.timer_at = None;
        self.drain(t, now);
    }

    fn run(mut self) -> SeedReport {
        while let Some(Item { t, ev, .. }) = self.queue.pop() {
            if t > self.end_at {
                break;
            }
            self.process(t, ev);
        }
        let (before, after) = (&self.before, &self.after);
        let r = &mut self.report;
        r.attacker_share = after.share();
        r.eclipsed = after.eclipsed;
        r.samples_with_8_outbound = after.per_sample(after.full);
        r.max_outbound_per_group = after.max_per_group;
        r.mean_outbound = after.per_sample(after.outbound_sum);
        r.samples_without_outbound = after.per_sample(after.samples - after.with_outbound);
        r.mean_inbound = after.per_sample(after.inbound_sum);
        r.mean_active = after.per_sample(after.active_sum);
        r.attacker_inbound_share = if after.with_inbound == 0 {
            0.0
        } else {
            after.inbound_share_sum / after.with_inbound as f64
        };
        r.attacker_share_before_restart = before.share();
        r.mean_outbound_before_restart = before.per_sample(before.outbound_sum);
        self.report
    }

    fn feed(&mut self, now: Instant, input: Input<u64>) {
        self.machine.handle(now, input);
    }

    fn process(&mut self, t: Nanos, ev: Ev) {
        let now = self.instant(t);
        match ev {
            Ev::Timer => {
                if self.timer_at == Some(t) {
                    self.timer_at = None;
                    self.machine.handle_timeout(now);
                    let trim = self.cm.lock().poll(now);
                    if let Some(trim) = trim {
                        for v in trim.victims {
                            self.machine.closing(v.peer, pool::CloseReason::Trim);
                            self.close_peer(t, now, v.peer);
                        }
                    }
                }
            }
            Ev::DialDone { conn, outcome } => self.dial_done(t, now, conn, outcome),
            Ev::Identify { conn } => {
                if let Some(c) = self.conns.get(&conn).filter(|c| c.established) {
                    let (peer, info) = (c.peer, identify(&c.listen));
                    let rtt = Duration::from_millis(self.rng.random_range(20..300));
                    self.feed(now, Input::Identified { peer, info });
                    self.feed(now, Input::Ping { peer, rtt });
                }
            }
            Ev::PexAnswer { conn, peer, seq } => {
                if self.asking.get(&peer) == Some(&seq) {
                    self.asking.remove(&peer);
                    let side = self
                        .conns
                        .get(&conn)
                        .filter(|c| c.established)
                        .map(|c| (c.side, c.inbound));
                    let input = match side {
                        Some((side, inbound)) => {
                            let points = match side {
                                Side::Honest => {
                                    self.report.answers_from_honest += 1;
                                    // No draw at 0: the runs without relaying stay as they were.
                                    let relayed = if self.honest_relay > 0.0 {
                                        (0..HONEST_ANSWER)
                                            .filter(|_| self.rng.random_bool(self.honest_relay))
                                            .count()
                                    } else {
                                        0
                                    };
                                    let mut points = self
                                        .net
                                        .honest_points(&mut self.rng, HONEST_ANSWER - relayed);
                                    points.extend(self.net.attacker_points(&mut self.rng, relayed));
                                    points
                                }
                                Side::Attacker(_) if inbound => {
                                    self.report.answers_from_attacker_inbound += 1;
                                    if self.attacker_answers_inbound {
                                        self.net.attacker_points(&mut self.rng, ATTACKER_ANSWER)
                                    } else {
                                        Vec::new()
                                    }
                                }
                                Side::Attacker(_) => {
                                    self.report.answers_from_attacker_outbound += 1;
                                    self.net.attacker_points(&mut self.rng, ATTACKER_ANSWER)
                                }
                            };
                            let response = node::pex::Response {
                                points,
                                ..Default::default()
                            };
                            Input::PexAnswer {
                                peer,
                                id: conn,
                                response,
                            }
                        }
                        // The connection it went on closed; others with the peer remain.
                        None => Input::PexFailed {
                            peer,
                            outbound: true,
                            invalid_data: false,
                        },
                    };
                    self.feed(now, input);
                }
            }
            Ev::RemoteClose { conn } => self.close(t, now, conn, true),
            Ev::HonestInbound => {
                let next = t + exponential(&mut self.rng, HONEST_INBOUND_INTERVAL);
                self.push(next, Ev::HonestInbound);
                // A live honest node without a connection to the victim.
                for _ in 0..8 {
                    let i = self.rng.random_range(0..self.net.honest.len());
                    let h = &self.net.honest[i];
                    if self.conns.values().all(|c| c.peer != h.peer) {
                        let target = Target {
                            side: Side::Honest,
                            peer: h.peer,
                            ip: h.ip,
                        };
                        let listen = h.addr.clone();
                        self.report.honest_inbound_attempts += 1;
                        if let Some(conn) = self.inbound(t, now, target, listen) {
                            let hold = exponential(&mut self.rng, HONEST_INBOUND_HOLD);
                            self.push(t + hold, Ev::RemoteClose { conn });
                        }
                        break;
                    }
                }
            }
            Ev::AttackerInbound { burst } => {
                if !burst {
                    self.push(t + self.attack_interval, Ev::AttackerInbound { burst });
                }
                self.attack(t, now);
            }
            Ev::Churn => {
                if let Some(after) = self.next_churn() {
                    self.push(t.saturating_add(after), Ev::Churn);
                }
                self.churn(t, now);
            }
            Ev::Sample => {
                let next = t + nanos(SAMPLE_INTERVAL);
                if next <= self.end_at {
                    self.push(next, Ev::Sample);
                }
                self.sample(t);
            }
            Ev::Restart => self.restart(t, now),
        }
        self.drain(t, now);
    }

    /// The attacker's next inbound attempt, from an IP that holds no connection.
    fn attack(&mut self, t: Nanos, now: Instant) {
        let n = self.net.attackers.len();
        let Some(i) = (0..n)
            .map(|k| (self.net.cursor + k) % n)
            .find(|&i| self.net.attackers[i].held == 0)
        else {
            return;
        };
        self.net.cursor = (i + 1) % n;
        let a = &self.net.attackers[i];
        let target = Target {
            side: Side::Attacker(u32::try_from(i).expect("fewer than 2^32 IPs")),
            peer: a.peer,
            ip: ip_port(&a.addr).expect("an IPv4 point").0,
        };
        let listen = a.addr.clone();
        self.report.attacker_attempts += 1;
        if self.inbound(t, now, target, listen).is_some() {
            self.report.attacker_admitted += 1;
        }
    }

    /// An inbound connection from `target`, through the victim's admission: the connection if
    /// admitted (nacked or not). Its identify follows.
    fn inbound(
        &mut self,
        t: Nanos,
        now: Instant,
        target: Target,
        listen: Multiaddr,
    ) -> Option<u64> {
        let conn = self.new_conn();
        let remote = ephemeral_addr(target.ip, conn);
        let m = &mut self.machine;
        let admitted = m
            .admit_pending_inbound(conn, &remote, now)
            .and_then(|()| m.admit_established(conn, target.peer, &remote, true, now));
        let Ok(admission) = admitted else {
            return None;
        };
        if !self.establish(t, now, conn, target, listen, remote, true) {
            return None;
        }
        if admission == node::Admission::Accepted {
            match target.side {
                Side::Honest => self.report.honest_inbound_accepted += 1,
                Side::Attacker(_) => self.report.attacker_accepted += 1,
            }
        }
        self.push(t + 2 * nanos(LATENCY), Ev::Identify { conn });
        Some(conn)
    }

    fn dial(&mut self, t: Nanos, now: Instant, point: Multiaddr, peer: Option<PeerId>) {
        let conn = self.new_conn();
        self.report.dials += 1;
        self.machine.dial_started(conn, point.clone());
        if self
            .machine
            .admit_pending_outbound(peer, std::slice::from_ref(&point), now)
            .is_err()
        {
            self.feed(
                now,
                Input::DialFailed {
                    id: conn,
                    error: DialError::Other,
                },
            );
            return;
        }
        let (at, outcome) = match self.net.resolve(&point) {
            Some(target) => {
                if matches!(target.side, Side::Attacker(_)) {
                    self.report.dials_to_attacker += 1;
                }
                if peer.is_some_and(|p| p != target.peer) {
                    (t + 2 * nanos(LATENCY), Outcome::WrongPeer)
                } else {
                    (t + 2 * nanos(LATENCY), Outcome::Connected(target))
                }
            }
            None => (t + nanos(DIAL_TIMEOUT), Outcome::Failed),
        };
        self.dialing.insert(conn, point);
        self.push(at, Ev::DialDone { conn, outcome });
    }

    fn dial_done(&mut self, t: Nanos, now: Instant, conn: u64, outcome: Outcome) {
        // The dialed point is the connection's remote address, as libp2p reports it.
        let Some(remote) = self.dialing.remove(&conn) else {
            // The victim restarted meanwhile.
            return;
        };
        let error = match outcome {
            Outcome::Failed => DialError::Other,
            Outcome::WrongPeer => DialError::WrongPeer,
            Outcome::Connected(target) => {
                // An honest node may have left during the handshake.
                let listen = match target.side {
                    Side::Attacker(i) => Some(self.net.attackers[i as usize].addr.clone()),
                    Side::Honest => self
                        .net
                        .honest_by_ip
                        .get(&target.ip)
                        .map(|&i| &self.net.honest[i as usize])
                        .filter(|h| h.peer == target.peer)
                        .map(|h| h.addr.clone()),
                };
                match listen {
                    Some(listen) => {
                        let admitted =
                            self.machine
                                .admit_established(conn, target.peer, &remote, false, now);
                        if admitted.is_ok()
                            && self.establish(t, now, conn, target, listen, remote, false)
                        {
                            self.push(t + nanos(LATENCY), Ev::Identify { conn });
                            // (No draw for the attacker by default: the runs before the
                            // option stay as they were.)
                            if target.side == Side::Honest || !self.attacker_holds_outbound {
                                let life = exponential(&mut self.rng, HONEST_OUTBOUND_LIFETIME);
                                self.push(t + life, Ev::RemoteClose { conn });
                            }
                            return;
                        }
                        // Refused by the machine: the remote sees the connection dropped.
                        DialError::Other
                    }
                    None => DialError::Other,
                }
            }
        };
        self.feed(now, Input::DialFailed { id: conn, error });
    }

    /// Records a connection the machine admitted, carries out its commands, counts it in the
    /// connection manager (unless nacked) and tells the machine it is established, as the
    /// multi-node simulator does. `false`, with the machine told, if a command closed it.
    #[allow(clippy::too_many_arguments)]
    fn establish(
        &mut self,
        t: Nanos,
        now: Instant,
        conn: u64,
        target: Target,
        listen: Multiaddr,
        remote: Multiaddr,
        inbound: bool,
    ) -> bool {
        if let Side::Attacker(i) = target.side {
            self.net.attackers[i as usize].held += 1;
        }
        self.conns.insert(
            conn,
            Conn {
                peer: target.peer,
                side: target.side,
                listen,
                remote: remote.clone(),
                inbound,
                established: false,
                excluded: false,
            },
        );
        self.drain(t, now);
        let Some(c) = self.conns.get_mut(&conn) else {
            self.feed(now, Input::AdmissionFailed { id: conn });
            return false;
        };
        c.established = true;
        if !c.excluded {
            self.cm
                .lock()
                .connection_established(target.peer, conn, inbound, remote.clone(), now);
        }
        self.feed(
            now,
            Input::ConnectionEstablished {
                id: conn,
                peer: target.peer,
                remote,
                inbound,
            },
        );
        true
    }

    fn close_peer(&mut self, t: Nanos, now: Instant, peer: PeerId) {
        let ids: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.peer == peer)
            .map(|(id, _)| *id)
            .collect();
        for conn in ids {
            self.close(t, now, conn, false);
        }
    }

    /// Closes a connection; the machine hears of it if it was established.
    fn close(&mut self, _t: Nanos, now: Instant, conn: u64, by_remote: bool) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if let Side::Attacker(i) = c.side {
            let a = &mut self.net.attackers[i as usize];
            a.held = a.held.saturating_sub(1);
        }
        if !c.excluded {
            self.cm.lock().connection_closed(&c.peer, conn);
        }
        if c.established {
            let remaining = self
                .conns
                .values()
                .filter(|o| o.peer == c.peer && o.established)
                .count();
            if remaining == 0 && self.asking.remove(&c.peer).is_some() {
                self.feed(
                    now,
                    Input::PexFailed {
                        peer: c.peer,
                        outbound: true,
                        invalid_data: false,
                    },
                );
            }
            self.feed(
                now,
                Input::ConnectionClosed {
                    id: conn,
                    peer: c.peer,
                    by_remote,
                    remaining,
                },
            );
        }
    }

    /// Carries out the machine's commands, then re-arms the timer.
    fn drain(&mut self, t: Nanos, now: Instant) {
        while let Some(command) = self.machine.poll_command() {
            self.execute(t, now, command);
        }
        while let Some(event) = self.machine.poll_event() {
            match event {
                node::Event::Evicted { .. } => self.report.evictions += 1,
                node::Event::Nacked { .. } => self.report.nacked += 1,
                _ => {}
            }
        }
        let deadline = [self.machine.poll_timeout(), self.cm.lock().poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .map(|d| {
                u64::try_from(d.saturating_duration_since(self.base).as_nanos())
                    .unwrap_or(u64::MAX)
                    .max(t)
            });
        if let Some(d) = deadline
            && self.timer_at.is_none_or(|at| d < at)
        {
            self.timer_at = Some(d);
            self.push(d, Ev::Timer);
        }
    }

    fn execute(&mut self, t: Nanos, now: Instant, command: Command<u64>) {
        match command {
            Command::Dial { point, peer } => self.dial(t, now, point, peer),
            Command::Close {
                peer,
                id: Some(conn),
            } => {
                if self.conns.get(&conn).is_some_and(|c| c.peer == peer) {
                    self.close(t, now, conn, false);
                }
            }
            Command::Close { peer, id: None } => self.close_peer(t, now, peer),
            Command::AskPoints { peer, .. } => {
                let conn = self
                    .conns
                    .iter()
                    .find(|(_, c)| c.peer == peer && c.established)
                    .map(|(id, _)| *id);
                match conn {
                    Some(conn) => {
                        self.next_ask += 1;
                        let seq = self.next_ask;
                        self.asking.insert(peer, seq);
                        self.push(t + 2 * nanos(LATENCY), Ev::PexAnswer { conn, peer, seq });
                    }
                    None => self.feed(
                        now,
                        Input::PexFailed {
                            peer,
                            outbound: true,
                            invalid_data: false,
                        },
                    ),
                }
            }
            // Nobody asks the victim for points in this model.
            Command::AnswerPoints { .. } | Command::DropRequest { .. } => {}
            Command::Protect(peer) => self.cm.lock().protect(peer, TRUSTED_TAG),
            Command::Unprotect(peer) => {
                self.cm.lock().unprotect(&peer, TRUSTED_TAG);
            }
            Command::SetStreams { peer, id, streams } => {
                self.cm.lock().set_streams(&peer, id, streams);
            }
            Command::Exclude(conn) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.excluded = true;
                }
            }
            Command::Include(conn) => {
                if let Some(c) = self.conns.get_mut(&conn)
                    && std::mem::take(&mut c.excluded)
                {
                    let (peer, inbound, remote) = (c.peer, c.inbound, c.remote.clone());
                    self.cm
                        .lock()
                        .connection_established(peer, conn, inbound, remote, now);
                }
            }
        }
    }

    /// The time to the next departure: churn is a Poisson process of
    /// `churn_per_hour × live` draws an hour (one every 3.6 s on average at the defaults;
    /// a draw of a trusted node does nothing), from the world's RNG; `None` without churn.
    fn next_churn(&mut self) -> Option<Nanos> {
        let per_hour = self.churn_per_hour * self.net.honest.len() as f64;
        // A mean beyond 10^15 s (a rate too small to matter, which would overflow a
        // `Duration` once scaled) is no churn.
        let mean = 3600.0 / per_hour;
        (mean <= 1e15).then(|| exponential(&mut self.world_rng, Duration::from_secs_f64(mean)))
    }

    /// One departure: a live honest node drawn uniformly leaves (nothing happens if it is a
    /// trusted one, which never leaves), closing its connections, and a new one joins at a
    /// new address.
    fn churn(&mut self, t: Nanos, now: Instant) {
        let live = self.net.honest.len();
        let i = self.world_rng.random_range(0..live);
        if self.net.honest[i].stable {
            return;
        }
        let gone = self.net.leave(i).peer;
        self.net.join(&mut self.world_rng, false);
        let closing: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.side == Side::Honest && c.peer == gone)
            .map(|(id, _)| *id)
            .collect();
        for conn in closing {
            self.close(t, now, conn, true);
        }
    }

    /// The victim's automatic outbound and inbound connections now.
    fn sample(&mut self, t: Nanos) {
        let (tally, settled) = if t > self.restart_at {
            let settled = t - self.restart_at >= nanos(SETTLE);
            (&mut self.after, settled)
        } else if t + nanos(OBSERVATION) >= self.restart_at {
            (&mut self.before, false)
        } else {
            return;
        };
        let pool = self.machine.pool();
        let active = pool.active() as u64;
        let mut outbound = 0u64;
        let mut attacker = 0u64;
        let mut inbound = 0u64;
        let mut attacker_inbound = 0u64;
        let mut groups: BTreeMap<Group, usize> = BTreeMap::new();
        for (id, c) in self.machine.connections() {
            if c.nacked {
                continue;
            }
            let side = self.conns.get(id).map(|c| c.side);
            let by_attacker = matches!(side, Some(Side::Attacker(_)));
            if c.inbound {
                inbound += 1;
                attacker_inbound += u64::from(by_attacker);
                continue;
            }
            let Some(point) = &c.point else { continue };
            if pool.point(point).is_some_and(|p| p.is_trusted()) {
                continue;
            }
            outbound += 1;
            attacker += u64::from(by_attacker);
            *groups.entry(self.grouping.group(point)).or_default() += 1;
        }
        tally.samples += 1;
        tally.outbound_sum += outbound;
        tally.inbound_sum += inbound;
        tally.active_sum += active;
        if outbound > 0 {
            tally.with_outbound += 1;
            tally.share_sum += attacker as f64 / outbound as f64;
            if settled && attacker == outbound {
                tally.eclipsed = true;
            }
        }
        if inbound > 0 {
            tally.with_inbound += 1;
            tally.inbound_share_sum += attacker_inbound as f64 / inbound as f64;
        }
        if outbound >= OUTBOUND_TARGET as u64 {
            tally.full += 1;
        }
        let most = groups.values().copied().max().unwrap_or(0);
        tally.max_per_group = tally.max_per_group.max(most);
    }

    /// The victim restarts: its book (if any) and known peers saved and restored into a new
    /// machine, every connection gone; the attacker reconnects at once.
    fn restart(&mut self, t: Nanos, now: Instant) {
        let snapshot = self.machine.addrbook_snapshot(now);
        if let Some(s) = &snapshot {
            let attacker = s
                .entries
                .iter()
                .filter(|e| self.net.is_attacker_addr(&e.addr))
                .count();
            self.report.known_addresses = s.entries.len();
            self.report.known_attacker_share = attacker as f64 / s.entries.len().max(1) as f64;
            let tried: Vec<_> = s.entries.iter().filter(|e| e.tried).collect();
            let tried_attacker = tried
                .iter()
                .filter(|e| self.net.is_attacker_addr(&e.addr))
                .count();
            self.report.tried_attacker_share =
                Some(tried_attacker as f64 / tried.len().max(1) as f64);
        } else {
            let points: Vec<&Multiaddr> = self.machine.pool().points().map(|(a, _)| a).collect();
            let attacker = points
                .iter()
                .filter(|a| self.net.is_attacker_addr(a))
                .count();
            self.report.known_addresses = points.len();
            self.report.known_attacker_share = attacker as f64 / points.len().max(1) as f64;
        }
        // The peers file: every known peer, in a fixed order.
        let mut peers: Vec<(PeerId, peerage_core::pool::peer::Record)> = self
            .machine
            .pool()
            .peers()
            .map(|(id, info)| (*id, info.record().clone()))
            .collect();
        peers.sort_by_key(|(id, _)| *id);
        let held: u32 = self.net.attackers.iter().map(|a| a.held).sum();
        // Every connection ends with the process.
        for a in &mut self.net.attackers {
            a.held = 0;
        }
        self.conns.clear();
        self.dialing.clear();
        self.asking.clear();
        let (machine, cm) = new_machine(self.addrbook, self.victim, &mut self.rng, now);
        self.machine = machine;
        self.cm = cm;
        // As `peerage run` starts: the peers file, then the address book.
        self.machine.update_pool(now, |pool, now| {
            for (id, record) in peers {
                pool.restore_peer(id, record, now);
            }
        });
        if let Some(s) = snapshot {
            self.machine.restore_addrbook(s, now);
        }
        self.boot(t);
        for i in 0..u64::from(held) {
            let at = t + nanos(LATENCY) + i * nanos(Duration::from_millis(1));
            self.push(at, Ev::AttackerInbound { burst: true });
        }
    }
}

/// The victim's machine and connection manager, new at `now`.
fn new_machine(
    addrbook: bool,
    victim: PeerId,
    rng: &mut StdRng,
    now: Instant,
) -> (Machine<u64>, Shared) {
    let bounds = Bounds::new(OUTBOUND_TARGET, OUTBOUND_TARGET, MAX_CONNECTIONS).expect("ordered");
    let mut config = node::Config::new().with_bounds(bounds);
    if addrbook {
        config = config
            .with_addrbook(Some(addrbook::Config::new()))
            .with_grouping(Grouping::new())
            .with_outbound_target(OUTBOUND_TARGET);
    }
    let cm_config = connmgr::Config::new()
        .with_watermarks(bounds.expected(), bounds.max())
        .with_grace_period(config.maintenance().grace_period());
    let cm = Shared(Arc::new(Mutex::new(
        ConnManager::new(cm_config, now).expect("valid watermarks"),
    )));
    let machine = Machine::new(
        victim,
        config,
        Peerstore::memory(peerstore::Config::default()),
        Box::new(cm.clone()),
        Box::new(node::Unsigned::new(victim)),
        StdRng::seed_from_u64(rng.random()),
        now,
    );
    (machine, cm)
}

#[cfg(test)]
mod tests {
    //! The churn model itself: its rate, what a departure takes with it, who never leaves.

    use std::collections::HashSet;

    use super::*;

    /// 2,000 honest nodes, the attacker's 256 IPs trying every 10 s: small enough for a test.
    fn options() -> EclipseOptions {
        EclipseOptions {
            honest: 2000,
            attacker_ips: 256,
            attack_interval: Duration::from_secs(10),
            ..EclipseOptions::new()
        }
    }

    /// Draws of a departing node (a draw of a trusted node does nothing, 8 in 2,000 here) are
    /// a Poisson process of `churn_per_hour × live` an hour: at 2,000 nodes and 0.1 an hour,
    /// 2,000 in 10 h within five standard deviations (√2,000 ≈ 45), with exponential gaps
    /// (their squared coefficient of variation is 1, with a standard error of 2/√n, 0.045 at
    /// 2,000 gaps: 0.78 to 1.22 is five of them). No churn at a rate of 0.
    #[test]
    fn draws_come_at_the_churn_rate() {
        let mut sim = Sim::new(&options(), 7);
        let horizon = nanos(Duration::from_secs(10 * 3600));
        let mut gaps = Vec::new();
        let mut t = 0;
        while let Some(gap) = sim.next_churn() {
            t += gap;
            if t > horizon {
                break;
            }
            gaps.push(gap as f64);
        }
        let n = gaps.len() as f64;
        assert!((n - 2000.0).abs() < 5.0 * 2000f64.sqrt(), "{n} draws");
        let mean = gaps.iter().sum::<f64>() / n;
        let variance = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / (n - 1.0);
        let cv2 = variance / (mean * mean);
        assert!(
            (0.78..1.22).contains(&cv2),
            "squared coefficient of variation {cv2}"
        );

        sim.churn_per_hour = 0.0;
        assert_eq!(sim.next_churn(), None);
    }

    /// A departure takes the node's address with it (the index of live addresses stays whole
    /// and holds no one gone; a dial that reached the node reaches no one, or someone else),
    /// a newcomer joins at another address in one of the honest groups, the population keeps
    /// its size, a share of about 0.7 is reachable, and the victim's trusted points never
    /// leave.
    #[test]
    fn a_departure_takes_its_address_and_a_newcomer_joins() {
        let mut sim = Sim::new(&options(), 3);
        let size = sim.net.honest.len();
        let groups: HashSet<[u8; 2]> = sim.net.honest_groups.iter().copied().collect();
        // The nodes a dial reaches before the churn.
        let first: Vec<(PeerId, Multiaddr)> = sim
            .net
            .honest
            .iter()
            .filter(|h| sim.net.resolve(&h.addr).map(|t| t.peer) == Some(h.peer))
            .map(|h| (h.peer, h.addr.clone()))
            .collect();
        assert!(
            first.len() > size / 2,
            "{} of {size} reachable",
            first.len()
        );
        let trusted: Vec<PeerId> = sim
            .net
            .honest
            .iter()
            .filter(|h| h.stable)
            .map(|h| h.peer)
            .collect();
        assert_eq!(trusted.len(), TRUSTED);
        let now = sim.instant(0);
        // Five times the population: nearly every node but the trusted ones leaves.
        for _ in 0..5 * size {
            sim.churn(0, now);
        }
        let net = &sim.net;
        assert_eq!(net.honest.len(), size);
        assert_eq!(net.honest_by_ip.len(), size);
        for (i, h) in net.honest.iter().enumerate() {
            assert_eq!(
                net.honest_by_ip.get(&h.ip),
                Some(&(i as u32)),
                "index of {i}"
            );
            let [a, b, ..] = Ipv4Addr::from(h.ip).octets();
            assert!(
                groups.contains(&[a, b]),
                "{} outside the honest groups",
                h.addr
            );
        }
        let live: HashSet<PeerId> = net.honest.iter().map(|h| h.peer).collect();
        for peer in &trusted {
            assert!(live.contains(peer), "a trusted point left");
        }
        let mut departed = 0;
        for (peer, addr) in &first {
            if live.contains(peer) {
                continue;
            }
            departed += 1;
            // What takes the address is the index checked above (whole, and only of live
            // nodes); this says it for the addresses that answered before.
            let answer = net.resolve(addr).map(|t| t.peer);
            assert!(answer != Some(*peer), "{addr} still answers as {peer}");
        }
        // Each of them but the trusted ones stays with probability (1 − 1/2,000)^10,000 ≈
        // e^−5: about 1 % of them.
        assert!(
            departed > first.len() * 97 / 100,
            "{departed} of {} left",
            first.len()
        );
        let reachable = net
            .honest
            .iter()
            .filter(|h| h.reachable && !h.stable)
            .count() as f64
            / (size - TRUSTED) as f64;
        let sd = (REACHABLE * (1.0 - REACHABLE) / (size - TRUSTED) as f64).sqrt();
        assert!(
            (reachable - REACHABLE).abs() < 5.0 * sd,
            "{reachable} reachable"
        );
    }

    /// A departure closes the victim's connections to the node that left: after every draw in
    /// 4 simulated hours of the full model, neither the simulator nor the victim's machine
    /// holds a connection to a node that is gone. Seed 5 has 771 draws, 7 of which closed a
    /// connection: the bound below is loose, and a model change that made it 0 would fail.
    #[test]
    fn a_departure_closes_the_victims_connections_to_it() {
        let mut sim = Sim::new(&options(), 5);
        let end = nanos(Duration::from_secs(4 * 3600));
        let (mut draws, mut closing) = (0, 0);
        // The attacker's IPs never leave: one set for the whole run.
        let attacker: HashSet<PeerId> = sim.net.attackers.iter().map(|a| a.peer).collect();
        while let Some(Item { t, ev, .. }) = sim.queue.pop() {
            if t > end {
                break;
            }
            let is_churn = matches!(ev, Ev::Churn);
            let held: HashSet<PeerId> = if is_churn {
                sim.conns
                    .values()
                    .filter(|c| c.side == Side::Honest)
                    .map(|c| c.peer)
                    .collect()
            } else {
                HashSet::new()
            };
            sim.process(t, ev);
            if !is_churn {
                continue;
            }
            draws += 1;
            let live: HashSet<PeerId> = sim.net.honest.iter().map(|h| h.peer).collect();
            closing += held.iter().filter(|p| !live.contains(p)).count();
            for c in sim.conns.values().filter(|c| c.side == Side::Honest) {
                assert!(
                    live.contains(&c.peer),
                    "the simulator holds a departed peer"
                );
            }
            for (_, c) in sim.machine.connections() {
                assert!(
                    live.contains(&c.peer) || attacker.contains(&c.peer),
                    "the victim holds a departed peer"
                );
            }
        }
        // 0.1 an hour of 2,000 for 4 h: about 800.
        assert!((600..1000).contains(&draws), "{draws} draws");
        assert!(closing >= 3, "{closing} departures closed a connection");
    }
}
