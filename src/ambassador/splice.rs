//! Moving bytes one way between two TCP sockets.
//!
//! Small bursts (up to 4 KiB) take one recv and one send through a stack
//! buffer: fewer calls than splice for request/response traffic. Anything
//! larger goes through splice(2): socket → pipe → socket, so bulk payload
//! pages never cross into user space. The pipe is borrowed from the pool when the
//! source turns readable and returned as soon as it is empty again, so an
//! idle connection holds no pipe. Where splice is refused (or the pool is
//! exhausted) the same loop copies through a short-lived buffer.
use super::pipe::{POOL, Pipe};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Set once splice has been refused with an error meaning "not supported".
static NO_SPLICE: AtomicBool = AtomicBool::new(false);

const COPY_BUF: usize = 16 * 1024;

/// Where a direction reports its progress.
pub struct Tally<'a> {
    /// Bytes moved, summed per listener for metrics.
    pub bytes: &'a AtomicU64,
    /// Last activity on the connection (ms, `log::now_ms`), for idle timeout.
    pub last: &'a AtomicU64,
}

impl Tally<'_> {
    fn add(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        self.last.store(super::log::now_ms(), Ordering::Relaxed);
    }
}

fn splice(fd_in: RawFd, fd_out: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: plain syscall on fds borrowed for the duration of the call;
    // null offsets mean "use and advance the file position", as for sockets.
    let n = unsafe {
        libc::splice(
            fd_in,
            std::ptr::null_mut(),
            fd_out,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP)
    )
}

/// Copy `src` → `dst` until `src` reaches EOF, then half-close `dst`.
pub async fn pump(src: &TcpStream, dst: &TcpStream, tally: Tally<'_>) -> io::Result<()> {
    loop {
        src.readable().await?;
        // Small messages (requests, replies, handshakes) take one recv and
        // one send; splicing them would take three calls and a pipe. Only a
        // burst that fills the small buffer goes on to splice.
        match small_step(src, dst)? {
            Small::Eof => {
                shutdown_write(dst);
                return Ok(());
            }
            Small::Nothing => continue,
            Small::Moved { n, drained, rest } => {
                if !rest.is_empty() {
                    write_all(dst, &rest).await?;
                }
                tally.add(n);
                if drained {
                    continue;
                }
            }
        }
        let done = if NO_SPLICE.load(Ordering::Relaxed) {
            copy_burst(src, dst, &tally).await?
        } else if let Some(pipe) = POOL.get() {
            match splice_burst(src, dst, pipe, &tally).await {
                Err(e) if unsupported(&e) => {
                    NO_SPLICE.store(true, Ordering::Relaxed);
                    super::log::warn("splice refused, copying through buffers", &[("err", &e)]);
                    continue;
                }
                r => r?,
            }
        } else {
            copy_burst(src, dst, &tally).await?
        };
        if done {
            // Half-close: the peer sees EOF, the other direction keeps going.
            shutdown_write(dst);
            return Ok(());
        }
    }
}

/// Bytes read by one small step; larger bursts continue with splice.
const SMALL: usize = 4096;

enum Small {
    Eof,
    /// Spurious wake-up: nothing to read.
    Nothing,
    /// `n` bytes read; `rest` is what `dst` could not take yet. `drained`
    /// means the read came up short, so the socket is empty for now.
    Moved {
        n: usize,
        drained: bool,
        rest: Vec<u8>,
    },
}

/// One recv into a stack buffer and a send of it. Synchronous on purpose:
/// the 4 KiB buffer lives on the thread's stack, never in the connection's
/// future, so idle connections stay small.
fn small_step(src: &TcpStream, dst: &TcpStream) -> io::Result<Small> {
    let mut buf = [0u8; SMALL];
    let mut got = 0usize;
    let fd = src.as_raw_fd();
    let r = src.try_io(Interest::READABLE, || {
        // SAFETY: recv into a buffer we own, length within it.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), SMALL, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        got = n as usize;
        if got > 0 && got < SMALL {
            // A short TCP read means the receive queue is empty. Reporting
            // WouldBlock here lets tokio clear readiness safely (it keeps it
            // if an event arrived meanwhile), saving a recv that would fail.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(got)
    });
    let drained = match r {
        Ok(0) => return Ok(Small::Eof),
        Ok(_) => false,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            if got == 0 {
                return Ok(Small::Nothing);
            }
            true
        }
        Err(e) => return Err(e),
    };
    let mut off = 0;
    while off < got {
        match dst.try_write(&buf[off..got]) {
            Ok(m) => off += m,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(Small::Moved {
        n: got,
        drained,
        rest: buf[off..got].to_vec(),
    })
}

async fn write_all(dst: &TcpStream, mut b: &[u8]) -> io::Result<()> {
    while !b.is_empty() {
        match dst.try_write(b) {
            Ok(m) => b = &b[m..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => dst.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Splice while `src` has data. Returns true at EOF. The pipe goes back to
/// the pool only when empty; on error it is dropped (closed) instead.
async fn splice_burst(
    src: &TcpStream,
    dst: &TcpStream,
    pipe: Pipe,
    tally: &Tally<'_>,
) -> io::Result<bool> {
    let (sfd, dfd) = (src.as_raw_fd(), dst.as_raw_fd());
    loop {
        let n = match src.try_io(Interest::READABLE, || {
            splice(sfd, pipe.w.as_raw_fd(), pipe.cap)
        }) {
            Ok(0) => {
                POOL.put(pipe);
                return Ok(true);
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                POOL.put(pipe);
                return Ok(false);
            }
            Err(e) => {
                // Nothing entered the pipe, so it is still clean.
                POOL.put(pipe);
                return Err(e);
            }
        };
        let mut left = n;
        while left > 0 {
            match dst.try_io(Interest::WRITABLE, || splice(pipe.r.as_raw_fd(), dfd, left)) {
                Ok(m) => left -= m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => dst.writable().await?,
                Err(e) => return Err(e),
            }
        }
        tally.add(n);
    }
}

/// The buffered fallback: same contract as `splice_burst`; the buffer lives
/// only for the burst.
async fn copy_burst(src: &TcpStream, dst: &TcpStream, tally: &Tally<'_>) -> io::Result<bool> {
    let mut buf = vec![0u8; COPY_BUF];
    loop {
        let n = match src.try_read(&mut buf) {
            Ok(0) => return Ok(true),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        };
        let mut off = 0;
        while off < n {
            match dst.try_write(&buf[off..n]) {
                Ok(m) => off += m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => dst.writable().await?,
                Err(e) => return Err(e),
            }
        }
        tally.add(n);
    }
}

fn shutdown_write(s: &TcpStream) {
    // ENOTCONN after the peer reset is harmless: the close that follows
    // reports the end either way.
    let _ = socket2::SockRef::from(s).shutdown(std::net::Shutdown::Write);
}

/// Make the close of `s` send RST: used when the other side failed, so the
/// client sees an abort rather than a clean EOF that would look like success.
pub fn abort_on_close(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).set_linger(Some(std::time::Duration::ZERO));
}
