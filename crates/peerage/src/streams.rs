//! The open streams of each connection, from the resource manager's counters (the muxer counts
//! them: [`rcmgr::Muxer`]) to the node machine ([`Input::Streams`]), by connection ID.

use std::collections::HashMap;

use libp2p::{
    PeerId,
    swarm::{ConnectionId, FromSwarm},
};
use peerage_core::node::Input;

use crate::rcmgr::{self, CounterId};

/// The counters claimed for established connections.
#[derive(Default)]
pub(crate) struct StreamCounts {
    by_counter: HashMap<CounterId, (ConnectionId, PeerId)>,
    by_connection: HashMap<ConnectionId, CounterId>,
    changed: Vec<(CounterId, u32)>,
}

impl StreamCounts {
    /// Claims the counter of an established connection; forgets that of a closed one.
    pub(crate) fn on_swarm_event(&mut self, rm: &rcmgr::ResourceManager, event: &FromSwarm<'_>) {
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                let remote = e.endpoint.get_remote_address();
                if let Some(counter) = rm.claim_stream_counter(e.peer_id, remote) {
                    self.by_counter
                        .insert(counter, (e.connection_id, e.peer_id));
                    self.by_connection.insert(e.connection_id, counter);
                }
            }
            FromSwarm::ConnectionClosed(e) => {
                if let Some(counter) = self.by_connection.remove(&e.connection_id) {
                    self.by_counter.remove(&counter);
                }
            }
            _ => {}
        }
    }

    /// The machine's inputs for the counts that changed since the last call.
    pub(crate) fn inputs(
        &mut self,
        rm: &rcmgr::ResourceManager,
    ) -> impl Iterator<Item = Input<ConnectionId>> + '_ {
        rm.take_stream_counts(&mut self.changed);
        let by_counter = &self.by_counter;
        self.changed.drain(..).filter_map(|(counter, streams)| {
            let &(id, peer) = by_counter.get(&counter)?;
            Some(Input::Streams { id, peer, streams })
        })
    }
}
