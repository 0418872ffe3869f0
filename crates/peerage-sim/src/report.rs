//! What a run reports: one JSON object, a table, and an HTML page of SVG plots.

use std::fmt::Write as _;

use serde::Serialize;

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// Nodes at the start (honest, bootstrap included).
    pub nodes: usize,
    /// The seed.
    pub seed: u64,
    /// Worker threads (the outcome does not depend on them).
    pub threads: usize,
    /// Simulated time, in seconds.
    pub simulated_s: f64,
    /// Wall-clock time of the run, in milliseconds.
    pub wall_ms: u64,
    /// BLAKE3 of the event log ([`Options::with_log`](crate::Options::with_log)), hex.
    pub log_hash: String,
    /// The bounds `[min, expected, max]`.
    pub bounds: [usize; 3],
    /// Live honest nodes at the end.
    pub live: usize,
    /// Share of live nodes within `min..=max` at the end.
    pub within_bounds: f64,
    /// Live nodes above `max` at the end.
    pub over_max: usize,
    /// Connections (running peers) per live node at the end.
    pub connections: Connections,
    /// Share of live nodes in the largest connected component at the end.
    pub giant_component: f64,
    /// Simulated seconds from which at least 99 % of live nodes were within their bounds at
    /// every later sample, or null if that did not hold at the end.
    pub converged_s: Option<f64>,
    /// Simulated seconds until every live node was within its bounds and stayed there for the
    /// scenario's `stable` time (the devnet's convergence, its stability window excluded), or
    /// null.
    pub all_within_s: Option<f64>,
    /// With `stop`: simulated seconds from the stop until every survivor was within its bounds
    /// for `stable` (its window excluded), or null.
    pub recovered_s: Option<f64>,
    /// Actions per live node per simulated hour.
    pub per_node_hour: PerNodeHour,
    /// Peer records opened (a stand-in verifier counts them).
    pub records_opened: u64,
    /// What a live node's tables hold at the end, on average.
    pub per_node: Footprint,
    /// The samples, in order.
    pub samples: Vec<Sample>,
    /// The topology at the end, for runs of at most 300 nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topology: Option<Topology>,
}

/// Connections per live node.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Connections {
    /// Fewest.
    pub min: usize,
    /// Median.
    pub p50: usize,
    /// Most.
    pub max: usize,
}

/// Actions per node-hour.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PerNodeHour {
    /// Dials.
    pub dials: f64,
    /// Connections closed by their node.
    pub closes: f64,
    /// Requests for points sent.
    pub pex_requests: f64,
}

/// What a node's tables hold (means over live nodes). Bytes are the tables' entries as laid
/// out in memory (`size_of` of each entry, its key and its log), not counting the maps' own
/// overhead; the process's peak RSS over the node count is the whole cost.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Footprint {
    /// Known points.
    pub points: f64,
    /// Events in the points' logs.
    pub point_log_entries: f64,
    /// Bytes of the point table's entries and logs.
    pub point_bytes: f64,
    /// Known peers.
    pub peers: f64,
    /// Events in the peers' logs.
    pub peer_log_entries: f64,
    /// Bytes of the peer table's entries and logs.
    pub peer_bytes: f64,
    /// Peers in the peerstore.
    pub peerstore_peers: f64,
    /// Open connections.
    pub connections: f64,
}

/// One sample of the network.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Simulated time, in seconds.
    pub t_s: f64,
    /// Live honest nodes.
    pub live: usize,
    /// Share of them within their bounds.
    pub within_bounds: f64,
    /// Mean connections per live node.
    pub mean_connections: f64,
    /// Dials so far (all nodes).
    pub dials: u64,
    /// Closes so far.
    pub closes: u64,
}

/// The connection graph of a small run.
#[derive(Debug, Clone, Serialize)]
pub struct Topology {
    /// Each live node's connection count.
    pub nodes: Vec<usize>,
    /// Connections, as pairs of indices into `nodes`.
    pub edges: Vec<(usize, usize)>,
}

