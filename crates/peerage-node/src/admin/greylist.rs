//! `/network/greylist`: the pool's greylists.

use std::time::Instant;

use axum::{Json, extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, ApiResult, AppState, ago};

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
pub(super) async fn greylist_ips(State(s): State<AppState>) -> ApiResult<GreylistIps> {
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
pub(super) async fn greylist_peers(State(s): State<AppState>) -> ApiResult<Vec<String>> {
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
pub(super) async fn clear_greylist(State(s): State<AppState>) -> Result<StatusCode, ApiError> {
    s.node
        .call(|swarm| swarm.behaviour_mut().clear_greylist())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
