//! The shared test harness of the server's HTTP tests: a scriptable fake backend and the
//! app built around it. (Each test binary uses part of it.)
#![allow(dead_code)]

use luodi_server::app::{router, ApiKeys};
use luodi_server::backend::{
    Backend, BackendError, EventStream, FinishReason, Finished, GenEvent, GenRequest, Prompt, TokenInfo,
};
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
    /// These tokens, and then nothing: the generation is still running (a test can check
    /// that the server cancelled it: its sender is closed).
    Running(Vec<&'static str>),
    /// The last message's text back, in two tokens.
    Echo,
}

pub struct Fake {
    pub script: Script,
    pub seen: Mutex<Vec<GenRequest>>,
    pub senders: Mutex<Vec<UnboundedSender<Result<GenEvent, BackendError>>>>,
    /// Signalled on every submit, so a test can wait until a request reached the backend.
    pub submitted: tokio::sync::Notify,
    /// The prompt tokens `Done` reports.
    pub prompt_tokens: usize,
    pub context_length: usize,
    pub ready: bool,
    /// `submit` refuses with this (e.g. `Overloaded`: a full queue).
    pub refuse: Option<BackendError>,
    /// The stream's only event is this error (e.g. `ContextOverflow`).
    pub fail: Option<BackendError>,
}

impl Fake {
    pub fn new(script: Script) -> Arc<Fake> {
        Arc::new(Fake::plain(script))
    }

    /// As [`Fake::new`], reporting `prompt_tokens` in usage.
    pub fn with_usage(script: Script, prompt_tokens: usize) -> Arc<Fake> {
        Arc::new(Fake { prompt_tokens, ..Fake::plain(script) })
    }

    /// Ready, a context of 1000 tokens, 3 prompt tokens; for `Fake { ready: false, ..plain }`.
    pub fn plain(script: Script) -> Fake {
        Fake {
            script,
            seen: Mutex::new(vec![]),
            senders: Mutex::new(vec![]),
            submitted: tokio::sync::Notify::new(),
            prompt_tokens: 3,
            context_length: 1000,
            ready: true,
            refuse: None,
            fail: None,
        }
    }

    /// The event sender of the `i`-th request (for [`Script::Held`]).
    pub fn sender(&self, i: usize) -> UnboundedSender<Result<GenEvent, BackendError>> {
        self.senders.lock().unwrap()[i].clone()
    }

    /// How many requests reached the backend.
    pub fn generations(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// The prompt of the last request the backend saw.
    pub fn last_prompt(&self) -> Option<Prompt> {
        self.seen.lock().unwrap().last().map(|r| r.prompt.clone())
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
        self.context_length
    }
    fn is_ready(&self) -> bool {
        self.ready
    }
    fn submit(&self, request: GenRequest) -> Result<EventStream, BackendError> {
        if !self.ready {
            return Err(BackendError::NotReady);
        }
        if let Some(e) = &self.refuse {
            return Err(e.clone());
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        if let Some(e) = &self.fail {
            tx.send(Err(e.clone())).unwrap();
            self.seen.lock().unwrap().push(request);
            self.submitted.notify_waiters();
            return Ok(rx);
        }
        let owned = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (tokens, done) = match &self.script {
            Script::Tokens(t) => (owned(t), true),
            Script::Running(t) => (owned(t), false),
            Script::Held => (vec![], false),
            Script::Echo => (echo(&request.prompt), true),
        };
        for (i, t) in tokens.iter().enumerate() {
            // Made-up logprobs when asked: the i-th token -(i + 0.5), one alternative `x`.
            let lp = -(i as f32) - 0.5;
            let info = request.logprobs.then(|| TokenInfo {
                token: t.clone(),
                logprob: lp,
                bytes: t.as_bytes().to_vec(),
                top: vec![(t.clone(), lp, t.as_bytes().to_vec()), ("x".into(), lp - 1.0, b"x".to_vec())],
            });
            tx.send(Ok(GenEvent::Token { text: t.clone(), info })).unwrap();
        }
        if done {
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

/// The last message's text, split in two tokens on a character boundary.
fn echo(prompt: &Prompt) -> Vec<String> {
    let text = match prompt {
        Prompt::Chat(m) => m.last().map(|m| m.content.clone()).unwrap_or_default(),
        Prompt::Raw(s) => s.clone(),
        Prompt::Tokens(_) => String::new(),
    };
    let half = text.char_indices().nth(text.chars().count() / 2).map_or(0, |(i, _)| i);
    vec![text[..half].to_string(), text[half..].to_string()]
}

/// The router around `fake` with `config` (guard and styles from it), no cache, no store.
pub fn app(fake: Arc<Fake>, config: ServerConfig) -> axum::Router {
    router(state(fake, config), ApiKeys::default())
}

/// The state [`app`] builds, for tests that add a cache, an embedder or a store.
pub fn state(fake: Arc<Fake>, config: ServerConfig) -> AppState {
    AppState {
        backend: fake,
        embedder: None,
        guard: Guarding::from_config(&config).unwrap(),
        cache: None,
        model_version: "tiny@test".into(),
        recorder: None,
        config: Arc::new(config),
        metrics: luodi_server::metrics_handle(),
        chat_template: true,
    }
}
