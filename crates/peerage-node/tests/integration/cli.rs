//! `peerage run` as a user runs it: identity persistence, clean shutdown, bad input.

use crate::support::{LOOPBACK, Running, output, peerage};

/// `peerage run --data-dir DATA --listen LOOPBACK EXTRA...` to completion.
fn run_once(data: &std::path::Path, extra: &[&str]) -> (i32, String, String) {
    let data = data.to_str().unwrap();
    let mut args = vec!["run", "--data-dir", data, "--listen", LOOPBACK];
    args.extend_from_slice(extra);
    output(&args)
}

#[test]
fn restart_on_the_same_data_dir_keeps_the_peer_id() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let args = ["--data-dir", data, "--listen", LOOPBACK];

    let node = Running::start(&args);
    let first = node.line("peer id: ");
    let store = dir.path().join("peerstore.redb");
    assert_eq!(
        node.line("peerstore: "),
        format!("{} (0 peers)", store.display())
    );
    let listening = node.line("listening on ");
    assert!(listening.starts_with("/ip4/127.0.0.1/tcp/"), "{listening}");
    assert!(listening.ends_with(&format!("/p2p/{first}")), "{listening}");
    assert!(node.terminate().success(), "SIGTERM is a clean shutdown");
    let key = std::fs::read(dir.path().join("identity.key")).unwrap();

    let node = Running::start(&args);
    assert_eq!(node.line("peer id: "), first);
    assert!(node.terminate().success());
    assert_eq!(std::fs::read(dir.path().join("identity.key")).unwrap(), key);

    // Another data dir, another identity.
    let other = tempfile::tempdir().unwrap();
    let node = Running::start(&[
        "--data-dir",
        other.path().to_str().unwrap(),
        "--listen",
        LOOPBACK,
    ]);
    assert_ne!(node.line("peer id: "), first);
}

#[test]
fn malformed_multiaddrs_are_refused_by_name() {
    for (flag, value) in [
        ("--listen", "not-a-multiaddr"),
        ("--bootstrap", "/ip4/1.2.3.4/tcp/x"),
    ] {
        let (code, stdout, stderr) = output(&["run", flag, value]);
        assert_eq!(code, 2, "{stderr}");
        assert!(stdout.is_empty());
        let first = stderr.lines().next().unwrap();
        assert!(first.starts_with("error: invalid value"), "{first}");
        assert!(first.contains(value) && first.contains(flag), "{first}");
    }
}

#[test]
fn undialable_bootstrap_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run_once(dir.path(), &["--bootstrap", "/ip4/0.0.0.0/tcp/4001"]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim(),
        "error: invalid --bootstrap /ip4/0.0.0.0/tcp/4001: point /ip4/0.0.0.0/tcp/4001 is not \
         dialable: unspecified IP address or port 0"
    );
}

#[test]
fn corrupt_identity_key_is_reported_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("identity.key");
    std::fs::write(&key, b"garbage, not a key").unwrap();
    let (code, _, stderr) = run_once(dir.path(), &[]);
    assert_eq!(code, 1);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("error: corrupt identity key {}: ", key.display())),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&key).unwrap(), b"garbage, not a key");
}

#[test]
fn unusable_data_dir_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    // A data dir below a regular file cannot be created, even by root.
    let data = file.join("data");
    let (code, _, stderr) = run_once(&data, &[]);
    assert_eq!(code, 1);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("identity key") && stderr.contains(data.to_str().unwrap()),
        "{stderr}"
    );
    // The OS's reason once, not repeated by the error and its source.
    assert_eq!(stderr.matches("Not a directory").count(), 1, "{stderr}");
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}

#[test]
fn port_in_use_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("/ip4/127.0.0.1/tcp/{}", held.local_addr().unwrap().port());
    // A second --listen: the taken port must be refused even with a free one beside it.
    let (code, _, stderr) = run_once(dir.path(), &["--listen", &addr]);
    assert_eq!(code, 1);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("error: cannot listen on {addr}: ")),
        "{stderr}"
    );
}

#[test]
fn unordered_bounds_are_refused() {
    let (code, _, stderr) = output(&["run", "--connections", "10", "--min-connections", "20"]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim(),
        "error: invalid connection bounds: min 20, expected 10, max 15 (need min <= expected <= max)"
    );
}

