//! Running one level: a closed loop (N workers, each sending its next request when the last
//! one ends) or an open loop (requests sent on a Poisson schedule, whether or not earlier ones
//! have finished). Both stop sending at --requests or --duration and let in-flight requests end.

use super::client::{send, Outcome, RequestTemplate, Target};
use super::prompts::Prompt;
use super::schedule::poisson_arrivals;
use anyhow::{Context, Result};
use indicatif::ProgressBar;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Everything a request needs, shared by all tasks of a run.
pub struct Bench {
    pub target: Target,
    pub template: RequestTemplate,
    pub prompts: Vec<Prompt>,
}

impl Bench {
    /// Request `i` of a level; prompts are used in order, wrapping around.
    async fn request(&self, i: usize) -> Outcome {
        let body = self.template.body(&self.prompts[i % self.prompts.len()]);
        send(&self.target, &body).await
    }
}

#[derive(Clone, Copy)]
pub struct Limits {
    pub requests: usize,
    pub duration: Duration,
}

/// What a level produced: every request's outcome and the level's wall time.
pub struct LevelRun {
    pub outcomes: Vec<Outcome>,
    pub wall: Duration,
}

/// `n` requests one after another, not measured.
pub async fn warmup(bench: &Bench, n: usize) -> Vec<Outcome> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(bench.request(i).await);
    }
    out
}

pub async fn closed_loop(
    bench: &Arc<Bench>,
    workers: usize,
    limits: Limits,
    progress: &ProgressBar,
) -> Result<LevelRun> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + limits.duration;
    let mut tasks = JoinSet::new();
    for _ in 0..workers {
        let (bench, next, progress) = (bench.clone(), next.clone(), progress.clone());
        tasks.spawn(async move {
            let mut outcomes = Vec::new();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= limits.requests {
                    break;
                }
                outcomes.push(bench.request(i).await);
                progress.inc(1);
            }
            outcomes
        });
    }
    let mut outcomes = Vec::with_capacity(limits.requests);
    while let Some(done) = tasks.join_next().await {
        outcomes.extend(done.context("a benchmark worker failed")?);
    }
    Ok(LevelRun { outcomes, wall: start.elapsed() })
}

pub async fn open_loop(
    bench: &Arc<Bench>,
    rate: f64,
    max_concurrency: Option<usize>,
    seed: u64,
    limits: Limits,
    progress: &ProgressBar,
) -> Result<LevelRun> {
    let arrivals = poisson_arrivals(rate, limits.requests, seed);
    let slots = max_concurrency.map(|n| Arc::new(Semaphore::new(n)));
    let start = tokio::time::Instant::now();
    let mut tasks = JoinSet::new();
    for (i, at) in arrivals.into_iter().enumerate() {
        if at >= limits.duration {
            break;
        }
        tokio::time::sleep_until(start + at).await;
        // Past the cap, an arrival waits for a slot (as vLLM's --max-concurrency does).
        let permit = match &slots {
            Some(s) => Some(s.clone().acquire_owned().await.context("concurrency limiter closed")?),
            None => None,
        };
        if start.elapsed() >= limits.duration {
            break;
        }
        let (bench, progress) = (bench.clone(), progress.clone());
        tasks.spawn(async move {
            let outcome = bench.request(i).await;
            drop(permit);
            progress.inc(1);
            outcome
        });
    }
    let mut outcomes = Vec::with_capacity(limits.requests);
    while let Some(done) = tasks.join_next().await {
        outcomes.push(done.context("a benchmark request task failed")?);
    }
    Ok(LevelRun { outcomes, wall: start.elapsed() })
}
