//! The search page: vxd's own web page on 127.0.0.1 (`page_port`).
//!
//! Who may use it: whoever can read the token vxd writes at start into its
//! runtime folder (0700), in `page-url` (0600, [`vx_ctl_protocol::PAGE_URL_FILE`]); `vxctl open` prints it. The
//! first load brings it as `?token=`, and is redirected to the same page
//! without it, with an HttpOnly, SameSite=Strict cookie that the page's own
//! requests (the `<video>`'s range requests too) carry from then on.
//! Every request must name this server in `Host` (127.0.0.1:PORT or
//! localhost:PORT), so a rebound DNS name gets nothing; one with another
//! `Origin`, or that the browser marks as cross-site, is refused; no
//! answer allows another origin to read it (no CORS headers).
//!
//! Routes: `/` (search) and `/status` (the same page, status view),
//! `/page.js`, `/page.css`, `/api/search`, `/api/status`, `/thumb/NAME`
//! (a thumbnail in the artefact folder), `/media/PATH` (a file the index
//! holds, with range requests). Nothing else; no listings.

mod api;
mod http;
mod media;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use http::{Body, ReadError, Request, Response, byte_range};

use crate::control::Control;

/// Connections served at once; more wait in the kernel's backlog, and past
/// that are answered 503.
const MAX_CONNECTIONS: usize = 32;
/// A request head must arrive within this...
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// ...and a browser that stops reading a video is dropped after this.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

const INDEX_HTML: &str = include_str!("assets/index.html");
const PAGE_JS: &str = include_str!("assets/page.js");
const PAGE_CSS: &str = include_str!("assets/page.css");

pub struct Page {
    control: Arc<Control>,
    port: u16,
    token: String,
    artefact_dir: PathBuf,
    busy: AtomicUsize,
}

