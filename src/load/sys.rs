//! Every libc call of the load engine, each behind a safe function with its `SAFETY` note, so
//! the `unsafe` blocks of the client sit in one file. The callers (the HTTP/1.1 write path,
//! [`super::splice`]) keep the logic; this file only turns raw results into `io::Result`.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// `-1` → the thread's `errno`, anything else → the count.
fn check(r: isize) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// A new anonymous memory file (`memfd_create(2)`, close-on-exec); None when the kernel
/// refuses one.
pub fn memfd(name: &std::ffi::CStr) -> Option<std::fs::File> {
    // SAFETY: memfd_create takes a NUL-terminated name and returns a new fd or -1.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    Some(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// `send(2)` with `MSG_MORE` (more data follows: the kernel may hold this segment back to
/// fill a packet) and `MSG_NOSIGNAL` (a closed peer is an `EPIPE`, not a signal).
pub fn send_more(sock: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: the pointer and length describe a live slice; an invalid fd is an EBADF.
    check(unsafe {
        libc::send(
            sock,
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_MORE | libc::MSG_NOSIGNAL,
        )
    })
}

/// `sendfile(2)` of up to `len` bytes of `file` from `*off`, which the kernel advances.
pub fn sendfile(sock: RawFd, file: RawFd, off: &mut libc::off_t, len: usize) -> io::Result<usize> {
    // SAFETY: `off` is a live off_t for the kernel to update; invalid descriptors are EBADF.
    check(unsafe { libc::sendfile(sock, file, off, len) })
}

/// A non-blocking, close-on-exec pipe: (read end, write end).
pub fn pipe() -> Option<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return None;
    }
    // SAFETY: pipe2 succeeded, so both descriptors are fresh and owned by nobody else.
    Some(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Ask for a pipe of `len` bytes (`F_SETPIPE_SZ`); the size the kernel gave, or an error.
pub fn set_pipe_size(fd: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: F_SETPIPE_SZ takes an int argument; a non-pipe fd is an EBADF/EINVAL.
    check(unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, len as libc::c_int) } as isize)
}

/// `tee(2)`, non-blocking: duplicate up to `len` bytes' page references from pipe `from`
/// into pipe `to` without consuming them.
pub fn tee(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: plain descriptors and a length; tee copies page references, not bytes.
    check(unsafe { libc::tee(from, to, len, libc::SPLICE_F_NONBLOCK) })
}

/// `splice(2)`, non-blocking, of up to `len` bytes from a pipe to a socket (both without
/// offsets, as pipes and sockets require).
pub fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: null offsets are required for pipes and sockets; the kernel checks the fds.
    check(unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_NONBLOCK,
        )
    })
}

/// `read(2)` into `buf`.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: reading into a live buffer of the given length.
    check(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit (capped at 1 << 20: an unlimited hard
/// limit cannot be a soft one). Returns the soft limit now in force.
pub fn raise_nofile() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let want = lim.rlim_max.min(1 << 20);
    if lim.rlim_cur < want {
        let new = libc::rlimit {
            rlim_cur: want,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
            return Ok(lim.rlim_cur);
        }
        return Ok(want);
    }
    Ok(lim.rlim_cur)
}
