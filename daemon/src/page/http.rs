//! Just enough HTTP/1.1 for the search page: GET and HEAD, no request
//! bodies, one request per connection (`Connection: close`), so a
//! connection's thread is given back as soon as its answer is written.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

/// A request head larger than this is refused (431).
const MAX_HEAD: usize = 16 * 1024;

pub struct Request {
    pub method: String,
    /// The path as sent, still percent-encoded, without the query.
    pub path: String,
    /// The query string as sent, without `?`.
    pub query: String,
    /// Names in lower case.
    headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of query parameter `name`, decoded (`+` is a space).
    /// A value that does not decode to UTF-8 is left out.
    pub fn params(&self, name: &str) -> Vec<String> {
        self.query
            .split('&')
            .filter_map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let k = String::from_utf8(percent_decode(k, true)?).ok()?;
                (k == name).then(|| String::from_utf8(percent_decode(v, true)?).ok())?
            })
            .collect()
    }

    /// The first non-empty value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<String> {
        self.params(name)
            .into_iter()
            .map(|v| v.trim().to_owned())
            .find(|v| !v.is_empty())
    }

    /// The value of cookie `name`.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == "cookie")
            .flat_map(|(_, v)| v.split(';'))
            .find_map(|c| {
                let (k, v) = c.trim().split_once('=')?;
                (k == name).then_some(v)
            })
    }
}

