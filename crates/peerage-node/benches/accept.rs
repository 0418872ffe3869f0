//! Accept rate, server CPU and RSS per connection: `peerage run` side by side with a bare
//! rust-libp2p swarm (TCP, Noise, Yamux, identify and ping only), in one run, alternating.
//!
//! Each server runs in its own process on 127.0.0.1; this process dials it from `--dials`
//! bare client swarms (identify and ping; no peer exchange), `--in-flight` at a time, on one
//! tokio worker thread. A connection counts once the client has received the server's
//! identify. Per run: accepted connections per second (first dial to last identify), server
//! CPU (user + system, from `/proc`) per accepted connection, and server RSS per connection
//! (with every connection held, minus the RSS before the first dial). `peerage run` gets
//! bounds and watermarks above the dials (`--connections 2000`) and unlimited resource limits,
//! so that nothing is refused or trimmed; its other settings are its defaults.
//!
//! ```text
//! cargo bench -p peerage-node --bench accept -- [--pairs 9] [--dials 1000] [--in-flight 50]
//!     [--against PATH_TO_ANOTHER_PEERAGE_BINARY] [--only peerage] [--js]
//! ```
//!
//! `--js` adds a js-libp2p server (`interop/js/serve.mjs`, Node.js; `npm ci --prefix
//! interop/js` first), its inbound throttles lifted (5,000 connections, 50 pending, no rate per
//! host), and prints `peerage run`'s ratios to it.
//!
//! `--only peerage` runs `peerage run` alone (no bare swarm, no ratios), to profile it.
//!
//! `peerage run` also serves its admin API on 127.0.0.1; with every connection held, the bench
//! times 100 `GET /network/stat` and 20 `GET /metrics` one after the other and reports the
//! median of each.
//!
//! `--against` adds a third server, another build of `peerage` (say, of an earlier commit), to
//! compare two builds in the same run. Figures: `crates/peerage-core/benches/README.md`.

#![allow(missing_docs, clippy::disallowed_methods)]

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt;
use libp2p::{
    Multiaddr, Swarm, identify, noise, ping,
    swarm::{NetworkBehaviour, SwarmEvent},
    tcp, yamux,
};
use peerage::rcmgr::{self, BaseLimit, LimitConfig};

#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct Bare {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

fn bare_swarm() -> Swarm<Bare> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|key| Bare {
            identify: identify::Behaviour::new(identify::Config::new(
                "ipfs/0.1.0".into(),
                key.public(),
            )),
            ping: ping::Behaviour::new(ping::Config::new()),
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build()
}

/// The bare server: listens on 127.0.0.1, prints `listening on ADDR` as `peerage run` does,
/// and serves until killed.
fn serve_bare() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut swarm = bare_swarm();
        swarm
            .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
            .unwrap();
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                println!("listening on {address}");
                break;
            }
        }
        loop {
            swarm.select_next_some().await;
        }
    });
}

/// Limits that refuse nothing, services and protocols of the defaults included.
fn unlimited_limits() -> String {
    let mut l = LimitConfig::unlimited();
    for s in [
        rcmgr::IDENTIFY_SERVICE,
        rcmgr::PING_SERVICE,
        rcmgr::PEX_SERVICE,
    ] {
        l = l
            .with_service(s, BaseLimit::UNLIMITED)
            .with_service_peer(s, BaseLimit::UNLIMITED);
    }
    for p in rcmgr::IDENTIFY_PROTOCOLS
        .into_iter()
        .chain([rcmgr::PING_PROTOCOL, rcmgr::PEX_PROTOCOL])
    {
        l = l
            .with_protocol(p, BaseLimit::UNLIMITED)
            .with_protocol_peer(p, BaseLimit::UNLIMITED);
    }
    l.to_json()
}

/// `peerage run`'s limits file and configuration file (pool tables large enough for
/// `--connections 2000`, as Octez's validation requires).
struct Files {
    limits: tempfile::NamedTempFile,
    config: tempfile::NamedTempFile,
}

impl Files {
    fn new() -> Files {
        let limits = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(limits.path(), unlimited_limits()).unwrap();
        let config = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::fs::write(
            config.path(),
            "[pool]\nmax_known_points = [4000, 3000]\nmax_known_peers = [4000, 3000]\n",
        )
        .unwrap();
        Files { limits, config }
    }
}