impl Report {
    /// The report as a table, for humans.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let opt = |x: Option<f64>| x.map_or_else(|| "never".to_owned(), |v| format!("{v:.1} s"));
        let _ = writeln!(
            s,
            "scenario        {} (seed {}, {} threads)",
            self.scenario, self.seed, self.threads
        );
        let _ = writeln!(
            s,
            "nodes           {} at start, {} live at the end",
            self.nodes, self.live
        );
        let _ = writeln!(
            s,
            "simulated       {:.0} s in {} ms of wall time",
            self.simulated_s, self.wall_ms
        );
        let [min, expected, max] = self.bounds;
        let _ = writeln!(s, "bounds          {min}/{expected}/{max}");
        let _ = writeln!(
            s,
            "within bounds   {:.2} % ({} above max)",
            self.within_bounds * 100.0,
            self.over_max
        );
        let c = self.connections;
        let _ = writeln!(
            s,
            "connections     min {} / p50 {} / max {}",
            c.min, c.p50, c.max
        );
        let _ = writeln!(s, "giant component {:.4}", self.giant_component);
        let _ = writeln!(s, "99 % within     {}", opt(self.converged_s));
        let _ = writeln!(s, "all within      {}", opt(self.all_within_s));
        if self.recovered_s.is_some() || self.scenario.contains("stop") {
            let _ = writeln!(s, "recovered       {}", opt(self.recovered_s));
        }
        let h = self.per_node_hour;
        let _ = writeln!(
            s,
            "per node-hour   {:.1} dials, {:.1} closes, {:.1} pex requests",
            h.dials, h.closes, h.pex_requests
        );
        let f = self.per_node;
        let _ = writeln!(
            s,
            "per node        {:.0} points ({:.0} log events, {:.0} KB), {:.0} peers ({:.0} log events, {:.0} KB), {:.0} in the peerstore",
            f.points,
            f.point_log_entries,
            f.point_bytes / 1000.0,
            f.peers,
            f.peer_log_entries,
            f.peer_bytes / 1000.0,
            f.peerstore_peers
        );
        let _ = writeln!(s, "log hash        {}", self.log_hash);
        s
    }

    /// An HTML page with SVG plots: live nodes within bounds over time, the distribution of
    /// connection counts, dials and closes per hour, and the topology of a small run. It needs
    /// no network to view.
    pub fn html(&self) -> String {
        let mut page = String::new();
        let _ = write!(
            page,
            "<!doctype html><meta charset=utf-8><title>peerage sim: {name}</title>\
             <style>body{{font:14px sans-serif;max-width:960px;margin:2em auto}}\
             svg{{background:#fafafa;border:1px solid #ddd}}pre{{background:#f4f4f4;padding:1em}}</style>\
             <h1>peerage sim: {name}</h1><pre>{table}</pre>",
            name = escape(&self.scenario),
            table = escape(&self.table()),
        );
        page.push_str("<h2>Live nodes within their bounds</h2>");
        page.push_str(&self.within_svg());
        page.push_str("<h2>Connections per live node at the end</h2>");
        page.push_str(&self.histogram_svg());
        page.push_str("<h2>Dials and closes per simulated hour</h2>");
        page.push_str(&self.rates_svg());
        if self.topology.is_some() {
            page.push_str("<h2>Topology at the end</h2>");
            page.push_str(&self.topology_svg());
        }
        page
    }

    /// Live nodes within bounds over time, as an SVG line plot.
    pub fn within_svg(&self) -> String {
        let points: Vec<(f64, f64)> = self
            .samples
            .iter()
            .map(|s| (s.t_s, s.within_bounds * 100.0))
            .collect();
        line_svg(&points, "simulated time (s)", "% within bounds", 100.0)
    }

    fn histogram_svg(&self) -> String {
        let Some(max) = self.samples.last().map(|_| self.connections.max) else {
            return String::new();
        };
        let _ = max;
        // The distribution is rebuilt from the topology when there is one; otherwise from the
        // summary (min, p50, max) only.
        let counts: Vec<usize> = match &self.topology {
            Some(t) => t.nodes.clone(),
            None => vec![
                self.connections.min,
                self.connections.p50,
                self.connections.max,
            ],
        };
        let top = counts.iter().max().copied().unwrap_or(0);
        let mut bins = vec![0usize; top + 1];
        for c in counts {
            bins[c] += 1;
        }
        let (w, h) = (640.0, 240.0);
        let tallest = bins.iter().max().copied().unwrap_or(1).max(1) as f64;
        let bw = (w - 60.0) / bins.len().max(1) as f64;
        let mut svg = format!(
            "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' viewBox='0 0 {w} {h}'>"
        );
        for (i, b) in bins.iter().enumerate() {
            let bh = (h - 40.0) * *b as f64 / tallest;
            let x = 40.0 + i as f64 * bw;
            let _ = write!(
                svg,
                "<rect x='{x:.1}' y='{:.1}' width='{:.1}' height='{bh:.1}' fill='#4a7'><title>{i} connections: {b} nodes</title></rect>",
                h - 20.0 - bh,
                (bw - 1.0).max(1.0)
            );
        }
        let [min, _, max] = self.bounds;
        for (v, label) in [(min, "min"), (max, "max")] {
            let x = 40.0 + (v as f64 + 0.5) * bw;
            let _ = write!(
                svg,
                "<line x1='{x:.1}' x2='{x:.1}' y1='10' y2='{}' stroke='#c33' stroke-dasharray='4'/><text x='{:.1}' y='12' font-size='11'>{label}</text>",
                h - 20.0,
                x + 3.0
            );
        }
        let _ = write!(
            svg,
            "<text x='40' y='{}' font-size='11'>connections per node (0 to {top})</text></svg>",
            h - 4.0
        );
        svg
    }

    fn rates_svg(&self) -> String {
        let mut dials = Vec::new();
        let mut closes = Vec::new();
        for pair in self.samples.windows(2) {
            let dt = (pair[1].t_s - pair[0].t_s).max(1e-9) / 3600.0;
            dials.push((pair[1].t_s, (pair[1].dials - pair[0].dials) as f64 / dt));
            closes.push((pair[1].t_s, (pair[1].closes - pair[0].closes) as f64 / dt));
        }
        let top = dials.iter().chain(&closes).map(|p| p.1).fold(1.0, f64::max);
        let mut svg = line_svg(
            &dials,
            "simulated time (s)",
            "per hour (all nodes): dials (blue), closes (red)",
            top,
        );
        let closes_path = path(&closes, top);
        svg.truncate(svg.len() - "</svg>".len());
        let _ = write!(
            svg,
            "<path d='{closes_path}' fill='none' stroke='#c33'/></svg>"
        );
        svg
    }

    fn topology_svg(&self) -> String {
        let Some(t) = &self.topology else {
            return String::new();
        };
        let (w, h) = (640.0, 640.0);
        let n = t.nodes.len().max(1) as f64;
        let pos = |i: usize| {
            let a = std::f64::consts::TAU * i as f64 / n;
            (w / 2.0 + 280.0 * a.cos(), h / 2.0 + 280.0 * a.sin())
        };
        let mut svg = format!(
            "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' viewBox='0 0 {w} {h}'>"
        );
        for &(a, b) in &t.edges {
            let ((x1, y1), (x2, y2)) = (pos(a), pos(b));
            let _ = write!(
                svg,
                "<line x1='{x1:.1}' y1='{y1:.1}' x2='{x2:.1}' y2='{y2:.1}' stroke='#89a' stroke-opacity='0.5'/>"
            );
        }
        for (i, c) in t.nodes.iter().enumerate() {
            let (x, y) = pos(i);
            let _ = write!(
                svg,
                "<circle cx='{x:.1}' cy='{y:.1}' r='4' fill='#357'><title>node {i}: {c} connections</title></circle>"
            );
        }
        svg.push_str("</svg>");
        svg
    }
}

