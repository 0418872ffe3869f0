//! The CLI client: `peerage status`, `peers`, `ban`... drive a running node through its admin
//! API ([`crate::admin`]). Human tables by default, the API's JSON with `--json`.

use std::{fmt::Write, net::SocketAddr, path::PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::Value;

/// The admin API's address and token, and the output format; options of every subcommand.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The admin HTTP API (and `/metrics`): `run` serves it on this address (none without
    /// the flag; anything but loopback needs `--admin-token`), `devnet` serves node i's on
    /// port + i (and keeps running until Ctrl-C); the client commands reach it there (default
    /// `127.0.0.1:8732`).
    #[arg(long, value_name = "IP:PORT", global = true)]
    pub admin: Option<SocketAddr>,
    /// The admin API's bearer token (`Authorization: Bearer TOKEN`).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "PEERAGE_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub admin_token: Option<String>,
    /// JSON on stdout instead of a table: the API's JSON for the client commands, one report
    /// object for `devnet` and `sim` (logs and progress go to stderr).
    #[arg(long, global = true)]
    pub json: bool,
}

/// How long a request to the node may take.
pub const CLIENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where the client commands look for the admin API without `--admin`.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:8732";

/// The client's commands.
#[derive(Debug, Clone, Subcommand)]
pub enum ClientCommand {
    /// The node's identity, connections and bounds.
    Status,
    /// The known peers.
    Peers {
        /// Only peers in this state (accepted, running, disconnected).
        #[arg(long)]
        state: Option<String>,
    },
    /// One peer, with its addresses, protocols, latency and tags.
    Peer {
        /// The peer's ID.
        id: String,
    },
    /// The known points.
    Points {
        /// Only points in this state (requested, accepted, running, disconnected).
        #[arg(long)]
        state: Option<String>,
    },
    /// A peer's or a point's log: its last 100 events, oldest first (Octez's
    /// `/network/peers/{id}/log` and `/network/points/{p}/log`).
    /// With `--follow`, the node's events as they happen (`GET /network/log`), of `TARGET` only
    /// if given, until the node stops or Ctrl-C.
    Log {
        /// A peer ID, or a point (a multiaddr, or IP:PORT).
        target: Option<String>,
        /// Follow the live log instead of printing the stored one.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// The established connections, as `ipfs swarm peers -v`: peer, direction, remote address,
    /// dialed point, age, nacked.
    Connections,
    /// The resource manager's scopes (system, transient, services, protocols, peers) with
    /// their usage against their limits, as `ipfs swarm resources`.
    Resources,
    /// Dial a point now (a multiaddr, or Octez's IP:PORT) and wait for the connection; exits
    /// non-zero with the reason if the dial fails or the wait ends.
    Connect {
        /// The point.
        point: String,
        /// How long to wait for the connection.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        /// Start the dial and return at once (`dialing ...`).
        #[arg(long)]
        no_wait: bool,
    },
    /// Close every connection with a peer.
    Disconnect {
        /// The peer's ID.
        id: String,
    },
    /// Ban a peer (untrust, ban, disconnect) or a point's IP (and its peers).
    Ban {
        /// A peer ID or a point.
        target: String,
    },
    /// Trust a peer or a point (unban, trust).
    Trust {
        /// A peer ID or a point.
        target: String,
    },
    /// Neither ban nor trust a peer or a point.
    Open {
        /// A peer ID or a point.
        target: String,
    },
    /// The greylists, or `clear` to empty them.
    Greylist {
        /// `clear` to empty the greylists.
        action: Option<String>,
    },
    /// Set a connection-manager tag on a peer.
    Tag {
        /// The peer's ID.
        id: String,
        /// The tag.
        tag: String,
        /// Its value.
        #[arg(allow_negative_numbers = true)]
        value: i64,
    },
    /// Remove a connection-manager tag from a peer.
    Untag {
        /// The peer's ID.
        id: String,
        /// The tag.
        tag: String,
    },
    /// Protect a peer in the connection manager.
    Protect {
        /// The peer's ID.
        id: String,
        /// The protection tag.
        tag: String,
    },
    /// Remove a protection tag.
    Unprotect {
        /// The peer's ID.
        id: String,
        /// The protection tag.
        tag: String,
    },
    /// The resource manager's limits (go-libp2p JSON): `show` (default) or `set FILE`. A set
    /// is merged into the current limits, checked as at startup, and saved in the node's data
    /// directory (`limits.json`) for its next start, where a limits file given to `run` wins
    /// (a node run with `--ephemeral` applies it without saving it).
    Limits {
        /// `show` or `set`.
        action: Option<String>,
        /// The limits file, for `set`.
        file: Option<PathBuf>,
    },
}

struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    fn new(args: &ClientArgs) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(CLIENT_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        Self {
            base: format!(
                "http://{}",
                args.admin
                    .map_or_else(|| DEFAULT_ADMIN.to_owned(), |a| a.to_string())
            ),
            token: args.admin_token.clone(),
            agent,
        }
    }

