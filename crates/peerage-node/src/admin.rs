//! The admin HTTP API (axum): Octez's `/network/...` resources (`spec/tezos_p2p.md` §11), the
//! connection manager and the resource manager, Prometheus metrics, and an OpenAPI document
//! generated from the routes (utoipa) at `/openapi.json`.
//!
//! Every handler reaches the node through [`Handle::call`], the event loop's bounded command
//! channel; no lock is shared with the event loop. Errors are JSON `{"error": ..., "detail":
//! ...}` with the status that fits: 400 for a bad path or body, 404 for an unknown peer or
//! point, 409 for a refused action, 401 without the token, 503 once the node has stopped.

use std::{net::IpAddr, sync::Arc, time::Instant};

use axum::{
    Json,
    extract::{Path, Query, Request, State},
    http::{StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use libp2p::{Multiaddr, PeerId, Swarm};
use peerage::{
    pool::{self, peer, point},
    rcmgr,
};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::node::Handle;

/// What the handlers share.
#[derive(Clone)]
struct AppState {
    node: Handle,
    registry: Arc<Registry>,
    /// The byte totals at the previous `/network/stat`, for the rates.
    last_bytes: Arc<std::sync::Mutex<Option<(Instant, u64, u64)>>>,
}

/// Bytes received and sent so far: the sums of libp2p-metrics'
/// `libp2p_bandwidth_bytes_total{direction}` over every transport.
fn bytes_total(registry: &Registry) -> (u64, u64) {
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, registry).is_err() {
        return (0, 0);
    }
    let (mut recv, mut sent) = (0, 0);
    for line in text
        .lines()
        .filter(|l| l.starts_with("libp2p_bandwidth_bytes_total{"))
    {
        let value = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0) as u64;
        if line.contains("direction=\"Inbound\"") {
            recv += value;
        } else if line.contains("direction=\"Outbound\"") {
            sent += value;
        }
    }
    (recv, sent)
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

/// `GET /network/self`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SelfInfo {
    /// The node's peer ID.
    pub peer_id: String,
    /// Its listen addresses.
    pub listen: Vec<String>,
}

/// The node's peer ID and listen addresses.
#[utoipa::path(get, path = "/network/self", responses((status = 200, body = SelfInfo)))]
async fn network_self(State(s): State<AppState>) -> ApiResult<SelfInfo> {
    let info = s
        .node
        .call(|swarm| SelfInfo {
            peer_id: swarm.local_peer_id().to_string(),
            listen: swarm.listeners().map(ToString::to_string).collect(),
        })
        .await?;
    Ok(Json(info))
}

/// `GET /network/stat`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NetworkStat {
    /// Running peers, as the maintenance counts them.
    pub connections: usize,
    /// Established connections the remote dialed.
    pub incoming_connections: usize,
    /// Established connections the node dialed.
    pub outgoing_connections: usize,
    /// The connection bounds: min, expected, max.
    pub bounds: [usize; 3],
    /// Known points.
    pub known_points: usize,
    /// Known peers.
    pub known_peers: usize,
    /// Bytes received since the node started (every transport).
    pub total_recv: u64,
    /// Bytes sent since the node started.
    pub total_sent: u64,
    /// Bytes per second received since the previous `/network/stat` (0 at the first).
    pub current_inflow: u64,
    /// Bytes per second sent since the previous `/network/stat` (0 at the first).
    pub current_outflow: u64,
}

/// Connection counts, bounds, bytes in and out and their rates.
#[utoipa::path(get, path = "/network/stat", responses((status = 200, body = NetworkStat)))]
async fn network_stat(State(s): State<AppState>) -> ApiResult<NetworkStat> {
    let stat = s
        .node
        .call(|swarm| {
            let b = swarm.behaviour();
            let incoming = b.connections().filter(|c| c.inbound).count();
            let bounds = b.bounds();
            NetworkStat {
                connections: b.active_connections(),
                incoming_connections: incoming,
                outgoing_connections: b.connections().count() - incoming,
                bounds: [bounds.min(), bounds.expected(), bounds.max()],
                known_points: b.pool().known_points(),
                known_peers: b.pool().known_peers(),
                total_recv: 0,
                total_sent: 0,
                current_inflow: 0,
                current_outflow: 0,
            }
        })
        .await?;
    let mut stat = stat;
    let now = Instant::now();
    let (recv, sent) = bytes_total(&s.registry);
    let mut last = s.last_bytes.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((then, r0, s0)) = *last {
        let secs = now.saturating_duration_since(then).as_secs_f64();
        if secs > 0.0 {
            stat.current_inflow = (recv.saturating_sub(r0) as f64 / secs) as u64;
            stat.current_outflow = (sent.saturating_sub(s0) as f64 / secs) as u64;
        }
    }
    *last = Some((now, recv, sent));
    stat.total_recv = recv;
    stat.total_sent = sent;
    Ok(Json(stat))
}

