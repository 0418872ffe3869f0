//! A simulated node: the node machine `peerage run` drives, with the connection manager core,
//! driven by messages over the modelled network instead of sockets.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BTreeSet, BinaryHeap},
    fmt::Write as _,
    sync::{Arc, Mutex, MutexGuard},
    time::Instant,
};

use libp2p_identity::PeerId;
use multiaddr::{Multiaddr, Protocol};
use peerage_core::{
    connmgr::{self, ConnManager},
    maintenance::{self, Bounds},
    node::{self, Command, DialError, Identify, Input, Machine},
    peerstore::{self, Peerstore},
    pool,
};
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::{
    scenario::AdversaryKind,
    world::{Nanos, World, mix, nanos},
};

/// The protection tag of trusted peers, as the glue's.
const TRUSTED_TAG: &str = "peerage-trusted";

/// A message between two nodes, on connection `conn` (numbered by its dialer).
#[derive(Debug, Clone)]
pub(crate) enum Msg {
    /// A dial arrives (the handshake is folded into it).
    Dial {
        conn: u64,
        peer: PeerId,
        expect: Option<PeerId>,
    },
    /// The listener admitted it.
    Accepted {
        conn: u64,
        peer: PeerId,
    },
    /// The listener refused it.
    Refused {
        conn: u64,
    },
    /// The listener is not the peer the dialer expected.
    WrongPeer {
        conn: u64,
    },
    /// The remote closed the connection.
    Close {
        conn: u64,
    },
    Identify {
        conn: u64,
        info: Identify,
    },
    PexRequest {
        conn: u64,
        request: node::pex::Request,
    },
    PexResponse {
        conn: u64,
        response: node::pex::Response,
    },
    /// The remote dropped our request unanswered.
    PexDropped {
        conn: u64,
    },
}

/// Something a node processes at a time.
#[derive(Debug, Clone)]
pub(crate) enum Ev {
    /// Start: the machine is created.
    Start,
    Timer,
    Msg {
        from: u32,
        /// Boxed: a message is up to 180 bytes, and a node's queue holds its peak of events.
        msg: Box<Msg>,
    },
    DialTimeout {
        conn: u64,
    },
    /// Request `seq` to `peer` got no answer in time.
    PexTimeout {
        peer: PeerId,
        seq: u64,
    },
    Flood,
}

#[derive(Debug, Clone)]
struct Conn {
    remote: u32,
    peer: PeerId,
    inbound: bool,
    /// Established on our side.
    established: bool,
    /// Left out of the connection manager (nacked).
    excluded: bool,
}

/// Counters for the report.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counts {
    pub(crate) dials: u64,
    pub(crate) closes: u64,
    pub(crate) pex_requests: u64,
    pub(crate) records_opened: u64,
}

/// The connection manager shared by the machine (which reads it) and the node (which feeds it);
/// the eclipse scenario's victim uses it too.
#[derive(Clone)]
pub(crate) struct Shared(pub(crate) Arc<Mutex<ConnManager<u64>>>);

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, ConnManager<u64>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl node::ConnectionManager for Shared {
    fn close_order(&self, peers: &[PeerId], now: Instant) -> Vec<PeerId> {
        self.lock().close_order(peers, now)
    }
    fn tag_value(&self, peer: &PeerId) -> i64 {
        self.lock().tag_value(peer)
    }
    fn admit(&self, peer: &PeerId) -> Result<(), peerage_core::connmgr::HardCapReached> {
        self.lock().admit(peer)
    }
    fn is_protected(&self, peer: &PeerId) -> bool {
        self.lock().is_protected(peer, "")
    }
    fn standing(&self, peers: &[PeerId]) -> Vec<(i64, bool)> {
        self.lock().standing(peers)
    }
}

