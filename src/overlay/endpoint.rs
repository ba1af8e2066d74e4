//! One endpoint's life in etcd, shared by the classic attach and CNI ADD:
//! claim an address (one transaction, under this host's lease), then either
//! commit it (record the host link, so the agent can tell a live endpoint
//! from one whose container is gone) or release it (a failed attach gives
//! the address back). Written once, so both front ends behave the same.
use super::alloc::{self, Want};
use super::state::AgentState;
use super::store::{self, Endpoint, NetSpec, Store};
use crate::error::Result;
use std::net::{IpAddr, Ipv4Addr};

/// The addresses (one per family) claimed for one container interface,
/// not yet committed.
pub struct Claim {
    st: Store,
    eps: Vec<Endpoint>,
    net: String,
    lease: i64,
    hold: i64,
}

impl Claim {
    /// Claim `want` on `net` for `container`'s `ifname`.
    pub async fn take(
        st: &Store,
        agent: &AgentState,
        net: &NetSpec,
        want: &Want,
        container: &str,
        ifname: &str,
    ) -> Result<Claim> {
        if net.encrypt {
            // Before the claim: a host that cannot carry the network
            // changes nothing in etcd.
            super::crypt::require_here(&net.name)?;
        }
        let ep = Endpoint {
            ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            mac: String::new(),
            host: agent.host.clone(),
            container: container.to_string(),
            ifname: ifname.to_string(),
            hi: None,
            since: store::now(),
        };
        let mut agent = agent.clone();
        let mut retried = false;
        loop {
            let hold = agent.hold_for(&net.name, net.grace).await?;
            match alloc::claim(st, net, want, ep.clone(), agent.lease, hold).await {
                Ok(eps) => {
                    return Ok(Claim {
                        st: st.clone(),
                        eps,
                        net: net.name.clone(),
                        lease: agent.lease,
                        hold,
                    });
                }
                // The agent replaced a lapsed lease a moment ago (etcd was
                // slow to renew): its state file has the new one.
                Err(e) if !retried && e.to_string().contains("lease not found") => {
                    retried = true;
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    match super::state::load() {
                        Some(a) if a.lease != agent.lease || a.hold != agent.hold => agent = a,
                        _ => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The claimed addresses, IPv4 first.
    pub fn ips(&self) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = self.eps.iter().map(|e| e.ip).collect();
        v.sort_by_key(|ip| ip.is_ipv6());
        v
    }

    /// The MAC derived from the addresses (`aa:bb:…`), one for both.
    pub fn mac(&self) -> &str {
        self.eps.first().map(|e| e.mac.as_str()).unwrap_or_default()
    }

    /// The attach succeeded: record its host link. A failure here is only
    /// a warning: the endpoint works, and the agent's next pass finds the
    /// link by the record on it.
    pub async fn commit(mut self, host_link: Option<String>, who: &str) {
        for ep in &mut self.eps {
            ep.hi = host_link.clone();
            let why = match alloc::update(&self.st, &self.net, ep, self.lease, self.hold).await {
                Ok(alloc::Updated::Written) => continue,
                Ok(alloc::Updated::HeldBy(other)) => format!("held in etcd by host {other}"),
                Err(e) => e.to_string(),
            };
            eprintln!(
                "{who}: warning: recording {}'s host link in etcd: {why}",
                ep.ip
            );
        }
    }

    /// The attach failed: give the addresses back. If even that fails, the
    /// agent's sweep removes an endpoint without a link (or the lease does).
    pub async fn release(self, who: &str) {
        for ep in &self.eps {
            let r = alloc::release(&self.st, &self.net, ep.ip, &ep.host, None).await;
            if let Err(d) = r {
                eprintln!("{who}: warning: releasing {}: {d}", ep.ip);
            }
        }
    }

    /// Name of the network claimed on.
    pub fn net(&self) -> &str {
        &self.net
    }
}