/// An established connection.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConnectionInfo {
    /// The peer.
    pub peer_id: String,
    /// Whether the remote dialed it.
    pub incoming: bool,
    /// The remote address.
    pub remote: String,
    /// The point the node dialed for it.
    pub point: Option<String>,
    /// Refused for lack of room, about to close.
    pub nacked: bool,
    /// Seconds since it was established.
    pub age_secs: f64,
}

fn connections_of(swarm: &Swarm<peerage::Behaviour>, only: Option<PeerId>) -> Vec<ConnectionInfo> {
    let now = Instant::now();
    swarm
        .behaviour()
        .connections()
        .filter(|c| only.is_none_or(|p| p == c.peer_id))
        .map(|c| ConnectionInfo {
            peer_id: c.peer_id.to_string(),
            incoming: c.inbound,
            remote: c.remote.to_string(),
            point: c.point.map(|p| p.to_string()),
            nacked: c.nacked,
            age_secs: now.saturating_duration_since(c.since).as_secs_f64(),
        })
        .collect()
}

/// The established connections.
#[utoipa::path(get, path = "/network/connections", responses((status = 200, body = [ConnectionInfo])))]
async fn list_connections(State(s): State<AppState>) -> ApiResult<Vec<ConnectionInfo>> {
    Ok(Json(
        s.node.call(|swarm| connections_of(swarm, None)).await?,
    ))
}

/// The connections with one peer.
#[utoipa::path(
    get,
    path = "/network/connections/{peer_id}",
    params(("peer_id" = String, Path, description = "The peer's ID")),
    responses((status = 200, body = [ConnectionInfo]), (status = 404, body = ApiError))
)]
async fn get_connection(
    State(s): State<AppState>,
    Path(peer_id): Path<String>,
) -> ApiResult<Vec<ConnectionInfo>> {
    let peer = parse_peer(&peer_id)?;
    let list = s
        .node
        .call(move |swarm| connections_of(swarm, Some(peer)))
        .await?;
    if list.is_empty() {
        return Err(ApiError::not_found(format!("no connection with {peer}")));
    }
    Ok(Json(list))
}

/// Closes every connection with a peer (Octez `Explicit_RPC` kick).
#[utoipa::path(
    delete,
    path = "/network/connections/{peer_id}",
    params(("peer_id" = String, Path, description = "The peer's ID")),
    responses((status = 204), (status = 404, body = ApiError))
)]
async fn delete_connection(
    State(s): State<AppState>,
    Path(peer_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let peer = parse_peer(&peer_id)?;
    let closed = s
        .node
        .call(move |swarm| swarm.disconnect_peer_id(peer).is_ok())
        .await?;
    if closed {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no connection with {peer}")))
    }
}

/// An address of a peer in the peerstore.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AddrInfo {
    /// The address.
    pub addr: String,
    /// Seconds to live; `null` while connected or permanent.
    pub ttl_secs: Option<f64>,
    /// Whether a signed peer record of the peer vouches for it.
    pub certified: bool,
}

