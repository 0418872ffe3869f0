//! The scope DAG and its accounting, behind the manager's lock.
//!
//! Each scope keeps go's linearized edge list: a reservation on a leaf is checked against the
//! leaf and then each edge once (diamonds are not double-counted), and applied only if every
//! check passes, so a failure needs no rollback. A span charges its owner through the owner's
//! own chain (a tree above the DAG). Scope IDs are never reused, so a stale guard can never
//! touch another scope.

use std::fmt;

use foldhash::{HashMap, HashMapExt};
use libp2p_identity::PeerId;
use slotmap::{Key, SlotMap};

use super::distribution::PeerDistributions;
use super::limit::{BaseLimit, LimitConfig};
use super::{Direction, Error, LimitExceeded, Priority, Resource};

slotmap::new_key_type! {
    /// A scope's key in [`Accountant`]'s table: an index with a generation, so a reservation
    /// or handle that outlives its scope finds nothing instead of a newer scope in its slot.
    pub(crate) struct ScopeId;
}

/// Usage of one scope (go `ScopeStat`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ScopeStat {
    /// Memory, in bytes.
    pub memory: u64,
    /// Inbound streams.
    pub streams_inbound: u64,
    /// Outbound streams.
    pub streams_outbound: u64,
    /// Inbound connections.
    pub conns_inbound: u64,
    /// Outbound connections.
    pub conns_outbound: u64,
    /// File descriptors.
    pub fd: u64,
}

impl ScopeStat {
    pub(crate) fn stream(dir: Direction) -> Self {
        match dir {
            Direction::Inbound => ScopeStat {
                streams_inbound: 1,
                ..Self::default()
            },
            Direction::Outbound => ScopeStat {
                streams_outbound: 1,
                ..Self::default()
            },
        }
    }

    pub(crate) fn conn(dir: Direction, usefd: bool) -> Self {
        let fd = u64::from(usefd);
        match dir {
            Direction::Inbound => ScopeStat {
                conns_inbound: 1,
                fd,
                ..Self::default()
            },
            Direction::Outbound => ScopeStat {
                conns_outbound: 1,
                fd,
                ..Self::default()
            },
        }
    }

    pub(crate) fn memory(bytes: u64) -> Self {
        ScopeStat {
            memory: bytes,
            ..Self::default()
        }
    }

    /// Streams in both directions.
    pub fn streams(&self) -> u64 {
        self.streams_inbound + self.streams_outbound
    }

    /// Connections in both directions.
    pub fn conns(&self) -> u64 {
        self.conns_inbound + self.conns_outbound
    }

    /// True if nothing is counted.
    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }

    fn add(&mut self, d: &ScopeStat) {
        self.memory += d.memory;
        self.streams_inbound += d.streams_inbound;
        self.streams_outbound += d.streams_outbound;
        self.conns_inbound += d.conns_inbound;
        self.conns_outbound += d.conns_outbound;
        self.fd += d.fd;
    }

    /// Subtracts, clamping at zero: releasing more than is held is a bug of the caller's that
    /// must not corrupt the counters (go logs "BUG: too much memory released"). Returns whether
    /// it clamped.
    fn sub(&mut self, d: &ScopeStat) -> bool {
        let mut clamped = false;
        let mut sub = |v: &mut u64, by: u64| {
            clamped |= by > *v;
            *v = v.saturating_sub(by);
        };
        sub(&mut self.memory, d.memory);
        sub(&mut self.streams_inbound, d.streams_inbound);
        sub(&mut self.streams_outbound, d.streams_outbound);
        sub(&mut self.conns_inbound, d.conns_inbound);
        sub(&mut self.conns_outbound, d.conns_outbound);
        sub(&mut self.fd, d.fd);
        clamped
    }
}

