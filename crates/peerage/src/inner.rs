//! The protocols inside the Peerage behaviour, and their events translated for the node
//! machine.

use libp2p::{identify, ping, swarm::ConnectionId};
use peerage_core::node::Input;

#[cfg(feature = "metrics")]
use crate::config::ProtocolMetrics;
use crate::{Event, connmgr, identify as id, keep_alive, pex};

/// The protocols inside [`Behaviour`]. Public only because its handler type is
/// `Behaviour::ConnectionHandler`. The node machine has admitted every connection they see
/// (the hard cap and the resource manager included); the connection manager counts and trims.
#[doc(hidden)]
#[allow(unreachable_pub, missing_docs)]
#[derive(libp2p::swarm::NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
pub struct Inner {
    pub(crate) connmgr: connmgr::Behaviour,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) pex: pex::Behaviour,
    pub(crate) keep_alive: keep_alive::Behaviour,
}

impl Inner {
    /// The inner behaviours.
    pub(crate) fn new(
        connmgr: connmgr::Behaviour,
        identify: identify::Behaviour,
        ping: ping::Behaviour,
        pex: pex::Behaviour,
    ) -> Self {
        Self {
            connmgr,
            identify,
            ping,
            pex,
            keep_alive: keep_alive::Behaviour,
        }
    }
}

#[cfg(feature = "metrics")]
impl ProtocolMetrics {
    /// Records an identify or ping event in libp2p-metrics.
    pub(crate) fn record(&self, event: &InnerEvent) {
        use libp2p::metrics::Recorder;
        match event {
            InnerEvent::Identify(e) => self.0.record(e),
            InnerEvent::Ping(e) => self.0.record(e),
            _ => {}
        }
    }
}

/// An inner event as the machine's input and the application's event.
pub(crate) fn translate(
    event: InnerEvent,
    channels: &mut pex::Channels,
) -> (Option<Input<ConnectionId>>, Option<Event>) {
    match event {
        InnerEvent::Identify(e) => (id::input(e), None),
        InnerEvent::Ping(e) => (id::ping_input(e), None),
        InnerEvent::Pex(e) => (channels.input(e), None),
        InnerEvent::Connmgr(connmgr::Event::Trimmed(trim)) => (
            None,
            Some(Event::Trimmed {
                kind: trim.kind,
                peers: trim.victims.iter().map(|v| v.peer).collect(),
            }),
        ),
        InnerEvent::KeepAlive(never) => match never {},
    }
}
