//! `peerage sim`, through the binary as a user runs it.

use serde_json::Value;

use crate::support::output;

fn sim(args: &[&str]) -> Value {
    let mut all = vec!["sim"];
    all.extend_from_slice(args);
    all.push("--json");
    let (code, stdout, stderr) = output(&all);
    assert_eq!(code, 0, "stderr: {stderr}\nstdout: {stdout}");
    assert_eq!(stdout.lines().count(), 1, "exactly one line on stdout");
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn sim_prints_one_json_object_and_repeats_itself_exactly() {
    let args = ["--nodes", "120", "--duration", "4m", "--seed", "7"];
    let one = sim(&[&args[..], &["--threads", "1"]].concat());
    for key in [
        "nodes",
        "seed",
        "simulated_s",
        "wall_ms",
        "log_hash",
        "within_bounds",
    ] {
        assert!(!one[key].is_null(), "{key} in {one}");
    }
    assert_eq!(one["nodes"], 120);
    assert_eq!(one["seed"], 7);
    assert_eq!(one["simulated_s"], 240.0);
    assert_eq!(one["giant_component"], 1.0);
    for key in ["min", "p50", "max"] {
        assert!(one["connections"][key].is_u64(), "{one}");
    }
    for key in ["dials", "closes", "pex_requests"] {
        assert!(one["per_node_hour"][key].is_f64(), "{one}");
    }
    let two = sim(&[&args[..], &["--threads", "2"]].concat());
    assert_eq!(
        one["log_hash"], two["log_hash"],
        "the same run on 2 threads"
    );
    let other = sim(&["--nodes", "120", "--duration", "4m", "--seed", "8"]);
    assert_ne!(
        one["log_hash"], other["log_hash"],
        "another seed, another run"
    );
}

#[test]
fn sim_writes_its_report_and_log_and_names_a_bad_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    let log = dir.path().join("sim.log");
    let r = sim(&[
        "--scenario",
        "devnet",
        "--report",
        report.to_str().unwrap(),
        "--log",
        log.to_str().unwrap(),
    ]);
    assert_eq!(r["within_bounds"], 1.0);
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert!(html.contains("<svg"), "plots in the report");
    assert!(report.join("report.json").is_file());
    assert!(std::fs::metadata(&log).unwrap().len() > 1000);

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "nodes = 10\nnat = 0.5\n").unwrap();
    let (code, _, stderr) = output(&["sim", "--scenario", bad.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(stderr.contains("unknown field `nat`"), "{stderr}");
    let (code, _, stderr) = output(&["sim", "--scenario", "nope"]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("churn, static, devnet, devnet-stop"),
        "{stderr}"
    );
}

/// `--scenario eclipse --runs-dir DIR`: each seed's report lands in DIR as the one-seed JSON
/// `--seed N --json` prints, a second run reads it back (the same figures), and the flag is
/// refused outside the eclipse scenario.
#[test]
fn sim_eclipse_keeps_each_seed_in_its_runs_dir() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let args = [
        "--scenario",
        "eclipse",
        "--honest",
        "400",
        "--attacker-ips",
        "128",
        "--days",
        "0.05",
        "--attack-interval",
        "10s",
        "--seeds",
        "2",
        "--runs-dir",
        runs.to_str().unwrap(),
    ];
    let first = sim(&args);
    assert_eq!(first["seeds"], 2);
    let seed2: Value =
        serde_json::from_slice(&std::fs::read(runs.join("seed-2-book-on.json")).unwrap()).unwrap();
    assert_eq!(seed2["seeds"], 1);
    assert_eq!(seed2["runs"][0], first["runs"][1]);
    let alone = sim(&[&args[..10], &["--seed", "2"]].concat());
    assert_eq!(
        alone["runs"], seed2["runs"],
        "the file is what --seed 2 prints"
    );
    // Seed 2's file, edited: a run over the directory takes what it says.
    let mut edited = seed2.clone();
    edited["runs"][0]["dials"] = 987_654_321.into();
    std::fs::write(
        runs.join("seed-2-book-on.json"),
        serde_json::to_vec(&edited).unwrap(),
    )
    .unwrap();
    let again = sim(&args);
    assert_eq!(again["runs"][0], first["runs"][0]);
    assert_eq!(again["runs"][1], edited["runs"][0], "seed 2 read, not run");

    let (code, _, stderr) = output(&["sim", "--runs-dir", runs.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(stderr.contains("--runs-dir"), "{stderr}");
}
