//! The process's one shutdown handle. `run.rs` creates it; every background task of the binary
//! (the reloader, the TLS follower, the admin listener, the readiness notice) is spawned through
//! it. Shutdown is one sequence: stop accepting and end the background work → drain the
//! requests in flight → end streams and tunnels → wait for every task to finish.

use std::future::Future;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Stops background work and knows when all of it has finished.
#[derive(Debug)]
pub struct Lifecycle {
    tasks: Tasks,
    /// `None` once every [`Tasks`] handle (one per task, and the ones handed out) is gone.
    finished: mpsc::Receiver<()>,
}

/// Spawns background work under the lifecycle; cheap to clone and hand to a component.
#[derive(Clone, Debug)]
pub struct Tasks {
    stop: CancellationToken,
    running: mpsc::Sender<()>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        let (running, finished) = mpsc::channel(1);
        Self {
            tasks: Tasks {
                stop: CancellationToken::new(),
                running,
            },
            finished,
        }
    }
}

impl Lifecycle {
    /// The handle components spawn their background work with.
    pub fn tasks(&self) -> Tasks {
        self.tasks.clone()
    }

    /// Starts shutdown.
    pub fn stop(&self) {
        self.tasks.stop.cancel();
    }

    /// Waits until every spawned task has finished and every handle is gone (call after
    /// `stop`).
    pub async fn finished(mut self) {
        drop(self.tasks);
        // No value is ever sent: `recv` returns `None` once the last sender is dropped.
        let _ = self.finished.recv().await;
    }
}

impl Tasks {
    /// The token cancelled when shutdown starts.
    pub fn stopping(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// A token cancelled at shutdown, or earlier by its holder (a reload ends the previous
    /// configuration's followers with it).
    pub fn child(&self) -> CancellationToken {
        self.stop.child_token()
    }

    /// Runs `task` until it ends or shutdown starts, whichever is first.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.spawn_until(self.stop.clone(), task);
    }

    /// Runs `task` until it ends or `until` (this lifecycle's token or a child) is cancelled.
    pub fn spawn_until(
        &self,
        until: CancellationToken,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        let running = self.running.clone();
        tokio::spawn(async move {
            until.run_until_cancelled(task).await;
            drop(running);
        });
    }

    /// Runs `task` to its end, however long after shutdown starts it takes: a task that must
    /// finish its own shutdown (the admin listener answering 503 on /readyz until the proxy
    /// has drained). It watches `stopping()` itself.
    pub fn spawn_to_end(&self, task: impl Future<Output = ()> + Send + 'static) {
        let running = self.running.clone();
        tokio::spawn(async move {
            task.await;
            drop(running);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn stop_ends_spawned_tasks_and_finished_waits_for_the_slow_one() {
        let lifecycle = Lifecycle::default();
        let tasks = lifecycle.tasks();
        tasks.spawn(std::future::pending());
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let stopping = tasks.stopping();
        tasks.spawn_to_end(async move {
            stopping.cancelled().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = done_tx.send(());
        });
        drop(tasks);
        lifecycle.stop();
        tokio::time::timeout(Duration::from_secs(5), lifecycle.finished())
            .await
            .expect("every task finished");
        assert!(done_rx.await.is_ok(), "the slow task ran to its end first");
    }
}
