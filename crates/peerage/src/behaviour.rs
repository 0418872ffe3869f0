//! The Peerage `NetworkBehaviour`: translates swarm events into the node machine
//! ([`peerage_core::node`]) and carries its commands out to the swarm and its handlers.

use std::{
    collections::VecDeque,
    future::Future,
    task::{Context, Poll, Waker},
    time::Instant,
};

use futures::{FutureExt, channel::oneshot};
use libp2p::{
    Multiaddr, PeerId,
    core::{Endpoint, transport::PortUse},
    identity::Keypair,
    ping,
    swarm::{
        CloseConnection, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler,
        THandlerInEvent, THandlerOutEvent, ToSwarm,
        dial_opts::{DialOpts, PeerCondition},
    },
};
use peerage_core::{
    maintenance::Bounds,
    node::{self, Admission, Command, Input, Machine, Refusal},
    peerstore::{self, Peerstore},
    pool::{self, Pool},
};
use rand::{SeedableRng, rngs::StdRng};

#[cfg(feature = "metrics")]
use crate::config::ProtocolMetrics;
use crate::{
    Config, ConnectionView, Event, connmgr, identify,
    inner::{self, Inner, InnerEvent},
    pex,
    timer::Timer,
};
#[cfg(feature = "rcmgr")]
use crate::{rcmgr, streams::StreamCounts};

/// The system clock (`Instant::now`), which `peerage` gives its peerstore handles
/// ([`peerstore::Clocked`]); the sans-IO core never reads it.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl peerstore::Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// The connection manager's protection tag of trusted peers (connected through a trusted point,
/// or trusted themselves).
pub const TRUSTED_TAG: &str = "peerage-trusted";

/// The Peerage behaviour: the node machine (pool, maintenance, peer exchange, admission) on a
/// libp2p swarm, with identify, ping and the peer-exchange protocol ([`pex`]) inside.
///
/// - identify feeds the peerstore (listen addresses with the connected TTL, protocols) and
///   registers the listen addresses as points;
/// - ping feeds the latency EWMA;
/// - the maintenance dials points and closes connections to keep the count within its
///   [`Bounds`], and asks peers that offer the exchange for points when it has none to dial;
/// - an inbound connection that finds `max_threshold` connections is nacked, as Octez: not
///   counted, its request for points answered, then closed.
///
/// The rules, and the order in which admission applies them, are the machine's
/// ([`peerage_core::node`]); this type only translates. Connections are kept alive until the
/// maintenance, the remote or the application closes them.
pub struct Behaviour {
    inner: Inner,
    machine: Machine<ConnectionId>,
    /// The machine's peerstore, on the system clock.
    peerstore: peerstore::Clocked,
    connmgr: connmgr::Handle,
    #[cfg(feature = "rcmgr")]
    rcmgr: Option<rcmgr::ResourceManager>,
    #[cfg(feature = "rcmgr")]
    streams: StreamCounts,
    #[cfg(feature = "rcmgr")]
    handshakes: Option<rcmgr::HandshakeGuard>,
    #[cfg(feature = "metrics")]
    metrics: Option<ProtocolMetrics>,
    /// Identify's metrics kept as events arrive, in libp2p-metrics' place.
    #[cfg(feature = "metrics")]
    identify_metrics: Option<crate::metrics::Identify>,
    /// Our public key, for recording identify pushes.
    #[cfg(feature = "metrics")]
    local_key: libp2p::identity::PublicKey,
    /// Callers of `maintain` waiting for the end of a cycle.
    maintain_waiters: Vec<(u64, oneshot::Sender<()>)>,
    /// Requests for points the machine holds.
    channels: pex::Channels,
    events: VecDeque<ToSwarm<Event, THandlerInEvent<Self>>>,
    timer: Timer,
    waker: Option<Waker>,
}

