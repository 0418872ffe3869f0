//! `/rcmgr`: the resource manager's usage and limits.

use axum::{
    Json,
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};
use libp2p::Swarm;
use peerage::rcmgr;

use super::{ApiError, AppState};

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
pub(super) async fn rcmgr_stat(State(s): State<AppState>) -> Result<Json<rcmgr::Stat>, ApiError> {
    Ok(Json(rcmgr_of(&s).await?.stat()))
}

/// The limits, in go-libp2p's JSON format.
#[utoipa::path(get, path = "/rcmgr/limits", responses((status = 200, body = Object)))]
pub(super) async fn get_limits(State(s): State<AppState>) -> Result<Response, ApiError> {
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
pub(super) async fn put_limits(
    State(s): State<AppState>,
    body: String,
) -> Result<Response, ApiError> {
    let rm = rcmgr_of(&s).await?;
    let limits = rcmgr::LimitConfig::from_json(&body, &rm.limits())
        .map_err(|e| ApiError::bad_request(format!("limits: {e}")))?;
    rm.set_limits(limits);
    let json = rm.limits().to_json();
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}
