//! `vxd`, the vx media-indexing daemon.
//!
//! It watches folders, decodes each media file once into shared memory, runs
//! one `vx-plugin-host` process per plugin over a local socket, indexes what
//! they find in tantivy, and answers `vxctl` on a control socket. See
//! ARCHITECTURE.md for the whole picture.

mod batch;
mod budget;
mod control;
mod decode;
mod embed;
mod host;
mod page;
mod pipeline;
mod pool;
mod sd;
mod state;
mod validate;
mod watch;

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use vx_config::Settings;
use vx_index::MediaIndex;

use crate::batch::Batch;
use crate::control::Control;
use crate::pipeline::Pipeline;
use crate::state::{InProgress, State};

#[derive(Parser)]
#[command(
    version,
    about = "The vx media-indexing daemon: makes your videos, recordings and photos searchable",
    long_about = "Watches the configured folders, indexes every video, audio file and image in them, \
                  and answers vxctl. Runs in the foreground; stop it with SIGTERM or Ctrl-C.\n\n\
                  Configuration: --config FILE, else $XDG_CONFIG_HOME/vx/vxd.toml if it exists; \
                  VX_* variables override it. See --print-config for every key and its default."
)]
struct Args {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the commented default configuration and exit.
    #[arg(long)]
    print_config: bool,
    /// Detach and run in the background, logging to STATE_DIR/vxd.log.
    /// (Under systemd, use the user unit instead: `vxctl install-service`.)
    #[arg(long)]
    daemon: bool,
}