fn path(points: &[(f64, f64)], top: f64) -> String {
    let (w, h) = (640.0, 240.0);
    let tmax = points.last().map_or(1.0, |p| p.0).max(1e-9);
    let mut d = String::new();
    for (k, (t, v)) in points.iter().enumerate() {
        let x = 50.0 + (w - 60.0) * t / tmax;
        let y = h - 25.0 - (h - 40.0) * (v / top).clamp(0.0, 1.0);
        let _ = write!(d, "{}{x:.1},{y:.1}", if k == 0 { "M" } else { " L" });
    }
    d
}

fn line_svg(points: &[(f64, f64)], x_label: &str, y_label: &str, top: f64) -> String {
    let (w, h) = (640.0, 240.0);
    let tmax = points.last().map_or(0.0, |p| p.0);
    format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' viewBox='0 0 {w} {h}'>\
         <line x1='50' x2='{}' y1='{}' y2='{}' stroke='#999'/><line x1='50' x2='50' y1='15' y2='{}' stroke='#999'/>\
         <text x='4' y='20' font-size='11'>{top:.0}</text><text x='4' y='{}' font-size='11'>0</text>\
         <text x='50' y='{}' font-size='11'>{x_label}: 0 to {tmax:.0}</text><text x='60' y='12' font-size='11'>{y_label}</text>\
         <path d='{}' fill='none' stroke='#37a'/></svg>",
        w - 10.0,
        h - 25.0,
        h - 25.0,
        h - 25.0,
        h - 25.0,
        h - 5.0,
        path(points, top),
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
