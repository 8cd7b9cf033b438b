//! A pool of model hosts for one plugin, shared by every worker.
//!
//! Each host of the pool has a thread of its own that owns the process
//! (`PR_SET_PDEATHSIG` fires when the *spawning thread* exits, so hosts must
//! be started from threads that live as long as they do). Workers submit
//! jobs to the pool's queue and whichever host is free takes the next one,
//! so the plugins of one file work on its segment side by side, and `jobs`
//! workers share `pool size` copies of each model instead of holding one
//! each.
//!
//! Supervision is per host, as before pooling: a host that dies on a job is
//! replaced and the job retried once; restarts back off; a host that fails
//! to start 3 times in a row, or dies on 5 files in a row, is disabled until
//! vxd restarts. A pool whose hosts are all disabled, or never started, is
//! down: its plugin is skipped and its stored results stay.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use vx_ctl_protocol::PluginState;
use vx_plugin_protocol::{Job, Needs, SegmentResult};

use crate::decode::Failure;
use crate::host::{Host, HostArgs, HostFailure, HostLimits, host_exe};
use crate::state::State;
use crate::validate;

/// A host that fails to start this many times in a row is disabled until
/// vxd restarts...
const MAX_START_FAILURES_IN_A_ROW: u32 = 3;
/// ...and so is one that dies on this many files in a row.
const MAX_FAILED_FILES_IN_A_ROW: u32 = 5;
/// Each host death after the first in a row doubles the wait before the next
/// start, from this up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What every host of every pool is started with.
#[derive(Clone)]
pub struct PoolConfig {
    pub limits: HostLimits,
    pub socket_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub artefact_dir: PathBuf,
    /// Inference threads per host.
    pub threads: usize,
}

/// What a plugin made of a file.
pub type Outcome = Result<Vec<SegmentResult>, Failure>;

/// One plugin job and where its outcome goes.
struct Request {
    job: Job,
    deadline: Duration,
    reply: Sender<Outcome>,
}

/// What the pool has learnt from its hosts' Hellos.
#[derive(Default)]
struct Known {
    version: Option<String>,
    needs: Option<Needs>,
    /// Hosts that are not disabled.
    alive: usize,
    /// The first host is up, or disabled after failing to start.
    first_start_done: bool,
}

struct Shared {
    plugin: String,
    state: Arc<State>,
    known: Mutex<Known>,
    first_start: Condvar,
}

impl Shared {
    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The last error status holds for this plugin's host `index`, or for
    /// any of its hosts.
    fn last_error(&self, index: Option<usize>) -> Option<String> {
        let state = self.state.lock();
        state
            .plugins
            .iter()
            .filter(|p| p.name == self.plugin && index.is_none_or(|i| p.worker == i as u32))
            .find_map(|p| p.last_error.clone())
    }
}

