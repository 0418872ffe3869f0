//! The multistream-select sniffer allocates the protocol name's buffer and nothing else per
//! stream (issue: "no allocation beyond the protocol name per stream"), counted with a counting
//! allocator.

#![allow(clippy::disallowed_methods)]

use std::{alloc::System, hint::black_box};

use peerage_core::rcmgr::multistream::{Role, Sniffed, Sniffer};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn msg(text: &str) -> Vec<u8> {
    let body = format!("{text}\n");
    let mut out = vec![u8::try_from(body.len()).unwrap()];
    out.extend_from_slice(body.as_bytes());
    out
}

/// Allocations and reallocations while a sniffer for `role` is fed by `feed` and dropped.
fn allocations(role: Role, feed: impl FnOnce(&mut Sniffer)) -> (usize, usize) {
    let region = Region::new(GLOBAL);
    let mut s = Sniffer::new(role);
    feed(&mut s);
    black_box(&s);
    drop(s);
    let stats = region.change();
    (stats.allocations, stats.reallocations)
}

#[test]
fn one_allocation_per_stream_the_protocol_name() {
    let header = msg("/multistream/1.0.0");
    let ping = msg("/ipfs/ping/1.0.0");
    let na = msg("na");
    let data = [7u8; 32];
    let proposals = [header.clone(), ping.clone()].concat();
    let refused_out = [header.clone(), msg("/a/1")].concat();
    let refused_in = [header.clone(), na].concat();
    let mut found = 0;

    // Dialer: header and proposal out, header and echo in, then data both ways.
    let counted = allocations(Role::Dialer, |s| {
        s.wrote(&header, |_| {});
        s.wrote(&ping, |e| {
            found += usize::from(e == Sniffed::Proposed("/ipfs/ping/1.0.0"))
        });
        s.read(&header, |_| {});
        s.read(&ping, |e| found += usize::from(e == Sniffed::Confirmed));
        s.wrote(&data, |_| {});
        s.read(&data, |_| {});
    });
    assert_eq!(counted, (1, 0));

    // Listener: our header, then our acceptance.
    let counted = allocations(Role::Listener, |s| {
        s.read(&proposals, |_| {});
        s.wrote(&header, |_| {});
        s.wrote(&ping, |e| {
            found += usize::from(e == Sniffed::Accepted("/ipfs/ping/1.0.0"))
        });
        s.wrote(&data, |_| {});
    });
    assert_eq!(counted, (1, 0));

    // A refused proposal first: its buffer is reused, and grows once for the longer name.
    let (allocated, reallocated) = allocations(Role::Dialer, |s| {
        s.wrote(&refused_out, |_| {});
        s.read(&refused_in, |_| {});
        s.wrote(&ping, |_| {});
    });
    assert_eq!(allocated + reallocated, 2);
    assert_eq!(found, 3);
}
