//! Sharing vx's work between machines over NATS JetStream.
//!
//! Decoding and inference are the cost, indexing is cheap: so one
//! coordinator keeps the index and the watch, and workers do the rest. The
//! coordinator publishes one [`Job`] per file to a work-queue stream; a
//! worker pulls it with an explicit ack, decodes the file once, runs its own
//! host pools and publishes an [`Outcome`] to a results stream, then acks.
//! Decoded frames never cross the network: only the file (or its path) goes
//! out, and only results come back.
//!
//! - [`Bus`]: the connection, the streams, the object store and the blobs
//!   that carry messages too large for one NATS message.
//! - [`Coordinator`]: publishes jobs and hands each job's reply to the thread
//!   waiting for it; learns of jobs that ran out of deliveries from the
//!   server's advisories; keeps the workers' heartbeats for status.
//! - [`Worker`]: pulls jobs, keeps each alive while it runs, fetches the
//!   file (by path or from the object store) and sends the outcome back.
//!
//! vxd is threads, not async: each type here runs its own tokio runtime and
//! offers blocking calls.

mod coordinator;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, object_store, stream};
use async_nats::{ConnectOptions, HeaderMap};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use vx_config::ClusterSettings;
use vx_plugin_protocol::{MediaInfo, MediaKind, SegmentResult};

pub use coordinator::{Coordinator, Reply, shared_with_workers};
pub use worker::{Delivery, Worker, map_path};

/// The work-queue stream of jobs, and its one consumer (all workers share it).
const JOBS: &str = "VX_JOBS";
const JOBS_SUBJECT: &str = "vx.jobs";
const WORKERS: &str = "workers";
/// The work-queue stream of outcomes, read by the coordinator.
const RESULTS: &str = "VX_RESULTS";
const RESULTS_SUBJECT: &str = "vx.results";
const COORDINATOR: &str = "coordinator";
/// Files without a shared path (keyed by content hash), and blobs (by the
/// id of the message they belong to).
const BUCKET: &str = "vx-media";
/// Core NATS subjects (not stored): workers' heartbeats and job starts.
const HEARTBEAT: &str = "vx.heartbeat";
const STARTED: &str = "vx.started";
/// Set on a message whose body is in the object store under this name.
const BLOB_HEADER: &str = "Vx-Blob";
/// Bodies larger than this go through the object store (NATS's default
/// payload limit is 1 MiB).
const INLINE_MAX: usize = 512 * 1024;
/// How often workers say they are alive.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
/// Published jobs and outcomes that are retried with the same id within
/// this window are stored once.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("NATS at {0}: {1}")]
    Connect(String, String),
    #[error("JetStream: {0}")]
    JetStream(String),
}

fn js_err(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::JetStream(e.to_string())
}

/// One file to index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Unique per publication; the message id, so a retried publish is
    /// stored once.
    pub id: String,
    /// The path on the coordinator.
    pub path: PathBuf,
    /// BLAKE3 of the file, as the coordinator read it.
    pub content: String,
    pub size: u64,
    /// The plugins to run (names).
    pub plugins: Vec<String>,
    /// The file is in the object store under its content hash: no worker
    /// sees its path.
    pub in_store: bool,
}

/// What a worker made of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub job: String,
    pub worker: String,
    pub kind: MediaKind,
    pub info: MediaInfo,
    /// `name@version` of each plugin that ran.
    pub plugins: Vec<String>,
    pub results: Vec<(String, Vec<SegmentResult>)>,
    /// (plugin, reason); a decode failure fails the whole file.
    pub failures: Vec<(String, String)>,
    /// Thumbnails the results refer to: (file name, JPEG bytes). The worker's
    /// paths mean nothing to the coordinator, which stores these in its own
    /// artefact folder.
    pub thumbnails: Vec<(String, Vec<u8>)>,
}

/// A worker's sign of life, every [`HEARTBEAT_EVERY`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub worker: String,
    /// `name@version` of each plugin it runs.
    pub plugins: Vec<String>,
    /// Jobs it takes at once, and those it has now.
    pub slots: usize,
    pub busy: usize,
    /// The machine's load average over a minute.
    pub load: f64,
}

/// A worker took a job (for status, and for the reason a job failed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Started {
    job: String,
    worker: String,
    attempt: u32,
}

