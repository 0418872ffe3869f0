//! The pending-handshake guard of [`transport`](super::transport): each inbound TCP socket is
//! wrapped in a [`Guarded`] stream whose handshake holds a slot of a
//! [`handshakes::Handshakes`] table (the policy: which handshake to evict, which IP to refuse)
//! until the connection is established. A behaviour cannot abort a pending upgrade; the stream
//! can: an evicted, timed-out or refused handshake's socket fails its next read or write, the
//! upgrade fails with it, and the socket is closed.
//!
//! A QUIC handshake runs inside quinn, behind the transport's upgrade future: the
//! [`GuardedUpgrades`] transport wraps that future instead, which fails when the slot is
//! evicted, timed out or refused (dropping quinn's `Connecting` closes the connection). Its
//! slot has no byte count and never strikes ([`handshakes::Handshakes::begin_unvalidated`]).

use std::{
    collections::HashMap,
    io,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU8, Ordering},
    },
    task::{Context, Poll},
    time::Instant,
};

use futures::{AsyncRead, AsyncWrite, Future, task::AtomicWaker};
use libp2p::Multiaddr;
use peerage_core::rcmgr::handshakes::{self, Begin, End};

const PENDING: u8 = 0;
const ABORTED: u8 = 1;
const DONE: u8 = 2;

/// A pending handshake's state, shared by its stream and the table.
#[derive(Debug, Default)]
struct Slot {
    state: AtomicU8,
    waker: AtomicWaker,
}

#[derive(Debug)]
struct Table {
    core: handshakes::Handshakes,
    slots: HashMap<u64, (Arc<Slot>, Multiaddr)>,
    by_addr: HashMap<Multiaddr, u64>,
}

impl Table {
    /// Removes `id`'s slot and marks it `state`, waking its stream.
    fn settle(&mut self, id: u64, state: u8) {
        if let Some((slot, addr)) = self.slots.remove(&id) {
            self.by_addr.remove(&addr);
            slot.state.store(state, Ordering::Release);
            slot.waker.wake();
        }
    }
}

/// The table of pending inbound handshakes of a [`transport`](super::transport), shared by its
/// streams. Cheap to clone.
#[derive(Debug, Clone)]
pub struct HandshakeGuard(Arc<Mutex<Table>>);

/// What a [`HandshakeGuard`] holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeStat {
    /// Inbound handshakes pending.
    pub pending: usize,
    /// Handshakes evicted to make room, since the start.
    pub evicted: u64,
    /// IPs whose handshakes are refused for stalling.
    pub refused_ips: usize,
}

