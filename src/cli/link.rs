//! `pipework link` flags and output.
use crate::error::Result;
use crate::link::{EndSpec, LinkRequest, parse_addr, parse_end};
use crate::untrusted::display as shown;
use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct LinkArgs {
    /// First end: GUEST:IFNAME (container, pid, netns:NAME, path) or host:IFNAME.
    pub a: String,
    /// Second end, same form.
    pub b: String,
    /// MTU of both ends (default 1500).
    #[arg(long)]
    pub mtu: Option<u32>,
    /// Address of the first end (ip/len); repeatable.
    #[arg(long = "ip-a")]
    pub ip_a: Vec<String>,
    /// Address of the second end (ip/len); repeatable.
    #[arg(long = "ip-b")]
    pub ip_b: Vec<String>,
    /// MAC of the first end (or U:string).
    #[arg(long = "mac-a")]
    pub mac_a: Option<String>,
    /// MAC of the second end (or U:string).
    #[arg(long = "mac-b")]
    pub mac_b: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Check everything and print the plan (iproute2 equivalents); change nothing.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
}

fn mac(flag: &str, s: Option<&str>) -> Result<Option<[u8; 6]>> {
    let Some(s) = s else { return Ok(None) };
    match crate::request::parse_mac_token(s) {
        Ok((m, None)) => Ok(m),
        Ok((_, Some(_))) => Err(crate::Error::bad(
            flag,
            "a point-to-point end takes no VLAN tag",
        )),
        Err(e) => Err(crate::Error::bad(flag, e)),
    }
}

/// Everything checked before anything is touched.
pub fn to_request(a: &LinkArgs) -> Result<LinkRequest> {
    let (ga, ia) = parse_end(&a.a)?;
    let (gb, ib) = parse_end(&a.b)?;
    let addrs = |flag: &str, v: &[String]| -> Result<Vec<_>> {
        v.iter().map(|s| parse_addr(flag, s)).collect()
    };
    Ok(LinkRequest {
        a: EndSpec {
            guest: ga,
            ifname: ia,
            addrs: addrs("--ip-a", &a.ip_a)?,
            mac: mac("--mac-a", a.mac_a.as_deref())?,
        },
        b: EndSpec {
            guest: gb,
            ifname: ib,
            addrs: addrs("--ip-b", &a.ip_b)?,
            mac: mac("--mac-b", a.mac_b.as_deref())?,
        },
        mtu: a.mtu,
        extras: Default::default(),
        veth_queues: crate::request::VethQueues::parse(
            std::env::var("PIPEWORK_VETH_QUEUES").ok().as_deref(),
        )?,
    })
}

pub fn run(a: &LinkArgs) -> Result<i32> {
    let req = to_request(a)?;
    if a.dry_run {
        let steps = super::runtime()?.block_on(crate::link::dry_run(&req))?;
        if steps.is_empty() {
            println!("already linked; nothing to do");
        }
        for s in &steps {
            println!("{}", shown(s));
        }
        eprintln!("pipework: dry run, nothing changed");
        return Ok(0);
    }
    let rep = super::runtime()?.block_on(crate::link::run(&req))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rep).unwrap_or_default());
    } else if rep.unchanged {
        eprintln!("pipework: already linked; nothing changed");
    } else {
        for e in [&rep.a, &rep.b] {
            println!(
                "{} {} {} {}",
                shown(&e.guest),
                shown(&e.interface),
                shown(&e.mac),
                shown(&e.addresses.join(","))
            );
        }
    }
    Ok(0)
}
