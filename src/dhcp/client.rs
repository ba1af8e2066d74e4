//! The DHCPv4 client state machine (RFC 2131 section 4.4).
//!
//! INIT -> SELECTING (DISCOVER, first OFFER wins) -> REQUESTING (REQUEST,
//! ACK or NAK) -> BOUND. A NAK at any point starts over from DISCOVER.
//! INIT-REBOOT asks for a remembered address first. RENEWING (T1) and
//! REBINDING (T2) live in `renew`; the keeper drives them.
//!
//! Reply classification is a pure function of the bytes received so it can
//! be fuzzed: anything that does not decode, is not a BOOTREPLY for our
//! xid and hardware address, or lacks what its type requires is ignored.
use super::lease::Lease;
use super::socket::{RawSocket, UdpSocket};
use crate::error::{Error, Result};
use crate::netns::NetNs;
use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use std::net::Ipv4Addr;
use std::time::Duration;
use tokio::time::Instant;

/// What the caller may choose about the exchange.
#[derive(Debug, Clone)]
pub struct DhcpOptions {
    /// Option 12. The original pipework sent the container name.
    pub hostname: Option<String>,
    /// Option 61. Default: type 1 (Ethernet) followed by the MAC.
    pub client_id: Option<Vec<u8>>,
    /// Give up after this long without a lease (`--dhcp-timeout`).
    pub timeout: Duration,
    /// INIT-REBOOT: ask for this address first (a remembered lease).
    pub request: Option<Ipv4Addr>,
}

impl Default for DhcpOptions {
    fn default() -> Self {
        DhcpOptions {
            hostname: None,
            client_id: None,
            timeout: Duration::from_secs(10),
            request: None,
        }
    }
}

/// Who we are on the wire.
#[derive(Debug, Clone)]
pub struct Identity {
    pub mac: [u8; 6],
    pub hostname: Option<String>,
    pub client_id: Vec<u8>,
}

impl Identity {
    pub fn new(mac: [u8; 6], opts: &DhcpOptions) -> Self {
        let client_id = opts.client_id.clone().unwrap_or_else(|| {
            let mut id = vec![1u8];
            id.extend_from_slice(&mac);
            id
        });
        Identity {
            mac,
            hostname: opts.hostname.clone().filter(|h| !h.is_empty()),
            client_id,
        }
    }

    /// Build a client message of `kind`.
    pub fn message(
        &self,
        kind: MessageType,
        xid: u32,
        ciaddr: Ipv4Addr,
        requested: Option<Ipv4Addr>,
        server: Option<Ipv4Addr>,
    ) -> Message {
        let mut m = Message::default();
        m.set_opcode(Opcode::BootRequest)
            .set_xid(xid)
            .set_chaddr(&self.mac)
            .set_ciaddr(ciaddr)
            .set_flags(Flags::default());
        let o = m.opts_mut();
        o.insert(DhcpOption::MessageType(kind));
        o.insert(DhcpOption::ClientIdentifier(self.client_id.clone()));
        if let Some(ip) = requested {
            o.insert(DhcpOption::RequestedIpAddress(ip));
        }
        if let Some(ip) = server {
            o.insert(DhcpOption::ServerIdentifier(ip));
        }
        if kind != MessageType::Release && kind != MessageType::Decline {
            if let Some(h) = &self.hostname {
                o.insert(DhcpOption::Hostname(h.clone()));
            }
            o.insert(DhcpOption::MaxMessageSize(1500));
            o.insert(DhcpOption::ParameterRequestList(vec![
                OptionCode::SubnetMask,
                OptionCode::Router,
                OptionCode::DomainNameServer,
                OptionCode::DomainName,
                OptionCode::ClasslessStaticRoute,
                OptionCode::InterfaceMtu,
                OptionCode::AddressLeaseTime,
                OptionCode::Renewal,
                OptionCode::Rebinding,
            ]));
        }
        m
    }
}

