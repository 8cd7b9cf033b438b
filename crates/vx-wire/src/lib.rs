//! Framing for every vx socket: `MAGIC`, a little-endian `u32` payload length,
//! then the payload encoded with bincode (standard config).
//!
//! Frames are capped at [`MAX_FRAME_LEN`] so that a confused or hostile peer
//! cannot make the reader allocate without bound. Reading distinguishes a clean
//! close between frames ([`WireError::Closed`]) from one in the middle of a
//! frame ([`WireError::Truncated`]).
//!
//! On a unix socket a frame can carry one file descriptor ([`write_frame_with_fd`],
//! read back through [`FdReader`]): vxd hands each job's shared memory to a
//! confined host that may not open `/proc/<vxd>/fd/<n>`.

use std::io::{self, Read, Write};

use serde::{Serialize, de::DeserializeOwned};

/// Four bytes that open every frame; a mismatch means the peer is not vx.
pub const MAGIC: [u8; 4] = *b"vx\x00\x01";
/// Largest payload accepted or sent (16 MiB). Pixels travel in shared memory,
/// so real messages are far smaller.
pub const MAX_FRAME_LEN: u32 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("peer closed the connection")]
    Closed,
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("bad frame magic {0:02x?}: the peer does not speak the vx wire format")]
    BadMagic([u8; 4]),
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    Oversize { len: u64, max: u32 },
    #[error("cannot decode frame: {0}")]
    Decode(String),
    #[error("cannot encode frame: {0}")]
    Encode(String),
    #[error("socket i/o: {0}")]
    Io(#[from] io::Error),
}

/// Decoding may claim no more memory than a frame can hold: a length field
/// inside a small frame can say anything (found by fuzzing).
fn config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<{ MAX_FRAME_LEN as usize }>,
> {
    bincode::config::standard().with_limit::<{ MAX_FRAME_LEN as usize }>()
}

/// Encodes `msg` as one frame into a fresh buffer.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, WireError> {
    let payload = bincode::serde::encode_to_vec(msg, config())
        .map_err(|e| WireError::Encode(e.to_string()))?;
    if payload.len() as u64 > MAX_FRAME_LEN as u64 {
        return Err(WireError::Oversize {
            len: payload.len() as u64,
            max: MAX_FRAME_LEN,
        });
    }
    let mut frame = Vec::with_capacity(8 + payload.len());
    frame.extend_from_slice(&MAGIC);
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// Writes `msg` as one frame and flushes, so the peer sees it at once.
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, msg: &T) -> Result<(), WireError> {
    let frame = encode(msg)?;
    w.write_all(&frame)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame and decodes it. Trailing bytes inside a frame are an error.
pub fn read_frame<R: Read, T: DeserializeOwned>(r: &mut R) -> Result<T, WireError> {
    let mut header = [0u8; 8];
    read_header(r, &mut header)?;
    let magic: [u8; 4] = header[..4].try_into().expect("4 bytes");
    if magic != MAGIC {
        return Err(WireError::BadMagic(magic));
    }
    let len = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    if len > MAX_FRAME_LEN {
        return Err(WireError::Oversize {
            len: len as u64,
            max: MAX_FRAME_LEN,
        });
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload).map_err(eof_is_truncation)?;
    let (msg, used) = bincode::serde::decode_from_slice(&payload, config())
        .map_err(|e| WireError::Decode(e.to_string()))?;
    if used != payload.len() {
        return Err(WireError::Decode(format!(
            "{} trailing bytes",
            payload.len() - used
        )));
    }
    Ok(msg)
}

/// Fills the header; EOF before the first byte is a clean close.
fn read_header<R: Read>(r: &mut R, buf: &mut [u8; 8]) -> Result<(), WireError> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Err(WireError::Closed),
            Ok(0) => return Err(WireError::Truncated),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn eof_is_truncation(e: io::Error) -> WireError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        WireError::Truncated
    } else {
        e.into()
    }
}

mod fd;
pub use fd::{FdReader, write_frame_with_fd};

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use serde::Deserialize;

    use super::*;

    /// Found by fuzzing (fuzz/fuzz_targets/wire_frame.rs): a 10-byte payload
    /// whose string length field claims about 2^60 bytes. Decoding must
    /// refuse it, not try to allocate it and abort the process.
    #[test]
    fn a_length_field_larger_than_the_frame_is_an_error_not_an_abort() {
        let mut frame = MAGIC.to_vec();
        let payload = [1, 0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f];
        frame.extend((payload.len() as u32).to_le_bytes());
        frame.extend(payload);
        let res = read_frame::<_, Msg>(&mut &frame[..]);
        assert!(res.is_err(), "{res:?}");
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Msg {
        Ping(u32),
        Text { body: String, tags: Vec<String> },
    }

    #[test]
    fn frames_round_trip_back_to_back() {
        let a = Msg::Ping(7);
        let b = Msg::Text {
            body: "héllo".into(),
            tags: vec!["x".into()],
        };
        let mut buf = encode(&a).unwrap();
        buf.extend(encode(&b).unwrap());
        let mut r = Cursor::new(buf);
        assert_eq!(read_frame::<_, Msg>(&mut r).unwrap(), a);
        assert_eq!(read_frame::<_, Msg>(&mut r).unwrap(), b);
        assert!(matches!(
            read_frame::<_, Msg>(&mut r),
            Err(WireError::Closed)
        ));
    }

    #[test]
    fn eof_inside_header_or_payload_is_truncation() {
        let frame = encode(&Msg::Ping(1)).unwrap();
        for cut in [3, 8, frame.len() - 1] {
            let mut r = Cursor::new(frame[..cut].to_vec());
            assert!(
                matches!(read_frame::<_, Msg>(&mut r), Err(WireError::Truncated)),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn garbage_is_rejected_by_magic() {
        let mut r = Cursor::new(b"GET / HTTP/1.1\r\n".to_vec());
        assert!(matches!(
            read_frame::<_, Msg>(&mut r),
            Err(WireError::BadMagic(_))
        ));
    }

    #[test]
    fn garbage_payload_with_valid_header_is_a_decode_error() {
        let mut buf = MAGIC.to_vec();
        buf.extend_from_slice(&4u32.to_le_bytes());
        buf.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        let mut r = Cursor::new(buf);
        assert!(matches!(
            read_frame::<_, Msg>(&mut r),
            Err(WireError::Decode(_))
        ));
    }

    #[test]
    fn oversize_length_is_refused_before_allocating() {
        let mut buf = MAGIC.to_vec();
        buf.extend_from_slice(&u32::MAX.to_le_bytes());
        let mut r = Cursor::new(buf);
        match read_frame::<_, Msg>(&mut r) {
            Err(WireError::Oversize { len, max }) => {
                assert_eq!(len, u32::MAX as u64);
                assert_eq!(max, MAX_FRAME_LEN);
            }
            other => panic!("expected Oversize, got {other:?}"),
        }
    }

    #[test]
    fn oversize_message_is_refused_on_send() {
        let big = Msg::Text {
            body: "a".repeat(MAX_FRAME_LEN as usize + 1),
            tags: vec![],
        };
        assert!(matches!(encode(&big), Err(WireError::Oversize { .. })));
    }
}