/// A simulated node.
pub(crate) struct SimNode {
    pub(crate) index: u32,
    pub(crate) machine: Option<Machine<u64>>,
    connmgr: Option<Shared>,
    queue: BinaryHeap<Reverse<(Nanos, u64, usize)>>,
    /// Events by their queue slot.
    slots: Vec<Option<Ev>>,
    free: Vec<usize>,
    seq: u64,
    timer_at: Option<Nanos>,
    /// When the engine last scheduled this node (lazy scheduling).
    pub(crate) scheduled: Option<Nanos>,
    rng: StdRng,
    next_conn: u32,
    conns: BTreeMap<u64, Conn>,
    /// Dials in flight: their target.
    dialing: BTreeMap<u64, u32>,
    tokens: BTreeMap<u64, (u32, u64)>,
    next_token: u64,
    /// Requests for points of ours waiting for an answer, by peer.
    /// Requests of ours waiting for an answer: the peer, and the request's number.
    asking: BTreeMap<PeerId, u64>,
    next_ask: u64,
    /// Connections a flooder holds outside its machine.
    flood: BTreeSet<u64>,
    pub(crate) outbox: Vec<(u32, Nanos, Msg)>,
    /// This window's log lines; the engine hashes and empties it after each window.
    pub(crate) log: String,
    pub(crate) counts: Counts,
    pub(crate) started: Option<Nanos>,
}

impl SimNode {
    pub(crate) fn new(index: u32, seed: u64) -> Self {
        Self {
            index,
            machine: None,
            connmgr: None,
            queue: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            seq: 0,
            timer_at: None,
            scheduled: None,
            rng: StdRng::seed_from_u64(mix(seed ^ u64::from(index).wrapping_mul(0x9E37))),
            next_conn: 0,
            conns: BTreeMap::new(),
            dialing: BTreeMap::new(),
            tokens: BTreeMap::new(),
            next_token: 0,
            asking: BTreeMap::new(),
            next_ask: 0,
            flood: BTreeSet::new(),
            outbox: Vec::new(),
            log: String::new(),
            counts: Counts::default(),
            started: None,
        }
    }