pub fn encode(m: &Message) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(512);
    m.encode(&mut Encoder::new(&mut buf))
        .map_err(|e| Error::other(format!("dhcp: cannot encode message: {e}")))?;
    Ok(buf)
}

/// A reply, reduced to what the state machine acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Offer { address: Ipv4Addr, server: Ipv4Addr },
    Ack(Lease),
    Nak { server: Option<Ipv4Addr> },
}

/// Decode and validate a DHCP payload for our `xid` and `mac`. Returns
/// `None` for anything we must ignore (malformed, wrong xid, not a reply,
/// not for us, missing mandatory options).
pub fn classify(payload: &[u8], xid: u32, mac: &[u8; 6]) -> Option<Reply> {
    let clean = sanitize(payload)?;
    let msg = Message::decode(&mut Decoder::new(&clean)).ok()?;
    if msg.opcode() != Opcode::BootReply || msg.xid() != xid {
        return None;
    }
    if msg.chaddr().get(..6) != Some(&mac[..]) {
        return None;
    }
    let server = match msg.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
        _ => None,
    };
    match msg.opts().msg_type()? {
        MessageType::Offer => {
            let address = msg.yiaddr();
            if address.is_unspecified() || address.is_broadcast() || address.is_multicast() {
                return None;
            }
            Some(Reply::Offer {
                address,
                server: server?,
            })
        }
        MessageType::Ack => Lease::from_ack(&msg).map(Reply::Ack),
        MessageType::Nak => Some(Reply::Nak { server }),
        _ => None,
    }
}

/// Options we act on, with the lengths their wire format allows.
fn option_len_ok(code: u8, len: usize) -> bool {
    match code {
        53 => len == 1,                             // message type
        1 | 54 | 51 | 58 | 59 => len == 4,          // mask, server id, lease, T1, T2
        26 => len == 2,                             // MTU
        3 | 6 => len >= 4 && len.is_multiple_of(4), // routers, DNS servers
        15 => len >= 1,                             // domain name
        121 => len >= 5,                            // classless routes
        _ => false,
    }
}

/// Rebuild a reply with only the options we act on, each with a valid
/// length, before handing it to the decoder. Hostile input never reaches
/// dhcproto's decoders for options we ignore (some of them assert on
/// lengths), and a well-formed reply loses nothing we use. Option
/// overload (52) is not supported: sname/file are never parsed as options.
pub fn sanitize(payload: &[u8]) -> Option<Vec<u8>> {
    const HDR: usize = 236;
    if payload.len() < HDR + 4 || payload[HDR..HDR + 4] != dhcproto::v4::MAGIC {
        return None;
    }
    // A reply to an Ethernet client echoes htype 1, hlen 6. Anything else
    // is not for us, and dhcproto's `chaddr()` panics on hlen > 16 (found
    // by fuzzing).
    if payload[1] != 1 || payload[2] != 6 {
        return None;
    }
    let mut out = Vec::with_capacity(payload.len().min(576) + 1);
    out.extend_from_slice(&payload[..HDR + 4]);
    let mut seen = [false; 256];
    let mut i = HDR + 4;
    while i < payload.len() {
        let code = payload[i];
        match code {
            0 => {
                i += 1;
                continue;
            }
            255 => break,
            _ => {}
        }
        let len = usize::from(*payload.get(i + 1)?);
        let data = payload.get(i + 2..i + 2 + len)?;
        if option_len_ok(code, len) && !seen[usize::from(code)] {
            seen[usize::from(code)] = true;
            out.push(code);
            out.push(len as u8);
            out.extend_from_slice(data);
        }
        i += 2 + len;
    }
    out.push(255);
    Some(out)
}

