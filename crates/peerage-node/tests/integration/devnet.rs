//! `peerage devnet`, through the binary as a user runs it.

use serde_json::Value;

use crate::support::output;

#[test]
fn devnet_converges_and_prints_one_json_object() {
    // A debug build converges in about 5 s alone; 60 s leaves room for a loaded CI machine.
    let (code, stdout, stderr) =
        output(&["devnet", "--nodes", "12", "--duration", "60s", "--json"]);
    assert_eq!(code, 0, "stderr: {stderr}\nstdout: {stdout}");
    assert_eq!(stdout.lines().count(), 1, "exactly one line on stdout");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["converged"], Value::Bool(true));
    assert_eq!(report["bounds"]["min"], 3);
    assert_eq!(report["bounds"]["expected"], 6);
    assert_eq!(report["bounds"]["max"], 9);
    let elapsed = report["elapsed_ms"].as_u64().unwrap();
    assert!(
        elapsed < 60_000,
        "converged within --duration: {elapsed} ms"
    );
    let nodes = report["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 12);
    let mut ids = std::collections::HashSet::new();
    for node in nodes {
        let connections = node["connections"].as_u64().unwrap();
        assert!((3..=9).contains(&connections), "{node}");
        // Node 0 was everyone's only bootstrap point: the others learned points by exchange.
        assert!(node["known_points"].as_u64().unwrap() >= 3, "{node}");
        assert!(
            node["known_peers"].as_u64().unwrap() >= connections,
            "{node}"
        );
        let listen = node["listen"].as_array().unwrap();
        assert!(
            listen[0]
                .as_str()
                .unwrap()
                .starts_with("/ip4/127.0.0.1/tcp/")
        );
        assert!(ids.insert(node["peer_id"].as_str().unwrap().to_owned()));
    }
}

#[test]
fn devnet_that_cannot_converge_exits_1() {
    // Two nodes can hold one connection each: a minimum of 2 is out of reach.
    let (code, stdout, _) = output(&[
        "devnet",
        "--nodes",
        "2",
        "--min-connections",
        "2",
        "--expected-connections",
        "2",
        "--max-connections",
        "3",
        "--duration",
        "3s",
        "--json",
    ]);
    assert_eq!(code, 1);
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["converged"], Value::Bool(false));
    for node in report["nodes"].as_array().unwrap() {
        assert_eq!(node["connections"], 1, "{node}");
    }
}

#[test]
fn devnet_table_has_a_verdict() {
    let (code, stdout, _) = output(&["devnet", "--nodes", "4", "--connections", "2"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.starts_with("node  peer id"), "{stdout}");
    assert_eq!(stdout.lines().filter(|l| l.contains("12D3KooW")).count(), 4);
    assert!(
        stdout.contains("converged: 4/4 nodes within bounds 1/2/3"),
        "{stdout}"
    );
}

/// Node 0, everyone's bootstrap point, with a high watermark below the demand on it: it trims
/// to its low watermark (grace 0: nothing is exempt) and its established count never passes
/// its hard cap (5 + 10 %, rounded up: 6) in any sample.
#[test]
fn a_hub_under_demand_trims_to_low_water_and_stays_under_its_hard_cap() {
    let (_, stdout, stderr) = output(&[
        "devnet",
        "--nodes",
        "12",
        "--hub-low-water",
        "3",
        "--hub-high-water",
        "5",
        "--grace-period",
        "0s",
        "--duration",
        "6s",
        "--json",
    ]);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let hub = &report["nodes"][0];
    assert_eq!(hub["hard_cap"], 6, "{hub}");
    let max = hub["max_established"].as_u64().unwrap();
    assert!(max <= 6, "sampled {max} established, hard cap 6: {hub}");
    assert!(hub["trims"].as_u64().unwrap() >= 1, "{hub}");
    // A trim runs once the count exceeds 5, i.e. at 6, and closes down to 3: 3 peers at least.
    assert!(hub["pruned_peers"].as_u64().unwrap() >= 3, "{hub}");
    // The other nodes keep the default watermarks (6/9, hard cap 10).
    for node in report["nodes"].as_array().unwrap()[1..].iter() {
        assert_eq!(node["hard_cap"], 10, "{node}");
        assert!(
            node["max_established"].as_u64().unwrap() <= 10 + 1,
            "{node}"
        );
    }
}

/// Issue 6's "done when": 50 nodes converge with every node within its bounds; then 15 are
/// stopped mid-run, and the survivors that lost peers recover to their bounds.
#[test]
fn fifty_nodes_converge_and_recover_after_15_stop() {
    let (code, stdout, stderr) = output(&[
        "devnet",
        "--nodes",
        "50",
        "--stop",
        "15",
        "--duration",
        "90s",
        "--json",
    ]);
    assert_eq!(code, 0, "stderr: {stderr}\nstdout: {stdout}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["converged"], Value::Bool(true), "{report}");
    let recovery = &report["recovery"];
    assert_eq!(recovery["stopped"], 15);
    assert!(recovery["lost_peers"].as_u64().unwrap() > 0, "{recovery}");
    assert!(recovery["recovered_ms"].as_u64().is_some(), "{recovery}");
    let nodes = report["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 35, "the survivors");
    for node in nodes {
        let connections = node["connections"].as_u64().unwrap();
        assert!((3..=9).contains(&connections), "{node}");
    }
}

/// `--stop N` must leave a node to recover: N at or above the node count is refused by name,
/// not silently reduced.
#[test]
fn stopping_every_node_is_refused() {
    let (code, _, stderr) = output(&["devnet", "--nodes", "4", "--stop", "4"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("--stop 4 leaves no node of 4 to recover: stop at most 3"),
        "{stderr}"
    );
}

/// `devnet --admin IP:PORT` serves each node's admin API (port 0: a port each), says where,
/// puts it in the table, and keeps the nodes up after the verdict so the client can look.
#[test]
fn a_devnet_with_admin_serves_every_nodes_api() {
    use std::io::{BufRead, BufReader};
    let mut child = crate::support::peerage()
        .args(["devnet", "--nodes", "4", "--admin", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read on a thread, kept to the end: the devnet writes to stderr after its verdict too.
    let stderr = crate::support::lines(child.stderr.take().unwrap());
    let mut admins: Vec<String> = Vec::new();
    while admins.len() < 4 {
        let line = stderr
            .recv_timeout(std::time::Duration::from_secs(20))
            .unwrap();
        if let Some(addr) = line.split("admin API http://").nth(1) {
            admins.push(addr.to_owned());
        }
    }
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut table = String::new();
    for line in stdout.lines().map_while(Result::ok) {
        table.push_str(&line);
        table.push('\n');
        if line.starts_with("converged") || line.starts_with("not converged") {
            break;
        }
    }
    assert!(
        table.contains("admin API") && table.contains(&admins[3]),
        "{table}"
    );
    // The verdict is out and the nodes still answer.
    let (code, status, err) = output(&["status", "--admin", &admins[1], "--json"]);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(code, 0, "{err}");
    let status: Value = serde_json::from_str(&status).unwrap();
    assert!(
        status["stat"]["connections"].as_u64().unwrap() >= 1,
        "{status}"
    );
}
