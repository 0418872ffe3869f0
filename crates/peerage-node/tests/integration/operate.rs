//! Operating a node end to end: `peerage run --admin` as a process, driven with the CLI client
//! (ban a peer and see it disconnected and refused, trust a point and see its peer protected,
//! change the limits and see them applied) and scraped on `/metrics`.

use std::time::Duration;

use serde_json::Value;

use crate::support::{LOOPBACK, Running, output, wait_for};

/// A node: its process, peer ID, listen address, admin address and metrics address.
fn node(
    dir: &tempfile::TempDir,
    bootstrap: Option<&str>,
) -> (Running, String, String, String, String) {
    node_with(dir, bootstrap, &[])
}

fn node_with(
    dir: &tempfile::TempDir,
    bootstrap: Option<&str>,
    extra: &[&str],
) -> (Running, String, String, String, String) {
    let mut args = vec![
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--listen",
        LOOPBACK,
        "--admin",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--min-connections",
        "1",
        "--expected-connections",
        "2",
        "--max-connections",
        "4",
    ];
    if let Some(b) = bootstrap {
        args.extend(["--bootstrap", b]);
    }
    args.extend(extra);
    let node = Running::start(&args);
    let id = node.line("peer id: ");
    let addr = node.line("listening on ");
    let admin = node.line("admin API: http://");
    let metrics = node.line("metrics: http://");
    (node, id, addr, admin, metrics)
}

/// `peerage ARGS --admin ADMIN --json`: the JSON, or the error on stderr.
fn try_cli(admin: &str, args: &[&str]) -> Result<Value, String> {
    let mut all = args.to_vec();
    all.extend(["--admin", admin, "--json"]);
    let (code, stdout, stderr) = output(&all);
    if code != 0 {
        return Err(stderr);
    }
    Ok(serde_json::from_str(&stdout).unwrap_or(Value::Null))
}

/// As [`try_cli`], which must succeed.
fn cli(admin: &str, args: &[&str]) -> Value {
    try_cli(admin, args).unwrap_or_else(|e| panic!("peerage {args:?}: {e}"))
}

