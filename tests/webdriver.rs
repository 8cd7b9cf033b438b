//! A real browser for the page tests: Debian's headless Chromium, driven by
//! `chromedriver` over WebDriver (plain HTTP and JSON), and the raw HTTP
//! requests that browsers never send (`..` left in a path, a foreign Host).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// What a server answered: status, headers (names in lower case), body.
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request, sent as given (`target` is not normalised, so
/// `/a/../b` reaches the server as is), read until the server closes.
pub fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> HttpReply {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut head = format!("{method} {target} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    // Read the head, then Content-Length bytes (chromedriver keeps the
    // connection open whatever the request says), else up to the close.
    let mut raw = vec![];
    let mut buf = [0u8; 8192];
    let split = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "no HTTP head in {:?}", String::from_utf8_lossy(&raw));
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    assert!(
        !headers
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked")),
        "chunked replies are not read here"
    );
    let mut body = raw[split + 4..].to_vec();
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    match length {
        Some(len) => {
            while body.len() < len {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "the body ended early");
                body.extend_from_slice(&buf[..n]);
            }
            body.truncate(len);
        }
        None => {
            s.read_to_end(&mut body).unwrap();
        }
    }
    HttpReply {
        status,
        headers,
        body,
    }
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// chromedriver, killed when dropped: also when the session never starts.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Headless Chromium at 1280×800 under its own chromedriver; both end
/// with it.
pub struct Browser {
    session: String,
    addr: SocketAddr,
    /// Dropped after the session is deleted (fields drop in order).
    _driver: Driver,
    _profile: tempfile::TempDir,
}

pub const WIDTH: u32 = 1280;
pub const HEIGHT: u32 = 800;

impl Browser {
    pub fn start() -> Browser {
        for bin in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            assert!(
                Path::new(bin).exists(),
                "{bin} missing: run scripts/setup.sh (apt: chromium chromium-driver)"
            );
        }
        let port = free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let driver = Driver(
            Command::new("/usr/bin/chromedriver")
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver starts"),
        );
        let start = Instant::now();
        while TcpStream::connect(addr).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "chromedriver never listened"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--mute-audio",
                    format!("--window-size={WIDTH},{HEIGHT}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let reply = http(addr, "POST", "/session", &[], Some(&caps));
        let v: Value = serde_json::from_slice(&reply.body).expect("JSON from chromedriver");
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {v}"))
            .to_owned();
        let b = Browser {
            session,
            addr,
            _driver: driver,
            _profile: profile,
        };
        // The page itself, not the window around it, is 1280×800.
        b.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": false}),
        );
        b
    }

    /// A WebDriver command; panics with the driver's error.
    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let target = format!("/session/{}{path}", self.session);
        let body = body.or_else(|| (method == "POST").then(|| json!({})));
        let reply = http(self.addr, method, &target, &[], body.as_ref());
        let v: Value = serde_json::from_slice(&reply.body).expect("JSON from chromedriver");
        assert!(
            reply.status == 200,
            "{method} {path}: {} {}",
            reply.status,
            v["value"]
        );
        v["value"].clone()
    }

    fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.command(
            "POST",
            "/goog/cdp/execute",
            Some(json!({"cmd": cmd, "params": params})),
        )
    }

    pub fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn url(&self) -> String {
        self.command("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub fn run(&self, script: &str, args: Value) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Waits until `script` returns something other than null or false,
    /// and returns it.
    pub fn wait_for(&self, what: &str, script: &str, timeout: Duration) -> Value {
        let start = Instant::now();
        loop {
            let v = self.run(script, json!([]));
            if !v.is_null() && v != json!(false) {
                return v;
            }
            assert!(
                start.elapsed() < timeout,
                "{what}: not within {timeout:?}; the page says: {}",
                self.run("return document.body.innerText", json!([]))
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The elements `css` selects, as WebDriver references.
    pub fn find_all(&self, css: &str) -> Vec<Value> {
        self.command(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )
        .as_array()
        .cloned()
        .unwrap_or_default()
    }

    /// Clicks like a person: WebDriver scrolls it into view and the page
    /// gets a real (trusted) click.
    pub fn click(&self, element: &Value) {
        let id = element
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .expect("an element reference");
        self.command("POST", &format!("/element/{id}/click"), None);
    }

    /// Types into the element `css` selects, as keystrokes.
    pub fn type_into(&self, css: &str, text: &str) {
        let el = self.find_all(css).into_iter().next().expect(css);
        let id = el.as_object().and_then(|o| o.values().next()).unwrap();
        let id = id.as_str().unwrap();
        self.command(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// A PNG of the viewport, written to `path`; returns its size.
    pub fn screenshot(&self, path: &Path) -> (u32, u32) {
        let b64 = self.command("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("base64"))
            .expect("a base64 PNG");
        assert_eq!(&png[1..4], b"PNG", "not a PNG");
        std::fs::write(path, &png).unwrap();
        // IHDR: width and height, big-endian, after the 8-byte signature
        // and the chunk's length and type.
        let be = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
        (be(16), be(20))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let target = format!("/session/{}", self.session);
        // chromedriver closes Chromium with the session.
        let _ = std::panic::catch_unwind(|| http(self.addr, "DELETE", &target, &[], None));
    }
}
