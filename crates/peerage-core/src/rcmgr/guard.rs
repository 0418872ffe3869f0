//! The RAII guards of the resource manager: [`ConnectionScope`], [`StreamScope`], [`Span`],
//! [`ScopeView`] and [`Reservation`], each releasing what it holds when dropped, and the
//! [`ResourceScope`] trait they share.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use libp2p_identity::PeerId;

use super::scope::{self, ScopeId};
use super::{BaseLimit, Error, Priority, ResourceManager, ScopeStat, State};

/// A scope a guard refers to.
pub(super) struct Handle {
    pub(super) mgr: ResourceManager,
    pub(super) id: ScopeId,
}

impl Handle {
    fn reserve_memory(&self, bytes: u64, prio: Priority) -> Result<Reservation, Error> {
        let mut s = self.mgr.lock();
        s.acct.reserve_memory(self.id, bytes, prio)?;
        Ok(Reservation {
            mgr: self.mgr.clone(),
            id: self.id,
            bytes,
        })
    }

    fn begin_span(&self) -> Result<Span, Error> {
        let id = self.mgr.lock().acct.new_span(self.id)?;
        Ok(Span {
            handle: Handle {
                mgr: self.mgr.clone(),
                id,
            },
        })
    }

    fn stat(&self) -> ScopeStat {
        self.mgr.lock().acct.stat_of(self.id)
    }

    fn limit(&self) -> BaseLimit {
        self.mgr
            .lock()
            .acct
            .scope(self.id)
            .map(|s| s.limit)
            .unwrap_or(BaseLimit::BLOCK_ALL)
    }

    fn name(&self) -> String {
        self.mgr.lock().acct.name(self.id)
    }

    fn done(&self) {
        self.mgr.lock().acct.done(self.id);
    }

    /// Reads the live scope under the lock; `None` once it is collected.
    fn read<R>(&self, f: impl FnOnce(&scope::Scope) -> Option<R>) -> Option<R> {
        self.mgr.lock().acct.scope(self.id).and_then(f)
    }
}

/// What every scope guard can do.
pub trait ResourceScope {
    /// Reserves `bytes` of memory on this scope and everything it charges, at `prio`, until the
    /// returned guard is dropped (go `ReserveMemory`).
    ///
    /// # Errors
    ///
    /// [`Error::LimitExceeded`] naming the refusing scope; [`Error::ScopeClosed`] if the scope
    /// (or a span's owner) is closed.
    fn reserve_memory(&self, bytes: u64, prio: Priority) -> Result<Reservation, Error>;

    /// Begins a span: a child scope with this scope's limits that charges this scope, released
    /// whole when dropped (go `BeginSpan`).
    ///
    /// # Errors
    ///
    /// [`Error::ScopeClosed`] if this scope is closed.
    fn begin_span(&self) -> Result<Span, Error>;

    /// The scope's usage now.
    fn stat(&self) -> ScopeStat;

    /// The scope's limits.
    fn limit(&self) -> BaseLimit;

    /// The scope's name (`conn-3`, `stream-12`, `peer:12D3..`, `service:x.span-2`).
    fn name(&self) -> String;
}

macro_rules! scope_guard {
    ($($ty:ident),*) => {$(
        impl ResourceScope for $ty {
            fn reserve_memory(&self, bytes: u64, prio: Priority) -> Result<Reservation, Error> {
                self.handle.reserve_memory(bytes, prio)
            }
            fn begin_span(&self) -> Result<Span, Error> {
                self.handle.begin_span()
            }
            fn stat(&self) -> ScopeStat {
                self.handle.stat()
            }
            fn limit(&self) -> BaseLimit {
                self.handle.limit()
            }
            fn name(&self) -> String {
                self.handle.name()
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($ty)).field(&self.handle.id).finish()
            }
        }
    )*};
}

scope_guard!(ConnectionScope, StreamScope, Span, ScopeView);

/// A connection's scope (go `ConnManagementScope`); dropping it closes the scope and releases
/// everything it holds.
#[must_use = "dropping the scope releases the connection at once"]
pub struct ConnectionScope {
    pub(super) handle: Handle,
    pub(super) ip: Option<IpAddr>,
    /// Networks counted by the per-IP limits, released on drop.
    pub(super) nets: Vec<IpNet>,
}

