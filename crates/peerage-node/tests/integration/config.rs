//! `--config FILE` (TOML): the effective configuration, flags over the file, and bad files
//! refused with the key and the reason.

use crate::support::{Running, output};

/// The TOML `peerage ARGS` prints (a `config show`), which must succeed.
fn shown_toml(args: &[&str]) -> toml::Value {
    let (code, stdout, stderr) = output(args);
    assert_eq!(code, 0, "{stderr}");
    toml::from_str(&stdout).unwrap()
}

fn write(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("peerage.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn config_show_merges_defaults_file_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        r#"
data_dir = "data"
listen = ["/ip4/127.0.0.1/tcp/0"]
private_mode = true
peers_file_period = "5s"
log = "warn"
log_format = "json"

[connections]
connections = 10
grace_period = "30s"

[pool]
max_known_points = [100, 80]
peer_greylist_size = 7

[addrbook]
stale_after = "3days"
"#,
    );
    let shown = shown_toml(&[
        "config",
        "show",
        "--config",
        &file,
        "--max-connections",
        "20",
    ]);
    assert_eq!(
        shown["data_dir"].as_str().unwrap(),
        dir.path().join("data").to_str().unwrap(),
        "relative to the file"
    );
    assert_eq!(shown["private_mode"].as_bool(), Some(true));
    assert_eq!(shown["peers_file_period"].as_str(), Some("5s"));
    assert_eq!(shown["log_format"].as_str(), Some("json"));
    let c = &shown["connections"];
    // --connections 10 from the file (5/10/15), the flag's max 20 over it.
    assert_eq!(
        (
            c["min"].as_integer(),
            c["expected"].as_integer(),
            c["max"].as_integer()
        ),
        (Some(5), Some(10), Some(20))
    );
    assert_eq!(c["high_water"].as_integer(), Some(20));
    assert_eq!(c["grace_period"].as_str(), Some("30s"));
    let p = &shown["pool"];
    assert_eq!(p["max_known_points"].as_array().unwrap().len(), 2);
    assert_eq!(p["max_known_points"][1].as_integer(), Some(80));
    assert_eq!(
        p["max_known_peers"][0].as_integer(),
        Some(400),
        "Octez's default"
    );
    assert_eq!(p["peer_greylist_size"].as_integer(), Some(7));
    assert_eq!(p["ip_greylist_cleanup_delay"].as_str(), Some("1day"));
    assert_eq!(shown["addrbook"]["stale_after"].as_str(), Some("3days"));
    // No name server given: the system's (an empty list).
    assert_eq!(shown["dns_servers"].as_array().map(Vec::len), Some(0));
    // And the file alone checks.
    let (code, stdout, _) = output(&["config", "check", &file]);
    assert_eq!((code, stdout.trim()), (0, format!("ok: {file}").as_str()));
    // The file's name servers (port 53 when none is given), and the flags' over them.
    let dns = write(&dir, "dns_servers = [\"9.9.9.9\", \"127.0.0.1:5353\"]\n");
    let shown = shown_toml(&["config", "show", "--config", &dns]);
    assert_eq!(
        shown["dns_servers"],
        toml::Value::Array(vec!["9.9.9.9:53".into(), "127.0.0.1:5353".into()])
    );
    let shown = shown_toml(&["config", "show", "--config", &dns, "--dns-server", "::1"]);
    assert_eq!(
        shown["dns_servers"],
        toml::Value::Array(vec!["[::1]:53".into()])
    );
    // The global `--log-format` over the file's `log_format`; `text` without either.
    let shown = shown_toml(&["config", "show", "--config", &file, "--log-format", "text"]);
    assert_eq!(shown["log_format"].as_str(), Some("text"));
    let shown = shown_toml(&["--log-format", "json", "config", "show", "--config", &dns]);
    assert_eq!(shown["log_format"].as_str(), Some("json"));
    let shown = shown_toml(&["config", "show", "--config", &dns]);
    assert_eq!(shown["log_format"].as_str(), Some("text"));
}

