//! The pending-handshake guard of [`transport`](super::transport): each inbound TCP socket is
//! wrapped in a [`Guarded`] stream whose handshake holds a slot of a
//! [`handshakes::Handshakes`] table (the policy: which handshake to evict, which IP to refuse)
//! until the connection is established. A behaviour cannot abort a pending upgrade; the stream
//! can: an evicted, timed-out or refused handshake's socket fails its next read or write, the
//! upgrade fails with it, and the socket is closed.

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
        let Some(ip) = remote.iter().find_map(|p| match p {
            libp2p::multiaddr::Protocol::Ip4(ip) => Some(std::net::IpAddr::V4(ip)),
            libp2p::multiaddr::Protocol::Ip6(ip) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        }) else {
            return Guarded::unguarded(inner);
        };
        let now = Instant::now();
        let mut table = self.lock();
        match table.core.begin(ip, now) {
            Begin::Admitted { id, evicted } => {
                if let Some(evicted) = evicted {
                    tracing::debug!(%remote, "pending handshakes full: the slowest evicted");
                    table.settle(evicted, ABORTED);
                }
                let slot = Arc::new(Slot::default());
                table.slots.insert(id, (slot.clone(), remote.clone()));
                table.by_addr.insert(remote.clone(), id);
                let deadline = table.core.deadline(id).unwrap_or(now);
                Guarded {
                    inner,
                    pending: Some(Pending {
                        id,
                        slot,
                        guard: self.clone(),
                        sleep: futures_timer::Delay::new(deadline.saturating_duration_since(now)),
                    }),
                    refused: None,
                }
            }
            Begin::Full => Guarded::refused(inner, "the pending handshakes are full"),
            Begin::Refused(_) => {
                Guarded::refused(inner, "this IP's handshakes stalled: refused for a while")
            }
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

    fn refused(inner: S, why: &'static str) -> Self {
        Self {
            inner,
            pending: None,
            refused: Some(why),
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
        match p.slot.state.load(Ordering::Acquire) {
            DONE => {
                self.pending = None;
                Ok(())
            }
            ABORTED => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "handshake evicted or timed out",
            )),
            _ => {
                p.slot.waker.register(cx.waker());
                if Pin::new(&mut p.sleep).poll(cx).is_ready() {
                    p.guard.end(p.id, End::TimedOut);
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "handshake timed out",
                    ));
                }
                Ok(())
            }
        }
    }
}

impl<S> Drop for Guarded<S> {
    fn drop(&mut self) {
        if let Some(p) = &self.pending
            && p.slot.state.load(Ordering::Acquire) == PENDING
        {
            p.guard.end(p.id, End::Failed);
        }
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
