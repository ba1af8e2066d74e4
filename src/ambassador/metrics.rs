//! Prometheus text exposition on a tiny HTTP endpoint (`--metrics ADDR`).
//!
//! Hand-written rather than a web framework: one GET, one response, and
//! the crate's dependency list stays as fixed by the project guide.
use super::log;
use super::pipe::POOL;
use super::state::{ListenerState, Shared};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub type Registry = Arc<std::sync::Mutex<Vec<Arc<ListenerState>>>>;

pub async fn serve(l: TcpListener, reg: Registry, shared: Arc<Shared>) {
    loop {
        let Ok((c, _)) = l.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let body = render(&reg, &shared);
        tokio::spawn(async move {
            if let Err(e) = respond(c, body).await {
                log::debug("metrics request failed", &[("err", &e)]);
            }
        });
    }
}

async fn respond(mut c: TcpStream, body: String) -> std::io::Result<()> {
    // Read the request head (bounded) so the client is not reset mid-send.
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), c.read(&mut buf))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let first = String::from_utf8_lossy(&head);
    let path_ok = first
        .split_whitespace()
        .nth(1)
        .is_some_and(|p| p == "/metrics" || p == "/");
    let resp = if path_ok {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
    };
    c.write_all(resp.as_bytes()).await?;
    c.shutdown().await
}

pub fn render(reg: &Registry, shared: &Shared) -> String {
    let listeners: Vec<Arc<ListenerState>> = reg.lock().map(|g| g.clone()).unwrap_or_default();
    let mut o = String::new();
    let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, u64)>| {
        let _ = writeln!(o, "# HELP pipework_ambassador_{name} {help}");
        let _ = writeln!(o, "# TYPE pipework_ambassador_{name} {kind}");
        for (labels, v) in rows {
            let _ = writeln!(o, "pipework_ambassador_{name}{{{labels}}} {v}");
        }
    };
    let per = |f: &dyn Fn(&ListenerState) -> u64| -> Vec<(String, u64)> {
        listeners
            .iter()
            .map(|l| (format!("listen=\"{}\"", l.label), f(l)))
            .collect()
    };
    let r = Ordering::Relaxed;
    family(
        "connections_active",
        "gauge",
        "Open client connections (UDP: sessions).",
        per(&|l| (l.stats.active.load(r) + l.stats.udp_sessions.load(r)) as u64),
    );
    family(
        "connections_total",
        "counter",
        "Client connections (UDP: sessions) accepted.",
        per(&|l| l.stats.total.load(r)),
    );
    family(
        "connections_rejected_total",
        "counter",
        "Connections refused because max-conns was reached.",
        per(&|l| l.stats.rejected.load(r)),
    );
    family(
        "connections_failed_total",
        "counter",
        "Connections closed because no backend could be reached.",
        per(&|l| l.stats.failed.load(r)),
    );
    let mut bytes = Vec::new();
    for l in &listeners {
        bytes.push((
            format!("listen=\"{}\",direction=\"client_to_backend\"", l.label),
            l.stats.bytes_up.load(r),
        ));
        bytes.push((
            format!("listen=\"{}\",direction=\"backend_to_client\"", l.label),
            l.stats.bytes_down.load(r),
        ));
    }
    family("bytes_total", "counter", "Payload bytes forwarded.", bytes);
    let per_backend = |f: &dyn Fn(&super::backend::Backend) -> u64| -> Vec<(String, u64)> {
        let mut v = Vec::new();
        for l in &listeners {
            for b in &l.backends().backends {
                v.push((
                    format!("listen=\"{}\",backend=\"{}\"", l.label, b.name),
                    f(b),
                ));
            }
        }
        v
    };
    family(
        "backend_up",
        "gauge",
        "1 if the backend is considered healthy.",
        per_backend(&|b| b.healthy() as u64),
    );
    family(
        "backend_connections_active",
        "gauge",
        "Open connections to the backend.",
        per_backend(&|b| b.active.load(r) as u64),
    );
    family(
        "backend_connections_total",
        "counter",
        "Connections made to the backend.",
        per_backend(&|b| b.total.load(r)),
    );
    family(
        "backend_errors_total",
        "counter",
        "Failed connects and health checks.",
        per_backend(&|b| b.errors.load(r)),
    );
    let _ = writeln!(
        o,
        "# HELP pipework_ambassador_open_connections Open TCP connections, all listeners.\n\
         # TYPE pipework_ambassador_open_connections gauge\n\
         pipework_ambassador_open_connections {}",
        shared.active.load(r)
    );
    let _ = writeln!(
        o,
        "# HELP pipework_ambassador_pipes Splice pipes alive (in use plus pooled).\n\
         # TYPE pipework_ambassador_pipes gauge\n\
         pipework_ambassador_pipes {}\n\
         # HELP pipework_ambassador_pipes_pooled Splice pipes idle in the pool.\n\
         # TYPE pipework_ambassador_pipes_pooled gauge\n\
         pipework_ambassador_pipes_pooled {}",
        POOL.live(),
        POOL.pooled()
    );
    o
}