    /// Sends a request; returns the JSON body of a 2xx answer (`null` if empty).
    fn request(&self, method: &str, path: &str, body: Option<String>) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let result = match (method, body) {
            ("GET", _) => with_auth(self.agent.get(&url), &auth).call(),
            ("DELETE", _) => with_auth(self.agent.delete(&url), &auth).call(),
            ("PUT", Some(b)) => with_auth(self.agent.put(&url), &auth)
                .header("content-type", "application/json")
                .send(b),
            ("PUT", None) => with_auth(self.agent.put(&url), &auth).send_empty(),
            ("PATCH", b) => with_auth(self.agent.patch(&url), &auth)
                .header("content-type", "application/json")
                .send(b.unwrap_or_default()),
            _ => unreachable!("methods used below"),
        };
        let mut response = result.map_err(|e| match e {
            ureq::Error::Io(_) | ureq::Error::ConnectionFailed | ureq::Error::Timeout(_) => {
                anyhow::anyhow!(
                    "no node is listening on {} ({e}); start one with `peerage run --admin {}`",
                    self.base,
                    self.base.trim_start_matches("http://")
                )
            }
            other => anyhow::Error::from(other),
        })?;
        let status = response.status();
        let text = response
            .body_mut()
            .read_to_string()
            .context("reading the node's answer")?;
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if !status.is_success() {
            let error = value["error"].as_str().unwrap_or("error");
            let detail = value["detail"].as_str().unwrap_or_default();
            bail!("{} {error}: {detail}", status.as_u16());
        }
        Ok(value)
    }
}

fn with_auth<B>(req: ureq::RequestBuilder<B>, auth: &Option<String>) -> ureq::RequestBuilder<B> {
    match auth {
        Some(a) => req.header("authorization", a),
        None => req,
    }
}

/// A point as a path segment: a multiaddr's slashes percent-encoded; `IP:PORT` as it is.
fn point_segment(point: &str) -> String {
    point.replace('/', "%2F")
}

