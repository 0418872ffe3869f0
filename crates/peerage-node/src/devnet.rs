//! `peerage devnet`: a local network of real nodes on 127.0.0.1.
//!
//! Node 0 is the only bootstrap point of every other node, so reaching the bounds takes peer
//! exchange and the maintenance, not just bootstrap dialing. The devnet is converged when every
//! node has `min <= connections <= max`; it stops once that has held for `--stable`, or at
//! `--duration`. With `--stop N`, once converged it stops the last `N` nodes started and runs a
//! second phase, the recovery: the survivors that lost peers must get back within their bounds
//! (and stay there for `--stable`), within `--duration` again.

use std::{
    io::Write as _,
    time::{Duration, Instant},
};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use libp2p::{Multiaddr, identity::Keypair, multiaddr::Protocol};
use peerage::{connmgr, maintenance::Bounds};
use serde::Serialize;

use crate::{
    cli::{ConnectionArgs, DevnetArgs},
    client::ClientArgs,
    node::{Handle, Node, NodeConfig, Snapshot},
};

/// Bounds as printed in the report.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct BoundsReport {
    /// Lowest healthy count.
    pub min: usize,
    /// Target count.
    pub expected: usize,
    /// Soft ceiling.
    pub max: usize,
}

/// One node in the report: its final state, and the most established connections sampled.
#[derive(Debug, Clone, Serialize)]
pub struct NodeReport {
    /// The final state.
    #[serde(flatten)]
    pub last: Snapshot,
    /// The most established connections (connection manager count) over every sample.
    pub max_established: usize,
    /// Its admin API (`IP:PORT`), with `--admin`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin: Option<String>,
}

/// The outcome of a devnet run, printed as JSON with `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Every node's final state.
    pub nodes: Vec<NodeReport>,
    /// The bounds of every node.
    pub bounds: BoundsReport,
    /// Whether every node ended within `min..=max` (the survivors, after a recovery phase).
    pub converged: bool,
    /// Time from start to the end of the run, in milliseconds.
    pub elapsed_ms: u64,
    /// The recovery phase, with `--stop`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Recovery>,
}

/// The recovery phase of a run with `--stop`.
#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    /// Nodes stopped once the devnet had converged.
    pub stopped: usize,
    /// Survivors that lost at least one peer when the nodes stopped.
    pub lost_peers: usize,
    /// Survivors that fell below their `min` in the meantime.
    pub fell_below_min: usize,
    /// Time from the stop to the survivors being within bounds again (stably), in
    /// milliseconds; `None` if they did not recover within `--duration`.
    pub recovered_ms: Option<u64>,
}

/// How often the nodes are sampled.
const SAMPLE: Duration = Duration::from_millis(200);