/// Random transaction id from the kernel's CSPRNG; predictable ids would let
/// an off-path host forge replies more easily.
pub fn new_xid() -> u32 {
    let mut b = [0u8; 4];
    // SAFETY: getrandom writes at most b.len() bytes into b.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != 4 {
        // Fall back to time-derived bits; uniqueness matters more than
        // secrecy for a fallback that should never run.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
            .unwrap_or(0x5eed);
        return t ^ std::process::id();
    }
    u32::from_ne_bytes(b)
}

/// Retransmission schedule: 0.2 s, 0.5 s, 1 s, then doubling to 8 s. RFC
/// 2131 suggests starting at 4 s, but a link that has just come up (a
/// fresh veth, a bridge port) often drops the first frames, and waiting
/// seconds for that would dwarf the exchange itself. The caller's timeout
/// bounds the total.
fn backoff(attempt: u32) -> Duration {
    match attempt {
        0 => Duration::from_millis(200),
        1 => Duration::from_millis(500),
        n => Duration::from_secs(1u64 << (n - 2).min(3)),
    }
}

/// Transport used for one exchange.
pub enum Transport<'a> {
    Raw(&'a RawSocket),
    /// UDP to this destination (the server for RENEWING, broadcast for
    /// REBINDING).
    Udp(&'a UdpSocket, Ipv4Addr),
}

impl Transport<'_> {
    async fn send(&self, payload: &[u8]) -> Result<()> {
        match self {
            Transport::Raw(s) => s.send_broadcast(payload),
            Transport::Udp(s, dst) => s.send_to(payload, *dst).await,
        }
    }

    async fn recv(&self) -> Result<Vec<u8>> {
        match self {
            Transport::Raw(s) => s.recv().await,
            Transport::Udp(s, _) => s.recv().await,
        }
    }
}

/// Send `msg`, retransmitting on the backoff schedule until `accept` takes
/// a reply or `until` passes. `None` on timeout.
async fn exchange<T>(
    t: &Transport<'_>,
    msg: &Message,
    mac: &[u8; 6],
    until: Instant,
    max_interval: Option<Duration>,
    mut accept: impl FnMut(Reply) -> Option<T>,
) -> Result<Option<T>> {
    let payload = encode(msg)?;
    let xid = msg.xid();
    let mut attempt = 0;
    loop {
        if Instant::now() >= until {
            return Ok(None);
        }
        t.send(&payload).await?;
        let mut wait = backoff(attempt);
        if let Some(m) = max_interval {
            wait = wait.min(m);
        }
        let next = (Instant::now() + wait).min(until);
        attempt += 1;
        loop {
            tokio::select! {
                r = t.recv() => {
                    let bytes = r?;
                    if let Some(reply) = classify(&bytes, xid, mac)
                        && let Some(v) = accept(reply)
                    {
                        return Ok(Some(v));
                    }
                }
                _ = tokio::time::sleep_until(next) => break,
            }
        }
    }
}

enum Outcome {
    Ack(Lease),
    Nak,
}