/// A peer: the pool's state and the peerstore's facts.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PeerInfo {
    /// The peer's ID.
    pub peer_id: String,
    /// `accepted`, `running` or `disconnected`.
    pub state: String,
    /// Whether it is trusted.
    pub trusted: bool,
    /// Whether it is banned (blacklisted or greylisted); false for a trusted peer.
    pub banned: bool,
    /// Its score.
    pub score: f64,
    /// Its established connections.
    pub connections: usize,
    /// Seconds since the last established connection.
    pub last_established_secs_ago: Option<f64>,
    /// Seconds since the last disconnection.
    pub last_disconnection_secs_ago: Option<f64>,
    /// Seconds since the last failed dial.
    pub last_failed_secs_ago: Option<f64>,
    /// Its addresses (peerstore).
    pub addrs: Vec<AddrInfo>,
    /// Its protocols (peerstore).
    pub protocols: Vec<String>,
    /// Its latency EWMA, in milliseconds.
    pub latency_ms: Option<f64>,
    /// Its connection-manager tags.
    pub tags: std::collections::BTreeMap<String, i64>,
    /// Whether the connection manager protects it.
    pub protected: bool,
}

fn peer_info(swarm: &Swarm<peerage::Behaviour>, peer: PeerId, info: &peer::Info) -> PeerInfo {
    let b = swarm.behaviour();
    let now = Instant::now();
    let store = b.peerstore();
    let certified: Vec<Multiaddr> = store
        .peer_record(&peer, now)
        .and_then(|e| libp2p::core::PeerRecord::from_signed_envelope_interop(e).ok())
        .map(|r| r.addresses().to_vec())
        .unwrap_or_default();
    let addrs = store
        .addrs_with_ttl(&peer, now)
        .into_iter()
        .map(|e| AddrInfo {
            certified: certified.contains(&e.addr),
            ttl_secs: e
                .expiry
                .map(|t| t.saturating_duration_since(now).as_secs_f64()),
            addr: e.addr.to_string(),
        })
        .collect();
    let connmgr = b.connmgr();
    PeerInfo {
        peer_id: peer.to_string(),
        state: info.state().name().to_owned(),
        trusted: info.is_trusted(),
        banned: b.pool().is_peer_banned(&peer),
        score: b.pool().score(&peer, now).unwrap_or(0.0),
        connections: info.connections(),
        last_established_secs_ago: ago(info.last_established_connection().map(|c| c.1), now),
        last_disconnection_secs_ago: ago(info.last_disconnection().map(|c| c.1), now),
        last_failed_secs_ago: ago(info.last_failed_connection().map(|c| c.1), now),
        addrs,
        protocols: store.protocols(&peer),
        latency_ms: store.latency_ewma(&peer).map(|d| d.as_secs_f64() * 1e3),
        tags: connmgr.tag_info(&peer).map(|t| t.tags).unwrap_or_default(),
        protected: connmgr.is_protected(&peer, ""),
    }
}

/// A state filter (`?filter=running`).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct Filter {
    /// Only entries in this state (`requested`, `accepted`, `running`, `disconnected`).
    pub filter: Option<String>,
}

/// The known peers, optionally only those in one state.
#[utoipa::path(get, path = "/network/peers", params(Filter), responses((status = 200, body = [PeerInfo])))]
async fn list_peers(
    State(s): State<AppState>,
    Query(f): Query<Filter>,
) -> ApiResult<Vec<PeerInfo>> {
    let list = s
        .node
        .call(move |swarm| {
            let pool = swarm.behaviour().pool();
            let mut list: Vec<PeerInfo> = pool
                .peers()
                .filter(|(_, i)| f.filter.as_deref().is_none_or(|st| i.state().name() == st))
                .map(|(id, i)| peer_info(swarm, *id, i))
                .collect();
            list.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
            list
        })
        .await?;
    Ok(Json(list))
}

/// One peer, with the peerstore's facts.
#[utoipa::path(
    get,
    path = "/network/peers/{peer_id}",
    params(("peer_id" = String, Path, description = "The peer's ID")),
    responses((status = 200, body = PeerInfo), (status = 404, body = ApiError))
)]
async fn get_peer(State(s): State<AppState>, Path(peer_id): Path<String>) -> ApiResult<PeerInfo> {
    let peer = parse_peer(&peer_id)?;
    s.node
        .call(move |swarm| {
            let info = swarm.behaviour().pool().peer(&peer)?;
            Some(peer_info(swarm, peer, info))
        })
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("unknown peer {peer}")))
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

/// `PATCH /network/peers/{peer_id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PeerPatch {
    /// The ACL change.
    pub acl: Option<Acl>,
}

