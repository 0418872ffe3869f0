//! The open streams of each connection, from the resource manager's counters (the muxer counts
//! them: [`rcmgr::Muxer`]) to the node machine ([`Input::Streams`]), by connection ID.

use std::{collections::HashMap, time::Instant};

use libp2p::{
    PeerId,
    swarm::{ConnectionId, FromSwarm},
};
use peerage_core::node::{Input, Machine};

use crate::rcmgr::{self, CounterId};

/// The counters claimed for established connections; nothing without a resource manager.
#[derive(Default)]
pub(crate) struct StreamCounts {
    rcmgr: Option<rcmgr::ResourceManager>,
    by_counter: HashMap<CounterId, (ConnectionId, PeerId)>,
    by_connection: HashMap<ConnectionId, CounterId>,
    changed: Vec<(CounterId, u32)>,
}

impl StreamCounts {
    pub(crate) fn new(rcmgr: Option<rcmgr::ResourceManager>) -> Self {
        StreamCounts {
            rcmgr,
            ..StreamCounts::default()
        }
    }

    /// Claims the counter of an established connection; forgets that of a closed one.
    pub(crate) fn on_swarm_event(&mut self, event: &FromSwarm<'_>) {
        let Some(rm) = &self.rcmgr else {
            return;
        };
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

    /// Feeds `machine` the counts that changed since the last call.
    pub(crate) fn feed(&mut self, machine: &mut Machine<ConnectionId>, now: Instant) {
        let Some(rm) = &self.rcmgr else {
            return;
        };
        rm.take_stream_counts(&mut self.changed);
        for (counter, streams) in self.changed.drain(..) {
            if let Some(&(id, peer)) = self.by_counter.get(&counter) {
                machine.handle(now, Input::Streams { id, peer, streams });
            }
        }
    }
}
