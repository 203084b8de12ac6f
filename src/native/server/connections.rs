//! The local server's guard on its connections, so that no client can hold it:
//! - [`PerAddress`]: at most `MAX_CONNECTIONS_PER_IP` open connections from one address (an IPv6
//!   client by its /64, which it can spread over at will); more are closed as soon as they are
//!   accepted, so a flood from one address keeps the server's memory bounded and leaves it free
//!   to serve the others. Behind a trusted proxy (`TRUST_FORWARDED_HEADERS`), where every
//!   connection is the proxy's, the same count applies to requests in flight, by the forwarded
//!   address (`serve`);
//! - [`IdleWriteTimeout`]: a client that stops reading a response for `CLIENT_IDLE_TIMEOUT_SECS`
//!   loses its connection, and the upstream body it was reading is dropped with it (its
//!   connection closed), so stalled clients cannot pin storage connections.
//!
//! Fastly and Lambda stand behind their platforms' own fronts, which hold client connections
//! there.

use crate::config::positive_number;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

/// `MAX_CONNECTIONS_PER_IP` by default: a busy office behind one NAT address pulls with many
/// clients, each with a few connections.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: u64 = 128;

/// `CLIENT_IDLE_TIMEOUT_SECS` by default.
pub const DEFAULT_CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The local server's connection settings.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    pub max_per_address: usize,
    pub client_idle_timeout: Duration,
}

impl ConnectionSettings {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let max = positive_number(
            &lookup,
            "MAX_CONNECTIONS_PER_IP",
            DEFAULT_MAX_CONNECTIONS_PER_IP,
        )?;
        let idle = positive_number(
            &lookup,
            "CLIENT_IDLE_TIMEOUT_SECS",
            DEFAULT_CLIENT_IDLE_TIMEOUT.as_secs(),
        )?;
        Ok(ConnectionSettings {
            max_per_address: usize::try_from(max).unwrap_or(usize::MAX),
            client_idle_timeout: Duration::from_secs(idle),
        })
    }
}

/// The open connections of each client address.
#[derive(Clone)]
pub struct PerAddress {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max: usize,
}

/// One admitted connection; its address's count goes down when it is dropped.
pub struct Slot {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    address: IpAddr,
}

impl PerAddress {
    pub fn new(max: usize) -> PerAddress {
        PerAddress {
            open: Arc::default(),
            max,
        }
    }

    /// A slot for a new connection from `address`, or `None` when it holds the most already.
    pub fn admit(&self, address: IpAddr) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(address).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Slot {
            open: self.open.clone(),
            address,
        })
    }

    /// The addresses with open connections (an address whose last one closes is forgotten).
    pub fn addresses(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.address) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

/// A connection whose writes fail once the client has taken nothing for `timeout`: hyper then
/// closes it and drops the response body, and with it the upstream connection it streamed from.
pub struct IdleWriteTimeout<T> {
    inner: T,
    timeout: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> IdleWriteTimeout<T> {
    pub fn new(inner: T, timeout: Duration) -> Self {
        IdleWriteTimeout {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// Progress clears the clock; a write that waits starts it, and fails when it runs out.
    fn watch<R>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match result {
            Poll::Pending => {
                let timeout = self.timeout;
                let stalled = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match stalled.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client stopped reading",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for IdleWriteTimeout<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: hyper::rt::Write + Unpin> hyper::rt::Write for IdleWriteTimeout<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(cx, result)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(cx, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_at_most_its_share_and_is_forgotten_when_done() {
        let limit = PerAddress::new(2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let first = limit.admit(a).unwrap();
        let second = limit.admit(a).unwrap();
        assert!(limit.admit(a).is_none());
        let other = limit.admit(b).unwrap();
        drop(first);
        let third = limit.admit(a).unwrap();
        drop((second, third, other));
        assert_eq!(limit.addresses(), 0);
    }

    #[test]
    fn settings_have_defaults_and_refuse_nonsense() {
        let s = ConnectionSettings::from_lookup(|_| None).unwrap();
        assert_eq!(s.max_per_address, 128);
        assert_eq!(s.client_idle_timeout, Duration::from_secs(60));
        let bad = ConnectionSettings::from_lookup(|k| {
            (k == "MAX_CONNECTIONS_PER_IP").then(|| "0".to_string())
        });
        assert!(bad.unwrap_err().contains("MAX_CONNECTIONS_PER_IP"));
    }
}