struct Server {
    child: Child,
    addr: Multiaddr,
    /// The admin API's address (`peerage run` only).
    admin: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    fn start(variant: &Variant, files: &Files) -> Server {
        let (mut cmd, dir) = match variant {
            Variant::Bare => {
                let mut cmd = Command::new(std::env::current_exe().unwrap());
                cmd.arg("serve-bare");
                (cmd, None)
            }
            Variant::Peerage(_, bin) => {
                let dir = tempfile::tempdir().unwrap();
                let mut cmd = Command::new(bin);
                cmd.args(["run", "--ephemeral", "--data-dir"])
                    .arg(dir.path())
                    .arg("--config")
                    .arg(files.config.path())
                    .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--connections", "2000"])
                    .arg("--limits")
                    .arg(files.limits.path())
                    .args(["--admin", "127.0.0.1:0"]);
                (cmd, Some(dir))
            }
            Variant::Js => {
                let js = concat!(env!("CARGO_MANIFEST_DIR"), "/../../interop/js");
                let mut cmd = Command::new("node");
                cmd.current_dir(js)
                    .args(["--import", "./polyfill.mjs", "serve.mjs"]);
                (cmd, None)
            }
        };
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the server");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let wants_admin = matches!(variant, Variant::Peerage(..));
        let (mut addr, mut admin) = (None, None);
        while addr.is_none() || (wants_admin && admin.is_none()) {
            let line = lines
                .next()
                .expect("the server printed its addresses")
                .unwrap();
            if let Some(a) = line.strip_prefix("listening on ")
                && a.contains("/tcp/")
            {
                let a: Multiaddr = a.parse().unwrap();
                // Dial without /p2p: the clients do not know the peer ID.
                addr = Some(
                    a.into_iter()
                        .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
                        .collect(),
                );
            }
            if let Some(a) = line.strip_prefix("admin API: http://") {
                admin = Some(a.to_owned());
            }
        }
        let addr = addr.expect("read above");
        // Keep reading stdout so that the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            addr,
            admin,
            _dir: dir,
        }
    }

    /// User + system CPU time so far.
    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        Duration::from_millis(ticks * 1000 / clock_ticks())
    }

    /// Resident memory, in bytes.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kb * 1024
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn clock_ticks() -> u64 {
    // `getconf CLK_TCK`; 100 on Linux.
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

enum Variant {
    Bare,
    Peerage(String, PathBuf),
    /// `interop/js/serve.mjs` under Node.js.
    Js,
}

impl Variant {
    fn name(&self) -> &str {
        match self {
            Variant::Bare => "bare swarm",
            Variant::Peerage(name, _) => name,
            Variant::Js => "js-libp2p",
        }
    }
}

struct Run {
    accepts_per_s: f64,
    cpu_us_per_conn: f64,
    rss_kb_per_conn: f64,
    failed: usize,
    /// Median latency of `GET /network/stat` and `GET /metrics`, in ms, with every connection
    /// held (`peerage run` only).
    admin_ms: Option<(f64, f64)>,
}

/// The median time of `n` sequential `GET path` requests to `addr`, in ms.
fn time_get(addr: &str, path: &str, n: usize) -> f64 {
    use std::io::{Read, Write};
    let times: Vec<f64> = (0..n)
        .map(|_| {
            let start = Instant::now();
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut response = Vec::new();
            s.read_to_end(&mut response).unwrap();
            assert!(response.starts_with(b"HTTP/1.1 200"), "GET {path} failed");
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    median_min_max(times).0
}

/// Dials `server` from `dials` client swarms, `in_flight` at a time, and measures.
fn run(server: &Server, dials: usize, in_flight: usize) -> Run {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Build the clients first, so that their set-up is not timed.
        let swarms: Vec<Swarm<Bare>> = (0..dials).map(|_| bare_swarm()).collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (rss0, cpu0) = (server.rss(), server.cpu());
        let permits = Arc::new(tokio::sync::Semaphore::new(in_flight));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(dials);
        for mut swarm in swarms {
            let permit = permits.clone().acquire_owned().await.unwrap();
            let (tx, addr) = (tx.clone(), server.addr.clone());
            tasks.push(tokio::spawn(async move {
                swarm.dial(addr).unwrap();
                let mut permit = Some(permit);
                loop {
                    let ok = match swarm.select_next_some().await {
                        SwarmEvent::Behaviour(BareEvent::Identify(identify::Event::Received {
                            ..
                        })) => true,
                        SwarmEvent::OutgoingConnectionError { .. }
                        | SwarmEvent::ConnectionClosed { .. } => false,
                        _ => continue,
                    };
                    if permit.take().is_some() {
                        let _ = tx.send(ok);
                    }
                }
            }));
        }
        let mut failed = 0;
        for _ in 0..dials {
            failed += usize::from(!rx.recv().await.unwrap());
        }
        let elapsed = start.elapsed();
        let cpu = server.cpu() - cpu0;
        // Hold every connection a moment, then read the memory they take.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss = server.rss().saturating_sub(rss0);
        let admin_ms = match server.admin.clone() {
            Some(admin) => Some(
                tokio::task::spawn_blocking(move || {
                    (
                        time_get(&admin, "/network/stat", 100),
                        time_get(&admin, "/metrics", 20),
                    )
                })
                .await
                .unwrap(),
            ),
            None => None,
        };
        for t in tasks {
            t.abort();
        }
        let ok = (dials - failed).max(1) as f64;
        Run {
            accepts_per_s: ok / elapsed.as_secs_f64(),
            cpu_us_per_conn: cpu.as_secs_f64() * 1e6 / ok,
            rss_kb_per_conn: rss as f64 / 1024.0 / ok,
            failed,
            admin_ms,
        }
    })
}

fn median_min_max(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (median, v[0], v[n - 1])
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve-bare") {
        return serve_bare();
    }
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let num = |name: &str, default: usize| flag(name).map_or(default, |v| v.parse().unwrap());
    let (pairs, dials, in_flight) = (
        num("--pairs", 9),
        num("--dials", 1000),
        num("--in-flight", 50),
    );
    let mut variants = vec![
        Variant::Bare,
        Variant::Peerage(
            "peerage run".into(),
            PathBuf::from(env!("CARGO_BIN_EXE_peerage")),
        ),
    ];
    if flag("--only").as_deref() == Some("peerage") {
        variants.remove(0);
    }
    if args.iter().any(|a| a == "--js") {
        variants.push(Variant::Js);
    }
    if let Some(path) = flag("--against") {
        variants.push(Variant::Peerage(
            format!("peerage run ({path})"),
            path.into(),
        ));
    }
    let files = Files::new();

    eprintln!("{pairs} rounds of {dials} dials, {in_flight} in flight, servers alternating");
    let mut results: Vec<Vec<Run>> = variants.iter().map(|_| Vec::new()).collect();
    for round in 0..pairs {
        // Alternate the order, so that no server always runs first.
        let mut order: Vec<usize> = (0..variants.len()).collect();
        order.rotate_left(round % variants.len());
        for i in order {
            let server = Server::start(&variants[i], &files);
            let r = run(&server, dials, in_flight);
            eprintln!(
                "round {round} {:<28} {:>7.0} conn/s {:>6.0} µs CPU/conn {:>5.1} KB/conn{}{}",
                variants[i].name(),
                r.accepts_per_s,
                r.cpu_us_per_conn,
                r.rss_kb_per_conn,
                r.admin_ms.map_or(String::new(), |(stat, metrics)| format!(
                    ", /network/stat {stat:.2} ms, /metrics {metrics:.2} ms"
                )),
                if r.failed > 0 {
                    format!(" ({} failed)", r.failed)
                } else {
                    String::new()
                }
            );
            results[i].push(r);
        }
    }

    println!("| server | accepted conn/s | server CPU µs/conn | server RSS KB/conn |");
    println!("|---|---|---|---|");
    let fmt = |(m, lo, hi): (f64, f64, f64), digits: usize| {
        format!("{m:.digits$} ({lo:.digits$}–{hi:.digits$})")
    };
    for (v, runs) in variants.iter().zip(&results) {
        println!(
            "| {} | {} | {} | {} |",
            v.name(),
            fmt(
                median_min_max(runs.iter().map(|r| r.accepts_per_s).collect()),
                0
            ),
            fmt(
                median_min_max(runs.iter().map(|r| r.cpu_us_per_conn).collect()),
                0
            ),
            fmt(
                median_min_max(runs.iter().map(|r| r.rss_kb_per_conn).collect()),
                1
            ),
        );
    }
    println!();
    println!("| server | `GET /network/stat`, ms | `GET /metrics`, ms |");
    println!("|---|---|---|");
    for (v, runs) in variants.iter().zip(&results) {
        let admin: Vec<(f64, f64)> = runs.iter().filter_map(|r| r.admin_ms).collect();
        if admin.is_empty() {
            continue;
        }
        println!(
            "| {} | {} | {} |",
            v.name(),
            fmt(median_min_max(admin.iter().map(|a| a.0).collect()), 2),
            fmt(median_min_max(admin.iter().map(|a| a.1).collect()), 2),
        );
    }
    println!();
    if matches!(variants[0], Variant::Peerage(..)) {
        return;
    }
    println!("| ratio, per round | accepted conn/s | server CPU per conn | server RSS per conn |");
    println!("|---|---|---|---|");
    for (i, v) in variants.iter().enumerate().skip(1) {
        // Each server against the bare swarm; a second peerage build also against the first;
        // `peerage run` against js-libp2p.
        let mut against = vec![(i, 0)];
        if i > 1 {
            against.push(match v {
                Variant::Js => (1, i),
                _ => (i, 1),
            });
        }
        for (n, d) in against {
            let ratio = |f: fn(&Run) -> f64| {
                median_min_max(
                    results[n]
                        .iter()
                        .zip(&results[d])
                        .map(|(a, b)| f(a) / f(b))
                        .collect(),
                )
            };
            println!(
                "| {} / {} | {}x | {}x | {}x |",
                variants[n].name(),
                variants[d].name(),
                fmt(ratio(|r| r.accepts_per_s), 2),
                fmt(ratio(|r| r.cpu_us_per_conn), 2),
                fmt(ratio(|r| r.rss_kb_per_conn), 2),
            );
        }
    }
}
