//! `/network/self`, `/network/stat` and `/network/connections`: the node, its counts and its
//! established connections.

use std::time::Instant;

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use libp2p::{PeerId, Swarm};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, ApiResult, AppState, parse_peer};

/// Bytes received and sent so far: the sums of libp2p-metrics'
/// `libp2p_bandwidth_bytes_total{direction}` over every transport, from the registry that holds
/// them alone (a few lines to encode, whatever the number of peers).
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
pub(super) async fn network_self(State(s): State<AppState>) -> ApiResult<SelfInfo> {
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
pub(super) async fn network_stat(State(s): State<AppState>) -> ApiResult<NetworkStat> {
    // Published by the event loop at each turn: no call into it.
    let c = s.node.counts();
    let mut stat = NetworkStat {
        connections: c.active,
        incoming_connections: c.incoming,
        outgoing_connections: c.outgoing,
        bounds: c.bounds,
        known_points: c.known_points,
        known_peers: c.known_peers,
        total_recv: 0,
        total_sent: 0,
        current_inflow: 0,
        current_outflow: 0,
    };
    let now = Instant::now();
    let (recv, sent) = bytes_total(s.node.bandwidth_registry());
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
pub(super) async fn list_connections(State(s): State<AppState>) -> ApiResult<Vec<ConnectionInfo>> {
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
pub(super) async fn get_connection(
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
pub(super) async fn delete_connection(
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

/// `GET /network/log` filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct LogFilter {
    /// Only lines about this peer.
    pub peer: Option<String>,
    /// Only lines about this point (a multiaddr, or `ip:port`).
    pub point: Option<String>,
}

/// The node's events as they happen (Octez's `GET /network/log`): server-sent events, one JSON
/// object per `data:` line (`time`, `event`, `peer`, `point`, `detail`). A reader more than
/// 1,024 lines behind skips the lines it missed.
#[utoipa::path(
    get,
    path = "/network/log",
    params(LogFilter),
    responses((status = 200, content_type = "text/event-stream", body = String))
)]
pub(super) async fn network_log(
    State(s): State<AppState>,
    axum::extract::Query(f): axum::extract::Query<LogFilter>,
) -> Result<
    axum::response::sse::Sse<
        impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
    >,
    ApiError,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use tokio::sync::broadcast::error::RecvError;
    let peer = f
        .peer
        .as_deref()
        .map(super::parse_peer)
        .transpose()?
        .map(|p| p.to_string());
    let point = f
        .point
        .as_deref()
        .map(super::parse_point)
        .transpose()?
        .map(|p| p.to_string());
    let rx = s.node.subscribe_log();
    let stream = futures::stream::unfold(rx, move |mut rx| {
        let (peer, point) = (peer.clone(), point.clone());
        async move {
            loop {
                match rx.recv().await {
                    Ok(line) => {
                        if peer.as_ref().is_some_and(|p| line.peer.as_ref() != Some(p))
                            || point
                                .as_ref()
                                .is_some_and(|p| !about_point(line.point.as_deref(), p))
                        {
                            continue;
                        }
                        let data = serde_json::to_string(&*line).unwrap_or_default();
                        return Some((Ok(Event::default().data(data)), rx));
                    }
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Whether a log line's point is `filter`, or `filter` followed by more (`/p2p/...`): not
/// `/tcp/1` for `/tcp/12`.
fn about_point(point: Option<&str>, filter: &str) -> bool {
    point
        .and_then(|p| p.strip_prefix(filter))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_point_filter_matches_the_point_and_its_suffixes_only() {
        let p = "/ip4/10.0.0.1/tcp/1";
        assert!(super::about_point(Some(p), p));
        assert!(super::about_point(
            Some("/ip4/10.0.0.1/tcp/1/p2p/12D3KooW"),
            p
        ));
        assert!(!super::about_point(Some("/ip4/10.0.0.1/tcp/12"), p));
        assert!(!super::about_point(Some("/ip4/10.0.0.2/tcp/1"), p));
        assert!(!super::about_point(None, p));
    }
}
