//! Holding 10,000 connections: `peerage run` side by side with a bare rust-libp2p swarm (TCP,
//! Noise, Yamux, identify and ping only), in one run, alternating.
//!
//! Each server runs in its own process on 127.0.0.1. This process dials it from `--connections`
//! bare client swarms (identify and ping, each with its own peer ID), `--in-flight` at a time,
//! on one tokio worker thread, each client bound to one of `--sources` loopback source addresses
//! (127.0.1.1, 127.0.1.2, ...; a stock libp2p-tcp transport binds no source address, so the
//! clients dial through a small transport of their own). A connection counts once the client
//! has received the server's identify. With every connection held, the bench waits `--idle`
//! seconds (both sides ping every 15 s, rust-libp2p's default) and reports, per server:
//!
//! - the server's idle CPU over that window (user + system, from `/proc`), in % of one core;
//! - its RSS per connection at the end of the window, minus its RSS before the first dial;
//! - for `peerage run`, the median of 100 `GET /network/stat` at 100 connections (the dials
//!   paused there) and at the full count, and of 20 `GET /metrics` at the full count, one
//!   request after the other, each on a new TCP connection; and the median of 100 `GET
//!   /network/stat` at each count on one kept-alive connection (the server's answer without the
//!   kernel's connection setup).
//!
//! ```text
//! cargo bench -p peerage-node --bench hold -- [--pairs 3] [--connections 10000]
//!     [--sources 200] [--in-flight 50] [--idle 60] [--only peerage]
//!     [--against PATH_TO_ANOTHER_PEERAGE_BINARY]
//! ```
//!
//! `--only peerage` runs `peerage run` alone (no bare swarm, no ratios), to profile it.
//! `--requests N` times N kept-alive `GET /network/stat` at each count instead of 100, and
//! `--perf DIR` records the server with `perf record` (`cpu-clock` at 10 kHz, call graphs,
//! kernel included) over each of those timings, into `DIR/round<R>-at<COUNT>.data`; `perf
//! script -i FILE -F comm,ip,sym,dso` prints each sample's thread and call chain, whose first
//! line is the sampled function (the admin API's thread is `peerage-admin`).
//!
//! `peerage run` gets `--connections` equal to the held count (bounds N/2, N and 3N/2, so the
//! maintenance neither dials nor closes, and the connection manager's high water 3N/2 is never
//! crossed) and unlimited resource limits; its other settings are its defaults. Both the server
//! and this process need `ulimit -n` above the held count (this machine's is 20,000).
//! Figures: `crates/peerage-core/benches/README.md`.

#![allow(missing_docs, clippy::disallowed_methods)]

mod common;

use std::{
    io,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    pin::Pin,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use common::{
    Args, Bare, BareEvent, Files, Server, Variant, bare_behaviour, control_server, median_min_max,
    time_get, time_get_kept,
};
use futures::{FutureExt, StreamExt, future::BoxFuture};
use libp2p::{
    Multiaddr, Swarm, Transport,
    core::{
        transport::{DialOpts, ListenerId, TransportError, TransportEvent},
        upgrade,
    },
    identify,
    multiaddr::Protocol,
    noise,
    swarm::SwarmEvent,
    tcp, yamux,
};

/// TCP that dials from one source address and listens nowhere.
struct FromSource(IpAddr);

impl Transport for FromSource {
    type Output = tcp::tokio::TcpStream;
    type Error = io::Error;
    type ListenerUpgrade = futures::future::Pending<io::Result<Self::Output>>;
    type Dial = BoxFuture<'static, io::Result<Self::Output>>;

    fn listen_on(
        &mut self,
        _: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<io::Error>> {
        Err(TransportError::MultiaddrNotSupported(addr))
    }

    fn remove_listener(&mut self, _: ListenerId) -> bool {
        false
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        _: DialOpts,
    ) -> Result<Self::Dial, TransportError<io::Error>> {
        let mut parts = addr.iter();
        let to = match (parts.next(), parts.next()) {
            (Some(Protocol::Ip4(ip)), Some(Protocol::Tcp(port))) => SocketAddr::from((ip, port)),
            _ => return Err(TransportError::MultiaddrNotSupported(addr)),
        };
        let from = SocketAddr::new(self.0, 0);
        Ok(async move {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(from)?;
            socket.set_nodelay(true)?;
            Ok(tcp::tokio::TcpStream(socket.connect(to).await?))
        }
        .boxed())
    }

    fn poll(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, io::Error>> {
        Poll::Pending
    }
}

/// The `i`-th loopback source address: 127.0.1.1, 127.0.1.2, ... 127.0.1.250, 127.0.2.1, ...
fn source(i: usize) -> IpAddr {
    let (hi, lo) = (i / 250, i % 250);
    IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        u8::try_from(1 + hi).expect("at most 63,750 sources"),
        u8::try_from(1 + lo).expect("below 251"),
    ))
}

/// A bare client swarm dialing from `from`, with its own identity.
fn client(from: IpAddr) -> Swarm<Bare> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(|key| {
            FromSource(from)
                .upgrade(upgrade::Version::V1Lazy)
                .authenticate(noise::Config::new(key).unwrap())
                .multiplex(yamux::Config::default())
        })
        .unwrap()
        .with_behaviour(bare_behaviour)
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build()
}

