//! The coordinator's side: jobs out, replies to the threads that wait.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::AckKind;
use crossbeam_channel::{Receiver, Sender};
use futures_util::StreamExt;
use serde::Deserialize;
use vx_ctl_protocol::{ClusterStatus, WorkerStatus};

use crate::{
    Bus, COORDINATOR, Heartbeat, JOBS, JOBS_SUBJECT, Job, Outcome, RESULTS, STARTED, Started,
    WORKERS, decode, encode,
};

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Done(Box<Outcome>),
    /// It ran out of deliveries: why, for `failed_files`.
    Failed(String),
}

/// A job published and not yet answered.
struct Waiting {
    reply: Sender<Reply>,
    /// The content hash its file is stored under in the object store.
    stored: Option<String>,
    /// The workers that took it, in order.
    taken_by: Vec<String>,
}

#[derive(Default)]
struct Shared {
    waiting: HashMap<String, Waiting>,
    /// Files in the object store, by content hash: the jobs that use each.
    stored: HashMap<String, usize>,
    workers: BTreeMap<String, (Heartbeat, Instant)>,
    /// Jobs each worker answered (first answers only).
    done: HashMap<String, u64>,
    /// Jobs waiting for a worker, and taken but not answered (the server's
    /// count, refreshed every few seconds).
    backlog: u64,
    in_flight: u64,
}

pub struct Coordinator {
    bus: Arc<Bus>,
    shared: Arc<Mutex<Shared>>,
    /// For job ids unique across restarts.
    started: u128,
    counter: AtomicU64,
}

/// The server's note that a job ran out of deliveries.
#[derive(Deserialize)]
struct MaxDeliveries {
    stream_seq: u64,
    deliveries: u64,
}

impl Coordinator {
    /// Starts listening for outcomes, heartbeats, job starts and jobs that
    /// ran out of deliveries.
    pub fn start(bus: Arc<Bus>) -> Arc<Self> {
        let me = Arc::new(Self {
            bus: bus.clone(),
            shared: Arc::default(),
            started: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
            counter: AtomicU64::new(0),
        });
        let rt = bus.rt.handle();
        rt.spawn(me.clone().take_outcomes());
        rt.spawn(me.clone().hear_workers());
        rt.spawn(me.clone().fail_exhausted_jobs());
        rt.spawn(me.clone().count_backlog());
        me
    }