impl HandshakeGuard {
    /// A guard with `config`.
    pub fn new(config: handshakes::Config) -> Self {
        Self(Arc::new(Mutex::new(Table {
            core: handshakes::Handshakes::new(config),
            slots: HashMap::new(),
            by_addr: HashMap::new(),
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What it holds now.
    pub fn stat(&self) -> HandshakeStat {
        let table = self.lock();
        HandshakeStat {
            pending: table.core.pending(),
            evicted: table.core.evicted(),
            refused_ips: table.core.refused_ips(Instant::now()),
        }
    }

    /// Registers the guard's metrics in `registry`, read from [`stat`](Self::stat) at each
    /// scrape: `peerage_handshakes_pending` (gauge), `peerage_handshakes_evicted_total`
    /// (counter) and `peerage_handshakes_refused_ips` (gauge). With the `metrics` feature.
    #[cfg(feature = "metrics")]
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register_collector(Box::new(Metrics(self.clone())));
    }

    /// The IPs refused for stalled handshakes since the last call (for the node machine, which
    /// greylists them: [`Config::with_handshake_guard`](crate::Config::with_handshake_guard)).
    pub fn take_struck(&self) -> Vec<std::net::IpAddr> {
        self.lock().core.take_struck()
    }

    /// Wraps the socket of an inbound connection from `remote`: its handshake takes a slot, or
    /// it fails at once if the table refuses it.
    pub(super) fn accept<S>(&self, inner: S, remote: &Multiaddr) -> Guarded<S> {
        let (pending, refused) = self.begin(remote, true);
        Guarded {
            inner,
            pending,
            refused,
        }
    }

    /// The handshake of an inbound connection from `remote`: its slot (`None` if `remote` has
    /// no IP or the table refuses it), and why the table refuses it. `validated`: whether
    /// `remote` is known to be the sender's (TCP), so that a stall strikes.
    fn begin(
        &self,
        remote: &Multiaddr,
        validated: bool,
    ) -> (Option<Pending>, Option<&'static str>) {
        let Some(ip) = remote.iter().find_map(|p| match p {
            libp2p::multiaddr::Protocol::Ip4(ip) => Some(std::net::IpAddr::V4(ip)),
            libp2p::multiaddr::Protocol::Ip6(ip) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        }) else {
            return (None, None);
        };
        let now = Instant::now();
        let mut table = self.lock();
        let begun = if validated {
            table.core.begin(ip, now)
        } else {
            table.core.begin_unvalidated(ip, now)
        };
        match begun {
            Begin::Admitted { id, evicted } => {
                if let Some(evicted) = evicted {
                    tracing::debug!(%remote, "pending handshakes full: the slowest evicted");
                    table.settle(evicted, ABORTED);
                }
                let slot = Arc::new(Slot::default());
                table.slots.insert(id, (slot.clone(), remote.clone()));
                table.by_addr.insert(remote.clone(), id);
                let deadline = table.core.deadline(id).unwrap_or(now);
                let pending = Pending {
                    id,
                    slot,
                    guard: self.clone(),
                    sleep: futures_timer::Delay::new(deadline.saturating_duration_since(now)),
                };
                (Some(pending), None)
            }
            Begin::Full => (None, Some("the pending handshakes are full")),
            Begin::Refused(_) => (
                None,
                Some("this IP's handshakes stalled: refused for a while"),
            ),
        }
    }

    /// Handshake `id` completed: its slot is free.
    #[cfg(feature = "quic")]
    fn finish(&self, id: u64) {
        let mut table = self.lock();
        if table.slots.contains_key(&id) {
            table.core.end(id, End::Completed, Instant::now());
            table.settle(id, DONE);
        }
    }

    /// The connection from `remote` is established: its slot is free, its stream unguarded.
    pub(super) fn complete(&self, remote: &Multiaddr) {
        let mut table = self.lock();
        if let Some(id) = table.by_addr.get(remote).copied() {
            table.core.end(id, End::Completed, Instant::now());
            table.settle(id, DONE);
        }
    }

    fn progress(&self, id: u64, bytes: usize) {
        self.lock().core.progress(id, bytes as u64);
    }

    fn end(&self, id: u64, end: End) {
        let mut table = self.lock();
        if table.slots.contains_key(&id) {
            let refused = table.core.end(id, end, Instant::now());
            if refused && let Some((_, addr)) = table.slots.get(&id) {
                tracing::info!(remote = %addr, "handshakes stalled three times: the IP is refused for a while");
            }
            table.settle(id, ABORTED);
        }
    }
}

#[derive(Debug)]
struct Pending {
    id: u64,
    slot: Arc<Slot>,
    guard: HandshakeGuard,
    sleep: futures_timer::Delay,
}

impl Pending {
    /// `Ok(true)` once the handshake completed, `Ok(false)` while it is pending, `Err` once it
    /// was evicted or timed out; registers for the wake-up of an eviction and for the deadline.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<bool> {
        match self.slot.state.load(Ordering::Acquire) {
            DONE => Ok(true),
            ABORTED => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "handshake evicted or timed out",
            )),
            _ => {
                self.slot.waker.register(cx.waker());
                if Pin::new(&mut self.sleep).poll(cx).is_ready() {
                    self.guard.end(self.id, End::TimedOut);
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "handshake timed out",
                    ));
                }
                Ok(false)
            }
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.slot.state.load(Ordering::Acquire) == PENDING {
            self.guard.end(self.id, End::Failed);
        }
    }
}

/// A socket whose handshake is guarded: it fails once its handshake is evicted, timed out or
/// refused, and passes everything through once the connection is established.
#[derive(Debug)]
pub(crate) struct Guarded<S> {
    inner: S,
    pending: Option<Pending>,
    refused: Option<&'static str>,
}

impl<S> Guarded<S> {
    pub(super) fn unguarded(inner: S) -> Self {
        Self {
            inner,
            pending: None,
            refused: None,
        }
    }

    /// Whether the socket may be used: `Err` once the handshake was refused, evicted or timed
    /// out; registers for the wake-up of an eviction and for the deadline.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if let Some(why) = self.refused {
            return Err(io::Error::new(io::ErrorKind::ConnectionRefused, why));
        }
        let Some(p) = &mut self.pending else {
            return Ok(());
        };
        if p.check(cx)? {
            self.pending = None;
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(n)), Some(p)) = (&read, &this.pending) {
            p.guard.progress(p.id, *n);
        }
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

