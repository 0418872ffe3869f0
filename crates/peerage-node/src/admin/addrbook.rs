//! `/network/addrbook`: the address book's tables and the diversity of the connections.

use axum::{Json, extract::State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiResult, AppState};

/// `GET /network/addrbook`. Counts are unique addresses, not slots (an address may fill up to
/// 8 slots of `new`; Bitcoin Core PR #36310 is an operator misled by the difference).
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct AddrbookInfo {
    /// Whether the node keeps an address book (`[addrbook] enabled`).
    pub enabled: bool,
    /// Addresses in `new` (heard of).
    pub new: usize,
    /// Occupied slots of `new`.
    pub new_slots: usize,
    /// Addresses in `tried` (connected to).
    pub tried: usize,
    /// Network groups with an address in `new`.
    pub new_groups: usize,
    /// Network groups with an address in `tried`.
    pub tried_groups: usize,
    /// The largest group's share of `new`, 0 to 1.
    pub new_largest_group_share: f64,
    /// The largest group's share of `tried`, 0 to 1.
    pub tried_largest_group_share: f64,
    /// The largest group's share of the outbound connections, 0 to 1.
    pub outbound_largest_group_share: f64,
    /// The largest group's share of the inbound connections, 0 to 1.
    pub inbound_largest_group_share: f64,
    /// Addresses waiting for a test-before-evict probe of the tried entry they would replace.
    pub collisions: usize,
    /// The outbound peers that would be saved as anchors now (the two held longest).
    pub anchors: Vec<String>,
}

/// The address book's table sizes and the diversity of the tables and connections.
#[utoipa::path(get, path = "/network/addrbook", responses((status = 200, body = AddrbookInfo)))]
pub(super) async fn addrbook(State(s): State<AppState>) -> ApiResult<AddrbookInfo> {
    let info = s
        .node
        .call(|swarm| {
            let machine = swarm.behaviour().machine();
            let Some((stats, outbound, inbound)) = machine.addrbook_stats() else {
                return AddrbookInfo::default();
            };
            AddrbookInfo {
                enabled: true,
                new: stats.new,
                new_slots: stats.new_slots,
                tried: stats.tried,
                new_groups: stats.new_groups,
                tried_groups: stats.tried_groups,
                new_largest_group_share: stats.new_largest_group_share,
                tried_largest_group_share: stats.tried_largest_group_share,
                outbound_largest_group_share: outbound,
                inbound_largest_group_share: inbound,
                collisions: stats.collisions,
                anchors: machine.anchors().iter().map(ToString::to_string).collect(),
            }
        })
        .await?;
    Ok(Json(info))
}