/// Runs a devnet and returns its report. Shows a progress bar on stderr if `progress`.
///
/// # Errors
///
/// If a node cannot start (bad bounds, no port on 127.0.0.1) or stops unexpectedly.
pub async fn devnet(
    args: &DevnetArgs,
    progress: bool,
    admin: &ClientArgs,
    report_to: impl FnOnce(&Report),
) -> anyhow::Result<Report> {
    if usize::from(args.stop) >= usize::from(args.nodes) {
        anyhow::bail!(
            "--stop {} leaves no node of {} to recover: stop at most {}",
            args.stop,
            args.nodes,
            usize::from(args.nodes).saturating_sub(1)
        );
    }
    let bounds = args.connections.bounds(Bounds::from_connections(6))?;
    let connmgr = args.connections.connmgr(bounds)?;
    let hub_connmgr = ConnectionArgs {
        low_water: args.hub_low_water.or(args.connections.low_water),
        high_water: args.hub_high_water.or(args.connections.high_water),
        ..args.connections.clone()
    }
    .connmgr(bounds)
    .context("node 0 (--hub-low-water, --hub-high-water)")?;
    let n = usize::from(args.nodes);
    let start = Instant::now();
    let listen: Multiaddr = "/ip4/127.0.0.1/tcp/0".parse().expect("valid");
    let mut nodes: Vec<Node> = Vec::with_capacity(n);
    let first = start_node(listen.clone(), Vec::new(), bounds, &hub_connmgr).await?;
    let bootstrap = first.handle.listen_addrs()[0]
        .clone()
        .with(Protocol::P2p(first.handle.peer_id()));
    nodes.push(first);
    for _ in 1..n {
        nodes.push(start_node(listen.clone(), vec![bootstrap.clone()], bounds, &connmgr).await?);
    }
    let handles: Vec<Handle> = nodes.iter().map(|node| node.handle.clone()).collect();
    let (admin_addrs, admin_tasks) = serve_admin(&nodes, admin).await?;

    let bar = if progress {
        ProgressBar::with_draw_target(Some(n as u64), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} nodes within bounds {msg}",
        )
        .expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    let mut max_established = vec![0; n];
    let mut snapshots = watch(
        &handles,
        bounds,
        args,
        &bar,
        &mut max_established,
        start + args.duration,
        None,
    )
    .await?;
    let converged_first = snapshots.iter().all(|s| bounds.contains(s.connections));
    let stop = usize::from(args.stop);
    let mut recovery = None;
    let mut nodes = nodes;
    let mut handles = handles;
    if stop > 0 && converged_first {
        let before: Vec<Snapshot> = snapshots[..n - stop].to_vec();
        let stopped_at = Instant::now();
        // Every handle of a node must go for it to stop.
        handles.truncate(n - stop);
        stop_all(nodes.drain(n - stop..)).await?;
        max_established.truncate(n - stop);
        bar.set_length((n - stop) as u64);
        bar.set_message("recovering".to_owned());
        let mut lowest = vec![usize::MAX; n - stop];
        let after = watch(
            &handles,
            bounds,
            args,
            &bar,
            &mut max_established,
            stopped_at + args.duration,
            Some(&mut lowest),
        )
        .await?;
        let recovered = after.iter().all(|s| bounds.contains(s.connections));
        recovery = Some(Recovery {
            stopped: stop,
            lost_peers: before
                .iter()
                .zip(&lowest)
                .filter(|(b, low)| **low < b.connections)
                .count(),
            fell_below_min: lowest.iter().filter(|low| **low < bounds.min()).count(),
            recovered_ms: recovered
                .then(|| u64::try_from(stopped_at.elapsed().as_millis()).unwrap_or(u64::MAX)),
        });
        snapshots = after;
    }
    bar.finish_and_clear();
    let elapsed_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let converged = snapshots.iter().all(|s| bounds.contains(s.connections))
        && recovery.as_ref().is_none_or(|r| r.recovered_ms.is_some());
    let report = Report {
        nodes: snapshots
            .into_iter()
            .zip(max_established)
            .zip(
                admin_addrs
                    .into_iter()
                    .map(Some)
                    .chain(std::iter::repeat(None)),
            )
            .map(|((last, max_established), admin)| NodeReport {
                last,
                max_established,
                admin: admin.map(|a| a.to_string()),
            })
            .collect(),
        bounds: BoundsReport {
            min: bounds.min(),
            expected: bounds.expected(),
            max: bounds.max(),
        },
        converged,
        elapsed_ms,
        recovery,
    };
    report_to(&report);
    if !admin_tasks.is_empty() {
        // With `--admin` the nodes stay up to be looked at, until interrupted.
        // Not `eprintln!`, which panics when stderr is closed.
        let _ = writeln!(
            std::io::stderr(),
            "the devnet keeps running for its admin APIs; Ctrl-C stops it"
        );
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
    }
    for task in admin_tasks {
        task.abort();
    }
    drop(handles);
    stop_all(nodes).await?;
    Ok(report)
}

/// Stops `nodes` together: every handle goes before any task is awaited. One by one, the
/// nodes still running took each stop as a lost peer and redialed (a 400-node devnet spent
/// about 2 s in such a storm on its way out).
async fn stop_all(nodes: impl IntoIterator<Item = Node>) -> anyhow::Result<()> {
    let tasks: Vec<_> = nodes
        .into_iter()
        .map(|node| {
            drop(node.handle);
            node.task
        })
        .collect();
    for task in tasks {
        task.await.context("node task")?;
    }
    Ok(())
}

/// Samples the nodes until every one is within bounds for `--stable`, or `deadline`; records
/// each node's most established connections and, if given, its lowest count.
async fn watch(
    handles: &[Handle],
    bounds: Bounds,
    args: &DevnetArgs,
    bar: &ProgressBar,
    max_established: &mut [usize],
    deadline: Instant,
    mut lowest: Option<&mut Vec<usize>>,
) -> anyhow::Result<Vec<Snapshot>> {
    let mut stable_since: Option<Instant> = None;
    loop {
        let snapshots = snapshot_all(handles).await?;
        for (max, s) in max_established.iter_mut().zip(&snapshots) {
            *max = (*max).max(s.established);
        }
        if let Some(lowest) = lowest.as_deref_mut() {
            for (low, s) in lowest.iter_mut().zip(&snapshots) {
                *low = (*low).min(s.connections);
            }
        }
        let within = snapshots
            .iter()
            .filter(|s| bounds.contains(s.connections))
            .count();
        let total: usize = snapshots.iter().map(|s| s.connections).sum();
        bar.set_position(within as u64);
        bar.set_message(format!(
            "({bounds}), {total} connections summed over nodes, {} known points",
            snapshots.iter().map(|s| s.known_points).sum::<usize>()
        ));
        let now = Instant::now();
        if within == snapshots.len() {
            let since = *stable_since.get_or_insert(now);
            if now - since >= args.stable {
                return Ok(snapshots);
            }
        } else {
            stable_since = None;
        }
        if now >= deadline {
            return Ok(snapshots);
        }
        tokio::time::sleep(SAMPLE).await;
    }
}