/// INIT/INIT-REBOOT through BOUND on a raw socket. Errors only on socket
/// failures or when `until` passes without a lease.
pub async fn obtain(
    sock: &RawSocket,
    id: &Identity,
    mut reboot: Option<Ipv4Addr>,
    until: Instant,
) -> Result<Option<Lease>> {
    let t = Transport::Raw(sock);
    let mut naks = 0u32;
    loop {
        if Instant::now() >= until {
            return Ok(None);
        }
        if naks > 1 {
            // A server that NAKs everything must not make us spin.
            tokio::time::sleep(Duration::from_millis(250 * u64::from(naks.min(8)))).await;
        }
        // INIT-REBOOT: ask for the remembered address, briefly.
        if let Some(ip) = reboot.take() {
            let req = id.message(
                MessageType::Request,
                new_xid(),
                Ipv4Addr::UNSPECIFIED,
                Some(ip),
                None,
            );
            let short = (Instant::now() + Duration::from_secs(2)).min(until);
            match exchange(&t, &req, &id.mac, short, None, |r| match r {
                Reply::Ack(l) if l.address == ip => Some(Outcome::Ack(l)),
                Reply::Nak { .. } => Some(Outcome::Nak),
                _ => None,
            })
            .await?
            {
                Some(Outcome::Ack(l)) => return Ok(Some(l)),
                Some(Outcome::Nak) => naks += 1,
                None => {}
            }
            continue;
        }
        // SELECTING: take the first valid offer.
        let xid = new_xid();
        let discover = id.message(
            MessageType::Discover,
            xid,
            Ipv4Addr::UNSPECIFIED,
            None,
            None,
        );
        let offer = exchange(&t, &discover, &id.mac, until, None, |r| match r {
            Reply::Offer { address, server } => Some((address, server)),
            _ => None,
        })
        .await?;
        let Some((address, server)) = offer else {
            return Ok(None);
        };
        // REQUESTING: same xid, name the chosen server so others withdraw.
        let req = id.message(
            MessageType::Request,
            xid,
            Ipv4Addr::UNSPECIFIED,
            Some(address),
            Some(server),
        );
        let answer = exchange(&t, &req, &id.mac, until, None, |r| match r {
            Reply::Ack(l) if l.server_id == server && l.address == address => Some(Outcome::Ack(l)),
            Reply::Nak { server: s } if s.is_none() || s == Some(server) => Some(Outcome::Nak),
            _ => None,
        })
        .await?;
        match answer {
            Some(Outcome::Ack(l)) => return Ok(Some(l)),
            Some(Outcome::Nak) => naks += 1,
            None => return Ok(None),
        }
    }
}

/// Result of a RENEWING or REBINDING exchange.
#[derive(Debug)]
pub enum Renewal {
    Renewed(Lease),
    Nak,
    NoAnswer,
}

/// One RENEWING (unicast to `lease.server_id`) or REBINDING (`broadcast`)
/// exchange from the bound address, retransmitting until `until`.
pub async fn renew(
    sock: &UdpSocket,
    id: &Identity,
    lease: &Lease,
    broadcast: bool,
    until: Instant,
) -> Result<Renewal> {
    let dst = if broadcast {
        Ipv4Addr::BROADCAST
    } else {
        lease.server_id
    };
    let t = Transport::Udp(sock, dst);
    // RFC 2131 4.4.5: ciaddr set, no requested-address or server id.
    let req = id.message(MessageType::Request, new_xid(), lease.address, None, None);
    // RFC 2131 suggests waiting half the remaining time, at least 60 s;
    // short test leases need the retry interval bounded instead.
    let cap = Some(Duration::from_secs(60));
    let r = exchange(&t, &req, &id.mac, until, cap, |r| match r {
        Reply::Ack(l) if l.address == lease.address => Some(Renewal::Renewed(l)),
        Reply::Nak { .. } => Some(Renewal::Nak),
        _ => None,
    })
    .await?;
    Ok(r.unwrap_or(Renewal::NoAnswer))
}

/// DHCPRELEASE, unicast to the server; fire and forget (RFC 2131 has no
/// reply to a release).
pub async fn release(sock: &UdpSocket, id: &Identity, lease: &Lease) -> Result<()> {
    let m = id.message(
        MessageType::Release,
        new_xid(),
        lease.address,
        None,
        Some(lease.server_id),
    );
    sock.send_to(&encode(&m)?, lease.server_id).await
}

