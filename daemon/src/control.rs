//! The control socket that `vxctl` talks to.
//!
//! The socket lives in a directory only this user can enter (0700) and is
//! itself 0600; on top of that, each connection's peer uid must be ours.
//! A connection opens with the frozen hello exchange, then carries any number
//! of requests, each answered by one reply.

use std::io::BufReader;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use interprocess::local_socket::{GenericFilePath, ListenerOptions, Stream, prelude::*};
use vx_ctl_protocol::{
    ClientHello, DaemonHello, FileReport, PROTOCOL_VERSION, Reply, Request, RetryReply,
    RetryRequest, SearchReply,
};
use vx_ctl_protocol::{SearchMode, SearchRequest};
use vx_index::{MediaIndex, Query, Semantic};
use vx_wire::{WireError, read_frame, write_frame};

use crate::embed::Embedder;
use crate::state::State;

/// How long a new connection may take to say hello...
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// ...and how long it may stay quiet between requests.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Control {
    pub state: Arc<State>,
    pub index: Arc<MediaIndex>,
    pub filter: Arc<crate::watch::Filter>,
    pub index_dir: PathBuf,
    /// Why search by meaning is off, or the embedder that serves it.
    pub embedder: Result<Arc<Embedder>, String>,
}

impl Control {
    pub fn status(&self) -> vx_ctl_protocol::Status {
        let bytes = std::fs::read_dir(&self.index_dir)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        self.state.snapshot(&self.filter.roots, bytes)
    }

    /// Ranks by words, meaning or both. When the query cannot be embedded,
    /// words alone answer and the reply says why.
    pub fn search(&self, req: &SearchRequest) -> Reply {
        let mut mode = req.mode;
        let mut warnings = vec![];
        let mut vector = None;
        if mode != SearchMode::Text && !req.query.trim().is_empty() {
            match self
                .embedder
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|e| e.embed_query(&req.query).map(|v| (e.clone(), v)))
            {
                Ok(v) => vector = Some(v),
                Err(why) => {
                    warnings.push(format!(
                        "search by meaning is unavailable: {why}; showing word matches only"
                    ));
                    mode = SearchMode::Text;
                }
            }
        }
        let store = vector
            .as_ref()
            .map(|(e, _)| e.vectors.read().unwrap_or_else(|e| e.into_inner()));
        let semantic = match (&vector, &store) {
            (Some((_, query)), Some(store)) => {
                store.as_ref().map(|vectors| Semantic { vectors, query })
            }
            _ => None,
        };
        let mut query = Query::from_request(req);
        query.mode = mode;
        match self.index.search(&query, semantic) {
            Ok(hits) => Reply::Search(SearchReply {
                hits,
                mode,
                warnings,
            }),
            Err(e) => Reply::Error(e.to_string()),
        }
    }

    fn file(&self, path: PathBuf) -> Reply {
        let indexed = match self.index.file_info(&path) {
            Ok(i) => i,
            Err(e) => return Reply::Error(e.to_string()),
        };
        let s = self.state.lock();
        let failures: Vec<_> = s.failed_files(Some(&path)).collect();
        let state = if s.working.values().any(|c| c.path == path) {
            "in progress"
        } else if s.queue.iter().any(|(_, p)| p == &path) {
            "queued"
        } else if failures
            .iter()
            .any(|f| crate::pipeline::fails_whole_file(&f.plugin))
        {
            "failed"
        } else if s.indexed.contains(&path) || indexed.is_some() {
            "indexed"
        } else if !self.filter.wants_file(&path) {
            "not watched"
        } else if path.exists() {
            "settling"
        } else {
            "not indexed"
        };
        Reply::File(FileReport {
            path,
            state: state.into(),
            indexed,
            failures,
        })
    }
}

/// Creates the socket's directory (0700, ours) if needed.
pub fn prepare_socket_dir(socket: &Path) -> anyhow::Result<PathBuf> {
    let dir = socket
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("cannot create socket folder {}", dir.display()))?;
    let meta = std::fs::metadata(&dir)?;
    // SAFETY: getuid has no preconditions.
    if meta.uid() != unsafe { libc::getuid() } {
        bail!("socket folder {} belongs to another user", dir.display());
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(dir)
}

/// Binds the control socket, refusing to displace a live daemon.
pub fn serve(socket: &Path, control: Arc<Control>) -> anyhow::Result<()> {
    let name = socket.to_fs_name::<GenericFilePath>()?;
    if socket.exists() {
        if Stream::connect(name.clone()).is_ok() {
            bail!("another vxd is already listening on {}", socket.display());
        }
        std::fs::remove_file(socket).ok(); // stale, from a daemon that was killed
    }
    let listener = ListenerOptions::new()
        .name(name)
        .create_sync()
        .with_context(|| format!("cannot listen on {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let conn = match conn {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of fds, say: wait instead of spinning on it.
                        tracing::warn!("control accept: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                };
                let control = control.clone();
                let _ = std::thread::Builder::new()
                    .name("control-conn".into())
                    .spawn(move || {
                        if let Err(e) = handle(conn, &control) {
                            tracing::debug!("control connection: {e}");
                        }
                    });
            }
        })?;
    Ok(())
}

fn handle(conn: Stream, control: &Control) -> anyhow::Result<()> {
    // SAFETY: getuid has no preconditions.
    let ours = unsafe { libc::getuid() };
    let peer = conn.peer_creds()?.euid();
    if peer != Some(ours) {
        bail!("refused connection from uid {peer:?}");
    }
    // A connection that never says hello, or goes quiet, gives its thread back.
    conn.set_recv_timeout(Some(HELLO_TIMEOUT))?;
    let mut reader = BufReader::new(&conn);
    let mut writer = &conn;
    let hello: ClientHello = read_frame(&mut reader)?;
    conn.set_recv_timeout(Some(IDLE_TIMEOUT))?;
    let ours = DaemonHello {
        protocol: PROTOCOL_VERSION,
        daemon_version: env!("CARGO_PKG_VERSION").to_owned(),
        pid: std::process::id(),
    };
    write_frame(&mut writer, &ours)?;
    if hello.protocol != PROTOCOL_VERSION {
        return Ok(()); // the client reports the mismatch
    }
    loop {
        let req: Request = match read_frame(&mut reader) {
            Ok(r) => r,
            Err(WireError::Closed) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let reply = match req {
            Request::Status => Reply::Status(control.status()),
            Request::Pause | Request::Resume => {
                control.state.set_paused(matches!(req, Request::Pause));
                Reply::Status(control.status())
            }
            Request::File(path) => control.file(path),
            Request::Search(s) => control.search(&s),
            Request::Retry(r) => Reply::Retry(retry(control, r)),
        };
        write_frame(&mut writer, &reply)?;
    }
}

fn retry(control: &Control, req: RetryRequest) -> RetryReply {
    let mut targets = req.paths;
    if req.all_failed {
        let state = control.state.lock();
        targets.extend(state.failed.keys().map(|(p, _)| p.clone()));
    }
    targets.sort();
    targets.dedup();
    let mut reply = RetryReply::default();
    for path in targets {
        let refusal = match std::fs::metadata(&path) {
            Err(e) => Some(e.to_string()),
            Ok(m) if !m.is_file() => Some("not a file".into()),
            Ok(_) if !control.filter.wants_file(&path) => {
                Some("not a media file in a watched folder".into())
            }
            Ok(m) => {
                control.state.lock().force.insert(path.clone());
                control.state.enqueue(path.clone(), m.len());
                None
            }
        };
        match refusal {
            Some(why) => reply.refused.push((path, why)),
            None => reply.queued.push(path),
        }
    }
    reply
}
