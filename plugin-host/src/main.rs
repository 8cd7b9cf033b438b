//! `vx-plugin-host --plugin NAME --socket PATH`: runs one plugin in its own
//! process, so that a crash, hang or memory blow-up in a model never reaches
//! vxd. vxd spawns one host per plugin; the host connects back to the socket,
//! says Hello and serves jobs until vxd says Shutdown or goes away.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use vx_plugin_api::{Plugin, serve};

#[derive(Parser)]
#[command(version, about = "Runs one vx plugin; started by vxd, not by hand")]
struct Args {
    /// The plugin to run.
    #[arg(long)]
    plugin: String,
    /// vxd's socket for this host.
    #[arg(long)]
    socket: PathBuf,
}

fn plugin_named(name: &str) -> Option<Box<dyn Plugin>> {
    match name {
        "keyframes" => Some(Box::new(vx_plugin_keyframes::Keyframes)),
        _ => None,
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VX_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let Some(mut plugin) = plugin_named(&args.plugin) else {
        eprintln!("vx-plugin-host: unknown plugin {:?}", args.plugin);
        return ExitCode::from(2);
    };
    let _span = tracing::info_span!("host", plugin = %args.plugin, pid = std::process::id()).entered();
    match serve(plugin.as_mut(), &args.socket) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vx-plugin-host {}: {e}", args.plugin);
            ExitCode::FAILURE
        }
    }
}
