//! The objects plugin (being written).

use vx_plugin_api::{HostContext, JobInput, Needs, Plugin, PluginError, PluginOutput};

pub struct Objects;

impl Objects {
    /// Opens the plugin's models once; the host reuses them for every file.
    pub fn open(_ctx: &HostContext) -> Result<Self, vx_models::ModelError> {
        Ok(Self)
    }
}

impl Plugin for Objects {
    fn name(&self) -> &str {
        "objects"
    }
    fn version(&self) -> &str {
        "0"
    }
    fn needs(&self) -> Needs {
        Needs { frame_max_side: Some(640), audio: false }
    }
    fn process(&mut self, _input: &JobInput<'_>) -> Result<PluginOutput, PluginError> {
        Err("not written yet".into())
    }
}
