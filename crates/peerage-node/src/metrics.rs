//! The node's Prometheus registry: the connection manager's and the resource manager's metrics
//! (computed at each scrape) and the pool's and the maintenance's, which the event loop updates.

use std::{
    sync::{
        Arc, Mutex, PoisonError, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

/// Encodes libp2p-metrics' `registry` ([`Handle::libp2p_registry`]) into `text` without its
/// `libp2p_identify_*` families, which stay at zero there: the node keeps them in its own
/// registry, as identify's events arrive ([`peerage::metrics::Identify`]), and a family must
/// not appear twice in one exposition.
///
/// # Errors
///
/// As [`prometheus_client::encoding::text::encode_registry`].
///
/// [`Handle::libp2p_registry`]: crate::node::Handle::libp2p_registry
pub fn encode_without_identify(text: &mut String, registry: &Registry) -> std::fmt::Result {
    let mut all = String::new();
    prometheus_client::encoding::text::encode_registry(&mut all, registry)?;
    for line in all.lines() {
        let name = ["# HELP ", "# TYPE ", "# UNIT "]
            .iter()
            .find_map(|p| line.strip_prefix(p))
            .unwrap_or(line);
        if !name.starts_with("libp2p_identify_") {
            text.push_str(line);
            text.push('\n');
        }
    }
    Ok(())
}

/// A `state` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// The state's name.
    pub state: &'static str,
}

/// A `table` label (the address book's `new` and `tried`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabel {
    /// The table.
    pub table: &'static str,
}

/// A `set` label: a table, or the outbound or inbound connections.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SetLabel {
    /// The set.
    pub set: &'static str,
}

/// A `reason` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why.
    pub reason: &'static str,
}

/// The pool's, the maintenance's and the address book's metrics.
#[derive(Debug, Clone, Default)]
pub struct PoolMetrics {
    points: Family<StateLabel, Gauge>,
    peers: Family<StateLabel, Gauge>,
    greylisted_ips: Gauge,
    greylisted_peers: Gauge,
    active: Gauge,
    cycles: Counter,
    dials: Counter,
    dial_failures: Counter,
    closes: Counter,
    asked: Counter,
    book_addresses: Family<TableLabel, Gauge>,
    book_groups: Family<TableLabel, Gauge>,
    book_largest_share: Family<SetLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    book_collisions: Gauge,
    disconnections: Family<ReasonLabel, Counter>,
}

impl PoolMetrics {
    /// Registers the metrics in `registry` under `peerage_pool_*` and `peerage_maintenance_*`.
    pub fn register(&self, registry: &mut Registry) {
        let pool = registry.sub_registry_with_prefix("peerage_pool");
        pool.register("points", "Known points by state", self.points.clone());
        pool.register("peers", "Known peers by state", self.peers.clone());
        pool.register(
            "greylisted_ips",
            "IPs in the greylist",
            self.greylisted_ips.clone(),
        );
        pool.register(
            "greylisted_peers",
            "Peers in the greylist",
            self.greylisted_peers.clone(),
        );
        pool.register(
            "active_connections",
            "Running peers, as the maintenance counts them",
            self.active.clone(),
        );
        let m = registry.sub_registry_with_prefix("peerage_maintenance");
        m.register(
            "cycles",
            "Maintenance steps that acted",
            self.cycles.clone(),
        );
        m.register("dials", "Points the maintenance dialed", self.dials.clone());
        m.register(
            "dial_failures",
            "Outgoing connections that failed",
            self.dial_failures.clone(),
        );
        m.register(
            "closes",
            "Peers the maintenance closed",
            self.closes.clone(),
        );
        m.register(
            "asked_for_points",
            "Requests for points the maintenance sent",
            self.asked.clone(),
        );
        let b = registry.sub_registry_with_prefix("peerage_addrbook");
        b.register(
            "addresses",
            "Unique addresses in the address book's new and tried tables",
            self.book_addresses.clone(),
        );
        b.register(
            "groups",
            "Network groups with an address in each table",
            self.book_groups.clone(),
        );
        b.register(
            "largest_group_share",
            "The largest network group's share of a table or of the outbound or inbound connections",
            self.book_largest_share.clone(),
        );
        b.register(
            "collisions",
            "Addresses waiting for a test-before-evict probe",
            self.book_collisions.clone(),
        );
        registry.register(
            "peerage_disconnections",
            "Connections closed, by reason: the node's (maintenance, trim, eviction_most_represented_group, eviction_prefer_evict, ban, greylist, unexpected_peer_id, nack, refused, feeler, surplus), the remote's (remote) or another local one (local)",
            self.disconnections.clone(),
        );
    }