#[test]
fn bad_config_files_name_the_key_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("colour = \"red\"\n", "unknown field `colour`"),
        ("[connections]\nmax = \"many\"\n", "max"),
        ("[pool]\nsize = 3\n", "unknown field `size`"),
        (
            "peers_file_period = \"soon\"\n",
            "peers_file_period: \"soon\" is not a duration",
        ),
        (
            "listen = [\"nowhere\"]\n",
            "listen: \"nowhere\" is not a multiaddr",
        ),
        (
            "[connections]\nmin = 9\nexpected = 3\n",
            "invalid connection bounds",
        ),
        (
            "[pool]\nmax_known_points = [400, 30]\n",
            "pool.max_known_points: the low bound 30 is below the max connections 100",
        ),
        (
            "[pool]\nmax_known_peers = [10, 300]\n",
            "pool.max_known_peers: the low bound 300 is above the high bound 10",
        ),
        ("log = \"info,[\"\n", "log:"),
        (
            "log_format = \"xml\"\n",
            "unknown variant `xml`, expected `text` or `json`",
        ),
        // tracing-subscriber 0.3.23 panicked on this one (found by fuzzing).
        (
            "log = \"i  , [ķ{\"\n",
            "log: \"i  , [ķ{\": only ASCII characters are accepted",
        ),
        (
            "dns_servers = [\"resolver.example\"]\n",
            "dns_servers: \"resolver.example\" is neither IP nor IP:PORT",
        ),
        // What `run` refuses, `config check` refuses too.
        (
            "admin = \"0.0.0.0:8732\"\n",
            "--admin 0.0.0.0:8732 is not a loopback address: it needs --admin-token",
        ),
        ("limits = \"missing.json\"\n", "reading the limits file"),
        (
            "[addrbook]\nstale_after = \"a while\"\n",
            "addrbook.stale_after: \"a while\" is not a duration",
        ),
        (
            "[addrbook]\nstale_after = \"0s\"\n",
            "addrbook.stale_after: must be positive",
        ),
        ("data_dir = ", "TOML parse error at line 1"),
    ];
    for (text, expected) in cases {
        let file = write(&dir, text);
        let (code, stdout, stderr) = output(&["config", "check", &file]);
        assert_eq!(code, 1, "{text:?} was accepted: {stdout}");
        assert!(stderr.contains(expected), "{text:?}: {stderr}");
        assert!(stderr.contains("error:"), "{stderr}");
    }
    let (code, _, stderr) = output(&["config", "check", "/nonexistent/peerage.toml"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("reading the config file /nonexistent/peerage.toml"),
        "{stderr}"
    );
}

#[test]
fn run_takes_its_settings_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        r#"
data_dir = "data"
listen = ["/ip4/127.0.0.1/tcp/0"]
admin = "127.0.0.1:0"
"#,
    );
    let node = Running::start(&["--config", &file]);
    node.line("peer id: ");
    assert!(
        node.line("peerstore: ")
            .starts_with(dir.path().join("data").to_str().unwrap())
    );
    assert!(
        node.line("listening on ")
            .starts_with("/ip4/127.0.0.1/tcp/")
    );
    assert!(
        node.line("admin API: http://127.0.0.1:")
            .parse::<u16>()
            .is_ok()
    );
    assert!(node.terminate().success());
}

/// `config init FILE` writes every default, which `config check` accepts; it never overwrites.
#[test]
fn config_init_writes_the_defaults_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("peerage.toml");
    let path = file.to_str().unwrap();
    let (code, stdout, stderr) = output(&["config", "init", path]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), format!("wrote {path}"));
    let text = std::fs::read_to_string(&file).unwrap();
    let parsed: toml::Table = text.parse().unwrap();
    assert_eq!(parsed["connections"]["expected"].as_integer(), Some(50));
    let (code, stdout, _) = output(&["config", "check", path]);
    assert_eq!((code, stdout.trim()), (0, format!("ok: {path}").as_str()));
    std::fs::write(&file, "log = \"debug\"\n").unwrap();
    let (code, _, stderr) = output(&["config", "init", path]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!("cannot create {path}")),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "log = \"debug\"\n");
}

