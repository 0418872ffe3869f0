//! The cost of reading a stream's multistream-select negotiation as it goes by
//! ([`Sniffer`]), side by side with a pass-through that only hands the same slices on, in one
//! run. Each iteration is one stream: a new sniffer fed the negotiation as rust-libp2p writes
//! and reads it (one slice per message), then 32 bytes of data each way (ping's payload).
//!
//! Then the whole cost a muxer stream adds to the resource manager, per stream: opened through
//! its connection's counter and closed (what the muxer did before it learnt protocols, with
//! its window), against the same plus the negotiation sniffed and the stream attached to its
//! protocol and service (go's `SetProtocol` and `SetService`), on a manager holding 1,000 peers.
//!
//! `cargo bench -p peerage-core --bench multistream`; figures in `benches/README.md`.

#![allow(missing_docs, clippy::disallowed_methods)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use peerage_core::{
    PeerId,
    rcmgr::{
        Config, Direction, IpLimits, LimitConfig, RateLimits, ResourceManager, StreamCounter,
        multistream::{Role, Sniffed, Sniffer},
    },
};

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

    let mut g = c.benchmark_group("muxer stream");
    let rm = ResourceManager::new(
        Config::new()
            .with_limits(LimitConfig::unlimited())
            .with_ip_limits(IpLimits::disabled())
            .with_rate_limits(RateLimits::disabled()),
    )
    .unwrap();
    let counters: Vec<StreamCounter> = (0..1000)
        .map(|i| {
            let remote = format!("/ip4/10.0.{}.{}/tcp/1", i / 256, i % 256);
            rm.stream_counter(PeerId::random(), remote.parse().unwrap())
        })
        .collect();
    // Each peer holds a ping stream, as between pings, so that its protocol scopes live.
    let held: Vec<_> = counters
        .iter()
        .map(|c| {
            let (mut s, w) = c.open_stream(Direction::Outbound, 256 * 1024).unwrap();
            s.attach("/ipfs/ping/1.0.0").unwrap();
            (s, w)
        })
        .collect();
    let script = listener("/ipfs/ping/1.0.0");
    let mut i = 0;
    g.bench_function("open and close", |b| {
        b.iter(|| {
            i = (i + 1) % counters.len();
            counters[i]
                .open_stream(Direction::Inbound, 256 * 1024)
                .unwrap()
        })
    });
    g.bench_function("open, sniff, attach to ping and its service, close", |b| {
        b.iter(|| {
            i = (i + 1) % counters.len();
            let (mut scope, window) = counters[i]
                .open_stream(Direction::Inbound, 256 * 1024)
                .unwrap();
            let mut sniffer = Sniffer::new(Role::Listener);
            for (wrote, bytes) in &script {
                let apply = |e: Sniffed<'_>| scope.sniffed(e).unwrap();
                if *wrote {
                    sniffer.wrote(bytes, apply);
                } else {
                    sniffer.read(bytes, apply);
                }
            }
            (scope, window)
        })
    });
    g.finish();
    drop(held);
}

criterion_group!(benches, bench);
criterion_main!(benches);