async fn start_node(
    listen: Multiaddr,
    bootstrap: Vec<Multiaddr>,
    bounds: Bounds,
    connmgr: &connmgr::Config,
) -> anyhow::Result<Node> {
    Node::start(NodeConfig {
        bootstrap,
        connmgr: connmgr.clone(),
        ..NodeConfig::new(Keypair::generate_ed25519(), vec![listen], bounds)
    })
    .await
}

async fn snapshot_all(handles: &[Handle]) -> anyhow::Result<Vec<Snapshot>> {
    futures::future::try_join_all(handles.iter().map(Handle::snapshot)).await
}

/// The report as a table with a verdict, for humans.
pub fn render_table(report: &Report) -> String {
    use std::fmt::Write;
    let b = report.bounds;
    let mut out = String::new();
    let admin = report.nodes.iter().any(|n| n.admin.is_some());
    let _ = writeln!(
        out,
        "{:>4}  {:<52}  {:>11}  {:>12}  {:>11}{}",
        "node",
        "peer id",
        "connections",
        "known points",
        "known peers",
        if admin { "  admin API" } else { "" }
    );
    for (i, report) in report.nodes.iter().enumerate() {
        let node = &report.last;
        let mark = if (b.min..=b.max).contains(&node.connections) {
            " "
        } else {
            "!"
        };
        let _ = writeln!(
            out,
            "{i:>4}  {:<52}  {:>10}{mark}  {:>12}  {:>11}{}",
            node.peer_id,
            node.connections,
            node.known_points,
            node.known_peers,
            report
                .admin
                .as_ref()
                .map_or_else(String::new, |a| format!("  {a}"))
        );
    }
    let within = report
        .nodes
        .iter()
        .filter(|s| (b.min..=b.max).contains(&s.last.connections))
        .count();
    let _ = writeln!(
        out,
        "\n{}: {within}/{} nodes within bounds {}/{}/{} after {:.1} s",
        if report.converged {
            "converged"
        } else {
            "NOT converged"
        },
        report.nodes.len(),
        b.min,
        b.expected,
        b.max,
        report.elapsed_ms as f64 / 1000.0
    );
    if let Some(r) = &report.recovery {
        let _ = match r.recovered_ms {
            Some(ms) => writeln!(
                out,
                "recovered: {} nodes stopped; {} survivors lost peers, {} fell below min; all within bounds again {:.1} s after the stop",
                r.stopped,
                r.lost_peers,
                r.fell_below_min,
                ms as f64 / 1000.0
            ),
            None => writeln!(
                out,
                "NOT recovered: {} nodes stopped; {} survivors lost peers, {} fell below min",
                r.stopped, r.lost_peers, r.fell_below_min
            ),
        };
    }
    out
}

/// With `--admin IP:PORT`, serves node `i`'s admin API on `IP:PORT+i` (each on a port of its
/// own when the port is 0), and prints where on stderr. A non-loopback address needs
/// `--admin-token`, as for `run`.
async fn serve_admin(
    nodes: &[Node],
    admin: &ClientArgs,
) -> anyhow::Result<(Vec<std::net::SocketAddr>, Vec<tokio::task::JoinHandle<()>>)> {
    let Some(base) = admin.admin else {
        return Ok((Vec::new(), Vec::new()));
    };
    crate::run::check_admin(admin)?;
    let (mut addrs, mut tasks) = (Vec::new(), Vec::new());
    for (i, node) in nodes.iter().enumerate() {
        let port = match base.port() {
            0 => 0,
            p => u16::try_from(usize::from(p) + i)
                .map_err(|_| anyhow::anyhow!("--admin {base}: no port for node {i}"))?,
        };
        let addr = std::net::SocketAddr::new(base.ip(), port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot serve node {i}'s admin API on {addr}"))?;
        let local = listener.local_addr()?;
        let _ = writeln!(std::io::stderr(), "node {i}: admin API http://{local}");
        let (handle, registry, token) = (
            node.handle.clone(),
            node.registry.clone(),
            admin.admin_token.clone(),
        );
        tasks.push(tokio::spawn(async move {
            if let Err(e) = crate::admin::serve(listener, handle, registry, token).await {
                tracing::error!("admin API: {e}");
            }
        }));
        addrs.push(local);
    }
    Ok((addrs, tasks))
}