impl Behaviour {
    /// A behaviour for the node whose identity is `local_key` (it signs the node's peer
    /// record, which answers to requests for points carry).
    pub fn new(local_key: &Keypair, config: Config) -> Self {
        let now = Instant::now();
        // Validated by `with_connmgr`; the derived one is valid for any bounds.
        let connmgr = connmgr::Behaviour::new(config.connmgr_in_use())
            .expect("valid connmgr config")
            .admitted_elsewhere();
        let handle = connmgr.handle();
        let identify = config
            .identify
            .clone()
            .map(|c| identify::Behaviour::new(local_key.clone(), c));
        let ping = config
            .ping_interval
            .map(|d| ping::Behaviour::new(ping::Config::new().with_interval(d)));
        let private_mode = config.node.pool().private_mode();
        let rng = match config.rng_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        let peerstore = config
            .peerstore
            .unwrap_or_else(|| Peerstore::memory(peerstore::Config::default()));
        let clocked = peerstore.with_clock(std::sync::Arc::new(SystemClock));
        #[cfg_attr(not(feature = "rcmgr"), allow(unused_mut))]
        let mut machine = Machine::new(
            local_key.public().to_peer_id(),
            config.node,
            peerstore,
            Box::new(handle.clone()),
            Box::new(node::Signed::new(local_key.clone())),
            rng,
            now,
        );
        #[cfg(feature = "rcmgr")]
        if let Some(rm) = &config.rcmgr {
            machine.set_resources(Box::new(rcmgr::Connections::new(rm.clone())));
        }
        Self {
            inner: Inner::new(connmgr, identify, ping, pex::behaviour(private_mode)),
            machine,
            peerstore: clocked,
            connmgr: handle,
            #[cfg(feature = "rcmgr")]
            streams: StreamCounts::new(config.rcmgr.clone()),
            #[cfg(feature = "rcmgr")]
            rcmgr: config.rcmgr,
            #[cfg(feature = "rcmgr")]
            handshakes: config.handshakes,
            #[cfg(feature = "metrics")]
            metrics: config.metrics,
            #[cfg(feature = "metrics")]
            identify_metrics: config.identify_metrics,
            #[cfg(feature = "metrics")]
            local_key: local_key.public(),
            maintain_waiters: Vec::new(),
            channels: pex::Channels::default(),
            events: VecDeque::new(),
            timer: Timer::default(),
            waker: None,
        }
    }

    /// The connection manager's shared handle: tag and protect peers, trim, read its state.
    pub fn connmgr(&self) -> connmgr::Handle {
        self.connmgr.clone()
    }

    /// The resource manager, if the configuration has one
    /// ([`Config::with_resource_manager`]). With the `rcmgr` feature.
    #[cfg(feature = "rcmgr")]
    pub fn resource_manager(&self) -> Option<&rcmgr::ResourceManager> {
        self.rcmgr.as_ref()
    }

    /// The node machine, for reading its state.
    pub fn machine(&self) -> &Machine<ConnectionId> {
        &self.machine
    }

    /// Adds a trusted point, such as a bootstrap address (with or without `/p2p/<id>`; with it,
    /// the point must be that peer), unbanning its IP (Octez `Points.trust`). The maintenance
    /// dials it when it needs connections.
    ///
    /// # Errors
    ///
    /// A [`pool::Error`] if the address is not a dialable point or is our own.
    pub fn add_trusted_point(&mut self, addr: &Multiaddr) -> Result<Multiaddr, pool::Error> {
        let result = self.machine.add_trusted_point(addr, Instant::now());
        self.drain();
        result
    }

    /// Changes the pool (ACL, trust, expected peer IDs, points...) through `f`, then carries
    /// out what the change asks: disconnections of banned or greylisted peers (after the ACL
    /// change, so they cannot come back), new points for the maintenance, and the connection
    /// manager's protection of trusted peers.
    ///
    /// ```no_run
    /// # fn f(b: &mut peerage::Behaviour, peer: libp2p::PeerId) {
    /// b.update_pool(|pool, now| pool.greylist_peer(peer, now));
    /// # }
    /// ```
    pub fn update_pool<R>(&mut self, f: impl FnOnce(&mut Pool, Instant) -> R) -> R {
        let result = self.machine.update_pool(Instant::now(), f);
        self.drain();
        result
    }

    /// The address book as it can be saved (with its anchors), if the node keeps one
    /// ([`Machine::addrbook_snapshot`]).
    pub fn export_addrbook(&self) -> Option<peerage_core::addrbook::Snapshot> {
        self.machine.addrbook_snapshot(Instant::now())
    }