    /// Counts one closed connection for `reason`.
    pub fn disconnected(&self, reason: peerage::pool::CloseReason) {
        self.disconnections
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// Sets the pool's gauges from `behaviour`: one pass over each table.
    pub fn update(&self, behaviour: &peerage::Behaviour) {
        let pool = behaviour.pool();
        // Every state gets a gauge, zero included.
        let mut points = [
            ("disconnected", 0),
            ("requested", 0),
            ("accepted", 0),
            ("running", 0),
        ];
        for (_, p) in pool.points() {
            count(&mut points, p.state().name());
        }
        let mut peers = [("disconnected", 0), ("accepted", 0), ("running", 0)];
        for (_, p) in pool.peers() {
            count(&mut peers, p.state().name());
        }
        for (family, counts) in [(&self.points, &points[..]), (&self.peers, &peers[..])] {
            for (state, n) in counts {
                family.get_or_create(&StateLabel { state }).set(*n);
            }
        }
        let acl = pool.acl();
        self.greylisted_ips
            .set(acl.greylisted_ips(std::time::Instant::now()).count() as i64);
        self.greylisted_peers
            .set(acl.greylisted_peers().count() as i64);
        self.active.set(behaviour.active_connections() as i64);
        if let Some((stats, outbound, inbound)) = behaviour.machine().addrbook_stats() {
            for (table, n, groups) in [
                ("new", stats.new, stats.new_groups),
                ("tried", stats.tried, stats.tried_groups),
            ] {
                self.book_addresses
                    .get_or_create(&TableLabel { table })
                    .set(n as i64);
                self.book_groups
                    .get_or_create(&TableLabel { table })
                    .set(groups as i64);
            }
            for (set, share) in [
                ("new", stats.new_largest_group_share),
                ("tried", stats.tried_largest_group_share),
                ("outbound", outbound),
                ("inbound", inbound),
            ] {
                self.book_largest_share
                    .get_or_create(&SetLabel { set })
                    .set(share);
            }
            self.book_collisions.set(stats.collisions as i64);
        }
    }

    /// Counts what a maintenance step did.
    pub fn maintenance(&self, dialed: usize, closed: usize, asked: usize) {
        self.cycles.inc();
        self.dials.inc_by(dialed as u64);
        self.closes.inc_by(closed as u64);
        self.asked.inc_by(asked as u64);
    }

    /// Counts a failed outgoing connection.
    pub fn dial_failed(&self) {
        self.dial_failures.inc();
    }
}

/// Adds one to `state`'s count.
fn count(counts: &mut [(&'static str, i64)], state: &str) {
    if let Some((_, n)) = counts.iter_mut().find(|(s, _)| *s == state) {
        *n += 1;
    }
}

/// The process's metrics, read from `/proc/self` at each scrape (Linux; elsewhere none), as
/// Prometheus's client libraries name them: `process_cpu_seconds_total`,
/// `process_resident_memory_bytes`, `process_open_fds`, `process_max_fds`,
/// `process_start_time_seconds`; and `peerage_build_info{version}` = 1.
///
/// `process_open_fds` alone is counted in the background, every [`FD_COUNT_INTERVAL`]: the
/// count walks `/proc/self/fd`, about 1 µs per descriptor in the kernel (10 ms at 10,000
/// connections on the 2-core machine of `crates/peerage-core/benches/README.md`), too long for each
/// scrape. The count is the process's, so every collector of a process shares one count and
/// one counting thread (a devnet runs hundreds of nodes in one process; a thread each walked
/// the same directory hundreds of times every 10 s: 4 % of a 400-node devnet's CPU).
#[derive(Debug)]
pub struct ProcessCollector {
    /// The latest count; [`NO_COUNT`] if `/proc/self/fd` cannot be read.
    open_fds: Arc<AtomicU64>,
}

/// How often `process_open_fds` is counted: 10 s.
pub const FD_COUNT_INTERVAL: Duration = Duration::from_secs(10);

const NO_COUNT: u64 = u64::MAX;

fn count_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(NO_COUNT, |d| d.count() as u64)
}

/// The count the process's collectors share, while any of them lives.
static OPEN_FDS: Mutex<Weak<AtomicU64>> = Mutex::new(Weak::new());

/// The process's open-descriptor count: the one a live collector already reads, or a new one
/// counted now and then every [`FD_COUNT_INTERVAL`] on a thread of its own, until the last
/// collector reading it is dropped.
fn shared_open_fds() -> Arc<AtomicU64> {
    let mut shared = OPEN_FDS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(open_fds) = shared.upgrade() {
        return open_fds;
    }
    let open_fds = Arc::new(AtomicU64::new(count_fds()));
    *shared = Arc::downgrade(&open_fds);
    let weak = Arc::downgrade(&open_fds);
    // Without the thread the first count stands, for every collector sharing it until the
    // last is dropped; the other figures are still read live.
    let _ = std::thread::Builder::new()
        .name("peerage-fd-count".into())
        .spawn(move || {
            loop {
                std::thread::sleep(FD_COUNT_INTERVAL);
                let Some(fds) = weak.upgrade() else {
                    break;
                };
                fds.store(count_fds(), Ordering::Relaxed);
            }
        });
    open_fds
}

impl ProcessCollector {
    /// Registers it in `registry`. The open descriptors are counted once, then every
    /// [`FD_COUNT_INTERVAL`] on a thread of their own, shared by every collector of the
    /// process, until the last one's registry is dropped.
    pub fn register(registry: &mut Registry) {
        registry.register_collector(Box::new(Self {
            open_fds: shared_open_fds(),
        }));
    }
}

/// What `/proc/self` says, when it can be read.
#[derive(Debug, Default, PartialEq)]
struct ProcessStat {
    cpu_seconds: Option<f64>,
    start_time_seconds: Option<f64>,
    resident_bytes: Option<u64>,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
}

impl ProcessStat {
    fn read() -> Self {
        // Clock ticks per second: 100 on every Linux the node targets (`getconf CLK_TCK`).
        const TICKS: f64 = 100.0;
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        // Fields after the command name, which may hold spaces, in its parentheses.
        let fields: Vec<&str> = stat
            .as_deref()
            .and_then(|s| s.rsplit_once(')'))
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        // utime and stime are fields 14 and 15 of stat(5), starttime 22; `fields[0]` is 3.
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        let boot_time = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        });
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Max open files"))
                    .and_then(|l| l.split_whitespace().nth(3))
                    .and_then(|v| v.parse().ok())
            });
        Self {
            cpu_seconds: field(14).zip(field(15)).map(|(u, s)| (u + s) / TICKS),
            start_time_seconds: field(22).zip(boot_time).map(|(t, boot)| boot + t / TICKS),
            resident_bytes: memory_stats::memory_stats().map(|m| m.physical_mem as u64),
            open_fds: None,
            max_fds,
        }
    }
}

