//! Writes interactions to the store off the request path: requests hand records to a bounded
//! buffer; one task writes them in batches (a transaction each). If the store is slow or down,
//! requests are still served: the task retries the batch with backoff while the buffer fills,
//! and once it is full new records are dropped, counted (`luodi_store_dropped_total`) and
//! logged. On graceful shutdown everything buffered is written before the process exits.

use crate::store_link::StoreLink;
use luodi_store::{Interaction, Store};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

enum Msg {
    Record(Box<Interaction>),
    /// Write everything received so far, then answer.
    Flush(oneshot::Sender<()>),
}

#[derive(Clone, Debug)]
pub struct RecorderConfig {
    /// Records that may wait for the writer.
    pub buffer: usize,
    /// Most records per transaction.
    pub batch: usize,
    /// Longest a record waits before its batch is written.
    pub flush_interval: Duration,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        RecorderConfig { buffer: 10_000, batch: 256, flush_interval: Duration::from_millis(200) }
    }
}

/// The handle requests use. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Msg>,
    link: StoreLink,
    warned_full: Arc<AtomicBool>,
    /// Records dropped because the buffer was full (also in `luodi_store_dropped_total`).
    dropped: Arc<AtomicU64>,
    done: Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Recorder {
    /// Starts the writer task (on the current runtime) for a store already open.
    pub fn start(store: Store, config: RecorderConfig) -> Recorder {
        Recorder::linked(StoreLink::ready(store), config)
    }

    /// Starts the writer task for a store that may still be connecting: until it is, records
    /// wait in the buffer (and past it are dropped and counted, as during an outage).
    pub fn linked(link: StoreLink, config: RecorderConfig) -> Recorder {
        let (tx, rx) = mpsc::channel(config.buffer.max(1));
        let writer_link = link.clone();
        let handle = tokio::spawn(async move {
            let store = writer_link.connected().await;
            write_loop(store, rx, config).await
        });
        Recorder {
            tx,
            link,
            warned_full: Arc::new(AtomicBool::new(false)),
            dropped: Arc::new(AtomicU64::new(0)),
            done: Arc::new(tokio::sync::Mutex::new(Some(handle))),
        }
    }

    /// The store, once connected.
    pub fn store(&self) -> Option<Store> {
        self.link.get()
    }

    pub fn link(&self) -> &StoreLink {
        &self.link
    }

    /// Hands a record to the writer; never waits. A full buffer drops it (counted, logged once
    /// per episode).
    pub fn record(&self, interaction: Interaction) {
        match self.tx.try_send(Msg::Record(Box::new(interaction))) {
            Ok(()) => {
                self.warned_full.store(false, Ordering::Relaxed);
                metrics::gauge!("luodi_store_buffered").increment(1.0);
            }
            Err(e) => {
                let reason = match e {
                    mpsc::error::TrySendError::Full(_) => "buffer_full",
                    mpsc::error::TrySendError::Closed(_) => "shutting_down",
                };
                metrics::counter!("luodi_store_dropped_total", "reason" => reason).increment(1);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                if !self.warned_full.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        reason,
                        "interaction store is not keeping up: dropping records (see luodi_store_dropped_total)"
                    );
                }
            }
        }
    }

    /// Records this handle's process dropped because the buffer was full or closed.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until everything recorded before this call is written (or the writer gave up on
    /// it); feedback on a just-answered request uses it.
    pub async fn flush(&self) {
        if self.link.get().is_none() {
            return; // nothing can be written before the store is connected
        }
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Writes what is buffered and stops the writer (graceful shutdown).
    pub async fn shutdown(&self) {
        if self.link.get().is_none() {
            let waiting = self.tx.max_capacity() - self.tx.capacity();
            tracing::error!(
                records = waiting,
                "shutting down before the interaction store was reachable: buffered records are lost"
            );
            metrics::counter!("luodi_store_dropped_total", "reason" => "never_connected").increment(waiting as u64);
        }
        self.flush().await;
        if let Some(handle) = self.done.lock().await.take() {
            handle.abort();
            let _ = handle.await;
        }
    }
}

async fn write_loop(store: Store, mut rx: mpsc::Receiver<Msg>, config: RecorderConfig) {
    let mut batch: Vec<Interaction> = Vec::with_capacity(config.batch);
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        // Block for the first message, then gather until the batch is full or the interval ends.
        let Some(first) = rx.recv().await else { break };
        let deadline = tokio::time::Instant::now() + config.flush_interval;
        let mut next = Some(first);
        loop {
            match next.take() {
                Some(Msg::Record(i)) => batch.push(*i),
                Some(Msg::Flush(ack)) => {
                    waiting.push(ack);
                    break;
                }
                None => {}
            }
            if batch.len() >= config.batch {
                break;
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(msg)) => next = Some(msg),
                _ => break,
            }
        }
        write_with_retry(&store, &mut batch).await;
        for ack in waiting.drain(..) {
            let _ = ack.send(());
        }
    }
    write_with_retry(&store, &mut batch).await;
}

/// Writes the batch, retrying with backoff (up to ~1 minute) while the store is down; a batch
/// that still fails is dropped and counted, so the buffer behind it can drain.
async fn write_with_retry(store: &Store, batch: &mut Vec<Interaction>) {
    if batch.is_empty() {
        return;
    }
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=10 {
        match store.insert_interactions(batch).await {
            Ok(()) => {
                metrics::counter!("luodi_store_written_total").increment(batch.len() as u64);
                metrics::gauge!("luodi_store_buffered").decrement(batch.len() as f64);
                batch.clear();
                return;
            }
            Err(e) => {
                tracing::warn!(attempt, records = batch.len(), error = %e, "interaction store write failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
    tracing::error!(records = batch.len(), "interaction store unavailable: dropping a batch");
    metrics::counter!("luodi_store_dropped_total", "reason" => "store_unavailable").increment(batch.len() as u64);
    metrics::gauge!("luodi_store_buffered").decrement(batch.len() as f64);
    batch.clear();
}