/// Bans, trusts or opens a peer.
#[utoipa::path(
    patch,
    path = "/network/peers/{peer_id}",
    params(("peer_id" = String, Path, description = "The peer's ID")),
    request_body = PeerPatch,
    responses((status = 200, body = PeerInfo), (status = 400, body = ApiError))
)]
async fn patch_peer(
    State(s): State<AppState>,
    Path(peer_id): Path<String>,
    body: Result<Json<PeerPatch>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<PeerInfo> {
    let peer = parse_peer(&peer_id)?;
    let Json(patch) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    s.node
        .call(move |swarm| {
            swarm
                .behaviour_mut()
                .update_pool(|pool, now| match patch.acl {
                    Some(Acl::Ban) => pool.ban_peer(peer),
                    Some(Acl::Trust) => pool.trust_peer(peer, now),
                    Some(Acl::Open) => {
                        pool.unban_peer(&peer);
                        pool.untrust_peer(&peer);
                    }
                    None => {}
                });
            let info = swarm.behaviour().pool().peer(&peer)?;
            Some(peer_info(swarm, peer, info))
        })
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("unknown peer {peer}")))
}

/// A point.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PointInfo {
    /// The point (multiaddr without `/p2p`).
    pub point: String,
    /// `disconnected`, `requested`, `accepted` or `running`.
    pub state: String,
    /// The peer at the point, when accepted or running.
    pub peer_id: Option<String>,
    /// Whether it is trusted.
    pub trusted: bool,
    /// Whether its IP is banned.
    pub banned: bool,
    /// The peer it must be.
    pub expected_peer_id: Option<String>,
    /// Seconds until the maintenance may dial it again (Octez's `greylisted_until`).
    pub reconnect_in_secs: Option<f64>,
    /// Seconds since the last established connection.
    pub last_established_secs_ago: Option<f64>,
    /// Seconds since the last failed dial.
    pub last_failed_secs_ago: Option<f64>,
}

fn point_info(swarm: &Swarm<peerage::Behaviour>, addr: &Multiaddr, p: &point::Info) -> PointInfo {
    let now = Instant::now();
    PointInfo {
        point: addr.to_string(),
        state: p.state().name().to_owned(),
        peer_id: p.state().peer_id().map(|id| id.to_string()),
        trusted: p.is_trusted(),
        banned: swarm.behaviour().pool().is_point_banned(addr, now),
        expected_peer_id: p.expected_peer_id().map(|id| id.to_string()),
        reconnect_in_secs: p
            .reconnection()
            .filter(|r| r.end > now)
            .map(|r| (r.end - now).as_secs_f64()),
        last_established_secs_ago: ago(p.last_established_connection().map(|c| c.1), now),
        last_failed_secs_ago: ago(p.last_failed_connection(), now),
    }
}

/// The known points, optionally only those in one state.
#[utoipa::path(get, path = "/network/points", params(Filter), responses((status = 200, body = [PointInfo])))]
async fn list_points(
    State(s): State<AppState>,
    Query(f): Query<Filter>,
) -> ApiResult<Vec<PointInfo>> {
    let list = s
        .node
        .call(move |swarm| {
            let mut list: Vec<PointInfo> = swarm
                .behaviour()
                .pool()
                .points()
                .filter(|(_, p)| f.filter.as_deref().is_none_or(|st| p.state().name() == st))
                .map(|(a, p)| point_info(swarm, a, p))
                .collect();
            list.sort_by(|a, b| a.point.cmp(&b.point));
            list
        })
        .await?;
    Ok(Json(list))
}

/// One point.
#[utoipa::path(
    get,
    path = "/network/points/{point}",
    params(("point" = String, Path, description = "`ip:port` or a percent-encoded multiaddr")),
    responses((status = 200, body = PointInfo), (status = 404, body = ApiError))
)]
async fn get_point(State(s): State<AppState>, Path(point): Path<String>) -> ApiResult<PointInfo> {
    let addr = parse_point(&point)?;
    s.node
        .call(move |swarm| {
            let (p, _) = pool::split_point(&addr).ok()?;
            let info = swarm.behaviour().pool().point(&p)?;
            Some(point_info(swarm, &p, info))
        })
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("unknown point {point}")))
}