impl prometheus_client::collector::Collector for ProcessCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::{
            encoding::EncodeMetric,
            metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
            registry::Unit,
        };
        let mut p = ProcessStat::read();
        p.open_fds = Some(self.open_fds.load(Ordering::Relaxed)).filter(|n| *n != NO_COUNT);
        if let Some(cpu) = p.cpu_seconds {
            let c = ConstCounter::new(cpu);
            c.encode(encoder.encode_descriptor(
                "process_cpu",
                "Total user and system CPU time spent, in seconds.",
                Some(&Unit::Seconds),
                MetricType::Counter,
            )?)?;
        }
        let gauges = [
            (
                "process_resident_memory",
                "Resident memory, in bytes.",
                Some(Unit::Bytes),
                p.resident_bytes.map(|v| v as f64),
            ),
            (
                "process_open_fds",
                "Open file descriptors.",
                None,
                p.open_fds.map(|v| v as f64),
            ),
            (
                "process_max_fds",
                "The limit of open file descriptors.",
                None,
                p.max_fds.map(|v| v as f64),
            ),
            (
                "process_start_time",
                "Start time of the process since the Unix epoch, in seconds.",
                Some(Unit::Seconds),
                p.start_time_seconds,
            ),
        ];
        for (name, help, unit, value) in gauges {
            if let Some(v) = value {
                ConstGauge::new(v).encode(encoder.encode_descriptor(
                    name,
                    help,
                    unit.as_ref(),
                    MetricType::Gauge,
                )?)?;
            }
        }
        let mut info = encoder.encode_descriptor(
            "peerage_build_info",
            "The node's version, as a label; always 1.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(1_i64)
            .encode(info.encode_family(&[("version", env!("CARGO_PKG_VERSION"))])?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_collectors_of_a_process_share_one_count() {
        let (a, b) = (shared_open_fds(), shared_open_fds());
        assert!(Arc::ptr_eq(&a, &b), "one count, so one counting thread");
        if cfg!(target_os = "linux") {
            let open = a.load(Ordering::Relaxed);
            assert!(open != NO_COUNT && open > 0, "{open}");
        }
        let held = OPEN_FDS.lock().unwrap().upgrade();
        assert!(held.is_some_and(|h| Arc::ptr_eq(&h, &a)));
    }
}