#[cfg(feature = "metrics")]
#[derive(Debug)]
struct Metrics(HandshakeGuard);

#[cfg(feature = "metrics")]
impl prometheus_client::collector::Collector for Metrics {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::{
            encoding::EncodeMetric,
            metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
        };
        let stat = self.0.stat();
        let gauge = |v: usize| ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
        gauge(stat.pending).encode(encoder.encode_descriptor(
            "peerage_handshakes_pending",
            "Inbound handshakes pending in the guard's table.",
            None,
            MetricType::Gauge,
        )?)?;
        ConstCounter::new(stat.evicted).encode(encoder.encode_descriptor(
            "peerage_handshakes_evicted",
            "Pending inbound handshakes evicted to make room for new ones, since the start.",
            None,
            MetricType::Counter,
        )?)?;
        gauge(stat.refused_ips).encode(encoder.encode_descriptor(
            "peerage_handshakes_refused_ips",
            "IPs whose handshakes are refused for stalling (three stalled in 60 s, for 600 s).",
            None,
            MetricType::Gauge,
        )?)?;
        Ok(())
    }
}

/// A transport whose inbound upgrades each hold a slot of a [`HandshakeGuard`] until they
/// complete, for QUIC (see the [module docs](self)).
#[cfg(feature = "quic")]
pub(crate) struct GuardedUpgrades<T> {
    inner: T,
    guard: HandshakeGuard,
}

#[cfg(feature = "quic")]
impl<T> GuardedUpgrades<T> {
    pub(crate) fn new(inner: T, guard: HandshakeGuard) -> Self {
        Self { inner, guard }
    }
}

#[cfg(feature = "quic")]
impl<T, O> libp2p::Transport for GuardedUpgrades<T>
where
    T: libp2p::Transport<Output = O, Error = io::Error> + Unpin,
    T::ListenerUpgrade: Unpin,
{
    type Output = O;
    type Error = io::Error;
    type ListenerUpgrade = GuardedUpgrade<T::ListenerUpgrade>;
    type Dial = T::Dial;

    fn listen_on(
        &mut self,
        id: libp2p::core::transport::ListenerId,
        addr: Multiaddr,
    ) -> Result<(), libp2p::TransportError<Self::Error>> {
        self.inner.listen_on(id, addr)
    }

    fn remove_listener(&mut self, id: libp2p::core::transport::ListenerId) -> bool {
        self.inner.remove_listener(id)
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        opts: libp2p::core::transport::DialOpts,
    ) -> Result<Self::Dial, libp2p::TransportError<Self::Error>> {
        self.inner.dial(addr, opts)
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<libp2p::core::transport::TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        use libp2p::core::transport::TransportEvent;
        let this = self.get_mut();
        Pin::new(&mut this.inner).poll(cx).map(|event| match event {
            TransportEvent::Incoming {
                listener_id,
                upgrade,
                local_addr,
                send_back_addr,
            } => {
                let (pending, refused) = this.guard.begin(&send_back_addr, false);
                TransportEvent::Incoming {
                    listener_id,
                    upgrade: GuardedUpgrade {
                        inner: upgrade,
                        pending,
                        refused,
                    },
                    local_addr,
                    send_back_addr,
                }
            }
            other => other.map_upgrade(|inner| GuardedUpgrade {
                inner,
                pending: None,
                refused: None,
            }),
        })
    }
}

/// An inbound upgrade holding a slot: it fails once its slot is evicted or timed out, or at
/// once if the table refused it; its slot is freed when it ends.
#[cfg(feature = "quic")]
pub(crate) struct GuardedUpgrade<F> {
    inner: F,
    pending: Option<Pending>,
    refused: Option<&'static str>,
}

#[cfg(feature = "quic")]
impl<F, O> Future for GuardedUpgrade<F>
where
    F: Future<Output = io::Result<O>> + Unpin,
{
    type Output = io::Result<O>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(why) = this.refused {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionRefused, why)));
        }
        if let Some(p) = &mut this.pending {
            p.check(cx)?;
        }
        let result = std::task::ready!(Pin::new(&mut this.inner).poll(cx));
        // A failed one's slot ends as failed when `pending` drops.
        if let Some(p) = this.pending.take()
            && result.is_ok()
        {
            p.guard.finish(p.id);
        }
        Poll::Ready(result)
    }
}