/// Connects to a point now, whatever its backoff (Octez `PUT /network/points`).
#[utoipa::path(
    put,
    path = "/network/points/{point}",
    params(("point" = String, Path, description = "`ip:port` or a percent-encoded multiaddr")),
    responses((status = 202, body = PointInfo), (status = 409, body = ApiError))
)]
async fn put_point(
    State(s): State<AppState>,
    Path(point): Path<String>,
) -> Result<(StatusCode, Json<PointInfo>), ApiError> {
    let addr = parse_point(&point)?;
    s.node
        .call(move |swarm| {
            let p = swarm.behaviour_mut().connect(&addr)?;
            let info = swarm.behaviour().pool().point(&p).expect("just registered");
            Ok(point_info(swarm, &p, info))
        })
        .await?
        .map(|i| (StatusCode::ACCEPTED, Json(i)))
        .map_err(|e: pool::Error| ApiError::conflict(e))
}

/// `PATCH /network/points/{point}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PointPatch {
    /// The ACL change; `ban` bans the point's IP and the peers connected from it.
    pub acl: Option<Acl>,
    /// The peer ID the point must have.
    pub peer_id: Option<String>,
}

/// Bans, trusts or opens a point, or sets its expected peer ID; the point is registered if it
/// was unknown.
#[utoipa::path(
    patch,
    path = "/network/points/{point}",
    params(("point" = String, Path, description = "`ip:port` or a percent-encoded multiaddr")),
    request_body = PointPatch,
    responses((status = 200, body = PointInfo), (status = 400, body = ApiError))
)]
async fn patch_point(
    State(s): State<AppState>,
    Path(point): Path<String>,
    body: Result<Json<PointPatch>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<PointInfo> {
    let addr = parse_point(&point)?;
    let Json(patch) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let expected = patch.peer_id.as_deref().map(parse_peer).transpose()?;
    let ip = pool::ip_of(&addr);
    s.node
        .call(move |swarm| {
            let p = swarm.behaviour_mut().update_pool(|pool, now| {
                // Known from now on, whatever the change (Octez's trust registers it too).
                let p = pool.register_point(&addr, None, None, now)?;
                match patch.acl {
                    Some(Acl::Ban) => {
                        pool.untrust_point(&p);
                        if let Some(ip) = ip {
                            pool.ban_ip(ip, true);
                        }
                    }
                    Some(Acl::Trust) => {
                        pool.trust_point(&p, now)?;
                    }
                    Some(Acl::Open) => {
                        if let Some(ip) = ip {
                            pool.unban_ip(ip);
                        }
                        pool.untrust_point(&p);
                    }
                    None => {}
                }
                if let Some(id) = expected {
                    pool.set_expected_peer_id(&p, id, now)?;
                }
                Ok::<_, pool::Error>(p)
            })?;
            let info = swarm.behaviour().pool().point(&p);
            Ok(info.map(|i| point_info(swarm, &p, i)))
        })
        .await?
        .map_err(|e: pool::Error| ApiError::conflict(e))?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("unknown point {point}")))
}

/// `GET /network/greylist/ips`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GreylistIps {
    /// The greylisted IPs, oldest first.
    pub ips: Vec<String>,
    /// Seconds since the list first dropped an entry for lack of room (Octez's
    /// `not_reliable_since`).
    pub not_reliable_since_secs_ago: Option<f64>,
}

/// The greylisted IPs.
#[utoipa::path(get, path = "/network/greylist/ips", responses((status = 200, body = GreylistIps)))]
async fn greylist_ips(State(s): State<AppState>) -> ApiResult<GreylistIps> {
    let list = s
        .node
        .call(|swarm| {
            let now = Instant::now();
            let acl = swarm.behaviour().pool().acl();
            GreylistIps {
                ips: acl.greylisted_ips(now).map(|ip| ip.to_string()).collect(),
                not_reliable_since_secs_ago: ago(acl.not_reliable_since(), now),
            }
        })
        .await?;
    Ok(Json(list))
}