/// Polls the point at `path` every 100 ms until it is running (its JSON), or fails: a dial
/// error (with libp2p's reason when the node has it), a connection that came and went (refused
/// by the peer: banned, full, the wrong peer), or `timeout`, as `ipfs swarm connect` and
/// `octez-admin-client connect address` wait and report.
fn wait_for_connection(
    c: &Client,
    path: &str,
    timeout: std::time::Duration,
) -> anyhow::Result<Value> {
    let start = std::time::Instant::now();
    loop {
        let v = c.request("GET", path, None)?;
        let point = opt(&v["point"]);
        match v["state"].as_str() {
            Some("running") => return Ok(v),
            Some("disconnected") => {
                let elapsed = start.elapsed().as_secs_f64();
                let failed_now = v["last_failed_secs_ago"]
                    .as_f64()
                    .is_some_and(|ago| ago <= elapsed + 0.5);
                let reason = match v["last_error"].as_str() {
                    Some(e) if failed_now => e.to_owned(),
                    _ if failed_now => "the dial failed".to_owned(),
                    _ => "the peer closed the connection (it may be full, or refuse us)".to_owned(),
                };
                anyhow::bail!("could not connect to {point}: {reason}");
            }
            state => {
                if start.elapsed() >= timeout {
                    anyhow::bail!(
                        "no connection to {point} within {} (still {})",
                        humantime::format_duration(timeout),
                        state.unwrap_or("unknown")
                    );
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn is_peer_id(s: &str) -> bool {
    s.parse::<libp2p::PeerId>().is_ok()
}

fn opt(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n
            .as_f64()
            .filter(|f| f.fract() != 0.0)
            .map_or_else(|| n.to_string(), |f| format!("{f:.1}")),
        other => other.to_string(),
    }
}

fn table(rows: &[Value], columns: &[(&str, &str)]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|(k, _)| opt(&r[*k])).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, h))| {
            cells
                .iter()
                .map(|c| c[i].len())
                .max()
                .unwrap_or(0)
                .max(h.len())
        })
        .collect();
    let mut out = String::new();
    let line = |out: &mut String, items: Vec<&str>| {
        let parts: Vec<String> = items
            .iter()
            .zip(&widths)
            .map(|(s, w)| format!("{s:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    line(&mut out, columns.iter().map(|(_, h)| *h).collect());
    for row in &cells {
        line(&mut out, row.iter().map(String::as_str).collect());
    }
    out
}

/// The columns of a peer in a table: JSON key and header.
const PEER_COLUMNS: &[(&str, &str)] = &[
    ("peer_id", "PEER ID"),
    ("state", "STATE"),
    ("trusted", "TRUSTED"),
    ("banned", "BANNED"),
    ("score", "SCORE"),
    ("latency_ms", "LATENCY MS"),
];

/// Prints the live log (`GET /network/log`, server-sent events) line by line until the stream
/// ends: one JSON object per line with `--json`, else `TIME EVENT PEER POINT DETAIL`.
fn follow_log(c: &Client, args: &ClientArgs, target: Option<&str>) -> anyhow::Result<()> {
    use std::io::{BufRead, Write as _};
    let query = match target {
        None => String::new(),
        Some(t) if is_peer_id(t) => format!("?peer={t}"),
        Some(t) => format!("?point={}", point_segment(t).replace(':', "%3A")),
    };
    // No timeout: the stream lasts as long as the node.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("{}/network/log{query}", c.base);
    let auth = c.token.as_ref().map(|t| format!("Bearer {t}"));
    let mut response = with_auth(agent.get(&url), &auth)
        .call()
        .with_context(|| format!("no node is listening on {}", c.base))?;
    if !response.status().is_success() {
        let text = response.body_mut().read_to_string().unwrap_or_default();
        bail!("{}: {text}", response.status());
    }
    let mut out = std::io::stdout();
    for line in std::io::BufReader::new(response.body_mut().as_reader()).lines() {
        let line = line.context("reading the log")?;
        let Some(data) = line.strip_prefix("data:") else {
            continue;
        };
        let data = data.trim_start();
        if args.json {
            writeln!(out, "{data}")?;
        } else {
            let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
            writeln!(
                out,
                "{:.3}  {}  {}  {}  {}",
                v["time"].as_f64().unwrap_or_default(),
                opt(&v["event"]),
                opt(&v["peer"]),
                opt(&v["point"]),
                opt(&v["detail"])
            )?;
        }
        out.flush()?;
    }
    Ok(())
}

/// The columns of a log event in a table.
const LOG_COLUMNS: &[(&str, &str)] = &[("secs_ago", "AGO S"), ("kind", "EVENT"), ("with", "WITH")];

/// The columns of a connection in a table.
const CONNECTION_COLUMNS: &[(&str, &str)] = &[
    ("peer_id", "PEER ID"),
    ("incoming", "INBOUND"),
    ("remote", "REMOTE"),
    ("point", "POINT"),
    ("age_secs", "AGE S"),
    ("nacked", "NACKED"),
];

/// `/rcmgr/stat` as a table: a row per scope, each resource as `used/limit`.
fn resources_table(stat: &Value) -> String {
    let mut scopes: Vec<(String, &Value)> = ["system", "transient"]
        .iter()
        .map(|s| ((*s).to_owned(), &stat[*s]))
        .collect();
    for (kind, key) in [
        ("service", "services"),
        ("protocol", "protocols"),
        ("peer", "peers"),
    ] {
        if let Some(map) = stat[key].as_object() {
            scopes.extend(map.iter().map(|(name, v)| (format!("{kind}:{name}"), v)));
        }
    }
    let columns = [
        ("scope", "SCOPE"),
        ("memory", "MEMORY"),
        ("fd", "FD"),
        ("conns_inbound", "CONNS IN"),
        ("conns_outbound", "CONNS OUT"),
        ("streams_inbound", "STREAMS IN"),
        ("streams_outbound", "STREAMS OUT"),
    ];
    let rows: Vec<Value> = scopes
        .into_iter()
        .map(|(name, scope)| {
            let mut row = serde_json::Map::new();
            row.insert("scope".to_owned(), Value::String(name));
            for (key, _) in &columns[1..] {
                let used = &scope["usage"][*key];
                let limit = &scope["limit"][*key];
                row.insert((*key).to_owned(), Value::String(format!("{used}/{limit}")));
            }
            Value::Object(row)
        })
        .collect();
    table(&rows, &columns)
}

/// The columns of a point in a table.
const POINT_COLUMNS: &[(&str, &str)] = &[
    ("point", "POINT"),
    ("state", "STATE"),
    ("peer_id", "PEER ID"),
    ("trusted", "TRUSTED"),
    ("banned", "BANNED"),
    ("reconnect_in_secs", "RECONNECT IN S"),
];

/// A list (`/network/peers` or `/network/points`), optionally of one state, as a table or JSON.
fn list(
    c: &Client,
    args: &ClientArgs,
    path: &str,
    state: Option<&str>,
    columns: &[(&str, &str)],
) -> anyhow::Result<String> {
    let query = state.map(|s| format!("?filter={s}")).unwrap_or_default();
    let v = c.request("GET", &format!("{path}{query}"), None)?;
    if args.json {
        return Ok(serde_json::to_string_pretty(&v).expect("JSON") + "\n");
    }
    Ok(table(v.as_array().map_or(&[][..], Vec::as_slice), columns))
}

/// Runs a client command against the node; returns what to print.
///
/// # Errors
///
/// No node listening (with how to start one), a refused request (the API's status, error and
/// detail), or an unreadable limits file.
pub fn run(args: &ClientArgs, command: &ClientCommand) -> anyhow::Result<String> {
    let c = Client::new(args);
    let json = |v: Value| serde_json::to_string_pretty(&v).expect("JSON") + "\n";
    use ClientCommand as C;
    let out = match command {
        C::Status => {
            let me = c.request("GET", "/network/self", None)?;
            let stat = c.request("GET", "/network/stat", None)?;
            let cm = c.request("GET", "/connmgr", None)?;
            if args.json {
                return Ok(json(
                    serde_json::json!({"self": me, "stat": stat, "connmgr": cm}),
                ));
            }
            let b = &stat["bounds"];
            format!(
                "peer id:      {}\nlistening on: {}\nconnections:  {} ({} in, {} out), bounds {}/{}/{}\nwatermarks:   {}/{}, hard cap {}, {} trims\nknown:        {} points, {} peers\n",
                opt(&me["peer_id"]),
                me["listen"]
                    .as_array()
                    .map(|l| l.iter().map(opt).collect::<Vec<_>>().join(", "))
                    .unwrap_or_default(),
                stat["connections"],
                stat["incoming_connections"],
                stat["outgoing_connections"],
                b[0],
                b[1],
                b[2],
                cm["low_water"],
                cm["high_water"],
                opt(&cm["hard_cap"]),
                cm["trims"],
                stat["known_points"],
                stat["known_peers"],
            )
        }
        C::Peers { state } => list(&c, args, "/network/peers", state.as_deref(), PEER_COLUMNS)?,
        C::Connections => list(&c, args, "/network/connections", None, CONNECTION_COLUMNS)?,
        C::Log {
            target,
            follow: true,
        } => {
            follow_log(&c, args, target.as_deref())?;
            String::new()
        }
        C::Log {
            target: Some(target),
            follow: false,
        } => {
            let path = if is_peer_id(target) {
                format!("/network/peers/{target}/log")
            } else {
                format!("/network/points/{}/log", point_segment(target))
            };
            list(&c, args, &path, None, LOG_COLUMNS)?
        }
        C::Log {
            target: None,
            follow: false,
        } => bail!("usage: peerage log TARGET, or peerage log --follow [TARGET]"),
        C::Resources => {
            let v = c.request("GET", "/rcmgr/stat", None)?;
            if args.json {
                return Ok(json(v));
            }
            resources_table(&v)
        }
        C::Peer { id } => {
            let v = c.request("GET", &format!("/network/peers/{id}"), None)?;
            if args.json {
                return Ok(json(v));
            }
            let mut out = table(
                std::slice::from_ref(&v),
                &[PEER_COLUMNS, &[("protected", "PROTECTED")]].concat(),
            );
            for a in v["addrs"].as_array().into_iter().flatten() {
                let certified = if a["certified"] == Value::Bool(true) {
                    " (certified)"
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "address: {} ttl {}{certified}",
                    opt(&a["addr"]),
                    opt(&a["ttl_secs"])
                );
            }
            let protocols: Vec<String> = v["protocols"]
                .as_array()
                .into_iter()
                .flatten()
                .map(opt)
                .collect();
            let _ = writeln!(out, "protocols: {}", protocols.join(" "));
            let _ = writeln!(out, "tags: {}", v["tags"]);
            out
        }
        C::Points { state } => list(&c, args, "/network/points", state.as_deref(), POINT_COLUMNS)?,
        C::Connect {
            point,
            timeout,
            no_wait,
        } => {
            let path = format!("/network/points/{}", point_segment(point));
            let v = c.request("PUT", &path, None)?;
            if *no_wait {
                if args.json {
                    return Ok(json(v));
                }
                return Ok(format!("dialing {}\n", opt(&v["point"])));
            }
            let v = wait_for_connection(&c, &path, *timeout)?;
            if args.json {
                return Ok(json(v));
            }
            format!(
                "connected to {} at {}\n",
                opt(&v["peer_id"]),
                opt(&v["point"])
            )
        }
        C::Disconnect { id } => {
            c.request("DELETE", &format!("/network/connections/{id}"), None)?;
            if args.json {
                return Ok(json(Value::Null));
            }
            format!("disconnected {id}\n")
        }
        C::Ban { target } | C::Trust { target } | C::Open { target } => {
            let acl = match command {
                C::Ban { .. } => "ban",
                C::Trust { .. } => "trust",
                _ => "open",
            };
            let path = if is_peer_id(target) {
                format!("/network/peers/{target}")
            } else {
                format!("/network/points/{}", point_segment(target))
            };
            let v = c.request(
                "PATCH",
                &path,
                Some(serde_json::json!({ "acl": acl }).to_string()),
            )?;
            if args.json {
                return Ok(json(v));
            }
            let mut out = format!(
                "{target}: trusted {}, banned {}\n",
                v["trusted"], v["banned"]
            );
            // A point's IP ban or unban also says what it did to the IP's peers.
            let changed = &v["peers_changed"];
            for (key, what) in [
                ("disconnected", "disconnected (connected from its IP)"),
                ("banned", "banned with its IP"),
                ("untrusted", "no longer trusted"),
                ("unbanned", "unbanned with its IP"),
                ("trusted", "trusted again"),
            ] {
                let peers: Vec<&str> = changed[key]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if !peers.is_empty() {
                    out += &format!("  {what}: {}\n", peers.join(", "));
                }
            }
            out
        }
        C::Greylist { action } => match action.as_deref() {
            Some("clear") => {
                c.request("DELETE", "/network/greylist", None)?;
                if args.json {
                    return Ok(json(Value::Null));
                }
                "greylists cleared\n".to_owned()
            }
            Some(other) => bail!("unknown greylist action {other:?} (only `clear`)"),
            None => {
                let ips = c.request("GET", "/network/greylist/ips", None)?;
                let peers = c.request("GET", "/network/greylist/peers", None)?;
                if args.json {
                    return Ok(json(serde_json::json!({"ips": ips, "peers": peers})));
                }
                let list = |v: &Value| {
                    v.as_array()
                        .into_iter()
                        .flatten()
                        .map(opt)
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                format!("ips: {}\npeers: {}\n", list(&ips["ips"]), list(&peers))
            }
        },
        C::Tag { id, tag, value } => {
            c.request(
                "PUT",
                &format!("/connmgr/tags/{id}/{tag}"),
                Some(serde_json::json!({ "value": value }).to_string()),
            )?;
            if args.json {
                return Ok(json(Value::Null));
            }
            format!("tagged {id} {tag}={value}\n")
        }
        C::Untag { id, tag } => {
            c.request("DELETE", &format!("/connmgr/tags/{id}/{tag}"), None)?;
            if args.json {
                return Ok(json(Value::Null));
            }
            format!("untagged {id} {tag}\n")
        }
        C::Protect { id, tag } => {
            c.request("PUT", &format!("/connmgr/protect/{id}/{tag}"), None)?;
            if args.json {
                return Ok(json(Value::Null));
            }
            format!("protected {id} ({tag})\n")
        }
        C::Unprotect { id, tag } => {
            c.request("DELETE", &format!("/connmgr/protect/{id}/{tag}"), None)?;
            if args.json {
                return Ok(json(Value::Null));
            }
            format!("unprotected {id} ({tag})\n")
        }
        C::Limits { action, file } => match (action.as_deref(), file) {
            (None | Some("show"), None) => json(c.request("GET", "/rcmgr/limits", None)?),
            (Some("set"), Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the limits file {}", path.display()))?;
                json(c.request("PUT", "/rcmgr/limits", Some(text))?)
            }
            _ => bail!("usage: peerage limits [show | set FILE]"),
        },
    };
    Ok(out)
}