/// `[resource_manager]`, Kubo's simple knobs: the limits are scaled to the memory and file
/// descriptors given, the allowlist is loaded, `enabled = false` lifts every limit; bad values
/// are refused by key.
#[test]
fn the_resource_managers_simple_knobs_apply() {
    let get = |admin: &str, path: &str| -> serde_json::Value {
        let mut r = ureq::get(&format!("http://{admin}{path}")).call().unwrap();
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        r#"
data_dir = "data"
listen = ["/ip4/127.0.0.1/tcp/0"]
admin = "127.0.0.1:0"
[resource_manager]
max_memory = "256MiB"
max_file_descriptors = 512
allowlist = ["/ip4/10.0.0.0/ipcidr/8"]
"#,
    );
    let node = Running::start(&["--config", &file]);
    let admin = node.line("admin API: http://");
    let limits = get(&admin, "/rcmgr/limits");
    let expected: serde_json::Value =
        serde_json::from_str(&peerage::rcmgr::scale_to(Some(256 << 20), Some(512)).to_json())
            .unwrap();
    for key in ["Memory", "FD", "Conns"] {
        assert_eq!(
            limits["System"][key], expected["System"][key],
            "{key}: {limits}"
        );
    }
    assert_eq!(get(&admin, "/rcmgr/stat")["allowlist_entries"], 1);
    assert!(node.terminate().success());

    let file = write(
        &dir,
        "data_dir = \"data\"\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\nadmin = \"127.0.0.1:0\"\n[resource_manager]\nenabled = false\n",
    );
    let node = Running::start(&["--config", &file]);
    let admin = node.line("admin API: http://");
    let conns = &get(&admin, "/rcmgr/limits")["System"]["Conns"];
    assert_eq!(conns, "unlimited", "{conns}");
    assert!(node.terminate().success());

    for (text, expected) in [
        (
            "[resource_manager]\nmax_memory = \"lots\"\n",
            "resource_manager.max_memory: \"lots\" is not a size",
        ),
        (
            "[resource_manager]\nmax_memory = \"2PiB\"\n",
            "resource_manager.max_memory: \"2PiB\" has an unknown unit",
        ),
        (
            "[resource_manager]\nmax_file_descriptors = 0\n",
            "resource_manager.max_file_descriptors: must be positive",
        ),
        (
            "[resource_manager]\nallowlist = [\"nowhere\"]\n",
            "resource_manager.allowlist: \"nowhere\" is not a multiaddr",
        ),
    ] {
        let file = write(&dir, text);
        let (code, _, stderr) = output(&["config", "check", &file]);
        assert_eq!(code, 1, "{text:?}");
        assert!(stderr.contains(expected), "{text:?}: {stderr}");
    }
}

/// `[resource_manager] loopback_exempt = false` puts loopback under the per-IP limits (8
/// connections of one IPv4 address, go-libp2p's `defaultMaxConcurrentConns`): a ninth socket
/// from 127.0.0.1 is closed at once. By default loopback is exempt and the ninth stays open
/// through its handshake timeout's first seconds.
#[test]
fn loopback_exempt_false_puts_loopback_under_the_per_ip_limit() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    for exempt in [false, true] {
        // A data directory of its own (relative to the file): not the user's.
        let mut text = format!(
            "data_dir = \"data-{exempt}\"\nephemeral = true\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\n"
        );
        if !exempt {
            text.push_str("[resource_manager]\nloopback_exempt = false\n");
        }
        let file = write(&dir, &text);
        let (code, shown, _) = output(&["config", "show", "--config", &file]);
        assert_eq!(code, 0);
        assert!(
            shown.contains(&format!("loopback_exempt = {exempt}")),
            "{shown}"
        );
        let node = Running::start(&["--config", &file]);
        let listening = node.line("listening on /ip4/127.0.0.1/tcp/");
        let port = listening
            .trim_start_matches("listening on /ip4/127.0.0.1/tcp/")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let target = format!("127.0.0.1:{port}");
        let held: Vec<_> = (0..8)
            .map(|_| std::net::TcpStream::connect(&target).unwrap())
            .collect();
        // The eight are accepted (and counted) before the ninth connects.
        std::thread::sleep(std::time::Duration::from_millis(500));
        let mut ninth = std::net::TcpStream::connect(&target).unwrap();
        ninth
            .set_read_timeout(Some(std::time::Duration::from_secs(3)))
            .unwrap();
        let read = ninth.read(&mut [0; 64]);
        if exempt {
            let e = read.expect_err("the ninth loopback socket stays open when loopback is exempt");
            assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "{e}"
            );
        } else {
            assert!(
                matches!(read, Ok(0))
                    || read.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
                "the ninth loopback socket is closed under the per-IP limit"
            );
        }
        drop(held);
        assert!(node.terminate().success());
    }
}