/// Checks `delta` against `limit` on top of `stat`, in go's order (memory; streams by
/// direction, then total; connections by direction, then total; file descriptors). The memory
/// threshold is `(1 + priority) * limit / 256`, computed in 128 bits.
fn check(
    stat: &ScopeStat,
    limit: &BaseLimit,
    d: &ScopeStat,
    prio: Priority,
) -> Result<(), (Resource, u64, u64, u64)> {
    let over = |current: u64, attempted: u64, limit: u64| {
        current
            .checked_add(attempted)
            .is_none_or(|total| total > limit)
    };
    if d.memory > 0 && !memory_fits(stat, limit, d.memory, prio) {
        return Err((Resource::Memory, stat.memory, d.memory, limit.memory));
    }
    // A memory reservation, by far the most frequent, counts nothing else.
    if (d.streams_inbound | d.streams_outbound | d.conns_inbound | d.conns_outbound | d.fd) == 0 {
        return Ok(());
    }
    let pairs = [
        (
            Resource::InboundStream,
            stat.streams_inbound,
            d.streams_inbound,
            limit.streams_inbound,
        ),
        (
            Resource::OutboundStream,
            stat.streams_outbound,
            d.streams_outbound,
            limit.streams_outbound,
        ),
        (Resource::Stream, stat.streams(), d.streams(), limit.streams),
        (
            Resource::InboundConnection,
            stat.conns_inbound,
            d.conns_inbound,
            limit.conns_inbound,
        ),
        (
            Resource::OutboundConnection,
            stat.conns_outbound,
            d.conns_outbound,
            limit.conns_outbound,
        ),
        (Resource::Connection, stat.conns(), d.conns(), limit.conns),
        (Resource::FileDescriptor, stat.fd, d.fd, limit.fd),
    ];
    for (resource, current, attempted, limit) in pairs {
        if attempted > 0 && over(current, attempted, limit) {
            return Err((resource, current, attempted, limit));
        }
    }
    Ok(())
}

/// True if `bytes` more memory at `prio` keep a scope's usage within `(1 + priority) * limit /
/// 256` (go `ReserveMemory`), computed in 128 bits.
#[inline]
fn memory_fits(stat: &ScopeStat, limit: &BaseLimit, bytes: u64, prio: Priority) -> bool {
    let threshold = if limit.memory == super::UNLIMITED {
        u64::MAX
    } else {
        ((1 + u128::from(prio.0)) * u128::from(limit.memory) / 256) as u64
    };
    stat.memory
        .checked_add(bytes)
        .is_some_and(|total| total <= threshold)
}

/// What a scope is; its name is derived from this (go's scope names).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    System,
    Transient,
    AllowlistedSystem,
    AllowlistedTransient,
    Service(String),
    Protocol(String),
    Peer(PeerId),
    ServicePeer(String, PeerId),
    ProtocolPeer(String, PeerId),
    Conn(u64),
    Stream(u64),
    Span(u64),
}