    /// Publishes a job for `path`; the reply comes on the returned channel.
    /// With `upload`, the file goes through the object store first, under
    /// its content hash: identical files in flight at once are stored once,
    /// and deleted when the last of their jobs is answered.
    pub fn submit(&self, mut job: Job, upload: bool) -> Receiver<Reply> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let seed = format!(
            "{}:{}:{n}:{}",
            self.bus.settings.name,
            self.started,
            job.path.display()
        );
        job.id = blake3::hash(seed.as_bytes()).to_hex()[..24].to_owned();
        job.in_store = upload;
        let (tx, rx) = crossbeam_channel::bounded(1);
        let first_copy = {
            let mut shared = self.shared.lock().unwrap();
            shared.waiting.insert(
                job.id.clone(),
                Waiting {
                    reply: tx,
                    stored: upload.then(|| job.content.clone()),
                    taken_by: vec![],
                },
            );
            upload && {
                let users = shared.stored.entry(job.content.clone()).or_default();
                *users += 1;
                *users == 1
            }
        };
        self.bus.rt.block_on(async {
            // Another job's upload of the same content may still be under
            // way: workers wait for the object if they must.
            if upload && first_copy {
                let open = || tokio::fs::File::open(&job.path);
                match self.bus.put_object(&job.content, open).await {
                    Ok(()) => {}
                    Err(e) => {
                        self.answer(
                            &job.id,
                            Reply::Failed(format!("cannot read it to send it to a worker: {e}")),
                        )
                        .await;
                        return;
                    }
                }
            }
            self.bus.publish(JOBS_SUBJECT, &job.id, encode(&job)).await;
        });
        rx
    }

    /// `name@version` of the plugins the workers run (the newest heartbeat
    /// says), or `None` before any worker was heard.
    pub fn plugins(&self) -> Option<Vec<String>> {
        let shared = self.shared.lock().unwrap();
        shared
            .workers
            .values()
            .max_by_key(|(_, seen)| *seen)
            .map(|(hb, _)| hb.plugins.clone())
    }

    /// Blocks until a worker has been heard, or `stop` says to give up.
    pub fn wait_for_workers(&self, stop: impl Fn() -> bool) -> bool {
        while self.plugins().is_none() {
            if stop() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        true
    }

    pub fn status(&self) -> ClusterStatus {
        let shared = self.shared.lock().unwrap();
        ClusterStatus {
            nats: self.bus.settings.nats.clone(),
            role: format!("{:?}", self.bus.settings.role).to_lowercase(),
            connected: self.bus.is_ready(),
            workers: shared
                .workers
                .values()
                .map(|(hb, seen)| WorkerStatus {
                    name: hb.worker.clone(),
                    plugins: hb.plugins.clone(),
                    slots: hb.slots,
                    busy: hb.busy,
                    load: hb.load,
                    last_seen_s: seen.elapsed().as_secs_f64(),
                    done: shared.done.get(&hb.worker).copied().unwrap_or(0),
                })
                .collect(),
            waiting_here: shared.waiting.len(),
            backlog: shared.backlog,
            in_flight: shared.in_flight,
        }
    }

    /// Hands a reply to the thread waiting for it (a reply to a job nobody
    /// waits for, such as a second worker's answer to a redelivered job, is
    /// dropped: each job is indexed once), and deletes the job's upload.
    async fn answer(&self, job: &str, reply: Reply) {
        let waiting = {
            let mut shared = self.shared.lock().unwrap();
            let waiting = shared.waiting.remove(job);
            if let (Some(_), Reply::Done(outcome)) = (&waiting, &reply) {
                *shared.done.entry(outcome.worker.clone()).or_default() += 1;
            }
            waiting
        };
        let Some(waiting) = waiting else {
            tracing::debug!(job, "a reply nobody waits for (answered already)");
            return;
        };
        if let Some(content) = waiting.stored {
            let last = {
                let mut shared = self.shared.lock().unwrap();
                let users = shared.stored.get_mut(&content).map_or(0, |n| {
                    *n -= 1;
                    *n
                });
                if users == 0 {
                    shared.stored.remove(&content);
                }
                users == 0
            };
            if last {
                self.bus.delete_object(&content).await;
            }
        }
        let _ = waiting.reply.send(reply);
    }

    async fn take_outcomes(self: Arc<Self>) {
        loop {
            let stream = async {
                let results = self
                    .bus
                    .js
                    .get_stream(RESULTS)
                    .await
                    .map_err(crate::js_err)?;
                let consumer: async_nats::jetstream::consumer::PullConsumer = results
                    .get_consumer(COORDINATOR)
                    .await
                    .map_err(crate::js_err)?;
                consumer.messages().await.map_err(crate::js_err)
            };
            let mut messages = match stream.await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!("cannot read outcomes: {e}; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            while let Some(message) = messages.next().await {
                let message = match message {
                    Ok(m) => m,
                    Err(e) => {
                        // Heartbeats missed or a pull lost while the server
                        // restarts: the stream carries on.
                        tracing::debug!("outcomes: {e}");
                        continue;
                    }
                };
                let body = match self
                    .bus
                    .body(message.headers.as_ref(), &message.payload)
                    .await
                {
                    Ok(body) => body,
                    Err(e) => {
                        // The store may be restarting: the outcome comes again.
                        tracing::warn!("an outcome's body cannot be read now: {e}");
                        let _ = message
                            .ack_with(AckKind::Nak(Some(Duration::from_secs(2))))
                            .await;
                        continue;
                    }
                };
                match decode::<Outcome>(&body) {
                    Ok(outcome) => {
                        let job = outcome.job.clone();
                        self.answer(&job, Reply::Done(Box::new(outcome))).await;
                    }
                    // Its id is the job's: the file fails, rather than wait.
                    Err(e) => {
                        let job = message_id(message.headers.as_ref());
                        let why = format!(
                            "its worker's answer cannot be read ({e}): do all machines run the same vx?"
                        );
                        tracing::error!(job, "{why}");
                        self.answer(&job, Reply::Failed(why)).await;
                    }
                }
                if let Err(e) = message.double_ack().await {
                    tracing::warn!("acking an outcome: {e}");
                }
            }
        }
    }

    /// A subscription to `subject`, asked for again until the client has it.
    async fn subscribe(&self, subject: String) -> async_nats::Subscriber {
        loop {
            match self.bus.client.subscribe(subject.clone()).await {
                Ok(s) => return s,
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    }

    async fn hear_workers(self: Arc<Self>) {
        let beats = self.subscribe(crate::HEARTBEAT.into()).await;
        let starts = self.subscribe(STARTED.into()).await;
        let beats = beats.map(|m| (true, m.payload));
        let starts = starts.map(|m| (false, m.payload));
        let mut heard = futures_util::stream::select(beats, starts);
        while let Some((beat, payload)) = heard.next().await {
            let mut shared = self.shared.lock().unwrap();
            if beat {
                if let Ok(hb) = decode::<Heartbeat>(&payload) {
                    shared
                        .workers
                        .insert(hb.worker.clone(), (hb, Instant::now()));
                }
            } else if let Ok(s) = decode::<Started>(&payload)
                && let Some(w) = shared.waiting.get_mut(&s.job)
            {
                w.taken_by.push(s.worker);
            }
        }
    }

    /// A job delivered `max_deliver` times stays in the stream, undelivered;
    /// the server says so once. Its file fails, naming the workers.
    async fn fail_exhausted_jobs(self: Arc<Self>) {
        let subject = format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{JOBS}.{WORKERS}");
        let mut advisories = self.subscribe(subject).await;
        while let Some(m) = advisories.next().await {
            let Ok(advisory) = serde_json::from_slice::<MaxDeliveries>(&m.payload) else {
                continue;
            };
            let Ok(stream) = self.bus.js.get_stream(JOBS).await else {
                continue;
            };
            let job = match stream.get_raw_message(advisory.stream_seq).await {
                Ok(raw) => match decode::<Job>(&raw.payload) {
                    Ok(job) => job,
                    Err(_) => continue,
                },
                Err(e) => {
                    tracing::warn!("a job that ran out of deliveries cannot be read: {e}");
                    continue;
                }
            };
            let taken_by = self
                .shared
                .lock()
                .unwrap()
                .waiting
                .get(&job.id)
                .map(|w| w.taken_by.clone())
                .unwrap_or_default();
            let reason = exhausted(&taken_by, advisory.deliveries);
            tracing::warn!(path = %job.path.display(), "{reason}");
            self.answer(&job.id, Reply::Failed(reason)).await;
            if let Err(e) = stream.delete_message(advisory.stream_seq).await {
                tracing::warn!("cannot delete a job that ran out of deliveries: {e}");
            }
        }
    }

    async fn count_backlog(self: Arc<Self>) {
        loop {
            if let Ok(stream) = self.bus.js.get_stream(JOBS).await {
                let consumer: Result<async_nats::jetstream::consumer::PullConsumer, _> =
                    stream.get_consumer(WORKERS).await;
                if let Ok(info) = consumer {
                    let info = info.cached_info();
                    let mut shared = self.shared.lock().unwrap();
                    shared.backlog = info.num_pending;
                    shared.in_flight = info.num_ack_pending as u64;
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

/// The `Nats-Msg-Id` of a message: the job's id, for jobs and outcomes.
pub(crate) fn message_id(headers: Option<&async_nats::HeaderMap>) -> String {
    headers
        .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default()
}

/// Why a job that ran out of deliveries fails its file.
fn exhausted(taken_by: &[String], deliveries: u64) -> String {
    let mut workers = taken_by.to_vec();
    workers.sort();
    workers.dedup();
    match (workers.len(), taken_by.last()) {
        (n, Some(last)) => format!(
            "failed on {n} worker{} ({deliveries} deliveries): the last, {last}, stopped \
             answering while working on it (killed, crashed or hung)",
            if n == 1 { "" } else { "s" }
        ),
        (_, None) => format!(
            "failed after {deliveries} deliveries: the workers that took it stopped answering \
             (killed, crashed or hung)"
        ),
    }
}

/// Whether a worker can read `path` itself: it lies in a folder the
/// coordinator's config says the workers share.
pub fn shared_with_workers(path: &Path, shared: &[std::path::PathBuf]) -> bool {
    shared.iter().any(|dir| path.starts_with(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exhausted_job_names_its_workers_and_the_last() {
        let two = exhausted(&["a".into(), "b".into(), "a".into()], 3);
        assert!(
            two.starts_with("failed on 2 workers (3 deliveries): the last, a,"),
            "{two}"
        );
        let one = exhausted(&["a".into()], 1);
        assert!(
            one.starts_with("failed on 1 worker (1 deliveries)"),
            "{one}"
        );
        assert!(exhausted(&[], 2).starts_with("failed after 2 deliveries"));
    }
}