struct Admin {
    /// Median `GET /network/stat` at 100 connections, in ms.
    stat_100: f64,
    /// Median `GET /network/stat` with every connection held.
    stat: f64,
    /// Median `GET /network/stat` at 100 connections, over one kept-alive connection.
    kept_100: f64,
    /// The same with every connection held.
    kept: f64,
    /// The admin API thread's time run and time waited runnable for a core, per kept-alive
    /// request at 100 connections, in µs (`/proc` schedstat; `None` if not found).
    sched_100: Option<[f64; 2]>,
    /// The same with every connection held.
    sched: Option<[f64; 2]>,
    /// Median `GET /metrics` with every connection held.
    metrics: f64,
}

struct Hold {
    /// Connections that completed identify.
    held: usize,
    /// Of those, closed before the end of the idle window.
    dropped: usize,
    rss_kb_per_conn: f64,
    /// Server CPU over the idle window, in % of one core.
    idle_cpu_pct: f64,
    admin: Option<Admin>,
    /// The control ([`control_server`]), in ms: a new connection per request at 100 and at the
    /// full count, then one kept-alive connection at 100 and at the full count.
    control: [f64; 4],
}

/// Times `times` requests for `path` at `addr` with `timer` ([`time_get`], [`time_get_kept`]),
/// on a blocking thread: the median, in ms.
async fn timed(
    addr: String,
    path: &'static str,
    times: usize,
    timer: fn(&str, &str, usize) -> f64,
) -> f64 {
    tokio::task::spawn_blocking(move || timer(&addr, path, times))
        .await
        .unwrap()
}

/// How the kept-alive `/network/stat` timings run.
struct Timing {
    /// Requests per timing (`--requests`, default 100).
    requests: usize,
    /// Where `perf record` writes a recording of each timing (`--perf`), if anywhere.
    perf: Option<PathBuf>,
}

/// `perf record` of the process `pid` into `out`, until [`perf_stop`].
///
/// # Panics
///
/// If `perf` cannot be started, or exits at once (it could not attach: run as root, or lower
/// `/proc/sys/kernel/perf_event_paranoid`).
fn perf_start(pid: u32, out: &Path) -> Child {
    let mut child = Command::new("perf")
        .args(["record", "-q", "-e", "cpu-clock", "-F", "10000", "-g", "-p"])
        .arg(pid.to_string())
        .arg("-o")
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start `perf record` (is perf installed?)");
    // Let it attach before the timing starts.
    std::thread::sleep(Duration::from_millis(500));
    if let Ok(Some(status)) = child.try_wait() {
        panic!("`perf record -p {pid}` exited at once ({status}): it could not attach");
    }
    child
}

