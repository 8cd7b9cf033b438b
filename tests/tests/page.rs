//! The search page in a real browser: Debian's headless Chromium driven over
//! WebDriver, against vxd with the keyframes and OCR plugins. Search, see the
//! thumbnails, click a moment and the video plays from there; a format the
//! browser cannot play gets the mpv command; the status view lists a failed
//! file with its reason. Raw requests check the guard: no token, another
//! Host or Origin, `..` and encoded slashes.
//!
//! Screenshots of the results and the status view (1280×800) go to
//! `VX_SCREENSHOT_DIR` when set (docs/ keeps the README's), else to the
//! test's temp dir.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vx_e2e::webdriver::{Browser, HEIGHT, WIDTH, free_port, http};
use vx_e2e::{Daemon, FAST_H264, VOC_PHOTOS, bin_dir, ffmpeg};

const SANS: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// 0–4 s a test card, 4–8 s a slide reading "The bus leaves at nine"; 720p H.264.
fn make_commute(path: &Path) {
    let slide = format!(
        "color=c=white:s=1280x720:d=4:r=25,\
         drawtext=fontfile={SANS}:text='The bus leaves at nine':fontsize=64:x=160:y=320:fontcolor=black"
    );
    let inputs: &[&str] = &[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=1280x720:rate=25:duration=4",
        "-f",
        "lavfi",
        "-i",
        &slide,
        "-filter_complex",
        "[0]setsar=1,format=yuv420p[a];[1]setsar=1,format=yuv420p[b];[a][b]concat=n=2:v=1:a=0",
    ];
    ffmpeg(&[inputs, FAST_H264, &[path.to_str().unwrap()]].concat());
}

/// MPEG-2 in an MPEG program stream: what old camcorders and DVDs hold,
/// and what browsers do not play.
fn make_mpeg2(path: &Path) {
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "smptebars=size=640x360:rate=25:duration=3",
        "-c:v",
        "mpeg2video",
        path.to_str().unwrap(),
    ]);
}

fn populate(m: &Path) {
    make_commute(&m.join("commute.mp4"));
    make_mpeg2(&m.join("bus-1998.mpg"));
    std::fs::copy(
        Path::new(VOC_PHOTOS).join("2011_000025.jpg"),
        m.join("bus-stop.jpg"),
    )
    .expect("labelme-examples photos: run scripts/setup.sh");
    std::fs::write(
        m.join("broken.mp4"),
        b"this is not a video at all".repeat(40),
    )
    .unwrap();
}

struct Page {
    addr: SocketAddr,
    /// `http://127.0.0.1:PORT/?token=…`, as vxd wrote it.
    url: String,
    token: String,
}

impl Page {
    fn of(d: &Daemon, port: u16) -> Page {
        let file = d.socket.with_file_name("page-url");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{} is private", file.display());
        let url = std::fs::read_to_string(&file).unwrap().trim().to_owned();
        let token = url.split("token=").nth(1).expect("a token").to_owned();
        assert_eq!(token.len(), 64);
        Page {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            url,
            token,
        }
    }

    fn get(&self, target: &str, headers: &[(&str, &str)]) -> u16 {
        http(self.addr, "GET", target, headers, None).status
    }

    fn get_with_token(&self, target: &str) -> u16 {
        let sep = if target.contains('?') { '&' } else { '?' };
        self.get(&format!("{target}{sep}token={}", self.token), &[])
    }
}

fn screenshot_dir(d: &Daemon) -> PathBuf {
    std::env::var_os("VX_SCREENSHOT_DIR").map_or_else(|| d.root.path().to_owned(), PathBuf::from)
}

