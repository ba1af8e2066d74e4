//! Per-link impairments (delay, loss, rate) as a netem root qdisc on each
//! end the lab made, over rtnetlink (no `tc` binary). Kernels without
//! sch_netem are told so in one line before anything is built.
use crate::error::{Error, Result};
use crate::netlink::{Link, Net};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Impair {
    pub delay_us: Option<u64>,
    /// Percent, 0-100.
    pub loss: Option<f64>,
    /// Bits per second.
    pub rate_bps: Option<u64>,
}

impl Impair {
    pub fn is_none(&self) -> bool {
        self.delay_us.is_none() && self.loss.is_none() && self.rate_bps.is_none()
    }

    pub fn parse(delay: Option<&str>, loss: Option<&str>, rate: Option<&str>) -> Result<Impair> {
        Ok(Impair {
            delay_us: delay.map(parse_delay).transpose()?,
            loss: loss.map(parse_loss).transpose()?,
            rate_bps: rate.map(parse_rate).transpose()?,
        })
    }
}

fn split_unit(s: &str) -> (&str, &str) {
    let i = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    (&s[..i], s[i..].trim())
}

fn parse_delay(s: &str) -> Result<u64> {
    let (n, u) = split_unit(s.trim());
    let n: f64 = n
        .parse()
        .map_err(|_| Error::bad(s, "delay: e.g. 10ms, 500us, 1s"))?;
    let mul = match u {
        "us" => 1.0,
        "ms" | "" => 1_000.0,
        "s" => 1_000_000.0,
        _ => return Err(Error::bad(s, "delay unit: us, ms or s")),
    };
    Ok((n * mul) as u64)
}

fn parse_loss(s: &str) -> Result<f64> {
    let t = s.trim().trim_end_matches('%');
    t.parse::<f64>()
        .ok()
        .filter(|p| (0.0..=100.0).contains(p))
        .ok_or_else(|| Error::bad(s, "loss: a percentage 0-100, e.g. 1%"))
}

fn parse_rate(s: &str) -> Result<u64> {
    let (n, u) = split_unit(s.trim());
    let n: f64 = n
        .parse()
        .map_err(|_| Error::bad(s, "rate: e.g. 10mbit, 1gbit, 512kbit"))?;
    let mul = match u.to_ascii_lowercase().as_str() {
        "bit" | "" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        _ => return Err(Error::bad(s, "rate unit: bit, kbit, mbit or gbit")),
    };
    let r = (n * mul) as u64;
    if r < 8 {
        return Err(Error::bad(s, "rate too low"));
    }
    Ok(r)
}

/// Whether this kernel can load sch_netem (built in or as a module).
pub fn available() -> bool {
    if std::path::Path::new("/sys/module/sch_netem").exists() {
        return true;
    }
    let rel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = format!("/lib/modules/{rel}/kernel/net/sched");
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("sch_netem."))
        })
        .unwrap_or(false)
}

/// The one-line refusal for kernels without netem.
pub fn unavailable(token: &str) -> Error {
    Error::bad(
        token,
        "netem not available on this kernel (sch_netem): remove delay/loss/rate or run where netem exists",
    )
}

fn nla(kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    v.extend_from_slice(&kind.to_ne_bytes());
    v.extend_from_slice(payload);
    while v.len() % 4 != 0 {
        v.push(0);
    }
    v
}

/// TCA_OPTIONS for netem: `struct tc_netem_qopt` then nested attributes.
fn options(i: &Impair) -> Vec<u8> {
    const TCA_NETEM_RATE: u16 = 6;
    const TCA_NETEM_RATE64: u16 = 8;
    const TCA_NETEM_LATENCY64: u16 = 10;
    // psched ticks are 1/64 µs · 1000 on every kernel since 2.6.
    let ticks = i.delay_us.unwrap_or(0).saturating_mul(1000) / 64;
    let loss = i
        .loss
        .map(|p| ((p / 100.0) * f64::from(u32::MAX)) as u32)
        .unwrap_or(0);
    let mut v = Vec::new();
    for f in [
        u32::try_from(ticks).unwrap_or(u32::MAX),
        1000, // limit (packets), tc's default
        loss,
        0,
        0,
        0,
    ] {
        v.extend_from_slice(&f.to_ne_bytes());
    }
    if let Some(d) = i.delay_us {
        let ns = i64::try_from(d.saturating_mul(1000)).unwrap_or(i64::MAX);
        v.extend(nla(TCA_NETEM_LATENCY64, &ns.to_ne_bytes()));
    }
    if let Some(r) = i.rate_bps {
        let bytes = r / 8;
        let r32 = u32::try_from(bytes).unwrap_or(u32::MAX);
        let mut s = Vec::new();
        s.extend_from_slice(&r32.to_ne_bytes());
        s.extend_from_slice(&[0u8; 12]);
        v.extend(nla(TCA_NETEM_RATE, &s));
        if bytes > u64::from(u32::MAX) {
            v.extend(nla(TCA_NETEM_RATE64, &bytes.to_ne_bytes()));
        }
    }
    v
}

/// Put the impairment on `link` (root qdisc; the link is ours and new).
pub async fn apply(net: &Net, link: &Link, i: &Impair) -> Result<()> {
    if i.is_none() {
        return Ok(());
    }
    match net.add_root_qdisc(link, "netem", options(i)).await {
        Err(e) if matches!(e.errno(), Some(libc::ENOENT) | Some(libc::EOPNOTSUPP)) => {
            Err(unavailable(&link.name))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impairments_parse_and_encode() {
        let i = Impair::parse(Some("10ms"), Some("1.5%"), Some("10mbit")).expect("ok");
        assert_eq!(i.delay_us, Some(10_000));
        assert_eq!(i.loss, Some(1.5));
        assert_eq!(i.rate_bps, Some(10_000_000));
        let o = options(&i);
        // qopt (24) + latency64 (12) + rate (20).
        assert_eq!(o.len(), 24 + 12 + 20);
        assert_eq!(u32::from_ne_bytes([o[0], o[1], o[2], o[3]]), 156_250);
        assert!(Impair::parse(Some("fast"), None, None).is_err());
        assert!(Impair::parse(None, Some("120%"), None).is_err());
        assert!(Impair::parse(None, None, Some("10furlongs")).is_err());
        assert!(Impair::parse(None, None, None).expect("none").is_none());
    }
}
