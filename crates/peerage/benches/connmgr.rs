//! go-libp2p's `BenchmarkLockContention` (`p2p/net/connmgr/bench_test.go`) on the connection
//! manager's shared handle: 5,000 peers; background threads keep tagging random peers
//! (`"another-tag"`, 1); each timed iteration, on a random peer, is connect, tag, untag,
//! disconnect. Run with as many background threads as the machine has cores, and with 16;
//! side by side with the same operations on a plain `Mutex<HashMap>` (no grace, ranking,
//! counters, protection or decay), in the same run.
//!
//! `cargo bench -p peerage --bench connmgr`; figures in `crates/peerage-core/benches/README.md`.

#![allow(missing_docs)]

use std::{
    collections::HashMap,
    hint::black_box,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use libp2p::{
    Multiaddr, PeerId,
    core::{ConnectedPoint, Endpoint, transport::PortUse},
    swarm::{
        ConnectionClosed, ConnectionId, FromSwarm, NetworkBehaviour,
        behaviour::ConnectionEstablished,
    },
};
use peerage::connmgr;
use rand::{Rng, SeedableRng, rngs::StdRng};

const PEERS: usize = 5_000;

/// The operations under test, on either implementation.
trait Manager: Send + Sync + 'static {
    fn tag(&self, peer: PeerId, tag: &str, value: i64);
    fn untag(&self, peer: &PeerId, tag: &str);
}

impl Manager for connmgr::Handle {
    fn tag(&self, peer: PeerId, tag: &str, value: i64) {
        self.tag_peer(&peer, tag, value);
    }
    fn untag(&self, peer: &PeerId, tag: &str) {
        self.untag_peer(peer, tag);
    }
}

#[derive(Default)]
struct Entry {
    tags: HashMap<String, i64>,
    connections: Vec<ConnectionId>,
}

/// The baseline: one lock over one map.
#[derive(Default)]
struct Plain(Mutex<HashMap<PeerId, Entry>>);

impl Manager for Arc<Plain> {
    fn tag(&self, peer: PeerId, tag: &str, value: i64) {
        let mut map = self.0.lock().unwrap();
        map.entry(peer)
            .or_default()
            .tags
            .insert(tag.to_owned(), value);
    }
    fn untag(&self, peer: &PeerId, tag: &str) {
        if let Some(e) = self.0.lock().unwrap().get_mut(peer) {
            e.tags.remove(tag);
        }
    }
}

impl Plain {
    fn connect(&self, peer: PeerId, id: ConnectionId) {
        let mut map = self.0.lock().unwrap();
        map.entry(peer).or_default().connections.push(id);
    }
    fn disconnect(&self, peer: &PeerId, id: ConnectionId) {
        let mut map = self.0.lock().unwrap();
        if let Some(e) = map.get_mut(peer) {
            e.connections.retain(|c| *c != id);
            if e.connections.is_empty() {
                map.remove(peer);
            }
        }
    }
}

/// Background taggers, stopped on drop.
struct Taggers {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Taggers {
    fn start(manager: &(impl Manager + Clone), peers: &Arc<Vec<PeerId>>, n: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|i| {
                let (m, peers, stop) = (manager.clone(), peers.clone(), stop.clone());
                thread::spawn(move || {
                    let mut rng = StdRng::seed_from_u64(i as u64);
                    while !stop.load(Ordering::Relaxed) {
                        let p = peers[rng.random_range(0..peers.len())];
                        m.tag(p, "another-tag", 1);
                    }
                })
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for Taggers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
    }
}

fn lock_contention(c: &mut Criterion) {
    let peers: Arc<Vec<PeerId>> = Arc::new((0..PEERS).map(|_| PeerId::random()).collect());
    let endpoint = ConnectedPoint::Dialer {
        address: "/ip4/127.0.0.1/tcp/4001".parse::<Multiaddr>().unwrap(),
        role_override: Endpoint::Dialer,
        port_use: PortUse::Reuse,
    };
    let cores = thread::available_parallelism().map_or(2, |n| n.get());
    let mut group = c.benchmark_group("connmgr_lock_contention");
    for threads in [cores, 16] {
        // Ours: the behaviour counts connections (as the swarm reports them) while the
        // application's threads tag through handles.
        let mut behaviour = connmgr::Behaviour::new(
            connmgr::Config::new()
                .with_watermarks(1000, 1000)
                .with_grace_period(std::time::Duration::ZERO),
        )
        .unwrap();
        let handle = behaviour.handle();
        let taggers = Taggers::start(&handle, &peers, threads);
        let mut rng = StdRng::seed_from_u64(99);
        let mut next_id = 0;
        group.bench_function(BenchmarkId::new("peerage", threads), |b| {
            b.iter(|| {
                let peer = peers[rng.random_range(0..PEERS)];
                next_id += 1;
                let id = ConnectionId::new_unchecked(next_id);
                behaviour.on_swarm_event(FromSwarm::ConnectionEstablished(ConnectionEstablished {
                    peer_id: peer,
                    connection_id: id,
                    endpoint: &endpoint,
                    failed_addresses: &[],
                    other_established: 0,
                }));
                handle.tag_peer(&peer, "tag", 100);
                handle.untag_peer(&peer, "tag");
                behaviour.on_swarm_event(FromSwarm::ConnectionClosed(ConnectionClosed {
                    peer_id: peer,
                    connection_id: id,
                    endpoint: &endpoint,
                    cause: None,
                    remaining_established: 0,
                }));
            });
        });
        drop(taggers);
        black_box(handle.info());

        let plain = Arc::new(Plain::default());
        let taggers = Taggers::start(&plain, &peers, threads);
        group.bench_function(BenchmarkId::new("mutex_hashmap", threads), |b| {
            b.iter(|| {
                let peer = peers[rng.random_range(0..PEERS)];
                next_id += 1;
                let id = ConnectionId::new_unchecked(next_id);
                plain.connect(peer, id);
                plain.tag(peer, "tag", 100);
                plain.untag(&peer, "tag");
                plain.disconnect(&peer, id);
            });
        });
        drop(taggers);
    }
    group.finish();
}

criterion_group!(benches, lock_contention);
criterion_main!(benches);
