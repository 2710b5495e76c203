//! Graceful shutdown: stop accepting, let requests in flight finish within a grace period, then
//! end long-lived streams cleanly — a watch ends with its last complete event and a proper end of
//! body, which makes clients simply watch again (elsewhere, or after the restart).

use std::future::Future;
use std::pin::Pin;

use tokio::sync::watch;

/// The signal that ends long-lived streams; shared by the server and the request path.
#[derive(Debug)]
pub struct Drain {
    end: watch::Sender<bool>,
}

impl Default for Drain {
    fn default() -> Self {
        Self {
            end: watch::Sender::new(false),
        }
    }
}

impl Drain {
    /// Asks every watch stream to end at its next event boundary.
    pub fn end_streams(&self) {
        self.end.send_replace(true);
    }

    /// Resolves once streams are asked to end.
    pub fn ended(&self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let mut rx = self.end.subscribe();
        Box::pin(async move {
            let _ = rx.wait_for(|ended| *ended).await;
        })
    }
}
