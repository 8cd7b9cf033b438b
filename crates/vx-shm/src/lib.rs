//! Shared-memory segments for decoded media.
//!
//! `vxd` writes each decoded file into one anonymous memfd ([`SegmentWriter`]),
//! then seals it against writing, growing and shrinking ([`Segment`]). A model
//! host maps it read-only ([`SegmentView`]): the fd it received with the job,
//! or else through `/proc/<vxd pid>/fd/<fd>`.
//! The memory belongs to no file system name, so it is released when the
//! daemon drops its [`Segment`] and every host has unmapped it, even when a
//! process is killed: nothing can leak into `/dev/shm`.
//!
//! The fd is close-on-exec, so hosts spawned later never inherit segments.
//!
//! vxd's decoder subprocess fills and seals a segment, then passes the fd to
//! vxd with its reply; vxd takes it with [`Segment::from_fd`], which checks
//! the seals, since the decoder is not trusted.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use memmap2::{Mmap, MmapMut};

#[derive(Debug, thiserror::Error)]
pub enum ShmError {
    #[error("cannot create shared memory segment: {0}")]
    Create(io::Error),
    #[error("cannot seal shared memory segment: {0}")]
    Seal(io::Error),
    #[error("cannot open shared memory segment {path}: {source}")]
    Open { path: String, source: io::Error },
    #[error("cannot map shared memory segment: {0}")]
    Map(io::Error),
    #[error("segment is {actual} bytes, expected {expected}")]
    SizeMismatch { expected: u64, actual: u64 },
    #[error("segment is not sealed against writes")]
    NotSealed,
    #[error("range {offset}+{len} lies outside the {size}-byte segment")]
    OutOfBounds { offset: u64, len: u64, size: u64 },
}

/// Prefix of every segment's memfd name, as seen in `/proc/<pid>/fd` links
/// (`/memfd:vx-media (deleted)`); tests count leaks by it.
pub const MEMFD_NAME: &str = "vx-media";

/// A segment being filled. Only the daemon holds one.
pub struct SegmentWriter {
    file: File,
    map: MmapMut,
    len: u64,
}

impl SegmentWriter {
    pub fn create(len: u64) -> Result<Self, ShmError> {
        let name = CString::new(MEMFD_NAME).expect("no NUL");
        // SAFETY: name is a valid C string; the returned fd is checked below.
        let fd = unsafe {
            libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        };
        if fd < 0 {
            return Err(ShmError::Create(io::Error::last_os_error()));
        }
        // SAFETY: fd was just created and is owned by nobody else.
        let file = unsafe { File::from_raw_fd(fd) };
        // mmap of zero bytes fails; an empty job still gets one byte.
        file.set_len(len.max(1)).map_err(ShmError::Create)?;
        // SAFETY: the memfd is private to this process until sealed.
        let map = unsafe { MmapMut::map_mut(&file) }.map_err(ShmError::Map)?;
        Ok(Self { file, map, len })
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.map[..self.len as usize]
    }

    /// Unmaps the writable view and seals the segment, so that no process,
    /// this one included, can change or resize it again.
    pub fn seal(self) -> Result<Segment, ShmError> {
        let Self { file, map, len } = self;
        drop(map); // F_SEAL_WRITE fails while a writable mapping exists
        let seals =
            libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
        // SAFETY: fcntl on an fd we own.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
            return Err(ShmError::Seal(io::Error::last_os_error()));
        }
        Ok(Segment { file, len })
    }
}

/// A sealed, immutable segment, owned by the daemon until every host is done.
pub struct Segment {
    file: File,
    len: u64,
}

impl Segment {
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Segment {
    /// Takes a segment that another process filled and passed over a socket,
    /// once it is checked to be sealed and `len` bytes long.
    pub fn from_fd(fd: OwnedFd, len: u64) -> Result<Self, ShmError> {
        let file = File::from(fd);
        check_sealed(&file, len)?;
        Ok(Self { file, len })
    }
}

/// A segment may be mapped only once nobody can change or resize it any
/// more, and when it has the announced size (one byte for an empty one).
fn check_sealed(file: &File, len: u64) -> Result<(), ShmError> {
    // SAFETY: fcntl on an fd the caller owns.
    let seals = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
    let needed = libc::F_SEAL_WRITE | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
    if seals < 0 || seals & needed != needed {
        return Err(ShmError::NotSealed);
    }
    let actual = file.metadata().map_err(ShmError::Map)?.len();
    if actual != len.max(1) {
        return Err(ShmError::SizeMismatch {
            expected: len.max(1),
            actual,
        });
    }
    Ok(())
}

/// A host's read-only mapping of a daemon's segment.
pub struct SegmentView {
    map: Mmap,
    len: u64,
}

impl SegmentView {
    /// Maps fd `fd` of process `pid` read-only, and checks that it is the
    /// sealed segment of `len` bytes the job announced.
    pub fn open(pid: u32, fd: RawFd, len: u64) -> Result<Self, ShmError> {
        let path = format!("/proc/{pid}/fd/{fd}");
        let file = OpenOptions::new()
            .read(true)
            .open(&path)
            .map_err(|source| ShmError::Open {
                path: path.clone(),
                source,
            })?;
        Self::from_fd(file.into(), len)
    }