/// Listens on 127.0.0.1:`port`, writes the address with a fresh token to
/// `runtime_dir/page-url`, and serves the page on a thread of its own.
/// Returns the file, which vxd removes when it stops.
pub fn serve(
    control: Arc<Control>,
    port: u16,
    runtime_dir: &Path,
    artefact_dir: PathBuf,
) -> anyhow::Result<PathBuf> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
    let token = random_token().context("cannot make the page's token")?;
    let url_file = runtime_dir.join(vx_ctl_protocol::PAGE_URL_FILE);
    write_private(
        &url_file,
        &format!("http://127.0.0.1:{port}/?token={token}\n"),
    )?;
    let page = Arc::new(Page {
        control,
        port,
        token,
        artefact_dir,
        busy: AtomicUsize::new(0),
    });
    std::thread::Builder::new()
        .name("page".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(conn) => page.clone().accept(conn),
                    Err(e) => {
                        tracing::warn!("page accept: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })?;
    tracing::info!("search page on http://127.0.0.1:{port}/ (vxctl open)");
    Ok(url_file)
}

/// Writes `text` to `path` readable by this user only, replacing it whole.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// 32 bytes from the kernel's random source, in hex.
fn random_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    // SAFETY: the buffer is valid for its length.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        return Err(std::io::Error::last_os_error());
    }
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Equal, in a time that does not depend on where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Gives the connection count back when a connection's thread ends.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Page {
    fn accept(self: Arc<Self>, mut conn: TcpStream) {
        if self.busy.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            self.busy.fetch_sub(1, Ordering::SeqCst);
            let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = Response::text(503, "busy").write_to(&mut conn, false);
            return;
        }
        let page = self.clone();
        let spawned = std::thread::Builder::new()
            .name("page-conn".into())
            .spawn(move || {
                let _slot = Slot(&page.busy);
                if let Err(e) = page.handle(conn) {
                    tracing::debug!("page connection: {e}");
                }
            });
        if spawned.is_err() {
            self.busy.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn handle(&self, mut conn: TcpStream) -> std::io::Result<()> {
        conn.set_read_timeout(Some(READ_TIMEOUT))?;
        conn.set_write_timeout(Some(WRITE_TIMEOUT))?;
        let (response, head_only) = match http::read_request(&mut conn) {
            Ok(req) => (self.respond(&req), req.method == "HEAD"),
            Err(ReadError::Bad(status)) => (Response::text(status, "bad request"), false),
            Err(ReadError::Io(e)) => return Err(e),
        };
        response.write_to(&mut conn, head_only)
    }

    fn respond(&self, req: &Request) -> Response {
        if req.method != "GET" && req.method != "HEAD" {
            return Response::text(405, "only GET").with("Allow", "GET, HEAD");
        }
        let ours = |authority: &str| {
            authority == format!("127.0.0.1:{}", self.port)
                || authority == format!("localhost:{}", self.port)
        };
        if !req.header("host").is_some_and(ours) {
            return Response::text(403, "this page answers to 127.0.0.1 or localhost only");
        }
        let foreign_origin = req
            .header("origin")
            .is_some_and(|o| !o.strip_prefix("http://").is_some_and(ours));
        let cross_site = req
            .header("sec-fetch-site")
            .is_some_and(|s| s == "cross-site" || s == "same-site");
        if foreign_origin || cross_site {
            return Response::text(403, "requests from other sites are refused");
        }
        let from_url = req.param("token");
        // Cookies do not tell ports apart: each vxd names its own.
        let cookie = format!("vx_token_{}", self.port);
        let presented = from_url.as_deref().or(req.cookie(&cookie));
        if !presented.is_some_and(|t| same_secret(t.as_bytes(), self.token.as_bytes())) {
            return Response::text(
                403,
                "no valid token: open the page with `vxctl open`, which prints its address",
            );
        }
        let is_page = req.path == "/" || req.path == "/status";
        if from_url.is_some() && is_page {
            // Keep the token out of the address bar and history: the
            // cookie carries it from here on.
            let rest: Vec<&str> = req
                .query
                .split('&')
                .filter(|p| !p.is_empty() && !p.starts_with("token="))
                .collect();
            let location = match rest.is_empty() {
                true => req.path.clone(),
                false => format!("{}?{}", req.path, rest.join("&")),
            };
            return Response::text(303, "see the page")
                .with("Location", location)
                .with(
                    "Set-Cookie",
                    format!("{cookie}={}; HttpOnly; SameSite=Strict; Path=/", self.token),
                )
                .with("Cache-Control", "no-store");
        }
        self.route(req, is_page)
            .unwrap_or_else(|| Response::text(404, "not found"))
    }

    fn route(&self, req: &Request, is_page: bool) -> Option<Response> {
        let cached = "private, max-age=86400";
        let response = match req.path.as_str() {
            _ if is_page => Response::new(200, "text/html; charset=utf-8", INDEX_HTML),
            "/page.js" => Response::new(200, "text/javascript; charset=utf-8", PAGE_JS),
            "/page.css" => Response::new(200, "text/css; charset=utf-8", PAGE_CSS),
            "/api/search" => api::search(&self.control, req),
            "/api/status" => Response::json(200, &self.control.status()),
            p if p.starts_with("/thumb/") => {
                return self
                    .thumbnail(&p["/thumb/".len()..])
                    .map(|r| r.with("Cache-Control", cached));
            }
            p if p.starts_with("/media/") => return self.media(&p["/media".len()..], req),
            _ => return None,
        };
        Some(response.with("Cache-Control", "no-store"))
    }

    /// A thumbnail: a plain file name in the artefact folder.
    fn thumbnail(&self, name: &str) -> Option<Response> {
        let name = http::percent_decode(name, false)?;
        let name = std::str::from_utf8(&name).ok()?;
        let plain = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && !name.starts_with('.');
        if !plain {
            return None;
        }
        let bytes = std::fs::read(self.artefact_dir.join(name)).ok()?;
        Some(Response::new(200, "image/jpeg", bytes))
    }

    /// A file of the index, inside its watched folder, with range requests.
    fn media(&self, rest: &str, req: &Request) -> Option<Response> {
        let path = media::path_of_url(rest)?;
        self.control.index.stored(&path).ok()??;
        let real = media::inside_watched(&path, &self.control.filter.roots)?;
        let file = std::fs::File::open(&real).ok()?;
        let size = file.metadata().ok()?.len();
        let base = |status| {
            Response {
                status,
                headers: vec![("Content-Type", media::content_type(&path).to_owned())],
                body: Body::Bytes(vec![]),
            }
            .with("Accept-Ranges", "bytes")
            .with("Cache-Control", "private, no-cache")
        };
        Some(match byte_range(req.header("range"), size) {
            Ok(None) => Response {
                body: Body::File {
                    file,
                    start: 0,
                    len: size,
                },
                ..base(200)
            },
            Ok(Some((start, end))) => Response {
                body: Body::File {
                    file,
                    start,
                    len: end - start + 1,
                },
                ..base(206)
            }
            .with("Content-Range", format!("bytes {start}-{end}/{size}")),
            Err(()) => base(416).with("Content-Range", format!("bytes */{size}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abcd", b"abcd"));
        assert!(!same_secret(b"abcd", b"abce"));
        assert!(!same_secret(b"abcd", b"abc"));
        assert!(!same_secret(b"", b"a"));
    }

    #[test]
    fn tokens_are_fresh_and_long() {
        let (a, b) = (random_token().unwrap(), random_token().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }

    #[test]
    fn the_url_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join(vx_ctl_protocol::PAGE_URL_FILE);
        write_private(&f, "one").unwrap();
        write_private(&f, "two").unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "two");
        let mode = std::fs::metadata(&f).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
