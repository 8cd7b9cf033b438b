//! vxctl's errors when vxd is absent or speaks another protocol, or its
//! arguments are out of range.

use std::io::BufReader;
use std::os::unix::net::UnixListener;
use std::process::Command;

use vx_ctl_protocol::{ClientHello, DaemonHello};
use vx_e2e::bin_dir;
use vx_wire::{read_frame, write_frame};

fn vxctl(socket: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(bin_dir().join("vxctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn no_daemon_gives_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("vxd.sock");
    let (ok, err) = vxctl(&sock, &["status"]);
    assert!(!ok);
    assert!(err.contains("vxd is not running (no socket at"), "{err}");

    // A socket file left by a killed daemon.
    drop(UnixListener::bind(&sock).unwrap());
    let (ok, err) = vxctl(&sock, &["search", "x"]);
    assert!(!ok);
    assert!(err.contains("stale socket"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn wait_takes_an_endless_timeout_and_refuses_a_meaningless_one() {
    let d = vx_e2e::Daemon::start(|m| vx_e2e::make_image(&m.join("a.png")));
    for endless in ["inf", "1e300"] {
        let (ok, err) = vxctl(&d.socket, &["wait", "--timeout", endless]);
        assert!(ok, "--timeout {endless}: {err}");
    }
    for wrong in ["nan", "-1", "soon"] {
        let (ok, err) = vxctl(&d.socket, &["wait", &format!("--timeout={wrong}")]);
        assert!(!ok && !err.contains("panicked"), "--timeout {wrong}: {err}");
        assert!(err.contains("--timeout"), "{err}");
    }
}

#[test]
fn a_daemon_speaking_a_newer_protocol_is_named_as_newer() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("vxd.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    // A stand-in for a future vxd: only the frozen hello matters here.
    let peer = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let hello: ClientHello = read_frame(&mut BufReader::new(&conn)).unwrap();
        let ours = DaemonHello {
            protocol: hello.protocol + 1,
            daemon_version: "9.9.9".into(),
            pid: 4242,
        };
        write_frame(&mut &conn, &ours).unwrap();
    });
    let (ok, err) = vxctl(&sock, &["status"]);
    peer.join().unwrap();
    assert!(!ok);
    assert!(
        err.contains("vxd 9.9.9 (pid 4242) is newer than vxctl"),
        "{err}"
    );
}

/// `vxctl … | head` stops quietly once the reader is gone.
#[test]
fn a_closed_pipe_ends_vxctl_quietly() {
    let d = vx_e2e::Daemon::start(|m| vx_e2e::make_image(&m.join("a.png")));
    d.wait_idle(60);
    let (read, write) = std::io::pipe().unwrap();
    drop(read); // the reader is gone before vxctl writes
    let out = Command::new(bin_dir().join("vxctl"))
        .arg("--socket")
        .arg(&d.socket)
        .args(["status", "--json"])
        .stdout(write)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.status.success());
}
