//! Socket and process settings that std and mio do not offer: the listen backlog, a reset on
//! close (SO_LINGER 0), the descriptor limit, and a stdout that can be written without
//! hanging on a reader that stopped reading (a non-blocking descriptor of its own, and a wait
//! for room with a timeout).

use std::fs::{File, OpenOptions};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// Pending connections the kernel may queue for us (capped by net.core.somaxconn): a burst of
/// clients must not wait for SYN retransmissions.
pub const BACKLOG: i32 = 4096;

/// Binds a non-blocking listener with a large backlog; with `reuse_port`, other processes
/// may bind the same port and the kernel spreads new connections over them.
pub fn listen(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    if reuse_port {
        sock.set_reuse_port(true)?;
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(BACKLOG)?;
    Ok(TcpListener::from_std(sock.into()))
}

/// Makes the coming close send RST instead of FIN, as a reset peer's partner should see.
pub fn reset_on_close(stream: &TcpStream) {
    // If this fails the close sends FIN instead; the peer still learns the connection is gone.
    let _ = SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// Raises the soft descriptor limit to the hard limit; returns the limit now in force.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and reads nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    Ok(lim.rlim_cur)
}

/// True for accept errors that mean "out of descriptors or memory": retrying at once would spin.
pub fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

/// How a descriptor can be written without blocking for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writable {
    /// Non-blocking: a full pipe or terminal says `WouldBlock`.
    NonBlocking,
    /// A regular file: writes never wait for a reader.
    File,
    /// Anything else, blocking: wait for room with [`wait_writable`], then write at most
    /// [`PIPE_BUF`] bytes, which a pipe that has room takes without blocking.
    Blocking,
}

/// The most bytes a pipe that polls writable takes without blocking (POSIX's PIPE_BUF).
pub const PIPE_BUF: usize = 4096;

/// A descriptor of the file behind `fd` (stdout) for writes that must never hang tcpspy.
///
/// A pipe or a terminal is opened anew through /proc/self/fd, in non-blocking mode: that
/// gives a file description of our own, so O_NONBLOCK reaches neither the shell sharing the
/// terminal nor the other writers of the pipe. Anything else (a file, a socket, or a reopen
/// that failed) gets a duplicate of `fd`.
pub fn writable_copy(fd: BorrowedFd<'_>) -> io::Result<(File, Writable)> {
    let dup = File::from(fd.try_clone_to_owned()?);
    let meta = dup.metadata()?;
    let kind = meta.file_type();
    if kind.is_file() {
        return Ok((dup, Writable::File));
    }
    if kind.is_fifo() || kind.is_char_device() {
        let reopened = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        if let Ok(f) = reopened
            && let Ok(m) = f.metadata()
            && (m.dev(), m.ino(), m.rdev()) == (meta.dev(), meta.ino(), meta.rdev())
        {
            return Ok((f, Writable::NonBlocking));
        }
    }
    Ok((dup, Writable::Blocking))
}

/// Waits up to `timeout` until `fd` can take bytes (or has an error to report); returns
/// whether it can.
pub fn wait_writable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
    // SAFETY: poll reads and writes only the one pollfd we pass.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::Interrupted => Ok(false),
            _ => Err(e),
        };
    }
    Ok(n > 0)
}

/// A pipe for splice(2): bytes go socket -> pipe -> socket inside the kernel, never copied
/// through user space.
pub struct Pipe {
    read: std::os::fd::OwnedFd,
    write: std::os::fd::OwnedFd,
}

impl Pipe {
    /// A non-blocking pipe holding up to `size` bytes (if the kernel allows that much).
    pub fn new(size: usize) -> io::Result<Pipe> {
        use std::os::fd::FromRawFd;
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into the array we pass.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned by nobody else.
        let pipe = unsafe {
            Pipe {
                read: std::os::fd::OwnedFd::from_raw_fd(fds[0]),
                write: std::os::fd::OwnedFd::from_raw_fd(fds[1]),
            }
        };
        // A bigger pipe means fewer syscalls per byte; if refused, the default still works.
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            libc::fcntl(
                pipe.write.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                size as libc::c_int,
            );
        }
        Ok(pipe)
    }
}

