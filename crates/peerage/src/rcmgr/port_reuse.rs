//! A dial from the listening port that fails on the local address is tried again from a new
//! port, as go-libp2p's `p2p/net/reuseport/dial.go` does (`reuseErrShouldRetry`).
//!
//! rust-libp2p's TCP transport (libp2p-tcp 0.45) dials from its listening port (`PortUse::Reuse`,
//! so that the remote sees the address it can dial back) and, if `connect` fails with
//! `EADDRNOTAVAIL`, dials again from a new port; it does not when the dial fails with
//! `EADDRINUSE`. Seen on a loaded machine running many nodes (Linux 6.18): a node whose
//! listening port the system had chosen (`/tcp/0`) failed every dial of its bootstrap point for
//! over 20 s, each "Address already in use (os error 98)", and another failed the same way to
//! redial a peer it had just been disconnected from. The likely cause is a socket in
//! `TIME_WAIT` on that port (from an earlier connection, of this node or of another process)
//! that a dialing socket may not share; it lasts up to 60 s on Linux.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use futures::{FutureExt, future::BoxFuture};
use libp2p::{
    Multiaddr,
    core::{
        Transport,
        transport::{DialOpts, ListenerId, PortUse, TransportError, TransportEvent},
    },
};

/// Wraps a transport so that a dial from its listening port (`PortUse::Reuse`) that fails on
/// the local address (`EADDRINUSE`, `EADDRNOTAVAIL`) is dialed once more from a new port, on a
/// transport `fresh` builds (one without listeners; only its dial is used). Any other error,
/// and any error of a dial from a new port, is returned as it is.
pub(crate) struct PortReuseFallback<T, F> {
    inner: T,
    fresh: F,
}

impl<T, F> PortReuseFallback<T, F> {
    pub(crate) fn new(inner: T, fresh: F) -> Self {
        Self { inner, fresh }
    }
}

/// Whether a dial from the listening port failed on the local address, not on the remote.
fn local_address_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::AddrInUse | io::ErrorKind::AddrNotAvailable
    )
}

