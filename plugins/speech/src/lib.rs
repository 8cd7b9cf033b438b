//! The speech plugin (being written).

use vx_plugin_api::{HostContext, JobInput, Needs, Plugin, PluginError, PluginOutput};

pub struct Speech;

impl Speech {
    /// Opens the plugin's models once; the host reuses them for every file.
    pub fn open(_ctx: &HostContext) -> Result<Self, vx_models::ModelError> {
        Ok(Self)
    }
}

impl Plugin for Speech {
    fn name(&self) -> &str {
        "speech"
    }
    fn version(&self) -> &str {
        "0"
    }
    fn needs(&self) -> Needs {
        Needs {
            frame_max_side: None,
            audio: true,
        }
    }
    fn process(&mut self, _input: &JobInput<'_>) -> Result<PluginOutput, PluginError> {
        Err("not written yet".into())
    }
}