/// Moves up to `max` bytes from `from` to `to` with splice(2), without blocking on the pipe.
fn splice(from: i32, to: i32, max: usize) -> io::Result<usize> {
    // SAFETY: splice only reads and writes the descriptors it is given.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            max,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Moves up to `max` bytes from a socket into `pipe`.
pub fn splice_in(sock: &impl AsRawFd, pipe: &Pipe, max: usize) -> io::Result<usize> {
    splice(sock.as_raw_fd(), pipe.write.as_raw_fd(), max)
}

/// Moves up to `max` bytes from `pipe` to a socket.
pub fn splice_out(pipe: &Pipe, sock: &impl AsRawFd, max: usize) -> io::Result<usize> {
    splice(pipe.read.as_raw_fd(), sock.as_raw_fd(), max)
}

/// Drops the next `n` bytes of a TCP socket's receive queue without copying them
/// (recv(2) with MSG_TRUNC, which Linux honours on TCP sockets): the bytes a peek showed and
/// the destination took.
pub fn discard(sock: &impl AsRawFd, n: usize) -> io::Result<usize> {
    loop {
        // SAFETY: with MSG_TRUNC and a null buffer the kernel copies nothing; it only reads
        // the descriptor.
        let r = unsafe {
            libc::recv(
                sock.as_raw_fd(),
                std::ptr::null_mut(),
                n,
                libc::MSG_TRUNC | libc::MSG_DONTWAIT,
            )
        };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Bytes in a TCP socket's receive queue (ioctl FIONREAD): what a stage holding bytes in the
/// kernel (latency) learns without reading them.
pub fn available(sock: &impl AsRawFd) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which points at `n`.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::FIONREAD, &mut n) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

impl Pipe {
    /// Writes `bytes` into the pipe with write(2): how a stream that is not a socket (the
    /// simulation's fakes, a scripted peer) fills a pipe it was handed for splicing.
    pub fn fill(&self, bytes: &[u8]) -> io::Result<usize> {
        // SAFETY: write(2) reads at most `bytes.len()` bytes from the slice.
        let n = unsafe { libc::write(self.write.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Reads from the pipe with read(2): the other half of [`Pipe::fill`].
    pub fn drain(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: read(2) writes at most `buf.len()` bytes into the slice.
        let n = unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

/// What the kernel knows of a TCP connection (Linux TCP_INFO), for the end of a hex dump.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpStats {
    /// Smoothed round-trip time and its variation, microseconds.
    pub rtt_us: u32,
    pub rttvar_us: u32,
    /// Segments retransmitted over the connection's life.
    pub retransmits: u32,
    /// Segments currently considered lost.
    pub lost: u32,
    /// Congestion window, segments.
    pub cwnd: u32,
}

/// Reads TCP_INFO from a socket; `None` if the kernel will not say.
pub fn tcp_stats(sock: &impl std::os::fd::AsRawFd) -> Option<TcpStats> {
    // SAFETY: tcp_info is plain integers; zeroed is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `info`.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(TcpStats {
        rtt_us: info.tcpi_rtt,
        rttvar_us: info.tcpi_rttvar,
        retransmits: info.tcpi_total_retrans,
        lost: info.tcpi_lost,
        cwnd: info.tcpi_snd_cwnd,
    })
}

/// Makes writes past RLIMIT_FSIZE fail with EFBIG instead of killing the process: a log file
/// hitting its size limit must not stop the relay.
pub fn ignore_file_size_signal() {
    // SAFETY: setting a signal's disposition to SIG_IGN involves no handler code.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// Descriptors kept aside for everything but relayed sockets and log files: stdio, the poll,
/// the waker, the signal pipe, listeners, and files opened now and then.
pub const RESERVED_FDS: u64 = 32;

/// How the descriptor limit is shared: log files kept open, and connections relayed at once
/// (two sockets each), after `fixed` descriptors (listeners, pipes). `None` if the limit leaves
/// no room for a single connection.
pub fn fd_budget(
    limit: u64,
    fixed: u64,
    logging: bool,
    max_open_files: Option<usize>,
) -> Option<(usize, usize)> {
    let files = match (logging, max_open_files) {
        (false, _) => 0,
        (true, Some(n)) => n as u64,
        (true, None) => (limit / 8).clamp(4, 1024),
    };
    let left = limit.checked_sub(RESERVED_FDS + fixed + files)?;
    let conns = left / 2;
    (conns > 0).then_some((files.max(1) as usize, conns as usize))
}

/// The destination a connection had before the firewall redirected it to us (iptables
/// `REDIRECT`, nftables `redirect`): SO_ORIGINAL_DST for IPv4, IP6T_SO_ORIGINAL_DST for IPv6
/// (both 80, at SOL_IP and SOL_IPV6). Not redirected, the kernel answers ENOENT.
pub fn original_dst<S: std::os::fd::AsRawFd>(sock: &S) -> io::Result<std::net::SocketAddr> {
    const SO_ORIGINAL_DST: libc::c_int = 80;
    let fd = sock.as_raw_fd();
    // SAFETY: sockaddr_in6 is plain data; zeroes are a valid value.
    let mut storage: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::sockaddr_in6>();
    for level in [libc::SOL_IP, libc::SOL_IPV6] {
        let mut len = size as libc::socklen_t;
        // SAFETY: the buffer is a sockaddr_in6, big enough for either family, and len says
        // so; the kernel writes at most len bytes.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                level,
                SO_ORIGINAL_DST,
                (&raw mut storage).cast::<libc::c_void>(),
                &mut len,
            )
        };
        if rc != 0 {
            continue;
        }
        match libc::c_int::from(storage.sin6_family) {
            libc::AF_INET => {
                // SAFETY: the kernel wrote a sockaddr_in, which fits in the sockaddr_in6.
                let v4: libc::sockaddr_in = unsafe { std::ptr::read((&raw const storage).cast()) };
                let ip = std::net::Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
                return Ok(std::net::SocketAddr::new(
                    ip.into(),
                    u16::from_be(v4.sin_port),
                ));
            }
            libc::AF_INET6 => {
                let ip = std::net::Ipv6Addr::from(storage.sin6_addr.s6_addr);
                let ip = ip
                    .to_ipv4_mapped()
                    .map_or(std::net::IpAddr::V6(ip), Into::into);
                return Ok(std::net::SocketAddr::new(
                    ip,
                    u16::from_be(storage.sin6_port),
                ));
            }
            _ => {}
        }
    }
    Err(io::Error::last_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget() {
        assert_eq!(fd_budget(20_000, 1, true, None), Some((1024, 9471)));
        assert_eq!(fd_budget(20_000, 1, false, None), Some((1, 9983)));
        assert_eq!(fd_budget(64, 1, true, None), Some((8, 11)));
        assert_eq!(fd_budget(64, 1, true, Some(30)), None);
        assert_eq!(fd_budget(10, 1, true, None), None);
    }
}
