//! Identify's Prometheus metrics, kept as identify events arrive (with the `metrics` feature).
//!
//! libp2p-metrics 0.18 keeps a copy of every connected peer's identify `Info` and, at each
//! scrape, walks them all, allocating a string per protocol and address
//! (`libp2p-metrics/src/identify.rs`, `Peers::encode`): at 10,000 connections that is a third
//! of a scrape's time and about 1 KB per peer. [`Identify`] serves the same families under the
//! same names, counted when a peer is identified and when its last connection closes, and keeps
//! per peer only the labels it counts in.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use libp2p::{Multiaddr, PeerId, StreamProtocol};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::identify;

/// A `protocol` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabel {
    protocol: Arc<str>,
}

/// A `listen_address` label: an address's protocol stack (`/ip4/tcp/p2p`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenLabel {
    listen_address: Arc<str>,
}

/// An `observed_address` label, as a protocol stack.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ObservedLabel {
    observed_address: Arc<str>,
}

/// What one identified peer counts in: its protocols (each recognized one, and
/// `unrecognized` once for all others), its listen addresses' protocol stacks and the stack of
/// the address it observed us at, each once.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Labels {
    protocols: Vec<Arc<str>>,
    listen: Vec<Arc<str>>,
    observed: Option<Arc<str>>,
}

/// Protocols named in `libp2p_identify_remote_protocols`: libp2p-metrics' (identify, identify
/// push, ping) and Peerage's exchange of points; any other counts as `unrecognized`, so that
/// a remote cannot grow the family.
const RECOGNIZED: [StreamProtocol; 4] = [
    identify::PROTOCOL,
    identify::PUSH_PROTOCOL,
    StreamProtocol::new("/ipfs/ping/1.0.0"),
    crate::pex::PROTOCOL,
];

/// The protocol stack of `addr`, as libp2p-metrics writes it: `/ip4/tcp/p2p`.
fn stack(addr: &Multiaddr) -> String {
    addr.protocol_stack().fold(String::new(), |mut s, tag| {
        s.push('/');
        s.push_str(tag);
        s
    })
}

/// Identify's metrics: libp2p-metrics' `libp2p_identify_*` families, under the same names and
/// meanings, kept as events arrive rather than computed by a walk of the peers at each scrape.
///
/// - counters `libp2p_identify_errors`, `_pushed`, `_received`, `_sent`;
/// - gauges `libp2p_identify_remote_protocols{protocol}`,
///   `_remote_listen_addresses{listen_address}` and
///   `_local_observed_addresses{observed_address}`: connected peers by what their latest
///   identify said. A label goes when no connected peer counts in it.
///
/// Give it to [`Config::with_identify_metrics`](crate::Config::with_identify_metrics); identify
/// events then go here and not to libp2p-metrics, whose own `libp2p_identify_*` families (in
/// the registry libp2p-metrics was given) stay at zero: do not expose both under one name.
/// Clones share everything.
#[derive(Debug, Default, Clone)]
pub struct Identify {
    errors: Counter,
    pushed: Counter,
    received: Counter,
    sent: Counter,
    protocols: Family<ProtocolLabel, Gauge>,
    listen: Family<ListenLabel, Gauge>,
    observed: Family<ObservedLabel, Gauge>,
    peers: Arc<Mutex<Peers>>,
}

/// The identified, connected peers.
#[derive(Debug, Default)]
struct Peers {
    /// Each one's labels.
    labels: HashMap<PeerId, Labels>,
    /// The label strings in use, shared by the peers that count in them, with how many do.
    interned: HashMap<Arc<str>, usize>,
}

impl Peers {
    fn intern(&mut self, s: &str) -> Arc<str> {
        match self.interned.get_key_value(s) {
            Some((k, _)) => k.clone(),
            None => {
                let k: Arc<str> = s.into();
                self.interned.insert(k.clone(), 0);
                k
            }
        }
    }

