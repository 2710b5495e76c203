//! Many idle watches open at once through one target: how much memory the proxy holds for
//! them, and whether every one of them still receives the next event.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use http_body_util::BodyExt;

use crate::load::{RequestSpec, Target, connect, request};

/// The path every watch follows; nothing else writes to it during a run.
pub const WATCH_PATH: &str = "/api/v1/namespaces/default/configmaps?watch=1";

/// Idle watches held open; they end when this is dropped.
#[derive(Debug)]
pub struct OpenWatches {
    pub opened: usize,
    received: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl OpenWatches {
    /// How many watches have received at least one event.
    pub fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }

    /// Waits up to `timeout` for `expected` watches to have received an event.
    pub async fn wait_for(&self, expected: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        while self.received() < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.received()
    }
}

impl Drop for OpenWatches {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Opens `count` watches on `target`, `batch` at a time, each on its own connection.
pub async fn open(target: &Target, count: usize, batch: usize) -> anyhow::Result<OpenWatches> {
    let received = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(count);
    let spec = RequestSpec {
        method: Method::GET,
        path: WATCH_PATH,
        body: Bytes::new(),
    };
    let mut opened = 0;
    while opened < count {
        let this_batch = batch.min(count - opened);
        let mut starting = Vec::with_capacity(this_batch);
        for _ in 0..this_batch {
            let target = target.clone();
            let spec = spec.clone();
            let received = received.clone();
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<anyhow::Result<()>>();
            tasks.push(tokio::spawn(async move {
                let started = async {
                    let mut sender = connect(&target).await?;
                    let response = sender.send_request(request(&target, &spec)?).await?;
                    anyhow::ensure!(
                        response.status().is_success(),
                        "watch answered {}",
                        response.status()
                    );
                    Ok((sender, response.into_body()))
                }
                .await;
                match started {
                    Ok((_sender, mut body)) => {
                        let _ = ready_tx.send(Ok(()));
                        let mut counted = false;
                        while let Some(Ok(frame)) = body.frame().await {
                            if !counted && frame.data_ref().is_some_and(|d| !d.is_empty()) {
                                counted = true;
                                received.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                    Err(why) => {
                        let _ = ready_tx.send(Err(why));
                    }
                }
            }));
            starting.push(ready_rx);
        }
        for ready in starting {
            ready.await??;
        }
        opened += this_batch;
    }
    Ok(OpenWatches {
        opened,
        received,
        tasks,
    })
}
