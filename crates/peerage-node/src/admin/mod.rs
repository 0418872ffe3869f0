//! The admin HTTP API (axum): Octez's `/network/...` resources (Octez's `P2p_services` RPCs), the
//! connection manager and the resource manager, Prometheus metrics, and an OpenAPI document
//! generated from the routes (utoipa) at `/openapi.json`.
//!
//! Every handler reaches the node through [`Handle::call`], the event loop's bounded command
//! channel; no lock is shared with the event loop. Errors are JSON `{"error": ..., "detail":
//! ...}` with the status that fits: 400 for a bad path or body, 404 for an unknown peer or
//! point, 409 for a refused action, 401 without the token, 405 and 413 for a wrong method or a
//! body too large (axum's own, turned into JSON), 500 when `PUT /rcmgr/limits` cannot save the
//! limits (then not applied either), 503 once the node has stopped.

mod addrbook;
mod connmgr;
mod greylist;
mod metrics;
mod network;
mod peers;
mod points;
mod rcmgr;

use std::{net::IpAddr, sync::Arc, time::Instant};

use axum::{
    Json,
    extract::Request,
    http::{StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use libp2p::{Multiaddr, PeerId};
use peerage::pool;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::node::Handle;

pub use self::{
    addrbook::AddrbookInfo,
    connmgr::{ConnmgrInfo, TagValue},
    greylist::GreylistIps,
    network::{ConnectionInfo, LogFilter, NetworkStat, SelfInfo},
    peers::{AddrInfo, PeerInfo, PeerPatch},
    points::{PeersChanged, PointInfo, PointPatch},
};

/// What the handlers share.
#[derive(Clone)]
struct AppState {
    node: Handle,
    registry: Arc<Registry>,
    /// The byte totals at the previous `/network/stat`, for the rates.
    last_bytes: Arc<std::sync::Mutex<Option<(Instant, u64, u64)>>>,
}

/// One event of a peer's or a point's log (Octez `GET /network/peers/{id}/log`,
/// `/network/points/{p}/log`), oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LogEvent {
    /// What happened, under Octez's names (`outgoing_request`, `incoming_request`,
    /// `accepting_request`, `rejecting_request`, `request_rejected`, `connection_established`,
    /// `disconnection`, `external_disconnection`).
    pub kind: String,
    /// Seconds ago.
    pub secs_ago: f64,
    /// The point (in a peer's log) or the peer (in a point's log) involved, if any.
    pub with: Option<String>,
    /// Why the connection closed, for a disconnection in a peer's log (`maintenance`,
    /// `trim`, `eviction_most_represented_group`, `eviction_prefer_evict`, `ban`,
    /// `greylist`, `unexpected_peer_id`, `nack`, `refused`, `feeler`, `surplus`, `remote`,
    /// `local`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

impl LogEvent {
    /// A log's events as the API shows them, `now` giving their age.
    fn list<'a, T: std::fmt::Display + 'a>(
        events: impl Iterator<Item = &'a pool::LogEntry<T>>,
        now: Instant,
    ) -> Vec<Self> {
        events.map(|e| Self::from(e, now)).collect()
    }

    fn from<T: std::fmt::Display>(e: &pool::LogEntry<T>, now: Instant) -> Self {
        Self {
            kind: serde_json::to_value(e.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            secs_ago: now.saturating_duration_since(e.at).as_secs_f64(),
            with: e.with.as_ref().map(ToString::to_string),
            reason: e.reason.map(|r| r.as_str()),
        }
    }
}

/// An API error: JSON `{"error": ..., "detail": ...}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiError {
    #[serde(skip)]
    status: StatusCode,
    /// What went wrong, in a few words.
    pub error: String,
    /// The details (the input named, the reason).
    pub detail: String,
}

impl ApiError {
    fn new(status: StatusCode, error: &str, detail: impl ToString) -> Self {
        Self {
            status,
            error: error.to_owned(),
            detail: detail.to_string(),
        }
    }
    fn bad_request(detail: impl ToString) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad request", detail)
    }
    fn not_found(detail: impl ToString) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not found", detail)
    }
    fn conflict(detail: impl ToString) -> Self {
        Self::new(StatusCode::CONFLICT, "refused", detail)
    }
    fn internal(detail: impl ToString) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error", detail)
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "node stopped", e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(&self)).into_response()
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

fn parse_peer(s: &str) -> Result<PeerId, ApiError> {
    s.parse()
        .map_err(|e| ApiError::bad_request(format!("peer ID {s:?}: {e}")))
}

/// A point as Octez writes it (`1.2.3.4:9732`, `[::1]:9732`) or as a multiaddr (percent-encoded
/// in a path).
fn parse_point(s: &str) -> Result<Multiaddr, ApiError> {
    let addr: Multiaddr = match s.parse::<std::net::SocketAddr>() {
        Ok(sock) => {
            let ip = match sock.ip() {
                IpAddr::V4(ip) => libp2p::multiaddr::Protocol::Ip4(ip),
                IpAddr::V6(ip) => libp2p::multiaddr::Protocol::Ip6(ip),
            };
            Multiaddr::empty()
                .with(ip)
                .with(libp2p::multiaddr::Protocol::Tcp(sock.port()))
        }
        Err(_) => s
            .parse()
            .map_err(|e| ApiError::bad_request(format!("point {s:?}: {e}")))?,
    };
    pool::split_point(&addr)
        .map(|_| addr)
        .map_err(ApiError::bad_request)
}