#[test]
fn a_node_is_operated_with_the_cli_and_scraped() {
    let (da, db, dc) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (_a, _a_id, a_addr, admin, metrics) = node(&da, None);
    let (_b, b_id, _, _, _) = node(&db, Some(&a_addr));
    let (_c, c_id, c_addr, _, _) = node(&dc, Some(&a_addr));
    // Unknown (404) until it has connected.
    let running = |id: &str| try_cli(&admin, &["peer", id]).is_ok_and(|p| p["state"] == "running");
    wait_for("B and C connect to A", || running(&b_id) && running(&c_id));
    let status = cli(&admin, &["status"]);
    assert!(
        status["stat"]["connections"].as_u64().unwrap() >= 2,
        "{status}"
    );

    // Ban B: disconnected, and refused when it comes back (its maintenance keeps trying).
    let banned = cli(&admin, &["ban", &b_id]);
    assert_eq!(banned["banned"], Value::Bool(true));
    wait_for("B disconnected", || !running(&b_id));
    std::thread::sleep(Duration::from_secs(2));
    assert!(!running(&b_id), "B is refused");
    let peers = cli(&admin, &["peers", "--state", "running"]);
    assert!(
        peers
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["peer_id"] != b_id.as_str())
    );

    // Trust C's point: C is protected in the connection manager.
    let point = c_addr.split("/p2p/").next().unwrap();
    let trusted = cli(&admin, &["trust", point]);
    assert_eq!(trusted["trusted"], Value::Bool(true), "{trusted}");
    let peer = cli(&admin, &["peer", &c_id]);
    assert_eq!(peer["protected"], Value::Bool(true), "{peer}");

    // The human tables.
    let (code, table, _) = output(&["points", "--admin", &admin]);
    assert_eq!(code, 0);
    assert!(table.starts_with("POINT"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(point) && l.contains("true")),
        "{table}"
    );
    let (code, table, _) = output(&["peers", "--state", "running", "--admin", &admin]);
    assert_eq!(code, 0);
    assert!(table.starts_with("PEER ID"), "{table}");
    assert!(table.contains(&c_id) && !table.contains(&b_id), "{table}");
    // C's log, as Octez's events.
    let (code, table, _) = output(&["log", &c_id, "--admin", &admin]);
    assert_eq!(code, 0);
    assert!(
        table.starts_with("AGO S") && table.contains("connection_established"),
        "{table}"
    );
    // `ipfs swarm peers -v` and `ipfs swarm resources`, ours.
    let (code, table, _) = output(&["connections", "--admin", &admin]);
    assert_eq!(code, 0);
    assert!(
        table.starts_with("PEER ID") && table.contains("REMOTE"),
        "{table}"
    );
    let line = table
        .lines()
        .find(|l| l.contains(&c_id))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(line.contains("/ip4/127.0.0.1/"), "{table}");
    let (code, table, _) = output(&["resources", "--admin", &admin]);
    assert_eq!(code, 0);
    assert!(
        table.starts_with("SCOPE") && table.contains("CONNS IN"),
        "{table}"
    );
    let system = table
        .lines()
        .find(|l| l.starts_with("system"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        system
            .split_whitespace()
            .all(|cell| cell == "system" || cell.contains('/')),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&format!("peer:{c_id}"))),
        "{table}"
    );

    // Change the limits: applied, and a bad file changes nothing.
    let file = dc.path().join("set.json");
    std::fs::write(&file, r#"{"System": {"ConnsInbound": 123}}"#).unwrap();
    let limits = cli(&admin, &["limits", "set", file.to_str().unwrap()]);
    assert_eq!(limits["System"]["ConnsInbound"], 123);
    std::fs::write(&file, r#"{"System": {"ConnsInbound": "many"}}"#).unwrap();
    let (code, _, stderr) = output(&["limits", "set", file.to_str().unwrap(), "--admin", &admin]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("400") && stderr.contains("System.ConnsInbound"),
        "{stderr}"
    );
    assert_eq!(cli(&admin, &["limits"])["System"]["ConnsInbound"], 123);

    // Metrics, on the admin address and on the metrics-only one (which serves nothing else).
    for url in [
        format!("http://{admin}/metrics"),
        format!("http://{metrics}"),
    ] {
        let mut response = ureq::get(&url).call().unwrap();
        let text = response.body_mut().read_to_string().unwrap();
        for name in [
            "libp2p_rcmgr_connections",
            "libp2p_connmgr_connections",
            "peerage_pool_peers",
            "peerage_maintenance_cycles",
            "libp2p_swarm_connections_established",
        ] {
            assert!(text.contains(name), "{name} missing from {url}");
        }
        // Identify's and ping's, recorded inside the behaviour: the node identified and pinged
        // its peers.
        for sample in [
            "libp2p_identify_received_total",
            "libp2p_ping_rtt_seconds_count",
        ] {
            let value: f64 = text
                .lines()
                .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or_else(|| panic!("{sample} missing from {url}"));
            assert!(value >= 1.0, "{sample} {value} at {url}");
        }
        // The process's own, as every Prometheus client library names them, and the version.
        for (sample, min) in [
            ("process_cpu_seconds_total", 0.0),
            ("process_resident_memory_bytes", 1e6),
            ("process_open_fds", 3.0),
            ("process_max_fds", 3.0),
            ("process_start_time_seconds", 1.7e9),
        ] {
            let value: f64 = text
                .lines()
                .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or_else(|| panic!("{sample} missing from {url}"));
            assert!(value >= min, "{sample} {value} at {url}");
        }
        let version = format!(
            "peerage_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.contains(&version), "{version} missing from {url}");
    }
    let metrics_host = metrics.trim_end_matches("/metrics");
    let refused = ureq::get(&format!("http://{metrics_host}/network/self")).call();
    assert!(
        matches!(refused, Err(ureq::Error::StatusCode(404))),
        "{refused:?}"
    );
}

#[test]
fn the_cli_says_when_no_node_is_listening() {
    let (code, _, stderr) = output(&["status", "--admin", "127.0.0.1:9"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("no node is listening on http://127.0.0.1:9"),
        "{stderr}"
    );
    assert!(
        stderr.contains("peerage run --admin 127.0.0.1:9"),
        "{stderr}"
    );
}

#[test]
fn a_public_admin_address_needs_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = output(&[
        "run",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--listen",
        LOOPBACK,
        "--admin",
        "0.0.0.0:0",
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("--admin 0.0.0.0:0 is not a loopback address: it needs --admin-token"),
        "{stderr}"
    );
}

/// `ban IP:PORT` bans the IP and the peers connected from it and says which; `open` undoes
/// both, so the peers come back by themselves (an unban that left them banned kept the node
/// at 0 connections until each peer was opened by hand).
#[test]
fn banning_and_opening_an_ip_are_symmetric_and_say_what_they_changed() {
    let (da, db, dc) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    // B and C in private mode: they dial only A (their bootstrap point) and admit only it. Else
    // C, told of B by A's peer exchange, may dial B once A bans them both, and then each holds
    // the other and has no need to come back to A (seen on a loaded machine).
    let private = ["--private-mode"];
    let (_a, _, a_addr, admin, _) = node(&da, None);
    let (_b, b_id, b_addr, _, _) = node_with(&db, Some(&a_addr), &private);
    let (_c, c_id, _, _, _) = node_with(&dc, Some(&a_addr), &private);
    let running = |id: &str| try_cli(&admin, &["peer", id]).is_ok_and(|p| p["state"] == "running");
    wait_for("B and C connect to A", || running(&b_id) && running(&c_id));

    // Every node listens on 127.0.0.1: banning B's point bans the IP, so B and C both go.
    let point = b_addr.split("/p2p/").next().unwrap();
    let banned = cli(&admin, &["ban", point]);
    assert_eq!(banned["banned"], Value::Bool(true), "{banned}");
    let mut listed: Vec<&str> = banned["peers_changed"]["banned"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    listed.sort_unstable();
    let mut both = vec![b_id.as_str(), c_id.as_str()];
    both.sort_unstable();
    assert_eq!(listed, both, "{banned}");
    wait_for("B and C disconnected", || {
        !running(&b_id) && !running(&c_id)
    });
    assert_eq!(cli(&admin, &["peer", &b_id])["banned"], Value::Bool(true));

    // The human output of `open` names the peers it unbanned.
    let (code, text, err) = output(&["open", point, "--admin", &admin]);
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("banned false"), "{text}");
    let unbanned = text
        .lines()
        .find(|l| l.contains("unbanned with its IP"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        unbanned.contains(&b_id) && unbanned.contains(&c_id),
        "{text}"
    );
    assert_eq!(cli(&admin, &["peer", &b_id])["banned"], Value::Bool(false));
    wait_for("B and C back, by themselves", || {
        running(&b_id) && running(&c_id)
    });
}

/// `connect` waits for the connection and says whom it reached; a dial that fails exits
/// non-zero with libp2p's reason; `--no-wait` only starts the dial.
#[test]
fn connect_waits_and_reports_the_outcome() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_a, _, _, admin, _) = node(&da, None);
    let (_b, b_id, b_addr, _, _) = node(&db, None);
    let point = b_addr.split("/p2p/").next().unwrap();
    let (code, out, err) = output(&["connect", point, "--admin", &admin]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("connected to {b_id} at {point}")),
        "{out}"
    );

    // Nothing listens on a port just freed.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dead = dead.to_string();
    let (code, _, err) = output(&["connect", &dead, "--admin", &admin]);
    assert_ne!(code, 0);
    assert!(err.contains("could not connect to"), "{err}");
    assert!(err.to_lowercase().contains("refused"), "{err}");

    let (code, out, err) = output(&["connect", &dead, "--no-wait", "--admin", &admin]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("dialing"), "{out}");
}

/// `limits set` is checked as startup checks the limits, and kept: the node starts again with
/// them (a limits file given to `run` would win).
#[test]
fn limits_set_at_run_time_are_checked_and_kept_across_a_restart() {
    let (da, files) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, _, _, admin, _) = node(&da, None);
    let file = files.path().join("set.json");
    std::fs::write(&file, r#"{"System": {"ConnsInbound": 123}}"#).unwrap();
    let set = cli(&admin, &["limits", "set", file.to_str().unwrap()]);
    assert_eq!(set["System"]["ConnsInbound"], 123);
    // Startup refuses a system connection limit below the connection manager's high water
    // (go-libp2p GH#1640); so does `limits set`, and nothing changes.
    std::fs::write(&file, r#"{"System": {"Conns": 1}}"#).unwrap();
    let (code, _, stderr) = output(&["limits", "set", file.to_str().unwrap(), "--admin", &admin]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("400") && stderr.contains("high_water"),
        "{stderr}"
    );
    assert_ne!(cli(&admin, &["limits"])["System"]["Conns"], 1);

    assert!(a.terminate().success());
    let (_a, _, _, admin, _) = node(&da, None);
    let limits = cli(&admin, &["limits"]);
    assert_eq!(limits["System"]["ConnsInbound"], 123, "{limits}");
}

/// A bootstrap point given by host name (`/dns4/localhost/...`) is resolved and dialed.
#[test]
fn a_dns_bootstrap_point_is_resolved_and_dialed() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_a, a_id, a_addr, admin, _) = node(&da, None);
    let by_name = a_addr.replace("/ip4/127.0.0.1/", "/dns4/localhost/");
    assert!(by_name.starts_with("/dns4/localhost/tcp/"), "{by_name}");
    let (_b, b_id, _, b_admin, _) = node(&db, Some(&by_name));
    let running = |admin: &str, id: &str| {
        try_cli(admin, &["peer", id]).is_ok_and(|p| p["state"] == "running")
    };
    wait_for("B reaches A by name", || {
        running(&admin, &b_id) && running(&b_admin, &a_id)
    });
}

