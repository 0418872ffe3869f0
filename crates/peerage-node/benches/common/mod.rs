//! What the `accept` and `hold` benches share: the servers they run (a bare rust-libp2p swarm,
//! `peerage run`, js-libp2p) and how they read them (CPU and RSS from `/proc`, admin API
//! latency).

#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
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
pub(crate) struct Bare {
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
}

/// A bare swarm's behaviour: identify and ping, as a stock node.
pub(crate) fn bare_behaviour(key: &libp2p::identity::Keypair) -> Bare {
    Bare {
        identify: identify::Behaviour::new(identify::Config::new(
            "ipfs/0.1.0".into(),
            key.public(),
        )),
        ping: ping::Behaviour::new(ping::Config::new()),
    }
}

/// A bare swarm on TCP, Noise and Yamux.
pub(crate) fn bare_swarm() -> Swarm<Bare> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(bare_behaviour)
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build()
}

/// The bare server: listens on 127.0.0.1, prints `listening on ADDR` as `peerage run` does,
/// and serves until killed.
pub(crate) fn serve_bare() {
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
pub(crate) fn unlimited_limits() -> String {
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

/// `peerage run`'s limits file, configuration file (pool tables large enough for
/// `--connections N`, as Octez's validation requires) and `--connections`.
pub(crate) struct Files {
    limits: tempfile::NamedTempFile,
    config: tempfile::NamedTempFile,
    connections: usize,
}

impl Files {
    /// For `peerage run --connections connections`: bounds N/2, N and 3N/2, as Octez derives
    /// them.
    pub(crate) fn new(connections: usize) -> Files {
        let limits = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(limits.path(), unlimited_limits()).unwrap();
        let config = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::fs::write(
            config.path(),
            format!(
                "[pool]\nmax_known_points = [{hi}, {lo}]\nmax_known_peers = [{hi}, {lo}]\n",
                hi = connections * 4,
                lo = connections * 3,
            ),
        )
        .unwrap();
        Files {
            limits,
            config,
            connections,
        }
    }
}

/// A server in a child process.
pub(crate) struct Server {
    child: Child,
    /// Its TCP listen address, without `/p2p`.
    pub(crate) addr: Multiaddr,
    /// The admin API's address (`peerage run` only).
    pub(crate) admin: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts `variant` and waits until it prints its addresses.
    pub(crate) fn start(variant: &Variant, files: &Files) -> Server {
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
                    .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--connections"])
                    .arg(files.connections.to_string())
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

    /// Its process ID.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User + system CPU time so far.
    pub(crate) fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        Duration::from_millis(ticks * 1000 / clock_ticks())
    }

    /// The scheduler's figures for its thread named `name` (`/proc/PID/task/TID/schedstat`):
    /// nanoseconds run, nanoseconds waited runnable for a core, times run; `None` without such
    /// a thread.
    pub(crate) fn schedstat(&self, name: &str) -> Option<[u64; 3]> {
        let tid = self.thread_id(name)?;
        let stat =
            std::fs::read_to_string(format!("/proc/{}/task/{tid}/schedstat", self.child.id()))
                .ok()?;
        let mut fields = stat.split_whitespace().map(|f| f.parse().ok());
        Some([fields.next()??, fields.next()??, fields.next()??])
    }

    /// The ID of its thread named `name` (`/proc/PID/task/TID/comm`); `None` without one.
    pub(crate) fn thread_id(&self, name: &str) -> Option<u32> {
        let tasks = format!("/proc/{}/task", self.child.id());
        std::fs::read_dir(tasks).ok()?.find_map(|task| {
            let dir = task.ok()?.path();
            let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
            (comm.trim_end() == name).then_some(())?;
            dir.file_name()?.to_str()?.parse().ok()
        })
    }

    /// Resident memory, in bytes.
    pub(crate) fn rss(&self) -> u64 {
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

/// Which server.
pub(crate) enum Variant {
    Bare,
    Peerage(String, PathBuf),
    /// `interop/js/serve.mjs` under Node.js.
    Js,
}

impl Variant {
    /// Its name in the tables.
    pub(crate) fn name(&self) -> &str {
        match self {
            Variant::Bare => "bare swarm",
            Variant::Peerage(name, _) => name,
            Variant::Js => "js-libp2p",
        }
    }
}

/// The median time of `n` sequential `GET path` requests to `addr`, in ms.
pub(crate) fn time_get(addr: &str, path: &str, n: usize) -> f64 {
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

/// The median time of `n` sequential `GET path` requests to `addr` over one kept-alive
/// connection, in ms: the server's answer without the kernel's setting up and tearing down of a
/// TCP connection, which [`time_get`] times as well.
///
/// # Panics
///
/// If a response is not a 200 with a `content-length`.
pub(crate) fn time_get_kept(addr: &str, path: &str, n: usize) -> f64 {
    use std::io::{BufRead, BufReader, Read, Write};
    let stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let times: Vec<f64> = (0..n)
        .map(|_| {
            let start = Instant::now();
            writer.write_all(request.as_bytes()).unwrap();
            let mut line = String::new();
            let mut read_line = |line: &mut String| {
                line.clear();
                let n = reader.read_line(line).unwrap();
                assert!(n > 0, "GET {path}: the connection closed mid-response");
            };
            read_line(&mut line);
            assert!(
                line.starts_with("HTTP/1.1 200"),
                "GET {path} failed: {line}"
            );
            let mut length = None;
            loop {
                read_line(&mut line);
                if line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = Some(value.trim().parse::<usize>().unwrap());
                }
            }
            let mut body = vec![0; length.expect("a content-length")];
            reader.read_exact(&mut body).unwrap();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    median_min_max(times).0
}

/// A control for the admin API's timings: a thread of this process answering every request
/// on a listener of its own with a fixed 2-byte body, one connection at a time. Timed as the
/// node's `/network/stat` is, at 100 connections held and at the full count, it shows what the
/// machine itself adds to a loopback request as the held connections grow, whichever server
/// holds them. Its address.
pub(crate) fn control_server() -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_nodelay(true);
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            'requests: loop {
                let mut close = false;
                loop {
                    line.clear();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => break 'requests,
                        Ok(_) if line == "\r\n" => break,
                        Ok(_) => close |= line.eq_ignore_ascii_case("connection: close\r\n"),
                    }
                }
                let answered = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                    .is_ok();
                if close || !answered {
                    break;
                }
            }
        }
    });
    addr
}