fn encode<T: Serialize>(value: &T) -> Bytes {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .expect("cluster messages always encode")
        .into()
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, ClusterError> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(v, _)| v)
        .map_err(|e| js_err(format!("undecodable message: {e}")))
}

/// The connection and what both roles use.
pub struct Bus {
    rt: tokio::runtime::Runtime,
    client: async_nats::Client,
    js: jetstream::Context,
    /// Set once the streams, consumers and object store are there.
    ready: tokio::sync::OnceCell<Ready>,
    settings: ClusterSettings,
}

/// What the set-up found on the server.
struct Ready {
    store: object_store::ObjectStore,
    /// The jobs consumer's own ack wait and deliveries: the first vxd to
    /// create it chose them, and every worker goes by them.
    ack_wait: Duration,
    max_deliver: u32,
}

impl Bus {
    /// Connects, and makes sure in the background that the streams,
    /// consumers and object store exist. The server may be down: the client
    /// keeps trying, and what needs the server waits until it is there
    /// ([`Bus::is_ready`] says whether it is).
    pub fn connect(settings: &ClusterSettings) -> Result<Arc<Self>, ClusterError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("nats")
            .enable_all()
            .build()
            .map_err(|e| ClusterError::Connect(settings.nats.clone(), e.to_string()))?;
        let mut options = ConnectOptions::new()
            .name(format!("vx {}", settings.name))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .event_callback(|event| async move { tracing::info!("nats: {event}") });
        if !settings.user.is_empty() {
            options = options.user_and_password(settings.user.clone(), settings.password.clone());
        }
        if !settings.token.is_empty() {
            options = options.token(settings.token.clone());
        }
        let client = rt
            .block_on(options.connect(settings.nats.as_str()))
            .map_err(|e| ClusterError::Connect(settings.nats.clone(), e.to_string()))?;
        let js = {
            let _runtime = rt.enter(); // the JetStream context needs it
            jetstream::new(client.clone())
        };
        let bus = Arc::new(Self {
            rt,
            client,
            js,
            ready: tokio::sync::OnceCell::new(),
            settings: settings.clone(),
        });
        let me = bus.clone();
        bus.rt.spawn(async move {
            me.ready().await;
        });
        Ok(bus)
    }

    pub fn settings(&self) -> &ClusterSettings {
        &self.settings
    }

    /// Whether the server has answered and the set-up is done.
    pub fn is_ready(&self) -> bool {
        self.ready.initialized()
    }

    /// The set-up, done once, retried until the server is there.
    async fn ready(&self) -> &Ready {
        self.ready
            .get_or_init(|| async {
                loop {
                    match set_up(&self.js, &self.settings).await {
                        Ok(ready) => return ready,
                        Err(e) => {
                            tracing::warn!(
                                "NATS at {} not ready: {e}; trying again",
                                self.settings.nats
                            );
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            })
            .await
    }

    /// Publishes `body` on `subject` under message id `id`, through the
    /// object store when it is large, and retries (with the same id, so it
    /// is stored once) until the server has it.
    async fn publish(&self, subject: &'static str, id: &str, body: Bytes) {
        let mut headers = HeaderMap::new();
        // Named for this publication: a second one under the same id (a
        // redelivered job's outcome) is dropped, and its blob with it.
        let blob = (body.len() > INLINE_MAX).then(|| format!("blob-{id}-{}", unique()));
        let payload = match &blob {
            Some(name) => {
                let _ = self.put_object(name, || async { Ok(&body[..]) }).await;
                headers.insert(BLOB_HEADER, name.as_str());
                Bytes::new()
            }
            None => body,
        };
        let mut pause = Backoff::default();
        loop {
            let message = jetstream::message::PublishMessage::build()
                .payload(payload.clone())
                .headers(headers.clone())
                .message_id(id);
            let sent = match self.js.send_publish(subject, message).await {
                Ok(ack) => ack.await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match sent {
                Ok(ack) => {
                    if let (true, Some(name)) = (ack.duplicate, &blob) {
                        self.delete_object(name).await;
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!("publishing to {subject}: {e}; trying again");
                    pause.wait().await;
                }
            }
        }
    }

    /// The body of a message published with [`Bus::publish`]; a blob is
    /// deleted once read.
    async fn body(
        &self,
        headers: Option<&HeaderMap>,
        payload: &Bytes,
    ) -> Result<Bytes, ClusterError> {
        let Some(name) = headers.and_then(|h| h.get(BLOB_HEADER)) else {
            return Ok(payload.clone());
        };
        let name = name.as_str().to_owned();
        let mut object = self.ready().await.store.get(&name).await.map_err(js_err)?;
        let mut body = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut object, &mut body)
            .await
            .map_err(js_err)?;
        self.delete_object(&name).await;
        Ok(body.into())
    }

    /// Stores what `open` reads under `name`, streaming it, and opening it
    /// again for each try until the server has it all. Fails only when it
    /// cannot be opened.
    async fn put_object<R, F, Fut>(&self, name: &str, open: F) -> std::io::Result<()>
    where
        R: tokio::io::AsyncRead + Unpin,
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = std::io::Result<R>>,
    {
        let store = &self.ready().await.store;
        let mut pause = Backoff::default();
        loop {
            let mut data = open().await?;
            match store.put(name, &mut data).await {
                Ok(_) => return Ok(()),
                Err(e) => {
                    tracing::warn!("object store, putting {name}: {e}; trying again");
                    pause.wait().await;
                }
            }
        }
    }

    async fn delete_object(&self, name: &str) {
        if let Err(e) = self.ready().await.store.delete(name).await {
            tracing::warn!("object store, deleting {name}: {e}");
        }
    }
}

/// Pauses between tries of what must reach the server: 100 ms, doubling
/// up to 2 s.
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Self(Duration::from_millis(100))
    }
}

impl Backoff {
    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(2));
    }
}

