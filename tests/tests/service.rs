//! vxd as a service: the systemd user unit, readiness notification, the
//! `--daemon` mode, one daemon per state dir, and the control socket's
//! permissions.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use vx_e2e::*;

fn vxctl() -> Command {
    Command::new(bin_dir().join("vxctl"))
}

#[test]
fn the_user_unit_is_hardened_and_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let out = vxctl()
        .args(["install-service", "--print"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let unit = String::from_utf8(out.stdout).unwrap();
    for line in [
        "Type=notify",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "MemoryMax=",
        "Nice=",
        "IOSchedulingClass=idle",
        "PrivateUsers=yes",
        // The search page listens on 127.0.0.1: IPv4, in the host's network.
        "RestrictAddressFamilies=AF_UNIX AF_INET\n",
        "SystemCallFilter=@system-service landlock_create_ruleset landlock_add_rule landlock_restrict_self seccomp\n",
        "VX_STATE_DIR=%S/vx",
    ] {
        assert!(unit.contains(line), "unit lacks {line}");
    }
    let vxd = bin_dir().join("vxd").canonicalize().unwrap();
    assert!(unit.contains(&format!("ExecStart={}", vxd.display())));
    let path = dir.path().join("vxd.service");
    std::fs::write(&path, &unit).unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (apt: systemd)");
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && complaints.trim().is_empty(),
        "systemd-analyze verify: {complaints}"
    );
    // 8.9 before the unit was tightened, 1.2 after, 1.9 with the network
    // the search page needs (systemd 252).
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&path)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&security.stdout);
    let exposure: f64 = report
        .lines()
        .find_map(|l| l.split("Overall exposure level for vxd.service: ").nth(1))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in {report}"));
    assert!(exposure <= 2.0, "exposure {exposure}\n{report}");
}

#[test]
fn install_service_writes_the_unit_under_the_users_config() {
    let home = tempfile::tempdir().unwrap();
    let out = vxctl()
        .arg("install-service")
        .env("XDG_CONFIG_HOME", home.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let unit = std::fs::read_to_string(home.path().join("systemd/user/vxd.service")).unwrap();
    assert!(unit.contains("ExecStart=/"), "{unit}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("systemctl --user enable --now vxd"));
}

#[test]
fn vxd_tells_systemd_when_it_is_ready_and_what_it_is_doing() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let d = Daemon::start_with("", &[("NOTIFY_SOCKET", sock_path.to_str().unwrap())], |m| {
        make_image(&m.join("a.png"))
    });
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("READY=1 within 20 s");
    let first = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        first.contains("READY=1") && first.contains(&format!("MAINPID={}", d.pid())),
        "{first}"
    );
    let n = sock.recv(&mut buf).expect("a STATUS= update");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("STATUS="));
}

#[test]
fn vxd_daemon_detaches_and_a_second_vxd_on_the_same_state_dir_refuses() {
    let d = Daemon::start(|_| {});
    d.wait_idle(30);
    // The foreground one holds the state dir: a detached one must refuse too.
    let out = Command::new(bin_dir().join("vxd"))
        .args(["--daemon", "--config"])
        .arg(&d.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("another vxd (pid {})", d.pid()))
    );

    let root = tempfile::tempdir().unwrap();
    let media = root.path().join("media");
    std::fs::create_dir(&media).unwrap();
    make_image(&media.join("a.png"));
    let socket = root.path().join("run/vxd.sock");
    let config = root.path().join("vxd.toml");
    std::fs::write(
        &config,
        format!(
            "watch = [{media:?}]\nstate_dir = {:?}\ncache_dir = {:?}\nsocket = {socket:?}\npage_port = 0\n",
            root.path().join("state"),
            root.path().join("cache")
        ),
    )
    .unwrap();
    let status = Command::new(bin_dir().join("vxd"))
        .args(["--daemon", "--config"])
        .arg(&config)
        .status()
        .unwrap();
    assert!(status.success(), "the parent returns at once");
    assert!(eventually(Duration::from_secs(20), || socket.exists()));
    let out = vxctl()
        .arg("--socket")
        .arg(&socket)
        .args(["wait", "--timeout", "60"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let pidfile = std::fs::read_to_string(root.path().join("state/vxd.pid")).unwrap();
    let pid: i32 = pidfile.trim().parse().unwrap();
    assert!(process_alive(pid));
    assert!(root.path().join("state/vxd.log").exists());
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    assert!(
        eventually(Duration::from_secs(15), || !process_alive(pid)),
        "the daemon did not stop"
    );
}

#[test]
fn the_control_socket_is_private_to_its_user() {
    let d = Daemon::start(|_| {});
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&d.socket), 0o600);
    assert_eq!(mode(d.socket.parent().unwrap()), 0o700);
}
