//! Listening sockets (optionally inside a guest's namespace), the TCP accept
//! loop, and one task per proxied connection.
use super::backend::{Backend, BackendSet};
use super::config::{ListenAddr, Proto, Settings};
use super::log::{self, RateLimit, now_ms};
use super::splice::{Tally, abort_on_close, pump};
use super::state::{Gauge, ListenerState, Shared};
use crate::error::{Error, Result};
use crate::netns::NetNs;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;

/// Accept backlog: short connections arrive in bursts; the kernel default
/// of 128 (std's choice) drops SYNs under a benchmark-style load.
const BACKLOG: i32 = 4096;

/// A bound socket, created in the right namespace, not yet given to tokio.
pub enum Bound {
    Tcp(std::net::TcpListener),
    Udp(std::net::UdpSocket),
}

/// Bind `l`, inside `ns` when given. The socket stays in that namespace
/// after the helper thread exits; the ambassador itself keeps running (and
/// connecting to backends) in the host namespace.
pub fn bind(l: ListenAddr, ns: Option<&NetNs>) -> Result<Bound> {
    let make = move || -> io::Result<Bound> {
        let domain = Domain::for_address(l.addr);
        match l.proto {
            Proto::Tcp => {
                let s = Socket::new(domain, Type::STREAM.cloexec(), Some(Protocol::TCP))?;
                s.set_reuse_address(true)?;
                // Accepted sockets inherit TCP_NODELAY: one syscall fewer per connection.
                s.set_tcp_nodelay(true)?;
                s.bind(&l.addr.into())?;
                s.listen(BACKLOG)?;
                s.set_nonblocking(true)?;
                Ok(Bound::Tcp(s.into()))
            }
            Proto::Udp => {
                let s = Socket::new(domain, Type::DGRAM.cloexec(), Some(Protocol::UDP))?;
                s.bind(&l.addr.into())?;
                s.set_nonblocking(true)?;
                Ok(Bound::Udp(s.into()))
            }
        }
    };
    let res = match ns {
        Some(ns) => ns.run(make)?,
        None => make(),
    };
    res.map_err(|e| bind_error(l, ns, e))
}

fn bind_error(l: ListenAddr, ns: Option<&NetNs>, e: io::Error) -> Error {
    let wher = ns
        .map(|n| format!(" in namespace {}", n.path.display()))
        .unwrap_or_default();
    let why = match e.raw_os_error() {
        Some(libc::EADDRINUSE) => {
            "address already in use: another process listens there; stop it or pick another port"
                .to_string()
        }
        Some(libc::EADDRNOTAVAIL) => {
            "no interface has this address; use one that exists or 0.0.0.0".into()
        }
        Some(libc::EACCES) => {
            "permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE".into()
        }
        _ => e.to_string(),
    };
    Error::other(format!("cannot listen on {l}{wher}: {why}"))
}

/// Accept until the listener is stopped. Existing connections are separate
/// tasks and outlive the loop, which is what makes reload and drain gentle.
pub async fn serve_tcp(l: tokio::net::TcpListener, st: Arc<ListenerState>, shared: Arc<Shared>) {
    let limit = RateLimit::default();
    let stop = st.stopped();
    tokio::pin!(stop);
    loop {
        let res = tokio::select! {
            r = l.accept() => r,
            _ = &mut stop => break,
        };
        match res {
            Ok((c, _peer)) => {
                let max = shared.settings().max_conns;
                if shared.active.load(Ordering::Relaxed) >= max {
                    // Closing at once beats a full backlog: the client learns
                    // immediately and our fds stay bounded (slowloris).
                    st.stats.rejected.fetch_add(1, Ordering::Relaxed);
                    if let Some(n) = limit.allow() {
                        log::warn(
                            "max-conns reached, refusing connection",
                            &[("listen", &st.label), ("max", &max), ("suppressed", &n)],
                        );
                    }
                    abort_on_close(&c);
                    continue;
                }
                tokio::spawn(handle(c, st.clone(), shared.clone()));
            }
            Err(e) => {
                let fatal_for_now = matches!(
                    e.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                );
                if fatal_for_now {
                    if let Some(n) = limit.allow() {
                        log::warn(
                            "accept failed, backing off",
                            &[("listen", &st.label), ("err", &e), ("suppressed", &n)],
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    log::info("stopped accepting", &[("listen", &st.label)]);
}

/// Decrements the global count and wakes a drain waiting for zero.
struct ConnGuard<'a>(&'a Shared);

impl Drop for ConnGuard<'_> {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

async fn handle(client: TcpStream, st: Arc<ListenerState>, shared: Arc<Shared>) {
    shared.active.fetch_add(1, Ordering::Relaxed);
    let _g = ConnGuard(&shared);
    let _l = Gauge::new(&st.stats.active);
    st.stats.total.fetch_add(1, Ordering::Relaxed);
    let settings = shared.settings();
    let set = st.backends();
    let Some((backend, be)) = connect_any(&st, &set, &settings).await else {
        st.stats.failed.fetch_add(1, Ordering::Relaxed);
        abort_on_close(&client);
        return;
    };
    drop(set);
    let _b = Gauge::new(&backend.active);
    backend.total.fetch_add(1, Ordering::Relaxed);
    // We forward whatever arrives at once; Nagle would only add latency.
    // (The client side inherited TCP_NODELAY from the listening socket.)
    let _ = be.set_nodelay(true);

    let last = AtomicU64::new(now_ms());
    let up = pump(
        &client,
        &be,
        Tally {
            bytes: &st.stats.bytes_up,
            last: &last,
        },
    );
    let down = pump(
        &be,
        &client,
        Tally {
            bytes: &st.stats.bytes_down,
            last: &last,
        },
    );
    let res = tokio::select! {
        r = async { tokio::try_join!(up, down) } => r.map(|_| ()),
        _ = idle_watch(&last, settings.idle_timeout) => {
            Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout"))
        }
    };
    if let Err(e) = res {
        // One side failed: abort both so neither peer mistakes it for a clean end.
        abort_on_close(&client);
        abort_on_close(&be);
        log::debug(
            "connection ended",
            &[
                ("listen", &st.label),
                ("backend", &backend.name),
                ("err", &e),
            ],
        );
    }
}

async fn connect_any(
    st: &ListenerState,
    set: &BackendSet,
    s: &Settings,
) -> Option<(Arc<Backend>, TcpStream)> {
    for b in set.order() {
        match b.connect(s.connect_timeout).await {
            Ok(stream) => {
                b.down_until_ms.store(0, Ordering::Relaxed);
                if s.health_interval.is_zero() {
                    // No active checker owns the verdict: a success is proof.
                    b.up.store(true, Ordering::Relaxed);
                }
                return Some((b, stream));
            }
            Err(e) => b.mark_failed(&st.label, &e, s.health_interval),
        }
    }
    None
}

async fn idle_watch(last: &AtomicU64, idle: Duration) {
    if idle.is_zero() {
        return std::future::pending().await;
    }
    let idle_ms = idle.as_millis() as u64;
    loop {
        let since = now_ms().saturating_sub(last.load(Ordering::Relaxed));
        if since >= idle_ms {
            return;
        }
        tokio::time::sleep(Duration::from_millis(idle_ms - since)).await;
    }
}