pub struct Pool {
    shared: Arc<Shared>,
    queue: Option<Sender<Request>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Pool {
    /// Starts `size` hosts for `plugin`, each on its own thread.
    pub fn start(plugin: &str, size: usize, config: &PoolConfig, state: Arc<State>) -> Pool {
        let shared = Arc::new(Shared {
            plugin: plugin.to_owned(),
            state,
            known: Mutex::new(Known {
                alive: size,
                ..Known::default()
            }),
            first_start: Condvar::new(),
        });
        let (queue, jobs) = crossbeam_channel::unbounded();
        let threads = (0..size)
            .map(|index| {
                shared.state.set_plugin(plugin, index, |_| {});
                let slot = Slot::new(shared.clone(), index, config.clone());
                let jobs = jobs.clone();
                std::thread::Builder::new()
                    .name(format!("host-{plugin}-{index}"))
                    .spawn(move || slot.serve(jobs))
                    .expect("spawn a host thread")
            })
            .collect();
        Pool {
            shared,
            queue: Some(queue),
            threads,
        }
    }

    pub fn plugin(&self) -> &str {
        &self.shared.plugin
    }

    /// Waits until the first host is up or has been disabled, so that a
    /// plugin counts as down only after it really failed to start.
    pub fn wait_first_start(&self) {
        let mut known = self.shared.known();
        while !known.first_start_done {
            known = self
                .shared
                .first_start
                .wait(known)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Whether the first host is up or has been disabled (see
    /// [`wait_first_start`](Self::wait_first_start)).
    pub fn first_start_done(&self) -> bool {
        self.shared.known().first_start_done
    }

    /// A host said Hello, and not every host is disabled.
    pub fn is_running(&self) -> bool {
        let known = self.shared.known();
        known.needs.is_some() && known.alive > 0
    }

    /// The plugin's version and what it needs decoded, once a host said Hello.
    pub fn hello(&self) -> Option<(String, Needs)> {
        let known = self.shared.known();
        Some((known.version.clone()?, known.needs?))
    }

    /// Queues `job` for the next free host; the outcome arrives on the
    /// returned channel (a host that died twice on it, or a pool with no
    /// host left, is a [`Failure::File`]).
    pub fn submit(&self, job: Job, deadline: Duration) -> Receiver<Outcome> {
        let (reply, outcome) = crossbeam_channel::bounded(1);
        let request = Request {
            job,
            deadline,
            reply,
        };
        let queue = self.queue.as_ref().expect("pool not stopped");
        if let Err(e) = queue.send(request) {
            let why = self.shared.last_error(None);
            let why = format!(
                "plugin not running: {}",
                why.as_deref().unwrap_or("its hosts are disabled")
            );
            let _ = e.into_inner().reply.send(Err(Failure::File(why)));
        }
        outcome
    }

    /// Stops every host once the queued jobs are done, waiting up to 2 s.
    /// A thread still starting its host is left behind: vxd is exiting, and
    /// the host dies with it (`PR_SET_PDEATHSIG`).
    pub fn stop(mut self) {
        self.queue = None; // each host thread ends when the queue is empty
        let until = std::time::Instant::now() + Duration::from_secs(2);
        while self.threads.iter().any(|t| !t.is_finished()) && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        for t in self.threads.drain(..).filter(|t| t.is_finished()) {
            let _ = t.join();
        }
    }
}

/// One host of a pool, and its record of failures.
struct Slot {
    shared: Arc<Shared>,
    index: usize,
    config: PoolConfig,
    host: Option<Host>,
    started: u64,
    deaths_in_a_row: u32,
    start_failures_in_a_row: u32,
    failed_files_in_a_row: u32,
    disabled: bool,
    next_job_id: u64,
}

impl Slot {
    fn new(shared: Arc<Shared>, index: usize, config: PoolConfig) -> Self {
        Self {
            shared,
            index,
            config,
            host: None,
            started: 0,
            deaths_in_a_row: 0,
            start_failures_in_a_row: 0,
            failed_files_in_a_row: 0,
            disabled: false,
            next_job_id: 1,
        }
    }

    /// Starts the host, then serves jobs until the queue closes or this host
    /// is disabled (the others then take the jobs).
    fn serve(mut self, jobs: Receiver<Request>) {
        // A host that did not start is tried again (with the backoff) until
        // it does or is disabled. Workers wait for the first host meanwhile,
        // so no file is indexed without a plugin that is about to come up.
        while !self.ensure_host() && !self.disabled {}
        if self.index == 0 {
            self.shared.known().first_start_done = true;
            self.shared.first_start.notify_all();
        }
        while !self.disabled {
            let Ok(request) = jobs.recv() else { break };
            let outcome = self.run(request.job, request.deadline);
            let _ = request.reply.send(outcome);
        }
        if let Some(h) = self.host.take() {
            h.stop();
        }
    }

    fn set_status(&self, update: impl FnOnce(&mut vx_ctl_protocol::PluginStatus)) {
        self.shared
            .state
            .set_plugin(&self.shared.plugin, self.index, update);
    }

    fn backoff(&self) -> Duration {
        match self.deaths_in_a_row {
            0 | 1 => Duration::ZERO, // the first retry is immediate
            n => FIRST_BACKOFF
                .saturating_mul(1 << (n - 2).min(16))
                .min(MAX_BACKOFF),
        }
    }

    fn ensure_host(&mut self) -> bool {
        if self.host.is_some() {
            return true;
        }
        if self.disabled {
            return false;
        }
        std::thread::sleep(self.backoff());
        let restart = self.started > 0;
        self.started += 1;
        self.set_status(|p| {
            p.state = PluginState::Starting;
            p.restarts += restart as u32;
        });
        let tag = format!("{}-{}", self.index, self.started);
        let args = HostArgs {
            exe: &host_exe(),
            plugin: &self.shared.plugin,
            socket_dir: &self.config.socket_dir,
            tag: &tag,
            cache_dir: &self.config.cache_dir,
            artefact_dir: Some(&self.config.artefact_dir),
            threads: self.config.threads,
        };
        match Host::start(args, self.config.limits) {
            Ok(h) => {
                tracing::info!(plugin = %self.shared.plugin, pid = h.pid(), needs = ?h.needs, "host ready");
                let mut known = self.shared.known();
                known.version = Some(h.version.clone());
                known.needs = Some(h.needs);
                drop(known);
                self.start_failures_in_a_row = 0;
                let pid = h.pid();
                self.set_status(|p| {
                    p.pid = Some(pid);
                    p.state = PluginState::Ready;
                });
                self.host = Some(h);
                true
            }
            Err(e) => {
                self.start_failures_in_a_row += 1;
                self.failed(&e);
                false
            }
        }
    }

    /// Records a host death; the host is gone and restarts on demand.
    fn failed(&mut self, e: &HostFailure) {
        self.host = None;
        self.deaths_in_a_row += 1;
        let disable = !self.disabled
            && (self.start_failures_in_a_row >= MAX_START_FAILURES_IN_A_ROW
                || self.failed_files_in_a_row >= MAX_FAILED_FILES_IN_A_ROW);
        if disable {
            self.disabled = true;
            self.shared.known().alive -= 1;
        }
        let disabled = self.disabled;
        tracing::warn!(plugin = %self.shared.plugin, disabled, "host failed: {e}");
        self.set_status(|p| {
            p.pid = None;
            p.crashes += 1;
            p.state = if disabled {
                PluginState::Disabled
            } else {
                PluginState::Exited
            };
            p.last_error = Some(e.to_string());
        });
    }

    /// Runs `job`. A host that dies on it is replaced and the job retried
    /// once; a second death fails this file for this plugin only.
    fn run(&mut self, job: Job, deadline: Duration) -> Outcome {
        let plugin = self.shared.plugin.clone();
        let mut last_error = String::new();
        for attempt in 1..=2 {
            if !self.ensure_host() {
                let why = self.shared.last_error(Some(self.index));
                return Err(Failure::File(format!(
                    "plugin not running: {}",
                    why.unwrap_or(last_error)
                )));
            }
            let job = Job {
                id: self.next_job_id,
                ..job.clone()
            };
            self.next_job_id += 1;
            self.shared.state.lock().plugin_jobs += 1;
            self.set_status(|p| p.state = PluginState::Busy);
            let host = self.host.as_mut().expect("ensured above");
            match host.run(&job, deadline) {
                Ok(outcome) => {
                    self.deaths_in_a_row = 0;
                    self.failed_files_in_a_row = 0;
                    self.set_status(|p| p.state = PluginState::Ready);
                    let segments = outcome
                        .map_err(|e| match e.temporary {
                            true => Failure::Temporary(e.to_string()),
                            false => Failure::File(e.to_string()),
                        })?
                        .segments;
                    let (segments, notes) = validate::check(segments, &job.artefact_dir);
                    if !notes.is_empty() {
                        let notes = notes.join("; ");
                        tracing::warn!(plugin = %plugin, "reply checked: {notes}");
                        // One warning per plugin, however many files: the
                        // log has each file's details.
                        self.shared.state.lock().warn(format!(
                            "plugin {plugin} sent results that had to be cut (see vxd's log)"
                        ));
                    }
                    return Ok(segments);
                }
                Err(e) => {
                    tracing::warn!(plugin = %plugin, attempt, "host died on this file: {e}");
                    last_error = e.to_string();
                    if attempt == 2 {
                        self.failed_files_in_a_row += 1;
                    }
                    self.failed(&e);
                }
            }
        }
        Err(Failure::File(last_error))
    }
}
