//! The worker's side: jobs in, kept alive while they run, outcomes back.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::PullConsumer;
use futures_util::StreamExt;

use crate::{
    Bus, HEARTBEAT, HEARTBEAT_EVERY, Heartbeat, JOBS, Job, Outcome, RESULTS_SUBJECT, STARTED,
    Started, WORKERS, decode, encode,
};

/// How long a worker waits for a file to appear in the object store.
const STORE_WAIT: Duration = Duration::from_secs(60);
/// How long one pull waits for a job before asking again (and checking
/// for shutdown).
const PULL_WAIT: Duration = Duration::from_secs(1);

pub struct Worker {
    bus: Arc<Bus>,
    slots: usize,
    gate: Arc<Gate>,
    stop: AtomicBool,
    plugins: Mutex<Vec<String>>,
    /// The jobs' consumer, looked up once (it is durable: a server restart
    /// keeps it).
    consumer: tokio::sync::OnceCell<PullConsumer>,
}

/// A job this worker holds. While it lives, a task tells the server the
/// job is in progress: through the fetch and the decode (whose own watchdog
/// stops a decoder that makes no progress), then until the deadline set
/// with [`Delivery::extend`] once the file's duration is known. A worker
/// stuck past it loses the job to another. Dropped without
/// [`Delivery::finish`] (vxd panicked), the job goes back at once.
pub struct Delivery {
    pub job: Job,
    /// Which delivery this is, from 1.
    pub attempt: u32,
    /// The most deliveries a job gets.
    max_deliver: u32,
    bus: Arc<Bus>,
    message: Arc<async_nats::jetstream::Message>,
    /// Milliseconds since `since` until which the job is kept alive.
    alive_until: Arc<AtomicU64>,
    since: Instant,
    gate: Arc<Gate>,
    /// This job runs alone (a redelivery).
    alone: bool,
    /// The file fetched from the object store, removed at the end.
    fetched: Option<PathBuf>,
    done: bool,
}

impl Worker {
    /// Starts the heartbeat; `slots` jobs are taken at once.
    pub fn start(bus: Arc<Bus>, slots: usize) -> Arc<Self> {
        let me = Arc::new(Self {
            bus: bus.clone(),
            slots,
            gate: Arc::default(),
            stop: AtomicBool::new(false),
            plugins: Mutex::default(),
            consumer: tokio::sync::OnceCell::new(),
        });
        bus.rt.handle().spawn(me.clone().beat());
        me
    }

    /// What the heartbeat says this worker runs (`name@version`).
    pub fn set_plugins(&self, plugins: Vec<String>) {
        *self.plugins.lock().unwrap() = plugins;
    }

