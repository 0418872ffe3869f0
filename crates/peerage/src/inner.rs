//! The protocols inside the Peerage behaviour, and their events translated for the node
//! machine.

use libp2p::{
    ping,
    swarm::{ConnectionId, behaviour::toggle::Toggle},
};
use peerage_core::node::Input;

#[cfg(feature = "metrics")]
use crate::config::ProtocolMetrics;
use crate::{Event, connmgr, identify, keep_alive, pex};

/// The protocols inside [`Behaviour`]. Public only because its handler type is
/// `Behaviour::ConnectionHandler`. The node machine has admitted every connection they see
/// (the hard cap and the resource manager included); the connection manager counts and trims.
/// Identify and ping are off when the application runs its own
/// ([`Config::without_identify`](crate::Config::without_identify),
/// [`Config::without_ping`](crate::Config::without_ping)).
#[doc(hidden)]
#[allow(unreachable_pub, missing_docs)]
#[derive(libp2p::swarm::NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
pub struct Inner {
    pub(crate) connmgr: connmgr::Behaviour,
    pub(crate) identify: Toggle<identify::Behaviour>,
    pub(crate) ping: Toggle<ping::Behaviour>,
    pub(crate) pex: pex::Behaviour,
    pub(crate) keep_alive: keep_alive::Behaviour,
}

impl Inner {
    /// The inner behaviours.
    pub(crate) fn new(
        connmgr: connmgr::Behaviour,
        identify: Option<identify::Behaviour>,
        ping: Option<ping::Behaviour>,
        pex: pex::Behaviour,
    ) -> Self {
        Self {
            connmgr,
            identify: identify.into(),
            ping: ping.into(),
            pex,
            keep_alive: keep_alive::Behaviour,
        }
    }
}

#[cfg(feature = "metrics")]
impl ProtocolMetrics {
    /// Records an identify or ping event in libp2p-metrics (`libp2p_identify_*`,
    /// `libp2p_ping_*`). Identify events are recorded as libp2p-identify's, which
    /// libp2p-metrics takes; a push is recorded with `local` as its key and nothing else.
    pub(crate) fn record(&self, event: &InnerEvent, local: &libp2p::identity::PublicKey) {
        use libp2p::{identify as lib, metrics::Recorder, swarm::StreamUpgradeError};
        let info = |public_key: libp2p::identity::PublicKey| lib::Info {
            public_key,
            protocol_version: String::new(),
            agent_version: String::new(),
            listen_addrs: Vec::new(),
            protocols: Vec::new(),
            observed_addr: libp2p::Multiaddr::empty(),
            signed_peer_record: None,
        };
        let event = match event {
            InnerEvent::Ping(e) => return self.0.record(e),
            InnerEvent::Identify(e) => match e {
                identify::Event::Received {
                    peer,
                    connection,
                    info: i,
                } => lib::Event::Received {
                    connection_id: *connection,
                    peer_id: *peer,
                    info: lib::Info {
                        protocol_version: i.protocol_version.clone(),
                        agent_version: i.agent_version.clone(),
                        listen_addrs: i.listen_addrs.clone(),
                        protocols: i.protocols.clone(),
                        observed_addr: i
                            .observed_addr
                            .clone()
                            .unwrap_or_else(libp2p::Multiaddr::empty),
                        ..info(i.public_key.clone())
                    },
                },
                identify::Event::Sent { peer, connection } => lib::Event::Sent {
                    connection_id: *connection,
                    peer_id: *peer,
                },
                identify::Event::Pushed { peer, connection } => lib::Event::Pushed {
                    connection_id: *connection,
                    peer_id: *peer,
                    info: info(local.clone()),
                },
                identify::Event::Error {
                    peer,
                    connection,
                    error,
                } => lib::Event::Error {
                    connection_id: *connection,
                    peer_id: *peer,
                    error: StreamUpgradeError::Io(std::io::Error::other(error.to_string())),
                },
            },
            _ => return,
        };
        self.0.record(&event);
    }
}

/// An inner event as the machine's input and the application's event.
pub(crate) fn translate(
    event: InnerEvent,
    channels: &mut pex::Channels,
) -> (Option<Input<ConnectionId>>, Option<Event>) {
    match event {
        InnerEvent::Identify(identify::Event::Received { peer, info, .. }) => (
            Some(Input::Identified {
                peer,
                info: info.into_machine(),
            }),
            None,
        ),
        InnerEvent::Identify(_) => (None, None),
        InnerEvent::Ping(e) => (ping_input(e), None),
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

/// The machine's input for a ping event, if it has one (a round trip).
fn ping_input<C>(event: ping::Event) -> Option<Input<C>> {
    match event {
        ping::Event {
            peer,
            result: Ok(rtt),
            ..
        } => Some(Input::Ping { peer, rtt }),
        ping::Event {
            peer,
            result: Err(e),
            ..
        } => {
            tracing::debug!(%peer, "ping failed: {e}");
            None
        }
    }
}