/// Zero connections or a zero high water make a node that cannot keep a connection: refused,
/// by name.
#[test]
fn zero_connections_and_zero_high_water_are_refused() {
    for (args, expected) in [
        (
            &["--connections", "0"][..],
            "--connections must be at least 1",
        ),
        (
            &["--max-connections", "0", "--connections", "0"][..],
            "max 0",
        ),
        (&["--high-water", "0"][..], "invalid --high-water 0"),
    ] {
        let mut all = vec!["run"];
        all.extend_from_slice(args);
        let (code, _, stderr) = output(&all);
        assert_eq!(code, 1, "{args:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn ephemeral_keeps_the_node_state_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    // Files a stateful node would read at start (and refuse or set aside: none of them
    // parses) and write again at its stop. An ephemeral one does neither.
    let stale = ["peers.json", "addrbook.json", "limits.json"];
    for name in stale {
        std::fs::write(dir.path().join(name), format!("not a {name}")).unwrap();
    }
    let node = Running::start(&[
        "--data-dir",
        data,
        "--listen",
        LOOPBACK,
        "--ephemeral",
        "--admin",
        "127.0.0.1:0",
    ]);
    node.line("peer id: ");
    assert_eq!(node.line("peerstore: "), "in memory");
    assert_eq!(node.line("peers file: "), "none (ephemeral)");
    // Limits set at run time apply, and are not saved for a next start.
    let admin = node.line("admin API: http://");
    let limits = format!("http://{admin}/rcmgr/limits");
    let mut put = ureq::put(&limits)
        .send(r#"{"System": {"ConnsInbound": 123}}"#)
        .unwrap();
    let set: serde_json::Value =
        serde_json::from_str(&put.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(set["System"]["ConnsInbound"], 123, "{set}");
    let mut get = ureq::get(&limits).call().unwrap();
    let applied: serde_json::Value =
        serde_json::from_str(&get.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(applied["System"]["ConnsInbound"], 123, "{applied}");
    assert!(node.terminate().success());
    assert!(!dir.path().join("peerstore.redb").exists());
    for name in stale {
        assert_eq!(
            std::fs::read_to_string(dir.path().join(name)).unwrap(),
            format!("not a {name}"),
            "{name} was written"
        );
    }
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "addrbook.json",
            "identity.key",
            "limits.json",
            "lock",
            "peers.json"
        ],
        "nothing else in the data directory"
    );
}

#[test]
fn corrupt_peerstore_is_reported_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("peerstore.redb");
    let garbage = b"not a database".repeat(64);
    std::fs::write(&store, &garbage).unwrap();
    let (code, _, stderr) = run_once(dir.path(), &[]);
    assert_eq!(code, 1);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "error: peerstore storage: {}: not a peerstore database",
            store.display()
        )),
        "{stderr}"
    );
    assert!(
        std::fs::read(&store).unwrap() == garbage,
        "the file changed"
    );
}

#[test]
fn a_second_node_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let first = Running::start(&["--data-dir", data, "--listen", LOOPBACK]);
    first.line("peer id: ");
    first.line("peerstore: ");
    let (code, _, stderr) = run_once(dir.path(), &[]);
    assert_eq!(code, 1);
    let expected = format!(
        "the data directory {data} is in use by another running peerage node (lock file {data}/lock)"
    );
    assert!(stderr.contains(&expected), "{stderr}");
    // With the peerstore in memory too (no database to hold it).
    let (code, _, stderr) = run_once(dir.path(), &["--ephemeral"]);
    assert_eq!(code, 1);
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(first.terminate().success());
    // Released at shutdown.
    let again = Running::start(&["--data-dir", data, "--listen", LOOPBACK]);
    again.line("peer id: ");
    assert!(again.terminate().success());
}

#[test]
fn completions_and_the_man_page_are_printed() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, script, err) = output(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        for name in ["devnet", "sim", "ban", "log-format"] {
            assert!(script.contains(name), "{shell} completion lacks {name}");
        }
    }
    let (code, _, err) = output(&["completions", "tcsh"]);
    assert_ne!(code, 0);
    assert!(err.contains("tcsh"), "{err}");
    let (code, man, err) = output(&["man"]);
    assert_eq!(code, 0, "{err}");
    assert!(man.contains(".TH peerage 1"), "{man}");
    assert!(man.contains("devnet"), "subcommands are listed");
}

/// `--log-format json` (or `log_format = "json"` in the config file) writes one JSON object
/// per line on stderr; text logs carry no colour codes when stderr is not a terminal (here, a
/// pipe).
#[test]
fn logs_are_json_on_request_and_plain_in_a_pipe() {
    let json = (|l: &str| serde_json::from_str::<serde_json::Value>(l).is_ok()) as fn(&str) -> bool;
    let text = (|l: &str| !l.contains('\u{1b}') && l.contains("INFO")) as fn(&str) -> bool;
    for (format, file, check) in [
        (Some("json"), "", json),
        (Some("text"), "", text),
        (None, "log_format = \"json\"\n", json),
        (Some("text"), "log_format = \"json\"\n", text),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("peerage.toml");
        std::fs::write(&config, file).unwrap();
        let mut child = peerage()
            .args(["run", "--ephemeral", "--listen", "/ip4/127.0.0.1/tcp/0"])
            .args(["--data-dir", dir.path().to_str().unwrap()])
            .args(["--config", config.to_str().unwrap()])
            .args(format.iter().flat_map(|f| ["--log-format", f]))
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let first = std::io::BufRead::lines(std::io::BufReader::new(stderr))
            .next()
            .expect("a log line")
            .unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert!(check(&first), "{format:?} {file:?}: {first:?}");
    }
}
