//! `/connmgr`: the connection manager, its tags and protections.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, ApiResult, AppState, parse_peer};

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
pub(super) async fn connmgr_info(State(s): State<AppState>) -> ApiResult<ConnmgrInfo> {
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
pub(super) async fn put_tag(
    State(s): State<AppState>,
    Path((peer_id, tag)): Path<(String, String)>,
    body: Result<Json<TagValue>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let peer = parse_peer(&peer_id)?;
    let Json(v) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let cm = s.node.call(|swarm| swarm.behaviour().connmgr()).await?;
    cm.tag_peer(&peer, &tag, v.value);
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a tag from a peer (go `UntagPeer`).
#[utoipa::path(
    delete,
    path = "/connmgr/tags/{peer_id}/{tag}",
    params(("peer_id" = String, Path, description = "The peer's ID"), ("tag" = String, Path, description = "The tag")),
    responses((status = 204), (status = 400, body = ApiError))
)]
pub(super) async fn delete_tag(
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
pub(super) async fn put_protect(
    State(s): State<AppState>,
    Path((peer_id, tag)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let peer = parse_peer(&peer_id)?;
    let cm = s.node.call(|swarm| swarm.behaviour().connmgr()).await?;
    cm.protect(&peer, &tag);
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a protection tag (go `Unprotect`).
#[utoipa::path(
    delete,
    path = "/connmgr/protect/{peer_id}/{tag}",
    params(("peer_id" = String, Path, description = "The peer's ID"), ("tag" = String, Path, description = "The protection tag")),
    responses((status = 204), (status = 400, body = ApiError))
)]
pub(super) async fn delete_protect(
    State(s): State<AppState>,
    Path((peer_id, tag)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let peer = parse_peer(&peer_id)?;
    let cm = s.node.call(|swarm| swarm.behaviour().connmgr()).await?;
    cm.unprotect(&peer, &tag);
    Ok(StatusCode::NO_CONTENT)
}
