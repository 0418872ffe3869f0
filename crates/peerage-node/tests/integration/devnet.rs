//! `peerage devnet`, through the binary as a user runs it.

use serde_json::Value;

use crate::support::output;

#[test]
fn devnet_converges_and_prints_one_json_object() {
    let (code, stdout, stderr) = output(&["devnet", "--nodes", "12", "--json"]);
    assert_eq!(code, 0, "stderr: {stderr}\nstdout: {stdout}");
    assert_eq!(stdout.lines().count(), 1, "exactly one line on stdout");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["converged"], Value::Bool(true));
    assert_eq!(report["bounds"]["min"], 3);
    assert_eq!(report["bounds"]["expected"], 6);
    assert_eq!(report["bounds"]["max"], 9);
    let elapsed = report["elapsed_ms"].as_u64().unwrap();
    assert!(
        elapsed < 30_000,
        "converged before the 30 s default: {elapsed} ms"
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