impl Kind {
    /// The class used in metrics labels (go's trace scope classes).
    pub(crate) fn class(&self) -> &'static str {
        match self {
            Kind::System => "system",
            Kind::Transient => "transient",
            Kind::AllowlistedSystem => "allowlistedSystem",
            Kind::AllowlistedTransient => "allowlistedTransient",
            Kind::Service(_) => "service",
            Kind::Protocol(_) => "protocol",
            Kind::Peer(_) => "peer",
            Kind::ServicePeer(..) => "service-peer",
            Kind::ProtocolPeer(..) => "protocol-peer",
            Kind::Conn(_) => "conn",
            Kind::Stream(_) => "stream",
            Kind::Span(_) => "span",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::System => f.write_str("system"),
            Kind::Transient => f.write_str("transient"),
            Kind::AllowlistedSystem => f.write_str("allowlistedSystem"),
            Kind::AllowlistedTransient => f.write_str("allowlistedTransient"),
            Kind::Service(s) => write!(f, "service:{s}"),
            Kind::Protocol(p) => write!(f, "protocol:{p}"),
            Kind::Peer(p) => write!(f, "peer:{p}"),
            Kind::ServicePeer(s, p) => write!(f, "service:{s}.peer:{p}"),
            Kind::ProtocolPeer(s, p) => write!(f, "protocol:{s}.peer:{p}"),
            Kind::Conn(n) => write!(f, "conn-{n}"),
            Kind::Stream(n) => write!(f, "stream-{n}"),
            Kind::Span(n) => write!(f, "span-{n}"),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Scope {
    pub(crate) kind: Kind,
    pub(crate) limit: BaseLimit,
    pub(crate) stat: ScopeStat,
    /// Linearized parents; empty for a span (which charges its owner instead).
    pub(crate) edges: Vec<ScopeId>,
    pub(crate) owner: Option<ScopeId>,
    /// Children edges, open spans, views and reservations holding this scope.
    refs: u32,
    done: bool,
    /// The peer a connection or stream is attached to.
    pub(crate) peer: Option<PeerId>,
    pub(crate) protocol: Option<String>,
    pub(crate) service: Option<String>,
    /// An allowlisted connection, charged in the allowlisted scopes.
    pub(crate) allowlisted: bool,
}

/// Connections and streams refused, by blocking scope class, direction, resource and, for a
/// stream refused its protocol, the protocol (go `libp2p_rcmgr_blocked_resources`, which does
/// not name the protocol).
pub(crate) type Blocked = HashMap<(&'static str, Option<Direction>, Resource, Option<String>), u64>;

#[derive(Debug)]
pub(crate) struct Accountant {
    /// A slot map: a reservation walks seven scopes twice, and an index with a generation
    /// check is a fraction of a hash lookup (`benches/rcmgr.rs`). Inline, not boxed: a box
    /// cost a dependent load per scope on that walk, and the vector's spare capacity past the
    /// live scopes is allocated but never touched, so it is not resident memory.
    scopes: SlotMap<ScopeId, Scope>,
    next_conn: u64,
    next_stream: u64,
    next_span: u64,
    pub(crate) system: ScopeId,
    pub(crate) transient: ScopeId,
    pub(crate) allowlisted_system: ScopeId,
    pub(crate) allowlisted_transient: ScopeId,
    pub(crate) services: HashMap<String, ScopeId>,
    pub(crate) protocols: HashMap<String, ScopeId>,
    pub(crate) peers: HashMap<PeerId, ScopeId>,
    service_peers: HashMap<(String, PeerId), ScopeId>,
    protocol_peers: HashMap<(String, PeerId), ScopeId>,
    pub(crate) limits: LimitConfig,
    pub(crate) blocked: Blocked,
    /// The protocol a stream is being attached to, named in the blocked counts of a refusal.
    pub(crate) attaching: Option<String>,
    chain: Vec<ScopeId>,
    /// The live peer scopes by usage, kept as their usage changes (all of it goes through
    /// [`Accountant::change`], their creation and their collection).
    pub(crate) peer_distributions: PeerDistributions,
}

impl Accountant {
    pub(crate) fn new(limits: LimitConfig) -> Self {
        let mut a = Accountant {
            scopes: SlotMap::with_key(),
            next_conn: 0,
            next_stream: 0,
            next_span: 0,
            system: ScopeId::default(),
            transient: ScopeId::default(),
            allowlisted_system: ScopeId::default(),
            allowlisted_transient: ScopeId::default(),
            services: HashMap::new(),
            protocols: HashMap::new(),
            peers: HashMap::new(),
            service_peers: HashMap::new(),
            protocol_peers: HashMap::new(),
            limits,
            blocked: HashMap::new(),
            attaching: None,
            chain: Vec::new(),
            peer_distributions: PeerDistributions::default(),
        };
        a.system = a.create(Kind::System, vec![], None);
        a.transient = a.create(Kind::Transient, vec![a.system], None);
        a.allowlisted_system = a.create(Kind::AllowlistedSystem, vec![], None);
        a.allowlisted_transient =
            a.create(Kind::AllowlistedTransient, vec![a.allowlisted_system], None);
        // The fixed scopes are never collected.
        for id in [
            a.system,
            a.transient,
            a.allowlisted_system,
            a.allowlisted_transient,
        ] {
            a.incref(id);
        }
        a
    }

    fn limit_for(&self, kind: &Kind) -> BaseLimit {
        let l = &self.limits;
        *match kind {
            Kind::System => l.system(),
            Kind::Transient => l.transient(),
            Kind::AllowlistedSystem => l.allowlisted_system(),
            Kind::AllowlistedTransient => l.allowlisted_transient(),
            Kind::Service(s) => l.service(s),
            Kind::Protocol(p) => l.protocol(p),
            Kind::Peer(p) => l.peer(p),
            Kind::ServicePeer(s, _) => l.service_peer(s),
            Kind::ProtocolPeer(p, _) => l.protocol_peer(p),
            Kind::Conn(_) => l.conn(),
            Kind::Stream(_) => l.stream(),
            Kind::Span(_) => unreachable!("spans share their owner's limit"),
        }
    }

    /// Replaces the limits; every live scope takes its new limit at once (usage above a lowered
    /// limit stays, and only new reservations are refused).
    pub(crate) fn set_limits(&mut self, limits: LimitConfig) {
        self.limits = limits;
        let ids: Vec<ScopeId> = self.scopes.keys().collect();
        for &id in &ids {
            let kind = &self.scopes[id].kind;
            if !matches!(kind, Kind::Span(_)) {
                let limit = self.limit_for(kind);
                self.scopes[id].limit = limit;
            }
        }
        // Spans share their owner's limit.
        for id in ids {
            if let Some(owner) = self.scopes[id].owner {
                let limit = self.limit_of_owner(owner);
                self.scopes.get_mut(id).unwrap().limit = limit;
            }
        }
    }

    fn limit_of_owner(&self, mut id: ScopeId) -> BaseLimit {
        loop {
            let s = &self.scopes[id];
            match s.owner {
                Some(o) => id = o,
                None => return s.limit,
            }
        }
    }

    pub(crate) fn create(
        &mut self,
        kind: Kind,
        edges: Vec<ScopeId>,
        owner: Option<ScopeId>,
    ) -> ScopeId {
        let limit = match owner {
            Some(o) => self.scopes[o].limit,
            None => self.limit_for(&kind),
        };
        for &e in edges.iter().chain(owner.iter()) {
            self.incref(e);
        }
        if matches!(kind, Kind::Peer(_)) {
            self.peer_distributions.add(&ScopeStat::default());
        }
        self.scopes.insert(Scope {
            kind,
            limit,
            stat: ScopeStat::default(),
            edges,
            owner,
            refs: 0,
            done: false,
            peer: None,
            protocol: None,
            service: None,
            allowlisted: false,
        })
    }

    pub(crate) fn next_conn_kind(&mut self) -> Kind {
        self.next_conn += 1;
        Kind::Conn(self.next_conn)
    }

    pub(crate) fn next_stream_kind(&mut self) -> Kind {
        self.next_stream += 1;
        Kind::Stream(self.next_stream)
    }

    pub(crate) fn new_span(&mut self, owner: ScopeId) -> Result<ScopeId, Error> {
        self.ensure_open(owner)?;
        self.next_span += 1;
        Ok(self.create(Kind::Span(self.next_span), vec![], Some(owner)))
    }

    pub(crate) fn scope(&self, id: ScopeId) -> Option<&Scope> {
        self.scopes.get(id)
    }

    pub(crate) fn scope_mut(&mut self, id: ScopeId) -> &mut Scope {
        self.scopes.get_mut(id).expect("live scope")
    }

    /// The scope's display name, spans included (`peer:X.span-3`).
    pub(crate) fn name(&self, id: ScopeId) -> String {
        match self.scopes.get(id) {
            None => format!("scope-{}", id.data().as_ffi()),
            Some(s) => match s.owner {
                Some(o) => format!("{}.{}", self.name(o), s.kind),
                None => s.kind.to_string(),
            },
        }
    }

    fn ensure_open(&self, id: ScopeId) -> Result<(), Error> {
        match self.scopes.get(id) {
            Some(s) if !s.done => Ok(()),
            _ => Err(Error::ScopeClosed {
                scope: self.name(id),
            }),
        }
    }

    /// The leaf followed by every scope a reservation on it charges: for a span, its owner's
    /// chain; otherwise its edges. A scope that is gone ends the chain (and
    /// [`Accountant::check_all`] refuses it).
    fn fill_chain(&self, id: ScopeId, out: &mut Vec<ScopeId>) {
        out.push(id);
        let Some(s) = self.scopes.get(id) else {
            return;
        };
        match s.owner {
            Some(o) => self.fill_chain(o, out),
            None => out.extend_from_slice(&s.edges),
        }
    }

    /// Reserves `d` on the scope and everything it charges, or nothing.
    pub(crate) fn reserve(
        &mut self,
        id: ScopeId,
        d: &ScopeStat,
        prio: Priority,
        dir: Option<Direction>,
    ) -> Result<(), Error> {
        // The leaf comes first in the chain: a closed leaf is refused by its name.
        let mut chain = std::mem::take(&mut self.chain);
        chain.clear();
        self.fill_chain(id, &mut chain);
        let result = self.check_all(id, &chain, d, prio, dir);
        if result.is_ok() {
            for &s in &chain {
                self.change(s, |st| st.add(d));
            }
        }
        self.chain = chain;
        result
    }

    /// Reserves `bytes` of memory on the scope and everything it charges, and holds the scope
    /// (the reservation's reference), or nothing: [`Accountant::reserve`] for the most frequent
    /// reservation, touching the memory counters alone. A refusal goes through `reserve`,
    /// which names the refusing scope and counts it.
    pub(crate) fn reserve_memory(
        &mut self,
        id: ScopeId,
        bytes: u64,
        prio: Priority,
    ) -> Result<(), Error> {
        let mut chain = std::mem::take(&mut self.chain);
        chain.clear();
        self.fill_chain(id, &mut chain);
        let fits = chain.iter().all(|&s| {
            self.scopes
                .get(s)
                .is_some_and(|s| !s.done && memory_fits(&s.stat, &s.limit, bytes, prio))
        });
        if fits {
            for &s in &chain {
                let scope = &mut self.scopes[s];
                let before = scope.stat.memory;
                scope.stat.memory = before + bytes;
                if matches!(scope.kind, Kind::Peer(_)) {
                    self.peer_distributions.memory_moved(before, before + bytes);
                }
            }
            self.scopes[id].refs += 1;
        }
        self.chain = chain;
        if !fits {
            self.reserve(id, &ScopeStat::memory(bytes), prio, None)?;
            self.incref(id);
        }
        Ok(())
    }

    /// Releases what [`Accountant::reserve_memory`] reserved, and the scope's reference: as
    /// [`Accountant::release`] then [`Accountant::decref`], touching the memory counters alone.
    pub(crate) fn release_memory(&mut self, id: ScopeId, bytes: u64) {
        let mut chain = std::mem::take(&mut self.chain);
        chain.clear();
        self.fill_chain(id, &mut chain);
        // The leaf and, for a span, its owners up to the first scope with edges: a closed one
        // ignores the release, and so does everything reached through it (go).
        let spine = chain
            .iter()
            .position(|&s| self.scopes.get(s).is_none_or(|s| s.owner.is_none()))
            .map_or(chain.len(), |i| i + 1);
        let mut clamped = None;
        for (i, &s) in chain.iter().enumerate() {
            let scope = match self.scopes.get_mut(s) {
                Some(scope) if !scope.done => scope,
                _ if i < spine => break,
                _ => continue,
            };
            let before = scope.stat.memory;
            if before < bytes {
                clamped = Some(s);
            }
            scope.stat.memory = before.saturating_sub(bytes);
            if matches!(scope.kind, Kind::Peer(_)) {
                self.peer_distributions
                    .memory_moved(before, before.saturating_sub(bytes));
            }
        }
        self.chain = chain;
        if let Some(s) = clamped {
            self.clamped(s);
        }
        self.decref(id);
    }

    fn check_all(
        &mut self,
        leaf: ScopeId,
        chain: &[ScopeId],
        d: &ScopeStat,
        prio: Priority,
        dir: Option<Direction>,
    ) -> Result<(), Error> {
        for &s in chain {
            let scope = self.scopes.get(s).filter(|s| !s.done);
            let Some(scope) = scope else {
                return Err(Error::ScopeClosed {
                    scope: self.name(s),
                });
            };
            if let Err((resource, current, attempted, limit)) =
                check(&scope.stat, &scope.limit, d, prio)
            {
                return Err(self.blocked(leaf, s, resource, current, attempted, limit, prio, dir));
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn blocked(
        &mut self,
        leaf: ScopeId,
        at: ScopeId,
        resource: Resource,
        current: u64,
        attempted: u64,
        limit: u64,
        prio: Priority,
        dir: Option<Direction>,
    ) -> Error {
        let class = self.scopes[at].kind.class();
        let key = (class, dir, resource, self.attaching.clone());
        *self.blocked.entry(key).or_default() += 1;
        let mut path = vec![self.name(leaf)];
        if at != leaf {
            path.push(self.name(at));
        }
        let priority = (resource == Resource::Memory).then_some(prio);
        let err = LimitExceeded {
            path,
            resource,
            current,
            attempted,
            limit,
            priority,
        };
        tracing::debug!(
            target: "rcmgr",
            scope = %err.path[0],
            edge = %err.path.last().unwrap(),
            resource = %resource,
            current,
            attempted,
            limit,
            priority = prio.0,
            "blocked {resource}"
        );
        Error::LimitExceeded(Box::new(err))
    }

    /// Releases `d` from the scope and what it charges (go's release: a closed scope ignores it,
    /// and so does everything reached through it).
    pub(crate) fn release(&mut self, id: ScopeId, d: &ScopeStat) {
        let Some(s) = self.scopes.get(id).filter(|s| !s.done) else {
            return;
        };
        match s.owner {
            Some(o) => {
                self.release_one(id, d);
                self.release(o, d);
            }
            None => {
                // The edges copied once into the reused buffer, not looked up per edge.
                let mut edges = std::mem::take(&mut self.chain);
                edges.clear();
                edges.extend_from_slice(&s.edges);
                self.release_one(id, d);
                for &e in &edges {
                    self.release_one(e, d);
                }
                self.chain = edges;
            }
        }
    }

    #[inline]
    fn release_one(&mut self, id: ScopeId, d: &ScopeStat) {
        let clamped = match self.scopes.get_mut(id).filter(|s| !s.done) {
            Some(s) => changed(s, &mut self.peer_distributions, |st| st.sub(d)),
            None => false,
        };
        if clamped {
            self.clamped(id);
        }
    }

    #[cold]
    #[inline(never)]
    fn clamped(&self, id: ScopeId) {
        let scope = self.name(id);
        tracing::warn!(target: "rcmgr", %scope, "BUG: released more than reserved; clamped at zero");
    }

    /// Moves a leaf's whole usage to new edges (go `SetPeer`/`SetProtocol`/`SetService`): the
    /// edges it gains are charged (memory at priority Always) and the edges it loses are
    /// released; on failure nothing changes.
    pub(crate) fn move_edges(&mut self, id: ScopeId, new_edges: Vec<ScopeId>) -> Result<(), Error> {
        self.ensure_open(id)?;
        let (stat, old) = {
            let s = &self.scopes[id];
            (s.stat, s.edges.clone())
        };
        let gained: Vec<ScopeId> = new_edges
            .iter()
            .copied()
            .filter(|e| !old.contains(e))
            .collect();
        let lost: Vec<ScopeId> = old
            .iter()
            .copied()
            .filter(|e| !new_edges.contains(e))
            .collect();
        let dir = direction_of(&stat);
        self.check_all(id, &gained, &stat, Priority::ALWAYS, dir)?;
        for &e in &gained {
            self.incref(e);
            self.change(e, |st| st.add(&stat));
        }
        self.scopes.get_mut(id).unwrap().edges = new_edges;
        for e in lost {
            self.release_one(e, &stat);
            self.decref(e);
        }
        Ok(())
    }

    /// Closes a scope (go `Done`): its usage is released from its parents, and it is collected
    /// once nothing holds it. A second call does nothing.
    pub(crate) fn done(&mut self, id: ScopeId) {
        let Some(s) = self.scopes.get(id).filter(|s| !s.done) else {
            return;
        };
        let stat = s.stat;
        let (owner, edges) = (s.owner, s.edges.clone());
        match owner {
            Some(o) => self.release(o, &stat),
            None => {
                for &e in &edges {
                    self.release_one(e, &stat);
                }
            }
        }
        self.change(id, |st| *st = ScopeStat::default());
        let s = self.scopes.get_mut(id).unwrap();
        s.done = true;
        for e in edges.into_iter().chain(owner) {
            self.decref(e);
        }
        self.collect_if_unused(id);
    }

    /// Changes scope `id`'s usage with `f`, keeping the peer distributions in step; `None`
    /// if there is no such scope.
    fn change<R>(&mut self, id: ScopeId, f: impl FnOnce(&mut ScopeStat) -> R) -> Option<R> {
        let s = self.scopes.get_mut(id)?;
        Some(changed(s, &mut self.peer_distributions, f))
    }

    pub(crate) fn incref(&mut self, id: ScopeId) {
        if let Some(s) = self.scopes.get_mut(id) {
            s.refs += 1;
        }
    }

    pub(crate) fn decref(&mut self, id: ScopeId) {
        if let Some(s) = self.scopes.get_mut(id) {
            s.refs = s.refs.saturating_sub(1);
            self.collect_if_unused(id);
        }
    }

    /// Collects a scope nobody holds: a closed one, or an idle peer, protocol, service-peer or
    /// protocol-peer scope (go's GC, run at once instead of every minute). Service scopes live
    /// forever, as in go.
    fn collect_if_unused(&mut self, id: ScopeId) {
        let s = &self.scopes[id];
        if s.refs > 0 {
            return;
        }
        let collectable = s.done
            || (s.stat.is_zero()
                && matches!(
                    s.kind,
                    Kind::Peer(_)
                        | Kind::Protocol(_)
                        | Kind::ServicePeer(..)
                        | Kind::ProtocolPeer(..)
                ));
        if !collectable {
            return;
        }
        let s = self.scopes.remove(id).unwrap();
        match s.kind {
            Kind::Peer(p) => {
                self.peers.remove(&p);
                self.peer_distributions.remove(&s.stat);
            }
            Kind::Protocol(p) => {
                self.protocols.remove(&p);
            }
            Kind::ServicePeer(sv, p) => {
                self.service_peers.remove(&(sv, p));
            }
            Kind::ProtocolPeer(pr, p) => {
                self.protocol_peers.remove(&(pr, p));
            }
            _ => {}
        }
        if !s.done {
            for e in s.edges.into_iter().chain(s.owner) {
                self.decref(e);
            }
        }
    }

    pub(crate) fn peer_scope(&mut self, peer: PeerId) -> ScopeId {
        if let Some(&id) = self.peers.get(&peer) {
            return id;
        }
        let id = self.create(Kind::Peer(peer), vec![self.system], None);
        self.peers.insert(peer, id);
        id
    }

    pub(crate) fn protocol_scope(&mut self, protocol: &str) -> ScopeId {
        if let Some(&id) = self.protocols.get(protocol) {
            return id;
        }
        let id = self.create(Kind::Protocol(protocol.to_owned()), vec![self.system], None);
        self.protocols.insert(protocol.to_owned(), id);
        id
    }

    pub(crate) fn service_scope(&mut self, service: &str) -> ScopeId {
        if let Some(&id) = self.services.get(service) {
            return id;
        }
        let id = self.create(Kind::Service(service.to_owned()), vec![self.system], None);
        // Service scopes are never collected (go).
        self.incref(id);
        self.services.insert(service.to_owned(), id);
        id
    }

    pub(crate) fn protocol_peer_scope(&mut self, protocol: &str, peer: PeerId) -> ScopeId {
        let key = (protocol.to_owned(), peer);
        if let Some(&id) = self.protocol_peers.get(&key) {
            return id;
        }
        let id = self.create(Kind::ProtocolPeer(key.0.clone(), peer), vec![], None);
        self.protocol_peers.insert(key, id);
        id
    }

    pub(crate) fn service_peer_scope(&mut self, service: &str, peer: PeerId) -> ScopeId {
        let key = (service.to_owned(), peer);
        if let Some(&id) = self.service_peers.get(&key) {
            return id;
        }
        let id = self.create(Kind::ServicePeer(key.0.clone(), peer), vec![], None);
        self.service_peers.insert(key, id);
        id
    }

    /// Collects a freshly looked-up scope that the caller ended up not using.
    pub(crate) fn release_lookup(&mut self, id: ScopeId) {
        if self.scopes.contains_key(id) {
            self.collect_if_unused(id);
        }
    }

    /// Number of live scopes of every kind (for tests of the collection).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.scopes.len()
    }

    pub(crate) fn stat_of(&self, id: ScopeId) -> ScopeStat {
        self.scopes.get(id).map(|s| s.stat).unwrap_or_default()
    }

    #[cfg(test)]
    pub(crate) fn refs_of(&self, id: ScopeId) -> u32 {
        self.scopes.get(id).map_or(0, |s| s.refs)
    }
}

/// Changes `s`'s usage with `f`, moving a peer scope in `peers` (see [`Accountant::change`]).
fn changed<R>(
    s: &mut Scope,
    peers: &mut PeerDistributions,
    f: impl FnOnce(&mut ScopeStat) -> R,
) -> R {
    if !matches!(s.kind, Kind::Peer(_)) {
        return f(&mut s.stat);
    }
    let before = s.stat;
    let r = f(&mut s.stat);
    peers.moved(&before, &s.stat);
    r
}

fn direction_of(stat: &ScopeStat) -> Option<Direction> {
    if stat.conns_inbound + stat.streams_inbound > 0 {
        Some(Direction::Inbound)
    } else if stat.conns_outbound + stat.streams_outbound > 0 {
        Some(Direction::Outbound)
    } else {
        None
    }
}
