//! systemd's service notification protocol, by hand: one datagram to the
//! socket named in `$NOTIFY_SOCKET` (a path, or an abstract name after '@').
//! Without that variable (vxd not started by systemd) it does nothing.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends e.g. `READY=1`, `STATUS=…` or `STOPPING=1`; failures are logged only.
pub fn notify(message: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let bytes = target.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(&target),
    };
    let sent =
        addr.and_then(|addr| UnixDatagram::unbound()?.send_to_addr(message.as_bytes(), &addr));
    if let Err(e) = sent {
        tracing::debug!("sd_notify to {}: {e}", target.to_string_lossy());
    }
}
