//! Scenarios: the modelled network and what happens on it, as data (TOML or JSON), with
//! built-in ones by name.

use std::{path::Path, time::Duration};

use serde::{Deserialize, Serialize};

/// A scenario. Every field has a default (the `churn` scenario's), so a file names only what
/// it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Its name.
    pub name: String,
    /// Nodes at the start (bootstrap nodes included). 1,000 by default; `--nodes` overrides.
    pub nodes: usize,
    /// Simulated time. 1 h by default; `--duration` overrides.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Octez's `--connections N`: bounds `N/2`, `N`, `3N/2`. 16 by default (8/16/24).
    pub connections: usize,
    /// Bootstrap nodes: the first nodes, always reachable, never churned; every other node
    /// trusts their points. 20 by default.
    pub bootstrap: usize,
    /// Initial nodes start uniformly over this time. 5 min by default.
    #[serde(with = "humantime_serde")]
    pub join_over: Duration,
    /// Share of non-bootstrap nodes that cannot be dialed (behind NAT). 0.3 by default.
    pub nat_share: f64,
    /// Share of nodes with an IPv6 address (the rest IPv4). 0.1 by default.
    pub ipv6_share: f64,
    /// Number of IPv4 /16 groups (and IPv6 /32s) addresses are drawn from. By default
    /// `max(nodes / 5, 16)`.
    pub groups: Option<usize>,
    /// Latency classes: each node draws one by share; a link's one-way delay is the mean of its
    /// two ends' delays plus up to `jitter`.
    pub latency: Vec<LatencyClass>,
    /// Extra one-way delay drawn per link, uniformly up to this. 10 ms by default.
    #[serde(with = "humantime_serde")]
    pub jitter: Duration,
    /// Share of dials that fail at once (a reset), whatever the target. 0.02 by default.
    pub dial_failure: f64,
    /// How long a dial to an unreachable point takes to fail. 10 s by default.
    #[serde(with = "humantime_serde")]
    pub dial_timeout: Duration,
    /// Share of live non-bootstrap nodes that leave per simulated hour, replaced by as many
    /// new ones, uniformly in time. 0.1 by default.
    pub churn_per_hour: f64,
    /// How often a node within its bounds replaces one connection
    /// (`maintenance::Config::with_rotation_interval`). Off by default, as in the node.
    #[serde(with = "humantime_serde")]
    pub rotation: Option<Duration>,
    /// Partitions that open and heal.
    pub partitions: Vec<Partition>,
    /// Adversarial nodes.
    pub adversaries: Vec<Adversary>,
    /// Once every node has been within its bounds for `stable`, stop this many nodes (the last
    /// started) and measure the recovery, as `peerage devnet --stop`. 0 by default.
    pub stop: usize,
    /// How long every node must stay within its bounds to count as converged (the devnet's
    /// `--stable`). 3 s by default.
    #[serde(with = "humantime_serde")]
    pub stable: Duration,
    /// End the run once converged (and recovered, with `stop`), as the devnet does. `false` by
    /// default.
    pub end_when_converged: bool,
    /// How often the report samples the network. 10 s by default.
    #[serde(with = "humantime_serde")]
    pub sample_every: Duration,
}

/// A latency class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyClass {
    /// Share of nodes in it.
    pub share: f64,
    /// One-way delay to the network's core.
    #[serde(with = "humantime_serde")]
    pub delay: Duration,
}

/// A partition: from `at` to `heal`, the first `share` of nodes (by a hash of their index)
/// cannot reach the others; connections across are cut when it opens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// When it opens.
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    /// When it heals.
    #[serde(with = "humantime_serde")]
    pub heal: Duration,
    /// Share of nodes on one side.
    pub share: f64,
}

/// Adversarial nodes: full node machines whose answers or dials the model replaces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adversary {
    /// What they do.
    pub kind: AdversaryKind,
    /// How many.
    pub count: usize,
    /// For `pex_liar`: points per answer, all unreachable (in 240.0.0.0/8). For `flooder`:
    /// inbound connections opened per simulated second. 50 and 1 if 0.
    #[serde(default)]
    pub rate: f64,
}