    /// Maps a segment's fd received from the daemon read-only, with the same
    /// checks as [`open`](Self::open).
    pub fn from_fd(fd: OwnedFd, len: u64) -> Result<Self, ShmError> {
        let file = File::from(fd);
        check_sealed(&file, len)?;
        // SAFETY: the segment is sealed against writes and resizing, so the
        // mapping can neither change under us nor be truncated (no SIGBUS).
        let map = unsafe { Mmap::map(&file) }.map_err(ShmError::Map)?;
        Ok(Self { map, len })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.map[..self.len as usize]
    }

    /// The bytes `offset..offset + len`, or an error when the range does not fit.
    pub fn slice(&self, offset: u64, len: u64) -> Result<&[u8], ShmError> {
        let end = offset.checked_add(len).filter(|&end| end <= self.len);
        match end {
            Some(end) => Ok(&self.map[offset as usize..end as usize]),
            None => Err(ShmError::OutOfBounds {
                offset,
                len,
                size: self.len,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(bytes: &[u8]) -> Segment {
        let mut w = SegmentWriter::create(bytes.len() as u64).unwrap();
        w.bytes_mut().copy_from_slice(bytes);
        w.seal().unwrap()
    }

    #[test]
    fn view_sees_what_the_writer_wrote() {
        let seg = sealed(b"hello segment");
        let view = SegmentView::open(std::process::id(), seg.fd(), seg.len()).unwrap();
        assert_eq!(view.bytes(), b"hello segment");
        assert_eq!(view.slice(6, 7).unwrap(), b"segment");
    }

    #[test]
    fn sealed_segment_refuses_writes_even_through_a_writable_open() {
        let seg = sealed(b"fixed");
        let path = format!("/proc/self/fd/{}", seg.fd());
        let res = OpenOptions::new().write(true).open(&path).and_then(|f| {
            use std::io::Write;
            (&f).write_all(b"X")
        });
        assert!(res.is_err(), "write to a sealed memfd must fail");
        let res = OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(1));
        assert!(res.is_err(), "shrinking a sealed memfd must fail");
    }

    #[test]
    fn out_of_bounds_slice_is_an_error_not_a_panic() {
        let seg = sealed(&[0u8; 16]);
        let view = SegmentView::open(std::process::id(), seg.fd(), seg.len()).unwrap();
        assert!(matches!(
            view.slice(10, 7),
            Err(ShmError::OutOfBounds { .. })
        ));
        assert!(matches!(
            view.slice(u64::MAX, 2),
            Err(ShmError::OutOfBounds { .. })
        ));
    }

    #[test]
    fn wrong_announced_length_is_refused() {
        let seg = sealed(&[1u8; 32]);
        let res = SegmentView::open(std::process::id(), seg.fd(), 64);
        assert!(matches!(res, Err(ShmError::SizeMismatch { .. })));
    }

    #[test]
    fn a_passed_segment_is_taken_only_when_sealed() {
        let seg = sealed(b"passed along");
        let copy = seg.file.try_clone().unwrap().into();
        let got = Segment::from_fd(copy, 12).unwrap();
        let view = SegmentView::open(std::process::id(), got.fd(), got.len()).unwrap();
        assert_eq!(view.bytes(), b"passed along");
        let w = SegmentWriter::create(8).unwrap();
        let unsealed = w.file.try_clone().unwrap().into();
        assert!(matches!(
            Segment::from_fd(unsealed, 8),
            Err(ShmError::NotSealed)
        ));
    }

    #[test]
    fn unsealed_fd_is_refused() {
        let w = SegmentWriter::create(8).unwrap();
        let res = SegmentView::open(std::process::id(), w.file.as_raw_fd(), 8);
        assert!(matches!(res, Err(ShmError::NotSealed)));
    }

    /// Sealed against writes but not against shrinking, the owner could
    /// truncate it under the mapping: a SIGBUS in the host.
    #[test]
    fn a_segment_that_can_still_shrink_is_refused() {
        // SAFETY: plain syscalls on a fresh memfd that this test owns.
        let fd = unsafe {
            let fd = libc::memfd_create(c"vx-test".as_ptr(), libc::MFD_ALLOW_SEALING);
            assert!(fd >= 0);
            assert_eq!(libc::ftruncate(fd, 8), 0);
            let seals = libc::F_SEAL_WRITE | libc::F_SEAL_GROW;
            assert_eq!(libc::fcntl(fd, libc::F_ADD_SEALS, seals), 0);
            fd
        };
        let res = SegmentView::open(std::process::id(), fd, 8);
        // SAFETY: closing the fd made above.
        unsafe { libc::close(fd) };
        assert!(
            matches!(res, Err(ShmError::NotSealed)),
            "opened a shrinkable segment"
        );
    }
}
