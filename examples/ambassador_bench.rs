//! Load generator and echo backend for scripts/bench-ambassador.sh.
//!
//!   echo ADDR               echo server (tokio), runs until killed
//!   rate ADDR SECS CONC     new short connections per second: connect, 1-byte ping-pong, close
//!   hold ADDR N             open N connections, ping each once, print "held N", wait for stdin EOF
//!   lat ADDR N              N 64-byte ping-pongs on one connection; prints p50/p99 in µs
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let addr = a.get(2).cloned().unwrap_or_default();
    let num = |i: usize| a.get(i).and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
    match a.get(1).map(String::as_str) {
        Some("echo") => rt.block_on(echo(addr)),
        Some("rate") => rt.block_on(rate(addr, num(3) as u64, num(4))),
        Some("hold") => rt.block_on(hold(addr, num(3))),
        Some("lat") => rt.block_on(lat(addr, num(3))),
        _ => eprintln!("usage: echo ADDR | rate ADDR SECS CONC | hold ADDR N | lat ADDR N"),
    }
}

async fn echo(addr: String) {
    let l = TcpListener::bind(&addr).await.expect("bind");
    loop {
        let Ok((mut c, _)) = l.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let _ = c.set_nodelay(true);
            let mut buf = [0u8; 4096];
            loop {
                match c.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if c.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
}

async fn rate(addr: String, secs: u64, conc: usize) {
    let end = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..conc.max(1) {
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut err) = (0u64, 0u64);
            while Instant::now() < end {
                let r = async {
                    let mut c = TcpStream::connect(&addr).await?;
                    c.set_nodelay(true)?;
                    c.write_all(b"x").await?;
                    let mut b = [0u8; 1];
                    c.read_exact(&mut b).await?;
                    // Close with RST so TIME_WAIT does not exhaust loopback ports.
                    socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO))?;
                    Ok::<_, std::io::Error>(())
                }
                .await;
                if r.is_ok() { ok += 1 } else { err += 1 }
            }
            (ok, err)
        }));
    }
    let (mut ok, mut err) = (0, 0);
    for t in tasks {
        let (o, e) = t.await.unwrap_or((0, 0));
        ok += o;
        err += e;
    }
    println!("conns_per_s {:.0} errors {err}", ok as f64 / secs as f64);
}

async fn hold(addr: String, n: usize) {
    let mut conns = Vec::with_capacity(n);
    let mut failed = 0;
    for _ in 0..n {
        let r = async {
            let mut c = TcpStream::connect(&addr).await?;
            c.write_all(b"x").await?;
            let mut b = [0u8; 1];
            c.read_exact(&mut b).await?;
            Ok::<_, std::io::Error>(c)
        }
        .await;
        match r {
            Ok(c) => conns.push(c),
            Err(_) => failed += 1,
        }
    }
    println!("held {} failed {failed}", conns.len());
    // Hold until the script closes our stdin.
    let mut s = tokio::io::stdin();
    let mut b = [0u8; 64];
    while matches!(s.read(&mut b).await, Ok(n) if n > 0) {}
    // Prove they are all still alive: one more round trip each.
    let mut alive = 0;
    for c in conns.iter_mut() {
        if c.write_all(b"y").await.is_ok() {
            let mut b = [0u8; 1];
            if c.read_exact(&mut b).await.is_ok() {
                alive += 1;
            }
        }
    }
    println!("alive {alive}");
}

async fn lat(addr: String, n: usize) {
    let mut c = TcpStream::connect(&addr).await.expect("connect");
    c.set_nodelay(true).expect("nodelay");
    let msg = [7u8; 64];
    let mut back = [0u8; 64];
    let mut v = Vec::with_capacity(n);
    for i in 0..n + 200 {
        let t = Instant::now();
        c.write_all(&msg).await.expect("write");
        c.read_exact(&mut back).await.expect("read");
        if i >= 200 {
            v.push(t.elapsed().as_nanos() as u64);
        }
    }
    v.sort_unstable();
    let p = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)] as f64 / 1000.0;
    println!("p50_us {:.1} p99_us {:.1}", p(0.50), p(0.99));
}
