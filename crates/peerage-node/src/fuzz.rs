//! Fuzz targets of the node's decoders: plain functions over bytes from outside, called by the
//! cargo-fuzz project in `fuzz/` and, over the committed corpora (`fuzz/corpus/<target>/`), by
//! this crate's tests.

use std::path::Path;

use clap::Parser;

use crate::{
    cli::{Cli, Command},
    config::{self, FileConfig},
};

/// A configuration file (`--config FILE`, TOML): parsing and checking it never panics, and a
/// configuration that passes is a fixed point of `config show`: what `show` prints parses and
/// passes again, and shows the same.
///
/// # Panics
///
/// If either does not hold.
pub fn config_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) = FileConfig::parse(text, Path::new("/fuzz")) else {
        return;
    };
    let cli = Cli::parse_from(["peerage", "run"]);
    let admin = cli.client;
    let Command::Run(args) = cli.command else {
        unreachable!("parsed as run");
    };
    let Ok(effective) = config::resolve_file(file, &args, &admin, None) else {
        return;
    };
    let shown = config::show(&effective);
    let again = FileConfig::parse(&shown, Path::new("/elsewhere"))
        .unwrap_or_else(|e| panic!("config show printed what does not parse: {e:#}\n{shown}"));
    let again = config::resolve_file(again, &args, &admin, None)
        .unwrap_or_else(|e| panic!("config show printed what does not pass: {e:#}\n{shown}"));
    assert_eq!(
        config::show(&again),
        shown,
        "config show is not a fixed point"
    );
}

/// The node the admin API's target calls: started once per process, in memory, listening
/// nowhere, with bounds 0/0/4 (its maintenance never dials) and no limits file.
fn admin() -> &'static (tokio::runtime::Runtime, axum::Router, crate::node::Node) {
    static ADMIN: std::sync::OnceLock<(tokio::runtime::Runtime, axum::Router, crate::node::Node)> =
        std::sync::OnceLock::new();
    ADMIN.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let node = runtime
            .block_on(crate::node::Node::start(crate::node::NodeConfig::new(
                libp2p::identity::Keypair::ed25519_from_bytes([9; 32]).expect("a key"),
                Vec::new(),
                peerage::maintenance::Bounds::new(0, 0, 4).expect("bounds"),
            )))
            .expect("the node starts");
        let router = crate::admin::router(node.handle.clone(), node.registry.clone(), None);
        (runtime, router, node)
    })
}

/// An admin API request: the method (the first byte: GET, POST, PUT, PATCH or DELETE), the
/// path and query up to the first newline, and the body (sent as JSON) after it, through the
/// router of a node started once per process. No answer is a server error; every error is the
/// API's JSON (`error` and `detail`), and every JSON answer parses (the event stream of
/// `GET /network/log` is not read).
/// `PUT /network/points/{point}` (a dial) is left out, so that a campaign never dials what it
/// writes.
///
/// # Panics
///
/// If one of these does not hold.
pub fn admin_request(data: &[u8]) {
    use axum::http::{Method, Request, Uri, header};
    use tower::ServiceExt;

    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let method = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ][usize::from(m) % 5]
        .clone();
    let (path, body) = match rest.iter().position(|b| *b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(uri) = Uri::try_from(path) else {
        return;
    };
    if method == Method::PUT && uri.path().starts_with("/network/points/") {
        return;
    }
    let mut request = Request::builder().method(method).uri(uri);
    if !body.is_empty() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let Ok(request) = request.body(axum::body::Body::from(body.to_vec())) else {
        return;
    };
    let (runtime, router, _) = admin();
    let (status, json, bytes) = runtime.block_on(async {
        let response = router.clone().oneshot(request).await.expect("infallible");
        let json = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        let status = response.status();
        // `GET /network/log` streams the node's events for as long as it is read.
        let stream = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let bytes = if stream {
            axum::body::Bytes::new()
        } else {
            axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("a body")
        };
        (status, json, bytes)
    });
    let text = String::from_utf8_lossy(&bytes);
    assert!(!status.is_server_error(), "{status}: {text}");
    if status.is_client_error() {
        assert!(json, "{status} is not JSON: {text}");
        let error: serde_json::Value =
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{status}: {e}: {text}"));
        assert!(
            error["error"].is_string() && error["detail"].is_string(),
            "{status}: {text}"
        );
    } else if json {
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .unwrap_or_else(|e| panic!("{status}: {e}: {text}"));
    }
}

#[cfg(test)]
mod tests {
    use peerage::fuzz::{corpus, replay};

    use super::*;

    #[test]
    fn the_config_toml_corpus_replays() {
        assert!(replay(&corpus("config_toml"), config_toml) > 0);
    }

    #[test]
    fn the_admin_request_corpus_replays() {
        assert!(replay(&corpus("admin_request"), admin_request) > 0);
    }
}