#[test]
fn search_click_play_and_status_in_a_real_browser() {
    let port = free_port();
    let d = Daemon::start_with_models(
        &format!("plugins = [\"keyframes\", \"ocr\"]\npage_port = {port}"),
        populate,
    );
    d.wait_idle(240);
    let page = Page::of(&d, port);
    let media = d.media.canonicalize().unwrap();
    let commute = media.join("commute.mp4");

    // --- the guard, with requests a browser would not send ---
    assert_eq!(page.get("/", &[]), 403, "no token");
    assert_eq!(page.get("/api/search?q=bus", &[]), 403, "no token");
    assert_eq!(page.get("/api/status?token=00", &[]), 403, "wrong token");
    let wrong = format!("/api/status?token={}", "0".repeat(64));
    assert_eq!(
        page.get(&wrong, &[]),
        403,
        "wrong token of the right length"
    );
    let cookie = format!("vx_token_{port}={}", page.token);
    assert_eq!(page.get("/api/status", &[("Cookie", &cookie)]), 200);
    let rebound = format!("evil.example:{port}");
    assert_eq!(
        page.get("/api/status", &[("Cookie", &cookie), ("Host", &rebound)]),
        403,
        "a DNS name rebound to 127.0.0.1"
    );
    assert_eq!(
        page.get(
            "/api/status",
            &[("Cookie", &cookie), ("Origin", "http://evil.example")]
        ),
        403,
        "another origin"
    );
    let m = media.to_str().unwrap();
    for target in [
        format!("/media{m}/../../../../etc/passwd"),
        format!("/media{m}/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd"),
        format!("/media{}", m.replace('/', "%2F")),
        format!("/media{m}%2Fcommute.mp4"),
        "/media/etc/passwd".to_owned(),
        format!("/media{m}/"),
        format!("/media{m}"),
        "/thumb/..%2F..%2Fvxd.toml".to_owned(),
    ] {
        assert_eq!(page.get_with_token(&target), 404, "{target}");
    }
    let range = http(
        page.addr,
        "GET",
        &format!("/media{}", commute.display()),
        &[("Cookie", &cookie), ("Range", "bytes=10-109")],
        None,
    );
    assert_eq!(range.status, 206);
    assert_eq!(range.body.len(), 100);
    let size = std::fs::metadata(&commute).unwrap().len();
    assert_eq!(
        range.header("content-range"),
        Some(format!("bytes 10-109/{size}").as_str())
    );
    assert_eq!(
        range.body,
        std::fs::read(&commute).unwrap()[10..110],
        "the bytes asked for"
    );
    let first = http(
        page.addr,
        "GET",
        &format!("/?token={}&q=x", page.token),
        &[],
        None,
    );
    assert_eq!(first.status, 303);
    assert_eq!(
        first.header("location"),
        Some("/?q=x"),
        "the token leaves the address"
    );
    let set = first.header("set-cookie").unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );

    // --- search while typing, thumbnails, highlights ---
    let b = Browser::start();
    b.goto(&page.url);
    assert!(!b.url().contains("token"), "{}", b.url());
    b.type_into("#q", "bus");
    let secs = Duration::from_secs(20);
    b.wait_for(
        "three files with loaded thumbnails",
        "const imgs = [...document.querySelectorAll('.moment img')]; \
         return document.querySelectorAll('.file').length === 3 && imgs.length >= 3 && \
         imgs.every(i => i.complete && i.naturalWidth > 0)",
        secs,
    );
    assert!(
        b.url().ends_with("/?q=bus"),
        "the address holds the query: {}",
        b.url()
    );
    let marks = b.run(
        "return [...document.querySelectorAll('mark')].map(m => m.textContent.toLowerCase())",
        json!([]),
    );
    assert!(
        marks.as_array().unwrap().iter().any(|m| m == "bus"),
        "highlighted: {marks}"
    );
    let names = b.run(
        "return [...document.querySelectorAll('.file .name')].map(n => n.textContent).sort()",
        json!([]),
    );
    assert_eq!(
        names,
        json!(["bus-1998.mpg", "bus-stop.jpg", "commute.mp4"])
    );
    let (w, h) = b.screenshot(&screenshot_dir(&d).join("page-results.png"));
    assert_eq!((w, h), (WIDTH, HEIGHT));

    // --- click the moment the slide reads "bus": the video starts there ---
    let reply = b.run(
        "return fetch('/api/search?q=bus').then(r => r.json())",
        json!([]),
    );
    let moment: &Value = reply["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "commute.mp4")
        .and_then(|f| {
            f["moments"]
                .as_array()?
                .iter()
                .find(|m| m["plugin"] == "ocr")
        })
        .unwrap_or_else(|| panic!("an OCR moment of commute.mp4 in {reply}"));
    let start = moment["start_s"].as_f64().unwrap();
    assert!(
        (3.5..=4.5).contains(&start),
        "the slide starts at 4 s: {start}"
    );
    let tiles = b.find_all(".kind-video .moment");
    let at = b
        .run(
            "return [...document.querySelectorAll('.kind-video .moment')].findIndex(t => \
             t.closest('.file').querySelector('.name').textContent === 'commute.mp4' && \
             t.querySelector('mark'))",
            json!([]),
        )
        .as_u64()
        .expect("the tile with the highlighted words") as usize;
    b.click(&tiles[at]);
    let played = b.wait_for(
        "the video has its first frame",
        "const v = document.querySelector('#video'); \
         return !v.hidden && v.readyState >= 2 && !v.error ? v.currentTime : null",
        secs,
    );
    let t = played.as_f64().unwrap();
    assert!(
        (t - start).abs() < 1.0,
        "currentTime {t} s, the moment at {start} s"
    );
    b.run("document.querySelector('#video').pause()", json!([]));
    b.screenshot(&screenshot_dir(&d).join("page-player.png"));
    b.run("document.querySelector('#player-close').click()", json!([]));

    // --- MPEG-2: a note and the command, not a broken player ---
    let tiles = b.find_all(".moment");
    let at = b
        .run(
            "return [...document.querySelectorAll('.moment')].findIndex(t => \
             t.closest('.file').querySelector('.name').textContent === 'bus-1998.mpg')",
            json!([]),
        )
        .as_u64()
        .unwrap() as usize;
    b.click(&tiles[at]);
    let note = b.wait_for(
        "the note for a format browsers cannot play",
        "const n = document.querySelector('#player-note'); \
         return n.hidden ? null : [n.innerText, document.querySelector('#video').hidden]",
        secs,
    );
    let text = note[0].as_str().unwrap();
    assert!(
        text.contains("mpeg2video") && text.contains("mpv") && text.contains("bus-1998.mpg"),
        "{text}"
    );
    assert_eq!(note[1], json!(true), "no player for it");

    // --- the status view lists the broken file with its reason ---
    let status = d.json(&["status"]);
    let failed = status["failed_files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"].as_str().unwrap().ends_with("broken.mp4"))
        .unwrap_or_else(|| panic!("broken.mp4 failed: {status}"))
        .clone();
    b.goto(&format!("http://127.0.0.1:{port}/status"));
    let row = b.wait_for(
        "broken.mp4 in the failed files",
        "const r = [...document.querySelectorAll('#failed tbody tr')] \
           .find(r => r.cells[0].textContent.endsWith('broken.mp4')); \
         return r ? [...r.cells].map(c => c.textContent) : null",
        secs,
    );
    assert_eq!(
        row,
        json!([failed["path"], failed["plugin"], failed["reason"]]),
        "the same as vxctl status --json"
    );
    let done = b.run(
        "return document.querySelector('#progress-line').textContent",
        json!([]),
    );
    let files = &status["files"];
    assert!(
        done.as_str().unwrap().starts_with(&format!(
            "{} of {} files done",
            files["done"], files["seen"]
        )),
        "{done}"
    );
    let budget = b.run(
        "return document.querySelector('#budget').textContent",
        json!([]),
    );
    let cores = &status["budget"]["cores"];
    assert!(
        budget
            .as_str()
            .unwrap()
            .starts_with(&format!("Budget: {cores} cores")),
        "{budget}"
    );
    let (w, h) = b.screenshot(&screenshot_dir(&d).join("page-status.png"));
    assert_eq!((w, h), (WIDTH, HEIGHT));
}