    /// Restores a saved address book and dials its anchors first
    /// ([`Machine::restore_addrbook`]); returns the entries dropped as invalid.
    pub fn import_addrbook(&mut self, snapshot: peerage_core::addrbook::Snapshot) -> usize {
        let dropped = self.machine.restore_addrbook(snapshot, Instant::now());
        self.drain();
        dropped
    }

    /// Dials a point now, whatever its backoff (Octez `connect`, RPC `PUT /network/points`):
    /// registers it if unknown; with `/p2p/<id>` the point must be that peer.
    ///
    /// # Errors
    ///
    /// [`pool::Error::IpBanned`] if its IP is banned, [`pool::Error::PrivateMode`] in private
    /// mode if it is not trusted, [`pool::Error::NotDisconnected`] if it is being dialed or
    /// connected, and [`pool::Pool::register_point`]'s errors.
    pub fn connect(&mut self, addr: &Multiaddr) -> Result<Multiaddr, pool::Error> {
        let result = self.machine.connect(addr, Instant::now());
        self.drain();
        result
    }

    /// Asks the maintenance for a check (Octez `maintain`); the future resolves once a cycle
    /// that started after the call has ended (the count is within the thresholds, or the
    /// maintenance waits for points), or the maintenance was shut down. The check runs even if
    /// the future is dropped.
    pub fn maintain(&mut self) -> impl Future<Output = ()> + Send + 'static {
        let ticket = self.machine.maintain();
        let (tx, rx) = oneshot::channel();
        self.maintain_waiters.push((ticket, tx));
        self.wake();
        rx.map(|_| ())
    }

    /// Starts the maintenance (Octez `activate`): it runs a check at once, then on its
    /// triggers. Started by [`Behaviour::new`] unless
    /// [`Config::with_maintenance_enabled`] said otherwise.
    pub fn activate(&mut self) {
        self.machine.activate();
        self.wake();
    }

    /// Stops the maintenance (Octez `shutdown`): no more dials nor closes of its own; dials in
    /// flight finish, connections stay. Waiting [`maintain`](Behaviour::maintain) calls resolve.
    pub fn shutdown(&mut self) {
        self.machine.shutdown();
        self.wake();
    }

    /// Hands the machine an identify message the application's own identify received, when
    /// Peerage runs none ([`Config::without_identify`]): the peer's listen addresses (or
    /// those of its signed record, certified) go to the peerstore and the pool, its protocols
    /// say whether it offers the peer exchange. With rust-libp2p's identify:
    ///
    /// ```
    /// use libp2p::identify;
    ///
    /// fn on_identify(peerage: &mut peerage::Behaviour, event: identify::Event) {
    ///     if let identify::Event::Received { peer_id, info, .. } = event {
    ///         peerage.identified(
    ///             peer_id,
    ///             peerage::node::Identify {
    ///                 listen_addrs: info.listen_addrs,
    ///                 protocols: info.protocols.iter().map(ToString::to_string).collect(),
    ///                 agent_version: info.agent_version,
    ///                 protocol_version: info.protocol_version,
    ///                 // rust-libp2p's identify 0.48 keeps only records in its legacy domain,
    ///                 // which the peerstore does not take.
    ///                 signed_peer_record: None,
    ///             },
    ///         );
    ///     }
    /// }
    /// ```
    pub fn identified(&mut self, peer: PeerId, info: node::Identify) {
        self.handle(Instant::now(), Input::Identified { peer, info });
    }

    /// Hands the machine a round trip the application's own ping measured, when Peerage runs
    /// none ([`Config::without_ping`]): it feeds the peerstore's latency EWMA and eviction's
    /// lowest-ping protection.
    pub fn pinged(&mut self, peer: PeerId, rtt: std::time::Duration) {
        self.handle(Instant::now(), Input::Ping { peer, rtt });
    }

    /// The peerstore, on the system clock ([`SystemClock`]): `peerstore().addrs(&peer)` reads
    /// the addresses unexpired now. The `now`-taking forms are on
    /// [`Clocked::store`](peerstore::Clocked::store); `store().with_clock(clock)` gives the same
    /// store on another clock. The machine itself runs on the system clock, read once per
    /// swarm callback.
    pub fn peerstore(&self) -> &peerstore::Clocked {
        &self.peerstore
    }

    /// The pool of points and peers.
    pub fn pool(&self) -> &Pool {
        self.machine.pool()
    }

    /// The connection bounds.
    pub fn bounds(&self) -> Bounds {
        self.machine.bounds()
    }

    /// The established connections.
    pub fn connections(&self) -> impl Iterator<Item = ConnectionView> + '_ {
        self.machine
            .connections()
            .map(|(id, c)| ConnectionView::new(*id, c))
    }

    /// How many connections are established: `(inbound, outbound)`, nacked ones counted
    /// inbound; kept as they come and go, not counted by a walk.
    pub fn connection_counts(&self) -> (usize, usize) {
        self.machine.connection_counts()
    }

    /// Whether the maintenance is in a dialing round (dialing, or waiting for points).
    pub fn is_maintaining(&self) -> bool {
        self.machine.maintenance().is_dialing()
    }

    /// Number of connected (running) peers, as the maintenance counts them.
    pub fn active_connections(&self) -> usize {
        self.machine.pool().active()
    }

    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// [`run_commands`](Self::run_commands), then wakes the task to hand out what it queued:
    /// for callbacks outside `poll` (waking from `poll` would make an idle node spin).
    fn drain(&mut self) {
        self.run_commands();
        self.wake();
    }

    /// Carries out the machine's commands and queues its events.
    fn run_commands(&mut self) {
        while let Some(command) = self.machine.poll_command() {
            self.execute(command);
        }
        while let Some(event) = self.machine.poll_event() {
            self.events.push_back(ToSwarm::GenerateEvent(event.into()));
        }
    }

    fn execute(&mut self, command: Command<ConnectionId>) {
        match command {
            Command::Dial { point, peer } => {
                let opts = match peer {
                    Some(peer) => DialOpts::peer_id(peer)
                        .addresses(vec![point.clone()])
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .build(),
                    None => DialOpts::unknown_peer_id().address(point.clone()).build(),
                };
                self.machine.dial_started(opts.connection_id(), point);
                self.events.push_back(ToSwarm::Dial { opts });
            }
            Command::Close { peer, id } => self.events.push_back(ToSwarm::CloseConnection {
                peer_id: peer,
                connection: id.map_or(CloseConnection::All, CloseConnection::One),
            }),
            Command::AskPoints { peer, request } => {
                self.inner
                    .pex
                    .send_request(&peer, crate::pex::WireRequest::Valid(request));
            }
            Command::AnswerPoints { token, response } => {
                if let Some(channel) = self.channels.take(token) {
                    // Fails only if the connection is gone; nothing to do then.
                    let _ = self.inner.pex.send_response(channel, response);
                }
            }
            Command::DropRequest { token } => {
                self.channels.take(token);
            }
            Command::Protect(peer) => self.connmgr.protect(&peer, TRUSTED_TAG),
            Command::Unprotect(peer) => {
                self.connmgr.unprotect(&peer, TRUSTED_TAG);
            }
            Command::Exclude(id) => self.inner.connmgr.exclude(id),
            Command::Include(id) => {
                self.inner.connmgr.include(id);
            }
            Command::SetStreams { peer, id, streams } => {
                self.connmgr.set_streams(&peer, id, streams);
            }
        }
    }

    fn handle(&mut self, now: Instant, input: Input<ConnectionId>) {
        self.machine.handle(now, input);
        self.drain();
    }

    fn on_inner_event(&mut self, event: InnerEvent, now: Instant) {
        #[cfg(feature = "metrics")]
        match (&event, &self.identify_metrics, &self.metrics) {
            (InnerEvent::Identify(e), Some(identify), _) => identify.record(e),
            (_, _, Some(metrics)) => metrics.record(&event, &self.local_key),
            _ => {}
        }
        let (input, event) = inner::translate(event, &mut self.channels);
        if let Some(Event::Trimmed { peers, .. }) = &event {
            for peer in peers {
                self.machine.closing(*peer, pool::CloseReason::Trim);
            }
        }
        if let Some(event) = event {
            self.events.push_back(ToSwarm::GenerateEvent(event));
        }
        // Called from `poll`, which hands out what this queues: no wake.
        if let Some(input) = input {
            self.machine.handle(now, input);
            self.run_commands();
        }
    }

    /// A connection the machine admitted was refused by a sibling behaviour.
    fn admission_failed(&mut self, id: ConnectionId) {
        self.handle(Instant::now(), Input::AdmissionFailed { id });
    }

    /// Carries out what admission queued (protection, exclusion) before the inner behaviours'
    /// own admission.
    fn admit(&mut self, result: Result<Admission, Refusal>) -> Result<(), ConnectionDenied> {
        self.drain();
        result.map(|_| ()).map_err(|e| match e {
            Refusal::Pool(e) => ConnectionDenied::new(e),
            Refusal::TooManyConnections(e) => ConnectionDenied::new(e),
            Refusal::HardCap(e) => ConnectionDenied::new(e),
            Refusal::Resources(e) => ConnectionDenied::new(e),
        })
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = THandler<Inner>;
    type ToSwarm = Event;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let result = self
            .machine
            .admit_pending_inbound(connection_id, remote_addr, Instant::now())
            .map(|()| Admission::Accepted);
        self.admit(result)?;
        self.inner
            .handle_pending_inbound_connection(connection_id, local_addr, remote_addr)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let result =
            self.machine
                .admit_established(connection_id, peer, remote_addr, true, Instant::now());
        self.admit(result)?;
        self.inner
            .handle_established_inbound_connection(connection_id, peer, local_addr, remote_addr)
            .inspect_err(|_| self.admission_failed(connection_id))
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        let result = self
            .machine
            .admit_pending_outbound(maybe_peer, addresses, Instant::now())
            .map(|()| Admission::Accepted);
        self.admit(result)?;
        self.inner.handle_pending_outbound_connection(
            connection_id,
            maybe_peer,
            addresses,
            effective_role,
        )
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let result =
            self.machine
                .admit_established(connection_id, peer, addr, false, Instant::now());
        self.admit(result)?;
        self.inner
            .handle_established_outbound_connection(
                connection_id,
                peer,
                addr,
                role_override,
                port_use,
            )
            .inspect_err(|_| self.admission_failed(connection_id))
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        let now = Instant::now();
        let input = crate::connections::input(&event);
        if let Some(input) = input {
            self.machine.handle(now, input);
        }
        #[cfg(feature = "rcmgr")]
        self.streams.on_swarm_event(&event);
        #[cfg(feature = "metrics")]
        if let (FromSwarm::ConnectionClosed(e), Some(m)) = (&event, &self.identify_metrics)
            && e.remaining_established == 0
        {
            m.disconnected(&e.peer_id);
        }
        self.inner.on_swarm_event(event);
        self.drain();
    }

    fn on_connection_handler_event(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.inner
            .on_connection_handler_event(peer_id, connection_id, event);
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        loop {
            // Local work first: queued events, then what is due, then the inner behaviours.
            if let Some(event) = self.events.pop_front() {
                return Poll::Ready(event);
            }
            let now = Instant::now();
            // Stream counts first, so that a trim that is due ranks peers by them.
            #[cfg(feature = "rcmgr")]
            self.streams.feed(&mut self.machine, now);
            #[cfg(feature = "rcmgr")]
            for ip in self
                .handshakes
                .as_ref()
                .map(|g| g.take_struck())
                .unwrap_or_default()
            {
                self.handle(now, Input::HandshakesStalled { ip });
            }
            self.machine.handle_timeout(now);
            self.run_commands();
            // A waiter whose cycle ended is resolved by dropping its sender.
            let maintenance = self.machine.maintenance();
            self.maintain_waiters
                .retain(|(ticket, tx)| !maintenance.is_done(*ticket) && !tx.is_canceled());
            if !self.events.is_empty() {
                continue;
            }
            match self.inner.poll(cx) {
                Poll::Ready(ToSwarm::GenerateEvent(event)) => {
                    self.on_inner_event(event, now);
                    continue;
                }
                Poll::Ready(other) => {
                    return Poll::Ready(
                        other.map_out(|_: InnerEvent| {
                            unreachable!("GenerateEvent is matched above")
                        }),
                    );
                }
                Poll::Pending => {}
            }
            if let Some(deadline) = self.machine.poll_timeout()
                && self.timer.poll(deadline, now, cx)
            {
                continue;
            }
            self.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
    }
}