    /// The labels `info` counts in, each string shared with the other peers that use it.
    fn labels(&mut self, info: &identify::Info) -> Labels {
        let mut protocols: Vec<&str> = info
            .protocols
            .iter()
            .map(|p| {
                if RECOGNIZED.contains(p) {
                    p.as_ref()
                } else {
                    "unrecognized"
                }
            })
            .collect();
        protocols.sort_unstable();
        protocols.dedup();
        let mut listen: Vec<String> = info.listen_addrs.iter().map(stack).collect();
        listen.sort_unstable();
        listen.dedup();
        Labels {
            protocols: protocols.into_iter().map(|p| self.intern(p)).collect(),
            listen: listen.iter().map(|l| self.intern(l)).collect(),
            observed: info.observed_addr.as_ref().map(|a| self.intern(&stack(a))),
        }
    }
}

impl Identify {
    /// Metrics at zero; [`register`](Self::register) them, then give them to the behaviour.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the families in `registry` under `libp2p_identify_*`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("libp2p_identify");
        r.register(
            "errors",
            "Number of errors while attempting to identify the remote",
            self.errors.clone(),
        );
        r.register(
            "pushed",
            "Number of times identification information of the local node has been actively \
             pushed to a peer.",
            self.pushed.clone(),
        );
        r.register(
            "received",
            "Number of times identification information has been received from a peer",
            self.received.clone(),
        );
        r.register(
            "sent",
            "Number of times identification information of the local node has been sent to a \
             peer in response to an identification request",
            self.sent.clone(),
        );
        r.register(
            "remote_protocols",
            "Number of connected nodes supporting a specific protocol, with \"unrecognized\" for \
             each peer supporting one or more unrecognized protocols",
            self.protocols.clone(),
        );
        r.register(
            "remote_listen_addresses",
            "Number of connected nodes advertising a specific listen address",
            self.listen.clone(),
        );
        r.register(
            "local_observed_addresses",
            "Number of connected nodes observing the local node at a specific address",
            self.observed.clone(),
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Peers> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records an identify event.
    pub(crate) fn record(&self, event: &identify::Event) {
        match event {
            identify::Event::Received { peer, info, .. } => {
                self.received.inc();
                let mut peers = self.lock();
                let labels = peers.labels(info);
                if let Some(old) = peers.labels.insert(*peer, labels.clone()) {
                    self.count(&mut peers, &old, -1);
                }
                self.count(&mut peers, &labels, 1);
            }
            identify::Event::Sent { .. } => {
                self.sent.inc();
            }
            identify::Event::Pushed { .. } => {
                self.pushed.inc();
            }
            identify::Event::Error { .. } => {
                self.errors.inc();
            }
        }
    }

    /// `peer`'s last connection closed: it counts no more.
    pub(crate) fn disconnected(&self, peer: &PeerId) {
        let mut peers = self.lock();
        if let Some(old) = peers.labels.remove(peer) {
            self.count(&mut peers, &old, -1);
        }
    }

    /// Adds `by` (1 or -1) to each of `labels`' gauges, dropping a label no peer counts in.
    fn count(&self, peers: &mut Peers, labels: &Labels, by: i64) {
        for p in &labels.protocols {
            let protocol = p.clone();
            add(&self.protocols, &ProtocolLabel { protocol }, by);
        }
        for a in &labels.listen {
            let listen_address = a.clone();
            add(&self.listen, &ListenLabel { listen_address }, by);
        }
        if let Some(a) = &labels.observed {
            let observed_address = a.clone();
            add(&self.observed, &ObservedLabel { observed_address }, by);
        }
        let strings = labels
            .protocols
            .iter()
            .chain(&labels.listen)
            .chain(&labels.observed);
        for s in strings {
            if let Some(n) = peers.interned.get_mut(s) {
                *n = n.saturating_add_signed(by as isize);
                if *n == 0 {
                    peers.interned.remove(s);
                }
            }
        }
    }
}

/// Adds `by` to `label`'s gauge in `family`, and drops the label once its gauge is zero.
fn add<L>(family: &Family<L, Gauge>, label: &L, by: i64)
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug,
{
    // `inc_by` returns the value before.
    if family.get_or_create(label).inc_by(by) + by == 0 {
        family.remove(label);
    }
}

#[cfg(test)]
mod tests {
    use libp2p::identity::Keypair;