impl ConnectionScope {
    /// Attaches the connection to its peer (go `SetPeer`): its usage moves from transient to
    /// the peer scope. An allowlisted connection whose entry names another peer first moves to
    /// the normal scopes.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyAttached`] if a peer is set; [`Error::LimitExceeded`] if the peer scope
    /// (or, for the move out of the allowlisted scopes, transient or system) is full; the
    /// connection then keeps its scopes and should be closed.
    pub fn set_peer(&mut self, peer: PeerId) -> Result<(), Error> {
        let mut s = self.handle.mgr.lock();
        let State {
            acct, allowlist, ..
        } = &mut *s;
        let id = self.handle.id;
        let scope = acct.scope(id).ok_or_else(|| Error::ScopeClosed {
            scope: acct.name(id),
        })?;
        if scope.peer.is_some() {
            return Err(Error::AlreadyAttached {
                scope: acct.name(id),
                what: "peer",
            });
        }
        let mut allowlisted = scope.allowlisted;
        if allowlisted && !self.ip.is_some_and(|ip| allowlist.allowed_peer(peer, ip)) {
            acct.move_edges(id, vec![acct.transient, acct.system])?;
            acct.scope_mut(id).allowlisted = false;
            allowlisted = false;
        }
        let peer_scope = acct.peer_scope(peer);
        let system = if allowlisted {
            acct.allowlisted_system
        } else {
            acct.system
        };
        if let Err(e) = acct.move_edges(id, vec![peer_scope, system]) {
            acct.release_lookup(peer_scope);
            return Err(e);
        }
        acct.scope_mut(id).peer = Some(peer);
        Ok(())
    }

    /// The peer set by [`set_peer`](Self::set_peer).
    pub fn peer(&self) -> Option<PeerId> {
        self.handle.read(|s| s.peer)
    }

    /// True if the connection is charged to the allowlisted scopes.
    pub fn is_allowlisted(&self) -> bool {
        self.handle.read(|s| Some(s.allowlisted)).unwrap_or(false)
    }
}

impl Drop for ConnectionScope {
    fn drop(&mut self) {
        let mut s = self.handle.mgr.lock();
        s.acct.done(self.handle.id);
        s.ip.remove(&self.nets);
    }
}

/// A stream's scope (go `StreamManagementScope`); dropping it closes the scope and releases
/// everything it holds.
#[must_use = "dropping the scope releases the stream at once"]
pub struct StreamScope {
    pub(super) handle: Handle,
}

impl StreamScope {
    /// Attaches the stream to its protocol (go `SetProtocol`): its usage moves from transient to
    /// the protocol and protocol-peer scopes.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyAttached`] if a protocol is set; [`Error::LimitExceeded`] if the protocol
    /// or protocol-peer scope is full (go then resets the stream).
    pub fn set_protocol(&mut self, protocol: &str) -> Result<(), Error> {
        let mut s = self.handle.mgr.lock();
        set_protocol(&mut s, self.handle.id, protocol)
    }

    /// Attaches the stream to `protocol` and to the protocol's service if the manager's
    /// configuration names one ([`Config::with_service`](super::Config::with_service)), under
    /// one lock: [`set_protocol`](Self::set_protocol) then [`set_service`](Self::set_service).
    /// The muxer calls it once it has learnt the protocol from the negotiation.
    ///
    /// # Errors
    ///
    /// Those of [`set_protocol`](Self::set_protocol) and [`set_service`](Self::set_service);
    /// when the service refuses, the stream stays attached to the protocol.
    pub fn attach(&mut self, protocol: &str) -> Result<(), Error> {
        let mut s = self.handle.mgr.lock();
        let id = self.handle.id;
        set_protocol(&mut s, id, protocol)?;
        let Some(service) = s.services.get(protocol).cloned() else {
            return Ok(());
        };
        set_service(&mut s, id, &service)
    }

    /// Detaches the stream from its protocol and service: it goes back to its peer and system
    /// scopes only (never to transient), as a stream of a muxer is before its negotiation. For
    /// a protocol the stream proposed and the remote refused (multistream-select's `na`);
    /// go has no such call, as go attaches only after the negotiation. Nothing happens without
    /// a protocol.
    pub fn clear_protocol(&mut self) {
        let mut s = self.handle.mgr.lock();
        let a = &mut s.acct;
        let id = self.handle.id;
        let Some(scope) = a.scope(id).filter(|s| s.protocol.is_some()) else {
            return;
        };
        let edges = vec![scope.edges[0], a.system];
        // Only edges are lost, which cannot fail.
        let _ = a.move_edges(id, edges);
        let scope = a.scope_mut(id);
        scope.protocol = None;
        scope.service = None;
    }

    /// Attaches the stream to a service (go `SetService`), after its protocol.
    ///
    /// # Errors
    ///
    /// [`Error::NoProtocol`] before [`set_protocol`](Self::set_protocol);
    /// [`Error::AlreadyAttached`] if a service is set; [`Error::LimitExceeded`] if the service or
    /// service-peer scope is full.
    pub fn set_service(&mut self, service: &str) -> Result<(), Error> {
        let mut s = self.handle.mgr.lock();
        set_service(&mut s, self.handle.id, service)
    }