/// Stops a [`perf_start`] as Ctrl-C would, and waits for it to write its file.
fn perf_stop(mut perf: Child) {
    let _ = Command::new("kill")
        .args(["-INT", &perf.id().to_string()])
        .status();
    let _ = perf.wait();
}

/// Holds `n` connections to `server` from `sources` source addresses and measures, the
/// control ([`control_server`]) at `control` timed beside the server; round `round`.
#[allow(clippy::too_many_arguments)]
fn hold(
    server: &Server,
    control: &str,
    n: usize,
    sources: usize,
    in_flight: usize,
    idle: Duration,
    timing: &Timing,
    round: usize,
) -> Hold {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut swarms = (0..n)
            .map(|i| client(source(i % sources)))
            .collect::<Vec<_>>();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rss0 = server.rss();
        let permits = Arc::new(tokio::sync::Semaphore::new(in_flight));
        let dropped = Arc::new(AtomicUsize::new(0));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = Vec::with_capacity(n);
        let mut failed = 0;
        let admin = server.admin.clone();
        let get = |path: &'static str, times: usize, timer: fn(&str, &str, usize) -> f64| {
            let admin = admin.clone();
            async move {
                match admin {
                    Some(a) => Some(timed(a, path, times, timer).await),
                    None => None,
                }
            }
        };
        let mut stat_100 = None;
        let mut kept_100 = None;
        let mut sched_100 = None;
        // The admin thread's run and runnable-wait time per request over a kept-alive timing.
        let requests = timing.requests;
        let sched = |before: Option<[u64; 3]>, after: Option<[u64; 3]>| {
            let (b, a) = (before?, after?);
            let per_request = |i: usize| a[i].saturating_sub(b[i]) as f64 / 1e3 / requests as f64;
            Some([per_request(0), per_request(1)])
        };
        const ADMIN_THREAD: &str = "peerage-admin";
        // The kept-alive timing at `count` connections, recorded with `perf` if asked:
        // the median and the admin thread's schedstat figures.
        let kept_alive = |count: usize| {
            let get = &get;
            async move {
                let perf = timing
                    .perf
                    .as_ref()
                    .filter(|_| server.admin.is_some())
                    .map(|dir| {
                        perf_start(
                            server.pid(),
                            &dir.join(format!("round{round}-at{count}.data")),
                        )
                    });
                let before = server.schedstat(ADMIN_THREAD);
                let kept = get("/network/stat", requests, time_get_kept).await;
                let sched = sched(before, server.schedstat(ADMIN_THREAD));
                if let Some(perf) = perf {
                    perf_stop(perf);
                }
                (kept, sched)
            }
        };
        let time_control =
            |timer: fn(&str, &str, usize) -> f64| timed(control.to_owned(), "/", 100, timer);
        let mut control_100 = None;
        // Dial the first 100, time `/network/stat` and the control there (the dials paused),
        // then dial the rest.
        for (at_100, batch) in [(true, n.min(100)), (false, n.saturating_sub(100))] {
            for mut swarm in swarms.drain(..batch) {
                let permit = permits.clone().acquire_owned().await.unwrap();
                let (tx, addr, dropped) = (tx.clone(), server.addr.clone(), dropped.clone());
                tasks.push(tokio::spawn(async move {
                    swarm.dial(addr).unwrap();
                    let mut permit = Some(permit);
                    loop {
                        let ok = match swarm.select_next_some().await {
                            SwarmEvent::Behaviour(BareEvent::Identify(
                                identify::Event::Received { .. },
                            )) => true,
                            SwarmEvent::OutgoingConnectionError { .. } => false,
                            SwarmEvent::ConnectionClosed { .. } => {
                                if permit.is_none() {
                                    dropped.fetch_add(1, Ordering::Relaxed);
                                }
                                false
                            }
                            _ => continue,
                        };
                        if permit.take().is_some() {
                            let _ = tx.send(ok);
                        }
                    }
                }));
            }
            for _ in 0..batch {
                failed += usize::from(!rx.recv().await.unwrap());
            }
            if at_100 {
                stat_100 = get("/network/stat", 100, time_get).await;
                (kept_100, sched_100) = kept_alive(batch).await;
                control_100 = Some((
                    time_control(time_get).await,
                    time_control(time_get_kept).await,
                ));
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let cpu0 = server.cpu();
        tokio::time::sleep(idle).await;
        let cpu = server.cpu() - cpu0;
        let rss = server.rss().saturating_sub(rss0);
        let stat = get("/network/stat", 100, time_get).await;
        let (kept, sched_n) = kept_alive(n).await;
        let admin = match (stat_100, kept_100, stat, kept) {
            (Some(stat_100), Some(kept_100), Some(stat), Some(kept)) => Some(Admin {
                stat_100,
                stat,
                kept_100,
                kept,
                sched_100,
                sched: sched_n,
                metrics: get("/metrics", 20, time_get)
                    .await
                    .expect("the admin API answered above"),
            }),
            _ => None,
        };
        let (control_new_100, control_kept_100) = control_100.expect("timed at 100");
        let control = [
            control_new_100,
            time_control(time_get).await,
            control_kept_100,
            time_control(time_get_kept).await,
        ];
        for t in tasks {
            t.abort();
        }
        let held = n - failed;
        Hold {
            held,
            dropped: dropped.load(Ordering::Relaxed),
            rss_kb_per_conn: rss as f64 / 1024.0 / held.max(1) as f64,
            idle_cpu_pct: cpu.as_secs_f64() * 100.0 / idle.as_secs_f64(),
            admin,
            control,
        }
    })
}