/// What an adversary does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdversaryKind {
    /// Answers every request for points with `rate` points of unreachable addresses.
    PexLiar,
    /// Opens `rate` inbound connections per second to random honest nodes and holds them.
    Flooder,
    /// Never answers a request for points.
    Silent,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            name: "churn".into(),
            nodes: 1000,
            duration: Duration::from_secs(3600),
            connections: 16,
            bootstrap: 20,
            join_over: Duration::from_secs(300),
            nat_share: 0.3,
            ipv6_share: 0.1,
            groups: None,
            latency: vec![
                LatencyClass {
                    share: 0.5,
                    delay: Duration::from_millis(10),
                },
                LatencyClass {
                    share: 0.35,
                    delay: Duration::from_millis(40),
                },
                LatencyClass {
                    share: 0.15,
                    delay: Duration::from_millis(120),
                },
            ],
            jitter: Duration::from_millis(10),
            dial_failure: 0.02,
            dial_timeout: Duration::from_secs(10),
            churn_per_hour: 0.1,
            rotation: None,
            partitions: Vec::new(),
            adversaries: Vec::new(),
            stop: 0,
            stable: Duration::from_secs(3),
            end_when_converged: false,
            sample_every: Duration::from_secs(10),
        }
    }
}

/// A scenario that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No built-in scenario has this name, and no file has this path.
    #[error("no scenario {0:?}: not a built-in ({names}) nor a readable file", names = BUILT_IN.join(", "))]
    Unknown(String),
    /// The file did not parse.
    #[error("scenario file {path}: {reason}")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The scenario's values do not hold together.
    #[error("scenario {name}: {reason}")]
    Invalid {
        /// The scenario.
        name: String,
        /// Why.
        reason: String,
    },
}

/// The built-in scenarios' names.
pub const BUILT_IN: [&str; 4] = ["churn", "static", "devnet", "devnet-stop"];

impl Scenario {
    /// A built-in scenario:
    ///
    /// - `churn` (the default): 1,000 nodes for 1 h, `--connections 16` (8/16/24); each hour
    ///   10 % of live nodes leave and as many join, uniformly in time; 20 bootstrap points;
    ///   30 % of nodes behind NAT; latency classes 10/40/120 ms one way (50/35/15 %) plus up
    ///   to 10 ms per link; 2 % of dials fail; joins staggered over the first 5 minutes; peer
    ///   exchange on.
    /// - `static`: `churn` without churn.
    /// - `devnet`: `peerage devnet` modelled: 16 nodes on loopback (0.1 ms), `--connections
    ///   6`, node 0 the only bootstrap point, started within 200 ms, no NAT, no failures,
    ///   sampled every 200 ms as the devnet samples; ends once every node has been within its
    ///   bounds for 3 s.
    /// - `devnet-stop`: `peerage devnet --nodes 50 --stop 15`, the nodes started within 600 ms.
    pub fn built_in(name: &str) -> Option<Self> {
        let churn = Self::default();
        let devnet = Self {
            name: "devnet".into(),
            nodes: 16,
            duration: Duration::from_secs(30),
            connections: 6,
            bootstrap: 1,
            join_over: Duration::from_millis(200),
            nat_share: 0.0,
            ipv6_share: 0.0,
            groups: Some(1),
            latency: vec![LatencyClass {
                share: 1.0,
                delay: Duration::from_micros(100),
            }],
            jitter: Duration::from_micros(100),
            dial_failure: 0.0,
            dial_timeout: Duration::from_secs(10),
            churn_per_hour: 0.0,
            rotation: None,
            partitions: Vec::new(),
            adversaries: Vec::new(),
            stop: 0,
            stable: Duration::from_secs(3),
            end_when_converged: true,
            // As `peerage devnet` samples its nodes.
            sample_every: Duration::from_millis(200),
        };
        Some(match name {
            "churn" => churn,
            "static" => Self {
                name: "static".into(),
                churn_per_hour: 0.0,
                ..churn
            },
            "devnet" => devnet,
            // The devnet starts its nodes one after the other, 16 within 200 ms.
            "devnet-stop" => Self {
                name: "devnet-stop".into(),
                nodes: 50,
                duration: Duration::from_secs(60),
                join_over: Duration::from_millis(600),
                stop: 15,
                ..devnet
            },
            _ => return None,
        })
    }