/// A name no other publication uses.
fn unique() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let seed = format!("{}:{now}:{n}", std::process::id());
    blake3::hash(seed.as_bytes()).to_hex()[..16].to_owned()
}

/// The streams, their consumers and the object store, created if missing.
/// The first vxd to create a consumer sets its ack wait and deliveries.
async fn set_up(
    js: &jetstream::Context,
    settings: &ClusterSettings,
) -> Result<Ready, ClusterError> {
    let queue = |name: &str, subject: &str| stream::Config {
        name: name.into(),
        subjects: vec![subject.into()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    };
    let jobs = js
        .get_or_create_stream(queue(JOBS, JOBS_SUBJECT))
        .await
        .map_err(js_err)?;
    let workers: consumer::PullConsumer = jobs
        .get_or_create_consumer(
            WORKERS,
            consumer::pull::Config {
                durable_name: Some(WORKERS.into()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs_f64(settings.ack_wait_s),
                max_deliver: settings.max_deliver as i64,
                ..Default::default()
            },
        )
        .await
        .map_err(js_err)?;
    let results = js
        .get_or_create_stream(queue(RESULTS, RESULTS_SUBJECT))
        .await
        .map_err(js_err)?;
    results
        .get_or_create_consumer(
            COORDINATOR,
            consumer::pull::Config {
                durable_name: Some(COORDINATOR.into()),
                ack_policy: consumer::AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await
        .map_err(js_err)?;
    let store = match js.get_object_store(BUCKET).await {
        Ok(store) => store,
        Err(_) => js
            .create_object_store(object_store::Config {
                bucket: BUCKET.into(),
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(js_err)?,
    };
    let config = &workers.cached_info().config;
    if config.ack_wait != Duration::from_secs_f64(settings.ack_wait_s)
        || config.max_deliver != settings.max_deliver as i64
    {
        tracing::warn!(
            "the job queue was set up with ack_wait_s = {} and max_deliver = {}: those hold, \
             not this config's",
            config.ack_wait.as_secs_f64(),
            config.max_deliver
        );
    }
    Ok(Ready {
        store,
        ack_wait: config.ack_wait,
        max_deliver: config.max_deliver.max(1) as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_survive_the_wire() {
        let outcome = Outcome {
            job: "j1".into(),
            worker: "w".into(),
            kind: MediaKind::Video,
            info: MediaInfo::default(),
            plugins: vec!["ocr@2".into()],
            results: vec![(
                "ocr".into(),
                vec![SegmentResult {
                    start_s: 1.5,
                    end_s: 2.0,
                    text: "Q3 roadmap".into(),
                    ..Default::default()
                }],
            )],
            failures: vec![("faces".into(), "host died".into())],
            thumbnails: vec![("a.jpg".into(), vec![0xff, 0xd8])],
        };
        assert_eq!(decode::<Outcome>(&encode(&outcome)).unwrap(), outcome);
        assert!(decode::<Outcome>(b"\x01\x02").is_err());
    }
}
