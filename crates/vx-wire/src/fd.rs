//! One file descriptor riding along with a frame (`SCM_RIGHTS`).
//!
//! The sender attaches the fd to the first bytes of the frame; the kernel
//! installs a copy in the receiver when those bytes are read with `recvmsg`.
//! [`FdReader`] reads every byte that way and queues the fds that came, so a
//! buffered reader on top of it loses none.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use serde::Serialize;

use crate::{WireError, encode};

/// Fds accepted in one `recvmsg`; more are closed by the kernel (`MSG_CTRUNC`).
const MAX_FDS: usize = 4;

/// Writes `msg` as one frame on the unix socket `sock`, with `fd` attached.
pub fn write_frame_with_fd<T: Serialize>(
    sock: BorrowedFd<'_>,
    msg: &T,
    fd: BorrowedFd<'_>,
) -> Result<(), WireError> {
    let frame = encode(msg)?;
    let raw = fd.as_raw_fd();
    let mut control = vec![0u8; cmsg_space(1)];
    let mut iov = libc::iovec {
        iov_base: frame.as_ptr() as *mut _,
        iov_len: frame.len(),
    };
    // SAFETY: zeroed msghdr is valid; every pointer below outlives the call.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = control.as_mut_ptr().cast();
    hdr.msg_controllen = control.len() as _;
    // SAFETY: the control buffer holds CMSG_SPACE(one int), so the first
    // header and its data fit.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&hdr);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::c_int>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>(), raw);
    }
    let sent = loop {
        // SAFETY: hdr is fully initialised above.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &hdr, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e.into());
        }
    };
    // The fd went with the first bytes; the rest is plain data.
    let mut rest = &frame[sent..];
    while !rest.is_empty() {
        // SAFETY: writes from a live slice.
        let n = unsafe {
            libc::send(
                sock.as_raw_fd(),
                rest.as_ptr().cast(),
                rest.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        rest = &rest[n as usize..];
    }
    Ok(())
}

fn cmsg_space(fds: usize) -> usize {
    // SAFETY: CMSG_SPACE is arithmetic.
    unsafe { libc::CMSG_SPACE((fds * size_of::<libc::c_int>()) as u32) as usize }
}

/// Reads a unix socket with `recvmsg`, keeping the fds that arrive
/// (close-on-exec) until [`take_fd`](Self::take_fd) claims them, oldest first.
pub struct FdReader<'a> {
    sock: BorrowedFd<'a>,
    fds: VecDeque<OwnedFd>,
}

impl<'a> FdReader<'a> {
    pub fn new(sock: BorrowedFd<'a>) -> Self {
        Self {
            sock,
            fds: VecDeque::new(),
        }
    }

    /// The oldest fd received and not yet taken.
    pub fn take_fd(&mut self) -> Option<OwnedFd> {
        self.fds.pop_front()
    }
}

impl Read for FdReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // u64 elements keep the buffer aligned for cmsghdr.
        let mut control = [0u64; 8];
        debug_assert!(size_of_val(&control) >= cmsg_space(MAX_FDS));
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: zeroed msghdr is valid; every pointer outlives the call.
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        hdr.msg_iov = &mut iov;
        hdr.msg_iovlen = 1;
        hdr.msg_control = control.as_mut_ptr().cast();
        hdr.msg_controllen = cmsg_space(MAX_FDS) as _;
        // SAFETY: as above.
        let n = unsafe { libc::recvmsg(self.sock.as_raw_fd(), &mut hdr, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel filled `hdr` and the control buffer; the CMSG
        // macros walk only what it reported.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&hdr);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(c).cast::<libc::c_int>();
                    let bytes = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                    for i in 0..bytes / size_of::<libc::c_int>() {
                        let fd = std::ptr::read_unaligned(data.add(i));
                        self.fds.push_back(OwnedFd::from_raw_fd(fd));
                    }
                }
                c = libc::CMSG_NXTHDR(&hdr, c);
            }
        }
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufReader, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    use super::*;
    use crate::{read_frame, write_frame};

    #[test]
    fn an_fd_arrives_with_its_frame_and_plain_frames_carry_none() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut file = tempfile_in_memory();
        file.write_all(b"shared").unwrap();
        write_frame(&mut &a, &"plain".to_string()).unwrap();
        write_frame_with_fd(a.as_fd(), &"with fd".to_string(), file.as_fd()).unwrap();
        let mut r = BufReader::new(FdReader::new(b.as_fd()));
        assert_eq!(read_frame::<_, String>(&mut r).unwrap(), "plain");
        assert_eq!(read_frame::<_, String>(&mut r).unwrap(), "with fd");
        let got = r.get_mut().take_fd().expect("an fd");
        assert!(r.get_mut().take_fd().is_none());
        let mut copy = std::fs::File::from(got);
        let mut s = String::new();
        std::io::Seek::rewind(&mut copy).unwrap();
        copy.read_to_string(&mut s).unwrap();
        assert_eq!(s, "shared");
    }

    fn tempfile_in_memory() -> std::fs::File {
        // SAFETY: memfd_create with a valid C string.
        let fd = unsafe { libc::memfd_create(c"vx-wire-test".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: a fresh fd we own.
        unsafe { std::fs::File::from_raw_fd(fd) }
    }
}
