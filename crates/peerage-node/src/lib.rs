//! The `peerage` node: `peerage run` and `peerage devnet`, as a library so that tests drive the
//! same code as the binary.

#![warn(missing_docs)]

pub mod admin;
pub mod cli;
pub mod client;
pub mod config;
pub mod devnet;
pub mod dnsaddr;
#[doc(hidden)]
pub mod fuzz;
pub mod metrics;
pub mod node;
pub mod run;
pub mod sim;