/// Look up an interface's index and MAC inside `ns`, bringing it up if it
/// is down (nothing can be sent on a down link).
pub async fn link_info(ns: &NetNs, ifname: &str) -> Result<(u32, [u8; 6])> {
    let net = crate::netlink::Net::new(Some(ns), false)?;
    let link = net.link_by_name(ifname).await?.ok_or_else(|| {
        Error::NotFound(format!(
            "{ifname}: no such interface in {}",
            ns.path.display()
        ))
    })?;
    let mac: [u8; 6] = link
        .mac
        .as_slice()
        .try_into()
        .map_err(|_| Error::bad(ifname, "has no Ethernet address; DHCP needs one"))?;
    if !link.up {
        net.set_up(&link).await?;
    }
    Ok((link.index, mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(kind: MessageType, xid: u32, mac: &[u8; 6]) -> Message {
        let mut m = Message::default();
        m.set_opcode(Opcode::BootReply)
            .set_xid(xid)
            .set_chaddr(mac)
            .set_yiaddr(Ipv4Addr::new(10, 1, 0, 50));
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        m.opts_mut()
            .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 1, 0, 1)));
        m
    }

    #[test]
    fn classify_accepts_only_our_replies() {
        let mac = [2, 1, 2, 3, 4, 5];
        let ok = encode(&reply(MessageType::Offer, 7, &mac)).expect("enc");
        assert!(matches!(classify(&ok, 7, &mac), Some(Reply::Offer { .. })));
        assert_eq!(classify(&ok, 8, &mac), None, "wrong xid");
        assert_eq!(classify(&ok, 7, &[2, 9, 9, 9, 9, 9]), None, "wrong mac");
        for n in 0..ok.len().min(300) {
            let _ = classify(&ok[..n], 7, &mac);
        }
        assert_eq!(classify(&ok[..100], 7, &mac), None, "truncated");
        let mut req = reply(MessageType::Offer, 7, &mac);
        req.set_opcode(Opcode::BootRequest);
        assert_eq!(classify(&encode(&req).expect("enc"), 7, &mac), None);
        let nak = encode(&reply(MessageType::Nak, 7, &mac)).expect("enc");
        assert!(matches!(classify(&nak, 7, &mac), Some(Reply::Nak { .. })));
    }

    #[test]
    fn sanitize_drops_unknown_and_bad_length_options() {
        let mac = [2, 1, 2, 3, 4, 5];
        let mut ok = encode(&reply(MessageType::Offer, 7, &mac)).expect("enc");
        // Strip the end marker, then append: an unknown option that would
        // trip dhcproto (code 94 with a bad length), a short MTU, a
        // truncated option.
        assert_eq!(ok.pop(), Some(255));
        ok.extend_from_slice(&[94, 1, 0, 26, 1, 5, 82, 2, 1, 1, 255]);
        let clean = sanitize(&ok).expect("sanitized");
        assert!(!clean.windows(3).any(|w| w == [94, 1, 0]));
        assert!(matches!(classify(&ok, 7, &mac), Some(Reply::Offer { .. })));
        let mut truncated = ok.clone();
        truncated.truncate(truncated.len() - 4);
        truncated.extend_from_slice(&[3, 8, 1]);
        assert_eq!(sanitize(&truncated), None);
        // Regression (fuzzer): hlen beyond chaddr's 16 bytes.
        let mut long = ok.clone();
        long[2] = 46;
        assert_eq!(classify(&long, 7, &mac), None);
    }

    #[test]
    fn requests_carry_identity_and_parameter_list() {
        let opts = DhcpOptions {
            hostname: Some("web1".into()),
            ..Default::default()
        };
        let id = Identity::new([2, 0, 0, 0, 0, 9], &opts);
        let m = id.message(MessageType::Discover, 1, Ipv4Addr::UNSPECIFIED, None, None);
        assert_eq!(
            m.opts().get(OptionCode::Hostname),
            Some(&DhcpOption::Hostname("web1".into()))
        );
        assert_eq!(
            m.opts().get(OptionCode::ClientIdentifier),
            Some(&DhcpOption::ClientIdentifier(vec![1, 2, 0, 0, 0, 0, 9]))
        );
        match m.opts().get(OptionCode::ParameterRequestList) {
            Some(DhcpOption::ParameterRequestList(l)) => {
                assert!(l.contains(&OptionCode::ClasslessStaticRoute));
                assert!(l.contains(&OptionCode::InterfaceMtu));
            }
            other => panic!("no parameter list: {other:?}"),
        }
    }
}
