//! `vx-decoder`: vxd's decoding subprocess. vxd spawns it with its end of a
//! unix socket as fd 3 and an address-space limit; it serves decode requests
//! until vxd closes the socket (see the library's docs).

use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

fn main() -> ExitCode {
    vx_config::init_logging("info");
    // SAFETY: vxd hands us this fd for exactly this purpose, and nothing
    // else in the process owns it.
    let sock = unsafe { UnixStream::from_raw_fd(vx_decoder::SOCKET_FD) };
    match vx_decoder::serve(sock) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("vx-decoder: {e}");
            ExitCode::FAILURE
        }
    }
}
