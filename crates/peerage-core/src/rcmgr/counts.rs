//! Open streams per connection, counted where the muxer opens and closes them and read by the
//! node, which hands them to the connection manager (`connmgr` ranks peers with fewer streams
//! first among equals, as go's `connmgr`).
//!
//! The muxer knows its connection by peer and remote address; the node knows it by the swarm's
//! connection ID. A [`StreamCounter`] is registered under (peer, remote address) when the
//! muxer is built, and the node claims it under the same key when the connection is
//! established ([`ResourceManager::claim_stream_counter`]), then reads the changed counts
//! ([`ResourceManager::take_stream_counts`]). Two connections with the same peer and remote
//! address at once (two simultaneous dials to one address) leave the first one's streams
//! uncounted.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use libp2p_identity::PeerId;
use multiaddr::Multiaddr;

use super::scope::{ScopeId, ScopeStat};
use super::{Direction, Error, Priority, Reservation, ResourceManager, StreamScope};

/// The identity of a [`StreamCounter`] once claimed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CounterId(u64);

/// Counts the open streams of one connection (see [`ResourceManager::stream_counter`]);
/// dropping it forgets the connection.
#[derive(Debug)]
pub struct StreamCounter {
    pub(super) mgr: ResourceManager,
    pub(super) id: CounterId,
    pub(super) peer: PeerId,
}

impl StreamCounter {
    /// The counter's identity, as [`ResourceManager::claim_stream_counter`] gives it.
    pub fn id(&self) -> CounterId {
        self.id
    }

    /// Opens a stream of this connection, counted here until its scope is dropped: a muxer
    /// stream ([`ResourceManager::open_muxer_stream`]: the peer and system scopes, not
    /// transient), with `window` bytes (its receive window) reserved in the peer scope at
    /// [`Priority::ALWAYS`], as go-yamux reserves its windows in a span of the peer scope. The
    /// window is not part of the stream's own usage, so it does not follow the stream into
    /// its protocol and service scopes.
    ///
    /// # Errors
    ///
    /// [`Error::LimitExceeded`] naming the stream, peer or system scope that refused.
    pub fn open_stream(
        &self,
        dir: Direction,
        window: u64,
    ) -> Result<(StreamScope, Reservation), Error> {
        let mgr = &self.mgr;
        let mut s = mgr.lock();
        let scope = mgr.open_stream_in(&mut s, self.peer, dir, None)?;
        let peer_scope = s.acct.peer_scope(self.peer);
        let reserved = s.acct.reserve(
            peer_scope,
            &ScopeStat::memory(window),
            Priority::ALWAYS,
            None,
        );
        if let Err(e) = reserved {
            // The scope's drop takes the lock.
            drop(s);
            drop(scope);
            return Err(e);
        }
        s.acct.incref(peer_scope);
        s.counts.stream_opened(self.id, scope.handle.id);
        Ok((
            scope,
            Reservation {
                mgr: mgr.clone(),
                id: peer_scope,
                bytes: window,
            },
        ))
    }
}

impl Drop for StreamCounter {
    fn drop(&mut self) {
        self.mgr.lock().counts.remove(self.id);
    }
}

#[derive(Debug)]
struct Counter {
    streams: u32,
    /// The key it waits under until claimed.
    key: Option<(PeerId, Multiaddr)>,
    /// In `changed`.
    dirty: bool,
}

/// The counters of every connection (part of the manager's state).
#[derive(Debug, Default)]
pub(super) struct Counts {
    next: u64,
    counters: HashMap<CounterId, Counter>,
    unclaimed: HashMap<(PeerId, Multiaddr), CounterId>,
    changed: Vec<CounterId>,
    /// Set whenever `changed` gets an entry (read without the manager's lock).
    changed_flag: Arc<AtomicBool>,
    /// The counter of each open stream scope.
    by_stream: HashMap<ScopeId, CounterId>,
}

impl Counts {
    /// The flag set whenever a count to report changes.
    pub(super) fn changed_flag(&self) -> Arc<AtomicBool> {
        self.changed_flag.clone()
    }

    /// Queues a counter's count for the next report.
    fn mark(&mut self, id: CounterId) {
        self.changed.push(id);
        self.changed_flag.store(true, Ordering::Release);
    }

    pub(super) fn register(&mut self, peer: PeerId, remote: Multiaddr) -> CounterId {
        self.next += 1;
        let id = CounterId(self.next);
        let key = (peer, remote);
        if let Some(old) = self.unclaimed.insert(key.clone(), id)
            && let Some(c) = self.counters.get_mut(&old)
        {
            c.key = None;
        }
        self.counters.insert(
            id,
            Counter {
                streams: 0,
                key: Some(key),
                dirty: false,
            },
        );
        id
    }

    fn remove(&mut self, id: CounterId) {
        if let Some(Counter { key: Some(key), .. }) = self.counters.remove(&id) {
            self.unclaimed.remove(&key);
        }
    }

    pub(super) fn claim(&mut self, peer: PeerId, remote: &Multiaddr) -> Option<CounterId> {
        let id = self.unclaimed.remove(&(peer, remote.clone()))?;
        let c = self.counters.get_mut(&id)?;
        c.key = None;
        if c.streams > 0 && !c.dirty {
            c.dirty = true;
            self.mark(id);
        }
        Some(id)
    }

    fn change(&mut self, id: CounterId, opened: bool) {
        let Some(c) = self.counters.get_mut(&id) else {
            return;
        };
        if opened {
            c.streams += 1;
        } else {
            c.streams = c.streams.saturating_sub(1);
        }
        if c.key.is_none() && !c.dirty {
            c.dirty = true;
            self.mark(id);
        }
    }

    pub(super) fn stream_opened(&mut self, id: CounterId, stream: ScopeId) {
        self.by_stream.insert(stream, id);
        self.change(id, true);
    }

    pub(super) fn stream_closed(&mut self, stream: ScopeId) {
        if let Some(id) = self.by_stream.remove(&stream) {
            self.change(id, false);
        }
    }

    pub(super) fn take(&mut self, out: &mut Vec<(CounterId, u32)>) {
        for id in self.changed.drain(..) {
            if let Some(c) = self.counters.get_mut(&id) {
                c.dirty = false;
                out.push((id, c.streams));
            }
        }
    }
}