    /// Stops taking jobs: [`Worker::next`] returns `None`.
    pub fn shut_down(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// The next job, blocking; `None` once shut down.
    pub fn next(&self) -> Option<Delivery> {
        let bus = &self.bus;
        let consumer: &PullConsumer = bus
            .rt
            .block_on(self.consumer.get_or_try_init(|| async {
                loop {
                    let found = async {
                        let stream = bus.js.get_stream(JOBS).await.map_err(crate::js_err)?;
                        stream.get_consumer(WORKERS).await.map_err(crate::js_err)
                    };
                    match found.await {
                        Ok(c) => return Ok(c),
                        Err(_) if self.stop.load(Ordering::Relaxed) => return Err(()),
                        Err(e) => {
                            tracing::warn!("cannot reach the job queue: {e}; trying again");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            }))
            .ok()?;
        while !self.stop.load(Ordering::Relaxed) {
            self.gate.wait_while_alone();
            let pulled = bus.rt.block_on(async {
                let mut batch = consumer
                    .batch()
                    .max_messages(1)
                    .expires(PULL_WAIT)
                    .messages()
                    .await
                    .map_err(crate::js_err)?;
                match batch.next().await {
                    Some(m) => m.map(Some).map_err(crate::js_err),
                    None => Ok(None),
                }
            });
            let message = match pulled {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(e) => {
                    tracing::debug!("pulling a job: {e}");
                    std::thread::sleep(Duration::from_millis(500));
                    continue;
                }
            };
            let attempt = message.info().map_or(1, |i| i.delivered.max(1) as u32);
            let job = match decode::<Job>(&message.payload) {
                Ok(job) => job,
                Err(e) => {
                    // Answered, so that its file fails instead of waiting.
                    let why = format!(
                        "a worker cannot read its job ({e}): do all machines run the same vx?"
                    );
                    tracing::error!("{why}");
                    let id = crate::coordinator::message_id(message.headers.as_ref());
                    let outcome = Outcome {
                        job: id.clone(),
                        worker: bus.settings.name.clone(),
                        kind: vx_plugin_protocol::MediaKind::Video,
                        info: Default::default(),
                        plugins: vec![],
                        results: vec![],
                        failures: vec![("vxd".into(), why)],
                        thumbnails: vec![],
                    };
                    bus.rt.block_on(async {
                        bus.publish(RESULTS_SUBJECT, &id, encode(&outcome)).await;
                        let _ = message.ack_with(AckKind::Term).await;
                    });
                    continue;
                }
            };
            let delivery = self.hold(job, attempt, message);
            self.gate.enter(delivery.alone);
            return Some(delivery);
        }
        None
    }

    fn hold(&self, job: Job, attempt: u32, message: async_nats::jetstream::Message) -> Delivery {
        let bus = self.bus.clone();
        let message = Arc::new(message);
        let since = Instant::now();
        let alive_until = Arc::new(AtomicU64::new(u64::MAX));
        let ready = bus.rt.block_on(bus.ready());
        let (ack_wait, max_deliver) = (ready.ack_wait, ready.max_deliver);
        let started = Started {
            job: job.id.clone(),
            worker: bus.settings.name.clone(),
            attempt,
        };
        let every = ack_wait / 3;
        // Flushed before the work starts: if the file kills this vxd, the
        // coordinator still learns who had it.
        bus.rt.block_on(async {
            let _ = bus.client.publish(STARTED, encode(&started)).await;
            let _ = bus.client.flush().await;
        });
        let (m, until) = (message.clone(), alive_until.clone());
        bus.rt.spawn({
            async move {
                loop {
                    tokio::time::sleep(every).await;
                    if Arc::strong_count(&m) == 1 {
                        return; // the delivery is over
                    }
                    if since.elapsed().as_millis() as u64 > until.load(Ordering::Relaxed) {
                        tracing::warn!("a job ran past its deadline: no longer kept alive");
                        return;
                    }
                    if let Err(e) = m.ack_with(AckKind::Progress).await {
                        tracing::debug!("in-progress ack: {e}");
                    }
                }
            }
        });
        Delivery {
            job,
            attempt,
            max_deliver,
            bus,
            message,
            alive_until,
            since,
            gate: self.gate.clone(),
            alone: attempt > 1,
            fetched: None,
            done: false,
        }
    }

    async fn beat(self: Arc<Self>) {
        loop {
            let hb = Heartbeat {
                worker: self.bus.settings.name.clone(),
                plugins: self.plugins.lock().unwrap().clone(),
                slots: self.slots,
                busy: self.gate.slots.lock().unwrap().running,
                load: load_average(),
            };
            if !hb.plugins.is_empty() {
                let _ = self.bus.client.publish(HEARTBEAT, encode(&hb)).await;
            }
            tokio::time::sleep(HEARTBEAT_EVERY).await;
        }
    }
}

impl Delivery {
    /// Whether the job goes to no other worker after this one.
    pub fn is_last(&self) -> bool {
        self.attempt >= self.max_deliver
    }

    /// Keeps the job alive until `deadline` from now (once the file's
    /// duration is known).
    pub fn extend(&self, deadline: Duration) {
        let until = self.since.elapsed() + deadline;
        self.alive_until
            .store(until.as_millis() as u64, Ordering::Relaxed);
    }

    /// The file to work on: the job's path as this worker sees it (its
    /// `path_map` applied), or a copy fetched from the object store into
    /// `inbox`, keeping the file's extension.
    pub fn fetch(&mut self, inbox: &Path) -> Result<PathBuf, String> {
        if !self.job.in_store {
            let local = map_path(&self.job.path, &self.bus.settings.path_map);
            return match std::fs::metadata(&local) {
                Ok(m) if m.len() == self.job.size => Ok(local),
                Ok(m) => Err(format!(
                    "{} has {} bytes here, {} on the coordinator (not the same file)",
                    local.display(),
                    m.len(),
                    self.job.size
                )),
                Err(e) => Err(format!(
                    "{} cannot be read here: {e} (check path_map)",
                    local.display()
                )),
            };
        }
        let mut name = self.job.id.clone();
        if let Some(ext) = self.job.path.extension() {
            name = format!("{name}.{}", ext.to_string_lossy());
        }
        let local = inbox.join(name);
        std::fs::create_dir_all(inbox).map_err(|e| e.to_string())?;
        self.fetched = Some(local.clone());
        let bus = &self.bus;
        bus.rt.block_on(async {
            // Stored by content hash; a job for the same content as one
            // already in flight finds the other's upload, perhaps not yet
            // complete.
            let mut waited = Duration::ZERO;
            let mut object = loop {
                match bus.ready().await.store.get(&self.job.content).await {
                    Ok(object) => break object,
                    Err(e) if waited >= STORE_WAIT => {
                        return Err(format!("not in the object store: {e}"));
                    }
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        waited += Duration::from_millis(200);
                    }
                }
            };
            let mut file = tokio::fs::File::create(&local)
                .await
                .map_err(|e| e.to_string())?;
            tokio::io::copy(&mut object, &mut file)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        })?;
        Ok(local)
    }

    /// Sends the outcome, then acks the job.
    pub fn finish(mut self, outcome: Outcome) {
        let bus = self.bus.clone();
        bus.rt.block_on(async {
            bus.publish(RESULTS_SUBJECT, &self.job.id, encode(&outcome))
                .await;
            for _ in 0..5 {
                match self.message.double_ack().await {
                    Ok(()) => break,
                    // The outcome is stored: a redelivery's second outcome
                    // is dropped as a duplicate.
                    Err(e) => {
                        tracing::warn!("acking a job: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        self.done = true;
    }

    /// Gives the job back to be tried again after `delay` (this machine is
    /// short of something).
    pub fn give_back(mut self, delay: Duration) {
        let _ = self
            .bus
            .rt
            .block_on(self.message.ack_with(AckKind::Nak(Some(delay))));
        self.done = true;
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if !self.done {
            let _ = self
                .bus
                .rt
                .block_on(self.message.ack_with(AckKind::Nak(None)));
        }
        if let Some(f) = &self.fetched {
            let _ = std::fs::remove_file(f);
        }
        self.gate.leave(self.alone);
    }
}

/// A job delivered again runs alone on its worker, as vxd runs a file it
/// died on alone: if the file kills this vxd, it takes no other job with
/// it, and the death names it.
#[derive(Default)]
struct Gate {
    slots: Mutex<Slots>,
    changed: Condvar,
}

#[derive(Default)]
struct Slots {
    running: usize,
    alone: bool,
}

impl Gate {
    fn wait_while_alone(&self) {
        let slots = self.slots.lock().unwrap();
        drop(self.changed.wait_while(slots, |s| s.alone).unwrap());
    }

    /// Waits for its turn: an ordinary job while nothing runs alone; a job
    /// that runs alone once nothing else runs.
    fn enter(&self, alone: bool) {
        let mut slots = self
            .changed
            .wait_while(self.slots.lock().unwrap(), |s| s.alone)
            .unwrap();
        if alone {
            slots.alone = true;
            slots = self.changed.wait_while(slots, |s| s.running > 0).unwrap();
        }
        slots.running += 1;
    }

    fn leave(&self, alone: bool) {
        let mut slots = self.slots.lock().unwrap();
        slots.running -= 1;
        if alone {
            slots.alone = false;
        }
        self.changed.notify_all();
    }
}

/// `path` with the first matching coordinator prefix replaced by the local one.
pub fn map_path(path: &Path, map: &[(PathBuf, PathBuf)]) -> PathBuf {
    map.iter()
        .find_map(|(from, to)| path.strip_prefix(from).ok().map(|rest| to.join(rest)))
        .unwrap_or_else(|| path.to_owned())
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redelivered_job_waits_for_the_others_and_holds_off_new_ones() {
        let gate = Arc::new(Gate::default());
        gate.enter(false);
        gate.enter(false);
        let alone = std::thread::spawn({
            let gate = gate.clone();
            move || {
                gate.enter(true);
                std::thread::sleep(Duration::from_millis(50));
                gate.leave(true);
            }
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(gate.slots.lock().unwrap().alone, "it waits for its turn");
        assert_eq!(gate.slots.lock().unwrap().running, 2);
        gate.leave(false);
        gate.leave(false);
        // A new job waits until the one running alone is done.
        gate.enter(false);
        let slots = gate.slots.lock().unwrap();
        assert!(!slots.alone && slots.running == 1);
        drop(slots);
        alone.join().unwrap();
    }

    #[test]
    fn paths_are_mapped_by_the_first_matching_prefix() {
        let map = vec![
            (PathBuf::from("/srv/media"), PathBuf::from("/mnt/nas")),
            (PathBuf::from("/srv"), PathBuf::from("/other")),
        ];
        assert_eq!(
            map_path(Path::new("/srv/media/a/b.mp4"), &map),
            Path::new("/mnt/nas/a/b.mp4")
        );
        assert_eq!(
            map_path(Path::new("/srv/x.mp4"), &map),
            Path::new("/other/x.mp4")
        );
        assert_eq!(
            map_path(Path::new("/srv/mediax/y.mp4"), &map),
            Path::new("/other/mediax/y.mp4")
        );
        assert_eq!(
            map_path(Path::new("/home/z.mp4"), &map),
            Path::new("/home/z.mp4")
        );
    }
}