/// A DNS stub on 127.0.0.1 (UDP) for the test's zone: a TXT query for `_dnsaddr.{host}` gets
/// `records`, anything else NXDOMAIN. Its address, and how many `_dnsaddr` queries it
/// answered; it serves on a thread until the test process ends.
fn dns_stub(
    host: &str,
    records: Vec<String>,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use hickory_proto::{
        op::{Message, ResponseCode},
        rr::{Name, RData, Record, RecordType, rdata::TXT},
    };
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = asked.clone();
    let name = Name::from_ascii(format!("_dnsaddr.{host}.")).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut answer = Message::response(query.metadata.id, query.metadata.op_code);
            answer.metadata.recursion_desired = query.metadata.recursion_desired;
            answer.metadata.recursion_available = true;
            answer.queries = query.queries.clone();
            for q in &query.queries {
                if q.query_type() == RecordType::TXT && q.name() == &name {
                    count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    for r in &records {
                        answer.add_answer(Record::from_rdata(
                            q.name().clone(),
                            60,
                            RData::TXT(TXT::new(vec![r.clone()])),
                        ));
                    }
                }
            }
            if answer.answers.is_empty() {
                answer.metadata.response_code = ResponseCode::NXDomain;
            }
            let _ = socket.send_to(&answer.to_vec().unwrap(), from);
        }
    });
    (addr, asked)
}

