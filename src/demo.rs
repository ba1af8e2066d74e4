//! `pipework demo`: the main job on throwaway namespaces. Two anonymous
//! network namespaces (alive only while we hold their fds) are attached to a
//! new bridge, a TCP payload crosses between them, and everything is torn
//! down again. Nothing outside those namespaces and that bridge is touched.
use crate::attach;
use crate::error::{Error, Result};
use crate::guest::Guest;
use crate::netlink::Net;
use crate::netns::NetNs;
use crate::request::{Addressing, AttachRequest};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A brand-new empty network namespace, pinned by fd only.
pub fn anonymous_netns(label: &str) -> Result<NetNs> {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::io("unshare(CLONE_NEWNET)", e.into()))?;
            let mut ns = NetNs::current()?;
            ns.path = label.into();
            Ok(ns)
        })
        .join()
        .map_err(|_| Error::other("namespace thread panicked"))?
    })
}

fn request(bridge: &str, ip: &str) -> Result<AttachRequest> {
    Ok(AttachRequest {
        host: bridge.into(),
        addressing: Addressing::Static {
            addrs: vec![crate::request::parse_cidr(ip)?],
            gateways: vec![],
        },
        create: true,
        ..Default::default()
    })
}

pub async fn run() -> Result<()> {
    let tag = std::process::id() % 0xffff;
    let bridge = format!("brpwdemo{tag:04x}");
    let a = Guest {
        netns: anonymous_netns("demo-a")?,
        name: format!("demo-a-{tag:04x}"),
        id: None,
        pid: None,
    };
    let b = Guest {
        netns: anonymous_netns("demo-b")?,
        name: format!("demo-b-{tag:04x}"),
        id: None,
        pid: None,
    };
    println!("demo: two fresh network namespaces, bridge {bridge}");

    let t = Instant::now();
    let ra = attach::attach_to(&request(&bridge, "10.213.7.1/24")?, &a).await;
    let rb = match &ra {
        Ok(_) => Some(attach::attach_to(&request(&bridge, "10.213.7.2/24")?, &b).await),
        Err(_) => None,
    };
    let result = match (&ra, &rb) {
        (Ok(x), Some(Ok(y))) => {
            println!(
                "demo: attached {} {} ({}) and {} {} ({}) in {:.1} ms",
                x.guest,
                x.interface,
                x.addresses.join(","),
                y.guest,
                y.interface,
                y.addresses.join(","),
                t.elapsed().as_secs_f64() * 1e3
            );
            // What attach did to the host beyond the plumbing (a firewall
            // rule for the bridge), as `pipework attach` says it.
            for n in x.host.notes.iter().chain(&y.host.notes) {
                println!("demo: {}", crate::untrusted::display(n));
            }
            exchange(&a, &b).map_err(|e| match crate::firewall::why_dropped(&bridge) {
                // Name the cause, not only the symptom (a timeout).
                Some(why) => Error::other(format!("{e}: {why}")),
                None => e,
            })
        }
        (Err(e), _) | (_, Some(Err(e))) => Err(Error::other(format!("attach failed: {e}"))),
        _ => Err(Error::other("attach failed")),
    };

    // Tear down: container ends (each veth pair with them), then the bridge.
    let host = Net::new(None, false)?;
    for g in [&a, &b] {
        let cont = Net::new(Some(&g.netns), false)?;
        let scan = crate::inventory::scan(&cont, g.netns.inode()?, &g.name).await?;
        for f in scan.attachments() {
            crate::driver::undo(&host, &cont, &f.rec).await?;
        }
    }
    if let Some(br) = host.link_by_name(&bridge).await? {
        host.delete_link(&br).await?;
    }
    println!("demo: detached both, removed {bridge}");
    result?;
    println!("demo: OK");
    Ok(())
}

/// A TCP payload from a to b across the bridge, checked byte for byte.
fn exchange(a: &Guest, b: &Guest) -> Result<()> {
    let listener = b
        .netns
        .run(|| TcpListener::bind("10.213.7.2:7000"))?
        .map_err(|e| Error::io("listen in demo-b", e))?;
    let server = std::thread::spawn(move || -> std::io::Result<Vec<u8>> {
        let (mut s, _) = listener.accept()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)?;
        s.write_all(&buf)?;
        Ok(buf)
    });
    let payload: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
    let dst: SocketAddr = ([10, 213, 7, 2], 7000).into();
    let mut s = a
        .netns
        .run(|| TcpStream::connect_timeout(&dst, Duration::from_secs(5)))?
        .map_err(|e| Error::io("connect from demo-a", e))?;
    s.write_all(&payload).map_err(|e| Error::io("send", e))?;
    s.shutdown(std::net::Shutdown::Write)
        .map_err(|e| Error::io("shutdown", e))?;
    let mut back = Vec::new();
    s.read_to_end(&mut back)
        .map_err(|e| Error::io("receive", e))?;
    let _ = server.join();
    if back != payload {
        return Err(Error::other("demo: payload came back altered"));
    }
    println!("demo: 64 KiB echoed intact between 10.213.7.1 and 10.213.7.2 over TCP");
    Ok(())
}
