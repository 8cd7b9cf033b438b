//! The frame decoder every socket uses, on arbitrary bytes: any error is
//! fine, a panic or an allocation beyond the frame cap is not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vx_plugin_protocol::{DaemonToHost, HostToDaemon};

fuzz_target!(|data: &[u8]| {
    let _ = vx_wire::read_frame::<_, HostToDaemon>(&mut &data[..]);
    let _ = vx_wire::read_frame::<_, DaemonToHost>(&mut &data[..]);
});