/// A `/dnsaddr` bootstrap point (the IPFS bootstrap list's form) is resolved through the name
/// server `--dns-server` names, here a stub the test runs, and dialed: the stub's TXT record
/// `dnsaddr=/ip4/127.0.0.1/tcp/PORT/p2p/A` is the only way B can learn where A is.
#[test]
fn a_dnsaddr_bootstrap_point_is_resolved_through_the_given_name_server() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_a, a_id, a_addr, admin, _) = node(&da, None);
    assert!(a_addr.ends_with(&format!("/p2p/{a_id}")), "{a_addr}");
    let (stub, asked) = dns_stub("boot.peerage.test", vec![format!("dnsaddr={a_addr}")]);
    let point = format!("/dnsaddr/boot.peerage.test/p2p/{a_id}");
    let (_b, b_id, _, b_admin, _) =
        node_with(&db, Some(&point), &["--dns-server", &stub.to_string()]);
    let running = |admin: &str, id: &str| {
        try_cli(admin, &["peer", id]).is_ok_and(|p| p["state"] == "running")
    };
    wait_for("B reaches A through /dnsaddr", || {
        running(&admin, &b_id) && running(&b_admin, &a_id)
    });
    assert!(asked.load(std::sync::atomic::Ordering::Relaxed) >= 1);
}

