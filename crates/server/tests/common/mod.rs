//! The shared test harness of the server's HTTP tests: a scriptable fake backend and the
//! app built around it. (Each test binary uses part of it.)
#![allow(dead_code)]

use luodi_server::app::{router, ApiKeys};
use luodi_server::backend::{Backend, BackendError, EventStream, FinishReason, Finished, GenEvent, GenRequest};
use luodi_server::config::ServerConfig;
use luodi_server::guarding::Guarding;
use luodi_server::state::AppState;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc::UnboundedSender;

/// What the fake answers each request.
#[derive(Clone)]
pub enum Script {
    /// These tokens, then `Done` with `stop`.
    Tokens(Vec<&'static str>),
    /// Nothing yet: the test sends the events through [`Fake::sender`] (a generation that
    /// runs until the test says so).
    Held,
}

pub struct Fake {
    pub script: Script,
    pub seen: Mutex<Vec<GenRequest>>,
    pub senders: Mutex<Vec<UnboundedSender<Result<GenEvent, BackendError>>>>,
    /// Signalled on every submit, so a test can wait until a request reached the backend.
    pub submitted: tokio::sync::Notify,
    /// The prompt tokens `Done` reports.
    pub prompt_tokens: usize,
}

impl Fake {
    pub fn new(script: Script) -> Arc<Fake> {
        Fake::with_usage(script, 3)
    }

    /// As [`Fake::new`], reporting `prompt_tokens` in usage.
    pub fn with_usage(script: Script, prompt_tokens: usize) -> Arc<Fake> {
        Arc::new(Fake {
            script,
            seen: Mutex::new(vec![]),
            senders: Mutex::new(vec![]),
            submitted: tokio::sync::Notify::new(),
            prompt_tokens,
        })
    }

    /// The event sender of the `i`-th request (for [`Script::Held`]).
    pub fn sender(&self, i: usize) -> UnboundedSender<Result<GenEvent, BackendError>> {
        self.senders.lock().unwrap()[i].clone()
    }

    /// Waits until `n` requests have been submitted.
    pub async fn wait_for_requests(&self, n: usize) {
        loop {
            let notified = self.submitted.notified();
            if self.seen.lock().unwrap().len() >= n {
                return;
            }
            notified.await;
        }
    }
}

impl Backend for Fake {
    fn model_id(&self) -> &str {
        "tiny"
    }
    fn context_length(&self) -> usize {
        1000
    }
    fn is_ready(&self) -> bool {
        true
    }
    fn submit(&self, request: GenRequest) -> Result<EventStream, BackendError> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        if let Script::Tokens(tokens) = &self.script {
            for t in tokens {
                tx.send(Ok(GenEvent::Token { text: t.to_string(), info: None })).unwrap();
            }
            let done = Finished {
                finish_reason: FinishReason::Stop,
                prompt_tokens: self.prompt_tokens,
                completion_tokens: tokens.len(),
            };
            tx.send(Ok(GenEvent::Done(done))).unwrap();
        }
        self.seen.lock().unwrap().push(request);
        self.senders.lock().unwrap().push(tx);
        self.submitted.notify_waiters();
        Ok(rx)
    }
    fn load(&self) -> (usize, usize) {
        (0, 0)
    }
}

/// The router around `fake` with `config` (guard and styles from it), no cache, no store.
pub fn app(fake: Arc<Fake>, config: ServerConfig) -> axum::Router {
    let state = AppState {
        backend: fake,
        embedder: None,
        guard: Guarding::from_config(&config).unwrap(),
        cache: None,
        model_version: "tiny@test".into(),
        recorder: None,
        config: Arc::new(config),
        metrics: luodi_server::metrics_handle(),
        chat_template: true,
    };
    router(state, ApiKeys::default())
}
