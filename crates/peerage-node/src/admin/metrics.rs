//! `/metrics`: Prometheus metrics.

use axum::{
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};

use super::{ApiError, AppState};

/// Prometheus metrics (text format).
#[utoipa::path(get, path = "/metrics", responses((status = 200, content_type = "text/plain")))]
pub(super) async fn metrics(State(s): State<AppState>) -> Result<Response, ApiError> {
    use prometheus_client::encoding::text::{encode_eof, encode_registry};
    let mut text = String::new();
    encode_registry(&mut text, &s.registry)
        .and_then(|()| crate::metrics::encode_without_identify(&mut text, s.node.libp2p_registry()))
        .and_then(|()| encode_registry(&mut text, s.node.bandwidth_registry()))
        .and_then(|()| encode_eof(&mut text))
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