fn main() {
    let args = Args::parse();
    if args.print_config {
        print!("{}", vx_config::EXAMPLE_TOML);
        return;
    }
    vx_config::init_logging("info,tantivy=warn");
    if let Err(e) = run(args) {
        eprintln!("vxd: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let settings = Arc::new(Settings::load(args.config.as_deref())?);
    let cluster = settings.cluster.clone();
    let coordinates = cluster.as_ref().is_none_or(|c| c.coordinates());
    let works = cluster.as_ref().is_none_or(|c| c.works());
    if settings.watch.is_empty() && coordinates {
        bail!("no folders to watch: set `watch = [\"~/Videos\"]` in the config or VX_WATCH");
    }
    let filter = Arc::new(
        watch::Filter::new(settings.watch.clone(), &settings.ignore)
            .context("invalid `ignore` glob in the config")?,
    );
    std::fs::create_dir_all(&settings.state_dir)
        .with_context(|| format!("cannot create state dir {}", settings.state_dir.display()))?;
    // The index and thumbnails show what is in the user's files: theirs only,
    // in the foreground too. Hosts inherit it.
    // SAFETY: umask has no preconditions.
    unsafe { libc::umask(0o077) };
    let mut lock = lock_state_dir(&settings.state_dir)?;
    if args.daemon {
        // Before any thread exists: fork keeps only the calling thread.
        let log_path = settings.state_dir.join("vxd.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        daemonize::Daemonize::new()
            .working_directory("/")
            .umask(0o077)
            .stdout(log.try_clone()?)
            .stderr(log)
            .start()
            .context("cannot detach")?;
        write_pid(&mut lock)?;
    }
    budget::pin_to_cores(settings.cores());
    let index = Arc::new(MediaIndex::open(&settings.state_dir.join("index"))?);
    index.set_artefact_dir(&settings.artefact_dir());
    tracing::info!(
        jobs = settings.jobs,
        cores = settings.cores(),
        host_pool_size = settings.host_pool_size,
        host_threads = settings.host_threads,
        "workers"
    );
    let state = Arc::new(State::default());
    state.lock().hours = settings.hours();
    for dir in settings
        .watch
        .iter()
        .filter(|d| std::fs::read_dir(d).is_err())
    {
        state.lock().warn(format!(
            "watched folder {} is missing or unreadable (not mounted?): its indexed files are kept until it is back",
            dir.display()
        ));
    }
    {
        let mut s = state.lock();
        s.crawling = true;
        // Failures persist in the index: a poison file stays listed (and is not
        // retried) until it changes or `vxctl retry` asks for it.
        for (path, plugin, reason) in index.failures()? {
            if path.exists() {
                s.failed.insert((path, plugin), reason);
            }
        }
    }

    let (in_progress, suspects) = InProgress::open(settings.state_dir.join("in-progress"))
        .context("cannot open the in-progress notes")?;
    for (path, deaths) in &suspects {
        tracing::warn!(path = %path.display(), deaths, "vxd stopped while working on this file");
    }
    state.lock().suspects = suspects;
    let in_progress = Arc::new(in_progress);
    let socket_dir = control::prepare_socket_dir(&settings.socket)?;
    // Plugins are listed in status in the configured order, the embedder last.
    let pools = Arc::new(match works {
        true => start_pools(&settings, &state, &socket_dir),
        false => vec![],
    });
    let batch = Batch::new(index.clone(), state.clone(), settings.clone());
    let bus = match &cluster {
        Some(c) => {
            tracing::info!(nats = %c.nats, role = ?c.role, name = %c.name, "joining the cluster");
            if works {
                // Copies a killed worker left behind.
                let _ = std::fs::remove_dir_all(pipeline::cluster_inbox(&settings));
            }
            Some(vx_cluster::Bus::connect(c)?)
        }
        None => None,
    };
    let coordinator = bus
        .as_ref()
        .filter(|_| coordinates)
        .map(|bus| vx_cluster::Coordinator::start(bus.clone()));
    let worker = bus
        .as_ref()
        .filter(|_| works)
        .map(|bus| vx_cluster::Worker::start(bus.clone(), settings.jobs));
    if let Some(bus) = &bus {
        state.lock().cluster = Some(state::ClusterView {
            bus: bus.clone(),
            coordinator: coordinator.clone(),
        });
    }
    // A coordinator has `in_flight` files out at once; a worker (or a
    // machine on its own) works on `jobs` at once.
    let mut modes: Vec<pipeline::Mode> = vec![];
    if let Some(c) = &coordinator {
        let n = cluster.as_ref().map_or(1, |c| c.in_flight);
        modes.extend((0..n).map(|_| pipeline::Mode::Coordinator(c.clone())));
    }
    if let Some(w) = &worker {
        modes.extend((0..settings.jobs).map(|_| pipeline::Mode::Worker(w.clone())));
    }
    if bus.is_none() {
        modes.extend((0..settings.jobs).map(|_| pipeline::Mode::Local));
    }
    let n_pipelines = modes.len();
    let pipelines: Vec<Pipeline> = modes
        .into_iter()
        .enumerate()
        .map(|(worker, mode)| {
            Pipeline::new(
                settings.clone(),
                state.clone(),
                index.clone(),
                pools.clone(),
                worker,
                in_progress.clone(),
                batch.clone(),
            )
            .in_mode(mode)
        })
        .collect();
    // Words are embedded where they are indexed: not on a worker.
    let embedder = match coordinates {
        true => start_embedder(&settings, &state, &index, &socket_dir),
        false => Err("a cluster worker indexes nothing: search on the coordinator".into()),
    };
    let control = Arc::new(Control {
        state: state.clone(),
        index: index.clone(),
        filter: filter.clone(),
        index_dir: settings.state_dir.join("index"),
        embedder,
    });
    control::serve(&settings.socket, control.clone())?;
    let page_file = match settings.page_port {
        0 => None,
        port => match page::serve(control, port, &socket_dir, settings.artefact_dir()) {
            Ok(file) => Some(file),
            Err(e) => {
                // Searching from vxctl still works: say so, and go on.
                tracing::warn!("no search page: {e:#}");
                state.lock().warn(format!("no search page: {e:#}"));
                None
            }
        },
    };

    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(n_pipelines);
    for (worker, pipeline) in pipelines.into_iter().enumerate() {
        let done_tx = done_tx.clone();
        std::thread::Builder::new()
            .name(format!("pipeline-{worker}"))
            .spawn(move || {
                pipeline.run();
                let _ = done_tx.send(());
            })?;
    }

    let opts = watch::WatchOptions {
        filter: filter.clone(),
        settle: Duration::from_millis(settings.settle_ms),
        rescan_every: Duration::from_secs_f64(settings.rescan_interval_s),
    };
    // A worker watches nothing: its files come as jobs.
    let _watcher = coordinates.then(|| watch::start(opts, state.clone(), index.clone()));
    let crawl_state = state.clone();
    let crawl_roots = if coordinates {
        filter.roots.clone()
    } else {
        vec![]
    };
    std::thread::Builder::new()
        .name("crawl".into())
        .spawn(move || {
            let started = Instant::now();
            for root in &crawl_roots {
                watch::crawl(
                    root,
                    &filter,
                    &mut |p, size| crawl_state.enqueue(p, size),
                    &mut |p| crawl_state.report(p),
                );
            }
            let n = crawl_state.lock().seen.len();
            crawl_state.lock().crawling = false;
            tracing::info!(
                files = n,
                secs = format!("{:.2}", started.elapsed().as_secs_f64()),
                "crawl done"
            );
        })?;
    tracing::info!(pid = std::process::id(), socket = %settings.socket.display(), "vxd ready");
    sd::notify(&format!(
        "READY=1\nMAINPID={}\nSTATUS=starting: crawling the watched folders",
        std::process::id()
    ));

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let mut last_status = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if last_status.elapsed() >= Duration::from_secs(2) {
            last_status = Instant::now();
            // A worker announces itself once every pool has started, so a
            // coordinator never plans with half its plugins.
            if let Some(w) = &worker
                && pools.iter().all(pool::Pool::first_start_done)
            {
                w.set_plugins(pipeline::running_plugins(&pools));
            }
            sd::notify(&format!("STATUS={}", one_line_status(&state)));
        }
    }

    tracing::info!("shutting down");
    sd::notify("STOPPING=1");
    state.shut_down();
    if let Some(w) = &worker {
        w.shut_down();
    }
    // Workers finish their current plugin call, waiting at most this long.
    let deadline = Instant::now() + Duration::from_secs(5);
    let stopped = (0..n_pipelines).all(|_| done_rx.recv_deadline(deadline).is_ok());
    // What the workers put is committed, so the next start need not redo it.
    batch.commit();
    match Arc::try_unwrap(pools) {
        Ok(pools) if stopped => pools.into_iter().for_each(pool::Pool::stop),
        _ => {
            tracing::warn!("workers did not stop in time; killing hosts");
            for pid in state.lock().plugins.iter().filter_map(|p| p.pid) {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
    }
    let _ = std::fs::remove_file(&settings.socket);
    if let Some(f) = page_file {
        let _ = std::fs::remove_file(f);
    }
    Ok(())
}

/// A pool of hosts for each configured plugin that reads files (the text
/// embedder has its own thread). A plugin whose models are missing gets
/// none: status says which model and how to install it.
fn start_pools(settings: &Settings, state: &Arc<State>, socket_dir: &Path) -> Vec<pool::Pool> {
    let config = pool::PoolConfig {
        limits: host::HostLimits::from_settings(settings),
        socket_dir: socket_dir.to_owned(),
        cache_dir: settings.cache_dir.clone(),
        artefact_dir: settings.artefact_dir(),
        threads: settings.host_threads,
    };
    let checked: Vec<(&str, Option<_>)> = settings
        .plugins
        .iter()
        .filter(|p| *p != vx_config::TEXT_EMBED)
        .map(|p| {
            (
                p.as_str(),
                vx_models::missing_for_plugin(p, &settings.cache_dir),
            )
        })
        .collect();
    let ready: Vec<&str> = checked
        .iter()
        .filter(|(_, missing)| missing.is_none())
        .map(|(p, _)| *p)
        .collect();
    let embedder = settings.plugins.iter().any(|p| p == vx_config::TEXT_EMBED);
    let (budget, warning) = budget::plan(settings, settings.cores(), &ready, embedder);
    if let Some(w) = warning {
        tracing::warn!("{w}");
        state.lock().warn(w);
    }
    // In the configured order, which status keeps.
    let mut sizes = budget.hosts.iter().map(|(_, n)| *n as usize);
    let mut pools = vec![];
    for (plugin, missing) in checked {
        match missing {
            None => {
                let size = sizes.next().unwrap_or(1);
                pools.push(pool::Pool::start(plugin, size, &config, state.clone()));
            }
            Some(missing) => {
                tracing::warn!(plugin = %plugin, "not started: {missing}");
                state.set_missing(plugin, 0, missing.to_string());
            }
        }
    }
    state.lock().budget = budget;
    pools
}

/// The text embedder, or why search by meaning is off: not configured, or
/// its model is not installed (status then lists it as missing).
fn start_embedder(
    settings: &Arc<vx_config::Settings>,
    state: &Arc<State>,
    index: &Arc<MediaIndex>,
    socket_dir: &Path,
) -> Result<Arc<embed::Embedder>, String> {
    use vx_config::TEXT_EMBED;
    if !settings.plugins.iter().any(|p| p == TEXT_EMBED) {
        return Err(format!(
            "the {TEXT_EMBED} plugin is not in the configured plugins"
        ));
    }
    if let Some(missing) = vx_models::missing_for_plugin(TEXT_EMBED, &settings.cache_dir) {
        tracing::warn!(plugin = TEXT_EMBED, "not started: {missing}");
        state.set_missing(TEXT_EMBED, 0, missing.to_string());
        return Err(missing.to_string());
    }
    embed::Embedder::start(
        settings.clone(),
        state.clone(),
        index.clone(),
        socket_dir.to_owned(),
    )
    .map_err(|e| format!("cannot start the embedding thread: {e}"))
}

/// Takes an exclusive lock on `state_dir/vxd.pid`, so two daemons never share
/// an index. The lock dies with the process, whatever kills it.
fn lock_state_dir(dir: &Path) -> anyhow::Result<File> {
    let path = dir.join("vxd.pid");
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let other = std::fs::read_to_string(&path).unwrap_or_default();
        bail!(
            "another vxd (pid {}) is using {}",
            other.trim(),
            dir.display()
        );
    }
    write_pid(&mut f)?;
    Ok(f)
}

fn write_pid(f: &mut File) -> std::io::Result<()> {
    use std::io::Seek;
    f.set_len(0)?;
    f.rewind()?;
    writeln!(f, "{}", std::process::id())
}

/// What `systemctl --user status vxd` shows.
fn one_line_status(state: &State) -> String {
    let s = state.lock();
    let busy = s.working.len();
    let queued = s.queue.len() + s.settling;
    let mood = if s.paused {
        "paused"
    } else if let Some(why) = &s.stalled {
        why
    } else if busy + queued == 0 {
        "idle"
    } else {
        "indexing"
    };
    format!(
        "{mood}: {} indexed of {} seen, {queued} queued, {} failed",
        s.indexed.len(),
        s.seen.len(),
        s.failed.len()
    )
}
