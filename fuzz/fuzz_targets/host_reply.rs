//! A host's reply, decoded and then checked the way vxd checks it before
//! indexing: whatever a hostile host sends, the check neither panics nor
//! lets impossible times or control characters through.
#![no_main]

#[path = "../../daemon/src/validate.rs"]
#[allow(dead_code)]
mod validate;

use libfuzzer_sys::fuzz_target;
use vx_plugin_protocol::HostToDaemon;

fuzz_target!(|data: &[u8]| {
    let Ok(HostToDaemon::Done(reply)) = vx_wire::read_frame::<_, HostToDaemon>(&mut &data[..])
    else {
        return;
    };
    let Ok(output) = reply.outcome else {
        return;
    };
    let (kept, _) = validate::check(
        output.segments,
        std::path::Path::new("/nonexistent/artefacts"),
    );
    for s in &kept {
        assert!(s.start_s.is_finite() && s.end_s >= s.start_s && s.start_s >= 0.0);
        assert!(
            !s.text
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t')
        );
        assert!(s.labels.iter().all(|l| !l.chars().any(char::is_control)));
        assert!(s.thumbnail.is_none());
    }
});