    /// A built-in scenario by name, or a scenario file (`.toml`, or `.json`).
    ///
    /// # Errors
    ///
    /// [`Error::Unknown`], [`Error::Parse`] or [`Error::Invalid`].
    pub fn load(name_or_path: &str) -> Result<Self, Error> {
        let scenario = match Self::built_in(name_or_path) {
            Some(s) => s,
            None => {
                let path = Path::new(name_or_path);
                let text = std::fs::read_to_string(path)
                    .map_err(|_| Error::Unknown(name_or_path.to_owned()))?;
                let parse = |reason: String| Error::Parse {
                    path: name_or_path.to_owned(),
                    reason,
                };
                let mut s: Self = if path.extension().is_some_and(|e| e == "json") {
                    serde_json::from_str(&text).map_err(|e| parse(e.to_string()))?
                } else {
                    toml::from_str(&text).map_err(|e| parse(e.to_string()))?
                };
                if s.name == Self::default().name {
                    s.name = path
                        .file_stem()
                        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
                }
                s
            }
        };
        scenario.validate()?;
        Ok(scenario)
    }

    /// Checks that the values hold together.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] naming the first value that does not.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: &str| {
            Err(Error::Invalid {
                name: self.name.clone(),
                reason: reason.to_owned(),
            })
        };
        let share = |x: f64| (0.0..=1.0).contains(&x);
        if self.nodes == 0 {
            return invalid("nodes must be at least 1");
        }
        if self.bootstrap == 0 || self.bootstrap > self.nodes {
            return invalid("bootstrap must be between 1 and nodes");
        }
        if self.connections < 2 {
            return invalid("connections must be at least 2");
        }
        if !share(self.nat_share) || !share(self.ipv6_share) || !share(self.dial_failure) {
            return invalid("nat_share, ipv6_share and dial_failure are shares between 0 and 1");
        }
        if !(0.0..=10.0).contains(&self.churn_per_hour) {
            return invalid("churn_per_hour must be between 0 and 10");
        }
        if self.latency.is_empty() || self.latency.iter().any(|c| c.delay.is_zero()) {
            return invalid("latency needs at least one class, each with a positive delay");
        }
        if self.sample_every.is_zero() {
            return invalid("sample_every must be positive");
        }
        if self.stop >= self.nodes.saturating_sub(self.bootstrap).max(1) && self.stop > 0 {
            return invalid("stop must leave at least the bootstrap nodes and one other");
        }
        if self
            .partitions
            .iter()
            .any(|p| p.heal < p.at || !share(p.share))
        {
            return invalid("a partition must heal after it opens, with a share between 0 and 1");
        }
        Ok(())
    }

    /// The number of network groups addresses are drawn from.
    pub fn groups(&self) -> usize {
        self.groups.unwrap_or((self.nodes / 5).max(16)).max(1)
    }

    /// The `rate` of the first adversary of `kind`, or its default if 0: 50 points per answer
    /// for a `pex_liar`, 1 connection per second for a `flooder` (a `silent` one has none).
    pub fn adversary_rate(&self, kind: AdversaryKind) -> f64 {
        let default = match kind {
            AdversaryKind::PexLiar => 50.0,
            AdversaryKind::Flooder => 1.0,
            AdversaryKind::Silent => 0.0,
        };
        self.adversaries
            .iter()
            .find(|a| a.kind == kind)
            .map(|a| a.rate)
            .filter(|r| *r > 0.0)
            .unwrap_or(default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_ins_are_valid_and_files_override_only_what_they_name() {
        for name in BUILT_IN {
            Scenario::built_in(name).unwrap().validate().unwrap();
        }
        let dir = std::env::temp_dir().join(format!("peerage-sim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("small.toml");
        std::fs::write(&file, "nodes = 50\nduration = \"10m\"\nnat_share = 0.5\n").unwrap();
        let s = Scenario::load(file.to_str().unwrap()).unwrap();
        assert_eq!(s.name, "small");
        assert_eq!((s.nodes, s.duration), (50, Duration::from_secs(600)));
        assert_eq!(s.nat_share, 0.5);
        assert_eq!(s.connections, 16);
        std::fs::write(&file, "nodes = 50\nnat = 0.5\n").unwrap();
        let e = Scenario::load(file.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `nat`"), "{e}");
        std::fs::write(&file, "nat_share = 1.5\n").unwrap();
        let e = Scenario::load(file.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("shares between 0 and 1"), "{e}");
        assert!(matches!(Scenario::load("nope"), Err(Error::Unknown(_))));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