    use super::*;

    fn info(protocols: &[&'static str], listen: &[&str], observed: Option<&str>) -> identify::Info {
        identify::Info {
            public_key: Keypair::generate_ed25519().public(),
            protocol_version: "ipfs/0.1.0".into(),
            agent_version: "test".into(),
            listen_addrs: listen.iter().map(|a| a.parse().unwrap()).collect(),
            protocols: protocols.iter().map(|p| StreamProtocol::new(p)).collect(),
            observed_addr: observed.map(|a| a.parse().unwrap()),
            signed_peer_record: None,
        }
    }

    fn received(peer: PeerId, info: identify::Info) -> identify::Event {
        identify::Event::Received {
            peer,
            connection: libp2p::swarm::ConnectionId::new_unchecked(0),
            info: Box::new(info),
        }
    }

    fn scrape(m: &Identify) -> String {
        let mut registry = Registry::default();
        m.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    /// The gauge lines, sorted.
    fn gauges(text: &str) -> Vec<&str> {
        let mut v: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.starts_with("libp2p_identify_remote") || l.starts_with("libp2p_identify_local")
            })
            .collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn peers_count_by_their_latest_identify_until_their_last_connection_closes() {
        let m = Identify::new();
        let (a, b) = (PeerId::random(), PeerId::random());
        m.record(&received(
            a,
            info(
                &["/ipfs/id/1.0.0", "/ipfs/ping/1.0.0", "/x/1", "/y/1"],
                &[
                    "/ip4/1.2.3.4/tcp/1",
                    "/ip4/1.2.3.5/tcp/2",
                    "/ip4/1.2.3.4/udp/1/quic-v1",
                ],
                Some("/ip4/9.9.9.9/tcp/4001"),
            ),
        ));
        m.record(&received(
            b,
            info(&["/ipfs/id/1.0.0"], &["/ip4/5.6.7.8/tcp/1"], None),
        ));
        let text = scrape(&m);
        assert_eq!(
            gauges(&text),
            [
                r#"libp2p_identify_local_observed_addresses{observed_address="/ip4/tcp"} 1"#,
                r#"libp2p_identify_remote_listen_addresses{listen_address="/ip4/tcp"} 2"#,
                r#"libp2p_identify_remote_listen_addresses{listen_address="/ip4/udp/quic-v1"} 1"#,
                r#"libp2p_identify_remote_protocols{protocol="/ipfs/id/1.0.0"} 2"#,
                r#"libp2p_identify_remote_protocols{protocol="/ipfs/ping/1.0.0"} 1"#,
                r#"libp2p_identify_remote_protocols{protocol="unrecognized"} 1"#,
            ]
        );
        assert!(text.contains("libp2p_identify_received_total 2"), "{text}");
        // A push replaces what `a` counted in.
        m.record(&received(a, info(&["/ipfs/id/1.0.0"], &[], None)));
        assert_eq!(
            gauges(&scrape(&m)),
            [
                r#"libp2p_identify_remote_listen_addresses{listen_address="/ip4/tcp"} 1"#,
                r#"libp2p_identify_remote_protocols{protocol="/ipfs/id/1.0.0"} 2"#,
            ]
        );
        m.disconnected(&a);
        m.disconnected(&b);
        m.disconnected(&b);
        assert!(gauges(&scrape(&m)).is_empty());
        assert!(
            m.lock().interned.is_empty(),
            "no label string outlives its peers"
        );
    }
}
