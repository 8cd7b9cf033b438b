//! The text-embed host, kept warm: it embeds the words of indexed segments
//! (the backlog) and the queries of searches by meaning.
//!
//! vxd never loads a model itself: a crash in the model stays in the host.
//! One thread owns the host and serves both kinds of work; a query is
//! answered before the next backlog batch starts, so it waits at most one
//! batch. The backlog is whatever segment in the index has a vector key with
//! no vector: new files, files indexed while the host was down, or every file
//! after the model changed. It is found by scanning the index's key column
//! after each commit (the pipeline counts them), so nothing needs to be
//! handed over and nothing is lost. vxd is not idle while a running host has
//! a backlog, so `vxctl wait` also waits for search by meaning to catch up.
//! When the host is down, searches fall back to words and say so.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use vx_config::{Settings, TEXT_EMBED};
use vx_ctl_protocol::PluginState;
use vx_index::{MediaIndex, VectorStore};

use crate::host::{Host, HostArgs, HostFailure, HostLimits, host_exe};
use crate::state::State;

/// Texts sent to the host per backlog request.
const BACKLOG_BATCH: usize = 64;
/// How long a query waits for its vector.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one backlog batch may take.
const BATCH_DEADLINE: Duration = Duration::from_secs(120);
/// Between starts of a host that keeps failing.
const RESTART_BACKOFF: Duration = Duration::from_secs(10);
/// How often the state is checked for new commits when nothing else happens.
const POLL: Duration = Duration::from_millis(250);

type QueryReply = Sender<Result<Vec<f32>, String>>;

pub struct Embedder {
    queries: Sender<(String, QueryReply)>,
    ready: Arc<AtomicBool>,
    state: Arc<State>,
    /// The vectors, once the host has said which model it runs.
    pub vectors: Arc<RwLock<Option<VectorStore>>>,
}

impl Embedder {
    /// Starts the embedding thread, or says why search by meaning is off.
    pub fn start(
        settings: Arc<Settings>,
        state: Arc<State>,
        index: Arc<MediaIndex>,
        socket_dir: PathBuf,
    ) -> anyhow::Result<Arc<Embedder>> {
        let (queries, inbox) = bounded(64);
        let embedder = Arc::new(Embedder {
            queries,
            ready: Arc::new(AtomicBool::new(false)),
            state: state.clone(),
            vectors: Arc::new(RwLock::new(None)),
        });
        let worker = Worker {
            store_path: settings.state_dir.join("index.vectors"),
            settings,
            state,
            index,
            socket_dir,
            inbox,
            ready: embedder.ready.clone(),
            vectors: embedder.vectors.clone(),
            host: None,
            next_id: 1,
            starts: 0,
            set_aside: HashSet::new(),
        };
        std::thread::Builder::new()
            .name("embed".into())
            .spawn(move || worker.run())?;
        Ok(embedder)
    }

    /// The query's vector, from the warm host; why not, if it is down.
    pub fn embed_query(&self, query: &str) -> Result<Vec<f32>, String> {
        if !self.ready.load(Ordering::Acquire) {
            let s = self.state.lock();
            let why = s
                .plugins
                .iter()
                .find(|p| p.name == TEXT_EMBED)
                .and_then(|p| p.last_error.clone())
                .unwrap_or_else(|| "it is starting".into());
            return Err(format!("the text-embed host is not running ({why})"));
        }
        let (tx, rx) = bounded(1);
        self.queries
            .send_timeout((query.to_owned(), tx), QUERY_TIMEOUT)
            .map_err(|_| "the text-embed host is busy".to_owned())?;
        rx.recv_timeout(QUERY_TIMEOUT)
            .map_err(|_| "the text-embed host did not answer in time".to_owned())?
    }
}

