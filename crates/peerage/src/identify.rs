//! Identify and ping, translated for the node machine.

use libp2p::{identify, ping};
use peerage_core::node::{Identify, Input};

/// The machine's view of an identify message.
pub(crate) fn info(info: identify::Info) -> Identify {
    Identify {
        listen_addrs: info.listen_addrs,
        protocols: info.protocols.iter().map(ToString::to_string).collect(),
        agent_version: info.agent_version,
        protocol_version: info.protocol_version,
    }
}

/// The machine's input for an identify event, if it has one (a received message).
pub(crate) fn input<C>(event: identify::Event) -> Option<Input<C>> {
    match event {
        identify::Event::Received {
            peer_id, info: i, ..
        } => Some(Input::Identified {
            peer: peer_id,
            info: info(i),
        }),
        _ => None,
    }
}

/// The machine's input for a ping event, if it has one (a round trip).
pub(crate) fn ping_input<C>(event: ping::Event) -> Option<Input<C>> {
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