/// The median, min and max of `v`.
pub(crate) fn median_min_max(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (median, v[0], v[n - 1])
}

/// A bench's command-line arguments.
pub(crate) struct Args(Vec<String>);

impl Args {
    /// The process's arguments; `None` once it has served as the bare server (`serve-bare`,
    /// how [`Server::start`] runs [`Variant::Bare`]).
    pub(crate) fn from_env() -> Option<Args> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if args.first().map(String::as_str) == Some("serve-bare") {
            serve_bare();
            return None;
        }
        Some(Args(args))
    }

    /// The value after `name`.
    pub(crate) fn flag(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.0.get(i + 1))
            .cloned()
    }

    /// The number after `name`, or `default`.
    pub(crate) fn num(&self, name: &str, default: usize) -> usize {
        self.flag(name).map_or(default, |v| v.parse().unwrap())
    }

    /// `cargo bench` passes `--bench`; `cargo test --benches` does not, and gets a small run
    /// that checks the harness works.
    pub(crate) fn quick(&self) -> bool {
        !self.0.iter().any(|a| a == "--bench")
    }

    /// The servers: the bare swarm (not with `--only peerage`) and `peerage run`; then
    /// js-libp2p with `--js`, if `js` allows it; then `--against`'s binary.
    pub(crate) fn variants(&self, js: bool) -> Vec<Variant> {
        let mut variants = vec![
            Variant::Bare,
            Variant::Peerage(
                "peerage run".into(),
                PathBuf::from(env!("CARGO_BIN_EXE_peerage")),
            ),
        ];
        if self.flag("--only").as_deref() == Some("peerage") {
            variants.remove(0);
        }
        if js && self.0.iter().any(|a| a == "--js") {
            variants.push(Variant::Js);
        }
        if let Some(path) = self.flag("--against") {
            variants.push(Variant::Peerage(
                format!("peerage run ({path})"),
                path.into(),
            ));
        }
        variants
    }
}
