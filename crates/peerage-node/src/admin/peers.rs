//! `/network/peers`: the pool's peers, with the peerstore's facts.

use std::time::Instant;

use axum::{
    Json,
    extract::{Path, Query, State},
};
use libp2p::{Multiaddr, PeerId, Swarm};
use peerage::pool::peer;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Acl, ApiError, ApiResult, AppState, Filter, ago, parse_peer};

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
    /// The agent version its identify announced (peerstore metadata `AgentVersion`, as go).
    pub agent_version: Option<String>,
    /// Its latency EWMA, in milliseconds.
    pub latency_ms: Option<f64>,
    /// Its connection-manager tags.
    pub tags: std::collections::BTreeMap<String, i64>,
    /// Whether the connection manager protects it.
    pub protected: bool,
}

fn peer_info(swarm: &Swarm<peerage::Behaviour>, peer: PeerId, info: &peer::Info) -> PeerInfo {
    let b = swarm.behaviour();
    // One time for every read, so that the TTLs left are of the same moment.
    let store = b.peerstore().store();
    let now = b.peerstore().now();
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
        agent_version: store.get::<String>(&peer, peerage::AGENT_VERSION).ok(),
        latency_ms: store.latency_ewma(&peer).map(|d| d.as_secs_f64() * 1e3),
        tags: connmgr.tag_info(&peer).map(|t| t.tags).unwrap_or_default(),
        protected: connmgr.is_protected(&peer, ""),
    }
}

/// The known peers, optionally only those in one state.
#[utoipa::path(get, path = "/network/peers", params(Filter), responses((status = 200, body = [PeerInfo])))]
pub(super) async fn list_peers(
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
pub(super) async fn get_peer(
    State(s): State<AppState>,
    Path(peer_id): Path<String>,
) -> ApiResult<PeerInfo> {
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

/// The peer's log: its last 100 events, oldest first (Octez `GET /network/peers/{id}/log`).
#[utoipa::path(
    get,
    path = "/network/peers/{peer_id}/log",
    params(("peer_id" = String, Path, description = "The peer's ID")),
    responses((status = 200, body = [super::LogEvent]), (status = 404, body = ApiError))
)]
pub(super) async fn peer_log(
    State(s): State<AppState>,
    Path(peer_id): Path<String>,
) -> ApiResult<Vec<super::LogEvent>> {
    let peer = parse_peer(&peer_id)?;
    s.node
        .call(move |swarm| {
            let now = Instant::now();
            let info = swarm.behaviour().pool().peer(&peer)?;
            Some(super::LogEvent::list(info.events(), now))
        })
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("unknown peer {peer}")))
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
pub(super) async fn patch_peer(
    State(s): State<AppState>,
    Path(peer_id): Path<String>,
    body: Result<Json<PeerPatch>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<PeerInfo> {
    let peer = parse_peer(&peer_id)?;
    let Json(patch) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    s.node
        .call(move |swarm| {
            let b = swarm.behaviour_mut();
            match patch.acl {
                Some(Acl::Ban) => b.ban_peer(&peer),
                Some(Acl::Trust) => b.trust_peer(&peer),
                Some(Acl::Open) => {
                    b.unban_peer(&peer);
                    b.untrust_peer(&peer);
                }
                None => {}
            }
            let info = swarm.behaviour().pool().peer(&peer)?;
            Some(peer_info(swarm, peer, info))
        })
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("unknown peer {peer}")))
}
