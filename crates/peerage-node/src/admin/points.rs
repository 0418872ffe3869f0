//! `/network/points`: the pool's points.

use std::time::Instant;

use axum::{
    Json,
    extract::{Path, Query, State},
    http::StatusCode,
};
use libp2p::{Multiaddr, Swarm};
use peerage::pool::{self, point};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Acl, ApiError, ApiResult, AppState, Filter, ago, parse_peer, parse_point};

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
    /// Why the last failed dial failed (libp2p's error), if it is among the node's last 64
    /// failures; in `GET /network/points/{point}` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// What a `PATCH` with `ban` or `open` did to the peers of the point's IP; absent
    /// otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers_changed: Option<PeersChanged>,
}

/// The peers an IP's ban or unban changed (peer IDs).
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct PeersChanged {
    /// Connected from the IP, disconnected by its ban.
    pub disconnected: Vec<String>,
    /// Banned by the IP's ban.
    pub banned: Vec<String>,
    /// Untrusted by the IP's ban.
    pub untrusted: Vec<String>,
    /// Unbanned by the IP's unban (those its ban banned, and those connected from it).
    pub unbanned: Vec<String>,
    /// Trusted again by the IP's unban (those its ban untrusted).
    pub trusted: Vec<String>,
}

fn ids(peers: &[libp2p::PeerId]) -> Vec<String> {
    peers.iter().map(ToString::to_string).collect()
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
        peers_changed: None,
        last_error: None,
    }
}

/// The known points, optionally only those in one state.
#[utoipa::path(get, path = "/network/points", params(Filter), responses((status = 200, body = [PointInfo])))]
pub(super) async fn list_points(
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
pub(super) async fn get_point(
    State(s): State<AppState>,
    Path(point): Path<String>,
) -> ApiResult<PointInfo> {
    let addr = parse_point(&point)?;
    let node = s.node.clone();
    s.node
        .call(move |swarm| {
            let (p, _) = pool::split_point(&addr).ok()?;
            let info = swarm.behaviour().pool().point(&p)?;
            Some(PointInfo {
                last_error: info
                    .last_failed_connection()
                    .and_then(|_| node.last_dial_error(&p)),
                ..point_info(swarm, &p, info)
            })
        })
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("unknown point {point}")))
}

/// The point's log: its last 100 events, oldest first (Octez `GET /network/points/{p}/log`).
#[utoipa::path(
    get,
    path = "/network/points/{point}/log",
    params(("point" = String, Path, description = "`ip:port` or a percent-encoded multiaddr")),
    responses((status = 200, body = [super::LogEvent]), (status = 404, body = ApiError))
)]
pub(super) async fn point_log(
    State(s): State<AppState>,
    Path(point): Path<String>,
) -> ApiResult<Vec<super::LogEvent>> {
    let addr = parse_point(&point)?;
    s.node
        .call(move |swarm| {
            let now = Instant::now();
            let (p, _) = pool::split_point(&addr).ok()?;
            let info = swarm.behaviour().pool().point(&p)?;
            Some(super::LogEvent::list(info.events(), now))
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
pub(super) async fn put_point(
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
    /// The ACL change; `ban` bans the point's IP and the peers connected from it (untrusting
    /// them), `open` unbans the IP and undoes what its ban did to those peers; the answer's
    /// `peers_changed` lists them.
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
pub(super) async fn patch_point(
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
            let (p, changed) = swarm.behaviour_mut().update_pool(|pool, now| {
                // Known from now on, whatever the change (Octez's trust registers it too).
                let p = pool.register_point(&addr, None, None, now)?;
                let mut changed = None;
                match patch.acl {
                    Some(Acl::Ban) => {
                        pool.untrust_point(&p);
                        if let Some(ip) = ip {
                            let ban = pool.ban_ip(ip, true);
                            changed = Some(PeersChanged {
                                disconnected: ids(&ban.disconnected),
                                banned: ids(&ban.banned),
                                untrusted: ids(&ban.untrusted),
                                ..PeersChanged::default()
                            });
                        }
                    }
                    Some(Acl::Trust) => {
                        pool.trust_point(&p, now)?;
                    }
                    Some(Acl::Open) => {
                        if let Some(ip) = ip {
                            let unban = pool.unban_ip(ip);
                            changed = Some(PeersChanged {
                                unbanned: ids(&unban.unbanned),
                                trusted: ids(&unban.trusted),
                                ..PeersChanged::default()
                            });
                        }
                        pool.untrust_point(&p);
                    }
                    None => {}
                }
                if let Some(id) = expected {
                    pool.set_expected_peer_id(&p, id, now)?;
                }
                Ok::<_, pool::Error>((p, changed))
            })?;
            let info = swarm.behaviour().pool().point(&p);
            Ok(info.map(|i| PointInfo {
                peers_changed: changed,
                ..point_info(swarm, &p, i)
            }))
        })
        .await?
        .map_err(|e: pool::Error| ApiError::conflict(e))?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("unknown point {point}")))
}
