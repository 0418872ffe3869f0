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

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use common::{Args, Bare, BareEvent, Files, Server, Variant, bare_swarm, median_min_max, time_get};
use futures::StreamExt;
use libp2p::{Swarm, identify, swarm::SwarmEvent};

struct Run {
    accepts_per_s: f64,
    cpu_us_per_conn: f64,
    rss_kb_per_conn: f64,
    failed: usize,
    /// Median latency of `GET /network/stat` and `GET /metrics`, in ms, with every connection
    /// held (`peerage run` only).
    admin_ms: Option<(f64, f64)>,
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

fn main() {
    let Some(args) = Args::from_env() else {
        return;
    };
    let (pairs, dials, in_flight) = if args.quick() {
        (1, 50, 10)
    } else {
        (
            args.num("--pairs", 9),
            args.num("--dials", 1000),
            args.num("--in-flight", 50),
        )
    };
    let variants = args.variants(true);
    let files = Files::new(2000);

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