fn main() {
    let Some(args) = Args::from_env() else {
        return;
    };
    let (pairs, n, sources, in_flight, idle) = if args.quick() {
        (1, 200, 20, 50, 2)
    } else {
        (
            args.num("--pairs", 3),
            args.num("--connections", 10_000),
            args.num("--sources", 200),
            args.num("--in-flight", 50),
            args.num("--idle", 60),
        )
    };
    let idle = Duration::from_secs(idle as u64);
    let requests = args.num("--requests", 100);
    assert!(requests > 0, "--requests must be at least 1");
    let timing = Timing {
        requests,
        perf: args.flag("--perf").map(PathBuf::from),
    };
    if let Some(dir) = &timing.perf {
        std::fs::create_dir_all(dir).expect("create the --perf directory");
    }
    let variants = args.variants(false);
    let files = Files::new(n);

    eprintln!(
        "{pairs} rounds: {n} connections from {sources} source addresses, {in_flight} dials in \
         flight, {} s idle, servers alternating",
        idle.as_secs()
    );
    let mut results: Vec<Vec<Hold>> = variants.iter().map(|_| Vec::new()).collect();
    // One control for the whole run: its thread serves until the bench ends.
    let control = control_server();
    for round in 0..pairs {
        let mut order: Vec<usize> = (0..variants.len()).collect();
        order.rotate_left(round % variants.len());
        for i in order {
            let server = Server::start(&variants[i], &files);
            let h = hold(
                &server, &control, n, sources, in_flight, idle, &timing, round,
            );
            eprintln!(
                "round {round} {:<28} {:>6} held ({} dropped) {:>5.1} KB/conn {:>5.2} % idle CPU{}; \
                 control {:.3} ms at 100, {:.3} ms at {n} (kept-alive {:.3}, {:.3})",
                variants[i].name(),
                h.held,
                h.dropped,
                h.rss_kb_per_conn,
                h.idle_cpu_pct,
                h.admin.as_ref().map_or(String::new(), |a| format!(
                    ", /network/stat {:.3} ms at 100, {:.3} ms at {n} (kept-alive {:.3}, \
                     {:.3}), /metrics {:.2} ms",
                    a.stat_100, a.stat, a.kept_100, a.kept, a.metrics
                ) + &match (a.sched_100, a.sched) {
                    (Some([r0, w0]), Some([r, w])) => format!(
                        ", admin thread per kept-alive request: run {r0:.1} µs, waited {w0:.1} µs \
                         at 100; run {r:.1} µs, waited {w:.1} µs at {n}"
                    ),
                    _ => String::new(),
                }),
                h.control[0],
                h.control[1],
                h.control[2],
                h.control[3],
            );
            results[i].push(h);
        }
    }

    let fmt = |(m, lo, hi): (f64, f64, f64), digits: usize| {
        format!("{m:.digits$} ({lo:.digits$}–{hi:.digits$})")
    };
    let of = |runs: &[Hold], f: &dyn Fn(&Hold) -> Option<f64>| {
        let v: Vec<f64> = runs.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| median_min_max(v))
    };
    println!(
        "| server | held | RSS KB/conn | idle CPU, % of a core | `/network/stat` ms at 100 | \
         at {n} | kept-alive, at 100 | at {n} | `/metrics` ms at {n} |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (v, runs) in variants.iter().zip(&results) {
        let admin = |f: fn(&Admin) -> f64| {
            of(runs, &|h| h.admin.as_ref().map(f)).map_or("–".into(), |m| fmt(m, 3))
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            v.name(),
            runs.iter().map(|h| h.held - h.dropped).min().unwrap_or(0),
            fmt(of(runs, &|h| Some(h.rss_kb_per_conn)).unwrap(), 1),
            fmt(of(runs, &|h| Some(h.idle_cpu_pct)).unwrap(), 2),
            admin(|a| a.stat_100),
            admin(|a| a.stat),
            admin(|a| a.kept_100),
            admin(|a| a.kept),
            admin(|a| a.metrics),
        );
    }
    println!();
    // The goal's "within 10 % of its value at 100", per round.
    for (v, runs) in variants.iter().zip(&results) {
        let growth = |f: fn(&Admin) -> (f64, f64)| {
            of(runs, &|h| {
                h.admin.as_ref().map(|a| {
                    let (at_100, at_n) = f(a);
                    at_n / at_100
                })
            })
        };
        if let (Some(new), Some(kept)) = (
            growth(|a| (a.stat_100, a.stat)),
            growth(|a| (a.kept_100, a.kept)),
        ) {
            println!(
                "{}: `/network/stat` at {n} / at 100, per round: {}x; kept-alive: {}x",
                v.name(),
                fmt(new, 2),
                fmt(kept, 2)
            );
        }
        let sched = |f: fn(&Admin) -> Option<[f64; 2]>, i: usize| {
            of(runs, &|h| h.admin.as_ref().and_then(f).map(|s| s[i]))
        };
        if let (Some(r0), Some(w0), Some(r), Some(w)) = (
            sched(|a| a.sched_100, 0),
            sched(|a| a.sched_100, 1),
            sched(|a| a.sched, 0),
            sched(|a| a.sched, 1),
        ) {
            println!(
                "{}: the admin thread per kept-alive request, µs run / waited for a core: {} / {} \
                 at 100, {} / {} at {n}",
                v.name(),
                fmt(r0, 1),
                fmt(w0, 1),
                fmt(r, 1),
                fmt(w, 1)
            );
        }
        let control = |at_100: usize, at_n: usize| {
            fmt(
                of(runs, &|h| Some(h.control[at_n] / h.control[at_100])).unwrap(),
                2,
            )
        };
        println!(
            "{}: the control at {n} / at 100, per round: {}x; kept-alive: {}x",
            v.name(),
            control(0, 1),
            control(2, 3)
        );
    }
    println!();
    if matches!(variants[0], Variant::Peerage(..)) {
        return;
    }
    println!("| ratio, per round | RSS per conn | idle CPU |");
    println!("|---|---|---|");
    for (i, v) in variants.iter().enumerate().skip(1) {
        let ratio = |f: fn(&Hold) -> f64| {
            median_min_max(
                results[i]
                    .iter()
                    .zip(&results[0])
                    .map(|(a, b)| f(a) / f(b))
                    .collect(),
            )
        };
        println!(
            "| {} / bare swarm | {}x | {}x |",
            v.name(),
            fmt(ratio(|h| h.rss_kb_per_conn), 2),
            fmt(ratio(|h| h.idle_cpu_pct), 2),
        );
    }
}
