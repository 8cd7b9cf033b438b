//! `vx-plugin-host --plugin NAME --socket PATH`: runs one plugin in its own
//! process, so that a crash, hang or memory blow-up in a model never reaches
//! vxd. vxd spawns one host per plugin; the host connects back to the socket,
//! says Hello and serves jobs until vxd says Shutdown or goes away.
//!
//! A host is untrusted: once connected, and before it opens a model, it
//! confines itself ([`confine`]) to reading the system and its cache and
//! writing its artefact folder, with no network.
//!
//! vxd caps the host's address space (RLIMIT_AS). When an allocation fails
//! under that cap, the allocator below exits at once with
//! [`EXIT_OUT_OF_MEMORY`], so vxd can name the memory limit as the reason
//! instead of an anonymous abort.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::process::ExitCode;

mod confine;

use clap::Parser;
use vx_plugin_api::{HostContext, serve};
use vx_plugin_protocol::{EXIT_NO_MODEL, EXIT_OUT_OF_MEMORY};

struct ExitOnOutOfMemory;

fn out_of_memory() -> ! {
    const MSG: &[u8] = b"vx-plugin-host: allocation failed: memory limit reached\n";
    // SAFETY: write(2) and _exit(2) are safe to call from any state; no
    // allocation happens here.
    unsafe {
        libc::write(2, MSG.as_ptr().cast(), MSG.len());
        libc::_exit(EXIT_OUT_OF_MEMORY)
    }
}

// SAFETY: every call forwards to System; only a null result is intercepted.
unsafe impl GlobalAlloc for ExitOnOutOfMemory {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc(layout) };
        if p.is_null() { out_of_memory() } else { p }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc_zeroed(layout) };
        if p.is_null() { out_of_memory() } else { p }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() { out_of_memory() } else { p }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: ExitOnOutOfMemory = ExitOnOutOfMemory;

#[derive(Parser)]
#[command(version, about = "Runs one vx plugin; started by vxd, not by hand")]
struct Args {
    /// The plugin to run.
    #[arg(long)]
    plugin: String,
    /// vxd's socket for this host.
    #[arg(long)]
    socket: PathBuf,
    /// Where the models and ONNX Runtime are installed.
    #[arg(long, default_value_os_t = vx_config::default_cache_dir())]
    cache_dir: PathBuf,
    /// Threads the plugin may use for inference (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// The one folder the plugin may write to (created if missing); without
    /// it, the host may write nowhere.
    #[arg(long)]
    artefact_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    vx_config::init_logging("warn");
    let args = Args::parse();
    let Some(open) = vx_plugin_host::opener(&args.plugin) else {
        eprintln!(
            "vx-plugin-host: plugin {:?} is not built into this host",
            args.plugin
        );
        return ExitCode::from(2);
    };
    let threads = match args.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    // Connect first: the socket's folder is not among what the host may
    // reach once confined.
    let conn = match vx_plugin_api::connect(&args.socket) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vx-plugin-host {}: {e}", args.plugin);
            return ExitCode::FAILURE;
        }
    };
    if let Some(dir) = &args.artefact_dir
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        eprintln!(
            "vx-plugin-host {}: cannot create {}: {e}",
            args.plugin,
            dir.display()
        );
        return ExitCode::FAILURE;
    }
    let _span =
        tracing::info_span!("host", plugin = %args.plugin, pid = std::process::id()).entered();
    // Before the model is opened: a model file is input too, and the
    // runtimes' threads must inherit the confinement.
    confine::confine(&confine::Paths {
        cache_dir: &args.cache_dir,
        artefact_dir: args.artefact_dir.as_deref(),
    });
    let ctx = HostContext {
        cache_dir: args.cache_dir,
        threads,
    };
    let mut plugin = match open(&ctx) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("vx-plugin-host {}: {e}", args.plugin);
            return ExitCode::from(EXIT_NO_MODEL as u8);
        }
    };
    match serve(plugin.as_mut(), &conn) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vx-plugin-host {}: {e}", args.plugin);
            ExitCode::FAILURE
        }
    }
}
