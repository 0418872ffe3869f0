//! The node's Prometheus registry: the connection manager's and the resource manager's metrics
//! (computed at each scrape) and the pool's and the maintenance's, which the event loop updates.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

/// A `state` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// The state's name.
    pub state: &'static str,
}

/// The pool's and the maintenance's metrics.
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