/// The greylisted peers.
#[utoipa::path(get, path = "/network/greylist/peers", responses((status = 200, body = [String])))]
async fn greylist_peers(State(s): State<AppState>) -> ApiResult<Vec<String>> {
    let list = s
        .node
        .call(|swarm| {
            let acl = swarm.behaviour().pool().acl();
            acl.greylisted_peers().map(|p| p.to_string()).collect()
        })
        .await?;
    Ok(Json(list))
}

/// Clears the greylists (Octez's `DELETE /network/greylist`, which also clears the bans:
/// here only the greylists go).
#[utoipa::path(delete, path = "/network/greylist", responses((status = 204)))]
async fn clear_greylist(State(s): State<AppState>) -> Result<StatusCode, ApiError> {
    s.node
        .call(|swarm| {
            swarm
                .behaviour_mut()
                .update_pool(|pool, _| pool.clear_greylist())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /connmgr`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConnmgrInfo {
    /// Low watermark.
    pub low_water: usize,
    /// High watermark.
    pub high_water: usize,
    /// Hard cap on connections of unprotected peers.
    pub hard_cap: Option<usize>,
    /// Grace period, in seconds.
    pub grace_period_secs: f64,
    /// Established connections.
    pub connections: usize,
    /// Trims run.
    pub trims: u64,
    /// Peers closed by trims.
    pub pruned_peers: u64,
    /// Protected peers and their protection tags.
    pub protected: std::collections::BTreeMap<String, Vec<String>>,
}

/// The connection manager: watermarks, counts, protected peers.
#[utoipa::path(get, path = "/connmgr", responses((status = 200, body = ConnmgrInfo)))]
async fn connmgr_info(State(s): State<AppState>) -> ApiResult<ConnmgrInfo> {
    let cm = s.node.call(|swarm| swarm.behaviour().connmgr()).await?;
    let (config, info, stats) = (cm.config(), cm.info(), cm.stats());
    Ok(Json(ConnmgrInfo {
        low_water: config.low_water(),
        high_water: config.high_water(),
        hard_cap: info.hard_cap,
        grace_period_secs: config.grace_period().as_secs_f64(),
        connections: info.connections,
        trims: stats.trims,
        pruned_peers: stats.pruned_peers,
        protected: cm
            .protected_peers()
            .into_iter()
            .map(|(p, t)| (p.to_string(), t))
            .collect(),
    }))
}

/// `PUT /connmgr/tags/{peer_id}/{tag}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagValue {
    /// The tag's value.
    pub value: i64,
}

/// Sets a tag on a peer (go `TagPeer`).
#[utoipa::path(
    put,
    path = "/connmgr/tags/{peer_id}/{tag}",
    params(("peer_id" = String, Path, description = "The peer's ID"), ("tag" = String, Path, description = "The tag")),
    request_body = TagValue,
    responses((status = 204), (status = 400, body = ApiError))
)]
async fn put_tag(
    State(s): State<AppState>,
    Path((peer_id, tag)): Path<(String, String)>,
    body: Result<Json<TagValue>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let peer = parse_peer(&peer_id)?;
    let Json(v) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let cm = s.node.call(|swarm| swarm.behaviour().connmgr()).await?;
    cm.tag_peer(peer, &tag, v.value);
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a tag from a peer (go `UntagPeer`).
#[utoipa::path(
    delete,
    path = "/connmgr/tags/{peer_id}/{tag}",
    params(("peer_id" = String, Path, description = "The peer's ID"), ("tag" = String, Path, description = "The tag")),
    responses((status = 204), (status = 400, body = ApiError))
)]
async fn delete_tag(
    State(s): State<AppState>,
    Path((peer_id, tag)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let peer = parse_peer(&peer_id)?;
    let cm = s.node.call(|swarm| swarm.behaviour().connmgr()).await?;
    cm.untag_peer(&peer, &tag);
    Ok(StatusCode::NO_CONTENT)
}

/// Protects a peer under a tag (go `Protect`).
#[utoipa::path(
    put,
    path = "/connmgr/protect/{peer_id}/{tag}",
    params(("peer_id" = String, Path, description = "The peer's ID"), ("tag" = String, Path, description = "The protection tag")),
    responses((status = 204), (status = 400, body = ApiError))
)]
async fn put_protect(
    State(s): State<AppState>,
    Path((peer_id, tag)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let peer = parse_peer(&peer_id)?;
    let cm = s.node.call(|swarm| swarm.behaviour().connmgr()).await?;
    cm.protect(peer, &tag);
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a protection tag (go `Unprotect`).
#[utoipa::path(
    delete,
    path = "/connmgr/protect/{peer_id}/{tag}",
    params(("peer_id" = String, Path, description = "The peer's ID"), ("tag" = String, Path, description = "The protection tag")),
    responses((status = 204), (status = 400, body = ApiError))
)]
async fn delete_protect(
    State(s): State<AppState>,
    Path((peer_id, tag)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let peer = parse_peer(&peer_id)?;
    let cm = s.node.call(|swarm| swarm.behaviour().connmgr()).await?;
    cm.unprotect(&peer, &tag);
    Ok(StatusCode::NO_CONTENT)
}

fn resource_manager(swarm: &mut Swarm<peerage::Behaviour>) -> Option<rcmgr::ResourceManager> {
    swarm.behaviour().resource_manager().cloned()
}

async fn rcmgr_of(s: &AppState) -> Result<rcmgr::ResourceManager, ApiError> {
    s.node
        .call(resource_manager)
        .await?
        .ok_or_else(|| ApiError::not_found("the node has no resource manager"))
}

/// Every scope's usage and limits (go `ResourceManagerStat`).
#[utoipa::path(get, path = "/rcmgr/stat", responses((status = 200, body = Object)))]
async fn rcmgr_stat(State(s): State<AppState>) -> Result<Json<rcmgr::Stat>, ApiError> {
    Ok(Json(rcmgr_of(&s).await?.stat()))
}

/// The limits, in go-libp2p's JSON format.
#[utoipa::path(get, path = "/rcmgr/limits", responses((status = 200, body = Object)))]
async fn get_limits(State(s): State<AppState>) -> Result<Response, ApiError> {
    let json = rcmgr_of(&s).await?.limits().to_json();
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}

/// Replaces the limits, from go-libp2p's JSON format; what the body leaves out comes from the
/// current limits. A bad body changes nothing.
#[utoipa::path(
    put,
    path = "/rcmgr/limits",
    request_body(content = Object, description = "go-libp2p limits JSON"),
    responses((status = 200, body = Object), (status = 400, body = ApiError))
)]
async fn put_limits(State(s): State<AppState>, body: String) -> Result<Response, ApiError> {
    let rm = rcmgr_of(&s).await?;
    let limits = rcmgr::LimitConfig::from_json(&body, &rm.limits())
        .map_err(|e| ApiError::bad_request(format!("limits: {e}")))?;
    rm.set_limits(limits);
    let json = rm.limits().to_json();
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}

