//! The cost of reading a stream's multistream-select negotiation as it goes by
//! ([`Sniffer`]), side by side with a pass-through that only hands the same slices on, in one
//! run. Each iteration is one stream: a new sniffer fed the negotiation as rust-libp2p writes
//! and reads it (one slice per message), then 32 bytes of data each way (ping's payload).
//!
//! `cargo bench -p peerage-core --bench multistream`; figures in `benches/README.md`.

#![allow(missing_docs, clippy::disallowed_methods)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use peerage_core::rcmgr::multistream::{Role, Sniffed, Sniffer};

fn msg(text: &str) -> Vec<u8> {
    let body = format!("{text}\n");
    let mut out = vec![u8::try_from(body.len()).unwrap()];
    out.extend_from_slice(body.as_bytes());
    out
}

/// (we wrote?, bytes) in the order they pass.
type Script = Vec<(bool, Vec<u8>)>;

fn dialer(protocol: &str) -> Script {
    let h = msg("/multistream/1.0.0");
    vec![
        (true, h.clone()),
        (true, msg(protocol)),
        (false, h),
        (false, msg(protocol)),
        (true, vec![7; 32]),
        (false, vec![7; 32]),
    ]
}

fn listener(protocol: &str) -> Script {
    let h = msg("/multistream/1.0.0");
    vec![
        (false, h.clone()),
        (false, msg(protocol)),
        (true, h),
        (true, msg(protocol)),
        (false, vec![7; 32]),
        (true, vec![7; 32]),
    ]
}

fn sniff(role: Role, script: &Script) -> usize {
    let mut s = Sniffer::new(role);
    let mut named = 0;
    let mut f = |e: Sniffed<'_>| {
        if let Sniffed::Proposed(p) | Sniffed::Accepted(p) = e {
            named += p.len();
        }
    };
    for (wrote, bytes) in script {
        if *wrote {
            s.wrote(black_box(bytes), &mut f);
        } else {
            s.read(black_box(bytes), &mut f);
        }
    }
    named
}

fn pass_through(script: &Script) -> usize {
    let mut n = 0;
    for (_, bytes) in script {
        n += black_box(&bytes[..]).len();
    }
    n
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("multistream");
    for (name, role, script) in [
        (
            "dialer /ipfs/ping/1.0.0",
            Role::Dialer,
            dialer("/ipfs/ping/1.0.0"),
        ),
        (
            "listener /ipfs/id/1.0.0",
            Role::Listener,
            listener("/ipfs/id/1.0.0"),
        ),
    ] {
        g.bench_function(format!("pass-through, {name}"), |b| {
            b.iter(|| pass_through(&script))
        });
        g.bench_function(format!("sniffer, {name}"), |b| {
            b.iter(|| sniff(role, &script))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
