//! Peerage's network simulator: N node machines in one process over a modelled network, on a
//! virtual clock, from one RNG seed.
//!
//! It drives exactly the node machine that `peerage run` drives
//! ([`peerage_core::node::Machine`]), with the connection manager's core beside it, and
//! replaces sockets by messages whose delays come from the model: each node has an IPv4 (or
//! IPv6) address in a network group, a latency class, and may be unreachable (behind NAT);
//! nodes join staggered, leave and are replaced (churn), partitions open and heal, dials fail,
//! and adversarial nodes lie in their answers, flood inbound or never answer
//! ([`scenario`]). Signatures go through a counted stand-in verifier
//! ([`peerage_core::node::Unsigned`]).
//!
//! [`eclipse`] drives one node machine alone, under an eclipse attack, with the rest of the
//! network modelled: how much of its outbound connections an attacker captures, with the
//! address book and without.
//!
//! A run is deterministic: the same scenario and seed give a byte-identical event log, whose
//! BLAKE3 hash the [`Report`] carries, whatever the number of threads (see [`engine`]'s
//! windows).
//!
//! ```
//! use peerage_sim::{Options, Scenario, run};
//!
//! let scenario = Scenario::built_in("devnet").unwrap();
//! let report = run(Options::new(scenario).with_seed(7)).unwrap();
//! assert_eq!(report.giant_component, 1.0);
//! ```

#![warn(missing_docs)]
// The simulator reads the wall clock for its base instant and the wall time it reports; the
// node machines it drives never do.
#![allow(clippy::disallowed_methods)]

pub mod eclipse;
pub mod engine;
mod node;
pub mod report;
pub mod scenario;
mod world;

pub use self::{
    eclipse::{Comparison, EclipseOptions, EclipseReport},
    engine::{Error, Options, run},
    report::Report,
    scenario::Scenario,
};
