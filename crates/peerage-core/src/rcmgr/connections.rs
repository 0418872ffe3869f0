//! Connection scopes by connection ID: what a driver (a libp2p behaviour, the node machine)
//! holds between a connection's admission and its end.

use std::{collections::HashMap, hash::Hash, time::Instant};

use libp2p_identity::PeerId;
use multiaddr::{Multiaddr, Protocol};

use super::{ConnectionScope, Direction, Error, ResourceManager};

/// The open connection scopes of a [`ResourceManager`], by the driver's connection ID `C`: one
/// opened at a connection's first admission point, attached to its peer once it is
/// established, released when it closes or fails. Both `peerage::rcmgr::Behaviour` and the
/// node machine ([`node::Resources`](crate::node::Resources)) admit connections through it.
#[derive(Debug)]
pub struct Connections<C> {
    rcmgr: ResourceManager,
    scopes: HashMap<C, ConnectionScope>,
}

impl<C: Eq + Hash> Connections<C> {
    /// No connections yet, admitted through `rcmgr`.
    pub fn new(rcmgr: ResourceManager) -> Self {
        Self {
            rcmgr,
            scopes: HashMap::new(),
        }
    }

    /// The resource manager.
    pub fn resource_manager(&self) -> &ResourceManager {
        &self.rcmgr
    }

    /// Opens connection `id`'s scope (go `OpenConnection`): the rate limit, the per-IP and
    /// per-subnet limits, then the transient and system scopes, with a file descriptor if
    /// `remote` is TCP (QUIC shares its socket).
    ///
    /// # Errors
    ///
    /// The resource manager's refusal; nothing is held then.
    pub fn open(
        &mut self,
        id: C,
        dir: Direction,
        remote: &Multiaddr,
        now: Instant,
    ) -> Result<(), Error> {
        let scope = self
            .rcmgr
            .open_connection(dir, uses_fd(remote), remote, now)?;
        self.scopes.insert(id, scope);
        Ok(())
    }

    /// Moves connection `id` into `peer`'s scope (go `SetPeer`). A connection not opened here
    /// is left alone.
    ///
    /// # Errors
    ///
    /// The resource manager's refusal; the connection's scope is released then.
    pub fn attach(&mut self, id: C, peer: PeerId) -> Result<(), Error> {
        let Some(scope) = self.scopes.get_mut(&id) else {
            return Ok(());
        };
        scope.set_peer(peer).inspect_err(|_| {
            self.scopes.remove(&id);
        })
    }

    /// Releases connection `id`'s scope, if it holds one.
    pub fn release(&mut self, id: &C) {
        self.scopes.remove(id);
    }

    /// Connections holding a scope.
    pub fn len(&self) -> usize {
        self.scopes.len()
    }

    /// Whether no connection holds a scope.
    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }
}

/// Whether a connection to `addr` takes a file descriptor (TCP and WebSocket do; QUIC shares
/// its socket).
pub fn uses_fd(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::Tcp(_)))
}