#[derive(Debug)]
pub enum ReadError {
    /// The peer closed or timed out before a whole head arrived.
    Io(io::Error),
    /// Not a request this server can read; answer with this status.
    Bad(u16),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// Reads one request head (up to the blank line).
pub fn read_request(stream: &mut impl Read) -> Result<Request, ReadError> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let end = loop {
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if head.len() > MAX_HEAD {
            return Err(ReadError::Bad(431));
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        head.extend_from_slice(&buf[..n]);
    };
    let head = std::str::from_utf8(&head[..end]).map_err(|_| ReadError::Bad(400))?;
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (first.next(), first.next(), first.next(), first.next())
    else {
        return Err(ReadError::Bad(400));
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Err(ReadError::Bad(400));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = vec![];
    for line in lines {
        let (name, value) = line.split_once(':').ok_or(ReadError::Bad(400))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    Ok(Request {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
    })
}

/// `%XX` escapes decoded (and `+` as a space when `plus_is_space`); `None`
/// for a broken escape.
pub fn percent_decode(s: &str, plus_is_space: bool) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

/// Escapes every byte but unreserved characters and `/`: a path as a URL path.
pub fn percent_encode_path(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub enum Body {
    Bytes(Vec<u8>),
    /// `len` bytes of the file from `start`.
    File {
        file: File,
        start: u64,
        len: u64,
    },
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", content_type.to_owned())],
            body: Body::Bytes(body.into()),
        }
    }

    /// A short plain-text answer, for errors.
    pub fn text(status: u16, text: &str) -> Response {
        Response::new(status, "text/plain; charset=utf-8", format!("{text}\n"))
    }

    pub fn json(status: u16, value: &impl serde::Serialize) -> Response {
        let body = serde_json::to_vec(value).unwrap_or_else(|e| e.to_string().into_bytes());
        Response::new(status, "application/json", body)
    }

    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// Writes the status line, headers and (unless `head_only`) the body.
    pub fn write_to(self, out: &mut impl Write, head_only: bool) -> io::Result<()> {
        let len = match &self.body {
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        };
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!(
            "Content-Length: {len}\r\nConnection: close\r\n{SECURITY_HEADERS}\r\n"
        ));
        out.write_all(head.as_bytes())?;
        if head_only {
            return out.flush();
        }
        match self.body {
            Body::Bytes(b) => out.write_all(&b)?,
            Body::File {
                mut file,
                start,
                len,
            } => {
                file.seek(SeekFrom::Start(start))?;
                let sent = io::copy(&mut file.take(len), out)?;
                if sent != len {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
        }
        out.flush()
    }
}

/// On every answer: nothing but this server's own scripts, styles and
/// media; no framing by other pages; no sniffing; no referrer (the page's
/// address may carry the token on first load).
const SECURITY_HEADERS: &str = "Content-Security-Policy: default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; media-src 'self'; connect-src 'self'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'\r\n\
     X-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\n\
     Referrer-Policy: no-referrer\r\nCross-Origin-Resource-Policy: same-origin\r\n";

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        303 => "See Other",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// The byte range asked for by a `Range` header, for a file of `size`
/// bytes: `Ok(None)` for the whole file, `Err(())` when it cannot be served
/// (416). One range only; a list of several is answered whole.
pub fn byte_range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        // The last `b` bytes.
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size.saturating_sub(1))
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            b.parse::<u64>()
                .map_err(|_| ())?
                .min(size.saturating_sub(1))
        };
        (start, end)
    };
    if start >= size || end < start {
        return Err(());
    }
    Ok(Some((start, end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_head_is_read_with_its_query_and_cookies() {
        let raw = b"GET /api/search?q=red+bus&has=faces&has=text&q2=%C3%A9 HTTP/1.1\r\n\
            Host: 127.0.0.1:7407\r\nCookie: a=1; vx_token=abc\r\n\r\n";
        let r = read_request(&mut &raw[..]).unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/api/search"));
        assert_eq!(r.header("host"), Some("127.0.0.1:7407"));
        assert_eq!(r.param("q").as_deref(), Some("red bus"));
        assert_eq!(r.params("has"), ["faces", "text"]);
        assert_eq!(r.param("q2").as_deref(), Some("é"));
        assert_eq!(r.param("missing"), None);
        assert_eq!(r.cookie("vx_token"), Some("abc"));
        assert_eq!(r.cookie("vx"), None);
    }

    #[test]
    fn malformed_or_huge_heads_are_refused() {
        for raw in [
            &b"GET\r\n\r\n"[..],
            b"GET http://evil/ HTTP/1.1\r\n\r\n",
            b"GET / HTTP/2\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
        ] {
            assert!(matches!(
                read_request(&mut &raw[..]),
                Err(ReadError::Bad(400))
            ));
        }
        let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
        huge.resize(MAX_HEAD + 2048, b'a');
        assert!(matches!(
            read_request(&mut &huge[..]),
            Err(ReadError::Bad(431))
        ));
        assert!(matches!(
            read_request(&mut &b"GET / HTTP/1.1\r\n"[..]),
            Err(ReadError::Io(_))
        ));
    }

    #[test]
    fn escapes_decode_and_broken_ones_are_refused() {
        assert_eq!(percent_decode("a%2Fb+c", false).unwrap(), b"a/b+c");
        assert_eq!(percent_decode("a+c", true).unwrap(), b"a c");
        assert_eq!(percent_decode("%zz", false), None);
        assert_eq!(percent_decode("%4", false), None);
        assert_eq!(
            percent_encode_path("/m/a b?.mp4".as_bytes()),
            "/m/a%20b%3F.mp4"
        );
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(byte_range(None, 100), Ok(None));
        assert_eq!(byte_range(Some("bytes=0-"), 100), Ok(Some((0, 99))));
        assert_eq!(byte_range(Some("bytes=10-19"), 100), Ok(Some((10, 19))));
        assert_eq!(byte_range(Some("bytes=90-500"), 100), Ok(Some((90, 99))));
        assert_eq!(byte_range(Some("bytes=-10"), 100), Ok(Some((90, 99))));
        assert_eq!(byte_range(Some("bytes=0-1,5-6"), 100), Ok(None));
        assert_eq!(byte_range(Some("bytes=100-"), 100), Err(()));
        assert_eq!(byte_range(Some("bytes=5-2"), 100), Err(()));
        assert_eq!(byte_range(Some("bytes=x-"), 100), Err(()));
        assert_eq!(byte_range(Some("bytes=-0"), 100), Err(()));
    }
}