    /// Applies what a muxer's [`Sniffer`](super::multistream::Sniffer) learnt of the stream's
    /// negotiation: a protocol we propose or accept is [attached](Self::attach) (go
    /// `SetProtocol`, then `SetService` where configured); a refused proposal is
    /// [cleared](Self::clear_protocol); a negotiation the sniffer gave up on is cleared and
    /// counted in [`Stat::unattributed_streams`](super::Stat::unattributed_streams).
    ///
    /// # Errors
    ///
    /// Those of [`attach`](Self::attach), and [`Error::TooManyProposals`] when the remote
    /// proposes more protocols than the sniffer reads (counted as unattributed too): the muxer
    /// then resets the stream (go resets it with `StreamResourceLimitExceeded`), leaving the
    /// connection and its other streams alone.
    pub fn sniffed(&mut self, event: super::multistream::Sniffed<'_>) -> Result<(), Error> {
        use super::multistream::Sniffed;
        match event {
            Sniffed::Proposed(protocol) | Sniffed::Accepted(protocol) => self.attach(protocol),
            Sniffed::Refused => {
                self.clear_protocol();
                Ok(())
            }
            Sniffed::Confirmed => Ok(()),
            Sniffed::GaveUp => {
                self.clear_protocol();
                self.handle.mgr.lock().unattributed_streams += 1;
                Ok(())
            }
            Sniffed::TooManyProposals => {
                let mut s = self.handle.mgr.lock();
                s.unattributed_streams += 1;
                Err(Error::TooManyProposals {
                    scope: s.acct.name(self.handle.id),
                })
            }
        }
    }

    /// The protocol set by [`set_protocol`](Self::set_protocol).
    pub fn protocol(&self) -> Option<String> {
        self.handle.read(|s| s.protocol.clone())
    }

    /// The stream's peer.
    pub fn peer(&self) -> Option<PeerId> {
        self.handle.read(|s| s.peer)
    }
}

impl Drop for StreamScope {
    fn drop(&mut self) {
        let mut s = self.handle.mgr.lock();
        s.counts.stream_closed(self.handle.id);
        s.acct.done(self.handle.id);
    }
}

/// go `SetProtocol` on the stream `id`; a refusal is counted with the protocol named.
fn set_protocol(s: &mut State, id: ScopeId, protocol: &str) -> Result<(), Error> {
    let a = &mut s.acct;
    let scope = a
        .scope(id)
        .ok_or_else(|| Error::ScopeClosed { scope: a.name(id) })?;
    if scope.protocol.is_some() {
        return Err(Error::AlreadyAttached {
            scope: a.name(id),
            what: "protocol",
        });
    }
    let peer = scope.peer.expect("streams have a peer");
    let peer_scope = scope.edges[0];
    let p = a.protocol_scope(protocol);
    let pp = a.protocol_peer_scope(protocol, peer);
    a.attaching = Some(protocol.to_owned());
    let moved = a.move_edges(id, vec![peer_scope, p, pp, a.system]);
    a.attaching = None;
    if let Err(e) = moved {
        a.release_lookup(pp);
        a.release_lookup(p);
        return Err(e);
    }
    a.scope_mut(id).protocol = Some(protocol.to_owned());
    Ok(())
}

/// go `SetService` on the stream `id`; a refusal is counted with the stream's protocol named.
fn set_service(s: &mut State, id: ScopeId, service: &str) -> Result<(), Error> {
    let a = &mut s.acct;
    let scope = a
        .scope(id)
        .ok_or_else(|| Error::ScopeClosed { scope: a.name(id) })?;
    if scope.service.is_some() {
        return Err(Error::AlreadyAttached {
            scope: a.name(id),
            what: "service",
        });
    }
    if scope.protocol.is_none() {
        return Err(Error::NoProtocol { scope: a.name(id) });
    }
    let peer = scope.peer.expect("streams have a peer");
    let mut edges = scope.edges.clone();
    let sv = a.service_scope(service);
    let sp = a.service_peer_scope(service, peer);
    let system = edges.pop().expect("system is the last edge");
    edges.extend([sv, sp, system]);
    a.attaching = a.scope(id).and_then(|sc| sc.protocol.clone());
    let moved = a.move_edges(id, edges);
    a.attaching = None;
    if let Err(e) = moved {
        a.release_lookup(sp);
        return Err(e);
    }
    a.scope_mut(id).service = Some(service.to_owned());
    Ok(())
}

/// A span (go `ResourceScopeSpan`): a child of another scope with that scope's limits,
/// released whole when dropped. It may outlive its owner; its reservations then fail with
/// [`Error::ScopeClosed`].
#[must_use = "dropping the span releases it at once"]
pub struct Span {
    handle: Handle,
}

impl Drop for Span {
    fn drop(&mut self) {
        self.handle.done();
    }
}

/// A scope lent to a `view_*` callback; it holds the scope until the callback returns.
pub struct ScopeView {
    pub(super) handle: Handle,
}

/// Memory reserved on a scope, released when dropped. It holds its scope, so the scope is not
/// collected while the memory is reserved.
#[must_use = "dropping the reservation releases the memory at once"]
pub struct Reservation {
    pub(super) mgr: ResourceManager,
    pub(super) id: ScopeId,
    pub(super) bytes: u64,
}

impl Reservation {
    /// The bytes reserved.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("scope", &self.id)
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut s = self.mgr.lock();
        s.acct.release_memory(self.id, self.bytes);
    }
}
