//! Writes in flight: the server stores answers in the background (a request never waits for
//! the cache), and [`InFlight::settled`] waits until every write begun so far has ended, for
//! shutdown and for tests that must not sleep to "let the write happen".

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

#[derive(Default)]
struct Counter {
    running: AtomicUsize,
    idle: Notify,
}

/// Counts background writes; cheap to clone.
#[derive(Clone, Default)]
pub struct InFlight(Arc<Counter>);

/// Held by one background write; dropping it ends the write (also on panic or cancel).
pub struct WriteGuard(Arc<Counter>);

impl InFlight {
    pub fn begin(&self) -> WriteGuard {
        self.0.running.fetch_add(1, Ordering::SeqCst);
        WriteGuard(self.0.clone())
    }

    /// Returns once no write begun before this call is still running.
    pub async fn settled(&self) {
        loop {
            let idle = self.0.idle.notified();
            if self.0.running.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }
}

impl Drop for WriteGuard {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settled_waits_for_every_begun_write() {
        let writes = InFlight::default();
        writes.settled().await; // nothing running: returns at once
        let (a, b) = (writes.begin(), writes.begin());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let waiter = {
            let writes = writes.clone();
            tokio::spawn(async move {
                writes.settled().await;
                let _ = tx.send(());
            })
        };
        drop(a);
        tokio::task::yield_now().await;
        let mut rx = rx;
        assert!(rx.try_recv().is_err(), "settled while a write still ran");
        drop(b);
        waiter.await.unwrap();
        assert!(rx.try_recv().is_ok());
    }
}
