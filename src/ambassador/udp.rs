//! UDP forwarding with per-client sessions.
//!
//! Each client address gets its own connected socket towards a backend, so
//! replies find their way back and the backend sees distinct flows. A
//! session ends after `udp_timeout` without traffic in either direction.
use super::backend::Backend;
use super::log::{self, RateLimit, now_ms};
use super::state::{ListenerState, Shared};
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;

const MAX_DATAGRAM: usize = 65535;

struct Session {
    sock: UdpSocket,
    last: AtomicU64,
    backend: Arc<Backend>,
}

type Sessions = Arc<Mutex<HashMap<SocketAddr, Arc<Session>>>>;

pub async fn serve_udp(sock: UdpSocket, st: Arc<ListenerState>, shared: Arc<Shared>) {
    let sock = Arc::new(sock);
    let sessions: Sessions = Arc::default();
    let limit = RateLimit::default();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let stop = st.stopped();
    tokio::pin!(stop);
    loop {
        let (n, peer) = tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok(v) => v,
                // ICMP errors surface here on some kernels; keep serving.
                Err(_) => continue,
            },
            _ = &mut stop => break,
        };
        let existing = sessions.lock().ok().and_then(|m| m.get(&peer).cloned());
        let session = match existing {
            Some(s) => s,
            None => {
                let max = shared.settings().max_conns;
                if st.stats.udp_sessions.load(Ordering::Relaxed) >= max {
                    st.stats.rejected.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                match open_session(&st).await {
                    Some(s) => {
                        let s = Arc::new(s);
                        if let Ok(mut m) = sessions.lock() {
                            m.insert(peer, s.clone());
                        }
                        st.stats.total.fetch_add(1, Ordering::Relaxed);
                        st.stats.udp_sessions.fetch_add(1, Ordering::Relaxed);
                        s.backend.active.fetch_add(1, Ordering::Relaxed);
                        s.backend.total.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(replies(
                            s.clone(),
                            peer,
                            sock.clone(),
                            sessions.clone(),
                            st.clone(),
                            shared.clone(),
                        ));
                        s
                    }
                    None => {
                        st.stats.failed.fetch_add(1, Ordering::Relaxed);
                        if let Some(k) = limit.allow() {
                            log::warn(
                                "no UDP backend reachable",
                                &[("listen", &st.label), ("suppressed", &k)],
                            );
                        }
                        continue;
                    }
                }
            }
        };
        session.last.store(now_ms(), Ordering::Relaxed);
        match session.sock.send(&buf[..n]).await {
            Ok(_) => {
                st.stats.bytes_up.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) => session.backend.mark_failed(&st.label, &e, Duration::ZERO),
        }
    }
    // Dropping the sessions' sockets ends their reply tasks.
    if let Ok(mut m) = sessions.lock() {
        m.clear();
    }
    log::info("stopped accepting", &[("listen", &st.label)]);
}

async fn open_session(st: &ListenerState) -> Option<Session> {
    for b in st.backends().order() {
        let addr = match b.resolve().await {
            Ok(a) => a[0],
            Err(e) => {
                b.mark_failed(&st.label, &e, Duration::ZERO);
                continue;
            }
        };
        let local: SocketAddr = if addr.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = match UdpSocket::bind(local).await {
            Ok(s) => s,
            Err(_) => return None,
        };
        if let Err(e) = sock.connect(addr).await {
            b.mark_failed(&st.label, &e, Duration::ZERO);
            continue;
        }
        // UDP has no active checks: a working session is the verdict.
        b.up.store(true, Ordering::Relaxed);
        b.down_until_ms.store(0, Ordering::Relaxed);
        return Some(Session {
            sock,
            last: AtomicU64::new(now_ms()),
            backend: b,
        });
    }
    None
}

async fn replies(
    s: Arc<Session>,
    peer: SocketAddr,
    listen: Arc<UdpSocket>,
    sessions: Sessions,
    st: Arc<ListenerState>,
    shared: Arc<Shared>,
) {
    let stop = st.stopped();
    tokio::pin!(stop);
    loop {
        let timeout = shared.settings().udp_timeout;
        let idle = now_ms().saturating_sub(s.last.load(Ordering::Relaxed));
        let left = (timeout.as_millis() as u64).saturating_sub(idle);
        if left == 0 {
            break;
        }
        tokio::select! {
            r = s.sock.readable() => {
                if r.is_err() {
                    break;
                }
                // The buffer lives only while datagrams are waiting, so an
                // idle session costs a socket and a few words, not 64 KiB.
                let mut buf = vec![0u8; MAX_DATAGRAM];
                loop {
                    match s.sock.try_recv(&mut buf) {
                        Ok(n) => {
                            s.last.store(now_ms(), Ordering::Relaxed);
                            st.stats.bytes_down.fetch_add(n as u64, Ordering::Relaxed);
                            let _ = listen.send_to(&buf[..n], peer).await;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        // ECONNREFUSED: the backend port is closed (ICMP).
                        Err(e) => {
                            s.backend.mark_failed(&st.label, &e, Duration::ZERO);
                            break;
                        }
                    }
                }
            },
            _ = tokio::time::sleep(Duration::from_millis(left)) => {}
            _ = &mut stop => break,
        }
    }
    if let Ok(mut m) = sessions.lock()
        && m.get(&peer).is_some_and(|x| Arc::ptr_eq(x, &s))
    {
        m.remove(&peer);
    }
    st.stats.udp_sessions.fetch_sub(1, Ordering::Relaxed);
    s.backend.active.fetch_sub(1, Ordering::Relaxed);
}