#[test]
fn vxctl_open_prints_the_address_and_hands_it_to_the_browser() {
    let port = free_port();
    let d = Daemon::start_with(&format!("page_port = {port}"), &[], |_| {});
    let url = std::fs::read_to_string(d.socket.with_file_name("page-url")).unwrap();
    // A "browser" that notes the address it was given.
    let opened = d.root.path().join("opened");
    let browser = d.root.path().join("browser.sh");
    std::fs::write(
        &browser,
        format!("#!/bin/sh\nprintf %s \"$1\" > {}\n", opened.display()),
    )
    .unwrap();
    std::fs::set_permissions(&browser, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(bin_dir().join("vxctl"))
        .arg("--socket")
        .arg(&d.socket)
        .arg("open")
        .env("BROWSER", &browser)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), url);
    let start = Instant::now();
    while std::fs::read_to_string(&opened).unwrap_or_default() != url.trim() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no browser opened {url}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Without a display or $BROWSER it only prints, and says why.
    let out = Command::new(bin_dir().join("vxctl"))
        .arg("--socket")
        .arg(&d.socket)
        .arg("open")
        .env_remove("BROWSER")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), url);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no browser here"));

    // With the page off, vxctl says how to turn it on.
    let off = Daemon::start(|_| {});
    let out = off.vxctl(&["open"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("page_port = 0"), "{err}");
}

#[test]
fn connections_are_bounded_and_idle_ones_let_go() {
    let port = free_port();
    let d = Daemon::start_with(&format!("page_port = {port}"), &[], |_| {});
    let page = Page::of(&d, port);
    // 32 connections that never send a request hold every slot...
    let idle: Vec<TcpStream> = (0..32)
        .map(|_| TcpStream::connect(page.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // ...so the next is told so at once, not queued behind them.
    assert_eq!(page.get_with_token("/api/status"), 503);
    drop(idle);
    let start = Instant::now();
    while page.get_with_token("/api/status") != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "slots never came back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // One slow client holds up nobody else.
    let _slow = TcpStream::connect(page.addr).unwrap();
    assert_eq!(page.get_with_token("/api/status"), 200);
}
