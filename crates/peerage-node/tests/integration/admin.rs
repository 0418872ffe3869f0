//! The admin API through its router, without sockets (`Router::oneshot`): every route, its
//! errors, the token, and the OpenAPI document against the routes served.

use std::time::{Duration, Instant};

use axum::{
    body::Body,
    http::{Method, Request, StatusCode, header},
};
use http_body_util::BodyExt;
use libp2p::{identity::Keypair, multiaddr::Protocol};
use peerage::maintenance::Bounds;
use peerage_node::{
    admin,
    node::{Node, NodeConfig},
};
use serde_json::{Value, json};
use tower::ServiceExt;

async fn start(bootstrap: Vec<libp2p::Multiaddr>) -> Node {
    Node::start(NodeConfig {
        bootstrap,
        ..NodeConfig::new(
            Keypair::generate_ed25519(),
            vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            Bounds::new(1, 1, 4).unwrap(),
        )
    })
    .await
    .unwrap()
}

/// Sends one request; returns the status and the body (JSON, or a JSON string for text).
pub(crate) async fn call(
    router: &axum::Router,
    method: Method,
    uri: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
        .unwrap();
    let response = router.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

fn enc(s: &str) -> String {
    s.replace('/', "%2F")
}

/// Every route of the API, as issue 7 lists them.
const ROUTES: [&str; 28] = [
    "DELETE /connmgr/protect/{peer_id}/{tag}",
    "DELETE /connmgr/tags/{peer_id}/{tag}",
    "DELETE /network/connections/{peer_id}",
    "DELETE /network/greylist",
    "GET /connmgr",
    "GET /metrics",
    "GET /network/addrbook",
    "GET /network/connections",
    "GET /network/connections/{peer_id}",
    "GET /network/greylist/ips",
    "GET /network/greylist/peers",
    "GET /network/log",
    "GET /network/peers",
    "GET /network/peers/{peer_id}",
    "GET /network/peers/{peer_id}/log",
    "GET /network/points",
    "GET /network/points/{point}",
    "GET /network/points/{point}/log",
    "GET /network/self",
    "GET /network/stat",
    "GET /rcmgr/limits",
    "GET /rcmgr/stat",
    "PATCH /network/peers/{peer_id}",
    "PATCH /network/points/{point}",
    "PUT /connmgr/protect/{peer_id}/{tag}",
    "PUT /connmgr/tags/{peer_id}/{tag}",
    "PUT /network/points/{point}",
    "PUT /rcmgr/limits",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_serves_the_node_and_reports_errors() {
    let a = start(Vec::new()).await;
    let a_addr = a.handle.listen_addrs()[0].clone();
    let a_id = a.handle.peer_id();
    let b = start(vec![a_addr.clone().with(Protocol::P2p(a_id))]).await;
    let b_id = b.handle.peer_id();
    let router = admin::router(a.handle.clone(), a.registry.clone(), None);

    // Wait for B to connect and identify.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, peer) = call(
            &router,
            Method::GET,
            &format!("/network/peers/{b_id}"),
            None,
            None,
        )
        .await;
        if peer["state"] == "running" && !peer["protocols"].as_array().is_none_or(Vec::is_empty) {
            // Its log (Octez's events), oldest first.
            let (s, log) = call(
                &router,
                Method::GET,
                &format!("/network/peers/{b_id}/log"),
                None,
                None,
            )
            .await;
            assert_eq!(s, StatusCode::OK);
            let kinds: Vec<&str> = log
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|e| e["kind"].as_str())
                .collect();
            assert!(kinds.contains(&"connection_established"), "{log}");
            // Its identify's agent version is in the answer.
            assert!(
                peer["agent_version"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("peerage/")),
                "{peer}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "B never identified: {peer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (s, me) = call(&router, Method::GET, "/network/self", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(me["peer_id"], a_id.to_string());
    let (s, stat) = call(&router, Method::GET, "/network/stat", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(stat["connections"], 1);
    assert_eq!(stat["incoming_connections"], 1);
    assert_eq!(stat["bounds"], json!([1, 1, 4]));
    assert!(stat["total_recv"].as_u64().unwrap() > 0, "{stat}");
    assert!(stat["total_sent"].as_u64().unwrap() > 0, "{stat}");

    let (s, conns) = call(&router, Method::GET, "/network/connections", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(conns[0]["peer_id"], b_id.to_string());
    let (s, _) = call(
        &router,
        Method::GET,
        &format!("/network/connections/{b_id}"),
        None,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, err) = call(
        &router,
        Method::GET,
        "/network/connections/nonsense",
        None,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        err["detail"].as_str().unwrap().contains("nonsense"),
        "{err}"
    );
    let stranger = libp2p::PeerId::random();
    let (s, err) = call(
        &router,
        Method::GET,
        &format!("/network/connections/{stranger}"),
        None,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(err["error"], "not found");

    let (s, peers) = call(
        &router,
        Method::GET,
        "/network/peers?filter=running",
        None,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(peers.as_array().unwrap().len(), 1);
    assert_eq!(peers[0]["peer_id"], b_id.to_string());
    assert!(!peers[0]["addrs"].as_array().unwrap().is_empty(), "{peers}");
    let (_, none) = call(
        &router,
        Method::GET,
        "/network/peers?filter=accepted",
        None,
        None,
    )
    .await;
    assert_eq!(none, json!([]));
    let (s, _) = call(
        &router,
        Method::GET,
        &format!("/network/peers/{stranger}"),
        None,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Points: B's listen address is a point (identify), running.
    let b_point = b.handle.listen_addrs()[0].to_string();
    let (s, points) = call(&router, Method::GET, "/network/points", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        points
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["point"] == b_point),
        "{points}"
    );
    let (s, p) = call(
        &router,
        Method::GET,
        &format!("/network/points/{}", enc(&b_point)),
        None,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["point"], b_point);
    let sock = b_point.replace("/ip4/", "").replace("/tcp/", ":");
    let (s, p2) = call(
        &router,
        Method::GET,
        &format!("/network/points/{sock}"),
        None,
        None,
    )
    .await;
    assert_eq!(
        (s, &p2["point"]),
        (StatusCode::OK, &p["point"]),
        "Octez's ip:port form"
    );
    let (s, err) = call(
        &router,
        Method::GET,
        "/network/points/not-a-point",
        None,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{err}");
    let (s, _) = call(
        &router,
        Method::GET,
        "/network/points/10.9.9.9:1",
        None,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Connecting: accepted for a new point; refused (409) for a banned one.
    let (s, p) = call(
        &router,
        Method::PUT,
        "/network/points/127.0.0.1:1",
        None,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{p}");
    assert_eq!(p["state"], "requested");
    let (s, p) = call(
        &router,
        Method::PATCH,
        "/network/points/10.9.9.8:1",
        Some(r#"{"acl": "ban"}"#),
        None,
    )
    .await;
    assert_eq!((s, &p["banned"]), (StatusCode::OK, &json!(true)), "{p}");
    let (s, err) = call(
        &router,
        Method::PUT,
        "/network/points/10.9.9.8:1",
        None,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{err}");
    assert!(
        err["detail"]
            .as_str()
            .unwrap()
            .contains("10.9.9.8 is banned"),
        "{err}"
    );

    // Trust a point; bad bodies are refused, naming what is wrong.
    let (s, p) = call(
        &router,
        Method::PATCH,
        "/network/points/10.9.9.9:1",
        Some(r#"{"acl": "trust"}"#),
        None,
    )
    .await;
    assert_eq!((s, &p["trusted"]), (StatusCode::OK, &json!(true)), "{p}");
    let (s, err) = call(
        &router,
        Method::PATCH,
        "/network/points/10.9.9.9:1",
        Some(r#"{"acl": "maybe"}"#),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{err}");
    let (s, err) = call(
        &router,
        Method::PATCH,
        "/network/points/10.9.9.9:1",
        Some(r#"{"colour": "red"}"#),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(err["detail"].as_str().unwrap().contains("colour"), "{err}");

    // Tags and protection.
    let tag_uri = format!("/connmgr/tags/{b_id}/dht");
    let (s, _) = call(
        &router,
        Method::PUT,
        &tag_uri,
        Some(r#"{"value": 42}"#),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, peer) = call(
        &router,
        Method::GET,
        &format!("/network/peers/{b_id}"),
        None,
        None,
    )
    .await;
    assert_eq!(peer["tags"]["dht"], 42);
    let (s, _) = call(
        &router,
        Method::PUT,
        &tag_uri,
        Some(r#"{"value": "high"}"#),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = call(&router, Method::DELETE, &tag_uri, None, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let protect_uri = format!("/connmgr/protect/{b_id}/relay");
    let (s, _) = call(&router, Method::PUT, &protect_uri, None, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, cm) = call(&router, Method::GET, "/connmgr", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(cm["protected"][b_id.to_string()], json!(["relay"]));
    let (s, _) = call(&router, Method::DELETE, &protect_uri, None, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    // Resource manager: stat, limits read, a bad body changes nothing, a good one applies.
    let (s, stat) = call(&router, Method::GET, "/rcmgr/stat", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(stat.is_object(), "{stat}");
    // Every stream with B is attributed to its protocol (the muxer reads the negotiations):
    // the protocols' counts add up to the peer's once no negotiation is under way, and ping's
    // streams (one each way, held between pings) are among them.
    let streams = |v: &Value, dir: &str| v[format!("streams_{dir}")].as_u64().unwrap();
    let mut settled = None;
    for _ in 0..100 {
        let (_, stat) = call(&router, Method::GET, "/rcmgr/stat", None, None).await;
        let peer = &stat["peers"][b_id.to_string()]["usage"];
        let protocols = stat["protocols"].as_object().unwrap();
        let sum = |dir| -> u64 { protocols.values().map(|p| streams(&p["usage"], dir)).sum() };
        let ping = &stat["protocols"]["/ipfs/ping/1.0.0"]["usage"];
        if !ping.is_null()
            && streams(ping, "inbound") >= 1
            && streams(ping, "outbound") >= 1
            && sum("inbound") == streams(peer, "inbound")
            && sum("outbound") == streams(peer, "outbound")
        {
            settled = Some(stat);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stat = settled.expect("per-protocol stream counts matching the peer's");
    assert_eq!(stat["unattributed_streams"], 0, "{stat}");
    let (s, before) = call(&router, Method::GET, "/rcmgr/limits", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, err) = call(
        &router,
        Method::PUT,
        "/rcmgr/limits",
        Some(r#"{"System": {"Conns": -5}}"#),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        err["detail"].as_str().unwrap().contains("System.Conns"),
        "{err}"
    );
    let (_, same) = call(&router, Method::GET, "/rcmgr/limits", None, None).await;
    assert_eq!(same, before, "a bad body changes nothing");
    let (s, after) = call(
        &router,
        Method::PUT,
        "/rcmgr/limits",
        Some(r#"{"System": {"ConnsInbound": 77}}"#),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{after}");
    assert_eq!(after["System"]["ConnsInbound"], 77);

    // Metrics.
    let (s, text) = call(&router, Method::GET, "/metrics", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let text = text.as_str().unwrap();
    for name in [
        "libp2p_rcmgr_connections",
        "libp2p_connmgr_connections",
        "peerage_pool_points",
        "peerage_maintenance_dials",
        "libp2p_swarm_connections_established",
        "libp2p_bandwidth_bytes",
    ] {
        assert!(text.contains(name), "{name} missing");
    }
    // Every metric the Grafana dashboard in the repository queries is exported.
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../grafana/peerage.json"
    ))
    .unwrap();
    let dashboard: Value = serde_json::from_str(&dashboard).unwrap();
    let exported: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    // Each family once: libp2p-metrics' idle `libp2p_identify_*` are left out for the node's.
    let mut families = exported.clone();
    families.sort_unstable();
    let before = families.len();
    families.dedup();
    assert_eq!(families.len(), before, "a family exported twice in {text}");
    assert!(families.contains(&"libp2p_identify_remote_protocols"));
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("libp2p_") || word.starts_with("peerage_") {
                    let name = ["_total", "_bucket"]
                        .iter()
                        .find_map(|suffix| word.strip_suffix(suffix))
                        .unwrap_or(word);
                    assert!(
                        exported.contains(&name),
                        "the dashboard queries {word}, not exported"
                    );
                    queried += 1;
                }
            }
        }
    }
    assert!(queried >= 20, "{queried}");

    // Ban B: disconnected, greylist untouched, banned listed; clear the greylist.
    let (s, peer) = call(
        &router,
        Method::PATCH,
        &format!("/network/peers/{b_id}"),
        Some(r#"{"acl": "ban"}"#),
        None,
    )
    .await;
    assert_eq!(
        (s, &peer["banned"]),
        (StatusCode::OK, &json!(true)),
        "{peer}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.handle.snapshot().await.unwrap().connections > 0 {
        assert!(Instant::now() < deadline, "B still connected after the ban");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The disconnection carries its reason, in B's log and in the counter.
    let (_, log) = call(
        &router,
        Method::GET,
        &format!("/network/peers/{b_id}/log"),
        None,
        None,
    )
    .await;
    let last = log.as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (&last["kind"], &last["reason"]),
        (&json!("disconnection"), &json!("ban")),
        "{log}"
    );
    // The counter follows the event, which the node's loop may handle a little later.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, text) = call(&router, Method::GET, "/metrics", None, None).await;
        let text = text.as_str().unwrap().to_owned();
        if text
            .lines()
            .any(|l| l == r#"peerage_disconnections_total{reason="ban"} 1"#)
        {
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, _) = call(
        &router,
        Method::DELETE,
        &format!("/network/connections/{b_id}"),
        None,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "no connection left");
    let (s, ips) = call(&router, Method::GET, "/network/greylist/ips", None, None).await;
    assert_eq!((s, &ips["ips"]), (StatusCode::OK, &json!([])));
    let (s, peers) = call(&router, Method::GET, "/network/greylist/peers", None, None).await;
    assert_eq!((s, peers), (StatusCode::OK, json!([])));
    let (s, _) = call(&router, Method::DELETE, "/network/greylist", None, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    // A node without an address book says so.
    let (s, book) = call(&router, Method::GET, "/network/addrbook", None, None).await;
    assert_eq!((s, &book["enabled"]), (StatusCode::OK, &json!(false)));

    // Unknown route: a JSON 404.
    let (s, err) = call(&router, Method::GET, "/network/nothing", None, None).await;
    assert_eq!(
        (s, &err["detail"]),
        (StatusCode::NOT_FOUND, &json!("no such route"))
    );
}

/// The OpenAPI document lists exactly the routes served: the issue's list, each of which the
/// router answers (not with its fallback), and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_exactly_the_routes_served() {
    assert_eq!(admin::documented_routes(), ROUTES);
    let a = start(Vec::new()).await;
    let router = admin::router(a.handle.clone(), a.registry.clone(), None);
    let (s, doc) = call(&router, Method::GET, "/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    assert_eq!(paths.len(), 21, "{paths:?}");
    let peer = libp2p::PeerId::random();
    for route in ROUTES {
        let (method, path) = route.split_once(' ').unwrap();
        let uri = path
            .replace("{peer_id}", &peer.to_string())
            .replace("{tag}", "t")
            .replace("{point}", "10.1.1.1:1");
        let method: Method = method.parse().unwrap();
        if path == "/network/log" {
            // A stream that lasts as long as the node: its head only.
            let req = Request::builder().uri(path).body(Body::empty()).unwrap();
            let response = router.clone().oneshot(req).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(
                response.headers()[header::CONTENT_TYPE],
                "text/event-stream",
                "{route}"
            );
            continue;
        }
        let body = matches!(method, Method::PUT | Method::PATCH).then_some("{}");
        let (_, v) = call(&router, method, &uri, body, None).await;
        assert_ne!(v["detail"], json!("no such route"), "{route} is not served");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_required_when_set() {
    let a = start(Vec::new()).await;
    let router = admin::router(a.handle.clone(), a.registry.clone(), Some("s3cret".into()));
    let (s, err) = call(&router, Method::GET, "/network/self", None, None).await;
    assert_eq!(
        (s, &err["error"]),
        (StatusCode::UNAUTHORIZED, &json!("unauthorized"))
    );
    let (s, _) = call(&router, Method::GET, "/network/self", None, Some("wrong")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, me) = call(&router, Method::GET, "/network/self", None, Some("s3cret")).await;
    assert_eq!(
        (s, &me["peer_id"]),
        (StatusCode::OK, &json!(a.handle.peer_id().to_string()))
    );
}

/// The scheme of `Authorization` is case-insensitive (RFC 7235): `bearer` and `BEARER` pass
/// with the right token, and no scheme does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive() {
    let a = start(Vec::new()).await;
    let router = admin::router(a.handle.clone(), a.registry.clone(), Some("s3cret".into()));
    for (value, expected) in [
        ("bearer s3cret", StatusCode::OK),
        ("BEARER s3cret", StatusCode::OK),
        ("Bearer  s3cret ", StatusCode::OK),
        ("s3cret", StatusCode::UNAUTHORIZED),
        ("Basic s3cret", StatusCode::UNAUTHORIZED),
        ("bearer s3cre", StatusCode::UNAUTHORIZED),
    ] {
        let req = Request::builder()
            .uri("/network/self")
            .header(header::AUTHORIZATION, value)
            .body(Body::empty())
            .unwrap();
        let status = router.clone().oneshot(req).await.unwrap().status();
        assert_eq!(status, expected, "{value:?}");
    }
}

/// The errors axum makes itself are JSON like the API's own: a method the route does not
/// serve (405, an empty body before) and a body over the limit (413, text before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_axum_makes_are_json_too() {
    let a = start(Vec::new()).await;
    let router = admin::router(a.handle.clone(), a.registry.clone(), None);
    let (s, v) = call(&router, Method::DELETE, "/network/self", None, None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(v["error"], json!("method not allowed"), "{v}");
    let big = format!("{{\"System\": {{\"Conns\": 1{}}}}}", " ".repeat(3 << 20));
    let (s, v) = call(&router, Method::PUT, "/rcmgr/limits", Some(&big), None).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(v["error"], json!("payload too large"), "{v}");
    assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()), "{v}");
}
