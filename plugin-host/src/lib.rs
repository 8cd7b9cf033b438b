//! The plugins a `vx-plugin-host` carries, by name: the host binary opens
//! one per process, and the benchmark opens them in-process to measure
//! each model without IPC.

use vx_plugin_api::{HostContext, Plugin};

pub type Opener = fn(&HostContext) -> Result<Box<dyn Plugin>, vx_models::ModelError>;

/// How to open the plugin called `name`; `None` if this host has no such plugin.
pub fn opener(name: &str) -> Option<Opener> {
    fn boxed<P: Plugin + 'static>(
        p: Result<P, vx_models::ModelError>,
    ) -> Result<Box<dyn Plugin>, vx_models::ModelError> {
        p.map(|p| Box::new(p) as Box<dyn Plugin>)
    }
    Some(match name {
        "keyframes" => |_| Ok(Box::new(vx_plugin_keyframes::Keyframes)),
        "objects" => |ctx| boxed(vx_plugin_objects::Objects::open(ctx)),
        "faces" => |ctx| boxed(vx_plugin_faces::Faces::open(ctx)),
        "ocr" => |ctx| boxed(vx_plugin_ocr::Ocr::open(ctx)),
        "speech" => |ctx| boxed(vx_plugin_speech::Speech::open(ctx)),
        "text-embed" => |ctx| boxed(vx_plugin_text_embed::TextEmbed::open(ctx)),
        #[cfg(feature = "misbehave")]
        "misbehave" => |_| Ok(Box::new(vx_plugin_misbehave::Misbehave::from_env())),
        _ => return None,
    })
}
