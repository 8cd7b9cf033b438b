//! What vxd reads from a control connection: the hello, then requests.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vx_ctl_protocol::{ClientHello, Request};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    if vx_wire::read_frame::<_, ClientHello>(&mut rest).is_ok() {
        while vx_wire::read_frame::<_, Request>(&mut rest).is_ok() {}
    }
});