struct Worker {
    settings: Arc<Settings>,
    state: Arc<State>,
    index: Arc<MediaIndex>,
    socket_dir: PathBuf,
    store_path: PathBuf,
    inbox: Receiver<(String, QueryReply)>,
    ready: Arc<AtomicBool>,
    vectors: Arc<RwLock<Option<VectorStore>>>,
    host: Option<Host>,
    next_id: u64,
    starts: u64,
    /// Keys whose texts the host failed on, skipped until vxd restarts.
    set_aside: HashSet<u64>,
}

impl Worker {
    /// Runs until shutdown. The host is spawned from this thread only:
    /// PR_SET_PDEATHSIG fires when the spawning thread exits.
    fn run(mut self) {
        // Vectors may be missing from before this start.
        self.state.lock().index_generation += 1;
        let mut more = false;
        let mut last_start = None::<Instant>;
        while !self.state.lock().shutting_down {
            if self.host.is_none() && last_start.is_none_or(|t| t.elapsed() >= RESTART_BACKOFF) {
                last_start = Some(Instant::now());
                self.start_host();
            }
            // The backlog, one batch at a time, with queries in between. A
            // pass that finds nothing missing covers every commit up to the
            // one counted when it began.
            let (target, done) = {
                let s = self.state.lock();
                (s.index_generation, s.embedded_generation)
            };
            if self.host.is_some() && (more || target != done) {
                more = self.backlog_batch();
                if !more {
                    self.state.lock().embedded_generation = target;
                } else {
                    // Queries first, without waiting.
                    if let Ok((query, reply)) = self.inbox.try_recv() {
                        self.answer(query, reply);
                    }
                    continue;
                }
            }
            match self.inbox.recv_timeout(POLL) {
                Ok((query, reply)) => self.answer(query, reply),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.ready.store(false, Ordering::Release);
        if let Some(h) = self.host.take() {
            h.stop();
        }
    }

    fn answer(&mut self, query: String, reply: QueryReply) {
        let vector = self
            .embed(vec![query], QUERY_TIMEOUT)
            .and_then(|mut v| v.pop().ok_or_else(|| "no vector".to_owned()));
        let _ = reply.send(vector);
    }

    fn start_host(&mut self) {
        self.starts += 1;
        let restart = self.starts > 1;
        self.state.set_plugin(TEXT_EMBED, 0, |p| {
            p.state = PluginState::Starting;
            p.restarts += restart as u32;
        });
        let tag = format!("embed-{}", self.starts);
        let args = HostArgs {
            exe: &host_exe(),
            plugin: TEXT_EMBED,
            socket_dir: &self.socket_dir,
            tag: &tag,
            cache_dir: &self.settings.cache_dir,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            // It embeds words and writes nothing.
            artefact_dir: None,
        };
        let host = match Host::start(args, HostLimits::from_settings(&self.settings)) {
            Ok(h) => h,
            Err(e) => return self.failed(&e),
        };
        let Some(dims) = host.needs.text_embedding.filter(|d| (1..=4096).contains(d)) else {
            host.stop();
            return self.failed(&HostFailure::Protocol(format!(
                "{TEXT_EMBED} does not say it embeds text in 1 to 4096 dimensions"
            )));
        };
        let model = format!("{TEXT_EMBED}@{}", host.version);
        let mut vectors = self.vectors.write().unwrap_or_else(|e| e.into_inner());
        if vectors.as_ref().is_none_or(|v| v.model() != model) {
            match VectorStore::open(&self.store_path, &model, dims as usize) {
                Ok(store) => {
                    tracing::info!(vectors = store.len(), %model, "vectors open");
                    self.state.lock().vectors = store.len() as u64;
                    *vectors = Some(store);
                }
                Err(e) => {
                    drop(vectors);
                    host.stop();
                    let why = format!("cannot open {}: {e}", self.store_path.display());
                    return self.failed(&HostFailure::Died(why));
                }
            }
        }
        drop(vectors);
        let pid = host.pid();
        tracing::info!(pid, dims, "text-embed host ready");
        self.state.set_plugin(TEXT_EMBED, 0, |p| {
            p.pid = Some(pid);
            p.state = PluginState::Ready;
        });
        self.host = Some(host);
        self.ready.store(true, Ordering::Release);
        self.state.lock().embedder_up = true;
    }

    fn failed(&mut self, e: &HostFailure) {
        tracing::warn!("{TEXT_EMBED} host failed: {e}");
        self.ready.store(false, Ordering::Release);
        self.host = None;
        self.state.lock().embedder_up = false;
        self.state.set_plugin(TEXT_EMBED, 0, |p| {
            p.pid = None;
            p.crashes += 1;
            p.state = PluginState::Exited;
            p.last_error = Some(e.to_string());
        });
    }

    /// Vectors for `texts`; a host that fails is dropped (and restarted later).
    fn embed(&mut self, texts: Vec<String>, deadline: Duration) -> Result<Vec<Vec<f32>>, String> {
        let host = self
            .host
            .as_mut()
            .ok_or("the text-embed host is not running")?;
        let id = self.next_id;
        self.next_id += 1;
        match host.embed(id, texts, deadline) {
            Ok(outcome) => outcome.map_err(|e| e.to_string()),
            Err(e) => {
                let why = e.to_string();
                self.failed(&e);
                Err(why)
            }
        }
    }

    /// Embeds one batch of the backlog; true if more may be left. Texts the
    /// host fails on (or dies on) are set aside until vxd restarts, so one
    /// bad batch cannot hold up the rest.
    fn backlog_batch(&mut self) -> bool {
        let (waiting, missing) = {
            let vectors = self.vectors.read().unwrap_or_else(|e| e.into_inner());
            let Some(store) = vectors.as_ref() else {
                return false;
            };
            let have = |k| store.contains(k) || self.set_aside.contains(&k);
            match self.index.missing_embeddings(have, BACKLOG_BATCH) {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!("cannot read the embedding backlog: {e}");
                    (0, vec![])
                }
            }
        };
        self.state.lock().embed_backlog = waiting;
        if missing.is_empty() {
            self.compact();
            return false;
        }
        let (keys, texts): (Vec<u64>, Vec<String>) = missing.into_iter().unzip();
        self.state
            .set_plugin(TEXT_EMBED, 0, |p| p.state = PluginState::Busy);
        let started = Instant::now();
        let vectors = match self.embed(texts, BATCH_DEADLINE) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(
                    texts = keys.len(),
                    "embedding failed, set aside until restart: {e}"
                );
                self.set_aside.extend(&keys);
                return self.host.is_some();
            }
        };
        self.state
            .set_plugin(TEXT_EMBED, 0, |p| p.state = PluginState::Ready);
        let items: Vec<(u64, Vec<f32>)> = keys.iter().copied().zip(vectors).collect();
        let mut store = self.vectors.write().unwrap_or_else(|e| e.into_inner());
        let Some(store) = store.as_mut() else {
            return false;
        };
        let stored = store.insert(&items);
        self.state.lock().vectors = store.len() as u64;
        match stored {
            Ok(n) if n > 0 => {
                tracing::debug!(n, secs = started.elapsed().as_secs_f64(), "embedded");
                true
            }
            Ok(_) => {
                tracing::warn!("the text-embed host gave no usable vectors; set aside");
                self.set_aside.extend(&keys);
                true
            }
            Err(e) => {
                // A full disk, say: try again after the next commit.
                tracing::warn!("cannot store vectors: {e}");
                false
            }
        }
    }

    /// Drops vectors no segment refers to any more, once they are a quarter
    /// of the file.
    fn compact(&mut self) {
        let Ok(live) = self.index.live_embed_keys() else {
            return;
        };
        let mut vectors = self.vectors.write().unwrap_or_else(|e| e.into_inner());
        let Some(store) = vectors.as_mut() else {
            return;
        };
        if store.len() < 1000 || store.len() * 3 < live.len() * 4 {
            return;
        }
        match store.compact(&live) {
            Ok(n) => tracing::info!(dropped = n, kept = store.len(), "vectors compacted"),
            Err(e) => tracing::warn!("cannot compact vectors: {e}"),
        }
    }
}