impl<T, F> Transport for PortReuseFallback<T, F>
where
    T: Transport<Error = io::Error> + Unpin,
    T::Dial: Send + 'static,
    T::Output: Send + 'static,
    F: Fn() -> T + Clone + Send + Unpin + 'static,
{
    type Output = T::Output;
    type Error = io::Error;
    type ListenerUpgrade = T::ListenerUpgrade;
    type Dial = BoxFuture<'static, io::Result<T::Output>>;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        self.inner.listen_on(id, addr)
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        self.inner.remove_listener(id)
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        let first = self.inner.dial(addr.clone(), opts)?;
        if opts.port_use != PortUse::Reuse {
            return Ok(first.boxed());
        }
        let fresh = self.fresh.clone();
        Ok(async move {
            match first.await {
                Err(e) if local_address_error(&e) => {
                    tracing::debug!(%addr, error = %e, "the dial from the listening port failed; dialing from a new port");
                    let again = DialOpts {
                        port_use: PortUse::New,
                        ..opts
                    };
                    // The fresh transport goes with this statement: only its dial is awaited.
                    let dial = fresh().dial(addr, again);
                    match dial {
                        Ok(dial) => dial.await,
                        Err(TransportError::Other(e)) => Err(e),
                        // The first dial took the address: not reached.
                        Err(TransportError::MultiaddrNotSupported(_)) => Err(e),
                    }
                }
                other => other,
            }
        }
        .boxed())
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        Pin::new(&mut self.get_mut().inner).poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use futures::future::{self, Ready};
    use libp2p::core::Endpoint;

    use super::*;

    /// Each dial: which transport took it, its port use and its role.
    type Log = Arc<Mutex<Vec<(&'static str, PortUse, Endpoint)>>>;

    /// A transport whose dials end with what `outcome` says for their port use, each dial
    /// written to `log` under `name`.
    #[derive(Clone)]
    struct Fake {
        name: &'static str,
        log: Log,
        outcome: fn(PortUse) -> io::Result<u8>,
    }

    impl Transport for Fake {
        type Output = u8;
        type Error = io::Error;
        type ListenerUpgrade = Ready<io::Result<u8>>;
        type Dial = Ready<io::Result<u8>>;

        fn listen_on(
            &mut self,
            _: ListenerId,
            a: Multiaddr,
        ) -> Result<(), TransportError<io::Error>> {
            Err(TransportError::MultiaddrNotSupported(a))
        }

        fn remove_listener(&mut self, _: ListenerId) -> bool {
            false
        }

        fn dial(
            &mut self,
            _: Multiaddr,
            opts: DialOpts,
        ) -> Result<Self::Dial, TransportError<io::Error>> {
            self.log
                .lock()
                .unwrap()
                .push((self.name, opts.port_use, opts.role));
            Ok(future::ready((self.outcome)(opts.port_use)))
        }

        fn poll(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<TransportEvent<Self::ListenerUpgrade, io::Error>> {
            Poll::Pending
        }
    }

    /// Dials once with `port_use` and `role` through the fallback over an `inner` [`Fake`]
    /// and `fresh` ones, all with `outcome`: the result, and the dials in order.
    fn dial(
        port_use: PortUse,
        role: Endpoint,
        outcome: fn(PortUse) -> io::Result<u8>,
    ) -> (io::Result<u8>, Vec<(&'static str, PortUse, Endpoint)>) {
        let log = Log::default();
        let inner = Fake {
            name: "inner",
            log: log.clone(),
            outcome,
        };
        let fresh = Fake {
            name: "fresh",
            ..inner.clone()
        };
        let mut t = PortReuseFallback::new(inner, move || fresh.clone());
        let opts = DialOpts { role, port_use };
        let result = futures::executor::block_on(
            t.dial("/ip4/127.0.0.1/tcp/1".parse().unwrap(), opts)
                .unwrap(),
        );
        let dials = log.lock().unwrap().clone();
        (result, dials)
    }

    /// The listening port taken (`EADDRINUSE` at `bind`) or the address unavailable: dialed
    /// again from a new port on a fresh transport, in the same role, and that dial's outcome
    /// is the result.
    #[test]
    fn a_listening_port_in_use_is_dialed_again_from_a_new_port() {
        use Endpoint::{Dialer, Listener};
        use PortUse::{New, Reuse};
        let (result, dials) = dial(Reuse, Dialer, |p| match p {
            Reuse => Err(io::ErrorKind::AddrInUse.into()),
            New => Ok(7),
        });
        assert_eq!(result.unwrap(), 7);
        assert_eq!(dials, [("inner", Reuse, Dialer), ("fresh", New, Dialer)]);
        // A dial as the listener (a hole punch) keeps its role.
        let (result, dials) = dial(Reuse, Listener, |p| match p {
            Reuse => Err(io::ErrorKind::AddrNotAvailable.into()),
            New => Err(io::ErrorKind::ConnectionRefused.into()),
        });
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::ConnectionRefused);
        assert_eq!(
            dials,
            [("inner", Reuse, Listener), ("fresh", New, Listener)]
        );
    }

    /// An error about the remote is the remote's answer: not dialed again. Nor is a dial that
    /// used a new port already, whatever its error.
    #[test]
    fn other_failures_are_not_dialed_again() {
        use Endpoint::Dialer;
        use PortUse::{New, Reuse};
        let (result, dials) = dial(Reuse, Dialer, |_| {
            Err(io::ErrorKind::ConnectionRefused.into())
        });
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::ConnectionRefused);
        assert_eq!(dials, [("inner", Reuse, Dialer)]);
        let (result, dials) = dial(New, Dialer, |_| Err(io::ErrorKind::AddrInUse.into()));
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::AddrInUse);
        assert_eq!(dials, [("inner", New, Dialer)]);
        let (result, dials) = dial(Reuse, Dialer, |_| Ok(3));
        assert_eq!(result.unwrap(), 3);
        assert_eq!(dials, [("inner", Reuse, Dialer)]);
    }
}