    pub(crate) fn push(&mut self, t: Nanos, ev: Ev) {
        let slot = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(ev);
                i
            }
            None => {
                self.slots.push(Some(ev));
                self.slots.len() - 1
            }
        };
        self.seq += 1;
        self.queue.push(Reverse((t, self.seq, slot)));
    }

    pub(crate) fn next_time(&self) -> Option<Nanos> {
        self.queue.peek().map(|Reverse((t, ..))| *t)
    }

    /// Connections established on our side, by remote node.
    pub(crate) fn links(&self) -> impl Iterator<Item = u32> + '_ {
        self.conns
            .values()
            .filter(|c| c.established)
            .map(|c| c.remote)
    }

    /// Established connections, as (connection, remote node); for the engine when this node
    /// leaves.
    pub(crate) fn open_conns(&self) -> Vec<(u64, u32)> {
        self.conns.iter().map(|(id, c)| (*id, c.remote)).collect()
    }

    /// What this node's tables hold, for the report's memory breakdown.
    pub(crate) fn footprint(&self) -> crate::report::Footprint {
        use std::mem::size_of;
        let Some(m) = &self.machine else {
            return Default::default();
        };
        let pool = m.pool();
        let mut f = crate::report::Footprint {
            points: pool.known_points() as f64,
            peers: pool.known_peers() as f64,
            peerstore_peers: m.peerstore().peers(m.now()).len() as f64,
            connections: self.conns.len() as f64,
            ..Default::default()
        };
        for (addr, info) in pool.points() {
            f.point_log_entries += info.events().len() as f64;
            f.point_bytes += (size_of::<Multiaddr>()
                + addr.len()
                + size_of::<Box<peerage_core::pool::point::Info>>()
                + size_of::<peerage_core::pool::point::Info>()
                + info.events().len() * size_of::<peerage_core::pool::LogEntry<PeerId>>())
                as f64;
        }
        for (_, info) in pool.peers() {
            f.peer_log_entries += info.events().len() as f64;
            f.peer_bytes += (size_of::<PeerId>()
                + size_of::<Box<peerage_core::pool::peer::Info>>()
                + size_of::<peerage_core::pool::peer::Info>()
                + info.events().len() * size_of::<peerage_core::pool::LogEntry<Multiaddr>>())
                as f64;
        }
        f
    }

    /// Running peers, as the maintenance counts them.
    pub(crate) fn active(&self) -> usize {
        self.machine.as_ref().map_or(0, |m| m.pool().active())
    }

    /// Processes every event before `end`.
    pub(crate) fn run_until(&mut self, end: Nanos, w: &World) {
        while let Some(&Reverse((t, _, slot))) = self.queue.peek() {
            if t >= end {
                break;
            }
            self.queue.pop();
            let ev = self.slots[slot].take().expect("queued event");
            self.free.push(slot);
            self.process(t, ev, w);
        }
        if self.slots.len() > 64 && self.queue.len() * 4 < self.slots.len() {
            self.compact();
        }
    }

    /// Moves the queued events into a table of their size: a burst (a bootstrap node's joins)
    /// must not pin its peak of slots for good. The order (time, then arrival) is unchanged.
    fn compact(&mut self) {
        let queued = std::mem::take(&mut self.queue).into_vec();
        let mut slots = Vec::with_capacity(queued.len());
        let mut queue = Vec::with_capacity(queued.len());
        for Reverse((t, seq, slot)) in queued {
            slots.push(self.slots[slot].take());
            queue.push(Reverse((t, seq, slots.len() - 1)));
        }
        self.slots = slots;
        self.free = Vec::new();
        self.queue = BinaryHeap::from(queue);
    }

    fn trace(&mut self, t: Nanos, dir: char, what: &dyn std::fmt::Debug) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.log, "{t} {} {dir} {what:?}", self.index);
    }

    /// Logs an answer by its size and a hash of its points, not its text: answers are most
    /// of the log, and formatting them most of its cost.
    fn trace_answer(&mut self, t: Nanos, dir: char, what: &str, response: &node::pex::Response) {
        // The bytes are gathered first and hashed at once: a call per piece and an allocation
        // per peer ID were most of this function's time (the digest is of the same bytes).
        let mut bytes = Vec::with_capacity(response.points.len() * 64);
        for p in &response.points {
            bytes.extend_from_slice(p.addr.as_ref());
            if let Some(peer) = &p.peer {
                // As `PeerId::to_bytes`, without its allocation; writing to a `Vec` cannot fail.
                let _ = peer.as_ref().write(&mut bytes);
            }
            bytes.push(b' ');
        }
        for r in response.records.iter().chain(&response.record) {
            bytes.extend_from_slice(r);
            bytes.push(b' ');
        }
        let digest = blake3::hash(&bytes);
        let _ = writeln!(
            self.log,
            "{t} {} {dir} {what} points={} records={} nack={} {}",
            self.index,
            response.points.len(),
            response.records.len() + usize::from(response.record.is_some()),
            response.nack,
            &digest.to_hex()[..16]
        );
    }

    /// Logs a line of its own form for the frequent inputs and commands, naming peers by node
    /// (`n12`): most lines name a peer, and base58 of peer IDs was a tenth of the run's time.
    /// `false` for the others, which go as their `Debug`.
    fn trace_input(&mut self, t: Nanos, input: &Input<u64>, w: &World) -> bool {
        let i = self.index;
        let _ = match input {
            Input::ConnectionEstablished {
                id,
                peer,
                remote,
                inbound,
            } => writeln!(
                self.log,
                "{t} {i} < ConnectionEstablished {id} {} {remote} inbound={inbound}",
                w.name(peer)
            ),
            Input::ConnectionClosed {
                id,
                peer,
                by_remote,
                remaining,
            } => writeln!(
                self.log,
                "{t} {i} < ConnectionClosed {id} {} by_remote={by_remote} remaining={remaining}",
                w.name(peer)
            ),
            Input::Identified { peer, info } => writeln!(
                self.log,
                "{t} {i} < Identified {} {:?} {:?} {:?} {:?}",
                w.name(peer),
                info.listen_addrs,
                info.protocols,
                info.agent_version,
                info.protocol_version
            ),
            Input::Ping { peer, rtt } => {
                writeln!(self.log, "{t} {i} < Ping {} {rtt:?}", w.name(peer))
            }
            Input::PexRequest {
                peer,
                id,
                request,
                token,
            } => writeln!(
                self.log,
                "{t} {i} < PexRequest {} {id} need={} token={token}",
                w.name(peer),
                request.need
            ),
            Input::PexAnswer { peer, id, response } => {
                let what = format!("PexAnswer {} {id}", w.name(peer));
                self.trace_answer(t, '<', &what, response);
                Ok(())
            }
            _ => return false,
        };
        true
    }

    /// As [`trace_input`](Self::trace_input), for commands.
    fn trace_command(&mut self, t: Nanos, command: &Command<u64>, w: &World) -> bool {
        let i = self.index;
        let _ = match command {
            Command::Dial { point, peer } => match peer {
                Some(p) => writeln!(self.log, "{t} {i} > Dial {point} {}", w.name(p)),
                None => writeln!(self.log, "{t} {i} > Dial {point} -"),
            },
            Command::Close { peer, id } => {
                writeln!(self.log, "{t} {i} > Close {} {id:?}", w.name(peer))
            }
            Command::AskPoints { peer, request } => writeln!(
                self.log,
                "{t} {i} > AskPoints {} need={}",
                w.name(peer),
                request.need
            ),
            Command::AnswerPoints { token, response } => {
                self.trace_answer(t, '>', &format!("AnswerPoints {token}"), response);
                Ok(())
            }
            Command::Protect(peer) => writeln!(self.log, "{t} {i} > Protect {}", w.name(peer)),
            Command::Unprotect(peer) => {
                writeln!(self.log, "{t} {i} > Unprotect {}", w.name(peer))
            }
            _ => return false,
        };
        true
    }

    fn feed(&mut self, t: Nanos, now: Instant, input: Input<u64>, w: &World) {
        if !self.trace_input(t, &input, w) {
            self.trace(t, '<', &input);
        }
        if let Some(m) = &mut self.machine {
            m.handle(now, input);
        }
    }

    fn process(&mut self, t: Nanos, ev: Ev, w: &World) {
        let now = w.instant(t);
        let me = &w.nodes[self.index as usize];
        let adversary = me.adversary;
        match ev {
            Ev::Start => self.start(t, now, w),
            Ev::Timer => {
                if self.timer_at == Some(t) {
                    self.timer_at = None;
                    self.trace(t, '<', &"timeout");
                    if let Some(m) = &mut self.machine {
                        m.handle_timeout(now);
                    }
                    let trim = self.connmgr.as_ref().and_then(|c| c.lock().poll(now));
                    if let Some(trim) = trim {
                        for v in trim.victims {
                            if let Some(m) = &mut self.machine {
                                m.closing(v.peer, pool::CloseReason::Trim);
                            }
                            self.close_peer(t, now, v.peer, w);
                        }
                    }
                }
            }
            Ev::Msg { from, msg } => self.on_msg(t, now, from, *msg, w),
            Ev::DialTimeout { conn } => {
                if self.dialing.remove(&conn).is_some() {
                    self.feed(
                        t,
                        now,
                        Input::DialFailed {
                            id: conn,
                            error: DialError::Other,
                        },
                        w,
                    );
                }
            }
            Ev::PexTimeout { peer, seq } => {
                if self.asking.get(&peer) == Some(&seq) {
                    self.asking.remove(&peer);
                    self.feed(
                        t,
                        now,
                        Input::PexFailed {
                            peer,
                            outbound: true,
                            invalid_data: false,
                        },
                        w,
                    );
                }
            }
            Ev::Flood => {
                if adversary == Some(AdversaryKind::Flooder) {
                    self.flood_once(t, w);
                }
            }
        }
        self.drain(t, now, w);
    }

    fn start(&mut self, t: Nanos, now: Instant, w: &World) {
        let info = &w.nodes[self.index as usize];
        let bounds = Bounds::from_connections(w.scenario.connections);
        let cm_config = connmgr::Config::new()
            .with_watermarks(bounds.expected(), bounds.max())
            .with_grace_period(node::Config::new().maintenance().grace_period());
        let cm = Shared(Arc::new(Mutex::new(
            ConnManager::new(cm_config, now).expect("valid watermarks"),
        )));
        let config = node::Config::new().with_maintenance(
            maintenance::Config::new()
                .with_bounds(bounds)
                .with_rotation_interval(w.scenario.rotation),
        );
        let mut machine = Machine::new(
            info.peer,
            config,
            Peerstore::memory(peerstore::Config::default()),
            Box::new(cm.clone()),
            Box::new(node::Unsigned::new(info.peer)),
            StdRng::seed_from_u64(self.rng.random()),
            now,
        );
        machine.handle(now, Input::NewListenAddr(info.addr.clone()));
        for addr in &w.bootstrap {
            if *addr != info.addr {
                // A bootstrap point is a valid point, never ours.
                let _ = machine.add_trusted_point(addr, now);
            }
        }
        self.machine = Some(machine);
        self.connmgr = Some(cm);
        self.started = Some(t);
        self.timer_at = Some(t);
        self.push(t, Ev::Timer);
        if let Some(AdversaryKind::Flooder) = info.adversary {
            self.push(t, Ev::Flood);
        }
    }

    fn send(&mut self, t: Nanos, to: u32, msg: Msg, w: &World) {
        let at = t + w.delay(self.index, to);
        self.outbox.push((to, at, msg));
    }

    fn new_conn(&mut self) -> u64 {
        self.next_conn += 1;
        u64::from(self.index) << 32 | u64::from(self.next_conn)
    }

    /// Carries out the machine's commands, feeding back what they cause, and re-arms the
    /// timer.
    fn drain(&mut self, t: Nanos, now: Instant, w: &World) {
        loop {
            let Some(m) = &mut self.machine else { return };
            let Some(command) = m.poll_command() else {
                break;
            };
            if !self.trace_command(t, &command, w) {
                self.trace(t, '>', &command);
            }
            self.execute(t, now, command, w);
        }
        if let Some(m) = &mut self.machine {
            while m.poll_event().is_some() {}
            let deadline = [
                m.poll_timeout(),
                self.connmgr.as_ref().and_then(|c| c.lock().poll_timeout()),
            ]
            .into_iter()
            .flatten()
            .min()
            .map(|d| w.nanos(d).max(t));
            if let Some(d) = deadline
                && self.timer_at.is_none_or(|at| d < at)
            {
                self.timer_at = Some(d);
                self.push(d, Ev::Timer);
            }
        }
    }

    fn execute(&mut self, t: Nanos, now: Instant, command: Command<u64>, w: &World) {
        match command {
            Command::Dial { point, peer } => self.dial(t, now, point, peer, w),
            Command::Close {
                peer,
                id: Some(conn),
            } => {
                if self.conns.get(&conn).is_some_and(|c| c.peer == peer) {
                    self.close(t, now, conn, false, w);
                }
            }
            Command::Close { peer, id: None } => self.close_peer(t, now, peer, w),
            Command::AskPoints { peer, request } => {
                let conn = self
                    .conns
                    .iter()
                    .find(|(_, c)| c.peer == peer && c.established)
                    .map(|(id, c)| (*id, c.remote));
                match conn {
                    Some((conn, remote)) => {
                        self.counts.pex_requests += 1;
                        self.next_ask += 1;
                        let seq = self.next_ask;
                        self.asking.insert(peer, seq);
                        self.push(
                            t + nanos(node::pex::REQUEST_TIMEOUT),
                            Ev::PexTimeout { peer, seq },
                        );
                        self.send(t, remote, Msg::PexRequest { conn, request }, w);
                    }
                    None => self.feed(
                        t,
                        now,
                        Input::PexFailed {
                            peer,
                            outbound: true,
                            invalid_data: false,
                        },
                        w,
                    ),
                }
            }
            Command::AnswerPoints { token, response } => {
                if let Some((remote, conn)) = self.tokens.remove(&token)
                    && self.conns.contains_key(&conn)
                {
                    self.send(t, remote, Msg::PexResponse { conn, response }, w);
                }
            }
            Command::DropRequest { token } => {
                if let Some((remote, conn)) = self.tokens.remove(&token) {
                    self.send(t, remote, Msg::PexDropped { conn }, w);
                }
            }
            Command::Protect(peer) => {
                if let Some(cm) = &self.connmgr {
                    cm.lock().protect(peer, TRUSTED_TAG);
                }
            }
            // The simulator models no streams, so it never reports counts.
            Command::SetStreams { peer, id, streams } => {
                if let Some(cm) = &self.connmgr {
                    cm.lock().set_streams(&peer, id, streams);
                }
            }
            Command::Unprotect(peer) => {
                if let Some(cm) = &self.connmgr {
                    cm.lock().unprotect(&peer, TRUSTED_TAG);
                }
            }
            Command::Exclude(conn) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.excluded = true;
                }
            }
            Command::Include(conn) => {
                if let Some(c) = self.conns.get_mut(&conn)
                    && std::mem::take(&mut c.excluded)
                    && let Some(cm) = &self.connmgr
                {
                    let remote = w.remote_addr(c.remote, conn);
                    cm.lock()
                        .connection_established(c.peer, conn, c.inbound, remote, now);
                }
            }
        }
    }

    fn dial(&mut self, t: Nanos, now: Instant, point: Multiaddr, peer: Option<PeerId>, w: &World) {
        let conn = self.new_conn();
        self.counts.dials += 1;
        let Some(m) = &mut self.machine else { return };
        m.dial_started(conn, point.clone());
        if let Err(e) = m.admit_pending_outbound(peer, std::slice::from_ref(&point), now) {
            self.trace(t, '!', &e);
            self.feed(
                t,
                now,
                Input::DialFailed {
                    id: conn,
                    error: DialError::Other,
                },
                w,
            );
            return;
        }
        let target = w.by_addr.get(&point).copied();
        let me = self.index;
        match target {
            Some(to) if to == me => {
                self.feed(
                    t,
                    now,
                    Input::DialFailed {
                        id: conn,
                        error: DialError::LocalPeer,
                    },
                    w,
                );
            }
            Some(to)
                if w.nodes[to as usize].alive
                    && w.nodes[to as usize].reachable
                    && w.connected(me, to) =>
            {
                if self.rng.random_bool(w.scenario.dial_failure) {
                    self.dialing.insert(conn, to);
                    self.push(t + 2 * w.delay(me, to), Ev::DialTimeout { conn });
                    return;
                }
                self.dialing.insert(conn, to);
                let peer_id = w.nodes[me as usize].peer;
                self.send(
                    t,
                    to,
                    Msg::Dial {
                        conn,
                        peer: peer_id,
                        expect: peer,
                    },
                    w,
                );
            }
            _ => {
                self.dialing.insert(conn, u32::MAX);
                self.push(t + nanos(w.scenario.dial_timeout), Ev::DialTimeout { conn });
            }
        }
    }

    fn close_peer(&mut self, t: Nanos, now: Instant, peer: PeerId, w: &World) {
        let ids: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.peer == peer)
            .map(|(id, _)| *id)
            .collect();
        for conn in ids {
            self.close(t, now, conn, false, w);
        }
    }

    /// Closes a connection on our side; tells the remote unless it closed it.
    pub(crate) fn close(&mut self, t: Nanos, now: Instant, conn: u64, by_remote: bool, w: &World) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if !by_remote {
            self.counts.closes += 1;
            self.send(t, c.remote, Msg::Close { conn }, w);
        }
        if !c.excluded
            && let Some(cm) = &self.connmgr
        {
            cm.lock().connection_closed(&c.peer, conn);
        }
        if c.established {
            let remaining = self
                .conns
                .values()
                .filter(|o| o.peer == c.peer && o.established)
                .count();
            if remaining == 0 && self.asking.remove(&c.peer).is_some() {
                self.feed(
                    t,
                    now,
                    Input::PexFailed {
                        peer: c.peer,
                        outbound: true,
                        invalid_data: false,
                    },
                    w,
                );
            }
            self.feed(
                t,
                now,
                Input::ConnectionClosed {
                    id: conn,
                    peer: c.peer,
                    by_remote,
                    remaining,
                },
                w,
            );
        }
    }

    /// Counts an admitted connection in the connection manager, unless it is excluded (the
    /// machine checked the hard cap when it admitted it).
    fn count(&mut self, conn: u64, now: Instant, w: &World) {
        let (Some(c), Some(cm)) = (self.conns.get(&conn), &self.connmgr) else {
            return;
        };
        if !c.excluded {
            cm.lock().connection_established(
                c.peer,
                conn,
                c.inbound,
                w.remote_addr(c.remote, conn),
                now,
            );
        }
    }

    /// Records a connection the machine admitted, carries out its commands (a nacked one is
    /// left out of the connection manager, as the glue does), counts it there, and tells the
    /// machine it is established. `false`, with the machine told, if a command carried out
    /// meanwhile closed it.
    #[allow(clippy::too_many_arguments)]
    fn establish(
        &mut self,
        t: Nanos,
        now: Instant,
        conn: u64,
        from: u32,
        peer: PeerId,
        remote: Multiaddr,
        inbound: bool,
        w: &World,
    ) -> bool {
        let c = Conn {
            remote: from,
            peer,
            inbound,
            established: false,
            excluded: false,
        };
        self.conns.insert(conn, c);
        self.drain(t, now, w);
        // A command carried out meanwhile (a ban's disconnection) may have closed it.
        if !self.conns.contains_key(&conn) {
            self.feed(t, now, Input::AdmissionFailed { id: conn }, w);
            return false;
        }
        self.count(conn, now, w);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.established = true;
        }
        self.feed(
            t,
            now,
            Input::ConnectionEstablished {
                id: conn,
                peer,
                remote,
                inbound,
            },
            w,
        );
        true
    }

    fn identify(&self, w: &World) -> Identify {
        let info = &w.nodes[self.index as usize];
        Identify {
            listen_addrs: vec![info.addr.clone()],
            protocols: vec![
                "/ipfs/id/1.0.0".into(),
                "/ipfs/ping/1.0.0".into(),
                node::pex::PROTOCOL.into(),
            ],
            agent_version: "peerage-sim".into(),
            protocol_version: "ipfs/0.1.0".into(),
            signed_peer_record: None,
        }
    }

    fn on_msg(&mut self, t: Nanos, now: Instant, from: u32, msg: Msg, w: &World) {
        if self.machine.is_none() {
            return;
        }
        let adversary = w.nodes[self.index as usize].adversary;
        match msg {
            Msg::Dial { conn, peer, expect } => {
                let me = &w.nodes[self.index as usize];
                if expect.is_some_and(|e| e != me.peer) {
                    self.send(t, from, Msg::WrongPeer { conn }, w);
                    return;
                }
                let remote = w.remote_addr(from, conn);
                let m = self.machine.as_mut().expect("started");
                let admitted = m
                    .admit_pending_inbound(conn, &remote, now)
                    .and_then(|()| m.admit_established(conn, peer, &remote, true, now));
                self.trace(t, '?', &admitted);
                if admitted.is_err() {
                    self.send(t, from, Msg::Refused { conn }, w);
                    return;
                }
                if !self.establish(t, now, conn, from, peer, remote, true, w) {
                    self.send(t, from, Msg::Refused { conn }, w);
                    return;
                }
                self.send(
                    t,
                    from,
                    Msg::Accepted {
                        conn,
                        peer: me.peer,
                    },
                    w,
                );
                let info = self.identify(w);
                self.send(t, from, Msg::Identify { conn, info }, w);
            }
            Msg::Accepted { conn, peer } => {
                if self.flood.contains(&conn) {
                    return;
                }
                if self.dialing.remove(&conn).is_none() {
                    // Timed out meanwhile: the connection is dropped.
                    self.send(t, from, Msg::Close { conn }, w);
                    return;
                }
                let remote = w.nodes[from as usize].addr.clone();
                let m = self.machine.as_mut().expect("started");
                let admitted = m.admit_established(conn, peer, &remote, false, now);
                self.trace(t, '?', &admitted);
                // Refused by the machine (its last check is the connection manager's hard cap).
                if admitted.is_err() || !self.establish(t, now, conn, from, peer, remote, false, w)
                {
                    self.feed(
                        t,
                        now,
                        Input::DialFailed {
                            id: conn,
                            error: DialError::Other,
                        },
                        w,
                    );
                    self.send(t, from, Msg::Close { conn }, w);
                    return;
                }
                let info = self.identify(w);
                self.send(t, from, Msg::Identify { conn, info }, w);
            }
            Msg::Refused { conn } => {
                if self.flood.remove(&conn) {
                    return;
                }
                if self.dialing.remove(&conn).is_some() {
                    self.feed(
                        t,
                        now,
                        Input::DialFailed {
                            id: conn,
                            error: DialError::Other,
                        },
                        w,
                    );
                }
            }
            Msg::WrongPeer { conn } => {
                if self.dialing.remove(&conn).is_some() {
                    self.feed(
                        t,
                        now,
                        Input::DialFailed {
                            id: conn,
                            error: DialError::WrongPeer,
                        },
                        w,
                    );
                }
            }
            Msg::Close { conn } => {
                if self.flood.remove(&conn) {
                    return;
                }
                self.close(t, now, conn, true, w);
            }
            Msg::Identify { conn, info } => {
                if let Some(c) = self.conns.get(&conn).filter(|c| c.established) {
                    let peer = c.peer;
                    self.feed(t, now, Input::Identified { peer, info }, w);
                    let rtt = std::time::Duration::from_nanos(2 * w.delay(self.index, from));
                    self.feed(t, now, Input::Ping { peer, rtt }, w);
                }
            }
            Msg::PexRequest { conn, request } => {
                let Some(c) = self.conns.get(&conn).filter(|c| c.established) else {
                    return;
                };
                let peer = c.peer;
                match adversary {
                    Some(AdversaryKind::Silent) => {}
                    Some(AdversaryKind::PexLiar) => {
                        let rate = w.scenario.adversary_rate(AdversaryKind::PexLiar);
                        let points = (0..rate as usize)
                            .map(|_| {
                                let [a, b, c] = [
                                    self.rng.random::<u8>(),
                                    self.rng.random::<u8>(),
                                    self.rng.random::<u8>(),
                                ];
                                node::pex::Point {
                                    addr: Multiaddr::empty()
                                        .with(Protocol::Ip4([240, a, b, c].into()))
                                        .with(Protocol::Tcp(9732)),
                                    peer: None,
                                }
                            })
                            .collect();
                        let response = node::pex::Response {
                            points,
                            ..Default::default()
                        };
                        self.send(t, from, Msg::PexResponse { conn, response }, w);
                    }
                    _ => {
                        let token = self.next_token;
                        self.next_token += 1;
                        self.tokens.insert(token, (from, conn));
                        self.feed(
                            t,
                            now,
                            Input::PexRequest {
                                peer,
                                id: conn,
                                request,
                                token,
                            },
                            w,
                        );
                    }
                }
            }
            Msg::PexResponse { conn, response } => {
                if let Some(c) = self.conns.get(&conn) {
                    let peer = c.peer;
                    if self.asking.remove(&peer).is_some() {
                        self.counts.records_opened +=
                            u64::from(response.record.is_some()) + response.records.len() as u64;
                        self.feed(
                            t,
                            now,
                            Input::PexAnswer {
                                peer,
                                id: conn,
                                response,
                            },
                            w,
                        );
                    }
                }
            }
            Msg::PexDropped { conn } => {
                if let Some(c) = self.conns.get(&conn) {
                    let peer = c.peer;
                    if self.asking.remove(&peer).is_some() {
                        self.feed(
                            t,
                            now,
                            Input::PexFailed {
                                peer,
                                outbound: true,
                                invalid_data: false,
                            },
                            w,
                        );
                    }
                }
            }
        }
    }

    /// A flooder opens one more inbound connection to a random live honest node, under a
    /// fresh identity, and holds it outside its machine.
    fn flood_once(&mut self, t: Nanos, w: &World) {
        let rate = w.scenario.adversary_rate(AdversaryKind::Flooder);
        let n = u32::try_from(w.nodes.len()).expect("fewer than 2^32 nodes");
        for _ in 0..16 {
            let to = self.rng.random_range(0..n);
            let info = &w.nodes[to as usize];
            if info.alive
                && info.reachable
                && info.adversary.is_none()
                && w.connected(self.index, to)
            {
                let conn = self.new_conn();
                let fake = crate::world::node_key(!mix(conn), self.index)
                    .public()
                    .to_peer_id();
                self.flood.insert(conn);
                self.counts.dials += 1;
                self.send(
                    t,
                    to,
                    Msg::Dial {
                        conn,
                        peer: fake,
                        expect: None,
                    },
                    w,
                );
                break;
            }
        }
        self.push(t + (1e9 / rate) as Nanos, Ev::Flood);
    }
}
