//! Metrics that need the end of a response: the duration of plain requests, open watches,
//! in-flight requests and bytes sent, recorded when the body ends or is dropped.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use kprox_telemetry::Metrics;

use crate::body::{BoxError, ProxyBody};

/// What to record when the body is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// A plain request: its whole duration, and it leaves the in-flight count.
    Plain,
    /// A watch: it leaves the open-watches count.
    Watch,
    /// Nothing more.
    Nothing,
}

/// Wraps a response body to count its bytes and record its end.
pub struct Observed {
    inner: ProxyBody,
    /// For watches: resolves when kprox shuts down, ending the stream cleanly.
    ended: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
    metrics: Arc<Metrics>,
    started: Instant,
    finish: Finish,
    done: bool,
}

impl std::fmt::Debug for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observed")
            .field("finish", &self.finish)
            .finish_non_exhaustive()
    }
}

impl Observed {
    /// Wraps `inner`.
    pub fn wrap(
        inner: ProxyBody,
        metrics: Arc<Metrics>,
        started: Instant,
        finish: Finish,
        drain: &crate::Drain,
    ) -> ProxyBody {
        let ended = (finish == Finish::Watch).then(|| drain.ended());
        Self {
            inner,
            ended,
            metrics,
            started,
            finish,
            done: false,
        }
        .boxed_unsync()
    }

    fn complete(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        match self.finish {
            Finish::Plain => {
                self.metrics
                    .duration(0, self.started.elapsed().as_secs_f64());
                self.metrics.in_flight().dec();
            }
            Finish::Watch => self.metrics.watches_open().dec(),
            Finish::Nothing => {}
        }
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        self.complete();
    }
}

impl Body for Observed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // Shutting down: a watch ends here, between events, as a clean end of body.
        if let Some(ended) = self.ended.as_mut()
            && ended.as_mut().poll(cx).is_ready()
        {
            self.complete();
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.metrics.response_bytes().inc_by(data.len() as u64);
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.complete(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