/// `peerage log --follow` prints the node's events as they happen (`GET /network/log`, server-
/// sent events): a peer that connects shows up, and a filter on another peer hides it.
#[test]
fn the_live_log_shows_a_peer_connecting() {
    use std::sync::mpsc::RecvTimeoutError;
    use std::time::Instant;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_a, _, a_addr, admin, _) = node(&da, None);
    let follow = |extra: &[&str]| {
        let mut child = crate::support::peerage()
            .args(["log", "--follow", "--json", "--admin", &admin])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let rx = crate::support::lines(child.stdout.take().unwrap());
        let err = crate::support::lines(child.stderr.take().unwrap());
        (child, rx, err)
    };
    // A follower whose stream ended fails the test at once, with what it said.
    let ended = |child: &mut std::process::Child, err: &std::sync::mpsc::Receiver<String>| {
        let status = child.wait().unwrap();
        let said: Vec<String> = err.try_iter().collect();
        panic!("the follower exited ({status}): {said:?}");
    };
    let (mut all, all_lines, all_err) = follow(&[]);
    let other = libp2p::PeerId::random().to_string();
    // Its stderr reader kept: dropped, a line there could end the follower with EPIPE, and the
    // filter check below would pass on nothing.
    let (mut filtered, filtered_lines, _filtered_err) = follow(&[&other]);
    // The unfiltered follower is subscribed before B starts: a dial A fails (port 1, refused)
    // shows up in it. A fixed wait was too short on a loaded machine. (Were the filtered one
    // late, it would only see fewer lines.)
    let started = Instant::now();
    let mut subscribed = false;
    let mut dials = Vec::new();
    while !subscribed {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the follower never subscribed; the dials said {dials:?}"
        );
        let dialed = crate::support::peerage()
            .args([
                "connect",
                "/ip4/127.0.0.1/tcp/1",
                "--no-wait",
                "--admin",
                &admin,
            ])
            .output()
            .unwrap();
        dials.push(format!(
            "{} after {:.1} s: {}",
            dialed.status,
            started.elapsed().as_secs_f64(),
            String::from_utf8_lossy(&dialed.stderr).trim()
        ));
        while started.elapsed() < Duration::from_secs(30) {
            match all_lines.recv_timeout(Duration::from_millis(500)) {
                Ok(line) => subscribed |= line.contains("dial_failed"),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => ended(&mut all, &all_err),
            }
        }
    }
    let (_b, b_id, _, _, _) = node(&db, Some(&a_addr));
    let started = Instant::now();
    let mut seen = Vec::new();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "B's connection never showed up in the live log; it showed {seen:?}"
        );
        match all_lines.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("{line}"));
                if v["event"] == "connection_established" && v["peer"] == b_id.as_str() {
                    break;
                }
                seen.push(line);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => ended(&mut all, &all_err),
        }
    }
    assert!(
        filtered_lines.try_iter().all(|l| l.contains(&other)),
        "the filter on another peer let B's lines through"
    );
    for child in [&mut all, &mut filtered] {
        let _ = child.kill();
        let _ = child.wait();
    }
}