fn ago(t: Option<Instant>, now: Instant) -> Option<f64> {
    t.map(|t| now.saturating_duration_since(t).as_secs_f64())
}

/// A state filter (`?filter=running`).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct Filter {
    /// Only entries in this state (`requested`, `accepted`, `running`, `disconnected`).
    pub filter: Option<String>,
}

/// An ACL change (Octez `PATCH`): `ban` (untrust, ban, disconnect), `trust` (unban, trust),
/// `open` (unban, untrust).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Acl {
    /// Untrust and ban.
    Ban,
    /// Unban and trust.
    Trust,
    /// Unban and untrust.
    Open,
}

#[derive(OpenApi)]
#[openapi(info(
    title = "peerage admin API",
    description = "Octez-style /network resources, the connection manager and the resource manager of a peerage node."
))]
struct ApiDoc;

/// The routes and the OpenAPI document generated from them.
fn routes() -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(network::network_self))
        .routes(routes!(network::network_stat))
        .routes(routes!(addrbook::addrbook))
        .routes(routes!(network::network_log))
        .routes(routes!(network::list_connections))
        .routes(routes!(network::get_connection, network::delete_connection))
        .routes(routes!(peers::list_peers))
        .routes(routes!(peers::get_peer, peers::patch_peer))
        .routes(routes!(peers::peer_log))
        .routes(routes!(points::list_points))
        .routes(routes!(
            points::get_point,
            points::put_point,
            points::patch_point
        ))
        .routes(routes!(points::point_log))
        .routes(routes!(greylist::greylist_ips))
        .routes(routes!(greylist::greylist_peers))
        .routes(routes!(greylist::clear_greylist))
        .routes(routes!(connmgr::connmgr_info))
        .routes(routes!(connmgr::put_tag, connmgr::delete_tag))
        .routes(routes!(connmgr::put_protect, connmgr::delete_protect))
        .routes(routes!(rcmgr::rcmgr_stat))
        .routes(routes!(rcmgr::get_limits, rcmgr::put_limits))
        .routes(routes!(metrics::metrics))
        .split_for_parts()
}

/// The admin router for `node`: every route, `/openapi.json`, JSON errors for unknown routes,
/// and, with a `token`, a check of `Authorization: Bearer <token>` on every request.
pub fn router(node: Handle, registry: Arc<Registry>, token: Option<String>) -> axum::Router {
    let (router, api) = routes();
    let api = Arc::new(api);
    let router = router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let api = api.clone();
                async move { Json(api.as_ref().clone()) }
            }),
        )
        .fallback(|| async { ApiError::not_found("no such route") })
        .with_state(AppState {
            node,
            registry,
            last_bytes: Arc::default(),
        })
        .layer(middleware::map_response(json_errors));
    match token {
        Some(token) => router.layer(middleware::from_fn(move |req: Request, next: Next| {
            let token = token.clone();
            async move {
                let ok = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .is_some_and(|v| bearer_matches(v.as_bytes(), &token));
                if ok {
                    next.run(req).await
                } else {
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "unauthorized",
                        "missing or wrong bearer token",
                    )
                    .into_response()
                }
            }
        })),
        None => router,
    }
}

/// `Authorization: <scheme> <token>` with the scheme `Bearer` in any case (RFC 7235: schemes
/// are case-insensitive) and exactly `token`, compared in constant time.
fn bearer_matches(header: &[u8], token: &str) -> bool {
    let Some(space) = header.iter().position(|b| *b == b' ') else {
        return false;
    };
    let (scheme, given) = (&header[..space], header[space + 1..].trim_ascii());
    let token = token.as_bytes();
    scheme.eq_ignore_ascii_case(b"bearer")
        && given.len() == token.len()
        && given
            .iter()
            .zip(token)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Turns the error responses axum makes itself (405 with an empty body, 413 as text, ...)
/// into the API's JSON errors, with their text as the detail.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let reason = status.canonical_reason().unwrap_or("error").to_lowercase();
    let detail = match String::from_utf8_lossy(&body).trim() {
        "" => reason.clone(),
        text => text.to_owned(),
    };
    ApiError::new(status, &reason, detail).into_response()
}

/// A router serving `/metrics` alone (no token: it exposes counts, not control).
pub fn metrics_router(node: Handle, registry: Arc<Registry>) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(metrics::metrics))
        .fallback(|| async { ApiError::not_found("only /metrics here") })
        .with_state(AppState {
            node,
            registry,
            last_bytes: Arc::default(),
        })
}

/// The paths and methods of the OpenAPI document, as `METHOD /path` lines, sorted.
pub fn documented_routes() -> Vec<String> {
    let (_, api) = routes();
    let mut out = Vec::new();
    for (path, item) in &api.paths.paths {
        for (method, op) in [
            ("GET", &item.get),
            ("PUT", &item.put),
            ("PATCH", &item.patch),
            ("DELETE", &item.delete),
            ("POST", &item.post),
        ] {
            if op.is_some() {
                out.push(format!("{method} {path}"));
            }
        }
    }
    out.sort();
    out
}

/// Serves the admin API on `listener` until the node stops.
///
/// # Errors
///
/// If serving fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    node: Handle,
    registry: Arc<Registry>,
    token: Option<String>,
) -> anyhow::Result<()> {
    axum::serve(listener, router(node, registry, token)).await?;
    Ok(())
}
