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
/// current limits. They are checked as at startup (the system's connection limit not below the
/// connection manager's high water) and saved in the data directory for the next start (a node
/// run with `--ephemeral` applies them without saving them). A bad body, or one that cannot be
/// saved, changes nothing.
#[utoipa::path(
    put,
    path = "/rcmgr/limits",
    request_body(content = Object, description = "go-libp2p limits JSON"),
    responses(
        (status = 200, body = Object),
        (status = 400, body = ApiError),
        (status = 500, body = ApiError)
    )
)]
pub(super) async fn put_limits(
    State(s): State<AppState>,
    body: String,
) -> Result<Response, ApiError> {
    let rm = rcmgr_of(&s).await?;
    let limits = rcmgr::LimitConfig::from_json(&body, &rm.limits())
        .map_err(|e| ApiError::bad_request(format!("limits: {e}")))?;
    // Checked as startup checks them: a set that the next start would refuse is refused now.
    s.node
        .check_limits(&limits)
        .map_err(|e| ApiError::bad_request(format!("limits: {e:#}")))?;
    let json = limits.to_json();
    // Saved before they apply: limits that could not be kept are not applied either.
    if let Some(path) = s.node.limits_file() {
        let (path, text) = (path.to_owned(), json.clone());
        tokio::task::spawn_blocking(move || save_atomically(&path, &text))
            .await
            .map_err(|e| ApiError::internal(format!("saving the limits: {e}")))?
            .map_err(|e| ApiError::internal(format!("saving the limits: {e:#}")))?;
    }
    rm.set_limits(limits);
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}

/// Writes `text` to `path` through a temporary file renamed over it: a crash leaves the old
/// file or the new one, never half of one.
fn save_atomically(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}
