//! A typed client for vxd's control socket, as used by `vxctl`.
//!
//! [`Client::connect`] opens the socket and exchanges the frozen hellos of
//! `vx-ctl-protocol`, refusing a vxd that speaks another protocol version with
//! an error that says which side is older. After that there is one method per
//! [`Request`], each returning its typed reply; a [`Reply::Error`] from vxd
//! becomes [`Error::Daemon`].
//!
//! The default socket path is `vx_config::Settings::socket`.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Duration;

use interprocess::local_socket::{GenericFilePath, Stream, prelude::*};
use vx_ctl_protocol::{
    ClientHello, DaemonHello, FileReport, PROTOCOL_VERSION, Reply, Request, RetryReply,
    RetryRequest, SearchReply, SearchRequest, Status,
};
use vx_wire::{WireError, read_frame, write_frame};

/// How long to wait for any one reply before giving up on vxd.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

const CLIENT_VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("vxd is not running (no socket at {})", .0.display())]
    NotRunning(PathBuf),
    #[error("vxd is not running (stale socket at {})", .0.display())]
    StaleSocket(PathBuf),
    #[error("cannot connect to vxd at {}: {source}", socket.display())]
    Connect {
        socket: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", mismatch_message(.0))]
    ProtocolMismatch(DaemonHello),
    #[error("hello exchange with vxd")]
    Hello(#[source] WireError),
    #[error("sending request to vxd")]
    Send(#[source] WireError),
    #[error("reading vxd's reply")]
    Receive(#[source] WireError),
    /// vxd answered [`Reply::Error`].
    #[error("vxd: {0}")]
    Daemon(String),
    #[error("unexpected reply from vxd: {0}")]
    UnexpectedReply(String),
}

fn mismatch_message(theirs: &DaemonHello) -> String {
    let (which, fix) = if theirs.protocol < PROTOCOL_VERSION {
        (
            "older",
            "restart vxd so that the newer one runs, or use the vxctl that came with it",
        )
    } else {
        ("newer", "use the vxctl that came with this vxd")
    };
    format!(
        "vxd {} (pid {}) is {which} than vxctl {CLIENT_VERSION}: it speaks control protocol {}, \
         vxctl speaks {PROTOCOL_VERSION}; {fix}",
        theirs.daemon_version, theirs.pid, theirs.protocol,
    )
}

/// One connection to vxd; requests are answered in order.
pub struct Client {
    conn: BufReader<Stream>,
    daemon: DaemonHello,
}

impl Client {
    /// Connects to vxd at `socket` and checks that it speaks our protocol.
    pub fn connect(socket: &Path) -> Result<Self, Error> {
        if !socket.exists() {
            return Err(Error::NotRunning(socket.to_owned()));
        }
        let connect_err = |source: std::io::Error| match source.kind() {
            std::io::ErrorKind::ConnectionRefused => Error::StaleSocket(socket.to_owned()),
            _ => Error::Connect {
                socket: socket.to_owned(),
                source,
            },
        };
        let name = socket
            .to_fs_name::<GenericFilePath>()
            .map_err(connect_err)?;
        let conn = Stream::connect(name).map_err(connect_err)?;
        conn.set_recv_timeout(Some(REPLY_TIMEOUT))
            .map_err(connect_err)?;
        let mut conn = BufReader::new(conn);
        let hello = ClientHello {
            protocol: PROTOCOL_VERSION,
            client_version: CLIENT_VERSION.into(),
        };
        write_frame(&mut conn.get_ref(), &hello).map_err(Error::Hello)?;
        let daemon: DaemonHello = read_frame(&mut conn).map_err(Error::Hello)?;
        if daemon.protocol != PROTOCOL_VERSION {
            return Err(Error::ProtocolMismatch(daemon));
        }
        Ok(Self { conn, daemon })
    }

    /// What vxd said about itself when we connected.
    pub fn daemon(&self) -> &DaemonHello {
        &self.daemon
    }

    /// Sends one request and reads its reply; [`Reply::Error`] is an `Err`.
    pub fn call(&mut self, req: &Request) -> Result<Reply, Error> {
        write_frame(&mut self.conn.get_ref(), req).map_err(Error::Send)?;
        match read_frame(&mut self.conn).map_err(Error::Receive)? {
            Reply::Error(e) => Err(Error::Daemon(e)),
            reply => Ok(reply),
        }
    }

    pub fn status(&mut self) -> Result<Status, Error> {
        match self.call(&Request::Status)? {
            Reply::Status(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    pub fn search(&mut self, req: SearchRequest) -> Result<SearchReply, Error> {
        match self.call(&Request::Search(req))? {
            Reply::Search(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    /// Everything vxd knows about one file (an absolute path).
    pub fn file(&mut self, path: PathBuf) -> Result<FileReport, Error> {
        match self.call(&Request::File(path))? {
            Reply::File(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    pub fn retry(&mut self, req: RetryRequest) -> Result<RetryReply, Error> {
        match self.call(&Request::Retry(req))? {
            Reply::Retry(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// Lets the files in progress finish, then starts no new one; returns
    /// the status right after.
    pub fn pause(&mut self) -> Result<Status, Error> {
        match self.call(&Request::Pause)? {
            Reply::Status(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    /// Starts indexing again after [`pause`](Self::pause).
    pub fn resume(&mut self) -> Result<Status, Error> {
        match self.call(&Request::Resume)? {
            Reply::Status(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(reply: Reply) -> Error {
    let what = match reply {
        Reply::Status(_) => "status",
        Reply::Search(_) => "search",
        Reply::Error(_) => "error",
        Reply::Retry(_) => "retry",
        Reply::File(_) => "file",
    };
    Error::UnexpectedReply(format!("a {what} reply"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    /// A stand-in vxd that answers the hello with `protocol`, then each
    /// request with `reply`.
    fn fake_vxd(protocol: u32, reply: Option<Reply>) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("vxd.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut r = BufReader::new(&conn);
            let _: ClientHello = read_frame(&mut r).unwrap();
            let hello = DaemonHello {
                protocol,
                daemon_version: "1.2.3".into(),
                pid: 77,
            };
            write_frame(&mut &conn, &hello).unwrap();
            if let Some(reply) = reply {
                while read_frame::<_, Request>(&mut r).is_ok() {
                    write_frame(&mut &conn, &reply).unwrap();
                }
            }
        });
        (dir, sock)
    }

    #[test]
    fn an_older_daemon_is_named_with_both_versions() {
        let (_dir, sock) = fake_vxd(PROTOCOL_VERSION - 1, None);
        let err = Client::connect(&sock).err().unwrap().to_string();
        assert!(
            err.starts_with(&format!(
                "vxd 1.2.3 (pid 77) is older than vxctl {CLIENT_VERSION}: it speaks control \
                 protocol {}, vxctl speaks {PROTOCOL_VERSION}; restart vxd",
                PROTOCOL_VERSION - 1
            )),
            "{err}"
        );
    }

    #[test]
    fn a_newer_daemon_is_named_as_newer() {
        let (_dir, sock) = fake_vxd(PROTOCOL_VERSION + 1, None);
        let err = Client::connect(&sock).err().unwrap().to_string();
        assert!(err.contains("is newer than vxctl"), "{err}");
    }

    #[test]
    fn an_error_reply_is_an_error_and_a_wrong_reply_is_named() {
        let (_dir, sock) = fake_vxd(PROTOCOL_VERSION, Some(Reply::Error("no such file".into())));
        let mut c = Client::connect(&sock).unwrap();
        assert_eq!(c.daemon().pid, 77);
        let err = c.status().unwrap_err();
        assert!(
            matches!(&err, Error::Daemon(e) if e == "no such file"),
            "{err}"
        );
        assert_eq!(err.to_string(), "vxd: no such file");

        let (_dir, sock) = fake_vxd(PROTOCOL_VERSION, Some(Reply::Status(Status::default())));
        let err = Client::connect(&sock)
            .unwrap()
            .file("/x".into())
            .unwrap_err();
        assert_eq!(err.to_string(), "unexpected reply from vxd: a status reply");
    }

    #[test]
    fn no_socket_and_a_stale_socket_say_vxd_is_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("vxd.sock");
        let err = Client::connect(&sock).err().unwrap().to_string();
        assert!(err.starts_with("vxd is not running (no socket at"), "{err}");
        drop(UnixListener::bind(&sock).unwrap());
        let err = Client::connect(&sock).err().unwrap().to_string();
        assert!(
            err.starts_with("vxd is not running (stale socket at"),
            "{err}"
        );
    }
}