/// Prometheus metrics (text format).
#[utoipa::path(get, path = "/metrics", responses((status = 200, content_type = "text/plain")))]
async fn metrics(State(s): State<AppState>) -> Result<Response, ApiError> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &s.registry)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "metrics", e))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
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
        .routes(routes!(network_self))
        .routes(routes!(network_stat))
        .routes(routes!(list_connections))
        .routes(routes!(get_connection, delete_connection))
        .routes(routes!(list_peers))
        .routes(routes!(get_peer, patch_peer))
        .routes(routes!(list_points))
        .routes(routes!(get_point, put_point, patch_point))
        .routes(routes!(greylist_ips))
        .routes(routes!(greylist_peers))
        .routes(routes!(clear_greylist))
        .routes(routes!(connmgr_info))
        .routes(routes!(put_tag, delete_tag))
        .routes(routes!(put_protect, delete_protect))
        .routes(routes!(rcmgr_stat))
        .routes(routes!(get_limits, put_limits))
        .routes(routes!(metrics))
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
        });
    match token {
        Some(token) => router.layer(middleware::from_fn(move |req: Request, next: Next| {
            let token = token.clone();
            async move {
                let expected = format!("Bearer {token}");
                let ok = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .is_some_and(|v| v.as_bytes() == expected.as_bytes());
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

/// A router serving `/metrics` alone (no token: it exposes counts, not control).
pub fn metrics_router(node: Handle, registry: Arc<Registry>) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(metrics))
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
