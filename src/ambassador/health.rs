//! Active health checks: a TCP connect to every backend of a listener each
//! interval. One failed check takes a backend out, one success puts it back
//! (and clears any passive mark), logged on each transition.
use super::config::Proto;
use super::log;
use super::state::{ListenerState, Shared};
use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Runs until the listener is dropped or stopped. Reads the interval from
/// the current settings each round so a reload can change it.
pub async fn run(st: Weak<ListenerState>, shared: Weak<Shared>) {
    loop {
        let (Some(l), Some(sh)) = (st.upgrade(), shared.upgrade()) else {
            return;
        };
        if l.stopped.load(Ordering::Relaxed) || l.listen.proto != Proto::Tcp {
            return;
        }
        let s = sh.settings();
        if s.health_interval.is_zero() {
            drop((l, sh));
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let set = l.backends();
        let checks = set.backends.iter().map(|b| {
            let label = &l.label;
            let s = &s;
            async move {
                let res = b.connect(s.connect_timeout).await;
                let was = b.up.load(Ordering::Relaxed);
                match res {
                    Ok(_) => {
                        b.down_until_ms.store(0, Ordering::Relaxed);
                        if !was {
                            b.up.store(true, Ordering::Relaxed);
                            log::info("backend up", &[("listen", label), ("backend", &b.name)]);
                        }
                    }
                    Err(e) => {
                        b.errors.fetch_add(1, Ordering::Relaxed);
                        if was {
                            b.up.store(false, Ordering::Relaxed);
                            log::warn(
                                "backend down",
                                &[("listen", label), ("backend", &b.name), ("err", &e)],
                            );
                        } else {
                            b.log_error(label, "backend still down", &e);
                        }
                    }
                }
            }
        });
        futures::future::join_all(checks).await;
        let interval = s.health_interval;
        drop((set, l, sh));
        tokio::time::sleep(interval).await;
    }
}
