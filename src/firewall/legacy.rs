//! Legacy (x_tables) iptables read without the iptables binary: is the
//! filter table's FORWARD policy DROP? Only for the case where iptables
//! is missing or fails: with it, `iptables -S` answers (see the parent
//! module). The kernel's own interface for this is two getsockopts on a
//! raw socket, the ones iptables-legacy itself makes; ip6tables' are
//! the same two on an AF_INET6 socket (`ip6t_getinfo` and
//! `ip6t_get_entries` are laid out as IPv4's, only the entry's address
//! part is longer).

/// `IPT_SO_GET_INFO` / `IPT_SO_GET_ENTRIES` (IPT_BASE_CTL 64).
const IPT_SO_GET_INFO: libc::c_int = 64;
const IPT_SO_GET_ENTRIES: libc::c_int = 65;
/// `struct ipt_getinfo`: name[32], valid_hooks, hook_entry[5],
/// underflow[5], num_entries, size (all u32).
const INFO_LEN: usize = 84;
const UNDERFLOW_FORWARD: usize = 32 + 4 + 20 + 4 * 2; // NF_INET_FORWARD = 2
const INFO_SIZE: usize = 80;
/// `struct ipt_get_entries`: name[32], size, then the entries, which
/// hold u64 counters and so start 8-aligned.
const ENTRIES_HEAD: usize = 40;
/// In `struct ipt_entry`: target_offset (after the 84-byte ipt_ip and
/// the u32 nfcache). The standard target's verdict follows its 32-byte
/// `xt_entry_target` header; DROP is -NF_DROP-1 = -1.
const TARGET_OFFSET_AT: usize = 88;
/// In `struct ip6t_entry`: after the ip6t_ip6 (four in6_addr, four
/// IFNAMSIZ arrays, u16 proto, three u8: 133 bytes padded to 136) and
/// the u32 nfcache.
const TARGET_OFFSET_AT6: usize = 140;
const VERDICT_IN_TARGET: usize = 32;

/// One family's x_tables: where the kernel lists its tables, the socket
/// to ask on, and where an entry's target_offset is.
struct Xt {
    names: &'static str,
    domain: libc::c_int,
    level: libc::c_int,
    target_offset_at: usize,
}

const V4: Xt = Xt {
    names: "/proc/net/ip_tables_names",
    domain: libc::AF_INET,
    level: libc::IPPROTO_IP,
    target_offset_at: TARGET_OFFSET_AT,
};

/// IP6T_SO_GET_INFO/ENTRIES have the IPv4 numbers (IP6T_BASE_CTL 64).
const V6: Xt = Xt {
    names: "/proc/net/ip6_tables_names",
    domain: libc::AF_INET6,
    level: libc::IPPROTO_IPV6,
    target_offset_at: TARGET_OFFSET_AT6,
};

/// True when the legacy filter table exists and its FORWARD policy is DROP.
pub fn forward_drops() -> bool {
    V4.forward_drops()
}

/// The same for ip6tables-legacy.
pub fn forward_drops6() -> bool {
    V6.forward_drops()
}

impl Xt {
    fn forward_drops(&self) -> bool {
        // Asking about a table that does not exist yet would create it
        // (and make iptables-nft warn about legacy tables from then on):
        // only look when it is already there.
        let present =
            std::fs::read_to_string(self.names).is_ok_and(|t| t.lines().any(|l| l == "filter"));
        present && policy_verdict(self) == Some(-1)
    }
}

fn policy_verdict(xt: &Xt) -> Option<i32> {
    // SAFETY: plain socket(2); the fd is owned below.
    let raw = unsafe {
        libc::socket(
            xt.domain,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_RAW,
        )
    };
    if raw < 0 {
        return None;
    }
    // SAFETY: raw is a fresh fd we own.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    let get = |opt, buf: &mut [u8]| {
        let mut len = buf.len() as libc::socklen_t;
        // SAFETY: buf is valid for len bytes.
        let rc = unsafe {
            libc::getsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                xt.level,
                opt,
                buf.as_mut_ptr().cast(),
                &mut len,
            )
        };
        rc == 0
    };
    let u32_at =
        |b: &[u8], at: usize| Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?));

    let mut info = [0u8; INFO_LEN];
    info[..6].copy_from_slice(b"filter");
    if !get(IPT_SO_GET_INFO, &mut info) {
        return None;
    }
    let underflow = u32_at(&info, UNDERFLOW_FORWARD)? as usize;
    let size = u32_at(&info, INFO_SIZE)? as usize;
    // The kernel wants exactly header + size (a rule added in between
    // makes it refuse; then we simply do not know).
    let mut entries = vec![0u8; ENTRIES_HEAD + size];
    entries[..6].copy_from_slice(b"filter");
    entries[32..36].copy_from_slice(&(size as u32).to_ne_bytes());
    if !get(IPT_SO_GET_ENTRIES, &mut entries) {
        return None;
    }
    let entry = ENTRIES_HEAD + underflow;
    let at = entry + xt.target_offset_at;
    let target = u16::from_ne_bytes(entries.get(at..at + 2)?.try_into().ok()?) as usize;
    let v = entry + target + VERDICT_IN_TARGET;
    Some(i32::from_ne_bytes(entries.get(v..v + 4)?.try_into().ok()?))
}
