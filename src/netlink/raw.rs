//! A plain, blocking netlink socket for the families rtnetlink does not
//! speak (generic netlink for WireGuard, nfnetlink for nftables).
use netlink_sys::Socket;
use std::io;
use std::os::fd::AsRawFd;

/// A socket of `protocol`, bound and connected to the kernel, whose reads
/// give up after 2 s: the kernel answers at once or not at all, and an
/// attach or the agent must never hang on it.
pub fn socket(protocol: isize) -> io::Result<Socket> {
    let mut sock = Socket::new(protocol)?;
    sock.bind_auto()?;
    sock.connect(&netlink_sys::SocketAddr::new(0, 0))?;
    let tv = libc::timeval {
        tv_sec: 2,
        tv_usec: 0,
    };
    // SAFETY: a valid fd and a timeval of the size we pass.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sock)
}
