//! The address book: eclipse-resistant tables of the addresses a node may dial (Bitcoin Core
//! `addrman`), network groups, and the choice of an inbound connection to evict.

pub mod asmap;
pub mod evict;
mod group;

pub use self::{
    asmap::Asmap,
    group::{Group, Grouping},
};
