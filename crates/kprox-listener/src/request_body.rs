//! The client's request body on its way upstream, held to `listen.limits`: at most
//! `max_body_bytes`, all of it within `body_read_timeout`. A body that breaks a limit fails
//! the upstream request, and the verdict it leaves tells the forwarder to answer `413` or
//! `408` rather than `502`.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

/// Why a body was cut off, readable after the upstream request failed.
#[derive(Debug, Default)]
pub(crate) struct Verdict(AtomicU8);

const TOO_LARGE: u8 = 1;
const TOO_SLOW: u8 = 2;
const MALFORMED: u8 = 3;

impl Verdict {
    fn set(&self, verdict: u8) {
        self.0.store(verdict, Ordering::Relaxed);
    }

    /// The status and message for the client when the body broke a limit.
    pub(crate) fn refusal(&self, limits: &BodyLimits) -> Option<(StatusCode, String)> {
        match self.0.load(Ordering::Relaxed) {
            TOO_LARGE => Some(too_large(limits)),
            TOO_SLOW => Some((
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} s (listen.limits.body_read_timeout)",
                    limits.read_timeout.as_secs_f64()
                ),
            )),
            MALFORMED => Some((
                StatusCode::BAD_REQUEST,
                "the request body is malformed (bad chunked encoding) or was cut off".to_owned(),
            )),
            _ => None,
        }
    }
}

/// The answer to a body over the cap.
pub(crate) fn too_large(limits: &BodyLimits) -> (StatusCode, String) {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the request body is larger than {} bytes (listen.limits.max_body_bytes)",
            limits.max_bytes
        ),
    )
}

/// The limits on one request body.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimits {
    pub max_bytes: u64,
    pub read_timeout: Duration,
}

impl From<&kprox_config::ListenLimits> for BodyLimits {
    fn from(limits: &kprox_config::ListenLimits) -> Self {
        Self {
            max_bytes: limits.max_body_bytes,
            read_timeout: limits.body_read_timeout.get(),
        }
    }
}

/// The error a body fails with when it breaks a limit.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyRefused {
    #[error("the request body is over the size limit")]
    TooLarge,
    #[error("the request body took too long to arrive")]
    TooSlow,
}

/// A request body held to [`BodyLimits`].
pub(crate) struct LimitedBody<B> {
    inner: B,
    remaining: u64,
    read_timeout: Duration,
    /// Started at the first poll: the whole body must arrive by then.
    deadline: Option<Pin<Box<Sleep>>>,
    verdict: Arc<Verdict>,
}

impl<B> LimitedBody<B> {
    pub(crate) fn new(inner: B, limits: BodyLimits) -> (Self, Arc<Verdict>) {
        let verdict = Arc::new(Verdict::default());
        (
            Self {
                inner,
                remaining: limits.max_bytes,
                read_timeout: limits.read_timeout,
                deadline: None,
                verdict: verdict.clone(),
            },
            verdict,
        )
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<crate::BoxError>,
{
    type Data = Bytes;
    type Error = crate::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if n > this.remaining {
                        this.verdict.set(TOO_LARGE);
                        return Poll::Ready(Some(Err(Box::new(BodyRefused::TooLarge))));
                    }
                    this.remaining -= n;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                // hyper could not read what the client sent: its fault, not the apiserver's.
                this.verdict.set(MALFORMED);
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let timeout = this.read_timeout;
                let deadline = this
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                ready!(deadline.as_mut().poll(cx));
                this.verdict.set(TOO_SLOW);
                Poll::Ready(Some(Err(Box::new(BodyRefused::TooSlow))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
